/* test_media.c - unit tests for the SRTP layer (proto/media.c): profiles,
 * key material and its base64 form, protect/unprotect round trips for
 * both profiles, authentication, replay and sender-side repeat refusal,
 * and known answers.
 *
 * Known answers: RFC 7714's and RFC 3711's test vectors start from
 * session keys, which media.h does not expose (a context takes a master
 * key and derives its own). So this file carries a small independent
 * reference of the two transforms on OpenSSL primitives: the RFC 3711 key
 * derivation, checked against RFC 3711 B.3; AES-CM + HMAC-SHA1-80, checked
 * against RFC 3711 B.2's keystream; AEAD_AES_128_GCM, checked against RFC
 * 7714 16.1.1. media_protect's output for a fixed master key must then
 * match the reference byte for byte, and is also pinned below as hex so a
 * browser implementation has a vector to check against. Buffers are heap
 * allocations of exactly the size media.h promises, so ASan sees any write
 * past the trailer room or read past the packet. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "proto/media.h"
#include "proto/rtp.h"

static const enum media_profile PROFILES[] = { MEDIA_GCM, MEDIA_CM };

static size_t tag_len(enum media_profile p)
{
	return p == MEDIA_GCM ? 16 : 10;
}

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	for (; *s; s++) {
		if (*s == ' ')
			continue;
		unsigned v;
		assert_true(n < cap * 2);
		assert_int_equal(sscanf(s, "%1x", &v), 1);
		if (n % 2 == 0)
			out[n / 2] = (uint8_t)(v << 4);
		else
			out[n / 2] |= (uint8_t)v;
		n++;
	}
	assert_int_equal(n % 2, 0);
	return n / 2;
}

static void assert_hex(const uint8_t *got, size_t len, const char *want_hex)
{
	uint8_t want[MEDIA_PACKET_MAX];
	size_t n = unhex(want_hex, want, sizeof want);
	if (n != len || memcmp(got, want, n) != 0) {
		char buf[2 * MEDIA_PACKET_MAX + 1];
		for (size_t i = 0; i < len && i < MEDIA_PACKET_MAX; i++)
			snprintf(buf + 2 * i, 3, "%02x", got[i]);
		fail_msg("got %zu bytes %s\nwant %zu bytes %s", len, buf, n, want_hex);
	}
}

/* An RTP packet in a heap buffer of exactly len + MEDIA_TRAILER_MAX. */
static uint8_t *packet_new(uint16_t seq, uint32_t ts, uint32_t ssrc, size_t payload,
                           size_t *len)
{
	*len = RTP_HEADER_MIN + payload;
	uint8_t *b = malloc(*len + MEDIA_TRAILER_MAX);
	assert_non_null(b);
	assert_int_equal(rtp_write(b, *len, RTP_PT_OPUS, 0, seq, ts, ssrc), 12);
	for (size_t i = 0; i < payload; i++)
		b[RTP_HEADER_MIN + i] = (uint8_t)(i * 7 + seq);
	return b;
}

/* A copy in a heap buffer of exactly `len` (for unprotect, which shrinks). */
static uint8_t *dup_exact(const uint8_t *b, size_t len)
{
	uint8_t *c = malloc(len);
	assert_non_null(c);
	memcpy(c, b, len);
	return c;
}

static void ctx_pair(enum media_profile p, const uint8_t *key, struct media_ctx **out,
                     struct media_ctx **in)
{
	*out = media_ctx_new(p, key, 1);
	*in = media_ctx_new(p, key, 0);
	assert_non_null(*out);
	assert_non_null(*in);
}

/* ---- profiles and keys ------------------------------------------------ */

static void test_profiles(void **state)
{
	(void)state;
	enum media_profile p = MEDIA_CM;
	assert_int_equal(media_profile_parse("aead_aes_128_gcm", &p), 0);
	assert_int_equal(p, MEDIA_GCM);
	assert_int_equal(media_profile_parse("aes_cm_128_hmac_sha1_80", &p), 0);
	assert_int_equal(p, MEDIA_CM);
	assert_int_equal(media_profile_parse("AEAD_AES_128_GCM", &p), -1);
	assert_int_equal(media_profile_parse("aes_cm_128_hmac_sha1_32", &p), -1);
	assert_int_equal(media_profile_parse("", &p), -1);
	assert_int_equal(p, MEDIA_CM);
	assert_string_equal(media_profile_name(MEDIA_GCM), "aead_aes_128_gcm");
	assert_string_equal(media_profile_name(MEDIA_CM), "aes_cm_128_hmac_sha1_80");
	assert_null(media_profile_name((enum media_profile)2));
	assert_int_equal(media_key_len(MEDIA_GCM), 28);
	assert_int_equal(media_key_len(MEDIA_CM), 30);
	assert_int_equal(media_global_init(), 0);
	assert_int_equal(media_global_init(), 0);
}

static void test_key_new(void **state)
{
	(void)state;
	for (size_t k = 0; k < 2; k++) {
		enum media_profile p = PROFILES[k];
		size_t n = media_key_len(p);
		uint8_t a[MEDIA_KEY_MAX + 1], b[MEDIA_KEY_MAX + 1];
		memset(a, 0xee, sizeof a);
		memset(b, 0xee, sizeof b);
		assert_int_equal(media_key_new(p, a), 0);
		assert_int_equal(media_key_new(p, b), 0);
		/* Exactly the profile's length written, and fresh each time. */
		assert_int_equal(a[n], 0xee);
		if (n < MEDIA_KEY_MAX)
			assert_int_equal(a[MEDIA_KEY_MAX], 0xee);
		assert_memory_not_equal(a, b, n);
	}
}

static void test_key_encode_decode(void **state)
{
	(void)state;
	uint8_t key[MEDIA_KEY_MAX], back[MEDIA_KEY_MAX];
	for (int i = 0; i < MEDIA_KEY_MAX; i++)
		key[i] = (uint8_t)i;
	char b64[MEDIA_KEY_B64_MAX];
	media_key_encode(key, 28, b64);
	assert_string_equal(b64, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==");
	assert_int_equal(media_key_decode(MEDIA_GCM, b64, back), 0);
	assert_memory_equal(back, key, 28);
	assert_int_equal(media_key_decode(MEDIA_CM, b64, back), -1);
	media_key_encode(key, 30, b64);
	assert_string_equal(b64, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd");
	assert_int_equal(media_key_decode(MEDIA_CM, b64, back), 0);
	assert_memory_equal(back, key, 30);
	assert_int_equal(media_key_decode(MEDIA_GCM, b64, back), -1);

	/* Random keys, every byte value at the edges of the alphabet. */
	for (int round = 0; round < 200; round++)
		for (size_t k = 0; k < 2; k++) {
			enum media_profile p = PROFILES[k];
			size_t n = media_key_len(p);
			assert_int_equal(media_key_new(p, key), 0);
			if (round == 0)
				memset(key, 0xff, n);
			if (round == 1)
				memset(key, 0x00, n);
			char enc[MEDIA_KEY_B64_MAX];
			memset(enc, 'x', sizeof enc);
			media_key_encode(key, n, enc);
			assert_int_equal(strlen(enc), 40);
			assert_int_equal(media_key_decode(p, enc, back), 0);
			assert_memory_equal(back, key, n);
		}

	/* Refused, and the output left alone. */
	static const struct { enum media_profile p; const char *s; } bad[] = {
		{ MEDIA_GCM, "" },
		{ MEDIA_GCM, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw=" },       /* 39 */
		{ MEDIA_GCM, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw===" },     /* 41 */
		{ MEDIA_GCM, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw" },        /* no padding */
		{ MEDIA_GCM, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGwA=" },      /* 29 bytes */
		{ MEDIA_GCM, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd" },      /* 30 bytes */
		{ MEDIA_GCM, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==\n" },    /* trailing */
		{ MEDIA_GCM, " AECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==" },      /* space */
		{ MEDIA_GCM, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBka!w==" },      /* not b64 */
		{ MEDIA_GCM, "AAECAwQF_gcICQoLDA0ODxAREhMUFRYXGBkaGw==" },      /* url-safe */
		{ MEDIA_CM, "" },
		{ MEDIA_CM, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==" },       /* 28 bytes */
		{ MEDIA_CM, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw=" },       /* 29 bytes */
		{ MEDIA_CM, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" },   /* 32 bytes */
		{ MEDIA_CM, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw" },
		{ MEDIA_CM, "AAECAwQFBgcICQoLDA0ODx-REhMUFRYXGBkaGxwd" },
		{ MEDIA_CM, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGx\twd" },
		{ MEDIA_CM, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw*" },
		{ MEDIA_CM, "\xc3\xa9" "ECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd" },
	};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		memset(back, 0x5a, sizeof back);
		if (media_key_decode(bad[k].p, bad[k].s, back) != -1)
			fail_msg("accepted %s key \"%s\"", media_profile_name(bad[k].p), bad[k].s);
		for (size_t i = 0; i < sizeof back; i++)
			assert_int_equal(back[i], 0x5a);
	}
}

/* ---- round trips ------------------------------------------------------ */

static void test_round_trip(void **state)
{
	(void)state;
	for (size_t k = 0; k < 2; k++) {
		enum media_profile p = PROFILES[k];
		uint8_t key[MEDIA_KEY_MAX];
		assert_int_equal(media_key_new(p, key), 0);
		struct media_ctx *out, *in;
		ctx_pair(p, key, &out, &in);
		static const size_t sizes[] = { 0, 1, 3, 61, 93, 400,
		                                MEDIA_PACKET_MAX - MEDIA_TRAILER_MAX - 12 };
		for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			size_t len, plain_len;
			uint8_t *b = packet_new((uint16_t)(65530 + i), 960u * (uint32_t)i,
			                        0xcafe0001, sizes[i], &len);
			uint8_t *plain = dup_exact(b, len);
			plain_len = len;
			assert_int_equal(media_protect(out, b, &len), MEDIA_OK);
			assert_int_equal(len, plain_len + tag_len(p));
			/* The header travels in the clear, the payload does not. */
			assert_memory_equal(b, plain, 12);
			if (sizes[i] >= 8)
				assert_memory_not_equal(b + 12, plain + 12, sizes[i]);
			uint8_t *wire = dup_exact(b, len);
			free(b);
			assert_int_equal(media_unprotect(in, wire, &len), MEDIA_OK);
			assert_int_equal(len, plain_len);
			assert_memory_equal(wire, plain, plain_len);
			free(wire);
			free(plain);
		}
		media_ctx_free(out);
		media_ctx_free(in);
	}
}

/* CSRCs and an extension are header: authenticated, never encrypted. */
static void test_round_trip_csrc_extension(void **state)
{
	(void)state;
	for (size_t k = 0; k < 2; k++) {
		enum media_profile p = PROFILES[k];
		uint8_t key[MEDIA_KEY_MAX];
		assert_int_equal(media_key_new(p, key), 0);
		struct media_ctx *out, *in;
		ctx_pair(p, key, &out, &in);
		size_t len;
		uint8_t *b = packet_new(1, 2, 3, 40, &len);
		b[0] |= 0x10 | 2;                       /* X, 2 CSRCs */
		static const uint8_t hdr_ext[16] = { 0, 0, 0, 1, 0, 0, 0, 2,
		                                     0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0 };
		memcpy(b + 12, hdr_ext, sizeof hdr_ext);
		struct rtp_header h;
		assert_int_equal(rtp_parse(b, len, &h), RTP_OK);
		assert_int_equal(h.header_len, 28);
		uint8_t *plain = dup_exact(b, len);
		size_t plain_len = len;
		assert_int_equal(media_protect(out, b, &len), MEDIA_OK);
		assert_memory_equal(b, plain, 28);
		assert_memory_not_equal(b + 28, plain + 28, plain_len - 28);
		uint8_t *wire = dup_exact(b, len);
		assert_int_equal(media_unprotect(in, wire, &len), MEDIA_OK);
		assert_int_equal(len, plain_len);
		assert_memory_equal(wire, plain, len);
		free(wire);
		free(plain);
		free(b);
		media_ctx_free(out);
		media_ctx_free(in);
	}
}

static void test_lengths(void **state)
{
	(void)state;
	for (size_t k = 0; k < 2; k++) {
		enum media_profile p = PROFILES[k];
		uint8_t key[MEDIA_KEY_MAX];
		assert_int_equal(media_key_new(p, key), 0);
		struct media_ctx *out, *in;
		ctx_pair(p, key, &out, &in);
		uint8_t buf[MEDIA_PACKET_MAX + 64];
		memset(buf, 0, sizeof buf);
		rtp_write(buf, sizeof buf, RTP_PT_OPUS, 0, 100, 0, 7);
		/* Shorter than a header, or too big once tagged: refused untouched. */
		size_t len = 11;
		assert_int_equal(media_protect(out, buf, &len), MEDIA_BAD);
		assert_int_equal(len, 11);
		len = MEDIA_PACKET_MAX - MEDIA_TRAILER_MAX + 1;
		assert_int_equal(media_protect(out, buf, &len), MEDIA_BAD);
		assert_int_equal(len, MEDIA_PACKET_MAX - MEDIA_TRAILER_MAX + 1);
		len = 0;
		assert_int_equal(media_protect(out, buf, &len), MEDIA_BAD);
		len = 11;
		assert_int_equal(media_unprotect(in, buf, &len), MEDIA_BAD);
		len = MEDIA_PACKET_MAX + 1;
		assert_int_equal(media_unprotect(in, buf, &len), MEDIA_BAD);
		assert_int_equal(len, MEDIA_PACKET_MAX + 1);
		/* The largest packet protects to at most MEDIA_PACKET_MAX. */
		len = MEDIA_PACKET_MAX - MEDIA_TRAILER_MAX;
		assert_int_equal(media_protect(out, buf, &len), MEDIA_OK);
		assert_int_equal(len, MEDIA_PACKET_MAX - MEDIA_TRAILER_MAX + tag_len(p));
		assert_int_equal(media_unprotect(in, buf, &len), MEDIA_OK);
		/* A bare header, or less than a tag of payload: never OK. */
		uint8_t *hdr = packet_new(200, 0, 7, 0, &len);
		uint8_t *hdr_copy = dup_exact(hdr, len);
		assert_int_not_equal(media_unprotect(in, hdr_copy, &len), MEDIA_OK);
		free(hdr_copy);
		free(hdr);
		hdr = packet_new(201, 0, 7, tag_len(p) - 1, &len);
		hdr_copy = dup_exact(hdr, len);
		assert_int_not_equal(media_unprotect(in, hdr_copy, &len), MEDIA_OK);
		free(hdr_copy);
		free(hdr);
		media_ctx_free(out);
		media_ctx_free(in);
	}
	media_ctx_free(NULL);
}

/* ---- authentication and replay ---------------------------------------- */

/* Flipping any one bit of a protected packet makes it fail (auth fail for
 * payload and tag, at least not OK for the header, where a flipped CC or X
 * bit can make it malformed first); none of those failures moves the
 * replay window, so the genuine packet still goes through afterwards. */
static void test_tampered(void **state)
{
	(void)state;
	for (size_t k = 0; k < 2; k++) {
		enum media_profile p = PROFILES[k];
		uint8_t key[MEDIA_KEY_MAX];
		assert_int_equal(media_key_new(p, key), 0);
		struct media_ctx *out, *in;
		ctx_pair(p, key, &out, &in);
		size_t len;
		uint8_t *b = packet_new(4000, 96000, 0x1234, 60, &len);
		assert_int_equal(media_protect(out, b, &len), MEDIA_OK);
		for (size_t pos = 0; pos < len; pos++)
			for (int bit = 0; bit < 8; bit += 3) {
				uint8_t *t = dup_exact(b, len);
				size_t tl = len;
				t[pos] ^= (uint8_t)(1u << bit);
				enum media_status st = media_unprotect(in, t, &tl);
				if (pos >= 12 && st != MEDIA_AUTH_FAIL)
					fail_msg("%s: bit %d of byte %zu flipped: %d",
					         media_profile_name(p), bit, pos, st);
				assert_int_not_equal(st, MEDIA_OK);
				free(t);
			}
		/* Cut short by one byte, or by the whole tag. */
		uint8_t *t = dup_exact(b, len - 1);
		size_t tl = len - 1;
		assert_int_equal(media_unprotect(in, t, &tl), MEDIA_AUTH_FAIL);
		free(t);
		t = dup_exact(b, len - tag_len(p));
		tl = len - tag_len(p);
		assert_int_not_equal(media_unprotect(in, t, &tl), MEDIA_OK);
		free(t);
		t = dup_exact(b, len);
		tl = len;
		assert_int_equal(media_unprotect(in, t, &tl), MEDIA_OK);
		free(t);
		free(b);
		media_ctx_free(out);
		media_ctx_free(in);
	}
}

static void test_other_key(void **state)
{
	(void)state;
	for (size_t k = 0; k < 2; k++) {
		enum media_profile p = PROFILES[k];
		uint8_t ka[MEDIA_KEY_MAX], kb[MEDIA_KEY_MAX];
		assert_int_equal(media_key_new(p, ka), 0);
		assert_int_equal(media_key_new(p, kb), 0);
		struct media_ctx *out = media_ctx_new(p, ka, 1);
		struct media_ctx *in = media_ctx_new(p, kb, 0);
		/* The same key under the other profile is another key too. */
		uint8_t kc[MEDIA_KEY_MAX];
		memcpy(kc, ka, sizeof kc);
		struct media_ctx *in_other = media_ctx_new(PROFILES[!k], kc, 0);
		assert_non_null(out);
		assert_non_null(in);
		assert_non_null(in_other);
		size_t len;
		uint8_t *b = packet_new(1, 2, 3, 61, &len);
		assert_int_equal(media_protect(out, b, &len), MEDIA_OK);
		uint8_t *t = dup_exact(b, len);
		size_t tl = len;
		assert_int_equal(media_unprotect(in, t, &tl), MEDIA_AUTH_FAIL);
		free(t);
		t = dup_exact(b, len);
		tl = len;
		assert_int_equal(media_unprotect(in_other, t, &tl), MEDIA_AUTH_FAIL);
		free(t);
		free(b);
		media_ctx_free(out);
		media_ctx_free(in);
		media_ctx_free(in_other);
	}
}

static void test_replay(void **state)
{
	(void)state;
	for (size_t k = 0; k < 2; k++) {
		enum media_profile p = PROFILES[k];
		uint8_t key[MEDIA_KEY_MAX];
		assert_int_equal(media_key_new(p, key), 0);
		struct media_ctx *out, *in;
		ctx_pair(p, key, &out, &in);
		/* Protect 65500..65500+200 (wrapping), keep them all. */
		enum { N = 201 };
		uint8_t *wire[N];
		size_t wlen[N];
		for (int i = 0; i < N; i++) {
			uint8_t *b = packet_new((uint16_t)(65500 + i), 960u * (uint32_t)i, 0x77, 30,
			                        &wlen[i]);
			assert_int_equal(media_protect(out, b, &wlen[i]), MEDIA_OK);
			wire[i] = b;
		}
		uint8_t *t;
		size_t tl;
#define TRY(i, want)                                                    \
	do {                                                            \
		t = dup_exact(wire[i], wlen[i]);                        \
		tl = wlen[i];                                           \
		assert_int_equal(media_unprotect(in, t, &tl), want);    \
		free(t);                                                \
	} while (0)
		TRY(0, MEDIA_OK);
		TRY(0, MEDIA_REPLAY);                   /* the same packet again */
		TRY(2, MEDIA_OK);
		TRY(1, MEDIA_OK);                       /* late, but new */
		TRY(1, MEDIA_REPLAY);
		TRY(200, MEDIA_OK);                     /* across the wrap */
		TRY(200, MEDIA_REPLAY);
		TRY(100, MEDIA_OK);                     /* 100 behind: in the window */
		TRY(100, MEDIA_REPLAY);
		TRY(73, MEDIA_OK);                      /* 127 behind: the window's edge */
		TRY(72, MEDIA_REPLAY);                  /* 128 behind: too old */
		TRY(50, MEDIA_REPLAY);
		TRY(3, MEDIA_REPLAY);
#undef TRY
		for (int i = 0; i < N; i++)
			free(wire[i]);
		media_ctx_free(out);
		media_ctx_free(in);
	}
}

/* A sender never protects the same sequence number twice under one key
 * (with GCM that would reuse a nonce). */
static void test_sender_refuses_repeat(void **state)
{
	(void)state;
	for (size_t k = 0; k < 2; k++) {
		enum media_profile p = PROFILES[k];
		uint8_t key[MEDIA_KEY_MAX];
		assert_int_equal(media_key_new(p, key), 0);
		struct media_ctx *out = media_ctx_new(p, key, 1);
		assert_non_null(out);
		size_t len;
		uint8_t *b = packet_new(5, 0, 9, 20, &len);
		assert_int_equal(media_protect(out, b, &len), MEDIA_OK);
		free(b);
		b = packet_new(5, 960, 9, 25, &len);   /* another packet, same seq */
		size_t before = len;
		assert_int_equal(media_protect(out, b, &len), MEDIA_REPLAY);
		assert_int_equal(len, before);
		free(b);
		/* The next one is fine; another SSRC is refused (one per context). */
		b = packet_new(6, 960, 9, 25, &len);
		assert_int_equal(media_protect(out, b, &len), MEDIA_OK);
		free(b);
		b = packet_new(5, 0, 10, 25, &len);
		assert_int_equal(media_protect(out, b, &len), MEDIA_BAD);
		free(b);
		media_ctx_free(out);
	}
}

/* Keys survive the base64 trip: a context built from the decoded key
 * reads what one built from the original wrote. */
static void test_decoded_key_interoperates(void **state)
{
	(void)state;
	for (size_t k = 0; k < 2; k++) {
		enum media_profile p = PROFILES[k];
		uint8_t key[MEDIA_KEY_MAX], back[MEDIA_KEY_MAX];
		char b64[MEDIA_KEY_B64_MAX];
		assert_int_equal(media_key_new(p, key), 0);
		media_key_encode(key, media_key_len(p), b64);
		assert_int_equal(media_key_decode(p, b64, back), 0);
		struct media_ctx *out = media_ctx_new(p, key, 1);
		struct media_ctx *in = media_ctx_new(p, back, 0);
		size_t len;
		uint8_t *b = packet_new(77, 0, 1, 50, &len);
		assert_int_equal(media_protect(out, b, &len), MEDIA_OK);
		assert_int_equal(media_unprotect(in, b, &len), MEDIA_OK);
		free(b);
		media_ctx_free(out);
		media_ctx_free(in);
	}
}

/* ---- known answers ---------------------------------------------------- */

static void aes_ctr(const uint8_t key[16], const uint8_t iv[16], const uint8_t *in,
                    uint8_t *out, size_t len)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0, f = 0;
	assert_non_null(c);
	assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_128_ctr(), NULL, key, iv), 1);
	assert_int_equal(EVP_EncryptUpdate(c, out, &n, in, (int)len), 1);
	assert_int_equal(EVP_EncryptFinal_ex(c, out + n, &f), 1);
	assert_int_equal((size_t)(n + f), len);
	EVP_CIPHER_CTX_free(c);
}

/* RFC 3711 4.3.1 with key_derivation_rate 0: AES-CM keystream under the
 * master key from IV = (master_salt XOR label << 48) || 0x0000. A 12-byte
 * GCM master salt is zero-padded to 14 (RFC 7714 section 11). */
static void kdf(const uint8_t *master, const uint8_t *salt, size_t salt_len,
                uint8_t label, uint8_t *out, size_t len)
{
	uint8_t iv[16] = { 0 }, zeros[64] = { 0 };
	memcpy(iv, salt, salt_len);
	iv[7] ^= label;
	assert_true(len <= sizeof zeros);
	aes_ctr(master, iv, zeros, out, len);
}

/* RFC 7714 section 8: IV = (00 00 || SSRC || ROC || SEQ) XOR salt; the
 * header is the associated data; payload encrypted, 16-byte tag after. */
static size_t ref_gcm_protect(const uint8_t key[16], const uint8_t salt[12], uint32_t roc,
                              const uint8_t *pkt, size_t len, size_t hl, uint8_t *out)
{
	uint8_t iv[12] = { 0, 0, pkt[8], pkt[9], pkt[10], pkt[11],
	                   (uint8_t)(roc >> 24), (uint8_t)(roc >> 16), (uint8_t)(roc >> 8),
	                   (uint8_t)roc, pkt[2], pkt[3] };
	for (int i = 0; i < 12; i++)
		iv[i] ^= salt[i];
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0, f = 0;
	assert_non_null(c);
	assert_int_equal(EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, NULL, NULL), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL), 1);
	assert_int_equal(EVP_EncryptInit_ex(c, NULL, NULL, key, iv), 1);
	assert_int_equal(EVP_EncryptUpdate(c, NULL, &n, pkt, (int)hl), 1);
	memcpy(out, pkt, hl);
	assert_int_equal(EVP_EncryptUpdate(c, out + hl, &n, pkt + hl, (int)(len - hl)), 1);
	assert_int_equal(EVP_EncryptFinal_ex(c, out + hl + n, &f), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + len), 1);
	EVP_CIPHER_CTX_free(c);
	return len + 16;
}

/* RFC 3711 4.1.1 and 4.2: AES-CM from IV = (salt << 16) XOR (SSRC << 64)
 * XOR (index << 16); tag = HMAC-SHA1(header || payload || ROC), 80 bits. */
static size_t ref_cm_protect(const uint8_t key[16], const uint8_t salt[14],
                             const uint8_t auth[20], uint32_t roc, const uint8_t *pkt,
                             size_t len, size_t hl, uint8_t *out)
{
	uint8_t iv[16] = { 0 };
	memcpy(iv, salt, 14);
	for (int i = 0; i < 4; i++)
		iv[4 + i] ^= pkt[8 + i];
	iv[8] ^= (uint8_t)(roc >> 24);
	iv[9] ^= (uint8_t)(roc >> 16);
	iv[10] ^= (uint8_t)(roc >> 8);
	iv[11] ^= (uint8_t)roc;
	iv[12] ^= pkt[2];
	iv[13] ^= pkt[3];
	memcpy(out, pkt, hl);
	aes_ctr(key, iv, pkt + hl, out + hl, len - hl);
	uint8_t mac_in[MEDIA_PACKET_MAX + 4], mac[20];
	unsigned mac_len = 0;
	memcpy(mac_in, out, len);
	mac_in[len] = (uint8_t)(roc >> 24);
	mac_in[len + 1] = (uint8_t)(roc >> 16);
	mac_in[len + 2] = (uint8_t)(roc >> 8);
	mac_in[len + 3] = (uint8_t)roc;
	assert_non_null(HMAC(EVP_sha1(), auth, 20, mac_in, len + 4, mac, &mac_len));
	assert_int_equal(mac_len, 20);
	memcpy(out + len, mac, 10);
	return len + 10;
}

/* RFC 7714 section 16's packet: "Gallia est omnis divisa in partes tres". */
#define RFC7714_RTP \
	"8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 " \
	"20646976 69736120 696e2070 61727465 73207472 6573"

static void test_reference_against_rfcs(void **state)
{
	(void)state;
	uint8_t mk[16], ms[14], out[64];
	/* RFC 3711 B.3: key derivation. */
	unhex("E1F97A0D3E018BE0D64FA32C06DE4139", mk, sizeof mk);
	unhex("0EC675AD498AFEEBB6960B3AABE6", ms, sizeof ms);
	kdf(mk, ms, 14, 0, out, 16);
	assert_hex(out, 16, "C61E7A93744F39EE10734AFE3FF7A087");
	kdf(mk, ms, 14, 2, out, 14);
	assert_hex(out, 14, "30CBBC08863D8C85D49DB34A9AE1");
	kdf(mk, ms, 14, 1, out, 20);
	assert_hex(out, 20, "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4");

	/* RFC 3711 B.2: the AES-CM keystream for SSRC 0, index 0 (the
	 * reference encrypts zeros; the tag is not part of the vector). */
	uint8_t sk[16], ss[14], auth[20] = { 0 }, pkt[12 + 32] = { 0x80 }, enc[64 + 10];
	unhex("2B7E151628AED2A6ABF7158809CF4F3C", sk, sizeof sk);
	unhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD", ss, sizeof ss);
	ref_cm_protect(sk, ss, auth, 0, pkt, sizeof pkt, 12, enc);
	assert_hex(enc + 12, 32, "E03EAD0935C95E80E166B16DD92B4EB4"
	                         "D23513162B02D0F72A43A2FE4A5F97AB");

	/* RFC 7714 16.1.1: AEAD_AES_128_GCM from session key and salt. */
	uint8_t gk[16], gs[12], rtp[64], prot[64 + 16];
	unhex("000102030405060708090a0b0c0d0e0f", gk, sizeof gk);
	unhex("517569642070726f2071756f", gs, sizeof gs);
	size_t n = unhex(RFC7714_RTP, rtp, sizeof rtp);
	size_t pn = ref_gcm_protect(gk, gs, 0, rtp, n, 12, prot);
	assert_hex(prot, pn, "8040f17b 8041f8d3 5501a0b2 "
	                     "f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5 0d294e6f "
	                     "42a5f47a 51c7d19b 36de3adf 8833 "
	                     "899d7f27 beb16a91 52cf765e e4390cce");
}

/* media_protect of `rtp` with `master` gives the reference's `want` and
 * the pinned bytes, and media_unprotect recovers the packet. */
static void check_known_answer(enum media_profile p, const uint8_t *master, const uint8_t *rtp,
                               size_t n, const uint8_t *want, size_t wn, const char *pinned)
{
	struct media_ctx *out = media_ctx_new(p, master, 1);
	struct media_ctx *in = media_ctx_new(p, master, 0);
	assert_non_null(out);
	assert_non_null(in);
	uint8_t *b = malloc(n + MEDIA_TRAILER_MAX);
	assert_non_null(b);
	memcpy(b, rtp, n);
	size_t len = n;
	assert_int_equal(media_protect(out, b, &len), MEDIA_OK);
	assert_int_equal(len, wn);
	assert_memory_equal(b, want, wn);
	assert_hex(b, len, pinned);
	assert_int_equal(media_unprotect(in, b, &len), MEDIA_OK);
	assert_int_equal(len, n);
	assert_memory_equal(b, rtp, n);
	free(b);
	media_ctx_free(out);
	media_ctx_free(in);
}

/* media_protect from a fixed master key equals the reference over the
 * derived session keys, and the pinned bytes (computed once with libsrtp
 * 2.5.0 and the reference, which agree). The packet is RFC 7714's. */
static void test_known_answer_gcm(void **state)
{
	(void)state;
	uint8_t master[28], rtp[64], sk[16], ss[12], want[128];
	unhex("000102030405060708090a0b0c0d0e0f 517569642070726f2071756f", master,
	      sizeof master);
	size_t n = unhex(RFC7714_RTP, rtp, sizeof rtp);
	kdf(master, master + 16, 12, 0, sk, 16);
	kdf(master, master + 16, 12, 2, ss, 12);
	size_t wn = ref_gcm_protect(sk, ss, 0, rtp, n, 12, want);

	check_known_answer(MEDIA_GCM, master, rtp, n, want, wn,
	                   "8040f17b 8041f8d3 5501a0b2 "
	                   "92cb0ecf f0a0db18 8f7bff6b 523933aa cef8ae95 85ed378a "
	                   "627836cb 2d6a731d 6c3490d9 2538 "
	                   "7db18c06 61762d59 e50ad553 d241535a");
}

static void test_known_answer_cm(void **state)
{
	(void)state;
	uint8_t master[30], rtp[64], sk[16], ss[14], ak[20], want[128];
	unhex("E1F97A0D3E018BE0D64FA32C06DE4139 0EC675AD498AFEEBB6960B3AABE6", master,
	      sizeof master);
	size_t n = unhex(RFC7714_RTP, rtp, sizeof rtp);
	kdf(master, master + 16, 14, 0, sk, 16);
	kdf(master, master + 16, 14, 1, ak, 20);
	kdf(master, master + 16, 14, 2, ss, 14);
	size_t wn = ref_cm_protect(sk, ss, ak, 0, rtp, n, 12, want);

	check_known_answer(MEDIA_CM, master, rtp, n, want, wn,
	                   "8040f17b 8041f8d3 5501a0b2 "
	                   "46be7450 9aaa5ce4 310b26d9 5e135249 979cd7bc 38109ee0 "
	                   "71f7bf3a a8495d6d d41778d0 2641 "
	                   "cbe12652 3e4fe97e 1d91");
}

/* A context takes one SSRC: a party holding its key cannot make the
 * server's SRTP state grow by inventing new ones. */
static void test_one_ssrc_per_context(void **state)
{
	(void)state;
	for (size_t i = 0; i < 2; i++) {
		uint8_t key[MEDIA_KEY_MAX];
		assert_int_equal(media_key_new(PROFILES[i], key), 0);
		struct media_ctx *out, *in, *out2;
		ctx_pair(PROFILES[i], key, &out, &in);
		out2 = media_ctx_new(PROFILES[i], key, 1);
		assert_non_null(out2);
		size_t len;
		uint8_t *a = packet_new(1, 960, 0xaaaa0001, 40, &len);
		assert_int_equal(media_protect(out, a, &len), MEDIA_OK);
		assert_int_equal(media_unprotect(in, a, &len), MEDIA_OK);
		/* The sender may not switch SSRC under the same context... */
		size_t blen;
		uint8_t *b = packet_new(2, 1920, 0xbbbb0002, 40, &blen);
		assert_int_equal(media_protect(out, b, &blen), MEDIA_BAD);
		/* ...and a receiver refuses an authentic packet of another SSRC. */
		assert_int_equal(media_protect(out2, b, &blen), MEDIA_OK);
		assert_int_equal(media_unprotect(in, b, &blen), MEDIA_BAD);
		/* The pinned SSRC still flows. */
		free(a);
		a = packet_new(3, 2880, 0xaaaa0001, 40, &len);
		assert_int_equal(media_protect(out, a, &len), MEDIA_OK);
		assert_int_equal(media_unprotect(in, a, &len), MEDIA_OK);
		free(a);
		free(b);
		media_ctx_free(out);
		media_ctx_free(out2);
		media_ctx_free(in);
	}
}

/* Only the canonical base64 of a key is a key. */
static void test_key_decode_canonical_only(void **state)
{
	(void)state;
	uint8_t key[MEDIA_KEY_MAX];
	static const struct { enum media_profile p; const char *b64; } bad[] = {
		{ MEDIA_CM, "AAAA=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" },
		{ MEDIA_GCM, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA====" },
		{ MEDIA_GCM, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB==" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(media_key_decode(bad[i].p, bad[i].b64, key), -1);
	assert_int_equal(media_key_decode(MEDIA_GCM, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", key), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_profiles),
		cmocka_unit_test(test_key_new),
		cmocka_unit_test(test_key_encode_decode),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_round_trip_csrc_extension),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_other_key),
		cmocka_unit_test(test_replay),
		cmocka_unit_test(test_sender_refuses_repeat),
		cmocka_unit_test(test_decoded_key_interoperates),
		cmocka_unit_test(test_reference_against_rfcs),
		cmocka_unit_test(test_known_answer_gcm),
		cmocka_unit_test(test_known_answer_cm),
		cmocka_unit_test(test_one_ssrc_per_context),
		cmocka_unit_test(test_key_decode_canonical_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
