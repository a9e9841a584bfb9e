/* test_auth.c - unit tests for server/auth.c: mint, verify, and every way
 * a token is refused. Hand-built tokens are signed here with OpenSSL's
 * HMAC() so that validly signed tokens can carry bad claims. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../../server/auth.c"

#define NOW ((int64_t)1700000000)
#define SECRET "correct horse battery staple"
/* {"alg":"HS256","typ":"JWT"} */
#define HS256_HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* Unpadded base64url of `n` bytes into `out` (room for 4/3 n + 4). An
 * encoder independent of auth.c's, so the two check each other. */
static void b64u(const void *in, size_t n, char *out)
{
	int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (char *p = out; *p; p++) {
		if (*p == '+')
			*p = '-';
		else if (*p == '/')
			*p = '_';
	}
}

static void b64u_str(const char *s, char *out) { b64u(s, strlen(s), out); }

/* HS256 over `input` with `secret`, base64url, into `out`. */
static void hs256(const char *input, const char *secret, char *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret),
	                     (const unsigned char *)input, strlen(input), mac, &n));
	b64u(mac, n, out);
}

/* header.payload.sig from raw JSON texts (payload of `plen` bytes, so it
 * may hold a NUL). With `secret` NULL the signature segment is empty. */
static void build_n(char *out, size_t cap, const char *header,
                    const char *payload, size_t plen, const char *secret)
{
	char h[1024], p[8192], sig[128] = "";
	assert_true(strlen(header) < 700 && plen < 6000);
	b64u_str(header, h);
	b64u(payload, plen, p);
	int n = snprintf(out, cap, "%s.%s", h, p);
	assert_true(n > 0 && (size_t)n < cap);
	if (secret)
		hs256(out, secret, sig);
	assert_true(strlen(out) + 1 + strlen(sig) < cap);
	strcat(out, ".");
	strcat(out, sig);
}

static void build(char *out, size_t cap, const char *header,
                  const char *payload, const char *secret)
{
	build_n(out, cap, header, payload, strlen(payload), secret);
}

/* Verify a validly signed HS256 token carrying `payload` at NOW. */
static enum auth_status verify_payload(const char *payload)
{
	char tok[16384];
	struct auth_identity id;
	build(tok, sizeof tok, HS256_HDR, payload, SECRET);
	return auth_verify(tok, SECRET, NOW, &id);
}

/* A valid payload with `extra` (",\"k\":v" or "") appended. */
static enum auth_status verify_with(const char *extra)
{
	char p[8192];
	snprintf(p, sizeof p,
	         "{\"sub\":\"bob\",\"role\":\"client\",\"exp\":%lld%s}",
	         (long long)NOW + 60, extra);
	return verify_payload(p);
}

static struct auth_identity counselor(void)
{
	struct auth_identity id = { 0 };
	id.role = ROLE_COUNSELOR;
	strcpy(id.sub, "alice.b@x-y_1");
	strcpy(id.name, "Alice B\xc3\xa9"); /* UTF-8 survives */
	strcpy(id.skills[0], "grief");
	strcpy(id.skills[1], "anxiety");
	strcpy(id.skills[2], "self_harm-2");
	id.nskills = 3;
	return id;
}

static void test_roundtrip(void **state)
{
	(void)state;
	struct auth_identity in = counselor(), out;
	char tok[PROTO_TOKEN_MAX + 1];
	assert_int_equal(auth_mint(&in, SECRET, NOW, 3600, tok, sizeof tok), 0);
	memset(&out, 0x5a, sizeof out);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &out), AUTH_OK);
	assert_int_equal(out.role, ROLE_COUNSELOR);
	assert_string_equal(out.sub, in.sub);
	assert_string_equal(out.name, in.name);
	assert_int_equal(out.nskills, 3);
	assert_string_equal(out.skills[0], "grief");
	assert_string_equal(out.skills[1], "anxiety");
	assert_string_equal(out.skills[2], "self_harm-2");
	assert_true(out.exp == NOW + 3600);
	/* valid until the last second before exp */
	assert_int_equal(auth_verify(tok, SECRET, NOW + 3599, &out), AUTH_OK);
	assert_int_equal(auth_verify(tok, SECRET, NOW + 3600, &out), AUTH_EXPIRED);
}

static void test_roundtrip_minimal(void **state)
{
	(void)state;
	struct auth_identity in = { .role = ROLE_OPERATOR }, out;
	strcpy(in.sub, "op");
	char tok[PROTO_TOKEN_MAX + 1];
	assert_int_equal(auth_mint(&in, SECRET, NOW, 60, tok, sizeof tok), 0);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &out), AUTH_OK);
	assert_int_equal(out.role, ROLE_OPERATOR);
	assert_string_equal(out.sub, "op");
	assert_string_equal(out.name, "");
	assert_int_equal(out.nskills, 0);

	/* the full skill list, and 64-byte sub and name */
	in.role = ROLE_CLIENT;
	memset(in.sub, 'S', PROTO_SUB_MAX);
	in.sub[PROTO_SUB_MAX] = '\0';
	memset(in.name, 'n', PROTO_NAME_MAX);
	in.name[PROTO_NAME_MAX] = '\0';
	for (int i = 0; i < AUTH_SKILLS_MAX; i++) {
		memset(in.skills[i], 'a' + i, PROTO_TOPIC_MAX);
		in.skills[i][PROTO_TOPIC_MAX] = '\0';
	}
	in.nskills = AUTH_SKILLS_MAX;
	assert_int_equal(auth_mint(&in, SECRET, NOW, 60, tok, sizeof tok), 0);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &out), AUTH_OK);
	assert_int_equal(out.role, ROLE_CLIENT);
	assert_string_equal(out.sub, in.sub);
	assert_string_equal(out.name, in.name);
	assert_int_equal(out.nskills, AUTH_SKILLS_MAX);
	assert_string_equal(out.skills[15], in.skills[15]);
}

static void test_mint_refuses(void **state)
{
	(void)state;
	char tok[PROTO_TOKEN_MAX + 1];
	struct auth_identity id = counselor();
	assert_int_equal(auth_mint(&id, "", NOW, 60, tok, sizeof tok), -1);
	assert_int_equal(auth_mint(&id, NULL, NOW, 60, tok, sizeof tok), -1);
	assert_int_equal(auth_mint(&id, SECRET, NOW, 0, tok, sizeof tok), -1);
	assert_int_equal(auth_mint(&id, SECRET, NOW, -5, tok, sizeof tok), -1);
	assert_int_equal(auth_mint(&id, SECRET, NOW, INT64_MAX, tok, sizeof tok), -1);

	id.role = ROLE_NONE;
	assert_int_equal(auth_mint(&id, SECRET, NOW, 60, tok, sizeof tok), -1);
	id = counselor();
	strcpy(id.sub, "alice smith");
	assert_int_equal(auth_mint(&id, SECRET, NOW, 60, tok, sizeof tok), -1);
	id.sub[0] = '\0';
	assert_int_equal(auth_mint(&id, SECRET, NOW, 60, tok, sizeof tok), -1);
	id = counselor();
	memset(id.sub, 'a', sizeof id.sub); /* not terminated */
	assert_int_equal(auth_mint(&id, SECRET, NOW, 60, tok, sizeof tok), -1);
	id = counselor();
	strcpy(id.skills[1], "Grief");
	assert_int_equal(auth_mint(&id, SECRET, NOW, 60, tok, sizeof tok), -1);
	id = counselor();
	id.nskills = AUTH_SKILLS_MAX + 1;
	assert_int_equal(auth_mint(&id, SECRET, NOW, 60, tok, sizeof tok), -1);
	id.nskills = -1;
	assert_int_equal(auth_mint(&id, SECRET, NOW, 60, tok, sizeof tok), -1);
	id = counselor();
	strcpy(id.name, "bad \xff utf-8");
	assert_int_equal(auth_mint(&id, SECRET, NOW, 60, tok, sizeof tok), -1);

	/* capacity: exactly enough works, one byte less does not */
	id = counselor();
	assert_int_equal(auth_mint(&id, SECRET, NOW, 60, tok, sizeof tok), 0);
	size_t need = strlen(tok) + 1;
	char small[PROTO_TOKEN_MAX + 1];
	assert_int_equal(auth_mint(&id, SECRET, NOW, 60, small, need), 0);
	assert_string_equal(small, tok);
	assert_int_equal(auth_mint(&id, SECRET, NOW, 60, small, need - 1), -1);
	assert_int_equal(auth_mint(&id, SECRET, NOW, 60, small, 0), -1);
}

static void test_expired(void **state)
{
	(void)state;
	char p[256];
	snprintf(p, sizeof p, "{\"sub\":\"bob\",\"role\":\"client\",\"exp\":%lld}",
	         (long long)NOW);
	assert_int_equal(verify_payload(p), AUTH_EXPIRED);
	snprintf(p, sizeof p, "{\"sub\":\"bob\",\"role\":\"client\",\"exp\":%lld}",
	         (long long)NOW - 1);
	assert_int_equal(verify_payload(p), AUTH_EXPIRED);
	assert_int_equal(verify_payload(
		"{\"sub\":\"bob\",\"role\":\"client\",\"exp\":0}"), AUTH_EXPIRED);
	assert_int_equal(verify_payload(
		"{\"sub\":\"bob\",\"role\":\"client\",\"exp\":-1}"), AUTH_EXPIRED);
	snprintf(p, sizeof p, "{\"sub\":\"bob\",\"role\":\"client\",\"exp\":%lld}",
	         (long long)NOW + 1);
	assert_int_equal(verify_payload(p), AUTH_OK);

	/* minted tokens expire too */
	struct auth_identity id = counselor(), out;
	char tok[PROTO_TOKEN_MAX + 1];
	assert_int_equal(auth_mint(&id, SECRET, NOW - 120, 60, tok, sizeof tok), 0);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &out), AUTH_EXPIRED);
}

static void test_nbf(void **state)
{
	(void)state;
	char extra[64];
	snprintf(extra, sizeof extra, ",\"nbf\":%lld", (long long)NOW + 1);
	assert_int_equal(verify_with(extra), AUTH_EXPIRED);
	snprintf(extra, sizeof extra, ",\"nbf\":%lld", (long long)NOW + 100000);
	assert_int_equal(verify_with(extra), AUTH_EXPIRED);
	snprintf(extra, sizeof extra, ",\"nbf\":%lld", (long long)NOW);
	assert_int_equal(verify_with(extra), AUTH_OK);
	snprintf(extra, sizeof extra, ",\"nbf\":%lld,\"iat\":%lld",
	         (long long)NOW - 10, (long long)NOW - 10);
	assert_int_equal(verify_with(extra), AUTH_OK);
	/* time claims must be integers */
	assert_int_equal(verify_with(",\"nbf\":\"0\""), AUTH_MALFORMED);
	assert_int_equal(verify_with(",\"nbf\":1.5"), AUTH_MALFORMED);
	assert_int_equal(verify_with(",\"iat\":\"yesterday\""), AUTH_MALFORMED);
}

static const char *valid_claims(void)
{
	static char p[256];
	snprintf(p, sizeof p,
	         "{\"sub\":\"mallory\",\"role\":\"operator\",\"exp\":%lld}",
	         (long long)NOW + 60);
	return p;
}

static void test_wrong_secret(void **state)
{
	(void)state;
	struct auth_identity id = counselor(), out;
	char tok[PROTO_TOKEN_MAX + 1];
	assert_int_equal(auth_mint(&id, SECRET, NOW, 60, tok, sizeof tok), 0);
	assert_int_equal(auth_verify(tok, "another secret", NOW, &out),
	                 AUTH_BAD_SIGNATURE);
	/* a prefix of the right secret is a different key */
	assert_int_equal(auth_verify(tok, "correct horse", NOW, &out),
	                 AUTH_BAD_SIGNATURE);
	/* no secret verifies nothing (libjwt would treat key length 0 as
	 * "no key"; auth never hands it one) */
	assert_int_equal(auth_verify(tok, "", NOW, &out), AUTH_BAD_SIGNATURE);
	assert_int_equal(auth_verify(tok, NULL, NOW, &out), AUTH_BAD_SIGNATURE);
	/* not even a token whose HMAC was made with the empty key */
	build(tok, sizeof tok, HS256_HDR, valid_claims(), "");
	assert_int_equal(auth_verify(tok, "", NOW, &out), AUTH_BAD_SIGNATURE);
	assert_int_equal(auth_verify(tok, NULL, NOW, &out), AUTH_BAD_SIGNATURE);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &out), AUTH_BAD_SIGNATURE);
	build(tok, sizeof tok, HS256_HDR, valid_claims(), SECRET);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &out), AUTH_OK);
}

static void test_alg_none(void **state)
{
	(void)state;
	struct auth_identity id;
	char pay[512], tok[1024];
	b64u_str(valid_claims(), pay);

	snprintf(tok, sizeof tok, "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.%s.", pay);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_UNSIGNED);
	assert_int_equal(id.role, ROLE_NONE);
	/* even with no secret configured */
	assert_int_equal(auth_verify(tok, "", NOW, &id), AUTH_UNSIGNED);
	assert_int_equal(auth_verify(tok, NULL, NOW, &id), AUTH_UNSIGNED);

	/* with a signature segment anyway, and other spellings */
	build(tok, sizeof tok, "{\"alg\":\"none\"}", valid_claims(), SECRET);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_UNSIGNED);
	build(tok, sizeof tok, "{\"alg\":\"None\",\"typ\":\"JWT\"}", valid_claims(),
	      NULL);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_UNSIGNED);
	build(tok, sizeof tok, "{\"alg\":\"\"}", valid_claims(), NULL);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_UNSIGNED);
}

static void test_other_algs(void **state)
{
	(void)state;
	struct auth_identity id;
	char tok[1024];
	/* all with a correct HS256 HMAC over the token, so only alg differs */
	static const char *const hdrs[] = {
		"{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
		"{\"alg\":\"HS384\",\"typ\":\"JWT\"}",
		"{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
		"{\"alg\":\"ES256\"}",
		/* libjwt reads alg case-insensitively; the RFC does not */
		"{\"alg\":\"hs256\",\"typ\":\"JWT\"}",
		"{\"alg\":\"HS256 \",\"typ\":\"JWT\"}",
		"{\"alg\":\"HS256\\u0000\",\"typ\":\"JWT\"}",
	};
	for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
		build(tok, sizeof tok, hdrs[i], valid_claims(), SECRET);
		if (i == 6) /* an embedded NUL is not a string we accept */
			assert_int_equal(auth_verify(tok, SECRET, NOW, &id),
			                 AUTH_MALFORMED);
		else
			assert_int_equal(auth_verify(tok, SECRET, NOW, &id),
			                 AUTH_UNSIGNED);
	}
	/* the same claims under the right header pass */
	build(tok, sizeof tok, HS256_HDR, valid_claims(), SECRET);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_OK);
	assert_int_equal(id.role, ROLE_OPERATOR);
	/* typ is optional */
	build(tok, sizeof tok, "{\"alg\":\"HS256\"}", valid_claims(), SECRET);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_OK);
	build(tok, sizeof tok, "{\"typ\":\"jwt\",\"alg\":\"HS256\",\"kid\":\"k1\"}",
	      valid_claims(), SECRET);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_OK);
}

static void test_tampered(void **state)
{
	(void)state;
	struct auth_identity id;
	char tok[1024], forged[2048], pay[512];
	char p[256];
	snprintf(p, sizeof p, "{\"sub\":\"bob\",\"role\":\"client\",\"exp\":%lld}",
	         (long long)NOW + 60);
	build(tok, sizeof tok, HS256_HDR, p, SECRET);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_OK);

	/* swap in a payload claiming operator, keep the signature */
	const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
	b64u_str(valid_claims(), pay);
	snprintf(forged, sizeof forged, "%.*s.%s%s", (int)(d1 - tok), tok, pay, d2);
	assert_int_equal(auth_verify(forged, SECRET, NOW, &id), AUTH_BAD_SIGNATURE);
	assert_int_equal(id.role, ROLE_NONE);

	/* one signature character changed */
	strcpy(forged, tok);
	char *last = forged + strlen(forged) - 2;
	*last = *last == 'A' ? 'B' : 'A';
	assert_int_equal(auth_verify(forged, SECRET, NOW, &id), AUTH_BAD_SIGNATURE);
	/* signature truncated, extended, or gone */
	strcpy(forged, tok);
	forged[strlen(forged) - 1] = '\0';
	assert_int_equal(auth_verify(forged, SECRET, NOW, &id), AUTH_BAD_SIGNATURE);
	snprintf(forged, sizeof forged, "%sAAAA", tok);
	assert_int_equal(auth_verify(forged, SECRET, NOW, &id), AUTH_BAD_SIGNATURE);
	snprintf(forged, sizeof forged, "%.*s", (int)(d2 - tok + 1), tok);
	assert_int_equal(auth_verify(forged, SECRET, NOW, &id), AUTH_BAD_SIGNATURE);
	/* signed, but with another key */
	build(forged, sizeof forged, HS256_HDR, p, "another secret");
	assert_int_equal(auth_verify(forged, SECRET, NOW, &id), AUTH_BAD_SIGNATURE);
}

static void test_malformed_structure(void **state)
{
	(void)state;
	struct auth_identity id;
	char tok[2048], h[512], p[512];
	b64u_str(HS256_HDR, h);
	b64u_str(valid_claims(), p);

	static const char *const junk[] = {
		"", "garbage", "a.b", ".", "..", "...",
		"eyJhbGciOiJIUzI1NiJ9",
		"eyJhbGciOiJIUzI1NiJ9.",
	};
	for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
		assert_int_equal(auth_verify(junk[i], SECRET, NOW, &id),
		                 AUTH_MALFORMED);
	assert_int_equal(auth_verify(NULL, SECRET, NOW, &id), AUTH_MALFORMED);

	/* two segments; four segments */
	snprintf(tok, sizeof tok, "%s.%s", h, p);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);
	build(tok, sizeof tok, HS256_HDR, valid_claims(), SECRET);
	strcat(tok, ".x");
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);
	/* empty header or payload */
	snprintf(tok, sizeof tok, ".%s.sig", p);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);
	snprintf(tok, sizeof tok, "%s..sig", h);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);

	/* bad base64 in each segment: padding, the +/ alphabet, a 4k+1 length */
	snprintf(tok, sizeof tok, "%s==.%s.sig", h, p);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);
	snprintf(tok, sizeof tok, "eyJh+GciOiJIUzI1NiJ9.%s.sig", p);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);
	snprintf(tok, sizeof tok, "%sA.%s.sig", h, p);
	assert_int_equal(strlen(h) % 4, 0);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);
	snprintf(tok, sizeof tok, "%s.%s!.sig", h, p);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);
	snprintf(tok, sizeof tok, "%s.%s.s/g+", h, p);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);
	snprintf(tok, sizeof tok, "%s.%s.sig=", h, p);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);

	/* headers that are not a JWS header (all validly signed) */
	static const char *const hdrs[] = {
		"hello",                       /* not JSON */
		"{\"alg\":\"HS256\"",          /* truncated */
		"[\"HS256\"]",                 /* not an object */
		"\"HS256\"",
		"{}",                          /* no alg */
		"{\"typ\":\"JWT\"}",
		"{\"alg\":256}",               /* alg not a string */
		"{\"alg\":null}",
		"{\"alg\":\"HS256\",\"typ\":\"JOSE\"}",
		"{\"alg\":\"HS256\",\"typ\":1}",
		"{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}",
		"{\"alg\":\"none\",\"alg\":\"HS256\"}", /* duplicate keys */
		"{\"alg\":\"HS256\"}garbage",
	};
	for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
		build(tok, sizeof tok, hdrs[i], valid_claims(), SECRET);
		assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);
	}
	/* a NUL inside the header's bytes */
	char hb[64], hdr_nul[] = "{\"alg\":\"HS256\"}\0x";
	b64u(hdr_nul, sizeof hdr_nul - 1, hb);
	char sig[64];
	snprintf(tok, sizeof tok, "%s.%s", hb, p);
	hs256(tok, SECRET, sig);
	strcat(tok, ".");
	strcat(tok, sig);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);
}

static void test_payload_not_claims(void **state)
{
	(void)state;
	/* validly signed, but the payload is no claims object */
	assert_int_equal(verify_payload("not json"), AUTH_MALFORMED);
	assert_int_equal(verify_payload("[1,2]"), AUTH_MALFORMED);
	assert_int_equal(verify_payload("\"sub\""), AUTH_MALFORMED);
	assert_int_equal(verify_payload("42"), AUTH_MALFORMED);
	assert_int_equal(verify_payload("{\"sub\":\"bob\""), AUTH_MALFORMED);
	assert_int_equal(verify_payload("{}"), AUTH_MALFORMED);
	/* exp too big for a JSON integer */
	assert_int_equal(verify_payload("{\"sub\":\"bob\",\"role\":\"client\","
	                                "\"exp\":99999999999999999999999}"),
	                 AUTH_MALFORMED);
	/* a large but representable exp is fine */
	assert_int_equal(verify_payload("{\"sub\":\"bob\",\"role\":\"client\","
	                                "\"exp\":9223372036854775807}"),
	                 AUTH_OK);
}

static void test_bad_claims(void **state)
{
	(void)state;
	char p[1024];
	long long exp = (long long)NOW + 60;

	/* sub */
	snprintf(p, sizeof p, "{\"role\":\"client\",\"exp\":%lld}", exp);
	assert_int_equal(verify_payload(p), AUTH_MALFORMED);
	static const char *const subs[] = {
		"\"\"", "\"a b\"", "\"caf\\u00e9\"", "\"a/b\"", "42", "null",
		"[\"bob\"]", "\"bob\\u0000x\"",
	};
	for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
		snprintf(p, sizeof p, "{\"sub\":%s,\"role\":\"client\",\"exp\":%lld}",
		         subs[i], exp);
		assert_int_equal(verify_payload(p), AUTH_MALFORMED);
	}
	/* 64 characters fit, 65 do not */
	char sub[PROTO_SUB_MAX + 2];
	memset(sub, 'x', sizeof sub - 1);
	sub[sizeof sub - 1] = '\0';
	snprintf(p, sizeof p, "{\"sub\":\"%s\",\"role\":\"client\",\"exp\":%lld}",
	         sub, exp);
	assert_int_equal(verify_payload(p), AUTH_MALFORMED);
	snprintf(p, sizeof p, "{\"sub\":\"%.*s\",\"role\":\"client\",\"exp\":%lld}",
	         PROTO_SUB_MAX, sub, exp);
	assert_int_equal(verify_payload(p), AUTH_OK);

	/* role */
	snprintf(p, sizeof p, "{\"sub\":\"bob\",\"exp\":%lld}", exp);
	assert_int_equal(verify_payload(p), AUTH_MALFORMED);
	static const char *const roles[] = {
		"\"admin\"", "\"Client\"", "\"\"", "1", "null", "[\"client\"]",
	};
	for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
		snprintf(p, sizeof p, "{\"sub\":\"bob\",\"role\":%s,\"exp\":%lld}",
		         roles[i], exp);
		assert_int_equal(verify_payload(p), AUTH_MALFORMED);
	}

	/* exp */
	assert_int_equal(verify_payload("{\"sub\":\"bob\",\"role\":\"client\"}"),
	                 AUTH_MALFORMED);
	static const char *const exps[] = {
		"\"9999999999\"", "9999999999.0", "1e10", "true", "null",
	};
	for (size_t i = 0; i < sizeof exps / sizeof exps[0]; i++) {
		snprintf(p, sizeof p, "{\"sub\":\"bob\",\"role\":\"client\",\"exp\":%s}",
		         exps[i]);
		assert_int_equal(verify_payload(p), AUTH_MALFORMED);
	}
	/* a malformed claim wins over an expired one */
	assert_int_equal(verify_payload(
		"{\"sub\":\"b b\",\"role\":\"client\",\"exp\":1}"), AUTH_MALFORMED);
}

static void test_name_and_skills(void **state)
{
	(void)state;
	char extra[2048], name[PROTO_NAME_MAX + 2];
	memset(name, 'n', sizeof name - 1);
	name[sizeof name - 1] = '\0';

	/* name: at most 64 bytes (bytes, not characters), string only */
	snprintf(extra, sizeof extra, ",\"name\":\"%s\"", name);
	assert_int_equal(verify_with(extra), AUTH_MALFORMED);
	snprintf(extra, sizeof extra, ",\"name\":\"%.*s\"", PROTO_NAME_MAX, name);
	assert_int_equal(verify_with(extra), AUTH_OK);
	/* 32 two-byte characters is 64 bytes: fine; 33 is not */
	strcpy(extra, ",\"name\":\"");
	for (int i = 0; i < 32; i++)
		strcat(extra, "\xc3\xa9");
	strcat(extra, "\"");
	assert_int_equal(verify_with(extra), AUTH_OK);
	extra[strlen(extra) - 1] = '\0';
	strcat(extra, "\xc3\xa9\"");
	assert_int_equal(verify_with(extra), AUTH_MALFORMED);
	assert_int_equal(verify_with(",\"name\":\"\""), AUTH_OK);
	assert_int_equal(verify_with(",\"name\":7"), AUTH_MALFORMED);
	assert_int_equal(verify_with(",\"name\":null"), AUTH_MALFORMED);
	assert_int_equal(verify_with(",\"name\":\"a\\u0000b\""), AUTH_MALFORMED);

	/* skills: an array of 0..16 topics */
	assert_int_equal(verify_with(",\"skills\":[]"), AUTH_OK);
	assert_int_equal(verify_with(",\"skills\":[\"grief\",\"a-b_9\"]"), AUTH_OK);
	static const char *const bad[] = {
		",\"skills\":\"grief\"",
		",\"skills\":{\"grief\":1}",
		",\"skills\":[\"Grief\"]",
		",\"skills\":[\"\"]",
		",\"skills\":[\"grief anxiety\"]",
		",\"skills\":[\"grief\",3]",
		",\"skills\":[[\"grief\"]]",
		",\"skills\":null",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(verify_with(bad[i]), AUTH_MALFORMED);
	/* a topic is at most 32 characters */
	char topic[PROTO_TOPIC_MAX + 2];
	memset(topic, 't', sizeof topic - 1);
	topic[sizeof topic - 1] = '\0';
	snprintf(extra, sizeof extra, ",\"skills\":[\"%s\"]", topic);
	assert_int_equal(verify_with(extra), AUTH_MALFORMED);
	snprintf(extra, sizeof extra, ",\"skills\":[\"%.*s\"]", PROTO_TOPIC_MAX,
	         topic);
	assert_int_equal(verify_with(extra), AUTH_OK);

	/* 16 skills fit, 17 do not */
	strcpy(extra, ",\"skills\":[\"s0\"");
	for (int i = 1; i < AUTH_SKILLS_MAX; i++)
		sprintf(extra + strlen(extra), ",\"s%d\"", i);
	strcat(extra, "]");
	assert_int_equal(verify_with(extra), AUTH_OK);
	extra[strlen(extra) - 1] = '\0';
	strcat(extra, ",\"s16\"]");
	assert_int_equal(verify_with(extra), AUTH_MALFORMED);

	/* unknown claims are ignored */
	assert_int_equal(verify_with(",\"aud\":\"x\",\"jti\":[1,{}]"), AUTH_OK);
}

/* A validly signed token of exactly `len` bytes, padded with an extra
 * claim. Returns 0 if no padding gives that length. */
static int token_of_len(char *tok, size_t cap, size_t len)
{
	static char p[8192];
	for (size_t pad = 0; pad < 4000; pad++) {
		int n = snprintf(p, sizeof p,
		                 "{\"sub\":\"bob\",\"role\":\"client\",\"exp\":%lld,"
		                 "\"pad\":\"%*s\"}", (long long)NOW + 60, (int)pad, "");
		assert_true(n > 0 && (size_t)n < sizeof p);
		build(tok, cap, HS256_HDR, p, SECRET);
		if (strlen(tok) == len)
			return 1;
		if (strlen(tok) > len)
			return 0;
	}
	return 0;
}

static void test_length_bound(void **state)
{
	(void)state;
	struct auth_identity id;
	static char tok[PROTO_TOKEN_MAX * 2];
	assert_true(token_of_len(tok, sizeof tok, PROTO_TOKEN_MAX));
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_OK);
	assert_true(token_of_len(tok, sizeof tok, PROTO_TOKEN_MAX + 1));
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);
	/* far longer, and not even a token */
	memset(tok, 'A', sizeof tok - 1);
	tok[sizeof tok - 1] = '\0';
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_MALFORMED);
}

static void test_failure_zeroes_identity(void **state)
{
	(void)state;
	struct auth_identity id, zero = { 0 };
	char p[256], tok[1024];
	/* valid except for an nbf in the future: claims were read, then refused */
	snprintf(p, sizeof p,
	         "{\"sub\":\"bob\",\"role\":\"counselor\",\"name\":\"Bob\","
	         "\"skills\":[\"grief\"],\"exp\":%lld,\"nbf\":%lld}",
	         (long long)NOW + 60, (long long)NOW + 30);
	build(tok, sizeof tok, HS256_HDR, p, SECRET);
	memset(&id, 0x5a, sizeof id);
	assert_int_equal(auth_verify(tok, SECRET, NOW, &id), AUTH_EXPIRED);
	assert_memory_equal(&id, &zero, sizeof id);
	memset(&id, 0x5a, sizeof id);
	assert_int_equal(auth_verify("x", SECRET, NOW, &id), AUTH_MALFORMED);
	assert_memory_equal(&id, &zero, sizeof id);
	assert_int_equal(auth_verify(tok, SECRET, NOW + 30, &id), AUTH_OK);
	assert_string_equal(id.skills[0], "grief");
}

static void test_status_codes(void **state)
{
	(void)state;
	assert_null(auth_status_code(AUTH_OK));
	assert_string_equal(auth_status_code(AUTH_MALFORMED), "token_malformed");
	assert_string_equal(auth_status_code(AUTH_UNSIGNED), "token_unsigned");
	assert_string_equal(auth_status_code(AUTH_BAD_SIGNATURE),
	                    "token_bad_signature");
	assert_string_equal(auth_status_code(AUTH_EXPIRED), "token_expired");
	assert_null(auth_status_code((enum auth_status)99));
}

static void test_b64url(void **state)
{
	(void)state;
	unsigned char in[64], out[64];
	char enc[128], ref[128];
	for (size_t i = 0; i < sizeof in; i++)
		in[i] = (unsigned char)(i * 37 + 0xf0);
	for (size_t n = 0; n <= sizeof in; n++) {
		size_t len = b64url_encode(in, n, enc);
		b64u(in, n, ref);
		assert_string_equal(enc, ref);
		assert_int_equal(b64url_decode(enc, len, out, sizeof out), (long)n);
		assert_memory_equal(in, out, n);
		/* one byte too little room */
		if (n > 0)
			assert_int_equal(b64url_decode(enc, len, out, n - 1), -1);
	}
	assert_int_equal(b64url_decode("AAAAA", 5, out, sizeof out), -1);
	assert_int_equal(b64url_decode("AA=A", 4, out, sizeof out), -1);
	assert_int_equal(b64url_decode("A+AA", 4, out, sizeof out), -1);
	assert_int_equal(b64url_decode("A.AA", 4, out, sizeof out), -1);
}

static void test_charsets(void **state)
{
	(void)state;
	assert_true(sub_ok("Alice.B@example-org_1"));
	assert_false(sub_ok(""));
	assert_false(sub_ok("a:b"));
	assert_true(topic_ok("grief"));
	assert_false(topic_ok("Grief"));
	assert_false(topic_ok("a.b"));
	assert_false(topic_ok("a@b"));
	assert_int_equal(role_parse("counselor"), ROLE_COUNSELOR);
	assert_int_equal(role_parse("COUNSELOR"), ROLE_NONE);
	assert_string_equal(role_name(ROLE_OPERATOR), "operator");
	assert_null(role_name(ROLE_NONE));
}

/* A pseudonym is stable per person and secret, differs between people and
 * between services, and never contains the sub. */
static void test_pseudonym(void **state)
{
	(void)state;
	char a[AUTH_PSEUDONYM_LEN + 1], b[AUTH_PSEUDONYM_LEN + 1], c[AUTH_PSEUDONYM_LEN + 1];
	auth_pseudonym("person-1", "secret one", a);
	auth_pseudonym("person-1", "secret one", b);
	assert_string_equal(a, b);
	assert_int_equal(strlen(a), AUTH_PSEUDONYM_LEN);
	assert_int_equal(strspn(a, "0123456789abcdef"), AUTH_PSEUDONYM_LEN);
	auth_pseudonym("person-2", "secret one", c);
	assert_string_not_equal(a, c);
	auth_pseudonym("person-1", "secret two", c);
	assert_string_not_equal(a, c);
	assert_null(strstr(a, "person"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pseudonym),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_roundtrip_minimal),
		cmocka_unit_test(test_mint_refuses),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_nbf),
		cmocka_unit_test(test_wrong_secret),
		cmocka_unit_test(test_alg_none),
		cmocka_unit_test(test_other_algs),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_malformed_structure),
		cmocka_unit_test(test_payload_not_claims),
		cmocka_unit_test(test_bad_claims),
		cmocka_unit_test(test_name_and_skills),
		cmocka_unit_test(test_length_bound),
		cmocka_unit_test(test_failure_zeroes_identity),
		cmocka_unit_test(test_status_codes),
		cmocka_unit_test(test_b64url),
		cmocka_unit_test(test_charsets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
