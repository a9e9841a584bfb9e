/* esclient.h - an earshot protocol client on libwebsockets + libev: open
 * connections to a server, send protocol messages or raw frames, receive
 * decoded messages through a callback. Used by the `earshot` command-line
 * client and the integration tests (and the load generator later).
 *
 * Ownership: the caller owns the loop. An esc_ctx owns its connections;
 * esc_conn_free (or esc_ctx_free) releases one. After the close callback a
 * connection stays allocated, marked closed, until the caller frees it, so
 * the caller's pointers never dangle. Callbacks run from inside the loop;
 * a callback must not free its own connection (close it instead).
 *
 * lws' log level is the caller's: set it before esc_ctx_new (at NOTICE,
 * lws' libev plugin logs every I/O change). */
#ifndef EARSHOT_ESCLIENT_H
#define EARSHOT_ESCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include "../proto/proto.h"

struct ev_loop;
struct esc_ctx;
struct esc_conn;

struct esc_handlers {
	/* The WebSocket is open (the caller typically sends hello now). */
	void (*open)(struct esc_conn *c, void *ud);
	/* One message from the server. `raw` is the frame as received. `m`,
	 * and a `ratings` reply's lists behind it, live for the call. */
	void (*message)(struct esc_conn *c, const struct proto_msg *m,
	                const char *raw, size_t rawlen, void *ud);
	/* One binary (media) frame; `buf` lives for the call. May be NULL. */
	void (*binary)(struct esc_conn *c, const uint8_t *buf, size_t len, void *ud);
	/* The connection failed or closed. `code` is the peer's close code, or
	 * 0 when there was none (connect failure, reset). */
	void (*closed)(struct esc_conn *c, int code, const char *why, void *ud);
};

struct esc_options {
	const char *ca_file;     /* TLS: trust this CA file; NULL: system store */
	int insecure;            /* TLS: accept self-signed / other host names */
	size_t binary_queue;     /* binary frames that may wait; 0: 50 (1 s of audio) */
};

struct esc_ctx *esc_ctx_new(struct ev_loop *loop, const struct esc_options *opt,
                            char *err, size_t errlen);
void esc_ctx_free(struct esc_ctx *x);

/* Connect to `url` (ws://host:port/path or wss://...). Returns NULL with
 * `err` set when the URL is bad or the attempt cannot start; a later
 * failure arrives as `closed`. */
struct esc_conn *esc_connect(struct esc_ctx *x, const char *url,
                             const struct esc_handlers *h, void *ud,
                             char *err, size_t errlen);
void esc_conn_free(struct esc_conn *c);

/* Encode and queue a message. 0, or -1 (invalid message, or closed). */
int esc_send(struct esc_conn *c, const struct proto_msg *m);
/* Queue one raw text (binary = 0) or binary frame. At most
 * esc_options.binary_queue binary frames wait: beyond that the oldest is
 * dropped and counted (esc_binary_dropped); text frames are never dropped. */
int esc_send_raw(struct esc_conn *c, const void *buf, size_t len, int binary);
/* Start a normal close (1000). */
void esc_close(struct esc_conn *c);
/* Cut the connection as a dead network would: no close frame. */
void esc_drop(struct esc_conn *c);
/* Stop (1) or resume (0) reading from the server, as a peer on a choked
 * network would; `rcvbuf` > 0 also shrinks the socket's receive buffer so
 * the server notices soon. For tests of slow readers. */
void esc_pause(struct esc_conn *c, int paused, int rcvbuf);
unsigned long esc_binary_dropped(const struct esc_conn *c);
int esc_is_open(const struct esc_conn *c);
int esc_is_closed(const struct esc_conn *c);

#endif
