/* matcher.c - the queue and offer state machine (see matcher.h). */
#include "matcher.h"

#include <string.h>

static const char *const REASON_TIMEOUT = "timeout";
static const char *const REASON_CLIENT_LEFT = "client_left";
static const char *const REASON_MISSED = "missed_offers";
static const char *const REASON_WRAPUP_DONE = "wrapup_done";
static const char *const REASON_BY_YOU = "by_you";
static const char *const REASON_BREAK = "break";
static const char *const REASON_BREAK_NEXT = "break_next";
static const char *const REASON_BREAK_OVER = "break_over";
static const char *const REASON_SHIFT_OVER = "shift_over";

static void emit(struct matcher *m, const struct matcher_action *a)
{
	m->emit(m->ctx, a);
}

/* `k` is now `st` because `reason` (for a break: `for_ms` long). */
static void set_state_for(struct matcher *m, struct mcounselor *k, enum proto_state st,
                          const char *reason, int64_t for_ms)
{
	m->by_state[k->state]--;
	m->by_state[st]++;
	if (k->skills[0] && (k->state == ST_AWAY) != (st == ST_AWAY))
		m->skilled_active += st == ST_AWAY ? -1u : 1u;
	k->state = st;
	struct matcher_action a = { .type = MA_STATE, .counselor = k->id,
	                            .state = st, .reason = reason, .for_ms = for_ms };
	emit(m, &a);
	/* Counselor supply feeds every waiting client's estimate. */
	m->queue_dirty = 1;
}

static void set_state(struct matcher *m, struct mcounselor *k,
                      enum proto_state st, const char *reason)
{
	set_state_for(m, k, st, reason, 0);
}

/* The counselor has done their shift: enough sessions, or hours. */
static int shift_over(const struct matcher *m, const struct mcounselor *k, int64_t now)
{
	return (m->cfg.shift_sessions > 0 && k->sessions >= m->cfg.shift_sessions) ||
	       (m->cfg.shift_ms > 0 && now >= k->shift_start + m->cfg.shift_ms);
}

/* Back to taking offers, unless their shift is over. */
static void back_available(struct matcher *m, struct mcounselor *k, const char *reason,
                           int64_t now)
{
	int done = shift_over(m, k, now);
	k->break_until = 0;
	set_state(m, k, done ? ST_AWAY : ST_AVAILABLE, done ? REASON_SHIFT_OVER : reason);
}

/* Away for a break of `ms` from now. */
static void start_break(struct matcher *m, struct mcounselor *k, int64_t ms, int64_t now)
{
	k->break_until = now + ms;
	k->break_ms = 0;
	set_state_for(m, k, ST_AWAY, REASON_BREAK, ms);
}

void matcher_init(struct matcher *m, const struct matcher_config *cfg,
                  matcher_emit_fn fn, void *ctx)
{
	memset(m, 0, sizeof *m);
	m->cfg = *cfg;
	list_init(&m->queue);
	list_init(&m->roster);
	m->next_offer_id = 1;
	m->handle_ms = cfg->handle_ms > 0 ? cfg->handle_ms : 1;
	m->emit = fn;
	m->ctx = ctx;
}

static int declined_recently(const struct matcher *m, const struct mclient *c,
                             uint32_t kid, int64_t now)
{
	for (int i = 0; i < MATCHER_DECLINED_MAX; i++)
		if (c->declined[i].id == kid &&
		    now - c->declined[i].at < m->cfg.redecline_ms)
			return 1;
	return 0;
}

static void remember_decline(struct mclient *c, uint32_t kid, int64_t now)
{
	int slot = 0;
	for (int i = 0; i < MATCHER_DECLINED_MAX; i++) {
		if (c->declined[i].id == kid) {
			slot = i;
			break;
		}
		if (c->declined[i].at < c->declined[slot].at)
			slot = i;       /* oldest entry is the one to reuse */
	}
	c->declined[slot].id = kid;
	c->declined[slot].at = now;
}

/* Whether `topic` is one of `k`'s comma-separated skills. */
static int has_skill(const struct mcounselor *k, const char *topic)
{
	size_t n = strlen(topic);
	for (const char *p = k->skills; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && memcmp(p, topic, n) == 0)
			return 1;
		if (!e)
			break;
		p = e + 1;
	}
	return 0;
}

static struct mcounselor *by_sub(struct matcher *m, const char *sub)
{
	struct list *it;
	list_for_each(it, &m->roster) {
		struct mcounselor *k = list_entry(it, struct mcounselor, link);
		if (strcmp(k->sub, sub) == 0)
			return k;
	}
	return NULL;
}

static int wants_previous(const struct matcher *m, const struct mclient *c, int64_t now)
{
	return c->ask_previous && c->previous[0] &&
	       now < c->since + m->cfg.previous_wait_ms;
}

/* Some counselor online with `c`'s topic among their skills, who has not
 * just passed on them: worth waiting for. */
static int skilled_online(const struct matcher *m, const struct mclient *c, int64_t now)
{
	/* Asked for every waiting client on every change to the queue: with
	 * nobody skilled on duty, no walk over the roster. */
	if (!m->skilled_active || !c->topic[0])
		return 0;
	const struct list *it;
	list_for_each(it, &m->roster) {
		const struct mcounselor *k = list_entry(it, const struct mcounselor, link);
		if (k->state != ST_AWAY && has_skill(k, c->topic) &&
		    !declined_recently(m, c, k->id, now))
			return 1;
	}
	return 0;
}

/* What `c` would be held for if a counselor who is not their preference
 * were free now, and until when. */
static enum matcher_hold held_for(struct matcher *m, const struct mclient *c,
                                  int64_t now, int64_t *until)
{
	if (c->offered_to)
		return HOLD_NONE;
	/* Someone in crisis waits for nobody: their counselor if free now,
	 * else the first free one. */
	if (wants_previous(m, c, now)) {
		const struct mcounselor *k = by_sub(m, c->previous);
		if (k && (c->crisis ? k->state == ST_AVAILABLE : k->state != ST_AWAY)) {
			*until = c->since + m->cfg.previous_wait_ms;
			return HOLD_PREVIOUS;
		}
	}
	if (!c->crisis && now < c->since + m->cfg.topic_wait_ms && skilled_online(m, c, now)) {
		*until = c->since + m->cfg.topic_wait_ms;
		return HOLD_TOPIC;
	}
	return HOLD_NONE;
}

/* The counselor `c` is offered now (matcher.h's rules), or NULL: none is
 * free for them, or they are held for a preference. When `strict`, never
 * one who has just turned `c` down. */
static struct mcounselor *pick_counselor(struct matcher *m, struct mclient *c,
                                         int strict, int64_t now)
{
	int64_t until;
	enum matcher_hold held = held_for(m, c, now, &until);
	if (held == HOLD_PREVIOUS) {
		struct mcounselor *k = by_sub(m, c->previous);
		return k->state == ST_AVAILABLE ? k : NULL;
	}
	struct mcounselor *best = NULL, *skilled = NULL;
	struct list *it;
	list_for_each(it, &m->roster) {
		struct mcounselor *k = list_entry(it, struct mcounselor, link);
		if (k->state != ST_AVAILABLE ||
		    (k->kept_for && k->kept_for != c && !c->crisis))
			continue;
		int fresh = !declined_recently(m, c, k->id, now);
		if (strict && !fresh)
			continue;
		if (!best || k->idle_since < best->idle_since)
			best = k;
		if (fresh && has_skill(k, c->topic) &&
		    (!skilled || k->idle_since < skilled->idle_since))
			skilled = k;
	}
	if (skilled)
		return skilled;
	return held == HOLD_TOPIC ? NULL : best;
}

/* The next time `c`'s preferences lapse after `t` (INT64_MAX: none). */
static int64_t next_lapse(const struct matcher *m, const struct mclient *c, int64_t t)
{
	int64_t next = INT64_MAX;
	int64_t at[2] = { c->ask_previous && c->previous[0] ? c->since + m->cfg.previous_wait_ms : 0,
	                  c->since + m->cfg.topic_wait_ms };
	for (int i = 0; i < 2; i++)
		if (at[i] > t && at[i] < next)
			next = at[i];
	return next;
}

/* Each counselor asked for by a client waiting for them is kept for the
 * earliest such client. */
static void keep_asked_for(struct matcher *m, int64_t now)
{
	struct list *it;
	list_for_each(it, &m->roster)
		list_entry(it, struct mcounselor, link)->kept_for = NULL;
	list_for_each(it, &m->queue) {
		struct mclient *c = list_entry(it, struct mclient, link);
		if (c->offered_to || c->away || !wants_previous(m, c, now))
			continue;
		struct mcounselor *k = by_sub(m, c->previous);
		if (k && !k->kept_for)
			k->kept_for = c;
	}
}

static void offer(struct matcher *m, struct mclient *c, struct mcounselor *k,
                  int64_t now)
{
	c->offered_to = k;
	k->offer = c;
	k->offer_id = m->next_offer_id++;
	k->deadline = now + m->cfg.ring_ms;
	set_state(m, k, ST_RINGING, NULL);
	struct matcher_action a = {
		.type = MA_OFFER, .client = c->id, .counselor = k->id,
		.offer_id = k->offer_id,
		.waited_s = (uint32_t)((now - c->since) / 1000),
		.crisis = c->crisis,
		.talked_before = c->previous[0] && strcmp(c->previous, k->sub) == 0,
	};
	emit(m, &a);
}

/* Pair waiting clients, oldest first, with free counselors. The first pass
 * spares a counselor the person they just declined, so the next client can
 * be served; the second pass offers whoever is left to whoever is free,
 * so a decline can delay a client but never strand them. */
static void match(struct matcher *m, int64_t now)
{
	if (m->by_state[ST_AVAILABLE] == 0)
		return;
	keep_asked_for(m, now);
	for (int strict = 1; strict >= 0; strict--) {
		struct list *it;
		list_for_each(it, &m->queue) {
			if (m->by_state[ST_AVAILABLE] == 0)
				return;
			struct mclient *c = list_entry(it, struct mclient, link);
			if (c->offered_to || c->away)
				continue;
			struct mcounselor *k = pick_counselor(m, c, strict, now);
			if (k)
				offer(m, c, k, now);
		}
	}
}

int matcher_client_enqueue(struct matcher *m, struct mclient *c, uint32_t id,
                           const struct matcher_request *r, int64_t now)
{
	if (matcher_client_queued(c))
		return MATCHER_WRONG_STATE;
	if (m->queue_len >= m->cfg.max_queue)
		return MATCHER_FULL;
	memset(c, 0, sizeof *c);
	c->id = id;
	c->since = now;
	c->mode = r->mode;
	c->crisis = r->crisis != 0;
	strncpy(c->topic, r->topic, sizeof c->topic - 1);
	if (r->previous)
		strncpy(c->previous, r->previous, sizeof c->previous - 1);
	c->ask_previous = r->ask_previous != 0;
	c->lapse = next_lapse(m, c, now);
	/* Behind the last client in crisis, if this one is too. */
	struct list *at = &m->queue;
	if (c->crisis) {
		struct list *it;
		list_for_each(it, &m->queue) {
			if (!list_entry(it, struct mclient, link)->crisis) {
				at = it;
				break;
			}
		}
	}
	list_insert_before(at, &c->link);
	m->queue_len++;
	m->queue_dirty = 1;
	match(m, now);
	return MATCHER_OK;
}

int matcher_client_queued(const struct mclient *c)
{
	return c->link.next != NULL && list_linked(&c->link);
}

/* Take the client off the queue; the caller decides what comes next. */
static void unqueue(struct matcher *m, struct mclient *c)
{
	list_del(&c->link);
	m->queue_len--;
	m->queue_dirty = 1;
}

/* The client left (the queue, or their connection) while offered: the
 * offer is withdrawn, and it was not the counselor's miss (they keep their
 * idle position). */
static void offer_left(struct matcher *m, struct mclient *c, int64_t now)
{
	struct mcounselor *k = c->offered_to;
	if (!k)
		return;
	c->offered_to = NULL;
	struct matcher_action a = { .type = MA_OFFER_GONE, .counselor = k->id,
	                            .offer_id = k->offer_id, .reason = REASON_CLIENT_LEFT };
	k->offer = NULL;
	k->offer_id = 0;
	emit(m, &a);
	back_available(m, k, NULL, now);
}

void matcher_client_remove(struct matcher *m, struct mclient *c, int64_t now,
                           int abandoned)
{
	if (!matcher_client_queued(c))
		return;
	unqueue(m, c);
	if (abandoned)
		m->abandoned++;
	offer_left(m, c, now);
	match(m, now);
}

void matcher_client_away(struct matcher *m, struct mclient *c, int away, int64_t now)
{
	if (!matcher_client_queued(c) || c->away == (away != 0))
		return;
	c->away = away != 0;
	if (c->away)
		offer_left(m, c, now);
	m->queue_dirty = 1;
	match(m, now);
}

void matcher_counselor_add(struct matcher *m, struct mcounselor *k, uint32_t id,
                           const char *sub, const char *skills, int64_t now)
{
	memset(k, 0, sizeof *k);
	k->id = id;
	strncpy(k->sub, sub, sizeof k->sub - 1);
	strncpy(k->skills, skills, sizeof k->skills - 1);
	k->state = ST_AWAY;
	k->idle_since = now;
	k->shift_start = now;
	k->registered = 1;
	list_add_tail(&m->roster, &k->link);
	m->by_state[ST_AWAY]++;
	m->queue_dirty = 1;
}

/* The offer out to `k` ends without a session: the client goes back to
 * waiting at their place, remembering who passed; if it was the counselor
 * they asked for, they no longer wait for them. */
static void offer_back(struct mcounselor *k, int64_t now)
{
	struct mclient *c = k->offer;
	remember_decline(c, k->id, now);
	if (strcmp(c->previous, k->sub) == 0)
		c->ask_previous = 0;
	c->offered_to = NULL;
	k->offer = NULL;
	k->offer_id = 0;
}

/* The offer ringing at `k` is withdrawn from them for `reason`. */
static void withdraw_offer(struct matcher *m, struct mcounselor *k, const char *reason,
                           int64_t now)
{
	struct matcher_action a = { .type = MA_OFFER_GONE, .counselor = k->id,
	                            .offer_id = k->offer_id, .reason = reason };
	offer_back(k, now);
	emit(m, &a);
}

void matcher_counselor_remove(struct matcher *m, struct mcounselor *k, int64_t now)
{
	if (!k->registered)
		return;
	if (k->state == ST_RINGING)
		offer_back(k, now);
	m->by_state[k->state]--;
	if (k->skills[0] && k->state != ST_AWAY)
		m->skilled_active--;
	list_del(&k->link);
	k->registered = 0;
	m->queue_dirty = 1;
	match(m, now);
}

int matcher_counselor_set_available(struct matcher *m, struct mcounselor *k,
                                    int64_t now)
{
	if (!k->registered)
		return MATCHER_WRONG_STATE;
	if (k->state != ST_AWAY && k->state != ST_WRAPUP)
		return MATCHER_WRONG_STATE;
	if (shift_over(m, k, now))
		return MATCHER_SHIFT_OVER;
	k->break_until = 0;
	k->missed = 0;
	k->idle_since = now;
	set_state(m, k, ST_AVAILABLE, REASON_BY_YOU);
	match(m, now);
	return MATCHER_OK;
}

int matcher_counselor_set_away(struct matcher *m, struct mcounselor *k, int64_t now)
{
	if (!k->registered)
		return MATCHER_WRONG_STATE;
	switch (k->state) {
	case ST_RINGING:
		withdraw_offer(m, k, REASON_BY_YOU, now);
		break;
	case ST_AVAILABLE:
	case ST_WRAPUP:
		break;
	case ST_AWAY:
		if (k->break_until)
			break;   /* on a break: no longer back by itself */
		return MATCHER_WRONG_STATE;
	default:
		return MATCHER_WRONG_STATE;
	}
	k->break_until = 0;
	set_state(m, k, ST_AWAY, REASON_BY_YOU);
	match(m, now);
	return MATCHER_OK;
}

int matcher_counselor_take_break(struct matcher *m, struct mcounselor *k, int64_t ms,
                                 int64_t now)
{
	if (!k->registered || ms <= 0)
		return MATCHER_WRONG_STATE;
	switch (k->state) {
	case ST_BUSY:
		k->break_ms = ms;
		set_state_for(m, k, ST_BUSY, REASON_BREAK_NEXT, ms);   /* told, no change */
		return MATCHER_OK;
	case ST_RINGING:
		withdraw_offer(m, k, REASON_BY_YOU, now);
		break;
	default:
		break;
	}
	start_break(m, k, ms, now);
	match(m, now);
	return MATCHER_OK;
}

/* Whether `offer_id` is the one ringing at `k` now. */
static int check_offer(const struct mcounselor *k, int64_t offer_id)
{
	if (!k->registered || k->state != ST_RINGING)
		return MATCHER_WRONG_STATE;
	return offer_id == k->offer_id ? MATCHER_OK : MATCHER_NO_SUCH_OFFER;
}

int matcher_counselor_accept(struct matcher *m, struct mcounselor *k,
                             int64_t offer_id, int64_t now)
{
	int err = check_offer(k, offer_id);
	if (err)
		return err;
	struct mclient *c = k->offer;
	unqueue(m, c);
	c->offered_to = NULL;
	k->offer = NULL;
	k->offer_id = 0;
	k->missed = 0;
	k->busy_since = now;
	k->sessions++;
	m->served++;
	set_state(m, k, ST_BUSY, NULL);
	struct matcher_action a = { .type = MA_MATCHED, .client = c->id,
	                            .counselor = k->id, .offer_id = offer_id };
	emit(m, &a);
	return MATCHER_OK;
}

int matcher_counselor_decline(struct matcher *m, struct mcounselor *k,
                              int64_t offer_id, int64_t now)
{
	int err = check_offer(k, offer_id);
	if (err)
		return err;
	/* A decline is a choice made at the desk: it is not a miss, and the
	 * counselor keeps their place among the idle. */
	offer_back(k, now);
	k->missed = 0;
	back_available(m, k, NULL, now);
	match(m, now);
	return MATCHER_OK;
}

void matcher_counselor_session_over(struct matcher *m, struct mcounselor *k,
                                    int crisis, int64_t now)
{
	if (!k->registered || k->state != ST_BUSY)
		return;
	int64_t wrapup = crisis ? m->cfg.crisis_wrapup_ms : m->cfg.wrapup_ms;
	int64_t handled = now - k->busy_since + wrapup;
	/* Moving average over roughly the last five sessions. */
	m->handle_ms += (handled - m->handle_ms) / 5;
	if (m->handle_ms < 1)
		m->handle_ms = 1;
	if (k->break_ms > 0) {
		start_break(m, k, k->break_ms > wrapup ? k->break_ms : wrapup, now);
		match(m, now);
		return;
	}
	if (wrapup > 0) {
		k->deadline = now + wrapup;
		set_state(m, k, ST_WRAPUP, NULL);
		return;
	}
	k->idle_since = now;
	back_available(m, k, REASON_WRAPUP_DONE, now);
	match(m, now);
}

static void ring_timeout(struct matcher *m, struct mcounselor *k, int64_t now)
{
	withdraw_offer(m, k, REASON_TIMEOUT, now);
	if (++k->missed >= m->cfg.max_missed) {
		k->missed = 0;
		set_state(m, k, ST_AWAY, REASON_MISSED);
	} else {
		back_available(m, k, NULL, now);
	}
}

/* When something happens to `k` by the clock: a ring timing out, a
 * wrap-up or a break ending, the hours of a shift running out. */
static int64_t due(const struct matcher *m, const struct mcounselor *k)
{
	switch (k->state) {
	case ST_RINGING:
	case ST_WRAPUP:
		return k->deadline;
	case ST_AWAY:
		return k->break_until ? k->break_until : INT64_MAX;
	case ST_AVAILABLE:
		return m->cfg.shift_ms > 0 ? k->shift_start + m->cfg.shift_ms : INT64_MAX;
	default:
		return INT64_MAX;
	}
}

void matcher_tick(struct matcher *m, int64_t now)
{
	struct list *it;
	list_for_each(it, &m->roster) {
		struct mcounselor *k = list_entry(it, struct mcounselor, link);
		if (due(m, k) > now)
			continue;
		if (k->state == ST_RINGING) {
			ring_timeout(m, k, now);
		} else if (k->state == ST_WRAPUP) {
			k->idle_since = now;
			back_available(m, k, REASON_WRAPUP_DONE, now);
		} else if (k->state == ST_AWAY && k->break_until) {
			k->idle_since = now;
			back_available(m, k, REASON_BREAK_OVER, now);
		} else if (k->state == ST_AVAILABLE) {
			set_state(m, k, ST_AWAY, REASON_SHIFT_OVER);
		}
	}
	list_for_each(it, &m->queue) {
		struct mclient *c = list_entry(it, struct mclient, link);
		if (c->lapse <= now) {
			c->lapse = next_lapse(m, c, now);
			m->queue_dirty = 1;
		}
	}
	match(m, now);
}

int64_t matcher_next_deadline(const struct matcher *m)
{
	int64_t next = INT64_MAX;
	const struct list *it;
	list_for_each(it, &m->roster) {
		const struct mcounselor *k = list_entry(it, const struct mcounselor, link);
		if (due(m, k) < next)
			next = due(m, k);
	}
	/* A preference that lapses may let its client go to whoever is free. */
	list_for_each(it, &m->queue) {
		const struct mclient *c = list_entry(it, const struct mclient, link);
		if (c->lapse < next)
			next = c->lapse;
	}
	return next;
}

uint32_t matcher_online(const struct matcher *m)
{
	return m->by_state[ST_AVAILABLE] + m->by_state[ST_RINGING] +
	       m->by_state[ST_BUSY] + m->by_state[ST_WRAPUP];
}

enum matcher_hold matcher_held(struct matcher *m, const struct mclient *c, int64_t now,
                               int64_t *until)
{
	*until = 0;
	return held_for(m, c, now, until);
}

const char *matcher_hold_name(enum matcher_hold h)
{
	switch (h) {
	case HOLD_PREVIOUS: return "previous";
	case HOLD_TOPIC: return "topic";
	default: return NULL;
	}
}

uint32_t matcher_estimate_s(struct matcher *m, const struct mclient *c,
                            uint32_t position, int64_t now)
{
	int64_t until;
	int64_t held = matcher_held(m, c, now, &until) ? until - now : 0;
	return matcher_estimate_for(position, m->by_state[ST_AVAILABLE] + m->by_state[ST_RINGING],
	                            matcher_online(m), m->handle_ms, held);
}

uint32_t matcher_estimate_for(uint32_t position, uint32_t free_now, uint32_t online,
                              int64_t handle_ms, int64_t held_ms)
{
	int64_t ms = 0;
	if (position > free_now) {
		if (online == 0)
			online = 1;     /* nobody online: assume one will come */
		ms = (int64_t)(position - free_now) * handle_ms / online;
	}
	if (held_ms > ms)
		ms = held_ms;
	int64_t s = (ms + 999) / 1000;
	return (uint32_t)((s + 9) / 10 * 10);
}

void matcher_get_stats(const struct matcher *m, int64_t now, struct matcher_stats *s)
{
	memset(s, 0, sizeof *s);
	s->queue = m->queue_len;
	memcpy(s->by_state, m->by_state, sizeof s->by_state);
	s->offered = m->by_state[ST_RINGING];
	s->served = m->served;
	s->abandoned = m->abandoned;
	if (!list_empty(&m->queue)) {
		const struct mclient *c = list_entry(m->queue.next, const struct mclient, link);
		s->oldest_wait_s = (uint32_t)((now - c->since) / 1000);
	}
}
