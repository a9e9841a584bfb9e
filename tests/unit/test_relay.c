/* test_relay.c - the relay's overload rule: audio later than its time by
 * more than stale_ms is dropped, and nothing else is (a steady stream,
 * network jitter under the bound, a sender's clock drifting for a whole
 * slot, a new stream, the rule switched off). The clock is passed in, so
 * "late" here is exact, not timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../proto/rtp.h"
#include "../../server/relay.h"

#define FRAME_MS 20
#define TS_PER_FRAME 960

struct rig {
	struct relay r;
	struct media_ctx *send;        /* the client's tx key */
	uint16_t seq;
	uint32_t ts;
};

static void rig_init(struct rig *g, int64_t stale_ms, int64_t now, uint32_t ts0)
{
	struct relay_limits lim = { .max_packet = 1200, .max_pps = 1000, .silence_ms = 5000,
	                            .report_ms = 5000, .stale_ms = stale_ms };
	struct relay_keys keys[2];
	memset(g, 0, sizeof *g);
	assert_int_equal(relay_init(&g->r, MEDIA_GCM, &lim, now, keys), 0);
	uint8_t key[MEDIA_KEY_MAX];
	assert_int_equal(media_key_decode(MEDIA_GCM, keys[0].tx, key), 0);
	g->send = media_ctx_new(MEDIA_GCM, key, 1);
	assert_non_null(g->send);
	g->ts = ts0;
}

static void rig_free(struct rig *g)
{
	media_ctx_free(g->send);
	relay_free(&g->r);
}

/* The client's next 20 ms frame, arriving at `now`. */
static enum relay_verdict send_at(struct rig *g, int64_t now)
{
	uint8_t buf[MEDIA_PACKET_MAX + MEDIA_TRAILER_MAX];
	size_t len = rtp_write(buf, sizeof buf, RTP_PT_OPUS, 0, g->seq++, g->ts, 0x1234);
	g->ts += TS_PER_FRAME;
	buf[len++] = 0x78; /* Opus: hybrid fullband 20 ms, one frame */
	memset(buf + len, 0x5a, 20);
	len += 20;
	assert_int_equal(media_protect(g->send, buf, &len), MEDIA_OK);
	int resumed;
	return relay_packet(&g->r, 0, buf, &len, now, &resumed);
}

/* `n` frames, each arriving when it is due from `*t` on: all relayed. */
static void on_time(struct rig *g, int64_t *t, int n)
{
	for (int i = 0; i < n; i++, *t += FRAME_MS)
		assert_int_equal(send_at(g, *t), RELAY_FORWARD);
}

/* The server stalls: the next `ms` of frames are all read when the last
 * of them is due. Returns how many were dropped as stale; the rest must
 * have been relayed. */
static int stall(struct rig *g, int64_t *t, int ms)
{
	int64_t read_at = *t + ms;
	int dropped = 0;
	for (int i = 0; i < ms / FRAME_MS; i++, *t += FRAME_MS) {
		enum relay_verdict v = send_at(g, read_at);
		assert_true(v == RELAY_FORWARD || v == RELAY_DROP_STALE);
		dropped += v == RELAY_DROP_STALE;
	}
	return dropped;
}

static void test_steady_and_jitter_pass(void **state)
{
	(void)state;
	struct rig g;
	rig_init(&g, 400, 1000, 7);
	int64_t t = 1000;
	on_time(&g, &t, 500);
	/* Jitter: the network holds 20 frames, then delivers them at once,
	 * the first 390 ms late. */
	int64_t burst_at = t + 390;
	for (int i = 0; i < 20; i++, t += FRAME_MS)
		assert_int_equal(send_at(&g, burst_at), RELAY_FORWARD);
	on_time(&g, &t, 20);
	rig_free(&g);
}

static void test_late_audio_dropped_then_flows(void **state)
{
	(void)state;
	struct rig g;
	rig_init(&g, 400, 0, 0xfffff000u); /* the timestamp wraps on the way */
	int64_t t = 0;
	on_time(&g, &t, 100);
	/* The server fell behind: it reads 0.9 s of audio all at once, when
	 * the last of it is due. Frames due at t0 + 20 i are read at t0 + 900:
	 * late 900 - 20 i ms, over 400 for i < 25. */
	assert_int_equal(stall(&g, &t, 900), 25);
	/* Caught up: on time again, all relayed. */
	on_time(&g, &t, 50);
	rig_free(&g);
}

static void test_clock_drift_for_a_slot(void **state)
{
	(void)state;
	struct rig g;
	rig_init(&g, 400, 0, 0);
	/* The sender's clock 500 ppm slow (worse than real clocks) for 30
	 * minutes: its audio drifts 900 ms behind ours, which is no overload. */
	int dropped = 0;
	for (int64_t i = 0; i < 30 * 60 * 50; i++)
		dropped += send_at(&g, i * FRAME_MS * 10005 / 10000) != RELAY_FORWARD;
	assert_int_equal(dropped, 0);
	rig_free(&g);
}

static void test_new_stream_resyncs(void **state)
{
	(void)state;
	struct rig g;
	rig_init(&g, 400, 0, 500000);
	int64_t t = 0;
	on_time(&g, &t, 50);
	/* A timestamp far back (another stream's clock): not an hour late. */
	g.ts -= 48000 * 3600;
	on_time(&g, &t, 50);
	rig_free(&g);
}

static void test_jump_ahead_then_overload(void **state)
{
	(void)state;
	struct rig g;
	rig_init(&g, 400, 0, 0);
	int64_t t = 0;
	on_time(&g, &t, 50);
	/* 5 s of silence over which the timestamps jump 10 s (a capture
	 * started again, say): the frames look early against the old
	 * reference, which moves to them. */
	t += 5000;
	g.ts += 48 * 10000;
	on_time(&g, &t, 50);
	/* So an overload right after is still seen as one. */
	assert_int_equal(stall(&g, &t, 900), 25);
	rig_free(&g);
}

static void test_sender_pause_is_not_late(void **state)
{
	(void)state;
	struct rig g;
	rig_init(&g, 400, 0, 0);
	int64_t t = 0;
	on_time(&g, &t, 50);
	/* The microphone goes away for 2.5 s: nothing is sent, and the
	 * page's clock (it counts captured frames) stands still. */
	t += 2500;
	on_time(&g, &t, 50);
	rig_free(&g);
}

static void test_off(void **state)
{
	(void)state;
	struct rig g;
	rig_init(&g, 0, 0, 0);
	assert_int_equal(send_at(&g, 0), RELAY_FORWARD);
	assert_int_equal(send_at(&g, 5000), RELAY_FORWARD);
	assert_string_equal(relay_verdict_name(RELAY_DROP_STALE), "stale");
	rig_free(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_steady_and_jitter_pass),
		cmocka_unit_test(test_late_audio_dropped_then_flows),
		cmocka_unit_test(test_clock_drift_for_a_slot),
		cmocka_unit_test(test_new_stream_resyncs),
		cmocka_unit_test(test_jump_ahead_then_overload),
		cmocka_unit_test(test_sender_pause_is_not_late),
		cmocka_unit_test(test_off),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
