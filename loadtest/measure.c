/* measure.c - what earshot-loadtest counts: latency histograms, errors by
 * code, the snapshots around the measured window and its time series, one
 * row per second. */
#include "lt.h"
#include "../client-demo/esclient.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- histogram --------------------------------------------------------------- */

void hist_reset(struct hist *h)
{
	memset(h, 0, sizeof *h);
}

/* Below 2 * HIST_SUB a bucket per value; above, the top 7 bits of the
 * value pick one of HIST_SUB buckets in its power of two. */
static int hist_bucket(uint64_t v)
{
	if (v < 2 * HIST_SUB)
		return (int)v;
	int msb = 63 - __builtin_clzll(v);
	int shift = msb - 6;
	return 2 * HIST_SUB + (shift - 1) * HIST_SUB + (int)((v >> shift) - HIST_SUB);
}

/* The middle of bucket `i`, in ns. */
static double hist_value(int i)
{
	if (i < 2 * HIST_SUB)
		return (double)i;
	int shift = (i - 2 * HIST_SUB) / HIST_SUB + 1;
	uint64_t top = (uint64_t)((i - 2 * HIST_SUB) % HIST_SUB + HIST_SUB);
	return (double)(top << shift) + (double)(1ULL << shift) / 2;
}

void hist_add(struct hist *h, int64_t ns)
{
	if (ns < 0)
		ns = 0;
	uint64_t v = (uint64_t)ns;
	if (v >= 1ULL << HIST_TOP_BIT)
		v = (1ULL << HIST_TOP_BIT) - 1;
	h->b[hist_bucket(v)]++;
	h->n++;
	h->sum += (double)ns;
	if (ns > h->max)
		h->max = ns;
}

double hist_ms(const struct hist *h, double q)
{
	if (!h->n)
		return -1;
	uint64_t k = (uint64_t)ceil(q * (double)h->n), seen = 0;
	if (k < 1)
		k = 1;
	for (int i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= k) {
			double v = hist_value(i);
			/* The top bucket's middle may lie above what was seen. */
			return (v > (double)h->max ? (double)h->max : v) / 1e6;
		}
	}
	return (double)h->max / 1e6;
}

double hist_mean_ms(const struct hist *h)
{
	return h->n ? h->sum / (double)h->n / 1e6 : -1;
}

/* ---- errors by code ---------------------------------------------------------- */

void measure_error(const char *code)
{
	lt.c.errors++;
	for (int i = 0; i < lt.nerrs; i++)
		if (strcmp(lt.errs[i].code, code) == 0) {
			lt.errs[i].n++;
			return;
		}
	if (lt.nerrs == LT_ERROR_CODES) {
		lt.errs_other++;
		return;
	}
	snprintf(lt.errs[lt.nerrs].code, sizeof lt.errs[lt.nerrs].code, "%s", code);
	lt.errs[lt.nerrs++].n = 1;
}

/* ---- the window -------------------------------------------------------------- */

void measure_queue_drops(void)
{
	uint64_t d = lt.dropped_freed;
	for (int i = 0; i < lt.ncounselors; i++)
		if (lt.counselors[i].c)
			d += esc_binary_dropped(lt.counselors[i].c);
	for (int i = 0; i < lt.nclients; i++)
		if (lt.clients[i].c)
			d += esc_binary_dropped(lt.clients[i].c);
	lt.c.queue_dropped = d;
}

void measure_begin(void)
{
	probe_procs(lt.p0);
	probe_host(&lt.h0);
	getrusage(RUSAGE_SELF, &lt.r0);
	measure_queue_drops();
	lt.c0 = lt.c;
	probe_redis_begin();
	hist_reset(&lt.h_audio);
	hist_reset(&lt.h_text);
	hist_reset(&lt.h_offer);
	hist_reset(&lt.h_start);
	/* The first row covers the window's first second, nothing before. */
	hist_reset(&lt.s_audio);
	hist_reset(&lt.s_text);
	for (int i = 0; i < lt.o.npids; i++)
		lt.sec_ticks[i] = lt.p0[i].ok ? (long long)lt.p0[i].ticks : -1;
	lt.sec_ru = lt.r0;
	lt.csec = lt.c;
	lt.w0 = lt.sec_t = mono_s();
	lt.measuring = 1;
}

void measure_end(void)
{
	lt.measuring = 0;
	lt.w1 = mono_s();
	measure_queue_drops();
	lt.c1 = lt.c;
	probe_procs(lt.p1);
	probe_host(&lt.h1);
	getrusage(RUSAGE_SELF, &lt.r1);
	/* Redis: its last answer, at most a second old, is the window's end. */
	lt.redis_t1 = lt.redis_prev_t;
	lt.redis_cmds1 = lt.redis_prev;
	lt.redis_infos1 = lt.redis_infos;
}

/* ---- one second -------------------------------------------------------------- */

static double tv_s(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

static void count_parties(struct row *r)
{
	for (int i = 0; i < lt.ncounselors; i++) {
		const struct party *k = &lt.counselors[i];
		if (k->c && esc_is_open(k->c))
			r->connected++;
		if (k->kstate == ST_AVAILABLE)
			r->available++;
		else if (k->kstate == ST_AWAY)
			r->away++;
	}
	for (int i = 0; i < lt.nclients; i++) {
		const struct party *p = &lt.clients[i];
		if (p->c && esc_is_open(p->c))
			r->connected++;
		if (p->st == P_WAITING)
			r->waiting++;
		else if (p->st == P_IN_SESSION || p->st == P_QUIET || p->st == P_ENDING)
			r->sessions++;
	}
}

static void server_second(struct row *r, double dt)
{
	unsigned long long used = 0;
	int ok = lt.o.npids > 0;
	r->server_rss_kb = 0;
	for (int i = 0; i < lt.o.npids; i++) {
		struct proc_sample s;
		probe_proc(lt.o.pids[i], &s);
		if (!s.ok || lt.sec_ticks[i] < 0)
			ok = 0;
		else
			used += s.ticks - (unsigned long long)lt.sec_ticks[i];
		lt.sec_ticks[i] = s.ok ? (long long)s.ticks : -1;
		r->server_rss_kb += s.rss_kb > 0 ? s.rss_kb : 0;
	}
	r->server_cpu_pct = ok ? 100.0 * (double)used / (double)sysconf(_SC_CLK_TCK) / dt : -1;
	if (!lt.o.npids)
		r->server_rss_kb = -1;
}

void measure_tick(void)
{
	double now = mono_s(), dt = now - lt.sec_t;
	if (dt <= 0)
		return;
	struct row r;
	memset(&r, 0, sizeof r);
	r.t = now - lt.w0;
	measure_queue_drops();
	count_parties(&r);
	const struct counters *a = &lt.csec, *b = &lt.c;
	r.offers = (double)(b->offers - a->offers) / dt;
	r.started = (double)(b->started - a->started) / dt;
	r.audio = (double)(b->received - a->received) / dt;
	r.text = (double)(b->text_received - a->text_received) / dt;
	r.audio_lost = b->lost - a->lost;
	r.text_lost = b->text_lost - a->text_lost;
	r.errors = b->errors - a->errors;
	r.closes = b->unexpected_closes - a->unexpected_closes;
	r.audio_p50 = hist_ms(&lt.s_audio, 0.50);
	r.audio_p99 = hist_ms(&lt.s_audio, 0.99);
	r.text_p50 = hist_ms(&lt.s_text, 0.50);
	r.text_p99 = hist_ms(&lt.s_text, 0.99);
	server_second(&r, dt);
	r.redis_cps = -1;           /* Redis answers the poll below */
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	r.gen_cpu_pct = 100.0 * (tv_s(ru.ru_utime) + tv_s(ru.ru_stime) - tv_s(lt.sec_ru.ru_utime) -
	                         tv_s(lt.sec_ru.ru_stime)) / dt;
	lt.sec_ru = ru;
	int recorded = lt.measuring && lt.phase == PH_MEASURE && lt.nrows < lt.caprows;
	if (recorded)
		lt.rows[lt.nrows++] = r;
	report_status(&r, recorded);
	lt.csec = lt.c;
	lt.sec_t = now;
	hist_reset(&lt.s_audio);
	hist_reset(&lt.s_text);
	probe_redis_poll(recorded ? lt.nrows - 1 : -1);
}
