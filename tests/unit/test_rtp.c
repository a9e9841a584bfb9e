/* test_rtp.c - unit tests for the RTP header codec (proto/rtp.c): every
 * field of valid headers with CSRCs, an extension and padding; each error
 * status; rtp_write round trips. Every parse reads from a heap buffer of
 * exactly `len` bytes, so under ASan any read past `len` fails the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proto/rtp.h"

/* rtp_parse on a malloc'd copy of exactly `len` bytes. */
static enum rtp_status parse_exact(const uint8_t *bytes, size_t len, struct rtp_header *h)
{
	uint8_t *buf = malloc(len ? len : 1);
	assert_non_null(buf);
	if (len)
		memcpy(buf, bytes, len);
	/* A zero-length input gets a buffer whose only byte is out of bounds
	 * for the parser; ASan cannot tell, but the parser must not care. */
	enum rtp_status st = rtp_parse(buf, len, h);
	free(buf);
	return st;
}

/* A packet built in `p`: the 12-byte header, then what the test appends. */
struct pkt {
	uint8_t b[2048];
	size_t n;
};

static void pkt_header(struct pkt *p, int padding, int ext, unsigned cc, int marker,
                       unsigned pt, uint16_t seq, uint32_t ts, uint32_t ssrc)
{
	p->n = rtp_write(p->b, sizeof p->b, (uint8_t)pt, marker, seq, ts, ssrc);
	assert_int_equal(p->n, 12);
	p->b[0] |= (uint8_t)((padding ? 0x20 : 0) | (ext ? 0x10 : 0) | (cc & 0x0f));
}

static void pkt_put(struct pkt *p, const void *bytes, size_t len)
{
	assert_true(p->n + len <= sizeof p->b);
	memcpy(p->b + p->n, bytes, len);
	p->n += len;
}

static void pkt_fill(struct pkt *p, uint8_t byte, size_t len)
{
	assert_true(p->n + len <= sizeof p->b);
	memset(p->b + p->n, byte, len);
	p->n += len;
}

static void test_minimal(void **state)
{
	(void)state;
	static const uint8_t raw[] = {
		0x80, 0xef, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef,
		0x01, 0x02, 0x03, 0x04, 0xaa, 0xbb, 0xcc,
	};
	struct rtp_header h;
	assert_int_equal(parse_exact(raw, sizeof raw, &h), RTP_OK);
	assert_int_equal(h.version, 2);
	assert_int_equal(h.padding, 0);
	assert_int_equal(h.extension, 0);
	assert_int_equal(h.csrc_count, 0);
	assert_int_equal(h.marker, 1);
	assert_int_equal(h.payload_type, RTP_PT_OPUS);
	assert_int_equal(h.seq, 0x1234);
	assert_int_equal(h.timestamp, 0xdeadbeef);
	assert_int_equal(h.ssrc, 0x01020304);
	assert_int_equal(h.header_len, 12);
	assert_int_equal(h.payload_len, 3);

	/* The header alone is a packet with an empty payload. */
	assert_int_equal(parse_exact(raw, 12, &h), RTP_OK);
	assert_int_equal(h.header_len, 12);
	assert_int_equal(h.payload_len, 0);

	/* All-ones fields: marker 1, pt 127, and the top bit of every value. */
	static const uint8_t ones[] = {
		0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	};
	assert_int_equal(parse_exact(ones, sizeof ones, &h), RTP_OK);
	assert_int_equal(h.marker, 1);
	assert_int_equal(h.payload_type, 127);
	assert_int_equal(h.seq, 0xffff);
	assert_int_equal(h.timestamp, 0xffffffffu);
	assert_int_equal(h.ssrc, 0xffffffffu);
}

static void test_csrcs(void **state)
{
	(void)state;
	for (unsigned cc = 1; cc <= 15; cc++) {
		struct pkt p;
		pkt_header(&p, 0, 0, cc, 0, 111, 7, 960, 42);
		pkt_fill(&p, 0xc5, 4 * cc);
		pkt_fill(&p, 0x11, 20);
		struct rtp_header h;
		assert_int_equal(parse_exact(p.b, p.n, &h), RTP_OK);
		assert_int_equal(h.csrc_count, cc);
		assert_int_equal(h.marker, 0);
		assert_int_equal(h.header_len, 12 + 4 * cc);
		assert_int_equal(h.payload_len, 20);
		/* Exactly the CSRCs, no payload: fine; one byte less: too short. */
		assert_int_equal(parse_exact(p.b, 12 + 4 * cc, &h), RTP_OK);
		assert_int_equal(h.payload_len, 0);
		assert_int_equal(parse_exact(p.b, 12 + 4 * cc - 1, &h), RTP_TOO_SHORT);
	}
}

static void test_extension(void **state)
{
	(void)state;
	/* RFC 8285 one-byte form: profile 0xBEDE, 2 words of elements. */
	struct pkt p;
	pkt_header(&p, 0, 1, 0, 1, 111, 1, 2, 3);
	pkt_put(&p, "\xbe\xde\x00\x02", 4);
	pkt_fill(&p, 0x22, 8);
	pkt_fill(&p, 0x33, 61);
	struct rtp_header h;
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_OK);
	assert_int_equal(h.extension, 1);
	assert_int_equal(h.header_len, 12 + 4 + 8);
	assert_int_equal(h.payload_len, 61);

	/* An empty extension: just its 4-byte header. */
	pkt_header(&p, 0, 1, 0, 0, 111, 1, 2, 3);
	pkt_put(&p, "\x10\x00\x00\x00", 4);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_OK);
	assert_int_equal(h.header_len, 16);
	assert_int_equal(h.payload_len, 0);

	/* CSRCs then the extension: the extension header follows the CSRCs. */
	pkt_header(&p, 0, 1, 2, 0, 111, 1, 2, 3);
	pkt_fill(&p, 0xc5, 8);
	pkt_put(&p, "\x00\x01\x00\x03", 4);
	pkt_fill(&p, 0x22, 12);
	pkt_fill(&p, 0x33, 5);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_OK);
	assert_int_equal(h.csrc_count, 2);
	assert_int_equal(h.header_len, 12 + 8 + 4 + 12);
	assert_int_equal(h.payload_len, 5);

	/* The largest extension the length field can say: 65535 words. */
	static uint8_t big[12 + 4 + 4 * 65535 + 1];
	memset(big, 0, sizeof big);
	rtp_write(big, sizeof big, 111, 0, 1, 2, 3);
	big[0] |= 0x10;
	big[14] = 0xff;
	big[15] = 0xff;
	assert_int_equal(parse_exact(big, sizeof big, &h), RTP_OK);
	assert_int_equal(h.header_len, 12 + 4 + 4 * 65535u);
	assert_int_equal(h.payload_len, 1);
	assert_int_equal(parse_exact(big, sizeof big - 2, &h), RTP_TOO_SHORT);
}

static void test_padding(void **state)
{
	(void)state;
	struct pkt p;
	struct rtp_header h;
	/* 5 payload bytes, then 3 of padding whose last says 3. */
	pkt_header(&p, 1, 0, 0, 0, 111, 1, 2, 3);
	pkt_put(&p, "opus!", 5);
	pkt_put(&p, "\x00\x00\x03", 3);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_OK);
	assert_int_equal(h.padding, 1);
	assert_int_equal(h.header_len, 12);
	assert_int_equal(h.payload_len, 5);

	/* Padding that is the whole payload leaves it empty. */
	pkt_header(&p, 1, 0, 0, 0, 111, 1, 2, 3);
	pkt_put(&p, "\x00\x00\x00\x04", 4);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_OK);
	assert_int_equal(h.payload_len, 0);

	/* One byte of padding, after CSRCs and an extension. */
	pkt_header(&p, 1, 1, 1, 0, 111, 1, 2, 3);
	pkt_fill(&p, 0xc5, 4);
	pkt_put(&p, "\xbe\xde\x00\x01", 4);
	pkt_fill(&p, 0x22, 4);
	pkt_put(&p, "ab\x01", 3);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_OK);
	assert_int_equal(h.header_len, 24);
	assert_int_equal(h.payload_len, 2);

	/* A padding count of 0, or reaching back into the header: refused. */
	pkt_header(&p, 1, 0, 0, 0, 111, 1, 2, 3);
	pkt_put(&p, "abc\x00", 4);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_BAD_PADDING);
	p.b[p.n - 1] = 5;
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_BAD_PADDING);
	p.b[p.n - 1] = 255;
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_BAD_PADDING);
	/* The P bit with no byte after the header: the count would be the
	 * header's own last byte. */
	pkt_header(&p, 1, 0, 0, 0, 111, 1, 2, 0x01);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_BAD_PADDING);
	pkt_header(&p, 1, 0, 0, 0, 111, 1, 2, 0x00);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_BAD_PADDING);
}

static void test_too_short(void **state)
{
	(void)state;
	uint8_t raw[12] = { 0x80, 111 };
	struct rtp_header h;
	for (size_t len = 0; len < 12; len++)
		assert_int_equal(parse_exact(raw, len, &h), RTP_TOO_SHORT);
	/* Short wins over a bad version: nothing is read from a short buffer. */
	raw[0] = 0x00;
	assert_int_equal(parse_exact(raw, 11, &h), RTP_TOO_SHORT);

	struct pkt p;
	/* CSRC count beyond the bytes: 15 CSRCs need 72. */
	pkt_header(&p, 0, 0, 15, 0, 111, 1, 2, 3);
	pkt_fill(&p, 0, 59);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_TOO_SHORT);
	/* An extension header cut short (3 of its 4 bytes). */
	pkt_header(&p, 0, 1, 0, 0, 111, 1, 2, 3);
	pkt_put(&p, "\xbe\xde\x00", 3);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_TOO_SHORT);
	/* The X bit on a bare 12-byte header. */
	pkt_header(&p, 0, 1, 0, 0, 111, 1, 2, 3);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_TOO_SHORT);
	/* An extension longer than the packet: 2 words said, 7 bytes there. */
	pkt_header(&p, 0, 1, 0, 0, 111, 1, 2, 3);
	pkt_put(&p, "\xbe\xde\x00\x02", 4);
	pkt_fill(&p, 0, 7);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_TOO_SHORT);
	/* ...and with the largest length field. */
	pkt_header(&p, 0, 1, 0, 0, 111, 1, 2, 3);
	pkt_put(&p, "\xbe\xde\xff\xff", 4);
	pkt_fill(&p, 0, 100);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_TOO_SHORT);
	/* CSRCs present but the extension header after them missing. */
	pkt_header(&p, 0, 1, 3, 0, 111, 1, 2, 3);
	pkt_fill(&p, 0, 12);
	assert_int_equal(parse_exact(p.b, p.n, &h), RTP_TOO_SHORT);
}

static void test_bad_version(void **state)
{
	(void)state;
	struct rtp_header h;
	for (unsigned v = 0; v < 4; v++) {
		if (v == 2)
			continue;
		uint8_t raw[20] = { (uint8_t)(v << 6), 111 };
		assert_int_equal(parse_exact(raw, sizeof raw, &h), RTP_BAD_VERSION);
		assert_int_equal(h.version, v);
		/* Checked before the rest of the header is believed. */
		raw[0] |= 0x3f;
		assert_int_equal(parse_exact(raw, 12, &h), RTP_BAD_VERSION);
	}
}

static void test_write_round_trip(void **state)
{
	(void)state;
	static const struct { uint8_t pt; int marker; uint16_t seq; uint32_t ts, ssrc; } c[] = {
		{ 111, 0, 0, 0, 0 },
		{ 111, 1, 0xffff, 0xffffffffu, 0xffffffffu },
		{ 0, 0, 0x8000, 0x80000000u, 0x80000001u },
		{ 127, 1, 1, 960, 0x12345678 },
	};
	for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
		uint8_t *buf = malloc(12);
		assert_non_null(buf);
		assert_int_equal(rtp_write(buf, 12, c[k].pt, c[k].marker, c[k].seq, c[k].ts,
		                           c[k].ssrc), 12);
		struct rtp_header h;
		assert_int_equal(rtp_parse(buf, 12, &h), RTP_OK);
		assert_int_equal(h.version, 2);
		assert_int_equal(h.padding, 0);
		assert_int_equal(h.extension, 0);
		assert_int_equal(h.csrc_count, 0);
		assert_int_equal(h.marker, c[k].marker);
		assert_int_equal(h.payload_type, c[k].pt);
		assert_int_equal(h.seq, c[k].seq);
		assert_int_equal(h.timestamp, c[k].ts);
		assert_int_equal(h.ssrc, c[k].ssrc);
		assert_int_equal(h.header_len, 12);
		assert_int_equal(h.payload_len, 0);
		free(buf);
	}
	/* Network byte order on the wire. */
	uint8_t b[12];
	rtp_write(b, sizeof b, 111, 1, 0x0102, 0x03040506, 0x0708090a);
	static const uint8_t want[12] = { 0x80, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
	assert_memory_equal(b, want, 12);
	/* Any non-zero marker is 1; the payload type keeps its 7 bits. */
	rtp_write(b, sizeof b, 0xff, 5, 0, 0, 0);
	assert_int_equal(b[1], 0xff);
	rtp_write(b, sizeof b, 0x80 | 8, 0, 0, 0, 0);
	assert_int_equal(b[1], 8);
	/* Too small: 0, and nothing written. */
	uint8_t *small = malloc(11);
	assert_non_null(small);
	memset(small, 0x5a, 11);
	assert_int_equal(rtp_write(small, 11, 111, 0, 1, 2, 3), 0);
	for (int i = 0; i < 11; i++)
		assert_int_equal(small[i], 0x5a);
	assert_int_equal(rtp_write(NULL, 0, 111, 0, 1, 2, 3), 0);
	free(small);
}

/* Every prefix of a packet using every feature, each in a buffer of
 * exactly its length: never a read past the end, and an OK result always
 * describes bytes inside the buffer. */
static void test_every_prefix(void **state)
{
	(void)state;
	struct pkt p;
	pkt_header(&p, 1, 1, 3, 1, 111, 9, 9, 9);
	pkt_fill(&p, 0xc5, 12);
	pkt_put(&p, "\xbe\xde\x00\x02", 4);
	pkt_fill(&p, 0x22, 8);
	pkt_fill(&p, 0x33, 40);
	pkt_put(&p, "\x00\x02", 2);
	size_t hl = 12 + 12 + 4 + 8;
	for (size_t len = 0; len <= p.n; len++) {
		struct rtp_header h;
		enum rtp_status st = parse_exact(p.b, len, &h);
		if (len < hl)
			assert_int_equal(st, RTP_TOO_SHORT);
		else if (len == p.n)
			assert_int_equal(st, RTP_OK);
		if (st == RTP_OK) {
			assert_int_equal(h.header_len, hl);
			assert_true(h.header_len + h.payload_len <= len);
			assert_true(h.header_len + h.payload_len + p.b[len - 1] == len);
		}
	}
}

/* Random bytes and lengths, with the first byte mostly saying version 2 so
 * the deeper paths run: the invariants hold, ASan sees no overread. */
static void test_random(void **state)
{
	(void)state;
	uint64_t x = 0x9e3779b97f4a7c15u;
	uint8_t src[300];
	unsigned ok = 0;
	for (int iter = 0; iter < 200000; iter++) {
		for (size_t i = 0; i < sizeof src; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			src[i] = (uint8_t)x;
		}
		size_t len = (size_t)(x >> 40) % sizeof src;
		if (iter % 8)
			src[0] = (uint8_t)(0x80 | (src[0] & 0x3f));
		if (iter % 4 == 0 && len > 15)
			src[14] = 0;                /* small extension lengths */
		struct rtp_header h;
		enum rtp_status st = parse_exact(src, len, &h);
		assert_true(st == RTP_OK || st == RTP_TOO_SHORT || st == RTP_BAD_VERSION ||
		            st == RTP_BAD_PADDING);
		if (st != RTP_OK)
			continue;
		ok++;
		assert_int_equal(h.version, 2);
		assert_true(h.header_len >= 12u + 4u * h.csrc_count);
		size_t pad = h.padding ? src[len - 1] : 0;
		assert_int_equal(h.header_len + h.payload_len + pad, len);
	}
	assert_true(ok > 10000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal),
		cmocka_unit_test(test_csrcs),
		cmocka_unit_test(test_extension),
		cmocka_unit_test(test_padding),
		cmocka_unit_test(test_too_short),
		cmocka_unit_test(test_bad_version),
		cmocka_unit_test(test_write_round_trip),
		cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
