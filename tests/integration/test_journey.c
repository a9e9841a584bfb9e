/* test_journey.c - the whole journey through the real earshotd: clients
 * wait and see their place, a counselor declines, the client is re-offered,
 * sessions run with chat both ways, warnings, the slot ends, goodbye,
 * wrap-up, rating, and the operator's numbers follow every step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "harness.h"

#define T H_TIMEOUT_MS

/* Session clocks 200x: a 20-minute slot lasts 6 s, the 5- and 1-minute
 * warnings come 1.5 s and 0.3 s before its end, the goodbye grace is
 * 150 ms and the wrap-up 300 ms. Frames up to 32 KiB carry the longest
 * fully escaped chat text. */
static const char *const fast[] = { "--time-scale", "200", "--log-level", "debug",
	                             "--max-message-bytes", "32768", NULL };

static struct h_server srv;

static int setup(void **state)
{
	(void)state;
	h_init();
	return h_server_start(&srv, fast);
}

static int teardown(void **state)
{
	(void)state;
	int rc = h_server_stop(&srv);
	h_fini();
	return rc == 0 ? 0 : -1;
}

static const struct proto_msg *expect(struct h_peer *p, enum proto_type t)
{
	const struct proto_msg *m = h_wait(p, t, T);
	if (!m)
		fail_msg("expected '%s'", proto_type_name(t));
	return m;
}

/* The latest stats pushed to the operator, waiting for one that
 * satisfies `ok` (stats arrive throttled, so intermediate ones vary). */
static struct proto_stats stats_until(struct h_peer *op, int (*ok)(const struct proto_stats *))
{
	for (;;) {
		const struct proto_msg *m = h_wait(op, PT_STATS, T);
		if (!m)
			fail_msg("operator stats never reached the expected values");
		if (ok(&m->stats))
			return m->stats;
	}
}

static int queue_two(const struct proto_stats *s) { return s->queue == 2 && s->away == 2; }
static int two_sessions(const struct proto_stats *s)
{
	return s->sessions == 2 && s->queue == 0 && s->busy == 2 && s->served == 2;
}
static int all_done(const struct proto_stats *s)
{
	return s->sessions == 0 && s->busy == 0 && s->ratings_count == 1 &&
	       s->ratings_mean == 5.0 && s->available == 2;
}

static void send_chat(struct h_peer *p, int64_t id, const char *text)
{
	struct proto_msg m = { .type = PT_MSG, .id = id };
	snprintf(m.text, sizeof m.text, "%s", text);
	assert_int_equal(h_send(p, &m), 0);
}

static void test_full_journey(void **state)
{
	(void)state;
	struct h_peer *op = h_join(&srv, "operator", ROLE_OPERATOR,
	                           h_token(ROLE_OPERATOR, "ops", "Ops", NULL, 600));
	assert_non_null(op);
	struct proto_msg sub = { .type = PT_SUBSCRIBE };
	h_send(op, &sub);
	assert_int_equal(expect(op, PT_STATS)->stats.queue, 0);

	struct h_peer *a = h_join(&srv, "alice", ROLE_COUNSELOR,
	                          h_token(ROLE_COUNSELOR, "alice", "Alice", "grief", 600));
	struct h_peer *b = h_join(&srv, "bob", ROLE_COUNSELOR,
	                          h_token(ROLE_COUNSELOR, "bob", "Bob", "anxiety", 600));
	assert_non_null(a);
	assert_non_null(b);

	/* Two people wait; nobody is available yet. */
	struct h_peer *c1 = h_join(&srv, "c1", ROLE_CLIENT, NULL);
	struct h_peer *c2 = h_join(&srv, "c2", ROLE_CLIENT, NULL);
	struct proto_msg talk = { .type = PT_TALK_NOW, .mode = MODE_TEXT };
	strcpy(talk.topic, "anxiety");
	h_send(c1, &talk);
	const struct proto_msg *q = expect(c1, PT_QUEUE);
	assert_int_equal(q->position, 1);
	assert_int_equal(q->counselors, 0);
	strcpy(talk.topic, "grief");
	h_send(c2, &talk);
	q = expect(c2, PT_QUEUE);
	assert_int_equal(q->position, 2);
	assert_true(q->wait_s > 0);
	stats_until(op, queue_two);

	/* Alice goes available first (idle longest): she is offered c1. */
	struct proto_msg avail = { .type = PT_SET_STATE, .state = ST_AVAILABLE };
	h_send(a, &avail);
	assert_int_equal(expect(a, PT_STATE)->state, ST_AVAILABLE);
	const struct proto_msg *o = expect(a, PT_OFFER);
	int64_t offer1 = o->offer_id;
	assert_string_equal(o->topic, "anxiety");
	assert_int_equal(o->mode, MODE_TEXT);
	assert_int_equal(o->ring_s, 20);

	/* She declines: c1 keeps their place; Alice is spared c1 and gets c2. */
	struct proto_msg dec = { .type = PT_DECLINE, .offer_id = offer1 };
	h_send(a, &dec);
	o = expect(a, PT_OFFER);
	assert_string_equal(o->topic, "grief");
	int64_t offer2 = o->offer_id;
	assert_true(offer2 != offer1);

	/* Bob goes available: c1 is re-offered to him, and he accepts. */
	h_send(b, &avail);
	o = expect(b, PT_OFFER);
	assert_string_equal(o->topic, "anxiety");
	struct proto_msg acc = { .type = PT_ACCEPT, .offer_id = o->offer_id };
	h_send(b, &acc);
	const struct proto_msg *ss = expect(c1, PT_SESSION_START);
	assert_int_equal(ss->remaining_s, 1200);
	assert_int_equal(ss->slot_s, 1200);
	assert_string_equal(ss->name, "Bob");
	char sid[PROTO_ID_MAX + 1];
	strcpy(sid, ss->session_id);
	ss = expect(b, PT_SESSION_START);
	assert_string_equal(ss->session_id, sid);
	assert_string_equal(ss->topic, "anxiety");

	/* c2 moved up to first place while Alice's offer rings (earlier
	 * pushes told c2 how many counselors came online). */
	do
		q = expect(c2, PT_QUEUE);
	while (q->position != 1);
	assert_int_equal(q->wait_s, 0);
	acc.offer_id = offer2;
	h_send(a, &acc);
	expect(c2, PT_SESSION_START);
	expect(a, PT_SESSION_START);
	stats_until(op, two_sessions);

	/* Chat both ways, in order, with acknowledgements. */
	char text[32];
	for (int i = 1; i <= 5; i++) {
		snprintf(text, sizeof text, "line %d", i);
		send_chat(c1, i * 10, text);
	}
	for (int i = 1; i <= 5; i++) {
		const struct proto_msg *m = expect(b, PT_MSG);
		snprintf(text, sizeof text, "line %d", i);
		assert_int_equal(m->seq, i);
		assert_string_equal(m->text, text);
	}
	for (int i = 1; i <= 5; i++) {
		const struct proto_msg *m = expect(c1, PT_SENT);
		assert_int_equal(m->id, i * 10);
		assert_int_equal(m->seq, i);
	}
	struct proto_msg ack = { .type = PT_ACK, .seq = 5 };
	h_send(b, &ack);
	assert_int_equal(expect(c1, PT_DELIVERED)->seq, 5);
	struct proto_msg typing = { .type = PT_TYPING, .on = 1 };
	h_send(b, &typing);
	assert_int_equal(expect(c1, PT_TYPING)->on, 1);
	send_chat(b, 1, "I'm here. Take your time.");
	const struct proto_msg *m = expect(c1, PT_MSG);
	assert_int_equal(m->seq, 1);
	assert_string_equal(m->text, "I'm here. Take your time.");

	/* The longest text, every byte of which JSON must escape, still
	 * fits through both encoders. */
	struct proto_msg big = { .type = PT_MSG, .id = 99 };
	memset(big.text, '\x01', 4000);
	assert_int_equal(h_send(c2, &big), 0);
	m = expect(a, PT_MSG);
	assert_int_equal(strlen(m->text), 4000);
	assert_int_equal(m->text[3999], '\x01');

	/* c2 ends early: both sides are told who ended it. */
	struct proto_msg end = { .type = PT_END };
	h_send(c2, &end);
	assert_string_equal(expect(c2, PT_SESSION_END)->reason, "ended_by_client");
	assert_string_equal(expect(a, PT_SESSION_END)->reason, "ended_by_client");
	assert_int_equal(expect(a, PT_STATE)->state, ST_WRAPUP);

	/* c1's slot runs out: warnings at 5 and 1 minutes, then goodbye. */
	assert_int_equal(expect(c1, PT_SLOT_WARNING)->remaining_s, 300);
	assert_int_equal(expect(b, PT_SLOT_WARNING)->remaining_s, 300);
	assert_int_equal(expect(c1, PT_SLOT_WARNING)->remaining_s, 60);
	assert_int_equal(expect(b, PT_SLOT_WARNING)->remaining_s, 60);
	assert_int_equal(expect(c1, PT_SLOT_OVER)->grace_s, 30);
	expect(b, PT_SLOT_OVER);
	send_chat(c1, 60, "thank you, bye");   /* goodbyes still pass */
	assert_string_equal(expect(b, PT_MSG)->text, "thank you, bye");
	const struct proto_msg *e = expect(c1, PT_SESSION_END);
	assert_string_equal(e->reason, "slot_over");
	assert_string_equal(e->session_id, sid);
	assert_true(strlen(e->referral) > 0);
	e = expect(b, PT_SESSION_END);
	assert_string_equal(e->referral, "");

	/* Chat after the end is refused. */
	send_chat(c1, 70, "hello?");
	assert_string_equal(h_wait_error(c1, T), "wrong_state");

	/* Wrap-up, then available again without anyone touching anything. */
	const struct proto_msg *st = expect(b, PT_STATE);
	assert_int_equal(st->state, ST_WRAPUP);
	assert_int_equal(st->wrapup_s, 60);
	st = expect(b, PT_STATE);
	assert_int_equal(st->state, ST_AVAILABLE);
	assert_string_equal(st->reason, "wrapup_done");

	/* Rating, once. */
	struct proto_msg rate = { .type = PT_RATE, .score = 5 };
	strcpy(rate.comment, "felt heard");
	h_send(c1, &rate);
	expect(c1, PT_RATED);
	h_send(c1, &rate);
	assert_string_equal(h_wait_error(c1, T), "wrong_state");
	stats_until(op, all_done);

	/* The same numbers over HTTP. */
	char body[4096];
	assert_int_equal(h_http_get(srv.port, "/stats", body, sizeof body), 200);
	assert_non_null(strstr(body, "\"served\":2"));
	assert_non_null(strstr(body, "\"sessions\":0"));
	assert_int_equal(h_http_get(srv.port, "/metrics", body, sizeof body), 200);
	assert_non_null(strstr(body, "earshot_sessions_served_total 2"));
	assert_non_null(strstr(body, "earshot_chat_relayed_total 8"));

	h_peer_free(c1);
	h_peer_free(c2);
	h_peer_free(a);
	h_peer_free(b);
	h_peer_free(op);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_journey),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
