/* harness.c - integration test support (see harness.h). */
#include "harness.h"
#include "../../client-demo/esclient.h"
#include "../../server/auth.h"
#include "../../server/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <poll.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct node {
	struct node *next;
	struct proto_msg m;            /* a `ratings` reply's lists: its own copy */
};

static void node_free(struct node *n)
{
	if (n && n->m.type == PT_RATINGS)
		free(n->m.ratings);
	free(n);
}

/* Binary frames wait in a small ring; the oldest are overwritten. */
#define H_BIN_SLOTS 512
#define H_BIN_MAX 2048

struct h_peer {
	struct esc_conn *c;
	char name[32];
	struct node *head, *tail, *current;
	uint8_t (*bin)[H_BIN_MAX];
	uint16_t binlen[H_BIN_SLOTS];
	size_t binhead, bincount;
	int open, closed, close_code;
	struct proto_msg welcome;     /* the one h_join / h_resume waited for */
};

static struct ev_loop *loop;
static struct esc_ctx *ctx;
/* EARSHOT_TEST_REDIS=1: every server this binary starts keeps presence and
 * the queue in a redis-server of its own (the same tests, the other
 * backend), each server in a freshly emptied database. */
static struct h_redis shared_redis;
static int shared_db;
static ev_timer guard;
/* Servers started and not yet stopped: a failed assertion skips a test's
 * h_server_stop, so h_fini stops whatever is left, by pid. */
#define H_SERVERS_MAX 64
static pid_t servers[H_SERVERS_MAX];

static void servers_track(pid_t pid, int add)
{
	for (int i = 0; i < H_SERVERS_MAX; i++)
		if (servers[i] == (add ? 0 : pid)) {
			servers[i] = add ? pid : 0;
			return;
		}
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int http_get(int port, const char *path, char *out, size_t cap, int raw);

static void guard_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
}

void h_init(void)
{
	char err[128];
	signal(SIGPIPE, SIG_IGN);
	lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
	loop = ev_default_loop(0);
	/* Tests send bursts of audio on purpose (floods, slow readers): the
	 * server, not our queue, must be the one to drop them. */
	struct esc_options opt = { .insecure = 1, .binary_queue = 4096 };
	ctx = esc_ctx_new(loop, &opt, err, sizeof err);
	if (!ctx) {
		fprintf(stderr, "harness: %s\n", err);
		exit(1);
	}
	ev_init(&guard, guard_cb);
	const char *r = getenv("EARSHOT_TEST_REDIS");
	if (r && strcmp(r, "1") == 0 && h_redis_start(&shared_redis) != 0) {
		fprintf(stderr, "harness: cannot start redis-server\n");
		exit(1);
	}
}

void h_fini(void)
{
	for (int i = 0; i < H_SERVERS_MAX; i++)
		if (servers[i] > 0) {
			kill(servers[i], SIGKILL);
			waitpid(servers[i], NULL, 0);
			servers[i] = 0;
		}
	esc_ctx_free(ctx);
	ctx = NULL;
	ev_timer_stop(loop, &guard);
	if (shared_redis.port)
		h_redis_stop(&shared_redis);
}

/* One loop iteration, waking up by `ms` at the latest. */
static void pump_once(int64_t ms)
{
	if (ms < 0)
		ms = 0;
	ev_timer_stop(loop, &guard);
	ev_timer_set(&guard, (double)ms / 1000.0, 0.0);
	ev_timer_start(loop, &guard);
	ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &guard);
}

void h_pump(int ms)
{
	int64_t end = now_ms() + ms;
	while (now_ms() < end)
		pump_once(end - now_ms());
}

/* ---- the server process ---- */

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		perror("harness: free port");
		exit(1);
	}
	close(fd);
	return ntohs(a.sin_port);
}

int h_http_get(int port, const char *path, char *body, size_t cap)
{
	return http_get(port, path, body, cap, 0);
}

int h_http_get_raw(int port, const char *path, char *resp, size_t cap)
{
	return http_get(port, path, resp, cap, 1);
}

/* GET over HTTP/1.0; `out` gets the body, or with `raw` the whole response. */
static int http_get(int port, const char *path, char *out, size_t cap, int raw)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	char req[512];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	char buf[65536];
	size_t got = 0;
	ssize_t r;
	while (got < sizeof buf - 1 && (r = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
		got += (size_t)r;
	close(fd);
	buf[got] = '\0';
	int status = -1;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	const char *b = strstr(buf, "\r\n\r\n");
	if (out && cap)
		snprintf(out, cap, "%s", raw ? buf : b ? b + 4 : "");
	return status;
}

/* Whether something accepts TCP connections on the port (TLS servers do
 * not answer plain HTTP). */
static int tcp_ready(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Whether a node has registered in the database of `url` (for TLS nodes,
 * whose /healthz plain HTTP cannot ask). */
static int registered(const char *url)
{
	int port, db;
	if (sscanf(url, "redis://127.0.0.1:%d/%d", &port, &db) != 2)
		return 0;
	char cmd[160];
	snprintf(cmd, sizeof cmd, "redis-cli -p %d -n %d --scan --pattern 'earshot:node:*' | grep -q .",
	         port, db);
	return system(cmd) == 0;
}

static int start(struct h_server *s, const char *const *args, int tls)
{
	const char *bin = getenv("EARSHOTD") ? getenv("EARSHOTD") : "build/earshotd";
	memset(s, 0, sizeof *s);
	s->port = free_port();
	snprintf(s->url, sizeof s->url, "%s://127.0.0.1:%d/ws", tls ? "wss" : "ws", s->port);
	snprintf(s->logpath, sizeof s->logpath, "/tmp/earshot-test-%d-%d.log", (int)getpid(),
	         s->port);
	char port[16];
	snprintf(port, sizeof port, "%d", s->port);
	const char *argv[64];
	int n = 0;
	argv[n++] = bin;
	for (int i = 0; args && args[i] && n < 60; i++)
		argv[n++] = args[i];
	argv[n++] = "--port";
	argv[n++] = port;
	char cert[96], key[96];
	if (tls) {
		char cmd[512];
		snprintf(s->tlsdir, sizeof s->tlsdir, "/tmp/earshot-tls-XXXXXX");
		if (!mkdtemp(s->tlsdir))
			return -1;
		snprintf(cert, sizeof cert, "%s/cert.pem", s->tlsdir);
		snprintf(key, sizeof key, "%s/key.pem", s->tlsdir);
		snprintf(cmd, sizeof cmd,
		         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
		         "-subj /CN=localhost -keyout %s -out %s >/dev/null 2>&1", key, cert);
		if (system(cmd) != 0)
			return -1;
		argv[n++] = "--tls-cert";
		argv[n++] = cert;
		argv[n++] = "--tls-key";
		argv[n++] = key;
	}
	char url[96] = "";
	if (shared_redis.pid > 0) {
		int db = shared_db++ % 16;
		char cmd[128];
		snprintf(cmd, sizeof cmd, "redis-cli -p %d -n %d flushdb >/dev/null", shared_redis.port, db);
		if (system(cmd) != 0)
			return -1;
		snprintf(url, sizeof url, "redis://127.0.0.1:%d/%d", shared_redis.port, db);
		argv[n++] = "--redis";
		argv[n++] = url;
	}
	argv[n] = NULL;
	s->pid = fork();
	if (s->pid < 0)
		return -1;
	if (s->pid == 0) {
		int fd = open(s->logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	servers_track(s->pid, 1);
	int64_t end = now_ms() + 15000;
	while (now_ms() < end) {
		/* On Redis a node is ready once it has registered there. */
		char body[64] = "";
		if (tls ? tcp_ready(s->port) && (shared_redis.pid <= 0 || registered(url))
		        : h_http_get(s->port, "/healthz", body, sizeof body) == 200 &&
		          (shared_redis.pid <= 0 || strcmp(body, "ok\n") == 0))
			return 0;
		int st;
		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			fprintf(stderr, "harness: earshotd exited early; log %s\n", s->logpath);
			servers_track(s->pid, 0);
			s->pid = 0;
			return -1;
		}
		usleep(20000);
	}
	return -1;
}

int h_server_start(struct h_server *s, const char *const *args)
{
	return start(s, args, 0);
}

int h_server_start_tls(struct h_server *s, const char *const *args)
{
	return start(s, args, 1);
}

/* The server read its certificate at start: the files can go. */
static void tls_remove(struct h_server *s)
{
	if (!s->tlsdir[0])
		return;
	char path[128];
	snprintf(path, sizeof path, "%s/cert.pem", s->tlsdir);
	unlink(path);
	snprintf(path, sizeof path, "%s/key.pem", s->tlsdir);
	unlink(path);
	rmdir(s->tlsdir);
	s->tlsdir[0] = '\0';
}

int h_server_stop(struct h_server *s)
{
	tls_remove(s);
	if (s->pid <= 0)
		return -1;
	servers_track(s->pid, 0);
	kill(s->pid, SIGTERM);
	int64_t end = now_ms() + 15000;
	int st;
	while (now_ms() < end) {
		/* Keep our side of the connections serviced while it drains. */
		pump_once(10);
		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = 0;
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		}
	}
	kill(s->pid, SIGKILL);
	waitpid(s->pid, &st, 0);
	s->pid = 0;
	return -1;
}

void h_server_kill(struct h_server *s)
{
	tls_remove(s);
	if (s->pid <= 0)
		return;
	servers_track(s->pid, 0);
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
}

/* ---- redis-server ---- */

static int redis_spawn(struct h_redis *r)
{
	char port[16], log[96];
	snprintf(port, sizeof port, "%d", r->port);
	snprintf(log, sizeof log, "%s/redis.log", r->dir);
	const char *const argv[] = { "redis-server", "--port", port, "--bind", "127.0.0.1",
		                     "--dir", r->dir, "--save", "", "--appendonly", "yes",
		                     "--appendfsync", "always", "--logfile", log, NULL };
	r->pid = fork();
	if (r->pid < 0)
		return -1;
	if (r->pid == 0) {
		execvp("redis-server", (char *const *)argv);
		_exit(127);
	}
	servers_track(r->pid, 1);
	int64_t end = now_ms() + 10000;
	while (now_ms() < end) {
		if (tcp_ready(r->port))
			return 0;
		if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
			fprintf(stderr, "harness: redis-server exited early; log %s\n", log);
			servers_track(r->pid, 0);
			r->pid = 0;
			return -1;
		}
		usleep(20000);
	}
	return -1;
}

int h_redis_start(struct h_redis *r)
{
	memset(r, 0, sizeof *r);
	snprintf(r->dir, sizeof r->dir, "/tmp/earshot-redis-XXXXXX");
	if (!mkdtemp(r->dir))
		return -1;
	r->port = free_port();
	snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d/0", r->port);
	return redis_spawn(r);
}

void h_redis_halt(struct h_redis *r)
{
	if (r->pid <= 0)
		return;
	servers_track(r->pid, 0);
	kill(r->pid, SIGTERM);
	waitpid(r->pid, NULL, 0);
	r->pid = 0;
}

int h_redis_restart(struct h_redis *r)
{
	h_redis_halt(r);
	return redis_spawn(r);
}

void h_redis_stop(struct h_redis *r)
{
	h_redis_halt(r);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
	if (r->dir[0] && system(cmd) != 0)
		fprintf(stderr, "harness: could not remove %s\n", r->dir);
}

/* ---- peers ---- */

static void on_open(struct esc_conn *c, void *ud)
{
	(void)c;
	((struct h_peer *)ud)->open = 1;
}

static void on_message(struct esc_conn *c, const struct proto_msg *m, const char *raw,
                       size_t rawlen, void *ud)
{
	(void)c;
	struct h_peer *p = ud;
	if (getenv("H_TRACE"))
		fprintf(stderr, "  %s <- %.*s\n", p->name, (int)rawlen, raw);
	struct node *n = malloc(sizeof *n);
	if (!n)
		abort();
	n->next = NULL;
	n->m = *m;
	if (m->type == PT_RATINGS) {
		n->m.ratings = malloc(sizeof *n->m.ratings);
		if (!n->m.ratings)
			abort();
		*n->m.ratings = *m->ratings;
	}
	if (p->tail)
		p->tail->next = n;
	else
		p->head = n;
	p->tail = n;
}

static void on_binary(struct esc_conn *c, const uint8_t *buf, size_t len, void *ud)
{
	(void)c;
	struct h_peer *p = ud;
	if (len > H_BIN_MAX)
		return;
	if (!p->bin && !(p->bin = malloc(H_BIN_SLOTS * sizeof *p->bin)))
		abort();
	if (p->bincount == H_BIN_SLOTS) {
		p->binhead = (p->binhead + 1) % H_BIN_SLOTS;
		p->bincount--;
	}
	size_t slot = (p->binhead + p->bincount++) % H_BIN_SLOTS;
	memcpy(p->bin[slot], buf, len);
	p->binlen[slot] = (uint16_t)len;
}

long h_wait_binary(struct h_peer *p, uint8_t *buf, size_t cap, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	while (p->bincount == 0) {
		if (p->closed || now_ms() >= end)
			return -1;
		pump_once(end - now_ms());
	}
	size_t len = p->binlen[p->binhead];
	if (len > cap)
		len = cap;
	memcpy(buf, p->bin[p->binhead], len);
	p->binhead = (p->binhead + 1) % H_BIN_SLOTS;
	p->bincount--;
	return (long)len;
}

int h_binary_pending(struct h_peer *p) { return (int)p->bincount; }

void h_pause(struct h_peer *p, int paused, int rcvbuf) { esc_pause(p->c, paused, rcvbuf); }

static void on_closed(struct esc_conn *c, int code, const char *why, void *ud)
{
	(void)c;
	(void)why;
	struct h_peer *p = ud;
	p->closed = 1;
	p->close_code = code;
}

static const struct esc_handlers handlers = { .open = on_open, .message = on_message,
	                                              .binary = on_binary, .closed = on_closed };

struct h_peer *h_connect(const struct h_server *s, const char *name)
{
	char err[128];
	struct h_peer *p = calloc(1, sizeof *p);
	if (!p)
		abort();
	snprintf(p->name, sizeof p->name, "%s", name);
	p->c = esc_connect(ctx, s->url, &handlers, p, err, sizeof err);
	if (!p->c) {
		fprintf(stderr, "harness: %s: %s\n", name, err);
		free(p);
		return NULL;
	}
	int64_t end = now_ms() + H_TIMEOUT_MS;
	while (!p->open && !p->closed && now_ms() < end)
		pump_once(end - now_ms());
	if (!p->open) {
		fprintf(stderr, "harness: %s: could not connect\n", name);
		h_peer_free(p);
		return NULL;
	}
	return p;
}

struct h_peer *h_join(const struct h_server *s, const char *name,
                      enum proto_role role, const char *token)
{
	return h_resume(s, name, role, token, "");
}

static void drop_inbox(struct h_peer *p)
{
	while (p->head) {
		struct node *n = p->head;
		p->head = n->next;
		node_free(n);
	}
	p->tail = NULL;
	node_free(p->current);
	p->current = NULL;
}

void h_peer_free(struct h_peer *p)
{
	if (!p)
		return;
	esc_conn_free(p->c);
	drop_inbox(p);
	free(p->bin);
	free(p);
}

void h_drop(struct h_peer *p)
{
	esc_drop(p->c);
	h_pump(50);
	h_peer_free(p);
}

struct h_peer *h_resume(const struct h_server *s, const char *name, enum proto_role role,
                        const char *token, const char *resume)
{
	struct h_peer *p = h_connect(s, name);
	if (!p)
		return NULL;
	struct proto_msg m = { .type = PT_HELLO, .role = role };
	if (token)
		snprintf(m.token, sizeof m.token, "%s", token);
	snprintf(m.resume, sizeof m.resume, "%s", resume);
	h_send(p, &m);
	const struct proto_msg *w = h_wait(p, PT_WELCOME, H_TIMEOUT_MS);
	if (!w) {
		fprintf(stderr, "harness: %s: no welcome\n", name);
		h_peer_free(p);
		return NULL;
	}
	p->welcome = *w;
	return p;
}

const struct proto_msg *h_welcome(const struct h_peer *p) { return &p->welcome; }

int h_send(struct h_peer *p, const struct proto_msg *m) { return esc_send(p->c, m); }

int h_send_json(struct h_peer *p, const char *json)
{
	return esc_send_raw(p->c, json, strlen(json), 0);
}

int h_send_raw(struct h_peer *p, const void *buf, size_t len, int binary)
{
	return esc_send_raw(p->c, buf, len, binary);
}

/* Take the first message matching `type` (PT_NONE: any), dropping those
 * before it. */
static const struct proto_msg *take(struct h_peer *p, enum proto_type type)
{
	while (p->head) {
		struct node *n = p->head;
		p->head = n->next;
		if (!p->head)
			p->tail = NULL;
		if (type == PT_NONE || n->m.type == type) {
			node_free(p->current);
			p->current = n;
			return &n->m;
		}
		node_free(n);
	}
	return NULL;
}

const struct proto_msg *h_wait(struct h_peer *p, enum proto_type type, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	for (;;) {
		/* Look without consuming, so a timeout keeps what arrived. */
		for (struct node *n = p->head; n; n = n->next)
			if (type == PT_NONE || n->m.type == type)
				return take(p, type);
		if (p->closed || now_ms() >= end)
			return NULL;
		pump_once(end - now_ms());
	}
}

const struct proto_msg *h_next(struct h_peer *p, int timeout_ms)
{
	return h_wait(p, PT_NONE, timeout_ms);
}

int h_closed(const struct h_peer *p) { return p->closed; }

const char *h_wait_error(struct h_peer *p, int timeout_ms)
{
	const struct proto_msg *m = h_wait(p, PT_ERROR, timeout_ms);
	return m ? m->code : "";
}

int h_wait_closed(struct h_peer *p, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	while (!p->closed && now_ms() < end)
		pump_once(end - now_ms());
	return p->closed ? p->close_code : -1;
}

const char *h_token(enum proto_role role, const char *sub, const char *name,
                    const char *skills_csv, long ttl_s)
{
	static char tok[PROTO_TOKEN_MAX + 1];
	struct config cfg;
	config_defaults(&cfg);
	struct auth_identity id = { .role = role };
	snprintf(id.sub, sizeof id.sub, "%s", sub);
	snprintf(id.name, sizeof id.name, "%s", name ? name : "");
	if (skills_csv) {
		char buf[256];
		snprintf(buf, sizeof buf, "%s", skills_csv);
		for (char *t = strtok(buf, ","); t && id.nskills < AUTH_SKILLS_MAX; t = strtok(NULL, ","))
			snprintf(id.skills[id.nskills++], sizeof id.skills[0], "%s", t);
	}
	if (auth_mint(&id, config_token_secret(&cfg), (int64_t)time(NULL), ttl_s, tok,
	              sizeof tok) != 0)
		return NULL;
	return tok;
}

/* ---- child processes ---- */

int h_proc_spawn(struct h_proc *p, const char *bin, const char *const *args)
{
	int to[2], from[2];
	if (!bin)
		bin = getenv("EARSHOT") ? getenv("EARSHOT") : "build/earshot";
	if (pipe(to) != 0 || pipe(from) != 0)
		return -1;
	memset(p, 0, sizeof *p);
	p->pid = fork();
	if (p->pid < 0)
		return -1;
	if (p->pid == 0) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[1]);
		close(from[0]);
		const char *argv[40];
		int n = 0;
		argv[n++] = bin;
		for (int i = 0; args[i] && n < 39; i++)
			argv[n++] = args[i];
		argv[n] = NULL;
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	p->in = to[1];
	p->out = from[0];
	return 0;
}

int h_proc_say(struct h_proc *p, const char *line)
{
	size_t n = strlen(line);
	if (write(p->in, line, n) != (ssize_t)n || write(p->in, "\n", 1) != 1)
		return -1;
	return 0;
}

const char *h_proc_until(struct h_proc *p, const char *needle, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	for (;;) {
		char *nl;
		while ((nl = memchr(p->buf, '\n', p->len)) != NULL) {
			size_t n = (size_t)(nl - p->buf);
			snprintf(p->line, sizeof p->line, "%.*s", (int)n, p->buf);
			memmove(p->buf, nl + 1, p->len - n - 1);
			p->len -= n + 1;
			if (getenv("H_TRACE"))
				fprintf(stderr, "  proc %d> %s\n", (int)p->pid, p->line);
			if (strstr(p->line, needle))
				return p->line;
		}
		int64_t left = end - now_ms();
		if (left <= 0 || p->len == sizeof p->buf - 1)
			return NULL;
		struct pollfd pfd = { .fd = p->out, .events = POLLIN };
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		ssize_t r = read(p->out, p->buf + p->len, sizeof p->buf - 1 - p->len);
		if (r <= 0)
			return NULL;
		p->len += (size_t)r;
	}
}

int h_proc_reap(struct h_proc *p)
{
	close(p->in);
	int st = 0;
	int64_t end = now_ms() + H_TIMEOUT_MS;
	while (waitpid(p->pid, &st, WNOHANG) == 0) {
		if (now_ms() > end) {
			fprintf(stderr, "h_proc_reap: pid %d did not exit in time: killed\n", (int)p->pid);
			kill(p->pid, SIGKILL);
			waitpid(p->pid, &st, 0);
			close(p->out);
			return -1;
		}
		usleep(10000);
	}
	close(p->out);
	if (WIFSIGNALED(st))
		fprintf(stderr, "h_proc_reap: pid %d died of signal %d\n", (int)p->pid, WTERMSIG(st));
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int h_group_setup(void **state)
{
	(void)state;
	h_init();
	return 0;
}

int h_group_teardown(void **state)
{
	(void)state;
	h_fini();
	return 0;
}
