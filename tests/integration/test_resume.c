/* test_resume.c - resume after a dropped connection, through the real
 * server: a person whose connection drops (no close frame) keeps their
 * place in line, not offered meanwhile, or their session, whose other side
 * is told; coming back with the resume token from `welcome` restores it
 * (the session with its remaining time, what they had not acknowledged and
 * nothing they had, fresh SRTP keys); after the grace the place or the
 * session is let go. Runs on both backends (the Makefile's REDIS_PARITY);
 * across nodes: test_redis. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "harness.h"

#define T H_TIMEOUT_MS

static const char *const ARGS[] = { "--wrapup", "0", NULL };
/* A short grace, to see it run out. */
static const char *const SHORT[] = { "--wrapup", "0", "--resume-grace", "1", NULL };

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

static void available(struct h_peer *k)
{
	h_send_json(k, "{\"type\":\"set_state\",\"state\":\"available\"}");
	assert_int_equal(expect(k, PT_STATE)->state, ST_AVAILABLE);
}

static struct h_peer *person(const struct h_server *s, const char *sub)
{
	struct h_peer *c = h_join(s, sub, ROLE_CLIENT, h_token(ROLE_CLIENT, sub, "", NULL, 600));
	assert_non_null(c);
	return c;
}

static void talk_now(struct h_peer *c, const char *topic, const char *mode)
{
	char m[128];
	snprintf(m, sizeof m, "{\"type\":\"talk_now\",\"topic\":\"%s\",\"mode\":\"%s\"}", topic, mode);
	h_send_json(c, m);
}

static void answer(struct h_peer *k, const struct proto_msg *offer, const char *how)
{
	char m[80];
	snprintf(m, sizeof m, "{\"type\":\"%s\",\"offer_id\":%lld}", how, (long long)offer->offer_id);
	h_send_json(k, m);
}

static void chat(struct h_peer *p, int64_t id, const char *text)
{
	struct proto_msg m = { .type = PT_MSG, .id = id };
	snprintf(m.text, sizeof m.text, "%s", text);
	assert_int_equal(h_send(p, &m), 0);
	assert_int_equal(expect(p, PT_SENT)->id, id);
}

static void ack(struct h_peer *p, int64_t seq)
{
	struct proto_msg m = { .type = PT_ACK, .seq = seq };
	h_send(p, &m);
}

static void stats_until(const struct h_server *s, const char *want)
{
	char body[16384];
	for (int i = 0; i < 100; i++) {
		assert_int_equal(h_http_get(s->port, "/stats", body, sizeof body), 200);
		if (strstr(body, want))
			return;
		h_pump(50);
	}
	fail_msg("/stats never had '%s': %s", want, body);
}

/* A counselor and a person in a session of `mode`; the person's resume
 * token in `token`. */
static void in_session(const struct h_server *s, const char *mode, struct h_peer **k,
                       struct h_peer **c, char *token)
{
	*k = counselor(s, "kim");
	available(*k);
	*c = person(s, "pat");
	strcpy(token, h_welcome(*c)->resume);
	assert_true(token[0] != '\0');
	talk_now(*c, "grief", mode);
	answer(*k, expect(*k, PT_OFFER), "accept");
	expect(*c, PT_SESSION_START);
	expect(*k, PT_SESSION_START);
}

/* The place in line is kept but not offered while the person is away;
 * back, they are first again. */
static void test_place_kept(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, ARGS), 0);
	struct h_peer *k = counselor(&s, "kim");
	struct h_peer *c1 = person(&s, "first");
	const struct proto_msg *w = h_welcome(c1);
	assert_int_equal(w->grace_s, 30);
	char token[PROTO_RESUME_MAX + 1];
	strcpy(token, w->resume);
	talk_now(c1, "grief", "text");
	assert_int_equal(expect(c1, PT_QUEUE)->position, 1);
	struct h_peer *c2 = person(&s, "second");
	talk_now(c2, "study", "text");
	assert_int_equal(expect(c2, PT_QUEUE)->position, 2);

	h_drop(c1);
	h_pump(200);
	available(k);
	const struct proto_msg *o = expect(k, PT_OFFER);
	assert_string_equal(o->topic, "study");        /* not the one who is away */
	struct proto_msg offer = *o;

	c1 = h_resume(&s, "first again", ROLE_CLIENT, h_token(ROLE_CLIENT, "first", "", NULL, 600),
	              token);
	assert_non_null(c1);
	w = h_welcome(c1);
	assert_int_equal(w->resumed, 1);
	assert_int_equal(w->state, ST_WAITING);
	assert_string_equal(w->resume, token);
	assert_int_equal(expect(c1, PT_QUEUE)->position, 1);
	answer(k, &offer, "decline");
	assert_string_equal(expect(k, PT_OFFER)->topic, "grief");   /* first in line, back */
	h_peer_free(c1);
	h_peer_free(c2);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&s), 0);
}

/* After the grace the place is let go; the token then restores nothing. */
static void test_place_let_go(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, SHORT), 0);
	struct h_peer *c = person(&s, "pat");
	char token[PROTO_RESUME_MAX + 1];
	strcpy(token, h_welcome(c)->resume);
	talk_now(c, "grief", "text");
	expect(c, PT_QUEUE);
	h_drop(c);
	stats_until(&s, "\"abandoned\":1");
	stats_until(&s, "\"queue\":0");
	c = h_resume(&s, "pat again", ROLE_CLIENT, h_token(ROLE_CLIENT, "pat", "", NULL, 600), token);
	assert_non_null(c);
	assert_int_equal(h_welcome(c)->resumed, 0);
	assert_int_equal(h_welcome(c)->state, ST_IDLE);
	h_peer_free(c);
	assert_int_equal(h_server_stop(&s), 0);
}

/* Closing on purpose (close code 1000) is leaving: nothing is kept. */
static void test_deliberate_close(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, ARGS), 0);
	struct h_peer *c = person(&s, "pat");
	talk_now(c, "grief", "text");
	expect(c, PT_QUEUE);
	h_peer_free(c);
	stats_until(&s, "\"abandoned\":1");
	assert_int_equal(h_server_stop(&s), 0);
}

/* The session goes on while the person is away, the counselor is told;
 * back, the person gets the session with its remaining time and exactly
 * the messages they had not acknowledged, and a message they send again
 * is not relayed twice. */
static void test_session_resumed(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, ARGS), 0);
	struct h_peer *k, *c;
	char token[PROTO_RESUME_MAX + 1];
	in_session(&s, "text", &k, &c, token);
	chat(k, 1, "one");
	chat(k, 2, "two");
	assert_int_equal(expect(c, PT_MSG)->seq, 1);
	assert_int_equal(expect(c, PT_MSG)->seq, 2);
	ack(c, 1);
	assert_int_equal(expect(k, PT_DELIVERED)->seq, 1);
	chat(c, 7, "from the person");
	assert_int_equal(expect(k, PT_MSG)->seq, 1);
	ack(k, 1);
	h_pump(100);

	h_drop(c);
	assert_int_equal(expect(k, PT_PEER_LOST)->grace_s, 30);
	chat(k, 3, "three");
	c = h_resume(&s, "pat again", ROLE_CLIENT, h_token(ROLE_CLIENT, "pat", "", NULL, 600), token);
	assert_non_null(c);
	assert_int_equal(h_welcome(c)->resumed, 1);
	assert_int_equal(h_welcome(c)->state, ST_IN_SESSION);
	const struct proto_msg *st = expect(c, PT_SESSION_START);
	assert_int_equal(st->resumed, 1);
	assert_true(st->remaining_s > 0 && st->remaining_s <= st->slot_s);
	assert_int_equal(st->last_id, 7);
	assert_int_equal(st->acked, 1);
	assert_string_equal(st->name, "kim");
	const struct proto_msg *m = expect(c, PT_MSG);
	assert_int_equal(m->seq, 2);                   /* not 1: that one was acknowledged */
	assert_string_equal(m->text, "two");
	m = expect(c, PT_MSG);
	assert_int_equal(m->seq, 3);
	assert_string_equal(m->text, "three");
	expect(k, PT_PEER_BACK);

	struct proto_msg again = { .type = PT_MSG, .id = 7 };
	snprintf(again.text, sizeof again.text, "from the person");
	h_send(c, &again);
	assert_string_equal(h_wait_error(c, T), "duplicate");
	chat(c, 8, "still here");
	m = expect(k, PT_MSG);
	assert_int_equal(m->seq, 2);
	assert_string_equal(m->text, "still here");
	h_send_json(c, "{\"type\":\"end\"}");
	assert_string_equal(expect(k, PT_SESSION_END)->reason, "ended_by_client");
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&s), 0);
}

/* Nobody back within the grace: the other side's session ends. */
static void test_session_let_go(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, SHORT), 0);
	struct h_peer *k, *c;
	char token[PROTO_RESUME_MAX + 1];
	in_session(&s, "text", &k, &c, token);
	h_drop(c);
	assert_int_equal(expect(k, PT_PEER_LOST)->grace_s, 1);
	assert_string_equal(expect(k, PT_SESSION_END)->reason, "peer_left");
	assert_int_equal(expect(k, PT_STATE)->state, ST_AVAILABLE);
	char body[4096];
	assert_int_equal(h_http_get(s.port, "/metrics", body, sizeof body), 200);
	assert_non_null(strstr(body, "earshot_resume_expired_total 1"));
	h_peer_free(k);
	assert_int_equal(h_server_stop(&s), 0);
}

/* A counselor in a voice session comes back with fresh SRTP keys for
 * their leg; the person's keys stay. If the session ends while they are
 * away, there is nothing to come back to (no offers for an empty chair). */
static void test_counselor_voice(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, ARGS), 0);
	struct h_peer *k = counselor(&s, "kim");
	char ktoken[PROTO_RESUME_MAX + 1];
	strcpy(ktoken, h_welcome(k)->resume);
	available(k);
	struct h_peer *c = person(&s, "pat");
	talk_now(c, "grief", "voice");
	answer(k, expect(k, PT_OFFER), "accept");
	expect(c, PT_SESSION_START);
	const struct proto_msg *st = expect(k, PT_SESSION_START);
	char tx[PROTO_KEY_MAX + 1], rx[PROTO_KEY_MAX + 1];
	strcpy(tx, st->tx_key);
	strcpy(rx, st->rx_key);
	assert_true(tx[0] != '\0');

	const char *ktok = h_token(ROLE_COUNSELOR, "kim", "kim", NULL, 600);
	h_drop(k);
	expect(c, PT_PEER_LOST);
	k = h_resume(&s, "kim again", ROLE_COUNSELOR, ktok, ktoken);
	assert_non_null(k);
	assert_int_equal(h_welcome(k)->resumed, 1);
	assert_int_equal(h_welcome(k)->state, ST_BUSY);
	st = expect(k, PT_SESSION_START);
	assert_int_equal(st->resumed, 1);
	assert_int_equal(st->mode, MODE_VOICE);
	assert_true(st->tx_key[0] && strcmp(st->tx_key, tx) != 0);
	assert_true(st->rx_key[0] && strcmp(st->rx_key, rx) != 0);
	expect(c, PT_PEER_BACK);
	assert_null(h_wait(c, PT_SESSION_START, 300));  /* the person's keys stay */

	/* Away again, and the person ends the session meanwhile. */
	h_drop(k);
	expect(c, PT_PEER_LOST);
	h_send_json(c, "{\"type\":\"end\"}");
	expect(c, PT_SESSION_END);
	stats_until(&s, "\"counselors\":{\"available\":0,\"ringing\":0,\"busy\":0,\"wrapup\":0,\"away\":0}");
	k = h_resume(&s, "kim later", ROLE_COUNSELOR, ktok, ktoken);
	assert_non_null(k);
	assert_int_equal(h_welcome(k)->resumed, 0);
	assert_int_equal(h_welcome(k)->state, ST_AWAY);
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&s), 0);
}

/* The old connection had not noticed it was dead: the new one takes over,
 * the old is told `replaced` and closed. Away when the session ended, the
 * person gets its end (and the referral) when back, and may rate. */
static void test_takeover_and_missed_end(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, ARGS), 0);
	struct h_peer *k, *c;
	char token[PROTO_RESUME_MAX + 1];
	in_session(&s, "text", &k, &c, token);
	const char *tok = h_token(ROLE_CLIENT, "pat", "", NULL, 600);
	struct h_peer *c2 = h_resume(&s, "pat twice", ROLE_CLIENT, tok, token);
	assert_non_null(c2);
	assert_int_equal(h_welcome(c2)->resumed, 1);
	assert_string_equal(h_wait_error(c, T), "replaced");
	assert_true(h_wait_closed(c, T) >= 0);
	h_peer_free(c);
	assert_int_equal(expect(c2, PT_SESSION_START)->resumed, 1);

	h_drop(c2);
	expect(k, PT_PEER_LOST);
	h_send_json(k, "{\"type\":\"end\"}");
	expect(k, PT_SESSION_END);
	c = h_resume(&s, "pat back", ROLE_CLIENT, tok, token);
	assert_non_null(c);
	assert_int_equal(h_welcome(c)->resumed, 1);
	assert_int_equal(h_welcome(c)->state, ST_ENDED);
	assert_string_equal(expect(c, PT_SESSION_END)->reason, "ended_by_counselor");
	h_send_json(c, "{\"type\":\"rate\",\"score\":5}");
	expect(c, PT_RATED);
	h_peer_free(c);
	h_peer_free(k);
	assert_int_equal(h_server_stop(&s), 0);
}

/* The token is the only key for an anonymous person: a wrong secret, or
 * another person's token, restores nothing. */
static void test_token_checked(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, ARGS), 0);
	struct h_peer *c = h_join(&s, "anon", ROLE_CLIENT, NULL);
	assert_non_null(c);
	char token[PROTO_RESUME_MAX + 1], sub[PROTO_SUB_MAX + 1];
	strcpy(token, h_welcome(c)->resume);
	strcpy(sub, h_welcome(c)->sub);
	talk_now(c, "grief", "text");
	expect(c, PT_QUEUE);
	h_drop(c);

	char bad[PROTO_RESUME_MAX + 1];
	strcpy(bad, token);
	bad[0] = bad[0] == 'a' ? 'b' : 'a';
	c = h_resume(&s, "guess", ROLE_CLIENT, NULL, bad);
	assert_non_null(c);
	assert_int_equal(h_welcome(c)->resumed, 0);
	assert_string_not_equal(h_welcome(c)->sub, sub);
	h_peer_free(c);
	/* Someone with a token of their own cannot take it either. */
	c = h_resume(&s, "other", ROLE_CLIENT, h_token(ROLE_CLIENT, "other", "", NULL, 600), token);
	assert_non_null(c);
	assert_int_equal(h_welcome(c)->resumed, 0);
	h_peer_free(c);

	c = h_resume(&s, "anon again", ROLE_CLIENT, NULL, token);
	assert_non_null(c);
	assert_int_equal(h_welcome(c)->resumed, 1);
	assert_string_equal(h_welcome(c)->sub, sub);
	assert_int_equal(expect(c, PT_QUEUE)->position, 1);
	h_peer_free(c);
	assert_int_equal(h_server_stop(&s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_place_kept),
		cmocka_unit_test(test_place_let_go),
		cmocka_unit_test(test_deliberate_close),
		cmocka_unit_test(test_session_resumed),
		cmocka_unit_test(test_session_let_go),
		cmocka_unit_test(test_counselor_voice),
		cmocka_unit_test(test_takeover_and_missed_end),
		cmocka_unit_test(test_token_checked),
	};
	return cmocka_run_group_tests(tests, h_group_setup, h_group_teardown);
}
