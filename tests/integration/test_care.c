/* test_care.c - the matching policy through the real server: a counselor
 * with the person's topic among their skills is preferred, and waited for
 * only up to topic-wait; a returning person who asks for their previous
 * counselor gets them, or waits for them up to previous-wait, and the
 * counselor sees they talked before; the estimate while held is honest;
 * the pre-chat crisis question reaches the person's page. Runs on both
 * backends (the Makefile's REDIS_PARITY). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "harness.h"

#define T H_TIMEOUT_MS
#define HOLD_S 2                 /* topic-wait and previous-wait here */

static const char *const ARGS[] = { "--wrapup", "0", "--topic-wait", "2", "--previous-wait", "2",
	                            NULL };

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const struct proto_msg *expect(struct h_peer *p, enum proto_type t)
{
	const struct proto_msg *m = h_wait(p, t, T);
	if (!m)
		fail_msg("expected '%s'", proto_type_name(t));
	return m;
}

/* A counselor `sub` with `skills` (NULL none), available. */
static struct h_peer *counselor(const struct h_server *s, const char *sub, const char *skills)
{
	struct h_peer *k = h_join(s, sub, ROLE_COUNSELOR,
	                          h_token(ROLE_COUNSELOR, sub, sub, skills, 600));
	assert_non_null(k);
	h_send_json(k, "{\"type\":\"set_state\",\"state\":\"available\"}");
	assert_int_equal(expect(k, PT_STATE)->state, ST_AVAILABLE);
	return k;
}

/* A person with a stable `sub` (a token, as the app gives), joined. */
static struct h_peer *person(const struct h_server *s, const char *sub)
{
	struct h_peer *c = h_join(s, sub, ROLE_CLIENT, h_token(ROLE_CLIENT, sub, "", NULL, 600));
	assert_non_null(c);
	return c;
}

static void talk_now(struct h_peer *c, const char *topic, int previous)
{
	char m[160];
	snprintf(m, sizeof m, "{\"type\":\"talk_now\",\"topic\":\"%s\",\"mode\":\"text\"%s}", topic,
	         previous ? ",\"previous\":true" : "");
	h_send_json(c, m);
}

static void accept_offer(struct h_peer *k, const struct proto_msg *o, struct h_peer *c)
{
	char acc[80];
	snprintf(acc, sizeof acc, "{\"type\":\"accept\",\"offer_id\":%lld}", (long long)o->offer_id);
	h_send_json(k, acc);
	expect(c, PT_SESSION_START);
	expect(k, PT_SESSION_START);
}

/* `k` takes the offer that rings now and ends the session at once. */
static void session_and_end(struct h_peer *k, struct h_peer *c)
{
	accept_offer(k, expect(k, PT_OFFER), c);
	h_send_json(k, "{\"type\":\"end\"}");
	expect(c, PT_SESSION_END);
	expect(k, PT_SESSION_END);
	assert_int_equal(expect(k, PT_STATE)->state, ST_AVAILABLE);   /* no wrap-up */
}

/* Nothing of `type` reaches `p` for `ms`. */
static void quiet(struct h_peer *p, enum proto_type type, int ms)
{
	const struct proto_msg *m = h_wait(p, type, ms);
	if (m)
		fail_msg("unexpected '%s'", proto_type_name(type));
}

/* The skilled counselor gets the person, though another idled longer. */
static void test_topic_prefers_skilled(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, ARGS), 0);
	struct h_peer *gen = counselor(&s, "gen", NULL);
	h_pump(50);
	struct h_peer *gk = counselor(&s, "gk", "anxiety,grief");
	struct h_peer *c = person(&s, "p-grief");
	talk_now(c, "grief", 0);
	const struct proto_msg *o = expect(gk, PT_OFFER);
	assert_string_equal(o->topic, "grief");
	assert_int_equal(o->talked_before, 0);
	/* Someone else's topic: the idle-longest, as ever. */
	struct h_peer *d = person(&s, "p-study");
	talk_now(d, "study", 0);
	assert_string_equal(expect(gen, PT_OFFER)->topic, "study");
	h_peer_free(c);
	h_peer_free(d);
	h_peer_free(gen);
	h_peer_free(gk);
	assert_int_equal(h_server_stop(&s), 0);
}

/* With the only skilled counselor busy, the person waits for them, told
 * so with an estimate no shorter than the wait; after topic-wait anyone
 * free takes them. */
static void test_topic_wait_then_anyone(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, ARGS), 0);
	struct h_peer *gk = counselor(&s, "gk", "grief");
	struct h_peer *first = person(&s, "p-first");
	talk_now(first, "other", 0);
	accept_offer(gk, expect(gk, PT_OFFER), first);
	struct h_peer *gen = counselor(&s, "gen", NULL);
	struct h_peer *c = person(&s, "p-grief");
	int64_t asked = now_ms();
	talk_now(c, "grief", 0);
	const struct proto_msg *q = expect(c, PT_QUEUE);
	while (strcmp(q->waiting_for, "topic") != 0)
		q = expect(c, PT_QUEUE);
	uint32_t estimate = q->wait_s;
	assert_true(estimate >= HOLD_S);
	quiet(gen, PT_OFFER, HOLD_S * 1000 / 2);
	const struct proto_msg *o = h_wait(gen, PT_OFFER, HOLD_S * 1000 + T);
	assert_non_null(o);
	int64_t waited = now_ms() - asked;
	print_message("held for a skilled counselor: waited %lld ms, estimate %u s\n",
	              (long long)waited, estimate);
	assert_true(waited >= HOLD_S * 1000 - 300);
	assert_true(waited <= (int64_t)estimate * 1000 + 1000);
	h_peer_free(c);
	h_peer_free(first);
	h_peer_free(gen);
	h_peer_free(gk);
	assert_int_equal(h_server_stop(&s), 0);
}

/* A returning person asks for the counselor they talked with last: offered
 * to them ahead of the idle-longest, who see they talked before. Without
 * asking, the usual rule, and the counselor still sees it if it is them. */
static void test_previous_counselor(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, ARGS), 0);
	struct h_peer *ann = counselor(&s, "ann", NULL);
	struct h_peer *c = person(&s, "p-return");
	talk_now(c, "general", 0);
	session_and_end(ann, c);
	struct h_peer *bob = counselor(&s, "bob", NULL);   /* idle since before ann's return */
	h_pump(50);
	h_send_json(ann, "{\"type\":\"set_state\",\"state\":\"away\"}");
	expect(ann, PT_STATE);
	h_send_json(ann, "{\"type\":\"set_state\",\"state\":\"available\"}");
	expect(ann, PT_STATE);
	talk_now(c, "general", 1);
	const struct proto_msg *o = expect(ann, PT_OFFER);
	assert_int_equal(o->talked_before, 1);
	quiet(bob, PT_OFFER, 300);
	accept_offer(ann, o, c);
	h_send_json(c, "{\"type\":\"end\"}");
	expect(c, PT_SESSION_END);
	expect(ann, PT_STATE);
	/* Someone else never shows as "talked before". */
	struct h_peer *d = person(&s, "p-new");
	talk_now(d, "general", 1);
	o = expect(bob, PT_OFFER);
	assert_int_equal(o->talked_before, 0);
	h_peer_free(d);
	h_peer_free(c);
	h_peer_free(ann);
	h_peer_free(bob);
	assert_int_equal(h_server_stop(&s), 0);
}

/* The asked-for counselor is busy: the person waits for them (told so)
 * and gets them when they are free; if they stay busy past previous-wait,
 * anyone free takes the person. */
static void test_previous_wait(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, ARGS), 0);
	struct h_peer *ann = counselor(&s, "ann", NULL);
	struct h_peer *c = person(&s, "p-return");
	talk_now(c, "general", 0);
	session_and_end(ann, c);
	struct h_peer *other = person(&s, "p-other");
	talk_now(other, "general", 0);
	accept_offer(ann, expect(ann, PT_OFFER), other);
	struct h_peer *bob = counselor(&s, "bob", NULL);
	talk_now(c, "general", 1);
	const struct proto_msg *q = expect(c, PT_QUEUE);
	while (strcmp(q->waiting_for, "previous") != 0)
		q = expect(c, PT_QUEUE);
	assert_true(q->wait_s >= HOLD_S);
	quiet(bob, PT_OFFER, 500);
	h_send_json(ann, "{\"type\":\"end\"}");                /* ann is free in time */
	const struct proto_msg *o = expect(ann, PT_OFFER);
	assert_int_equal(o->talked_before, 1);
	accept_offer(ann, o, c);
	h_send_json(c, "{\"type\":\"end\"}");
	expect(c, PT_SESSION_END);

	/* Again, with ann busy throughout: bob after previous-wait. */
	h_send_json(bob, "{\"type\":\"set_state\",\"state\":\"away\"}");
	expect(bob, PT_STATE);
	struct h_peer *third = person(&s, "p-third");
	talk_now(third, "general", 0);
	accept_offer(ann, expect(ann, PT_OFFER), third);
	h_send_json(bob, "{\"type\":\"set_state\",\"state\":\"available\"}");
	expect(bob, PT_STATE);
	int64_t asked = now_ms();
	talk_now(c, "general", 1);
	o = h_wait(bob, PT_OFFER, HOLD_S * 1000 + T);
	assert_non_null(o);
	assert_int_equal(o->talked_before, 0);
	assert_true(now_ms() - asked >= HOLD_S * 1000 - 300);
	h_peer_free(c);
	h_peer_free(other);
	h_peer_free(third);
	h_peer_free(ann);
	h_peer_free(bob);
	assert_int_equal(h_server_stop(&s), 0);
}

/* The configured pre-chat question reaches the person's welcome, not the
 * counselor's; none configured, none sent. */
static void test_crisis_question(void **state)
{
	(void)state;
	struct h_server s;
	const char *const args[] = { "--crisis-question", "Are you safe right now?", NULL };
	assert_int_equal(h_server_start(&s, args), 0);
	struct h_peer *c = h_connect(&s, "asked");
	assert_non_null(c);
	h_send_json(c, "{\"type\":\"hello\",\"role\":\"client\"}");
	assert_string_equal(expect(c, PT_WELCOME)->question, "Are you safe right now?");
	struct h_peer *k = h_connect(&s, "counselor");
	char hello[1024];
	snprintf(hello, sizeof hello, "{\"type\":\"hello\",\"role\":\"counselor\",\"token\":\"%s\"}",
	         h_token(ROLE_COUNSELOR, "kim", "Kim", NULL, 600));
	h_send_json(k, hello);
	assert_string_equal(expect(k, PT_WELCOME)->question, "");
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&s), 0);

	assert_int_equal(h_server_start(&s, NULL), 0);
	c = h_connect(&s, "not-asked");
	h_send_json(c, "{\"type\":\"hello\",\"role\":\"client\"}");
	assert_string_equal(expect(c, PT_WELCOME)->question, "");
	h_peer_free(c);
	assert_int_equal(h_server_stop(&s), 0);
}

/* GET /stats until it holds `want` (or not, with `present` 0): on Redis the
 * figures are refreshed four times a second. */
static void stats_until(const struct h_server *s, const char *want, int present)
{
	char body[16384];
	for (int i = 0; i < 100; i++) {
		assert_int_equal(h_http_get(s->port, "/stats", body, sizeof body), 200);
		if ((strstr(body, want) != NULL) == present)
			return;
		h_pump(50);
	}
	fail_msg("/stats %s '%s': %s", present ? "never had" : "kept", want, body);
}

/* Either side flags a crisis: both are told (the person with the
 * referral), operators see the session and counselor in stats and
 * metrics, the slot no longer ends it, and after it the counselor gets the
 * longer crisis wrap-up. */
static void test_crisis_in_session(void **state)
{
	(void)state;
	struct h_server s;
	/* A 15-minute slot in 3 s, a 10-minute crisis wrap-up in 2 s. */
	const char *const args[] = { "--time-scale", "300", "--slot-length", "15m",
		                     "--goodbye-grace", "5s", "--wrapup", "0", "--crisis-wrapup",
		                     "10m", NULL };
	assert_int_equal(h_server_start(&s, args), 0);
	struct h_peer *k = counselor(&s, "kim", NULL);
	struct h_peer *c = person(&s, "p-crisis");
	talk_now(c, "general", 0);
	accept_offer(k, expect(k, PT_OFFER), c);
	stats_until(&s, "\"crises\":[]", 1);
	h_send_json(c, "{\"type\":\"crisis\"}");
	const struct proto_msg *m = expect(c, PT_CRISIS);
	assert_string_equal(m->who, "you");
	assert_non_null(strstr(m->referral, "emergency"));
	m = expect(k, PT_CRISIS);
	assert_string_equal(m->who, "peer");
	assert_string_equal(m->referral, "");
	stats_until(&s, "\"counselor\":\"kim\",\"since_s\":", 1);
	char body[16384];
	assert_int_equal(h_http_get(s.port, "/metrics", body, sizeof body), 200);
	assert_non_null(strstr(body, "earshot_crisis_sessions 1\n"));
	assert_non_null(strstr(body, "earshot_crises_flagged_total 1\n"));
	/* Flagged again by the counselor: nothing new. */
	h_send_json(k, "{\"type\":\"crisis\"}");
	/* Well past the slot and its grace: still going, no warning, no end. */
	const struct proto_msg *n;
	int64_t until = now_ms() + 4500;
	while ((n = h_next(c, (int)(until - now_ms()))) != NULL && now_ms() < until)
		if (n->type == PT_SESSION_END || n->type == PT_SLOT_OVER || n->type == PT_CRISIS)
			fail_msg("unexpected '%s' in a session held open", proto_type_name(n->type));
	h_send_json(c, "{\"type\":\"msg\",\"id\":1,\"text\":\"still here\"}");
	assert_string_equal(expect(k, PT_MSG)->text, "still here");
	h_send_json(k, "{\"type\":\"end\"}");
	assert_string_equal(expect(c, PT_SESSION_END)->reason, "ended_by_counselor");
	m = expect(k, PT_STATE);
	while (m->state == ST_BUSY)
		m = expect(k, PT_STATE);
	assert_int_equal(m->state, ST_WRAPUP);
	assert_int_equal(m->wrapup_s, 600);
	stats_until(&s, "\"crises\":[]", 1);
	/* A session not in crisis still ends with its slot. */
	assert_int_equal(expect(k, PT_STATE)->state, ST_AVAILABLE);   /* after 2 s */
	talk_now(c, "general", 0);
	accept_offer(k, expect(k, PT_OFFER), c);
	assert_int_equal(h_wait(c, PT_SESSION_END, 3000 + T) != NULL, 1);
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&s), 0);
}

/* The next `state` other than busy. */
static const struct proto_msg *next_state(struct h_peer *k)
{
	const struct proto_msg *m = expect(k, PT_STATE);
	while (m->state == ST_BUSY && strcmp(m->reason, "break_next") != 0)
		m = expect(k, PT_STATE);
	return m;
}

/* After shift-sessions sessions the counselor gets no more offers and
 * cannot go available again; someone waiting is not offered to them. */
static void test_shift_limit(void **state)
{
	(void)state;
	struct h_server s;
	const char *const args[] = { "--wrapup", "0", "--shift-sessions", "1", NULL };
	assert_int_equal(h_server_start(&s, args), 0);
	struct h_peer *k = counselor(&s, "kim", NULL);
	struct h_peer *c = person(&s, "p-1");
	talk_now(c, "general", 0);
	accept_offer(k, expect(k, PT_OFFER), c);
	struct h_peer *d = person(&s, "p-2");
	talk_now(d, "general", 0);
	expect(d, PT_QUEUE);
	h_send_json(k, "{\"type\":\"end\"}");
	const struct proto_msg *m = next_state(k);
	assert_int_equal(m->state, ST_AWAY);
	assert_string_equal(m->reason, "shift_over");
	h_send_json(k, "{\"type\":\"set_state\",\"state\":\"available\"}");
	assert_string_equal(h_wait_error(k, T), "shift_over");
	quiet(k, PT_OFFER, 500);
	h_peer_free(c);
	h_peer_free(d);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&s), 0);
}

/* A break: away at once, back by itself when it ends (minutes run 60
 * times faster here); asked for in a session, it starts when the session
 * closes. */
static void test_break(void **state)
{
	(void)state;
	struct h_server s;
	const char *const args[] = { "--time-scale", "60", "--wrapup", "0", NULL };
	assert_int_equal(h_server_start(&s, args), 0);
	struct h_peer *k = counselor(&s, "kim", NULL);
	h_send_json(k, "{\"type\":\"take_break\",\"minutes\":1}");
	const struct proto_msg *m = expect(k, PT_STATE);
	assert_int_equal(m->state, ST_AWAY);
	assert_string_equal(m->reason, "break");
	assert_int_equal(m->break_s, 60);
	struct h_peer *c = person(&s, "p-1");
	talk_now(c, "general", 0);
	quiet(k, PT_OFFER, 300);                        /* on a break: no offers */
	m = h_wait(k, PT_STATE, 1000 + T);              /* back after 1 s */
	assert_non_null(m);
	assert_int_equal(m->state, ST_AVAILABLE);
	assert_string_equal(m->reason, "break_over");
	accept_offer(k, expect(k, PT_OFFER), c);
	h_send_json(k, "{\"type\":\"take_break\",\"minutes\":2}");
	m = next_state(k);
	assert_int_equal(m->state, ST_BUSY);
	assert_string_equal(m->reason, "break_next");
	assert_int_equal(m->break_s, 120);
	h_send_json(c, "{\"type\":\"end\"}");
	m = next_state(k);
	assert_int_equal(m->state, ST_AWAY);
	assert_string_equal(m->reason, "break");
	h_send_json(k, "{\"type\":\"take_break\",\"minutes\":0}");
	assert_string_equal(h_wait_error(k, T), "bad_field");
	h_send_json(k, "{\"type\":\"set_state\",\"state\":\"available\"}");   /* back early */
	assert_int_equal(expect(k, PT_STATE)->state, ST_AVAILABLE);
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&s), 0);
}

/* Referral per topic: a session about grief ends with the grief lines
 * first, then the general ones; another topic gets only the general. */
static void test_topic_referral(void **state)
{
	(void)state;
	struct h_server s;
	const char *const args[] = { "--wrapup", "0", "--topic-referral", "grief: Cruse 0808 808 1677",
		                     NULL };
	assert_int_equal(h_server_start(&s, args), 0);
	struct h_peer *k = counselor(&s, "kim", NULL);
	struct h_peer *c = person(&s, "p-1");
	const char *topics[] = { "grief", "study" };
	for (int i = 0; i < 2; i++) {
		talk_now(c, topics[i], 0);
		accept_offer(k, expect(k, PT_OFFER), c);
		h_send_json(k, "{\"type\":\"end\"}");
		const char *ref = expect(c, PT_SESSION_END)->referral;
		assert_non_null(strstr(ref, "emergency"));
		if (i == 0)
			assert_int_equal(strncmp(ref, "Cruse 0808 808 1677\n", 20), 0);
		else
			assert_null(strstr(ref, "Cruse"));
	}
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topic_prefers_skilled),
		cmocka_unit_test(test_topic_wait_then_anyone),
		cmocka_unit_test(test_previous_counselor),
		cmocka_unit_test(test_previous_wait),
		cmocka_unit_test(test_crisis_question),
		cmocka_unit_test(test_crisis_in_session),
		cmocka_unit_test(test_shift_limit),
		cmocka_unit_test(test_break),
		cmocka_unit_test(test_topic_referral),
	};
	return cmocka_run_group_tests(tests, h_group_setup, h_group_teardown);
}
