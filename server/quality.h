/* quality.h - per-leg media quality from RTP headers as packets arrive at
 * the server: packets, bytes, loss from sequence gaps, interarrival jitter
 * (RFC 3550 section 6.4.1 / A.8), last packet time, and a good/fair/poor
 * verdict per reporting interval.
 *
 * Pure: the caller passes the arrival time (ms, monotonic) of each packet. */
#ifndef EARSHOT_QUALITY_H
#define EARSHOT_QUALITY_H

#include <stdint.h>

enum quality_grade { QUALITY_GOOD = 0, QUALITY_FAIR, QUALITY_POOR };

struct quality {
	uint64_t packets, bytes;      /* totals, all accepted packets */
	int64_t last_ms;              /* arrival of the last packet; -1 none yet */
	/* sequence tracking (RFC 3550 A.1, simplified: no probation) */
	int started;
	uint16_t max_seq;
	uint32_t cycles;              /* seq wraps << 16 */
	uint32_t base_seq;
	uint64_t reordered;           /* packets older than max_seq (late or duplicate) */
	/* jitter, in RTP timestamp units, 1/16 smoothing */
	double jitter;
	int64_t last_transit;         /* arrival (in ts units) - rtp ts */
	int has_transit;
	/* interval snapshot for reports */
	uint64_t iv_expected_prior, iv_received_prior;
};

struct quality_report {
	uint64_t received, expected;  /* in the interval */
	double loss_pct;              /* 0..100 */
	double jitter_ms;
	enum quality_grade grade;
};

void quality_init(struct quality *q);
/* One accepted packet. `clock_hz` is the RTP clock (48000 for Opus). */
void quality_packet(struct quality *q, uint16_t seq, uint32_t rtp_ts, uint32_t bytes,
                    int64_t arrival_ms, uint32_t clock_hz);
/* Packets expected so far (highest extended seq - first + 1); 0 before any. */
uint64_t quality_expected(const struct quality *q);
/* Loss and jitter since the previous report (jitter_ms assumes the 48 kHz
 * Opus clock), graded: good when loss < 2%
 * and jitter < 30 ms, poor when loss >= 10% or jitter >= 80 ms, else fair.
 * An interval with no packet expected is graded poor with loss 100%.
 * Starts the next interval. */
void quality_report(struct quality *q, struct quality_report *r);
const char *quality_grade_name(enum quality_grade g);

#endif
