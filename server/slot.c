/* slot.c - a session's timed slot (see slot.h). */
#include "slot.h"

#include <string.h>

void slot_start(struct slot *s, int64_t now, int64_t length_ms,
                const int64_t *marks_ms, int nmarks, int64_t grace_ms)
{
	memset(s, 0, sizeof *s);
	s->phase = SLOT_ACTIVE;
	s->start = now;
	s->end = now + length_ms;
	s->grace_end = s->end + grace_ms;
	for (int i = 0; i < nmarks && s->nmarks < SLOT_MARKS_MAX; i++)
		if (marks_ms[i] > 0 && marks_ms[i] < length_ms)
			s->marks[s->nmarks++] = marks_ms[i];
}

int64_t slot_next_deadline(const struct slot *s)
{
	switch (s->phase) {
	case SLOT_ACTIVE:
		if (s->next_mark < s->nmarks)
			return s->end - s->marks[s->next_mark];
		return s->end;
	case SLOT_GOODBYE:
		return s->grace_end;
	default:
		return INT64_MAX;
	}
}

enum slot_event slot_advance(struct slot *s, int64_t now, int64_t *remaining_ms)
{
	if (now < slot_next_deadline(s))
		return SLOT_EV_NONE;
	switch (s->phase) {
	case SLOT_ACTIVE:
		if (now < s->end) {
			/* A late timer reports only the latest mark passed: one
			 * "1 minute left", not "5 minutes" then "1 minute". */
			while (s->next_mark + 1 < s->nmarks &&
			       now >= s->end - s->marks[s->next_mark + 1])
				s->next_mark++;
			*remaining_ms = s->marks[s->next_mark++];
			return SLOT_EV_WARNING;
		}
		s->next_mark = s->nmarks;
		s->phase = SLOT_GOODBYE;
		return SLOT_EV_OVER;
	case SLOT_GOODBYE:
		s->phase = SLOT_CLOSED;
		return SLOT_EV_CLOSED;
	default:
		return SLOT_EV_NONE;
	}
}

int64_t slot_remaining(const struct slot *s, int64_t now)
{
	if ((s->phase != SLOT_ACTIVE && s->phase != SLOT_OPEN) || now >= s->end)
		return 0;
	return s->end - now;
}

void slot_close(struct slot *s)
{
	s->phase = SLOT_CLOSED;
}

void slot_hold(struct slot *s)
{
	if (s->phase != SLOT_CLOSED)
		s->phase = SLOT_OPEN;
}
