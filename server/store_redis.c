/* store_redis.c - the Redis backend of store.h: many nodes share one queue
 * and one roster through the Redis Functions in store.lua, called with
 * hiredis' async API on the server's libev loop (never a blocking call).
 *
 * Two connections: `cmd` runs the functions in the order the hub asked
 * (so a cancel cannot overtake its talk_now), and `ev` waits in BLMPOP on
 * this node's event list, where the functions leave what must happen to
 * its counselors (offers, withdrawals, states, matches): a list rather
 * than pub/sub, so nothing is lost while a connection is being re-made.
 * A timer calls es_tick every TICK_S: it keeps the node registered,
 * fires due ring timeouts and wrap-up ends cluster-wide, sweeps nodes
 * whose registration expired, and returns the figures operators see.
 *
 * The node keeps its own view of what it holds (waiting clients in
 * order, counselors and their states). When Redis comes back after an
 * outage, es_resync makes Redis match that view: entries of clients who
 * left meanwhile are removed, and whatever Redis lost is put back. */
#include "store.h"
#include "idtable.h"
#include "list.h"
#include "log.h"
#include "matcher.h"
#include "store_lua.h"

#include <errno.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICK_S 0.25
#define CONNECT_TIMEOUT_S 2.0
#define BACKOFF_MIN_S 0.1
#define BACKOFF_MAX_S 5.0
#define EV_BATCH "64"
#define ARGV_MAX 16
#define NRULES 13                  /* store.lua's NARGS */

/* What this node holds: a waiting client or a counselor. */
struct local {
	struct idnode node;            /* id: the connection */
	struct list link;              /* waiting clients, oldest first */
	int counselor;
	char topic[PROTO_TOPIC_MAX + 1];
	enum proto_mode mode;
	int crisis;
	int ask;                       /* asks for the previous counselor */
	char who[STORE_WHO_MAX + 1];   /* a client's pseudonym, "-" none */
	char sub[PROTO_SUB_MAX + 1];   /* a counselor's, and their skills */
	char skills[MATCHER_SKILLS_MAX];
	enum proto_state kstate;
	int over_pending;              /* session_over while Redis was away, */
	int over_crisis;               /* after a session in crisis */
};

struct store_redis {
	struct store base;
	struct ev_loop *loop;
	store_emit_fn emit;
	void *ctx;
	struct store_config cfg;
	char node[STORE_NODE_MAX + 1];
	char node_url[256];            /* where other nodes reach this one */
	char figures[STORE_FIGURES_MAX]; /* this node's own, from the hub */
	uint64_t figures_sum;          /* FNV-1a of every node's, last tick */
	char host[256];
	int port, db;
	int64_t ttl_ms;
	redisAsyncContext *cmd, *ev;
	int connected;                 /* how many of the two are connected */
	int ready;                     /* functions loaded, node resynced */
	int closing;                   /* being freed: callbacks deliver nothing */
	double backoff;
	ev_timer tick, retry;
	char rules[NRULES][24];        /* the rules, as function arguments */
	struct store_stats stats;
	long long qver, qver_sent;
	int positions_pending;
	struct idtable locals;
	struct list waiting;
	uint32_t nwaiting;
};

#define RED(st) ((struct store_redis *)(st))

/* ---- what the node holds ---- */

#define LOCAL(n) list_entry(n, struct local, node)

static struct local *local_find(struct store_redis *s, uint32_t conn)
{
	struct idnode *n = idtable_find(&s->locals, conn);
	return n ? LOCAL(n) : NULL;
}

static struct local *local_add(struct store_redis *s, uint32_t conn)
{
	struct local *l = local_find(s, conn);
	if (!l && (l = calloc(1, sizeof *l)) != NULL) {
		l->node.id = conn;
		idtable_add(&s->locals, &l->node);
	}
	return l;
}

static void local_unwait(struct store_redis *s, struct local *l)
{
	if (l->link.next && list_linked(&l->link)) {
		list_del(&l->link);
		s->nwaiting--;
	}
}

static void local_drop(struct store_redis *s, uint32_t conn)
{
	struct idnode *n = idtable_remove(&s->locals, conn);
	if (!n)
		return;
	local_unwait(s, LOCAL(n));
	free(LOCAL(n));
}

/* ---- events ---- */

static void deliver(struct store_redis *s, const struct store_event *e)
{
	if (!s->closing)
		s->emit(s->ctx, e);
}

static void emit_result(struct store_redis *s, uint32_t conn, enum proto_type ref, int err)
{
	struct store_event e = { .type = SE_RESULT, .conn = conn, .ref = ref, .err = err };
	deliver(s, &e);
}

static int err_of(const char *code)
{
	if (strcmp(code, "ok") == 0)
		return STORE_OK;
	if (strcmp(code, "no_such_offer") == 0)
		return STORE_NO_SUCH_OFFER;
	if (strcmp(code, "server_busy") == 0)
		return STORE_FULL;
	if (strcmp(code, "shift_over") == 0)
		return STORE_SHIFT_OVER;
	return STORE_WRONG_STATE;
}

/* Reasons on the wire are static strings in the hub's messages. */
static const char *reason_of(const char *r)
{
	static const char *const known[] = { "by_you", "timeout", "client_left",
		                             "missed_offers", "wrapup_done", "break",
		                             "break_next", "break_over", "shift_over" };
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (strcmp(r, known[i]) == 0)
			return known[i];
	return NULL;
}

static int parse_ref(const char *node, const char *conn, struct store_ref *ref)
{
	char *end;
	unsigned long v = strtoul(conn, &end, 10);
	if (*end || strlen(node) > STORE_NODE_MAX)
		return -1;
	snprintf(ref->node, sizeof ref->node, "%s", node);
	ref->conn = (uint32_t)v;
	return 0;
}

/* One line from this node's event list (see store.lua). */
static void on_event_line(struct store_redis *s, char *line)
{
	char *f[12];
	int n = 0;
	for (char *save = NULL, *t = strtok_r(line, " ", &save); t && n < 12;
	     t = strtok_r(NULL, " ", &save))
		f[n++] = t;
	if (n < 2)
		return;
	struct store_event e = { .conn = (uint32_t)strtoul(f[1], NULL, 10) };
	struct local *l = local_find(s, e.conn);
	if (strcmp(f[0], "state") == 0 && n == 5) {
		e.type = SE_STATE;
		e.state = proto_state_parse(f[2]);
		if (e.state == ST_NONE)
			return;
		e.reason = reason_of(f[3]);
		e.for_ms = strtoll(f[4], NULL, 10);
		if (l)
			l->kstate = e.state;
	} else if (strcmp(f[0], "offer") == 0 && n == 10) {
		e.type = SE_OFFER;
		e.offer_id = strtoll(f[2], NULL, 10);
		if (parse_ref(f[3], f[4], &e.client) != 0)
			return;
		e.waited_s = (uint32_t)strtoul(f[5], NULL, 10);
		snprintf(e.topic, sizeof e.topic, "%s", f[6]);
		e.mode = strcmp(f[7], "voice") == 0 ? MODE_VOICE : MODE_TEXT;
		e.crisis = strcmp(f[8], "1") == 0;
		e.talked_before = strcmp(f[9], "1") == 0;
	} else if (strcmp(f[0], "gone") == 0 && n == 4) {
		e.type = SE_OFFER_GONE;
		e.offer_id = strtoll(f[2], NULL, 10);
		e.reason = reason_of(f[3]);
	} else if (strcmp(f[0], "matched") == 0 && n == 11) {
		e.type = SE_MATCHED;
		if (parse_ref(f[2], f[3], &e.client) != 0)
			return;
		snprintf(e.topic, sizeof e.topic, "%s", f[4]);
		e.mode = strcmp(f[5], "voice") == 0 ? MODE_VOICE : MODE_TEXT;
		snprintf(e.url, sizeof e.url, "%s", f[6]);
		snprintf(e.place, sizeof e.place, "%s %s %s %s", f[7], f[8], f[9], f[10]);
		if (strcmp(e.client.node, s->node) == 0) {
			struct local *c = local_find(s, e.client.conn);
			if (c)
				local_unwait(s, c);
		}
	} else {
		log_warn("redis: unknown event '%s'", f[0]);
		return;
	}
	deliver(s, &e);
}

/* ---- connections ---- */

static void go_down(struct store_redis *s, const char *why);

/* Call function `fn` with the rules and `argc` more arguments. */
static int fcall(struct store_redis *s, redisCallbackFn *cb, void *priv, const char *fn,
                 int argc, const char **argv, const size_t *lens)
{
	const char *a[ARGV_MAX + 3 + NRULES];
	size_t l[ARGV_MAX + 3 + NRULES];
	int n = 0;
	a[n] = "FCALL"; l[n++] = 5;
	a[n] = fn; l[n++] = strlen(fn);
	a[n] = "0"; l[n++] = 1;
	for (int i = 0; i < NRULES; i++) {
		a[n] = s->rules[i];
		l[n++] = strlen(s->rules[i]);
	}
	for (int i = 0; i < argc; i++) {
		a[n] = argv[i];
		l[n++] = lens ? lens[i] : strlen(argv[i]);
	}
	return redisAsyncCommandArgv(s->cmd, cb, priv, n, a, l) == REDIS_OK ? 0 : -1;
}

static void gid(const struct store_redis *s, uint32_t conn, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%u", s->node, conn);
}

/* privdata for a call whose outcome the hub waits for. */
#define PRIV(conn, ref) ((void *)(uintptr_t)(((uint64_t)(conn) << 8) | (uint64_t)(ref)))
#define PRIV_CONN(p) ((uint32_t)((uintptr_t)(p) >> 8))
#define PRIV_REF(p) ((enum proto_type)((uintptr_t)(p) & 0xff))

static int reply_ok(const redisReply *r)
{
	return r && r->type != REDIS_REPLY_ERROR;
}

/* The reply of es_enqueue, es_k_set, es_k_answer or es_rate: an error code
 * string. Only errors are news, but for a rating: `rated` waits for it. */
static void on_result_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct store_redis *s = ac->data;
	const redisReply *r = reply;
	uint32_t conn = PRIV_CONN(priv);
	enum proto_type ref = PRIV_REF(priv);
	int err = !r ? STORE_DOWN
	        : r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ? err_of(r->str)
	        : STORE_DOWN;
	if (r && r->type == REDIS_REPLY_ERROR)
		log_warn("redis: %s", r->str);
	if (!err && ref != PT_RATE)
		return;
	if (ref == PT_TALK_NOW) {
		struct local *l = local_find(s, conn);
		if (l)
			local_unwait(s, l);
	}
	emit_result(s, conn, ref, err);
}

static void cancelled(struct store_redis *s, uint32_t conn, int left)
{
	struct local *l = local_find(s, conn);
	if (l)
		local_unwait(s, l);
	emit_result(s, conn, PT_CANCEL, left ? STORE_OK : STORE_WRONG_STATE);
}

static void on_cancel_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct store_redis *s = ac->data;
	const redisReply *r = reply;
	/* Redis away: the node lets the person go; resync removes the entry. */
	int left = !r || r->type != REDIS_REPLY_INTEGER || r->integer == 1;
	cancelled(s, PRIV_CONN(priv), left);
}

static void on_quiet_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	(void)ac;
	(void)priv;
	const redisReply *r = reply;
	if (r && r->type == REDIS_REPLY_ERROR)
		log_warn("redis: %s", r->str);
}

static void on_positions(redisAsyncContext *ac, void *reply, void *priv)
{
	struct store_redis *s = ac->data;
	const redisReply *r = reply;
	uint32_t *conns = priv;
	s->positions_pending = 0;
	if (!reply_ok(r) || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    (r->elements - 3) % 3) {
		free(conns);
		return;
	}
	uint32_t online = (uint32_t)r->element[0]->integer;
	uint32_t free_now = (uint32_t)r->element[1]->integer;
	int64_t handle = r->element[2]->integer;
	for (size_t i = 3; i < r->elements; i += 3) {
		uint32_t pos = (uint32_t)r->element[i]->integer;
		const char *held = r->element[i + 1]->str ? r->element[i + 1]->str : "";
		int64_t held_ms = r->element[i + 2]->integer;
		struct local *l = local_find(s, conns[(i - 3) / 3]);
		if (!l || !pos)
			continue;   /* left, or matched elsewhere: the session tells */
		struct store_event e = {
			.type = SE_POSITION, .conn = l->node.id, .position = pos, .online = online,
			.wait_s = matcher_estimate_for(pos, free_now, online, handle, held_ms),
			.waiting_for = matcher_hold_name(strcmp(held, "previous") == 0 ? HOLD_PREVIOUS
			                                 : strcmp(held, "topic") == 0 ? HOLD_TOPIC
			                                 : HOLD_NONE),
		};
		deliver(s, &e);
	}
	free(conns);
}

/* Positions of this node's waiting clients, in one call however many. */
static void ask_positions(struct store_redis *s)
{
	if (!s->nwaiting || s->positions_pending)
		return;
	size_t n = s->nwaiting;
	uint32_t *conns = malloc(n * sizeof *conns);
	const char **a = malloc((n + 3 + NRULES) * sizeof *a);
	char (*gids)[STORE_NODE_MAX + 16] = malloc(n * sizeof *gids);
	if (!conns || !a || !gids)
		goto out;
	size_t k = 0, i = 0;
	a[k++] = "FCALL";
	a[k++] = "es_positions";
	a[k++] = "0";
	for (int j = 0; j < NRULES; j++)
		a[k++] = s->rules[j];
	struct list *it;
	list_for_each(it, &s->waiting) {
		struct local *l = list_entry(it, struct local, link);
		conns[i] = l->node.id;
		gid(s, l->node.id, gids[i], sizeof gids[i]);
		a[k++] = gids[i++];
	}
	if (redisAsyncCommandArgv(s->cmd, on_positions, conns, (int)k, a, NULL) == REDIS_OK) {
		s->positions_pending = 1;
		s->qver_sent = s->qver;
		conns = NULL;
	}
out:
	free(conns);
	free(a);
	free(gids);
}

#define TICK_FIXED 12              /* es_tick's figures before the nodes' */

static void on_tick_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	(void)priv;
	struct store_redis *s = ac->data;
	const redisReply *r = reply;
	if (!reply_ok(r) || r->type != REDIS_REPLY_ARRAY || r->elements < TICK_FIXED ||
	    (r->elements - TICK_FIXED) % 3) {
		if (r && r->type == REDIS_REPLY_ERROR)
			log_warn("redis: es_tick: %s", r->str);
		return;
	}
	long long qver = strtoll(r->element[0]->str ? r->element[0]->str : "0", NULL, 10);
	struct store_stats *st = &s->stats;
	st->queue = (uint32_t)r->element[1]->integer;
	st->oldest_wait_s = (uint32_t)r->element[2]->integer;
	static const enum proto_state order[] = { ST_AWAY, ST_AVAILABLE, ST_RINGING, ST_BUSY,
		                                  ST_WRAPUP };
	for (int i = 0; i < 5; i++)
		st->by_state[order[i]] = (uint32_t)r->element[3 + i]->integer;
	st->served = (uint64_t)r->element[8]->integer;
	st->abandoned = (uint64_t)r->element[9]->integer;
	/* A rating taken on any node is news for operators here too. */
	int rated = st->ratings_count != (uint64_t)r->element[10]->integer;
	st->ratings_count = (uint64_t)r->element[10]->integer;
	st->ratings_sum = (uint64_t)r->element[11]->integer;
	/* Another node's figures moving (a session there ended, someone
	 * connected) is news for operators here too. */
	uint64_t sum = 1469598103934665603ull;
	for (size_t i = TICK_FIXED; i < r->elements; i++)
		for (const char *p = r->element[i]->str ? r->element[i]->str : ""; *p; p++)
			sum = (sum ^ (unsigned char)*p) * 1099511628211ull;
	int moved = sum != s->figures_sum;
	s->figures_sum = sum;
	st->nnodes = 0;
	for (size_t i = TICK_FIXED; i + 2 < r->elements && st->nnodes < PROTO_NODES_MAX; i += 3) {
		const redisReply *n = r->element[i], *u = r->element[i + 1], *f = r->element[i + 2];
		if (n->type != REDIS_REPLY_STRING || u->type != REDIS_REPLY_STRING ||
		    f->type != REDIS_REPLY_STRING)
			continue;
		snprintf(st->nodes[st->nnodes].node, sizeof st->nodes[0].node, "%s", n->str);
		snprintf(st->nodes[st->nnodes].url, sizeof st->nodes[0].url, "%s", u->str);
		snprintf(st->nodes[st->nnodes].figures, sizeof st->nodes[0].figures, "%s", f->str);
		st->nnodes++;
	}
	if (qver != s->qver || moved || rated) {
		s->qver = qver;
		struct store_event e = { .type = SE_STATS };
		deliver(s, &e);
	}
	if (s->qver != s->qver_sent)
		ask_positions(s);
}

static void send_tick(struct store_redis *s)
{
	char ttl[24];
	snprintf(ttl, sizeof ttl, "%lld", (long long)s->ttl_ms);
	const char *argv[] = { s->node, ttl, s->node_url, s->figures[0] ? s->figures : "-" };
	fcall(s, on_tick_reply, NULL, "es_tick", 4, argv, NULL);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct store_redis *s = w->data;
	if (s->ready)
		send_tick(s);
}

static void pop_events(struct store_redis *s);

static void on_events(redisAsyncContext *ac, void *reply, void *priv)
{
	(void)priv;
	struct store_redis *s = ac->data;
	const redisReply *r = reply;
	if (!r || s->closing)
		return;   /* disconnected: the next connection pops again */
	if (r->type == REDIS_REPLY_ERROR) {
		log_warn("redis: BLMPOP: %s", r->str);
		go_down(s, "event list");
		return;
	}
	/* [key, [line, ...]] */
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[1]->type == REDIS_REPLY_ARRAY) {
		const redisReply *items = r->element[1];
		for (size_t i = 0; i < items->elements; i++) {
			char line[512];
			snprintf(line, sizeof line, "%s", items->element[i]->str ? items->element[i]->str : "");
			on_event_line(s, line);
		}
	}
	pop_events(s);
}

static void pop_events(struct store_redis *s)
{
	char key[STORE_NODE_MAX + 16];
	snprintf(key, sizeof key, "earshot:ev:%s", s->node);
	const char *argv[] = { "BLMPOP", "0", "1", key, "LEFT", "COUNT", EV_BATCH };
	redisAsyncCommandArgv(s->ev, on_events, NULL, 7, argv, NULL);
}

/* es_k_over: the counselor's session closed (in crisis or not). */
static void session_over_call(struct store_redis *s, uint32_t conn, int crisis)
{
	char g[STORE_NODE_MAX + 16];
	gid(s, conn, g, sizeof g);
	const char *argv[] = { g, crisis ? "1" : "0" };
	fcall(s, on_quiet_reply, NULL, "es_k_over", 2, argv, NULL);
}

/* es_resync: the node's waiting clients (oldest first) and counselors. */
static void on_resynced(redisAsyncContext *ac, void *reply, void *priv);

static void resync(struct store_redis *s)
{
	size_t n = 0;
	idtable_for_each(&s->locals, b, node)
		n++;
	const char **a = malloc((n * 6 + 5 + NRULES) * sizeof *a);
	char (*num)[16] = malloc((n + 1) * sizeof *num);
	if (!a || !num) {
		free(a);
		free(num);
		go_down(s, "out of memory");
		return;
	}
	size_t k = 0, m = 0;
	a[k++] = "FCALL";
	a[k++] = "es_resync";
	a[k++] = "0";
	for (int j = 0; j < NRULES; j++)
		a[k++] = s->rules[j];
	a[k++] = s->node;
	snprintf(num[m], sizeof num[m], "%u", s->nwaiting);
	a[k++] = num[m++];
	struct list *it;
	list_for_each(it, &s->waiting) {
		struct local *l = list_entry(it, struct local, link);
		snprintf(num[m], sizeof num[m], "%u", l->node.id);
		a[k++] = num[m++];
		a[k++] = l->topic;
		a[k++] = proto_mode_name(l->mode);
		a[k++] = l->crisis ? "1" : "0";
		a[k++] = l->who;
		a[k++] = l->ask ? "1" : "0";
	}
	idtable_for_each(&s->locals, b, node) {
		const struct local *l = LOCAL(node);
		if (!l->counselor)
			continue;
		snprintf(num[m], sizeof num[m], "%u", l->node.id);
		a[k++] = num[m++];
		a[k++] = proto_state_name(l->kstate);
		a[k++] = l->sub;
		a[k++] = l->skills;
	}
	redisAsyncCommandArgv(s->cmd, on_resynced, NULL, (int)k, a, NULL);
	free(a);
	free(num);
}

static void on_resynced(redisAsyncContext *ac, void *reply, void *priv)
{
	(void)priv;
	struct store_redis *s = ac->data;
	const redisReply *r = reply;
	if (!r || s->closing)
		return;   /* disconnected: go_down has it in hand */
	if (!reply_ok(r)) {
		log_error("redis: es_resync: %s", r->str);
		go_down(s, "resync failed");
		return;
	}
	s->ready = 1;
	s->backoff = BACKOFF_MIN_S;
	log_info("redis: node %s ready at %s:%d/%d", s->node, s->host, s->port, s->db);
	/* Sessions that ended while Redis was away. */
	idtable_for_each(&s->locals, b, node) {
		struct local *l = LOCAL(node);
		if (l->over_pending) {
			session_over_call(s, l->node.id, l->over_crisis);
			l->over_pending = 0;
		}
	}
	s->qver_sent = -1;
	send_tick(s);
	pop_events(s);
}

static void on_loaded(redisAsyncContext *ac, void *reply, void *priv)
{
	(void)priv;
	struct store_redis *s = ac->data;
	const redisReply *r = reply;
	if (!r || s->closing)
		return;
	if (!reply_ok(r)) {
		log_error("redis: FUNCTION LOAD: %s", r->str);
		go_down(s, "functions not loaded");
		return;
	}
	send_tick(s);   /* registers the node before resync sweeps anything */
	resync(s);
}

static void start_session(struct store_redis *s)
{
	char db[16];
	snprintf(db, sizeof db, "%d", s->db);
	const char *sel[] = { "SELECT", db };
	redisAsyncCommandArgv(s->cmd, on_quiet_reply, NULL, 2, sel, NULL);
	redisAsyncCommandArgv(s->ev, on_quiet_reply, NULL, 2, sel, NULL);
	const char *load[] = { "FUNCTION", "LOAD", "REPLACE", STORE_LUA };
	redisAsyncCommandArgv(s->cmd, on_loaded, NULL, 4, load, NULL);
}

/* A context that go_down already let go of is not ours any more. */
static int current(const struct store_redis *s, const redisAsyncContext *ac)
{
	return !s->closing && (ac == s->cmd || ac == s->ev);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct store_redis *s = ac->data;
	if (!current(s, ac))
		return;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback. */
		if (ac == s->cmd)
			s->cmd = NULL;
		if (ac == s->ev)
			s->ev = NULL;
		go_down(s, ac->errstr);
		return;
	}
	if (++s->connected == 2) {
		ev_timer_stop(s->loop, &s->retry);
		start_session(s);
	}
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	(void)status;
	struct store_redis *s = ac->data;
	if (!current(s, ac))
		return;
	/* hiredis frees the context after this callback. */
	if (ac == s->cmd)
		s->cmd = NULL;
	if (ac == s->ev)
		s->ev = NULL;
	go_down(s, "connection lost");
}

static redisAsyncContext *open_one(struct store_redis *s)
{
	redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
	if (!ac)
		return NULL;
	if (ac->err) {
		log_warn("redis: %s", ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	ac->data = s;
	redisLibevAttach(s->loop, ac);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	return ac;
}

static void connect_both(struct store_redis *s)
{
	s->connected = 0;
	s->cmd = open_one(s);
	s->ev = s->cmd ? open_one(s) : NULL;
	if (!s->cmd || !s->ev) {
		go_down(s, "cannot connect");
		return;
	}
	/* A connection that never completes is retried too. */
	ev_timer_set(&s->retry, CONNECT_TIMEOUT_S, 0.0);
	ev_timer_start(s->loop, &s->retry);
}

/* Drop both connections and try again after the backoff. Safe from inside
 * a hiredis callback (redisAsyncFree defers the free until it returns). */
static void go_down(struct store_redis *s, const char *why)
{
	int was_ready = s->ready;
	s->ready = 0;
	s->positions_pending = 0;
	redisAsyncContext *both[2] = { s->cmd, s->ev };
	s->cmd = s->ev = NULL;
	s->connected = 0;
	/* Pending calls complete now, with no reply: a talk_now is refused
	 * plainly, a cancel lets the person go. */
	for (int i = 0; i < 2; i++)
		if (both[i])
			redisAsyncFree(both[i]);
	if (was_ready)
		log_warn("redis: %s; new arrivals are refused until it is back", why);
	ev_timer_stop(s->loop, &s->retry);
	ev_timer_set(&s->retry, s->backoff, 0.0);
	ev_timer_start(s->loop, &s->retry);
	s->backoff = s->backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : s->backoff * 2;
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct store_redis *s = w->data;
	if (s->cmd || s->ev) {          /* the connect timed out */
		go_down(s, "connect timed out");
		return;
	}
	connect_both(s);
}

/* ---- operations ---- */

static void client_enqueue(struct store *st, uint32_t conn, const struct store_request *r)
{
	struct store_redis *s = RED(st);
	struct local *l = s->ready ? local_add(s, conn) : NULL;
	if (!l) {
		emit_result(s, conn, PT_TALK_NOW, STORE_DOWN);
		return;
	}
	snprintf(l->topic, sizeof l->topic, "%s", r->topic);
	l->mode = r->mode;
	l->crisis = r->crisis != 0;
	l->ask = r->previous != 0;
	snprintf(l->who, sizeof l->who, "%s", r->who[0] ? r->who : "-");
	local_unwait(s, l);
	list_add_tail(&s->waiting, &l->link);
	s->nwaiting++;
	char c[16];
	snprintf(c, sizeof c, "%u", conn);
	const char *argv[] = { s->node, c, l->topic, proto_mode_name(l->mode), l->crisis ? "1" : "0",
		               l->who, l->ask ? "1" : "0" };
	if (fcall(s, on_result_reply, PRIV(conn, PT_TALK_NOW), "es_enqueue", 7, argv, NULL)) {
		local_unwait(s, l);
		emit_result(s, conn, PT_TALK_NOW, STORE_DOWN);
	}
}

static void client_leave(struct store_redis *s, uint32_t conn, int cancel)
{
	struct local *l = local_find(s, conn);
	if (l && !cancel)
		local_drop(s, conn);
	char g[STORE_NODE_MAX + 16];
	gid(s, conn, g, sizeof g);
	const char *argv[] = { g };
	if (s->ready && fcall(s, cancel ? on_cancel_reply : on_quiet_reply,
	                      cancel ? PRIV(conn, PT_CANCEL) : NULL, "es_cancel", 1, argv,
	                      NULL) == 0)
		return;
	if (cancel)
		cancelled(s, conn, 1);
}

static void client_cancel(struct store *st, uint32_t conn)
{
	client_leave(RED(st), conn, 1);
}

static void client_gone(struct store *st, uint32_t conn)
{
	client_leave(RED(st), conn, 0);
}

static void client_away(struct store *st, uint32_t conn, int away)
{
	struct store_redis *s = RED(st);
	char g[STORE_NODE_MAX + 16];
	gid(s, conn, g, sizeof g);
	const char *argv[] = { g, away ? "1" : "0" };
	if (s->ready)
		fcall(s, on_quiet_reply, NULL, "es_c_away", 2, argv, NULL);
}

/* es_k_gone: the counselor's gid alone. */
static void counselor_call(struct store_redis *s, const char *fn, uint32_t conn)
{
	char g[STORE_NODE_MAX + 16];
	gid(s, conn, g, sizeof g);
	const char *argv[] = { g };
	if (s->ready)
		fcall(s, on_quiet_reply, NULL, fn, 1, argv, NULL);
}

static void counselor_add(struct store *st, uint32_t conn, const char *sub, const char *skills)
{
	struct store_redis *s = RED(st);
	struct local *l = local_add(s, conn);
	if (!l)
		return;
	l->counselor = 1;
	l->kstate = ST_AWAY;
	snprintf(l->sub, sizeof l->sub, "%s", sub);
	snprintf(l->skills, sizeof l->skills, "%s", skills);
	char g[STORE_NODE_MAX + 16];
	gid(s, conn, g, sizeof g);
	const char *argv[] = { g, l->sub, l->skills };
	if (s->ready)   /* if Redis is away, resync adds them */
		fcall(s, on_quiet_reply, NULL, "es_k_add", 3, argv, NULL);
}

static void counselor_gone(struct store *st, uint32_t conn)
{
	struct store_redis *s = RED(st);
	local_drop(s, conn);
	counselor_call(s, "es_k_gone", conn);
}

/* A counselor's function whose outcome the hub waits for (`ref`): the
 * counselor's gid, then `a1` and `a2` (NULL: none). */
static void counselor_ask(struct store_redis *s, uint32_t conn, enum proto_type ref,
                          const char *fn, const char *a1, const char *a2)
{
	char g[STORE_NODE_MAX + 16];
	gid(s, conn, g, sizeof g);
	const char *argv[] = { g, a1, a2 };
	if (!s->ready || fcall(s, on_result_reply, PRIV(conn, ref), fn, a2 ? 3 : 2, argv, NULL))
		emit_result(s, conn, ref, STORE_DOWN);
}

static void counselor_set(struct store *st, uint32_t conn, enum proto_state state)
{
	counselor_ask(RED(st), conn, PT_SET_STATE, "es_k_set", proto_state_name(state), NULL);
}

static void counselor_answer(struct store *st, uint32_t conn, int64_t offer_id, int accept)
{
	char oid[24];
	snprintf(oid, sizeof oid, "%lld", (long long)offer_id);
	counselor_ask(RED(st), conn, accept ? PT_ACCEPT : PT_DECLINE, "es_k_answer", oid,
	              accept ? "1" : "0");
}

static void counselor_break(struct store *st, uint32_t conn, int64_t ms)
{
	char v[24];
	snprintf(v, sizeof v, "%lld", (long long)ms);
	counselor_ask(RED(st), conn, PT_TAKE_BREAK, "es_k_break", v, NULL);
}

static void client_requeue(struct store *st, const struct store_event *m, int present)
{
	struct store_redis *s = RED(st);
	char conn[16], since[24] = "0", place[24] = "0", who[STORE_WHO_MAX + 1] = "-", ask[2] = "0";
	snprintf(conn, sizeof conn, "%u", m->client.conn);
	sscanf(m->place, "%23s %23s %32s %1s", since, place, who, ask);
	const char *argv[] = { m->client.node, conn, m->topic, proto_mode_name(m->mode), since, place,
		               who, ask, present ? "1" : "0" };
	if (s->ready)
		fcall(s, on_quiet_reply, NULL, "es_requeue", 9, argv, NULL);
	else
		log_warn("redis away: client %s/%u could not be put back in line", m->client.node,
		         m->client.conn);
}

static void counselor_session_over(struct store *st, uint32_t conn, int crisis)
{
	struct store_redis *s = RED(st);
	struct local *l = local_find(s, conn);
	if (!s->ready) {
		if (l) {
			l->over_pending = 1;
			l->over_crisis = crisis;
		}
		return;
	}
	session_over_call(s, conn, crisis);
}

static void rate(struct store *st, uint32_t conn, const char *counselor, const char *topic,
                 int score, const char *comment)
{
	struct store_redis *s = RED(st);
	char v[4], topics[16], comments[16];
	snprintf(v, sizeof v, "%d", score);
	snprintf(topics, sizeof topics, "%d", PROTO_TOPICS_MAX);
	snprintf(comments, sizeof comments, "%d", PROTO_COMMENTS_MAX);
	const char *argv[] = { counselor, topic, v, comment, topics, comments };
	if (!s->ready || fcall(s, on_result_reply, PRIV(conn, PT_RATE), "es_rate", 6, argv, NULL))
		emit_result(s, conn, PT_RATE, STORE_DOWN);
}

/* es_ratings' lists: 8 values an entry (name, count, sum, then how many
 * gave each score); NULL-safe. */
static uint32_t ratings_list(const redisReply *l, struct proto_rating *out, uint32_t max)
{
	uint32_t n = 0;
	if (!l || l->type != REDIS_REPLY_ARRAY)
		return 0;
	for (size_t i = 0; i + 8 <= l->elements && n < max; i += 8) {
		redisReply **f = l->element + i;
		if (f[0]->type != REDIS_REPLY_STRING || !f[0]->str)
			continue;
		struct proto_rating *e = &out[n++];
		snprintf(e->name, sizeof e->name, "%s", f[0]->str);
		e->count = (uint32_t)f[1]->integer;
		for (int k = 0; k < 5; k++)
			e->hist[k] = (uint32_t)f[3 + k]->integer;
		e->mean = e->count ? (double)f[2]->integer / (double)e->count : 0.0;
	}
	return n;
}

/* [counselors, topics, comments] (store.lua es_ratings). */
static void on_ratings_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct store_redis *s = ac->data;
	const redisReply *r = reply;
	uint32_t conn = PRIV_CONN(priv);
	struct proto_ratings *out = NULL;
	if (reply_ok(r) && r->type == REDIS_REPLY_ARRAY && r->elements == 3)
		out = calloc(1, sizeof *out);
	if (!out) {
		if (r && r->type == REDIS_REPLY_ERROR)
			log_warn("redis: es_ratings: %s", r->str);
		emit_result(s, conn, PT_RATINGS, STORE_DOWN);
		return;
	}
	out->ncounselors = ratings_list(r->element[0], out->counselors, PROTO_RATED_MAX);
	out->ntopics = ratings_list(r->element[1], out->topics, PROTO_TOPICS_MAX);
	const redisReply *c = r->element[2];
	for (size_t i = 0; out->ncounselors && c->type == REDIS_REPLY_ARRAY && i < c->elements &&
	     out->ncomments < PROTO_COMMENTS_MAX; i++)
		if (c->element[i]->type == REDIS_REPLY_STRING && c->element[i]->len > 0)
			snprintf(out->comments[out->ncomments++], sizeof out->comments[0], "%s",
			         c->element[i]->str);
	struct store_event e = { .type = SE_RATINGS, .conn = conn, .ratings = out };
	deliver(s, &e);
	free(out);
}

static void ratings(struct store *st, uint32_t conn, const char *counselor)
{
	struct store_redis *s = RED(st);
	char rated[16], topics[16];
	snprintf(rated, sizeof rated, "%d", PROTO_RATED_MAX);
	snprintf(topics, sizeof topics, "%d", PROTO_TOPICS_MAX);
	const char *argv[] = { counselor ? counselor : "", rated, topics };
	if (!s->ready || fcall(s, on_ratings_reply, PRIV(conn, PT_RATINGS), "es_ratings", 3, argv,
	                       NULL))
		emit_result(s, conn, PT_RATINGS, STORE_DOWN);
}

static void stats(struct store *st, struct store_stats *out)
{
	*out = RED(st)->stats;
}

static int up(struct store *st)
{
	return RED(st)->ready;
}

static void publish(struct store *st, const char *figures)
{
	snprintf(RED(st)->figures, sizeof RED(st)->figures, "%s", figures);
}

static void redis_free(struct store *st)
{
	struct store_redis *s = RED(st);
	s->closing = 1;
	ev_timer_stop(s->loop, &s->tick);
	ev_timer_stop(s->loop, &s->retry);
	redisAsyncContext *both[2] = { s->cmd, s->ev };
	s->cmd = s->ev = NULL;
	for (int i = 0; i < 2; i++)
		if (both[i])
			redisAsyncFree(both[i]);
	size_t from = 0;
	for (struct idnode *n; (n = idtable_take(&s->locals, &from)) != NULL;)
		free(LOCAL(n));
	free(s);
}

static const struct store_ops redis_ops = {
	.name = "redis",
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
	.free = redis_free,
};

static int parse_url(const char *url, char *host, size_t hostcap, int *port, int *db)
{
	const char *p = url;
	if (strncmp(p, "redis://", 8) != 0)
		return -1;
	p += 8;
	size_t n = strcspn(p, ":/");
	if (n == 0 || n >= hostcap)
		return -1;
	memcpy(host, p, n);
	host[n] = '\0';
	p += n;
	*port = 6379;
	*db = 0;
	char *end;
	if (*p == ':') {
		long v = strtol(p + 1, &end, 10);
		if (end == p + 1 || v < 1 || v > 65535)
			return -1;
		*port = (int)v;
		p = end;
	}
	if (*p == '/' && p[1]) {
		long v = strtol(p + 1, &end, 10);
		if (end == p + 1 || *end || v < 0 || v > 1000)
			return -1;
		*db = (int)v;
		p = end;
	} else if (*p == '/') {
		p++;
	}
	return *p ? -1 : 0;
}

struct store *store_redis_new(struct ev_loop *loop, const struct store_config *cfg,
                              const char *url, const char *node, const char *node_url,
                              int64_t ttl_ms,
                              store_emit_fn emit, void *ctx, char *err, size_t errlen)
{
	struct store_redis *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (parse_url(url, s->host, sizeof s->host, &s->port, &s->db) != 0) {
		snprintf(err, errlen, "redis '%s' is not redis://host[:port][/db]", url);
		free(s);
		return NULL;
	}
	s->base.ops = &redis_ops;
	s->loop = loop;
	s->emit = emit;
	s->ctx = ctx;
	s->cfg = *cfg;
	s->ttl_ms = ttl_ms;
	snprintf(s->node, sizeof s->node, "%s", node);
	snprintf(s->node_url, sizeof s->node_url, "%s", node_url);
	list_init(&s->waiting);
	long long rules[NRULES] = { cfg->ring_ms, cfg->wrapup_ms, cfg->redecline_ms,
		                    cfg->max_missed, cfg->max_queue, cfg->handle_ms,
		                    ttl_ms * 3 > 30000 ? ttl_ms * 3 : 30000, cfg->topic_wait_ms,
		                    cfg->previous_wait_ms, cfg->memory_ms, cfg->crisis_wrapup_ms,
		                    cfg->shift_sessions, cfg->shift_ms };
	for (int i = 0; i < NRULES; i++)
		snprintf(s->rules[i], sizeof s->rules[i], "%lld", rules[i]);
	s->backoff = BACKOFF_MIN_S;
	s->qver = s->qver_sent = -1;
	ev_init(&s->retry, retry_cb);
	s->retry.data = s;
	ev_timer_init(&s->tick, tick_cb, TICK_S, TICK_S);
	s->tick.data = s;
	ev_timer_start(loop, &s->tick);
	connect_both(s);
	return &s->base;
}
