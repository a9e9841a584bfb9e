/* fuzz_proto.c - libFuzzer target for the protocol codec: decode arbitrary
 * bytes, and for every message that decodes, check that encoding it and
 * decoding the result gives the same struct back.
 *
 * The same file is linked with replay.c (no libFuzzer) to replay the kept
 * corpus under gcc in `make fuzz-replay`, so it uses only standard C. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The largest encoding is `ratings` with every list full
 * (PROTO_RATINGS_JSON_MAX, 64 KB); next, a message whose longest string is
 * all control characters, each escaped as \u00XX (6 bytes): hello with a
 * 4096-byte token is ~24.6 KB. */
#define ENC_MAX PROTO_RATINGS_JSON_MAX

/* Static: the structs are ~15 KB each (and a `ratings` reply's lists ~29
 * KB) and the buffer 64 KB. libFuzzer runs inputs one at a time, so
 * sharing them between calls is safe. */
static struct proto_ratings first_r, second_r;
static struct proto_msg first, second;
static char enc[ENC_MAX];

static void die(const char *what, const struct proto_err *err)
{
	fprintf(stderr, "fuzz_proto: %s\n", what);
	if (err != NULL)
		fprintf(stderr, "  code %s reason %s\n",
		        err->code ? err->code : "(null)", err->reason);
	fprintf(stderr, "  encoded: %.400s\n", enc);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_err err;
	if (proto_decode_with((const char *)data, size, &first, &first_r, &err) != PROTO_OK) {
		/* A failed decode still names a code from the fixed set. */
		if (err.code == NULL || err.reason[0] == '\0')
			die("error without code or reason", &err);
		return 0;
	}
	long n = proto_encode(&first, enc, sizeof enc);
	if (n <= 0)
		die("a decoded message did not encode", NULL);
	if ((size_t)n >= sizeof enc || enc[n] != '\0' || strlen(enc) != (size_t)n)
		die("encode length or NUL wrong", NULL);
	/* proto_decode memsets `second` (padding included) before filling
	 * it, as it did `first`, so equal messages compare equal bytewise. */
	if (proto_decode_with(enc, (size_t)n, &second, &second_r, &err) != PROTO_OK)
		die("re-decode of own encoding failed", &err);
	struct proto_ratings *keep = second.ratings;
	second.ratings = first.ratings;   /* the lists are compared on their own */
	int differs = memcmp(&first, &second, sizeof first) != 0 ||
	              (first.type == PT_RATINGS && memcmp(&first_r, &second_r, sizeof first_r) != 0);
	second.ratings = keep;
	if (differs)
		die("round trip changed the message", NULL);

	/* Too small by one (no room for the NUL) and tiny: both refused, and
	 * nothing past `cap` is touched (ASan would see it in `tiny`). */
	char tiny[8];
	if (proto_encode(&first, enc, (size_t)n) != -1)
		die("encode fit without room for the NUL", NULL);
	if (proto_encode(&first, tiny, sizeof tiny) != -1)
		die("encode fit in 8 bytes", NULL);
	if (proto_encode(&first, enc, (size_t)n + 1) != n)
		die("encode into exactly n+1 bytes failed", NULL);
	return 0;
}
