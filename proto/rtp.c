/* rtp.c - RTP fixed-header parsing and writing (see rtp.h). */
#include "rtp.h"

enum rtp_status rtp_parse(const uint8_t *buf, size_t len, struct rtp_header *h)
{
	if (len < RTP_HEADER_MIN)
		return RTP_TOO_SHORT;
	h->version = buf[0] >> 6;
	if (h->version != 2)
		return RTP_BAD_VERSION;
	h->padding = (buf[0] >> 5) & 1;
	h->extension = (buf[0] >> 4) & 1;
	h->csrc_count = buf[0] & 0x0f;
	h->marker = buf[1] >> 7;
	h->payload_type = buf[1] & 0x7f;
	h->seq = (uint16_t)(buf[2] << 8 | buf[3]);
	h->timestamp = (uint32_t)buf[4] << 24 | (uint32_t)buf[5] << 16 |
	               (uint32_t)buf[6] << 8 | buf[7];
	h->ssrc = (uint32_t)buf[8] << 24 | (uint32_t)buf[9] << 16 |
	          (uint32_t)buf[10] << 8 | buf[11];
	size_t hl = RTP_HEADER_MIN + 4u * h->csrc_count;
	if (h->extension) {
		/* 16-bit profile, 16-bit length in 32-bit words, then the words. */
		if (len < hl + 4)
			return RTP_TOO_SHORT;
		hl += 4 + 4u * (size_t)(buf[hl + 2] << 8 | buf[hl + 3]);
	}
	if (len < hl)
		return RTP_TOO_SHORT;
	size_t pad = 0;
	if (h->padding) {
		pad = buf[len - 1];
		if (pad == 0 || pad > len - hl)
			return RTP_BAD_PADDING;
	}
	h->header_len = hl;
	h->payload_len = len - hl - pad;
	return RTP_OK;
}

size_t rtp_write(uint8_t *buf, size_t cap, uint8_t pt, int marker, uint16_t seq,
                 uint32_t timestamp, uint32_t ssrc)
{
	if (cap < RTP_HEADER_MIN)
		return 0;
	buf[0] = 2 << 6;
	buf[1] = (uint8_t)((marker ? 0x80 : 0) | (pt & 0x7f));
	buf[2] = (uint8_t)(seq >> 8);
	buf[3] = (uint8_t)seq;
	buf[4] = (uint8_t)(timestamp >> 24);
	buf[5] = (uint8_t)(timestamp >> 16);
	buf[6] = (uint8_t)(timestamp >> 8);
	buf[7] = (uint8_t)timestamp;
	buf[8] = (uint8_t)(ssrc >> 24);
	buf[9] = (uint8_t)(ssrc >> 16);
	buf[10] = (uint8_t)(ssrc >> 8);
	buf[11] = (uint8_t)ssrc;
	return RTP_HEADER_MIN;
}
