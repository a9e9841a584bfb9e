/* pipe.h - this node's links to other nodes, for sessions whose counselor
 * is here and whose client is connected to another node (PROTOCOL.md
 * "Sessions across nodes"). The session runs here, its owner; the other
 * node hosts the client and relays its frames. One WebSocket per host
 * node, opened by the owner on the first such session and authenticated
 * with a `node` token; control frames are text ("op conn rest"), audio
 * binary (4-byte connection id, then the SRTP packet), so that audio may
 * be dropped when late and control never is.
 *
 * Ownership: a pipe belongs to the set; `closed` is the last call that
 * mentions it, after which it is freed. */
#ifndef EARSHOT_PIPE_H
#define EARSHOT_PIPE_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct pipe;
struct pipe_set;

struct pipe_handlers {
	void *ctx;
	/* A text frame from the host: `op`, the host's connection id and the
	 * rest of the line (NUL-terminated, lives for the call). */
	void (*text)(void *ctx, struct pipe *p, const char *op, uint32_t conn, const char *rest);
	/* An audio frame from the host's client `conn`; `buf` lives for the call. */
	void (*media)(void *ctx, struct pipe *p, uint32_t conn, const uint8_t *buf, size_t len);
	/* The link failed or closed: every session on it has lost its client. */
	void (*closed)(void *ctx, struct pipe *p);
};

/* `token` (a `node` token for the hosts) is copied; `insecure` accepts
 * self-signed certificates on wss:// links. NULL on failure. */
struct pipe_set *pipe_set_new(struct ev_loop *loop, const char *token, int insecure,
                              const struct pipe_handlers *h, char *err, size_t errlen);
void pipe_set_free(struct pipe_set *s);

/* The link to `node` at `url`, opened if there is none. NULL when it
 * cannot even start (bad URL). */
struct pipe *pipe_to(struct pipe_set *s, const char *node, const char *url);
const char *pipe_node(const struct pipe *p);
/* Whether the host ever answered: a link that never came up carried
 * nothing to anyone. */
int pipe_was_up(const struct pipe *p);

/* Queue a text frame "op conn rest" (sent once the link is up). 0, or -1
 * when the link is closed or its queue is full (it is then being closed). */
int pipe_text(struct pipe *p, const char *op, uint32_t conn, const char *rest, size_t len);
/* Queue an audio frame; late audio is dropped first. 0 sent, 1 an older
 * frame was dropped for it, -1 not queued. */
int pipe_media(struct pipe *p, uint32_t conn, const uint8_t *buf, size_t len);

#endif
