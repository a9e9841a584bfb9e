/* earshot.c - the `earshot` command-line client: mints tokens, and runs one
 * client, counselor or operator console over one esclient connection, in
 * human-readable or raw JSON form (one line per event either way).
 *
 * One libev loop, one esc_ctx, one connection, stdin read line by line.
 * All mutable state lives in the single `struct app` below. */
#include "esclient.h"
#include "../proto/proto.h"
#include "../server/auth.h"
#include "../server/config.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <getopt.h>
#include <libwebsockets.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef EARSHOT_VERSION
#define EARSHOT_VERSION "unknown"
#endif

#define DEFAULT_URL "ws://127.0.0.1:8080/ws"
#define DEFAULT_TTL "8h"
#define LINE_MAX_BYTES 4096
#define QUIT_WAIT_S 2.0
/* Peer text after clean(): a newline may double in size. */
#define CLEAN_MAX (2 * PROTO_TEXT_MAX + 8)

enum { EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_AUTH = 3 };

struct app {
	/* options */
	enum proto_role role;
	const char *url, *token, *topic;
	enum proto_mode mode;
	int json, go_available;
	struct esc_options tls;
	/* the loop and the connection */
	struct ev_loop *loop;
	struct esc_ctx *ctx;
	struct esc_conn *conn;
	ev_io stdin_w;
	ev_signal sigint_w, sigterm_w;
	ev_timer quit_w;
	int stdin_flags, stdin_nonblock;   /* restored on exit */
	int opened, welcomed, closed, quitting, eof_pending, auth_failed;
	/* the conversation */
	int64_t next_id;                   /* our next chat `id` */
	int64_t offer_id;                  /* counselor: the offer on the table, 0 if none */
	/* stdin line assembly */
	char line[LINE_MAX_BYTES + 1];
	size_t linelen;
	int line_too_long;
	struct proto_msg out;              /* scratch for sending: too big for comfort on the stack */
};

static struct app app;

/* ---- output ---------------------------------------------------------------- */

/* One event, one line on stdout, flushed: a script reading a pipe sees
 * each event when it happens. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* Errors and notices: one line on stderr. */
static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

/* Text from the other side goes to a terminal: control characters (C0, DEL,
 * and C1 encoded as UTF-8) could move the cursor or rewrite the screen, and
 * a raw newline would break one line per event. Newlines become "\n",
 * tabs a space, carriage returns vanish, other controls become '?'. */
static const char *clean(const char *s, char *buf, size_t cap)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p && o + 3 < cap; p++) {
		if (*p == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else if (*p == '\t') {
			buf[o++] = ' ';
		} else if (*p == '\r') {
			continue;
		} else if (*p < 0x20 || *p == 0x7f) {
			buf[o++] = '?';
		} else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			buf[o++] = '?';
			p++;
		} else {
			buf[o++] = (char)*p;
		}
	}
	buf[o] = '\0';
	return buf;
}

/* "4:05", or "1:02:03" from an hour on. */
static const char *fmt_clock(uint32_t s, char *buf, size_t cap)
{
	if (s >= 3600)
		snprintf(buf, cap, "%u:%02u:%02u", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(buf, cap, "%u:%02u", s / 60, s % 60);
	return buf;
}

/* An estimate is a promise: say it roughly, never to the second. */
static const char *fmt_wait(uint32_t s, char *buf, size_t cap)
{
	if (s == 0)
		snprintf(buf, cap, "any moment now");
	else if (s < 60)
		snprintf(buf, cap, "under a minute");
	else if (s < 90 * 60)
		snprintf(buf, cap, "about %u min", (s + 59) / 60);
	else
		snprintf(buf, cap, "about %u h", (s + 1800) / 3600);
	return buf;
}

/* ---- sending ----------------------------------------------------------------- */

static struct proto_msg *out_new(enum proto_type t)
{
	memset(&app.out, 0, sizeof app.out);
	app.out.type = t;
	return &app.out;
}

static void out_send(void)
{
	if (!app.conn || esc_send(app.conn, &app.out) != 0)
		note("earshot: could not send '%s' (not connected, or not valid)",
		     proto_type_name(app.out.type));
}

static void send_simple(enum proto_type t)
{
	out_new(t);
	out_send();
}

static void send_talk_now(void)
{
	struct proto_msg *m = out_new(PT_TALK_NOW);
	snprintf(m->topic, sizeof m->topic, "%s", app.topic);
	m->mode = app.mode;
	out_send();
}

static void send_set_state(enum proto_state st)
{
	out_new(PT_SET_STATE)->state = st;
	out_send();
}

static void send_text(const char *text)
{
	if (strlen(text) > PROTO_TEXT_MAX) {
		note("earshot: message too long (at most %d bytes); not sent", PROTO_TEXT_MAX);
		return;
	}
	struct proto_msg *m = out_new(PT_MSG);
	m->id = ++app.next_id;
	snprintf(m->text, sizeof m->text, "%s", text);
	out_send();
}

static void send_ack(int64_t seq)
{
	out_new(PT_ACK)->seq = seq;
	out_send();
}

/* ---- what the server says, for people --------------------------------------- */

static const char *peer_label(void)
{
	return app.role == ROLE_CLIENT ? "counselor" : "client";
}

static const char *end_reason(const char *r)
{
	int me = app.role == ROLE_CLIENT;
	if (strcmp(r, "slot_over") == 0)
		return "time is up";
	if (strcmp(r, "ended_by_client") == 0)
		return me ? "you ended it" : "the client ended it";
	if (strcmp(r, "ended_by_counselor") == 0)
		return me ? "the counselor ended it" : "you ended it";
	if (strcmp(r, "peer_left") == 0)
		return me ? "the counselor's connection was lost" : "the client's connection was lost";
	if (strcmp(r, "shutdown") == 0)
		return "the service is restarting";
	return NULL;
}

static void show_session_end(const struct proto_msg *m)
{
	char buf[CLEAN_MAX];
	const char *why = end_reason(m->reason);
	say("session ended (%s)", why ? why : clean(m->reason, buf, sizeof buf));
	if (app.role != ROLE_CLIENT)
		return;
	/* Referral lines: where to turn next, one per line of the config. */
	const char *p = m->referral;
	while (*p) {
		size_t n = strcspn(p, "\n");
		char one[PROTO_REFERRAL_MAX + 1];
		snprintf(one, sizeof one, "%.*s", (int)n, p);
		if (n > 0)
			say("referral: %s", clean(one, buf, sizeof buf));
		p += n + (p[n] == '\n');
	}
	say("rate this session: /rate 1-5 [comment]");
}

/* Messages both sides of a session see. Returns 1 when `m` was one. */
static int show_session(const struct proto_msg *m)
{
	char buf[CLEAN_MAX], t[48];
	switch (m->type) {
	case PT_MSG:
		say("%s: %s", peer_label(), clean(m->text, buf, sizeof buf));
		send_ack(m->seq);   /* it is on the screen now */
		return 1;
	case PT_TYPING:
		if (m->on)
			say("(%s is typing)", peer_label());
		return 1;
	case PT_SLOT_WARNING:
		say("%s left", fmt_clock(m->remaining_s, t, sizeof t));
		return 1;
	case PT_SLOT_OVER:
		say("time is up: %u s to say goodbye", m->grace_s);
		return 1;
	case PT_SESSION_END:
		show_session_end(m);
		return 1;
	case PT_SENT:
	case PT_DELIVERED:
		return 1;           /* quiet for people; --json shows them */
	default:
		return 0;
	}
}

static void show_queue(const struct proto_msg *m)
{
	char w[48];
	if (m->counselors == 0) {
		say("waiting: you are number %u in line. no counselors are online right now; "
		    "you keep your place", m->position);
		return;
	}
	say("waiting: you are number %u in line, %s (%u counselor%s online)", m->position,
	    fmt_wait(m->wait_s, w, sizeof w), m->counselors, m->counselors == 1 ? "" : "s");
}

static void show_client(const struct proto_msg *m)
{
	char buf[CLEAN_MAX], t[48];
	switch (m->type) {
	case PT_WELCOME:
		say("connected; asking for someone to talk with about '%s' (%s)", app.topic,
		    proto_mode_name(app.mode));
		send_talk_now();
		break;
	case PT_QUEUE:
		show_queue(m);
		break;
	case PT_CANCELLED:
		say("you left the line. /again to join it again, /quit to leave");
		break;
	case PT_SESSION_START:
		say("connected with %s: %s for this session. Type to talk; /end to finish.",
		    m->name[0] ? clean(m->name, buf, sizeof buf) : "a counselor",
		    fmt_clock(m->remaining_s, t, sizeof t));
		break;
	case PT_RATED:
		say("thank you for your rating. /again to talk again, /quit to leave");
		break;
	default:
		show_session(m);
		break;
	}
}

static void show_counselor_state(const struct proto_msg *m)
{
	switch (m->state) {
	case ST_AVAILABLE:
		if (strcmp(m->reason, "wrapup_done") == 0)
			say("wrap-up over: you are available for the next person");
		else
			say("you are available; waiting for someone who needs to talk");
		break;
	case ST_AWAY:
		if (strcmp(m->reason, "missed_offers") == 0)
			say("you are away: offers went unanswered. /available to take calls");
		else
			say("you are away; /available to take calls");
		break;
	case ST_WRAPUP:
		say("wrap-up: %u s before the next person", m->wrapup_s);
		break;
	default:
		break;              /* ringing and busy: the offer and the session say it */
	}
}

static const char *offer_gone_reason(const char *r)
{
	if (strcmp(r, "timeout") == 0)
		return "not answered in time; the person goes to the next counselor";
	if (strcmp(r, "client_left") == 0)
		return "the person stopped waiting";
	if (strcmp(r, "by_you") == 0)
		return "you went away";
	return NULL;
}

static void show_counselor(const struct proto_msg *m)
{
	char buf[CLEAN_MAX], t[48];
	const char *why;
	switch (m->type) {
	case PT_WELCOME:
		say("signed in as %s", clean(m->name[0] ? m->name : m->sub, buf, sizeof buf));
		if (app.go_available && m->state == ST_AWAY)
			send_set_state(ST_AVAILABLE);
		else
			show_counselor_state(m);
		break;
	case PT_STATE:
		show_counselor_state(m);
		break;
	case PT_OFFER:
		app.offer_id = m->offer_id;
		say("incoming: someone waiting %s about '%s' (%s). /accept or /decline within %u s",
		    fmt_clock(m->waited_s, t, sizeof t), m->topic, proto_mode_name(m->mode),
		    m->ring_s);
		break;
	case PT_OFFER_GONE:
		if (m->offer_id == app.offer_id)
			app.offer_id = 0;
		why = offer_gone_reason(m->reason);
		say("offer withdrawn: %s", why ? why : clean(m->reason, buf, sizeof buf));
		break;
	case PT_SESSION_START:
		app.offer_id = 0;
		say("connected with %s about '%s' (%s): %s for this session. Type to talk; "
		    "/end to finish.", m->name[0] ? clean(m->name, buf, sizeof buf) : "someone",
		    m->topic, proto_mode_name(m->mode), fmt_clock(m->remaining_s, t, sizeof t));
		break;
	default:
		show_session(m);
		break;
	}
}

static void show_operator(const struct proto_msg *m)
{
	char buf[CLEAN_MAX], t[48];
	const struct proto_stats *s = &m->stats;
	if (m->type == PT_WELCOME) {
		say("watching the service as %s", clean(m->name[0] ? m->name : m->sub, buf, sizeof buf));
		send_simple(PT_SUBSCRIBE);
		return;
	}
	if (m->type != PT_STATS)
		return;
	char rating[64] = "";
	if (s->ratings_count)
		snprintf(rating, sizeof rating, " | rated %.1f (%u)", s->ratings_mean,
		         s->ratings_count);
	say("queue %u (oldest %s) | counselors: %u available, %u ringing, %u busy, "
	    "%u wrap-up, %u away | sessions %u | served %u | abandoned %u%s",
	    s->queue, fmt_clock(s->oldest_wait_s, t, sizeof t), s->available, s->ringing,
	    s->busy, s->wrapup, s->away, s->sessions, s->served, s->abandoned, rating);
}

/* ---- the connection -------------------------------------------------------- */

static void app_quit(void);

static int is_auth_code(const char *code)
{
	return strcmp(code, "auth_required") == 0 || strncmp(code, "token_", 6) == 0;
}

static void show_error(const struct proto_msg *m)
{
	char c[CLEAN_MAX], r[CLEAN_MAX];
	note("error %s: %s", clean(m->code, c, sizeof c), clean(m->reason, r, sizeof r));
	if (is_auth_code(m->code))
		app.auth_failed = 1;
}

static void on_open(struct esc_conn *c, void *ud)
{
	(void)ud;
	app.opened = 1;
	if (app.quitting)
		return;
	struct proto_msg *m = out_new(PT_HELLO);
	m->role = app.role;
	if (app.token)
		snprintf(m->token, sizeof m->token, "%s", app.token);
	if (esc_send(c, m) != 0)
		note("earshot: could not send hello");
	/* Read stdin only now: lines queued before the socket opened would
	 * reach the server ahead of hello. */
	if (app.stdin_nonblock)
		ev_io_start(app.loop, &app.stdin_w);
}

static void on_message(struct esc_conn *c, const struct proto_msg *m, const char *raw,
                       size_t rawlen, void *ud)
{
	(void)c;
	(void)ud;
	if (app.json) {
		fwrite(raw, 1, rawlen, stdout);
		putchar('\n');
		fflush(stdout);
	}
	if (m->type == PT_ERROR)
		show_error(m);
	else if (m->type == PT_GOING_AWAY)
		note("the server is going away (%s)", m->reason);
	if (m->type == PT_WELCOME)
		app.welcomed = 1;
	if (app.eof_pending) {
		/* Input ended before we were let in: no automatic talk_now,
		 * subscribe or availability for someone who is leaving. */
		if (app.welcomed)
			app_quit();
		return;
	}
	if (app.json)
		return;
	if (m->type == PT_NONE) {
		note("earshot: a message from the server could not be read: %.*s",
		     (int)(rawlen < 200 ? rawlen : 200), raw);
		return;
	}
	if (app.role == ROLE_CLIENT)
		show_client(m);
	else if (app.role == ROLE_COUNSELOR)
		show_counselor(m);
	else
		show_operator(m);
}

static void on_closed(struct esc_conn *c, int code, const char *why, void *ud)
{
	(void)c;
	(void)ud;
	app.closed = 1;
	if (app.stdin_nonblock)
		ev_io_stop(app.loop, &app.stdin_w);
	if (!app.quitting || app.auth_failed) {
		if (app.auth_failed)
			note("earshot: the server refused the token; closed");
		else if (!app.opened)
			note("earshot: cannot connect to %s: %s", app.url, why && *why ? why : "failed");
		else if (code)
			note("earshot: the server closed the connection (%d%s%s)", code,
			     why && *why ? " " : "", why ? why : "");
		else
			note("earshot: the connection was lost (%s)", why && *why ? why : "closed");
	}
	ev_break(app.loop, EVBREAK_ALL);
}

/* Close politely, then give the close handshake QUIT_WAIT_S to finish. */
static void app_quit(void)
{
	if (app.quitting)
		return;
	app.quitting = 1;
	app.eof_pending = 0;
	if (app.stdin_nonblock)
		ev_io_stop(app.loop, &app.stdin_w);
	if (app.closed || !app.conn) {
		ev_break(app.loop, EVBREAK_ALL);
		return;
	}
	esc_close(app.conn);
	ev_timer_stop(app.loop, &app.quit_w);
	ev_timer_set(&app.quit_w, QUIT_WAIT_S, 0.0);
	ev_timer_start(app.loop, &app.quit_w);
}

static void quit_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	if (app.quitting)
		ev_break(loop, EVBREAK_ALL);
	else
		app_quit();         /* input ended and the server never let us in */
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	if (app.quitting)
		ev_break(loop, EVBREAK_ALL);   /* a second Ctrl-C: leave now */
	else
		app_quit();
}

/* ---- commands typed by people ------------------------------------------------ */

#define R_CLIENT (1u << ROLE_CLIENT)
#define R_COUNSELOR (1u << ROLE_COUNSELOR)
#define R_OPERATOR (1u << ROLE_OPERATOR)
#define R_SESSION (R_CLIENT | R_COUNSELOR)
#define R_ALL (R_CLIENT | R_COUNSELOR | R_OPERATOR)

static void cmd_help(const char *arg);

static void cmd_quit(const char *arg) { (void)arg; app_quit(); }
static void cmd_end(const char *arg) { (void)arg; send_simple(PT_END); }
static void cmd_cancel(const char *arg) { (void)arg; send_simple(PT_CANCEL); }
static void cmd_again(const char *arg) { (void)arg; send_talk_now(); }
static void cmd_available(const char *arg) { (void)arg; send_set_state(ST_AVAILABLE); }
static void cmd_away(const char *arg) { (void)arg; send_set_state(ST_AWAY); }

static void cmd_typing(const char *arg)
{
	out_new(PT_TYPING)->on = strcmp(arg, "off") != 0;
	out_send();
}

static void cmd_rate(const char *arg)
{
	char *end;
	long score = strtol(arg, &end, 10);
	if (end == arg || score < 1 || score > 5 || (*end && *end != ' ')) {
		note("usage: /rate 1-5 [comment]");
		return;
	}
	while (*end == ' ')
		end++;
	if (strlen(end) > PROTO_COMMENT_MAX) {
		note("earshot: the comment is too long (at most %d bytes)", PROTO_COMMENT_MAX);
		return;
	}
	struct proto_msg *m = out_new(PT_RATE);
	m->score = (int)score;
	snprintf(m->comment, sizeof m->comment, "%s", end);
	out_send();
}

static void cmd_answer(enum proto_type t)
{
	if (app.offer_id == 0) {
		note("earshot: there is no offer to %s", t == PT_ACCEPT ? "accept" : "decline");
		return;
	}
	out_new(t)->offer_id = app.offer_id;
	out_send();
}

static void cmd_accept(const char *arg) { (void)arg; cmd_answer(PT_ACCEPT); }
static void cmd_decline(const char *arg) { (void)arg; cmd_answer(PT_DECLINE); }

static const struct command {
	const char *name;
	unsigned roles;
	void (*fn)(const char *arg);
	const char *help;
} commands[] = {
	{ "accept", R_COUNSELOR, cmd_accept, "take the person being offered" },
	{ "decline", R_COUNSELOR, cmd_decline, "pass; they go to the next counselor" },
	{ "available", R_COUNSELOR, cmd_available, "ready to take calls" },
	{ "away", R_COUNSELOR, cmd_away, "take a break: no offers" },
	{ "cancel", R_CLIENT, cmd_cancel, "leave the line" },
	{ "end", R_SESSION, cmd_end, "end the session now" },
	{ "typing", R_SESSION, cmd_typing, "[off]  show the other side you are typing" },
	{ "rate", R_CLIENT, cmd_rate, "N [comment]  rate the last session, 1 to 5" },
	{ "again", R_CLIENT, cmd_again, "ask to talk again" },
	{ "help", R_ALL, cmd_help, "this list" },
	{ "quit", R_ALL, cmd_quit, "close and leave" },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void print_commands(FILE *f, enum proto_role role)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (commands[i].roles & (1u << role))
			fprintf(f, "  /%-10s %s\n", commands[i].name, commands[i].help);
	if (role != ROLE_OPERATOR)
		fprintf(f, "  any other line is sent as a message (start it with // to send a '/')\n");
}

static void cmd_help(const char *arg)
{
	(void)arg;
	print_commands(stdout, app.role);
	fflush(stdout);
}

static void run_command(char *line)
{
	char *name = line + 1;
	size_t n = strcspn(name, " ");
	char *arg = name + n;
	while (*arg == ' ')
		*arg++ = '\0';
	name[n] = '\0';
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (strcmp(commands[i].name, name) == 0 && (commands[i].roles & (1u << app.role))) {
			commands[i].fn(arg);
			return;
		}
	}
	note("earshot: unknown command '/%s'; /help lists them", name);
}

static void on_line(char *line)
{
	size_t n = strlen(line);
	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';
	if (n == 0)
		return;
	if (app.json) {
		if (app.conn && esc_send_raw(app.conn, line, n, 0) != 0)
			note("earshot: could not send (not connected)");
		return;
	}
	if (line[0] == '/' && line[1] != '/') {
		run_command(line);
		return;
	}
	if (app.role == ROLE_OPERATOR) {
		note("earshot: operators do not chat; /help lists the commands");
		return;
	}
	send_text(line[0] == '/' ? line + 1 : line);
}

/* ---- stdin ------------------------------------------------------------------- */

/* Split `len` bytes into lines. A line longer than LINE_MAX_BYTES is
 * dropped whole (with one notice) rather than sent in pieces. */
static void stdin_feed(const char *buf, size_t len)
{
	for (size_t i = 0; i < len && !app.quitting; i++) {
		if (buf[i] != '\n') {
			if (app.linelen < LINE_MAX_BYTES)
				app.line[app.linelen++] = buf[i];
			else if (!app.line_too_long) {
				app.line_too_long = 1;
				note("earshot: line longer than %d bytes; ignored", LINE_MAX_BYTES);
			}
			continue;
		}
		app.line[app.linelen] = '\0';
		if (!app.line_too_long)
			on_line(app.line);
		app.linelen = 0;
		app.line_too_long = 0;
	}
}

static void stdin_eof(void)
{
	if (app.linelen > 0 && !app.line_too_long) {
		app.line[app.linelen] = '\0';
		on_line(app.line);     /* a last line without its newline */
	}
	app.linelen = 0;
	ev_io_stop(app.loop, &app.stdin_w);
	if (app.quitting)
		return;
	if (app.welcomed) {
		app_quit();
		return;
	}
	/* Not let in yet: wait for welcome (or a refusal) so that the exit
	 * status says how the hello went, but not forever. */
	app.eof_pending = 1;
	ev_timer_set(&app.quit_w, QUIT_WAIT_S, 0.0);
	ev_timer_start(app.loop, &app.quit_w);
}

static void stdin_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	char buf[4096];
	while (!app.quitting) {
		ssize_t n = read(w->fd, buf, sizeof buf);
		if (n > 0) {
			stdin_feed(buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0)
			note("earshot: reading input: %s", strerror(errno));
		stdin_eof();
		return;
	}
}

/* Non-blocking stdin shares its flags with whatever else has the terminal
 * open (the shell): they are put back on the way out. */
static void stdin_setup(void)
{
	app.stdin_flags = fcntl(STDIN_FILENO, F_GETFL);
	if (app.stdin_flags < 0)
		return;             /* no stdin at all: run until Ctrl-C */
	if (fcntl(STDIN_FILENO, F_SETFL, app.stdin_flags | O_NONBLOCK) != 0)
		return;
	app.stdin_nonblock = 1;
	ev_io_init(&app.stdin_w, stdin_cb, STDIN_FILENO, EV_READ);
}

static void stdin_restore(void)
{
	if (app.stdin_nonblock)
		fcntl(STDIN_FILENO, F_SETFL, app.stdin_flags);
}

/* ---- running a console ------------------------------------------------------- */

static int run_console(void)
{
	char err[256];
	signal(SIGPIPE, SIG_IGN);
	lws_set_log_level(LLL_ERR, NULL);
	app.loop = ev_default_loop(0);
	if (!app.loop) {
		note("earshot: cannot start the event loop");
		return EXIT_FAIL;
	}
	app.ctx = esc_ctx_new(app.loop, &app.tls, err, sizeof err);
	if (!app.ctx) {
		note("earshot: %s", err);
		return EXIT_FAIL;
	}
	ev_signal_init(&app.sigint_w, signal_cb, SIGINT);
	ev_signal_start(app.loop, &app.sigint_w);
	ev_signal_init(&app.sigterm_w, signal_cb, SIGTERM);
	ev_signal_start(app.loop, &app.sigterm_w);
	ev_init(&app.quit_w, quit_timer_cb);
	stdin_setup();

	static const struct esc_handlers handlers = { on_open, on_message, on_closed };
	app.conn = esc_connect(app.ctx, app.url, &handlers, NULL, err, sizeof err);
	if (!app.conn)
		note("earshot: %s", err);
	/* A connect that fails at once has already reported `closed`, and
	 * ev_run would forget an ev_break made before it. */
	else if (!app.closed)
		ev_run(app.loop, 0);

	ev_signal_stop(app.loop, &app.sigint_w);
	ev_signal_stop(app.loop, &app.sigterm_w);
	ev_timer_stop(app.loop, &app.quit_w);
	if (app.stdin_nonblock)
		ev_io_stop(app.loop, &app.stdin_w);
	esc_ctx_free(app.ctx);
	stdin_restore();
	if (app.auth_failed)
		return EXIT_AUTH;
	return app.conn && app.quitting ? 0 : EXIT_FAIL;
}

/* ---- usage ------------------------------------------------------------------- */

static void usage_main(FILE *f)
{
	fprintf(f,
	        "usage: earshot token --role client|counselor|operator --sub ID [--name NAME]\n"
	        "                     [--skills a,b] [--ttl 8h] [--config FILE]\n"
	        "       earshot client [--url URL] [--token T] [--topic TOPIC] [--mode text|voice] [--json]\n"
	        "       earshot counselor --token T [--url URL] [--available] [--json]\n"
	        "       earshot operator --token T [--url URL] [--json]\n"
	        "       earshot --help | --version | SUBCOMMAND --help\n\n"
	        "earshot talks to an earshotd server: a person asks to talk (client), a\n"
	        "counselor takes them for a timed text session, an operator watches.\n"
	        "One line per event on stdout; errors on stderr. With --json, every server\n"
	        "message is printed as it came and every input line is sent as a raw frame.\n\n"
	        "The connecting subcommands also take --ca FILE (trust this CA for wss://)\n"
	        "and --insecure (accept a self-signed certificate; testing only). The\n"
	        "token may also come from $EARSHOT_TOKEN, which keeps it out of `ps`.\n\n"
	        "Exit status: 0 after /quit, end of input or Ctrl-C; 1 when the connection\n"
	        "failed or the server closed it; 2 on a usage error; 3 when the server\n"
	        "refused the token.\n");
}

static void usage_token(FILE *f)
{
	fprintf(f,
	        "usage: earshot token --role client|counselor|operator --sub ID [--name NAME]\n"
	        "                     [--skills a,b] [--ttl 8h] [--config FILE]\n\n"
	        "Print a signed token (HS256 JWT) on stdout.\n\n"
	        "  --role ROLE     client, counselor or operator\n"
	        "  --sub ID        stable identity: 1-%d of A-Z a-z 0-9 . _ @ -\n"
	        "  --name NAME     shown to the other side (at most %d bytes)\n"
	        "  --skills LIST   comma-separated topics, e.g. grief,anxiety (counselors)\n"
	        "  --ttl DURATION  how long it is valid: 30m, 8h, 1h30m (default %s)\n"
	        "  --config FILE   sign with this earshotd config's token-secret\n"
	        "                  (default: the built-in dev-mode secret)\n",
	        PROTO_SUB_MAX, PROTO_NAME_MAX, DEFAULT_TTL);
}

static void usage_role(FILE *f, enum proto_role role)
{
	const char *name = proto_role_name(role);
	fprintf(f, "usage: earshot %s %s[--url URL] [--json] [--ca FILE] [--insecure]%s\n\n", name,
	        role == ROLE_CLIENT ? "[--token T] " : "--token T ",
	        role == ROLE_CLIENT ? " [--topic TOPIC] [--mode text|voice]"
	                            : role == ROLE_COUNSELOR ? " [--available]" : "");
	if (role == ROLE_CLIENT)
		fprintf(f, "Ask to talk: joins the line at once, shows your place, then the\n"
		           "conversation. Type a line and press Enter to send it.\n\n");
	else if (role == ROLE_COUNSELOR)
		fprintf(f, "Take calls: go available, accept or decline offers, talk, wrap up.\n\n");
	else
		fprintf(f, "Watch the service: one line of live figures per change.\n\n");
	fprintf(f, "  --url URL      server address (default %s)\n", DEFAULT_URL);
	fprintf(f, "  --token T      your token (default $EARSHOT_TOKEN%s)\n",
	        role == ROLE_CLIENT ? "; none: anonymous, dev servers only" : "");
	if (role == ROLE_CLIENT) {
		fprintf(f, "  --topic TOPIC  what you want to talk about: a-z 0-9 _ - (default general)\n"
		           "  --mode MODE    text or voice (default text)\n");
	}
	if (role == ROLE_COUNSELOR)
		fprintf(f, "  --available    go available as soon as you are signed in\n");
	fprintf(f, "  --json         print server messages raw, send input lines as raw JSON frames\n"
	           "  --ca FILE      trust this CA certificate for wss://\n"
	           "  --insecure     accept a self-signed or mismatched certificate (testing only)\n\n"
	           "Commands:\n");
	print_commands(f, role);
}

static int usage_fail(const char *sub, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_fail(const char *sub, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "earshot%s%s: ", sub ? " " : "", sub ? sub : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'earshot%s%s --help'.\n", sub ? " " : "", sub ? sub : "");
	return EXIT_USAGE;
}

/* getopt_long's complaint, in our words. */
static int bad_option(const char *sub, int c, char **argv)
{
	if (c == ':')
		return usage_fail(sub, "option '%s' needs a value", argv[optind - 1]);
	return usage_fail(sub, "unknown option '%s'", argv[optind - 1]);
}

/* ---- the token subcommand ---------------------------------------------------- */

enum { O_URL = 256, O_TOKEN, O_TOPIC, O_MODE, O_JSON, O_AVAILABLE, O_CA, O_INSECURE,
       O_ROLE, O_SUB, O_NAME, O_SKILLS, O_TTL, O_CONFIG };

struct token_args {
	const char *role, *sub, *name, *skills, *ttl, *config;
};

static int token_skills(const char *list, struct auth_identity *id)
{
	const char *p = list;
	while (*p) {
		size_t n = strcspn(p, ",");
		if (id->nskills == AUTH_SKILLS_MAX)
			return usage_fail("token", "at most %d skills", AUTH_SKILLS_MAX);
		char *one = id->skills[id->nskills];
		if (n <= PROTO_TOPIC_MAX) {
			memcpy(one, p, n);
			one[n] = '\0';
		}
		if (n > PROTO_TOPIC_MAX || !proto_topic_valid(one))
			return usage_fail("token", "skill '%.*s' is not a topic (1-%d of a-z 0-9 _ -)",
			                  (int)n, p, PROTO_TOPIC_MAX);
		id->nskills++;
		p += n + (p[n] == ',');
	}
	return 0;
}

static int token_identity(const struct token_args *a, struct auth_identity *id, int *ttl)
{
	memset(id, 0, sizeof *id);
	if (!a->role || !(id->role = proto_role_parse(a->role)))
		return usage_fail("token", "--role must be client, counselor or operator");
	if (!a->sub || !proto_sub_valid(a->sub))
		return usage_fail("token", "--sub needs 1-%d of A-Z a-z 0-9 . _ @ -", PROTO_SUB_MAX);
	snprintf(id->sub, sizeof id->sub, "%s", a->sub);
	if (a->name && strlen(a->name) > PROTO_NAME_MAX)
		return usage_fail("token", "--name is longer than %d bytes", PROTO_NAME_MAX);
	if (a->name)
		snprintf(id->name, sizeof id->name, "%s", a->name);
	if (a->skills && token_skills(a->skills, id) != 0)
		return EXIT_USAGE;
	if (config_parse_duration(a->ttl, ttl) != 0 || *ttl <= 0)
		return usage_fail("token", "--ttl '%s' is not a duration such as 30m or 8h", a->ttl);
	return 0;
}

static const struct option token_opts[] = {
	{ "role", required_argument, NULL, O_ROLE },
	{ "sub", required_argument, NULL, O_SUB },
	{ "name", required_argument, NULL, O_NAME },
	{ "skills", required_argument, NULL, O_SKILLS },
	{ "ttl", required_argument, NULL, O_TTL },
	{ "config", required_argument, NULL, O_CONFIG },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

static int token_args_parse(int argc, char **argv, struct token_args *a)
{
	int c;
	a->ttl = DEFAULT_TTL;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", token_opts, NULL)) != -1) {
		switch (c) {
		case 'h': usage_token(stdout); return -1;
		case O_ROLE: a->role = optarg; break;
		case O_SUB: a->sub = optarg; break;
		case O_NAME: a->name = optarg; break;
		case O_SKILLS: a->skills = optarg; break;
		case O_TTL: a->ttl = optarg; break;
		case O_CONFIG: a->config = optarg; break;
		default: return bad_option("token", c, argv);
		}
	}
	if (optind < argc)
		return usage_fail("token", "unexpected argument '%s'", argv[optind]);
	return 0;
}

static int main_token(int argc, char **argv)
{
	struct token_args a = { 0 };
	struct auth_identity id;
	int ttl, rc = token_args_parse(argc, argv, &a);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	if ((rc = token_identity(&a, &id, &ttl)) != 0)
		return rc;
	struct config cfg;
	char err[CONFIG_ERR_MAX];
	config_defaults(&cfg);
	if (a.config && config_load_file(&cfg, a.config, err, sizeof err) != 0)
		return usage_fail("token", "%s", err);
	const char *secret = config_token_secret(&cfg);
	if (!secret || !*secret)
		return usage_fail("token", "%s sets no token-secret (needed outside dev mode)", a.config);
	char tok[PROTO_TOKEN_MAX + 1];
	if (auth_mint(&id, secret, (int64_t)time(NULL), ttl, tok, sizeof tok) != 0)
		return usage_fail("token", "cannot mint a token for this identity");
	printf("%s\n", tok);
	return fflush(stdout) == 0 ? 0 : EXIT_FAIL;
}

/* ---- the connecting subcommands ---------------------------------------------- */

static const struct option conn_opts[] = {
	{ "url", required_argument, NULL, O_URL },
	{ "token", required_argument, NULL, O_TOKEN },
	{ "topic", required_argument, NULL, O_TOPIC },
	{ "mode", required_argument, NULL, O_MODE },
	{ "json", no_argument, NULL, O_JSON },
	{ "available", no_argument, NULL, O_AVAILABLE },
	{ "ca", required_argument, NULL, O_CA },
	{ "insecure", no_argument, NULL, O_INSECURE },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 }
};

/* Options that belong to one role only are refused elsewhere, so a typo
 * like `earshot counselor --topic grief` is not silently ignored. */
static int conn_check(const char *sub, int client_only, int counselor_only)
{
	if (client_only && app.role != ROLE_CLIENT)
		return usage_fail(sub, "--topic and --mode are for 'earshot client'");
	if (counselor_only && app.role != ROLE_COUNSELOR)
		return usage_fail(sub, "--available is for 'earshot counselor'");
	if (app.role != ROLE_CLIENT && (!app.token || !*app.token))
		return usage_fail(sub, "needs --token (mint one with 'earshot token --role %s --sub ID')",
		                  sub);
	if (app.token && strlen(app.token) > PROTO_TOKEN_MAX)
		return usage_fail(sub, "the token is longer than %d bytes", PROTO_TOKEN_MAX);
	if (app.token && !*app.token)
		app.token = NULL;
	if (strncmp(app.url, "ws://", 5) != 0 && strncmp(app.url, "wss://", 6) != 0)
		return usage_fail(sub, "--url must start with ws:// or wss://, not '%s'", app.url);
	if (!proto_topic_valid(app.topic))
		return usage_fail(sub, "--topic '%s' is not a topic (1-%d of a-z 0-9 _ -)", app.topic,
		                  PROTO_TOPIC_MAX);
	return 0;
}

static int conn_args_parse(int argc, char **argv)
{
	const char *sub = argv[0];
	int c, client_only = 0, counselor_only = 0;
	app.url = DEFAULT_URL;
	app.topic = "general";
	app.mode = MODE_TEXT;
	app.token = getenv("EARSHOT_TOKEN");
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", conn_opts, NULL)) != -1) {
		switch (c) {
		case 'h': usage_role(stdout, app.role); return -1;
		case O_URL: app.url = optarg; break;
		case O_TOKEN: app.token = optarg; break;
		case O_TOPIC: app.topic = optarg; client_only = 1; break;
		case O_MODE:
			client_only = 1;
			if (!(app.mode = proto_mode_parse(optarg)))
				return usage_fail(sub, "--mode must be text or voice, not '%s'", optarg);
			break;
		case O_JSON: app.json = 1; break;
		case O_AVAILABLE: app.go_available = 1; counselor_only = 1; break;
		case O_CA: app.tls.ca_file = optarg; break;
		case O_INSECURE: app.tls.insecure = 1; break;
		default: return bad_option(sub, c, argv);
		}
	}
	if (optind < argc)
		return usage_fail(sub, "unexpected argument '%s'", argv[optind]);
	return conn_check(sub, client_only, counselor_only);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage_main(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		usage_main(stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0) {
		printf("earshot %s (protocol %s)\n", EARSHOT_VERSION, PROTO_SUBPROTOCOL);
		return 0;
	}
	if (strcmp(cmd, "token") == 0)
		return main_token(argc - 1, argv + 1);
	app.role = proto_role_parse(cmd);
	if (app.role == ROLE_NONE)
		return usage_fail(NULL, "unknown subcommand '%s'", cmd);
	int rc = conn_args_parse(argc - 1, argv + 1);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	return run_console();
}
