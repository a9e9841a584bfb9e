/* span.c - sessions whose client and counselor are connected to
 * different nodes (PROTOCOL.md "Sessions across nodes").
 *
 * The session runs on the counselor's node, its owner, exactly like a
 * local one: slot, chat, SRTP of both legs. The client is a conn there
 * with no socket, whose frames travel over a pipe (pipe.h) to the node it
 * is connected to, the host. The host relays: what the owner sends its
 * client goes out as is; what the client sends its session goes back.
 * The host keeps the client's own state (in a session, ended, rating).
 *
 * Link frames, text "op conn rest" (conn: the client's id on the host):
 *   owner -> host  attach <conn> <counselor sub>  the client joins a session here
 *                  to <conn> <json>               a message for the client
 *                  end <conn> <counselor sub> <json>  its session closed: the
 *                                                 session_end, and who to rate
 *   host -> owner  from <conn> <json>             a session message from the client
 *                  left <conn>                    the client is gone (or was not there)
 * and binary: the client's id (4 bytes, big endian), then an SRTP packet. */
#include "hub_int.h"
#include "log.h"
#include "pipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NODE_TOKEN_TTL_S (365 * 24 * 3600)

/* ---- the owner's side ---- */

static struct conn **rbucket(struct hub *h, uint32_t rconn)
{
	return &h->rbuckets[rconn % HUB_BUCKETS];
}

static struct conn *remote_find(struct hub *h, struct pipe *p, uint32_t rconn)
{
	for (struct conn *c = *rbucket(h, rconn); c; c = c->rnext)
		if (c->pipe == p && c->rconn == rconn)
			return c;
	return NULL;
}

static void remote_unhash(struct conn *r)
{
	for (struct conn **pp = rbucket(r->hub, r->rconn); *pp; pp = &(*pp)->rnext)
		if (*pp == r) {
			*pp = r->rnext;
			return;
		}
}

/* The remote client is gone or done with: it leaves this node. */
static void remote_drop(struct conn *r)
{
	free(r->matched);
	r->matched = NULL;
	remote_unhash(r);
	hub_conn_gone(r);    /* a session still open ends for the counselor: peer_left */
	r->pipe = NULL;
}

static int links_open(struct hub *h);

struct conn *span_remote_client(struct hub *h, const struct store_event *e,
                                const char *counselor_sub)
{
	const struct store_ref *ref = &e->client;
	const char *url = e->url;
	struct pipe *p = url[0] && url[0] != '-' && links_open(h) == 0
	                 ? pipe_to(h->pipes, ref->node, url) : NULL;
	if (!p) {
		log_error("no link to node %s (at '%s'): its client cannot be served here",
		          ref->node, url);
		return NULL;
	}
	struct conn *r = hub_conn_new(h);
	if (!r)
		return NULL;
	r->matched = malloc(sizeof *r->matched);
	if (r->matched)
		*r->matched = *e;
	r->role = ROLE_CLIENT;
	r->state = ST_WAITING;
	r->pipe = p;
	r->rconn = ref->conn;
	snprintf(r->ident.sub, sizeof r->ident.sub, "%s/%u", ref->node, ref->conn);
	r->rnext = *rbucket(h, r->rconn);
	*rbucket(h, r->rconn) = r;
	pipe_text(p, "attach", r->rconn, counselor_sub, strlen(counselor_sub));
	log_info("conn %u is client %u of node %s", r->id, ref->conn, ref->node);
	return r;
}

void span_send(struct conn *r, const char *json, size_t len)
{
	pipe_text(r->pipe, "to", r->rconn, json, len);
}

int span_send_media(struct conn *r, const uint8_t *buf, size_t len)
{
	return pipe_media(r->pipe, r->rconn, buf, len);
}

void span_release(struct conn *r, const char *counselor_sub, const struct proto_msg *end)
{
	/* One frame, so the client's node is back in charge (a rating may
	 * follow at once) by the time the client reads that it ended. */
	char buf[PROTO_SUB_MAX + 4096];
	int n = snprintf(buf, sizeof buf, "%s ", counselor_sub[0] ? counselor_sub : "-");
	long j = proto_encode(end, buf + n, sizeof buf - (size_t)n);
	if (j > 0)
		pipe_text(r->pipe, "end", r->rconn, buf, (size_t)n + (size_t)j);
	else
		log_error("conn %u: cannot encode its session_end", r->id);
	remote_drop(r);
}

static void on_pipe_text(void *ctx, struct pipe *p, const char *op, uint32_t conn,
                         const char *rest)
{
	struct hub *h = ctx;
	if (strcmp(op, "down") == 0 || strcmp(op, "bye") == 0 || strcmp(op, "nope") == 0) {
		resume_pipe_text(h, p, op, conn, rest);
		return;
	}
	struct conn *r = remote_find(h, p, conn);
	if (!r)
		return;   /* a session that already ended here */
	if (strcmp(op, "left") == 0) {
		log_info("conn %u (client %u of node %s) left", r->id, conn, pipe_node(p));
		remote_drop(r);
		return;
	}
	if (r->session && strcmp(op, "away") == 0) {
		session_party_lost(r->session, r);
		return;
	}
	if (r->session && strcmp(op, "back") == 0) {
		session_resume(r->session, r);
		return;
	}
	if (strcmp(op, "from") != 0)
		return;
	struct proto_msg m;
	struct proto_err err;
	if (proto_decode(rest, strlen(rest), &m, &err) == PROTO_OK)
		hub_dispatch(r, &m);   /* the host checked it; the routes check it again */
}

static void on_pipe_media(void *ctx, struct pipe *p, uint32_t conn, const uint8_t *buf,
                          size_t len)
{
	struct hub *h = ctx;
	if (conn & LINK_RESUMED) {
		resume_pipe_media(h, p, conn & ~LINK_RESUMED, buf, len);
		return;
	}
	struct conn *r = remote_find(h, p, conn);
	if (r && session_media(r, buf, len) != 0)
		h->metrics.media_dropped[MD_NO_SESSION]++;
}

static void on_pipe_closed(void *ctx, struct pipe *p)
{
	struct hub *h = ctx;
	struct list *it, *tmp;
	resume_pipe_gone(h, p);
	list_for_each_safe(it, tmp, &h->conns) {
		struct conn *c = list_entry(it, struct conn, link);
		if (c->pipe != p)
			continue;
		/* Never reached: the person never heard of this session, and
		 * goes back to the place they had. */
		if (!pipe_was_up(p) && c->matched)
			h->store->ops->client_requeue(h->store, c->matched, 1);
		remote_drop(c);
	}
}

/* ---- the host's side ---- */

void span_link_send(struct conn *link, const char *op, uint32_t conn, const char *rest,
                      size_t len)
{
	char head[48];
	int n = snprintf(head, sizeof head, "%s %u ", op, conn);
	char *buf = malloc((size_t)n + len);
	if (!buf || !link->ws) {
		free(buf);
		return;
	}
	memcpy(buf, head, (size_t)n);
	memcpy(buf + n, rest, len);
	ws_send(link->ws, buf, (size_t)n + len);
	free(buf);
}

/* The client's session ended on the owner: it is ours again, ended. */
static void host_end(struct conn *c, const char *counselor_sub)
{
	c->via = NULL;
	c->via_session[0] = '\0';
	c->state = ST_ENDED;
	snprintf(c->rate_for, sizeof c->rate_for, "%s", counselor_sub);
}

void span_host_text(struct conn *link, const char *buf, size_t len)
{
	struct hub *h = link->hub;
	char op[8];
	size_t i = 0;
	while (i < len && i < sizeof op - 1 && buf[i] != ' ') {
		op[i] = buf[i];
		i++;
	}
	op[i] = '\0';
	if (i >= len || buf[i] != ' ')
		return;
	char *end;
	unsigned long id = strtoul(buf + i + 1, &end, 10);
	if (end >= buf + len || *end != ' ' || id > UINT32_MAX)
		return;
	const char *rest = end + 1;
	size_t rlen = (size_t)(buf + len - rest);
	if (strcmp(op, "resume") == 0 || strcmp(op, "up") == 0 || strcmp(op, "gone") == 0) {
		resume_link_text(link, op, (uint32_t)id, rest, rlen);
		return;
	}
	struct conn *c = hub_conn_by_id(h, (uint32_t)id);
	int ours = c && (c->ws || c->proxy || c->ghost) && c->role == ROLE_CLIENT;
	if (strcmp(op, "attach") == 0) {
		if (!ours || c->state != ST_WAITING || c->via) {
			span_link_send(link, "left", (uint32_t)id, "", 0);
			return;
		}
		c->via = link;
		c->state = ST_IN_SESSION;
		/* Out of the queue here too (Redis already took it off). */
		h->store->ops->client_gone(h->store, c->id);
		log_info("client %u is in a session on another node", c->id);
		if (c->ghost)   /* lost their connection in the same instant */
			span_link_send(link, "away", c->id, "", 0);
		return;
	}
	if (!ours || c->via != link)
		return;
	if (strcmp(op, "to") == 0) {
		/* The first is the session_start: its id names the session should
		 * the link fail and this node have to end it; its topic goes with
		 * the rating. */
		struct proto_msg m;
		struct proto_err err;
		if (!c->via_session[0] && proto_decode(rest, rlen, &m, &err) == PROTO_OK &&
		    m.type == PT_SESSION_START) {
			memcpy(c->via_session, m.session_id, sizeof c->via_session);
			memcpy(c->rate_topic, m.topic, sizeof c->rate_topic);
		}
		hub_send_raw(c, rest, rlen);
	} else if (strcmp(op, "end") == 0) {
		const char *sp = memchr(rest, ' ', rlen);
		size_t sublen = sp ? (size_t)(sp - rest) : rlen;
		char sub[PROTO_SUB_MAX + 1] = "";
		if (sublen <= PROTO_SUB_MAX && !(sublen == 1 && rest[0] == '-')) {
			memcpy(sub, rest, sublen);
			sub[sublen] = '\0';
		}
		host_end(c, sub);
		if (sp)
			hub_send_raw(c, sp + 1, (size_t)(rest + rlen - sp - 1));
	}
}

void span_host_media(struct conn *link, const uint8_t *buf, size_t len)
{
	if (len < 4)
		return;
	uint32_t id = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
	if (id & LINK_RESUMED) {
		resume_link_media(link, id & ~LINK_RESUMED, buf + 4, len - 4);
		return;
	}
	struct conn *c = hub_conn_by_id(link->hub, id);
	if (!c || c->via != link)
		return;
	int q = hub_send_media(c, buf + 4, len - 4);
	if (q == 1)
		link->hub->metrics.media_dropped[MD_SLOW_READER]++;
	else if (q == 0)
		link->hub->metrics.media_relayed++;
}

void span_forward(struct conn *c, const char *raw, size_t len)
{
	span_link_send(c->via, "from", c->id, raw, len);
}

int span_link_media(struct conn *link, uint32_t id, const uint8_t *buf, size_t len)
{
	uint8_t frame[4 + WS_MEDIA_MAX];
	if (len > WS_MEDIA_MAX || !link->ws)
		return -1;
	frame[0] = (uint8_t)(id >> 24);
	frame[1] = (uint8_t)(id >> 16);
	frame[2] = (uint8_t)(id >> 8);
	frame[3] = (uint8_t)id;
	memcpy(frame + 4, buf, len);
	return ws_send_media(link->ws, frame, len + 4);
}

void span_forward_media(struct conn *c, const uint8_t *buf, size_t len)
{
	if (span_link_media(c->via, c->id, buf, len) == 1)
		c->hub->metrics.media_dropped[MD_SLOW_READER]++;
}

void span_client_gone(struct conn *c)
{
	span_link_send(c->via, "left", c->id, "", 0);
	c->via = NULL;
}

/* The owner is gone, or the link broke: each session it carried ended. */
void span_link_gone(struct conn *link)
{
	struct hub *h = link->hub;
	struct list *it;
	resume_link_gone(link);
	list_for_each(it, &h->conns) {
		struct conn *c = list_entry(it, struct conn, link);
		if (c->via != link)
			continue;
		struct proto_msg m = { .type = PT_SESSION_END };
		memcpy(m.session_id, c->via_session, sizeof m.session_id);
		host_end(c, "");
		snprintf(m.reason, sizeof m.reason, "peer_left");
		snprintf(m.referral, sizeof m.referral, "%s", h->cfg.referral);
		hub_send(c, &m);
		log_info("client %u: its session's node is gone", c->id);
	}
}

/* ---- life cycle ---- */

/* The client context for links, made on the first session across nodes:
 * a node that never needs one carries no second TLS context (whose
 * certificate store, created beside a TLS server's, OpenSSL does not give
 * back at exit). */
static int links_open(struct hub *h)
{
	if (h->pipes)
		return 0;
	char err[160];
	struct auth_identity id = { .role = ROLE_NODE };
	snprintf(id.sub, sizeof id.sub, "%s", h->node);
	char token[PROTO_TOKEN_MAX + 1];
	/* Links are opened for as long as the node runs: the token is minted
	 * once, valid for a long time, and checked by hosts only at hello. */
	if (auth_mint(&id, config_token_secret(&h->cfg), (int64_t)time(NULL),
	              NODE_TOKEN_TTL_S, token, sizeof token) != 0) {
		log_error("cannot mint this node's link token");
		return -1;
	}
	struct pipe_handlers ph = { .ctx = h, .text = on_pipe_text, .media = on_pipe_media,
		                    .closed = on_pipe_closed };
	h->pipes = pipe_set_new(h->loop, token, h->cfg.dev_mode, &ph, err, sizeof err);
	if (!h->pipes)
		log_error("node links: %s", err);
	return h->pipes ? 0 : -1;
}

struct pipe_set *span_pipes(struct hub *h)
{
	return links_open(h) == 0 ? h->pipes : NULL;
}

void span_free(struct hub *h)
{
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &h->conns) {
		struct conn *c = list_entry(it, struct conn, link);
		if (c->pipe)
			remote_drop(c);
	}
	pipe_set_free(h->pipes);
	h->pipes = NULL;
}
