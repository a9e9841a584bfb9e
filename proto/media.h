/* media.h - earshot's SRTP layer, shared by the server and every C client:
 * the two profiles, key material and its base64 wire form, and one SRTP
 * context per direction of a leg.
 *
 * Keys are master key || master salt: 28 bytes for AEAD_AES_128_GCM
 * (RFC 7714), 30 for AES_CM_128_HMAC_SHA1_80 (RFC 3711). A context is
 * bound to one key and one direction; never reuse a key for a second
 * context (a sender must never repeat (key, SSRC, ROC, SEQ)). A context
 * takes one SSRC: the first packet it protects or unprotects pins it, and
 * packets with any other SSRC are refused (MEDIA_BAD). */
#ifndef EARSHOT_MEDIA_H
#define EARSHOT_MEDIA_H

#include <stddef.h>
#include <stdint.h>

#define MEDIA_KEY_MAX 30
#define MEDIA_KEY_B64_MAX 44       /* base64 of 30 bytes, plus NUL */
#define MEDIA_TRAILER_MAX 16       /* GCM tag 16, HMAC-SHA1-80 tag 10 */
#define MEDIA_PACKET_MAX 1500      /* largest protected packet anyone handles */

enum media_profile { MEDIA_GCM = 0, MEDIA_CM = 1 };

struct media_ctx;                  /* one direction of one leg */

/* libsrtp's one-time initialisation; safe to call more than once. */
int media_global_init(void);

/* "aead_aes_128_gcm" / "aes_cm_128_hmac_sha1_80"; -1 / NULL if unknown. */
int media_profile_parse(const char *s, enum media_profile *p);
const char *media_profile_name(enum media_profile p);
size_t media_key_len(enum media_profile p);

/* Fresh random key material (OpenSSL RAND_bytes). 0, or -1. */
int media_key_new(enum media_profile p, uint8_t *key);
/* Base64 (standard alphabet, padded) of a key; `out` holds MEDIA_KEY_B64_MAX. */
void media_key_encode(const uint8_t *key, size_t len, char *out);
/* Decode a key for profile `p`: 0, or -1 if not base64 of the right length. */
int media_key_decode(enum media_profile p, const char *b64, uint8_t *key);

/* A context that protects (outbound = 1) or unprotects (outbound = 0) with
 * `key`. NULL on failure. */
struct media_ctx *media_ctx_new(enum media_profile p, const uint8_t *key, int outbound);
void media_ctx_free(struct media_ctx *c);

enum media_status {
	MEDIA_OK = 0,
	MEDIA_AUTH_FAIL = -1,      /* tag check failed: tampered, or another key */
	MEDIA_REPLAY = -2,         /* index seen before (or too old) */
	MEDIA_BAD = -3,            /* malformed, too short, or any other error */
};

/* Protect in place: `buf` holds an RTP packet of `*len` bytes and has room
 * for MEDIA_TRAILER_MAX more; `*len` grows by the tag. */
enum media_status media_protect(struct media_ctx *c, uint8_t *buf, size_t *len);
/* Unprotect in place; `*len` shrinks to the plain RTP packet. */
enum media_status media_unprotect(struct media_ctx *c, uint8_t *buf, size_t *len);

#endif
