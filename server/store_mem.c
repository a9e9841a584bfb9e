/* store_mem.c - the memory backend of store.h: one node's queue and
 * presence in the pure matcher, its deadlines on one libev timer.
 *
 * The matcher reports actions from inside its calls and must not be
 * called back meanwhile, while the store's callback may call back: so
 * actions become events in a queue, delivered once the matcher call has
 * returned (a call made while delivering adds to the same queue). */
#include "store.h"
#include "idtable.h"
#include "matcher.h"
#include "ratings.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What the matcher holds for one connection (a client or a counselor). */
struct entry {
	struct idnode node;            /* id: the connection */
	struct mclient mc;
	struct mcounselor mk;
	char who[STORE_WHO_MAX + 1];   /* a client's pseudonym */
};

/* Who a person talked with last (continuity), under their pseudonym. Two
 * pseudonyms with the same id share one entry: the later replaces the
 * earlier, which is then forgotten, never mistaken. */
struct memo {
	struct idnode node;            /* id: a hash of `who` */
	struct list link;              /* store_mem.memos, oldest first */
	char who[STORE_WHO_MAX + 1];
	char counselor[PROTO_SUB_MAX + 1];
	int64_t at;
};

#define MEMO_MAX 100000

struct store_mem {
	struct store base;
	struct ev_loop *loop;
	struct matcher m;
	ev_timer timer;
	store_emit_fn emit;
	void *ctx;
	char node[STORE_NODE_MAX + 1];
	char figures[STORE_FIGURES_MAX];
	struct idtable entries;
	struct idtable memo_ids;
	struct list memos;
	size_t nmemos;
	int64_t memory_ms;
	struct ratings ratings;
	struct store_event *pending;   /* events not yet delivered */
	size_t npending, cap, next;
	int delivering;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct entry *find(struct store_mem *s, uint32_t conn)
{
	struct idnode *n = idtable_find(&s->entries, conn);
	return n ? list_entry(n, struct entry, node) : NULL;
}

/* Allocation failure leaves the connection out of the store: its
 * operations then answer wrong_state. */
static struct entry *get(struct store_mem *s, uint32_t conn)
{
	struct entry *e = find(s, conn);
	if (!e && (e = calloc(1, sizeof *e)) != NULL) {
		e->node.id = conn;
		idtable_add(&s->entries, &e->node);
	}
	return e;
}

static void drop(struct store_mem *s, uint32_t conn)
{
	struct idnode *n = idtable_remove(&s->entries, conn);
	if (n)
		free(list_entry(n, struct entry, node));
}

static uint32_t memo_id(const char *who)
{
	uint32_t h = 2166136261u;      /* FNV-1a */
	for (; *who; who++)
		h = (h ^ (uint8_t)*who) * 16777619u;
	return h;
}

static void memo_drop(struct store_mem *s, struct memo *e)
{
	idtable_remove(&s->memo_ids, e->node.id);
	list_del(&e->link);
	s->nmemos--;
	free(e);
}

/* Forget what is older than the memory, and the oldest beyond MEMO_MAX. */
static void memo_expire(struct store_mem *s, int64_t now)
{
	while (!list_empty(&s->memos)) {
		struct memo *e = list_entry(s->memos.next, struct memo, link);
		if (now - e->at < s->memory_ms && s->nmemos <= MEMO_MAX)
			break;
		memo_drop(s, e);
	}
}

/* The counselor `who` talked with last, or "". */
static const char *memo_get(struct store_mem *s, const char *who, int64_t now)
{
	memo_expire(s, now);
	struct idnode *n = who[0] ? idtable_find(&s->memo_ids, memo_id(who)) : NULL;
	const struct memo *e = n ? list_entry(n, struct memo, node) : NULL;
	return e && strcmp(e->who, who) == 0 ? e->counselor : "";
}

static void memo_put(struct store_mem *s, const char *who, const char *counselor, int64_t now)
{
	if (!who[0] || s->memory_ms <= 0)
		return;
	uint32_t id = memo_id(who);
	struct idnode *n = idtable_find(&s->memo_ids, id);
	if (n)
		memo_drop(s, list_entry(n, struct memo, node));
	struct memo *e = calloc(1, sizeof *e);
	if (!e)
		return;   /* out of memory: not remembered */
	e->node.id = id;
	snprintf(e->who, sizeof e->who, "%s", who);
	snprintf(e->counselor, sizeof e->counselor, "%s", counselor);
	e->at = now;
	idtable_add(&s->memo_ids, &e->node);
	list_add_tail(&s->memos, &e->link);
	s->nmemos++;
	memo_expire(s, now);
}

static int push(struct store_mem *s, const struct store_event *ev)
{
	if (s->npending == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct store_event *p = realloc(s->pending, cap * sizeof *p);
		if (!p)
			return -1;  /* out of memory: the event is lost, like the rest will be */
		s->pending = p;
		s->cap = cap;
	}
	s->pending[s->npending++] = *ev;
	return 0;
}

static void on_action(void *ctx, const struct matcher_action *a)
{
	struct store_mem *s = ctx;
	struct store_event ev = { .conn = a->counselor, .offer_id = a->offer_id,
	                          .state = a->state, .reason = a->reason,
	                          .waited_s = a->waited_s, .crisis = a->crisis,
	                          .talked_before = a->talked_before, .for_ms = a->for_ms };
	switch (a->type) {
	case MA_OFFER: ev.type = SE_OFFER; break;
	case MA_OFFER_GONE: ev.type = SE_OFFER_GONE; break;
	case MA_STATE: ev.type = SE_STATE; break;
	case MA_MATCHED: ev.type = SE_MATCHED; break;
	}
	if (a->type == MA_OFFER || a->type == MA_MATCHED) {
		const struct entry *c = find(s, a->client);
		ev.client.conn = a->client;
		memcpy(ev.client.node, s->node, sizeof ev.client.node);
		if (c) {
			memcpy(ev.topic, c->mc.topic, sizeof ev.topic);
			ev.mode = c->mc.mode;
		}
		const struct entry *k = find(s, a->counselor);
		if (a->type == MA_MATCHED && c && k)
			memo_put(s, c->who, k->mk.sub, now_ms());
	}
	push(s, &ev);
}

static void positions(struct store_mem *s)
{
	uint32_t pos = 0, online = matcher_online(&s->m);
	int64_t now = now_ms(), until;
	struct list *it;
	list_for_each(it, &s->m.queue) {
		const struct entry *e = list_entry(it, struct entry, mc.link);
		pos++;
		struct store_event ev = {
			.type = SE_POSITION, .conn = e->node.id, .position = pos,
			.wait_s = matcher_estimate_s(&s->m, &e->mc, pos, now), .online = online,
			.waiting_for = matcher_hold_name(matcher_held(&s->m, &e->mc, now, &until)),
		};
		push(s, &ev);
	}
	s->m.queue_dirty = 0;
}

static void arm(struct store_mem *s)
{
	int64_t next = matcher_next_deadline(&s->m);
	ev_timer_stop(s->loop, &s->timer);
	if (next == INT64_MAX)
		return;
	int64_t delay = next - now_ms();
	ev_timer_set(&s->timer, delay > 0 ? (double)delay / 1000.0 : 0.0, 0.0);
	ev_timer_start(s->loop, &s->timer);
}

/* After every matcher call: positions if they may have moved, the timer,
 * then the events, in order. */
static void settle(struct store_mem *s)
{
	if (s->m.queue_dirty)
		positions(s);
	arm(s);
	if (s->delivering)
		return;
	s->delivering = 1;
	while (s->next < s->npending) {
		struct store_event ev = s->pending[s->next++];
		s->emit(s->ctx, &ev);
		free(ev.ratings);   /* SE_RATINGS' own */
	}
	s->npending = s->next = 0;
	s->delivering = 0;
}

static void result(struct store_mem *s, uint32_t conn, enum proto_type ref, int err)
{
	struct store_event ev = { .type = SE_RESULT, .conn = conn, .ref = ref, .err = err };
	push(s, &ev);
}

static int err_of(int matcher_err)
{
	switch (matcher_err) {
	case MATCHER_OK: return STORE_OK;
	case MATCHER_NO_SUCH_OFFER: return STORE_NO_SUCH_OFFER;
	case MATCHER_FULL: return STORE_FULL;
	case MATCHER_SHIFT_OVER: return STORE_SHIFT_OVER;
	default: return STORE_WRONG_STATE;
	}
}

#define MEM(st) ((struct store_mem *)(st))

static void client_enqueue(struct store *st, uint32_t conn, const struct store_request *r)
{
	struct store_mem *s = MEM(st);
	struct entry *e = get(s, conn);
	int64_t now = now_ms();
	int err = MATCHER_FULL;
	if (e) {
		snprintf(e->who, sizeof e->who, "%s", r->who);
		struct matcher_request mr = { .topic = r->topic, .mode = r->mode, .crisis = r->crisis,
		                              .previous = memo_get(s, r->who, now),
		                              .ask_previous = r->previous };
		err = matcher_client_enqueue(&s->m, &e->mc, conn, &mr, now);
	}
	if (err)
		result(s, conn, PT_TALK_NOW, err_of(err));
	settle(s);
}

static void client_leave(struct store_mem *s, uint32_t conn, int cancel)
{
	struct entry *e = find(s, conn);
	int queued = e && matcher_client_queued(&e->mc);
	if (queued)
		matcher_client_remove(&s->m, &e->mc, now_ms(), 1);
	if (cancel)
		result(s, conn, PT_CANCEL, queued ? STORE_OK : STORE_WRONG_STATE);
	else
		drop(s, conn);
	settle(s);
}

static void client_cancel(struct store *st, uint32_t conn)
{
	client_leave(MEM(st), conn, 1);
}

static void client_gone(struct store *st, uint32_t conn)
{
	client_leave(MEM(st), conn, 0);
}

static void client_away(struct store *st, uint32_t conn, int away)
{
	struct store_mem *s = MEM(st);
	struct entry *e = find(s, conn);
	if (e)
		matcher_client_away(&s->m, &e->mc, away, now_ms());
	settle(s);
}

static void counselor_add(struct store *st, uint32_t conn, const char *sub, const char *skills)
{
	struct store_mem *s = MEM(st);
	struct entry *e = get(s, conn);
	if (e)
		matcher_counselor_add(&s->m, &e->mk, conn, sub, skills, now_ms());
	settle(s);
}

static void counselor_gone(struct store *st, uint32_t conn)
{
	struct store_mem *s = MEM(st);
	struct entry *e = find(s, conn);
	if (e) {
		matcher_counselor_remove(&s->m, &e->mk, now_ms());
		drop(s, conn);
	}
	settle(s);
}

static void counselor_set(struct store *st, uint32_t conn, enum proto_state state)
{
	struct store_mem *s = MEM(st);
	struct entry *e = find(s, conn);
	int err = MATCHER_WRONG_STATE;
	if (e)
		err = state == ST_AVAILABLE ? matcher_counselor_set_available(&s->m, &e->mk, now_ms())
		                            : matcher_counselor_set_away(&s->m, &e->mk, now_ms());
	if (err)
		result(s, conn, PT_SET_STATE, err_of(err));
	settle(s);
}

static void counselor_break(struct store *st, uint32_t conn, int64_t ms)
{
	struct store_mem *s = MEM(st);
	struct entry *e = find(s, conn);
	int err = e ? matcher_counselor_take_break(&s->m, &e->mk, ms, now_ms()) : MATCHER_WRONG_STATE;
	if (err)
		result(s, conn, PT_TAKE_BREAK, err_of(err));
	settle(s);
}

static void counselor_answer(struct store *st, uint32_t conn, int64_t offer_id, int accept)
{
	struct store_mem *s = MEM(st);
	struct entry *e = find(s, conn);
	int err = MATCHER_WRONG_STATE;
	if (e)
		err = accept ? matcher_counselor_accept(&s->m, &e->mk, offer_id, now_ms())
		             : matcher_counselor_decline(&s->m, &e->mk, offer_id, now_ms());
	if (err)
		result(s, conn, accept ? PT_ACCEPT : PT_DECLINE, err_of(err));
	settle(s);
}

/* Here the match is reported from inside the counselor's own accept, so
 * the counselor cannot be gone by the time it arrives. */
static void client_requeue(struct store *st, const struct store_event *m, int present)
{
	(void)st;
	(void)m;
	(void)present;
}

static void counselor_session_over(struct store *st, uint32_t conn, int crisis)
{
	struct store_mem *s = MEM(st);
	struct entry *e = find(s, conn);
	if (e)
		matcher_counselor_session_over(&s->m, &e->mk, crisis, now_ms());
	settle(s);
}

static void rate(struct store *st, uint32_t conn, const char *counselor, const char *topic,
                 int score, const char *comment)
{
	struct store_mem *s = MEM(st);
	int err = ratings_add(&s->ratings, counselor, topic, score, comment);
	result(s, conn, PT_RATE, err ? STORE_FULL : STORE_OK);
	settle(s);
}

static void ratings(struct store *st, uint32_t conn, const char *counselor)
{
	struct store_mem *s = MEM(st);
	struct proto_ratings *r = malloc(sizeof *r);
	struct store_event ev = { .type = SE_RATINGS, .conn = conn, .ratings = r };
	if (r)
		ratings_fill(&s->ratings, counselor, r);
	if (!r || push(s, &ev) != 0) {
		free(r);
		result(s, conn, PT_RATINGS, STORE_FULL);
	}
	settle(s);
}

static void stats(struct store *st, struct store_stats *out)
{
	struct store_mem *s = MEM(st);
	struct matcher_stats ms;
	matcher_get_stats(&s->m, now_ms(), &ms);
	memset(out, 0, sizeof *out);
	out->queue = ms.queue;
	out->oldest_wait_s = ms.oldest_wait_s;
	memcpy(out->by_state, ms.by_state, sizeof out->by_state);
	out->served = ms.served;
	out->abandoned = ms.abandoned;
	out->ratings_count = s->ratings.count;
	out->ratings_sum = s->ratings.sum;
	out->nnodes = 1;
	memcpy(out->nodes[0].node, s->node, sizeof out->nodes[0].node);
	memcpy(out->nodes[0].figures, s->figures, sizeof out->nodes[0].figures);
}

static void publish(struct store *st, const char *figures)
{
	snprintf(MEM(st)->figures, sizeof MEM(st)->figures, "%s", figures);
}

static int up(struct store *st)
{
	(void)st;
	return 1;
}

static void mem_free(struct store *st)
{
	struct store_mem *s = MEM(st);
	ev_timer_stop(s->loop, &s->timer);
	size_t from = 0;
	for (struct idnode *n; (n = idtable_take(&s->entries, &from)) != NULL;)
		free(list_entry(n, struct entry, node));
	while (!list_empty(&s->memos))
		memo_drop(s, list_entry(s->memos.next, struct memo, link));
	ratings_free(&s->ratings);
	free(s->pending);
	free(s);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct store_mem *s = w->data;
	matcher_tick(&s->m, now_ms());
	settle(s);
}

static const struct store_ops mem_ops = {
	.name = "memory",
	.client_enqueue = client_enqueue,
	.client_cancel = client_cancel,
	.client_gone = client_gone,
	.client_away = client_away,
	.counselor_add = counselor_add,
	.counselor_gone = counselor_gone,
	.counselor_set = counselor_set,
	.counselor_answer = counselor_answer,
	.counselor_break = counselor_break,
	.client_requeue = client_requeue,
	.counselor_session_over = counselor_session_over,
	.rate = rate,
	.ratings = ratings,
	.stats = stats,
	.publish = publish,
	.up = up,
	.free = mem_free,
};

struct store *store_mem_new(struct ev_loop *loop, const struct store_config *cfg,
                            const char *node, store_emit_fn emit, void *ctx)
{
	struct store_mem *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->base.ops = &mem_ops;
	s->loop = loop;
	s->emit = emit;
	s->ctx = ctx;
	snprintf(s->node, sizeof s->node, "%s", node);
	struct matcher_config mc = {
		.ring_ms = cfg->ring_ms, .wrapup_ms = cfg->wrapup_ms,
		.crisis_wrapup_ms = cfg->crisis_wrapup_ms, .handle_ms = cfg->handle_ms,
		.redecline_ms = cfg->redecline_ms, .max_missed = cfg->max_missed,
		.max_queue = cfg->max_queue, .topic_wait_ms = cfg->topic_wait_ms,
		.previous_wait_ms = cfg->previous_wait_ms, .shift_sessions = cfg->shift_sessions,
		.shift_ms = cfg->shift_ms,
	};
	matcher_init(&s->m, &mc, on_action, s);
	list_init(&s->memos);
	s->memory_ms = cfg->memory_ms;
	ratings_init(&s->ratings);
	ev_init(&s->timer, timer_cb);
	s->timer.data = s;
	return &s->base;
}
