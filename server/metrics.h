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

struct metrics {
	uint64_t connections_total;
	uint64_t messages_in;       /* text frames accepted from peers */
	uint64_t chat_relayed;      /* chat messages relayed */
	uint64_t errors[METRICS_ERRORS_MAX]; /* indexed like metrics_error_codes */
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
