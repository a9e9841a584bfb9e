/* voice.h - one party's audio in one earshot voice session: an audio source
 * (WAV samples or a tone) encoded to Opus, wrapped in RTP, protected with
 * the session's SRTP tx key and sent as binary frames every 20 ms; and the
 * reverse for what arrives: unprotect with the rx key, check the RTP
 * header, count order and loss, decode, optionally record to a WAV file.
 * PROTOCOL.md "Voice" is the contract.
 *
 * Ownership: voice_new copies what it needs from the config except the
 * source samples (`pcm`), which the caller keeps alive until voice_free.
 * The caller owns the loop; voice_start adds one ev_timer to it, which
 * voice_stop (or voice_free) removes. Nothing is allocated per packet:
 * every buffer is allocated by voice_new. A voice is single-session: its
 * SRTP contexts hold the session's keys, and a party must never repeat a
 * sequence number under a key, so a new session needs a new voice. */
#ifndef EARSHOT_VOICE_H
#define EARSHOT_VOICE_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct esc_conn;
struct voice;

#define VOICE_FRAME_SAMPLES 960   /* 20 ms at 48 kHz */
#define VOICE_FRAME_S 0.020
#define VOICE_CATCH_UP_MAX 5      /* frames sent at once after a late tick */
#define VOICE_PLC_MAX 5           /* frames concealed for one gap */
#define VOICE_PACKET_MAX 1200     /* the server's default media-max-packet */
#define VOICE_BITRATE 24000
#define VOICE_TONE_AMPLITUDE 8000 /* about -12 dBFS: clearly heard, never clipped */

struct voice_config {
	/* From session_start: the profile's name and this party's two keys
	 * (base64 of master key || salt). tx protects what we send. */
	const char *srtp_profile;
	const char *tx_key, *rx_key;
	/* The source: `pcm_len` 48 kHz mono samples at `pcm` (the caller's,
	 * see above), played in a loop when `pcm_loop`, else once and then
	 * silence; when `pcm` is NULL a sine tone of `tone_hz`. */
	const int16_t *pcm;
	size_t pcm_len;
	int pcm_loop;
	double tone_hz;
	/* Record what is received (decoded, 48 kHz mono) here; NULL: don't. */
	const char *record_path;
	/* Stop sending this many seconds after voice_start (0: never); the
	 * voice keeps receiving. */
	double send_seconds;
	/* Where protected packets go: `send` when set (tests, loopbacks),
	 * else esc_send_raw(conn, .., binary). A nonzero return from `send`
	 * means the packet was not sent. */
	struct esc_conn *conn;
	int (*send)(void *ud, const uint8_t *pkt, size_t len);
	void *send_ud;
};

struct voice_stats {
	uint64_t sent;           /* packets handed to the connection */
	uint64_t received;       /* packets that unprotected and parsed */
	uint64_t out_of_order;   /* received with a sequence number not above the last */
	uint64_t lost;           /* sequence numbers skipped and not seen late */
	uint64_t bad;            /* failed to unprotect (auth, replay), parse or decode */
	uint64_t unprotect_failed; /* the part of `bad` that SRTP refused */
	uint64_t skipped;        /* frames not sent because the loop was too late */
	uint64_t concealed;      /* frames of loss concealment written */
	uint64_t recorded;       /* samples written to the recording */
	int record_failed;       /* the recording could not be written completely */
};

/* A voice for one session, not yet sending. NULL with `err` when the
 * profile or a key is not valid, or the codec, SRTP or the recording
 * cannot be set up. */
struct voice *voice_new(const struct voice_config *cfg, char *err, size_t errlen);
/* Start the clock: sends the first frame now, then every 20 ms on `loop`. */
void voice_start(struct voice *v, struct ev_loop *loop);
/* Muted: send nothing (the clock runs on, so unmuting resumes on time). */
void voice_set_muted(struct voice *v, int on);
/* One binary frame from the server: a protected packet. `buf` is only
 * read. Ignored after voice_stop. */
void voice_on_packet(struct voice *v, const uint8_t *buf, size_t len);
/* Stop sending and receiving, finish the recording, and fill `st` (may be
 * NULL). Safe to call more than once; later calls only fill `st`. */
void voice_stop(struct voice *v, struct voice_stats *st);
/* Stop if still running, then free. NULL is a no-op. */
void voice_free(struct voice *v);
/* The one-line summary, "voice: sent N frames, received M frames, out of
 * order K, lost L, bad P" (without a newline). Returns snprintf's count. */
int voice_stats_format(const struct voice_stats *st, char *buf, size_t cap);

#endif
