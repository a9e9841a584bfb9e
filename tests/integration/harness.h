/* harness.h - integration test support: start the real earshotd on a free
 * loopback port, connect peers through the C client library, and wait for
 * messages with bounded timeouts by pumping one libev loop. */
#ifndef EARSHOT_HARNESS_H
#define EARSHOT_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "../../proto/proto.h"

#define H_TIMEOUT_MS 5000

struct h_server {
	pid_t pid;
	int port;
	char url[128];
	char logpath[256];
	char tlsdir[64];               /* TLS: its self-signed certificate's folder */
};

struct h_peer;

/* Once per test binary (cmocka group setup/teardown). */
void h_init(void);
void h_fini(void);

/* Start $EARSHOTD (default build/earshotd) with `args` (NULL-terminated,
 * may be NULL) plus --port; waits until /healthz answers. Returns 0. */
int h_server_start(struct h_server *s, const char *const *args);
/* The same over TLS: a fresh self-signed certificate (removed at stop)
 * is passed as --tls-cert/--tls-key; peers use wss:// and accept it. */
int h_server_start_tls(struct h_server *s, const char *const *args);
/* SIGTERM and wait; returns the exit status (or -1 on a signal/timeout). */
int h_server_stop(struct h_server *s);
/* GET http://127.0.0.1:port/path: returns the HTTP status, body in `body`. */
int h_http_get(int port, const char *path, char *body, size_t cap);
/* The same, with the whole response (status line and headers) in `resp`. */
int h_http_get_raw(int port, const char *path, char *resp, size_t cap);

/* A redis-server of the test's own, on a free loopback port, in its own
 * temporary directory (AOF on, fsync always: a restart keeps everything). */
struct h_redis {
	pid_t pid;
	int port;
	char url[64];
	char dir[64];
};
int h_redis_start(struct h_redis *r);
/* SIGTERM and wait (it saves its AOF); h_redis_restart starts it again on
 * the same port and directory. h_redis_stop also removes the directory. */
void h_redis_halt(struct h_redis *r);
int h_redis_restart(struct h_redis *r);
void h_redis_stop(struct h_redis *r);
/* SIGKILL a server (a node dying): no goodbyes, no drain. */
void h_server_kill(struct h_server *s);

/* Connect a peer (named for failure messages) and wait until open. */
struct h_peer *h_connect(const struct h_server *s, const char *name);
/* Connect and complete hello for `role` with `token` (NULL: anonymous). */
struct h_peer *h_join(const struct h_server *s, const char *name,
                      enum proto_role role, const char *token);
void h_peer_free(struct h_peer *p);
/* Cut the connection as a dead network would (no close frame), then free. */
void h_drop(struct h_peer *p);
/* Connect and send hello for `role` with `token` (NULL: none) and the
 * resume token `resume`; waits for `welcome` (NULL on timeout). */
struct h_peer *h_resume(const struct h_server *s, const char *name, enum proto_role role,
                        const char *token, const char *resume);
/* The `welcome` h_join or h_resume waited for. */
const struct proto_msg *h_welcome(const struct h_peer *p);

int h_send(struct h_peer *p, const struct proto_msg *m);
int h_send_json(struct h_peer *p, const char *json);
int h_send_raw(struct h_peer *p, const void *buf, size_t len, int binary);

/* The next message of `type`, skipping others; NULL on timeout. The result
 * is valid until the next h_wait/h_next on that peer. */
const struct proto_msg *h_wait(struct h_peer *p, enum proto_type type, int timeout_ms);
/* The next message of any type, or NULL if none arrives within
 * `timeout_ms`; with 0, only what was already received (the loop does not
 * run: pump it with h_pump). Valid as h_wait's result. */
const struct proto_msg *h_next(struct h_peer *p, int timeout_ms);
/* Whether the connection has closed (the loop does not run). */
int h_closed(const struct h_peer *p);
/* Wait for an `error` and return its code ("" on timeout). */
const char *h_wait_error(struct h_peer *p, int timeout_ms);
/* The next binary frame, copied into `buf` (capacity `cap`); its length,
 * or -1 on timeout. */
long h_wait_binary(struct h_peer *p, uint8_t *buf, size_t cap, int timeout_ms);
/* Binary frames received and not yet taken. */
int h_binary_pending(struct h_peer *p);
/* Stop or resume reading (see esc_pause). */
void h_pause(struct h_peer *p, int paused, int rcvbuf);
/* Wait until the server closed the connection; returns the close code
 * (0 for none) or -1 on timeout. */
int h_wait_closed(struct h_peer *p, int timeout_ms);
/* Run the loop for `ms`. */
void h_pump(int ms);

/* A child process driven through its standard input and output, as a
 * person at a terminal or a script would (the CLI tests). */
struct h_proc {
	pid_t pid;
	int in, out;             /* its stdin (we write), its stdout (we read) */
	char buf[16384];
	size_t len;
	char line[4096];         /* the line h_proc_until returned */
};
/* Start `bin` (default: $EARSHOT or build/earshot when NULL) with `args`
 * (NULL-terminated). Returns 0. */
int h_proc_spawn(struct h_proc *p, const char *bin, const char *const *args);
/* Write `line` and a newline to its stdin. */
int h_proc_say(struct h_proc *p, const char *line);
/* The next output line containing `needle` (earlier ones are skipped), or
 * NULL after `timeout_ms` or at the end of its output. */
const char *h_proc_until(struct h_proc *p, const char *needle, int timeout_ms);
/* Close its stdin and wait for it; its exit status, or -1 (killed after
 * H_TIMEOUT_MS, or ended by a signal). */
int h_proc_reap(struct h_proc *p);

/* cmocka group setup and teardown for tests that start their own servers. */
int h_group_setup(void **state);
int h_group_teardown(void **state);

/* A token signed with the dev secret (what earshotd uses in dev mode). */
const char *h_token(enum proto_role role, const char *sub, const char *name,
                    const char *skills_csv, long ttl_s);

#endif
