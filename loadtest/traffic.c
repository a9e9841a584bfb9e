/* traffic.c - what flows in a session, and its one-way latency: voice as
 * pre-encoded Opus in SRTP every 20 ms, text chat at --text-rate.
 *
 * Latency is generator to generator. An audio packet is stamped when it is
 * handed to the connection's send queue and timed when its callback runs
 * on the other side, so it includes the generator's own queueing on both
 * ends as well as the server's; the relay keeps sequence numbers, so the
 * receiver finds the send time in the *peer's* ring of stamps. A text
 * message carries its send time in its body ("lt <ns> <id> xxx..."): both
 * ends are this process, on one monotonic clock. */
#include "lt.h"
#include "../client-demo/esclient.h"
#include "../proto/media.h"
#include "../proto/rtp.h"

#include <math.h>
#include <opus/opus.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LT_CATCH_UP_MAX 5           /* frames sent at once after a late tick */
#define LT_SLACK_NS 2000000LL       /* libev's cached time runs a little behind */
#define LT_OPUS_BITRATE 24000
/* A sender more than this far behind its text schedule starts afresh
 * rather than sending a burst the server's rate limit would refuse. */
#define LT_TEXT_BEHIND_NS 1000000000LL

static struct proto_msg tmsg;   /* scratch for outgoing chat */

/* ---- the Opus source --------------------------------------------------------- */

/* One second of a voice-like signal (a 180 Hz voice with two harmonics,
 * syllables at 3 Hz, a little noise), encoded once: 20 ms frames, 48 kHz
 * mono, VOIP, 24 kbps, no DTX, as the clients send it. */
static int opus_prepare(char *err, size_t errlen)
{
	int e;
	OpusEncoder *enc = opus_encoder_create(RTP_OPUS_CLOCK, 1, OPUS_APPLICATION_VOIP, &e);
	if (!enc) {
		snprintf(err, errlen, "opus encoder: %s", opus_strerror(e));
		return -1;
	}
	if (opus_encoder_ctl(enc, OPUS_SET_BITRATE(LT_OPUS_BITRATE)) != OPUS_OK ||
	    opus_encoder_ctl(enc, OPUS_SET_DTX(0)) != OPUS_OK) {
		opus_encoder_destroy(enc);
		snprintf(err, errlen, "opus encoder: cannot set 24 kbps without DTX");
		return -1;
	}
	opus_int16 pcm[RTP_FRAME_TICKS];
	uint32_t noise = 2463534242u;
	size_t total = 0;
	for (int f = 0; f < LT_OPUS_FRAMES; f++) {
		for (int i = 0; i < RTP_FRAME_TICKS; i++) {
			double t = (double)(f * RTP_FRAME_TICKS + i) / RTP_OPUS_CLOCK;
			double env = 0.55 + 0.45 * sin(2 * M_PI * 3 * t);
			double s = env * (6000 * sin(2 * M_PI * 180 * t) +
			                  2500 * sin(2 * M_PI * 360 * t) +
			                  1200 * sin(2 * M_PI * 720 * t));
			noise ^= noise << 13;
			noise ^= noise >> 17;
			noise ^= noise << 5;
			pcm[i] = (opus_int16)lrint(s + (double)(noise % 601) - 300.0);
		}
		opus_int32 n = opus_encode(enc, pcm, RTP_FRAME_TICKS, lt.opus[f], LT_OPUS_MAX);
		if (n <= 0) {
			opus_encoder_destroy(enc);
			snprintf(err, errlen, "opus encode: %s", opus_strerror(n));
			return -1;
		}
		lt.opus_len[f] = (size_t)n;
		total += (size_t)n;
	}
	opus_encoder_destroy(enc);
	lt.opus_mean = (double)total / LT_OPUS_FRAMES;
	return 0;
}

/* Voice sessions need at most one ring per counselor and one per client in
 * a session with one: 2K, and some slack for sessions ending and starting
 * in the same instant. */
int traffic_init(char *err, size_t errlen)
{
	if (lt.o.mode != MODE_VOICE || lt.o.load == LOAD_IDLE)
		return 0;
	if (opus_prepare(err, errlen) != 0)
		return -1;
	if (media_global_init() != 0) {
		snprintf(err, errlen, "cannot initialise SRTP");
		return -1;
	}
	int n = 2 * lt.ncounselors + 64;
	lt.rings = calloc((size_t)n * LT_RING, sizeof *lt.rings);
	lt.free_rings = calloc((size_t)n, sizeof *lt.free_rings);
	if (!lt.rings || !lt.free_rings) {
		snprintf(err, errlen, "out of memory for %d send-stamp rings", n);
		return -1;
	}
	for (int i = 0; i < n; i++)
		lt.free_rings[lt.nfree_rings++] = lt.rings + (size_t)i * LT_RING;
	return 0;
}

void traffic_fini(void)
{
	for (int i = 0; i < lt.ncounselors; i++)
		traffic_stop(&lt.counselors[i]);
	for (int i = 0; i < lt.nclients; i++)
		traffic_stop(&lt.clients[i]);
	free(lt.rings);
	free(lt.free_rings);
}

/* ---- voice: the hot path ----------------------------------------------------- */

static void send_frame(struct party *p)
{
	uint8_t buf[MEDIA_PACKET_MAX];
	unsigned f = p->frame % LT_OPUS_FRAMES;
	size_t len = rtp_write(buf, sizeof buf, RTP_PT_OPUS, p->marker, p->seq, p->ts, p->ssrc);
	memcpy(buf + len, lt.opus[f], lt.opus_len[f]);
	len += lt.opus_len[f];
	/* A sequence number is spent whether or not the packet goes out: a
	 * (key, SSRC, index) is never protected twice. */
	uint16_t seq = p->seq++;
	p->ts += RTP_FRAME_TICKS;
	p->frame++;
	p->marker = 0;
	if (media_protect(p->tx, buf, &len) != MEDIA_OK) {
		lt.c.bad++;
		return;
	}
	if (p->ring) {
		struct stamp *s = &p->ring[seq & (LT_RING - 1)];
		s->ns = now_ns();
		s->seq = seq;
		s->valid = 1;
	}
	if (esc_send_raw(p->c, buf, len, 1) == 0) {
		lt.c.sent++;
		p->last_seq = seq;
		p->sent_any = 1;
	}
}

/* Every frame due for `p` by `now`: at most LT_CATCH_UP_MAX after a late
 * tick, older ones skipped (their timestamps pass, as a real sender's would). */
static void party_pump(struct party *p, int64_t now)
{
	if (now + LT_SLACK_NS < p->next_ns)
		return;
	int64_t due = (now + LT_SLACK_NS - p->next_ns) / LT_FRAME_NS + 1;
	p->next_ns += due * LT_FRAME_NS;
	if (due > LT_CATCH_UP_MAX) {
		int64_t skip = due - LT_CATCH_UP_MAX;
		p->ts += (uint32_t)(skip * RTP_FRAME_TICKS);
		p->frame += (unsigned)skip;
		lt.c.skipped += (uint64_t)skip;
		due = LT_CATCH_UP_MAX;
	}
	for (int64_t i = 0; i < due; i++)
		send_frame(p);
}

static void latency_audio(int64_t d)
{
	hist_add(&lt.s_audio, d);
	if (lt.measuring)
		hist_add(&lt.h_audio, d);
}

/* Order and loss from the sequence number, as voice.c counts them. */
static void track_seq(struct party *p, uint32_t ssrc, uint16_t seq)
{
	if (!p->have_rx || ssrc != p->rx_ssrc) {
		p->have_rx = 1;
		p->rx_ssrc = ssrc;
		p->rx_seq = seq;
		return;
	}
	int16_t d = (int16_t)(uint16_t)(seq - p->rx_seq);
	if (d <= 0) {
		lt.c.out_of_order++;
		if (lt.c.lost > 0)
			lt.c.lost--;    /* it was counted lost when its gap was seen */
		return;
	}
	lt.c.lost += (uint64_t)(d - 1);
	p->rx_seq = seq;
}

/* The client of `p`'s session, if it is waiting for the traffic to land. */
static void settle_check(struct party *p)
{
	struct party *client = p->counselor ? p->peer : p;
	if (client && client->st == P_QUIET)
		party_quiet_check(client);
}

void traffic_binary(struct party *p, const uint8_t *buf, size_t len)
{
	int64_t now = now_ns();
	uint8_t pkt[MEDIA_PACKET_MAX];
	struct rtp_header h;
	if (!p->rx) {
		/* The server sends control before queued audio: a packet may
		 * come after the session_end that freed our keys. */
		lt.late_audio++;
		return;
	}
	if (!buf || len > sizeof pkt) {
		lt.c.bad++;
		return;
	}
	memcpy(pkt, buf, len);
	if (media_unprotect(p->rx, pkt, &len) != MEDIA_OK ||
	    rtp_parse(pkt, len, &h) != RTP_OK || h.payload_type != RTP_PT_OPUS) {
		lt.c.bad++;
		return;
	}
	lt.c.received++;
	track_seq(p, h.ssrc, h.seq);
	const struct stamp *s = p->peer && p->peer->ring ? &p->peer->ring[h.seq & (LT_RING - 1)]
	                                                 : NULL;
	if (s && s->valid && s->seq == h.seq)
		latency_audio(now - s->ns);
	else
		lt.c.unmatched++;
	if (p->st == P_QUIET || (p->peer && p->peer->st == P_QUIET))
		settle_check(p);
}

/* ---- text -------------------------------------------------------------------- */

static void send_text(struct party *p, int64_t now)
{
	memset(&tmsg, 0, sizeof tmsg);
	tmsg.type = PT_MSG;
	tmsg.id = ++p->text_id;
	int n = snprintf(tmsg.text, sizeof tmsg.text, "lt %lld %lld ", (long long)now,
	                 (long long)tmsg.id);
	if (n < lt.o.text_bytes)
		memset(tmsg.text + n, 'x', (size_t)(lt.o.text_bytes - n));
	tmsg.text[n > lt.o.text_bytes ? n : lt.o.text_bytes] = '\0';
	if (esc_send(p->c, &tmsg) != 0)
		return;
	p->text_sent++;
	lt.c.text_sent++;
	if (p->peer)
		p->peer->text_expected++;
}

void traffic_text(struct party *p, const struct proto_msg *m)
{
	long long ns;
	int64_t now = now_ns();
	if (sscanf(m->text, "lt %lld ", &ns) != 1) {
		lt.c.text_bad++;
		return;
	}
	p->text_received++;
	lt.c.text_received++;
	hist_add(&lt.s_text, now - ns);
	if (lt.measuring)
		hist_add(&lt.h_text, now - ns);
	/* A page acknowledges what it displayed. */
	memset(&tmsg, 0, sizeof tmsg);
	tmsg.type = PT_ACK;
	tmsg.seq = m->seq;
	esc_send(p->c, &tmsg);
}

void traffic_delivered(struct party *p, const struct proto_msg *m)
{
	if (m->seq > p->text_delivered)
		p->text_delivered = m->seq;
	if (p->st == P_QUIET || (p->peer && p->peer->st == P_QUIET))
		settle_check(p);
}

/* ---- sessions ---------------------------------------------------------------- */

static int keys_from(struct party *p, const struct proto_msg *m)
{
	enum media_profile prof;
	uint8_t tx[MEDIA_KEY_MAX], rx[MEDIA_KEY_MAX];
	int rc = -1;
	if (media_profile_parse(m->srtp_profile, &prof) == 0 &&
	    media_key_decode(prof, m->tx_key, tx) == 0 &&
	    media_key_decode(prof, m->rx_key, rx) == 0) {
		p->tx = media_ctx_new(prof, tx, 1);
		p->rx = media_ctx_new(prof, rx, 0);
		rc = p->tx && p->rx ? 0 : -1;
	}
	OPENSSL_cleanse(tx, sizeof tx);
	OPENSSL_cleanse(rx, sizeof rx);
	return rc;
}

static int voice_start(struct party *p, const struct proto_msg *m)
{
	if (m->mode != MODE_VOICE || keys_from(p, m) != 0)
		return -1;
	uint8_t r[10];
	if (RAND_bytes(r, sizeof r) != 1)
		return -1;
	p->ssrc = (uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 | r[3];
	p->seq = (uint16_t)(r[4] << 8 | r[5]);
	p->ts = (uint32_t)r[6] << 24 | (uint32_t)r[7] << 16 | (uint32_t)r[8] << 8 | r[9];
	p->frame = (unsigned)p->index;
	p->marker = 1;
	p->sent_any = p->have_rx = 0;
	if (lt.nfree_rings)
		p->ring = lt.free_rings[--lt.nfree_rings];
	/* The first frame on the next point of this party's grid: all parties
	 * tick together, or spread over the 20 ms with --tick-ms. */
	int64_t since = now_ns() - lt.t0_ns - p->phase_ns;
	int64_t k = since <= 0 ? 0 : (since + LT_FRAME_NS - 1) / LT_FRAME_NS;
	p->next_ns = lt.t0_ns + p->phase_ns + k * LT_FRAME_NS;
	p->sending = 1;
	return 0;
}

/* 0, or -1 when a voice session brought no usable keys. */
int traffic_start(struct party *p, const struct proto_msg *m)
{
	if (lt.o.mode == MODE_VOICE && voice_start(p, m) != 0)
		return -1;
	if (lt.o.text_rate > 0) {
		double period = 1e9 / lt.o.text_rate;
		p->texting = 1;
		p->text_id = 0;
		/* A random phase: parties do not all type in the same instant. */
		p->text_next_ns = now_ns() + (int64_t)(lt_uniform() * period);
	}
	return 0;
}

/* The session is over for `p`: keys and the stamp ring go back. */
void traffic_stop(struct party *p)
{
	p->sending = p->texting = 0;
	media_ctx_free(p->tx);
	media_ctx_free(p->rx);
	p->tx = p->rx = NULL;
	if (p->ring) {
		memset(p->ring, 0, LT_RING * sizeof *p->ring);
		lt.free_rings[lt.nfree_rings++] = p->ring;
		p->ring = NULL;
	}
}

int traffic_settled(const struct party *c)
{
	const struct party *k = c->peer;
	if (!k)
		return 1;
	/* The server numbers a sender's messages from 1 in the session, and
	 * each is acknowledged as it arrives. */
	if (c->text_delivered != (int64_t)c->text_sent || k->text_delivered != (int64_t)k->text_sent)
		return 0;
	if (lt.o.mode != MODE_VOICE)
		return 1;
	return (!c->sent_any || (k->have_rx && k->rx_seq == c->last_seq)) &&
	       (!k->sent_any || (c->have_rx && c->rx_seq == k->last_seq));
}

static void pump_text(struct party *p, int64_t now)
{
	if (now < p->text_next_ns)
		return;
	int64_t period = (int64_t)(1e9 / lt.o.text_rate);
	send_text(p, now);
	p->text_next_ns += period;
	if (p->text_next_ns + LT_TEXT_BEHIND_NS < now)
		p->text_next_ns = now + period;
}

static void pump(struct party *p, int64_t now)
{
	if (p->sending)
		party_pump(p, now);
	if (p->texting)
		pump_text(p, now);
}

void traffic_tick(void)
{
	int64_t now = now_ns();
	for (int i = 0; i < lt.ncounselors; i++)
		pump(&lt.counselors[i], now);
	for (int i = 0; i < lt.nclients; i++)
		pump(&lt.clients[i], now);
}
