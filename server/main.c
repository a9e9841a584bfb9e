/* main.c - earshotd: arguments, limits, signals, and the start-up and
 * shutdown order of the loop, the transport and the hub. */
#include "config.h"
#include "hub.h"
#include "log.h"
#include "../proto/proto.h"

#include <ev.h>
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#ifndef EARSHOT_VERSION
#define EARSHOT_VERSION "unknown"
#endif

#define SHUTDOWN_POLL_S 0.05

static struct {
	struct ev_loop *loop;
	struct hub *hub;
	struct config cfg;
	ev_signal sigterm, sigint;
	ev_timer stop_timer;
	ev_tstamp stop_deadline;
	int stopping;
} g;

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: earshotd [--config FILE] [--DIRECTIVE VALUE ...]\n"
	        "       earshotd --help | --version\n\n"
	        "earshot relays short listening sessions between people who need to talk\n"
	        "and counselors. With no options it starts in dev mode on 127.0.0.1:8080.\n"
	        "Every directive of the config file can be given as an option:\n\n");
	config_print_help(f);
}

/* lws sizes its connection table from the descriptor limit at context
 * creation: raise the soft limit to the hard one first. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("cannot raise the open-file limit to %llu",
			         (unsigned long long)rl.rlim_max);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		log_info("open-file limit %llu", (unsigned long long)rl.rlim_cur);
}

static int parse_args(int argc, char **argv)
{
	char err[CONFIG_ERR_MAX];
	config_defaults(&g.cfg);
	/* The file first, so the command line overrides it wherever it is. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc &&
		    config_load_file(&g.cfg, argv[++i], err, sizeof err) != 0) {
			fprintf(stderr, "earshotd: %s\n", err);
			return -1;
		}
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		}
		if (strcmp(a, "--version") == 0) {
			printf("earshotd %s (protocol %s)\n", EARSHOT_VERSION, PROTO_SUBPROTOCOL);
			exit(0);
		}
		if (strncmp(a, "--", 2) != 0 || i + 1 >= argc) {
			fprintf(stderr, "earshotd: unexpected argument '%s' (try --help)\n", a);
			return -1;
		}
		const char *val = argv[++i];
		if (strcmp(a, "--config") == 0)
			continue;
		if (config_set(&g.cfg, a + 2, val, a, err, sizeof err) != 0) {
			fprintf(stderr, "earshotd: %s\n", err);
			return -1;
		}
	}
	if (config_validate(&g.cfg, err, sizeof err) != 0) {
		fprintf(stderr, "earshotd: %s\n", err);
		return -1;
	}
	return 0;
}

static void stop_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	if (hub_connections(g.hub) > 0 && ev_now(loop) < g.stop_deadline)
		return;
	ev_timer_stop(loop, &g.stop_timer);
	ev_signal_stop(loop, &g.sigterm);
	ev_signal_stop(loop, &g.sigint);
	/* From a timer, never from inside an lws callback: there the context
	 * destroy would be deferred. */
	hub_free(g.hub);
	g.hub = NULL;
	ev_break(loop, EVBREAK_ALL);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	if (g.stopping) {
		log_warn("second signal: exiting now");
		exit(1);
	}
	g.stopping = 1;
	log_info("signal %d: shutting down (up to %d s to say goodbye)", w->signum,
	         g.cfg.shutdown_grace);
	hub_shutdown(g.hub);
	g.stop_deadline = ev_now(loop) + g.cfg.shutdown_grace;
	ev_timer_init(&g.stop_timer, stop_timer_cb, SHUTDOWN_POLL_S, SHUTDOWN_POLL_S);
	ev_timer_start(loop, &g.stop_timer);
}

static void banner(int port)
{
	const char *scheme = g.cfg.tls_cert[0] ? "https" : "http";
	const char *ws = g.cfg.tls_cert[0] ? "wss" : "ws";
	printf("earshot %s listening on %s://%s:%d%s\n", EARSHOT_VERSION, scheme,
	       g.cfg.listen, port, g.cfg.dev_mode ? " (dev mode)" : "");
	printf("  health and stats:  %s://%s:%d/healthz  /stats  /metrics\n", scheme,
	       g.cfg.listen, port);
	if (g.cfg.dev_mode) {
		printf("  try a session in two more terminals:\n"
		       "    build/earshot client --url %s://%s:%d/ws --topic anxiety\n"
		       "    build/earshot counselor --url %s://%s:%d/ws --token \"$(build/earshot token --role counselor --sub alice)\"\n"
		       "  watch the queue:\n"
		       "    build/earshot operator --url %s://%s:%d/ws --token \"$(build/earshot token --role operator --sub ops)\"\n",
		       ws, g.cfg.listen, port, ws, g.cfg.listen, port, ws, g.cfg.listen, port);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (parse_args(argc, argv) != 0)
		return 2;
	log_set_level((enum log_level)g.cfg.log_level);
	/* lws logs at NOTICE by default and its libev plugin logs every I/O
	 * change: errors and warnings only. */
	lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();

	g.loop = ev_default_loop(0);
	char err[256];
	g.hub = hub_new(g.loop, &g.cfg, err, sizeof err);
	if (!g.hub) {
		log_error("%s", err);
		return 1;
	}
	ev_signal_init(&g.sigterm, signal_cb, SIGTERM);
	ev_signal_init(&g.sigint, signal_cb, SIGINT);
	ev_signal_start(g.loop, &g.sigterm);
	ev_signal_start(g.loop, &g.sigint);
	if (g.cfg.dev_mode)
		log_warn("dev mode: anonymous clients and the built-in token secret are allowed");
	banner(hub_port(g.hub));
	log_info("ready");

	ev_run(g.loop, 0);

	ev_loop_destroy(g.loop);
	log_info("stopped");
	return 0;
}
