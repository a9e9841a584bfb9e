/* test_badinput.c - every kind of bad input gets its documented error code,
 * the connection stays usable where PROTOCOL.md says so, and a session
 * running alongside is never disturbed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "../../server/auth.h"

#define T H_TIMEOUT_MS

static const char *const args[] = { "--msg-rate", "20", "--msg-burst", "40",
	                             "--auth-timeout", "2", NULL };
static struct h_server srv;
/* A live session that every test checks still works. */
static struct h_peer *sc, *sk;
static int64_t chat_id;

static void check_session_alive(void)
{
	struct proto_msg m = { .type = PT_MSG, .id = ++chat_id };
	snprintf(m.text, sizeof m.text, "still here %lld", (long long)chat_id);
	assert_int_equal(h_send(sc, &m), 0);
	const struct proto_msg *r = h_wait(sk, PT_MSG, T);
	assert_non_null(r);
	assert_string_equal(r->text, m.text);
	assert_non_null(h_wait(sc, PT_SENT, T));
}

static int setup(void **state)
{
	(void)state;
	h_init();
	if (h_server_start(&srv, args) != 0)
		return -1;
	sk = h_join(&srv, "steady-counselor", ROLE_COUNSELOR,
	            h_token(ROLE_COUNSELOR, "steady", "Steady", NULL, 600));
	sc = h_join(&srv, "steady-client", ROLE_CLIENT, NULL);
	if (!sk || !sc)
		return -1;
	struct proto_msg m = { .type = PT_SET_STATE, .state = ST_AVAILABLE };
	h_send(sk, &m);
	struct proto_msg t = { .type = PT_TALK_NOW, .mode = MODE_TEXT };
	strcpy(t.topic, "general");
	h_send(sc, &t);
	const struct proto_msg *o = h_wait(sk, PT_OFFER, T);
	if (!o)
		return -1;
	struct proto_msg a = { .type = PT_ACCEPT, .offer_id = o->offer_id };
	h_send(sk, &a);
	return h_wait(sc, PT_SESSION_START, T) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	h_peer_free(sc);
	h_peer_free(sk);
	int rc = h_server_stop(&srv);
	h_fini();
	return rc == 0 ? 0 : -1;
}

static struct h_peer *client(const char *name)
{
	struct h_peer *p = h_join(&srv, name, ROLE_CLIENT, NULL);
	assert_non_null(p);
	return p;
}

/* Send `json` and expect error `code`, then prove the connection still
 * answers a valid message. */
static void expect_error_keeps_open(struct h_peer *p, const char *json, const char *code)
{
	h_send_json(p, json);
	const struct proto_msg *e = h_wait(p, PT_ERROR, T);
	if (!e)
		fail_msg("no error for %s", json);
	if (strcmp(e->code, code) != 0)
		fail_msg("for %s: expected %s, got %s (%s)", json, code, e->code, e->reason);
	assert_true(strlen(e->reason) > 0);
}

static void test_malformed(void **state)
{
	(void)state;
	struct h_peer *p = client("malformed");
	expect_error_keeps_open(p, "{not json", "bad_json");
	expect_error_keeps_open(p, "[1,2,3]", "bad_json");
	expect_error_keeps_open(p, "\"type\"", "bad_json");
	expect_error_keeps_open(p, "{\"no_type\":1}", "bad_json");
	expect_error_keeps_open(p, "{\"type\":\"fly_away\"}", "unknown_type");
	expect_error_keeps_open(p, "{\"type\":\"talk_now\",\"mode\":\"text\"}", "bad_field");
	expect_error_keeps_open(p, "{\"type\":\"talk_now\",\"topic\":\"Bad Topic!\",\"mode\":\"text\"}",
	                        "bad_field");
	expect_error_keeps_open(p, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"video\"}",
	                        "bad_field");
	expect_error_keeps_open(p, "{\"type\":\"rate\",\"score\":6}", "bad_field");
	expect_error_keeps_open(p, "{\"type\":\"rate\",\"score\":\"5\"}", "bad_field");
	expect_error_keeps_open(p, "{\"type\":\"typing\",\"on\":1}", "bad_field");
	/* The error names the message it answers. */
	h_send_json(p, "{\"type\":\"accept\",\"offer_id\":-4}");
	const struct proto_msg *e = h_wait(p, PT_ERROR, T);
	assert_non_null(e);
	assert_string_equal(e->code, "bad_field");
	assert_string_equal(e->ref, "accept");
	/* Still a working client: it can queue and cancel. */
	h_send_json(p, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}");
	assert_non_null(h_wait(p, PT_QUEUE, T));
	h_send_json(p, "{\"type\":\"cancel\"}");
	assert_non_null(h_wait(p, PT_CANCELLED, T));
	h_peer_free(p);
	check_session_alive();
}

static void test_sizes(void **state)
{
	(void)state;
	struct h_peer *p = client("sizes");
	/* A frame over max-message-bytes (8192) is refused, the connection
	 * stays open. */
	size_t big = 9000;
	char *buf = malloc(big + 64);
	assert_non_null(buf);
	int n = snprintf(buf, big + 64, "{\"type\":\"msg\",\"id\":1,\"text\":\"");
	memset(buf + n, 'a', big - (size_t)n - 2);
	memcpy(buf + big - 2, "\"}", 2);
	h_send_raw(p, buf, big, 0);
	assert_string_equal(h_wait_error(p, T), "too_large");
	/* Text over max-text-bytes (4000) in a frame under the bound. */
	n = snprintf(buf, big + 64, "{\"type\":\"msg\",\"id\":1,\"text\":\"");
	memset(buf + n, 'b', 4001);
	memcpy(buf + n + 4001, "\"}", 3);
	h_send_json(p, buf);
	assert_string_equal(h_wait_error(p, T), "too_large");
	/* Binary frames carry voice, only in a voice session. */
	h_send_raw(p, "\x80\x00\x01\x02", 4, 1);
	assert_string_equal(h_wait_error(p, T), "wrong_state");
	h_send_json(p, "{\"type\":\"cancel\"}");
	assert_string_equal(h_wait_error(p, T), "wrong_state");
	/* Far past the bound (64x) the connection is closed with 1009. */
	size_t huge = 8192 * 65;
	char *h = malloc(huge);
	assert_non_null(h);
	memset(h, ' ', huge);
	h[0] = '{';
	h[huge - 1] = '}';
	h_send_raw(p, h, huge, 0);
	assert_int_equal(h_wait_closed(p, T), 1009);
	free(h);
	free(buf);
	h_peer_free(p);
	check_session_alive();
}

static void test_roles_and_states(void **state)
{
	(void)state;
	struct h_peer *c = client("roles-client");
	struct h_peer *k = h_join(&srv, "roles-counselor", ROLE_COUNSELOR,
	                          h_token(ROLE_COUNSELOR, "roles-k", NULL, NULL, 600));
	assert_non_null(k);
	/* Wrong role. */
	expect_error_keeps_open(c, "{\"type\":\"accept\",\"offer_id\":1}", "wrong_role");
	expect_error_keeps_open(c, "{\"type\":\"subscribe\"}", "wrong_role");
	expect_error_keeps_open(c, "{\"type\":\"set_state\",\"state\":\"available\"}", "wrong_role");
	expect_error_keeps_open(k, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}",
	                        "wrong_role");
	expect_error_keeps_open(k, "{\"type\":\"rate\",\"score\":3}", "wrong_role");
	/* Messages only the server sends. */
	expect_error_keeps_open(c, "{\"type\":\"welcome\",\"role\":\"client\",\"sub\":\"x\","
	                           "\"name\":\"\",\"state\":\"idle\",\"slot_s\":1200,\"ring_s\":20,"
	                           "\"version\":1}", "wrong_role");
	expect_error_keeps_open(c, "{\"type\":\"queue\",\"position\":1,\"wait_s\":0,\"counselors\":0}",
	                        "wrong_role");
	/* Wrong state. */
	expect_error_keeps_open(c, "{\"type\":\"msg\",\"id\":1,\"text\":\"hi\"}", "wrong_state");
	expect_error_keeps_open(c, "{\"type\":\"end\"}", "wrong_state");
	expect_error_keeps_open(c, "{\"type\":\"cancel\"}", "wrong_state");
	expect_error_keeps_open(c, "{\"type\":\"rate\",\"score\":4}", "wrong_state");
	expect_error_keeps_open(k, "{\"type\":\"accept\",\"offer_id\":1}", "wrong_state");
	expect_error_keeps_open(k, "{\"type\":\"set_state\",\"state\":\"away\"}", "wrong_state");
	expect_error_keeps_open(k, "{\"type\":\"ack\",\"seq\":1}", "wrong_state");
	/* A second talk_now while waiting. */
	h_send_json(c, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}");
	assert_non_null(h_wait(c, PT_QUEUE, T));
	expect_error_keeps_open(c, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}",
	                        "wrong_state");
	/* An offer that is not this counselor's. */
	h_send_json(k, "{\"type\":\"set_state\",\"state\":\"available\"}");
	const struct proto_msg *o = h_wait(k, PT_OFFER, T);
	assert_non_null(o);
	int64_t offer_id = o->offer_id; /* o lives only until the next wait */
	char bad[96];
	snprintf(bad, sizeof bad, "{\"type\":\"accept\",\"offer_id\":%lld}", (long long)offer_id + 7);
	expect_error_keeps_open(k, bad, "no_such_offer");
	/* Acks for messages never sent are refused. */
	snprintf(bad, sizeof bad, "{\"type\":\"accept\",\"offer_id\":%lld}", (long long)offer_id);
	h_send_json(k, bad);
	assert_non_null(h_wait(c, PT_SESSION_START, T));
	expect_error_keeps_open(k, "{\"type\":\"ack\",\"seq\":3}", "bad_field");
	expect_error_keeps_open(k, "{\"type\":\"msg\",\"text\":\"no id\"}", "bad_field");
	h_peer_free(c);
	assert_string_equal(h_wait(k, PT_SESSION_END, T)->reason, "peer_left");
	h_peer_free(k);
	check_session_alive();
}

static void test_auth(void **state)
{
	(void)state;
	struct h_peer *p = h_connect(&srv, "pre-hello");
	assert_non_null(p);
	expect_error_keeps_open(p, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}",
	                        "not_authenticated");
	h_send_json(p, "{\"type\":\"hello\",\"role\":\"client\"}");
	assert_non_null(h_wait(p, PT_WELCOME, T));
	expect_error_keeps_open(p, "{\"type\":\"hello\",\"role\":\"client\"}", "already_authenticated");
	h_peer_free(p);

	char expired[PROTO_TOKEN_MAX + 1], wrong_sig[PROTO_TOKEN_MAX + 1], wrong_role[PROTO_TOKEN_MAX + 1];
	struct auth_identity id = { .role = ROLE_COUNSELOR };
	strcpy(id.sub, "eve");
	assert_int_equal(auth_mint(&id, "earshot-dev-secret-do-not-use-in-production",
	                           (int64_t)time(NULL) - 7200, 60, expired, sizeof expired), 0);
	assert_int_equal(auth_mint(&id, "some-other-secret-of-enough-length-1234",
	                           (int64_t)time(NULL), 600, wrong_sig, sizeof wrong_sig), 0);
	snprintf(wrong_role, sizeof wrong_role, "%s", h_token(ROLE_CLIENT, "eve", NULL, NULL, 600));
	/* {"alg":"none","typ":"JWT"} . {"sub":"eve","role":"counselor","exp":4102444800} . */
	const char *unsigned_tok = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
	                           "eyJzdWIiOiJldmUiLCJyb2xlIjoiY291bnNlbG9yIiwiZXhwIjo0MTAyNDQ0ODAwfQ.";
	const struct { const char *name, *json_role, *token, *code; } cases[] = {
		{ "expired", "counselor", expired, "token_expired" },
		{ "wrong-sig", "counselor", wrong_sig, "token_bad_signature" },
		{ "wrong-role", "counselor", wrong_role, "token_wrong_role" },
		{ "unsigned", "counselor", unsigned_tok, "token_unsigned" },
		{ "garbage", "counselor", "not.a.jwt", "token_malformed" },
		{ "no-token", "counselor", NULL, "auth_required" },
	};
	for (int i = 0; i < 6; i++) {
		struct h_peer *q = h_connect(&srv, cases[i].name);
		assert_non_null(q);
		char hello[PROTO_TOKEN_MAX + 128];
		if (cases[i].token)
			snprintf(hello, sizeof hello, "{\"type\":\"hello\",\"role\":\"%s\",\"token\":\"%s\"}",
			         cases[i].json_role, cases[i].token);
		else
			snprintf(hello, sizeof hello, "{\"type\":\"hello\",\"role\":\"%s\"}", cases[i].json_role);
		h_send_json(q, hello);
		const char *code = h_wait_error(q, T);
		if (strcmp(code, cases[i].code) != 0)
			fail_msg("%s: expected %s, got '%s'", cases[i].name, cases[i].code, code);
		assert_int_equal(h_wait_closed(q, T), 1008);
		h_peer_free(q);
	}
	/* Silence after connecting: closed after auth-timeout (2 s). */
	struct h_peer *mute = h_connect(&srv, "mute");
	assert_non_null(mute);
	assert_int_equal(h_wait_closed(mute, 4000), 1008);
	h_peer_free(mute);
	check_session_alive();
}

static void test_flood(void **state)
{
	(void)state;
	struct h_peer *p = client("flooder");
	/* 200 messages at once: what is left of the burst (40, less the hello)
	 * passes, the rest are dropped with rate_limited, reported at most
	 * once a second. */
	for (int i = 0; i < 200; i++)
		h_send_json(p, "{\"type\":\"cancel\"}");
	int wrong_state = 0, limited = 0;
	const struct proto_msg *m;
	while ((m = h_wait(p, PT_ERROR, 1000)) != NULL) {
		if (strcmp(m->code, "wrong_state") == 0)
			wrong_state++;
		else if (strcmp(m->code, "rate_limited") == 0)
			limited++;
	}
	assert_in_range(wrong_state, 38, 60);
	assert_int_equal(limited, 1);
	/* After a pause the client is served normally. */
	h_pump(1000);
	h_send_json(p, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}");
	assert_non_null(h_wait(p, PT_QUEUE, T));
	check_session_alive();
	/* Flooding on for more than 5 s closes the connection (1008). */
	int code = -1;
	for (int i = 0; i < 80 && code < 0; i++) {
		for (int j = 0; j < 30; j++)
			h_send_json(p, "{\"type\":\"typing\",\"on\":true}");
		code = h_wait_closed(p, 100);
	}
	assert_int_equal(code, 1008);
	h_peer_free(p);
	check_session_alive();
}

static void test_replaced(void **state)
{
	(void)state;
	const char *tok = h_token(ROLE_COUNSELOR, "twice", "Twice", NULL, 600);
	char copy[PROTO_TOKEN_MAX + 1];
	snprintf(copy, sizeof copy, "%s", tok);
	struct h_peer *first = h_join(&srv, "first-tab", ROLE_COUNSELOR, copy);
	assert_non_null(first);
	struct h_peer *second = h_join(&srv, "second-tab", ROLE_COUNSELOR, copy);
	assert_non_null(second);
	assert_string_equal(h_wait_error(first, T), "replaced");
	assert_int_equal(h_wait_closed(first, T), 1008);
	/* The new tab is the counselor now. */
	h_send_json(second, "{\"type\":\"set_state\",\"state\":\"available\"}");
	const struct proto_msg *s = h_wait(second, PT_STATE, T);
	assert_non_null(s);
	assert_int_equal(s->state, ST_AVAILABLE);
	h_peer_free(first);
	h_peer_free(second);
	check_session_alive();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_roles_and_states),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_flood),
		cmocka_unit_test(test_replaced),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
