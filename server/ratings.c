/* ratings.c - feedback aggregates in memory (see ratings.h). */
#include "ratings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ratings_entry {
	char name[PROTO_SUB_MAX + 1];  /* a counselor's sub, or a topic */
	uint32_t count, hist[5];
	uint64_t sum;
	/* Counselors: a ring of their last comments, made with the first. */
	char (*comments)[PROTO_COMMENT_MAX + 1];
	uint32_t ncomments, next;
};

void ratings_init(struct ratings *r)
{
	memset(r, 0, sizeof *r);
}

static void table_free(struct ratings_table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i]->comments);
		free(t->v[i]);
	}
	free(t->v);
	memset(t, 0, sizeof *t);
}

void ratings_free(struct ratings *r)
{
	table_free(&r->counselors);
	table_free(&r->topics);
}

/* The index of `name`, or where it would go (with *found 0). */
static size_t table_find(const struct ratings_table *t, const char *name, int *found)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(t->v[mid]->name, name);
		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = 0;
	return lo;
}

/* The entry for `name`, made if it is new and the table holds fewer than
 * `max` (0: no bound); NULL when full or out of memory. */
static struct ratings_entry *table_get(struct ratings_table *t, const char *name, size_t max)
{
	int found;
	size_t i = table_find(t, name, &found);
	if (found)
		return t->v[i];
	if (max && t->n >= max)
		return NULL;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		struct ratings_entry **v = realloc(t->v, cap * sizeof *v);
		if (!v)
			return NULL;
		t->v = v;
		t->cap = cap;
	}
	struct ratings_entry *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	snprintf(e->name, sizeof e->name, "%s", name);
	memmove(t->v + i + 1, t->v + i, (t->n - i) * sizeof *t->v);
	t->v[i] = e;
	t->n++;
	return e;
}

static void count(struct ratings_entry *e, int score)
{
	e->count++;
	e->sum += (uint64_t)score;
	e->hist[score - 1]++;
}

int ratings_add(struct ratings *r, const char *counselor, const char *topic, int score,
                const char *comment)
{
	if (score < 1 || score > 5 || !counselor[0])
		return -1;
	/* Everything this needs is made first, so a failure counts nothing
	 * (an entry it leaves has a count of 0). */
	struct ratings_entry *k = table_get(&r->counselors, counselor, 0);
	if (!k)
		return -1;
	struct ratings_entry *t = topic[0] ? table_get(&r->topics, topic, PROTO_TOPICS_MAX) : NULL;
	if (comment[0] && !k->comments &&
	    !(k->comments = calloc(PROTO_COMMENTS_MAX, sizeof *k->comments)))
		return -1;
	count(k, score);
	if (t)
		count(t, score);
	r->count++;
	r->sum += (uint64_t)score;
	if (comment[0]) {
		snprintf(k->comments[k->next], sizeof k->comments[0], "%s", comment);
		k->next = (k->next + 1) % PROTO_COMMENTS_MAX;
		if (k->ncomments < PROTO_COMMENTS_MAX)
			k->ncomments++;
	}
	return 0;
}

static void copy(struct proto_rating *out, const struct ratings_entry *e)
{
	snprintf(out->name, sizeof out->name, "%s", e->name);
	out->count = e->count;
	memcpy(out->hist, e->hist, sizeof out->hist);
	out->mean = e->count ? (double)e->sum / (double)e->count : 0.0;
}

void ratings_fill(const struct ratings *r, const char *counselor, struct proto_ratings *out)
{
	memset(out, 0, sizeof *out);
	if (!counselor) {
		for (size_t i = 0; i < r->counselors.n && i < PROTO_RATED_MAX; i++)
			copy(&out->counselors[out->ncounselors++], r->counselors.v[i]);
		for (size_t i = 0; i < r->topics.n && i < PROTO_TOPICS_MAX; i++)
			copy(&out->topics[out->ntopics++], r->topics.v[i]);
		return;
	}
	out->ncounselors = 1;
	snprintf(out->counselors[0].name, sizeof out->counselors[0].name, "%s", counselor);
	int found;
	size_t i = table_find(&r->counselors, counselor, &found);
	if (!found)
		return;
	const struct ratings_entry *k = r->counselors.v[i];
	copy(&out->counselors[0], k);
	for (uint32_t n = 0; n < k->ncomments; n++) {
		uint32_t at = (k->next + PROTO_COMMENTS_MAX - 1 - n) % PROTO_COMMENTS_MAX;
		memcpy(out->comments[n], k->comments[at], sizeof out->comments[0]);
	}
	out->ncomments = k->ncomments;
}
