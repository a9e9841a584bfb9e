/* esclient.c - the earshot protocol client on lws + libev (esclient.h). */
#include "esclient.h"
#include "../server/list.h"

#include <ev.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define ESC_RX_MAX (256 * 1024)
/* Binary (audio) frames waiting to go out, by default: 1 s of 20 ms
 * frames. A stalled uplink loses its oldest audio instead of growing
 * memory; text frames are never dropped. */
#define ESC_BIN_QUEUE_DEFAULT 50

struct frame {
	struct frame *next;
	size_t len;
	int binary;
	unsigned char data[];   /* LWS_PRE, then payload */
};

struct esc_conn {
	struct list link;       /* ctx->conns */
	struct esc_ctx *x;
	struct lws *wsi;
	struct esc_handlers h;
	void *ud;
	struct frame *qhead, *qtail;
	size_t qbinary;         /* binary frames in the queue */
	unsigned long bin_dropped;
	char *rx;
	size_t rxlen;
	int rx_over;
	int open, closed, closing, orphan;
	int close_code;
	char close_why[128];
};

struct esc_ctx {
	struct ev_loop *loop;
	struct lws_context *ctx;
	struct list conns;
	int insecure;
	size_t binary_queue;
	struct proto_ratings *ratings;  /* where a `ratings` reply's lists go */
};

/* Unlink and free the oldest binary frame in the queue. */
static void drop_oldest_binary(struct esc_conn *c)
{
	struct frame *prev = NULL;
	for (struct frame *f = c->qhead; f; prev = f, f = f->next) {
		if (!f->binary)
			continue;
		if (prev)
			prev->next = f->next;
		else
			c->qhead = f->next;
		if (c->qtail == f)
			c->qtail = prev;
		c->qbinary--;
		c->bin_dropped++;
		free(f);
		return;
	}
}

static void queue_clear(struct esc_conn *c)
{
	while (c->qhead) {
		struct frame *f = c->qhead;
		c->qhead = f->next;
		free(f);
	}
	c->qtail = NULL;
	c->qbinary = 0;
}

static void conn_release(struct esc_conn *c)
{
	list_del(&c->link);
	queue_clear(c);
	free(c->rx);
	free(c);
}

/* The connection is over, however lws says so. The wsi forgets us first:
 * lws may still mention it (WSI_DESTROY) after we have freed `c`. */
static void finish(struct esc_conn *c, struct lws *wsi, const char *why)
{
	lws_set_wsi_user(wsi, NULL);
	if (c->closed)
		return;
	c->closed = 1;
	c->open = 0;
	c->wsi = NULL;
	if (why && !c->close_why[0])
		snprintf(c->close_why, sizeof c->close_why, "%s", why);
	if (!c->orphan && c->h.closed)
		c->h.closed(c, c->close_code, c->close_why, c->ud);
	if (c->orphan)
		conn_release(c);
}

static void on_receive(struct esc_conn *c, const void *in, size_t len)
{
	struct lws *wsi = c->wsi;
	if (lws_is_first_fragment(wsi)) {
		c->rxlen = 0;
		c->rx_over = 0;
	}
	if (c->rxlen + len > ESC_RX_MAX)
		c->rx_over = 1;
	if (!c->rx_over) {
		memcpy(c->rx + c->rxlen, in, len);
		c->rxlen += len;
	}
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) || c->rx_over)
		return;
	if (lws_frame_is_binary(wsi)) {
		if (!c->orphan && c->h.binary)
			c->h.binary(c, (const uint8_t *)c->rx, c->rxlen, c->ud);
		return;
	}
	struct proto_msg *m = malloc(sizeof *m);
	if (!m)
		return;
	struct proto_err err;
	if (proto_decode_with(c->rx, c->rxlen, m, c->x->ratings, &err) != PROTO_OK)
		m->type = PT_NONE;   /* still handed over, with the raw frame */
	if (!c->orphan && c->h.message)
		c->h.message(c, m, c->rx, c->rxlen, c->ud);
	free(m);
}

static int on_writeable(struct esc_conn *c)
{
	if (c->qhead) {
		struct frame *f = c->qhead;
		c->qhead = f->next;
		if (!c->qhead)
			c->qtail = NULL;
		if (f->binary)
			c->qbinary--;
		int n = lws_write(c->wsi, f->data + LWS_PRE, f->len,
		                  f->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
		free(f);
		if (n < 0)
			return -1;
	} else if (c->closing) {
		lws_close_reason(c->wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
		return -1;
	}
	if (c->qhead || c->closing)
		lws_callback_on_writable(c->wsi);
	return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len)
{
	struct esc_conn *c = user;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if (!c)
			return -1;
		c->open = 1;
		if (!c->orphan && c->h.open)
			c->h.open(c, c->ud);
		if (c->qhead || c->closing)
			lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (c)
			on_receive(c, in, len);
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return c ? on_writeable(c) : 0;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (c && len >= 2) {
			const unsigned char *p = in;
			c->close_code = (p[0] << 8) | p[1];
			snprintf(c->close_why, sizeof c->close_why, "%.*s",
			         (int)(len - 2 < 120 ? len - 2 : 120), (const char *)p + 2);
		}
		return 0;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (c)
			finish(c, wsi, in ? (const char *)in : "connection failed");
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
	/* lws 4.1.6 ends a connection whose upgrade got no answer with only
	 * these two, never CLIENT_CLOSED or CONNECTION_ERROR. */
	case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
	case LWS_CALLBACK_WSI_DESTROY:
		if (c)
			finish(c, wsi, "closed");
		return 0;
	default:
		return 0;
	}
}

static const struct lws_protocols protocols[] = {
	{ PROTO_SUBPROTOCOL, callback, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

struct esc_ctx *esc_ctx_new(struct ev_loop *loop, const struct esc_options *opt,
                            char *err, size_t errlen)
{
	struct esc_ctx *x = calloc(1, sizeof *x);
	if (!x) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	x->loop = loop;
	list_init(&x->conns);
	x->ratings = malloc(sizeof *x->ratings);
	if (!x->ratings) {
		snprintf(err, errlen, "out of memory");
		free(x);
		return NULL;
	}
	void *foreign[] = { loop };
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.foreign_loops = foreign;
	info.options = LWS_SERVER_OPTION_LIBEV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	if (opt && opt->ca_file)
		info.client_ssl_ca_filepath = opt->ca_file;
	x->ctx = lws_create_context(&info);
	if (!x->ctx) {
		snprintf(err, errlen, "cannot create the WebSocket client context");
		free(x->ratings);
		free(x);
		return NULL;
	}
	x->insecure = opt && opt->insecure;
	x->binary_queue = opt && opt->binary_queue ? opt->binary_queue : ESC_BIN_QUEUE_DEFAULT;
	return x;
}

void esc_ctx_free(struct esc_ctx *x)
{
	if (!x)
		return;
	struct list *it, *tmp;
	/* Orphan every connection first: destroying the context closes the
	 * open ones, whose callbacks then free them. */
	list_for_each_safe(it, tmp, &x->conns) {
		struct esc_conn *c = list_entry(it, struct esc_conn, link);
		if (c->closed)
			conn_release(c);
		else
			c->orphan = 1;
	}
	lws_context_destroy(x->ctx);
	list_for_each_safe(it, tmp, &x->conns)
		conn_release(list_entry(it, struct esc_conn, link));
	free(x->ratings);
	free(x);
}

struct esc_conn *esc_connect(struct esc_ctx *x, const char *url,
                             const struct esc_handlers *h, void *ud,
                             char *err, size_t errlen)
{
	char copy[512];
	const char *scheme, *host, *path;
	int port;
	snprintf(copy, sizeof copy, "%s", url);
	if (lws_parse_uri(copy, &scheme, &host, &port, &path) ||
	    (strcmp(scheme, "ws") && strcmp(scheme, "wss"))) {
		snprintf(err, errlen, "bad URL '%s' (want ws://host:port/ws or wss://...)", url);
		return NULL;
	}
	struct esc_conn *c = calloc(1, sizeof *c);
	if (c)
		c->rx = malloc(ESC_RX_MAX);
	if (!c || !c->rx) {
		free(c);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->x = x;
	c->h = *h;
	c->ud = ud;
	list_add_tail(&x->conns, &c->link);

	char fullpath[256];
	snprintf(fullpath, sizeof fullpath, "/%s", path);
	struct lws_client_connect_info i;
	memset(&i, 0, sizeof i);
	i.context = x->ctx;
	i.address = host;
	i.port = port;
	i.path = fullpath;
	i.host = host;
	i.origin = host;
	i.protocol = PROTO_SUBPROTOCOL;
	i.userdata = c;
	i.pwsi = &c->wsi;
	if (strcmp(scheme, "wss") == 0) {
		i.ssl_connection = LCCSCF_USE_SSL;
		if (x->insecure)
			i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
	}
	if (!lws_client_connect_via_info(&i)) {
		/* The failure may already have been reported through `closed`. */
		if (!c->closed) {
			c->closed = 1;
			snprintf(c->close_why, sizeof c->close_why, "cannot connect");
			if (c->h.closed)
				c->h.closed(c, 0, c->close_why, c->ud);
		}
	}
	return c;
}

void esc_conn_free(struct esc_conn *c)
{
	if (!c)
		return;
	if (c->closed) {
		conn_release(c);
		return;
	}
	c->orphan = 1;
	c->closing = 1;
	if (c->wsi)
		lws_callback_on_writable(c->wsi);
}

/* Write an audio frame at once when nothing waits ahead of it: no
 * allocation, no round through WRITEABLE (the load generator sends tens
 * of thousands a second). A socket that cannot take it all is no risk:
 * lws keeps the rest and nothing more is written meanwhile. Text keeps
 * going through WRITEABLE, where lws reads before it writes: a peer's
 * close frame is seen before more text is sent into a closed socket
 * (whose reset would lose that close frame). 1 when written (or the
 * connection broke: it is now closing), 0 when the caller must queue it. */
static int write_now(struct esc_conn *c, const void *buf, size_t len)
{
	unsigned char frame[LWS_PRE + 2048];
	if (!c->open || c->qhead || len > sizeof frame - LWS_PRE || lws_partial_buffered(c->wsi))
		return 0;
	memcpy(frame + LWS_PRE, buf, len);
	if (lws_write(c->wsi, frame + LWS_PRE, len, LWS_WRITE_BINARY) < 0) {
		c->closing = 1;
		lws_callback_on_writable(c->wsi);
	}
	return 1;
}

int esc_send_raw(struct esc_conn *c, const void *buf, size_t len, int binary)
{
	if (c->closed || c->closing)
		return -1;
	if (binary && write_now(c, buf, len))
		return 0;
	if (binary && c->qbinary >= c->x->binary_queue)
		drop_oldest_binary(c);
	struct frame *f = malloc(sizeof *f + LWS_PRE + len);
	if (!f)
		return -1;
	f->next = NULL;
	f->len = len;
	f->binary = binary;
	memcpy(f->data + LWS_PRE, buf, len);
	c->qbinary += binary ? 1 : 0;
	if (c->qtail)
		c->qtail->next = f;
	else
		c->qhead = f;
	c->qtail = f;
	if (c->open)
		lws_callback_on_writable(c->wsi);
	return 0;
}

int esc_send(struct esc_conn *c, const struct proto_msg *m)
{
	char buf[PROTO_TEXT_MAX * 6 + 1024]; /* every text byte escaped */
	long n = proto_encode(m, buf, sizeof buf);
	if (n < 0)
		return -1;
	return esc_send_raw(c, buf, (size_t)n, 0);
}

void esc_close(struct esc_conn *c)
{
	if (c->closed || c->closing)
		return;
	c->closing = 1;
	if (c->open)
		lws_callback_on_writable(c->wsi);
}

void esc_drop(struct esc_conn *c)
{
	if (c->wsi)
		shutdown(lws_get_socket_fd(c->wsi), SHUT_RDWR);
}

void esc_pause(struct esc_conn *c, int paused, int rcvbuf)
{
	if (!c->wsi)
		return;
	if (rcvbuf > 0) {
		int fd = (int)lws_get_socket_fd(c->wsi);
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	}
	lws_rx_flow_control(c->wsi, !paused);
}

unsigned long esc_binary_dropped(const struct esc_conn *c) { return c->bin_dropped; }

int esc_is_open(const struct esc_conn *c) { return c->open && !c->closed; }

int esc_is_closed(const struct esc_conn *c) { return c->closed; }
