/* rtp.h - RTP (RFC 3550) fixed-header parsing and writing for earshot's
 * media frames. Pure: no I/O, no allocation; bounds-checked on any bytes. */
#ifndef EARSHOT_RTP_H
#define EARSHOT_RTP_H

#include <stddef.h>
#include <stdint.h>

#define RTP_HEADER_MIN 12
#define RTP_PT_OPUS 111        /* the dynamic payload type earshot uses */
#define RTP_OPUS_CLOCK 48000
#define RTP_FRAME_TICKS 960    /* 20 ms at 48 kHz */

struct rtp_header {
	uint8_t version;        /* must be 2 */
	uint8_t padding, extension, csrc_count, marker;
	uint8_t payload_type;
	uint16_t seq;
	uint32_t timestamp;
	uint32_t ssrc;
	size_t header_len;      /* fixed header + CSRCs + extension */
	size_t payload_len;     /* bytes after the header, less padding */
};

enum rtp_status {
	RTP_OK = 0,
	RTP_TOO_SHORT = -1,     /* fewer bytes than the header says */
	RTP_BAD_VERSION = -2,
	RTP_BAD_PADDING = -3,   /* padding count beyond the payload */
};

/* Parse the header of `len` bytes at `buf` (after SRTP unprotect, so the
 * payload is plain). Never reads past `len`. */
enum rtp_status rtp_parse(const uint8_t *buf, size_t len, struct rtp_header *h);

/* Write a 12-byte header (no CSRC, no extension, no padding). Returns 12,
 * or 0 if `cap` < 12. */
size_t rtp_write(uint8_t *buf, size_t cap, uint8_t pt, int marker, uint16_t seq,
                 uint32_t timestamp, uint32_t ssrc);

#endif
