/* ws.c - the WebSocket and HTTP transport on libwebsockets + libev (ws.h).
 *
 * lws 4.1.6 facts this file is shaped by (measured, see PLATFORM.md): its
 * own timers are late on a libev loop, so pings, idle closes and stuck
 * closes run from our ev_timer sweep; it does no backpressure, so every
 * connection's send queue is bounded here; one lws_write per WRITEABLE. */
#include "ws.h"
#include "list.h"

#include <ev.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Frames far past the bound are not worth draining: close instead. */
#define WS_OVERSIZE_CLOSE_FACTOR 64
#define WS_CLOSE_GRACE_S 5.0
#define WS_FLOOD_CLOSE_S 5.0
#define WS_SWEEP_S 1.0
/* The kernel's send buffer per connection. Autotuned, loopback and LAN
 * buffers grow to megabytes: minutes of voice queued in the kernel, out of
 * reach of the drop-oldest audio ring. 64 KiB (the kernel doubles it) is
 * seconds of audio and ample for control and chat. */
#define WS_SNDBUF (64 * 1024)

struct outmsg {
	struct outmsg *next;
	size_t len;
	unsigned char data[];           /* LWS_PRE headroom, then payload */
};

struct ws_conn {
	struct list link;               /* server->conns */
	struct ws_server *srv;
	struct lws *wsi;
	void *user;
	struct outmsg *qhead, *qtail;
	size_t qbytes;
	/* Audio ring: allocated when audio first has to wait (a reader
	 * slower than its sender), then no allocation per packet. Slot i
	 * holds LWS_PRE + WS_MEDIA_MAX bytes. */
	uint8_t *mring;
	uint16_t *mlen;
	size_t mhead, mcount, mcap;
	size_t max_queue;               /* text bytes queued before closing */
	int trusted;                    /* a node link: no message rate */
	char *rx;                       /* a message arriving in pieces; else NULL */
	size_t rxlen, rxtotal;
	int rx_discard;
	double tokens, refill_at;       /* rate limit bucket */
	double flood_since, last_drop, refusal_at;
	double last_rx, last_ping;
	int want_ping, closing, close_code;
	int peer_close;                 /* the code of the peer's close frame; 0 none */
	double closing_since;
	char close_reason[64];
	char peer[64];
};

struct ws_server {
	struct ev_loop *loop;
	struct lws_context *ctx;
	struct lws_vhost *vh;
	struct ws_config cfg;
	struct ws_handlers h;
	struct list conns;
	size_t nconns;
	/* Every whole message is handed over from here (handlers may modify
	 * a binary frame in place; SRTP grows it by its tag): one buffer for
	 * all connections instead of one each (max_message + room). */
	char *msgbuf;
	/* An audio frame written at once is built here (LWS_PRE + frame). */
	unsigned char txbuf[LWS_PRE + WS_MEDIA_MAX];
	int draining;
	ev_timer sweep;
};

/* lws' per-session data: one slot per wsi, HTTP or WebSocket. */
struct pss {
	struct ws_conn *c;
	struct ws_http_reply http;
};

static double now_s(const struct ws_server *s) { return ev_now(s->loop); }

static void queue_free(struct ws_conn *c)
{
	while (c->qhead) {
		struct outmsg *m = c->qhead;
		c->qhead = m->next;
		free(m);
	}
	c->qtail = NULL;
	c->qbytes = 0;
}

#define MSLOT (LWS_PRE + WS_MEDIA_MAX)

/* Write an audio frame at once instead of queueing it for the next
 * WRITEABLE, when nothing is waiting ahead of it (text, a ping, a close).
 * Per relayed packet this saves asking for POLLOUT, the event loop's
 * wake-up for it and the poll() of lws_send_pipe_choked: a third of the
 * system calls. A socket that cannot take the frame is no risk: lws keeps
 * the unsent part (at most this one frame, as nothing is written while
 * lws_partial_buffered) and asks for WRITEABLE itself. Text keeps going
 * through WRITEABLE, where lws reads before it writes: a peer's close
 * frame is taken before more is sent into its closed socket, whose reset
 * would lose it (and with it whether the peer left on purpose). `p` has
 * LWS_PRE bytes of headroom. 1 when written (or the connection broke and
 * is now closing), 0 when the caller must queue it. */
static int write_now(struct ws_conn *c, unsigned char *p, size_t len)
{
	if (c->closing || c->want_ping || c->qhead || c->mcount || lws_partial_buffered(c->wsi))
		return 0;
	if (lws_write(c->wsi, p, len, LWS_WRITE_BINARY) < 0) {
		/* Not inside this connection's callback: it cannot be closed
		 * from here. WRITEABLE sees `closing` and ends it. */
		c->closing = 1;
		c->close_code = 0;
		c->closing_since = now_s(c->srv);
		lws_callback_on_writable(c->wsi);
	}
	return 1;
}

int ws_send_media(struct ws_conn *c, const uint8_t *buf, size_t len)
{
	size_t n = c->mcap;
	if (c->closing || len > WS_MEDIA_MAX || n == 0)
		return -1;
	if (!c->mcount) {
		unsigned char *p = c->srv->txbuf + LWS_PRE;
		memcpy(p, buf, len);
		if (write_now(c, p, len))
			return 0;
	}
	if (!c->mring) {
		c->mring = malloc(n * MSLOT);
		c->mlen = malloc(n * sizeof *c->mlen);
		if (!c->mring || !c->mlen) {
			free(c->mring);
			free(c->mlen);
			c->mring = NULL;
			c->mlen = NULL;
			return -1;
		}
	}
	int dropped = 0;
	if (c->mcount == n) {
		c->mhead = (c->mhead + 1) % n;
		c->mcount--;
		dropped = 1;
	}
	size_t slot = (c->mhead + c->mcount) % n;
	memcpy(c->mring + slot * MSLOT + LWS_PRE, buf, len);
	c->mlen[slot] = (uint16_t)len;
	c->mcount++;
	lws_callback_on_writable(c->wsi);
	return dropped;
}

int ws_send(struct ws_conn *c, const char *buf, size_t len)
{
	if (c->closing)
		return -1;
	if (c->qbytes + len > c->max_queue) {
		/* A peer that does not read gets a clear close, not our memory. */
		ws_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too slow");
		return -1;
	}
	struct outmsg *m = malloc(sizeof *m + LWS_PRE + len);
	if (!m) {
		ws_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
		return -1;
	}
	m->next = NULL;
	m->len = len;
	memcpy(m->data + LWS_PRE, buf, len);
	if (c->qtail)
		c->qtail->next = m;
	else
		c->qhead = m;
	c->qtail = m;
	c->qbytes += len;
	lws_callback_on_writable(c->wsi);
	return 0;
}

void ws_set_user(struct ws_conn *c, void *user)
{
	c->user = user;
}

void ws_close(struct ws_conn *c, int code, const char *reason)
{
	if (c->closing)
		return;
	c->closing = 1;
	c->close_code = code;
	c->closing_since = now_s(c->srv);
	snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
	lws_callback_on_writable(c->wsi);
}

const char *ws_conn_peer(const struct ws_conn *c) { return c->peer; }

void ws_trust(struct ws_conn *c)
{
	c->trusted = 1;
	c->max_queue = c->srv->cfg.max_queue * WS_TRUST_FACTOR;
	if (!c->mring)
		c->mcap = c->srv->cfg.media_queue * WS_TRUST_FACTOR;
	int sndbuf = WS_SNDBUF * WS_TRUST_FACTOR;
	setsockopt((int)lws_get_socket_fd(c->wsi), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
}

/* Token bucket: 1 when the message may pass. */
static int rate_take(struct ws_conn *c)
{
	const struct ws_config *cfg = &c->srv->cfg;
	double now = now_s(c->srv);
	c->tokens += (now - c->refill_at) * cfg->rate;
	if (c->tokens > cfg->burst)
		c->tokens = cfg->burst;
	c->refill_at = now;
	if (c->tokens >= 1.0) {
		c->tokens -= 1.0;
		return 1;
	}
	/* A flood is drops with no quiet second between them; the tokens that
	 * trickle back meanwhile do not end it. */
	if (c->flood_since == 0 || now - c->last_drop > 1.0)
		c->flood_since = now;
	c->last_drop = now;
	return 0;
}

static void refuse(struct ws_conn *c, enum ws_refusal why)
{
	double now = now_s(c->srv);
	if (why == WS_REFUSED_RATE) {
		if (now - c->flood_since > WS_FLOOD_CLOSE_S) {
			ws_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "flooding");
			return;
		}
		/* One report a second is enough to tell a client it floods. */
		if (now - c->refusal_at < 1.0)
			return;
		c->refusal_at = now;
	}
	c->srv->h.refused(c->user, why);
}

static void rx_drop(struct ws_conn *c)
{
	free(c->rx);
	c->rx = NULL;
	c->rxlen = 0;
}

/* lws hands a frame over in pieces of at most rx_buffer_size. A message
 * that comes whole (all of media, most text) is copied once into the
 * server's buffer; only one in pieces gets a buffer of its own, for as
 * long as it takes to arrive: an idle connection holds none. */
static void on_receive(struct ws_conn *c, const void *in, size_t len)
{
	struct ws_server *s = c->srv;
	struct lws *wsi = c->wsi;
	size_t max = s->cfg.max_message;
	c->last_rx = now_s(s);
	if (c->closing)
		return;
	if (lws_is_first_fragment(wsi)) {
		rx_drop(c);
		c->rxtotal = 0;
		c->rx_discard = 0;
	}
	c->rxtotal += len;
	if (c->rxtotal > max * WS_OVERSIZE_CLOSE_FACTOR) {
		rx_drop(c);
		ws_close(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too large");
		return;
	}
	int last = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
	if (!c->rx_discard && c->rxlen + len > max) {
		c->rx_discard = 1;
		rx_drop(c);
	}
	if (!c->rx_discard && !(last && !c->rx)) {
		if (!c->rx && !(c->rx = malloc(max))) {
			ws_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
			return;
		}
		memcpy(c->rx + c->rxlen, in, len);
		c->rxlen += len;
	}
	if (!last)
		return;
	size_t n = 0;
	if (!c->rx_discard) {
		n = c->rx ? c->rxlen : len;
		memcpy(s->msgbuf, c->rx ? c->rx : in, n);
		rx_drop(c);
	}
	if (lws_frame_is_binary(wsi)) {
		if (c->rx_discard)
			s->h.refused(c->user, WS_REFUSED_MEDIA_TOO_LARGE);
		else
			s->h.binary(c->user, (uint8_t *)s->msgbuf, n);
	} else if (c->rx_discard)
		refuse(c, WS_REFUSED_TOO_LARGE);
	else if (!c->trusted && !rate_take(c))
		refuse(c, WS_REFUSED_RATE);
	else
		s->h.text(c->user, s->msgbuf, n);
}

/* One lws_write per WRITEABLE: a ping, a queued message, queued audio, or
 * the close. Text and control go before audio and are never dropped. */
static int on_writeable(struct ws_conn *c)
{
	struct lws *wsi = c->wsi;
	/* lws calls WRITEABLE once the socket took everything it held back;
	 * check anyway, without lws_send_pipe_choked's poll(). */
	if (lws_partial_buffered(wsi)) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	if (c->want_ping) {
		unsigned char ping[LWS_PRE + 1];
		c->want_ping = 0;
		if (lws_write(wsi, ping + LWS_PRE, 0, LWS_WRITE_PING) < 0)
			return -1;
	} else if (c->qhead) {
		struct outmsg *m = c->qhead;
		c->qhead = m->next;
		if (!c->qhead)
			c->qtail = NULL;
		c->qbytes -= m->len;
		int n = lws_write(wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT);
		free(m);
		if (n < 0)
			return -1;
	} else if (c->mcount) {
		uint8_t *slot = c->mring + c->mhead * MSLOT;
		size_t len = c->mlen[c->mhead];
		c->mhead = (c->mhead + 1) % c->mcap;
		c->mcount--;
		if (lws_write(wsi, slot + LWS_PRE, len, LWS_WRITE_BINARY) < 0)
			return -1;
	} else if (c->closing) {
		if (c->close_code) /* 0: the socket broke, no close frame */
			lws_close_reason(wsi, (enum lws_close_status)c->close_code,
			                 (unsigned char *)c->close_reason, strlen(c->close_reason));
		return -1;
	}
	if (c->qhead || c->mcount || c->closing || c->want_ping)
		lws_callback_on_writable(wsi);
	return 0;
}

static struct ws_conn *conn_new(struct ws_server *s, struct lws *wsi)
{
	struct ws_conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->srv = s;
	c->wsi = wsi;
	c->tokens = s->cfg.burst;
	c->mcap = s->cfg.media_queue;
	c->max_queue = s->cfg.max_queue;
	c->refill_at = c->last_rx = c->last_ping = now_s(s);
	lws_get_peer_simple(wsi, c->peer, sizeof c->peer);
	int sndbuf = WS_SNDBUF;
	setsockopt((int)lws_get_socket_fd(wsi), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	list_add_tail(&s->conns, &c->link);
	s->nconns++;
	return c;
}

static void conn_free(struct ws_conn *c)
{
	list_del(&c->link);
	c->srv->nconns--;
	queue_free(c);
	free(c->mring);
	free(c->mlen);
	free(c->rx);
	free(c);
}

/* Only upgrades to /ws, and none while draining. */
static int filter_upgrade(struct ws_server *s, struct lws *wsi)
{
	char uri[16];
	if (s->draining)
		return -1;
	if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) < 0 ||
	    strcmp(uri, "/ws") != 0)
		return -1;
	return 0;
}

/* On every HTTP answer. The pages load only their own modules and talk
 * only to their own origin; nothing is cached (tokens, live numbers). */
static const char *const http_headers[][2] = {
	{ "cache-control:", "no-store" },
	{ "x-content-type-options:", "nosniff" },
	{ "referrer-policy:", "no-referrer" },
	{ "content-security-policy:",
	  "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
	  "media-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'" },
};

/* lws stores each URL argument URL-decoded as one fragment ("x=1"): join
 * them with '&'. A decoded value containing '&' cannot be told apart; the
 * only arguments earshot reads are names and identifiers. */
static void query_join(struct lws *wsi, char *query, size_t cap)
{
	size_t used = 0;
	char frag[256];
	query[0] = '\0';
	for (int i = 0; i < 16; i++) {
		int n = lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i);
		if (n < 0)
			break;
		if (used + (size_t)n + 2 > cap)
			break;
		used += (size_t)snprintf(query + used, cap - used, "%s%s", used ? "&" : "", frag);
	}
}

static int http_begin(struct ws_server *s, struct lws *wsi, struct pss *p,
                      const char *path)
{
	unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *pos = start,
	              *end = hdr + sizeof hdr - 1;
	char query[1024] = "";
	free(p->http.body);
	memset(&p->http, 0, sizeof p->http);
	p->http.status = 200;
	query_join(wsi, query, sizeof query);
	if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0 ||
	    s->h.http(s->h.ctx, path, query, &p->http) != 0) {
		free(p->http.body);
		p->http.status = 404;
		p->http.content_type = "text/plain";
		p->http.body = strdup("not found\n");
		p->http.len = p->http.body ? strlen(p->http.body) : 0;
	}
	if (lws_add_http_common_headers(wsi, (unsigned int)p->http.status,
	                                p->http.content_type, p->http.len, &pos, end))
		return -1;
	for (size_t i = 0; i < sizeof http_headers / sizeof http_headers[0]; i++)
		if (lws_add_http_header_by_name(wsi, (const unsigned char *)http_headers[i][0],
		                                (const unsigned char *)http_headers[i][1],
		                                (int)strlen(http_headers[i][1]), &pos, end))
			return -1;
	if (lws_finalize_write_http_header(wsi, start, &pos, end))
		return -1;
	lws_callback_on_writable(wsi);
	return 0;
}

static int http_write(struct lws *wsi, struct pss *p)
{
	if (!p->http.body)
		return 0;
	unsigned char *buf = malloc(LWS_PRE + p->http.len + 1);
	if (!buf)
		return -1;
	memcpy(buf + LWS_PRE, p->http.body, p->http.len);
	int n = lws_write(wsi, buf + LWS_PRE, p->http.len, LWS_WRITE_HTTP_FINAL);
	free(buf);
	free(p->http.body);
	p->http.body = NULL;
	if (n < 0)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len)
{
	struct ws_server *s = lws_context_user(lws_get_context(wsi));
	struct pss *p = user;
	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return filter_upgrade(s, wsi);
	case LWS_CALLBACK_ESTABLISHED:
		p->c = conn_new(s, wsi);
		if (!p->c)
			return -1;
		p->c->user = s->h.open(s->h.ctx, p->c);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		if (p->c)
			on_receive(p->c, in, len);
		return 0;
	case LWS_CALLBACK_RECEIVE_PONG:
		if (p->c)
			p->c->last_rx = now_s(s);
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return p->c ? on_writeable(p->c) : 0;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (p->c)
			p->c->peer_close = len >= 2 ? ((const unsigned char *)in)[0] << 8 |
			                              ((const unsigned char *)in)[1]
			                            : LWS_CLOSE_STATUS_NO_STATUS;
		return 0;
	case LWS_CALLBACK_CLOSED:
		if (p->c) {
			s->h.closed(p->c->user, p->c->peer_close);
			conn_free(p->c);
			p->c = NULL;
		}
		return 0;
	case LWS_CALLBACK_HTTP:
		return http_begin(s, wsi, p, in);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return http_write(wsi, p);
	case LWS_CALLBACK_CLOSED_HTTP:
		if (p) {
			free(p->http.body);
			p->http.body = NULL;
		}
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

/* Pings, idle closes and closes stuck behind a peer that stopped reading:
 * lws' own timers are late on libev, so these run from our timer. */
static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct ws_server *s = w->data;
	double now = now_s(s);
	struct list *it, *tmp;
	list_for_each_safe(it, tmp, &s->conns) {
		struct ws_conn *c = list_entry(it, struct ws_conn, link);
		if (c->closing && now - c->closing_since > WS_CLOSE_GRACE_S) {
			/* Synchronous: CLOSED runs now and frees only `c`. */
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_SYNC);
			continue;
		}
		if (now - c->last_rx > s->cfg.idle_s) {
			ws_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "idle");
		} else if (now - c->last_ping >= s->cfg.ping_s) {
			c->last_ping = now;
			c->want_ping = 1;
			lws_callback_on_writable(c->wsi);
		}
	}
}

static const struct lws_protocols protocols[] = {
	/* First in the list: a client offering no subprotocol lands here too,
	 * and so do plain HTTP requests. */
	/* lws keeps rx_buffer_size bytes per connection and hands longer
	 * frames over in pieces (on_receive joins them): 1 KiB holds any
	 * audio frame and most text. Sends are not cut up (tx_packet_size). */
	{ "earshot.v1", callback, sizeof(struct pss), 1024, 0, NULL, 256 * 1024 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

struct ws_server *ws_server_new(struct ev_loop *loop, const struct ws_config *cfg,
                                const struct ws_handlers *h, char *err, size_t errlen)
{
	struct ws_server *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->loop = loop;
	s->cfg = *cfg;
	s->h = *h;
	s->msgbuf = malloc((cfg->max_message > WS_MEDIA_MAX ? cfg->max_message : WS_MEDIA_MAX) + 64);
	if (!s->msgbuf) {
		snprintf(err, errlen, "out of memory");
		free(s);
		return NULL;
	}
	list_init(&s->conns);

	void *foreign[] = { loop };
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.port = cfg->port;
	info.iface = cfg->iface;
	info.protocols = protocols;
	info.user = s;
	info.foreign_loops = foreign;
	/* DISABLE_IPV6: with IPv6 on, lws 4.1.6 binds every interface even
	 * when iface is 127.0.0.1 (PLATFORM.md). VALIDATE_UTF8: lws does not
	 * check text frames otherwise. */
	info.options = LWS_SERVER_OPTION_LIBEV | LWS_SERVER_OPTION_DISABLE_IPV6 |
	               LWS_SERVER_OPTION_VALIDATE_UTF8;
	if (cfg->tls_cert && cfg->tls_cert[0]) {
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = cfg->tls_cert;
		info.ssl_private_key_filepath = cfg->tls_key;
	}
	info.timeout_secs = 10;
	/* No keep-alive of lws' own: by default every PONG re-files its
	 * connection in one list of all of them, kept sorted by walking it
	 * (21% of the server's CPU with 10,000 connections). sweep_cb pings
	 * and closes idle connections instead. */
	static const lws_retry_bo_t no_validity = { .secs_since_valid_ping = 0,
	                                            .secs_since_valid_hangup = 0 };
	info.retry_and_idle_policy = &no_validity;
	s->ctx = lws_create_context(&info);
	if (!s->ctx) {
		snprintf(err, errlen, "cannot listen on %s:%d (address in use, or bad TLS files?)",
		         cfg->iface, cfg->port);
		free(s->msgbuf);
		free(s);
		return NULL;
	}
	s->vh = lws_get_vhost_by_name(s->ctx, "default");
	ev_timer_init(&s->sweep, sweep_cb, WS_SWEEP_S, WS_SWEEP_S);
	s->sweep.data = s;
	ev_timer_start(loop, &s->sweep);
	return s;
}

int ws_server_port(const struct ws_server *s)
{
	return s->vh ? lws_get_vhost_listen_port(s->vh) : -1;
}

void ws_server_drain(struct ws_server *s) { s->draining = 1; }

size_t ws_server_connections(const struct ws_server *s) { return s->nconns; }

void ws_server_free(struct ws_server *s)
{
	if (!s)
		return;
	ev_timer_stop(s->loop, &s->sweep);
	lws_context_destroy(s->ctx);
	free(s->msgbuf);
	free(s);
}
