/* metrics.h - the server's counters and their Prometheus text rendering.
 * Pure: the caller passes a snapshot; nothing here reads a clock. */
#ifndef EARSHOT_METRICS_H
#define EARSHOT_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "../proto/proto.h"

/* Every error code PROTOCOL.md lists, in its order: the label values of
 * earshot_errors_total. */
#define METRICS_ERRORS_MAX 32
extern const char *const metrics_error_codes[];
extern const size_t metrics_error_count;

/* Why a media packet was not relayed; the order of relay.h's drop verdicts,
 * then the two the hub decides. Names as in stats.media.dropped_*. */
enum metrics_media_drop {
	MD_AUTH, MD_REPLAY, MD_BAD_RTP, MD_NOT_OPUS, MD_TOO_LARGE, MD_RATE, MD_STALE,
	MD_NO_SESSION, MD_SLOW_READER, MD_COUNT
};
extern const char *const metrics_media_drop_names[MD_COUNT];

struct metrics {
	uint64_t connections_total;
	uint64_t messages_in;       /* text frames accepted from peers */
	uint64_t chat_relayed;      /* chat messages relayed */
	uint64_t crises_flagged;    /* sessions flagged in crisis */
	uint64_t resumed;           /* dropped connections taken up again within the grace */
	uint64_t resume_expired;    /* dropped connections whose grace ran out */
	uint64_t errors[METRICS_ERRORS_MAX]; /* indexed like metrics_error_codes */
	uint64_t media_relayed;
	uint64_t media_dropped[MD_COUNT];
};

/* Count one error sent to a peer, by its wire code (unknown codes are
 * ignored: a test catches a code missing from the table). */
void metrics_count_error(struct metrics *m, const char *code);
/* Index of `code` in metrics_error_codes, or -1. */
int metrics_error_index(const char *code);

/* Render the Prometheus text exposition. Returns bytes written (NUL
 * written too), or -1 if `cap` is too small. */
long metrics_render(const struct metrics *m, const struct proto_stats *s,
                    char *buf, size_t cap);

#endif
