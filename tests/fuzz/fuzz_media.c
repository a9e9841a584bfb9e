/* fuzz_media.c - libFuzzer target for the server's media input path: an
 * input is one received binary frame. Three independent checks:
 *
 *   1. media_unprotect with a fixed AEAD_AES_128_GCM inbound context, as
 *      the relay does first; what authenticates goes on to 2's checks.
 *   2. rtp_parse of the raw bytes, and for payload type 111 Opus'
 *      opus_packet_parse of the payload: the header and frame lengths
 *      must describe bytes inside the input.
 *   3. For input that parses as RTP and fits, protect with a fresh
 *      outbound context and unprotect with a fresh inbound one: the
 *      packet must come back byte for byte, and tampering must fail.
 *
 * The fixed key is what tests/fuzz/media_corpus's protected seeds were
 * made with, so they reach the code behind authentication. The inbound
 * context of 1 lives across calls: its replay window is state, so a seed
 * replayed a second time is a replay, which is fine (libFuzzer's inputs
 * are not independent of order for that check, but none of its outcomes
 * is a failure).
 *
 * Every buffer handed to the code under test is a heap allocation of
 * exactly the size media.h and rtp.h promise to stay within (the packet,
 * plus MEDIA_TRAILER_MAX when protecting), so ASan sees any overrun.
 *
 * Linked with replay.c (no libFuzzer) to replay the kept corpus under gcc,
 * so it uses only standard C plus the libraries under test. */
#include <opus/opus.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/media.h"
#include "proto/rtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The seeds' master key || salt (28 bytes, GCM): bytes 0x10..0x2b. */
static const uint8_t FUZZ_KEY[28] = {
	0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19,
	0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23,
	0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b,
};

static void die(const char *what, size_t a, size_t b)
{
	fprintf(stderr, "fuzz_media: %s (%zu, %zu)\n", what, a, b);
	abort();
}

static uint8_t *copy_exact(const uint8_t *data, size_t size, size_t room)
{
	uint8_t *b = malloc(size + room > 0 ? size + room : 1);
	if (b == NULL)
		die("out of memory", size, room);
	if (size)
		memcpy(b, data, size);
	return b;
}

/* The relay's checks on a plain packet: the header, then for Opus the
 * frames. Returns the parse status. */
static enum rtp_status check_plain(const uint8_t *p, size_t len, struct rtp_header *h)
{
	enum rtp_status st = rtp_parse(p, len, h);
	if (st != RTP_OK) {
		if (st != RTP_TOO_SHORT && st != RTP_BAD_VERSION && st != RTP_BAD_PADDING)
			die("rtp_parse: unknown status", (size_t)-st, len);
		return st;
	}
	if (h->version != 2 || h->header_len < RTP_HEADER_MIN + 4u * h->csrc_count ||
	    h->header_len > len || h->payload_len > len - h->header_len)
		die("rtp_parse: header or payload outside the packet", h->header_len,
		    h->payload_len);
	size_t pad = h->padding ? p[len - 1] : 0;
	if (h->header_len + h->payload_len + pad != len)
		die("rtp_parse: lengths do not add up", h->header_len + h->payload_len, len);
	if (h->payload_type != RTP_PT_OPUS || h->payload_len == 0)
		return st;

	const uint8_t *pl = p + h->header_len;
	unsigned char toc;
	const unsigned char *frames[48];
	opus_int16 sizes[48];
	int offset = -1;
	int n = opus_packet_parse(pl, (opus_int32)h->payload_len, &toc, frames, sizes,
	                          &offset);
	if (n <= 0)
		return st;
	if (n > 48 || offset < 1 || (size_t)offset > h->payload_len)
		die("opus_packet_parse: frame count or offset", (size_t)n, (size_t)offset);
	for (int i = 0; i < n; i++)
		if (sizes[i] < 0 || frames[i] < pl ||
		    (size_t)(frames[i] - pl) + (size_t)sizes[i] > h->payload_len)
			die("opus_packet_parse: frame outside the payload", (size_t)i,
			    (size_t)sizes[i]);
	return st;
}

static void check_unprotect(struct media_ctx *in, const uint8_t *data, size_t size)
{
	uint8_t *b = copy_exact(data, size, 0);
	size_t len = size;
	enum media_status st = media_unprotect(in, b, &len);
	if (st == MEDIA_OK) {
		if (len < RTP_HEADER_MIN || len > size)
			die("media_unprotect: length out of range", len, size);
		struct rtp_header h;
		check_plain(b, len, &h);
	} else if (st != MEDIA_AUTH_FAIL && st != MEDIA_REPLAY && st != MEDIA_BAD) {
		die("media_unprotect: unknown status", (size_t)-st, size);
	} else if (len != size) {
		die("media_unprotect: failed but changed the length", len, size);
	}
	free(b);
}

static void check_round_trip(const uint8_t *data, size_t size)
{
	struct media_ctx *out = media_ctx_new(MEDIA_GCM, FUZZ_KEY, 1);
	struct media_ctx *in = media_ctx_new(MEDIA_GCM, FUZZ_KEY, 0);
	if (out == NULL || in == NULL)
		die("media_ctx_new failed", 0, 0);
	uint8_t *b = copy_exact(data, size, MEDIA_TRAILER_MAX);
	size_t len = size;
	enum media_status st = media_protect(out, b, &len);
	if (st != MEDIA_OK)
		die("media_protect refused a packet rtp_parse accepts", (size_t)-st, size);
	if (len != size + 16)
		die("media_protect: GCM tag not 16 bytes", len, size);
	/* Unprotect from an exact-size copy, once tampered, then genuine. */
	uint8_t *wire = copy_exact(b, len, 0);
	size_t wlen = len;
	wire[len - 1 - data[size - 1] % len] ^= 0x20;
	if (media_unprotect(in, wire, &wlen) == MEDIA_OK)
		die("media_unprotect accepted a tampered packet", wlen, len);
	memcpy(wire, b, len);
	wlen = len;
	st = media_unprotect(in, wire, &wlen);
	if (st != MEDIA_OK)
		die("media_unprotect refused its own packet", (size_t)-st, size);
	if (wlen != size || memcmp(wire, data, size) != 0)
		die("round trip changed the packet", wlen, size);
	free(wire);
	free(b);
	media_ctx_free(out);
	media_ctx_free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct media_ctx *inbound;
	if (inbound == NULL && (inbound = media_ctx_new(MEDIA_GCM, FUZZ_KEY, 0)) == NULL)
		die("media_ctx_new failed", 0, 0);

	check_unprotect(inbound, data, size);

	struct rtp_header h;
	if (check_plain(data, size, &h) == RTP_OK &&
	    size <= MEDIA_PACKET_MAX - MEDIA_TRAILER_MAX)
		check_round_trip(data, size);
	return 0;
}
