/* hub.c - connections, authentication, message routing, the matcher's
 * actions, queue positions, operator stats and HTTP (see hub.h). Sessions
 * and chat are in session.c. */
#include "hub.h"
#include "hub_int.h"
#include "log.h"
#include "web.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATS_MIN_INTERVAL_S 0.25
#define HOUSEKEEPING_S 1.0
/* The largest message is a chat text of PROTO_TEXT_MAX bytes, each of
 * which JSON may escape as \u00XX (6 bytes). */
#define SEND_BUF (PROTO_TEXT_MAX * 6 + 1024)

int64_t hub_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void random_hex(char *out, size_t nbytes)
{
	unsigned char b[32];
	if (nbytes > sizeof b)
		nbytes = sizeof b;
	if (RAND_bytes(b, (int)nbytes) != 1)
		abort(); /* no randomness: nothing secure can go on */
	for (size_t i = 0; i < nbytes; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

/* ---- sending ---- */

void hub_send(struct conn *c, const struct proto_msg *m)
{
	char stack[SEND_BUF];
	if (!c->ws && !c->pipe && !c->proxy && !(c->ghost && m->type == PT_SESSION_END))
		return;
	/* `ratings` alone may be longer: it is rare, and encoded on the heap. */
	int big = m->type == PT_RATINGS;
	size_t cap = big ? PROTO_RATINGS_JSON_MAX : sizeof stack;
	char *buf = big ? malloc(cap) : stack;
	long n = buf ? proto_encode(m, buf, cap) : -1;
	if (n < 0)
		log_error("conn %u: cannot encode a '%s' message", c->id,
		          proto_type_name(m->type));
	else
		hub_send_raw(c, buf, (size_t)n);
	if (big)
		free(buf);
}

void hub_send_raw(struct conn *c, const char *json, size_t len)
{
	if (c->pipe) {
		span_send(c, json, len);
	} else if (c->proxy) {
		span_link_send(c->proxy, "down", c->proxy_conn, json, len);
	} else if (c->ws) {
		ws_send(c->ws, json, len);
	} else if (c->ghost && !c->ended) {
		/* Away when their session closed: they get its end when back. */
		struct proto_msg *m = malloc(sizeof *m);
		struct proto_err err;
		if (m && proto_decode(json, len, m, &err) == PROTO_OK && m->type == PT_SESSION_END)
			c->ended = m;
		else
			free(m);
	}
}

int hub_send_media(struct conn *c, const uint8_t *buf, size_t len)
{
	if (c->pipe)
		return span_send_media(c, buf, len);
	if (c->proxy)
		return span_link_media(c->proxy, c->proxy_conn | LINK_RESUMED, buf, len);
	return c->ws ? ws_send_media(c->ws, buf, len) : -1;
}

void hub_error(struct conn *c, const char *code, const char *reason,
               enum proto_type ref)
{
	struct proto_msg m = { .type = PT_ERROR };
	snprintf(m.code, sizeof m.code, "%s", code);
	snprintf(m.reason, sizeof m.reason, "%s", reason);
	if (ref != PT_NONE)
		snprintf(m.ref, sizeof m.ref, "%s", proto_type_name(ref));
	metrics_count_error(&c->hub->metrics, code);
	log_debug("conn %u: error %s (%s)", c->id, code, reason);
	hub_send(c, &m);
}

static void error_close(struct conn *c, const char *code, const char *reason)
{
	hub_error(c, code, reason, PT_HELLO);
	if (c->ws)
		ws_close(c->ws, 1008, code);
}

/* ---- the id hash ---- */

static struct conn **bucket(struct hub *h, uint32_t id)
{
	return &h->buckets[id % HUB_BUCKETS];
}

struct conn *hub_conn_by_id(struct hub *h, uint32_t id)
{
	for (struct conn *c = *bucket(h, id); c; c = c->hnext)
		if (c->id == id)
			return c;
	return NULL;
}

static void conn_unhash(struct hub *h, struct conn *c)
{
	for (struct conn **pp = bucket(h, c->id); *pp; pp = &(*pp)->hnext)
		if (*pp == c) {
			*pp = c->hnext;
			return;
		}
}

/* ---- queue positions and operator stats ---- */

static void stats_push(struct hub *h, int force)
{
	struct proto_msg m = { .type = PT_STATS };
	hub_stats_fill(h, &m.stats);
	/* Time passing alone is no news. */
	struct proto_stats cmp = m.stats;
	cmp.uptime_s = h->last_stats.uptime_s;
	for (uint32_t i = 0; i < cmp.nnodes; i++)
		cmp.nodes[i].uptime_s = h->last_stats.nodes[i].uptime_s;
	for (uint32_t i = 0; i < cmp.ncrises; i++)
		cmp.crises[i].since_s = h->last_stats.crises[i].since_s;
	if (!force && memcmp(&cmp, &h->last_stats, sizeof cmp) == 0)
		return;
	h->last_stats = m.stats;
	struct list *it;
	list_for_each(it, &h->conns) {
		struct conn *c = list_entry(it, struct conn, link);
		if (c->subscribed)
			hub_send(c, &m);
	}
}

static void stats_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct hub *h = w->data;
	stats_push(h, 0);
	/* While someone waits, the oldest wait grows: look again in a second. */
	struct store_stats ms;
	h->store->ops->stats(h->store, &ms);
	if (ms.queue > 0) {
		ev_timer_set(&h->stats_timer, 1.0, 0.0);
		ev_timer_start(h->loop, &h->stats_timer);
	}
}

void hub_stats_changed(struct hub *h)
{
	if (ev_is_active(&h->stats_timer))
		return;
	ev_timer_set(&h->stats_timer, STATS_MIN_INTERVAL_S, 0.0);
	ev_timer_start(h->loop, &h->stats_timer);
}

/* ---- feedback ---- */

/* A counselor sees their own feedback, an operator everyone's (PROTOCOL.md
 * "Feedback"); the store answers with SE_RATINGS. */
static void on_ratings(struct conn *c, const struct proto_msg *m)
{
	(void)m;
	struct store *st = c->hub->store;
	st->ops->ratings(st, c->id, c->role == ROLE_COUNSELOR ? c->ident.sub : NULL);
}


/* ---- the store's events ---- */

/* How many times faster the session clocks run (dev mode's time-scale). */
static int64_t time_scale(const struct config *cfg)
{
	return cfg->dev_mode && cfg->time_scale > 1 ? cfg->time_scale : 1;
}

static const char *store_err_code(int err)
{
	switch (err) {
	case STORE_NO_SUCH_OFFER: return "no_such_offer";
	case STORE_FULL: return "server_busy";
	case STORE_DOWN: return "store_unavailable";
	case STORE_SHIFT_OVER: return "shift_over";
	default: return "wrong_state";
	}
}

static const char *store_err_reason(int err)
{
	switch (err) {
	case STORE_NO_SUCH_OFFER: return "that offer is not yours or has gone";
	case STORE_FULL: return "the queue is full; please try again soon";
	case STORE_DOWN: return "the queue cannot be reached right now; please try again soon";
	case STORE_SHIFT_OVER: return "your shift is over: thank you, time to rest";
	default: return "not possible in your current state";
	}
}

static void on_result(struct hub *h, struct conn *c, const struct store_event *e)
{
	if (e->ref == PT_RATE && !e->err) {
		struct proto_msg r = { .type = PT_RATED };
		hub_send(c, &r);
		return;
	}
	if (e->ref == PT_RATE || e->ref == PT_RATINGS) {
		hub_error(c, store_err_code(e->err), e->ref == PT_RATE
		          ? "the rating could not be recorded" /* it is lost; the client is idle */
		          : "feedback cannot be read right now; please try again soon", e->ref);
		return;
	}
	if (e->ref == PT_CANCEL) {
		if (e->err || c->state != ST_WAITING)
			return;   /* no longer in line: a session is starting */
		c->state = ST_IDLE;
		struct proto_msg r = { .type = PT_CANCELLED };
		snprintf(r.reason, sizeof r.reason, "by_you");
		hub_send(c, &r);
		log_info("client %u left the queue", c->id);
		return;
	}
	if (e->ref == PT_TALK_NOW && c->state == ST_WAITING)
		c->state = ST_IDLE;
	hub_error(c, store_err_code(e->err), store_err_reason(e->err), e->ref);
	(void)h;
}

static void on_position(struct conn *c, const struct store_event *e)
{
	if (c->role != ROLE_CLIENT || c->state != ST_WAITING)
		return;
	if (c->sent_pos == e->position && c->sent_wait == e->wait_s &&
	    c->sent_online == e->online && c->sent_for == e->waiting_for)
		return;
	c->sent_pos = e->position;
	c->sent_wait = e->wait_s;
	c->sent_online = e->online;
	c->sent_for = e->waiting_for;
	struct proto_msg m = { .type = PT_QUEUE, .position = e->position, .wait_s = e->wait_s,
	                       .counselors = e->online };
	if (e->waiting_for)
		snprintf(m.waiting_for, sizeof m.waiting_for, "%s", e->waiting_for);
	hub_send(c, &m);
}

static void on_store_event(void *ctx, const struct store_event *e)
{
	struct hub *h = ctx;
	struct conn *c = hub_conn_by_id(h, e->conn);
	struct proto_msg m = { .type = PT_NONE };
	hub_stats_changed(h);
	if (!c && e->type == SE_MATCHED) {
		/* The counselor left right after accepting: the person must not
		 * lose their place for it. */
		const struct conn *client = strcmp(e->client.node, h->node) == 0
		                            ? hub_conn_by_id(h, e->client.conn) : NULL;
		int present = strcmp(e->client.node, h->node) != 0 ||
		              (client && client->role == ROLE_CLIENT && client->state == ST_WAITING);
		log_info("counselor %u left as their accept arrived: client %u of node %s back in line",
		         e->conn, e->client.conn, e->client.node);
		h->store->ops->client_requeue(h->store, e, present);
		return;
	}
	if (!c)
		return;   /* gone meanwhile */
	switch (e->type) {
	case SE_RESULT:
		on_result(h, c, e);
		return;
	case SE_POSITION:
		on_position(c, e);
		return;
	case SE_STATS:
		return;   /* no conn: hub_stats_changed above */
	case SE_RATINGS:
		m.type = PT_RATINGS;
		m.ratings = e->ratings;
		break;
	case SE_OFFER:
		m.type = PT_OFFER;
		m.offer_id = e->offer_id;
		m.waited_s = e->waited_s;
		m.ring_s = (uint32_t)h->cfg.ring_timeout;
		snprintf(m.topic, sizeof m.topic, "%s", e->topic);
		m.mode = e->mode;
		m.crisis = e->crisis;
		m.talked_before = e->talked_before;
		log_info("offer %lld: client %u to counselor %u%s%s", (long long)e->offer_id,
		         e->client.conn, c->id, e->crisis ? " (crisis)" : "",
		         e->talked_before ? " (talked before)" : "");
		break;
	case SE_OFFER_GONE:
		m.type = PT_OFFER_GONE;
		m.offer_id = e->offer_id;
		snprintf(m.reason, sizeof m.reason, "%s", e->reason);
		log_info("offer %lld to counselor %u withdrawn: %s", (long long)e->offer_id,
		         c->id, e->reason);
		break;
	case SE_STATE:
		c->kstate = e->state;
		m.type = PT_STATE;
		m.state = e->state;
		if (e->reason)
			snprintf(m.reason, sizeof m.reason, "%s", e->reason);
		if (e->state == ST_WRAPUP)
			m.wrapup_s = (uint32_t)(c->crisis_wrapup ? h->cfg.crisis_wrapup : h->cfg.wrapup);
		/* Peers hear configured durations: undo the time scale. */
		m.break_s = (uint32_t)((e->for_ms * time_scale(&h->cfg) + 999) / 1000);
		log_info("counselor %u is %s%s%s", c->id, proto_state_name(e->state),
		         e->reason ? ": " : "", e->reason ? e->reason : "");
		break;
	case SE_MATCHED: {
		int here = strcmp(e->client.node, h->node) == 0;
		struct conn *client = here ? hub_conn_by_id(h, e->client.conn)
		                           : span_remote_client(h, e, c->ident.sub);
		if (client && client->role == ROLE_CLIENT && client->state == ST_WAITING) {
			session_start(h, client, c, e->topic, e->mode);
			return;
		}
		/* The person left in the same instant, or their node cannot be
		 * reached from here: in that case they keep their place. */
		if (!here)
			h->store->ops->client_requeue(h->store, e, 1);
		if (c->kstate == ST_BUSY)
			h->store->ops->counselor_session_over(h->store, c->id, 0);
		return;
	}
	}
	hub_send(c, &m);
}

/* ---- messages by role ---- */

static void on_talk_now(struct conn *c, const struct proto_msg *m)
{
	struct hub *h = c->hub;
	if (c->state != ST_IDLE && c->state != ST_ENDED) {
		hub_error(c, "wrong_state", "already waiting or in a session", m->type);
		return;
	}
	if (h->draining) {
		hub_error(c, "shutting_down", "the service is restarting; please try again in a minute", m->type);
		return;
	}
	c->state = ST_WAITING;
	c->rate_for[0] = '\0';
	c->sent_pos = c->sent_wait = c->sent_online = 0;
	c->sent_for = NULL;
	log_info("client %u waits (topic %s, %s%s%s)", c->id, m->topic, proto_mode_name(m->mode),
	         m->crisis ? ", crisis" : "", m->previous ? ", asks for their previous counselor" : "");
	char who[AUTH_PSEUDONYM_LEN + 1] = "";
	if (h->cfg.continuity_days > 0)
		auth_pseudonym(c->ident.sub, config_token_secret(&h->cfg), who);
	struct store_request r = { .topic = m->topic, .mode = m->mode, .crisis = m->crisis,
	                           .previous = m->previous, .who = who };
	h->store->ops->client_enqueue(h->store, c->id, &r);
}

static void on_cancel(struct conn *c, const struct proto_msg *m)
{
	if (c->state != ST_WAITING) {
		hub_error(c, "wrong_state", "not waiting", m->type);
		return;
	}
	struct store *st = c->hub->store;
	st->ops->client_cancel(st, c->id);   /* `cancelled` once it is done */
}

static void on_counselor_msg(struct conn *c, const struct proto_msg *m)
{
	struct store *st = c->hub->store;
	if (m->type == PT_SET_STATE)
		st->ops->counselor_set(st, c->id, m->state);
	else if (m->type == PT_TAKE_BREAK)
		st->ops->counselor_break(st, c->id, (int64_t)m->minutes * 60000 / time_scale(&c->hub->cfg));
	else
		st->ops->counselor_answer(st, c->id, m->offer_id, m->type == PT_ACCEPT);
}

static void on_subscribe(struct conn *c, const struct proto_msg *m)
{
	(void)m;
	c->subscribed = 1;
	struct proto_msg r = { .type = PT_STATS };
	hub_stats_fill(c->hub, &r.stats);
	hub_send(c, &r);
}

#define R_CLIENT (1u << ROLE_CLIENT)
#define R_COUNSELOR (1u << ROLE_COUNSELOR)
#define R_OPERATOR (1u << ROLE_OPERATOR)

static const struct route {
	enum proto_type type;
	unsigned roles;
	void (*fn)(struct conn *c, const struct proto_msg *m);
} routes[] = {
	{ PT_TALK_NOW, R_CLIENT, on_talk_now },
	{ PT_CANCEL, R_CLIENT, on_cancel },
	{ PT_RATE, R_CLIENT, session_rate },
	{ PT_SET_STATE, R_COUNSELOR, on_counselor_msg },
	{ PT_ACCEPT, R_COUNSELOR, on_counselor_msg },
	{ PT_DECLINE, R_COUNSELOR, on_counselor_msg },
	{ PT_TAKE_BREAK, R_COUNSELOR, on_counselor_msg },
	{ PT_MSG, R_CLIENT | R_COUNSELOR, session_on_message },
	{ PT_ACK, R_CLIENT | R_COUNSELOR, session_on_message },
	{ PT_TYPING, R_CLIENT | R_COUNSELOR, session_on_message },
	{ PT_END, R_CLIENT | R_COUNSELOR, session_on_message },
	{ PT_MUTE, R_CLIENT | R_COUNSELOR, session_on_message },
	{ PT_CRISIS, R_CLIENT | R_COUNSELOR, session_on_message },
	{ PT_SUBSCRIBE, R_OPERATOR, on_subscribe },
	{ PT_RATINGS, R_COUNSELOR | R_OPERATOR, on_ratings },
};

/* ---- hello ---- */

/* Consequences of a connection going away, or being replaced: leave the
 * queue, end a session for the other side, leave the roster. */
static void conn_detach(struct conn *c)
{
	struct store *st = c->hub->store;
	resume_drop(c);
	if (c->session)
		session_close(c->session, "peer_left", c);
	if (c->via)
		span_client_gone(c);
	if (c->role == ROLE_NODE)
		span_link_gone(c);
	/* A remote client's place in the queue is its own node's business. */
	if (c->role == ROLE_CLIENT && !c->pipe)
		st->ops->client_gone(st, c->id);
	if (c->role == ROLE_COUNSELOR)
		st->ops->counselor_gone(st, c->id);
	c->subscribed = 0;
	c->role = ROLE_NONE;
	hub_stats_changed(c->hub);
}

static struct conn *find_same_person(struct hub *h, const struct conn *nc)
{
	struct list *it;
	list_for_each(it, &h->conns) {
		struct conn *c = list_entry(it, struct conn, link);
		if (c != nc && (c->ws || c->proxy || c->ghost) && c->role == nc->role &&
		    strcmp(c->ident.sub, nc->ident.sub) == 0)
			return c;
	}
	return NULL;
}

void hub_welcome(struct conn *c, int resumed)
{
	struct hub *h = c->hub;
	struct proto_msg w = { .type = PT_WELCOME, .role = c->role, .version = PROTO_VERSION,
	                       .state = c->role == ROLE_COUNSELOR ? c->kstate : c->state,
	                       .slot_s = (uint32_t)h->cfg.slot_length,
	                       .ring_s = (uint32_t)h->cfg.ring_timeout, .resumed = resumed };
	snprintf(w.sub, sizeof w.sub, "%s", c->ident.sub);
	snprintf(w.name, sizeof w.name, "%s", c->ident.name);
	if (c->role == ROLE_CLIENT)
		snprintf(w.question, sizeof w.question, "%s", h->cfg.crisis_question);
	if (c->secret[0] && h->cfg.resume_grace > 0) {
		snprintf(w.resume, sizeof w.resume, "%s:%u:%s", c->secret, c->id, h->node);
		w.grace_s = (uint32_t)h->cfg.resume_grace;
	}
	hub_send(c, &w);
}

void hub_admit(struct conn *c, enum proto_role role)
{
	struct hub *h = c->hub;
	c->role = role;
	struct conn *old = find_same_person(h, c);
	if (old) {
		log_info("conn %u replaces conn %u (same person)", c->id, old->id);
		hub_error(old, "replaced", "you connected again from elsewhere", PT_NONE);
		if (old->ws) {
			conn_detach(old);
			ws_close(old->ws, 1008, "replaced");
		} else {
			hub_conn_gone(old);   /* kept for a grace, or reached elsewhere */
		}
	}
	if (c->role == ROLE_CLIENT)
		c->state = ST_IDLE;
	else if (c->role == ROLE_OPERATOR || c->role == ROLE_NODE)
		c->state = ST_WATCHING;
	if (c->role == ROLE_NODE)
		ws_trust(c->ws);   /* it carries many sessions */
	else
		c->kstate = ST_AWAY;
	if (c->role == ROLE_CLIENT || c->role == ROLE_COUNSELOR)
		resume_init(c);
	hub_welcome(c, 0);
	log_info("conn %u is a %s", c->id, proto_role_name(c->role));
	log_debug("conn %u sub %s", c->id, c->ident.sub);
	if (c->role == ROLE_COUNSELOR) {
		char skills[AUTH_SKILLS_MAX * (PROTO_TOPIC_MAX + 1)] = "";
		size_t used = 0;
		for (int i = 0; i < c->ident.nskills; i++)
			used += (size_t)snprintf(skills + used, sizeof skills - used, "%s%s",
			                         i ? "," : "", c->ident.skills[i]);
		h->store->ops->counselor_add(h->store, c->id, c->ident.sub, skills);
	}
	hub_stats_changed(h);
}

static void on_hello(struct conn *c, const struct proto_msg *m)
{
	struct hub *h = c->hub;
	int anon = m->token[0] == '\0';
	if (anon) {
		if (!(h->cfg.dev_mode && m->role == ROLE_CLIENT)) {
			error_close(c, "auth_required", "a token is required");
			return;
		}
		memset(&c->ident, 0, sizeof c->ident);
		c->ident.role = ROLE_CLIENT;
		memcpy(c->ident.sub, "anon-", 5);
		random_hex(c->ident.sub + 5, 8);
	} else {
		enum auth_status st = auth_verify(m->token, config_token_secret(&h->cfg),
		                                  (int64_t)time(NULL), &c->ident);
		if (st != AUTH_OK) {
			log_info("conn %u: token refused: %s", c->id, auth_status_code(st));
			error_close(c, auth_status_code(st), "the token was refused");
			return;
		}
		if (c->ident.role != m->role) {
			error_close(c, "token_wrong_role", "the token is not for this role");
			return;
		}
	}
	c->anon = anon;
	if (m->resume[0] && resume_hello(c, m, anon))
		return;
	hub_admit(c, m->role);
}

/* ---- transport handlers ---- */

void hub_dispatch(struct conn *c, const struct proto_msg *m)
{
	if (m->type == PT_HELLO) {
		if (c->role != ROLE_NONE)
			hub_error(c, "already_authenticated", "hello was already accepted", m->type);
		else
			on_hello(c, m);
		return;
	}
	if (c->role == ROLE_NONE) {
		hub_error(c, "not_authenticated", "send hello first", m->type);
		return;
	}
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		if (routes[i].type != m->type)
			continue;
		if (!(routes[i].roles & (1u << c->role))) {
			hub_error(c, "wrong_role", "your role may not send this", m->type);
			return;
		}
		routes[i].fn(c, m);
		return;
	}
	hub_error(c, "wrong_role", "only the server sends this message", m->type);
}

/* What a client in a session sends to its session. */
static int session_message(enum proto_type t)
{
	return t == PT_MSG || t == PT_ACK || t == PT_TYPING || t == PT_END || t == PT_MUTE ||
	       t == PT_CRISIS;
}

void hub_text(struct conn *c, const char *buf, size_t len)
{
	struct proto_msg m;
	struct proto_err err;
	if (c->home) {
		resume_up(c, buf, len, 0);   /* taken up again here; at home elsewhere */
		return;
	}
	if (c->role == ROLE_NODE) {
		span_host_text(c, buf, len);
		return;
	}
	if (proto_decode(buf, len, &m, &err) != PROTO_OK) {
		hub_error(c, err.code, err.reason, m.type);
		return;
	}
	c->hub->metrics.messages_in++;
	if (c->via && session_message(m.type))
		span_forward(c, buf, len);   /* its session runs on another node */
	else
		hub_dispatch(c, &m);
}

static void on_text(void *user, const char *buf, size_t len)
{
	hub_text(user, buf, len);
}

static void on_refused(void *user, enum ws_refusal why)
{
	struct conn *c = user;
	switch (why) {
	case WS_REFUSED_TOO_LARGE:
		hub_error(c, "too_large", "message larger than max-message-bytes", PT_NONE);
		break;
	case WS_REFUSED_RATE:
		hub_error(c, "rate_limited", "too many messages; slow down", PT_NONE);
		break;
	case WS_REFUSED_MEDIA_TOO_LARGE:
		c->hub->metrics.media_dropped[MD_TOO_LARGE]++;
		break;
	}
}

/* Voice packets take no JSON and no error replies on their path; a binary
 * frame outside a voice session is counted, and answered once a second. */
void hub_binary(struct conn *c, const uint8_t *buf, size_t len)
{
	if (c->home) {
		resume_up(c, (const char *)buf, len, 1);
		return;
	}
	if (c->role == ROLE_NODE) {
		span_host_media(c, buf, len);
		return;
	}
	if (c->via) {
		span_forward_media(c, buf, len);
		return;
	}
	if (session_media(c, buf, len) == 0)
		return;
	c->hub->metrics.media_dropped[MD_NO_SESSION]++;
	int64_t now = hub_now_ms();
	if (now - c->media_err_ms >= 1000) {
		c->media_err_ms = now;
		hub_error(c, "wrong_state", "binary frames carry voice, in a voice session only",
		          PT_NONE);
	}
}

static void on_binary(void *user, uint8_t *buf, size_t len)
{
	hub_binary(user, buf, len);
}

struct conn *hub_conn_new(struct hub *h)
{
	struct conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->hub = h;
	do
		c->id = ++h->next_id;
	while (c->id == 0 || hub_conn_by_id(h, c->id));
	c->opened_ms = hub_now_ms();
	c->hnext = *bucket(h, c->id);
	*bucket(h, c->id) = c;
	list_add_tail(&h->conns, &c->link);
	return c;
}

static void *on_open(void *ctx, struct ws_conn *ws)
{
	struct hub *h = ctx;
	struct conn *c = hub_conn_new(h);
	if (!c) {
		ws_close(ws, 1011, "out of memory");
		return NULL;
	}
	c->ws = ws;
	h->metrics.connections_total++;
	log_info("conn %u open from %s", c->id, ws_conn_peer(ws));
	hub_stats_changed(h);
	return c;
}

void hub_conn_gone(struct conn *c)
{
	struct hub *h = c->hub;
	conn_detach(c);
	/* Freed after this loop pass: callers up the stack may still hold it. */
	list_del(&c->link);
	conn_unhash(h, c);
	c->hnext = h->dead;
	h->dead = c;
	ev_idle_start(h->loop, &h->reaper);
}

static void on_closed(void *user, int peer_code)
{
	struct conn *c = user;
	if (!c)
		return;
	log_info("conn %u closed (%d)", c->id, peer_code);
	c->ws = NULL;
	if (c->home)
		resume_home_gone(c);
	if (!resume_keep(c, peer_code))
		hub_conn_gone(c);
}

static void reaper_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	struct hub *h = w->data;
	while (h->dead) {
		struct conn *c = h->dead;
		h->dead = c->hnext;
		free(c);
	}
	ev_idle_stop(loop, w);
}

static int on_http(void *ctx, const char *path, const char *query, struct ws_http_reply *r)
{
	struct hub *h = ctx;
	struct proto_msg m = { .type = PT_STATS };
	size_t cap = 16384;
	int web = web_serve(&h->cfg, path, query, (int64_t)time(NULL), r);
	if (web <= 0)
		return web;
	if (strcmp(path, "/healthz") == 0) {
		/* Up without its store, a node still carries its sessions: it
		 * stays in service, and says so. */
		r->status = h->draining ? 503 : 200;
		r->content_type = "text/plain";
		r->body = strdup(h->draining ? "draining\n"
		                 : h->store->ops->up(h->store) ? "ok\n" : "ok, store unavailable\n");
		r->len = r->body ? strlen(r->body) : 0;
		return r->body ? 0 : -1;
	}
	if (strcmp(path, "/stats") != 0 && strcmp(path, "/metrics") != 0)
		return -1;
	hub_stats_fill(h, &m.stats);
	r->body = malloc(cap);
	if (!r->body)
		return -1;
	long n;
	if (strcmp(path, "/stats") == 0) {
		r->content_type = "application/json";
		n = proto_encode(&m, r->body, cap);
	} else {
		r->content_type = "text/plain; version=0.0.4";
		n = metrics_render(&h->metrics, &m.stats, r->body, cap);
	}
	if (n < 0) {
		free(r->body);
		r->body = NULL;
		return -1;
	}
	r->len = (size_t)n;
	return 0;
}

/* Once a second: connections that never said hello are closed; voice
 * sessions check for silence and report link quality, and operators see
 * the media counters move. */
static void house_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct hub *h = w->data;
	int64_t now = hub_now_ms();
	int64_t limit = now - (int64_t)h->cfg.auth_timeout * 1000;
	struct list *it;
	list_for_each(it, &h->conns) {
		struct conn *c = list_entry(it, struct conn, link);
		if (c->role == ROLE_NONE && c->ws && !c->home && c->opened_ms < limit)
			ws_close(c->ws, 1008, "no hello");
	}
	int voice = 0;
	list_for_each(it, &h->sessions) {
		struct session *s = list_entry(it, struct session, link);
		session_media_tick(s, now);
		voice |= s->voice;
	}
	if (voice)
		hub_stats_changed(h);
}

/* ---- life cycle ---- */

/* The store, once the port is known: other nodes reach this one (for
 * sessions across nodes) at its advertised address. */
static int store_new(struct hub *h, char *err, size_t errlen)
{
	const struct config *cfg = &h->cfg;
	int64_t scale = time_scale(cfg);
	struct store_config sc = {
		.ring_ms = (int64_t)cfg->ring_timeout * 1000,
		.wrapup_ms = (int64_t)cfg->wrapup * 1000 / scale,
		.crisis_wrapup_ms = (int64_t)cfg->crisis_wrapup * 1000 / scale,
		.shift_sessions = (uint32_t)cfg->shift_sessions,
		.shift_ms = (int64_t)cfg->shift_hours * 3600 * 1000 / scale,
		.max_missed = cfg->max_missed_offers,
		.max_queue = (uint32_t)cfg->max_queue,
		.redecline_ms = 60000,
		.topic_wait_ms = (int64_t)cfg->topic_wait * 1000,
		.previous_wait_ms = (int64_t)cfg->previous_wait * 1000,
		.memory_ms = (int64_t)cfg->continuity_days * 86400 * 1000,
	};
	sc.handle_ms = h->slot_ms + sc.wrapup_ms;
	if (cfg->node_id[0])
		snprintf(h->node, sizeof h->node, "%s", cfg->node_id);
	else {
		memcpy(h->node, "n", 2);
		random_hex(h->node + 1, 6);
	}
	if (!cfg->redis[0]) {
		h->store = store_mem_new(h->loop, &sc, h->node, on_store_event, h);
		if (!h->store)
			snprintf(err, errlen, "out of memory");
		return h->store ? 0 : -1;
	}
	char url[256];
	if (cfg->advertise_url[0])
		snprintf(url, sizeof url, "%s", cfg->advertise_url);
	else
		snprintf(url, sizeof url, "%s://%s:%d/ws", cfg->tls_cert[0] ? "wss" : "ws",
		         cfg->listen, ws_server_port(h->ws));
	h->store = store_redis_new(h->loop, &sc, cfg->redis, h->node, url,
	                           (int64_t)cfg->presence_ttl * 1000, on_store_event, h,
	                           err, errlen);
	if (!h->store)
		return -1;
	log_info("node %s (at %s) shares presence and the queue through %s", h->node, url,
	         cfg->redis);
	return 0;
}

struct hub *hub_new(struct ev_loop *loop, const struct config *cfg,
                    char *err, size_t errlen)
{
	struct hub *h = calloc(1, sizeof *h);
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->loop = loop;
	h->cfg = *cfg;
	list_init(&h->conns);
	list_init(&h->sessions);
	h->started_ms = hub_now_ms();
	int64_t scale = time_scale(cfg);
	h->slot_ms = (int64_t)cfg->slot_length * 1000 / scale;
	h->grace_ms = (int64_t)cfg->goodbye_grace * 1000 / scale;
	for (int i = 0; i < cfg->warn_count; i++)
		h->marks_ms[i] = (int64_t)cfg->warn_at[i] * 1000 / scale;

	ev_init(&h->stats_timer, stats_timer_cb);
	h->stats_timer.data = h;
	ev_timer_init(&h->house_timer, house_timer_cb, HOUSEKEEPING_S, HOUSEKEEPING_S);
	h->house_timer.data = h;
	ev_idle_init(&h->reaper, reaper_cb);
	h->reaper.data = h;

	struct ws_config wc = {
		.iface = cfg->listen, .port = cfg->port,
		.tls_cert = cfg->tls_cert, .tls_key = cfg->tls_key,
		.max_message = (size_t)cfg->max_message_bytes,
		.max_queue = 256 * 1024,
		.rate = cfg->msg_rate, .burst = cfg->msg_burst,
		.ping_s = 30, .idle_s = 75,
		.media_queue = (size_t)cfg->media_queue,
	};
	struct ws_handlers wh = { .ctx = h, .open = on_open, .text = on_text,
	                          .binary = on_binary, .refused = on_refused,
	                          .closed = on_closed, .http = on_http };
	/* Nothing reaches the handlers before the loop runs: the store can
	 * come second. */
	h->ws = ws_server_new(loop, &wc, &wh, err, errlen);
	if (!h->ws) {
		free(h);
		return NULL;
	}
	if (store_new(h, err, errlen) != 0) {
		ws_server_free(h->ws);
		free(h);
		return NULL;
	}
	ev_timer_start(loop, &h->house_timer);
	return h;
}

int hub_port(const struct hub *h) { return ws_server_port(h->ws); }

size_t hub_connections(const struct hub *h) { return ws_server_connections(h->ws); }

void hub_shutdown(struct hub *h)
{
	h->draining = 1;
	ws_server_drain(h->ws);
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &h->sessions)
		session_close(list_entry(it, struct session, link), "shutdown", NULL);
	struct proto_msg m = { .type = PT_GOING_AWAY };
	snprintf(m.reason, sizeof m.reason, "shutdown");
	list_for_each(it, &h->conns) {
		struct conn *c = list_entry(it, struct conn, link);
		hub_send(c, &m);
		if (c->ws)
			ws_close(c->ws, 1001, "shutdown");
	}
}

void hub_free(struct hub *h)
{
	if (!h)
		return;
	/* Links first, and remote clients with them: their sessions end while
	 * the counselors' connections still exist to be told. */
	h->draining = 1;        /* nobody is kept for a resume now */
	span_free(h);
	ws_server_free(h->ws);  /* closes every connection: on_closed runs */
	h->ws = NULL;
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &h->conns)   /* those kept for a resume */
		hub_conn_gone(list_entry(it, struct conn, link));
	ev_timer_stop(h->loop, &h->stats_timer);
	ev_timer_stop(h->loop, &h->house_timer);
	ev_idle_stop(h->loop, &h->reaper);
	reaper_cb(h->loop, &h->reaper, 0);
	h->store->ops->free(h->store);
	free(h);
}
