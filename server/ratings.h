/* ratings.h - feedback aggregates in memory (the memory store's; store.lua
 * keeps the same in Redis): per counselor a count, the sum and histogram
 * of scores and their last PROTO_COMMENTS_MAX comments; per topic a
 * count, sum and histogram (at most PROTO_TOPICS_MAX topics); and the
 * service's count and sum. Nothing ties a figure or a comment to a
 * session, a person or a time.
 *
 * Pure: no I/O, no clock. Entries are allocated as they are first rated
 * and freed by ratings_free; ratings_fill copies into a caller's struct. */
#ifndef EARSHOT_RATINGS_H
#define EARSHOT_RATINGS_H

#include <stddef.h>
#include <stdint.h>
#include "../proto/proto.h"

struct ratings_entry;

/* Entries sorted by name, for lookups and for the operator's list. */
struct ratings_table {
	struct ratings_entry **v;
	size_t n, cap;
};

struct ratings {
	struct ratings_table counselors, topics;
	uint64_t count, sum;           /* the whole service's */
};

void ratings_init(struct ratings *r);
void ratings_free(struct ratings *r);

/* A session with `counselor` about `topic` ("" none) rated `score` (1-5),
 * with `comment` ("" none). A topic beyond PROTO_TOPICS_MAX is counted for
 * the counselor and the service only. 0, or -1 (a bad score, or out of
 * memory: then nothing is counted). */
int ratings_add(struct ratings *r, const char *counselor, const char *topic, int score,
                const char *comment);

/* What `counselor` sees: their own entry (zero if never rated) with their
 * comments, newest first, and no topics. With `counselor` NULL, what an
 * operator sees: the first PROTO_RATED_MAX counselors by sub and every
 * topic, without comments. */
void ratings_fill(const struct ratings *r, const char *counselor, struct proto_ratings *out);

#endif
