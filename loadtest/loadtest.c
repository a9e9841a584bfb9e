/* loadtest.c - earshot-loadtest, the media benchmark: N voice sessions
 * through a real earshotd, every party sending pre-encoded Opus over SRTP
 * every 20 ms; measures, in steady state only, one-way latency, loss, and
 * what the server spends per relayed packet (CPU from /proc, counters from
 * GET /stats). One libev loop, one lws client context, no threads.
 *
 * The latency is generator to generator: a packet is stamped when it is
 * handed to the connection's send queue and timed when its callback runs
 * on the other side, so it includes the generator's own queueing on both
 * ends as well as the server's. The relay keeps sequence numbers, so the
 * receiver finds the send time in the *peer's* ring of stamps. */
#include "../client-demo/esclient.h"
#include "../proto/media.h"
#include "../proto/proto.h"
#include "../proto/rtp.h"
#include "../server/auth.h"
#include "../server/config.h"

#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <libwebsockets.h>
#include <math.h>
#include <netdb.h>
#include <sched.h>
#include <opus/opus.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define LT_FRAME_NS 20000000LL      /* 20 ms of audio per packet */
#define LT_RING 1024                /* send stamps kept per party: 20 s of audio */
#define LT_CATCH_UP_MAX 5           /* frames sent at once after a late tick */
#define LT_SLACK_NS 2000000LL       /* libev's cached time runs a little behind */
#define LT_OPUS_FRAMES 50           /* one second, pre-encoded */
#define LT_OPUS_MAX 256
#define LT_OPUS_BITRATE 24000
#define LT_SETUP_TIMEOUT_S 30.0
#define LT_RAMP_S 0.1
/* In-flight packets arrive before `end`: more than the second of audio
 * esclient may hold in a connection's send queue. */
#define LT_DRAIN_S 1.5
#define LT_END_TIMEOUT_S 5.0
#define LT_FETCH_TIMEOUT_S 5.0
#define LT_TOKEN_TTL_S 3600
#define LT_TOPIC "loadtest"
#define LT_ERRORS_SHOWN 5
#define LT_CPUS_MAX 64

struct options {
	const char *url, *json, *secret;
	int sessions;
	double seconds, warmup;
	int ramp;                   /* sessions started per 100 ms */
	int tick_ms;                /* the send timer; below 20 the legs are spread */
	pid_t server_pid;           /* 0: no server CPU or memory figures */
};

/* Send stamp of one sequence number; `seq` tells a stale slot from ours. */
struct stamp {
	int64_t ns;
	uint16_t seq;
	uint16_t valid;
};

enum party_state { PS_IDLE, PS_CONNECTING, PS_JOINED, PS_IN_SESSION, PS_ENDED, PS_CLOSED };

struct party {
	struct esc_conn *c;
	int index, counselor;
	enum party_state st;
	struct party *peer;
	char session_id[PROTO_ID_MAX + 1];
	struct media_ctx *tx, *rx;
	/* sending */
	int sending, marker;
	int64_t next_ns, phase_ns;
	uint32_t ssrc, ts;
	uint16_t seq;
	unsigned frame;
	struct stamp *ring;
	/* receiving */
	int have_rx;
	uint32_t rx_ssrc;
	uint16_t rx_seq;
};

/* `sent` counts packets handed to esclient; `queue_dropped` those it then
 * dropped, oldest first, because a connection already held a second of
 * audio (the generator could not write as fast as it produced). */
struct counters {
	uint64_t sent, received, lost, out_of_order, bad, skipped, unmatched, queue_dropped;
};

struct proc_sample {
	int ok;
	unsigned long long ticks;   /* utime + stime */
	long hwm_kb, rss_kb;
};

/* Every CPU's time from /proc/stat, in clock ticks: on a shared VM the
 * steal time says how far the numbers can be trusted. */
struct host_sample {
	int ncpu;
	unsigned long long busy[LT_CPUS_MAX], steal[LT_CPUS_MAX], total[LT_CPUS_MAX];
};

/* GET /stats without blocking the loop. */
enum fetch_state { F_IDLE, F_BUSY, F_DONE, F_FAILED };

struct fetch {
	ev_io io;
	ev_timer guard;
	int fd, writing;
	enum fetch_state state;
	size_t off;
	char buf[16384];
	size_t len;
	struct proto_stats st;
	char err[128];
};

enum phase { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_AFTER, PH_DRAIN, PH_ENDING, PH_CLOSING };

static struct {
	struct options o;
	struct ev_loop *loop;
	struct esc_ctx *x;
	struct party *parties;      /* counselors [0, n), clients [n, 2n) */
	struct stamp *stamps;
	struct party **unpaired;
	int n, nunpaired, started, pairs, in_session;
	enum phase phase;
	int rc;
	char fail[256];
	int measuring;
	int64_t t0_ns;
	double t_start, setup_s;
	struct counters c, c0, c1, csec;
	/* latency samples of the window, ns (clamped at 4.29 s; max is exact) */
	uint32_t *lat;
	size_t nlat, caplat;
	uint64_t lat_overflow;
	int64_t lat_max, sec_max, sec_sum;
	uint64_t sec_n;
	double w0, w1, sec_t;
	struct proc_sample p0, p1;
	struct host_sample h0, h1;
	unsigned long long sec_ticks;
	struct rusage r0, r1;
	struct fetch f0, f1;
	int http_ok;
	struct sockaddr_storage http_addr;
	socklen_t http_addrlen;
	char http_req[256];
	uint64_t errors, late_refusals, unexpected_closes, unexpected_ends, audio_stopped,
	         going_away;
	uint8_t opus[LT_OPUS_FRAMES][LT_OPUS_MAX];
	size_t opus_len[LT_OPUS_FRAMES];
	double opus_mean;
	ev_timer ramp, media, status, phase_t;
	ev_signal sigint, sigterm;
	int status_shown;
} lt;

static struct proto_msg omsg;   /* scratch for outgoing messages */

static int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static double mono_s(void) { return (double)now_ns() / 1e9; }

static void status_clear(void)
{
	if (lt.status_shown) {
		fputc('\n', stderr);
		lt.status_shown = 0;
	}
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;
	status_clear();
	fputs("earshot-loadtest: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static const char *party_name(const struct party *p, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s%d", p->counselor ? "counselor lt-k-" : "client ", p->index);
	return buf;
}

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

static long proc_status_kb(pid_t pid, const char *key)
{
	char path[64], line[256];
	long kb = -1;
	size_t klen = strlen(key);
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			kb = strtol(line + klen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}

static void proc_read(struct proc_sample *s)
{
	memset(s, 0, sizeof *s);
	if (!lt.o.server_pid)
		return;
	s->ok = proc_cpu(lt.o.server_pid, &s->ticks) == 0;
	s->hwm_kb = proc_status_kb(lt.o.server_pid, "VmHWM");
	s->rss_kb = proc_status_kb(lt.o.server_pid, "VmRSS");
}

static void host_read(struct host_sample *h)
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

/* ---- GET /stats -------------------------------------------------------------- */

static void fetch_finished(struct fetch *f);

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
	fetch_finished(f);
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

static void fetch_start(struct fetch *f)
{
	memset(f, 0, sizeof *f);
	f->fd = -1;
	f->state = F_BUSY;
	if (!lt.http_ok) {
		fetch_end(f, "no HTTP address for the server");
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
	ev_timer_init(&f->guard, fetch_guard_cb, LT_FETCH_TIMEOUT_S, 0.0);
	f->guard.data = f;
	ev_timer_start(lt.loop, &f->guard);
}

/* The HTTP side of a ws:// URL: same host and port. */
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

/* ---- the Opus source --------------------------------------------------------- */

/* One second of a voice-like signal (a 180 Hz voice with two harmonics,
 * syllables at 3 Hz, a little noise), encoded once: 20 ms frames, 48 kHz
 * mono, VOIP, 24 kbps, no DTX, as the clients send it. */
static int opus_prepare(char *err, size_t errlen)
{
	int e;
	OpusEncoder *enc = opus_encoder_create(RTP_OPUS_CLOCK, 1, OPUS_APPLICATION_VOIP, &e);
	if (!enc) {
		snprintf(err, errlen, "opus encoder: %s", opus_strerror(e));
		return -1;
	}
	if (opus_encoder_ctl(enc, OPUS_SET_BITRATE(LT_OPUS_BITRATE)) != OPUS_OK ||
	    opus_encoder_ctl(enc, OPUS_SET_DTX(0)) != OPUS_OK) {
		opus_encoder_destroy(enc);
		snprintf(err, errlen, "opus encoder: cannot set 24 kbps without DTX");
		return -1;
	}
	opus_int16 pcm[RTP_FRAME_TICKS];
	uint32_t noise = 2463534242u;
	size_t total = 0;
	for (int f = 0; f < LT_OPUS_FRAMES; f++) {
		for (int i = 0; i < RTP_FRAME_TICKS; i++) {
			double t = (double)(f * RTP_FRAME_TICKS + i) / RTP_OPUS_CLOCK;
			double env = 0.55 + 0.45 * sin(2 * M_PI * 3 * t);
			double s = env * (6000 * sin(2 * M_PI * 180 * t) +
			                  2500 * sin(2 * M_PI * 360 * t) +
			                  1200 * sin(2 * M_PI * 720 * t));
			noise ^= noise << 13;
			noise ^= noise >> 17;
			noise ^= noise << 5;
			pcm[i] = (opus_int16)lrint(s + (double)(noise % 601) - 300.0);
		}
		opus_int32 n = opus_encode(enc, pcm, RTP_FRAME_TICKS, lt.opus[f], LT_OPUS_MAX);
		if (n <= 0) {
			opus_encoder_destroy(enc);
			snprintf(err, errlen, "opus encode: %s", opus_strerror(n));
			return -1;
		}
		lt.opus_len[f] = (size_t)n;
		total += (size_t)n;
	}
	opus_encoder_destroy(enc);
	lt.opus_mean = (double)total / LT_OPUS_FRAMES;
	return 0;
}

/* ---- media: the hot path ----------------------------------------------------- */

static void send_frame(struct party *p)
{
	uint8_t buf[MEDIA_PACKET_MAX];
	unsigned f = p->frame % LT_OPUS_FRAMES;
	size_t len = rtp_write(buf, sizeof buf, RTP_PT_OPUS, p->marker, p->seq, p->ts, p->ssrc);
	memcpy(buf + len, lt.opus[f], lt.opus_len[f]);
	len += lt.opus_len[f];
	/* A sequence number is spent whether or not the packet goes out: a
	 * (key, SSRC, index) is never protected twice. */
	uint16_t seq = p->seq++;
	p->ts += RTP_FRAME_TICKS;
	p->frame++;
	p->marker = 0;
	if (media_protect(p->tx, buf, &len) != MEDIA_OK) {
		lt.c.bad++;
		return;
	}
	struct stamp *s = &p->ring[seq & (LT_RING - 1)];
	s->ns = now_ns();
	s->seq = seq;
	s->valid = 1;
	if (esc_send_raw(p->c, buf, len, 1) == 0)
		lt.c.sent++;
}

/* Every frame due for `p` by `now`: at most LT_CATCH_UP_MAX after a late
 * tick, older ones skipped (their timestamps pass, as a real sender's would). */
static void party_pump(struct party *p, int64_t now)
{
	if (now + LT_SLACK_NS < p->next_ns)
		return;
	int64_t due = (now + LT_SLACK_NS - p->next_ns) / LT_FRAME_NS + 1;
	p->next_ns += due * LT_FRAME_NS;
	if (due > LT_CATCH_UP_MAX) {
		int64_t skip = due - LT_CATCH_UP_MAX;
		p->ts += (uint32_t)(skip * RTP_FRAME_TICKS);
		p->frame += (unsigned)skip;
		lt.c.skipped += (uint64_t)skip;
		due = LT_CATCH_UP_MAX;
	}
	for (int64_t i = 0; i < due; i++)
		send_frame(p);
}

static void media_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	int64_t now = now_ns();
	for (int i = 0; i < 2 * lt.n; i++)
		if (lt.parties[i].sending)
			party_pump(&lt.parties[i], now);
}

static void latency_sample(int64_t d)
{
	if (d < 0)
		d = 0;
	if (d > lt.sec_max)
		lt.sec_max = d;
	lt.sec_sum += d;
	lt.sec_n++;
	if (!lt.measuring)
		return;
	if (d > lt.lat_max)
		lt.lat_max = d;
	if (lt.nlat == lt.caplat) {
		lt.lat_overflow++;
		return;
	}
	lt.lat[lt.nlat++] = d > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

/* Order and loss from the sequence number, as voice.c counts them. */
static void track_seq(struct party *p, uint32_t ssrc, uint16_t seq)
{
	if (!p->have_rx || ssrc != p->rx_ssrc) {
		p->have_rx = 1;
		p->rx_ssrc = ssrc;
		p->rx_seq = seq;
		return;
	}
	int16_t d = (int16_t)(uint16_t)(seq - p->rx_seq);
	if (d <= 0) {
		lt.c.out_of_order++;
		if (lt.c.lost > 0)
			lt.c.lost--;    /* it was counted lost when its gap was seen */
		return;
	}
	lt.c.lost += (uint64_t)(d - 1);
	p->rx_seq = seq;
}

static void on_binary(struct esc_conn *c, const uint8_t *buf, size_t len, void *ud)
{
	(void)c;
	int64_t now = now_ns();
	struct party *p = ud;
	uint8_t pkt[MEDIA_PACKET_MAX];
	struct rtp_header h;
	if (!p->rx || !buf || len > sizeof pkt) {
		lt.c.bad++;
		return;
	}
	memcpy(pkt, buf, len);
	if (media_unprotect(p->rx, pkt, &len) != MEDIA_OK ||
	    rtp_parse(pkt, len, &h) != RTP_OK || h.payload_type != RTP_PT_OPUS) {
		lt.c.bad++;
		return;
	}
	lt.c.received++;
	track_seq(p, h.ssrc, h.seq);
	const struct stamp *s = p->peer ? &p->peer->ring[h.seq & (LT_RING - 1)] : NULL;
	if (s && s->valid && s->seq == h.seq)
		latency_sample(now - s->ns);
	else
		lt.c.unmatched++;
}

/* ---- control messages -------------------------------------------------------- */

static void send_simple(struct party *p, enum proto_type t)
{
	memset(&omsg, 0, sizeof omsg);
	omsg.type = t;
	esc_send(p->c, &omsg);
}

static void send_hello(struct party *p)
{
	memset(&omsg, 0, sizeof omsg);
	omsg.type = PT_HELLO;
	omsg.role = p->counselor ? ROLE_COUNSELOR : ROLE_CLIENT;
	if (p->counselor) {
		struct auth_identity id;
		memset(&id, 0, sizeof id);
		id.role = ROLE_COUNSELOR;
		snprintf(id.sub, sizeof id.sub, "lt-k-%d", p->index);
		if (auth_mint(&id, lt.o.secret, (int64_t)time(NULL), LT_TOKEN_TTL_S, omsg.token,
		              sizeof omsg.token) != 0) {
			note("cannot mint a counselor token");
			return;
		}
	}
	esc_send(p->c, &omsg);
}

static void close_all(void);
static void window_begin(void);

static void abort_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void abort_run(const char *fmt, ...)
{
	va_list ap;
	if (lt.rc)
		return;
	va_start(ap, fmt);
	vsnprintf(lt.fail, sizeof lt.fail, fmt, ap);
	va_end(ap);
	lt.rc = 1;
	close_all();
}

static void phase_after(double s, void (*cb)(struct ev_loop *, ev_timer *, int))
{
	ev_timer_stop(lt.loop, &lt.phase_t);
	ev_timer_init(&lt.phase_t, cb, s, 0.0);
	ev_timer_start(lt.loop, &lt.phase_t);
}

static void warmup_done_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	window_begin();
}

static void all_up(void)
{
	lt.setup_s = mono_s() - lt.t_start;
	lt.phase = PH_WARMUP;
	phase_after(lt.o.warmup, warmup_done_cb);
}

/* The first party of a session waits for the second; then each finds the
 * other's send stamps. Only a few sessions are half-known at any time. */
static void pair(struct party *p)
{
	for (int i = 0; i < lt.nunpaired; i++) {
		struct party *q = lt.unpaired[i];
		if (strcmp(q->session_id, p->session_id) != 0)
			continue;
		p->peer = q;
		q->peer = p;
		lt.unpaired[i] = lt.unpaired[--lt.nunpaired];
		if (++lt.pairs == lt.n && lt.phase == PH_SETUP)
			all_up();
		return;
	}
	lt.unpaired[lt.nunpaired++] = p;
}

static int keys_from(struct party *p, const struct proto_msg *m)
{
	enum media_profile prof;
	uint8_t tx[MEDIA_KEY_MAX], rx[MEDIA_KEY_MAX];
	int rc = -1;
	if (media_profile_parse(m->srtp_profile, &prof) == 0 &&
	    media_key_decode(prof, m->tx_key, tx) == 0 &&
	    media_key_decode(prof, m->rx_key, rx) == 0) {
		p->tx = media_ctx_new(prof, tx, 1);
		p->rx = media_ctx_new(prof, rx, 0);
		rc = p->tx && p->rx ? 0 : -1;
	}
	OPENSSL_cleanse(tx, sizeof tx);
	OPENSSL_cleanse(rx, sizeof rx);
	return rc;
}

static void session_start(struct party *p, const struct proto_msg *m)
{
	char name[48];
	if (m->mode != MODE_VOICE || keys_from(p, m) != 0) {
		abort_run("setup failed: %s: session_start without usable voice keys "
		          "(mode %s, profile '%s')", party_name(p, name, sizeof name),
		          proto_mode_name(m->mode), m->srtp_profile);
		return;
	}
	uint8_t r[10];
	if (RAND_bytes(r, sizeof r) != 1) {
		abort_run("setup failed: no random numbers for SSRC and sequence");
		return;
	}
	p->ssrc = (uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 | r[3];
	p->seq = (uint16_t)(r[4] << 8 | r[5]);
	p->ts = (uint32_t)r[6] << 24 | (uint32_t)r[7] << 16 | (uint32_t)r[8] << 8 | r[9];
	p->frame = (unsigned)p->index;
	p->marker = 1;
	/* The first frame on the next point of this party's grid: all parties
	 * tick together, or spread over the 20 ms with --tick-ms. */
	int64_t since = now_ns() - lt.t0_ns - p->phase_ns;
	int64_t k = since <= 0 ? 0 : (since + LT_FRAME_NS - 1) / LT_FRAME_NS;
	p->next_ns = lt.t0_ns + p->phase_ns + k * LT_FRAME_NS;
	snprintf(p->session_id, sizeof p->session_id, "%s", m->session_id);
	p->st = PS_IN_SESSION;
	p->sending = 1;
	lt.in_session++;
	pair(p);
}

static void leave_session(struct party *p, enum party_state st)
{
	if (p->st == PS_IN_SESSION)
		lt.in_session--;
	p->st = st;
	p->sending = 0;
	if (lt.phase == PH_ENDING && lt.in_session == 0)
		close_all();
}

static void on_error_msg(struct party *p, const struct proto_msg *m)
{
	char name[48];
	/* Audio still queued when the session ended reaches a server that
	 * no longer takes it: expected, counted apart. */
	if (lt.phase >= PH_DRAIN && strcmp(m->code, "wrong_state") == 0) {
		lt.late_refusals++;
		return;
	}
	/* Shown, not fatal: a setup that goes wrong shows in the timeout. */
	if (lt.errors++ < LT_ERRORS_SHOWN)
		note("%s: error %s (%s)%s%s", party_name(p, name, sizeof name), m->code, m->reason,
		     m->ref[0] ? " answering " : "", m->ref);
}

static void on_state(struct party *p, const struct proto_msg *m)
{
	char name[48];
	if (m->state != ST_AWAY || lt.phase >= PH_DRAIN)
		return;
	/* Missed offers mean we answered too slowly: say so, and come back. */
	note("%s: set away (%s); going available again", party_name(p, name, sizeof name),
	     m->reason);
	memset(&omsg, 0, sizeof omsg);
	omsg.type = PT_SET_STATE;
	omsg.state = ST_AVAILABLE;
	esc_send(p->c, &omsg);
}

static void on_message(struct esc_conn *c, const struct proto_msg *m, const char *raw,
                       size_t rawlen, void *ud)
{
	(void)c;
	(void)raw;
	(void)rawlen;
	struct party *p = ud;
	switch (m->type) {
	case PT_WELCOME:
		p->st = PS_JOINED;
		memset(&omsg, 0, sizeof omsg);
		if (p->counselor) {
			omsg.type = PT_SET_STATE;
			omsg.state = ST_AVAILABLE;
		} else {
			omsg.type = PT_TALK_NOW;
			omsg.mode = MODE_VOICE;
			snprintf(omsg.topic, sizeof omsg.topic, "%s", LT_TOPIC);
		}
		esc_send(p->c, &omsg);
		break;
	case PT_OFFER:
		memset(&omsg, 0, sizeof omsg);
		omsg.type = PT_ACCEPT;
		omsg.offer_id = m->offer_id;
		esc_send(p->c, &omsg);
		break;
	case PT_SESSION_START:
		session_start(p, m);
		break;
	case PT_SESSION_END:
		if (lt.phase < PH_ENDING && p->st == PS_IN_SESSION)
			lt.unexpected_ends++;
		leave_session(p, PS_ENDED);
		break;
	case PT_ERROR:
		on_error_msg(p, m);
		break;
	case PT_STATE:
		on_state(p, m);
		break;
	case PT_AUDIO:
		if (strcmp(m->audio, "stopped") == 0)
			lt.audio_stopped++;
		break;
	case PT_GOING_AWAY:
		lt.going_away++;
		break;
	default:
		break;
	}
}

static void on_open(struct esc_conn *c, void *ud)
{
	(void)c;
	send_hello(ud);
}

static int all_closed(void)
{
	for (int i = 0; i < 2 * lt.n; i++)
		if (lt.parties[i].c && !esc_is_closed(lt.parties[i].c))
			return 0;
	return 1;
}

static void stop_loop(void)
{
	ev_timer_stop(lt.loop, &lt.ramp);
	ev_timer_stop(lt.loop, &lt.media);
	ev_timer_stop(lt.loop, &lt.status);
	ev_timer_stop(lt.loop, &lt.phase_t);
	ev_signal_stop(lt.loop, &lt.sigint);
	ev_signal_stop(lt.loop, &lt.sigterm);
	ev_break(lt.loop, EVBREAK_ALL);
}

static void on_closed(struct esc_conn *c, int code, const char *why, void *ud)
{
	(void)c;
	struct party *p = ud;
	char name[48];
	leave_session(p, PS_CLOSED);
	if (lt.phase == PH_CLOSING) {
		if (all_closed())
			stop_loop();
		return;
	}
	party_name(p, name, sizeof name);
	if (lt.phase == PH_SETUP) {
		abort_run("setup failed: %s: connection closed (code %d: %s)", name, code, why);
		return;
	}
	if (lt.unexpected_closes++ < LT_ERRORS_SHOWN)
		note("%s: connection closed (code %d: %s)", name, code, why);
}

static const struct esc_handlers handlers = {
	.open = on_open, .message = on_message, .binary = on_binary, .closed = on_closed,
};

static int party_connect(struct party *p)
{
	char err[256], name[48];
	p->st = PS_CONNECTING;
	p->c = esc_connect(lt.x, lt.o.url, &handlers, p, err, sizeof err);
	if (!p->c) {
		abort_run("setup failed: %s: %s", party_name(p, name, sizeof name), err);
		return -1;
	}
	return 0;
}

/* ---- phases ------------------------------------------------------------------ */

/* A gentle ramp: `ramp` new sessions (a counselor and a client each) per
 * 100 ms, counselors first so that most clients find one free. */
static void ramp_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	int stop = lt.started + lt.o.ramp;
	if (stop > lt.n)
		stop = lt.n;
	for (; lt.started < stop && lt.phase == PH_SETUP; lt.started++)
		if (party_connect(&lt.parties[lt.started]) != 0 ||
		    party_connect(&lt.parties[lt.n + lt.started]) != 0)
			return;
	if (lt.started == lt.n)
		ev_timer_stop(loop, w);
}

static void close_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	note("not every connection closed within %.0f s; leaving anyway", LT_END_TIMEOUT_S);
	stop_loop();
}

static void close_all(void)
{
	if (lt.phase == PH_CLOSING)
		return;
	lt.phase = PH_CLOSING;
	ev_timer_stop(lt.loop, &lt.ramp);
	ev_timer_stop(lt.loop, &lt.media);
	for (int i = 0; i < 2 * lt.n; i++) {
		struct party *p = &lt.parties[i];
		p->sending = 0;
		if (p->c && !esc_is_closed(p->c))
			esc_close(p->c);
	}
	if (all_closed()) {
		stop_loop();
		return;
	}
	phase_after(LT_END_TIMEOUT_S, close_timeout_cb);
}

static void end_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	note("%d parties still in session %.0f s after `end`; closing anyway", lt.in_session,
	     LT_END_TIMEOUT_S);
	close_all();
}

/* The client ends each session; both sides then get session_end. */
static void end_sessions_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	lt.phase = PH_ENDING;
	for (int i = lt.n; i < 2 * lt.n; i++)
		if (lt.parties[i].st == PS_IN_SESSION)
			send_simple(&lt.parties[i], PT_END);
	if (lt.in_session == 0) {
		close_all();
		return;
	}
	phase_after(LT_END_TIMEOUT_S, end_timeout_cb);
}

/* Stop sending; what is in flight arrives before the sessions end. */
static void drain(void)
{
	lt.phase = PH_DRAIN;
	ev_timer_stop(lt.loop, &lt.media);
	for (int i = 0; i < 2 * lt.n; i++)
		lt.parties[i].sending = 0;
	phase_after(LT_DRAIN_S, end_sessions_cb);
}

static void fetch_finished(struct fetch *f)
{
	if (f->state == F_FAILED)
		note("%s", f->err);
	if (f == &lt.f1 && lt.phase == PH_AFTER)
		drain();
}

static void queue_drops_update(void)
{
	uint64_t d = 0;
	for (int i = 0; i < 2 * lt.n; i++)
		if (lt.parties[i].c)
			d += esc_binary_dropped(lt.parties[i].c);
	lt.c.queue_dropped = d;
}

static void window_end_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	lt.measuring = 0;
	lt.w1 = mono_s();
	queue_drops_update();
	lt.c1 = lt.c;
	proc_read(&lt.p1);
	host_read(&lt.h1);
	getrusage(RUSAGE_SELF, &lt.r1);
	lt.phase = PH_AFTER;
	fetch_start(&lt.f1);     /* drain() follows its answer */
}

static void window_begin(void)
{
	lt.phase = PH_MEASURE;
	fetch_start(&lt.f0);
	proc_read(&lt.p0);
	host_read(&lt.h0);
	getrusage(RUSAGE_SELF, &lt.r0);
	queue_drops_update();
	lt.c0 = lt.c;
	lt.w0 = mono_s();
	lt.measuring = 1;
	phase_after(lt.o.seconds, window_end_cb);
}

/* ---- the live status line ---------------------------------------------------- */

static void status_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	double now = mono_s();
	double dt = now - lt.sec_t;
	if (lt.phase == PH_SETUP && now - lt.t_start > LT_SETUP_TIMEOUT_S) {
		abort_run("setup failed: not every voice session started within %.0f s",
		          LT_SETUP_TIMEOUT_S);
		return;
	}
	if (lt.phase >= PH_CLOSING || dt <= 0)
		return;
	char cpu[32] = "";
	unsigned long long ticks;
	if (lt.o.server_pid && proc_cpu(lt.o.server_pid, &ticks) == 0) {
		double used = (double)(ticks - lt.sec_ticks) / (double)sysconf(_SC_CLK_TCK);
		if (lt.sec_ticks)
			snprintf(cpu, sizeof cpu, "  server %3.0f%%", used / dt * 100);
		lt.sec_ticks = ticks;
	}
	static const char *const names[] = { "setup", "warm-up", "measure", "stats", "drain",
		                             "ending", "closing" };
	char when[32];
	if (lt.phase == PH_MEASURE)
		snprintf(when, sizeof when, "measure %.0f/%.0fs", now - lt.w0, lt.o.seconds);
	else
		snprintf(when, sizeof when, "%s %.0fs", names[lt.phase], now - lt.t_start);
	queue_drops_update();
	fprintf(stderr,
	        "\r%-16s sessions %d/%d  sent %6.0f/s  recv %6.0f/s  lost %llu  unsent %llu  "
	        "lat avg %.2f max %.1f ms%s   ",
	        when, lt.pairs, lt.n, (double)(lt.c.sent - lt.csec.sent) / dt,
	        (double)(lt.c.received - lt.csec.received) / dt,
	        (unsigned long long)(lt.c.lost - lt.csec.lost),
	        (unsigned long long)(lt.c.queue_dropped - lt.csec.queue_dropped),
	        lt.sec_n ? (double)lt.sec_sum / (double)lt.sec_n / 1e6 : 0.0,
	        (double)lt.sec_max / 1e6, cpu);
	fflush(stderr);
	lt.status_shown = 1;
	lt.csec = lt.c;
	lt.sec_t = now;
	lt.sec_max = lt.sec_sum = 0;
	lt.sec_n = 0;
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	if (lt.phase == PH_CLOSING) {
		stop_loop();
		return;
	}
	abort_run("interrupted; no results");
}

/* ---- results ----------------------------------------------------------------- */

struct results {
	double secs;
	struct counters d;
	double loss_pct;
	double p50, p99, p999, max, mean;   /* ms; -1 without samples */
	int have_stats;
	struct proto_stats s;                /* after - before */
	int have_cpu;
	/* per relayed packet; and per packet delivered, when the server dropped
	 * queued audio for a slow reader (relayed counts those too) */
	double cpu_s, us_per_pkt, us_per_delivered, core_pct;
	long hwm_kb, rss_kb;
	double gen_cpu_s, gen_core_pct;
	int ncpu;
	/* % of each CPU: busy, stolen by the hypervisor, and busy with anything
	 * but the server and the generator when they are pinned to it (an
	 * estimate: loopback TCP's softirq time counts as other). */
	double cpu_busy[LT_CPUS_MAX], cpu_steal[LT_CPUS_MAX], cpu_other[LT_CPUS_MAX];
};

/* The one CPU `pid` (0: us) may run on, or -1. */
static int pinned_cpu(pid_t pid)
{
	cpu_set_t set;
	if (sched_getaffinity(pid, sizeof set, &set) != 0 || CPU_COUNT(&set) != 1)
		return -1;
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &set))
			return i;
	return -1;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest rank. */
static double pct_ms(double q)
{
	size_t k = (size_t)ceil(q * (double)lt.nlat);
	if (k < 1)
		k = 1;
	return (double)lt.lat[k - 1] / 1e6;
}

static double tv_s(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

#define DELTA(f) r->s.f = lt.f1.st.f - lt.f0.st.f

static void results_compute(struct results *r)
{
	memset(r, 0, sizeof *r);
	r->secs = lt.w1 - lt.w0;
	r->d.sent = lt.c1.sent - lt.c0.sent;
	r->d.received = lt.c1.received - lt.c0.received;
	r->d.lost = lt.c1.lost - lt.c0.lost;
	r->d.out_of_order = lt.c1.out_of_order - lt.c0.out_of_order;
	r->d.bad = lt.c1.bad - lt.c0.bad;
	r->d.skipped = lt.c1.skipped - lt.c0.skipped;
	r->d.unmatched = lt.c1.unmatched - lt.c0.unmatched;
	r->d.queue_dropped = lt.c1.queue_dropped - lt.c0.queue_dropped;
	uint64_t expected = r->d.received + r->d.lost;
	r->loss_pct = expected ? 100.0 * (double)r->d.lost / (double)expected : 0;
	r->p50 = r->p99 = r->p999 = r->max = r->mean = -1;
	if (lt.nlat) {
		double sum = 0;
		qsort(lt.lat, lt.nlat, sizeof *lt.lat, cmp_u32);
		for (size_t i = 0; i < lt.nlat; i++)
			sum += lt.lat[i];
		r->mean = sum / (double)lt.nlat / 1e6;
		r->p50 = pct_ms(0.50);
		r->p99 = pct_ms(0.99);
		r->p999 = pct_ms(0.999);
		r->max = (double)lt.lat_max / 1e6;
	}
	r->have_stats = lt.f0.state == F_DONE && lt.f1.state == F_DONE;
	if (r->have_stats) {
		DELTA(media_relayed);
		DELTA(media_auth);
		DELTA(media_replay);
		DELTA(media_not_opus);
		DELTA(media_too_large);
		DELTA(media_rate);
		DELTA(media_bad_rtp);
		DELTA(media_no_session);
		DELTA(media_slow_reader);
	}
	r->have_cpu = lt.p0.ok && lt.p1.ok;
	if (r->have_cpu) {
		r->cpu_s = (double)(lt.p1.ticks - lt.p0.ticks) / (double)sysconf(_SC_CLK_TCK);
		r->core_pct = 100.0 * r->cpu_s / r->secs;
		r->us_per_pkt = r->have_stats && r->s.media_relayed
		                        ? r->cpu_s * 1e6 / (double)r->s.media_relayed : -1;
		uint64_t delivered = r->s.media_relayed > r->s.media_slow_reader
		                             ? r->s.media_relayed - r->s.media_slow_reader : 0;
		r->us_per_delivered = r->have_stats && delivered
		                              ? r->cpu_s * 1e6 / (double)delivered : -1;
	}
	r->hwm_kb = lt.p1.hwm_kb;
	r->rss_kb = lt.p1.rss_kb;
	r->gen_cpu_s = tv_s(lt.r1.ru_utime) + tv_s(lt.r1.ru_stime) - tv_s(lt.r0.ru_utime) -
	               tv_s(lt.r0.ru_stime);
	r->gen_core_pct = 100.0 * r->gen_cpu_s / r->secs;
	r->ncpu = lt.h0.ncpu == lt.h1.ncpu ? lt.h1.ncpu : 0;
	int server_cpu = r->have_cpu ? pinned_cpu(lt.o.server_pid) : -1, gen_cpu = pinned_cpu(0);
	for (int i = 0; i < r->ncpu; i++) {
		double t = (double)(lt.h1.total[i] - lt.h0.total[i]);
		r->cpu_busy[i] = t > 0 ? 100.0 * (double)(lt.h1.busy[i] - lt.h0.busy[i]) / t : 0;
		r->cpu_steal[i] = t > 0 ? 100.0 * (double)(lt.h1.steal[i] - lt.h0.steal[i]) / t : 0;
		double own = (i == server_cpu ? r->core_pct : 0) +
		             (i == gen_cpu ? r->gen_core_pct : 0);
		r->cpu_other[i] = r->cpu_busy[i] > own ? r->cpu_busy[i] - own : 0;
	}
}

static uint64_t dropped_total(const struct proto_stats *s)
{
	return s->media_auth + s->media_replay + s->media_not_opus + s->media_too_large +
	       s->media_rate + s->media_bad_rtp + s->media_no_session + s->media_slow_reader;
}

static const struct {
	const char *name;
	size_t off;
} drop_fields[] = {
	{ "auth", offsetof(struct proto_stats, media_auth) },
	{ "replay", offsetof(struct proto_stats, media_replay) },
	{ "not_opus", offsetof(struct proto_stats, media_not_opus) },
	{ "too_large", offsetof(struct proto_stats, media_too_large) },
	{ "rate", offsetof(struct proto_stats, media_rate) },
	{ "bad_rtp", offsetof(struct proto_stats, media_bad_rtp) },
	{ "no_session", offsetof(struct proto_stats, media_no_session) },
	{ "slow_reader", offsetof(struct proto_stats, media_slow_reader) },
};

static uint64_t drop_get(const struct proto_stats *s, size_t i)
{
	return *(const uint64_t *)((const char *)s + drop_fields[i].off);
}

static void print_summary(const struct results *r)
{
	printf("\nearshot-loadtest voice: %d sessions (%d legs), %.1f s steady state after %.0f s "
	       "warm-up; setup took %.1f s\n", lt.n, 2 * lt.n, r->secs, lt.o.warmup, lt.setup_s);
	printf("  %-18s %llu (%.0f/s), Opus frames %.0f B on average\n", "packets sent",
	       (unsigned long long)r->d.sent, (double)r->d.sent / r->secs, lt.opus_mean);
	if (r->d.queue_dropped)
		printf("  %-18s %llu of them dropped unsent: the generator fell a second behind\n",
		       "", (unsigned long long)r->d.queue_dropped);
	printf("  %-18s %llu (%.0f/s)\n", "packets received", (unsigned long long)r->d.received,
	       (double)r->d.received / r->secs);
	printf("  %-18s %.3f %% (%llu lost, %llu out of order, %llu bad, %llu frames skipped "
	       "by a late generator)\n", "loss (seq gaps)", r->loss_pct,
	       (unsigned long long)r->d.lost, (unsigned long long)r->d.out_of_order,
	       (unsigned long long)r->d.bad, (unsigned long long)r->d.skipped);
	if (lt.nlat)
		printf("  %-18s p50 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  mean %.2f ms "
		       "(%zu samples)\n", "latency one-way", r->p50, r->p99, r->p999, r->max,
		       r->mean, lt.nlat);
	else
		printf("  %-18s no samples\n", "latency one-way");
	if (r->have_stats) {
		printf("  %-18s %llu (%.0f/s)\n", "server relayed",
		       (unsigned long long)r->s.media_relayed,
		       (double)r->s.media_relayed / r->secs);
		printf("  %-18s %llu", "server dropped", (unsigned long long)dropped_total(&r->s));
		for (size_t i = 0; i < sizeof drop_fields / sizeof drop_fields[0]; i++)
			if (drop_get(&r->s, i))
				printf("  %s %llu", drop_fields[i].name,
				       (unsigned long long)drop_get(&r->s, i));
		printf("\n");
	} else {
		printf("  %-18s unavailable (GET /stats failed)\n", "server counters");
	}
	if (r->have_cpu) {
		printf("  %-18s %.2f s = %.1f %% of a core", "server CPU", r->cpu_s, r->core_pct);
		if (r->us_per_pkt >= 0)
			printf(", %.2f us per relayed packet", r->us_per_pkt);
		if (r->us_per_delivered >= 0 && r->s.media_slow_reader)
			printf(" (%.2f per packet delivered, less slow_reader drops)",
			       r->us_per_delivered);
		printf("\n  %-18s peak %.1f MB (VmHWM), now %.1f MB\n", "server memory",
		       (double)r->hwm_kb / 1024, (double)r->rss_kb / 1024);
	} else {
		printf("  %-18s not measured (no --server-pid)\n", "server CPU");
	}
	printf("  %-18s %.2f s = %.1f %% of a core\n", "generator CPU", r->gen_cpu_s,
	       r->gen_core_pct);
	if (r->ncpu) {
		printf("  %-18s", "host CPUs");
		for (int i = 0; i < r->ncpu; i++)
			printf("  cpu%d busy %.0f %% (other %.0f %%) steal %.0f %%", i,
			       r->cpu_busy[i], r->cpu_other[i], r->cpu_steal[i]);
		printf("\n");
	}
	printf("  %-18s sent %llu (%llu of them dropped unsent), received %llu; errors %llu "
	       "(and %llu for audio that arrived after `end`), unexpected closes %llu, "
	       "sessions ended early %llu, \"audio stopped\" notices %llu, unmatched %llu\n",
	       "whole run", (unsigned long long)lt.c.sent,
	       (unsigned long long)lt.c.queue_dropped, (unsigned long long)lt.c.received,
	       (unsigned long long)lt.errors, (unsigned long long)lt.late_refusals,
	       (unsigned long long)lt.unexpected_closes, (unsigned long long)lt.unexpected_ends,
	       (unsigned long long)lt.audio_stopped, (unsigned long long)lt.c.unmatched);
	if (lt.lat_overflow)
		printf("  (%llu latency samples did not fit and were not kept)\n",
		       (unsigned long long)lt.lat_overflow);
}

static void json_num(FILE *f, const char *key, double v, int ok, const char *sep)
{
	if (ok)
		fprintf(f, "\"%s\":%.3f%s", key, v, sep);
	else
		fprintf(f, "\"%s\":null%s", key, sep);
}

static int write_json(const struct results *r, const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f, "{\"sessions\":%d,\"legs\":%d,\"seconds\":%.3f,\"warmup_s\":%.1f,", lt.n,
	        2 * lt.n, r->secs, lt.o.warmup);
	fprintf(f, "\"setup_s\":%.3f,\"tick_ms\":%d,\"opus_mean_bytes\":%.1f,", lt.setup_s,
	        lt.o.tick_ms, lt.opus_mean);
	fprintf(f, "\"sent\":%llu,\"received\":%llu,\"sent_pps\":%.1f,\"received_pps\":%.1f,",
	        (unsigned long long)r->d.sent, (unsigned long long)r->d.received,
	        (double)r->d.sent / r->secs, (double)r->d.received / r->secs);
	fprintf(f, "\"lost\":%llu,\"loss_pct\":%.4f,\"out_of_order\":%llu,\"bad\":%llu,"
	        "\"skipped\":%llu,\"unmatched\":%llu,\"generator_queue_dropped\":%llu,",
	        (unsigned long long)r->d.lost, r->loss_pct, (unsigned long long)r->d.out_of_order,
	        (unsigned long long)r->d.bad, (unsigned long long)r->d.skipped,
	        (unsigned long long)r->d.unmatched, (unsigned long long)r->d.queue_dropped);
	fprintf(f, "\"latency_ms\":{\"samples\":%zu,", lt.nlat);
	json_num(f, "p50", r->p50, lt.nlat > 0, ",");
	json_num(f, "p99", r->p99, lt.nlat > 0, ",");
	json_num(f, "p999", r->p999, lt.nlat > 0, ",");
	json_num(f, "max", r->max, lt.nlat > 0, ",");
	json_num(f, "mean", r->mean, lt.nlat > 0, "},");
	fprintf(f, "\"server\":{");
	if (r->have_stats) {
		fprintf(f, "\"relayed\":%llu,\"relayed_pps\":%.1f,\"dropped\":{",
		        (unsigned long long)r->s.media_relayed,
		        (double)r->s.media_relayed / r->secs);
		for (size_t i = 0; i < sizeof drop_fields / sizeof drop_fields[0]; i++)
			fprintf(f, "%s\"%s\":%llu", i ? "," : "", drop_fields[i].name,
			        (unsigned long long)drop_get(&r->s, i));
		fprintf(f, "},");
	} else {
		fprintf(f, "\"relayed\":null,\"relayed_pps\":null,\"dropped\":null,");
	}
	json_num(f, "cpu_s", r->cpu_s, r->have_cpu, ",");
	json_num(f, "cpu_us_per_packet", r->us_per_pkt, r->have_cpu && r->us_per_pkt >= 0, ",");
	json_num(f, "cpu_us_per_delivered", r->us_per_delivered,
	         r->have_cpu && r->us_per_delivered >= 0, ",");
	json_num(f, "core_share_pct", r->core_pct, r->have_cpu, ",");
	json_num(f, "peak_rss_kb", (double)r->hwm_kb, r->have_cpu && r->hwm_kb >= 0, ",");
	json_num(f, "rss_kb", (double)r->rss_kb, r->have_cpu && r->rss_kb >= 0, "},");
	fprintf(f, "\"generator\":{\"cpu_s\":%.3f,\"core_share_pct\":%.1f},", r->gen_cpu_s,
	        r->gen_core_pct);
	fprintf(f, "\"host_cpus\":[");
	for (int i = 0; i < r->ncpu; i++)
		fprintf(f, "%s{\"cpu\":%d,\"busy_pct\":%.1f,\"other_pct\":%.1f,\"steal_pct\":%.1f}",
		        i ? "," : "", i, r->cpu_busy[i], r->cpu_other[i], r->cpu_steal[i]);
	fprintf(f, "],");
	fprintf(f, "\"errors\":%llu,\"late_audio_refused\":%llu,\"unexpected_closes\":%llu,"
	        "\"sessions_ended_early\":%llu,\"audio_stopped\":%llu}\n",
	        (unsigned long long)lt.errors, (unsigned long long)lt.late_refusals,
	        (unsigned long long)lt.unexpected_closes, (unsigned long long)lt.unexpected_ends,
	        (unsigned long long)lt.audio_stopped);
	return fclose(f) == 0 ? 0 : -1;
}

/* ---- start-up ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: earshot-loadtest --url ws://HOST:PORT/ws --voice-sessions N --seconds S\n"
	        "                        [--server-pid PID] [--json FILE] [--warmup S]\n"
	        "                        [--ramp N] [--tick-ms MS] [--token-secret SECRET]\n"
	        "\n"
	        "Voice benchmark: N counselors (tokens lt-k-0..) go available and accept\n"
	        "every offer; N anonymous clients ask to talk by voice. Every party sends\n"
	        "pre-encoded Opus every 20 ms over SRTP. When all sessions are up it waits\n"
	        "--warmup seconds (2), then measures S seconds: packets, loss, one-way\n"
	        "latency, and with --server-pid the server's CPU and peak memory.\n"
	        "  --ramp N       sessions started per 100 ms (50)\n"
	        "  --tick-ms MS   send timer period (20: all legs send together; less\n"
	        "                 spreads the legs evenly over each 20 ms)\n"
	        "  --token-secret the server's token secret (default: the dev secret)\n");
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "voice-sessions", required_argument, NULL, 'n' },
		{ "seconds", required_argument, NULL, 's' },
		{ "server-pid", required_argument, NULL, 'p' },
		{ "json", required_argument, NULL, 'j' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "ramp", required_argument, NULL, 'r' },
		{ "tick-ms", required_argument, NULL, 't' },
		{ "token-secret", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct options *o = &lt.o;
	long v;
	int ch, li = 0;
	o->seconds = 10;
	o->warmup = 2;
	o->ramp = 50;
	o->tick_ms = 20;
	while ((ch = getopt_long(argc, argv, "h", longopts, &li)) != -1) {
		int bad = 0;
		switch (ch) {
		case 'u': o->url = optarg; break;
		case 'j': o->json = optarg; break;
		case 'k': o->secret = optarg; break;
		case 'n': bad = parse_int(optarg, 1, 100000, &v); o->sessions = (int)v; break;
		case 's': bad = parse_int(optarg, 1, 3600, &v); o->seconds = (double)v; break;
		case 'w': bad = parse_int(optarg, 0, 600, &v); o->warmup = (double)v; break;
		case 'r': bad = parse_int(optarg, 1, 10000, &v); o->ramp = (int)v; break;
		case 't': bad = parse_int(optarg, 1, 20, &v); o->tick_ms = (int)v; break;
		case 'p':
			bad = parse_int(optarg, 1, 0x7fffffff, &v);
			o->server_pid = (pid_t)v;
			break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
		if (bad) {
			fprintf(stderr, "earshot-loadtest: bad value '%s' for --%s\n", optarg,
			        longopts[li].name);
			return -1;
		}
	}
	if (optind < argc || !o->url || !o->sessions) {
		fprintf(stderr, "earshot-loadtest: --url and --voice-sessions are required\n");
		usage(stderr);
		return -1;
	}
	return 0;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int setup(char *err, size_t errlen)
{
	static struct config cfg;
	lt.n = lt.o.sessions;
	if (!lt.o.secret) {
		config_defaults(&cfg);
		lt.o.secret = config_token_secret(&cfg);
	}
	if (opus_prepare(err, errlen) != 0)
		return -1;
	if (media_global_init() != 0) {
		snprintf(err, errlen, "cannot initialise SRTP");
		return -1;
	}
	size_t legs = 2 * (size_t)lt.n;
	lt.parties = calloc(legs, sizeof *lt.parties);
	lt.stamps = calloc(legs * LT_RING, sizeof *lt.stamps);
	lt.unpaired = calloc(legs, sizeof *lt.unpaired);
	/* Every leg's packets of the window, and a tenth more for catch-up. */
	lt.caplat = (size_t)((double)legs * 50.0 * lt.o.seconds * 1.1) + 1024;
	lt.lat = malloc(lt.caplat * sizeof *lt.lat);
	if (!lt.parties || !lt.stamps || !lt.unpaired || !lt.lat) {
		snprintf(err, errlen, "out of memory for %d sessions", lt.n);
		return -1;
	}
	for (size_t i = 0; i < legs; i++) {
		struct party *p = &lt.parties[i];
		p->counselor = i < (size_t)lt.n;
		p->index = (int)(p->counselor ? i : i - (size_t)lt.n);
		p->ring = lt.stamps + i * LT_RING;
		/* With a faster tick each leg gets its own slot in the 20 ms. */
		if (lt.o.tick_ms < 20)
			p->phase_ns = (int64_t)i * LT_FRAME_NS / (int64_t)legs;
	}
	if (http_resolve(lt.o.url) == 0)
		lt.http_ok = 1;
	else
		note("no server counters: GET /stats needs a ws:// URL whose host resolves");
	lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
	lt.loop = ev_default_loop(0);
	struct esc_options opt = { .insecure = 1 };
	lt.x = esc_ctx_new(lt.loop, &opt, err, errlen);
	return lt.x ? 0 : -1;
}

static void start_watchers(void)
{
	double now = mono_s();
	lt.t_start = lt.sec_t = now;
	lt.t0_ns = now_ns();
	ev_timer_init(&lt.ramp, ramp_cb, 0.0, LT_RAMP_S);
	ev_timer_start(lt.loop, &lt.ramp);
	double tick = lt.o.tick_ms / 1000.0;
	ev_timer_init(&lt.media, media_cb, tick, tick);
	ev_timer_start(lt.loop, &lt.media);
	ev_timer_init(&lt.status, status_cb, 1.0, 1.0);
	ev_timer_start(lt.loop, &lt.status);
	ev_init(&lt.phase_t, warmup_done_cb);
	ev_signal_init(&lt.sigint, signal_cb, SIGINT);
	ev_signal_start(lt.loop, &lt.sigint);
	ev_signal_init(&lt.sigterm, signal_cb, SIGTERM);
	ev_signal_start(lt.loop, &lt.sigterm);
}

static void cleanup(void)
{
	esc_ctx_free(lt.x);
	for (int i = 0; i < 2 * lt.n; i++) {
		media_ctx_free(lt.parties[i].tx);
		media_ctx_free(lt.parties[i].rx);
	}
	free(lt.parties);
	free(lt.stamps);
	free(lt.unpaired);
	free(lt.lat);
}

int main(int argc, char **argv)
{
	char err[256];
	if (parse_args(argc, argv) != 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	if (setup(err, sizeof err) != 0) {
		fprintf(stderr, "earshot-loadtest: %s\n", err);
		return 1;
	}
	start_watchers();
	ev_run(lt.loop, 0);
	status_clear();
	queue_drops_update();
	if (lt.rc) {
		fprintf(stderr, "earshot-loadtest: %s (%d of %d sessions were up)\n", lt.fail,
		        lt.pairs, lt.n);
		cleanup();
		return lt.rc;
	}
	struct results r;
	results_compute(&r);
	print_summary(&r);
	int rc = 0;
	if (lt.o.json && write_json(&r, lt.o.json) != 0) {
		fprintf(stderr, "earshot-loadtest: cannot write %s\n", lt.o.json);
		rc = 1;
	}
	cleanup();
	return rc;
}
