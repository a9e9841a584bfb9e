/* lt.h - earshot-loadtest's modules and the one run state they share.
 *
 * The generator is one libev loop, one lws client context, no threads:
 *   main.c     arguments, start-up, the run's phases, shutdown
 *   party.c    connections and the client and counselor state machines
 *   traffic.c  what flows in a session: SRTP Opus every 20 ms, text chat
 *   measure.c  latency histograms, counters, the per-second time series
 *   probe.c    the outside: /proc (server pids, host CPUs), GET /stats,
 *              Redis INFO
 *   report.c   the live status line, the summary, --json, --plot
 *
 * Ownership: everything hangs off `lt` (main.c), allocated once at start-up
 * with bounds fixed by the options, freed at exit. Nothing grows per event:
 * clients come from a fixed pool, the time series has --seconds rows. */
#ifndef EARSHOT_LT_H
#define EARSHOT_LT_H

#include "../proto/proto.h"

#include <ev.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>

struct esc_conn;
struct esc_ctx;
struct media_ctx;

#define LT_FRAME_NS 20000000LL      /* 20 ms of audio per packet */
#define LT_RING 1024                /* send stamps kept per party: 20 s of audio */
#define LT_OPUS_FRAMES 50           /* one second, pre-encoded */
#define LT_OPUS_MAX 256
#define LT_PIDS_MAX 16              /* --server-pid given at most this often */
#define LT_URLS_MAX 16              /* --url likewise: the nodes of a cluster */
#define LT_CPUS_MAX 64
#define LT_ERROR_CODES 32           /* distinct error codes counted; more go to "other" */
#define LT_CLIENTS_MAX 20000        /* the client pool's hard bound */

/* ---- options ---- */

enum lt_load { LOAD_HELD, LOAD_ARRIVALS, LOAD_IDLE };

struct options {
	const char *urls[LT_URLS_MAX];  /* parties go round-robin over them */
	int nurls;
	const char *json, *plot, *secret, *ca, *redis;
	enum lt_load load;
	enum proto_mode mode;       /* voice or text sessions */
	int sessions;               /* held: clients kept in the system */
	int counselors;             /* K; held default: sessions; idle: half of --idle */
	int idle;                   /* idle: parties connected and held */
	double arrivals;            /* per second, Poisson */
	double seconds, warmup;
	double think_ms;            /* mean of an exponential think time; 0 accepts at once */
	double decline;             /* fraction of offers declined */
	double away_every, away_for;/* breaks: exponential mean between, fixed length */
	double session_s;           /* the client ends after this; 0: at the end of the run */
	double text_rate;           /* messages per second per party */
	int text_bytes;
	int ramp;                   /* sessions (or idle pairs) started per 100 ms */
	int tick_ms;                /* the send timer; below 20 the legs are spread */
	int insecure;
	int npids;
	pid_t pids[LT_PIDS_MAX];
};

/* ---- measurement (measure.c) ---- */

/* Log-linear histogram of nanoseconds: exact below 128 ns, then 64 buckets
 * per power of two (+-0.8 %), up to 2^40 ns; the maximum and the mean are
 * exact. 18 KB, no allocation. */
#define HIST_SUB 64
#define HIST_TOP_BIT 40
#define HIST_BUCKETS (2 * HIST_SUB + (HIST_TOP_BIT - 7) * HIST_SUB)

struct hist {
	uint64_t n;
	int64_t max;
	double sum;
	uint64_t b[HIST_BUCKETS];
};

void hist_reset(struct hist *h);
void hist_add(struct hist *h, int64_t ns);
/* Nearest-rank quantile `q` (0-1) in ms, or -1 without samples. */
double hist_ms(const struct hist *h, double q);
double hist_mean_ms(const struct hist *h);

/* Everything counted; summaries take differences of two snapshots. Audio
 * `sent` counts packets handed to esclient, `queue_dropped` those it then
 * dropped unsent because a connection already held a second of audio. */
struct counters {
	uint64_t sent, received, lost, out_of_order, bad, skipped, unmatched, queue_dropped;
	uint64_t text_sent, text_received, text_bad, text_lost;
	uint64_t arrivals, refused, talk_now, offers, first_offers, accepted, declined,
	         offers_gone, offers_unknown, started, pairs, ended, ended_early,
	         unexpected_closes, errors;
};

/* One second of the measured window. Rates are per second; latencies in
 * ms, -1 without samples; server and Redis figures -1 when not measured. */
struct row {
	double t;                   /* seconds since the window began */
	int sessions, waiting, available, away, connected;
	double offers, started, audio, text;
	double audio_p50, audio_p99, text_p50, text_p99;
	uint64_t audio_lost, text_lost, errors, closes;
	double server_cpu_pct, redis_cps, gen_cpu_pct;
	long server_rss_kb;
};

struct error_count {
	char code[PROTO_CODE_MAX + 1];
	uint64_t n;
};

void measure_error(const char *code);
/* Called each second: a status line, and a row while measuring. */
void measure_tick(void);
void measure_begin(void);
void measure_end(void);
/* lt.c.queue_dropped from every connection's esclient count. */
void measure_queue_drops(void);

/* ---- the outside (probe.c) ---- */

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

enum fetch_state { F_IDLE, F_BUSY, F_DONE, F_FAILED };

/* GET /stats without blocking the loop; `done` runs when it is over. */
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
	void (*done)(struct fetch *f);
};

int probe_init(char *err, size_t errlen);
void probe_fini(void);
void probe_proc(pid_t pid, struct proc_sample *s);
/* Every --server-pid. */
void probe_procs(struct proc_sample *s);
void probe_host(struct host_sample *h);
void probe_fetch(struct fetch *f, void (*done)(struct fetch *f));
/* Ask Redis for INFO stats now; the answer lands in lt.redis_* and, when
 * `row` >= 0, gives that time-series row its commands per second. */
void probe_redis_poll(int row);
/* The same, its answer taken as the window's first. */
void probe_redis_begin(void);
/* The one CPU `pid` (0: us) may run on, or -1. */
int probe_pinned_cpu(pid_t pid);

/* ---- parties (party.c) ---- */

enum pstate {
	P_FREE,         /* a client slot not in use */
	P_CONNECTING,   /* no welcome yet */
	P_READY,        /* welcomed: a counselor not in a session, a client not queued */
	P_WAITING,      /* client: talk_now sent */
	P_RINGING,      /* counselor: an offer in hand, thinking */
	P_IN_SESSION,
	P_QUIET,        /* session: stopped sending until what is in flight lands */
	P_ENDING,       /* client: `end` sent */
	P_CLOSING,
	P_CLOSED,       /* a client slot freed at the next reap */
};

/* Send stamp of one sequence number; `seq` tells a stale slot from ours. */
struct stamp {
	int64_t ns;
	uint16_t seq;
	uint16_t valid;
};

struct party {
	struct esc_conn *c;
	int counselor, index;       /* counselors: lt-k-<index>; clients: pool slot */
	uint32_t serial;            /* client: unique in the run, named in its topic */
	enum pstate st;
	enum proto_state kstate;    /* counselor: its state as the server last said */
	struct party *peer;         /* the other side of the session, once both started */
	struct party *cand;         /* set on accept: the client / the counselor */
	char session_id[PROTO_ID_MAX + 1];
	ev_timer timer;             /* think, session length, quiet */
	ev_timer brk;               /* counselor: the next break, or its end */
	int ready;                  /* counted in lt.ready (welcomed; counselors available) */
	int live;                   /* counted in lt.live_clients */
	int on_break, break_due;
	int64_t offer_id;
	int offer_slot;             /* counselor: the client the offer names, or -1 */
	uint32_t offer_serial;
	int64_t t_talk;             /* client: talk_now sent (ns) */
	int offered;                /* client: its first offer was timed */
	/* voice */
	struct media_ctx *tx, *rx;
	struct stamp *ring;         /* from the pool while in a voice session */
	int sending, marker;
	int64_t next_ns, phase_ns;
	uint32_t ssrc, ts;
	uint16_t seq, last_seq;
	int sent_any;
	unsigned frame;
	int have_rx;
	uint32_t rx_ssrc;
	uint16_t rx_seq;
	/* text, this session: what we sent and the last of it the peer
	 * acknowledged (`delivered`); what the peer sent us and what arrived */
	int texting;
	int64_t text_next_ns, text_id, text_delivered;
	uint64_t text_sent, text_expected, text_received;
};

struct party *party_client_new(void);
int party_connect(struct party *p);
void party_close(struct party *p);
/* The client begins to end its session: quiet, then `end`. */
void party_finish(struct party *p);
/* Counselor breaks begin (window start) or stop (the end). */
void party_breaks(int on);
/* Free the slots of clients whose connection is over. */
void party_reap(void);
/* A quiet client sends `end` once both sides have what the other sent
 * (traffic calls it as packets and messages land). */
void party_quiet_check(struct party *client);

/* ---- traffic (traffic.c) ---- */

/* Voice: the Opus second, SRTP, the pool of send-stamp rings. */
int traffic_init(char *err, size_t errlen);
void traffic_fini(void);
/* At session_start: keys, SSRC, a stamp ring, the text schedule; -1 when
 * a voice session brought no usable keys. traffic_stop undoes it. */
int traffic_start(struct party *p, const struct proto_msg *m);
void traffic_stop(struct party *p);
/* The send timer: every party's due audio frames and chat messages. */
void traffic_tick(void);
void traffic_binary(struct party *p, const uint8_t *buf, size_t len);
void traffic_text(struct party *p, const struct proto_msg *m);
void traffic_delivered(struct party *p, const struct proto_msg *m);
/* Whether both sides of client `c`'s session have received all the other
 * sent (audio: the last sequence number; text: every message, and its
 * acknowledgement reached the server: an `ack` behind the client's `end`
 * would be refused). */
int traffic_settled(const struct party *c);

/* ---- reporting (report.c) ---- */

void report_status(const struct row *r, int recorded);
void report_summary(void);
int report_json(const char *path);
int report_plot(const char *path);

/* ---- the run (main.c) ---- */

enum phase { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_AFTER, PH_ENDING, PH_CLOSING };

struct lt {
	struct options o;
	struct ev_loop *loop;
	struct esc_ctx *x;
	enum phase phase;
	int rc;
	char fail[256];
	/* parties: counselors first, then the client pool */
	struct party *counselors, *clients;
	int ncounselors, nclients;
	int *free_slots, nfree;
	uint32_t next_serial;
	int live_clients;           /* clients connecting, queued or in session */
	int ready;                  /* counselors available once, idle parties welcomed */
	struct stamp *rings;        /* voice: 2K + 64 rings of LT_RING stamps */
	struct stamp **free_rings;
	int nfree_rings;
	/* time */
	int64_t t0_ns;              /* the send grid's origin */
	double t_start, setup_s, w0, w1, drain_t, drain_s;
	int left_waiting, left_in_session;  /* clients when the measured phase ended */
	int measuring;
	/* counts: now, at the window's begin and end */
	struct counters c, c0, c1;
	uint64_t late_refusals, going_away, audio_stopped;
	uint64_t late_audio;        /* audio that came after its session_end */
	uint64_t dropped_freed;     /* queue_dropped of client connections since freed */
	struct error_count errs[LT_ERROR_CODES];
	int nerrs;
	uint64_t errs_other;
	/* latency: the measured phase, and the current second */
	struct hist h_audio, h_text, h_offer, h_start, s_audio, s_text;
	/* time series */
	struct row *rows;
	int nrows, caprows;
	struct counters csec;
	double sec_t;
	long long sec_ticks[LT_PIDS_MAX];   /* each pid's CPU ticks a second ago; -1 unknown */
	struct rusage sec_ru;
	/* the outside at the window's begin and end */
	struct proc_sample p0[LT_PIDS_MAX], p1[LT_PIDS_MAX], p_before[LT_PIDS_MAX],
	                   p_connected[LT_PIDS_MAX];
	struct host_sample h0, h1;
	struct rusage r0, r1;
	struct fetch f0, f1;
	int http_ok;
	struct sockaddr_storage http_addr;
	socklen_t http_addrlen;
	char http_req[256];
	/* Redis INFO: commands per second between the last two answers (-1
	 * before two); the last answer; the window's first and last answers;
	 * how many INFOs of ours were answered (Redis counts them too) */
	int redis_up;
	double redis_cps;
	uint64_t redis_prev, redis_cmds0, redis_cmds1, redis_infos, redis_infos0, redis_infos1;
	double redis_prev_t, redis_t0, redis_t1;
	/* the Opus source */
	uint8_t opus[LT_OPUS_FRAMES][LT_OPUS_MAX];
	size_t opus_len[LT_OPUS_FRAMES];
	double opus_mean;
	ev_timer control, media, tick, phase_t, arrival;
	ev_signal sigint, sigterm;
};

extern struct lt lt;

int64_t now_ns(void);
double mono_s(void);
/* A uniform random number in [0, 1), and an exponential one of mean `m`. */
double lt_uniform(void);
double lt_exp(double m);
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void abort_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The run reacts to parties: setup progress, sessions ending, closes. */
void run_check(void);
void run_closed(void);

#endif
