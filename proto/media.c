/* media.c - the SRTP layer shared by server and clients (see media.h). */
#include "media.h"
#include "media_crypto.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <srtp2/srtp.h>
#include <stdlib.h>
#include <string.h>

/* One SSRC per context. libsrtp's "any SSRC" policy adds a stream for
 * every new SSRC it authenticates and finds streams by walking a list: a
 * party holding its own key could grow that list without bound (measured:
 * 3.2 ms per packet after 100k SSRCs). A legitimate party keeps one SSRC
 * per key, and gets new keys (a new context) after any resume. */
struct media_ctx {
	srtp_t srtp;
	uint32_t ssrc;
	int pinned;
};

static uint32_t packet_ssrc(const uint8_t *buf)
{
	return (uint32_t)buf[8] << 24 | (uint32_t)buf[9] << 16 | (uint32_t)buf[10] << 8 | buf[11];
}

static int ssrc_allowed(const struct media_ctx *c, const uint8_t *buf)
{
	return !c->pinned || packet_ssrc(buf) == c->ssrc;
}

static void ssrc_pin(struct media_ctx *c, const uint8_t *buf)
{
	c->ssrc = packet_ssrc(buf);
	c->pinned = 1;
}

static const char *const profile_names[] = {
	[MEDIA_GCM] = "aead_aes_128_gcm",
	[MEDIA_CM] = "aes_cm_128_hmac_sha1_80",
};

int media_global_init(void)
{
	static int done;
	if (done)
		return 0;
	if (srtp_init() != srtp_err_status_ok || media_crypto_install() != 0)
		return -1;
	done = 1;
	return 0;
}

int media_profile_parse(const char *s, enum media_profile *p)
{
	for (int i = 0; i < 2; i++)
		if (strcmp(s, profile_names[i]) == 0) {
			*p = (enum media_profile)i;
			return 0;
		}
	return -1;
}

const char *media_profile_name(enum media_profile p)
{
	return (unsigned)p < 2 ? profile_names[p] : NULL;
}

size_t media_key_len(enum media_profile p)
{
	return p == MEDIA_GCM ? SRTP_AES_GCM_128_KEY_LEN_WSALT : SRTP_AES_ICM_128_KEY_LEN_WSALT;
}

int media_key_new(enum media_profile p, uint8_t *key)
{
	return RAND_bytes(key, (int)media_key_len(p)) == 1 ? 0 : -1;
}

void media_key_encode(const uint8_t *key, size_t len, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, key, (int)len);
}

int media_key_decode(enum media_profile p, const char *b64, uint8_t *key)
{
	size_t want = media_key_len(p);
	size_t enc = 4 * ((want + 2) / 3);
	if (strlen(b64) != enc)
		return -1;
	unsigned char buf[MEDIA_KEY_B64_MAX];
	int n = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)enc);
	/* EVP_DecodeBlock counts the padding bytes as data. */
	size_t pad = (b64[enc - 1] == '=') + (b64[enc - 2] == '=');
	if (n < 0 || (size_t)n - pad != want)
		return -1;
	/* OpenSSL's decoder takes '=' inside the text as zero bits and ignores
	 * stray low bits: accept only the one canonical spelling. */
	char again[MEDIA_KEY_B64_MAX];
	EVP_EncodeBlock((unsigned char *)again, buf, (int)want);
	if (strcmp(again, b64) != 0)
		return -1;
	memcpy(key, buf, want);
	return 0;
}

struct media_ctx *media_ctx_new(enum media_profile p, const uint8_t *key, int outbound)
{
	if (media_global_init() != 0)
		return NULL;
	struct media_ctx *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	srtp_policy_t pol;
	memset(&pol, 0, sizeof pol);
	if (p == MEDIA_GCM) {
		srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol.rtp);
		srtp_crypto_policy_set_aes_gcm_128_16_auth(&pol.rtcp);
	} else {
		srtp_crypto_policy_set_rtp_default(&pol.rtp);
		srtp_crypto_policy_set_rtcp_default(&pol.rtcp);
	}
	pol.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
	pol.key = (unsigned char *)key; /* copied by srtp_create */
	pol.window_size = 128;
	pol.allow_repeat_tx = 0;
	if (srtp_create(&c->srtp, &pol) != srtp_err_status_ok) {
		free(c);
		return NULL;
	}
	return c;
}

void media_ctx_free(struct media_ctx *c)
{
	if (!c)
		return;
	srtp_dealloc(c->srtp);
	free(c);
}

static enum media_status status_of(srtp_err_status_t st)
{
	switch (st) {
	case srtp_err_status_ok: return MEDIA_OK;
	case srtp_err_status_auth_fail: return MEDIA_AUTH_FAIL;
	case srtp_err_status_replay_fail:
	case srtp_err_status_replay_old: return MEDIA_REPLAY;
	default: return MEDIA_BAD;
	}
}

enum media_status media_protect(struct media_ctx *c, uint8_t *buf, size_t *len)
{
	if (*len < 12 || *len > MEDIA_PACKET_MAX - MEDIA_TRAILER_MAX || !ssrc_allowed(c, buf))
		return MEDIA_BAD;
	int n = (int)*len;
	enum media_status st = status_of(srtp_protect(c->srtp, buf, &n));
	if (st == MEDIA_OK) {
		ssrc_pin(c, buf);
		*len = (size_t)n;
	}
	return st;
}

enum media_status media_unprotect(struct media_ctx *c, uint8_t *buf, size_t *len)
{
	if (*len < 12 || *len > MEDIA_PACKET_MAX || !ssrc_allowed(c, buf))
		return MEDIA_BAD;
	int n = (int)*len;
	enum media_status st = status_of(srtp_unprotect(c->srtp, buf, &n));
	if (st == MEDIA_OK) {
		ssrc_pin(c, buf);
		*len = (size_t)n;
	}
	return st;
}
