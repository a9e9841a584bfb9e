/* test_media.c - the voice relay through the real earshotd, packet by
 * packet: honest audio flows both ways re-protected per leg; tampered,
 * replayed, wrongly keyed, non-Opus, malformed, oversize and flooding
 * packets are dropped and counted while the honest side carries on;
 * silence, mute and link-quality messages arrive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <opus/opus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "../../proto/media.h"
#include "../../proto/rtp.h"

#define T H_TIMEOUT_MS

static const char *const args[] = { "--silence-timeout", "1", "--link-report", "1",
	                             "--media-max-pps", "100", NULL };
static struct h_server srv;

/* One party of the voice session, as the test sees it. */
struct party {
	struct h_peer *p;
	struct media_ctx *tx, *rx;
	uint8_t txkey[MEDIA_KEY_MAX];
	uint16_t seq;
	uint32_t ts, ssrc;
	uint32_t clock;                /* the capture clock at the last packet */
	int clocked;
};

static struct party cl, co;
static uint8_t opus_frame[400];
static int opus_len;

static void make_opus_frame(void)
{
	int err;
	OpusEncoder *enc = opus_encoder_create(48000, 1, OPUS_APPLICATION_VOIP, &err);
	assert_non_null(enc);
	opus_int16 pcm[960];
	for (int i = 0; i < 960; i++)
		pcm[i] = (opus_int16)(8000 * sin(2 * M_PI * 440 * i / 48000.0));
	opus_len = opus_encode(enc, pcm, 960, opus_frame, sizeof opus_frame);
	assert_true(opus_len > 0);
	opus_encoder_destroy(enc);
}

static void keys_from(struct party *x, const struct proto_msg *ss)
{
	enum media_profile prof;
	uint8_t rxkey[MEDIA_KEY_MAX];
	assert_int_equal(media_profile_parse(ss->srtp_profile, &prof), 0);
	assert_int_equal(prof, MEDIA_GCM);
	assert_int_equal(media_key_decode(prof, ss->tx_key, x->txkey), 0);
	assert_int_equal(media_key_decode(prof, ss->rx_key, rxkey), 0);
	x->tx = media_ctx_new(prof, x->txkey, 1);
	x->rx = media_ctx_new(prof, rxkey, 0);
	assert_non_null(x->tx);
	assert_non_null(x->rx);
}

/* Build the next packet of `x` with `payload` into `buf`, protected with
 * `ctx`; returns its length. */
/* A real sender's timestamps follow its capture clock: a pause between
 * packets moves them on (the relay drops audio far behind its time), and
 * each packet moves them a frame at least (a burst sent at once runs
 * ahead). */
static void clock_follow(struct party *x)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	uint32_t now = (uint32_t)((int64_t)t.tv_sec * 48000 + t.tv_nsec / 1000000 * 48);
	if (x->clocked && (int32_t)(now - x->clock) > 0)
		x->ts += now - x->clock;
	x->clock = now;
	x->clocked = 1;
}

static size_t packet(struct party *x, struct media_ctx *ctx, uint8_t pt, const uint8_t *payload,
                     size_t plen, uint8_t *buf)
{
	clock_follow(x);
	size_t n = rtp_write(buf, 64, pt, 0, x->seq++, x->ts, x->ssrc);
	x->ts += RTP_FRAME_TICKS;
	memcpy(buf + n, payload, plen);
	n += plen;
	assert_int_equal(media_protect(ctx, buf, &n), MEDIA_OK);
	return n;
}

static void send_honest(struct party *x, int count)
{
	uint8_t buf[MEDIA_PACKET_MAX];
	for (int i = 0; i < count; i++) {
		size_t n = packet(x, x->tx, RTP_PT_OPUS, opus_frame, (size_t)opus_len, buf);
		h_send_raw(x->p, buf, n, 1);
	}
}

/* Receive `count` frames at `x`: each unprotects with x's rx key and
 * carries the Opus frame; returns the last sequence number. */
static uint16_t receive(struct party *x, int count)
{
	uint8_t buf[MEDIA_PACKET_MAX];
	struct rtp_header h = { 0 };
	for (int i = 0; i < count; i++) {
		long n = h_wait_binary(x->p, buf, sizeof buf, T);
		assert_true(n > 0);
		size_t len = (size_t)n;
		assert_int_equal(media_unprotect(x->rx, buf, &len), MEDIA_OK);
		assert_int_equal(rtp_parse(buf, len, &h), RTP_OK);
		assert_int_equal(h.payload_type, RTP_PT_OPUS);
		assert_int_equal(h.payload_len, (size_t)opus_len);
		assert_memory_equal(buf + h.header_len, opus_frame, (size_t)opus_len);
	}
	return h.seq;
}

static unsigned long long stat(const char *name)
{
	char body[4096], key[64];
	assert_int_equal(h_http_get(srv.port, "/stats", body, sizeof body), 200);
	snprintf(key, sizeof key, "\"%s\":", name);
	const char *p = strstr(body, key);
	assert_non_null(p);
	return strtoull(p + strlen(key), NULL, 10);
}

static int setup(void **state)
{
	(void)state;
	h_init();
	make_opus_frame();
	if (h_server_start(&srv, args) != 0)
		return -1;
	co.p = h_join(&srv, "counselor", ROLE_COUNSELOR,
	              h_token(ROLE_COUNSELOR, "vo", "Vo", NULL, 600));
	cl.p = h_join(&srv, "client", ROLE_CLIENT, NULL);
	h_send_json(co.p, "{\"type\":\"set_state\",\"state\":\"available\"}");
	h_send_json(cl.p, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"voice\"}");
	const struct proto_msg *o = h_wait(co.p, PT_OFFER, T);
	if (!o || o->mode != MODE_VOICE)
		return -1;
	char acc[80];
	snprintf(acc, sizeof acc, "{\"type\":\"accept\",\"offer_id\":%lld}", (long long)o->offer_id);
	h_send_json(co.p, acc);
	const struct proto_msg *ss = h_wait(cl.p, PT_SESSION_START, T);
	if (!ss || ss->mode != MODE_VOICE)
		return -1;
	keys_from(&cl, ss);
	ss = h_wait(co.p, PT_SESSION_START, T);
	if (!ss)
		return -1;
	keys_from(&co, ss);
	cl.seq = 1000, cl.ts = 5000, cl.ssrc = 0x11111111;
	co.seq = 65530, co.ts = 7000, co.ssrc = 0x22222222; /* wraps during the test */
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	h_peer_free(cl.p);
	h_peer_free(co.p);
	media_ctx_free(cl.tx);
	media_ctx_free(cl.rx);
	media_ctx_free(co.tx);
	media_ctx_free(co.rx);
	int rc = h_server_stop(&srv);
	h_fini();
	return rc == 0 ? 0 : -1;
}

static void test_keys_are_per_leg(void **state)
{
	(void)state;
	/* Four different keys: nobody can read or forge the other leg. */
	assert_memory_not_equal(cl.txkey, co.txkey, media_key_len(MEDIA_GCM));
}

static void test_honest_both_ways(void **state)
{
	(void)state;
	send_honest(&cl, 10);
	assert_int_equal(receive(&co, 10), 1009);
	send_honest(&co, 10);   /* 65530..3: the sequence number wraps */
	assert_int_equal(receive(&cl, 10), 3);
	assert_true(stat("relayed") >= 20);
}

static void test_attacks_dropped_and_counted(void **state)
{
	(void)state;
	uint8_t buf[MEDIA_PACKET_MAX], keep[MEDIA_PACKET_MAX];
	unsigned long long relayed0 = stat("relayed");

	/* Tampered payload. */
	size_t n = packet(&cl, cl.tx, RTP_PT_OPUS, opus_frame, (size_t)opus_len, buf);
	memcpy(keep, buf, n);
	size_t keep_n = n;
	buf[20] ^= 0x40;
	h_send_raw(cl.p, buf, n, 1);
	/* Replay of a packet the server already relayed. */
	h_send_raw(cl.p, keep, keep_n, 1);
	h_send_raw(cl.p, keep, keep_n, 1);
	/* Protected with the counselor's key, sent on the client's leg. */
	struct media_ctx *other = media_ctx_new(MEDIA_GCM, co.txkey, 1);
	assert_non_null(other);
	n = packet(&cl, other, RTP_PT_OPUS, opus_frame, (size_t)opus_len, buf);
	h_send_raw(cl.p, buf, n, 1);
	media_ctx_free(other);
	/* Authentic, but not Opus: an empty payload, and a code-3 TOC that
	 * promises zero frames. */
	n = packet(&cl, cl.tx, RTP_PT_OPUS, (const uint8_t *)"", 0, buf);
	h_send_raw(cl.p, buf, n, 1);
	n = packet(&cl, cl.tx, RTP_PT_OPUS, (const uint8_t *)"\x03\x00", 2, buf);
	h_send_raw(cl.p, buf, n, 1);
	/* Authentic, but the wrong payload type. */
	n = packet(&cl, cl.tx, 96, opus_frame, (size_t)opus_len, buf);
	h_send_raw(cl.p, buf, n, 1);
	/* Over media-max-packet (1200). */
	memset(buf, 0x80, 1300);
	h_send_raw(cl.p, buf, 1300, 1);

	/* The honest client still gets through, and only it. */
	send_honest(&cl, 3);
	receive(&co, 3);
	h_pump(200);
	assert_int_equal(h_binary_pending(co.p), 1); /* the replayed original, once */
	receive(&co, 1);
	assert_int_equal(stat("dropped_auth"), 2);
	assert_int_equal(stat("dropped_replay"), 1);
	assert_int_equal(stat("dropped_not_opus"), 2);
	assert_int_equal(stat("dropped_bad_rtp"), 1);
	assert_int_equal(stat("dropped_too_large"), 1);
	assert_int_equal(stat("relayed") - relayed0, 4);
}

static void test_flood(void **state)
{
	(void)state;
	h_pump(1100); /* a full bucket */
	unsigned long long rate0 = stat("dropped_rate"), relayed0 = stat("relayed");
	send_honest(&cl, 300);
	h_pump(500);
	unsigned long long passed = stat("relayed") - relayed0;
	unsigned long long dropped = stat("dropped_rate") - rate0;
	assert_int_equal(passed + dropped, 300);
	/* The burst (50) and what refilled meanwhile, at 100 a second. */
	assert_in_range(passed, 50, 120);
	while (h_binary_pending(co.p))
		receive(&co, 1);
	/* The flooder's session goes on: after a pause it is heard again. */
	h_pump(600);
	send_honest(&cl, 5);
	receive(&co, 5);
}

/* The counselor stops reading: audio for them queues at the server only
 * up to media-queue packets, the oldest dropped first, while chat sent
 * meanwhile is all delivered, in order, once they read again. */
static void test_slow_reader(void **state)
{
	(void)state;
	unsigned long long slow0 = stat("dropped_slow_reader");
	while (h_binary_pending(co.p))
		receive(&co, 1);
	h_pause(co.p, 1, 4096);
	char json[96];
	/* Full-size frames (a code-0 Opus packet of 1100 bytes) fill the
	 * socket buffers between us within seconds, not minutes. */
	uint8_t big[1100], buf[MEDIA_PACKET_MAX];
	memset(big, 0x5a, sizeof big);
	big[0] = 0x78;
	for (int round = 0; round < 200 && stat("dropped_slow_reader") == slow0; round++) {
		for (int i = 0; i < 9; i++) {  /* 90 a second, under the limit */
			size_t n = packet(&cl, cl.tx, RTP_PT_OPUS, big, sizeof big, buf);
			h_send_raw(cl.p, buf, n, 1);
		}
		snprintf(json, sizeof json, "{\"type\":\"msg\",\"id\":%d,\"text\":\"t%d\"}",
		         100 + round, round);
		h_send_json(cl.p, json);
		h_pump(100);
	}
	unsigned long long slow = stat("dropped_slow_reader") - slow0;
	assert_true(slow > 0);
	h_pause(co.p, 0, 0);
	/* Every chat line arrives, in order, none lost to the audio. */
	int seen = 0;
	const struct proto_msg *m;
	while ((m = h_wait(co.p, PT_MSG, 3000)) != NULL) {
		snprintf(json, sizeof json, "t%d", seen);
		assert_string_equal(m->text, json);
		seen++;
	}
	assert_true(seen > 0);
	/* Drop what survived; the next test starts from an empty queue. */
	h_pump(300);
	uint8_t sink[MEDIA_PACKET_MAX];
	while (h_binary_pending(co.p))
		h_wait_binary(co.p, sink, sizeof sink, 0);
}

static int audio_is(const struct proto_msg *m, const char *who, const char *state)
{
	return strcmp(m->who, who) == 0 && strcmp(m->audio, state) == 0;
}

static void wait_audio(struct h_peer *p, const char *who, const char *state)
{
	for (;;) {
		const struct proto_msg *m = h_wait(p, PT_AUDIO, T);
		if (!m)
			fail_msg("no audio %s %s", who, state);
		if (audio_is(m, who, state))
			return;
	}
}

static void test_silence_mute_link(void **state)
{
	(void)state;
	/* The counselor never sent for long and the client stops now: after
	 * the silence timeout (1 s) both sides hear about both. */
	wait_audio(cl.p, "you", "stopped");
	wait_audio(co.p, "peer", "stopped");
	/* Audio from the client again: "flowing" for both. */
	send_honest(&cl, 2);
	receive(&co, 2);
	wait_audio(cl.p, "you", "flowing");
	wait_audio(co.p, "peer", "flowing");
	/* Mute is relayed. */
	h_send_json(cl.p, "{\"type\":\"mute\",\"on\":true}");
	const struct proto_msg *m = h_wait(co.p, PT_PEER_MUTE, T);
	assert_non_null(m);
	assert_int_equal(m->on, 1);
	/* Link reports every second, graded. */
	m = h_wait(cl.p, PT_LINK, 3000);
	assert_non_null(m);
	assert_true(strcmp(m->link_you, "good") == 0 || strcmp(m->link_you, "fair") == 0 ||
	            strcmp(m->link_you, "poor") == 0);
	assert_true(strlen(m->link_peer) > 0);
	/* Text still works in a voice session. */
	h_send_json(cl.p, "{\"type\":\"msg\",\"id\":200,\"text\":\"can you hear me?\"}");
	m = h_wait(co.p, PT_MSG, T);
	assert_non_null(m);
	assert_string_equal(m->text, "can you hear me?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys_are_per_leg),
		cmocka_unit_test(test_honest_both_ways),
		cmocka_unit_test(test_attacks_dropped_and_counted),
		cmocka_unit_test(test_flood),
		cmocka_unit_test(test_slow_reader),
		cmocka_unit_test(test_silence_mute_link),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
