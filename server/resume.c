/* resume.c - a person whose connection drops comes back (PROTOCOL.md
 * "Resume after a dropped connection").
 *
 * Every client and counselor connection gets a resume token at `welcome`:
 * "<secret>:<conn>:<node>", naming the connection on its home node (where
 * it first connected). When the connection drops (no close frame from the
 * peer, or one saying it went away) and there is something to keep (a
 * place in line, a session), the conn stays on its home node as a ghost
 * for the grace: its place is kept but not offered, its session goes on
 * (the other side is told), what it misses is kept by the session until
 * acknowledged. A hello with the token takes the conn up again:
 *  - on the home node, the new socket simply becomes the conn's;
 *  - on another node, that node opens a link to the home node (pipe.h)
 *    and relays: the conn stays at home, reached through `proxy`, so the
 *    queue, the roster and the session know nothing of the move.
 * Link frames (text "op conn rest"; binary: conn with LINK_RESUMED set):
 *   other -> home  resume <home conn> <conn> <role> <secret> <sub|->
 *                  up <home conn> <json>       what the person sent
 *                  gone <home conn>            their connection dropped
 *   home -> other  down <conn> <json>          a message for the person
 *                  bye <conn>                  no longer (taken up elsewhere)
 *                  nope <conn>                 no such connection to resume
 * After the grace the ghost goes, with the consequences of a disconnect. */
#include "hub_int.h"
#include "log.h"
#include "pipe.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct conn *c = w->data;
	c->hub->metrics.resume_expired++;
	log_info("conn %u: not back within the grace; let go", c->id);
	hub_conn_gone(c);
}

void resume_init(struct conn *c)
{
	unsigned char b[RESUME_SECRET_LEN / 2];
	if (RAND_bytes(b, sizeof b) != 1)
		abort();
	for (size_t i = 0; i < sizeof b; i++)
		sprintf(c->secret + 2 * i, "%02x", b[i]);
	ev_init(&c->grace, grace_cb);
	c->grace.data = c;
}

int resume_keep(struct conn *c, int peer_code)
{
	struct hub *h = c->hub;
	int waiting = c->role == ROLE_CLIENT && c->state == ST_WAITING;
	int worth = waiting || (c->role == ROLE_CLIENT && c->state == ST_IN_SESSION) ||
	            (c->role == ROLE_COUNSELOR && c->session);
	/* 1000: the app closed it on purpose (the person left). */
	if (!worth || h->draining || h->cfg.resume_grace <= 0 || !c->secret[0] ||
	    peer_code == 1000)
		return 0;
	c->ghost = 1;
	ev_timer_set(&c->grace, (double)h->cfg.resume_grace, 0.0);
	ev_timer_start(h->loop, &c->grace);
	if (waiting)
		h->store->ops->client_away(h->store, c->id, 1);
	if (c->session)
		session_party_lost(c->session, c);
	else if (c->via)
		span_link_send(c->via, "away", c->id, "", 0);
	log_info("conn %u lost its connection: kept %d s for a resume", c->id,
	         h->cfg.resume_grace);
	hub_stats_changed(h);
	return 1;
}

void resume_home_gone(struct conn *c)
{
	if (!c->home)
		return;
	pipe_text(c->home, "gone", c->home_conn, "", 0);
	c->home = NULL;
}

void resume_drop(struct conn *c)
{
	ev_timer_stop(c->hub->loop, &c->grace);
	c->ghost = 0;
	free(c->ended);
	c->ended = NULL;
	if (c->proxy) {
		span_link_send(c->proxy, "bye", c->proxy_conn, "", 0);
		c->proxy = NULL;
	}
	resume_home_gone(c);
}

/* ---- taking a connection up again, on its home node ---- */

static int parse_token(const char *t, char *secret, uint32_t *conn, char *node)
{
	const char *a = strchr(t, ':');
	if (!a || a - t != RESUME_SECRET_LEN)
		return -1;
	char *end;
	unsigned long id = strtoul(a + 1, &end, 10);
	size_t nlen = *end == ':' ? strlen(end + 1) : 0;
	if (id == 0 || id > UINT32_MAX || nlen == 0 || nlen > STORE_NODE_MAX)
		return -1;
	memcpy(secret, t, RESUME_SECRET_LEN);
	secret[RESUME_SECRET_LEN] = '\0';
	*conn = (uint32_t)id;
	memcpy(node, end + 1, nlen + 1);
	return 0;
}

/* Whether `x` is the connection the token names, for this person: the
 * same sub (NULL: an anonymous dev-mode client, who has only the token). */
static int resume_ok(const struct conn *x, enum proto_role role, const char *sub,
                     const char *secret)
{
	return x && x->role == role && x->secret[0] && !x->pipe && !x->home &&
	       CRYPTO_memcmp(x->secret, secret, RESUME_SECRET_LEN) == 0 &&
	       (sub ? !x->anon && strcmp(x->ident.sub, sub) == 0 : x->anon);
}

/* `x` as it is now: welcome, then the place in line or the session. */
static void restore(struct conn *x)
{
	struct hub *h = x->hub;
	ev_timer_stop(h->loop, &x->grace);
	x->ghost = 0;
	h->metrics.resumed++;
	hub_welcome(x, 1);
	if (x->role == ROLE_CLIENT && x->state == ST_WAITING) {
		h->store->ops->client_away(h->store, x->id, 0);
		if (x->sent_pos) {
			struct proto_msg q = { .type = PT_QUEUE, .position = x->sent_pos,
			                       .wait_s = x->sent_wait, .counselors = x->sent_online };
			if (x->sent_for)
				snprintf(q.waiting_for, sizeof q.waiting_for, "%s", x->sent_for);
			hub_send(x, &q);
		}
	} else if (x->session) {
		session_resume(x->session, x);
	} else if (x->via) {
		span_link_send(x->via, "back", x->id, "", 0);   /* its session's node resends */
	} else if (x->ended) {
		hub_send(x, x->ended);
		free(x->ended);
		x->ended = NULL;
	}
	log_info("conn %u resumed (%s)", x->id, x->proxy ? "through another node" : "here");
	hub_stats_changed(h);
}

/* `x` continues on socket `ws` here, or on connection `yconn` of the node
 * at the end of `link`; a connection it still had is closed. */
static void take_over(struct conn *x, struct ws_conn *ws, struct conn *link, uint32_t yconn)
{
	if (x->ws || x->proxy)
		hub_error(x, "replaced", "you continued from another connection", PT_NONE);
	if (x->ws) {
		ws_set_user(x->ws, NULL);
		ws_close(x->ws, 1008, "replaced");
		x->ws = NULL;
	}
	if (x->proxy)
		span_link_send(x->proxy, "bye", x->proxy_conn, "", 0);
	x->ws = ws;
	x->proxy = link;
	x->proxy_conn = yconn;
	if (ws)
		ws_set_user(ws, x);
	restore(x);
}

static const char *node_url(struct hub *h, const char *node, char *url, size_t cap)
{
	struct store_stats *st = malloc(sizeof *st);
	if (!st)
		return NULL;
	h->store->ops->stats(h->store, st);
	const char *found = NULL;
	for (uint32_t i = 0; i < st->nnodes; i++)
		if (strcmp(st->nodes[i].node, node) == 0 && strcmp(st->nodes[i].url, "-") != 0) {
			snprintf(url, cap, "%s", st->nodes[i].url);
			found = url;
		}
	free(st);
	return found;
}

int resume_hello(struct conn *c, const struct proto_msg *hello, int anon)
{
	struct hub *h = c->hub;
	char secret[RESUME_SECRET_LEN + 1], node[STORE_NODE_MAX + 1], url[256];
	uint32_t xid;
	if (h->cfg.resume_grace <= 0 || parse_token(hello->resume, secret, &xid, node) != 0)
		return 0;
	const char *sub = anon ? NULL : c->ident.sub;
	if (strcmp(node, h->node) == 0) {
		struct conn *x = hub_conn_by_id(h, xid);
		if (!resume_ok(x, hello->role, sub, secret)) {
			log_info("conn %u: nothing to resume (conn %u)", c->id, xid);
			return 0;
		}
		struct ws_conn *ws = c->ws;
		c->ws = NULL;
		hub_conn_gone(c);     /* its socket is x's now */
		take_over(x, ws, NULL, 0);
		return 1;
	}
	struct pipe_set *ps = node_url(h, node, url, sizeof url) ? span_pipes(h) : NULL;
	struct pipe *p = ps ? pipe_to(ps, node, url) : NULL;
	if (!p) {
		log_info("conn %u: cannot reach node %s to resume there", c->id, node);
		return 0;
	}
	c->home = p;
	c->home_conn = xid;
	c->resume_role = hello->role;
	char rest[PROTO_SUB_MAX + RESUME_SECRET_LEN + 48];
	int n = snprintf(rest, sizeof rest, "%u %s %s %s", c->id, proto_role_name(hello->role),
	                 secret, sub ? sub : "-");
	pipe_text(p, "resume", xid, rest, (size_t)n);
	log_info("conn %u resumes conn %u of node %s", c->id, xid, node);
	return 1;
}

/* ---- the home node's side of a link ---- */

static void lost(struct conn *x)
{
	x->proxy = NULL;
	if (!resume_keep(x, 0))
		hub_conn_gone(x);
}

void resume_link_text(struct conn *link, const char *op, uint32_t conn, const char *rest,
                      size_t len)
{
	struct hub *h = link->hub;
	struct conn *x = hub_conn_by_id(h, conn);
	if (strcmp(op, "resume") == 0) {
		char buf[PROTO_SUB_MAX + RESUME_SECRET_LEN + 48], role[16], secret[RESUME_SECRET_LEN + 1],
		     sub[PROTO_SUB_MAX + 1];
		unsigned long yconn;
		if (len >= sizeof buf)
			return;
		memcpy(buf, rest, len);
		buf[len] = '\0';
		if (sscanf(buf, "%lu %15s %32s %64s", &yconn, role, secret, sub) != 4 ||
		    yconn > UINT32_MAX)
			return;
		if (resume_ok(x, proto_role_parse(role), strcmp(sub, "-") ? sub : NULL, secret))
			take_over(x, NULL, link, (uint32_t)yconn);
		else
			span_link_send(link, "nope", (uint32_t)yconn, "", 0);
		return;
	}
	if (!x || x->proxy != link)
		return;
	if (strcmp(op, "up") == 0)
		hub_text(x, rest, len);
	else if (strcmp(op, "gone") == 0)
		lost(x);
}

void resume_link_media(struct conn *link, uint32_t conn, const uint8_t *buf, size_t len)
{
	struct conn *x = hub_conn_by_id(link->hub, conn);
	if (x && x->proxy == link)
		hub_binary(x, buf, len);
}

void resume_link_gone(struct conn *link)
{
	/* One at a time: letting one go may let others go (its session). */
	for (;;) {
		struct conn *x = NULL;
		struct list *it;
		list_for_each(it, &link->hub->conns) {
			struct conn *c = list_entry(it, struct conn, link);
			if (c->proxy == link) {
				x = c;
				break;
			}
		}
		if (!x)
			return;
		lost(x);
	}
}

/* ---- the other node's side ---- */

void resume_up(struct conn *c, const char *buf, size_t len, int binary)
{
	if (binary)
		pipe_media(c->home, c->home_conn | LINK_RESUMED, (const uint8_t *)buf, len);
	else
		pipe_text(c->home, "up", c->home_conn, buf, len);
}

void resume_pipe_text(struct hub *h, struct pipe *p, const char *op, uint32_t conn,
                      const char *rest)
{
	struct conn *y = hub_conn_by_id(h, conn);
	if (!y || y->home != p)
		return;
	if (strcmp(op, "down") == 0) {
		y->resume_role = ROLE_NONE;   /* the home took it up */
		if (y->ws)
			ws_send(y->ws, rest, strlen(rest));
		return;
	}
	y->home = NULL;
	if (strcmp(op, "nope") == 0) {
		log_info("conn %u: nothing to resume on node %s", y->id, pipe_node(p));
		hub_admit(y, y->resume_role);
	} else if (y->ws) {           /* bye: taken up again elsewhere */
		ws_close(y->ws, 1008, "replaced");
	}
}

void resume_pipe_media(struct hub *h, struct pipe *p, uint32_t conn, const uint8_t *buf,
                       size_t len)
{
	struct conn *y = hub_conn_by_id(h, conn);
	if (y && y->home == p && y->ws && ws_send_media(y->ws, buf, len) == 1)
		h->metrics.media_dropped[MD_SLOW_READER]++;
}

void resume_pipe_gone(struct hub *h, struct pipe *p)
{
	/* One at a time: admitting one may replace another connection. */
	for (;;) {
		struct conn *y = NULL;
		struct list *it;
		list_for_each(it, &h->conns) {
			struct conn *c = list_entry(it, struct conn, link);
			if (c->home == p) {
				y = c;
				break;
			}
		}
		if (!y)
			return;
		y->home = NULL;
		if (y->resume_role != ROLE_NONE) {
			log_info("conn %u: node %s did not answer; admitted afresh", y->id, pipe_node(p));
			hub_admit(y, y->resume_role);
		} else if (y->ws) {
			/* Their home is out of reach: they come back, and try again. */
			ws_close(y->ws, 1011, "link lost");
		}
	}
}
