/* test_redis.c - nodes sharing presence and one queue through a real
 * redis-server: a whole session on one node; one queue across two nodes
 * (FIFO, positions and offers cross nodes); a node killed with -9 and its
 * presence gone within the bound; Redis restarted under a node, with the
 * queue intact and sessions carrying on meanwhile; ratings taken on two
 * nodes counted together. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "harness.h"

#define T H_TIMEOUT_MS

static struct h_redis redis;
static char url[80];   /* each test its own database, so counts start at 0 */

static void fresh_db(int db)
{
	snprintf(url, sizeof url, "redis://127.0.0.1:%d/%d", redis.port, db);
}

static int setup(void **state)
{
	(void)state;
	h_init();
	return h_redis_start(&redis);
}

static int teardown(void **state)
{
	(void)state;
	h_redis_stop(&redis);
	h_fini();
	return 0;
}

/* A node on the test's Redis, named `node`, with `extra` arguments. */
static void node_start(struct h_server *s, const char *node, const char *extra)
{
	const char *args[24] = { "--redis", url, "--node-id", node, "--presence-ttl", "1",
		                 "--log-level", "debug", "--ring-timeout", "5", "--wrapup", "0" };
	int n = 12;
	char buf[128];
	snprintf(buf, sizeof buf, "%s", extra ? extra : "");
	for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && n < 23;
	     t = strtok_r(NULL, " ", &save))
		args[n++] = t;
	args[n] = NULL;
	assert_int_equal(h_server_start(s, args), 0);
	/* Ready once the node has registered: its presence key is in Redis,
	 * which /healthz tells as plain "ok". */
	char body[128];
	for (int i = 0; i < 200; i++) {
		if (h_http_get(s->port, "/healthz", body, sizeof body) == 200 &&
		    strcmp(body, "ok\n") == 0)
			return;
		h_pump(25);
	}
	fail_msg("node %s never reached Redis", node);
}

static const struct proto_msg *expect(struct h_peer *p, enum proto_type t)
{
	const struct proto_msg *m = h_wait(p, t, T);
	if (!m)
		fail_msg("expected '%s'", proto_type_name(t));
	return m;
}

static struct h_peer *counselor(const struct h_server *s, const char *sub)
{
	struct h_peer *k = h_join(s, sub, ROLE_COUNSELOR, h_token(ROLE_COUNSELOR, sub, sub, NULL, 600));
	assert_non_null(k);
	return k;
}

static void set_state(struct h_peer *k, enum proto_state st)
{
	struct proto_msg m = { .type = PT_SET_STATE, .state = st };
	assert_int_equal(h_send(k, &m), 0);
}

static struct h_peer *client_waiting(const struct h_server *s, const char *name,
                                     uint32_t position)
{
	struct h_peer *c = h_join(s, name, ROLE_CLIENT, NULL);
	assert_non_null(c);
	assert_int_equal(h_send_json(c, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}"), 0);
	for (;;) {
		const struct proto_msg *q = expect(c, PT_QUEUE);
		if (q->position == position)
			return c;
	}
}

static int64_t answer(struct h_peer *k, int accept)
{
	const struct proto_msg *o = expect(k, PT_OFFER);
	int64_t id = o->offer_id;
	struct proto_msg m = { .type = accept ? PT_ACCEPT : PT_DECLINE, .offer_id = id };
	assert_int_equal(h_send(k, &m), 0);
	return id;
}

/* GET /stats until `want` appears in it (the figures come from Redis
 * about four times a second). */
static void stats_until(const struct h_server *s, const char *want)
{
	char body[4096];
	for (int i = 0; i < 240; i++) {
		if (h_http_get(s->port, "/stats", body, sizeof body) == 200 && strstr(body, want))
			return;
		h_pump(25);
	}
	fail_msg("/stats never had %s; last: %s", want, body);
}

static void test_one_node_journey(void **state)
{
	(void)state;
	struct h_server a;
	fresh_db(1);
	node_start(&a, "solo", NULL);
	struct h_peer *c = client_waiting(&a, "c", 1);
	struct h_peer *k = counselor(&a, "k1");
	set_state(k, ST_AVAILABLE);
	answer(k, 0);                       /* declined: offered again, nobody else is free */
	answer(k, 1);
	const struct proto_msg *s = expect(c, PT_SESSION_START);
	assert_string_equal(s->topic, "grief");
	expect(k, PT_SESSION_START);
	assert_int_equal(h_send_json(c, "{\"type\":\"msg\",\"id\":1,\"text\":\"hello\"}"), 0);
	assert_string_equal(expect(k, PT_MSG)->text, "hello");
	assert_int_equal(h_send_json(k, "{\"type\":\"end\"}"), 0);
	assert_string_equal(expect(c, PT_SESSION_END)->reason, "ended_by_counselor");
	stats_until(&a, "\"available\":1,");
	stats_until(&a, "\"served\":1,");
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&a), 0);
}

static void test_one_queue_two_nodes(void **state)
{
	(void)state;
	struct h_server a, b;
	fresh_db(2);
	node_start(&a, "alpha", NULL);
	node_start(&b, "beta", NULL);
	struct h_peer *c1 = client_waiting(&a, "c1", 1);
	struct h_peer *c2 = client_waiting(&b, "c2", 2);   /* second in the one queue */
	stats_until(&a, "\"queue\":2,");

	/* A counselor on beta is offered alpha's client first: FIFO holds
	 * across nodes. Declined, the next person (on beta) comes. */
	struct h_peer *kb = counselor(&b, "kb");
	set_state(kb, ST_AVAILABLE);
	const struct proto_msg *o = expect(kb, PT_OFFER);
	int64_t first = o->offer_id;
	struct proto_msg d = { .type = PT_DECLINE, .offer_id = first };
	assert_int_equal(h_send(kb, &d), 0);
	int64_t second = answer(kb, 1);
	assert_true(second > first);
	expect(c2, PT_SESSION_START);
	expect(kb, PT_SESSION_START);
	assert_int_equal(expect(c1, PT_QUEUE)->position, 1);

	/* A counselor on alpha takes alpha's client. */
	struct h_peer *ka = counselor(&a, "ka");
	set_state(ka, ST_AVAILABLE);
	answer(ka, 1);
	expect(c1, PT_SESSION_START);
	stats_until(&a, "\"busy\":2,");
	stats_until(&b, "\"served\":2,");
	/* Each node's own figures, summed for the service and listed by node. */
	stats_until(&a, "\"sessions\":2,");
	stats_until(&b, "\"sessions\":2,");
	stats_until(&b, "\"nodes\":[{\"node\":\"alpha\",\"sessions\":1,");
	stats_until(&a, "{\"node\":\"beta\",\"sessions\":1,");
	stats_until(&b, "\"queue\":0,");
	h_peer_free(c1);
	h_peer_free(c2);
	h_peer_free(ka);
	h_peer_free(kb);
	assert_int_equal(h_server_stop(&a), 0);
	assert_int_equal(h_server_stop(&b), 0);
}

static void test_node_killed(void **state)
{
	(void)state;
	struct h_server a, b;
	fresh_db(3);
	node_start(&a, "steady", NULL);
	node_start(&b, "doomed", NULL);
	struct h_peer *cb = client_waiting(&b, "cb", 1);
	struct h_peer *ca = client_waiting(&a, "ca", 2);
	struct h_peer *kb = counselor(&b, "kb");
	stats_until(&a, "\"away\":1}");
	h_server_kill(&b);
	/* Its presence lapses after 1 s; the next tick anywhere sweeps it: its
	 * counselor and waiting client go, and alpha's client moves up. */
	assert_int_equal(expect(ca, PT_QUEUE)->position, 1);
	stats_until(&a, "\"away\":0}");
	stats_until(&a, "\"queue\":1,");
	stats_until(&a, "\"abandoned\":1,");
	h_peer_free(cb);
	h_peer_free(kb);
	h_peer_free(ca);
	assert_int_equal(h_server_stop(&a), 0);
}

static void test_redis_restart(void **state)
{
	(void)state;
	struct h_server a;
	fresh_db(4);
	node_start(&a, "patient", NULL);
	struct h_peer *k0 = counselor(&a, "k0");
	struct h_peer *c0 = client_waiting(&a, "c0", 1);
	set_state(k0, ST_AVAILABLE);
	answer(k0, 1);
	expect(c0, PT_SESSION_START);
	struct h_peer *c1 = client_waiting(&a, "c1", 1);
	struct h_peer *k1 = counselor(&a, "k1");
	stats_until(&a, "\"queue\":1,");

	h_redis_halt(&redis);
	char body[128] = "";
	for (int i = 0; i < 200 && strcmp(body, "ok, store unavailable\n") != 0; i++) {
		h_http_get(a.port, "/healthz", body, sizeof body);
		h_pump(25);
	}
	assert_string_equal(body, "ok, store unavailable\n");
	/* New arrivals are told plainly; the session in progress goes on. */
	struct h_peer *late = h_join(&a, "late", ROLE_CLIENT, NULL);
	assert_int_equal(h_send_json(late, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}"), 0);
	assert_string_equal(h_wait_error(late, T), "store_unavailable");
	set_state(k1, ST_AVAILABLE);
	assert_string_equal(h_wait_error(k1, T), "store_unavailable");
	assert_int_equal(h_send_json(c0, "{\"type\":\"msg\",\"id\":1,\"text\":\"still here\"}"), 0);
	assert_string_equal(expect(k0, PT_MSG)->text, "still here");
	assert_int_equal(h_send_json(k0, "{\"type\":\"end\"}"), 0);
	expect(c0, PT_SESSION_END);

	/* Back: the waiting client kept their place, and the counselor whose
	 * session ended meanwhile is free again. */
	assert_int_equal(h_redis_restart(&redis), 0);
	for (int i = 0; i < 400 && strcmp(body, "ok\n") != 0; i++) {
		h_http_get(a.port, "/healthz", body, sizeof body);
		h_pump(25);
	}
	assert_string_equal(body, "ok\n");
	stats_until(&a, "\"queue\":1,");
	answer(k0, 1);
	expect(c1, PT_SESSION_START);
	h_peer_free(late);
	h_peer_free(c0);
	h_peer_free(c1);
	h_peer_free(k0);
	h_peer_free(k1);
	assert_int_equal(h_server_stop(&a), 0);
}

static void start_session_across(const struct h_server *a, const struct h_server *b,
                                 struct h_peer **c, struct h_peer **k, const char *ksub)
{
	*c = client_waiting(a, "c", 1);
	*k = counselor(b, ksub);
	set_state(*k, ST_AVAILABLE);
	answer(*k, 1);
	const struct proto_msg *s = expect(*c, PT_SESSION_START);
	assert_string_equal(s->name, ksub);     /* the counselor's name, from the other node */
	expect(*k, PT_SESSION_START);
}

static void test_text_across_nodes(void **state)
{
	(void)state;
	struct h_server a, b;
	fresh_db(5);
	node_start(&a, "host", NULL);
	node_start(&b, "owner", NULL);
	struct h_peer *c, *k;
	start_session_across(&a, &b, &c, &k, "kim");

	assert_int_equal(h_send_json(c, "{\"type\":\"typing\",\"on\":true}"), 0);
	assert_true(expect(k, PT_TYPING)->on);
	assert_int_equal(h_send_json(c, "{\"type\":\"msg\",\"id\":1,\"text\":\"from far away\"}"), 0);
	const struct proto_msg *m = expect(k, PT_MSG);
	assert_string_equal(m->text, "from far away");
	char ack[96];
	snprintf(ack, sizeof ack, "{\"type\":\"ack\",\"seq\":%lld}", (long long)m->seq);
	assert_int_equal(h_send_json(k, ack), 0);
	int64_t seq = m->seq;
	assert_int_equal(expect(c, PT_DELIVERED)->seq, seq);
	assert_int_equal(h_send_json(k, "{\"type\":\"msg\",\"id\":7,\"text\":\"I hear you\"}"), 0);
	assert_string_equal(expect(c, PT_MSG)->text, "I hear you");

	/* The counselor ends it; the client's own node takes the rating. */
	assert_int_equal(h_send_json(k, "{\"type\":\"end\"}"), 0);
	const struct proto_msg *e = expect(c, PT_SESSION_END);
	assert_string_equal(e->reason, "ended_by_counselor");
	assert_non_null(strstr(e->referral, "emergency"));
	assert_int_equal(h_send_json(c, "{\"type\":\"rate\",\"score\":5}"), 0);
	expect(c, PT_RATED);
	stats_until(&a, "\"ratings\":{\"count\":1,");

	/* Again, and this time the client leaves mid-session. */
	assert_int_equal(h_send_json(c, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}"), 0);
	answer(k, 1);
	expect(c, PT_SESSION_START);
	expect(k, PT_SESSION_START);
	h_peer_free(c);
	assert_string_equal(expect(k, PT_SESSION_END)->reason, "peer_left");
	h_peer_free(k);
	assert_int_equal(h_server_stop(&a), 0);
	assert_int_equal(h_server_stop(&b), 0);
}

/* A crisis flagged by the person on node A in a session run by node B:
 * both told, the slot no longer ends it, and operators on A see it (from
 * B's figures) until it ends. */
static void test_crisis_across_nodes(void **state)
{
	(void)state;
	struct h_server a, b;
	fresh_db(9);
	node_start(&a, "host", "--time-scale 300 --slot-length 15m --goodbye-grace 5s");
	node_start(&b, "owner", "--time-scale 300 --slot-length 15m --goodbye-grace 5s");
	struct h_peer *c, *k;
	start_session_across(&a, &b, &c, &k, "kim");
	assert_int_equal(h_send_json(c, "{\"type\":\"crisis\"}"), 0);
	const struct proto_msg *m = expect(c, PT_CRISIS);
	assert_string_equal(m->who, "you");
	assert_non_null(strstr(m->referral, "emergency"));
	assert_string_equal(expect(k, PT_CRISIS)->who, "peer");
	stats_until(&a, "\"counselor\":\"kim\",\"since_s\":");
	assert_null(h_wait(c, PT_SESSION_END, 4000));    /* the 3 s slot has passed */
	assert_int_equal(h_send_json(c, "{\"type\":\"end\"}"), 0);
	assert_string_equal(expect(k, PT_SESSION_END)->reason, "ended_by_client");
	stats_until(&a, "\"crises\":[]");
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&a), 0);
	assert_int_equal(h_server_stop(&b), 0);
}

/* The offer ringing at `k`, accepted; returns whether it said "talked
 * before". */
static int accept_next(struct h_peer *k)
{
	const struct proto_msg *o = expect(k, PT_OFFER);
	int before = o->talked_before;
	struct proto_msg m = { .type = PT_ACCEPT, .offer_id = o->offer_id };
	assert_int_equal(h_send(k, &m), 0);
	return before;
}

static void state_becomes(struct h_peer *k, enum proto_state st)
{
	while (expect(k, PT_STATE)->state != st)
		;
}

static void away_and_back(struct h_peer *k)
{
	set_state(k, ST_AWAY);
	assert_int_equal(expect(k, PT_STATE)->state, ST_AWAY);
	set_state(k, ST_AVAILABLE);
	assert_int_equal(expect(k, PT_STATE)->state, ST_AVAILABLE);
}

/* The matching preferences hold across nodes: a person on node A who
 * talked with ann (on node B) and asks for her again gets her, though bob
 * on A idled longer, and ann sees they talked before; a grief specialist
 * on B is preferred over a generalist on A; and whom they talked with is
 * kept in Redis under a pseudonym, never under the person's id. */
static void test_preferences_across_nodes(void **state)
{
	(void)state;
	struct h_server a, b;
	fresh_db(8);
	node_start(&a, "near", "--topic-wait 30 --previous-wait 30");
	node_start(&b, "far", "--topic-wait 30 --previous-wait 30");
	struct h_peer *ann = h_join(&b, "ann", ROLE_COUNSELOR,
	                            h_token(ROLE_COUNSELOR, "ann", "Ann", "grief", 600));
	assert_non_null(ann);
	set_state(ann, ST_AVAILABLE);
	expect(ann, PT_STATE);
	struct h_peer *c = h_join(&a, "p", ROLE_CLIENT, h_token(ROLE_CLIENT, "person-7", "", NULL, 600));
	assert_non_null(c);
	const char *again = "{\"type\":\"talk_now\",\"topic\":\"work\",\"mode\":\"text\",\"previous\":true}";
	assert_int_equal(h_send_json(c, again), 0);   /* nobody to ask for yet */
	assert_int_equal(accept_next(ann), 0);
	expect(c, PT_SESSION_START);
	assert_int_equal(h_send_json(ann, "{\"type\":\"end\"}"), 0);
	expect(c, PT_SESSION_END);
	state_becomes(ann, ST_AVAILABLE);

	struct h_peer *bob = counselor(&a, "bob");
	set_state(bob, ST_AVAILABLE);
	expect(bob, PT_STATE);
	h_pump(20);
	away_and_back(ann);                            /* bob has idled longest */
	assert_int_equal(h_send_json(c, again), 0);
	assert_int_equal(accept_next(ann), 1);
	assert_null(h_wait(bob, PT_OFFER, 300));
	expect(c, PT_SESSION_START);
	assert_int_equal(h_send_json(c, "{\"type\":\"end\"}"), 0);
	expect(c, PT_SESSION_END);
	state_becomes(ann, ST_AVAILABLE);

	away_and_back(ann);
	struct h_peer *d = h_join(&a, "d", ROLE_CLIENT, NULL);
	assert_int_equal(h_send_json(d, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}"), 0);
	assert_int_equal(accept_next(ann), 0);
	expect(d, PT_SESSION_START);
	assert_null(h_wait(bob, PT_OFFER, 300));

	char cmd[160], out[512] = "";
	snprintf(cmd, sizeof cmd, "redis-cli -p %d -n 8 --scan --pattern 'earshot:prev:*'", redis.port);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t n = fread(out, 1, sizeof out - 1, f);
	out[n] = '\0';
	pclose(f);
	/* Two people talked with ann: two keys of 32 hex digits each. */
	assert_int_equal(strlen(out), 2 * (strlen("earshot:prev:") + 32 + 1));
	assert_null(strstr(out, "person-7"));
	h_peer_free(d);
	h_peer_free(bob);
	h_peer_free(ann);
	h_peer_free(c);
	assert_int_equal(h_server_stop(&a), 0);
	assert_int_equal(h_server_stop(&b), 0);
}

/* The feedback a counselor or an operator asks for on one node. */
static const struct proto_ratings *ask_ratings(struct h_peer *p)
{
	assert_int_equal(h_send_json(p, "{\"type\":\"ratings\"}"), 0);
	return expect(p, PT_RATINGS)->ratings;
}

/* kim, on node A, talks with a person on A about grief, then with one on
 * B about work (a session across nodes, rated on B, the person's node):
 * kim's figures and comments and both topics are the same seen from
 * either node, and so is the service's count and mean. */
static void test_ratings_across_nodes(void **state)
{
	(void)state;
	struct h_server a, b;
	fresh_db(10);
	node_start(&a, "east", NULL);
	node_start(&b, "west", NULL);
	struct h_peer *kim = counselor(&a, "kim");
	set_state(kim, ST_AVAILABLE);
	struct h_peer *c1 = client_waiting(&a, "c1", 1);
	answer(kim, 1);
	expect(c1, PT_SESSION_START);
	assert_int_equal(h_send_json(kim, "{\"type\":\"end\"}"), 0);
	expect(c1, PT_SESSION_END);
	assert_int_equal(h_send_json(c1, "{\"type\":\"rate\",\"score\":5,\"comment\":\"east\"}"), 0);
	expect(c1, PT_RATED);

	struct h_peer *c2 = h_join(&b, "c2", ROLE_CLIENT, NULL);
	assert_non_null(c2);
	assert_int_equal(h_send_json(c2, "{\"type\":\"talk_now\",\"topic\":\"work\",\"mode\":\"text\"}"),
	                 0);
	answer(kim, 1);
	expect(c2, PT_SESSION_START);
	assert_int_equal(h_send_json(kim, "{\"type\":\"end\"}"), 0);
	expect(c2, PT_SESSION_END);
	assert_int_equal(h_send_json(c2, "{\"type\":\"rate\",\"score\":3,\"comment\":\"west\"}"), 0);
	expect(c2, PT_RATED);

	const struct proto_ratings *r = ask_ratings(kim);
	assert_int_equal(r->ncounselors, 1);
	assert_string_equal(r->counselors[0].name, "kim");
	assert_int_equal(r->counselors[0].count, 2);
	assert_true(r->counselors[0].mean == 4.0);
	assert_memory_equal(r->counselors[0].hist, ((const uint32_t[5]){ 0, 0, 1, 0, 1 }),
	                    5 * sizeof(uint32_t));
	assert_int_equal(r->ncomments, 2);
	assert_string_equal(r->comments[0], "west");
	assert_string_equal(r->comments[1], "east");

	struct h_peer *op = h_join(&b, "op", ROLE_OPERATOR, h_token(ROLE_OPERATOR, "op", "", NULL, 600));
	assert_non_null(op);
	r = ask_ratings(op);
	assert_int_equal(r->ncounselors, 1);
	assert_int_equal(r->counselors[0].count, 2);
	assert_int_equal(r->ncomments, 0);
	assert_int_equal(r->ntopics, 2);
	assert_string_equal(r->topics[0].name, "grief");
	assert_true(r->topics[0].mean == 5.0);
	assert_string_equal(r->topics[1].name, "work");   /* carried from the other node */
	assert_int_equal(r->topics[1].count, 1);
	assert_int_equal(r->topics[1].hist[2], 1);
	stats_until(&a, "\"ratings\":{\"count\":2,\"mean\":4.0}");
	stats_until(&b, "\"ratings\":{\"count\":2,\"mean\":4.0}");
	h_peer_free(op);
	h_peer_free(c1);
	h_peer_free(c2);
	h_peer_free(kim);
	assert_int_equal(h_server_stop(&a), 0);
	assert_int_equal(h_server_stop(&b), 0);
}

static void test_session_node_killed(void **state)
{
	(void)state;
	struct h_server a, b;
	fresh_db(6);
	node_start(&a, "stays", NULL);
	node_start(&b, "falls", NULL);
	struct h_peer *c, *k;
	start_session_across(&a, &b, &c, &k, "kit");
	/* The session's node dies: the client hears it plainly, and can ask
	 * again at once. */
	h_server_kill(&b);
	assert_string_equal(expect(c, PT_SESSION_END)->reason, "peer_left");
	assert_int_equal(h_send_json(c, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}"), 0);
	assert_int_equal(expect(c, PT_QUEUE)->position, 1);
	h_peer_free(c);
	h_peer_free(k);

	/* The client's node dies: the counselor's session ends. */
	node_start(&b, "rises", NULL);
	start_session_across(&b, &a, &c, &k, "kat");
	h_server_kill(&b);
	assert_string_equal(expect(k, PT_SESSION_END)->reason, "peer_left");
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&a), 0);
}

static void test_unreachable_client_node(void **state)
{
	(void)state;
	struct h_server a, b;
	fresh_db(7);
	/* Node a says it can be reached where nothing listens. */
	node_start(&a, "hidden", "--advertise-url ws://127.0.0.1:1/ws");
	node_start(&b, "seeker", NULL);
	struct h_peer *c = client_waiting(&a, "c", 1);
	struct h_peer *k = counselor(&b, "kip");
	set_state(k, ST_AVAILABLE);
	answer(k, 1);
	/* The session cannot reach the person: it ends for the counselor, and
	 * the person, who never heard of it, keeps their place: offered again. */
	expect(k, PT_SESSION_START);
	assert_string_equal(expect(k, PT_SESSION_END)->reason, "peer_left");
	expect(k, PT_OFFER);
	stats_until(&a, "\"queue\":1,");
	assert_null(h_wait(c, PT_SESSION_START, 200));
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&a), 0);
	assert_int_equal(h_server_stop(&b), 0);
}

/* A person resumes on another node than the one they first connected to:
 * their place in line, then (dropped again, back on the first node) their
 * session run by a third party's node, with what they had not read. */
static void test_resume_across_nodes(void **state)
{
	(void)state;
	struct h_server a, b;
	fresh_db(12);
	node_start(&a, "home", NULL);
	node_start(&b, "other", NULL);
	struct h_peer *c = client_waiting(&a, "c", 1);
	char token[PROTO_RESUME_MAX + 1];
	strcpy(token, h_welcome(c)->resume);
	stats_until(&b, "\"node\":\"home\"");   /* b knows where a is */
	h_drop(c);
	c = h_resume(&b, "c on b", ROLE_CLIENT, NULL, token);
	assert_non_null(c);
	assert_int_equal(h_welcome(c)->resumed, 1);
	assert_int_equal(h_welcome(c)->state, ST_WAITING);
	assert_string_equal(h_welcome(c)->resume, token);   /* still at home on a */
	assert_int_equal(expect(c, PT_QUEUE)->position, 1);

	struct h_peer *k = counselor(&b, "kim");
	set_state(k, ST_AVAILABLE);
	answer(k, 1);
	expect(c, PT_SESSION_START);
	expect(k, PT_SESSION_START);
	assert_int_equal(h_send_json(k, "{\"type\":\"msg\",\"id\":1,\"text\":\"one\"}"), 0);
	assert_int_equal(expect(c, PT_MSG)->seq, 1);
	assert_int_equal(h_send_json(c, "{\"type\":\"ack\",\"seq\":1}"), 0);
	assert_int_equal(expect(k, PT_DELIVERED)->seq, 1);
	assert_int_equal(h_send_json(c, "{\"type\":\"msg\",\"id\":1,\"text\":\"hello\"}"), 0);
	assert_string_equal(expect(k, PT_MSG)->text, "hello");

	h_drop(c);
	expect(k, PT_PEER_LOST);
	assert_int_equal(h_send_json(k, "{\"type\":\"msg\",\"id\":2,\"text\":\"two\"}"), 0);
	c = h_resume(&a, "c on a", ROLE_CLIENT, NULL, token);
	assert_non_null(c);
	assert_int_equal(h_welcome(c)->resumed, 1);
	assert_int_equal(h_welcome(c)->state, ST_IN_SESSION);
	const struct proto_msg *st = expect(c, PT_SESSION_START);
	assert_int_equal(st->resumed, 1);
	assert_int_equal(st->last_id, 1);
	const struct proto_msg *m = expect(c, PT_MSG);
	assert_int_equal(m->seq, 2);
	assert_string_equal(m->text, "two");
	assert_null(h_wait(c, PT_MSG, 300));      /* "one" was read: not again */
	expect(k, PT_PEER_BACK);
	assert_int_equal(h_send_json(k, "{\"type\":\"end\"}"), 0);
	assert_string_equal(expect(c, PT_SESSION_END)->reason, "ended_by_counselor");
	assert_int_equal(h_send_json(c, "{\"type\":\"rate\",\"score\":4}"), 0);
	expect(c, PT_RATED);
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&a), 0);
	assert_int_equal(h_server_stop(&b), 0);
}

/* The counselor of a session across nodes resumes on the person's node:
 * their session, and their state after it, reach them there. */
static void test_counselor_resumes_elsewhere(void **state)
{
	(void)state;
	struct h_server a, b;
	fresh_db(13);
	node_start(&a, "host", NULL);
	node_start(&b, "owner", NULL);
	struct h_peer *c, *k;
	start_session_across(&a, &b, &c, &k, "kim");
	char token[PROTO_RESUME_MAX + 1], tok[PROTO_TOKEN_MAX + 1];
	strcpy(token, h_welcome(k)->resume);
	strcpy(tok, h_token(ROLE_COUNSELOR, "kim", "kim", NULL, 600));
	stats_until(&a, "\"node\":\"owner\"");
	h_drop(k);
	expect(c, PT_PEER_LOST);
	k = h_resume(&a, "kim on a", ROLE_COUNSELOR, tok, token);
	assert_non_null(k);
	assert_int_equal(h_welcome(k)->resumed, 1);
	assert_int_equal(h_welcome(k)->state, ST_BUSY);
	assert_int_equal(expect(k, PT_SESSION_START)->resumed, 1);
	expect(c, PT_PEER_BACK);
	assert_int_equal(h_send_json(c, "{\"type\":\"msg\",\"id\":1,\"text\":\"are you there\"}"), 0);
	assert_string_equal(expect(k, PT_MSG)->text, "are you there");
	assert_int_equal(h_send_json(k, "{\"type\":\"msg\",\"id\":1,\"text\":\"yes\"}"), 0);
	assert_string_equal(expect(c, PT_MSG)->text, "yes");
	assert_int_equal(h_send_json(k, "{\"type\":\"end\"}"), 0);
	expect(c, PT_SESSION_END);
	expect(k, PT_SESSION_END);
	assert_int_equal(expect(k, PT_STATE)->state, ST_AVAILABLE);   /* from Redis, through b */
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&a), 0);
	assert_int_equal(h_server_stop(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_node_journey),
		cmocka_unit_test(test_one_queue_two_nodes),
		cmocka_unit_test(test_node_killed),
		cmocka_unit_test(test_redis_restart),
		cmocka_unit_test(test_text_across_nodes),
		cmocka_unit_test(test_preferences_across_nodes),
		cmocka_unit_test(test_crisis_across_nodes),
		cmocka_unit_test(test_ratings_across_nodes),
		cmocka_unit_test(test_session_node_killed),
		cmocka_unit_test(test_unreachable_client_node),
		cmocka_unit_test(test_resume_across_nodes),
		cmocka_unit_test(test_counselor_resumes_elsewhere),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
