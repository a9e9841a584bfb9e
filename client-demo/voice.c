/* voice.c - one party's audio in one voice session (see voice.h): paced
 * Opus/RTP/SRTP sending on a libev timer, and receiving with loss counts,
 * decoding and recording. */
#include "voice.h"
#include "esclient.h"
#include "wav.h"
#include "../proto/media.h"
#include "../proto/rtp.h"

#include <ev.h>
#include <math.h>
#include <opus.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Largest Opus frame a decoder may return: 120 ms at 48 kHz. */
#define VOICE_DECODE_MAX (6 * VOICE_FRAME_SAMPLES)
/* A tick that comes this early is still on time: libev measures a timer
 * from the loop's cached time, which is a little older than our clock. */
#define VOICE_SLACK_S 0.002

struct voice {
	struct voice_config cfg;          /* record_path and keys are not kept */
	struct media_ctx *tx, *rx;
	OpusEncoder *enc;
	OpusDecoder *dec;
	struct wav_writer *rec;
	struct ev_loop *loop;
	ev_timer timer;
	int started, stopped, muted, talkspurt;
	/* sending: frames are numbered from voice_start; `frames` were due
	 * and dealt with (sent, muted or skipped) */
	double t0;
	uint64_t frames, limit;           /* limit 0: no send_seconds */
	uint32_t ssrc, ts;
	uint16_t seq;
	size_t pos;                       /* next source sample */
	double phase, step;               /* tone: radians, per sample */
	/* receiving */
	int have_rx;
	uint32_t rx_ssrc;
	uint16_t rx_seq;                  /* the highest sequence number seen */
	struct voice_stats st;
	/* buffers, allocated once with the voice */
	int16_t pcm_in[VOICE_FRAME_SAMPLES];
	int16_t pcm_out[VOICE_DECODE_MAX];
	uint8_t txbuf[MEDIA_PACKET_MAX];
	uint8_t rxbuf[MEDIA_PACKET_MAX];
};

static double mono_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- the source ---------------------------------------------------------------- */

static void source_fill(struct voice *v, int16_t *out)
{
	const struct voice_config *c = &v->cfg;
	for (size_t i = 0; i < VOICE_FRAME_SAMPLES; i++) {
		if (!c->pcm) {
			out[i] = (int16_t)lrint(VOICE_TONE_AMPLITUDE * sin(v->phase));
			v->phase += v->step;
			if (v->phase >= 2 * M_PI)
				v->phase -= 2 * M_PI;
			continue;
		}
		if (v->pos == c->pcm_len && c->pcm_loop)
			v->pos = 0;
		out[i] = v->pos < c->pcm_len ? c->pcm[v->pos++] : 0;   /* played once: silence */
	}
}

/* Frames that go unsent (muted, late) still pass: the source keeps time. */
static void source_skip(struct voice *v, uint64_t frames)
{
	const struct voice_config *c = &v->cfg;
	if (!c->pcm) {
		v->phase = fmod(v->phase + v->step * (double)frames * VOICE_FRAME_SAMPLES, 2 * M_PI);
		return;
	}
	uint64_t n = frames * VOICE_FRAME_SAMPLES;
	if (c->pcm_loop)
		v->pos = (size_t)((v->pos + n) % c->pcm_len);
	else
		v->pos = n >= c->pcm_len - v->pos ? c->pcm_len : v->pos + (size_t)n;
}

/* ---- sending ------------------------------------------------------------------- */

static int emit(struct voice *v, const uint8_t *pkt, size_t len)
{
	if (v->cfg.send)
		return v->cfg.send(v->cfg.send_ud, pkt, len);
	return v->cfg.conn ? esc_send_raw(v->cfg.conn, pkt, len, 1) : -1;
}

/* Encode one frame of the source, wrap, protect, send. */
static void send_frame(struct voice *v)
{
	uint8_t *p = v->txbuf;
	source_fill(v, v->pcm_in);
	size_t h = rtp_write(p, sizeof v->txbuf, RTP_PT_OPUS, v->talkspurt, v->seq, v->ts, v->ssrc);
	opus_int32 n = opus_encode(v->enc, v->pcm_in, VOICE_FRAME_SAMPLES, p + h,
	                           (opus_int32)(VOICE_PACKET_MAX - h - MEDIA_TRAILER_MAX));
	if (n <= 0)
		return;
	/* The sequence number is spent whether or not the packet goes out:
	 * a (key, SSRC, index) is never protected twice. */
	v->seq++;
	size_t len = h + (size_t)n;
	if (media_protect(v->tx, p, &len) != MEDIA_OK)
		return;
	if (emit(v, p, len) == 0) {
		v->st.sent++;
		v->talkspurt = 0;
	}
}

/* Deal with every frame the clock says is due: send (at most
 * VOICE_CATCH_UP_MAX after a late tick; older ones are skipped), or let
 * them pass while muted. The timestamp counts every frame, sent or not. */
static void pump(struct voice *v)
{
	uint64_t due = (uint64_t)((mono_now() - v->t0 + VOICE_SLACK_S) / VOICE_FRAME_S) + 1;
	if (v->limit && due > v->limit)
		due = v->limit;
	if (due > v->frames + VOICE_CATCH_UP_MAX) {
		uint64_t skip = due - v->frames - VOICE_CATCH_UP_MAX;
		if (!v->muted)
			v->st.skipped += skip;
		source_skip(v, skip);
		v->ts += (uint32_t)(skip * VOICE_FRAME_SAMPLES);
		v->frames += skip;
	}
	for (; v->frames < due; v->frames++) {
		if (v->muted)
			source_skip(v, 1);
		else
			send_frame(v);
		v->ts += VOICE_FRAME_SAMPLES;
	}
	if (v->limit && v->frames >= v->limit)
		ev_timer_stop(v->loop, &v->timer);   /* done sending; still receiving */
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	pump(w->data);
}

void voice_start(struct voice *v, struct ev_loop *loop)
{
	if (v->started)
		return;
	v->started = 1;
	v->loop = loop;
	ev_now_update(loop);
	v->t0 = mono_now();
	ev_timer_init(&v->timer, tick_cb, VOICE_FRAME_S, VOICE_FRAME_S);
	v->timer.data = v;
	ev_timer_start(loop, &v->timer);
	pump(v);
}

void voice_set_muted(struct voice *v, int on)
{
	on = !!on;
	if (on == v->muted)
		return;
	/* Frames due up to now belong to the old state. */
	if (v->started && !v->stopped)
		pump(v);
	v->muted = on;
	if (!on)
		v->talkspurt = 1;   /* RFC 3551: the marker starts a talkspurt */
}

/* ---- receiving ----------------------------------------------------------------- */

static void record(struct voice *v, const int16_t *pcm, int n)
{
	if (!v->rec || n <= 0)
		return;
	if (wav_writer_write(v->rec, pcm, (size_t)n) == 0)
		v->st.recorded += (uint64_t)n;
	else
		v->st.record_failed = 1;
}

/* Order and loss from the sequence number. Returns 0 when the packet is
 * next in order (to be decoded after `*gap` concealed frames), -1 when it
 * is late: it would play out of place, so it is counted and dropped. */
static int track_seq(struct voice *v, uint32_t ssrc, uint16_t seq, uint16_t *gap)
{
	*gap = 0;
	if (!v->have_rx || ssrc != v->rx_ssrc) {
		/* the first packet, or a new stream from the other side */
		v->have_rx = 1;
		v->rx_ssrc = ssrc;
		v->rx_seq = seq;
		return 0;
	}
	int16_t d = (int16_t)(uint16_t)(seq - v->rx_seq);   /* 16-bit wrap */
	if (d <= 0) {
		v->st.out_of_order++;
		if (v->st.lost > 0)
			v->st.lost--;   /* it was counted lost when its gap was seen */
		return -1;
	}
	*gap = (uint16_t)(d - 1);
	v->st.lost += *gap;
	v->rx_seq = seq;
	return 0;
}

static void decode(struct voice *v, const uint8_t *payload, size_t len, uint16_t gap)
{
	for (uint16_t i = 0; i < gap && i < VOICE_PLC_MAX; i++) {
		int n = opus_decode(v->dec, NULL, 0, v->pcm_out, VOICE_FRAME_SAMPLES, 0);
		if (n > 0)
			v->st.concealed++;
		record(v, v->pcm_out, n);
	}
	int n = opus_decode(v->dec, payload, (opus_int32)len, v->pcm_out, VOICE_DECODE_MAX, 0);
	if (n < 0) {
		v->st.bad++;
		return;
	}
	record(v, v->pcm_out, n);
}

void voice_on_packet(struct voice *v, const uint8_t *buf, size_t len)
{
	struct rtp_header h;
	uint16_t gap;
	if (v->stopped)
		return;
	if (len > sizeof v->rxbuf) {
		v->st.bad++;
		v->st.unprotect_failed++;
		return;
	}
	memcpy(v->rxbuf, buf, len);
	if (media_unprotect(v->rx, v->rxbuf, &len) != MEDIA_OK) {
		v->st.bad++;
		v->st.unprotect_failed++;
		return;
	}
	if (rtp_parse(v->rxbuf, len, &h) != RTP_OK || h.payload_type != RTP_PT_OPUS ||
	    h.payload_len == 0) {
		v->st.bad++;
		return;
	}
	v->st.received++;
	if (track_seq(v, h.ssrc, h.seq, &gap) == 0)
		decode(v, v->rxbuf + h.header_len, h.payload_len, gap);
}

/* ---- life cycle ---------------------------------------------------------------- */

static int make_codec(struct voice *v, char *err, size_t errlen)
{
	int e;
	v->enc = opus_encoder_create(WAV_RATE, 1, OPUS_APPLICATION_VOIP, &e);
	if (!v->enc)
		return fail(err, errlen, "opus encoder: %s", opus_strerror(e));
	/* No DTX: silence goes out as small frames, so a stopped stream means
	 * trouble (PROTOCOL.md "Voice"). */
	if (opus_encoder_ctl(v->enc, OPUS_SET_BITRATE(VOICE_BITRATE)) != OPUS_OK ||
	    opus_encoder_ctl(v->enc, OPUS_SET_DTX(0)) != OPUS_OK)
		return fail(err, errlen, "opus encoder: cannot set 24 kbps without DTX");
	v->dec = opus_decoder_create(WAV_RATE, 1, &e);
	if (!v->dec)
		return fail(err, errlen, "opus decoder: %s", opus_strerror(e));
	return 0;
}

static int make_srtp(struct voice *v, const struct voice_config *cfg, char *err, size_t errlen)
{
	enum media_profile p;
	uint8_t tx[MEDIA_KEY_MAX], rx[MEDIA_KEY_MAX];
	int rc = -1;
	if (!cfg->srtp_profile || media_profile_parse(cfg->srtp_profile, &p) != 0)
		return fail(err, errlen, "unknown SRTP profile '%s'",
		            cfg->srtp_profile ? cfg->srtp_profile : "");
	if (!cfg->tx_key || media_key_decode(p, cfg->tx_key, tx) != 0)
		fail(err, errlen, "tx_key is not a key for %s", cfg->srtp_profile);
	else if (!cfg->rx_key || media_key_decode(p, cfg->rx_key, rx) != 0)
		fail(err, errlen, "rx_key is not a key for %s", cfg->srtp_profile);
	else if (!(v->tx = media_ctx_new(p, tx, 1)) || !(v->rx = media_ctx_new(p, rx, 0)))
		fail(err, errlen, "cannot set up SRTP (%s)", cfg->srtp_profile);
	else
		rc = 0;
	OPENSSL_cleanse(tx, sizeof tx);
	OPENSSL_cleanse(rx, sizeof rx);
	return rc;
}

static int check_source(const struct voice_config *cfg, char *err, size_t errlen)
{
	if (cfg->pcm && cfg->pcm_len == 0)
		return fail(err, errlen, "the audio source holds no samples");
	if (!cfg->pcm && !(cfg->tone_hz > 0 && cfg->tone_hz < WAV_RATE / 2))
		return fail(err, errlen, "a tone must be above 0 and below %d Hz", WAV_RATE / 2);
	if (cfg->send_seconds < 0)
		return fail(err, errlen, "send_seconds must not be negative");
	return 0;
}

static int random_start(struct voice *v, char *err, size_t errlen)
{
	uint8_t r[10];
	if (RAND_bytes(r, sizeof r) != 1)
		return fail(err, errlen, "no random numbers for SSRC and sequence");
	v->ssrc = (uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 | r[3];
	v->seq = (uint16_t)(r[4] << 8 | r[5]);
	v->ts = (uint32_t)r[6] << 24 | (uint32_t)r[7] << 16 | (uint32_t)r[8] << 8 | r[9];
	return 0;
}

struct voice *voice_new(const struct voice_config *cfg, char *err, size_t errlen)
{
	if (check_source(cfg, err, errlen) != 0)
		return NULL;
	struct voice *v = calloc(1, sizeof *v);
	if (!v) {
		fail(err, errlen, "out of memory");
		return NULL;
	}
	v->cfg = *cfg;
	v->cfg.record_path = NULL;
	v->cfg.tx_key = v->cfg.rx_key = v->cfg.srtp_profile = NULL;
	v->step = 2 * M_PI * cfg->tone_hz / WAV_RATE;
	v->talkspurt = 1;
	if (cfg->send_seconds > 0)
		v->limit = (uint64_t)llround(cfg->send_seconds / VOICE_FRAME_S);
	if (v->cfg.send_seconds > 0 && v->limit == 0)
		v->limit = 1;
	if (random_start(v, err, errlen) != 0 || make_srtp(v, cfg, err, errlen) != 0 ||
	    make_codec(v, err, errlen) != 0)
		goto out;
	if (cfg->record_path && !(v->rec = wav_writer_open(cfg->record_path, err, errlen)))
		goto out;
	return v;
out:
	voice_free(v);
	return NULL;
}

void voice_stop(struct voice *v, struct voice_stats *st)
{
	if (!v->stopped) {
		v->stopped = 1;
		if (v->started)
			ev_timer_stop(v->loop, &v->timer);
		if (wav_writer_close(v->rec) != 0)
			v->st.record_failed = 1;
		v->rec = NULL;
	}
	if (st)
		*st = v->st;
}

void voice_free(struct voice *v)
{
	if (!v)
		return;
	voice_stop(v, NULL);
	media_ctx_free(v->tx);
	media_ctx_free(v->rx);
	if (v->enc)
		opus_encoder_destroy(v->enc);
	if (v->dec)
		opus_decoder_destroy(v->dec);
	free(v);
}

int voice_stats_format(const struct voice_stats *st, char *buf, size_t cap)
{
	return snprintf(buf, cap,
	                "voice: sent %llu frames, received %llu frames, out of order %llu, "
	                "lost %llu, bad %llu",
	                (unsigned long long)st->sent, (unsigned long long)st->received,
	                (unsigned long long)st->out_of_order, (unsigned long long)st->lost,
	                (unsigned long long)st->bad);
}
