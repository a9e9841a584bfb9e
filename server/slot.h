/* slot.h - a session's timed slot: active, warnings at marks before the
 * end, then a goodbye grace, then closed.
 *
 * Pure: times are milliseconds on the caller's clock, passed in. The caller
 * arms one timer for slot_next_deadline() and calls slot_advance() until it
 * returns SLOT_EV_NONE each time the timer fires. */
#ifndef EARSHOT_SLOT_H
#define EARSHOT_SLOT_H

#include <stdint.h>

#define SLOT_MARKS_MAX 4

/* SLOT_OPEN: held open (a crisis): no more warnings, no end by the clock;
 * only a person closes it. */
enum slot_phase { SLOT_ACTIVE, SLOT_GOODBYE, SLOT_OPEN, SLOT_CLOSED };

enum slot_event {
	SLOT_EV_NONE,
	SLOT_EV_WARNING,   /* a warning mark was reached: tell both sides */
	SLOT_EV_OVER,      /* time is up: goodbye grace starts */
	SLOT_EV_CLOSED,    /* the grace ran out: close the session */
};

struct slot {
	enum slot_phase phase;
	int64_t start, end, grace_end;
	int64_t marks[SLOT_MARKS_MAX]; /* ms before `end`, descending */
	int nmarks, next_mark;
};

/* Start a slot of `length_ms` at `now`. Marks not strictly inside the slot
 * are ignored; marks must be given in descending order. */
void slot_start(struct slot *s, int64_t now, int64_t length_ms,
                const int64_t *marks_ms, int nmarks, int64_t grace_ms);

/* INT64_MAX once closed. */
int64_t slot_next_deadline(const struct slot *s);

/* The next event due at `now`, advancing the slot past it. For a warning,
 * `*remaining_ms` is the mark (the round figure people expect), and a
 * timer so late that it passed several marks reports only the last. */
enum slot_event slot_advance(struct slot *s, int64_t now, int64_t *remaining_ms);

/* Time left in the slot proper (0 once over). */
int64_t slot_remaining(const struct slot *s, int64_t now);

/* Ended early by a person. */
void slot_close(struct slot *s);

/* Held open from now on (from ACTIVE or GOODBYE; a no-op once closed). */
void slot_hold(struct slot *s);

#endif
