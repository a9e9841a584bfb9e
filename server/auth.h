/* auth.h - who is who: verify and mint the HS256 JWTs earshot uses.
 *
 * Pure apart from libjwt; time is passed in (`now`, Unix seconds) so the
 * checks are testable. libjwt 1.10 checks neither exp/nbf nor that the
 * algorithm is the one we expect: both are checked here. */
#ifndef EARSHOT_AUTH_H
#define EARSHOT_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include "../proto/proto.h"

#define AUTH_SKILLS_MAX 16

enum auth_status {
	AUTH_OK = 0,
	AUTH_MALFORMED,      /* "token_malformed": not a JWT, bad JSON, missing/invalid claim */
	AUTH_UNSIGNED,       /* "token_unsigned": alg none, or any alg but HS256 */
	AUTH_BAD_SIGNATURE,  /* "token_bad_signature" */
	AUTH_EXPIRED,        /* "token_expired": exp <= now, or nbf > now */
};

struct auth_identity {
	enum proto_role role;
	char sub[PROTO_SUB_MAX + 1];
	char name[PROTO_NAME_MAX + 1];             /* "" if absent */
	char skills[AUTH_SKILLS_MAX][PROTO_TOPIC_MAX + 1];
	int nskills;
	int64_t exp;
};

/* Verify `token` with `secret` at time `now`. On AUTH_OK fills `id`; on
 * any other status `id` is all zeroes. A role claim that is not
 * client/counselor/operator is AUTH_MALFORMED; whether the role fits what
 * was asked is the caller's check (token_wrong_role).
 * `secret` is raw bytes up to its NUL; an empty or NULL secret verifies
 * nothing (AUTH_BAD_SIGNATURE for every signed token). */
enum auth_status auth_verify(const char *token, const char *secret,
                             int64_t now, struct auth_identity *id);

/* The wire error code for a status ("token_expired", ...); NULL for OK. */
const char *auth_status_code(enum auth_status s);

/* Mint a token for `id` valid from `now` for `ttl_s` seconds into `out`
 * (capacity `cap`). `id->exp` is ignored; `name` and `skills` are left out
 * when empty. Returns 0, or -1 (invalid identity, ttl_s <= 0, empty
 * secret, or it does not fit in `cap` or PROTO_TOKEN_MAX). */
int auth_mint(const struct auth_identity *id, const char *secret,
              int64_t now, int64_t ttl_s, char *out, size_t cap);

/* A person's pseudonym for what must outlive a connection (whom they
 * talked with last): 32 hex digits of HMAC-SHA256(secret, label || sub),
 * so that the store never holds their id and the same person always
 * gets the same one. "" if it cannot be computed. */
#define AUTH_PSEUDONYM_LEN 32
void auth_pseudonym(const char *sub, const char *secret, char out[AUTH_PSEUDONYM_LEN + 1]);

#endif
