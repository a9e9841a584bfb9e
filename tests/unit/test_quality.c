/* test_quality.c - unit tests for per-leg media quality (server/quality.c):
 * loss from sequence gaps across wraps, reordering, duplicates and
 * restarts; RFC 3550 jitter against values computed by hand; grading at
 * each threshold; and the interval a report covers. Includes quality.c to
 * reach its state, as the Makefile's unit rule allows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "../../server/quality.c"

#define HZ      48000
#define STEP_TS 960             /* 20 ms at 48 kHz */
#define STEP_MS 20
#define T0      5000000         /* an arbitrary monotonic start, ms */
#define TS0     0xffff0000u     /* wraps 2^32 after 69 packets */
#define BYTES   73

/* Packet `i` of a steady 50 pps stream whose first sequence number is
 * `seq0`, arriving `late_ms` after its nominal time. */
static void pkt(struct quality *q, uint16_t seq0, uint32_t i, int64_t late_ms)
{
	quality_packet(q, (uint16_t)(seq0 + i), TS0 + STEP_TS * i, BYTES,
	               T0 + STEP_MS * (int64_t)i + late_ms, HZ);
}

static void assert_near(double got, double want, double eps)
{
	if (!(fabs(got - want) <= eps))
		fail_msg("got %.12g, want %.12g (+-%g)", got, want, eps);
}

/* Packets 0..n-1, leaving out those `drop` says to. */
static void stream(struct quality *q, uint16_t seq0, uint32_t n, int (*drop)(uint32_t))
{
	for (uint32_t i = 0; i < n; i++)
		if (!drop || !drop(i))
			pkt(q, seq0, i, 0);
}

static void assert_report(struct quality *q, uint64_t expected, uint64_t received,
                          double loss_pct, enum quality_grade grade)
{
	struct quality_report r;
	quality_report(q, &r);
	assert_int_equal(r.expected, expected);
	assert_int_equal(r.received, received);
	assert_near(r.loss_pct, loss_pct, 1e-9);
	if (r.grade != grade)
		fail_msg("grade %s, want %s (loss %.3f%%, jitter %.3f ms)",
		         quality_grade_name(r.grade), quality_grade_name(grade), r.loss_pct,
		         r.jitter_ms);
}

static void test_init(void **state)
{
	(void)state;
	struct quality q;
	memset(&q, 0xa5, sizeof q);
	quality_init(&q);
	assert_int_equal(q.packets, 0);
	assert_int_equal(q.bytes, 0);
	assert_true(q.last_ms == -1);
	assert_int_equal(quality_expected(&q), 0);
	assert_true(q.jitter == 0.0);
}

static void test_perfect_stream(void **state)
{
	(void)state;
	struct quality q;
	quality_init(&q);
	stream(&q, 1234, 250, NULL);         /* 5 s, ts wrapping 2^32 on the way */
	assert_int_equal(q.packets, 250);
	assert_int_equal(q.bytes, 250 * BYTES);
	assert_true(q.last_ms == T0 + 249 * STEP_MS);
	assert_int_equal(quality_expected(&q), 250);
	assert_int_equal(q.reordered, 0);
	assert_true(q.jitter == 0.0);
	struct quality_report r;
	quality_report(&q, &r);
	assert_int_equal(r.expected, 250);
	assert_int_equal(r.received, 250);
	assert_true(r.loss_pct == 0.0);
	assert_true(r.jitter_ms == 0.0);
	assert_int_equal(r.grade, QUALITY_GOOD);
	assert_string_equal(quality_grade_name(r.grade), "good");
}

/* A constant network delay is no jitter, nor is the RTP timestamp
 * wrapping 2^32 from a random start. */
static void test_constant_delay_and_ts_wrap(void **state)
{
	(void)state;
	struct quality q;
	quality_init(&q);
	for (uint32_t i = 0; i < 100; i++)
		quality_packet(&q, (uint16_t)i, 0xfffffc00u + STEP_TS * i, BYTES,
		               T0 + 137 + STEP_MS * (int64_t)i, HZ);
	assert_true(q.jitter == 0.0);
	assert_report(&q, 100, 100, 0.0, QUALITY_GOOD);
}

static int every_20th(uint32_t i) { return i % 20 == 10; }
static int three_in_20(uint32_t i) { return i % 20 == 3 || i % 20 == 10 || i % 20 == 17; }

static void test_loss_5pct_fair(void **state)
{
	(void)state;
	struct quality q;
	quality_init(&q);
	stream(&q, 40000, 200, every_20th);
	assert_report(&q, 200, 190, 5.0, QUALITY_FAIR);
}

static void test_loss_15pct_poor(void **state)
{
	(void)state;
	struct quality q;
	quality_init(&q);
	stream(&q, 40000, 200, three_in_20);
	assert_report(&q, 200, 170, 15.0, QUALITY_POOR);
}

/* good below 2%, poor from 10%, for loss; 30 and 80 ms for jitter. */
static void test_grade_thresholds(void **state)
{
	(void)state;
	static const struct { unsigned lost; enum quality_grade g; } loss[] = {
		{ 0, QUALITY_GOOD }, { 1, QUALITY_GOOD }, { 2, QUALITY_FAIR },
		{ 9, QUALITY_FAIR }, { 10, QUALITY_POOR }, { 98, QUALITY_POOR },
	};
	for (size_t k = 0; k < sizeof loss / sizeof loss[0]; k++) {
		struct quality q;
		quality_init(&q);
		/* 100 expected: the first and last always arrive. */
		for (uint32_t i = 0; i < 100; i++)
			if (i == 0 || i == 99 || i > loss[k].lost)
				pkt(&q, 7, i, 0);
		assert_report(&q, 100, 100 - loss[k].lost, loss[k].lost, loss[k].g);
	}

	static const struct { double ms; unsigned lost; enum quality_grade g; } jit[] = {
		{ 29.99, 0, QUALITY_GOOD }, { 30.0, 0, QUALITY_FAIR },
		{ 79.99, 0, QUALITY_FAIR }, { 80.0, 0, QUALITY_POOR },
		{ 29.99, 2, QUALITY_FAIR }, { 0.0, 10, QUALITY_POOR },
	};
	for (size_t k = 0; k < sizeof jit / sizeof jit[0]; k++) {
		struct quality q;
		quality_init(&q);
		for (uint32_t i = 0; i < 100; i++)
			if (i == 0 || i > jit[k].lost)
				pkt(&q, 7, i, 0);
		q.jitter = jit[k].ms * HZ / 1000.0;
		struct quality_report r;
		quality_report(&q, &r);
		assert_near(r.jitter_ms, jit[k].ms, 1e-9);
		assert_near(r.loss_pct, jit[k].lost, 1e-9);
		if (r.grade != jit[k].g)
			fail_msg("jitter %.2f ms loss %u%%: %s", jit[k].ms, jit[k].lost,
			         quality_grade_name(r.grade));
	}
	assert_string_equal(quality_grade_name(QUALITY_FAIR), "fair");
	assert_string_equal(quality_grade_name(QUALITY_POOR), "poor");
}

/* Arrivals alternately 30 ms early and 30 ms late: every transit time
 * differs from the one before by 60 ms = 2880 ticks, so by RFC 3550 A.8
 * J1 = 2880/16 = 180, J2 = 180 + (2880 - 180)/16 = 348.75, and after n
 * differences J = 2880 * (1 - (15/16)^n), tending to 60 ms. */
static void test_jitter_alternating(void **state)
{
	(void)state;
	struct quality q;
	quality_init(&q);
	pkt(&q, 100, 0, -30);
	assert_true(q.jitter == 0.0);
	pkt(&q, 100, 1, +30);
	assert_true(q.jitter == 180.0);
	pkt(&q, 100, 2, -30);
	assert_true(q.jitter == 348.75);
	for (uint32_t i = 3; i < 250; i++)
		pkt(&q, 100, i, i % 2 ? 30 : -30);
	double want = 2880.0 * (1.0 - pow(15.0 / 16.0, 249));
	assert_near(q.jitter, want, 1e-6);
	struct quality_report r;
	quality_report(&q, &r);
	assert_near(r.jitter_ms, want / 48.0, 1e-7);
	assert_near(r.jitter_ms, 60.0, 1e-4);      /* (15/16)^249 ~ 1e-7 */
	assert_true(r.loss_pct == 0.0);
	assert_int_equal(r.grade, QUALITY_FAIR);    /* 30 <= 60 < 80 */

	/* Steady again: the estimate decays by 15/16 a packet. */
	for (uint32_t i = 250; i < 260; i++)
		pkt(&q, 100, i, 0);
	/* Packet 250 arrives on time after packet 249's +30: D = 30 ms. */
	double j = q.jitter;
	double ref = want + (1440.0 - want) / 16.0;
	for (int k = 0; k < 9; k++)
		ref += (0.0 - ref) / 16.0;
	assert_near(j, ref, 1e-6);
}

/* The arrival time converts with the stream's clock: at 8 kHz a 60 ms
 * swing is 480 ticks, J1 = 30. */
static void test_jitter_other_clock(void **state)
{
	(void)state;
	struct quality q;
	quality_init(&q);
	quality_packet(&q, 1, 1000, BYTES, T0 - 30, 8000);
	quality_packet(&q, 2, 1160, BYTES, T0 + 20 + 30, 8000);
	assert_true(q.jitter == 30.0);
	/* And a 1 ms late packet at 48 kHz is 48 ticks: J = 3. */
	quality_init(&q);
	quality_packet(&q, 1, 0, BYTES, T0, HZ);
	quality_packet(&q, 2, 960, BYTES, T0 + 21, HZ);
	assert_true(q.jitter == 3.0);
}

static void test_seq_wrap(void **state)
{
	(void)state;
	struct quality q;
	quality_init(&q);
	stream(&q, 65500, 100, NULL);        /* 65500..65535, 0..63 */
	assert_int_equal(q.max_seq, 63);
	assert_int_equal(q.cycles, 65536);
	assert_int_equal(quality_expected(&q), 100);
	assert_report(&q, 100, 100, 0.0, QUALITY_GOOD);

	/* Losses on both sides of the next wrap still count: 65535 and 0. */
	quality_init(&q);
	for (uint32_t i = 0; i < 100; i++) {
		uint16_t seq = (uint16_t)(65486 + i);
		if (seq != 65535 && seq != 0)
			pkt(&q, 65486, i, 0);
	}
	assert_report(&q, 100, 98, 2.0, QUALITY_FAIR);

	/* Three wraps in one go: counting goes on past 2^16 and 2^17. */
	quality_init(&q);
	stream(&q, 1, 3 * 65536 + 10, NULL);
	assert_int_equal(q.cycles, 3u * 65536);
	assert_int_equal(quality_expected(&q), 3 * 65536 + 10);
	assert_report(&q, 3 * 65536 + 10, 3 * 65536 + 10, 0.0, QUALITY_GOOD);
}

static void test_reordered(void **state)
{
	(void)state;
	struct quality q;
	quality_init(&q);
	static const uint16_t order[] = { 0, 1, 3, 2, 4, 7, 5, 6, 8, 9 };
	for (size_t k = 0; k < 10; k++)
		pkt(&q, 0, order[k], 0);
	assert_int_equal(q.reordered, 3);
	assert_int_equal(q.max_seq, 9);
	assert_report(&q, 10, 10, 0.0, QUALITY_GOOD);

	/* A gap reported as loss, filled by a late packet in the next
	 * interval: that interval has more received than expected, which is
	 * no loss rather than a negative one. */
	quality_init(&q);
	for (uint32_t i = 0; i < 10; i++)
		if (i != 2)
			pkt(&q, 0, i, 0);
	assert_report(&q, 10, 9, 10.0, QUALITY_POOR);
	pkt(&q, 0, 2, 200);
	for (uint32_t i = 10; i < 20; i++)
		pkt(&q, 0, i, 0);
	/* The late packet moved the jitter to ~13.5 ms: still good. */
	assert_report(&q, 10, 11, 0.0, QUALITY_GOOD);

	/* Late across the wrap: 65534 after 0..2 is behind, not a restart. */
	quality_init(&q);
	for (uint32_t i = 0; i < 6; i++)
		if (i != 1)
			pkt(&q, 65533, i, 0);       /* 65533, 65535, 0, 1, 2 */
	pkt(&q, 65533, 1, 100);              /* 65534, late */
	assert_int_equal(q.reordered, 1);
	assert_int_equal(q.cycles, 65536);
	assert_int_equal(q.max_seq, 2);
	assert_int_equal(quality_expected(&q), 6);
	assert_int_equal(q.packets, 6);

	/* 2999 behind is still late; 3000 behind is a restart. */
	quality_init(&q);
	pkt(&q, 10000, 0, 0);
	quality_packet(&q, 10000 - 2999, 0, BYTES, T0, HZ);
	assert_int_equal(q.reordered, 1);
	assert_int_equal(q.base_seq, 10000);
	quality_packet(&q, 10000 - 3000, 0, BYTES, T0, HZ);
	assert_int_equal(q.reordered, 1);
	assert_int_equal(q.base_seq, 7000);
}

static void test_duplicates(void **state)
{
	(void)state;
	struct quality q;
	quality_init(&q);
	static const uint16_t seqs[] = { 0, 1, 1, 2, 2, 2, 3, 1 };
	for (size_t k = 0; k < 8; k++)
		pkt(&q, 500, seqs[k], 0);
	assert_int_equal(q.packets, 8);
	assert_int_equal(q.bytes, 8 * BYTES);
	assert_int_equal(q.reordered, 4);
	assert_int_equal(quality_expected(&q), 4);
	/* More received than expected: loss 0, never negative. */
	assert_report(&q, 4, 8, 0.0, QUALITY_GOOD);
}

static void test_restart(void **state)
{
	(void)state;
	struct quality q;
	quality_init(&q);
	/* 3000 ahead is a gap of 2999 lost packets... */
	pkt(&q, 100, 0, 0);
	pkt(&q, 100, 3000, 0);
	assert_int_equal(q.base_seq, 100);
	assert_int_equal(quality_expected(&q), 3001);
	assert_report(&q, 3001, 2, 100.0 * 2999 / 3001, QUALITY_POOR);

	/* ...3001 ahead is a restart: counting starts again from there, the
	 * interval keeps what it had before, and jitter does not see the
	 * timestamp jump that came with the new numbering. */
	quality_init(&q);
	stream(&q, 1000, 100, NULL);
	assert_report(&q, 100, 100, 0.0, QUALITY_GOOD);
	stream(&q, 1000, 50, NULL);          /* the first 50 again: duplicates */
	pkt(&q, 1000, 100, 0);
	assert_int_equal(quality_expected(&q), 101);
	quality_packet(&q, 1100 + 3001, 12345, BYTES, T0 + 2020, HZ);
	assert_int_equal(q.base_seq, 4101);
	assert_int_equal(quality_expected(&q), 1);
	for (uint32_t i = 1; i < 50; i++)
		quality_packet(&q, (uint16_t)(4101 + i), 12345 + STEP_TS * i, BYTES,
		               T0 + 2020 + STEP_MS * (int64_t)i, HZ);
	assert_true(q.jitter == 0.0);
	assert_int_equal(quality_expected(&q), 50);
	/* This interval: 1 (seq 1100) + 50 after the restart expected; 50
	 * duplicates + 1 + 50 received. */
	assert_report(&q, 51, 101, 0.0, QUALITY_GOOD);
	/* And the next interval counts from the new numbering alone. */
	for (uint32_t i = 50; i < 100; i++)
		if (i != 60)
			quality_packet(&q, (uint16_t)(4101 + i), 12345 + STEP_TS * i, BYTES,
			               T0 + 2020 + STEP_MS * (int64_t)i, HZ);
	assert_report(&q, 50, 49, 2.0, QUALITY_FAIR);
}

static void test_empty_interval(void **state)
{
	(void)state;
	struct quality q;
	quality_init(&q);
	struct quality_report r;
	quality_report(&q, &r);
	assert_int_equal(r.expected, 0);
	assert_int_equal(r.received, 0);
	assert_true(r.loss_pct == 100.0);
	assert_int_equal(r.grade, QUALITY_POOR);

	/* After a good interval, one in which nothing arrived. */
	stream(&q, 9, 50, NULL);
	assert_report(&q, 50, 50, 0.0, QUALITY_GOOD);
	assert_report(&q, 0, 0, 100.0, QUALITY_POOR);
	/* Only late packets: nothing new expected, so still poor at 100%. */
	pkt(&q, 9, 20, 500);
	assert_report(&q, 0, 1, 100.0, QUALITY_POOR);
}

static void test_report_resets_interval(void **state)
{
	(void)state;
	struct quality q;
	quality_init(&q);
	stream(&q, 300, 200, three_in_20);
	assert_report(&q, 200, 170, 15.0, QUALITY_POOR);
	/* The next 100 all arrive: the earlier loss is not carried over. */
	for (uint32_t i = 200; i < 300; i++)
		pkt(&q, 300, i, 0);
	assert_report(&q, 100, 100, 0.0, QUALITY_GOOD);
	for (uint32_t i = 300; i < 400; i++)
		if (i % 20 != 10)
			pkt(&q, 300, i, 0);
	assert_report(&q, 100, 95, 5.0, QUALITY_FAIR);
	/* Totals keep counting across reports. */
	assert_int_equal(q.packets, 170 + 100 + 95);
	assert_int_equal(q.bytes, (170 + 100 + 95) * BYTES);
	assert_int_equal(quality_expected(&q), 400);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_perfect_stream),
		cmocka_unit_test(test_constant_delay_and_ts_wrap),
		cmocka_unit_test(test_loss_5pct_fair),
		cmocka_unit_test(test_loss_15pct_poor),
		cmocka_unit_test(test_grade_thresholds),
		cmocka_unit_test(test_jitter_alternating),
		cmocka_unit_test(test_jitter_other_clock),
		cmocka_unit_test(test_seq_wrap),
		cmocka_unit_test(test_reordered),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_restart),
		cmocka_unit_test(test_empty_interval),
		cmocka_unit_test(test_report_resets_interval),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
