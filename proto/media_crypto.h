/* media_crypto.h - libsrtp's per-packet transforms (AES-128-GCM, AES-128-CM,
 * HMAC-SHA1) replaced by OpenSSL ones keyed once per stream; see
 * media_crypto.c for why. */
#ifndef EARSHOT_MEDIA_CRYPTO_H
#define EARSHOT_MEDIA_CRYPTO_H

/* After srtp_init(): 0, or -1 if libsrtp refused a replacement (its
 * self-test failed). */
int media_crypto_install(void);

#endif
