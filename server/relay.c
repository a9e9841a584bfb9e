/* relay.c - the media relay of one voice session (see relay.h).
 *
 * The order of the checks is the order of their cost: size and rate need no
 * crypto, so a flood of garbage is turned away before it can make the
 * server spend time on authentication. */
#include "relay.h"
#include "../proto/rtp.h"

#include <opus/opus.h>
#include <string.h>

static const char *const verdict_names[RELAY_VERDICTS] = {
	[RELAY_FORWARD] = "relayed", [RELAY_DROP_AUTH] = "auth",
	[RELAY_DROP_REPLAY] = "replay", [RELAY_DROP_BAD_RTP] = "bad_rtp",
	[RELAY_DROP_NOT_OPUS] = "not_opus", [RELAY_DROP_TOO_LARGE] = "too_large",
	[RELAY_DROP_RATE] = "rate", [RELAY_DROP_STALE] = "stale",
};

const char *relay_verdict_name(enum relay_verdict v)
{
	return (unsigned)v < RELAY_VERDICTS ? verdict_names[v] : "unknown";
}

void relay_free(struct relay *r)
{
	for (int s = 0; s < 2; s++) {
		media_ctx_free(r->leg[s].in);
		media_ctx_free(r->leg[s].out);
		r->leg[s].in = r->leg[s].out = NULL;
	}
}

/* A fresh key for one direction: the context, and its base64 for the party. */
static struct media_ctx *leg_ctx(enum media_profile p, int outbound, char *b64)
{
	uint8_t key[MEDIA_KEY_MAX];
	if (media_key_new(p, key) != 0)
		return NULL;
	struct media_ctx *c = media_ctx_new(p, key, outbound);
	media_key_encode(key, media_key_len(p), b64);
	memset(key, 0, sizeof key);
	return c;
}

int relay_init(struct relay *r, enum media_profile p, const struct relay_limits *lim,
               int64_t now, struct relay_keys keys[2])
{
	memset(r, 0, sizeof *r);
	r->profile = p;
	r->lim = *lim;
	r->next_report = now + lim->report_ms;
	for (int s = 0; s < 2; s++) {
		struct relay_leg *l = &r->leg[s];
		/* What the party sends (its tx) the server unprotects (in). */
		l->in = leg_ctx(p, 0, keys[s].tx);
		l->out = leg_ctx(p, 1, keys[s].rx);
		if (!l->in || !l->out) {
			relay_free(r);
			return -1;
		}
		quality_init(&l->q);
		l->tokens = RELAY_BURST;
		l->refill_at = l->last_ms = now;
	}
	return 0;
}

int relay_rekey(struct relay *r, int side, int64_t now, struct relay_keys *keys)
{
	struct relay_leg *l = &r->leg[side];
	struct media_ctx *in = leg_ctx(r->profile, 0, keys->tx);
	struct media_ctx *out = leg_ctx(r->profile, 1, keys->rx);
	if (!in || !out) {
		media_ctx_free(in);
		media_ctx_free(out);
		return -1;
	}
	media_ctx_free(l->in);
	media_ctx_free(l->out);
	l->in = in;
	l->out = out;
	quality_init(&l->q);
	l->last_ms = now;
	l->timed = 0; /* a new connection: lateness is measured afresh */
	return 0;
}

static int rate_ok(struct relay *r, struct relay_leg *l, int64_t now)
{
	l->tokens += (double)(now - l->refill_at) * r->lim.max_pps / 1000.0;
	if (l->tokens > RELAY_BURST)
		l->tokens = RELAY_BURST;
	l->refill_at = now;
	if (l->tokens < 1.0)
		return 0;
	l->tokens -= 1.0;
	return 1;
}

/* Overload: when the server (or the sender's path) falls behind, audio
 * waits in socket buffers, and relaying all of it would keep the talk that
 * far behind for good. Each packet's lateness is its arrival time minus
 * its media time (RTP timestamp, 48 kHz), less that of the earliest packet
 * of the leg; audio later than stale_ms is dropped, so the parties lose a
 * moment instead of living behind. The reference follows the sender's
 * clock drift (at most 1 ms a second, where drift is parts per million)
 * and starts over after a jump in the timestamps (a new stream) and after
 * a second with no packet: a page whose microphone went away sends nothing
 * and its clock stands still meanwhile, so what it says next is new, not
 * late. (A server that falls a second behind therefore catches up by
 * dropping only what it reads within the second.) The timestamp is
 * trusted only once the packet is authenticated. */
#define STALE_WINDOW_MS 1000
#define STALE_CREEP_MS 1
#define STALE_RESYNC_MS 10000
#define STALE_PAUSE_MS 1000

static int stale(struct relay *r, struct relay_leg *l, uint32_t ts, int64_t now)
{
	int paused = 0;
	if (!l->timed) {
		l->timed = 1;
		l->ext_ts = 0;
		l->ref = now;
		l->low = 0;
		l->window_end = now + STALE_WINDOW_MS;
	} else {
		l->ext_ts += (int32_t)(ts - l->last_ts);
		paused = now - l->last_at >= STALE_PAUSE_MS;
	}
	l->last_ts = ts;
	l->last_at = now;
	int64_t late = now - l->ext_ts / (RTP_OPUS_CLOCK / 1000) - l->ref;
	if (late < 0 || late > STALE_RESYNC_MS || paused) {
		l->ref += late;
		late = 0;
	}
	if (now >= l->window_end) {
		if (l->low > 0)
			l->ref += l->low < STALE_CREEP_MS ? l->low : STALE_CREEP_MS;
		l->low = late;
		l->window_end = now + STALE_WINDOW_MS;
	} else if (late < l->low)
		l->low = late;
	return r->lim.stale_ms > 0 && late > r->lim.stale_ms;
}

/* One 20 ms Opus frame's worth at most 120 ms, well formed. */
static int opus_ok(const uint8_t *p, size_t n)
{
	unsigned char toc;
	const unsigned char *frames[48];
	opus_int16 sizes[48];
	if (n == 0 || n > 1275 * 3)
		return 0;
	return opus_packet_parse(p, (opus_int32)n, &toc, frames, sizes, NULL) > 0;
}

enum relay_verdict relay_packet(struct relay *r, int side, uint8_t *buf, size_t *len,
                                int64_t now, int *resumed)
{
	struct relay_leg *from = &r->leg[side], *to = &r->leg[!side];
	*resumed = 0;
	if (*len > r->lim.max_packet || *len > MEDIA_PACKET_MAX)
		return RELAY_DROP_TOO_LARGE;
	if (!rate_ok(r, from, now))
		return RELAY_DROP_RATE;
	/* The RTP header travels in the clear: junk is told apart from a
	 * forgery before any crypto runs. */
	if (*len < RTP_HEADER_MIN || buf[0] >> 6 != 2 || (buf[1] & 0x7f) != RTP_PT_OPUS)
		return RELAY_DROP_BAD_RTP;
	switch (media_unprotect(from->in, buf, len)) {
	case MEDIA_OK: break;
	case MEDIA_REPLAY: return RELAY_DROP_REPLAY;
	case MEDIA_AUTH_FAIL: return RELAY_DROP_AUTH;
	default: return RELAY_DROP_BAD_RTP;
	}
	struct rtp_header h;
	if (rtp_parse(buf, *len, &h) != RTP_OK)
		return RELAY_DROP_BAD_RTP;
	if (stale(r, from, h.timestamp, now))
		return RELAY_DROP_STALE;
	if (!opus_ok(buf + h.header_len, h.payload_len))
		return RELAY_DROP_NOT_OPUS;
	quality_packet(&from->q, h.seq, h.timestamp, (uint32_t)*len, now, RTP_OPUS_CLOCK);
	from->last_ms = now;
	if (from->silent) {
		from->silent = 0;
		*resumed = 1;
	}
	/* The sender's sequence numbers are unique under its key, so they are
	 * unique under the receiver's key too: nothing to renumber. */
	if (media_protect(to->out, buf, len) != MEDIA_OK)
		return RELAY_DROP_BAD_RTP;
	return RELAY_FORWARD;
}

void relay_mute(struct relay *r, int side, int on, int64_t now)
{
	struct relay_leg *l = &r->leg[side];
	l->muted = on ? 1 : 0;
	/* Unmuting restarts the silence clock: no "can't hear you" for the
	 * seconds the party was muted on purpose. */
	if (!on)
		l->last_ms = now;
}

void relay_tick(struct relay *r, int64_t now, int stopped[2], int *report,
                struct quality_report rep[2])
{
	for (int s = 0; s < 2; s++) {
		struct relay_leg *l = &r->leg[s];
		stopped[s] = 0;
		if (!l->muted && !l->silent && now - l->last_ms >= r->lim.silence_ms) {
			l->silent = 1;
			stopped[s] = 1;
		}
	}
	*report = now >= r->next_report;
	if (!*report)
		return;
	r->next_report = now + r->lim.report_ms;
	for (int s = 0; s < 2; s++)
		quality_report(&r->leg[s].q, &rep[s]);
}
