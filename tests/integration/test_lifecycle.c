/* test_lifecycle.c - the process and the people around it: disconnects in
 * the queue and in session, missed offers, many peers at once in FIFO
 * order, SIGTERM, the loopback promise, refused configurations, TLS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define T H_TIMEOUT_MS

static const struct proto_msg *expect(struct h_peer *p, enum proto_type t, int ms)
{
	const struct proto_msg *m = h_wait(p, t, ms);
	if (!m)
		fail_msg("expected '%s'", proto_type_name(t));
	return m;
}

static struct h_peer *counselor(const struct h_server *s, const char *sub, int available)
{
	struct h_peer *k = h_join(s, sub, ROLE_COUNSELOR, h_token(ROLE_COUNSELOR, sub, sub, NULL, 600));
	assert_non_null(k);
	if (available) {
		h_send_json(k, "{\"type\":\"set_state\",\"state\":\"available\"}");
		assert_int_equal(expect(k, PT_STATE, T)->state, ST_AVAILABLE);
	}
	return k;
}

static struct h_peer *waiting_client(const struct h_server *s, const char *name)
{
	struct h_peer *c = h_join(s, name, ROLE_CLIENT, NULL);
	assert_non_null(c);
	h_send_json(c, "{\"type\":\"talk_now\",\"topic\":\"general\",\"mode\":\"text\"}");
	expect(c, PT_QUEUE, T);
	return c;
}

/* Counselor `k` accepts the offer ringing now; client `c` is in session. */
static void take_offer(struct h_peer *k, struct h_peer *c)
{
	const struct proto_msg *o = expect(k, PT_OFFER, T);
	char acc[80];
	snprintf(acc, sizeof acc, "{\"type\":\"accept\",\"offer_id\":%lld}", (long long)o->offer_id);
	h_send_json(k, acc);
	expect(c, PT_SESSION_START, T);
	expect(k, PT_SESSION_START, T);
}

/* /stats holds every string given (NULL-terminated) within the timeout:
 * with Redis the figures are refreshed four times a second, not at once. */
static void stats_has(int port, ...)
{
	char body[4096] = "";
	for (int tries = 0; tries < 200; tries++) {
		assert_int_equal(h_http_get(port, "/stats", body, sizeof body), 200);
		va_list ap;
		va_start(ap, port);
		const char *want;
		int all = 1;
		while ((want = va_arg(ap, const char *)) != NULL)
			all &= strstr(body, want) != NULL;
		va_end(ap);
		if (all)
			return;
		h_pump(25);
	}
	fail_msg("/stats never had what was expected; last: %s", body);
}

static void test_disconnects(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, NULL), 0);

	/* Leaving the queue by closing the app: gone from the queue, counted
	 * as abandoned, and the person behind moves up. */
	struct h_peer *c1 = waiting_client(&s, "c1");
	struct h_peer *c2 = waiting_client(&s, "c2");
	h_peer_free(c1);
	const struct proto_msg *q;
	do
		q = expect(c2, PT_QUEUE, T);
	while (q->position != 1);
	stats_has(s.port, "\"queue\":1", "\"abandoned\":1", NULL);

	/* A client dropping out of a session ends it for the counselor. */
	struct h_peer *k = counselor(&s, "kim", 1);
	take_offer(k, c2);
	h_peer_free(c2);
	assert_string_equal(expect(k, PT_SESSION_END, T)->reason, "peer_left");
	assert_int_equal(expect(k, PT_STATE, T)->state, ST_WRAPUP);

	/* A counselor dropping out ends it for the client, who may rate. */
	h_send_json(k, "{\"type\":\"set_state\",\"state\":\"available\"}");
	struct h_peer *c3 = waiting_client(&s, "c3");
	take_offer(k, c3);
	h_peer_free(k);
	const struct proto_msg *e = expect(c3, PT_SESSION_END, T);
	assert_string_equal(e->reason, "peer_left");
	assert_true(strlen(e->referral) > 0);
	h_send_json(c3, "{\"type\":\"rate\",\"score\":3}");
	expect(c3, PT_RATED, T);

	/* A counselor dropping while an offer rings: the client stays first. */
	struct h_peer *k2 = counselor(&s, "ken", 1);
	h_send_json(c3, "{\"type\":\"talk_now\",\"topic\":\"general\",\"mode\":\"text\"}");
	expect(k2, PT_OFFER, T);
	h_peer_free(k2);
	struct h_peer *k3 = counselor(&s, "kay", 1);
	expect(k3, PT_OFFER, T);
	stats_has(s.port, "\"queue\":1", NULL);
	h_peer_free(c3);
	assert_string_equal(expect(k3, PT_OFFER_GONE, T)->reason, "client_left");
	h_peer_free(k3);
	assert_int_equal(h_server_stop(&s), 0);
}

static void test_missed_offers(void **state)
{
	(void)state;
	struct h_server s;
	const char *const args[] = { "--ring-timeout", "5", "--max-missed-offers", "2", NULL };
	assert_int_equal(h_server_start(&s, args), 0);
	struct h_peer *k = counselor(&s, "sleepy", 1);
	struct h_peer *c = waiting_client(&s, "patient");
	/* Two offers time out in a row: the counselor is set away, told why. */
	expect(k, PT_OFFER, T);
	assert_string_equal(expect(k, PT_OFFER_GONE, 7000)->reason, "timeout");
	expect(k, PT_OFFER, T);
	assert_string_equal(expect(k, PT_OFFER_GONE, 7000)->reason, "timeout");
	const struct proto_msg *st;
	do
		st = expect(k, PT_STATE, T);
	while (st->state != ST_AWAY);
	assert_string_equal(st->reason, "missed_offers");
	/* The client never lost their place. */
	stats_has(s.port, "\"queue\":1", "\"away\":1", NULL);
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&s), 0);
}

/* The position of `c` once it settles at `want` (positions move as others
 * join); fails after the timeout. */
static void position_becomes(struct h_peer *c, uint32_t want)
{
	for (;;) {
		const struct proto_msg *q = expect(c, PT_QUEUE, T);
		if (q->position == want)
			return;
	}
}

/* Someone who may not be safe goes ahead of everyone waiting, and the
 * counselor's offer says so. */
static void test_crisis_first(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, NULL), 0);
	struct h_peer *c1 = waiting_client(&s, "calm-1");
	struct h_peer *c2 = waiting_client(&s, "calm-2");
	struct h_peer *urgent = h_join(&s, "urgent", ROLE_CLIENT, NULL);
	h_send_json(urgent, "{\"type\":\"talk_now\",\"topic\":\"general\",\"mode\":\"text\","
	                    "\"crisis\":true}");
	position_becomes(urgent, 1);
	position_becomes(c1, 2);
	position_becomes(c2, 3);
	struct h_peer *k = counselor(&s, "kai", 1);
	const struct proto_msg *o = expect(k, PT_OFFER, T);
	assert_int_equal(o->crisis, 1);
	char acc[80];
	snprintf(acc, sizeof acc, "{\"type\":\"accept\",\"offer_id\":%lld}", (long long)o->offer_id);
	h_send_json(k, acc);
	expect(urgent, PT_SESSION_START, T);
	position_becomes(c1, 1);
	h_peer_free(urgent);
	h_peer_free(c1);
	h_peer_free(c2);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&s), 0);
}

/* 12 clients, 4 counselors who accept everything at once and end each
 * session right away: everyone is served exactly once, in arrival order. */
static void test_many_fifo(void **state)
{
	(void)state;
	enum { NC = 12, NK = 4 };
	struct h_server s;
	const char *const args[] = { "--wrapup", "0", NULL };
	assert_int_equal(h_server_start(&s, args), 0);
	struct h_peer *cl[NC], *ks[NK];
	for (int i = 0; i < NC; i++) {
		char name[16];
		snprintf(name, sizeof name, "c%02d", i);
		cl[i] = waiting_client(&s, name);
	}
	char sub[16];
	for (int i = 0; i < NK; i++) {
		snprintf(sub, sizeof sub, "k%d", i);
		ks[i] = counselor(&s, sub, 1);
	}
	int served_order[NC], nserved = 0;
	while (nserved < NC) {
		int progressed = 0;
		for (int i = 0; i < NK; i++) {
			const struct proto_msg *o = h_wait(ks[i], PT_OFFER, 50);
			if (!o)
				continue;
			char acc[80];
			snprintf(acc, sizeof acc, "{\"type\":\"accept\",\"offer_id\":%lld}",
			         (long long)o->offer_id);
			h_send_json(ks[i], acc);
			expect(ks[i], PT_SESSION_START, T);
			/* Which client got it: the one whose session started. */
			int who = -1;
			for (int j = 0; j < NC && who < 0; j++)
				if (h_wait(cl[j], PT_SESSION_START, 0))
					who = j;
			for (int j = 0; who < 0 && j < 100; j++) {
				h_pump(10);
				for (int c = 0; c < NC && who < 0; c++)
					if (h_wait(cl[c], PT_SESSION_START, 0))
						who = c;
			}
			assert_true(who >= 0);
			served_order[nserved++] = who;
			h_send_json(ks[i], "{\"type\":\"end\"}");
			expect(ks[i], PT_SESSION_END, T);
			progressed = 1;
		}
		if (!progressed)
			h_pump(20);
	}
	for (int i = 0; i < NC; i++)
		assert_int_equal(served_order[i], i);
	stats_has(s.port, "\"served\":12", "\"queue\":0", NULL);
	for (int i = 0; i < NC; i++)
		h_peer_free(cl[i]);
	for (int i = 0; i < NK; i++)
		h_peer_free(ks[i]);
	assert_int_equal(h_server_stop(&s), 0);
}

static void test_sigterm(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, NULL), 0);
	struct h_peer *k = counselor(&s, "night", 1);
	struct h_peer *c = waiting_client(&s, "late");
	take_offer(k, c);
	struct h_peer *w = waiting_client(&s, "waiting");
	/* Everyone is told, the session ends with a reason, and the process
	 * exits cleanly within the shutdown grace. */
	assert_int_equal(h_server_stop(&s), 0);
	/* What the server sent before exiting may still sit in our sockets. */
	assert_string_equal(expect(c, PT_SESSION_END, T)->reason, "shutdown");
	assert_string_equal(expect(k, PT_SESSION_END, T)->reason, "shutdown");
	assert_string_equal(expect(c, PT_GOING_AWAY, T)->reason, "shutdown");
	expect(k, PT_GOING_AWAY, T);
	expect(w, PT_GOING_AWAY, T);
	assert_int_equal(h_wait_closed(w, T), 1001);
	h_peer_free(c);
	h_peer_free(k);
	h_peer_free(w);
}

/* The listening socket is on 127.0.0.1 only (lws 4.1.6 binds every
 * interface when IPv6 is on): read /proc/net/tcp{,6} for LISTEN sockets
 * on our port. */
static void test_loopback_only(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, NULL), 0);
	int found_lo = 0, found_other = 0;
	const char *files[] = { "/proc/net/tcp", "/proc/net/tcp6" };
	for (int f = 0; f < 2; f++) {
		FILE *fp = fopen(files[f], "r");
		if (!fp)
			continue;
		char line[512], local[64];
		unsigned st;
		while (fgets(line, sizeof line, fp)) {
			if (sscanf(line, " %*d: %63s %*s %x", local, &st) != 2 || st != 0x0A)
				continue;
			char *colon = strrchr(local, ':');
			if (!colon || (int)strtol(colon + 1, NULL, 16) != s.port)
				continue;
			*colon = '\0';
			if (f == 0 && strcmp(local, "0100007F") == 0)
				found_lo = 1;
			else
				found_other = 1;
		}
		fclose(fp);
	}
	assert_int_equal(found_lo, 1);
	assert_int_equal(found_other, 0);
	assert_int_equal(h_server_stop(&s), 0);
}

/* Run earshotd with `args`, return its exit status and first output line. */
static int run_daemon(const char *const *args, char *out, size_t cap)
{
	const char *bin = getenv("EARSHOTD") ? getenv("EARSHOTD") : "build/earshotd";
	char cmd[1024];
	int n = snprintf(cmd, sizeof cmd, "%s", bin);
	for (int i = 0; args[i]; i++)
		n += snprintf(cmd + n, sizeof cmd - (size_t)n, " '%s'", args[i]);
	snprintf(cmd + n, sizeof cmd - (size_t)n, " 2>&1");
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	out[0] = '\0';
	if (!fgets(out, (int)cap, p))
		out[0] = '\0';
	char sink[512];
	while (fgets(sink, sizeof sink, p))
		;
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_refused_configs(void **state)
{
	(void)state;
	char out[512];
	const char *const public_plain[] = { "--listen", "0.0.0.0", "--dev-mode", "no",
		"--token-secret", "0123456789abcdef0123456789abcdef", "--port", "1", NULL };
	assert_int_equal(run_daemon(public_plain, out, sizeof out), 2);
	assert_non_null(strstr(out, "'0.0.0.0' is not loopback"));
	const char *const long_slot[] = { "--slot-length", "45m", NULL };
	assert_int_equal(run_daemon(long_slot, out, sizeof out), 2);
	assert_non_null(strstr(out, "'45m'"));
	const char *const bad_file[] = { "--config", "/nonexistent/earshot.conf", NULL };
	assert_int_equal(run_daemon(bad_file, out, sizeof out), 2);
	assert_non_null(strstr(out, "/nonexistent/earshot.conf"));
	const char *const help[] = { "--help", NULL };
	assert_int_equal(run_daemon(help, out, sizeof out), 0);
	assert_non_null(strstr(out, "usage: earshotd"));
}

static void test_tls(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start_tls(&s, NULL), 0);
	struct h_peer *k = counselor(&s, "secure", 1);
	struct h_peer *c = waiting_client(&s, "secure-client");
	take_offer(k, c);
	h_send_json(c, "{\"type\":\"msg\",\"id\":1,\"text\":\"over TLS\"}");
	assert_string_equal(expect(k, PT_MSG, T)->text, "over TLS");
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_disconnects),
		cmocka_unit_test(test_missed_offers),
		cmocka_unit_test(test_crisis_first),
		cmocka_unit_test(test_many_fifo),
		cmocka_unit_test(test_sigterm),
		cmocka_unit_test(test_loopback_only),
		cmocka_unit_test(test_refused_configs),
		cmocka_unit_test(test_tls),
	};
	return cmocka_run_group_tests(tests, h_group_setup, h_group_teardown);
}
