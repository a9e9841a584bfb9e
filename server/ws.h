/* ws.h - the WebSocket and HTTP transport: libwebsockets on the caller's
 * libev loop. Owns framing, per-connection bounds (message size, send queue,
 * message rate), keep-alive pings and idle closes; knows nothing of what
 * messages mean. HTTP GETs and WebSocket messages are handed to the
 * handlers below.
 *
 * Ownership: a struct ws_conn belongs to this module. The `closed` handler
 * is the last call that mentions it; after it returns the connection is
 * freed and the handler's owner must not use it again. Every ws_* call on a
 * connection is safe from any handler, including the connection's own. */
#ifndef EARSHOT_WS_H
#define EARSHOT_WS_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct ws_conn;
struct ws_server;

enum ws_refusal {
	WS_REFUSED_TOO_LARGE,   /* a text frame over max_message: discarded */
	WS_REFUSED_RATE,        /* over the message rate: dropped */
	WS_REFUSED_MEDIA_TOO_LARGE, /* a binary frame over max_message: discarded */
};

/* The largest binary (media) frame the audio queue holds. */
#define WS_MEDIA_MAX 1536

struct ws_http_reply {
	int status;             /* 200 */
	const char *content_type;
	char *body;             /* malloc'd by the handler, freed by ws */
	size_t len;
};

struct ws_handlers {
	void *ctx;
	/* A WebSocket opened: return the handler's per-connection pointer. */
	void *(*open)(void *ctx, struct ws_conn *c);
	/* One whole text message within the bounds. `buf` lives for the call. */
	void (*text)(void *user, const char *buf, size_t len);
	/* One whole binary (media) frame. Not rate limited here: media has its
	 * own bounds. `buf` may be modified in place; it lives for the call. */
	void (*binary)(void *user, uint8_t *buf, size_t len);
	/* A message was refused by the transport's bounds. */
	void (*refused)(void *user, enum ws_refusal why);
	/* The connection is gone (by either side). `peer_code`: the code of the
	 * close frame the peer sent (1000: it closed on purpose), 0 when it sent
	 * none (its network went away, or this side closed it). */
	void (*closed)(void *user, int peer_code);
	/* An HTTP GET for `path` with `query`: its arguments already
	 * URL-decoded, joined by '&' ("" if none). Fill `r` and return 0, or
	 * -1 for 404. */
	int (*http)(void *ctx, const char *path, const char *query, struct ws_http_reply *r);
};

struct ws_config {
	const char *iface;      /* "127.0.0.1" */
	int port;               /* 0 = any free port */
	const char *tls_cert, *tls_key; /* NULL or "" = plain */
	size_t max_message;     /* bytes per text message */
	size_t max_queue;       /* bytes queued to one peer before it is closed */
	double rate, burst;     /* messages per second, bucket size */
	double ping_s, idle_s;  /* ping interval, close after this much silence */
	size_t media_queue;     /* audio frames held for a slow reader */
};

struct ws_server *ws_server_new(struct ev_loop *loop, const struct ws_config *cfg,
                                const struct ws_handlers *h, char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
int ws_server_port(const struct ws_server *s);
/* Refuse new WebSocket connections from now on (shutdown). */
void ws_server_drain(struct ws_server *s);
size_t ws_server_connections(const struct ws_server *s);
/* Destroy the lws context; every open connection gets `closed`. Must not be
 * called from inside a handler. */
void ws_server_free(struct ws_server *s);

/* Queue a text message (copied). Returns 0, or -1 when the connection is
 * closing or its queue bound is exceeded (then it is being closed). */
int ws_send(struct ws_conn *c, const char *buf, size_t len);
/* Queue an audio frame (copied, at most WS_MEDIA_MAX bytes) behind any
 * text. Returns 0; 1 when the queue was full and its oldest frame was
 * dropped to make room (a slow reader loses stale audio, not memory);
 * -1 when it was not queued (closing, too large, out of memory). */
int ws_send_media(struct ws_conn *c, const uint8_t *buf, size_t len);
/* Hand the connection to another handler pointer (NULL: its frames and
 * its close are ignored from now on). */
void ws_set_user(struct ws_conn *c, void *user);
/* Close after what is queued has been sent (bounded in time). */
void ws_close(struct ws_conn *c, int code, const char *reason);
/* A link from another earshot node, carrying many sessions: no message
 * rate, and a send queue, audio ring and socket buffer WS_TRUST_FACTOR
 * times deeper. Call before its first audio frame. */
#define WS_TRUST_FACTOR 64
void ws_trust(struct ws_conn *c);
/* "127.0.0.1" style peer address, for logs. */
const char *ws_conn_peer(const struct ws_conn *c);

#endif
