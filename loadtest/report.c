/* report.c - what earshot-loadtest shows: the live status line (stderr),
 * the summary (stdout), --json with every number and the time series, and
 * --plot, a chart of the time series drawn by gnuplot. */
#include "lt.h"

#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the numbers ------------------------------------------------------------- */

struct server_pid {
	int have_cpu;
	double cpu_s, core_pct;
	long hwm_kb, rss_kb;
};

struct results {
	double secs;                /* the measured phase */
	struct counters d;          /* its counts */
	double loss_pct;
	int have_stats;
	struct proto_stats s;       /* the server's counters over it */
	int have_cpu;               /* every --server-pid measured */
	/* per relayed packet; and per packet delivered, when the server dropped
	 * queued audio for a slow reader (relayed counts those too) */
	double cpu_s, us_per_pkt, us_per_delivered, core_pct;
	long hwm_kb, rss_kb;
	struct server_pid pid[LT_PIDS_MAX];
	double gen_cpu_s, gen_core_pct;
	int ncpu;
	/* % of each CPU: busy, stolen by the hypervisor, and busy with anything
	 * but the server and the generator when they are pinned to it (an
	 * estimate: loopback TCP's softirq time counts as other). */
	double cpu_busy[LT_CPUS_MAX], cpu_steal[LT_CPUS_MAX], cpu_other[LT_CPUS_MAX];
	int have_redis;
	uint64_t redis_cmds;
	double redis_cps;
	/* idle: the servers' resident memory before, connected, at the end */
	long rss_before_kb, rss_connected_kb;
};

static struct results R;
static int status_shown;

static double tv_s(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

#define DELTA(f) R.s.f = lt.f1.st.f - lt.f0.st.f
#define CDELTA(f) R.d.f = lt.c1.f - lt.c0.f

static void counters_delta(void)
{
	CDELTA(sent); CDELTA(received); CDELTA(lost); CDELTA(out_of_order); CDELTA(bad);
	CDELTA(skipped); CDELTA(unmatched); CDELTA(queue_dropped);
	CDELTA(text_sent); CDELTA(text_received); CDELTA(text_bad); CDELTA(text_lost);
	CDELTA(arrivals); CDELTA(refused); CDELTA(talk_now); CDELTA(offers);
	CDELTA(first_offers); CDELTA(accepted); CDELTA(declined); CDELTA(offers_gone);
	CDELTA(offers_unknown); CDELTA(started); CDELTA(pairs); CDELTA(ended);
	CDELTA(ended_early); CDELTA(unexpected_closes); CDELTA(errors);
}

static void server_compute(void)
{
	double tck = (double)sysconf(_SC_CLK_TCK);
	R.have_cpu = lt.o.npids > 0;
	R.hwm_kb = R.rss_kb = 0;
	for (int i = 0; i < lt.o.npids; i++) {
		struct server_pid *s = &R.pid[i];
		s->have_cpu = lt.p0[i].ok && lt.p1[i].ok;
		s->cpu_s = s->have_cpu ? (double)(lt.p1[i].ticks - lt.p0[i].ticks) / tck : 0;
		s->core_pct = 100.0 * s->cpu_s / R.secs;
		s->hwm_kb = lt.p1[i].hwm_kb;
		s->rss_kb = lt.p1[i].rss_kb;
		R.have_cpu = R.have_cpu && s->have_cpu;
		R.cpu_s += s->cpu_s;
		R.hwm_kb += s->hwm_kb > 0 ? s->hwm_kb : 0;
		R.rss_kb += s->rss_kb > 0 ? s->rss_kb : 0;
		R.rss_before_kb += lt.p_before[i].rss_kb > 0 ? lt.p_before[i].rss_kb : 0;
		R.rss_connected_kb += lt.p_connected[i].rss_kb > 0 ? lt.p_connected[i].rss_kb : 0;
	}
	R.core_pct = 100.0 * R.cpu_s / R.secs;
	R.us_per_pkt = R.have_stats && R.s.media_relayed
	                       ? R.cpu_s * 1e6 / (double)R.s.media_relayed : -1;
	uint64_t delivered = R.s.media_relayed > R.s.media_slow_reader
	                             ? R.s.media_relayed - R.s.media_slow_reader : 0;
	R.us_per_delivered = R.have_stats && delivered ? R.cpu_s * 1e6 / (double)delivered : -1;
}

static void host_compute(void)
{
	R.ncpu = lt.h0.ncpu == lt.h1.ncpu ? lt.h1.ncpu : 0;
	int gen_cpu = probe_pinned_cpu(0);
	for (int i = 0; i < R.ncpu; i++) {
		double t = (double)(lt.h1.total[i] - lt.h0.total[i]);
		R.cpu_busy[i] = t > 0 ? 100.0 * (double)(lt.h1.busy[i] - lt.h0.busy[i]) / t : 0;
		R.cpu_steal[i] = t > 0 ? 100.0 * (double)(lt.h1.steal[i] - lt.h0.steal[i]) / t : 0;
		double own = i == gen_cpu ? R.gen_core_pct : 0;
		for (int k = 0; k < lt.o.npids; k++)
			if (R.pid[k].have_cpu && probe_pinned_cpu(lt.o.pids[k]) == i)
				own += R.pid[k].core_pct;
		R.cpu_other[i] = R.cpu_busy[i] > own ? R.cpu_busy[i] - own : 0;
	}
}

static void results_compute(void)
{
	static int done;
	if (done++)
		return;
	R.secs = lt.w1 - lt.w0;
	counters_delta();
	uint64_t expected = R.d.received + R.d.lost;
	R.loss_pct = expected ? 100.0 * (double)R.d.lost / (double)expected : 0;
	R.have_stats = lt.f0.state == F_DONE && lt.f1.state == F_DONE;
	if (R.have_stats) {
		DELTA(media_relayed);
		DELTA(media_auth);
		DELTA(media_replay);
		DELTA(media_not_opus);
		DELTA(media_too_large);
		DELTA(media_rate);
		DELTA(media_stale);
		DELTA(media_bad_rtp);
		DELTA(media_no_session);
		DELTA(media_slow_reader);
	}
	R.gen_cpu_s = tv_s(lt.r1.ru_utime) + tv_s(lt.r1.ru_stime) - tv_s(lt.r0.ru_utime) -
	              tv_s(lt.r0.ru_stime);
	R.gen_core_pct = 100.0 * R.gen_cpu_s / R.secs;
	server_compute();
	host_compute();
	/* Between the first and the last INFO answered while measuring, less
	 * the INFOs themselves. */
	R.have_redis = lt.redis_t0 > 0 && lt.redis_t1 > lt.redis_t0;
	if (R.have_redis) {
		R.redis_cmds = lt.redis_cmds1 - lt.redis_cmds0 - (lt.redis_infos1 - lt.redis_infos0);
		R.redis_cps = (double)R.redis_cmds / (lt.redis_t1 - lt.redis_t0);
	}
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
	{ "stale", offsetof(struct proto_stats, media_stale) },
	{ "bad_rtp", offsetof(struct proto_stats, media_bad_rtp) },
	{ "no_session", offsetof(struct proto_stats, media_no_session) },
	{ "slow_reader", offsetof(struct proto_stats, media_slow_reader) },
};
#define NDROPS (sizeof drop_fields / sizeof drop_fields[0])

static uint64_t drop_get(const struct proto_stats *s, size_t i)
{
	return *(const uint64_t *)((const char *)s + drop_fields[i].off);
}

static uint64_t dropped_total(const struct proto_stats *s)
{
	uint64_t t = 0;
	for (size_t i = 0; i < NDROPS; i++)
		t += drop_get(s, i);
	return t;
}

static int tls_used(void)
{
	for (int i = 0; i < lt.o.nurls; i++)
		if (strncmp(lt.o.urls[i], "wss:", 4) == 0)
			return 1;
	return 0;
}

static const char *load_name(void)
{
	static const char *const names[] = { "held", "arrivals", "idle" };
	return names[lt.o.load];
}

/* What "sessions" means in the JSON and the title: the held target, or
 * the sessions that started while measuring. */
static long sessions_figure(void)
{
	if (lt.o.load == LOAD_HELD)
		return lt.o.sessions;
	return lt.o.load == LOAD_IDLE ? 0 : (long)R.d.started;
}

/* ---- the live status line ---------------------------------------------------- */

void report_status(const struct row *r, int recorded)
{
	if (!r) {
		if (status_shown)
			fputc('\n', stderr);
		status_shown = 0;
		return;
	}
	static const char *const names[] = { "setup", "warm-up", "measure", "drain", "stats",
		                             "ending", "closing" };
	char when[32], lat[48] = "", server[48] = "", redis[32] = "";
	if (recorded)
		snprintf(when, sizeof when, "measure %d/%d", lt.nrows, lt.caprows);
	else
		snprintf(when, sizeof when, "%s %.0fs", names[lt.phase], mono_s() - lt.t_start);
	double p50 = lt.o.mode == MODE_VOICE ? r->audio_p50 : r->text_p50;
	double p99 = lt.o.mode == MODE_VOICE ? r->audio_p99 : r->text_p99;
	if (p50 >= 0)
		snprintf(lat, sizeof lat, "  %s p50 %.2f p99 %.2f ms",
		         lt.o.mode == MODE_VOICE ? "audio" : "text", p50, p99);
	if (r->server_cpu_pct >= 0)
		snprintf(server, sizeof server, "  server %.0f%% %.0f MB", r->server_cpu_pct,
		         (double)r->server_rss_kb / 1024);
	if (lt.redis_up && lt.redis_cps >= 0)
		snprintf(redis, sizeof redis, "  redis %.0f/s", lt.redis_cps);
	if (lt.o.load == LOAD_IDLE)
		fprintf(stderr, "\r%-14s connected %d/%d  away %d%s   ", when, r->connected,
		        lt.ncounselors + lt.nclients, r->away, server);
	else
		fprintf(stderr,
		        "\r%-14s sessions %d  waiting %d  available %d  offers %.0f/s  starts %.0f/s  "
		        "audio %.0f/s  text %.0f/s  lost %llu  errors %llu%s%s%s   ",
		        when, r->sessions, r->waiting, r->available, r->offers, r->started, r->audio,
		        r->text, (unsigned long long)(r->audio_lost + r->text_lost),
		        (unsigned long long)r->errors, lat, server, redis);
	fflush(stderr);
	status_shown = 1;
}

/* ---- the summary ------------------------------------------------------------- */

static void print_latency(const char *what, const struct hist *h)
{
	if (!h->n) {
		printf("  %-26s %9s\n", what, "-");
		return;
	}
	printf("  %-26s %9llu %9.2f %9.2f %9.2f %9.2f %9.2f\n", what, (unsigned long long)h->n,
	       hist_ms(h, 0.50), hist_ms(h, 0.99), hist_ms(h, 0.999), (double)h->max / 1e6,
	       hist_mean_ms(h));
}

static void print_title(void)
{
	const struct options *o = &lt.o;
	const char *mode = proto_mode_name(o->mode);
	const char *tls = tls_used() ? "wss" : "ws";
	if (o->load == LOAD_IDLE) {
		printf("\nearshot-loadtest idle: %d connections (%d counselors away, %d clients not "
		       "queued) over %s, held %.1f s; setup took %.1f s\n", lt.ncounselors + lt.nclients,
		       lt.ncounselors, lt.nclients, tls, R.secs, lt.setup_s);
		return;
	}
	if (o->load == LOAD_HELD && lt.ncounselors >= o->sessions)
		printf("\nearshot-loadtest %s: %d sessions (%d legs) held, %.1f s steady state after "
		       "%.0f s warm-up; setup took %.1f s\n", mode, o->sessions, 2 * o->sessions,
		       R.secs, o->warmup, lt.setup_s);
	else if (o->load == LOAD_HELD)
		printf("\nearshot-loadtest %s: %d clients held for %d counselors, %.1f s steady state "
		       "after %.0f s warm-up; setup took %.1f s\n", mode, o->sessions, lt.ncounselors,
		       R.secs, o->warmup, lt.setup_s);
	else
		printf("\nearshot-loadtest %s: arrivals %.2f/s for %.0f s, then %.1f s of drain "
		       "(%.1f s measured); setup took %.1f s\n", mode, o->arrivals, o->seconds,
		       lt.drain_s, R.secs, lt.setup_s);
	printf("  %-18s %d counselors, think %s%.0f ms, decline %.0f %%", "scenario",
	       lt.ncounselors, o->think_ms > 0 ? "exponential, mean " : "", o->think_ms,
	       100 * o->decline);
	if (o->away_every > 0)
		printf(", a break every %.0f s (mean) for %.0f s", o->away_every, o->away_for);
	if (o->session_s > 0)
		printf("; sessions of %.1f s", o->session_s);
	else
		printf("; sessions last to the end");
	if (o->text_rate > 0)
		printf("; text %.2f/s per party, %d B", o->text_rate, o->text_bytes);
	printf("; %s", tls);
	if (o->nurls > 1)
		printf(", %d nodes", o->nurls);
	printf("\n");
}

static void print_voice(void)
{
	double s = R.secs;
	printf("  %-18s %llu (%.0f/s), Opus frames %.0f B on average\n", "packets sent",
	       (unsigned long long)R.d.sent, (double)R.d.sent / s, lt.opus_mean);
	if (R.d.queue_dropped)
		printf("  %-18s %llu of them dropped unsent: the generator fell a second behind\n",
		       "", (unsigned long long)R.d.queue_dropped);
	printf("  %-18s %llu (%.0f/s)\n", "packets received", (unsigned long long)R.d.received,
	       (double)R.d.received / s);
	printf("  %-18s %.3f %% (%llu lost, %llu out of order, %llu bad, %llu frames skipped "
	       "by a late generator)\n", "loss (seq gaps)", R.loss_pct,
	       (unsigned long long)R.d.lost, (unsigned long long)R.d.out_of_order,
	       (unsigned long long)R.d.bad, (unsigned long long)R.d.skipped);
	if (R.have_stats) {
		printf("  %-18s %llu (%.0f/s)\n", "server relayed",
		       (unsigned long long)R.s.media_relayed, (double)R.s.media_relayed / s);
		printf("  %-18s %llu", "server dropped", (unsigned long long)dropped_total(&R.s));
		for (size_t i = 0; i < NDROPS; i++)
			if (drop_get(&R.s, i))
				printf("  %s %llu", drop_fields[i].name,
				       (unsigned long long)drop_get(&R.s, i));
		printf("\n");
	} else {
		printf("  %-18s unavailable (GET /stats: ws:// only)\n", "server counters");
	}
	printf("\n");
}

static void print_flow(void)
{
	double s = R.secs;
	const struct counters *d = &R.d;
	/* The held media benchmark sets everything up before it measures. */
	if (d->talk_now || d->offers || d->started || d->arrivals || lt.o.text_rate > 0) {
		printf("  %-26s %9s %9s\n", "flow", "count", "per s");
		if (lt.o.load == LOAD_ARRIVALS)
			printf("  %-26s %9llu %9.2f   refused by a full pool: %llu\n", "arrivals",
			       (unsigned long long)d->arrivals, (double)d->arrivals / s,
			       (unsigned long long)d->refused);
		printf("  %-26s %9llu %9.2f\n", "talk_now", (unsigned long long)d->talk_now,
		       (double)d->talk_now / s);
		printf("  %-26s %9llu %9.2f   accepted %llu, declined %llu, withdrawn %llu, "
		       "naming no client of ours %llu\n", "offers", (unsigned long long)d->offers,
		       (double)d->offers / s, (unsigned long long)d->accepted,
		       (unsigned long long)d->declined, (unsigned long long)d->offers_gone,
		       (unsigned long long)d->offers_unknown);
		printf("  %-26s %9llu %9.2f   ended %llu (early %llu); when measuring ended %d "
		       "waiting, %d in a session\n", "sessions started", (unsigned long long)d->started,
		       (double)d->started / s, (unsigned long long)d->ended,
		       (unsigned long long)d->ended_early, lt.left_waiting, lt.left_in_session);
		if (lt.o.mode == MODE_VOICE)
			printf("  %-26s %9llu %9.0f   lost %llu (%.3f %%)\n", "audio packets received",
			       (unsigned long long)d->received, (double)d->received / s,
			       (unsigned long long)d->lost, R.loss_pct);
		if (lt.o.text_rate > 0)
			printf("  %-26s %9llu %9.1f   sent %llu; lost over the whole run %llu, bad %llu\n",
			       "text messages received", (unsigned long long)d->text_received,
			       (double)d->text_received / s, (unsigned long long)d->text_sent,
			       (unsigned long long)lt.c.text_lost, (unsigned long long)d->text_bad);
		printf("\n");
	}
	printf("  %-26s %9s %9s %9s %9s %9s %9s\n", "latency ms", "samples", "p50", "p99",
	       "p99.9", "max", "mean");
	if (lt.h_offer.n || lt.h_start.n) {
		print_latency("talk_now -> offer", &lt.h_offer);
		print_latency("talk_now -> session_start", &lt.h_start);
	}
	if (lt.o.mode == MODE_VOICE)
		print_latency("audio one-way", &lt.h_audio);
	if (lt.o.text_rate > 0)
		print_latency("text one-way", &lt.h_text);
	printf("\n");
}

static void print_errors(void)
{
	printf("  %-18s", "errors by code");
	if (!lt.nerrs)
		printf(" none");
	for (int i = 0; i < lt.nerrs; i++)
		printf(" %s %llu", lt.errs[i].code, (unsigned long long)lt.errs[i].n);
	if (lt.errs_other)
		printf(" (other codes %llu)", (unsigned long long)lt.errs_other);
	printf("\n");
}

static void print_server(void)
{
	if (!R.have_cpu) {
		printf("  %-18s not measured (no --server-pid)\n", "server CPU");
		return;
	}
	printf("  %-18s %.2f s = %.1f %% of a core", "server CPU", R.cpu_s, R.core_pct);
	if (R.us_per_pkt >= 0)
		printf(", %.2f us per relayed packet", R.us_per_pkt);
	if (R.us_per_delivered >= 0 && R.s.media_slow_reader)
		printf(" (%.2f per packet delivered, less slow_reader drops)", R.us_per_delivered);
	printf("\n  %-18s peak %.1f MB (VmHWM), now %.1f MB\n", "server memory",
	       (double)R.hwm_kb / 1024, (double)R.rss_kb / 1024);
	if (lt.o.npids > 1)
		for (int i = 0; i < lt.o.npids; i++)
			printf("  %-18s pid %d: %.2f s CPU = %.1f %%, peak %.1f MB, now %.1f MB\n", "",
			       (int)lt.o.pids[i], R.pid[i].cpu_s, R.pid[i].core_pct,
			       (double)R.pid[i].hwm_kb / 1024, (double)R.pid[i].rss_kb / 1024);
	if (lt.o.load == LOAD_IDLE) {
		int n = lt.ncounselors + lt.nclients;
		printf("  %-18s %.1f MB before, %.1f MB with all %d connected, %.1f MB at the end: "
		       "%.1f KB per connection\n", "server RSS", (double)R.rss_before_kb / 1024,
		       (double)R.rss_connected_kb / 1024, n, (double)R.rss_kb / 1024,
		       (double)(R.rss_kb - R.rss_before_kb) / n);
	}
}

void report_summary(void)
{
	results_compute();
	print_title();
	if (lt.o.mode == MODE_VOICE && lt.o.load != LOAD_IDLE)
		print_voice();
	if (lt.o.load != LOAD_IDLE)
		print_flow();
	print_errors();
	print_server();
	printf("  %-18s %.2f s = %.1f %% of a core\n", "generator CPU", R.gen_cpu_s,
	       R.gen_core_pct);
	if (R.have_redis)
		printf("  %-18s %llu commands, %.0f/s\n", "redis", (unsigned long long)R.redis_cmds,
		       R.redis_cps);
	if (R.ncpu) {
		printf("  %-18s", "host CPUs");
		for (int i = 0; i < R.ncpu; i++)
			printf("  cpu%d busy %.0f %% (other %.0f %%) steal %.0f %%", i, R.cpu_busy[i],
			       R.cpu_other[i], R.cpu_steal[i]);
		printf("\n");
	}
	printf("  %-18s errors %llu (and %llu for audio that arrived after `end`), unexpected "
	       "closes %llu, sessions ended early %llu, \"audio stopped\" notices %llu, "
	       "unmatched %llu, audio after session_end %llu\n", "whole run",
	       (unsigned long long)lt.c.errors, (unsigned long long)lt.late_refusals,
	       (unsigned long long)lt.c.unexpected_closes, (unsigned long long)lt.c.ended_early,
	       (unsigned long long)lt.audio_stopped, (unsigned long long)lt.c.unmatched,
	       (unsigned long long)lt.late_audio);
}

/* ---- --json ------------------------------------------------------------------ */

static json_t *num(double v, int ok)
{
	return ok ? json_real(v) : json_null();
}

static json_t *count(uint64_t v)
{
	return json_integer((json_int_t)v);
}

static json_t *latency(const struct hist *h)
{
	int ok = h->n > 0;
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "samples", count(h->n),
	                 "p50", num(hist_ms(h, 0.50), ok), "p99", num(hist_ms(h, 0.99), ok),
	                 "p999", num(hist_ms(h, 0.999), ok), "max", num((double)h->max / 1e6, ok),
	                 "mean", num(hist_mean_ms(h), ok));
}

static json_t *server_json(void)
{
	double s = R.secs;
	json_t *o = json_object(), *dropped = json_object(), *pids = json_array();
	if (R.have_stats) {
		json_object_set_new(o, "relayed", count(R.s.media_relayed));
		json_object_set_new(o, "relayed_pps", json_real((double)R.s.media_relayed / s));
		for (size_t i = 0; i < NDROPS; i++)
			json_object_set_new(dropped, drop_fields[i].name, count(drop_get(&R.s, i)));
		json_object_set_new(o, "dropped", dropped);
	} else {
		json_decref(dropped);
		json_object_set_new(o, "relayed", json_null());
		json_object_set_new(o, "relayed_pps", json_null());
		json_object_set_new(o, "dropped", json_null());
	}
	json_object_set_new(o, "cpu_s", num(R.cpu_s, R.have_cpu));
	json_object_set_new(o, "cpu_us_per_packet", num(R.us_per_pkt, R.have_cpu && R.us_per_pkt >= 0));
	json_object_set_new(o, "cpu_us_per_delivered",
	                    num(R.us_per_delivered, R.have_cpu && R.us_per_delivered >= 0));
	json_object_set_new(o, "core_share_pct", num(R.core_pct, R.have_cpu));
	json_object_set_new(o, "peak_rss_kb", R.have_cpu ? json_integer(R.hwm_kb) : json_null());
	json_object_set_new(o, "rss_kb", R.have_cpu ? json_integer(R.rss_kb) : json_null());
	for (int i = 0; i < lt.o.npids; i++) {
		const struct server_pid *p = &R.pid[i];
		json_array_append_new(pids, json_pack("{s:i, s:o, s:o, s:o, s:o}", "pid",
		                                      (int)lt.o.pids[i], "cpu_s",
		                                      num(p->cpu_s, p->have_cpu), "core_share_pct",
		                                      num(p->core_pct, p->have_cpu), "peak_rss_kb",
		                                      json_integer(p->hwm_kb), "rss_kb",
		                                      json_integer(p->rss_kb)));
	}
	json_object_set_new(o, "pids", pids);
	return o;
}

static json_t *scenario_json(void)
{
	const struct options *o = &lt.o;
	return json_pack("{s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:i, s:b, s:i}",
	                 "counselors", lt.ncounselors, "client_pool", lt.nclients,
	                 "arrivals_per_s", o->arrivals, "think_ms_mean", o->think_ms,
	                 "decline", o->decline, "away_every_s", o->away_every,
	                 "away_for_s", o->away_for, "session_s", o->session_s,
	                 "text_rate", o->text_rate, "text_bytes", o->text_bytes,
	                 "tls", tls_used(), "nodes", o->nurls);
}

static json_t *flow_json(void)
{
	const struct counters *d = &R.d;
	return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:i, "
	                 "s:i, s:f}",
	                 "arrivals", count(d->arrivals), "refused", count(d->refused),
	                 "talk_now", count(d->talk_now), "offers", count(d->offers),
	                 "first_offers", count(d->first_offers), "accepted", count(d->accepted),
	                 "declined", count(d->declined), "offers_gone", count(d->offers_gone),
	                 "offers_unknown", count(d->offers_unknown), "started", count(d->started),
	                 "paired", count(d->pairs), "ended", count(d->ended),
	                 "ended_early", count(d->ended_early), "left_waiting", lt.left_waiting,
	                 "left_in_session", lt.left_in_session, "drain_s", lt.drain_s);
}

static json_t *text_json(void)
{
	const struct counters *d = &R.d;
	return json_pack("{s:o, s:o, s:f, s:o, s:o, s:o}", "sent", count(d->text_sent),
	                 "received", count(d->text_received),
	                 "received_per_s", (double)d->text_received / R.secs,
	                 "lost", count(lt.c.text_lost), "bad", count(d->text_bad),
	                 "latency_ms", latency(&lt.h_text));
}

static json_t *opt_ms(double v)
{
	return num(v, v >= 0);
}

static json_t *timeseries_json(void)
{
	json_t *a = json_array();
	for (int i = 0; i < lt.nrows; i++) {
		const struct row *r = &lt.rows[i];
		json_t *o = json_object();
		json_object_set_new(o, "t_s", json_real(r->t));
		json_object_set_new(o, "sessions", json_integer(r->sessions));
		json_object_set_new(o, "waiting", json_integer(r->waiting));
		json_object_set_new(o, "counselors_available", json_integer(r->available));
		json_object_set_new(o, "counselors_away", json_integer(r->away));
		json_object_set_new(o, "connected", json_integer(r->connected));
		json_object_set_new(o, "offers_per_s", json_real(r->offers));
		json_object_set_new(o, "started_per_s", json_real(r->started));
		json_object_set_new(o, "audio_pps", json_real(r->audio));
		json_object_set_new(o, "text_per_s", json_real(r->text));
		json_object_set_new(o, "audio_p50_ms", opt_ms(r->audio_p50));
		json_object_set_new(o, "audio_p99_ms", opt_ms(r->audio_p99));
		json_object_set_new(o, "text_p50_ms", opt_ms(r->text_p50));
		json_object_set_new(o, "text_p99_ms", opt_ms(r->text_p99));
		json_object_set_new(o, "audio_lost", count(r->audio_lost));
		json_object_set_new(o, "text_lost", count(r->text_lost));
		json_object_set_new(o, "errors", count(r->errors));
		json_object_set_new(o, "unexpected_closes", count(r->closes));
		json_object_set_new(o, "server_cpu_pct", opt_ms(r->server_cpu_pct));
		json_object_set_new(o, "server_rss_kb",
		                    r->server_rss_kb >= 0 ? json_integer(r->server_rss_kb) : json_null());
		json_object_set_new(o, "redis_cmds_per_s", opt_ms(r->redis_cps));
		json_object_set_new(o, "generator_cpu_pct", json_real(r->gen_cpu_pct));
		json_array_append_new(a, o);
	}
	return a;
}

static json_t *idle_json(void)
{
	if (lt.o.load != LOAD_IDLE)
		return json_null();
	int n = lt.ncounselors + lt.nclients, ok = R.have_cpu;
	return json_pack("{s:i, s:i, s:i, s:o, s:o, s:o, s:o}", "connections", n,
	                 "counselors", lt.ncounselors, "clients", lt.nclients,
	                 "rss_before_kb", ok ? json_integer(R.rss_before_kb) : json_null(),
	                 "rss_connected_kb", ok ? json_integer(R.rss_connected_kb) : json_null(),
	                 "rss_after_kb", ok ? json_integer(R.rss_kb) : json_null(),
	                 "kb_per_connection",
	                 num((double)(R.rss_kb - R.rss_before_kb) / n, ok));
}

/* The keys of the first media benchmark come first and keep their meaning
 * (bench-media.sh and the tests read them); then the scenario's. */
int report_json(const char *path)
{
	results_compute();
	double s = R.secs;
	json_t *j = json_object(), *cpus = json_array(), *errs = json_object();
	long sessions = sessions_figure();
	json_object_set_new(j, "sessions", json_integer(sessions));
	json_object_set_new(j, "legs", json_integer(2 * sessions));
	json_object_set_new(j, "seconds", json_real(s));
	json_object_set_new(j, "warmup_s", json_real(lt.o.load == LOAD_HELD ? lt.o.warmup : 0));
	json_object_set_new(j, "setup_s", json_real(lt.setup_s));
	json_object_set_new(j, "tick_ms", json_integer(lt.o.tick_ms));
	json_object_set_new(j, "opus_mean_bytes", json_real(lt.opus_mean));
	json_object_set_new(j, "sent", count(R.d.sent));
	json_object_set_new(j, "received", count(R.d.received));
	json_object_set_new(j, "sent_pps", json_real((double)R.d.sent / s));
	json_object_set_new(j, "received_pps", json_real((double)R.d.received / s));
	json_object_set_new(j, "lost", count(R.d.lost));
	json_object_set_new(j, "loss_pct", json_real(R.loss_pct));
	json_object_set_new(j, "out_of_order", count(R.d.out_of_order));
	json_object_set_new(j, "bad", count(R.d.bad));
	json_object_set_new(j, "skipped", count(R.d.skipped));
	json_object_set_new(j, "unmatched", count(R.d.unmatched));
	json_object_set_new(j, "generator_queue_dropped", count(R.d.queue_dropped));
	json_object_set_new(j, "latency_ms", latency(&lt.h_audio));
	json_object_set_new(j, "server", server_json());
	json_object_set_new(j, "generator", json_pack("{s:f, s:f}", "cpu_s", R.gen_cpu_s,
	                                              "core_share_pct", R.gen_core_pct));
	for (int i = 0; i < R.ncpu; i++)
		json_array_append_new(cpus, json_pack("{s:i, s:f, s:f, s:f}", "cpu", i, "busy_pct",
		                                      R.cpu_busy[i], "other_pct", R.cpu_other[i],
		                                      "steal_pct", R.cpu_steal[i]));
	json_object_set_new(j, "host_cpus", cpus);
	json_object_set_new(j, "errors", count(lt.c.errors));
	json_object_set_new(j, "late_audio_refused", count(lt.late_refusals));
	json_object_set_new(j, "unexpected_closes", count(lt.c.unexpected_closes));
	json_object_set_new(j, "sessions_ended_early", count(lt.c.ended_early));
	json_object_set_new(j, "audio_stopped", count(lt.audio_stopped));
	/* the scenario */
	json_object_set_new(j, "load", json_string(load_name()));
	json_object_set_new(j, "mode", json_string(proto_mode_name(lt.o.mode)));
	json_object_set_new(j, "scenario", scenario_json());
	json_object_set_new(j, "flow", flow_json());
	json_object_set_new(j, "offer_latency_ms", latency(&lt.h_offer));
	json_object_set_new(j, "start_latency_ms", latency(&lt.h_start));
	json_object_set_new(j, "text", text_json());
	for (int i = 0; i < lt.nerrs; i++)
		json_object_set_new(errs, lt.errs[i].code, count(lt.errs[i].n));
	if (lt.errs_other)
		json_object_set_new(errs, "other", count(lt.errs_other));
	json_object_set_new(j, "errors_by_code", errs);
	json_object_set_new(j, "audio_after_end", count(lt.late_audio));
	json_object_set_new(j, "redis", R.have_redis
	                                        ? json_pack("{s:o, s:f}", "commands",
	                                                    count(R.redis_cmds), "per_s", R.redis_cps)
	                                        : json_null());
	json_object_set_new(j, "idle", idle_json());
	json_object_set_new(j, "timeseries", timeseries_json());
	int rc = json_dump_file(j, path, JSON_COMPACT | JSON_REAL_PRECISION(6));
	json_decref(j);
	return rc;
}

/* ---- --plot ------------------------------------------------------------------ */

/* The columns of the data file gnuplot reads (1-based in its script). */
enum col {
	C_T = 1, C_SESSIONS, C_WAITING, C_AVAILABLE, C_AWAY, C_OFFERS, C_STARTED, C_AUDIO, C_TEXT,
	C_AP50, C_AP99, C_TP50, C_TP99, C_CPU, C_RSS, C_REDIS, C_LOST, C_ERRORS, C_GEN,
	C_CONNECTED
};

static double col_value(const struct row *r, enum col c)
{
	switch (c) {
	case C_T: return r->t;
	case C_SESSIONS: return r->sessions;
	case C_WAITING: return r->waiting;
	case C_AVAILABLE: return r->available;
	case C_AWAY: return r->away;
	case C_OFFERS: return r->offers;
	case C_STARTED: return r->started;
	case C_AUDIO: return r->audio;
	case C_TEXT: return r->text;
	case C_AP50: return r->audio_p50 >= 0 ? r->audio_p50 : NAN;
	case C_AP99: return r->audio_p99 >= 0 ? r->audio_p99 : NAN;
	case C_TP50: return r->text_p50 >= 0 ? r->text_p50 : NAN;
	case C_TP99: return r->text_p99 >= 0 ? r->text_p99 : NAN;
	case C_CPU: return r->server_cpu_pct >= 0 ? r->server_cpu_pct : NAN;
	case C_RSS: return r->server_rss_kb >= 0 ? (double)r->server_rss_kb / 1024 : NAN;
	case C_REDIS: return r->redis_cps >= 0 ? r->redis_cps : NAN;
	case C_LOST: return (double)(r->audio_lost + r->text_lost);
	case C_ERRORS: return (double)r->errors;
	case C_GEN: return r->gen_cpu_pct;
	case C_CONNECTED: return r->connected;
	}
	return NAN;
}

/* Whether the run can have series `c` at all (no audio in text sessions,
 * no sessions in the idle hold). */
static int col_applies(enum col c)
{
	int idle = lt.o.load == LOAD_IDLE;
	switch (c) {
	case C_AUDIO: case C_AP50: case C_AP99: return lt.o.mode == MODE_VOICE && !idle;
	case C_TEXT: case C_TP50: case C_TP99: return lt.o.text_rate > 0;
	case C_SESSIONS: case C_WAITING: case C_OFFERS: case C_STARTED: return !idle;
	case C_CONNECTED: return idle;
	default: return 1;
	}
}

/* The largest value of series `c`, or NAN when it has none: gnuplot
 * refuses a plot whose points are all undefined, and warns about a range
 * that is all zero. */
static double col_max(enum col c)
{
	double m = NAN;
	if (!col_applies(c))
		return m;
	for (int i = 0; i < lt.nrows; i++) {
		double v = col_value(&lt.rows[i], c);
		if (!isnan(v) && (isnan(m) || v > m))
			m = v;
	}
	return m;
}

struct series {
	enum col c;
	const char *title;
	int y2;
};

/* One panel: the series that have data, or a "no data" note. Each panel
 * sets its own scale and ranges: a range set while another panel's log
 * scale is on confuses gnuplot 5.4 ("all points undefined"). */
static void plot_panel(FILE *f, const char *title, const char *ylabel, const char *y2label,
                       const struct series *s, int n, int logscale)
{
	double max[2] = { NAN, NAN };
	for (int i = 0; i < n; i++) {
		double m = col_max(s[i].c);
		if (!isnan(m) && (isnan(max[s[i].y2]) || m > max[s[i].y2]))
			max[s[i].y2] = m;
	}
	fprintf(f, "set title '%s'\nset ylabel '%s'\n", title, ylabel);
	if (!isnan(max[1]))
		fprintf(f, "set y2label '%s'\nset y2tics\nset ytics nomirror\nset y2range [0:%s]\n",
		        y2label, max[1] > 0 ? "*" : "1");
	else
		fprintf(f, "unset y2label\nunset y2tics\nset ytics mirror\n");
	if (logscale)
		fprintf(f, "set logscale y\nset yrange [*:*]\n");
	else
		fprintf(f, "unset logscale y\nset yrange [0:%s]\n", max[0] > 0 ? "*" : "1");
	if (isnan(max[0]) && isnan(max[1])) {
		fprintf(f, "set label 1 'no data' at graph 0.5, 0.5 center\nunset logscale y\n"
		           "set yrange [0:1]\nplot NaN notitle\nunset label 1\n");
		return;
	}
	const char *sep = "plot";
	for (int i = 0; i < n; i++)
		if (!isnan(col_max(s[i].c))) {
			fprintf(f, "%s data using 1:%d axes x1%s with lines lw 2 title '%s'", sep,
			        s[i].c, s[i].y2 ? "y2" : "y1", s[i].title);
			sep = ", \\\n    ";
		}
	fprintf(f, "\n");
}

static int plot_script(FILE *f, const char *out, const char *data)
{
	const char *ext = strrchr(out, '.');
	if (strcmp(ext, ".png") == 0)
		fprintf(f, "set terminal pngcairo size 1400,1000 font 'sans,10'\n");
	else
		fprintf(f, "set terminal svg size 1400,1000 dynamic font 'sans,10'\n");
	fprintf(f, "set output '%s'\ndata = '%s'\nset datafile missing 'nan'\n", out, data);
	char what[96];
	if (lt.o.load == LOAD_IDLE)
		snprintf(what, sizeof what, "idle, %d connections", lt.ncounselors + lt.nclients);
	else
		snprintf(what, sizeof what, "%s %s, %d counselors", load_name(),
		         proto_mode_name(lt.o.mode), lt.ncounselors);
	fprintf(f, "set multiplot layout 3,2 title 'earshot-loadtest: %s; x: seconds since "
	           "measuring began' font ',12'\n", what);
	/* One x range for every panel, "no data" ones too. */
	fprintf(f, "set grid\nset key below\nset xrange [0:%.3f]\n",
	        lt.nrows ? lt.rows[lt.nrows - 1].t : 1.0);
	static const struct series people[] = {
		{ C_SESSIONS, "sessions", 0 }, { C_WAITING, "waiting clients", 0 },
		{ C_AVAILABLE, "counselors available", 0 }, { C_AWAY, "counselors away", 0 },
		{ C_CONNECTED, "connections", 0 },
	};
	static const struct series setup[] = {
		{ C_OFFERS, "offers/s", 0 }, { C_STARTED, "sessions started/s", 0 },
	};
	static const struct series relay_voice[] = {
		{ C_AUDIO, "audio packets/s", 0 }, { C_TEXT, "text messages/s", 1 },
	};
	static const struct series relay_text[] = { { C_TEXT, "text messages/s", 0 } };
	static const struct series lat[] = {
		{ C_AP50, "audio p50", 0 }, { C_AP99, "audio p99", 0 },
		{ C_TP50, "text p50", 0 }, { C_TP99, "text p99", 0 },
	};
	static const struct series server[] = {
		{ C_CPU, "server CPU %", 0 }, { C_GEN, "generator CPU %", 0 }, { C_RSS, "server RSS MB", 1 },
	};
	static const struct series trouble[] = {
		{ C_LOST, "lost (audio + text)", 0 }, { C_ERRORS, "errors", 0 },
		{ C_REDIS, "Redis commands/s", 1 },
	};
	plot_panel(f, "people", "count", NULL, people, 5, 0);
	plot_panel(f, "matching", "per second", NULL, setup, 2, 0);
	if (col_applies(C_AUDIO))
		plot_panel(f, "relayed (received by the generator)", "audio packets/s",
		           "text messages/s", relay_voice, 2, 0);
	else
		plot_panel(f, "relayed (received by the generator)", "text messages/s", NULL,
		           relay_text, 1, 0);
	plot_panel(f, "one-way latency", "ms (log)", NULL, lat, 4, 1);
	plot_panel(f, "CPU and memory", "% of a core", "MB", server, 3, 0);
	plot_panel(f, "loss, errors, Redis", "per second", "Redis commands/s", trouble, 3, 0);
	fprintf(f, "unset multiplot\n");
	return 0;
}

static int plot_data(FILE *f)
{
	for (int i = 0; i < lt.nrows; i++) {
		for (int c = C_T; c <= C_CONNECTED; c++) {
			double v = col_value(&lt.rows[i], (enum col)c);
			if (isnan(v))
				fprintf(f, "%snan", c == C_T ? "" : "\t");
			else
				fprintf(f, "%s%.6g", c == C_T ? "" : "\t", v);
		}
		fputc('\n', f);
	}
	return 0;
}

struct plot_files {
	const char *out, *data;
};

static int fill_data(FILE *f, const struct plot_files *pf)
{
	(void)pf;
	return plot_data(f);
}

static int fill_script(FILE *f, const struct plot_files *pf)
{
	return plot_script(f, pf->out, pf->data);
}

/* A file of our own in /tmp, filled by `fill`. */
static int write_temp(char *path, int (*fill)(FILE *f, const struct plot_files *pf),
                      const struct plot_files *pf)
{
	int fd = mkstemp(path);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	int rc = fill(f, pf);
	return fclose(f) == 0 && rc == 0 ? 0 : -1;
}

/* Runs Debian's gnuplot (gnuplot-nox) on a script and a data file written
 * to /tmp, then removes both. The name was checked at start-up (.svg or
 * .png, no quote). */
int report_plot(const char *path)
{
	char data[] = "/tmp/earshot-loadtest-data-XXXXXX";
	char script[] = "/tmp/earshot-loadtest-plot-XXXXXX";
	struct plot_files pf = { .out = path, .data = data };
	int rc = -1;
	if (write_temp(data, fill_data, &pf) == 0) {
		if (write_temp(script, fill_script, &pf) == 0) {
			pid_t pid = fork();
			if (pid == 0) {
				execlp("gnuplot", "gnuplot", script, (char *)NULL);
				_exit(127);
			}
			int st;
			if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st))
				rc = WEXITSTATUS(st);
			unlink(script);
		}
		unlink(data);
	}
	if (rc == 127)
		fprintf(stderr, "earshot-loadtest: --plot needs gnuplot: .ci/install-deps bench "
		                "(apt-get install gnuplot-nox)\n");
	else if (rc != 0)
		fprintf(stderr, "earshot-loadtest: gnuplot could not draw %s\n", path);
	return rc == 0 ? 0 : -1;
}
