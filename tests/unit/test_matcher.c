/* test_matcher.c - unit tests for the queue and offer state machine
 * (server/matcher.c): FIFO and idle-longest matching, accept, decline,
 * ring timeouts and missed offers, removals, wrap-up deadlines, errors, the
 * queue bound, wait estimates, stats, and a randomized invariant run.
 *
 * The clock is injected: every event takes an explicit `now` (the matcher's
 * unit is the millisecond). Actions are captured by a recorder and compared
 * as one readable string per event, e.g.
 *     "k1 ringing; offer c101 k1 #1 w0"
 * Counselors are K[1..] with ids 1.., clients C[1..] with ids 101..; both
 * are caller-owned, as matcher.h requires. Includes matcher.c to reach its
 * statics, as the Makefile's unit rule allows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../server/matcher.c"

#include <stdio.h>
#include <string.h>

#define T0      1000000         /* the virtual clock starts here, not at 0 */
#define RING    30000
#define WRAPUP  60000
#define HANDLE  600000
#define REDECL  300000

#define NCLI    16
#define NKS     8
#define CID(i)  ((uint32_t)(100 + (i)))
#define KID(j)  ((uint32_t)(j))

/* ---- the recorder ---- */

#define REC_MAX 512

static struct {
	struct matcher_action a[REC_MAX];
	int n;
	void (*hook)(const struct matcher_action *a);   /* randomized test */
} rec;

static void rec_emit(void *ctx, const struct matcher_action *a)
{
	(void)ctx;
	if (rec.n >= REC_MAX)
		fail_msg("recorder overflow");
	rec.a[rec.n++] = *a;
	if (rec.hook)
		rec.hook(a);
}

static const char *st_name(enum proto_state s)
{
	switch (s) {
	case ST_OFFLINE: return "offline";
	case ST_AVAILABLE: return "available";
	case ST_RINGING: return "ringing";
	case ST_BUSY: return "busy";
	case ST_WRAPUP: return "wrapup";
	case ST_AWAY: return "away";
	default: return "?";
	}
}

static void fmt_action(char *buf, size_t len, const struct matcher_action *a)
{
	switch (a->type) {
	case MA_OFFER:
		snprintf(buf, len, "offer c%u k%u #%lld w%u%s", a->client, a->counselor,
		         (long long)a->offer_id, a->waited_s, a->talked_before ? " before" : "");
		break;
	case MA_OFFER_GONE:
		snprintf(buf, len, "gone k%u #%lld %s", a->counselor, (long long)a->offer_id,
		         a->reason ? a->reason : "(null)");
		break;
	case MA_MATCHED:
		snprintf(buf, len, "matched c%u k%u #%lld", a->client, a->counselor,
		         (long long)a->offer_id);
		break;
	case MA_STATE:
		snprintf(buf, len, "k%u %s%s%s", a->counselor, st_name(a->state),
		         a->reason ? ":" : "", a->reason ? a->reason : "");
		break;
	default:
		snprintf(buf, len, "type%d", (int)a->type);
	}
}

/* Everything recorded since the last take, joined by "; "; clears. */
static const char *take(void)
{
	static char out[8192];
	size_t used = 0;
	out[0] = '\0';
	for (int i = 0; i < rec.n; i++) {
		char one[128];
		fmt_action(one, sizeof one, &rec.a[i]);
		used += (size_t)snprintf(out + used, sizeof out - used, "%s%s",
		                         i ? "; " : "", one);
		assert_true(used < sizeof out);
	}
	rec.n = 0;
	return out;
}

#define EXPECT(s) assert_string_equal(take(), (s))

/* ---- fixture ---- */

static struct matcher M;
static struct mclient C[NCLI];
static struct mcounselor K[NKS];
static int64_t now;

static struct matcher_config default_cfg(void)
{
	struct matcher_config cfg = {
		.ring_ms = RING, .wrapup_ms = WRAPUP, .handle_ms = HANDLE,
		.redecline_ms = REDECL, .max_missed = 3, .max_queue = 50,
	};
	return cfg;
}

static void init_with(const struct matcher_config *cfg)
{
	memset(C, 0, sizeof C);
	memset(K, 0, sizeof K);
	memset(&rec, 0, sizeof rec);
	now = T0;
	matcher_init(&M, cfg, rec_emit, NULL);
}

static int setup(void **state)
{
	(void)state;
	struct matcher_config cfg = default_cfg();
	init_with(&cfg);
	return 0;
}

/* Client i asks for `topic` in `mode`; crisis; the counselor they talked
 * with last ("" none) and whether they ask for them again. */
static int enq_full(int i, const char *topic, enum proto_mode mode, int crisis,
                    const char *previous, int ask)
{
	struct matcher_request r = { .topic = topic, .mode = mode, .crisis = crisis,
	                             .previous = previous, .ask_previous = ask };
	return matcher_client_enqueue(&M, &C[i], CID(i), &r, now);
}

static void enq(int i)
{
	assert_int_equal(enq_full(i, "grief", MODE_TEXT, 0, "", 0), MATCHER_OK);
}

static void enq_crisis(int i)
{
	assert_int_equal(enq_full(i, "grief", MODE_TEXT, 1, "", 0), MATCHER_OK);
}

/* Counselor j is "k<j>" with `skills`. */
static void kadd_skilled(int j, const char *skills)
{
	char sub[16];
	snprintf(sub, sizeof sub, "k%d", j);
	matcher_counselor_add(&M, &K[j], KID(j), sub, skills, now);
}

static void kadd(int j)
{
	kadd_skilled(j, "");
}

/* What client i is held for now. */
static enum matcher_hold held(int i)
{
	int64_t until;
	return matcher_held(&M, &C[i], now, &until);
}

/* The estimate for position `pos` of a client held for nothing. */
static uint32_t est(uint32_t pos)
{
	static const struct mclient plain;
	return matcher_estimate_s(&M, &plain, pos, now);
}

static void kavail(int j)
{
	assert_int_equal(matcher_counselor_set_available(&M, &K[j], now), MATCHER_OK);
}

static void kaway(int j)
{
	assert_int_equal(matcher_counselor_set_away(&M, &K[j], now), MATCHER_OK);
}

static void kaccept(int j)
{
	assert_int_equal(matcher_counselor_accept(&M, &K[j], K[j].offer_id, now), MATCHER_OK);
}

static void kdecline(int j)
{
	assert_int_equal(matcher_counselor_decline(&M, &K[j], K[j].offer_id, now), MATCHER_OK);
}

static void tick_at(int64_t t)
{
	now = t;
	matcher_tick(&M, now);
}

/* Add counselor j and make them available, dropping the actions. */
static void kup(int j)
{
	kadd(j);
	kavail(j);
	rec.n = 0;
}

/* The queue, oldest first, as "c101 c103". */
static const char *queue_str(void)
{
	static char out[512];
	size_t used = 0;
	struct list *it;
	out[0] = '\0';
	list_for_each(it, &M.queue) {
		const struct mclient *c = list_entry(it, struct mclient, link);
		used += (size_t)snprintf(out + used, sizeof out - used, "%sc%u",
		                         used ? " " : "", c->id);
	}
	return out;
}

/* by_state and queue_len agree with a recount of the lists. */
static void check_counts(void)
{
	uint32_t by[ST__COUNT] = { 0 };
	struct list *it;
	list_for_each(it, &M.roster)
		by[list_entry(it, struct mcounselor, link)->state]++;
	for (int s = 0; s < ST__COUNT; s++)
		if (by[s] != M.by_state[s])
			fail_msg("by_state[%s] = %u, recount %u", st_name((enum proto_state)s),
			         M.by_state[s], by[s]);
	uint32_t n = 0;
	list_for_each(it, &M.queue)
		n++;
	assert_int_equal(n, M.queue_len);
}

/* ---- basics ---- */

static void test_init_empty(void **state)
{
	(void)state;
	struct matcher_stats s;
	assert_int_equal(matcher_next_deadline(&M), INT64_MAX);
	assert_int_equal(matcher_online(&M), 0);
	assert_int_equal(M.queue_len, 0);
	assert_int_equal(M.handle_ms, HANDLE);
	matcher_get_stats(&M, now, &s);
	assert_int_equal(s.queue, 0);
	assert_int_equal(s.offered, 0);
	assert_int_equal(s.oldest_wait_s, 0);
	assert_int_equal(s.served, 0);
	assert_int_equal(s.abandoned, 0);
	for (int i = 0; i < ST__COUNT; i++)
		assert_int_equal(s.by_state[i], 0);
	/* A never-enqueued (zeroed) client is not queued. */
	assert_false(matcher_client_queued(&C[1]));
	matcher_tick(&M, now);
	EXPECT("");
}

static void test_counselor_starts_away_and_is_not_offered(void **state)
{
	(void)state;
	kadd(1);
	EXPECT("");
	assert_int_equal(K[1].state, ST_AWAY);
	assert_int_equal(M.by_state[ST_AWAY], 1);
	assert_int_equal(matcher_online(&M), 0);
	enq(1);
	EXPECT("");
	assert_null(C[1].offered_to);
	assert_true(matcher_client_queued(&C[1]));
	now += 42500;
	kavail(1);
	EXPECT("k1 available:by_you; k1 ringing; offer c101 k1 #1 w42");
	assert_ptr_equal(C[1].offered_to, &K[1]);
	assert_ptr_equal(K[1].offer, &C[1]);
	assert_int_equal(K[1].offer_id, 1);
	assert_int_equal(K[1].deadline, now + RING);
	check_counts();
}

/* ---- FIFO and idle longest ---- */

static void test_fifo_three_clients_two_counselors(void **state)
{
	(void)state;
	kadd(1);
	kadd(2);
	kavail(1);
	now += 1000;
	kavail(2);
	EXPECT("k1 available:by_you; k2 available:by_you");

	now = T0 + 2000;
	enq(1);
	EXPECT("k1 ringing; offer c101 k1 #1 w0");
	now = T0 + 3000;
	enq(2);
	EXPECT("k2 ringing; offer c102 k2 #2 w0");
	now = T0 + 4000;
	enq(3);
	EXPECT("");             /* one offer per counselor, nobody else free */
	assert_string_equal(queue_str(), "c101 c102 c103");
	assert_null(C[3].offered_to);
	assert_int_equal(M.by_state[ST_RINGING], 2);
	check_counts();

	now = T0 + 9000;
	kaccept(2);
	EXPECT("k2 busy; matched c102 k2 #2");
	assert_false(matcher_client_queued(&C[2]));
	assert_null(C[2].offered_to);
	assert_null(K[2].offer);
	assert_string_equal(queue_str(), "c101 c103");
	kaccept(1);
	EXPECT("k1 busy; matched c101 k1 #1");
	assert_string_equal(queue_str(), "c103");

	now = T0 + 9000 + 600000;
	matcher_counselor_session_over(&M, &K[2], 0, now);
	EXPECT("k2 wrapup");
	assert_int_equal(matcher_next_deadline(&M), now + WRAPUP);
	tick_at(now + WRAPUP);
	/* c103 waited from T0+4000 to T0+669000. */
	EXPECT("k2 available:wrapup_done; k2 ringing; offer c103 k2 #3 w665");
	assert_int_equal(M.served, 2);
	check_counts();
}

static void test_idle_longest_gets_the_client(void **state)
{
	(void)state;
	kadd(1);
	kadd(2);
	kadd(3);
	kavail(3);              /* idle since T0 */
	now += 1000;
	kavail(1);              /* T0 + 1000 */
	now += 1000;
	kavail(2);              /* T0 + 2000 */
	rec.n = 0;
	enq(1);
	EXPECT("k3 ringing; offer c101 k3 #1 w0");
	enq(2);
	EXPECT("k1 ringing; offer c102 k1 #2 w0");
	enq(3);
	EXPECT("k2 ringing; offer c103 k2 #3 w0");
}

/* Someone who may not be safe goes first, ahead of everyone not in crisis
 * and behind those in crisis before them; the offer says so. */
static void test_crisis_goes_first(void **state)
{
	(void)state;
	enq(1);
	now += 1000;
	enq(2);
	now += 1000;
	enq_crisis(3);
	now += 1000;
	enq(4);
	now += 1000;
	enq_crisis(5);
	assert_string_equal(queue_str(), "c103 c105 c101 c102 c104");
	kadd(1);
	kavail(1);
	assert_true(rec.n > 0 && rec.a[rec.n - 1].type == MA_OFFER && rec.a[rec.n - 1].crisis == 1);
	EXPECT("k1 available:by_you; k1 ringing; offer c103 k1 #1 w2");
	kaccept(1);
	rec.n = 0;
	kadd(2);
	kavail(2);
	EXPECT("k2 available:by_you; k2 ringing; offer c105 k2 #2 w0");
	kdecline(2);   /* declined: the crisis keeps its place at the front */
	assert_string_equal(queue_str(), "c105 c101 c102 c104");
	check_counts();
}

/* ---- preferences: topic skills and the previous counselor ---- */

#define TOPICW 60000
#define PREVW  45000

/* Preferences on, no wrap-up (a finished session frees its counselor). */
static void init_prefs(void)
{
	struct matcher_config cfg = default_cfg();
	cfg.wrapup_ms = 0;
	cfg.topic_wait_ms = TOPICW;
	cfg.previous_wait_ms = PREVW;
	init_with(&cfg);
}

/* Counselor j available with `skills`, idle since now; then a second on. */
static void kup_skilled(int j, const char *skills)
{
	kadd_skilled(j, skills);
	kavail(j);
	rec.n = 0;
	now += 1000;
}

/* Counselor j busy with throwaway client `ci` (who takes them). */
static void kbusy(int j, int ci)
{
	assert_int_equal(enq_full(ci, "other", MODE_TEXT, 1, "", 0), MATCHER_OK);
	assert_ptr_equal(C[ci].offered_to, &K[j]);
	kaccept(j);
	rec.n = 0;
}

static void test_topic_prefers_skilled(void **state)
{
	(void)state;
	init_prefs();
	kup_skilled(1, "");
	kup_skilled(2, "anxiety,grief");
	enq(1);                         /* grief: k2 though k1 idled longer */
	EXPECT("k2 ringing; offer c101 k2 #1 w0");
	assert_int_equal(held(1), HOLD_NONE);
	assert_int_equal(enq_full(2, "study", MODE_TEXT, 0, "", 0), MATCHER_OK);
	EXPECT("k1 ringing; offer c102 k1 #2 w0");
	/* A skill matches whole topics only: "grie" is not "grief". */
	assert_false(has_skill(&K[2], "grie"));
	assert_true(has_skill(&K[2], "anxiety"));
}

/* A skilled counselor online but busy is waited for, up to the topic wait
 * from arrival; then anyone free. The estimate says so meanwhile. */
static void test_topic_wait_then_anyone(void **state)
{
	(void)state;
	init_prefs();
	kup_skilled(2, "grief");
	kbusy(2, 9);
	kup_skilled(1, "");
	int64_t arrived = now;
	enq(1);
	EXPECT("");
	assert_int_equal(held(1), HOLD_TOPIC);
	assert_string_equal(matcher_hold_name(HOLD_TOPIC), "topic");
	assert_int_equal(matcher_next_deadline(&M), arrived + TOPICW);
	/* k1 is free (position 1 would be 0 s): the hold is what is left. */
	assert_int_equal(matcher_estimate_s(&M, &C[1], 1, now), 60);
	now += 25000;
	assert_int_equal(matcher_estimate_s(&M, &C[1], 1, now), 40);
	tick_at(arrived + TOPICW - 1);
	EXPECT("");
	tick_at(arrived + TOPICW);
	EXPECT("k1 ringing; offer c101 k1 #2 w60");
	assert_int_equal(held(1), HOLD_NONE);
	check_counts();
}

/* Someone in crisis waits for no preference: with the skilled counselor
 * and the one they asked for busy, the first free counselor takes them;
 * their last counselor, when free, still comes first. */
static void test_crisis_not_held(void **state)
{
	(void)state;
	init_prefs();
	kup_skilled(2, "grief");
	kbusy(2, 9);
	kup_skilled(1, "");
	assert_int_equal(enq_full(1, "grief", MODE_TEXT, 1, "k2", 1), MATCHER_OK);
	EXPECT("k1 ringing; offer c101 k1 #2 w0");
	assert_int_equal(held(1), HOLD_NONE);
	check_counts();

	init_prefs();
	kup_skilled(1, "");
	kup_skilled(2, "");
	assert_int_equal(enq_full(1, "grief", MODE_TEXT, 1, "k2", 1), MATCHER_OK);
	EXPECT("k2 ringing; offer c101 k2 #1 w0 before");   /* k1 idled longer */
}

static void test_topic_skilled_frees_in_time(void **state)
{
	(void)state;
	init_prefs();
	kup_skilled(2, "grief");
	kbusy(2, 9);
	kup_skilled(1, "");
	enq(1);
	EXPECT("");
	now += 20000;
	matcher_counselor_session_over(&M, &K[2], 0, now);
	EXPECT("k2 available:wrapup_done; k2 ringing; offer c101 k2 #2 w20");
	assert_int_equal(K[1].state, ST_AVAILABLE);
}

/* Nobody with the skill online (away counts as not), or only someone who
 * just passed on them: no reason to wait. */
static void test_topic_no_wait_for_nobody(void **state)
{
	(void)state;
	init_prefs();
	kadd_skilled(2, "grief");       /* away */
	kup_skilled(1, "");
	enq(1);
	EXPECT("k1 ringing; offer c101 k1 #1 w0");
	kdecline(1);                    /* nobody else: offered again, not held */
	EXPECT("k1 available; k1 ringing; offer c101 k1 #2 w0");

	init_prefs();
	kup_skilled(2, "grief");
	kup_skilled(1, "");
	enq(1);
	EXPECT("k2 ringing; offer c101 k2 #1 w0");
	kdecline(2);                    /* the skilled one passed: k1 at once */
	EXPECT("k2 available; k1 ringing; offer c101 k1 #2 w0");
	assert_int_equal(held(1), HOLD_NONE);
}

/* A returning client who asks for their previous counselor gets them when
 * free, ahead of the idle-longest rule; the offer says they talked before
 * (also when they did not ask). */
static void test_previous_offered_first(void **state)
{
	(void)state;
	init_prefs();
	kup_skilled(1, "grief");
	kup_skilled(2, "");
	assert_int_equal(enq_full(1, "grief", MODE_TEXT, 0, "k2", 1), MATCHER_OK);
	EXPECT("k2 ringing; offer c101 k2 #1 w0 before");
	assert_int_equal(enq_full(2, "grief", MODE_TEXT, 0, "k2", 0), MATCHER_OK);
	EXPECT("k1 ringing; offer c102 k1 #2 w0");
	kdecline(1);
	kdecline(2);
	rec.n = 0;
	/* Not asked for, offered anyway: still "before". */
	init_prefs();
	kup_skilled(2, "");
	assert_int_equal(enq_full(1, "grief", MODE_TEXT, 0, "k2", 0), MATCHER_OK);
	EXPECT("k2 ringing; offer c101 k2 #1 w0 before");
}

/* While the asked-for counselor is busy the client is held (a free
 * counselor serves others), up to the previous wait; the counselor is kept
 * for them when they free, even from someone who came earlier, but not
 * from someone in crisis. */
static void test_previous_held_and_kept(void **state)
{
	(void)state;
	init_prefs();
	kup_skilled(1, "");
	kup_skilled(2, "");
	kbusy(1, 8);
	kbusy(2, 9);
	enq(1);                         /* plain, first in line */
	now += 1000;
	assert_int_equal(enq_full(2, "grief", MODE_TEXT, 0, "k2", 1), MATCHER_OK);
	assert_string_equal(queue_str(), "c101 c102");
	now += 1000;
	matcher_counselor_session_over(&M, &K[2], 0, now);
	EXPECT("k2 available:wrapup_done; k2 ringing; offer c102 k2 #3 w1 before");
	assert_int_equal(held(1), HOLD_NONE);
	now += 1000;
	matcher_counselor_session_over(&M, &K[1], 0, now);
	EXPECT("k1 available:wrapup_done; k1 ringing; offer c101 k1 #4 w3");
	check_counts();

	/* Someone in crisis is not kept from the counselor. */
	init_prefs();
	kup_skilled(2, "");
	kbusy(2, 9);
	assert_int_equal(enq_full(2, "grief", MODE_TEXT, 0, "k2", 1), MATCHER_OK);
	enq_crisis(1);
	assert_string_equal(queue_str(), "c101 c102");
	matcher_counselor_session_over(&M, &K[2], 0, now);
	EXPECT("k2 available:wrapup_done; k2 ringing; offer c101 k2 #2 w0");
	assert_int_equal(held(2), HOLD_PREVIOUS);
}

/* The wish lapses after the previous wait, or at once when the counselor
 * passes on them or is away. */
static void test_previous_falls_back(void **state)
{
	(void)state;
	init_prefs();
	kup_skilled(2, "");
	kbusy(2, 9);
	kup_skilled(1, "");
	int64_t arrived = now;
	assert_int_equal(enq_full(1, "grief", MODE_TEXT, 0, "k2", 1), MATCHER_OK);
	EXPECT("");
	assert_int_equal(held(1), HOLD_PREVIOUS);
	assert_string_equal(matcher_hold_name(HOLD_PREVIOUS), "previous");
	assert_int_equal(matcher_next_deadline(&M), arrived + PREVW);
	assert_int_equal(matcher_estimate_s(&M, &C[1], 1, now), 50);
	tick_at(arrived + PREVW);
	EXPECT("k1 ringing; offer c101 k1 #2 w45");

	init_prefs();
	kup_skilled(1, "");
	kup_skilled(2, "");
	assert_int_equal(enq_full(1, "grief", MODE_TEXT, 0, "k2", 1), MATCHER_OK);
	EXPECT("k2 ringing; offer c101 k2 #1 w0 before");
	kdecline(2);
	EXPECT("k2 available; k1 ringing; offer c101 k1 #2 w0");
	assert_false(C[1].ask_previous);

	init_prefs();
	kadd(2);                        /* away */
	kup_skilled(1, "");
	assert_int_equal(enq_full(1, "grief", MODE_TEXT, 0, "k2", 1), MATCHER_OK);
	EXPECT("k1 ringing; offer c101 k1 #1 w0");

	/* Signed off while the client waits for them: fall back at once. */
	init_prefs();
	kup_skilled(2, "");
	kbusy(2, 9);
	kup_skilled(1, "");
	assert_int_equal(enq_full(1, "grief", MODE_TEXT, 0, "k2", 1), MATCHER_OK);
	EXPECT("");
	matcher_counselor_remove(&M, &K[2], now);
	EXPECT("k1 ringing; offer c101 k1 #2 w0");
}

/* After a session in crisis the counselor's wrap-up is the longer one. */
static void test_crisis_wrapup(void **state)
{
	(void)state;
	struct matcher_config cfg = default_cfg();
	cfg.crisis_wrapup_ms = 10 * WRAPUP;
	init_with(&cfg);
	kup(1);
	enq(1);
	kaccept(1);
	rec.n = 0;
	matcher_counselor_session_over(&M, &K[1], 1, now);
	EXPECT("k1 wrapup");
	assert_int_equal(matcher_next_deadline(&M), now + 10 * WRAPUP);
	tick_at(now + WRAPUP);
	EXPECT("");
	tick_at(now + 9 * WRAPUP);
	EXPECT("k1 available:wrapup_done");
	/* Not in crisis: the usual one. */
	enq(2);
	kaccept(1);
	rec.n = 0;
	matcher_counselor_session_over(&M, &K[1], 0, now);
	assert_int_equal(matcher_next_deadline(&M), now + WRAPUP);
}

/* ---- counselor wellbeing: shift limits and breaks ---- */

static void test_shift_sessions_limit(void **state)
{
	(void)state;
	struct matcher_config cfg = default_cfg();
	cfg.shift_sessions = 2;
	cfg.wrapup_ms = 0;
	init_with(&cfg);
	kup(1);
	enq(1);
	kaccept(1);
	matcher_counselor_session_over(&M, &K[1], 0, now);
	enq(2);
	kaccept(1);
	rec.n = 0;
	enq(3);                         /* waits: k1 is busy */
	matcher_counselor_session_over(&M, &K[1], 0, now);
	EXPECT("k1 away:shift_over");   /* no third offer */
	assert_true(matcher_client_queued(&C[3]));
	assert_int_equal(matcher_counselor_set_available(&M, &K[1], now), MATCHER_SHIFT_OVER);
	assert_int_equal(K[1].state, ST_AWAY);
	/* A new sign-in is a new shift. */
	matcher_counselor_remove(&M, &K[1], now);
	kadd(1);
	kavail(1);
	EXPECT("k1 available:by_you; k1 ringing; offer c103 k1 #3 w0");
	check_counts();
}

static void test_shift_hours_limit(void **state)
{
	(void)state;
	struct matcher_config cfg = default_cfg();
	cfg.shift_ms = 3600000;
	init_with(&cfg);
	int64_t signed_in = now;
	kup(1);
	kup(2);
	assert_int_equal(matcher_next_deadline(&M), signed_in + 3600000);
	enq(1);                         /* k1 busy across the end of the shift */
	kaccept(1);
	rec.n = 0;
	tick_at(signed_in + 3600000);
	EXPECT("k2 away:shift_over");   /* idle when the hours ran out */
	now += 1000;
	matcher_counselor_session_over(&M, &K[1], 0, now);
	EXPECT("k1 wrapup");            /* the session is never cut; the wrap-up is kept */
	tick_at(now + WRAPUP);
	EXPECT("k1 away:shift_over");
	check_counts();
}

static void test_break(void **state)
{
	(void)state;
	kup(1);
	kup(2);
	enq(1);
	EXPECT("k1 ringing; offer c101 k1 #1 w0");
	/* A break while ringing passes the offer on. */
	assert_int_equal(matcher_counselor_take_break(&M, &K[1], 600000, now), MATCHER_OK);
	EXPECT("gone k1 #1 by_you; k1 away:break; k2 ringing; offer c101 k2 #2 w0");
	assert_int_equal(rec.n, 0);
	assert_int_equal(matcher_next_deadline(&M), now + RING);
	kaccept(2);
	rec.n = 0;
	tick_at(now + 600000);
	EXPECT("k1 available:break_over");
	/* Asked for in a session: it starts when the session closes, in place
	 * of the wrap-up, and lasts at least as long. */
	assert_int_equal(matcher_counselor_take_break(&M, &K[2], 5000, now), MATCHER_OK);
	EXPECT("k2 busy:break_next");
	matcher_counselor_session_over(&M, &K[2], 0, now);
	EXPECT("k2 away:break");
	assert_int_equal(K[2].break_until, now + WRAPUP);
	/* Back early; or open-ended with away. */
	kavail(2);
	EXPECT("k2 available:by_you");
	assert_int_equal(matcher_counselor_take_break(&M, &K[2], 5000, now), MATCHER_OK);
	kaway(2);
	EXPECT("k2 away:break; k2 away:by_you");
	tick_at(now + 10000);
	EXPECT("");
	assert_int_equal(matcher_counselor_take_break(&M, &K[2], 0, now), MATCHER_WRONG_STATE);
	check_counts();
}

static void test_idle_tie_goes_to_roster_order(void **state)
{
	(void)state;
	kadd(1);
	kadd(2);
	kavail(2);
	kavail(1);              /* same instant: equal idle_since */
	rec.n = 0;
	enq(1);
	EXPECT("k1 ringing; offer c101 k1 #1 w0");
}

/* Idle time restarts when wrap-up ends: who finished first is idle longest. */
static void test_idle_restarts_after_wrapup(void **state)
{
	(void)state;
	kup(1);
	now += 1000;
	kup(2);
	enq(1);
	enq(2);
	EXPECT("k1 ringing; offer c101 k1 #1 w0; k2 ringing; offer c102 k2 #2 w0");
	kaccept(1);
	kaccept(2);
	rec.n = 0;
	now += 100000;
	matcher_counselor_session_over(&M, &K[2], 0, now);     /* k2 first */
	int64_t k2_free = now + WRAPUP;
	now += 5000;
	matcher_counselor_session_over(&M, &K[1], 0, now);
	int64_t k1_free = now + WRAPUP;
	EXPECT("k2 wrapup; k1 wrapup");
	assert_int_equal(matcher_next_deadline(&M), k2_free);
	tick_at(k2_free);
	EXPECT("k2 available:wrapup_done");
	assert_int_equal(K[2].idle_since, k2_free);
	assert_int_equal(matcher_next_deadline(&M), k1_free);
	tick_at(k1_free);
	EXPECT("k1 available:wrapup_done");
	assert_int_equal(K[1].idle_since, k1_free);
	enq(3);
	EXPECT("k2 ringing; offer c103 k2 #3 w0");
}

/* ---- decline ---- */

static void test_decline_reoffers_to_the_other(void **state)
{
	(void)state;
	kup(1);
	now += 1000;
	kup(2);
	now = T0 + 2000;
	enq(1);
	EXPECT("k1 ringing; offer c101 k1 #1 w0");
	now = T0 + 5000;
	kdecline(1);
	EXPECT("k1 available; k2 ringing; offer c101 k2 #2 w3");
	assert_int_equal(K[1].state, ST_AVAILABLE);
	assert_int_equal(K[1].missed, 0);
	assert_int_equal(K[1].idle_since, T0);   /* keeps their place among the idle */
	assert_null(K[1].offer);
	assert_int_equal(K[1].offer_id, 0);
	assert_string_equal(queue_str(), "c101");
	/* The decliner is free for the next person. */
	enq(2);
	EXPECT("k1 ringing; offer c102 k1 #3 w0");
	check_counts();
}

/* Declined by the only free counselor while someone younger waits: the
 * younger one is offered, the decliner keeps their place at the head and
 * gets the next counselor who frees up. */
static void test_declined_head_keeps_place(void **state)
{
	(void)state;
	kup(1);
	now += 1000;
	kup(2);
	enq(1);
	enq(2);
	EXPECT("k1 ringing; offer c101 k1 #1 w0; k2 ringing; offer c102 k2 #2 w0");
	kaccept(2);
	now += 1000;
	enq(3);
	rec.n = 0;
	now += 1000;
	kdecline(1);
	EXPECT("k1 available; k1 ringing; offer c103 k1 #3 w1");
	assert_null(C[1].offered_to);
	assert_string_equal(queue_str(), "c101 c103");
	struct matcher_stats s;
	matcher_get_stats(&M, now, &s);
	assert_int_equal(s.oldest_wait_s, 2);   /* c101 since T0 + 1000 */
	kaccept(1);
	rec.n = 0;
	now += 100000;
	matcher_counselor_session_over(&M, &K[2], 0, now);
	tick_at(now + WRAPUP);
	EXPECT("k2 wrapup; k2 available:wrapup_done; k2 ringing; offer c101 k2 #4 w162");
}

/* Never stranded: when the decliner is the only one free, they get the
 * client again at once. */
static void test_decliner_only_one_free_gets_client_again(void **state)
{
	(void)state;
	kup(1);
	enq(1);
	EXPECT("k1 ringing; offer c101 k1 #1 w0");
	now += 2000;
	kdecline(1);
	EXPECT("k1 available; k1 ringing; offer c101 k1 #2 w2");
	assert_int_equal(K[1].deadline, now + RING);
	/* A second counselor arriving meanwhile changes nothing: one offer. */
	kadd(2);
	kavail(2);
	EXPECT("k2 available:by_you");
	/* The next decline goes to the other one. */
	kdecline(1);
	EXPECT("k1 available; k2 ringing; offer c101 k2 #3 w2");
}

/* A decline is remembered for redecline_ms, exactly. */
static void run_redecline(int64_t second_decline_after, const char *want)
{
	kadd(1);
	kadd(2);
	kadd(3);
	kavail(1);
	now = T0 + 1;
	kavail(2);
	now = T0 + 2;
	kavail(3);
	now = T0 + 1000;
	enq(1);
	rec.n = 0;
	now = T0 + 2000;
	kdecline(1);
	EXPECT("k1 available; k2 ringing; offer c101 k2 #2 w1");
	now = T0 + 2000 + second_decline_after;
	kdecline(2);
	EXPECT(want);
}

static void test_redecline_remembered_within_window(void **state)
{
	(void)state;
	/* 299.999 s after k1 passed: k1 still spared, k3 gets it. */
	run_redecline(REDECL - 1, "k2 available; k3 ringing; offer c101 k3 #3 w300");
}

static void test_redecline_forgotten_after_window(void **state)
{
	(void)state;
	/* 300 s after: forgotten, k1 is idle longest again. */
	run_redecline(REDECL, "k2 available; k1 ringing; offer c101 k1 #3 w301");
}

/* ---- ring timeouts and missed offers ---- */

static void test_timeouts_then_missed_offers_away(void **state)
{
	(void)state;
	kup(1);
	enq(1);
	EXPECT("k1 ringing; offer c101 k1 #1 w0");
	assert_int_equal(matcher_next_deadline(&M), T0 + RING);
	tick_at(T0 + RING - 1);
	EXPECT("");
	tick_at(T0 + RING);
	EXPECT("gone k1 #1 timeout; k1 available; k1 ringing; offer c101 k1 #2 w30");
	assert_int_equal(K[1].missed, 1);
	assert_int_equal(matcher_next_deadline(&M), T0 + 2 * RING);
	tick_at(T0 + 2 * RING);
	EXPECT("gone k1 #2 timeout; k1 available; k1 ringing; offer c101 k1 #3 w60");
	assert_int_equal(K[1].missed, 2);
	tick_at(T0 + 3 * RING);
	EXPECT("gone k1 #3 timeout; k1 away:missed_offers");
	assert_int_equal(K[1].state, ST_AWAY);
	assert_int_equal(K[1].missed, 0);
	assert_int_equal(matcher_next_deadline(&M), INT64_MAX);
	assert_true(matcher_client_queued(&C[1]));
	assert_null(C[1].offered_to);
	struct matcher_stats s;
	matcher_get_stats(&M, now, &s);
	assert_int_equal(s.queue, 1);
	assert_int_equal(s.offered, 0);
	assert_int_equal(s.by_state[ST_AWAY], 1);
	check_counts();

	/* Back at the desk: the count starts again from zero. */
	now = T0 + 100000;
	kavail(1);
	EXPECT("k1 available:by_you; k1 ringing; offer c101 k1 #4 w100");
	tick_at(now + RING);
	tick_at(now + RING);
	EXPECT("gone k1 #4 timeout; k1 available; k1 ringing; offer c101 k1 #5 w130; "
	       "gone k1 #5 timeout; k1 available; k1 ringing; offer c101 k1 #6 w160");
	assert_int_equal(K[1].state, ST_RINGING);
	assert_int_equal(K[1].missed, 2);
}

static void test_timeout_reoffers_to_the_other(void **state)
{
	(void)state;
	kup(1);
	now += 1000;
	kup(2);
	enq(1);
	EXPECT("k1 ringing; offer c101 k1 #1 w0");
	tick_at(now + RING);
	EXPECT("gone k1 #1 timeout; k1 available; k2 ringing; offer c101 k2 #2 w30");
	assert_int_equal(K[1].missed, 1);
	assert_int_equal(K[1].idle_since, T0);
}

/* Two offers time out in one tick: each client goes to the other. */
static void test_two_timeouts_in_one_tick_swap(void **state)
{
	(void)state;
	kup(1);
	now += 1000;
	kup(2);
	enq(1);
	enq(2);
	EXPECT("k1 ringing; offer c101 k1 #1 w0; k2 ringing; offer c102 k2 #2 w0");
	tick_at(now + RING);
	EXPECT("gone k1 #1 timeout; k1 available; gone k2 #2 timeout; k2 available; "
	       "k2 ringing; offer c101 k2 #3 w30; k1 ringing; offer c102 k1 #4 w30");
}

/* A decline is a choice made at the desk, not a miss: it resets the count
 * (PROTOCOL.md, "State machines"). */
static void test_decline_resets_missed(void **state)
{
	(void)state;
	kup(1);
	enq(1);
	tick_at(now + RING);
	tick_at(now + RING);
	assert_int_equal(K[1].missed, 2);
	rec.n = 0;
	kdecline(1);
	EXPECT("k1 available; k1 ringing; offer c101 k1 #4 w60");
	assert_int_equal(K[1].missed, 0);
	tick_at(now + RING);
	tick_at(now + RING);
	assert_int_equal(K[1].state, ST_RINGING);
	assert_int_equal(K[1].missed, 2);
	rec.n = 0;
	tick_at(now + RING);
	EXPECT("gone k1 #6 timeout; k1 away:missed_offers");
}

static void test_accept_resets_missed(void **state)
{
	(void)state;
	kup(1);
	enq(1);
	tick_at(now + RING);
	tick_at(now + RING);
	assert_int_equal(K[1].missed, 2);
	kaccept(1);
	assert_int_equal(K[1].missed, 0);
	now += 300000;
	matcher_counselor_session_over(&M, &K[1], 0, now);
	tick_at(now + WRAPUP);
	enq(2);
	rec.n = 0;
	tick_at(now + RING);
	tick_at(now + RING);
	EXPECT("gone k1 #4 timeout; k1 available; k1 ringing; offer c102 k1 #5 w30; "
	       "gone k1 #5 timeout; k1 available; k1 ringing; offer c102 k1 #6 w60");
	assert_int_equal(K[1].missed, 2);
}

static void test_max_missed_one(void **state)
{
	(void)state;
	struct matcher_config cfg = default_cfg();
	cfg.max_missed = 1;
	init_with(&cfg);
	kup(1);
	now += 1000;
	kup(2);
	enq(1);
	tick_at(now + RING);
	EXPECT("k1 ringing; offer c101 k1 #1 w0; gone k1 #1 timeout; k1 away:missed_offers; "
	       "k2 ringing; offer c101 k2 #2 w30");
}

/* ---- client removal ---- */

static void test_cancel_while_offered(void **state)
{
	(void)state;
	kup(1);
	enq(1);
	tick_at(now + RING);            /* one miss on the books */
	now += 1000;
	enq(2);
	rec.n = 0;
	now += 4000;
	matcher_client_remove(&M, &C[1], now, 1);
	EXPECT("gone k1 #2 client_left; k1 available; k1 ringing; offer c102 k1 #3 w4");
	assert_false(matcher_client_queued(&C[1]));
	assert_null(C[1].offered_to);
	assert_int_equal(M.abandoned, 1);
	assert_int_equal(M.queue_len, 1);
	assert_int_equal(K[1].missed, 1);       /* neither a miss nor an answer */
	assert_int_equal(K[1].idle_since, T0);  /* keeps their idle position */
	check_counts();

	/* Nobody else waiting: back to available, no deadline left. */
	matcher_client_remove(&M, &C[2], now, 0);
	EXPECT("gone k1 #3 client_left; k1 available");
	assert_int_equal(K[1].state, ST_AVAILABLE);
	assert_null(K[1].offer);
	assert_int_equal(K[1].offer_id, 0);
	assert_int_equal(M.abandoned, 1);       /* abandoned = 0: not counted */
	assert_int_equal(matcher_next_deadline(&M), INT64_MAX);
	tick_at(now + RING);
	EXPECT("");
	check_counts();
}

static void test_remove_not_queued_is_noop(void **state)
{
	(void)state;
	kup(1);
	matcher_client_remove(&M, &C[3], now, 1);      /* never enqueued */
	EXPECT("");
	enq(1);
	kaccept(1);
	rec.n = 0;
	matcher_client_remove(&M, &C[1], now, 1);      /* in session */
	matcher_client_remove(&M, &C[1], now, 1);
	EXPECT("");
	assert_int_equal(M.abandoned, 0);
	assert_int_equal(M.queue_len, 0);
	assert_int_equal(K[1].state, ST_BUSY);
	check_counts();
}

static void test_remove_waiting_keeps_order(void **state)
{
	(void)state;
	enq(1);
	now += 1000;
	enq(2);
	now += 1000;
	enq(3);
	matcher_client_remove(&M, &C[2], now, 1);
	EXPECT("");
	assert_string_equal(queue_str(), "c101 c103");
	assert_int_equal(M.queue_len, 2);
	assert_int_equal(M.abandoned, 1);
	now += 1000;
	kadd(1);
	kavail(1);
	EXPECT("k1 available:by_you; k1 ringing; offer c101 k1 #1 w3");
}

/* ---- counselor removal ---- */

static void test_counselor_disconnect_while_ringing_requeues(void **state)
{
	(void)state;
	kup(1);
	now += 1000;
	kup(2);
	enq(1);
	enq(2);
	kaccept(2);
	rec.n = 0;
	now += 3000;
	matcher_counselor_remove(&M, &K[1], now);
	EXPECT("");             /* nobody to tell, nobody free */
	assert_false(K[1].registered);
	assert_true(matcher_client_queued(&C[1]));
	assert_null(C[1].offered_to);
	assert_int_equal(M.by_state[ST_RINGING], 0);
	assert_int_equal(M.by_state[ST_BUSY], 1);
	assert_int_equal(matcher_online(&M), 1);
	assert_int_equal(matcher_next_deadline(&M), INT64_MAX);
	check_counts();
	/* Removing twice is harmless. */
	matcher_counselor_remove(&M, &K[1], now);
	check_counts();
	now += 100000;
	matcher_counselor_session_over(&M, &K[2], 0, now);
	tick_at(now + WRAPUP);
	EXPECT("k2 wrapup; k2 available:wrapup_done; k2 ringing; offer c101 k2 #3 w163");
}

static void test_counselor_disconnect_while_ringing_rematches(void **state)
{
	(void)state;
	kup(1);
	now += 1000;
	kup(2);
	enq(1);
	EXPECT("k1 ringing; offer c101 k1 #1 w0");
	now += 2000;
	matcher_counselor_remove(&M, &K[1], now);
	EXPECT("k2 ringing; offer c101 k2 #2 w2");
	check_counts();
	/* Re-adding the same struct starts fresh, away. */
	kadd(1);
	EXPECT("");
	assert_int_equal(K[1].state, ST_AWAY);
	assert_int_equal(M.by_state[ST_AWAY], 1);
	check_counts();
}

static void test_counselor_remove_in_other_states(void **state)
{
	(void)state;
	kadd(1);                        /* away */
	kup(2);                         /* available */
	kup(3);
	enq(1);
	kaccept(2);
	matcher_counselor_session_over(&M, &K[2], 0, now + 1000);  /* wrapup */
	rec.n = 0;
	assert_int_equal(matcher_next_deadline(&M), now + 1000 + WRAPUP);
	matcher_counselor_remove(&M, &K[1], now);
	matcher_counselor_remove(&M, &K[2], now);
	matcher_counselor_remove(&M, &K[3], now);
	EXPECT("");
	assert_int_equal(matcher_online(&M), 0);
	assert_int_equal(matcher_next_deadline(&M), INT64_MAX);
	assert_true(list_empty(&M.roster));
	for (int s = 0; s < ST__COUNT; s++)
		assert_int_equal(M.by_state[s], 0);
	tick_at(now + 1000 + WRAPUP);
	EXPECT("");
}

/* ---- session over and wrap-up ---- */

static void test_wrapup_via_tick(void **state)
{
	(void)state;
	kup(1);
	enq(1);
	now = T0 + 1000;
	kaccept(1);
	rec.n = 0;
	int64_t t1 = now + 600000;
	now = t1;
	matcher_counselor_session_over(&M, &K[1], 0, now);
	EXPECT("k1 wrapup");
	assert_int_equal(K[1].state, ST_WRAPUP);
	assert_int_equal(matcher_next_deadline(&M), t1 + WRAPUP);
	now = t1 + 10000;
	enq(2);
	EXPECT("");                     /* a counselor in wrap-up is not offered */
	tick_at(t1 + WRAPUP - 1);
	EXPECT("");
	tick_at(t1 + WRAPUP);
	EXPECT("k1 available:wrapup_done; k1 ringing; offer c102 k1 #2 w50");
	assert_int_equal(K[1].idle_since, t1 + WRAPUP);
	assert_int_equal(matcher_next_deadline(&M), t1 + WRAPUP + RING);
}

static void test_wrapup_zero_goes_straight_to_available(void **state)
{
	(void)state;
	struct matcher_config cfg = default_cfg();
	cfg.wrapup_ms = 0;
	init_with(&cfg);
	kup(1);
	enq(1);
	kaccept(1);
	now += 1000;
	enq(2);
	rec.n = 0;
	now += 300000;
	matcher_counselor_session_over(&M, &K[1], 0, now);
	EXPECT("k1 available:wrapup_done; k1 ringing; offer c102 k1 #2 w300");
	assert_int_equal(K[1].idle_since, now);
	assert_int_equal(matcher_next_deadline(&M), now + RING);
}

static void test_session_over_when_not_busy_is_noop(void **state)
{
	(void)state;
	kadd(1);
	matcher_counselor_session_over(&M, &K[1], 0, now);         /* away */
	kavail(1);
	rec.n = 0;
	matcher_counselor_session_over(&M, &K[1], 0, now);         /* available */
	enq(1);
	rec.n = 0;
	matcher_counselor_session_over(&M, &K[1], 0, now);         /* ringing */
	EXPECT("");
	assert_int_equal(K[1].state, ST_RINGING);
	assert_int_equal(M.handle_ms, HANDLE);
	check_counts();
}

static void test_set_available_ends_wrapup_early(void **state)
{
	(void)state;
	kup(1);
	enq(1);
	kaccept(1);
	matcher_counselor_session_over(&M, &K[1], 0, now + 1000);
	rec.n = 0;
	now += 5000;
	kavail(1);
	EXPECT("k1 available:by_you");
	assert_int_equal(K[1].idle_since, now);
	assert_int_equal(matcher_next_deadline(&M), INT64_MAX);
	tick_at(now + WRAPUP);
	EXPECT("");
}

static void test_next_deadline_is_the_earliest(void **state)
{
	(void)state;
	kup(1);
	now += 1;
	kup(2);
	now += 1;
	kup(3);
	now = T0;
	enq(1);                         /* k1 rings until T0 + 30000 */
	now = T0 + 1000;
	enq(2);                         /* k2 rings until T0 + 31000 */
	assert_int_equal(matcher_next_deadline(&M), T0 + RING);
	now = T0 + 2000;
	kaccept(2);
	now = T0 + 5000;
	matcher_counselor_session_over(&M, &K[2], 0, now); /* wrap-up until T0 + 65000 */
	assert_int_equal(matcher_next_deadline(&M), T0 + RING);
	now = T0 + 6000;
	kaccept(1);
	assert_int_equal(matcher_next_deadline(&M), T0 + 5000 + WRAPUP);
	now = T0 + 7000;
	enq(3);                         /* k3 rings until T0 + 37000 */
	assert_int_equal(matcher_next_deadline(&M), T0 + 7000 + RING);
	rec.n = 0;
	tick_at(T0 + 7000 + RING);
	EXPECT("gone k3 #3 timeout; k3 available; k3 ringing; offer c103 k3 #4 w30");
	assert_int_equal(matcher_next_deadline(&M), T0 + 5000 + WRAPUP);
}

/* ---- set_away ---- */

static void test_set_away_while_ringing_reoffers(void **state)
{
	(void)state;
	kup(1);
	now += 1000;
	kup(2);
	enq(1);
	EXPECT("k1 ringing; offer c101 k1 #1 w0");
	now += 4000;
	kaway(1);
	EXPECT("gone k1 #1 by_you; k1 away:by_you; k2 ringing; offer c101 k2 #2 w4");
	assert_null(K[1].offer);
	assert_int_equal(K[1].missed, 0);       /* not a miss */
	assert_string_equal(queue_str(), "c101");
	check_counts();
}

static void test_set_away_while_ringing_alone(void **state)
{
	(void)state;
	kup(1);
	enq(1);
	rec.n = 0;
	kaway(1);
	EXPECT("gone k1 #1 by_you; k1 away:by_you");
	assert_null(C[1].offered_to);
	assert_true(matcher_client_queued(&C[1]));
	assert_int_equal(matcher_next_deadline(&M), INT64_MAX);
	tick_at(now + RING);
	EXPECT("");
	now += 1000;
	kavail(1);
	EXPECT("k1 available:by_you; k1 ringing; offer c101 k1 #2 w31");
}

static void test_set_away_from_available_and_wrapup(void **state)
{
	(void)state;
	kup(1);
	kaway(1);
	EXPECT("k1 away:by_you");
	assert_int_equal(M.by_state[ST_AVAILABLE], 0);
	assert_int_equal(M.by_state[ST_AWAY], 1);
	kavail(1);
	enq(1);
	kaccept(1);
	matcher_counselor_session_over(&M, &K[1], 0, now + 1000);
	rec.n = 0;
	kaway(1);
	EXPECT("k1 away:by_you");
	assert_int_equal(matcher_next_deadline(&M), INT64_MAX);
	tick_at(now + 1000 + WRAPUP);
	EXPECT("");
	assert_int_equal(K[1].state, ST_AWAY);
	check_counts();
}

/* ---- errors ---- */

static void expect_errors(int j, int avail, int away, int acc, int dec)
{
	int64_t id = K[j].offer_id;
	enum proto_state st = K[j].state;
	if (avail != 99)
		assert_int_equal(matcher_counselor_set_available(&M, &K[j], now), avail);
	if (away != 99)
		assert_int_equal(matcher_counselor_set_away(&M, &K[j], now), away);
	if (acc != 99)
		assert_int_equal(matcher_counselor_accept(&M, &K[j], id, now), acc);
	if (dec != 99)
		assert_int_equal(matcher_counselor_decline(&M, &K[j], id, now), dec);
	EXPECT("");
	assert_int_equal(K[j].state, st);
	assert_int_equal(K[j].offer_id, id);
	check_counts();
}

#define WS MATCHER_WRONG_STATE
#define SKIP 99

static void test_wrong_state_errors(void **state)
{
	(void)state;
	kadd(1);
	/* away: already away; nothing to accept or decline */
	expect_errors(1, SKIP, WS, WS, WS);
	kavail(1);
	rec.n = 0;
	/* available: offer_id 0 equals the field, still no accept */
	expect_errors(1, WS, SKIP, WS, WS);
	enq(1);
	rec.n = 0;
	/* ringing: set_available is wrong */
	expect_errors(1, WS, SKIP, SKIP, SKIP);
	assert_ptr_equal(K[1].offer, &C[1]);
	kaccept(1);
	rec.n = 0;
	/* busy: everything is wrong */
	expect_errors(1, WS, WS, WS, WS);
	matcher_counselor_session_over(&M, &K[1], 0, now + 1000);
	rec.n = 0;
	/* wrap-up: nothing to accept or decline */
	expect_errors(1, SKIP, SKIP, WS, WS);
}

static void test_no_such_offer(void **state)
{
	(void)state;
	kup(1);
	kup(2);
	enq(1);
	enq(2);
	EXPECT("k1 ringing; offer c101 k1 #1 w0; k2 ringing; offer c102 k2 #2 w0");
	/* Another counselor's offer, zero, a future id. */
	assert_int_equal(matcher_counselor_accept(&M, &K[1], 2, now), MATCHER_NO_SUCH_OFFER);
	assert_int_equal(matcher_counselor_decline(&M, &K[1], 2, now), MATCHER_NO_SUCH_OFFER);
	assert_int_equal(matcher_counselor_decline(&M, &K[1], 0, now), MATCHER_NO_SUCH_OFFER);
	assert_int_equal(matcher_counselor_accept(&M, &K[1], 3, now), MATCHER_NO_SUCH_OFFER);
	EXPECT("");
	assert_int_equal(K[1].state, ST_RINGING);
	assert_ptr_equal(K[1].offer, &C[1]);
	assert_int_equal(M.served, 0);

	/* A stale id after a timeout re-offered the same client. */
	matcher_client_remove(&M, &C[2], now, 1);
	matcher_counselor_remove(&M, &K[2], now);
	EXPECT("gone k2 #2 client_left; k2 available");
	tick_at(now + RING);
	EXPECT("gone k1 #1 timeout; k1 available; k1 ringing; offer c101 k1 #3 w30");
	assert_int_equal(matcher_counselor_accept(&M, &K[1], 1, now), MATCHER_NO_SUCH_OFFER);
	assert_int_equal(matcher_counselor_decline(&M, &K[1], 1, now), MATCHER_NO_SUCH_OFFER);
	EXPECT("");
	assert_int_equal(matcher_counselor_accept(&M, &K[1], 3, now), MATCHER_OK);
	EXPECT("k1 busy; matched c101 k1 #3");
	check_counts();
}

/* ---- the queue bound ---- */

static void test_queue_full(void **state)
{
	(void)state;
	struct matcher_config cfg = default_cfg();
	cfg.max_queue = 2;
	init_with(&cfg);
	kup(1);
	enq(1);                         /* offered, still counts */
	enq(2);
	rec.n = 0;
	assert_int_equal(enq_full(3, "grief", MODE_TEXT, 0, "", 0),
	                 MATCHER_FULL);
	EXPECT("");
	assert_false(matcher_client_queued(&C[3]));
	assert_int_equal(M.queue_len, 2);
	assert_string_equal(queue_str(), "c101 c102");
	kaccept(1);
	rec.n = 0;
	enq(3);
	EXPECT("");
	assert_string_equal(queue_str(), "c102 c103");
	assert_int_equal(enq_full(4, "grief", MODE_TEXT, 0, "", 0),
	                 MATCHER_FULL);
	matcher_client_remove(&M, &C[2], now, 1);
	enq(4);
	assert_string_equal(queue_str(), "c103 c104");
	check_counts();
}

static void test_queue_zero_always_full(void **state)
{
	(void)state;
	struct matcher_config cfg = default_cfg();
	cfg.max_queue = 0;
	init_with(&cfg);
	kup(1);
	assert_int_equal(enq_full(1, "grief", MODE_TEXT, 0, "", 0),
	                 MATCHER_FULL);
	EXPECT("");
	assert_int_equal(K[1].state, ST_AVAILABLE);
}

static void test_enqueue_copies_topic_and_mode(void **state)
{
	(void)state;
	/* Reached through a volatile pointer so the optimizer cannot see the
	 * length: it would otherwise warn (-Wstringop-truncation, an error with
	 * -Werror at -O2) about the very truncation this test checks. */
	char buf[PROTO_TOPIC_MAX + 8];
	memset(buf, 'x', sizeof buf - 1);
	buf[sizeof buf - 1] = '\0';
	const char *volatile topic = buf;
	assert_int_equal(enq_full(1, "work-stress", MODE_VOICE, 0, "", 0), MATCHER_OK);
	assert_string_equal(C[1].topic, "work-stress");
	assert_int_equal(C[1].mode, MODE_VOICE);
	assert_int_equal(C[1].since, now);
	assert_int_equal(C[1].id, CID(1));
	/* Too long is cut at PROTO_TOPIC_MAX, still terminated. */
	assert_int_equal(enq_full(2, topic, MODE_TEXT, 0, "", 0),
	                 MATCHER_OK);
	assert_int_equal(strlen(C[2].topic), PROTO_TOPIC_MAX);
}

/* A client served once and back again starts with a clean slate: an old
 * decline does not follow them into a new request. */
static void test_requeue_forgets_declines(void **state)
{
	(void)state;
	kup(1);
	now += 1000;
	kup(2);
	enq(1);
	kdecline(1);
	EXPECT("k1 ringing; offer c101 k1 #1 w0; k1 available; k2 ringing; offer c101 k2 #2 w0");
	kaccept(2);
	assert_false(matcher_client_queued(&C[1]));
	rec.n = 0;
	now += 1000;
	enq(1);
	EXPECT("k1 ringing; offer c101 k1 #3 w0");
}

/* ---- estimates (PROTOCOL.md "Estimated wait") ---- */

/* Bring counselor j to BUSY through a throwaway client. */
static void make_busy(int j, int client)
{
	kadd(j);
	kavail(j);
	enq(client);
	kaccept(j);
	rec.n = 0;
}

static void test_estimate_nobody_online(void **state)
{
	(void)state;
	/* Nobody online: assume one will come. */
	assert_int_equal(est(1), 600);
	assert_int_equal(est(2), 1200);
	kadd(1);                        /* away does not count */
	assert_int_equal(matcher_online(&M), 0);
	assert_int_equal(est(3), 1800);
}

static void test_estimate_zero_when_free(void **state)
{
	(void)state;
	kup(1);
	assert_int_equal(matcher_online(&M), 1);
	assert_int_equal(est(1), 0);
	kup(2);
	assert_int_equal(est(2), 0);
	/* Ringing still counts as free for the position it is offered to. */
	enq(1);
	enq(2);
	assert_int_equal(M.by_state[ST_RINGING], 2);
	assert_int_equal(est(1), 0);
	assert_int_equal(est(2), 0);
	/* Beyond the free ones the code counts only those not served at once:
	 * (3 - 2) x 600 s / 2 online. NOTE: PROTOCOL.md and matcher.h say
	 * "position x average / online" (900 here); see the report. */
	assert_int_equal(est(3), 300);
	assert_int_equal(est(4), 600);
}

static void test_estimate_busy_and_away(void **state)
{
	(void)state;
	make_busy(1, 1);
	make_busy(2, 2);
	assert_int_equal(matcher_online(&M), 2);
	assert_int_equal(est(1), 300);
	assert_int_equal(est(2), 600);
	assert_int_equal(est(3), 900);
	/* One goes to wrap-up then away: only one online. */
	matcher_counselor_session_over(&M, &K[2], 0, now);
	assert_int_equal(matcher_online(&M), 2);        /* wrap-up is online */
	kaway(2);
	assert_int_equal(matcher_online(&M), 1);
	/* The session fed the average: handled = 0 + 60 s wrap-up, so
	 * 600000 + (60000 - 600000) / 5 = 492000 ms. */
	assert_int_equal(M.handle_ms, 492000);
	assert_int_equal(est(1), 500);      /* 492 s -> 500 */
	assert_int_equal(est(2), 990);      /* 984 s -> 990 */
}

static void check_estimate_for(int64_t handle, uint32_t online_busy, uint32_t pos,
                               uint32_t want)
{
	struct matcher_config cfg = default_cfg();
	cfg.handle_ms = handle;
	init_with(&cfg);
	for (uint32_t j = 1; j <= online_busy; j++)
		make_busy((int)j, (int)j);
	uint32_t got = est(pos);
	if (got != want)
		fail_msg("handle %lld ms, %u busy, position %u: %u s, want %u s",
		         (long long)handle, online_busy, pos, got, want);
}

static void test_estimate_rounds_up_to_10s(void **state)
{
	(void)state;
	check_estimate_for(60000, 1, 1, 60);
	check_estimate_for(60001, 1, 1, 70);    /* 60.001 s -> 61 s -> 70 s */
	check_estimate_for(61000, 1, 1, 70);
	check_estimate_for(69999, 1, 1, 70);
	check_estimate_for(70000, 1, 1, 70);
	check_estimate_for(70001, 1, 1, 80);
	check_estimate_for(1, 1, 1, 10);
	check_estimate_for(10000, 1, 1, 10);
	check_estimate_for(10001, 1, 1, 20);
	check_estimate_for(20000, 3, 1, 10);    /* 6.667 s -> 7 s -> 10 s */
	check_estimate_for(20000, 3, 2, 20);    /* 13.333 s -> 20 */
	check_estimate_for(20000, 3, 3, 20);    /* 20 s */
	check_estimate_for(0, 0, 1, 10);        /* handle <= 0 is taken as 1 ms */
	check_estimate_for(-5, 0, 1, 10);
}

static void test_estimate_moving_average(void **state)
{
	(void)state;
	kup(1);
	enq(1);
	kaccept(1);
	now += 300000;
	matcher_counselor_session_over(&M, &K[1], 0, now);
	/* 600000 + (300000 + 60000 - 600000) / 5 */
	assert_int_equal(M.handle_ms, 552000);
	assert_int_equal(est(1), 560);       /* 552 s */
	tick_at(now + WRAPUP);
	enq(2);
	kaccept(1);
	now += 1000000;
	matcher_counselor_session_over(&M, &K[1], 0, now);
	/* 552000 + (1060000 - 552000) / 5 */
	assert_int_equal(M.handle_ms, 653600);
	assert_int_equal(est(1), 660);       /* 653.6 s -> 654 */
	assert_int_equal(est(2), 1310);      /* 1307.2 s -> 1308 */
}

static void test_estimate_average_floor(void **state)
{
	(void)state;
	struct matcher_config cfg = default_cfg();
	cfg.handle_ms = 1;
	cfg.wrapup_ms = 0;
	init_with(&cfg);
	kup(1);
	enq(1);
	kaccept(1);
	matcher_counselor_session_over(&M, &K[1], 0, now);         /* 0 ms handled */
	assert_int_equal(M.handle_ms, 1);
}

/* ---- stats ---- */

static void test_stats(void **state)
{
	(void)state;
	struct matcher_stats s;
	kadd(1);
	kup(2);
	kup(3);
	enq(1);
	now += 1000;
	enq(2);
	now += 1000;
	enq(3);
	now += 1000;
	enq(4);
	kaccept(2);
	now = T0 + 12999;
	matcher_get_stats(&M, now, &s);
	assert_int_equal(s.queue, 3);
	assert_int_equal(s.offered, 1);
	assert_int_equal(s.oldest_wait_s, 11);  /* c102 since T0 + 1000 */
	assert_int_equal(s.by_state[ST_AWAY], 1);
	assert_int_equal(s.by_state[ST_BUSY], 1);
	assert_int_equal(s.by_state[ST_RINGING], 1);
	assert_int_equal(s.by_state[ST_AVAILABLE], 0);
	assert_int_equal(s.served, 1);
	assert_int_equal(s.abandoned, 0);
	matcher_client_remove(&M, &C[2], now, 1);
	matcher_client_remove(&M, &C[3], now, 0);
	matcher_get_stats(&M, now, &s);
	assert_int_equal(s.queue, 1);
	assert_int_equal(s.offered, 1);         /* k3 now rings for c104 */
	assert_int_equal(s.oldest_wait_s, 9);
	assert_int_equal(s.abandoned, 1);
	assert_ptr_equal(K[3].offer, &C[4]);
}

/* ---- randomized invariants ----
 *
 * A model of what the matcher must do, driven by a seeded PRNG over RN_C
 * clients and RN_K counselors with a virtual clock. For each event the
 * driver predicts the exact actions the event itself causes (the prefix);
 * whatever follows must be pairs of "kN ringing; offer ..." from matching.
 * Each offer is checked when it is emitted, against the live state:
 *   - the counselor had no offer and the client none (one offer each);
 *   - the counselor is the idle-longest available one (roster order on
 *     ties) among those who have not declined/missed this client within
 *     redecline_ms, or among all available ones if all of them have;
 *   - FIFO: every older queued client without an offer has been
 *     declined/missed within redecline_ms by every counselor available at
 *     that moment (the offered one included) - the only way to be passed.
 * After each event: by_state equals a recount, queue_len the list length,
 * every offered client is queued and linked both ways, states, deadlines,
 * miss counts and idle times equal the model, nobody is left waiting
 * while a counselor is available, stats and estimates match. */

#define RN_C 10
#define RN_K 4

struct rn_k {
	int reg;
	enum proto_state st;
	int64_t idle, ring_dl, wrap_dl, offer_id, busy_since;
	int offer_c, sess_c, missed;
	uint64_t roster_seq;
};

struct rn_c {
	int queued, offered_k, in_session;
	uint64_t seq;
	int64_t since;
	int has_declined[RN_K + 1];
	int64_t declined_at[RN_K + 1];
};

static struct {
	struct matcher_config cfg;
	struct rn_k k[RN_K + 1];
	struct rn_c c[RN_C + 1];
	int64_t next_offer_id, handle;
	uint64_t seq, served, abandoned, rng, seed;
	int step;
	const char *ev;
	/* coverage, so the run cannot pass by doing nothing */
	unsigned offers, fifo_skips, decliner_again, timeouts, missed_away,
	         full, matched, client_left, wrapup_done;
} R;

#define RCHECK(cond) do { \
	if (!(cond)) \
		fail_msg("seed %llu step %d (%s) now %lld: check failed: %s (line %d)", \
		         (unsigned long long)R.seed, R.step, R.ev, (long long)now, #cond, \
		         __LINE__); \
} while (0)

static uint32_t rn_rand(uint32_t n)
{
	/* xorshift64* */
	R.rng ^= R.rng >> 12;
	R.rng ^= R.rng << 25;
	R.rng ^= R.rng >> 27;
	return (uint32_t)((R.rng * 2685821657736338717ULL) >> 33) % n;
}

static int rn_declined(int c, int k)
{
	return R.c[c].has_declined[k] && now - R.c[c].declined_at[k] < R.cfg.redecline_ms;
}

static void rn_remember(int c, int k)
{
	R.c[c].has_declined[k] = 1;
	R.c[c].declined_at[k] = now;
}

static int rn_cidx(uint32_t id)
{
	RCHECK(id >= CID(1) && id <= CID(RN_C));
	return (int)(id - CID(0));
}

static int rn_kidx(uint32_t id)
{
	RCHECK(id >= 1 && id <= RN_K);
	RCHECK(R.k[id].reg);
	return (int)id;
}

/* k is preferred to j: idle longer, or equally long and earlier in the roster. */
static int rn_before(int k, int j)
{
	return R.k[k].idle < R.k[j].idle ||
	       (R.k[k].idle == R.k[j].idle && R.k[k].roster_seq <= R.k[j].roster_seq);
}

static void rn_check_offer(const struct matcher_action *a)
{
	int c = rn_cidx(a->client), k = rn_kidx(a->counselor);
	RCHECK(R.k[k].st == ST_RINGING);        /* its MA_STATE came first */
	RCHECK(R.k[k].offer_c == 0);
	RCHECK(R.c[c].queued);
	RCHECK(R.c[c].offered_k == 0);
	RCHECK(a->offer_id == R.next_offer_id);
	RCHECK(a->waited_s == (uint32_t)((now - R.c[c].since) / 1000));
	/* the live structs agree */
	RCHECK(K[k].state == ST_RINGING && K[k].offer == &C[c] && C[c].offered_to == &K[k]);

	int cand[RN_K + 1], n = 0, any_fresh = 0;
	cand[n++] = k;
	for (int j = 1; j <= RN_K; j++)
		if (j != k && R.k[j].reg && R.k[j].st == ST_AVAILABLE)
			cand[n++] = j;
	for (int i = 0; i < n; i++)
		if (!rn_declined(c, cand[i]))
			any_fresh = 1;
	if (any_fresh)
		RCHECK(!rn_declined(c, k));
	else if (n > 1 || rn_declined(c, k))
		R.decliner_again++;
	for (int i = 1; i < n; i++)
		if (!any_fresh || !rn_declined(c, cand[i]))
			RCHECK(rn_before(k, cand[i]));

	for (int o = 1; o <= RN_C; o++) {
		if (!R.c[o].queued || R.c[o].offered_k || R.c[o].seq >= R.c[c].seq || o == c)
			continue;
		R.fifo_skips++;
		for (int i = 0; i < n; i++)
			RCHECK(rn_declined(o, cand[i]));
	}
}

static void rn_hook(const struct matcher_action *a)
{
	switch (a->type) {
	case MA_STATE: {
		int k = rn_kidx(a->counselor);
		R.k[k].st = a->state;
		break;
	}
	case MA_OFFER: {
		rn_check_offer(a);
		int c = rn_cidx(a->client), k = rn_kidx(a->counselor);
		R.k[k].offer_c = c;
		R.k[k].offer_id = a->offer_id;
		R.k[k].ring_dl = now + R.cfg.ring_ms;
		R.c[c].offered_k = k;
		R.next_offer_id++;
		R.offers++;
		break;
	}
	case MA_OFFER_GONE: {
		int k = (int)a->counselor;
		RCHECK(k >= 1 && k <= RN_K);
		RCHECK(R.k[k].offer_c != 0);
		RCHECK(a->offer_id == R.k[k].offer_id);
		R.c[R.k[k].offer_c].offered_k = 0;
		R.k[k].offer_c = 0;
		R.k[k].offer_id = 0;
		break;
	}
	case MA_MATCHED: {
		int c = rn_cidx(a->client), k = rn_kidx(a->counselor);
		RCHECK(R.k[k].offer_c == c && a->offer_id == R.k[k].offer_id);
		R.c[c].offered_k = 0;
		R.k[k].offer_c = 0;
		R.k[k].offer_id = 0;
		break;
	}
	}
}

/* Expected actions of the event itself. */
static struct matcher_action rn_exp[2 * RN_K + 4];
static int rn_nexp;

static void rn_expect(enum matcher_action_type t, int c, int k, int64_t offer_id,
                      enum proto_state st, const char *reason)
{
	struct matcher_action a = { .type = t, .client = c ? CID(c) : 0,
	                            .counselor = KID(k), .offer_id = offer_id,
	                            .state = st, .reason = reason };
	rn_exp[rn_nexp++] = a;
}

static int same_reason(const char *x, const char *y)
{
	return (!x && !y) || (x && y && strcmp(x, y) == 0);
}

/* Recorded = the expected prefix, then (ringing, offer) pairs; or nothing
 * at all when `none`. */
static void rn_check_actions(int none)
{
	char got[256], want[256];
	if (none)
		RCHECK(rec.n == 0);
	RCHECK(rec.n >= rn_nexp);
	for (int i = 0; i < rn_nexp; i++) {
		const struct matcher_action *a = &rec.a[i], *e = &rn_exp[i];
		fmt_action(got, sizeof got, a);
		fmt_action(want, sizeof want, e);
		int ok = a->type == e->type && a->counselor == e->counselor &&
		         same_reason(a->reason, e->reason);
		if (e->type == MA_STATE)
			ok = ok && a->state == e->state;
		if (e->type == MA_OFFER_GONE || e->type == MA_MATCHED)
			ok = ok && a->offer_id == e->offer_id;
		if (e->type == MA_MATCHED)
			ok = ok && a->client == e->client;
		if (!ok)
			fail_msg("seed %llu step %d (%s): action %d is \"%s\", want \"%s\"",
			         (unsigned long long)R.seed, R.step, R.ev, i, got, want);
	}
	RCHECK((rec.n - rn_nexp) % 2 == 0);
	for (int i = rn_nexp; i < rec.n; i += 2) {
		const struct matcher_action *s = &rec.a[i], *o = &rec.a[i + 1];
		RCHECK(s->type == MA_STATE && s->state == ST_RINGING && s->reason == NULL);
		RCHECK(o->type == MA_OFFER && o->counselor == s->counselor);
	}
	rec.n = 0;
	rn_nexp = 0;
}

static uint32_t rn_expected_estimate(uint32_t pos)
{
	uint32_t by[ST__COUNT] = { 0 };
	for (int j = 1; j <= RN_K; j++)
		if (R.k[j].reg)
			by[R.k[j].st]++;
	uint32_t free_now = by[ST_AVAILABLE] + by[ST_RINGING];
	if (pos <= free_now)
		return 0;
	uint32_t online = free_now + by[ST_BUSY] + by[ST_WRAPUP];
	if (online == 0)
		online = 1;
	int64_t ms = (int64_t)(pos - free_now) * R.handle / online;
	int64_t s = (ms + 999) / 1000;
	return (uint32_t)((s + 9) / 10 * 10);
}

static void rn_check_all(void)
{
	uint32_t by[ST__COUNT] = { 0 }, nreg = 0;
	int64_t next = INT64_MAX;
	for (int j = 1; j <= RN_K; j++) {
		RCHECK(K[j].registered == R.k[j].reg);
		if (!R.k[j].reg)
			continue;
		nreg++;
		by[R.k[j].st]++;
		RCHECK(K[j].state == R.k[j].st);
		RCHECK(K[j].missed == R.k[j].missed);
		RCHECK(K[j].idle_since == R.k[j].idle);
		RCHECK((K[j].state == ST_RINGING) == (K[j].offer != NULL));
		RCHECK((R.k[j].offer_c != 0) == (K[j].state == ST_RINGING));
		if (K[j].state == ST_RINGING) {
			RCHECK(K[j].offer == &C[R.k[j].offer_c]);
			RCHECK(K[j].offer->offered_to == &K[j]);
			RCHECK(matcher_client_queued(K[j].offer));
			RCHECK(K[j].offer_id == R.k[j].offer_id);
			RCHECK(K[j].deadline == R.k[j].ring_dl);
			if (R.k[j].ring_dl < next)
				next = R.k[j].ring_dl;
		}
		if (K[j].state == ST_WRAPUP) {
			RCHECK(K[j].deadline == R.k[j].wrap_dl);
			if (R.k[j].wrap_dl < next)
				next = R.k[j].wrap_dl;
		}
	}
	/* by_state: the matcher's counts, a recount of its roster, the model */
	uint32_t live[ST__COUNT] = { 0 }, nroster = 0;
	struct list *it;
	list_for_each(it, &M.roster) {
		const struct mcounselor *k = list_entry(it, struct mcounselor, link);
		RCHECK(k->registered);
		live[k->state]++;
		nroster++;
	}
	RCHECK(nroster == nreg);
	for (int s = 0; s < ST__COUNT; s++) {
		RCHECK(M.by_state[s] == live[s]);
		RCHECK(M.by_state[s] == by[s]);
	}
	/* the queue: length, order, links */
	uint32_t nq = 0, nmodel = 0, unoffered = 0;
	uint64_t last_seq = 0;
	list_for_each(it, &M.queue) {
		const struct mclient *c = list_entry(it, struct mclient, link);
		int ci = rn_cidx(c->id);
		RCHECK(c == &C[ci]);
		RCHECK(R.c[ci].queued);
		RCHECK(R.c[ci].seq > last_seq);
		last_seq = R.c[ci].seq;
		nq++;
	}
	RCHECK(nq == M.queue_len);
	int64_t oldest = INT64_MAX;
	for (int i = 1; i <= RN_C; i++) {
		RCHECK(matcher_client_queued(&C[i]) == R.c[i].queued);
		if (!R.c[i].queued)
			continue;
		nmodel++;
		if (R.c[i].since < oldest)
			oldest = R.c[i].since;
		struct mcounselor *want = R.c[i].offered_k ? &K[R.c[i].offered_k] : NULL;
		RCHECK(C[i].offered_to == want);
		int holders = 0;
		for (int j = 1; j <= RN_K; j++)
			if (K[j].registered && K[j].offer == &C[i])
				holders++;
		RCHECK(holders == (want != NULL));
		if (!want)
			unoffered++;
	}
	RCHECK(nmodel == nq);
	/* never stranded: nobody waits unoffered while a counselor is free */
	RCHECK(M.by_state[ST_AVAILABLE] == 0 || unoffered == 0);
	RCHECK(matcher_next_deadline(&M) == next);
	RCHECK(M.handle_ms == R.handle);

	struct matcher_stats s;
	matcher_get_stats(&M, now, &s);
	RCHECK(s.queue == nq);
	RCHECK(s.offered == by[ST_RINGING]);
	RCHECK(s.served == R.served);
	RCHECK(s.abandoned == R.abandoned);
	RCHECK(s.oldest_wait_s == (nq ? (uint32_t)((now - oldest) / 1000) : 0));
	RCHECK(matcher_online(&M) == by[ST_AVAILABLE] + by[ST_RINGING] + by[ST_BUSY] +
	                             by[ST_WRAPUP]);
	for (uint32_t p = 1; p <= nq + 2; p++)
		RCHECK(est(p) == rn_expected_estimate(p));
}

static int rn_pick_k(int want_state)
{
	int pool[RN_K], n = 0;
	for (int j = 1; j <= RN_K; j++)
		if (R.k[j].reg && (want_state < 0 || R.k[j].st == (enum proto_state)want_state))
			pool[n++] = j;
	return n ? pool[rn_rand((uint32_t)n)] : 0;
}

static void rn_session_over(int j)
{
	R.ev = "session_over";
	int none = R.k[j].st != ST_BUSY;
	if (!none) {
		int c = R.k[j].sess_c;
		R.c[c].in_session = 0;
		R.k[j].sess_c = 0;
		int64_t handled = now - R.k[j].busy_since + R.cfg.wrapup_ms;
		R.handle += (handled - R.handle) / 5;
		if (R.handle < 1)
			R.handle = 1;
		if (R.cfg.wrapup_ms > 0) {
			R.k[j].wrap_dl = now + R.cfg.wrapup_ms;
			rn_expect(MA_STATE, 0, j, 0, ST_WRAPUP, NULL);
		} else {
			R.k[j].idle = now;
			rn_expect(MA_STATE, 0, j, 0, ST_AVAILABLE, REASON_WRAPUP_DONE);
		}
	}
	matcher_counselor_session_over(&M, &K[j], 0, now);
	rn_check_actions(none);
}

static void rn_tick(void)
{
	R.ev = "tick";
	/* Predicted in roster order, which is the order of addition. */
	int order[RN_K], n = 0;
	for (int j = 1; j <= RN_K; j++)
		if (R.k[j].reg)
			order[n++] = j;
	for (int a = 1; a < n; a++)
		for (int b = a; b > 0 && R.k[order[b]].roster_seq < R.k[order[b - 1]].roster_seq; b--) {
			int t = order[b];
			order[b] = order[b - 1];
			order[b - 1] = t;
		}
	for (int i = 0; i < n; i++) {
		int j = order[i];
		if (R.k[j].st == ST_RINGING && R.k[j].ring_dl <= now) {
			rn_remember(R.k[j].offer_c, j);
			rn_expect(MA_OFFER_GONE, 0, j, R.k[j].offer_id, ST_NONE, REASON_TIMEOUT);
			R.timeouts++;
			if (++R.k[j].missed >= R.cfg.max_missed) {
				R.k[j].missed = 0;
				rn_expect(MA_STATE, 0, j, 0, ST_AWAY, REASON_MISSED);
				R.missed_away++;
			} else {
				rn_expect(MA_STATE, 0, j, 0, ST_AVAILABLE, NULL);
			}
		} else if (R.k[j].st == ST_WRAPUP && R.k[j].wrap_dl <= now) {
			R.k[j].idle = now;
			rn_expect(MA_STATE, 0, j, 0, ST_AVAILABLE, REASON_WRAPUP_DONE);
			R.wrapup_done++;
		}
	}
	matcher_tick(&M, now);
	rn_check_actions(0);
}

static void rn_event(void)
{
	uint32_t r = rn_rand(100);
	int j, i;
	int rc;

	if (r < 18) {                                   /* talk now */
		R.ev = "enqueue";
		int pool[RN_C], n = 0;
		for (i = 1; i <= RN_C; i++)
			if (!R.c[i].queued && !R.c[i].in_session)
				pool[n++] = i;
		if (!n)
			return;
		i = pool[rn_rand((uint32_t)n)];
		uint32_t nq = 0;
		for (int o = 1; o <= RN_C; o++)
			nq += (uint32_t)R.c[o].queued;
		int full = nq >= R.cfg.max_queue;
		if (!full) {
			memset(&R.c[i], 0, sizeof R.c[i]);
			R.c[i].queued = 1;
			R.c[i].seq = ++R.seq;
			R.c[i].since = now;
		} else {
			R.full++;
		}
		rc = enq_full(i, "anxiety", MODE_TEXT, 0, "", 0);
		RCHECK(rc == (full ? MATCHER_FULL : MATCHER_OK));
		rn_check_actions(full);
	} else if (r < 25) {                            /* cancel / disconnect */
		R.ev = "client_remove";
		i = 1 + (int)rn_rand(RN_C);
		int abandoned = (int)rn_rand(2);
		int none = !R.c[i].queued;
		if (!none) {
			int k = R.c[i].offered_k;
			R.c[i].queued = 0;
			R.abandoned += (uint64_t)abandoned;
			if (k) {
				rn_expect(MA_OFFER_GONE, 0, k, R.k[k].offer_id, ST_NONE,
				          REASON_CLIENT_LEFT);
				rn_expect(MA_STATE, 0, k, 0, ST_AVAILABLE, NULL);
				R.client_left++;
			}
		}
		matcher_client_remove(&M, &C[i], now, abandoned);
		rn_check_actions(none);
	} else if (r < 37) {                            /* set available */
		R.ev = "set_available";
		if (!(j = rn_pick_k(-1)))
			return;
		int ok = R.k[j].st == ST_AWAY || R.k[j].st == ST_WRAPUP;
		if (ok) {
			R.k[j].idle = now;
			R.k[j].missed = 0;
			rn_expect(MA_STATE, 0, j, 0, ST_AVAILABLE, REASON_BY_YOU);
		}
		rc = matcher_counselor_set_available(&M, &K[j], now);
		RCHECK(rc == (ok ? MATCHER_OK : MATCHER_WRONG_STATE));
		rn_check_actions(!ok);
	} else if (r < 42) {                            /* set away */
		R.ev = "set_away";
		if (!(j = rn_pick_k(-1)))
			return;
		enum proto_state st = R.k[j].st;
		int ok = st == ST_RINGING || st == ST_AVAILABLE || st == ST_WRAPUP;
		if (st == ST_RINGING) {
			rn_remember(R.k[j].offer_c, j);
			rn_expect(MA_OFFER_GONE, 0, j, R.k[j].offer_id, ST_NONE, REASON_BY_YOU);
		}
		if (ok)
			rn_expect(MA_STATE, 0, j, 0, ST_AWAY, REASON_BY_YOU);
		rc = matcher_counselor_set_away(&M, &K[j], now);
		RCHECK(rc == (ok ? MATCHER_OK : MATCHER_WRONG_STATE));
		rn_check_actions(!ok);
	} else if (r < 66) {                            /* accept / decline */
		int accept = r < 56;
		R.ev = accept ? "accept" : "decline";
		j = rn_rand(5) ? rn_pick_k(ST_RINGING) : 0;
		if (!j && !(j = rn_pick_k(-1)))
			return;
		int64_t id = R.k[j].offer_id;
		int err = MATCHER_OK;
		if (R.k[j].st != ST_RINGING) {
			err = MATCHER_WRONG_STATE;
			id = rn_rand(2) ? 0 : R.next_offer_id - 1;
		} else if (rn_rand(10) == 0) {
			err = MATCHER_NO_SUCH_OFFER;
			uint32_t how = rn_rand(3);
			id = how == 0 ? 0 : how == 1 ? id + 1 + rn_rand(3) : id - 1 - rn_rand(3);
		}
		if (!err) {
			int c = R.k[j].offer_c;
			R.k[j].missed = 0;
			if (accept) {
				R.c[c].queued = 0;
				R.c[c].in_session = 1;
				R.k[j].sess_c = c;
				R.k[j].busy_since = now;
				R.served++;
				R.matched++;
				rn_expect(MA_STATE, 0, j, 0, ST_BUSY, NULL);
				rn_expect(MA_MATCHED, c, j, id, ST_NONE, NULL);
			} else {
				/* no action withdraws a declined offer: unlink here */
				rn_remember(c, j);
				R.c[c].offered_k = 0;
				R.k[j].offer_c = 0;
				R.k[j].offer_id = 0;
				rn_expect(MA_STATE, 0, j, 0, ST_AVAILABLE, NULL);
			}
		}
		rc = accept ? matcher_counselor_accept(&M, &K[j], id, now)
		            : matcher_counselor_decline(&M, &K[j], id, now);
		RCHECK(rc == err);
		rn_check_actions(err != MATCHER_OK);
		if (accept && !err)
			RCHECK(!matcher_client_queued(&C[R.k[j].sess_c]));
	} else if (r < 78) {                            /* session over */
		if (!(j = rn_pick_k(rn_rand(4) ? ST_BUSY : -1)))
			return;
		rn_session_over(j);
	} else if (r < 86) {
		rn_tick();
	} else if (r < 90) {                            /* counselor disconnects */
		if (!(j = rn_pick_k(-1)))
			return;
		if (R.k[j].st == ST_BUSY)               /* the hub ends the session first */
			rn_session_over(j);
		rn_check_all();
		R.ev = "counselor_remove";
		if (R.k[j].st == ST_RINGING) {
			int c = R.k[j].offer_c;
			rn_remember(c, j);
			R.c[c].offered_k = 0;
			R.k[j].offer_c = 0;
			R.k[j].offer_id = 0;
		}
		R.k[j].reg = 0;
		matcher_counselor_remove(&M, &K[j], now);
		rn_check_actions(0);
	} else {                                        /* counselor connects */
		R.ev = "counselor_add";
		j = 1 + (int)rn_rand(RN_K);
		if (R.k[j].reg)
			return;
		memset(&R.k[j], 0, sizeof R.k[j]);
		R.k[j].reg = 1;
		R.k[j].st = ST_AWAY;
		R.k[j].idle = now;
		R.k[j].roster_seq = ++R.seq;
		kadd(j);
		rn_check_actions(1);
	}
}

static void rn_run(const struct matcher_config *cfg, uint64_t seed, int steps)
{
	init_with(cfg);
	memset(&R, 0, sizeof R);
	R.cfg = *cfg;
	R.seed = seed;
	R.rng = seed * 0x9E3779B97F4A7C15ULL + 1;
	R.next_offer_id = 1;
	R.handle = cfg->handle_ms > 0 ? cfg->handle_ms : 1;
	rec.hook = rn_hook;
	for (R.step = 0; R.step < steps; R.step++) {
		now += rn_rand(4000);
		int64_t nd = matcher_next_deadline(&M);
		if (nd <= now && rn_rand(5)) {
			rn_tick();                      /* the timer, mostly on time */
		} else if (nd != INT64_MAX && nd > now && rn_rand(10) == 0) {
			now = nd;                       /* exactly on the deadline */
			rn_tick();
		} else {
			rn_event();
		}
		rn_check_all();
	}
	rec.hook = NULL;
}

static void test_random_invariants(void **state)
{
	(void)state;
	struct matcher_config cfgs[] = {
		{ .ring_ms = 20000, .wrapup_ms = 30000, .handle_ms = 600000,
		  .redecline_ms = 60000, .max_missed = 2, .max_queue = 8 },
		{ .ring_ms = 15000, .wrapup_ms = 0, .handle_ms = 300000,
		  .redecline_ms = 0, .max_missed = 1, .max_queue = 10 },
		{ .ring_ms = 25000, .wrapup_ms = 15000, .handle_ms = 900000,
		  .redecline_ms = 600000, .max_missed = 3, .max_queue = 3 },
	};
	unsigned offers = 0, skips = 0, again = 0, timeouts = 0, away = 0, full = 0,
	         matched = 0, left = 0, wrapped = 0;
	for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
		for (uint64_t seed = 1; seed <= 4; seed++) {
			rn_run(&cfgs[ci], seed + 100 * ci, 3000);
			offers += R.offers;
			skips += R.fifo_skips;
			again += R.decliner_again;
			timeouts += R.timeouts;
			away += R.missed_away;
			full += R.full;
			matched += R.matched;
			left += R.client_left;
			wrapped += R.wrapup_done;
		}
	}
	print_message("random: %u offers, %u matched, %u timeouts, %u missed_offers, "
	              "%u FIFO passes, %u decliner re-offers, %u client_left, "
	              "%u wrap-ups, %u full\n", offers, matched, timeouts, away, skips,
	              again, left, wrapped, full);
	/* The run exercised every path it claims to check. */
	assert_true(offers > 1000);
	assert_true(matched > 100);
	assert_true(timeouts > 50);
	assert_true(away > 10);
	assert_true(skips > 10);
	assert_true(again > 10);
	assert_true(left > 10);
	assert_true(wrapped > 10);
	assert_true(full > 10);
}

/* Calls the hub never makes are refused, not allowed to corrupt counts:
 * a client queued twice, a removed counselor used again. */
static void test_stale_calls_refused(void **state)
{
	(void)state;
	enq(0);
	assert_int_equal(enq_full(0, "grief", MODE_TEXT, 0, "", 0), MATCHER_WRONG_STATE);
	assert_int_equal(M.queue_len, 1);
	kup(0);
	kaccept(0);
	matcher_counselor_remove(&M, &K[0], now);
	rec.n = 0;
	matcher_counselor_session_over(&M, &K[0], 0, now);
	assert_int_equal(matcher_counselor_set_available(&M, &K[0], now), MATCHER_WRONG_STATE);
	assert_int_equal(matcher_counselor_set_away(&M, &K[0], now), MATCHER_WRONG_STATE);
	assert_int_equal(rec.n, 0);
	assert_int_equal(M.by_state[ST_BUSY], 0);
	assert_int_equal(matcher_online(&M), 0);
}

/* A client who lost their connection keeps their place but is offered to
 * nobody: a ringing offer is withdrawn (not the counselor's miss), the
 * next client is served; back, they are first again. */
static void test_client_away_keeps_place(void **state)
{
	(void)state;
	kup(0);
	enq(0);
	EXPECT("k0 ringing; offer c100 k0 #1 w0");
	enq(1);
	EXPECT("");
	matcher_client_away(&M, &C[0], 1, now);
	EXPECT("gone k0 #1 client_left; k0 available; k0 ringing; offer c101 k0 #2 w0");
	assert_string_equal(queue_str(), "c100 c101");
	kdecline(0);
	/* Nobody else waits who is here: c101 again, never the one away. */
	EXPECT("k0 available; k0 ringing; offer c101 k0 #3 w0");
	assert_int_equal(K[0].missed, 0);
	matcher_client_away(&M, &C[0], 0, now);
	EXPECT("");
	kdecline(0);
	EXPECT("k0 available; k0 ringing; offer c100 k0 #4 w0");
	/* Away twice or back twice changes nothing. */
	matcher_client_away(&M, &C[0], 0, now);
	EXPECT("");
}

#define T(f) cmocka_unit_test_setup(f, setup)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_init_empty),
		T(test_client_away_keeps_place),
		T(test_crisis_not_held),
		T(test_counselor_starts_away_and_is_not_offered),
		T(test_fifo_three_clients_two_counselors),
		T(test_idle_longest_gets_the_client),
		T(test_crisis_goes_first),
		T(test_crisis_wrapup),
		T(test_shift_sessions_limit),
		T(test_shift_hours_limit),
		T(test_break),
		T(test_topic_prefers_skilled),
		T(test_topic_wait_then_anyone),
		T(test_topic_skilled_frees_in_time),
		T(test_topic_no_wait_for_nobody),
		T(test_previous_offered_first),
		T(test_previous_held_and_kept),
		T(test_previous_falls_back),
		T(test_idle_tie_goes_to_roster_order),
		T(test_idle_restarts_after_wrapup),
		T(test_decline_reoffers_to_the_other),
		T(test_declined_head_keeps_place),
		T(test_decliner_only_one_free_gets_client_again),
		T(test_redecline_remembered_within_window),
		T(test_redecline_forgotten_after_window),
		T(test_timeouts_then_missed_offers_away),
		T(test_timeout_reoffers_to_the_other),
		T(test_two_timeouts_in_one_tick_swap),
		T(test_decline_resets_missed),
		T(test_accept_resets_missed),
		T(test_max_missed_one),
		T(test_cancel_while_offered),
		T(test_remove_not_queued_is_noop),
		T(test_remove_waiting_keeps_order),
		T(test_counselor_disconnect_while_ringing_requeues),
		T(test_counselor_disconnect_while_ringing_rematches),
		T(test_counselor_remove_in_other_states),
		T(test_wrapup_via_tick),
		T(test_wrapup_zero_goes_straight_to_available),
		T(test_session_over_when_not_busy_is_noop),
		T(test_set_available_ends_wrapup_early),
		T(test_next_deadline_is_the_earliest),
		T(test_set_away_while_ringing_reoffers),
		T(test_set_away_while_ringing_alone),
		T(test_set_away_from_available_and_wrapup),
		T(test_wrong_state_errors),
		T(test_no_such_offer),
		T(test_queue_full),
		T(test_queue_zero_always_full),
		T(test_enqueue_copies_topic_and_mode),
		T(test_requeue_forgets_declines),
		T(test_estimate_nobody_online),
		T(test_estimate_zero_when_free),
		T(test_estimate_busy_and_away),
		T(test_estimate_rounds_up_to_10s),
		T(test_estimate_moving_average),
		T(test_estimate_average_floor),
		T(test_stats),
		T(test_stale_calls_refused),
		T(test_random_invariants),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
