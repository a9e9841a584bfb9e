/* probe.c - what earshot-loadtest reads from outside itself, never blocking
 * the loop: the server processes' CPU time and memory and every CPU's time
 * (/proc), the server's counters (GET /stats), and Redis' command count
 * (INFO stats through hiredis on the same loop). */
#include "lt.h"

#include <errno.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static redisAsyncContext *redis;
static int redis_pending, redis_noted;
static int redis_mark;          /* the next answer is the window's first */
static int redis_row = -1;      /* the time-series row the next answer completes */

/* ---- /proc ------------------------------------------------------------------- */

static int proc_cpu(pid_t pid, unsigned long long *ticks)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: skip past the last ')'. */
	const char *p = strrchr(buf, ')');
	unsigned long long ut, st;
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	                 &ut, &st) != 2)
		return -1;
	*ticks = ut + st;
	return 0;
}

/* VmHWM and VmRSS in one pass over /proc/PID/status. */
static void proc_mem(pid_t pid, long *hwm_kb, long *rss_kb)
{
	char path[64], line[256];
	*hwm_kb = *rss_kb = -1;
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "VmHWM:", 6) == 0)
			*hwm_kb = strtol(line + 6, NULL, 10);
		else if (strncmp(line, "VmRSS:", 6) == 0)
			*rss_kb = strtol(line + 6, NULL, 10);
	fclose(f);
}

void probe_proc(pid_t pid, struct proc_sample *s)
{
	memset(s, 0, sizeof *s);
	s->ok = proc_cpu(pid, &s->ticks) == 0;
	proc_mem(pid, &s->hwm_kb, &s->rss_kb);
}

void probe_procs(struct proc_sample *s)
{
	for (int i = 0; i < lt.o.npids; i++)
		probe_proc(lt.o.pids[i], &s[i]);
}

void probe_host(struct host_sample *h)
{
	char line[512];
	memset(h, 0, sizeof *h);
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return;
	while (h->ncpu < LT_CPUS_MAX && fgets(line, sizeof line, f)) {
		unsigned long long v[8] = { 0 };
		int cpu;
		if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9')
			continue;
		/* user nice system idle iowait irq softirq steal */
		if (sscanf(line + 3, "%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu,
		           &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 9)
			continue;
		h->busy[h->ncpu] = v[0] + v[1] + v[2] + v[5] + v[6];
		h->steal[h->ncpu] = v[7];
		h->total[h->ncpu] = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
		h->ncpu++;
	}
	fclose(f);
}

int probe_pinned_cpu(pid_t pid)
{
	cpu_set_t set;
	if (sched_getaffinity(pid, sizeof set, &set) != 0 || CPU_COUNT(&set) != 1)
		return -1;
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &set))
			return i;
	return -1;
}

/* ---- GET /stats -------------------------------------------------------------- */

static void fetch_end(struct fetch *f, const char *err)
{
	ev_io_stop(lt.loop, &f->io);
	ev_timer_stop(lt.loop, &f->guard);
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (err) {
		f->state = F_FAILED;
		snprintf(f->err, sizeof f->err, "%s", err);
	} else {
		f->state = F_DONE;
	}
	if (f->done)
		f->done(f);
}

static void fetch_parse(struct fetch *f)
{
	int status = 0;
	f->buf[f->len] = '\0';
	const char *body = strstr(f->buf, "\r\n\r\n");
	if (sscanf(f->buf, "HTTP/1.%*d %d", &status) != 1 || status != 200 || !body) {
		fetch_end(f, "GET /stats: no 200 answer");
		return;
	}
	body += 4;
	struct proto_msg *m = malloc(sizeof *m);
	struct proto_err e;
	if (!m) {
		fetch_end(f, "out of memory");
		return;
	}
	int ok = proto_decode(body, strlen(body), m, &e) == PROTO_OK && m->type == PT_STATS;
	if (ok)
		f->st = m->stats;
	free(m);
	fetch_end(f, ok ? NULL : "GET /stats: not a stats object");
}

static void fetch_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	struct fetch *f = w->data;
	if (f->writing) {
		int soerr = 0;
		socklen_t sl = sizeof soerr;
		if (getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
			fetch_end(f, "GET /stats: cannot connect");
			return;
		}
		size_t reqlen = strlen(lt.http_req);
		ssize_t n = write(f->fd, lt.http_req + f->off, reqlen - f->off);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			fetch_end(f, "GET /stats: write failed");
			return;
		}
		f->off += n > 0 ? (size_t)n : 0;
		if (f->off < reqlen)
			return;
		f->writing = 0;
		ev_io_stop(loop, &f->io);
		ev_io_set(&f->io, f->fd, EV_READ);
		ev_io_start(loop, &f->io);
		return;
	}
	for (;;) {
		ssize_t n = read(f->fd, f->buf + f->len, sizeof f->buf - 1 - f->len);
		if (n > 0) {
			f->len += (size_t)n;
			if (f->len == sizeof f->buf - 1) {
				fetch_end(f, "GET /stats: answer too large");
				return;
			}
		} else if (n == 0) {
			fetch_parse(f);
			return;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			return;
		} else {
			fetch_end(f, "GET /stats: read failed");
			return;
		}
	}
}

static void fetch_guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	fetch_end(w->data, "GET /stats: no answer in time");
}

void probe_fetch(struct fetch *f, void (*done)(struct fetch *f))
{
	memset(f, 0, sizeof *f);
	f->fd = -1;
	f->state = F_BUSY;
	f->done = done;
	if (!lt.http_ok) {
		fetch_end(f, "no server counters");
		return;
	}
	f->fd = socket(lt.http_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (f->fd < 0 ||
	    (connect(f->fd, (struct sockaddr *)&lt.http_addr, lt.http_addrlen) != 0 &&
	     errno != EINPROGRESS)) {
		fetch_end(f, "GET /stats: cannot connect");
		return;
	}
	f->writing = 1;
	ev_io_init(&f->io, fetch_io_cb, f->fd, EV_WRITE);
	f->io.data = f;
	ev_io_start(lt.loop, &f->io);
	ev_timer_init(&f->guard, fetch_guard_cb, 5.0, 0.0);
	f->guard.data = f;
	ev_timer_start(lt.loop, &f->guard);
}

/* The HTTP side of a ws:// URL: same host and port. A wss:// server
 * answers HTTP only over TLS, which this small client does not speak. On a
 * cluster the first node's /stats has the whole service's counters. */
static int http_resolve(const char *url)
{
	char copy[512], portbuf[16];
	const char *scheme, *host, *path;
	int port;
	snprintf(copy, sizeof copy, "%s", url);
	if (lws_parse_uri(copy, &scheme, &host, &port, &path) || strcmp(scheme, "ws") != 0)
		return -1;
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
	snprintf(portbuf, sizeof portbuf, "%d", port);
	if (getaddrinfo(host, portbuf, &hints, &ai) != 0)
		return -1;
	memcpy(&lt.http_addr, ai->ai_addr, ai->ai_addrlen);
	lt.http_addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	snprintf(lt.http_req, sizeof lt.http_req,
	         "GET /stats HTTP/1.0\r\nHost: %s:%d\r\n\r\n", host, port);
	return 0;
}

/* ---- Redis INFO -------------------------------------------------------------- */

static void redis_connected(const redisAsyncContext *ac, int status)
{
	if (status != REDIS_OK) {
		if (!redis_noted++)
			note("redis: cannot connect (%s); no Redis figures", ac->errstr);
		redis = NULL;      /* hiredis frees a context that failed to connect */
		return;
	}
	lt.redis_up = 1;
	probe_redis_poll(-1);
}

static void redis_disconnected(const redisAsyncContext *ac, int status)
{
	if (status != REDIS_OK && !redis_noted++)
		note("redis: connection lost (%s)", ac->errstr);
	redis = NULL;
	lt.redis_up = 0;
	redis_pending = 0;
}

/* total_commands_processed, less the INFO of ours it counts, per second
 * since the answer before: the rate of the second whose tick asked. */
static void redis_info_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	(void)ac;
	(void)priv;
	redisReply *r = reply;
	redis_pending = 0;
	const char *p = r && r->type == REDIS_REPLY_STRING
	                        ? strstr(r->str, "total_commands_processed:") : NULL;
	if (!p)
		return;
	uint64_t v = strtoull(p + strlen("total_commands_processed:"), NULL, 10);
	double t = mono_s();
	lt.redis_infos++;
	if (lt.redis_prev_t > 0 && t > lt.redis_prev_t && v > lt.redis_prev) {
		lt.redis_cps = (double)(v - lt.redis_prev - 1) / (t - lt.redis_prev_t);
		if (redis_row >= 0 && redis_row < lt.nrows)
			lt.rows[redis_row].redis_cps = lt.redis_cps;
	}
	redis_row = -1;
	lt.redis_prev = v;
	lt.redis_prev_t = t;
	if (redis_mark) {
		redis_mark = 0;
		lt.redis_t0 = t;
		lt.redis_cmds0 = v;
		lt.redis_infos0 = lt.redis_infos;
	}
}

void probe_redis_poll(int row)
{
	if (!redis || !lt.redis_up || redis_pending)
		return;
	if (redisAsyncCommand(redis, redis_info_cb, NULL, "INFO stats") == REDIS_OK) {
		redis_pending = 1;
		redis_row = row;
	}
}

void probe_redis_begin(void)
{
	lt.redis_t0 = 0;
	redis_mark = 1;
	probe_redis_poll(-1);
}

static int redis_open(const char *hostport, char *err, size_t errlen)
{
	char host[256];
	int port;
	const char *colon = strrchr(hostport, ':');
	if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof host ||
	    sscanf(colon + 1, "%d", &port) != 1 || port < 1 || port > 65535) {
		snprintf(err, errlen, "--redis wants HOST:PORT, not '%s'", hostport);
		return -1;
	}
	snprintf(host, sizeof host, "%.*s", (int)(colon - hostport), hostport);
	redis = redisAsyncConnect(host, port);
	if (!redis || redis->err) {
		snprintf(err, errlen, "redis %s: %s", hostport, redis ? redis->errstr : "no memory");
		if (redis)
			redisAsyncFree(redis);
		redis = NULL;
		return -1;
	}
	redisLibevAttach(lt.loop, redis);
	redisAsyncSetConnectCallback(redis, redis_connected);
	redisAsyncSetDisconnectCallback(redis, redis_disconnected);
	return 0;
}

/* ---- start and stop ---------------------------------------------------------- */

int probe_init(char *err, size_t errlen)
{
	lt.redis_cps = -1;
	if (http_resolve(lt.o.urls[0]) == 0)
		lt.http_ok = 1;
	else
		note("no server counters: GET /stats is plain HTTP, so it needs a ws:// URL");
	return lt.o.redis ? redis_open(lt.o.redis, err, errlen) : 0;
}

/* After the loop: hiredis may still call back (with no reply) as it frees. */
void probe_fini(void)
{
	if (redis) {
		redisAsyncContext *r = redis;
		redis = NULL;
		redisAsyncFree(r);
	}
}
