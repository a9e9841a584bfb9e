/* test_estimate.c - the estimated wait (server/matcher.c, PROTOCOL.md
 * "Estimated wait") measured against the waits that actually follow, under
 * a mixed load, and the promises it makes asserted.
 *
 * A deterministic simulation on the injected clock: a seeded PRNG drives
 * NK counselors with different skills (signing in late, breaks, going
 * away and coming back, declines, ring timeouts, early wrap-ups) and a
 * stream of clients over several simulated days (Poisson arrivals at an
 * hourly rate that sometimes exceeds what the counselors can serve, about
 * 10% in crisis, topics some counselors are skilled in, some asking for a
 * previous counselor who may be busy), sessions of varying length (most
 * use the slot, some end early, some run on in crisis), each accepted
 * after a short ring. Positions are read after every event exactly as
 * store_mem.c's positions() does, on the same queue_dirty signal.
 *
 * Recorded per client: the estimate given on joining and at each update
 * (as the hub sends them: on change), the holds reported, and the actual
 * wait from joining to the accepted offer. Classes: `crisis`; `held`, not
 * in crisis and held back by a preference (`waiting_for`) while a
 * counselor was free for their position; `plain`, the rest. The figures go
 * to stdout, one line per class; what is asserted, and what is only
 * printed, is listed above test_estimate(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../server/matcher.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC     1000LL
#define MIN     (60 * SEC)
#define HOUR    (60 * MIN)

/* The configuration's defaults (server/config.c, hub.c store_new). */
#define SLOT        (20 * MIN)
#define GRACE       (30 * SEC)
#define RING        (20 * SEC)
#define WRAPUP      (1 * MIN)
#define CWRAPUP     (10 * MIN)
#define TOPIC_WAIT  (60 * SEC)
#define PREV_WAIT   (45 * SEC)
#define REDECL      (60 * SEC)

/* What a wait may exceed its estimate by for the offer alone, which no
 * estimate counts: a ring that times out, then one answered (the
 * simulation's accepts take up to 12 s). */
#define SLACK_RING  (2 * RING)

#define T0          1000000     /* the virtual clock starts here, not at 0 */
#define NK          8
#ifndef DAYS
#define DAYS        20          /* -DDAYS=100 for a longer look */
#endif
#define DAY_HOURS   10
#define NC_MAX      600         /* clients in a day, at most */
#define NEV_MAX     256
#define NUPD_MAX    400000
#define CID(i)      ((uint32_t)(1000 + (i)))

/* Clients an hour through a day: calm, a peak that outruns the counselors
 * (about 22 an hour with everyone in), calm, a second smaller peak. */
static const int RATE[DAY_HOURS] = { 8, 14, 20, 24, 20, 12, 8, 18, 22, 8 };

static const char *const SKILLS[NK] = {
	"grief,anxiety", "anxiety", "", "lgbtq,identity",
	"grief", "", "addiction", "anxiety,lgbtq",
};
/* When each counselor signs in (set available) after the day starts. */
static const int64_t SIGN_IN[NK] = { 0, 0, 0, 0, 0, 0, 1 * HOUR, 2 * HOUR };

/* ---- the PRNG: splitmix64, so a seed is a whole day ---- */

static uint64_t rng;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double unif(void)          /* [0, 1) */
{
	return (double)(rnd() >> 11) / 9007199254740992.0;
}

static int64_t between(int64_t lo, int64_t hi)
{
	return lo + (int64_t)(unif() * (double)(hi - lo));
}

static int chance(double p)
{
	return unif() < p;
}

/* An exponential gap of mean `mean_ms`: Poisson arrivals. */
static int64_t expo(int64_t mean_ms)
{
	return (int64_t)(-log(1.0 - unif()) * (double)mean_ms);
}

/* ---- the world ---- */

enum klass { CL_CRISIS, CL_HELD, CL_PLAIN, CL__COUNT };
static const char *const CLASS_NAME[CL__COUNT] = { "crisis", "held", "plain" };

struct sclient {
	struct mclient mc;
	int64_t joined, served;       /* served: -1 while waiting */
	int crisis;
	uint32_t est0;                /* the estimate on joining, s */
	int seen;                     /* a position was reported */
	int held_back;                /* held while a counselor was free for their position */
	int64_t held_bound;           /* the longest bound they were held for */
	int passed;                   /* someone behind was offered while they were held */
	uint32_t sent_pos, sent_est;
	enum matcher_hold sent_hold;
};

enum ev_type { EV_ARRIVE, EV_ANSWER, EV_SESSION_END, EV_BREAK, EV_BACK, EV_WRAPUP_END };

struct sev {
	int64_t at;
	enum ev_type type;
	int who;                      /* counselor index */
	int64_t offer_id;             /* EV_ANSWER */
	int arg;                      /* EV_ANSWER accept; EV_SESSION_END crisis */
};

/* One estimate as sent, to compare with the wait that followed. */
struct update {
	int client;
	int64_t at;
	uint32_t est;
};

static struct matcher M;
static struct mcounselor K[NK];
static struct sclient C[NC_MAX];
static int nc, nwaiting, arrivals_done;
static struct sev EV[NEV_MAX];
static int nev;
static int64_t now, day_end;
static struct matcher_action acts[64];
static int nacts;
static struct update U[NUPD_MAX];
static int nupd;

/* What the run found, over all days. */
static struct {
	int64_t wait[CL__COUNT][DAYS * NC_MAX];
	int64_t est[CL__COUNT][DAYS * NC_MAX];
	int n[CL__COUNT];
	int crisis_checks, declines, timeouts, breaks;
	/* Held back by a preference: how many, how many saw a counselor go to
	 * someone behind meanwhile, how many were served past the bound (and
	 * a ring), the most past it. */
	int held_n, held_passed, held_late, held_crisis, held_late_crisis;
	int64_t held_late_max_ms;
	int64_t longest_hold_ms[3];   /* by enum matcher_hold */
	int64_t upd_n, upd_late, upd_abs_ms;
} F;

static void on_action(void *ctx, const struct matcher_action *a)
{
	(void)ctx;
	if (nacts >= (int)(sizeof acts / sizeof acts[0]))
		fail_msg("action buffer overflow");
	acts[nacts++] = *a;
}

static void schedule(int64_t at, enum ev_type type, int who, int64_t offer_id, int arg)
{
	if (nev >= NEV_MAX)
		fail_msg("event list overflow");
	EV[nev++] = (struct sev){ .at = at, .type = type, .who = who,
	                          .offer_id = offer_id, .arg = arg };
}

static struct sclient *client_of(uint32_t id)
{
	uint32_t i = id - CID(0);
	assert_true(i < (uint32_t)nc);
	return &C[i];
}

/* ---- the people: what they do in answer to the matcher ---- */

/* A session's length: most run the slot and part of the goodbye, some end
 * early, some run on in crisis (the slot no longer ends them). */
static void session_start(struct sclient *c, int k)
{
	int64_t len;
	int crisis = chance(c->crisis ? 0.4 : 0.03);
	if (crisis)
		len = between(SLOT, SLOT + 25 * MIN);
	else if (chance(0.3))
		len = between(2 * MIN, SLOT);
	else
		len = SLOT + between(0, GRACE);
	schedule(now + len, EV_SESSION_END, k, 0, crisis);
	c->served = now;
	nwaiting--;
}

/* Client `id` is offered a counselor: whoever ahead of them is held for a
 * preference has just seen a counselor go to someone behind. */
static void note_passed(uint32_t id)
{
	struct list *it;
	list_for_each(it, &M.queue) {
		struct mclient *mc = list_entry(it, struct mclient, link);
		int64_t until;
		if (mc->id == id)
			break;
		if (!mc->offered_to && matcher_held(&M, mc, now, &until) != HOLD_NONE)
			client_of(mc->id)->passed = 1;
	}
}

static void handle_actions(void)
{
	for (int i = 0; i < nacts; i++) {
		const struct matcher_action *a = &acts[i];
		int k = (int)a->counselor - 1;
		if (a->type == MA_OFFER) {
			note_passed(a->client);
			/* Most accept after a short ring; some decline; a few let
			 * it ring out (the matcher's timeout then). */
			double r = unif();
			if (r < 0.06) {
				schedule(now + between(3 * SEC, 12 * SEC), EV_ANSWER, k, a->offer_id, 0);
				F.declines++;
			} else if (r < 0.10) {
				F.timeouts++;
			} else {
				schedule(now + between(2 * SEC, 12 * SEC), EV_ANSWER, k, a->offer_id, 1);
			}
		} else if (a->type == MA_MATCHED) {
			session_start(client_of(a->client), k);
		} else if (a->type == MA_STATE && a->reason &&
		           strcmp(a->reason, "missed_offers") == 0) {
			schedule(now + between(2 * MIN, 8 * MIN), EV_BACK, k, 0, 0);
		}
	}
	nacts = 0;
}

static void arrive(void)
{
	if (nc >= NC_MAX)
		fail_msg("more than %d clients in a day", NC_MAX);
	struct sclient *c = &C[nc];
	memset(c, 0, sizeof *c);
	static const char *const topics[] = { "general", "general", "general", "general",
	                                      "anxiety", "anxiety", "grief", "lgbtq",
	                                      "addiction", "money" };
	char previous[16] = "";
	int ask = 0;
	if (chance(0.25)) {         /* came before; most ask for the same one */
		snprintf(previous, sizeof previous, "k%d", (int)between(1, NK + 1));
		ask = chance(0.7);
	}
	c->crisis = chance(0.1);
	c->joined = now;
	c->served = -1;
	struct matcher_request r = { .topic = topics[between(0, 10)], .mode = MODE_TEXT,
	                             .crisis = c->crisis, .previous = previous,
	                             .ask_previous = ask };
	assert_int_equal(matcher_client_enqueue(&M, &c->mc, CID(nc), &r, now), MATCHER_OK);
	nc++;
	nwaiting++;
	int hour = (int)((now - T0) / HOUR);
	int64_t next = now + expo(HOUR / RATE[hour]);
	if (next < day_end)
		schedule(next, EV_ARRIVE, 0, 0, 0);
	else
		arrivals_done = 1;
}

/* A counselor steps away now and then: mostly a break the matcher ends,
 * sometimes plain `away` and back by hand. */
static void step_away(int k)
{
	if (chance(0.3) && (K[k].state == ST_AVAILABLE || K[k].state == ST_WRAPUP)) {
		assert_int_equal(matcher_counselor_set_away(&M, &K[k], now), MATCHER_OK);
		schedule(now + between(5 * MIN, 40 * MIN), EV_BACK, k, 0, 0);
	} else if (K[k].state != ST_AWAY) {
		assert_int_equal(matcher_counselor_take_break(&M, &K[k], between(10 * MIN, 30 * MIN),
		                                              now), MATCHER_OK);
	}
	F.breaks++;
	schedule(now + expo(150 * MIN), EV_BREAK, k, 0, 0);
}

static void run_event(const struct sev *e)
{
	struct mcounselor *k = &K[e->who];
	switch (e->type) {
	case EV_ARRIVE:
		arrive();
		break;
	case EV_ANSWER:
		/* Withdrawn meanwhile (client left, timed out): nothing to answer. */
		if (k->state == ST_RINGING && k->offer_id == e->offer_id) {
			int err = e->arg ? matcher_counselor_accept(&M, k, e->offer_id, now)
			                 : matcher_counselor_decline(&M, k, e->offer_id, now);
			assert_int_equal(err, MATCHER_OK);
		}
		break;
	case EV_SESSION_END:
		matcher_counselor_session_over(&M, k, e->arg, now);
		if (!e->arg && chance(0.2))
			schedule(now + between(10 * SEC, 50 * SEC), EV_WRAPUP_END, e->who, 0, 0);
		break;
	case EV_BREAK:
		step_away(e->who);
		break;
	case EV_BACK:
		if (k->state == ST_AWAY)
			matcher_counselor_set_available(&M, k, now);
		break;
	case EV_WRAPUP_END:
		if (k->state == ST_WRAPUP)
			assert_int_equal(matcher_counselor_set_available(&M, k, now), MATCHER_OK);
		break;
	}
}

/* ---- what is checked after every event ---- */

static int64_t bound_of(enum matcher_hold h)
{
	return h == HOLD_PREVIOUS ? PREV_WAIT : TOPIC_WAIT;
}

/* Positions and estimates as store_mem.c positions() reports them; each
 * hold reported within its bound and the estimate covering what is left
 * of it; a client in crisis held for nothing never told a longer wait
 * than anyone not in crisis. */
static void positions(void)
{
	uint32_t pos = 0, crisis_max = 0, other_min = UINT32_MAX;
	int crisis_seen = 0;
	struct list *it;
	list_for_each(it, &M.queue) {
		struct mclient *mc = list_entry(it, struct mclient, link);
		struct sclient *c = client_of(mc->id);
		int64_t until;
		pos++;
		uint32_t est = matcher_estimate_s(&M, mc, pos, now);
		enum matcher_hold h = matcher_held(&M, mc, now, &until);
		if (h != HOLD_NONE) {
			/* Held back by it rather than by the queue: a counselor is
			 * free for their position (counted here, not by the code
			 * under test). */
			if (pos <= M.by_state[ST_AVAILABLE] + M.by_state[ST_RINGING])
				c->held_back = 1;
			if (bound_of(h) > c->held_bound)
				c->held_bound = bound_of(h);
			if (until != mc->since + bound_of(h) || now >= until)
				fail_msg("client %u held (%s) at +%lld ms, until +%lld ms: bound %lld ms",
				         mc->id, matcher_hold_name(h), (long long)(now - mc->since),
				         (long long)(until - mc->since), (long long)bound_of(h));
			if ((int64_t)est * SEC < until - now)
				fail_msg("client %u held (%s) with %lld ms left, told %u s",
				         mc->id, matcher_hold_name(h), (long long)(until - now), est);
			if (now - mc->since > F.longest_hold_ms[h])
				F.longest_hold_ms[h] = now - mc->since;
		}
		if (c->crisis && h == HOLD_NONE) {
			crisis_seen = 1;
			if (est > crisis_max)
				crisis_max = est;
		}
		if (!c->crisis && est < other_min)
			other_min = est;
		if (!c->seen) {
			if (now != c->joined)
				fail_msg("client %u: first position %lld ms after joining",
				         mc->id, (long long)(now - c->joined));
			c->est0 = est;
		}
		/* The hub sends a `queue` only when something in it changed. */
		if (!c->seen || pos != c->sent_pos || est != c->sent_est || h != c->sent_hold) {
			if (nupd >= NUPD_MAX)
				fail_msg("update log overflow");
			U[nupd++] = (struct update){ .client = (int)(c - C), .at = now, .est = est };
		}
		c->seen = 1;
		c->sent_pos = pos;
		c->sent_est = est;
		c->sent_hold = h;
	}
	if (crisis_seen && other_min != UINT32_MAX) {
		F.crisis_checks++;
		if (crisis_max > other_min)
			fail_msg("at +%lld ms a client in crisis is told %u s, one not in crisis %u s",
			         (long long)(now - T0), crisis_max, other_min);
	}
	M.queue_dirty = 0;
}

/* Nobody waits for nothing: a client held for no preference is never left
 * waiting while a counselor is available to them (a counselor kept for
 * someone asking for them is available only to that one, or to crisis).
 * So a hold ends at its bound; but the counselors free during the hold
 * may have gone to clients behind by then (the "held back" figures). */
static void check_no_idle_wait(void)
{
	struct list *it, *jt;
	list_for_each(it, &M.queue) {
		struct mclient *mc = list_entry(it, struct mclient, link);
		int64_t until;
		if (mc->offered_to || matcher_held(&M, mc, now, &until) != HOLD_NONE)
			continue;
		list_for_each(jt, &M.roster) {
			struct mcounselor *k = list_entry(jt, struct mcounselor, link);
			if (k->state == ST_AVAILABLE && (!k->kept_for || mc->crisis))
				fail_msg("at +%lld ms client %u waits +%lld ms, k%u is available",
				         (long long)(now - T0), mc->id, (long long)(now - mc->since),
				         k->id);
		}
	}
}

/* ---- a day ---- */

static int next_event(void)
{
	int best = -1;
	for (int i = 0; i < nev; i++)
		if (best < 0 || EV[i].at < EV[best].at)
			best = i;
	return best;
}

static void run_day(uint64_t seed)
{
	struct matcher_config cfg = {
		.ring_ms = RING, .wrapup_ms = WRAPUP, .crisis_wrapup_ms = CWRAPUP,
		.handle_ms = SLOT + WRAPUP, .redecline_ms = REDECL, .max_missed = 2,
		.max_queue = NC_MAX, .topic_wait_ms = TOPIC_WAIT, .previous_wait_ms = PREV_WAIT,
	};
	rng = seed;
	now = T0;
	day_end = T0 + DAY_HOURS * HOUR;
	nc = nwaiting = arrivals_done = nev = nacts = nupd = 0;
	matcher_init(&M, &cfg, on_action, NULL);
	for (int k = 0; k < NK; k++) {
		char sub[16];
		snprintf(sub, sizeof sub, "k%d", k + 1);
		matcher_counselor_add(&M, &K[k], (uint32_t)(k + 1), sub, SKILLS[k], now);
		schedule(now + SIGN_IN[k], EV_BACK, k, 0, 0);
		schedule(now + SIGN_IN[k] + expo(150 * MIN), EV_BREAK, k, 0, 0);
	}
	schedule(now + expo(HOUR / RATE[0]), EV_ARRIVE, 0, 0, 0);
	for (long steps = 0; !arrivals_done || nwaiting > 0; steps++) {
		if (steps > 10000000)
			fail_msg("seed %llu: the day does not end", (unsigned long long)seed);
		int64_t dl = matcher_next_deadline(&M);
		int i = next_event();
		if (i < 0 && dl == INT64_MAX)
			fail_msg("seed %llu: %d waiting, nothing will happen", (unsigned long long)seed,
			         nwaiting);
		if (i < 0 || dl <= EV[i].at) {
			now = dl > now ? dl : now;
			matcher_tick(&M, now);
		} else {
			struct sev e = EV[i];
			EV[i] = EV[--nev];
			now = e.at;
			run_event(&e);
		}
		handle_actions();
		if (M.queue_dirty)
			positions();
		check_no_idle_wait();
	}
}

/* ---- figures ---- */

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* The p-th quantile (nearest rank) of n values, sorted in place. */
static int64_t quantile(int64_t *v, int n, double p)
{
	if (n == 0)
		return 0;
	qsort(v, (size_t)n, sizeof *v, cmp64);
	int r = (int)(p * n + 0.999999);
	return v[r < 1 ? 0 : r - 1];
}

static void record_day(void)
{
	for (int i = 0; i < nc; i++) {
		const struct sclient *c = &C[i];
		assert_true(c->served >= c->joined);
		enum klass kl = c->crisis ? CL_CRISIS : c->held_back ? CL_HELD : CL_PLAIN;
		int j = F.n[kl]++;
		F.wait[kl][j] = c->served - c->joined;
		F.est[kl][j] = (int64_t)c->est0 * SEC;
		if (c->held_back) {
			int64_t past = c->served - c->joined - c->held_bound;
			F.held_n++;
			F.held_crisis += c->crisis;
			F.held_passed += c->passed;
			if (past > SLACK_RING) {
				F.held_late++;
				F.held_late_crisis += c->crisis;
				if (past > F.held_late_max_ms)
					F.held_late_max_ms = past;
			}
		}
	}
	for (int u = 0; u < nupd; u++) {
		int64_t left = C[U[u].client].served - U[u].at, est = (int64_t)U[u].est * SEC;
		F.upd_n++;
		F.upd_late += left > est;
		F.upd_abs_ms += left > est ? left - est : est - left;
	}
}

struct summary {
	int n, told;                     /* told: more than 0 on joining */
	int64_t wait_med, wait_p90, est_med, est_p90, mae_s;
	double late, late_ring, ratio_med, within;
};

/* One class (or all, kl < 0): the figures of the report, on the estimate
 * given on joining. */
static struct summary summarize(int kl)
{
	static int64_t w[CL__COUNT * DAYS * NC_MAX], e[CL__COUNT * DAYS * NC_MAX],
	               ratio[CL__COUNT * DAYS * NC_MAX];
	struct summary s = { 0 };
	int64_t abs_sum = 0;
	int late = 0, late_ring = 0, within = 0;
	for (int k = 0; k < CL__COUNT; k++) {
		if (kl >= 0 && k != kl)
			continue;
		for (int i = 0; i < F.n[k]; i++) {
			int64_t wt = F.wait[k][i], es = F.est[k][i];
			w[s.n] = wt;
			e[s.n] = es;
			s.n++;
			late += wt > es;
			late_ring += wt > es + SLACK_RING;
			within += wt <= es * 3 / 2 + SLACK_RING;
			abs_sum += wt > es ? wt - es : es - wt;
			if (es > 0)
				ratio[s.told++] = wt * 1000 / es;
		}
	}
	if (!s.n)
		return s;
	s.wait_med = quantile(w, s.n, 0.5) / SEC;
	s.wait_p90 = quantile(w, s.n, 0.9) / SEC;
	s.est_med = quantile(e, s.n, 0.5) / SEC;
	s.est_p90 = quantile(e, s.n, 0.9) / SEC;
	s.late = (double)late / s.n;
	s.late_ring = (double)late_ring / s.n;
	s.within = (double)within / s.n;
	s.mae_s = abs_sum / s.n / SEC;
	s.ratio_med = s.told ? (double)quantile(ratio, s.told, 0.5) / 1000.0 : 0.0;
	return s;
}

static void print_summary(const char *name, const struct summary *s)
{
	printf("estimate %-6s n=%3d wait med/p90 %4lld/%4lld s, told %4lld/%4lld s; late %2.0f%% "
	       "(+%llds: %2.0f%%), mae %3lld s; told>0 %3d, wait/told med %.2f; "
	       "within 1.5x+%llds %3.0f%%\n",
	       name, s->n, (long long)s->wait_med, (long long)s->wait_p90,
	       (long long)s->est_med, (long long)s->est_p90, 100.0 * s->late,
	       (long long)(SLACK_RING / SEC), 100.0 * s->late_ring, (long long)s->mae_s,
	       s->told, s->ratio_med, (long long)(SLACK_RING / SEC), 100.0 * s->within);
}

/* ---- the test ---- */

/* Checked after every event (positions(), check_no_idle_wait()):
 *  - a hold (`waiting_for`) is reported only before its bound, previous-
 *    wait or topic-wait from joining, and the estimate then covers what
 *    is left of it;
 *  - once no hold applies, a client never waits while a counselor is
 *    available to them;
 *  - a client in crisis (and held for nothing) is never told a longer
 *    wait than anyone not in crisis;
 *  - every client gets a position (and so an estimate) on joining.
 * Asserted on the figures, per class and overall, of the estimate given
 * on joining:
 *  - not systematically wrong: of the clients told more than 0, the
 *    median of actual / told lies within [2/3, 3/2];
 *  - at least WITHIN_MIN are served within 1.5 x told + SLACK_RING (the
 *    estimate is a mean, not a bound; the offer itself is not in it);
 *  - crisis clients wait less than plain ones (median).
 *    Crisis clients are first in line, where the estimate counts one
 *    whole handling interval while the first counselor to free up comes
 *    sooner on average: for them the band is [1/2, 3/2] (pessimistic,
 *    never optimistic);
 * Printed, not asserted: clients held back by a preference while a
 * counselor was free, then served more than SLACK_RING past the hold's
 * bound, because the counselors free during the hold went to clients
 * behind them (PROTOCOL.md says so). Crisis clients are held for no
 * preference, so never them (asserted: "crisis 0"). */
#define WITHIN_MIN  0.85

static void check_class(const char *name, const struct summary *s, double lo)
{
	if (s->within < WITHIN_MIN)
		fail_msg("%s: %.0f%% served within 1.5 x estimate + %lld s, want %.0f%%", name,
		         100.0 * s->within, (long long)(SLACK_RING / SEC), 100.0 * WITHIN_MIN);
	if (s->told < 10)
		fail_msg("%s: only %d clients told more than 0: too few to judge", name, s->told);
	if (s->ratio_med < lo || s->ratio_med > 1.5)
		fail_msg("%s: median wait / estimate %.2f, outside [%.2f, 1.5]", name, s->ratio_med, lo);
}

static void test_estimate(void **state)
{
	(void)state;
	memset(&F, 0, sizeof F);
	for (uint64_t d = 0; d < DAYS; d++) {
		run_day(0x5eed0000ULL + d);
		record_day();
	}
	struct summary s[CL__COUNT], all = summarize(-1);
	for (int k = 0; k < CL__COUNT; k++) {
		s[k] = summarize(k);
		print_summary(CLASS_NAME[k], &s[k]);
	}
	print_summary("all", &all);
	printf("estimate updates n=%lld: late %.0f%%, mae %lld s | held back %d (crisis %d): "
	       "%d passed by someone behind, %d served > bound+%llds (crisis %d, worst +%lld s) | "
	       "%d declines, %d timeouts, %d breaks\n",
	       (long long)F.upd_n, 100.0 * (double)F.upd_late / (double)F.upd_n,
	       (long long)(F.upd_abs_ms / F.upd_n / SEC), F.held_n, F.held_crisis, F.held_passed,
	       F.held_late, (long long)(SLACK_RING / SEC), F.held_late_crisis,
	       (long long)(F.held_late_max_ms / SEC), F.declines, F.timeouts, F.breaks);
	/* The simulation exercised what it is meant to. */
	assert_true(F.longest_hold_ms[HOLD_PREVIOUS] > 0 && F.longest_hold_ms[HOLD_TOPIC] > 0);
	assert_true(F.crisis_checks > 0 && F.held_n >= 10);
	assert_int_equal(F.held_crisis, 0);   /* someone in crisis waits for no preference */
	for (int k = 0; k < CL__COUNT; k++)
		check_class(CLASS_NAME[k], &s[k], k == CL_CRISIS ? 0.5 : 2.0 / 3.0);
	check_class("all", &all, 2.0 / 3.0);
	if (s[CL_CRISIS].wait_med > s[CL_PLAIN].wait_med)
		fail_msg("crisis median wait %lld s, plain %lld s", (long long)s[CL_CRISIS].wait_med,
		         (long long)s[CL_PLAIN].wait_med);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_estimate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
