/* test_slot.c - unit tests for the session slot state machine
 * (server/slot.c): warnings at each mark, OVER, CLOSED, deadlines, late
 * timers, ignored marks, slot_remaining and slot_close. The clock is
 * injected: every call takes an explicit `now` in milliseconds. Includes
 * slot.c to reach its statics, as the Makefile's unit rule allows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../server/slot.c"

#define T0      1000000         /* an arbitrary, non-zero start */
#define LEN     1800000         /* 30 min */
#define GRACE   120000          /* 2 min */
#define END     (T0 + LEN)

static const int64_t MARKS2[] = { 300000, 60000 };             /* 5 min, 1 min */
static const int64_t MARKS3[] = { 600000, 300000, 60000 };     /* 10, 5, 1 min */

/* slot_advance must report exactly `want` at `now`; for a warning, with
 * exactly `want_rem` remaining. */
static void expect_ev(struct slot *s, int64_t now, enum slot_event want,
                      int64_t want_rem)
{
	int64_t rem = -12345;
	enum slot_event ev = slot_advance(s, now, &rem);
	if (ev != want)
		fail_msg("slot_advance(now=T0%+lld) = %d, want %d", (long long)(now - T0),
		         (int)ev, (int)want);
	if (want == SLOT_EV_WARNING)
		assert_int_equal(rem, want_rem);
}

static void test_start(void **state)
{
	(void)state;
	struct slot s;
	slot_start(&s, T0, LEN, MARKS2, 2, GRACE);
	assert_int_equal(s.phase, SLOT_ACTIVE);
	assert_int_equal(s.start, T0);
	assert_int_equal(s.end, END);
	assert_int_equal(s.grace_end, END + GRACE);
	assert_int_equal(s.nmarks, 2);
	assert_int_equal(s.marks[0], 300000);
	assert_int_equal(s.marks[1], 60000);
	assert_int_equal(s.next_mark, 0);
	assert_int_equal(slot_next_deadline(&s), END - 300000);
	assert_int_equal(slot_remaining(&s, T0), LEN);
}

/* The whole life of a slot on a punctual timer: each event exactly at its
 * deadline, nothing a millisecond before, nothing twice. */
static void test_warnings_in_order_then_over_then_closed(void **state)
{
	(void)state;
	struct slot s;
	slot_start(&s, T0, LEN, MARKS2, 2, GRACE);

	expect_ev(&s, T0, SLOT_EV_NONE, 0);
	expect_ev(&s, END - 300000 - 1, SLOT_EV_NONE, 0);
	assert_int_equal(slot_next_deadline(&s), END - 300000);
	expect_ev(&s, END - 300000, SLOT_EV_WARNING, 300000);
	expect_ev(&s, END - 300000, SLOT_EV_NONE, 0);
	assert_int_equal(s.phase, SLOT_ACTIVE);

	assert_int_equal(slot_next_deadline(&s), END - 60000);
	expect_ev(&s, END - 60000 - 1, SLOT_EV_NONE, 0);
	expect_ev(&s, END - 60000, SLOT_EV_WARNING, 60000);
	expect_ev(&s, END - 60000, SLOT_EV_NONE, 0);

	assert_int_equal(slot_next_deadline(&s), END);
	expect_ev(&s, END - 1, SLOT_EV_NONE, 0);
	assert_int_equal(s.phase, SLOT_ACTIVE);
	expect_ev(&s, END, SLOT_EV_OVER, 0);
	assert_int_equal(s.phase, SLOT_GOODBYE);
	expect_ev(&s, END, SLOT_EV_NONE, 0);

	assert_int_equal(slot_next_deadline(&s), END + GRACE);
	expect_ev(&s, END + GRACE - 1, SLOT_EV_NONE, 0);
	expect_ev(&s, END + GRACE, SLOT_EV_CLOSED, 0);
	assert_int_equal(s.phase, SLOT_CLOSED);

	assert_int_equal(slot_next_deadline(&s), INT64_MAX);
	expect_ev(&s, END + GRACE, SLOT_EV_NONE, 0);
	expect_ev(&s, END + 10 * GRACE, SLOT_EV_NONE, 0);
	expect_ev(&s, INT64_MAX, SLOT_EV_NONE, 0);
}

/* A warning reports the mark itself, not the time actually left. */
static void test_warning_reports_mark_not_actual_remaining(void **state)
{
	(void)state;
	struct slot s;
	slot_start(&s, T0, LEN, MARKS2, 2, GRACE);
	expect_ev(&s, END - 300000 + 2500, SLOT_EV_WARNING, 300000);
	assert_int_equal(slot_next_deadline(&s), END - 60000);
}

/* A timer late past several marks reports only the last one passed. */
static void test_late_timer_reports_only_last_mark(void **state)
{
	(void)state;
	struct slot s;

	/* Past all three marks, still inside the slot: one "1 minute". */
	slot_start(&s, T0, LEN, MARKS3, 3, GRACE);
	assert_int_equal(slot_next_deadline(&s), END - 600000);
	expect_ev(&s, END - 30000, SLOT_EV_WARNING, 60000);
	expect_ev(&s, END - 30000, SLOT_EV_NONE, 0);
	assert_int_equal(slot_next_deadline(&s), END);
	expect_ev(&s, END, SLOT_EV_OVER, 0);

	/* Past the first two: "5 minutes", and the 1-minute mark still comes. */
	slot_start(&s, T0, LEN, MARKS3, 3, GRACE);
	expect_ev(&s, END - 200000, SLOT_EV_WARNING, 300000);
	expect_ev(&s, END - 200000, SLOT_EV_NONE, 0);
	assert_int_equal(slot_next_deadline(&s), END - 60000);
	expect_ev(&s, END - 60000, SLOT_EV_WARNING, 60000);

	/* Exactly on the second mark's deadline counts as passed. */
	slot_start(&s, T0, LEN, MARKS3, 3, GRACE);
	expect_ev(&s, END - 300000, SLOT_EV_WARNING, 300000);
	assert_int_equal(slot_next_deadline(&s), END - 60000);

	/* One ms before the second mark: the first mark only. */
	slot_start(&s, T0, LEN, MARKS3, 3, GRACE);
	expect_ev(&s, END - 300000 - 1, SLOT_EV_WARNING, 600000);
	assert_int_equal(slot_next_deadline(&s), END - 300000);
}

/* A timer so late the slot is over skips every warning. */
static void test_very_late_timer_skips_warnings(void **state)
{
	(void)state;
	struct slot s;

	slot_start(&s, T0, LEN, MARKS3, 3, GRACE);
	expect_ev(&s, END, SLOT_EV_OVER, 0);
	expect_ev(&s, END, SLOT_EV_NONE, 0);
	assert_int_equal(s.phase, SLOT_GOODBYE);
	assert_int_equal(slot_next_deadline(&s), END + GRACE);
	expect_ev(&s, END + GRACE, SLOT_EV_CLOSED, 0);

	/* Late past the grace as well: OVER then CLOSED, nothing else. */
	slot_start(&s, T0, LEN, MARKS3, 3, GRACE);
	expect_ev(&s, END + GRACE + 5, SLOT_EV_OVER, 0);
	expect_ev(&s, END + GRACE + 5, SLOT_EV_CLOSED, 0);
	expect_ev(&s, END + GRACE + 5, SLOT_EV_NONE, 0);
	assert_int_equal(slot_next_deadline(&s), INT64_MAX);

	/* Late after one warning was given: the remaining ones are skipped. */
	slot_start(&s, T0, LEN, MARKS3, 3, GRACE);
	expect_ev(&s, END - 600000, SLOT_EV_WARNING, 600000);
	expect_ev(&s, END + 1, SLOT_EV_OVER, 0);
	expect_ev(&s, END + 1, SLOT_EV_NONE, 0);
}

static void test_marks_outside_slot_ignored(void **state)
{
	(void)state;
	struct slot s;
	/* Descending: past the end, exactly the length, inside, zero, negative. */
	const int64_t marks[] = { LEN + 1, LEN, 60000, 0, -5 };
	slot_start(&s, T0, LEN, marks, 5, GRACE);
	assert_int_equal(s.nmarks, 1);
	assert_int_equal(s.marks[0], 60000);
	assert_int_equal(slot_next_deadline(&s), END - 60000);
	expect_ev(&s, T0, SLOT_EV_NONE, 0);
	expect_ev(&s, END - 60000, SLOT_EV_WARNING, 60000);
	assert_int_equal(slot_next_deadline(&s), END);
	expect_ev(&s, END, SLOT_EV_OVER, 0);

	/* A mark one ms inside the slot is kept. */
	const int64_t edge[] = { LEN - 1, 1 };
	slot_start(&s, T0, LEN, edge, 2, GRACE);
	assert_int_equal(s.nmarks, 2);
	assert_int_equal(slot_next_deadline(&s), T0 + 1);
	expect_ev(&s, T0 + 1, SLOT_EV_WARNING, LEN - 1);
	assert_int_equal(slot_next_deadline(&s), END - 1);
	expect_ev(&s, END - 1, SLOT_EV_WARNING, 1);
	expect_ev(&s, END, SLOT_EV_OVER, 0);
}

static void test_at_most_marks_max(void **state)
{
	(void)state;
	struct slot s;
	const int64_t marks[] = { 900000, 600000, 300000, 120000, 60000, 30000 };
	slot_start(&s, T0, LEN, marks, 6, GRACE);
	assert_int_equal(s.nmarks, SLOT_MARKS_MAX);
	assert_int_equal(s.marks[SLOT_MARKS_MAX - 1], 120000);
	expect_ev(&s, END - 900000, SLOT_EV_WARNING, 900000);
	expect_ev(&s, END - 600000, SLOT_EV_WARNING, 600000);
	expect_ev(&s, END - 300000, SLOT_EV_WARNING, 300000);
	expect_ev(&s, END - 120000, SLOT_EV_WARNING, 120000);
	assert_int_equal(slot_next_deadline(&s), END);
	expect_ev(&s, END - 30000, SLOT_EV_NONE, 0);
	expect_ev(&s, END, SLOT_EV_OVER, 0);
}

static void test_no_marks_and_no_grace(void **state)
{
	(void)state;
	struct slot s;
	slot_start(&s, T0, LEN, NULL, 0, 0);
	assert_int_equal(s.nmarks, 0);
	assert_int_equal(slot_next_deadline(&s), END);
	expect_ev(&s, END - 1, SLOT_EV_NONE, 0);
	expect_ev(&s, END, SLOT_EV_OVER, 0);
	/* Zero grace: closed at the same instant. */
	assert_int_equal(slot_next_deadline(&s), END);
	expect_ev(&s, END, SLOT_EV_CLOSED, 0);
	expect_ev(&s, END, SLOT_EV_NONE, 0);
}

static void test_remaining(void **state)
{
	(void)state;
	struct slot s;
	slot_start(&s, T0, LEN, MARKS2, 2, GRACE);
	assert_int_equal(slot_remaining(&s, T0), LEN);
	assert_int_equal(slot_remaining(&s, T0 + 1), LEN - 1);
	assert_int_equal(slot_remaining(&s, END - 61000), 61000);
	expect_ev(&s, END - 300000, SLOT_EV_WARNING, 300000);
	assert_int_equal(slot_remaining(&s, END - 299999), 299999);
	assert_int_equal(slot_remaining(&s, END - 1), 1);
	/* Past the end before the timer fired: nothing left, never negative. */
	assert_int_equal(slot_remaining(&s, END), 0);
	assert_int_equal(slot_remaining(&s, END + 5000), 0);
	expect_ev(&s, END, SLOT_EV_OVER, 0);
	/* In the goodbye grace: the slot proper is over. */
	assert_int_equal(slot_remaining(&s, END), 0);
	assert_int_equal(slot_remaining(&s, END - 1000), 0);
	expect_ev(&s, END + GRACE, SLOT_EV_CLOSED, 0);
	assert_int_equal(slot_remaining(&s, END + GRACE), 0);
}

static void test_close_while_active(void **state)
{
	(void)state;
	struct slot s;
	slot_start(&s, T0, LEN, MARKS2, 2, GRACE);
	expect_ev(&s, END - 300000, SLOT_EV_WARNING, 300000);
	slot_close(&s);
	assert_int_equal(s.phase, SLOT_CLOSED);
	assert_int_equal(slot_next_deadline(&s), INT64_MAX);
	assert_int_equal(slot_remaining(&s, END - 100000), 0);
	/* Nothing more is ever due: no warning, no OVER, no CLOSED. */
	expect_ev(&s, END - 60000, SLOT_EV_NONE, 0);
	expect_ev(&s, END, SLOT_EV_NONE, 0);
	expect_ev(&s, END + GRACE, SLOT_EV_NONE, 0);
}

static void test_close_in_goodbye(void **state)
{
	(void)state;
	struct slot s;
	slot_start(&s, T0, LEN, MARKS2, 2, GRACE);
	expect_ev(&s, END, SLOT_EV_OVER, 0);
	slot_close(&s);
	assert_int_equal(slot_next_deadline(&s), INT64_MAX);
	expect_ev(&s, END + GRACE, SLOT_EV_NONE, 0);
}

/* A slot restarted over an old one forgets its marks and phase. */
static void test_restart_resets(void **state)
{
	(void)state;
	struct slot s;
	slot_start(&s, T0, LEN, MARKS3, 3, GRACE);
	expect_ev(&s, END + GRACE, SLOT_EV_OVER, 0);
	expect_ev(&s, END + GRACE, SLOT_EV_CLOSED, 0);
	slot_start(&s, END + GRACE, 600000, MARKS2, 2, 0);
	assert_int_equal(s.phase, SLOT_ACTIVE);
	assert_int_equal(s.nmarks, 2);
	assert_int_equal(slot_next_deadline(&s), END + GRACE + 600000 - 300000);
}

/* A crisis holds the slot open: from active or from the goodbye grace,
 * no more warnings and no close by the clock; a person still closes it. */
static void test_hold(void **state)
{
	(void)state;
	struct slot s;
	const int64_t marks[] = { 300000, 60000 };
	int64_t rem = -1;
	slot_start(&s, 0, 1200000, marks, 2, 30000);
	assert_int_equal(slot_advance(&s, 900000, &rem), SLOT_EV_WARNING);
	slot_hold(&s);
	assert_int_equal(s.phase, SLOT_OPEN);
	assert_int_equal(slot_next_deadline(&s), INT64_MAX);
	assert_int_equal(slot_advance(&s, 1140000, &rem), SLOT_EV_NONE);
	assert_int_equal(slot_advance(&s, 99000000, &rem), SLOT_EV_NONE);
	assert_int_equal(slot_remaining(&s, 1000000), 200000);
	assert_int_equal(slot_remaining(&s, 1300000), 0);
	slot_close(&s);
	assert_int_equal(s.phase, SLOT_CLOSED);
	slot_hold(&s);                          /* closed stays closed */
	assert_int_equal(s.phase, SLOT_CLOSED);

	slot_start(&s, 0, 1200000, marks, 2, 30000);
	while (slot_advance(&s, 1200000, &rem) != SLOT_EV_OVER)
		;
	assert_int_equal(s.phase, SLOT_GOODBYE);
	slot_hold(&s);                          /* in the grace: it no longer ends */
	assert_int_equal(slot_advance(&s, 1230000, &rem), SLOT_EV_NONE);
	assert_int_equal(s.phase, SLOT_OPEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start),
		cmocka_unit_test(test_warnings_in_order_then_over_then_closed),
		cmocka_unit_test(test_warning_reports_mark_not_actual_remaining),
		cmocka_unit_test(test_late_timer_reports_only_last_mark),
		cmocka_unit_test(test_very_late_timer_skips_warnings),
		cmocka_unit_test(test_marks_outside_slot_ignored),
		cmocka_unit_test(test_at_most_marks_max),
		cmocka_unit_test(test_no_marks_and_no_grace),
		cmocka_unit_test(test_remaining),
		cmocka_unit_test(test_close_while_active),
		cmocka_unit_test(test_close_in_goodbye),
		cmocka_unit_test(test_restart_resets),
		cmocka_unit_test(test_hold),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
