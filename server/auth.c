/* auth.c - verify and mint the HS256 JWTs that say who a peer is.
 *
 * libjwt 1.10 decodes and signs, but it is not trusted to decide alone.
 * It answers EINVAL alike for "not a JWT", "unsigned" and "wrong key", so
 * the structure and header are checked here first, which is also what
 * gives each failure its own status. It reads `alg` case-insensitively
 * ("hs256" passes) and, given a key length of 0, behaves as if no key was
 * passed (an alg-none token then verifies): the header must say exactly
 * "HS256" and an empty secret verifies nothing. And it compares signatures
 * with strcmp, whose timing tells a forger how much of a guessed signature
 * is right: the HMAC is checked here with CRYPTO_memcmp before libjwt sees
 * the token, so libjwt's own comparison only ever runs on a match.
 *
 * Claims are read back from libjwt as JSON and checked against
 * PROTOCOL.md "Authentication"; exp/nbf are checked against the caller's
 * `now`, which libjwt 1.10 never does. */
#include "auth.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define HS256_LEN 32
#define HS256_B64_LEN 43   /* unpadded base64url of 32 bytes */

/* The spelling and charset rules below mirror proto.c's on purpose: auth
 * depends only on proto.h's bounds and enum, not on the codec. */
static enum proto_role role_parse(const char *s)
{
	if (!strcmp(s, "client"))
		return ROLE_CLIENT;
	if (!strcmp(s, "counselor"))
		return ROLE_COUNSELOR;
	if (!strcmp(s, "operator"))
		return ROLE_OPERATOR;
	if (!strcmp(s, "node"))
		return ROLE_NODE;
	return ROLE_NONE;
}

static const char *role_name(enum proto_role r)
{
	switch (r) {
	case ROLE_CLIENT: return "client";
	case ROLE_COUNSELOR: return "counselor";
	case ROLE_OPERATOR: return "operator";
	case ROLE_NODE: return "node";
	default: return NULL;
	}
}

/* 1..max chars, each a lowercase letter, a digit, '_' or '-', plus (for a
 * sub) uppercase letters, '.' and '@'. */
static int charset_ok(const char *s, size_t max, int sub)
{
	size_t n = 0;
	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];
		if (n >= max)
			return 0;
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '-')
			continue;
		if (sub && ((c >= 'A' && c <= 'Z') || c == '.' || c == '@'))
			continue;
		return 0;
	}
	return n > 0;
}

static int sub_ok(const char *s) { return charset_ok(s, PROTO_SUB_MAX, 1); }
static int topic_ok(const char *s) { return charset_ok(s, PROTO_TOPIC_MAX, 0); }

static int b64url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Unpadded base64url as JWS writes it: alphabet only, and never a length
 * of 4k+1 (no encoder produces one). */
static int b64url_shape_ok(const char *s, size_t n)
{
	if (n % 4 == 1)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (b64url_val((unsigned char)s[i]) < 0)
			return 0;
	return 1;
}

/* Decode `n` chars of unpadded base64url into `out` (capacity `cap`).
 * Returns the decoded length, or -1 if the input is not base64url or the
 * result would not fit. */
static long b64url_decode(const char *s, size_t n, unsigned char *out,
                          size_t cap)
{
	if (!b64url_shape_ok(s, n))
		return -1;
	size_t need = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
	if (need > cap)
		return -1;
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		acc = (acc << 6) | (uint32_t)b64url_val((unsigned char)s[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return (long)o;
}

/* Encode `n` bytes as unpadded base64url into `out`, which must hold
 * (n + 2) / 3 * 4 + 1 bytes. Returns the length written (NUL excluded). */
static size_t b64url_encode(const unsigned char *in, size_t n, char *out)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0, i = 0;
	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		out[o++] = abc[v >> 6 & 63];
		out[o++] = abc[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		if (i + 1 < n)
			out[o++] = abc[v >> 6 & 63];
	}
	out[o] = '\0';
	return o;
}

/* A JSON string without an embedded NUL, or NULL. */
static const char *json_str(const json_t *v)
{
	if (!json_is_string(v))
		return NULL;
	const char *s = json_string_value(v);
	return strlen(s) == json_string_length(v) ? s : NULL;
}

/* The JOSE header: AUTH_OK for {"alg":"HS256"} with at most a "typ" of
 * JWT; AUTH_UNSIGNED for any other alg (none included); AUTH_MALFORMED for
 * anything that is not such a header. "crit" names extensions we would be
 * bound to understand (RFC 7515 4.1.11); we understand none. */
static enum auth_status header_check(const char *seg, size_t n)
{
	unsigned char buf[PROTO_TOKEN_MAX];
	long len = b64url_decode(seg, n, buf, sizeof buf);
	if (len <= 0)
		return AUTH_MALFORMED;
	json_t *h = json_loadb((const char *)buf, (size_t)len,
	                       JSON_REJECT_DUPLICATES, NULL);
	enum auth_status st = AUTH_MALFORMED;
	const char *alg = json_str(json_object_get(h, "alg"));
	const json_t *typ = json_object_get(h, "typ");
	if (!json_is_object(h) || !alg)
		goto out;
	if (strcmp(alg, "HS256")) {
		st = AUTH_UNSIGNED;
		goto out;
	}
	if (typ && !(json_str(typ) && !strcasecmp(json_str(typ), "JWT")))
		goto out;
	if (json_object_get(h, "crit"))
		goto out;
	st = AUTH_OK;
out:
	json_decref(h);
	return st;
}

/* Whether `sig` (`sn` chars) is the HS256 of the `n`-byte signing input,
 * compared in constant time. */
static int hs256_ok(const char *input, size_t n, const char *sig, size_t sn,
                    const char *secret, size_t klen)
{
	if (sn != HS256_B64_LEN)
		return 0;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	if (!HMAC(EVP_sha256(), secret, (int)klen, (const unsigned char *)input,
	          n, mac, &maclen) || maclen != HS256_LEN)
		return 0;
	char want[HS256_B64_LEN + 2];
	b64url_encode(mac, maclen, want);
	return CRYPTO_memcmp(want, sig, HS256_B64_LEN) == 0;
}

static int int_claim_ok(const json_t *c, const char *key)
{
	const json_t *v = json_object_get(c, key);
	return !v || json_is_integer(v);
}

/* Check the claims object and fill `id`. Every claim's shape is checked
 * before the clock, so a token that is both malformed and expired says
 * malformed. */
static enum auth_status claims_read(const json_t *c, int64_t now,
                                    struct auth_identity *id)
{
	if (!json_is_object(c))
		return AUTH_MALFORMED;

	const char *sub = json_str(json_object_get(c, "sub"));
	if (!sub || !sub_ok(sub))
		return AUTH_MALFORMED;
	strcpy(id->sub, sub);

	const char *role = json_str(json_object_get(c, "role"));
	if (!role || (id->role = role_parse(role)) == ROLE_NONE)
		return AUTH_MALFORMED;

	const json_t *v = json_object_get(c, "name");
	if (v) {
		const char *name = json_str(v);
		if (!name || strlen(name) > PROTO_NAME_MAX)
			return AUTH_MALFORMED;
		strcpy(id->name, name);
	}

	v = json_object_get(c, "skills");
	if (v) {
		if (!json_is_array(v) || json_array_size(v) > AUTH_SKILLS_MAX)
			return AUTH_MALFORMED;
		for (size_t i = 0; i < json_array_size(v); i++) {
			const char *s = json_str(json_array_get(v, i));
			if (!s || !topic_ok(s))
				return AUTH_MALFORMED;
			strcpy(id->skills[id->nskills++], s);
		}
	}

	const json_t *exp = json_object_get(c, "exp");
	if (!json_is_integer(exp) || !int_claim_ok(c, "nbf") ||
	    !int_claim_ok(c, "iat"))
		return AUTH_MALFORMED;
	id->exp = (int64_t)json_integer_value(exp);
	if (id->exp <= now)
		return AUTH_EXPIRED;
	const json_t *nbf = json_object_get(c, "nbf");
	if (nbf && (int64_t)json_integer_value(nbf) > now)
		return AUTH_EXPIRED;
	return AUTH_OK;
}

/* The token is known to be HS256-signed with `secret`; let libjwt decode
 * it and read its claims back. libjwt failing here means the payload is
 * not JSON (or memory ran out), since the signature already matched. */
static enum auth_status decode_claims(const char *token, const char *secret,
                                      size_t klen, int64_t now,
                                      struct auth_identity *id)
{
	jwt_t *jwt = NULL;
	if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)klen))
		return AUTH_MALFORMED;
	enum auth_status st = AUTH_UNSIGNED;
	char *js = NULL;
	json_t *claims = NULL;
	if (jwt_get_alg(jwt) != JWT_ALG_HS256)
		goto out;
	st = AUTH_MALFORMED;
	js = jwt_get_grants_json(jwt, NULL);
	if (!js)
		goto out;
	claims = json_loads(js, 0, NULL);
	st = claims_read(claims, now, id);
out:
	json_decref(claims);
	free(js);
	jwt_free(jwt);
	return st;
}

enum auth_status auth_verify(const char *token, const char *secret,
                             int64_t now, struct auth_identity *id)
{
	memset(id, 0, sizeof *id);
	if (!token)
		return AUTH_MALFORMED;
	size_t len = strnlen(token, PROTO_TOKEN_MAX + 1);
	if (len == 0 || len > PROTO_TOKEN_MAX)
		return AUTH_MALFORMED;

	/* header.payload.signature, nothing more */
	const char *d1 = memchr(token, '.', len);
	if (!d1)
		return AUTH_MALFORMED;
	const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
	if (!d2)
		return AUTH_MALFORMED;
	const char *sig = d2 + 1;
	size_t hn = (size_t)(d1 - token);
	size_t pn = (size_t)(d2 - d1 - 1);
	size_t sn = len - (size_t)(sig - token);
	if (memchr(sig, '.', sn))
		return AUTH_MALFORMED;

	/* The header first: an alg-none token says "unsigned" whatever its
	 * (empty) signature segment holds. */
	enum auth_status st = header_check(token, hn);
	if (st != AUTH_OK)
		return st;
	if (pn == 0 || !b64url_shape_ok(d1 + 1, pn) || !b64url_shape_ok(sig, sn))
		return AUTH_MALFORMED;

	size_t klen = secret ? strlen(secret) : 0;
	if (klen == 0 || klen > INT_MAX)
		return AUTH_BAD_SIGNATURE;
	if (!hs256_ok(token, (size_t)(d2 - token), sig, sn, secret, klen))
		return AUTH_BAD_SIGNATURE;

	struct auth_identity tmp = { 0 };
	st = decode_claims(token, secret, klen, now, &tmp);
	if (st == AUTH_OK)
		*id = tmp;
	return st;
}

const char *auth_status_code(enum auth_status s)
{
	switch (s) {
	case AUTH_MALFORMED: return "token_malformed";
	case AUTH_UNSIGNED: return "token_unsigned";
	case AUTH_BAD_SIGNATURE: return "token_bad_signature";
	case AUTH_EXPIRED: return "token_expired";
	default: return NULL;
	}
}

/* Whether `id` would pass auth_verify's claim checks. */
static int identity_ok(const struct auth_identity *id)
{
	if (!role_name(id->role))
		return 0;
	if (!memchr(id->sub, '\0', sizeof id->sub) || !sub_ok(id->sub))
		return 0;
	if (!memchr(id->name, '\0', sizeof id->name))
		return 0;
	if (id->nskills < 0 || id->nskills > AUTH_SKILLS_MAX)
		return 0;
	for (int i = 0; i < id->nskills; i++)
		if (!memchr(id->skills[i], '\0', sizeof id->skills[i]) ||
		    !topic_ok(id->skills[i]))
			return 0;
	return 1;
}

/* {"skills":[...]} for jwt_add_grants_json; the caller frees. */
static char *skills_json(const struct auth_identity *id)
{
	json_t *arr = json_array();
	for (int i = 0; arr && i < id->nskills; i++)
		if (json_array_append_new(arr, json_string(id->skills[i]))) {
			json_decref(arr);
			return NULL;
		}
	json_t *obj = json_object();
	if (!arr || !obj || json_object_set_new(obj, "skills", arr)) {
		json_decref(obj);
		return NULL;
	}
	char *s = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	return s;
}

int auth_mint(const struct auth_identity *id, const char *secret,
              int64_t now, int64_t ttl_s, char *out, size_t cap)
{
	size_t klen = secret ? strlen(secret) : 0;
	if (!identity_ok(id) || klen == 0 || klen > INT_MAX)
		return -1;
	/* exp goes through libjwt as a long */
	if (ttl_s <= 0 || now < 0 || now > (int64_t)LONG_MAX - ttl_s)
		return -1;

	jwt_t *jwt = NULL;
	char *skills = NULL, *tok = NULL;
	int rc = -1;
	if (jwt_new(&jwt))
		return -1;
	if (jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret,
	                (int)klen) ||
	    jwt_add_grant(jwt, "sub", id->sub) ||
	    jwt_add_grant(jwt, "role", role_name(id->role)) ||
	    (id->name[0] && jwt_add_grant(jwt, "name", id->name)) ||
	    jwt_add_grant_int(jwt, "iat", (long)now) ||
	    jwt_add_grant_int(jwt, "exp", (long)(now + ttl_s)))
		goto out;
	if (id->nskills > 0 &&
	    (!(skills = skills_json(id)) || jwt_add_grants_json(jwt, skills)))
		goto out;
	tok = jwt_encode_str(jwt);
	if (!tok)
		goto out;
	/* one auth_verify would refuse as too long is no use to anyone */
	size_t n = strlen(tok);
	if (n > PROTO_TOKEN_MAX || n >= cap)
		goto out;
	memcpy(out, tok, n + 1);
	rc = 0;
out:
	free(tok);
	free(skills);
	jwt_free(jwt);
	return rc;
}

void auth_pseudonym(const char *sub, const char *secret, char out[AUTH_PSEUDONYM_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	static const char label[] = "earshot continuity:";
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	char msg[sizeof label + PROTO_SUB_MAX];
	int len = snprintf(msg, sizeof msg, "%s%s", label, sub);
	const char *key = secret ? secret : "";
	if (len < 0 || !HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg,
	                     (size_t)len, mac, &n) || n * 2 < AUTH_PSEUDONYM_LEN) {
		out[0] = '\0';
		return;
	}
	for (int i = 0; i < AUTH_PSEUDONYM_LEN / 2; i++) {
		out[2 * i] = hex[mac[i] >> 4];
		out[2 * i + 1] = hex[mac[i] & 15];
	}
	out[AUTH_PSEUDONYM_LEN] = '\0';
}
