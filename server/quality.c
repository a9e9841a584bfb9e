/* quality.c - per-leg media quality from RTP headers (see quality.h):
 * sequence tracking after RFC 3550 A.1, jitter after A.8, graded reports. */
#include "quality.h"

#include <string.h>

#include "proto/rtp.h"

/* How far a sequence number may move from the highest seen and still be
 * the same stream: up to MAX_DROPOUT ahead is a gap (lost packets), less
 * than MAX_MISORDER behind is a late packet. Anything else is taken as a
 * restart of the sender's numbering. */
#define MAX_DROPOUT 3000
#define MAX_MISORDER 3000
#define SEQ_MOD 65536u

void quality_init(struct quality *q)
{
	memset(q, 0, sizeof *q);
	q->last_ms = -1;
}

uint64_t quality_expected(const struct quality *q)
{
	if (!q->started)
		return 0;
	return (uint64_t)q->cycles + q->max_seq - q->base_seq + 1;
}

/* The sender's numbering jumped: count from `seq` again. The interval's
 * expected count so far is kept by shifting its snapshot down by what the
 * old numbering had reached; the subtraction may wrap, but the report only
 * uses the (unsigned, hence exact) difference. The timestamps most likely
 * jumped too, so jitter restarts from the next transit time. */
static void seq_restart(struct quality *q, uint16_t seq)
{
	q->iv_expected_prior -= quality_expected(q);
	q->base_seq = seq;
	q->max_seq = seq;
	q->cycles = 0;
	q->has_transit = 0;
}

static void seq_update(struct quality *q, uint16_t seq)
{
	if (!q->started) {
		q->started = 1;
		q->base_seq = seq;
		q->max_seq = seq;
		return;
	}
	uint16_t ahead = (uint16_t)(seq - q->max_seq);
	uint16_t behind = (uint16_t)(q->max_seq - seq);
	if (ahead == 0) {
		q->reordered++;                 /* a duplicate of the newest */
	} else if (ahead <= MAX_DROPOUT) {
		if (seq < q->max_seq)
			q->cycles += SEQ_MOD;   /* wrapped past 65535 */
		q->max_seq = seq;
	} else if (behind < MAX_MISORDER) {
		q->reordered++;                 /* late, or a duplicate of an older one */
	} else {
		seq_restart(q, seq);
	}
}

/* RFC 3550 A.8, with the transit times taken modulo 2^32 as the RFC's
 * unsigned arithmetic does: the RTP timestamp wraps (every ~25 h at
 * 48 kHz) and starts anywhere, so only differences mean anything. */
static void jitter_update(struct quality *q, uint32_t rtp_ts, int64_t arrival_ms,
                          uint32_t clock_hz)
{
	int64_t arrival = arrival_ms * (int64_t)clock_hz / 1000;
	uint32_t transit = (uint32_t)arrival - rtp_ts;
	if (q->has_transit) {
		uint32_t u = transit - (uint32_t)q->last_transit;
		int64_t d = u < 0x80000000u ? (int64_t)u : (int64_t)u - 0x100000000;
		if (d < 0)
			d = -d;
		q->jitter += ((double)d - q->jitter) / 16.0;
	}
	q->last_transit = transit;
	q->has_transit = 1;
}

void quality_packet(struct quality *q, uint16_t seq, uint32_t rtp_ts, uint32_t bytes,
                    int64_t arrival_ms, uint32_t clock_hz)
{
	q->packets++;
	q->bytes += bytes;
	q->last_ms = arrival_ms;
	seq_update(q, seq);
	jitter_update(q, rtp_ts, arrival_ms, clock_hz);
}

void quality_report(struct quality *q, struct quality_report *r)
{
	uint64_t expected = quality_expected(q);
	r->expected = expected - q->iv_expected_prior;
	r->received = q->packets - q->iv_received_prior;
	q->iv_expected_prior = expected;
	q->iv_received_prior = q->packets;

	/* Duplicates and packets late from an earlier interval can make more
	 * arrive than were expected: that is no loss, not a negative one. */
	uint64_t lost = r->received < r->expected ? r->expected - r->received : 0;
	r->loss_pct = r->expected ? 100.0 * (double)lost / (double)r->expected : 100.0;
	/* The struct keeps no clock rate; earshot's only one is Opus' 48 kHz. */
	r->jitter_ms = q->jitter * 1000.0 / RTP_OPUS_CLOCK;

	if (r->expected == 0 || r->loss_pct >= 10.0 || r->jitter_ms >= 80.0)
		r->grade = QUALITY_POOR;
	else if (r->loss_pct < 2.0 && r->jitter_ms < 30.0)
		r->grade = QUALITY_GOOD;
	else
		r->grade = QUALITY_FAIR;
}

const char *quality_grade_name(enum quality_grade g)
{
	switch (g) {
	case QUALITY_GOOD: return "good";
	case QUALITY_FAIR: return "fair";
	case QUALITY_POOR: return "poor";
	}
	return "poor";
}
