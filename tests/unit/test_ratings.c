/* test_ratings.c - unit tests for the feedback aggregates
 * (server/ratings.c): per counselor and per topic counts, means and
 * histograms, a counselor's last comments newest first and theirs alone,
 * the operator's bounded lists in byte order, the topic bound, and
 * refusals that count nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../server/ratings.h"

static struct proto_ratings out;   /* ~30 KB */

static void expect_entry(const struct proto_rating *e, const char *name, uint32_t count,
                         double mean, const uint32_t hist[5])
{
	assert_string_equal(e->name, name);
	assert_int_equal(e->count, count);
	assert_true(e->mean == mean);
	assert_memory_equal(e->hist, hist, sizeof e->hist);
}

static void test_counselor_sees_own(void **state)
{
	(void)state;
	struct ratings r;
	ratings_init(&r);
	assert_int_equal(ratings_add(&r, "kim", "grief", 5, "you listened"), 0);
	assert_int_equal(ratings_add(&r, "kim", "anxiety", 4, ""), 0);
	assert_int_equal(ratings_add(&r, "lee", "grief", 2, "too short"), 0);
	assert_int_equal(r.count, 3);
	assert_int_equal(r.sum, 11);

	ratings_fill(&r, "kim", &out);
	assert_int_equal(out.ncounselors, 1);
	expect_entry(&out.counselors[0], "kim", 2, 4.5, (const uint32_t[5]){ 0, 0, 0, 1, 1 });
	assert_int_equal(out.ncomments, 1);
	assert_string_equal(out.comments[0], "you listened");
	assert_int_equal(out.ntopics, 0);   /* topics are the operator's */

	ratings_fill(&r, "lee", &out);
	expect_entry(&out.counselors[0], "lee", 1, 2.0, (const uint32_t[5]){ 0, 1, 0, 0, 0 });
	assert_int_equal(out.ncomments, 1);
	assert_string_equal(out.comments[0], "too short");

	/* Never rated: their entry, empty. */
	ratings_fill(&r, "new", &out);
	assert_int_equal(out.ncounselors, 1);
	expect_entry(&out.counselors[0], "new", 0, 0.0, (const uint32_t[5]){ 0 });
	assert_int_equal(out.ncomments, 0);
	ratings_free(&r);
}

static void test_operator_sees_all(void **state)
{
	(void)state;
	struct ratings r;
	ratings_init(&r);
	/* Byte order: upper case before lower, "kim" before "kim2". */
	const char *subs[] = { "kim2", "Zed", "kim", "amy" };
	for (int i = 0; i < 4; i++)
		assert_int_equal(ratings_add(&r, subs[i], i % 2 ? "study" : "grief", i + 1, "private"),
		                 0);
	ratings_fill(&r, NULL, &out);
	assert_int_equal(out.ncounselors, 4);
	expect_entry(&out.counselors[0], "Zed", 1, 2.0, (const uint32_t[5]){ 0, 1, 0, 0, 0 });
	assert_string_equal(out.counselors[1].name, "amy");
	assert_string_equal(out.counselors[2].name, "kim");
	assert_string_equal(out.counselors[3].name, "kim2");
	assert_int_equal(out.ncomments, 0);   /* operators see aggregates */
	assert_int_equal(out.ntopics, 2);
	expect_entry(&out.topics[0], "grief", 2, 2.0, (const uint32_t[5]){ 1, 0, 1, 0, 0 });
	expect_entry(&out.topics[1], "study", 2, 3.0, (const uint32_t[5]){ 0, 1, 0, 1, 0 });
	ratings_free(&r);
}

/* The last PROTO_COMMENTS_MAX comments, newest first; a rating without
 * one pushes none out. */
static void test_comments_kept(void **state)
{
	(void)state;
	struct ratings r;
	ratings_init(&r);
	char c[16];
	for (int i = 1; i <= PROTO_COMMENTS_MAX + 3; i++) {
		snprintf(c, sizeof c, "comment %d", i);
		assert_int_equal(ratings_add(&r, "kim", "", 3, c), 0);
		assert_int_equal(ratings_add(&r, "kim", "", 3, ""), 0);
	}
	ratings_fill(&r, "kim", &out);
	assert_int_equal(out.counselors[0].count, 2 * (PROTO_COMMENTS_MAX + 3));
	assert_int_equal(out.ncomments, PROTO_COMMENTS_MAX);
	for (int i = 0; i < PROTO_COMMENTS_MAX; i++) {
		snprintf(c, sizeof c, "comment %d", PROTO_COMMENTS_MAX + 3 - i);
		assert_string_equal(out.comments[i], c);
	}
	/* No topic: counted for the counselor and the service only. */
	ratings_fill(&r, NULL, &out);
	assert_int_equal(out.ntopics, 0);
	ratings_free(&r);
}

static void test_bounds(void **state)
{
	(void)state;
	struct ratings r;
	ratings_init(&r);
	char name[16];
	for (int i = 0; i < PROTO_TOPICS_MAX; i++) {
		snprintf(name, sizeof name, "t%03d", i);
		assert_int_equal(ratings_add(&r, "kim", name, 4, ""), 0);
	}
	/* One topic too many: the counselor and the service still count it. */
	assert_int_equal(ratings_add(&r, "kim", "zzz", 1, ""), 0);
	assert_int_equal(ratings_add(&r, "kim", "t000", 1, ""), 0);   /* a kept one goes on */
	for (int i = 0; i <= PROTO_RATED_MAX; i++) {
		snprintf(name, sizeof name, "k%03d", i);
		assert_int_equal(ratings_add(&r, name, "", 5, ""), 0);
	}
	ratings_fill(&r, NULL, &out);
	assert_int_equal(out.ntopics, PROTO_TOPICS_MAX);
	assert_string_equal(out.topics[PROTO_TOPICS_MAX - 1].name, "t063");
	assert_int_equal(out.topics[0].count, 2);
	assert_int_equal(out.ncounselors, PROTO_RATED_MAX);   /* the first by sub */
	assert_string_equal(out.counselors[0].name, "k000");
	assert_string_equal(out.counselors[PROTO_RATED_MAX - 1].name, "k199");
	ratings_fill(&r, "kim", &out);
	assert_int_equal(out.counselors[0].count, PROTO_TOPICS_MAX + 2);
	assert_int_equal(r.count, PROTO_TOPICS_MAX + 2 + PROTO_RATED_MAX + 1);

	/* A score out of range counts nothing, anywhere. */
	uint64_t before = r.count;
	assert_int_equal(ratings_add(&r, "kim", "t001", 0, "x"), -1);
	assert_int_equal(ratings_add(&r, "kim", "t001", 6, "x"), -1);
	assert_int_equal(ratings_add(&r, "", "t001", 3, "x"), -1);
	assert_int_equal(r.count, before);
	ratings_fill(&r, "kim", &out);
	assert_int_equal(out.ncomments, 0);
	assert_int_equal(out.counselors[0].count, PROTO_TOPICS_MAX + 2);
	ratings_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counselor_sees_own),
		cmocka_unit_test(test_operator_sees_all),
		cmocka_unit_test(test_comments_kept),
		cmocka_unit_test(test_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
