/* main.c - earshot-loadtest: arguments, start-up, the phases of a run and
 * shutdown. A run loads a real earshotd in one of three ways:
 *
 *   held      --sessions N: N clients kept in the system (a client whose
 *             session ends is replaced at once); set up, warm up, measure
 *             --seconds, end. With voice, no --session-s and K = N this is
 *             the steady-state media benchmark of `make bench-media`.
 *   arrivals  --arrivals R: clients arrive as a Poisson process for
 *             --seconds, then no more arrive and the system drains.
 *   idle      --idle N: N connections, half counselors away, half clients
 *             not queued, held --seconds: what a connection costs.
 *
 * One libev loop, one lws client context, no threads (lt.h). */
#include "lt.h"
#include "../client-demo/esclient.h"
#include "../server/config.h"

#include <errno.h>
#include <getopt.h>
#include <libwebsockets.h>
#include <math.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LT_CONTROL_S 0.1            /* connects, top-ups, freeing closed clients */
#define LT_SETUP_TIMEOUT_S 30.0
#define LT_END_TIMEOUT_S 5.0
/* Arrivals: how long past --session-s the queue may take to drain. */
#define LT_DRAIN_MAX_S 30.0
/* Arrivals: the client pool holds this many seconds of arrivals beyond
 * a session's length. */
#define LT_POOL_SLACK_S 30.0

struct lt lt;

static uint64_t rng_state;
static int counselors_started;
static double next_arrival;     /* ev_now() time of the next arrival */

/* ---- small helpers ----------------------------------------------------------- */

int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

double mono_s(void) { return (double)now_ns() / 1e9; }

/* xorshift64*: think times, declines and arrivals need speed, not secrecy. */
double lt_uniform(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

double lt_exp(double m)
{
	return -m * log(1.0 - lt_uniform());
}

void note(const char *fmt, ...)
{
	va_list ap;
	report_status(NULL, 0);
	fputs("earshot-loadtest: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void close_all(void);

void abort_run(const char *fmt, ...)
{
	va_list ap;
	if (lt.rc)
		return;
	va_start(ap, fmt);
	vsnprintf(lt.fail, sizeof lt.fail, fmt, ap);
	va_end(ap);
	lt.rc = 1;
	close_all();
}

static void phase_after(double s, void (*cb)(struct ev_loop *, ev_timer *, int))
{
	ev_timer_stop(lt.loop, &lt.phase_t);
	ev_timer_init(&lt.phase_t, cb, s, 0.0);
	ev_timer_start(lt.loop, &lt.phase_t);
}

/* ---- the end ------------------------------------------------------------------ */

static int all_closed(void)
{
	for (int i = 0; i < lt.ncounselors; i++)
		if (lt.counselors[i].c && !esc_is_closed(lt.counselors[i].c))
			return 0;
	for (int i = 0; i < lt.nclients; i++)
		if (lt.clients[i].c && !esc_is_closed(lt.clients[i].c))
			return 0;
	return 1;
}

static void stop_loop(void)
{
	ev_timer_stop(lt.loop, &lt.control);
	ev_timer_stop(lt.loop, &lt.media);
	ev_timer_stop(lt.loop, &lt.tick);
	ev_timer_stop(lt.loop, &lt.phase_t);
	ev_timer_stop(lt.loop, &lt.arrival);
	ev_signal_stop(lt.loop, &lt.sigint);
	ev_signal_stop(lt.loop, &lt.sigterm);
	ev_break(lt.loop, EVBREAK_ALL);
}

static void close_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	note("not every connection closed within %.0f s; leaving anyway", LT_END_TIMEOUT_S);
	stop_loop();
}

static void close_all(void)
{
	if (lt.phase == PH_CLOSING)
		return;
	lt.phase = PH_CLOSING;
	ev_timer_stop(lt.loop, &lt.arrival);
	ev_timer_stop(lt.loop, &lt.media);
	party_breaks(0);
	for (int i = 0; i < lt.ncounselors; i++)
		party_close(&lt.counselors[i]);
	for (int i = 0; i < lt.nclients; i++)
		party_close(&lt.clients[i]);
	if (all_closed()) {
		stop_loop();
		return;
	}
	phase_after(LT_END_TIMEOUT_S, close_timeout_cb);
}

static void end_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	note("%d clients still there %.0f s after the end began; closing anyway",
	     lt.live_clients, LT_END_TIMEOUT_S);
	close_all();
}

/* Every client ends its session as it would at --session-s (quiet, then
 * `end`); those still waiting leave. Counselors go when no client is left. */
static void ending_begin(void)
{
	lt.phase = PH_ENDING;
	party_breaks(0);
	for (int i = 0; i < lt.nclients; i++) {
		struct party *p = &lt.clients[i];
		if (p->st == P_IN_SESSION)
			party_finish(p);
		else if (p->st == P_WAITING || p->st == P_READY || p->st == P_CONNECTING)
			party_close(p);
	}
	phase_after(LT_END_TIMEOUT_S, end_timeout_cb);
	run_check();
}

static void fetch_done(struct fetch *f)
{
	if (f->state == F_FAILED && lt.http_ok)
		note("%s", f->err);
	if (f == &lt.f1 && lt.phase == PH_AFTER)
		ending_begin();
}

/* Who is still waiting or talking when the measured phase ends. */
static void count_leftovers(void)
{
	for (int i = 0; i < lt.nclients; i++) {
		const struct party *p = &lt.clients[i];
		if (p->st == P_WAITING)
			lt.left_waiting++;
		else if (p->st == P_IN_SESSION || p->st == P_QUIET || p->st == P_ENDING)
			lt.left_in_session++;
	}
}

static void window_end(void)
{
	ev_timer_stop(lt.loop, &lt.phase_t);
	if (lt.phase == PH_DRAIN)
		lt.drain_s = mono_s() - lt.drain_t;
	count_leftovers();
	measure_end();
	lt.phase = PH_AFTER;
	probe_fetch(&lt.f1, fetch_done);     /* ending_begin() follows its answer */
}

static void drain_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	window_end();
}

/* Arrivals stop; the measured phase goes on until every client has left. */
static void drain_begin(void)
{
	ev_timer_stop(lt.loop, &lt.arrival);
	lt.phase = PH_DRAIN;
	lt.drain_t = mono_s();
	if (lt.o.session_s <= 0 || lt.live_clients == 0) {
		window_end();
		return;
	}
	phase_after(lt.o.session_s + LT_DRAIN_MAX_S, drain_timeout_cb);
}

/* ---- the start ---------------------------------------------------------------- */

/* The next arrival on an absolute timeline: a timer that fires a little
 * late (the loop sleeps in whole milliseconds) must not slow the process. */
static void schedule_arrival(void)
{
	next_arrival += lt_exp(1.0 / lt.o.arrivals);
	double delay = next_arrival - ev_now(lt.loop);
	ev_timer_set(&lt.arrival, delay > 0 ? delay : 0.0, 0.0);
	ev_timer_start(lt.loop, &lt.arrival);
}

static void arrival_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	lt.c.arrivals++;
	struct party *p = party_client_new();
	if (!p)
		lt.c.refused++;
	else if (party_connect(p) != 0)
		return;
	schedule_arrival();
}

static void window_begin(void)
{
	lt.phase = PH_MEASURE;
	probe_fetch(&lt.f0, fetch_done);
	measure_begin();
	/* Row i covers the window's second i: the tick restarts with it. */
	ev_timer_stop(lt.loop, &lt.tick);
	ev_timer_set(&lt.tick, 1.0, 1.0);
	ev_timer_start(lt.loop, &lt.tick);
	party_breaks(1);
	if (lt.o.load == LOAD_ARRIVALS) {
		next_arrival = ev_now(lt.loop);
		schedule_arrival();
	}
}

static void warmup_done_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	window_begin();
}

/* Held: keep N clients in the system, at most `limit` new ones now. */
static void top_up(int limit)
{
	while (lt.live_clients < lt.o.sessions && limit-- > 0) {
		struct party *p = party_client_new();
		if (!p || party_connect(p) != 0)
			return;
	}
}

static void setup_done(void)
{
	lt.setup_s = mono_s() - lt.t_start;
	if (lt.o.load == LOAD_IDLE)
		probe_procs(lt.p_connected);
	if (lt.o.load == LOAD_HELD) {
		lt.phase = PH_WARMUP;
		phase_after(lt.o.warmup, warmup_done_cb);
	} else {
		window_begin();
	}
}

void run_check(void)
{
	int k = lt.ncounselors, n = lt.o.sessions;
	switch (lt.phase) {
	case PH_SETUP:
		if (lt.o.load == LOAD_HELD && lt.ready >= k && lt.c.pairs >= (uint64_t)(n < k ? n : k))
			setup_done();
		else if (lt.o.load == LOAD_ARRIVALS && lt.ready >= k)
			setup_done();
		else if (lt.o.load == LOAD_IDLE && lt.ready >= k + lt.nclients)
			setup_done();
		break;
	case PH_WARMUP:
	case PH_MEASURE:
		if (lt.o.load == LOAD_HELD)
			top_up(lt.o.ramp);
		break;
	case PH_DRAIN:
		if (lt.live_clients == 0)
			window_end();
		break;
	case PH_ENDING:
		if (lt.live_clients == 0)
			close_all();
		break;
	default:
		break;
	}
}

void run_closed(void)
{
	if (lt.phase == PH_CLOSING) {
		if (all_closed())
			stop_loop();
		return;
	}
	run_check();
}

/* Every 100 ms: free closed clients' connections (never inside their own
 * callbacks), and during setup connect `ramp` more of each side. */
static void control_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	party_reap();
	if (lt.phase != PH_SETUP) {
		run_check();
		return;
	}
	double timeout = LT_SETUP_TIMEOUT_S +
	                 (double)(lt.ncounselors + lt.nclients) / (lt.o.ramp / LT_CONTROL_S);
	if (mono_s() - lt.t_start > timeout) {
		abort_run("setup failed: not ready within %.0f s (%d of %d counselors ready, "
		          "%llu sessions up)", timeout, lt.ready, lt.ncounselors,
		          (unsigned long long)lt.c.pairs);
		return;
	}
	int stop = counselors_started + lt.o.ramp;
	if (stop > lt.ncounselors)
		stop = lt.ncounselors;
	while (counselors_started < stop)
		if (party_connect(&lt.counselors[counselors_started++]) != 0)
			return;
	if (lt.o.load == LOAD_HELD)
		top_up(lt.o.ramp);
	else if (lt.o.load == LOAD_IDLE)
		for (int i = 0; i < lt.o.ramp && lt.nfree > 0; i++)
			if (party_connect(party_client_new()) != 0)
				return;
}

static void media_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	traffic_tick();
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	measure_tick();
	if (lt.phase != PH_MEASURE || lt.nrows < lt.caprows)
		return;
	if (lt.o.load == LOAD_ARRIVALS)
		drain_begin();
	else
		window_end();
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	if (lt.phase == PH_CLOSING) {
		stop_loop();
		return;
	}
	abort_run("interrupted; no results");
}

/* ---- arguments ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: earshot-loadtest --url ws[s]://HOST:PORT/ws LOAD [options]\n"
	        "  --url may be given once per node of a cluster: counselors and clients\n"
	        "  are spread over the nodes in turn\n"
	        "LOAD, one of:\n"
	        "  --sessions N        hold N clients in the system (--voice-sessions N:\n"
	        "                      the same with --mode voice)\n"
	        "  --arrivals R        clients arrive at R per second (Poisson) for --seconds,\n"
	        "                      then the queue drains; needs --counselors\n"
	        "  --idle N            hold N connections: N/2 counselors away, the rest\n"
	        "                      clients not queued\n"
	        "Scenario:\n"
	        "  --mode voice|text   what a session carries (voice)\n"
	        "  --counselors K      counselors (held: N)\n"
	        "  --think-ms MS       think time before answering an offer: exponential,\n"
	        "                      mean MS, capped at 0.8 x ring time (0: at once)\n"
	        "  --decline F         share of offers declined (0)\n"
	        "  --away-every S      a break now and then: exponential, mean S seconds\n"
	        "  --away-for S        the length of a break (10)\n"
	        "  --session-s S       the client ends its session after S seconds\n"
	        "                      (default: at the end of the run)\n"
	        "  --text-rate R       chat messages per second per party (text: 1, voice: 0)\n"
	        "  --text-bytes B      chat message size (100)\n"
	        "Run:\n"
	        "  --seconds S         measured seconds (10); one time-series row each\n"
	        "  --warmup S          held: seconds between setup and measuring (2)\n"
	        "  --ramp N            sessions (idle: connections per side) set up per 100 ms (50)\n"
	        "  --tick-ms MS        voice send timer (20: all legs send together; less\n"
	        "                      spreads the legs evenly over each 20 ms)\n"
	        "  --token-secret S    the server's token secret (default: the dev secret)\n"
	        "  --insecure          wss: accept a self-signed certificate\n"
	        "  --ca FILE           wss: trust this CA file\n"
	        "Measure and report:\n"
	        "  --server-pid PID    server CPU and memory from /proc (repeatable)\n"
	        "  --redis HOST:PORT   Redis commands per second (INFO stats)\n"
	        "  --json FILE         every number, and the time series\n"
	        "  --plot FILE         a chart of the time series (.svg or .png; gnuplot)\n");
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}

static int parse_mode(const char *s, enum proto_mode *m)
{
	*m = proto_mode_parse(s);
	return *m == MODE_NONE ? -1 : 0;
}

static int plot_name_ok(const char *path)
{
	const char *ext = strrchr(path, '.');
	return ext && (strcmp(ext, ".svg") == 0 || strcmp(ext, ".png") == 0) &&
	       !strchr(path, '\'');
}

static int args_check(struct options *o, int nloads, int voice_sessions)
{
	const char *why = NULL;
	if (!o->nurls)
		why = "--url is required";
	else if (nloads != 1)
		why = "give one of --sessions (or --voice-sessions), --arrivals and --idle";
	else if (voice_sessions && o->mode != MODE_VOICE)
		why = "--voice-sessions is a voice load";
	else if (o->load == LOAD_ARRIVALS && !o->counselors)
		why = "--arrivals needs --counselors";
	else if (o->load == LOAD_IDLE && o->counselors)
		why = "--idle sets its own counselors (half of N)";
	else if (o->plot && !plot_name_ok(o->plot))
		why = "--plot writes FILE.svg or FILE.png (a name without quotes)";
	if (why) {
		fprintf(stderr, "earshot-loadtest: %s (see --help)\n", why);
		return -1;
	}
	if (o->load == LOAD_HELD && !o->counselors)
		o->counselors = o->sessions;
	if (o->load == LOAD_IDLE)
		o->counselors = o->idle / 2;
	if (o->text_rate < 0)
		o->text_rate = o->mode == MODE_TEXT ? 1 : 0;
	return 0;
}

static int parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "voice-sessions", required_argument, NULL, 'n' },
		{ "sessions", required_argument, NULL, 'N' },
		{ "arrivals", required_argument, NULL, 'a' },
		{ "idle", required_argument, NULL, 'i' },
		{ "mode", required_argument, NULL, 'm' },
		{ "counselors", required_argument, NULL, 'K' },
		{ "think-ms", required_argument, NULL, 'T' },
		{ "decline", required_argument, NULL, 'd' },
		{ "away-every", required_argument, NULL, 'e' },
		{ "away-for", required_argument, NULL, 'f' },
		{ "session-s", required_argument, NULL, 'S' },
		{ "text-rate", required_argument, NULL, 'x' },
		{ "text-bytes", required_argument, NULL, 'b' },
		{ "seconds", required_argument, NULL, 's' },
		{ "server-pid", required_argument, NULL, 'p' },
		{ "redis", required_argument, NULL, 'R' },
		{ "json", required_argument, NULL, 'j' },
		{ "plot", required_argument, NULL, 'P' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "ramp", required_argument, NULL, 'r' },
		{ "tick-ms", required_argument, NULL, 't' },
		{ "token-secret", required_argument, NULL, 'k' },
		{ "insecure", no_argument, NULL, 'I' },
		{ "ca", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct options *o = &lt.o;
	long v;
	int ch, li = 0, nloads = 0, voice_sessions = 0;
	o->mode = MODE_VOICE;
	o->seconds = 10;
	o->warmup = 2;
	o->ramp = 50;
	o->tick_ms = 20;
	o->away_for = 10;
	o->text_rate = -1;
	o->text_bytes = 100;
	while ((ch = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
		int bad = 0;
		switch (ch) {
		case 'u':
			if (o->nurls == LT_URLS_MAX) {
				fprintf(stderr, "earshot-loadtest: at most %d --url\n", LT_URLS_MAX);
				return -1;
			}
			o->urls[o->nurls++] = optarg;
			break;
		case 'j': o->json = optarg; break;
		case 'P': o->plot = optarg; break;
		case 'k': o->secret = optarg; break;
		case 'c': o->ca = optarg; break;
		case 'R': o->redis = optarg; break;
		case 'I': o->insecure = 1; break;
		case 'n':
			voice_sessions = 1;
			/* fall through */
		case 'N':
			bad = parse_int(optarg, 1, 100000, &v);
			o->sessions = (int)v;
			o->load = LOAD_HELD;
			nloads++;
			break;
		case 'a':
			bad = parse_num(optarg, 0.01, 10000, &o->arrivals);
			o->load = LOAD_ARRIVALS;
			nloads++;
			break;
		case 'i':
			bad = parse_int(optarg, 2, 2 * LT_CLIENTS_MAX, &v);
			o->idle = (int)v;
			o->load = LOAD_IDLE;
			nloads++;
			break;
		case 'm': bad = parse_mode(optarg, &o->mode); break;
		case 'K': bad = parse_int(optarg, 1, 100000, &v); o->counselors = (int)v; break;
		case 'T': bad = parse_num(optarg, 0, 60000, &o->think_ms); break;
		case 'd': bad = parse_num(optarg, 0, 0.95, &o->decline); break;
		case 'e': bad = parse_num(optarg, 0, 86400, &o->away_every); break;
		case 'f': bad = parse_num(optarg, 0.1, 86400, &o->away_for); break;
		case 'S': bad = parse_num(optarg, 0, 86400, &o->session_s); break;
		case 'x': bad = parse_num(optarg, 0, 50, &o->text_rate); break;
		case 'b': bad = parse_int(optarg, 32, PROTO_TEXT_MAX, &v); o->text_bytes = (int)v; break;
		case 's': bad = parse_int(optarg, 1, 3600, &v); o->seconds = (double)v; break;
		case 'w': bad = parse_int(optarg, 0, 600, &v); o->warmup = (double)v; break;
		case 'r': bad = parse_int(optarg, 1, 10000, &v); o->ramp = (int)v; break;
		case 't': bad = parse_int(optarg, 1, 20, &v); o->tick_ms = (int)v; break;
		case 'p':
			if (o->npids == LT_PIDS_MAX) {
				fprintf(stderr, "earshot-loadtest: at most %d --server-pid\n", LT_PIDS_MAX);
				return -1;
			}
			bad = parse_int(optarg, 1, 0x7fffffff, &v);
			o->pids[o->npids++] = (pid_t)v;
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
		if (bad) {
			fprintf(stderr, "earshot-loadtest: bad value '%s' for --%s\n", optarg,
			        longopts[li].name);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "earshot-loadtest: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return args_check(o, nloads, voice_sessions);
}

/* ---- set-up and tear-down ----------------------------------------------------- */

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* How many clients may be in the system at once. */
static int pool_size(void)
{
	const struct options *o = &lt.o;
	if (o->load == LOAD_IDLE)
		return o->idle - o->idle / 2;
	if (o->load == LOAD_HELD)
		return o->sessions + (o->sessions < 1000 ? o->sessions : 1000);
	double stay = (o->session_s > 0 ? o->session_s : o->seconds) + LT_POOL_SLACK_S;
	double n = ceil(o->arrivals * stay) + 64;
	return n > LT_CLIENTS_MAX ? LT_CLIENTS_MAX : (int)n;
}

static int setup(char *err, size_t errlen)
{
	static struct config cfg;
	if (!lt.o.secret) {
		config_defaults(&cfg);
		lt.o.secret = config_token_secret(&cfg);
	}
	if (RAND_bytes((unsigned char *)&rng_state, sizeof rng_state) != 1 || !rng_state)
		rng_state = (uint64_t)now_ns() | 1;
	lt.ncounselors = lt.o.counselors;
	lt.nclients = pool_size();
	lt.counselors = calloc((size_t)lt.ncounselors, sizeof *lt.counselors);
	lt.clients = calloc((size_t)lt.nclients, sizeof *lt.clients);
	lt.free_slots = calloc((size_t)lt.nclients, sizeof *lt.free_slots);
	lt.caprows = (int)lt.o.seconds;
	lt.rows = calloc((size_t)lt.caprows, sizeof *lt.rows);
	if (!lt.counselors || !lt.clients || !lt.free_slots || !lt.rows) {
		snprintf(err, errlen, "out of memory for %d counselors and %d clients",
		         lt.ncounselors, lt.nclients);
		return -1;
	}
	/* With a faster tick each leg gets its own slot in the 20 ms. */
	int64_t legs = lt.ncounselors + lt.nclients;
	for (int i = 0; i < lt.ncounselors; i++) {
		lt.counselors[i].counselor = 1;
		lt.counselors[i].index = i;
		if (lt.o.tick_ms < 20)
			lt.counselors[i].phase_ns = (int64_t)i * LT_FRAME_NS / legs;
	}
	for (int i = 0; i < lt.nclients; i++) {
		lt.clients[i].index = i;
		if (lt.o.tick_ms < 20)
			lt.clients[i].phase_ns = (int64_t)(lt.ncounselors + i) * LT_FRAME_NS / legs;
		lt.free_slots[lt.nfree++] = lt.nclients - 1 - i;
	}
	if (traffic_init(err, errlen) != 0)
		return -1;
	lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
	lt.loop = ev_default_loop(0);
	if (probe_init(err, errlen) != 0)
		return -1;
	struct esc_options opt = { .insecure = lt.o.insecure, .ca_file = lt.o.ca };
	lt.x = esc_ctx_new(lt.loop, &opt, err, errlen);
	return lt.x ? 0 : -1;
}

static void start_watchers(void)
{
	double now = mono_s();
	lt.t_start = lt.sec_t = now;
	lt.t0_ns = now_ns();
	probe_procs(lt.p_before);
	for (int i = 0; i < lt.o.npids; i++)
		lt.sec_ticks[i] = lt.p_before[i].ok ? (long long)lt.p_before[i].ticks : -1;
	ev_timer_init(&lt.control, control_cb, 0.0, LT_CONTROL_S);
	ev_timer_start(lt.loop, &lt.control);
	if (lt.o.mode == MODE_VOICE || lt.o.text_rate > 0) {
		double tick = lt.o.tick_ms / 1000.0;
		ev_timer_init(&lt.media, media_cb, tick, tick);
		if (lt.o.load != LOAD_IDLE)
			ev_timer_start(lt.loop, &lt.media);
	}
	ev_timer_init(&lt.tick, tick_cb, 1.0, 1.0);
	ev_timer_start(lt.loop, &lt.tick);
	ev_init(&lt.phase_t, warmup_done_cb);
	ev_init(&lt.arrival, arrival_cb);
	ev_signal_init(&lt.sigint, signal_cb, SIGINT);
	ev_signal_start(lt.loop, &lt.sigint);
	ev_signal_init(&lt.sigterm, signal_cb, SIGTERM);
	ev_signal_start(lt.loop, &lt.sigterm);
}

static void cleanup(void)
{
	traffic_fini();
	esc_ctx_free(lt.x);
	probe_fini();
	free(lt.counselors);
	free(lt.clients);
	free(lt.free_slots);
	free(lt.rows);
}

int main(int argc, char **argv)
{
	char err[256];
	if (parse_args(argc, argv) != 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	if (setup(err, sizeof err) != 0) {
		fprintf(stderr, "earshot-loadtest: %s\n", err);
		return 1;
	}
	start_watchers();
	ev_run(lt.loop, 0);
	report_status(NULL, 0);
	if (lt.rc) {
		fprintf(stderr, "earshot-loadtest: %s (%llu sessions were up)\n", lt.fail,
		        (unsigned long long)lt.c.pairs);
		cleanup();
		return lt.rc;
	}
	report_summary();
	int rc = 0;
	if (lt.o.json && report_json(lt.o.json) != 0) {
		fprintf(stderr, "earshot-loadtest: cannot write %s\n", lt.o.json);
		rc = 1;
	}
	if (lt.o.plot && report_plot(lt.o.plot) != 0)
		rc = 1;
	cleanup();
	return rc;
}
