/* stats.c - what operators see (`stats`, /stats, /metrics): the queue,
 * the counselors and the ratings from the store, plus every node's own
 * figures (sessions, connections, voice packets), summed for the service
 * and listed node by node. A node shares its figures with its presence as
 * one line:
 *   sessions connections uptime_s relayed dropped... [crisis...]
 * (dropped: one number per metrics.h drop reason, in that order; then one
 * "<session id>/<counselor sub>/<flagged at, Unix s>" per session in crisis
 * it runs, at most CRISES_PER_NODE). */
#include "hub_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define CRISES_PER_NODE 8
#define STR_(x) #x
#define STR(x) STR_(x)

struct figures {
	uint64_t sessions, connections, uptime_s, relayed;
	uint64_t dropped[MD_COUNT];
	int ncrises;
	struct { char id[PROTO_ID_MAX + 1], counselor[PROTO_SUB_MAX + 1]; int64_t at; }
		crises[CRISES_PER_NODE];
};

static void own(struct hub *h, struct figures *f)
{
	memset(f, 0, sizeof *f);
	f->sessions = h->nsessions;
	f->connections = ws_server_connections(h->ws);
	f->uptime_s = (uint64_t)((hub_now_ms() - h->started_ms) / 1000);
	f->relayed = h->metrics.media_relayed;
	memcpy(f->dropped, h->metrics.media_dropped, sizeof f->dropped);
	struct list *it;
	list_for_each(it, &h->sessions) {
		const struct session *s = list_entry(it, struct session, link);
		if (!s->crisis_at || f->ncrises == CRISES_PER_NODE)
			continue;
		snprintf(f->crises[f->ncrises].id, sizeof f->crises[0].id, "%s", s->id);
		snprintf(f->crises[f->ncrises].counselor, sizeof f->crises[0].counselor, "%s",
		         s->counselor->ident.sub);
		f->crises[f->ncrises++].at = s->crisis_at;
	}
}

static void format(const struct figures *f, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64, f->sessions,
	                 f->connections, f->uptime_s, f->relayed);
	for (int i = 0; i < MD_COUNT && n > 0 && (size_t)n < cap; i++)
		n += snprintf(buf + n, cap - (size_t)n, " %" PRIu64, f->dropped[i]);
	for (int i = 0; i < f->ncrises && n > 0 && (size_t)n < cap; i++)
		n += snprintf(buf + n, cap - (size_t)n, " %s/%s/%lld", f->crises[i].id,
		              f->crises[i].counselor, (long long)f->crises[i].at);
}

/* 0 when `s` holds every number (a node of another version may not). */
static int parse(const char *s, struct figures *f)
{
	uint64_t *v[4 + MD_COUNT] = { &f->sessions, &f->connections, &f->uptime_s, &f->relayed };
	for (int i = 0; i < MD_COUNT; i++)
		v[4 + i] = &f->dropped[i];
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		int used = 0;
		if (sscanf(s, " %" SCNu64 "%n", v[i], &used) != 1)
			return -1;
		s += used;
	}
	f->ncrises = 0;
	for (int used = 0; f->ncrises < CRISES_PER_NODE; s += used) {
		long long at;
		used = 0;
		if (sscanf(s, " %" STR(PROTO_ID_MAX) "[^/ ]/%" STR(PROTO_SUB_MAX) "[^/ ]/%lld%n",
		           f->crises[f->ncrises].id, f->crises[f->ncrises].counselor, &at, &used) != 3 ||
		    !used)
			break;
		f->crises[f->ncrises++].at = at;
	}
	return 0;
}

static void add(struct figures *sum, const struct figures *f)
{
	sum->sessions += f->sessions;
	sum->connections += f->connections;
	sum->relayed += f->relayed;
	for (int i = 0; i < MD_COUNT; i++)
		sum->dropped[i] += f->dropped[i];
}

/* The node's sessions in crisis join the service's list. */
static void alert(struct proto_stats *s, const struct figures *f, int64_t now)
{
	for (int i = 0; i < f->ncrises && s->ncrises < PROTO_CRISES_MAX; i++) {
		struct proto_crisis *c = &s->crises[s->ncrises++];
		snprintf(c->session_id, sizeof c->session_id, "%s", f->crises[i].id);
		snprintf(c->counselor, sizeof c->counselor, "%s", f->crises[i].counselor);
		c->since_s = now > f->crises[i].at ? (uint64_t)(now - f->crises[i].at) : 0;
	}
}

static void list(struct proto_stats *s, const char *node, const struct figures *f)
{
	if (s->nnodes >= PROTO_NODES_MAX)
		return;
	struct proto_node_stats *n = &s->nodes[s->nnodes++];
	snprintf(n->node, sizeof n->node, "%s", node);
	n->sessions = (uint32_t)f->sessions;
	n->connections = (uint32_t)f->connections;
	n->relayed = f->relayed;
	for (int i = 0; i < MD_COUNT; i++)
		n->dropped += f->dropped[i];
	n->uptime_s = f->uptime_s;
}

void hub_stats_fill(struct hub *h, struct proto_stats *s)
{
	struct figures mine, sum = { 0 };
	int64_t now = (int64_t)time(NULL);
	own(h, &mine);
	char line[STORE_FIGURES_MAX];
	format(&mine, line, sizeof line);
	h->store->ops->publish(h->store, line);
	struct store_stats ms;
	h->store->ops->stats(h->store, &ms);

	memset(s, 0, sizeof *s);
	s->queue = ms.queue;
	s->oldest_wait_s = ms.oldest_wait_s;
	s->available = ms.by_state[ST_AVAILABLE];
	s->ringing = ms.by_state[ST_RINGING];
	s->busy = ms.by_state[ST_BUSY];
	s->wrapup = ms.by_state[ST_WRAPUP];
	s->away = ms.by_state[ST_AWAY];
	s->served = (uint32_t)ms.served;
	s->abandoned = (uint32_t)ms.abandoned;
	/* This node's own figures are always today's, not the shared copy. */
	int listed = 0;
	for (uint32_t i = 0; i < ms.nnodes; i++) {
		struct figures f;
		int self = strcmp(ms.nodes[i].node, h->node) == 0;
		if (self)
			f = mine;
		else if (parse(ms.nodes[i].figures, &f) != 0)
			continue;
		listed |= self;
		add(&sum, &f);
		list(s, ms.nodes[i].node, &f);
		alert(s, &f, now);
	}
	if (!listed) {
		add(&sum, &mine);
		list(s, h->node, &mine);
		alert(s, &mine, now);
	}
	s->sessions = (uint32_t)sum.sessions;
	s->connections = (uint32_t)sum.connections;
	s->ratings_count = (uint32_t)ms.ratings_count;
	s->ratings_mean = ms.ratings_count ? (double)ms.ratings_sum / (double)ms.ratings_count : 0;
	s->uptime_s = mine.uptime_s;
	s->media_relayed = sum.relayed;
	s->media_auth = sum.dropped[MD_AUTH];
	s->media_replay = sum.dropped[MD_REPLAY];
	s->media_not_opus = sum.dropped[MD_NOT_OPUS];
	s->media_too_large = sum.dropped[MD_TOO_LARGE];
	s->media_rate = sum.dropped[MD_RATE];
	s->media_stale = sum.dropped[MD_STALE];
	s->media_bad_rtp = sum.dropped[MD_BAD_RTP];
	s->media_no_session = sum.dropped[MD_NO_SESSION];
	s->media_slow_reader = sum.dropped[MD_SLOW_READER];
}
