/* media_crypto.c - the per-packet cryptography of libsrtp, on OpenSSL.
 *
 * Why: Debian 12 builds libsrtp2 on NSS, and NSS gets slower with every
 * live key. Measured here (protect + unprotect of one 72-byte packet, GCM):
 * 2.1 us with one pair of contexts, 13.3 us with 800 pairs in use (a relay
 * holds four per session); AES-CM + HMAC-SHA1: 5.6 us, 31.8 us. On a relay
 * under load that was a third of the server's CPU. libsrtp lets a program
 * replace the transforms it uses (srtp_replace_cipher_type,
 * srtp_replace_auth_type): these do AES-128-GCM, AES-128-CM (also the key
 * derivation) and HMAC-SHA1 with OpenSSL contexts keyed once per stream,
 * so a packet costs no allocation and no key setup. Everything SRTP itself
 * does (key derivation, rollover counter, replay window, packet layout)
 * stays libsrtp's.
 *
 * libsrtp runs its own known-answer tests on each replacement before it
 * takes it (the ones it ships for the transform being replaced), and
 * tests/unit/test_media.c checks whole packets against the RFC vectors. */
#include "media_crypto.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <srtp2/auth.h>
#include <srtp2/cipher.h>
#include <srtp2/srtp.h>

/* libsrtp 2.5 exports its built-in transforms, though no installed header
 * declares them: their test vectors are the self-test of ours. */
extern const srtp_cipher_type_t srtp_aes_gcm_128, srtp_aes_icm_128;
extern const srtp_auth_type_t srtp_hmac;

#define AES128_KEY 16
#define GCM_TAG 16
#define GCM_TAG_SHORT 8
#define SHA1_LEN 20

struct cipher_state {
	EVP_CIPHER_CTX *ctx;
	uint8_t salt[16];          /* AES-CM: the salt, two zero bytes after it */
	int tag_len;               /* GCM */
	int encrypt;               /* GCM: direction set by set_iv */
};

static srtp_cipher_type_t gcm_type, cm_type;
static srtp_auth_type_t hmac_type;

static srtp_err_status_t cipher_alloc(srtp_cipher_t **out, const srtp_cipher_type_t *type,
                                      int algorithm, int key_len, int tag_len)
{
	srtp_cipher_t *c = calloc(1, sizeof *c);
	struct cipher_state *st = calloc(1, sizeof *st);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	if (!c || !st || !ctx) {
		free(c);
		free(st);
		EVP_CIPHER_CTX_free(ctx);
		return srtp_err_status_alloc_fail;
	}
	st->ctx = ctx;
	st->tag_len = tag_len;
	c->type = type;
	c->state = st;
	c->key_len = key_len;
	c->algorithm = algorithm;
	*out = c;
	return srtp_err_status_ok;
}

static srtp_err_status_t cipher_dealloc(srtp_cipher_t *c)
{
	struct cipher_state *st = c->state;
	EVP_CIPHER_CTX_free(st->ctx);
	memset(st, 0, sizeof *st);
	free(st);
	free(c);
	return srtp_err_status_ok;
}

/* ---- AEAD_AES_128_GCM (RFC 7714) ---- */

static srtp_err_status_t gcm_alloc(srtp_cipher_t **c, int key_len, int tag_len)
{
	if (key_len != SRTP_AES_GCM_128_KEY_LEN_WSALT ||
	    (tag_len != GCM_TAG && tag_len != GCM_TAG_SHORT))
		return srtp_err_status_bad_param;
	return cipher_alloc(c, &gcm_type, SRTP_AES_GCM_128, key_len, tag_len);
}

/* The key only: libsrtp folds the salt into every IV itself. */
static srtp_err_status_t gcm_init(void *sv, const uint8_t *key)
{
	struct cipher_state *st = sv;
	if (!EVP_CipherInit_ex(st->ctx, EVP_aes_128_gcm(), NULL, key, NULL, 1))
		return srtp_err_status_init_fail;
	return srtp_err_status_ok;
}

static srtp_err_status_t gcm_set_iv(void *sv, uint8_t *iv, srtp_cipher_direction_t dir)
{
	struct cipher_state *st = sv;
	if (dir != srtp_direction_encrypt && dir != srtp_direction_decrypt)
		return srtp_err_status_bad_param;
	st->encrypt = dir == srtp_direction_encrypt;
	/* The default IV length of GCM is libsrtp's 12 bytes. */
	if (!EVP_CipherInit_ex(st->ctx, NULL, NULL, NULL, iv, st->encrypt))
		return srtp_err_status_init_fail;
	return srtp_err_status_ok;
}

static srtp_err_status_t gcm_set_aad(void *sv, const uint8_t *aad, uint32_t len)
{
	struct cipher_state *st = sv;
	int n;
	if (!EVP_CipherUpdate(st->ctx, NULL, &n, aad, (int)len))
		return srtp_err_status_algo_fail;
	return srtp_err_status_ok;
}

static srtp_err_status_t gcm_encrypt(void *sv, uint8_t *buf, unsigned int *len)
{
	struct cipher_state *st = sv;
	int n;
	if (!st->encrypt || !EVP_CipherUpdate(st->ctx, buf, &n, buf, (int)*len))
		return srtp_err_status_algo_fail;
	return srtp_err_status_ok;
}

/* After gcm_encrypt: the tag, which libsrtp appends. */
static srtp_err_status_t gcm_get_tag(void *sv, uint8_t *tag, uint32_t *len)
{
	struct cipher_state *st = sv;
	uint8_t none[16];
	int n;
	if (!EVP_CipherFinal_ex(st->ctx, none, &n) ||
	    !EVP_CIPHER_CTX_ctrl(st->ctx, EVP_CTRL_GCM_GET_TAG, st->tag_len, tag))
		return srtp_err_status_algo_fail;
	*len = (uint32_t)st->tag_len;
	return srtp_err_status_ok;
}

/* `*len` counts the tag at the end; on success it no longer does. */
static srtp_err_status_t gcm_decrypt(void *sv, uint8_t *buf, unsigned int *len)
{
	struct cipher_state *st = sv;
	uint8_t none[16];
	int n;
	if (st->encrypt || *len < (unsigned)st->tag_len)
		return srtp_err_status_bad_param;
	unsigned int body = *len - (unsigned)st->tag_len;
	if (!EVP_CIPHER_CTX_ctrl(st->ctx, EVP_CTRL_GCM_SET_TAG, st->tag_len, buf + body) ||
	    !EVP_CipherUpdate(st->ctx, buf, &n, buf, (int)body))
		return srtp_err_status_algo_fail;
	if (!EVP_CipherFinal_ex(st->ctx, none, &n))
		return srtp_err_status_auth_fail;
	*len = body;
	return srtp_err_status_ok;
}

/* ---- AES_CM_128 (RFC 3711 4.1.1), also the key derivation ---- */

static srtp_err_status_t cm_alloc(srtp_cipher_t **c, int key_len, int tag_len)
{
	(void)tag_len;
	if (key_len != SRTP_AES_ICM_128_KEY_LEN_WSALT)
		return srtp_err_status_bad_param;
	return cipher_alloc(c, &cm_type, SRTP_AES_ICM_128, key_len, 0);
}

/* The key is 16 bytes of key and 14 of salt. */
static srtp_err_status_t cm_init(void *sv, const uint8_t *key)
{
	struct cipher_state *st = sv;
	memset(st->salt, 0, sizeof st->salt);
	memcpy(st->salt, key + AES128_KEY, SRTP_SALT_LEN);
	if (!EVP_EncryptInit_ex(st->ctx, EVP_aes_128_ctr(), NULL, key, NULL))
		return srtp_err_status_init_fail;
	return srtp_err_status_ok;
}

/* The counter block is the salt XOR the IV libsrtp built. */
static srtp_err_status_t cm_set_iv(void *sv, uint8_t *iv, srtp_cipher_direction_t dir)
{
	struct cipher_state *st = sv;
	uint8_t block[16];
	(void)dir;
	for (int i = 0; i < 16; i++)
		block[i] = st->salt[i] ^ iv[i];
	if (!EVP_EncryptInit_ex(st->ctx, NULL, NULL, NULL, block))
		return srtp_err_status_init_fail;
	return srtp_err_status_ok;
}

/* Counter mode: one operation for both directions. */
static srtp_err_status_t cm_crypt(void *sv, uint8_t *buf, unsigned int *len)
{
	struct cipher_state *st = sv;
	int n;
	if (!EVP_EncryptUpdate(st->ctx, buf, &n, buf, (int)*len))
		return srtp_err_status_cipher_fail;
	return srtp_err_status_ok;
}

/* ---- HMAC-SHA1 (RFC 3711 4.2.1) ---- */

static srtp_err_status_t hmac_alloc(srtp_auth_t **out, int key_len, int out_len)
{
	if (key_len > SHA1_LEN || out_len > SHA1_LEN)
		return srtp_err_status_bad_param;
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	EVP_MAC_free(mac); /* the context keeps its own reference */
	srtp_auth_t *a = calloc(1, sizeof *a);
	if (!ctx || !a) {
		EVP_MAC_CTX_free(ctx);
		free(a);
		return srtp_err_status_alloc_fail;
	}
	a->type = &hmac_type;
	a->state = ctx;
	a->out_len = out_len;
	a->key_len = key_len;
	a->prefix_len = 0;
	*out = a;
	return srtp_err_status_ok;
}

static srtp_err_status_t hmac_dealloc(srtp_auth_t *a)
{
	EVP_MAC_CTX_free(a->state);
	free(a);
	return srtp_err_status_ok;
}

static srtp_err_status_t hmac_init(void *sv, const uint8_t *key, int key_len)
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA1", 0),
		OSSL_PARAM_construct_end(),
	};
	if (!EVP_MAC_init(sv, key, (size_t)key_len, params))
		return srtp_err_status_init_fail;
	return srtp_err_status_ok;
}

/* A new message under the same key (no key setup). */
static srtp_err_status_t hmac_start(void *sv)
{
	if (!EVP_MAC_init(sv, NULL, 0, NULL))
		return srtp_err_status_auth_fail;
	return srtp_err_status_ok;
}

static srtp_err_status_t hmac_update(void *sv, const uint8_t *buf, int len)
{
	if (!EVP_MAC_update(sv, buf, (size_t)len))
		return srtp_err_status_auth_fail;
	return srtp_err_status_ok;
}

static srtp_err_status_t hmac_compute(void *sv, const uint8_t *buf, int len, int tag_len,
                                      uint8_t *tag)
{
	uint8_t h[SHA1_LEN];
	size_t n;
	if (tag_len < 0 || tag_len > SHA1_LEN || !EVP_MAC_update(sv, buf, (size_t)len) ||
	    !EVP_MAC_final(sv, h, &n, sizeof h))
		return srtp_err_status_auth_fail;
	memcpy(tag, h, (size_t)tag_len);
	return srtp_err_status_ok;
}

int media_crypto_install(void)
{
	gcm_type = (srtp_cipher_type_t){
		.alloc = gcm_alloc, .dealloc = cipher_dealloc, .init = gcm_init,
		.set_aad = gcm_set_aad, .encrypt = gcm_encrypt, .decrypt = gcm_decrypt,
		.set_iv = gcm_set_iv, .get_tag = gcm_get_tag,
		.description = "AES-128 GCM on OpenSSL (earshot)",
		.test_data = srtp_aes_gcm_128.test_data, .id = SRTP_AES_GCM_128,
	};
	cm_type = (srtp_cipher_type_t){
		.alloc = cm_alloc, .dealloc = cipher_dealloc, .init = cm_init,
		.encrypt = cm_crypt, .decrypt = cm_crypt, .set_iv = cm_set_iv,
		.description = "AES-128 CM on OpenSSL (earshot)",
		.test_data = srtp_aes_icm_128.test_data, .id = SRTP_AES_ICM_128,
	};
	hmac_type = (srtp_auth_type_t){
		.alloc = hmac_alloc, .dealloc = hmac_dealloc, .init = hmac_init,
		.compute = hmac_compute, .update = hmac_update, .start = hmac_start,
		.description = "HMAC-SHA1 on OpenSSL (earshot)",
		.test_data = srtp_hmac.test_data, .id = SRTP_HMAC_SHA1,
	};
	if (srtp_replace_cipher_type(&gcm_type, SRTP_AES_GCM_128) != srtp_err_status_ok ||
	    srtp_replace_cipher_type(&cm_type, SRTP_AES_ICM_128) != srtp_err_status_ok ||
	    srtp_replace_auth_type(&hmac_type, SRTP_HMAC_SHA1) != srtp_err_status_ok)
		return -1;
	return 0;
}
