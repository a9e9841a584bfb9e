/* test_proto.c - unit tests for the protocol codec (proto/proto.c): round
 * trips of every message type, every decode error code, bounds, and the
 * encoder's refusals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

#define BUF_MAX 65536

/* Big structs and buffers are static: a proto_msg is ~15 KB. m1 is what
 * is decoded (a `ratings` reply's lists into r1), m2 what is encoded. */
static struct proto_ratings r1, r2;
static struct proto_msg m1, m2;
static struct proto_err err;
static char out[BUF_MAX];
static char json[BUF_MAX];

static enum proto_status dec(const char *s)
{
	return proto_decode_with(s, strlen(s), &m1, &r1, &err);
}

/* Decode `s`; it must fail with `code` and a reason containing `needle`. */
static void check_err(const char *s, const char *code, const char *needle,
                      const char *file, int line)
{
	enum proto_status rc = dec(s);
	if (rc != PROTO_ERR || err.code == NULL || strcmp(err.code, code) != 0 ||
	    (needle != NULL && strstr(err.reason, needle) == NULL)) {
		print_error("%s:%d: input %.200s\n  want %s (reason with '%s')\n"
		            "  got rc %d code %s reason '%s'\n", file, line, s, code,
		            needle ? needle : "", (int)rc,
		            err.code ? err.code : "(null)", err.reason);
		fail();
	}
}
#define ERR(s, code, needle) check_err((s), (code), (needle), __FILE__, __LINE__)

static void check_ok(const char *s, const char *file, int line)
{
	if (dec(s) != PROTO_OK) {
		print_error("%s:%d: input %.200s\n  got code %s reason '%s'\n",
		            file, line, s, err.code ? err.code : "(null)", err.reason);
		fail();
	}
}
#define OK(s) check_ok((s), __FILE__, __LINE__)

/* `{"type":"<type>",<pre>"<field>":"<n times c>"}` into `json`. */
static const char *with_str(const char *type, const char *pre,
                            const char *field, size_t n, char c)
{
	int k = snprintf(json, sizeof json, "{\"type\":\"%s\",%s\"%s\":\"",
	                 type, pre, field);
	assert_true(k > 0 && (size_t)k + n + 3 < sizeof json);
	memset(json + k, c, n);
	strcpy(json + k + n, "\"}");
	return json;
}

/* ---- one valid example of every type ---------------------------------- */

/* m1 and m2 say the same: every field, and a `ratings` reply's lists
 * (none is the same as empty ones). */
static int same(void)
{
	static struct proto_msg a, b;
	static const struct proto_ratings none;
	a = m1;
	b = m2;
	a.ratings = b.ratings = NULL;
	if (memcmp(&a, &b, sizeof a) != 0)
		return 0;
	return m1.type != PT_RATINGS ||
	       memcmp(m1.ratings ? m1.ratings : &none, m2.ratings ? m2.ratings : &none,
	              sizeof none) == 0;
}

static void sample(enum proto_type t, int variant, struct proto_msg *m)
{
	memset(m, 0, sizeof *m);
	m->type = t;
	switch (t) {
	case PT_HELLO:
		m->role = variant ? ROLE_COUNSELOR : ROLE_CLIENT;
		if (variant) {
			strcpy(m->token, "eyJhbGciOiJIUzI1NiJ9.e30.sig");
			strcpy(m->resume, "0123456789abcdef0123456789abcdef:12:eu-1.a");
		}
		break;
	case PT_WELCOME:
		m->role = ROLE_COUNSELOR; strcpy(m->sub, "alice@example.org");
		strcpy(m->name, variant ? "" : "Alice"); m->state = ST_AWAY;
		m->slot_s = 1200; m->ring_s = 20; m->version = PROTO_VERSION;
		if (!variant)
			strcpy(m->question, "Are you safe \"right now\"?");
		else {
			strcpy(m->resume, "0123456789abcdef0123456789abcdef:12:eu-1.a");
			m->grace_s = 30; m->resumed = 1;
		}
		break;
	case PT_ERROR:
		strcpy(m->code, "wrong_state");
		if (variant) {
			strcpy(m->reason, "msg while waiting");
			strcpy(m->ref, "msg");
		}
		break;
	case PT_GOING_AWAY: strcpy(m->reason, "shutdown"); break;
	case PT_TALK_NOW:
		strcpy(m->topic, "grief"); m->mode = variant ? MODE_VOICE : MODE_TEXT;
		m->crisis = variant; m->previous = variant;
		break;
	case PT_QUEUE:
		m->position = 1; m->wait_s = 120; m->counselors = 3;
		strcpy(m->waiting_for, variant ? "previous" : "");
		break;
	case PT_CANCELLED: strcpy(m->reason, "by_you"); break;
	case PT_RATE:
		m->score = variant ? 5 : 1;
		if (variant)
			strcpy(m->comment, "thank you \xe2\x9d\xa4 \"really\"\n");
		break;
	case PT_SET_STATE: m->state = variant ? ST_AWAY : ST_AVAILABLE; break;
	case PT_STATE:
		m->state = variant ? ST_WRAPUP : ST_AWAY;
		if (variant)
			m->wrapup_s = 60;
		else
			strcpy(m->reason, "missed_offers");
		break;
	case PT_OFFER:
		m->offer_id = 7; strcpy(m->topic, "anxiety"); m->mode = MODE_TEXT;
		m->waited_s = 41; m->ring_s = 20; m->crisis = variant; m->talked_before = variant;
		break;
	case PT_ACCEPT: case PT_DECLINE: m->offer_id = INT64_MAX; break;
	case PT_TAKE_BREAK: m->minutes = variant ? 120 : 1; break;
	case PT_OFFER_GONE: m->offer_id = 1; strcpy(m->reason, "timeout"); break;
	case PT_SESSION_START:
		strcpy(m->session_id, "s-0123456789abcdef"); m->mode = MODE_TEXT;
		strcpy(m->topic, "grief"); m->slot_s = 1200; m->remaining_s = 1199;
		strcpy(m->name, "Alice");
		if (variant) {
			m->mode = MODE_VOICE;
			strcpy(m->srtp_profile, "aead_aes_128_gcm");
			strcpy(m->tx_key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==");
			strcpy(m->rx_key, "GxoZGBcWFRQTEhEQDw4NDAsKCQgHBgUEAwIBAA==");
			m->resumed = 1; m->last_id = 0; m->acked = 3;
		} else {
			m->last_id = -1;   /* what decoding gives when absent */
		}
		break;
	case PT_MSG:
		strcpy(m->text, "hello \xc3\xa9t\xc3\xa9 \\ / \t");
		m->id = variant ? -1 : 0;
		m->seq = variant ? 3 : 0;
		break;
	case PT_SENT: m->id = 0; m->seq = 1; break;
	case PT_ACK: case PT_DELIVERED: m->seq = 42; break;
	case PT_TYPING: m->on = variant; break;
	case PT_SLOT_WARNING: m->remaining_s = 300; break;
	case PT_SLOT_OVER: case PT_PEER_LOST: m->grace_s = 30; break;
	case PT_SESSION_END:
		strcpy(m->session_id, "s-1"); strcpy(m->reason, "slot_over");
		if (variant)
			strcpy(m->referral, "Samaritans: 116 123\nText SHOUT to 85258");
		break;
	case PT_CRISIS:
		if (variant) {
			strcpy(m->who, "you");
			strcpy(m->referral, "Samaritans: 116 123");
		}
		break;
	case PT_STATS:
		m->stats = (struct proto_stats){ 2, 41, 1, 1, 3, 0, 2, 3, 17, 2, 9,
		                                 12, variant ? 4.4 : 0.0, 3600,
		                                 9000, 1, 2, 3, 4, 5, 9, 6, 7, 8, 0, { { "", 0, 0, 0, 0, 0 } },
		                                 0, { { "", "", 0 } } };
		if (variant) {
			m->stats.nnodes = 2;
			m->stats.nodes[0] = (struct proto_node_stats){ "eu-1.a", 2, 5, 6000, 30, 3600 };
			m->stats.nodes[1] = (struct proto_node_stats){ "eu-1.b", 1, 4, 3000, 6, 60 };
			m->stats.ncrises = 1;
			m->stats.crises[0] = (struct proto_crisis){ "s0f3a9c2b7d41e855", "kim", 95 };
		}
		break;
	case PT_MUTE:
	case PT_PEER_MUTE: m->on = variant; break;
	case PT_AUDIO: strcpy(m->who, variant ? "peer" : "you"); strcpy(m->audio, "stopped"); break;
	case PT_LINK:
		strcpy(m->link_you, "good"); strcpy(m->link_peer, variant ? "poor" : "fair");
		m->loss_pct = 12; m->jitter_ms = 35;
		break;
	case PT_RATINGS:   /* variant 0: the request, with nothing in it */
		if (variant) {
			memset(&r2, 0, sizeof r2);
			m->ratings = &r2;
			struct proto_ratings *r = m->ratings;
			r->ncounselors = 2;
			r->counselors[0] = (struct proto_rating){ "kim", 3, { 0, 0, 0, 2, 1 }, 13.0 / 3 };
			r->counselors[1] = (struct proto_rating){ "lee@x.org", 0, { 0 }, 0.0 };
			r->ntopics = 1;
			r->topics[0] = (struct proto_rating){ "work-stress", 2, { 1, 0, 0, 0, 1 }, 3.0 };
			r->ncomments = 2;
			strcpy(r->comments[0], "you \"listened\" \xe2\x9d\xa4");
			strcpy(r->comments[1], "thanks");
		}
		break;
	default: break;  /* cancel, rated, end, subscribe: no fields */
	}
}

static void test_round_trip_every_type(void **state)
{
	(void)state;
	for (int t = PT_NONE + 1; t < PT__COUNT; t++) {
		for (int variant = 0; variant < 2; variant++) {
			sample((enum proto_type)t, variant, &m2);
			long n = proto_encode(&m2, out, sizeof out);
			if (n <= 0)
				print_error("encode %s/%d failed\n",
				            proto_type_name((enum proto_type)t), variant);
			assert_true(n > 0);
			assert_int_equal(strlen(out), (size_t)n);
			assert_int_equal(proto_decode_with(out, (size_t)n, &m1, &r1, &err), PROTO_OK);
			if (!same())
				print_error("round trip differs: %s\n", out);
			assert_true(same());
		}
	}
}

/* The wire form is part of the contract: pin a few encodings exactly. */
static void test_encode_exact(void **state)
{
	(void)state;
	static const struct { enum proto_type t; int variant; const char *want; } cases[] = {
		{ PT_HELLO, 0, "{\"type\":\"hello\",\"role\":\"client\"}" },
		{ PT_TALK_NOW, 0, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}" },
		{ PT_TALK_NOW, 1, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"voice\",\"crisis\":true,"
		  "\"previous\":true}" },
		{ PT_QUEUE, 0, "{\"type\":\"queue\",\"position\":1,\"wait_s\":120,\"counselors\":3}" },
		{ PT_QUEUE, 1, "{\"type\":\"queue\",\"position\":1,\"wait_s\":120,\"counselors\":3,"
		  "\"waiting_for\":\"previous\"}" },
		{ PT_OFFER, 1, "{\"type\":\"offer\",\"offer_id\":7,\"topic\":\"anxiety\",\"mode\":\"text\","
		  "\"waited_s\":41,\"ring_s\":20,\"crisis\":true,\"talked_before\":true}" },
		{ PT_WELCOME, 0, "{\"type\":\"welcome\",\"role\":\"counselor\",\"sub\":\"alice@example.org\","
		  "\"name\":\"Alice\",\"state\":\"away\",\"slot_s\":1200,\"ring_s\":20,\"version\":1,"
		  "\"crisis_question\":\"Are you safe \\\"right now\\\"?\"}" },
		{ PT_MSG, 0, "{\"type\":\"msg\",\"id\":0,\"text\":\"hello \xc3\xa9t\xc3\xa9 \\\\ / \\t\"}" },
		{ PT_MSG, 1, "{\"type\":\"msg\",\"seq\":3,\"text\":\"hello \xc3\xa9t\xc3\xa9 \\\\ / \\t\"}" },
		{ PT_ERROR, 0, "{\"type\":\"error\",\"code\":\"wrong_state\"}" },
		{ PT_ERROR, 1, "{\"type\":\"error\",\"code\":\"wrong_state\",\"reason\":\"msg while waiting\",\"ref\":\"msg\"}" },
		{ PT_STATE, 0, "{\"type\":\"state\",\"state\":\"away\",\"reason\":\"missed_offers\"}" },
		{ PT_STATE, 1, "{\"type\":\"state\",\"state\":\"wrapup\",\"wrapup_s\":60}" },
		{ PT_TAKE_BREAK, 0, "{\"type\":\"take_break\",\"minutes\":1}" },
		{ PT_TYPING, 1, "{\"type\":\"typing\",\"on\":true}" },
		{ PT_SESSION_END, 0, "{\"type\":\"session_end\",\"session_id\":\"s-1\",\"reason\":\"slot_over\"}" },
		{ PT_SESSION_START, 0, "{\"type\":\"session_start\",\"session_id\":\"s-0123456789abcdef\","
		  "\"mode\":\"text\",\"topic\":\"grief\",\"slot_s\":1200,\"remaining_s\":1199,\"peer\":\"Alice\"}" },
		{ PT_WELCOME, 1, "{\"type\":\"welcome\",\"role\":\"counselor\",\"sub\":\"alice@example.org\","
		  "\"name\":\"\",\"state\":\"away\",\"slot_s\":1200,\"ring_s\":20,\"version\":1,"
		  "\"resume_token\":\"0123456789abcdef0123456789abcdef:12:eu-1.a\",\"resumed\":true,"
		  "\"grace_s\":30}" },
		{ PT_STATS, 1, "{\"type\":\"stats\",\"queue\":2,\"oldest_wait_s\":41,"
		  "\"counselors\":{\"available\":1,\"ringing\":1,\"busy\":3,\"wrapup\":0,\"away\":2},"
		  "\"sessions\":3,\"served\":17,\"abandoned\":2,\"connections\":9,"
		  "\"ratings\":{\"count\":12,\"mean\":4.4000000000000004},\"uptime_s\":3600,"
		  "\"media\":{\"relayed\":9000,\"dropped_auth\":1,\"dropped_replay\":2,"
		  "\"dropped_not_opus\":3,\"dropped_too_large\":4,\"dropped_rate\":5,\"dropped_stale\":9,"
		  "\"dropped_bad_rtp\":6,\"dropped_no_session\":7,\"dropped_slow_reader\":8},"
		  "\"nodes\":[{\"node\":\"eu-1.a\",\"sessions\":2,\"connections\":5,\"relayed\":6000,"
		  "\"dropped\":30,\"uptime_s\":3600},{\"node\":\"eu-1.b\",\"sessions\":1,"
		  "\"connections\":4,\"relayed\":3000,\"dropped\":6,\"uptime_s\":60}],"
		  "\"crises\":[{\"session_id\":\"s0f3a9c2b7d41e855\",\"counselor\":\"kim\",\"since_s\":95}]}" },
		{ PT_CRISIS, 0, "{\"type\":\"crisis\"}" },
		{ PT_CRISIS, 1, "{\"type\":\"crisis\",\"by\":\"you\",\"referral\":\"Samaritans: 116 123\"}" },
		{ PT_SESSION_START, 1, "{\"type\":\"session_start\",\"session_id\":\"s-0123456789abcdef\","
		  "\"mode\":\"voice\",\"topic\":\"grief\",\"slot_s\":1200,\"remaining_s\":1199,\"peer\":\"Alice\","
		  "\"srtp_profile\":\"aead_aes_128_gcm\",\"tx_key\":\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==\","
		  "\"rx_key\":\"GxoZGBcWFRQTEhEQDw4NDAsKCQgHBgUEAwIBAA==\",\"resumed\":true,\"last_id\":0,"
		  "\"acked\":3}" },
		{ PT_SESSION_START, 0, "{\"type\":\"session_start\",\"session_id\":\"s-0123456789abcdef\","
		  "\"mode\":\"text\",\"topic\":\"grief\",\"slot_s\":1200,\"remaining_s\":1199,\"peer\":\"Alice\"}" },
		{ PT_PEER_LOST, 0, "{\"type\":\"peer_lost\",\"grace_s\":30}" },
		{ PT_LINK, 1, "{\"type\":\"link\",\"you\":\"good\",\"peer\":\"poor\",\"loss_pct\":12,\"jitter_ms\":35}" },
		{ PT_AUDIO, 0, "{\"type\":\"audio\",\"who\":\"you\",\"state\":\"stopped\"}" },
		{ PT_END, 0, "{\"type\":\"end\"}" },
		{ PT_RATINGS, 0, "{\"type\":\"ratings\"}" },
		{ PT_RATINGS, 1, "{\"type\":\"ratings\",\"counselors\":[{\"sub\":\"kim\",\"count\":3,"
		  "\"mean\":4.333333333333333,\"hist\":[0,0,0,2,1],\"comments\":"
		  "[\"you \\\"listened\\\" \xe2\x9d\xa4\",\"thanks\"]},{\"sub\":\"lee@x.org\",\"count\":0,"
		  "\"mean\":0.0,\"hist\":[0,0,0,0,0]}],\"topics\":[{\"topic\":\"work-stress\","
		  "\"count\":2,\"mean\":3.0,\"hist\":[1,0,0,0,1]}]}" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		sample(cases[i].t, cases[i].variant, &m2);
		long n = proto_encode(&m2, out, sizeof out);
		assert_int_equal(n, (long)strlen(cases[i].want));
		assert_string_equal(out, cases[i].want);
	}
}

/* The example in PROTOCOL.md decodes as written. */
static void test_decode_protocol_stats_example(void **state)
{
	(void)state;
	OK("{\"type\":\"stats\",\"queue\":2,\"oldest_wait_s\":41,\n"
	   " \"counselors\":{\"available\":1,\"ringing\":1,\"busy\":3,\"wrapup\":0,\"away\":2},\n"
	   " \"sessions\":3,\"served\":17,\"abandoned\":2,\"connections\":9,\n"
	   " \"ratings\":{\"count\":12,\"mean\":4.4},\"uptime_s\":3600}");
	assert_int_equal(m1.type, PT_STATS);
	assert_int_equal(m1.stats.queue, 2);
	assert_int_equal(m1.stats.oldest_wait_s, 41);
	assert_int_equal(m1.stats.available, 1);
	assert_int_equal(m1.stats.busy, 3);
	assert_int_equal(m1.stats.away, 2);
	assert_int_equal(m1.stats.served, 17);
	assert_int_equal(m1.stats.connections, 9);
	assert_int_equal(m1.stats.ratings_count, 12);
	assert_true(m1.stats.ratings_mean == 4.4);
	assert_int_equal(m1.stats.uptime_s, 3600);
}

static void test_decode_fields(void **state)
{
	(void)state;
	OK("{\"type\":\"hello\",\"role\":\"counselor\",\"token\":\"a.b.c\",\"extra\":[1,{}]}");
	assert_int_equal(m1.type, PT_HELLO);
	assert_int_equal(m1.role, ROLE_COUNSELOR);
	assert_string_equal(m1.token, "a.b.c");

	OK("{\"type\":\"hello\",\"role\":\"client\"}");
	assert_string_equal(m1.token, "");

	OK(" {\"mode\":\"voice\",\"topic\":\"low-mood_2\",\"type\":\"talk_now\"} \n");
	assert_int_equal(m1.type, PT_TALK_NOW);
	assert_int_equal(m1.mode, MODE_VOICE);
	assert_string_equal(m1.topic, "low-mood_2");

	/* msg: id defaults to -1 and seq to 0 when absent. */
	OK("{\"type\":\"msg\",\"text\":\"x\"}");
	assert_int_equal(m1.id, -1);
	assert_int_equal(m1.seq, 0);
	OK("{\"type\":\"msg\",\"id\":0,\"text\":\"x\"}");
	assert_int_equal(m1.id, 0);
	assert_int_equal(m1.seq, 0);
	OK("{\"type\":\"msg\",\"seq\":9,\"text\":\"\\u00e9\\n\"}");
	assert_int_equal(m1.id, -1);
	assert_int_equal(m1.seq, 9);
	assert_string_equal(m1.text, "\xc3\xa9\n");

	/* id's default is msg's alone: other types leave it zero. */
	OK("{\"type\":\"ack\",\"seq\":3}");
	assert_int_equal(m1.id, 0);
	assert_int_equal(m1.seq, 3);

	OK("{\"type\":\"typing\",\"on\":false}");
	assert_int_equal(m1.on, 0);
	OK("{\"type\":\"typing\",\"on\":true}");
	assert_int_equal(m1.on, 1);

	OK("{\"type\":\"rate\",\"score\":4}");
	assert_int_equal(m1.score, 4);
	assert_string_equal(m1.comment, "");

	OK("{\"type\":\"session_start\",\"session_id\":\"s1\",\"mode\":\"text\","
	   "\"topic\":\"grief\",\"slot_s\":900,\"remaining_s\":899,\"peer\":\"Bo\"}");
	assert_string_equal(m1.name, "Bo");
	assert_int_equal(m1.remaining_s, 899);

	OK("{\"type\":\"error\",\"code\":\"bad_field\"}");
	assert_string_equal(m1.code, "bad_field");
	assert_string_equal(m1.reason, "");
	assert_string_equal(m1.ref, "");
}

static void test_state_wrapup_s(void **state)
{
	(void)state;
	OK("{\"type\":\"state\",\"state\":\"wrapup\",\"wrapup_s\":90}");
	assert_int_equal(m1.state, ST_WRAPUP);
	assert_int_equal(m1.wrapup_s, 90);
	ERR("{\"type\":\"state\",\"state\":\"wrapup\"}", "bad_field", "'wrapup_s'");
	/* Outside wrapup it means nothing and is ignored like an unknown field. */
	OK("{\"type\":\"state\",\"state\":\"available\",\"wrapup_s\":90}");
	assert_int_equal(m1.wrapup_s, 0);
	OK("{\"type\":\"state\",\"state\":\"busy\",\"wrapup_s\":\"junk\"}");
	assert_int_equal(m1.state, ST_BUSY);
	assert_string_equal(m1.reason, "");
}

/* `crisis` is optional: absent is false, present must be a boolean. */
static void test_crisis_flag(void **state)
{
	(void)state;
	OK("{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}");
	assert_int_equal(m1.crisis, 0);
	OK("{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\",\"crisis\":true}");
	assert_int_equal(m1.crisis, 1);
	ERR("{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\",\"crisis\":1}",
	    "bad_field", "'crisis'");
	OK("{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\",\"previous\":true}");
	assert_int_equal(m1.previous, 1);
	assert_int_equal(m1.crisis, 0);
	ERR("{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\",\"previous\":\"yes\"}",
	    "bad_field", "'previous'");
	/* A break: whole minutes, 1 to 120; its length comes back in seconds. */
	OK("{\"type\":\"state\",\"state\":\"away\",\"reason\":\"break\",\"break_s\":600}");
	assert_int_equal(m1.break_s, 600);
	ERR("{\"type\":\"take_break\",\"minutes\":121}", "bad_field", "'minutes'");
	ERR("{\"type\":\"take_break\"}", "bad_field", "'minutes'");
}

static void test_stats_lenient(void **state)
{
	(void)state;
	OK("{\"type\":\"stats\"}");
	assert_int_equal(m1.type, PT_STATS);
	assert_int_equal(m1.stats.queue, 0);
	assert_true(m1.stats.ratings_mean == 0.0);
	OK("{\"type\":\"stats\",\"counselors\":{\"busy\":4},\"ratings\":{\"mean\":null},"
	   "\"uptime_s\":9223372036854775807}");
	assert_int_equal(m1.stats.busy, 4);
	assert_int_equal(m1.stats.available, 0);
	assert_int_equal(m1.stats.uptime_s, (uint64_t)INT64_MAX);
	OK("{\"type\":\"stats\",\"ratings\":{\"mean\":5}}");
	assert_true(m1.stats.ratings_mean == 5.0);
	/* Present but wrong is still an error, naming the nested field. */
	ERR("{\"type\":\"stats\",\"counselors\":{\"busy\":\"4\"}}", "bad_field",
	    "'counselors.busy'");
	ERR("{\"type\":\"stats\",\"counselors\":[]}", "bad_field", "'counselors'");
	ERR("{\"type\":\"stats\",\"queue\":-1}", "bad_field", "'queue'");
	ERR("{\"type\":\"stats\",\"queue\":4294967296}", "bad_field", "'queue'");
	ERR("{\"type\":\"stats\",\"served\":1.5}", "bad_field", "'served'");
	ERR("{\"type\":\"stats\",\"ratings\":{\"mean\":\"high\"}}", "bad_field",
	    "'ratings.mean'");
	/* The node list: bounded, each entry named with a node id. */
	OK("{\"type\":\"stats\",\"nodes\":[{\"node\":\"a\"},{\"node\":\"b.2\",\"sessions\":3}]}");
	assert_int_equal(m1.stats.nnodes, 2);
	assert_string_equal(m1.stats.nodes[1].node, "b.2");
	assert_int_equal(m1.stats.nodes[1].sessions, 3);
	ERR("{\"type\":\"stats\",\"nodes\":{}}", "bad_field", "'nodes'");
	ERR("{\"type\":\"stats\",\"nodes\":[{\"sessions\":1}]}", "bad_field", "nodes[0]");
	ERR("{\"type\":\"stats\",\"nodes\":[{\"node\":\"a/b\"}]}", "bad_field", "nodes[0]");
	ERR("{\"type\":\"stats\",\"nodes\":[{\"node\":\"a\",\"relayed\":-1}]}", "bad_field",
	    "nodes[0].relayed");
	ERR("{\"type\":\"stats\",\"nodes\":[{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}]}",
	    "bad_field", "'nodes'");
	assert_int_equal(m1.type, PT_STATS);
}

static void expect_encode_fail(struct proto_msg *m, const char *what);

/* `ratings`: a counselor's own entry may carry comments, nothing else does;
 * the lists, their entries and the comments are bounded. */
static void test_ratings_decode(void **state)
{
	(void)state;
	OK("{\"type\":\"ratings\"}");
	assert_int_equal(m1.type, PT_RATINGS);
	assert_int_equal(m1.ratings->ncounselors, 0);
	OK("{\"type\":\"ratings\",\"counselors\":[{\"sub\":\"kim\",\"count\":2,\"mean\":4.5,"
	   "\"hist\":[0,0,0,1,1],\"comments\":[\"kind\"]}],\"topics\":null}");
	assert_int_equal(m1.ratings->ncounselors, 1);
	assert_string_equal(m1.ratings->counselors[0].name, "kim");
	assert_int_equal(m1.ratings->counselors[0].hist[4], 1);
	assert_true(m1.ratings->counselors[0].mean == 4.5);
	assert_int_equal(m1.ratings->ncomments, 1);
	assert_string_equal(m1.ratings->comments[0], "kind");
	assert_int_equal(m1.ratings->ntopics, 0);
	/* PROTOCOL.md's example, as written. */
	OK("{\"type\":\"ratings\",\"counselors\":[{\"sub\":\"kim\",\"count\":3,\"mean\":4.333333333333333,\n"
	   "  \"hist\":[0,0,0,2,1],\"comments\":[\"You really listened.\",\"thanks\"]}],\"topics\":[]}");
	assert_int_equal(m1.ratings->counselors[0].hist[3], 2);
	assert_int_equal(m1.ratings->ncomments, 2);
	assert_string_equal(m1.ratings->comments[1], "thanks");
	OK("{\"type\":\"ratings\",\"topics\":[{\"topic\":\"grief\",\"count\":1,\"mean\":5,"
	   "\"hist\":[0,0,0,0,1]}]}");
	assert_int_equal(m1.ratings->ntopics, 1);
	assert_string_equal(m1.ratings->topics[0].name, "grief");

	ERR("{\"type\":\"ratings\",\"counselors\":{}}", "bad_field", "'counselors'");
	ERR("{\"type\":\"ratings\",\"counselors\":[{\"sub\":\"k\",\"count\":1,\"mean\":1}]}",
	    "bad_field", "counselors[0]");
	ERR("{\"type\":\"ratings\",\"counselors\":[{\"sub\":\"k\",\"count\":1,\"mean\":1,"
	    "\"hist\":[1,0,0,0]}]}", "bad_field", "counselors[0]");
	ERR("{\"type\":\"ratings\",\"counselors\":[{\"sub\":\"k\",\"count\":1,\"mean\":5.5,"
	    "\"hist\":[0,0,0,0,1]}]}", "bad_field", "counselors[0]");
	ERR("{\"type\":\"ratings\",\"counselors\":[{\"sub\":\"k\",\"count\":-1,\"mean\":1,"
	    "\"hist\":[0,0,0,0,1]}]}", "bad_field", "counselors[0]");
	ERR("{\"type\":\"ratings\",\"counselors\":[{\"sub\":\"a b\",\"count\":1,\"mean\":1,"
	    "\"hist\":[1,0,0,0,0]}]}", "bad_field", "counselors[0]");
	ERR("{\"type\":\"ratings\",\"topics\":[{\"sub\":\"grief\",\"count\":1,\"mean\":1,"
	    "\"hist\":[1,0,0,0,0]}]}", "bad_field", "topics[0]");
	ERR("{\"type\":\"ratings\",\"topics\":[{\"topic\":\"Grief\",\"count\":1,\"mean\":1,"
	    "\"hist\":[1,0,0,0,0]}]}", "bad_field", "topics[0]");
	/* Comments: only the counselor's own entry, the first. */
	ERR("{\"type\":\"ratings\",\"counselors\":[{\"sub\":\"a\",\"count\":0,\"mean\":0,"
	    "\"hist\":[0,0,0,0,0]},{\"sub\":\"b\",\"count\":0,\"mean\":0,\"hist\":[0,0,0,0,0],"
	    "\"comments\":[\"x\"]}]}", "bad_field", "counselors[1]");
	ERR("{\"type\":\"ratings\",\"topics\":[{\"topic\":\"g\",\"count\":0,\"mean\":0,"
	    "\"hist\":[0,0,0,0,0],\"comments\":[]}]}", "bad_field", "topics[0]");
	ERR("{\"type\":\"ratings\",\"counselors\":[{\"sub\":\"a\",\"count\":0,\"mean\":0,"
	    "\"hist\":[0,0,0,0,0],\"comments\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}]}",
	    "bad_field", "comments");
	ERR("{\"type\":\"ratings\",\"counselors\":[{\"sub\":\"a\",\"count\":0,\"mean\":0,"
	    "\"hist\":[0,0,0,0,0],\"comments\":[\"\"]}]}", "bad_field", "comments[0]");
	char *big = malloc(BUF_MAX);
	assert_non_null(big);
	int n = snprintf(big, BUF_MAX, "{\"type\":\"ratings\",\"counselors\":[{\"sub\":\"a\","
	                 "\"count\":0,\"mean\":0,\"hist\":[0,0,0,0,0],\"comments\":[\"");
	memset(big + n, 'c', PROTO_COMMENT_MAX + 1);
	strcpy(big + n + PROTO_COMMENT_MAX + 1, "\"]}]}");
	ERR(big, "bad_field", "comments[0]");
	/* At most PROTO_RATED_MAX counselors. */
	n = snprintf(big, BUF_MAX, "{\"type\":\"ratings\",\"counselors\":[");
	for (int i = 0; i <= PROTO_RATED_MAX; i++)
		n += snprintf(big + n, (size_t)(BUF_MAX - n), "%s{\"sub\":\"k%d\",\"count\":0,"
		              "\"mean\":0,\"hist\":[0,0,0,0,0]}", i ? "," : "", i);
	strcpy(big + n, "]}");
	ERR(big, "bad_field", "'counselors'");
	free(big);
}

/* The largest `ratings` (every list full, every name and count at its
 * longest, every comment byte escaped) fits PROTO_RATINGS_JSON_MAX and
 * comes back the same; a broken one is refused. */
static void test_ratings_encode(void **state)
{
	(void)state;
	static char buf[PROTO_RATINGS_JSON_MAX];
	memset(&m2, 0, sizeof m2);
	memset(&r2, 0, sizeof r2);
	m2.type = PT_RATINGS;
	m2.ratings = &r2;
	struct proto_ratings *r = m2.ratings;
	for (int i = 0; i < PROTO_RATED_MAX; i++) {
		struct proto_rating *e = &r->counselors[r->ncounselors++];
		snprintf(e->name, sizeof e->name, "%0*d", PROTO_SUB_MAX, i);
		e->count = UINT32_MAX;
		for (int k = 0; k < 5; k++)
			e->hist[k] = UINT32_MAX;
		e->mean = 1.0000000000000002;
	}
	for (int i = 0; i < PROTO_TOPICS_MAX; i++) {
		struct proto_rating *e = &r->topics[r->ntopics++];
		snprintf(e->name, sizeof e->name, "%0*d", PROTO_TOPIC_MAX, i);
		e->count = UINT32_MAX;
		e->mean = 4.333333333333333;
	}
	for (int i = 0; i < PROTO_COMMENTS_MAX; i++)
		memset(r->comments[r->ncomments++], '\x01', PROTO_COMMENT_MAX);   /* \u0001 each */
	long n = proto_encode(&m2, buf, sizeof buf);
	assert_true(n > 0);
	print_message("the largest ratings: %ld bytes\n", n);
	assert_int_equal(proto_decode_with(buf, (size_t)n, &m1, &r1, &err), PROTO_OK);
	assert_true(same());

	sample(PT_RATINGS, 1, &m2); m2.ratings->ncounselors = 0;
	expect_encode_fail(&m2, "ratings comments without a counselor");
	sample(PT_RATINGS, 1, &m2); m2.ratings->ncounselors = PROTO_RATED_MAX + 1;
	expect_encode_fail(&m2, "ratings too many counselors");
	sample(PT_RATINGS, 1, &m2); m2.ratings->topics[0].mean = NAN;
	expect_encode_fail(&m2, "ratings NaN mean");
	sample(PT_RATINGS, 1, &m2); strcpy(m2.ratings->topics[0].name, "Work");
	expect_encode_fail(&m2, "ratings bad topic");
	sample(PT_RATINGS, 1, &m2); m2.ratings->comments[1][0] = '\0';
	expect_encode_fail(&m2, "ratings empty comment");
	sample(PT_RATINGS, 1, &m2); strcpy(m2.ratings->comments[0], "bad \xff");
	expect_encode_fail(&m2, "ratings comment not UTF-8");
}

/* ---- error codes ------------------------------------------------------- */

static void test_bad_json(void **state)
{
	(void)state;
	ERR("", "bad_json", NULL);
	ERR("not json", "bad_json", "not JSON");
	ERR("[1,2]", "bad_json", "not a JSON object");
	ERR("\"hello\"", "bad_json", NULL);
	ERR("42", "bad_json", NULL);
	ERR("null", "bad_json", NULL);
	ERR("{}", "bad_json", "'type'");
	ERR("{\"type\":5}", "bad_json", "'type'");
	ERR("{\"type\":null}", "bad_json", "'type'");
	ERR("{\"type\":[\"hello\"]}", "bad_json", "'type'");
	ERR("{\"Type\":\"end\"}", "bad_json", "'type'");
	/* Trailing garbage and truncation. */
	ERR("{\"type\":\"end\"}x", "bad_json", NULL);
	ERR("{\"type\":\"end\"}{}", "bad_json", NULL);
	ERR("{\"type\":\"hello\",\"role\":\"cli", "bad_json", NULL);
	ERR("{\"type\":\"hello\",", "bad_json", NULL);
	ERR("{\"type\":\"hello\"", "bad_json", NULL);
	/* Duplicate keys, at the top level and nested. */
	ERR("{\"type\":\"end\",\"type\":\"end\"}", "bad_json", NULL);
	ERR("{\"type\":\"ack\",\"seq\":1,\"seq\":2}", "bad_json", NULL);
	ERR("{\"type\":\"stats\",\"counselors\":{\"busy\":1,\"busy\":2}}", "bad_json", NULL);
	/* A NUL escape in a string, and invalid UTF-8. */
	ERR("{\"type\":\"msg\",\"text\":\"a\\u0000b\"}", "bad_json", NULL);
	ERR("{\"type\":\"msg\",\"text\":\"\xff\"}", "bad_json", NULL);
	ERR("{\"type\":\"msg\",\"text\":\"\xc3\"}", "bad_json", NULL);
	/* Raw control characters inside a string. */
	ERR("{\"type\":\"msg\",\"text\":\"a\nb\"}", "bad_json", NULL);
	assert_int_equal(m1.type, PT_NONE);
}

static void test_embedded_nul(void **state)
{
	(void)state;
	static const char after[] = "{\"type\":\"end\"}\0garbage";
	static const char inside[] = "{\"type\":\"e\0nd\"}";
	static const char key[] = "{\"type\":\"ack\",\"se\0q\":1}";
	assert_int_equal(proto_decode_with(after, sizeof after - 1, &m1, &r1, &err), PROTO_ERR);
	assert_string_equal(err.code, "bad_json");
	assert_int_equal(proto_decode_with(inside, sizeof inside - 1, &m1, &r1, &err), PROTO_ERR);
	assert_string_equal(err.code, "bad_json");
	assert_int_equal(proto_decode_with(key, sizeof key - 1, &m1, &r1, &err), PROTO_ERR);
	assert_string_equal(err.code, "bad_json");
	/* `len` bounds the input: the bytes after it are never looked at. */
	assert_int_equal(proto_decode_with(after, 14, &m1, &r1, &err), PROTO_OK);
	assert_int_equal(m1.type, PT_END);
	assert_int_equal(proto_decode_with(after, 13, &m1, &r1, &err), PROTO_ERR);
	assert_string_equal(err.code, "bad_json");
	assert_int_equal(proto_decode_with(NULL, 0, &m1, &r1, &err), PROTO_ERR);
	assert_string_equal(err.code, "bad_json");
}

static void test_unknown_type(void **state)
{
	(void)state;
	ERR("{\"type\":\"nope\"}", "unknown_type", "nope");
	ERR("{\"type\":\"\"}", "unknown_type", NULL);
	ERR("{\"type\":\"HELLO\",\"role\":\"client\"}", "unknown_type", "HELLO");
	ERR("{\"type\":\"hello \"}", "unknown_type", NULL);
	assert_int_equal(m1.type, PT_NONE);
}

/* The reason quotes peer bytes but stays printable ASCII, so it can always
 * be sent back in an `error` message. */
static void test_reason_is_printable(void **state)
{
	(void)state;
	ERR("{\"type\":\"\xc3\xa9t\xc3\xa9\\n\\u0001\"}", "unknown_type", "unknown type");
	for (const char *c = err.reason; *c; c++)
		assert_true(*c >= 0x20 && *c <= 0x7e);
	ERR("{\"type\":\"end\"} \xff", "bad_json", NULL);
	for (const char *c = err.reason; *c; c++)
		assert_true(*c >= 0x20 && *c <= 0x7e);
	memset(&m2, 0, sizeof m2);
	m2.type = PT_ERROR;
	strcpy(m2.code, err.code);
	strcpy(m2.reason, err.reason);
	assert_true(proto_encode(&m2, out, sizeof out) > 0);
}

static void test_bad_field(void **state)
{
	(void)state;
	/* Missing required fields. */
	ERR("{\"type\":\"hello\"}", "bad_field", "'role'");
	ERR("{\"type\":\"talk_now\",\"mode\":\"text\"}", "bad_field",
	    "field 'topic' is required");
	assert_int_equal(m1.type, PT_TALK_NOW);  /* set though a field failed */
	ERR("{\"type\":\"talk_now\",\"topic\":\"grief\"}", "bad_field", "'mode'");
	ERR("{\"type\":\"msg\",\"id\":1}", "bad_field", "'text'");
	assert_int_equal(m1.type, PT_MSG);
	ERR("{\"type\":\"sent\",\"id\":1}", "bad_field", "'seq'");
	ERR("{\"type\":\"sent\",\"seq\":1}", "bad_field", "'id'");
	ERR("{\"type\":\"typing\"}", "bad_field", "'on'");
	ERR("{\"type\":\"error\",\"reason\":\"x\"}", "bad_field", "'code'");
	ERR("{\"type\":\"session_end\",\"session_id\":\"s\"}", "bad_field", "'reason'");
	ERR("{\"type\":\"session_end\",\"reason\":\"x\"}", "bad_field", "'session_id'");
	ERR("{\"type\":\"welcome\",\"role\":\"client\",\"sub\":\"a\",\"state\":\"idle\","
	    "\"slot_s\":1,\"ring_s\":1,\"version\":1}", "bad_field", "'name'");
	ERR("{\"type\":\"going_away\"}", "bad_field", "'reason'");
	ERR("{\"type\":\"offer_gone\",\"offer_id\":3}", "bad_field", "'reason'");
	ERR("{\"type\":\"queue\",\"position\":1,\"wait_s\":0}", "bad_field", "'counselors'");

	/* Charsets and enums. */
	ERR("{\"type\":\"talk_now\",\"topic\":\"Grief\",\"mode\":\"text\"}", "bad_field",
	    "field 'topic' must be 1-32 chars of [a-z0-9_-]");
	ERR("{\"type\":\"talk_now\",\"topic\":\"\",\"mode\":\"text\"}", "bad_field", "'topic'");
	ERR("{\"type\":\"talk_now\",\"topic\":\"a b\",\"mode\":\"text\"}", "bad_field", "'topic'");
	ERR("{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"video\"}", "bad_field",
	    "field 'mode' must be text or voice");
	ERR("{\"type\":\"hello\",\"role\":\"admin\"}", "bad_field", "'role'");
	ERR("{\"type\":\"hello\",\"role\":\"\"}", "bad_field", "'role'");
	ERR("{\"type\":\"set_state\",\"state\":\"busy\"}", "bad_field",
	    "field 'state' must be available or away");
	ERR("{\"type\":\"set_state\",\"state\":\"wrapup\"}", "bad_field", "'state'");
	ERR("{\"type\":\"state\",\"state\":\"sleepy\"}", "bad_field", "'state'");
	ERR("{\"type\":\"welcome\",\"role\":\"client\",\"sub\":\"a b\",\"name\":\"\","
	    "\"state\":\"idle\",\"slot_s\":1,\"ring_s\":1,\"version\":1}", "bad_field", "'sub'");

	/* Integer ranges. */
	ERR("{\"type\":\"rate\",\"score\":0}", "bad_field", "field 'score' must be an integer 1-5");
	ERR("{\"type\":\"rate\",\"score\":6}", "bad_field", "'score'");
	ERR("{\"type\":\"rate\",\"score\":-3}", "bad_field", "'score'");
	ERR("{\"type\":\"accept\",\"offer_id\":0}", "bad_field", "'offer_id'");
	ERR("{\"type\":\"ack\",\"seq\":0}", "bad_field", "field 'seq' must be an integer >= 1");
	ERR("{\"type\":\"msg\",\"id\":-1,\"text\":\"x\"}", "bad_field", "'id'");
	ERR("{\"type\":\"msg\",\"seq\":0,\"text\":\"x\"}", "bad_field", "'seq'");
	ERR("{\"type\":\"queue\",\"position\":0,\"wait_s\":0,\"counselors\":0}", "bad_field",
	    "'position'");
	ERR("{\"type\":\"slot_over\",\"grace_s\":-1}", "bad_field", "'grace_s'");

	/* Empty strings where content is required. */
	ERR("{\"type\":\"msg\",\"text\":\"\"}", "bad_field", "'text'");
	ERR("{\"type\":\"error\",\"code\":\"\"}", "bad_field", "'code'");
	ERR("{\"type\":\"session_end\",\"session_id\":\"\",\"reason\":\"x\"}", "bad_field",
	    "'session_id'");
}

static void test_non_integer_numbers(void **state)
{
	(void)state;
	ERR("{\"type\":\"rate\",\"score\":3.0}", "bad_field", "'score'");
	ERR("{\"type\":\"rate\",\"score\":3.5}", "bad_field", "'score'");
	ERR("{\"type\":\"ack\",\"seq\":1e3}", "bad_field", "'seq'");
	ERR("{\"type\":\"ack\",\"seq\":1E0}", "bad_field", "'seq'");
	ERR("{\"type\":\"slot_warning\",\"remaining_s\":60.0}", "bad_field", "'remaining_s'");
	ERR("{\"type\":\"accept\",\"offer_id\":-0.0}", "bad_field", "'offer_id'");
	/* Integers past int64 do not parse at all. */
	ERR("{\"type\":\"ack\",\"seq\":9223372036854775808}", "bad_json", NULL);
}

static void test_wrong_json_types(void **state)
{
	(void)state;
	ERR("{\"type\":\"msg\",\"text\":5}", "bad_field", "'text'");
	ERR("{\"type\":\"msg\",\"text\":null}", "bad_field", "'text'");
	ERR("{\"type\":\"msg\",\"text\":[\"x\"]}", "bad_field", "'text'");
	ERR("{\"type\":\"msg\",\"id\":\"1\",\"text\":\"x\"}", "bad_field", "'id'");
	ERR("{\"type\":\"typing\",\"on\":1}", "bad_field", "field 'on' must be true or false");
	ERR("{\"type\":\"typing\",\"on\":\"true\"}", "bad_field", "'on'");
	ERR("{\"type\":\"typing\",\"on\":null}", "bad_field", "'on'");
	ERR("{\"type\":\"rate\",\"score\":\"5\"}", "bad_field", "'score'");
	ERR("{\"type\":\"rate\",\"score\":true}", "bad_field", "'score'");
	ERR("{\"type\":\"rate\",\"score\":5,\"comment\":5}", "bad_field", "'comment'");
	ERR("{\"type\":\"hello\",\"role\":[\"client\"]}", "bad_field", "'role'");
	ERR("{\"type\":\"hello\",\"role\":\"client\",\"token\":{}}", "bad_field", "'token'");
	ERR("{\"type\":\"hello\",\"role\":\"client\",\"token\":null}", "bad_field", "'token'");
	ERR("{\"type\":\"talk_now\",\"topic\":7,\"mode\":\"text\"}", "bad_field", "'topic'");
	ERR("{\"type\":\"accept\",\"offer_id\":\"7\"}", "bad_field", "'offer_id'");
	ERR("{\"type\":\"error\",\"code\":\"x\",\"ref\":1}", "bad_field", "'ref'");
}

/* ---- bounds: exactly the maximum is fine, one more is not ------------- */

static void test_bounds(void **state)
{
	(void)state;
	OK(with_str("msg", "", "text", PROTO_TEXT_MAX, 'a'));
	assert_int_equal(strlen(m1.text), PROTO_TEXT_MAX);
	ERR(with_str("msg", "", "text", PROTO_TEXT_MAX + 1, 'a'), "too_large", "'text'");
	assert_int_equal(m1.type, PT_MSG);

	OK(with_str("rate", "\"score\":3,", "comment", PROTO_COMMENT_MAX, 'c'));
	assert_int_equal(strlen(m1.comment), PROTO_COMMENT_MAX);
	ERR(with_str("rate", "\"score\":3,", "comment", PROTO_COMMENT_MAX + 1, 'c'),
	    "too_large", "'comment'");

	OK(with_str("hello", "\"role\":\"client\",", "token", PROTO_TOKEN_MAX, 't'));
	assert_int_equal(strlen(m1.token), PROTO_TOKEN_MAX);
	ERR(with_str("hello", "\"role\":\"client\",", "token", PROTO_TOKEN_MAX + 1, 't'),
	    "too_large", "'token'");

	/* Bytes, not characters: 2000 two-byte characters is 4000 bytes. */
	memset(&m2, 0, sizeof m2);
	m2.type = PT_MSG;
	m2.id = 1;
	for (int i = 0; i < PROTO_TEXT_MAX / 2; i++)
		memcpy(m2.text + 2 * i, "\xc3\xa9", 2);
	assert_true(proto_encode(&m2, out, sizeof out) > 0);
	OK(out);
	assert_true(same());
	snprintf(json, sizeof json, "{\"type\":\"msg\",\"text\":\"x%s\"}", m2.text);
	ERR(json, "too_large", "'text'");

	/* Over-long fields that are not text/comment/token are bad_field. */
	OK(with_str("talk_now", "\"mode\":\"text\",", "topic", PROTO_TOPIC_MAX, 'a'));
	ERR(with_str("talk_now", "\"mode\":\"text\",", "topic", PROTO_TOPIC_MAX + 1, 'a'),
	    "bad_field", "'topic'");
	OK(with_str("session_end", "\"reason\":\"x\",", "session_id", PROTO_ID_MAX, 's'));
	ERR(with_str("session_end", "\"reason\":\"x\",", "session_id", PROTO_ID_MAX + 1, 's'),
	    "bad_field", "'session_id'");
	OK(with_str("session_end", "\"session_id\":\"s\",\"reason\":\"x\",", "referral",
	            PROTO_REFERRAL_MAX, 'r'));
	ERR(with_str("session_end", "\"session_id\":\"s\",\"reason\":\"x\",", "referral",
	             PROTO_REFERRAL_MAX + 1, 'r'), "bad_field", "'referral'");
	OK(with_str("error", "", "code", PROTO_CODE_MAX, 'c'));
	ERR(with_str("error", "", "code", PROTO_CODE_MAX + 1, 'c'), "bad_field", "'code'");
	OK(with_str("error", "\"code\":\"x\",", "ref", PROTO_CODE_MAX, 'c'));
	ERR(with_str("error", "\"code\":\"x\",", "ref", PROTO_CODE_MAX + 1, 'c'),
	    "bad_field", "'ref'");
	OK(with_str("going_away", "", "reason", PROTO_REASON_MAX, 'r'));
	ERR(with_str("going_away", "", "reason", PROTO_REASON_MAX + 1, 'r'),
	    "bad_field", "'reason'");
	static const char welcome_pre[] = "\"role\":\"client\",\"name\":\"\",\"state\":\"idle\","
	                                  "\"slot_s\":1,\"ring_s\":1,\"version\":1,";
	OK(with_str("welcome", welcome_pre, "sub", PROTO_SUB_MAX, 'S'));
	ERR(with_str("welcome", welcome_pre, "sub", PROTO_SUB_MAX + 1, 'S'), "bad_field", "'sub'");
	OK(with_str("session_start", "\"session_id\":\"s\",\"mode\":\"text\",\"topic\":\"t\","
	            "\"slot_s\":1,\"remaining_s\":1,", "peer", PROTO_NAME_MAX, 'n'));
	ERR(with_str("session_start", "\"session_id\":\"s\",\"mode\":\"text\",\"topic\":\"t\","
	             "\"slot_s\":1,\"remaining_s\":1,", "peer", PROTO_NAME_MAX + 1, 'n'),
	    "bad_field", "'peer'");

	/* Integer edges. */
	OK("{\"type\":\"queue\",\"position\":4294967295,\"wait_s\":0,\"counselors\":4294967295}");
	assert_int_equal(m1.position, UINT32_MAX);
	ERR("{\"type\":\"queue\",\"position\":4294967296,\"wait_s\":0,\"counselors\":0}",
	    "bad_field", "'position'");
	OK("{\"type\":\"decline\",\"offer_id\":9223372036854775807}");
	assert_int_equal(m1.offer_id, INT64_MAX);
	OK("{\"type\":\"rate\",\"score\":5}");
	OK("{\"type\":\"rate\",\"score\":1}");
	OK("{\"type\":\"sent\",\"id\":0,\"seq\":1}");
}

/* ---- encoder ----------------------------------------------------------- */

static void test_encode_cap(void **state)
{
	(void)state;
	static const char want[] = "{\"type\":\"ack\",\"seq\":42}";
	const size_t len = sizeof want - 1;
	char small[64];
	sample(PT_ACK, 0, &m2);
	assert_int_equal(proto_encode(&m2, NULL, 0), -1);
	assert_int_equal(proto_encode(&m2, small, 0), -1);
	assert_int_equal(proto_encode(&m2, small, 1), -1);
	memset(small, 'Z', sizeof small);
	/* Exactly the length leaves no room for the NUL: refused. */
	assert_int_equal(proto_encode(&m2, small, len), -1);
	assert_int_equal(small[len], 'Z');  /* nothing written past cap */
	memset(small, 'Z', sizeof small);
	assert_int_equal(proto_encode(&m2, small, len + 1), (long)len);
	assert_string_equal(small, want);
	assert_int_equal(small[len + 1], 'Z');

	sample(PT_MSG, 0, &m2);
	memset(m2.text, 'a', PROTO_TEXT_MAX);
	assert_int_equal(proto_encode(&m2, out, 100), -1);
	assert_true(proto_encode(&m2, out, sizeof out) > PROTO_TEXT_MAX);
}

static void expect_encode_fail(struct proto_msg *m, const char *what)
{
	long n = proto_encode(m, out, sizeof out);
	if (n != -1)
		print_error("%s: encoded as %s\n", what, out);
	assert_int_equal(n, -1);
}

static void test_encode_invalid(void **state)
{
	(void)state;
	memset(&m2, 0, sizeof m2);
	expect_encode_fail(&m2, "PT_NONE");
	m2.type = PT__COUNT;
	expect_encode_fail(&m2, "PT__COUNT");
	m2.type = (enum proto_type)999;
	expect_encode_fail(&m2, "type 999");

	sample(PT_HELLO, 0, &m2); m2.role = ROLE_NONE;
	expect_encode_fail(&m2, "hello role NONE");
	m2.role = (enum proto_role)17;
	expect_encode_fail(&m2, "hello role 17");
	sample(PT_TALK_NOW, 0, &m2); m2.mode = MODE_NONE;
	expect_encode_fail(&m2, "talk_now mode NONE");
	sample(PT_TALK_NOW, 0, &m2); strcpy(m2.topic, "Grief");
	expect_encode_fail(&m2, "talk_now bad topic");
	sample(PT_SET_STATE, 0, &m2); m2.state = ST_BUSY;
	expect_encode_fail(&m2, "set_state busy");
	sample(PT_STATE, 0, &m2); m2.state = ST__COUNT;
	expect_encode_fail(&m2, "state out of range");
	sample(PT_WELCOME, 0, &m2); m2.state = ST_NONE;
	expect_encode_fail(&m2, "welcome state NONE");
	sample(PT_WELCOME, 0, &m2); strcpy(m2.sub, "");
	expect_encode_fail(&m2, "welcome empty sub");
	sample(PT_RATE, 0, &m2); m2.score = 0;
	expect_encode_fail(&m2, "rate score 0");
	m2.score = 6;
	expect_encode_fail(&m2, "rate score 6");
	sample(PT_ACK, 0, &m2); m2.seq = 0;
	expect_encode_fail(&m2, "ack seq 0");
	sample(PT_ACCEPT, 0, &m2); m2.offer_id = -4;
	expect_encode_fail(&m2, "accept negative offer");
	sample(PT_MSG, 0, &m2); m2.text[0] = '\0';
	expect_encode_fail(&m2, "msg empty text");
	sample(PT_MSG, 0, &m2); m2.id = -5;  /* neither absent (-1) nor valid */
	expect_encode_fail(&m2, "msg id -5");
	sample(PT_MSG, 0, &m2); m2.seq = -1;
	expect_encode_fail(&m2, "msg seq -1");
	sample(PT_MSG, 0, &m2); memset(m2.text, 'a', sizeof m2.text);  /* no NUL */
	expect_encode_fail(&m2, "msg unterminated text");
	sample(PT_MSG, 0, &m2); strcpy(m2.text, "bad \xff utf8");
	expect_encode_fail(&m2, "msg invalid UTF-8");
	sample(PT_ERROR, 0, &m2); memset(m2.code, 'c', sizeof m2.code);
	expect_encode_fail(&m2, "error unterminated code");
	sample(PT_GOING_AWAY, 0, &m2); m2.reason[0] = '\0';
	expect_encode_fail(&m2, "going_away without reason");
	sample(PT_STATS, 1, &m2); m2.stats.ratings_mean = NAN;
	expect_encode_fail(&m2, "stats NaN mean");
	sample(PT_STATS, 1, &m2); m2.stats.ratings_mean = INFINITY;
	expect_encode_fail(&m2, "stats infinite mean");
	sample(PT_STATS, 1, &m2); m2.stats.uptime_s = (uint64_t)INT64_MAX + 1;
	expect_encode_fail(&m2, "stats uptime past int64");
}

/* Fields of other types are never read; optional fields left unset are
 * not emitted; a truthy `on` is true. */
static void test_encode_only_own_fields(void **state)
{
	(void)state;
	memset(&m2, 0xff, sizeof m2);  /* garbage everywhere ... */
	m2.type = PT_ACK;              /* ... but the fields of ack */
	m2.seq = 5;
	assert_true(proto_encode(&m2, out, sizeof out) > 0);
	assert_string_equal(out, "{\"type\":\"ack\",\"seq\":5}");

	sample(PT_STATE, 0, &m2);
	m2.reason[0] = '\0';
	m2.wrapup_s = 60;  /* not in wrapup: meaningless, not sent */
	assert_true(proto_encode(&m2, out, sizeof out) > 0);
	assert_string_equal(out, "{\"type\":\"state\",\"state\":\"away\"}");

	sample(PT_TYPING, 0, &m2);
	m2.on = 7;
	assert_true(proto_encode(&m2, out, sizeof out) > 0);
	assert_string_equal(out, "{\"type\":\"typing\",\"on\":true}");

	sample(PT_MSG, 0, &m2);
	m2.id = -1;
	strcpy(m2.text, "x");
	assert_true(proto_encode(&m2, out, sizeof out) > 0);
	assert_string_equal(out, "{\"type\":\"msg\",\"text\":\"x\"}");
}

/* ---- spelling tables and charsets -------------------------------------- */

static void test_tables(void **state)
{
	(void)state;
	for (int t = PT_NONE + 1; t < PT__COUNT; t++) {
		const char *n = proto_type_name((enum proto_type)t);
		assert_non_null(n);
		assert_int_equal(proto_type_parse(n), t);
	}
	for (int r = ROLE_CLIENT; r <= ROLE_NODE; r++)
		assert_int_equal(proto_role_parse(proto_role_name((enum proto_role)r)), r);
	for (int md = MODE_TEXT; md <= MODE_VOICE; md++)
		assert_int_equal(proto_mode_parse(proto_mode_name((enum proto_mode)md)), md);
	for (int s = ST_NONE + 1; s < ST__COUNT; s++)
		assert_int_equal(proto_state_parse(proto_state_name((enum proto_state)s)), s);
	assert_string_equal(proto_type_name(PT_SESSION_END), "session_end");
	assert_string_equal(proto_state_name(ST_IN_SESSION), "in_session");
	assert_string_equal(proto_role_name(ROLE_COUNSELOR), "counselor");
	assert_string_equal(proto_mode_name(MODE_VOICE), "voice");
	assert_null(proto_type_name(PT_NONE));
	assert_null(proto_type_name(PT__COUNT));
	assert_null(proto_type_name((enum proto_type)-1));
	assert_null(proto_role_name(ROLE_NONE));
	assert_null(proto_role_name((enum proto_role)5));
	assert_string_equal(proto_role_name(ROLE_NODE), "node");
	assert_null(proto_mode_name((enum proto_mode)3));
	assert_null(proto_state_name(ST__COUNT));
	assert_int_equal(proto_type_parse("nope"), PT_NONE);
	assert_int_equal(proto_type_parse(""), PT_NONE);
	assert_int_equal(proto_type_parse(NULL), PT_NONE);
	assert_int_equal(proto_role_parse("Client"), ROLE_NONE);
	assert_int_equal(proto_mode_parse(NULL), MODE_NONE);
	assert_int_equal(proto_state_parse("none"), ST_NONE);
}

static void test_charsets(void **state)
{
	(void)state;
	assert_true(proto_topic_valid("grief"));
	assert_true(proto_topic_valid("a-b_c-0-9"));
	assert_true(proto_topic_valid("abcdefghijklmnopqrstuvwxyz012345"));   /* 32 */
	assert_false(proto_topic_valid("abcdefghijklmnopqrstuvwxyz0123456")); /* 33 */
	assert_false(proto_topic_valid(""));
	assert_false(proto_topic_valid(NULL));
	assert_false(proto_topic_valid("Grief"));
	assert_false(proto_topic_valid("gri.ef"));
	assert_false(proto_topic_valid("gr\xc3\xa9"));
	assert_true(proto_sub_valid("alice.smith_2@example-org"));
	assert_true(proto_sub_valid("A"));
	assert_false(proto_sub_valid(""));
	assert_false(proto_sub_valid(NULL));
	assert_false(proto_sub_valid("a b"));
	assert_false(proto_sub_valid("a/b"));
	assert_false(proto_sub_valid("a+b"));
	char s[PROTO_SUB_MAX + 2];
	memset(s, 'x', sizeof s);
	s[PROTO_SUB_MAX] = '\0';
	assert_true(proto_sub_valid(s));
	s[PROTO_SUB_MAX] = 'x';
	s[PROTO_SUB_MAX + 1] = '\0';
	assert_false(proto_sub_valid(s));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_every_type),
		cmocka_unit_test(test_encode_exact),
		cmocka_unit_test(test_decode_protocol_stats_example),
		cmocka_unit_test(test_decode_fields),
		cmocka_unit_test(test_state_wrapup_s),
		cmocka_unit_test(test_crisis_flag),
		cmocka_unit_test(test_stats_lenient),
		cmocka_unit_test(test_ratings_decode),
		cmocka_unit_test(test_ratings_encode),
		cmocka_unit_test(test_bad_json),
		cmocka_unit_test(test_embedded_nul),
		cmocka_unit_test(test_unknown_type),
		cmocka_unit_test(test_reason_is_printable),
		cmocka_unit_test(test_bad_field),
		cmocka_unit_test(test_non_integer_numbers),
		cmocka_unit_test(test_wrong_json_types),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_encode_cap),
		cmocka_unit_test(test_encode_invalid),
		cmocka_unit_test(test_encode_only_own_fields),
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_charsets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
