/* test_feedback.c - ratings through the real server: sessions with two
 * counselors about two topics are rated; each counselor's `ratings` holds
 * their own figures and comments only, newest first; an operator's holds
 * every counselor's (no comments) and every topic's; clients may not ask;
 * `stats.ratings` is the whole service's. Runs on both backends (the
 * Makefile's REDIS_PARITY). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "harness.h"

#define T H_TIMEOUT_MS

static const char *const ARGS[] = { "--wrapup", "0", NULL };

static const struct proto_msg *expect(struct h_peer *p, enum proto_type t)
{
	const struct proto_msg *m = h_wait(p, t, T);
	if (!m)
		fail_msg("expected '%s'", proto_type_name(t));
	return m;
}

static void state_becomes(struct h_peer *k, enum proto_state st)
{
	while (expect(k, PT_STATE)->state != st)
		;
}

static void set_state(struct h_peer *k, const char *st, enum proto_state want)
{
	char m[80];
	snprintf(m, sizeof m, "{\"type\":\"set_state\",\"state\":\"%s\"}", st);
	h_send_json(k, m);
	state_becomes(k, want);
}

static struct h_peer *join(const struct h_server *s, enum proto_role role, const char *sub)
{
	struct h_peer *p = h_join(s, sub, role, h_token(role, sub, sub, NULL, 600));
	assert_non_null(p);
	return p;
}

/* `k`, the only counselor available, talks with `c` about `topic`; then
 * `c` rates it `score` with `comment` ("" none), and `k` goes away. */
static void rated_session(struct h_peer *k, struct h_peer *c, const char *topic, int score,
                          const char *comment)
{
	char m[400];
	set_state(k, "available", ST_AVAILABLE);
	snprintf(m, sizeof m, "{\"type\":\"talk_now\",\"topic\":\"%s\",\"mode\":\"text\"}", topic);
	h_send_json(c, m);
	snprintf(m, sizeof m, "{\"type\":\"accept\",\"offer_id\":%lld}",
	         (long long)expect(k, PT_OFFER)->offer_id);
	h_send_json(k, m);
	expect(c, PT_SESSION_START);
	expect(k, PT_SESSION_START);
	h_send_json(k, "{\"type\":\"end\"}");
	expect(c, PT_SESSION_END);
	snprintf(m, sizeof m, "{\"type\":\"rate\",\"score\":%d%s%s%s}", score,
	         comment[0] ? ",\"comment\":\"" : "", comment, comment[0] ? "\"" : "");
	h_send_json(c, m);
	expect(c, PT_RATED);
	state_becomes(k, ST_AVAILABLE);
	set_state(k, "away", ST_AWAY);
}

static const struct proto_ratings *ask(struct h_peer *p)
{
	h_send_json(p, "{\"type\":\"ratings\"}");
	return expect(p, PT_RATINGS)->ratings;
}

static void expect_entry(const struct proto_rating *e, const char *name, uint32_t count,
                         double mean, const uint32_t hist[5])
{
	assert_string_equal(e->name, name);
	assert_int_equal(e->count, count);
	if (e->mean != mean)
		fail_msg("%s: mean %.17g, want %.17g", name, e->mean, mean);
	assert_memory_equal(e->hist, hist, sizeof e->hist);
}

static void test_feedback(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, ARGS), 0);
	struct h_peer *ann = join(&s, ROLE_COUNSELOR, "ann");
	struct h_peer *bob = join(&s, ROLE_COUNSELOR, "bob");
	struct h_peer *cat = join(&s, ROLE_COUNSELOR, "cat");   /* never rated */
	struct h_peer *c1 = join(&s, ROLE_CLIENT, "person-1");
	struct h_peer *c2 = join(&s, ROLE_CLIENT, "person-2");
	struct h_peer *op = join(&s, ROLE_OPERATOR, "op");

	rated_session(ann, c1, "grief", 5, "ann listened");
	rated_session(bob, c2, "study", 2, "bob was late");
	rated_session(ann, c1, "study", 4, "second time");
	h_send_json(c1, "{\"type\":\"rate\",\"score\":1}");      /* once only */
	assert_string_equal(h_wait_error(c1, T), "wrong_state");

	/* Each counselor: their own entry and comments, newest first. */
	const struct proto_ratings *r = ask(ann);
	assert_int_equal(r->ncounselors, 1);
	expect_entry(&r->counselors[0], "ann", 2, 4.5, (const uint32_t[5]){ 0, 0, 0, 1, 1 });
	assert_int_equal(r->ncomments, 2);
	assert_string_equal(r->comments[0], "second time");
	assert_string_equal(r->comments[1], "ann listened");
	assert_int_equal(r->ntopics, 0);
	r = ask(bob);
	assert_int_equal(r->ncounselors, 1);
	expect_entry(&r->counselors[0], "bob", 1, 2.0, (const uint32_t[5]){ 0, 1, 0, 0, 0 });
	assert_int_equal(r->ncomments, 1);
	assert_string_equal(r->comments[0], "bob was late");
	r = ask(cat);
	assert_int_equal(r->ncounselors, 1);
	expect_entry(&r->counselors[0], "cat", 0, 0.0, (const uint32_t[5]){ 0 });
	assert_int_equal(r->ncomments, 0);

	/* The operator: every counselor rated, by sub, and every topic; no
	 * comments. */
	r = ask(op);
	assert_int_equal(r->ncounselors, 2);
	expect_entry(&r->counselors[0], "ann", 2, 4.5, (const uint32_t[5]){ 0, 0, 0, 1, 1 });
	expect_entry(&r->counselors[1], "bob", 1, 2.0, (const uint32_t[5]){ 0, 1, 0, 0, 0 });
	assert_int_equal(r->ncomments, 0);
	assert_int_equal(r->ntopics, 2);
	expect_entry(&r->topics[0], "grief", 1, 5.0, (const uint32_t[5]){ 0, 0, 0, 0, 1 });
	expect_entry(&r->topics[1], "study", 2, 3.0, (const uint32_t[5]){ 0, 1, 0, 1, 0 });

	/* A person may not ask. */
	h_send_json(c2, "{\"type\":\"ratings\"}");
	assert_string_equal(h_wait_error(c2, T), "wrong_role");

	/* The service's figures: on Redis they follow within a tick. */
	h_send_json(op, "{\"type\":\"subscribe\"}");
	const struct proto_msg *m;
	while ((m = h_wait(op, PT_STATS, T)) != NULL && m->stats.ratings_count != 3)
		;
	assert_non_null(m);
	assert_true(m->stats.ratings_mean == 11.0 / 3);

	h_peer_free(ann);
	h_peer_free(bob);
	h_peer_free(cat);
	h_peer_free(c1);
	h_peer_free(c2);
	h_peer_free(op);
	assert_int_equal(h_server_stop(&s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_feedback),
	};
	return cmocka_run_group_tests(tests, h_group_setup, h_group_teardown);
}
