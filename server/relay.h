/* relay.h - the media relay of one voice session: SRTP terminated on each
 * leg with fresh keys, every packet checked (size, rate, authentication,
 * replay, RTP header, Opus) and protected again for the other party; per
 * leg quality, silence and mute.
 *
 * No I/O and no clock: the caller passes `now` (ms) and the packet buffer,
 * and turns the results into frames and messages. Sides: 0 is the client,
 * 1 the counselor. */
#ifndef EARSHOT_RELAY_H
#define EARSHOT_RELAY_H

#include <stddef.h>
#include <stdint.h>
#include "../proto/media.h"
#include "../proto/proto.h"
#include "quality.h"

#define RELAY_BURST 50  /* packets a party may send at once (1 s of audio) */

enum relay_verdict {
	RELAY_FORWARD = 0,   /* send `buf`/`*len` to the other party */
	RELAY_DROP_AUTH,
	RELAY_DROP_REPLAY,
	RELAY_DROP_BAD_RTP,
	RELAY_DROP_NOT_OPUS,
	RELAY_DROP_TOO_LARGE,
	RELAY_DROP_RATE,
	RELAY_DROP_STALE,    /* arrived too late to be worth hearing */
	RELAY_VERDICTS
};

struct relay_limits {
	size_t max_packet;     /* protected bytes */
	double max_pps;
	int64_t silence_ms;
	int64_t report_ms;
	int64_t stale_ms;      /* drop audio this much later than its time; 0 never */
};

struct relay_leg {
	struct media_ctx *in;  /* unprotects what this party sends */
	struct media_ctx *out; /* protects what this party receives */
	struct quality q;
	double tokens;
	int64_t refill_at, last_ms;
	int muted, silent;
	/* Lateness (relay.c, stale): the sender's RTP clock, extended past
	 * 32 bits, against ours; `ref` is arrival minus media time of the
	 * earliest packet, `low` the least lateness seen this window,
	 * `last_at` when the last packet came. */
	int timed;
	uint32_t last_ts;
	int64_t ext_ts, ref, low, window_end, last_at;
};

struct relay {
	enum media_profile profile;
	struct relay_limits lim;
	struct relay_leg leg[2];
	int64_t next_report;
};

/* The keys a party needs, base64: tx protects what it sends, rx unprotects
 * what it receives. */
struct relay_keys {
	char tx[MEDIA_KEY_B64_MAX], rx[MEDIA_KEY_B64_MAX];
};

/* Fresh keys for both directions of both legs. 0, or -1 (no randomness or
 * no SRTP context: the session must not carry voice). */
int relay_init(struct relay *r, enum media_profile p, const struct relay_limits *lim,
               int64_t now, struct relay_keys keys[2]);
void relay_free(struct relay *r);
/* Fresh keys for `side`'s leg only (a party back after a dropped
 * connection): its old keys no longer work. 0, or -1 (the old ones stay). */
int relay_rekey(struct relay *r, int side, int64_t now, struct relay_keys *keys);

/* A binary frame from `side`: `buf` holds `*len` bytes and has room for
 * MEDIA_PACKET_MAX + MEDIA_TRAILER_MAX. On RELAY_FORWARD it holds the packet
 * protected for the other side. `*resumed` is set when this packet ends a
 * silence the parties were told about. */
enum relay_verdict relay_packet(struct relay *r, int side, uint8_t *buf, size_t *len,
                                int64_t now, int *resumed);

/* Mute from `side`: a muted party's silence is expected, not a fault. */
void relay_mute(struct relay *r, int side, int on, int64_t now);

/* Timed events; call about once a second. `stopped[s]` is set when side s
 * has just gone silent; `report` is set when link reports are due, with
 * `rep[s]` the report of side s's uplink. */
void relay_tick(struct relay *r, int64_t now, int stopped[2], int *report,
                struct quality_report rep[2]);

/* Name of a drop reason as in stats (`auth`, `replay`, ...). */
const char *relay_verdict_name(enum relay_verdict v);

#endif
