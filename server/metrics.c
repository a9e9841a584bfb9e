/* metrics.c - counters and the Prometheus text exposition (metrics.h). */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *const metrics_error_codes[] = {
	"bad_json", "bad_field", "unknown_type", "too_large", "rate_limited",
	"not_authenticated", "already_authenticated",
	"auth_required", "token_malformed", "token_unsigned",
	"token_bad_signature", "token_expired", "token_wrong_role",
	"wrong_role", "wrong_state", "no_such_offer", "replaced",
	"shutting_down", "server_busy", "store_unavailable", "shift_over",
	"duplicate",
};
const size_t metrics_error_count =
	sizeof metrics_error_codes / sizeof metrics_error_codes[0];
_Static_assert(sizeof metrics_error_codes / sizeof metrics_error_codes[0] <= METRICS_ERRORS_MAX,
               "struct metrics.errors is too small for the error code table");

const char *const metrics_media_drop_names[MD_COUNT] = {
	"auth", "replay", "bad_rtp", "not_opus", "too_large", "rate", "stale",
	"no_session", "slow_reader",
};

int metrics_error_index(const char *code)
{
	for (size_t i = 0; i < metrics_error_count; i++)
		if (strcmp(metrics_error_codes[i], code) == 0)
			return (int)i;
	return -1;
}

void metrics_count_error(struct metrics *m, const char *code)
{
	int i = metrics_error_index(code);
	if (i >= 0)
		m->errors[i]++;
}

struct out { char *buf; size_t cap, len; int overflow; };

static void put(struct out *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	if (o->overflow)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len)
		o->overflow = 1;
	else
		o->len += (size_t)n;
}

static void gauge(struct out *o, const char *name, const char *help, double v)
{
	put(o, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static void counter(struct out *o, const char *name, const char *help, uint64_t v)
{
	put(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
	    (unsigned long long)v);
}

long metrics_render(const struct metrics *m, const struct proto_stats *s,
                    char *buf, size_t cap)
{
	if (cap == 0)
		return -1;
	struct out o = { buf, cap, 0, 0 };
	buf[0] = '\0';
	gauge(&o, "earshot_queue_depth", "People waiting for a counselor.", s->queue);
	gauge(&o, "earshot_queue_oldest_wait_seconds", "How long the person first in line has waited.",
	      s->oldest_wait_s);
	put(&o, "# HELP earshot_counselors Connected counselors by state.\n"
	        "# TYPE earshot_counselors gauge\n");
	const struct { const char *state; uint32_t n; } by_state[] = {
		{ "available", s->available }, { "ringing", s->ringing },
		{ "busy", s->busy }, { "wrapup", s->wrapup }, { "away", s->away },
	};
	for (size_t i = 0; i < sizeof by_state / sizeof by_state[0]; i++)
		put(&o, "earshot_counselors{state=\"%s\"} %u\n", by_state[i].state, by_state[i].n);
	gauge(&o, "earshot_sessions", "Sessions in progress, the whole service.", s->sessions);
	gauge(&o, "earshot_connections", "Open WebSocket connections, the whole service.", s->connections);
	counter(&o, "earshot_sessions_served_total", "Offers accepted (sessions started).", s->served);
	counter(&o, "earshot_queue_abandoned_total", "People who left the queue before being served.",
	        s->abandoned);
	counter(&o, "earshot_ratings_total", "Session ratings received.", s->ratings_count);
	gauge(&o, "earshot_rating_mean", "Mean session rating (1-5).", s->ratings_mean);
	gauge(&o, "earshot_uptime_seconds", "Seconds since the server started.", (double)s->uptime_s);
	/* The service's figures above are sums over its nodes; each node's own: */
	put(&o, "# HELP earshot_node_sessions Sessions in progress, by node.\n"
	        "# TYPE earshot_node_sessions gauge\n");
	for (uint32_t i = 0; i < s->nnodes; i++)
		put(&o, "earshot_node_sessions{node=\"%s\"} %u\n", s->nodes[i].node, s->nodes[i].sessions);
	put(&o, "# HELP earshot_node_connections Open WebSocket connections, by node.\n"
	        "# TYPE earshot_node_connections gauge\n");
	for (uint32_t i = 0; i < s->nnodes; i++)
		put(&o, "earshot_node_connections{node=\"%s\"} %u\n", s->nodes[i].node,
		    s->nodes[i].connections);
	counter(&o, "earshot_connections_total", "WebSocket connections accepted.", m->connections_total);
	counter(&o, "earshot_messages_in_total", "Messages accepted from peers.", m->messages_in);
	counter(&o, "earshot_chat_relayed_total", "Chat messages relayed.", m->chat_relayed);
	gauge(&o, "earshot_crisis_sessions", "Sessions in progress flagged in crisis, the whole service.",
	      s->ncrises);
	counter(&o, "earshot_crises_flagged_total", "Sessions flagged in crisis on this node.",
	        m->crises_flagged);
	counter(&o, "earshot_resumed_total",
	        "Dropped connections resumed within the grace (on this node, their first one's).",
	        m->resumed);
	counter(&o, "earshot_resume_expired_total",
	        "Dropped connections whose grace ran out: the place or session was let go.",
	        m->resume_expired);
	put(&o, "# HELP earshot_errors_total Errors sent to peers, by code.\n"
	        "# TYPE earshot_errors_total counter\n");
	for (size_t i = 0; i < metrics_error_count; i++)
		put(&o, "earshot_errors_total{code=\"%s\"} %llu\n", metrics_error_codes[i],
		    (unsigned long long)m->errors[i]);
	counter(&o, "earshot_media_packets_relayed_total", "Voice packets relayed.",
	        m->media_relayed);
	put(&o, "# HELP earshot_media_packets_dropped_total Voice packets dropped, by reason.\n"
	        "# TYPE earshot_media_packets_dropped_total counter\n");
	for (int i = 0; i < MD_COUNT; i++)
		put(&o, "earshot_media_packets_dropped_total{reason=\"%s\"} %llu\n",
		    metrics_media_drop_names[i], (unsigned long long)m->media_dropped[i]);
	return o.overflow ? -1 : (long)o.len;
}
