/* proto.c - the earshot v1 codec: one table of fields per message type,
 * read by both the decoder (JSON -> struct proto_msg) and the encoder.
 *
 * Both directions walk the same table and run the same value checks, so
 * anything the encoder emits the decoder accepts and decodes to the same
 * struct: a message that would not survive that round trip is refused by
 * the encoder instead of being sent. jansson allocates the parse tree and
 * the tree being built; both are freed before returning. */
#include "proto.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <ctype.h>
#include <string.h>

/* ---- spelling tables ---------------------------------------------------- */

static const char *const role_names[] = {
	[ROLE_CLIENT] = "client", [ROLE_COUNSELOR] = "counselor",
	[ROLE_OPERATOR] = "operator", [ROLE_NODE] = "node",
};

static const char *const mode_names[] = {
	[MODE_TEXT] = "text", [MODE_VOICE] = "voice",
};

static const char *const state_names[] = {
	[ST_OFFLINE] = "offline", [ST_AVAILABLE] = "available",
	[ST_RINGING] = "ringing", [ST_BUSY] = "busy", [ST_WRAPUP] = "wrapup",
	[ST_AWAY] = "away", [ST_IDLE] = "idle", [ST_WAITING] = "waiting",
	[ST_IN_SESSION] = "in_session", [ST_ENDED] = "ended",
	[ST_WATCHING] = "watching",
};

/* Index 0 of every table is the NONE value, never spelled. The casts to
 * unsigned make out-of-range (even negative) enum values miss the table. */
static const char *table_name(const char *const *t, size_t n, unsigned v)
{
	return v > 0 && v < n ? t[v] : NULL;
}

static unsigned table_parse(const char *const *t, size_t n, const char *s)
{
	if (s == NULL)
		return 0;
	for (size_t i = 1; i < n; i++)
		if (t[i] != NULL && strcmp(t[i], s) == 0)
			return (unsigned)i;
	return 0;
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *proto_role_name(enum proto_role r)
{
	return table_name(role_names, NELEM(role_names), (unsigned)r);
}

enum proto_role proto_role_parse(const char *s)
{
	return (enum proto_role)table_parse(role_names, NELEM(role_names), s);
}

const char *proto_mode_name(enum proto_mode m)
{
	return table_name(mode_names, NELEM(mode_names), (unsigned)m);
}

enum proto_mode proto_mode_parse(const char *s)
{
	return (enum proto_mode)table_parse(mode_names, NELEM(mode_names), s);
}

const char *proto_state_name(enum proto_state s)
{
	return table_name(state_names, NELEM(state_names), (unsigned)s);
}

enum proto_state proto_state_parse(const char *s)
{
	return (enum proto_state)table_parse(state_names, NELEM(state_names), s);
}

/* ---- character sets ----------------------------------------------------- */

static int topic_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static int sub_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '@' ||
	       c == '-';
}

static int charset_valid(const char *s, size_t max, int (*ok)(unsigned char))
{
	if (s == NULL || s[0] == '\0')
		return 0;
	size_t i;
	for (i = 0; s[i] != '\0'; i++)
		if (i >= max || !ok((unsigned char)s[i]))
			return 0;
	return 1;
}

int proto_topic_valid(const char *s)
{
	return charset_valid(s, PROTO_TOPIC_MAX, topic_char);
}

int proto_sub_valid(const char *s)
{
	return charset_valid(s, PROTO_SUB_MAX, sub_char);
}

/* ---- the message table -------------------------------------------------- */

enum field_kind {
	K_U32,      /* uint32_t, JSON integer in [lo, hi] */
	K_I64,      /* int64_t, JSON integer in [lo, hi] */
	K_INT,      /* int, JSON integer in [lo, hi] */
	K_BOOL,     /* int 0/1, JSON true/false */
	K_ROLE,     /* enum proto_role, any but NONE */
	K_MODE,     /* enum proto_mode, any but NONE */
	K_STATE,    /* enum proto_state, any but NONE */
	K_SETSTATE, /* enum proto_state, only available or away */
	K_STR,      /* char[hi + 1], lo..hi bytes */
	K_TOPIC,    /* char[], proto_topic_valid */
	K_SUB,      /* char[], proto_sub_valid */
};

#define F_REQ 0x1    /* required; optional ones take `dflt` / "" when absent */
#define F_BIG 0x2    /* too long is "too_large" (text, comment, token) */
#define F_WRAPUP 0x4 /* only exists while `state` is wrapup (state.wrapup_s) */
#define F_RESUMED 0x8 /* only written with `resumed` (session_start after a resume) */

struct field {
	const char *name;     /* on the wire */
	enum field_kind kind;
	unsigned flags;
	size_t off;           /* into struct proto_msg */
	int64_t lo, hi;       /* integer range, or string length range */
	int64_t dflt;         /* optional integers: the value meaning "absent" */
};

#define OFF(m) offsetof(struct proto_msg, m)
#define STRMAX(m) ((int64_t)sizeof(((struct proto_msg *)0)->m) - 1)

#define U32(n, m, lo) { n, K_U32, F_REQ, OFF(m), lo, UINT32_MAX, 0 }
#define I64(n, m, lo) { n, K_I64, F_REQ, OFF(m), lo, INT64_MAX, 0 }
#define STR(n, m, lo, fl) { n, K_STR, fl, OFF(m), lo, STRMAX(m), 0 }
#define ENUM(n, m, k) { n, k, F_REQ, OFF(m), 0, 0, 0 }
#define TOPIC { "topic", K_TOPIC, F_REQ, OFF(topic), 1, PROTO_TOPIC_MAX, 0 }
#define OFFER_ID I64("offer_id", offer_id, 1)
#define SEQ I64("seq", seq, 1)
#define REASON STR("reason", reason, 1, F_REQ)
#define REASON_OPT STR("reason", reason, 0, 0)

/* Optional, false when absent (and then not written). */
#define FLAG(n, m) { n, K_BOOL, 0, OFF(m), 0, 1, 0 }

static const struct field f_hello[] = {
	ENUM("role", role, K_ROLE), STR("token", token, 0, F_BIG),
	STR("resume", resume, 0, 0),
};
static const struct field f_welcome[] = {
	ENUM("role", role, K_ROLE),
	{ "sub", K_SUB, F_REQ, OFF(sub), 1, PROTO_SUB_MAX, 0 },
	STR("name", name, 0, F_REQ), ENUM("state", state, K_STATE),
	U32("slot_s", slot_s, 0), U32("ring_s", ring_s, 0),
	U32("version", version, 0), STR("crisis_question", question, 0, 0),
	STR("resume_token", resume, 0, 0), FLAG("resumed", resumed),
	{ "grace_s", K_U32, 0, OFF(grace_s), 1, UINT32_MAX, 0 },
};
static const struct field f_error[] = {
	STR("code", code, 1, F_REQ), REASON_OPT, STR("ref", ref, 0, 0),
};
static const struct field f_reason[] = { REASON };
#define CRISIS FLAG("crisis", crisis)
static const struct field f_talk_now[] = {
	TOPIC, ENUM("mode", mode, K_MODE), CRISIS, FLAG("previous", previous),
};
static const struct field f_queue[] = {
	U32("position", position, 1), U32("wait_s", wait_s, 0),
	U32("counselors", counselors, 0), STR("waiting_for", waiting_for, 0, 0),
};
static const struct field f_rate[] = {
	{ "score", K_INT, F_REQ, OFF(score), 1, 5, 0 },
	STR("comment", comment, 0, F_BIG),
};
static const struct field f_set_state[] = { ENUM("state", state, K_SETSTATE) };
/* wrapup_s after state: the decoder needs the state to know it applies. */
static const struct field f_state[] = {
	ENUM("state", state, K_STATE), REASON_OPT,
	{ "wrapup_s", K_U32, F_REQ | F_WRAPUP, OFF(wrapup_s), 0, UINT32_MAX, 0 },
	{ "break_s", K_U32, 0, OFF(break_s), 1, UINT32_MAX, 0 },
};
static const struct field f_take_break[] = {
	{ "minutes", K_INT, F_REQ, OFF(minutes), 1, 120, 0 },
};
static const struct field f_offer[] = {
	OFFER_ID, TOPIC, ENUM("mode", mode, K_MODE),
	U32("waited_s", waited_s, 0), U32("ring_s", ring_s, 0), CRISIS,
	FLAG("talked_before", talked_before),
};
static const struct field f_offer_id[] = { OFFER_ID };
static const struct field f_offer_gone[] = { OFFER_ID, REASON };
static const struct field f_session_start[] = {
	STR("session_id", session_id, 1, F_REQ), ENUM("mode", mode, K_MODE),
	TOPIC, U32("slot_s", slot_s, 0), U32("remaining_s", remaining_s, 0),
	STR("peer", name, 0, F_REQ),
	STR("srtp_profile", srtp_profile, 0, 0),
	STR("tx_key", tx_key, 0, 0), STR("rx_key", rx_key, 0, 0),
	FLAG("resumed", resumed),
	{ "last_id", K_I64, F_RESUMED, OFF(last_id), 0, INT64_MAX, -1 },
	{ "acked", K_I64, F_RESUMED, OFF(acked), 1, INT64_MAX, 0 },
};
/* One shape for both directions: a peer sends `id`, the server relays with
 * `seq`; each is optional and "absent" is a value outside its range. */
static const struct field f_msg[] = {
	{ "id", K_I64, 0, OFF(id), 0, INT64_MAX, -1 },
	{ "seq", K_I64, 0, OFF(seq), 1, INT64_MAX, 0 },
	STR("text", text, 1, F_REQ | F_BIG),
};
static const struct field f_sent[] = { I64("id", id, 0), SEQ };
static const struct field f_seq[] = { SEQ };
static const struct field f_typing[] = {
	{ "on", K_BOOL, F_REQ, OFF(on), 0, 1, 0 },
};
static const struct field f_slot_warning[] = { U32("remaining_s", remaining_s, 0) };
static const struct field f_slot_over[] = { U32("grace_s", grace_s, 0) };
static const struct field f_peer_lost[] = { U32("grace_s", grace_s, 1) };
static const struct field f_audio[] = {
	STR("who", who, 1, F_REQ), STR("state", audio, 1, F_REQ),
};
static const struct field f_link[] = {
	STR("you", link_you, 1, F_REQ), STR("peer", link_peer, 1, F_REQ),
	U32("loss_pct", loss_pct, 0), U32("jitter_ms", jitter_ms, 0),
};
/* C->S: no fields; S->C: who flagged it, and the referral (to the client). */
static const struct field f_crisis[] = {
	STR("by", who, 0, 0), STR("referral", referral, 0, 0),
};
static const struct field f_session_end[] = {
	STR("session_id", session_id, 1, F_REQ), REASON,
	STR("referral", referral, 0, 0),
};

struct type_spec {
	const char *name;
	const struct field *fields;
	size_t nfields;
};

#define T(n, f) { n, f, NELEM(f) }
#define T0(n) { n, NULL, 0 }

/* PT_STATS and PT_RATINGS have no flat fields: their nested shapes have
 * their own code below. */
static const struct type_spec types[PT__COUNT] = {
	[PT_HELLO] = T("hello", f_hello),
	[PT_WELCOME] = T("welcome", f_welcome),
	[PT_ERROR] = T("error", f_error),
	[PT_GOING_AWAY] = T("going_away", f_reason),
	[PT_TALK_NOW] = T("talk_now", f_talk_now),
	[PT_CANCEL] = T0("cancel"),
	[PT_QUEUE] = T("queue", f_queue),
	[PT_CANCELLED] = T("cancelled", f_reason),
	[PT_RATE] = T("rate", f_rate),
	[PT_RATED] = T0("rated"),
	[PT_SET_STATE] = T("set_state", f_set_state),
	[PT_STATE] = T("state", f_state),
	[PT_OFFER] = T("offer", f_offer),
	[PT_ACCEPT] = T("accept", f_offer_id),
	[PT_DECLINE] = T("decline", f_offer_id),
	[PT_OFFER_GONE] = T("offer_gone", f_offer_gone),
	[PT_TAKE_BREAK] = T("take_break", f_take_break),
	[PT_SESSION_START] = T("session_start", f_session_start),
	[PT_MSG] = T("msg", f_msg),
	[PT_SENT] = T("sent", f_sent),
	[PT_ACK] = T("ack", f_seq),
	[PT_DELIVERED] = T("delivered", f_seq),
	[PT_TYPING] = T("typing", f_typing),
	[PT_SLOT_WARNING] = T("slot_warning", f_slot_warning),
	[PT_SLOT_OVER] = T("slot_over", f_slot_over),
	[PT_END] = T0("end"),
	[PT_SESSION_END] = T("session_end", f_session_end),
	[PT_CRISIS] = T("crisis", f_crisis),
	[PT_SUBSCRIBE] = T0("subscribe"),
	[PT_STATS] = T0("stats"),
	[PT_MUTE] = T("mute", f_typing),
	[PT_PEER_MUTE] = T("peer_mute", f_typing),
	[PT_AUDIO] = T("audio", f_audio),
	[PT_LINK] = T("link", f_link),
	[PT_PEER_LOST] = T("peer_lost", f_peer_lost),
	[PT_PEER_BACK] = T0("peer_back"),
	[PT_RATINGS] = T0("ratings"),
};

const char *proto_type_name(enum proto_type t)
{
	return (unsigned)t > PT_NONE && (unsigned)t < PT__COUNT ? types[t].name : NULL;
}

enum proto_type proto_type_parse(const char *s)
{
	if (s == NULL)
		return PT_NONE;
	for (unsigned t = PT_NONE + 1; t < PT__COUNT; t++)
		if (strcmp(types[t].name, s) == 0)
			return (enum proto_type)t;
	return PT_NONE;
}

/* ---- field values: access and checks shared by both directions ---------- */

static int is_int_kind(enum field_kind k)
{
	return k == K_U32 || k == K_I64 || k == K_INT || k == K_BOOL;
}

static int64_t int_load(const struct field *f, const struct proto_msg *m)
{
	const char *p = (const char *)m + f->off;
	switch (f->kind) {
	case K_U32: return *(const uint32_t *)p;
	case K_I64: return *(const int64_t *)p;
	default: return *(const int *)p;  /* K_INT, K_BOOL */
	}
}

/* Only called with a value already checked against [lo, hi] (or dflt), so
 * the narrowing casts cannot lose anything. */
static void int_store(const struct field *f, struct proto_msg *m, int64_t v)
{
	char *p = (char *)m + f->off;
	switch (f->kind) {
	case K_U32: *(uint32_t *)p = (uint32_t)v; break;
	case K_I64: *(int64_t *)p = v; break;
	default: *(int *)p = (int)v; break;
	}
}

static unsigned enum_load(const struct field *f, const struct proto_msg *m)
{
	const char *p = (const char *)m + f->off;
	switch (f->kind) {
	case K_ROLE: return (unsigned)*(const enum proto_role *)p;
	case K_MODE: return (unsigned)*(const enum proto_mode *)p;
	default: return (unsigned)*(const enum proto_state *)p;
	}
}

static void enum_store(const struct field *f, struct proto_msg *m, unsigned v)
{
	char *p = (char *)m + f->off;
	switch (f->kind) {
	case K_ROLE: *(enum proto_role *)p = (enum proto_role)v; break;
	case K_MODE: *(enum proto_mode *)p = (enum proto_mode)v; break;
	default: *(enum proto_state *)p = (enum proto_state)v; break;
	}
}

static const char *enum_name(const struct field *f, unsigned v)
{
	switch (f->kind) {
	case K_ROLE: return proto_role_name((enum proto_role)v);
	case K_MODE: return proto_mode_name((enum proto_mode)v);
	case K_SETSTATE:
		return v == ST_AVAILABLE || v == ST_AWAY ?
		       proto_state_name((enum proto_state)v) : NULL;
	default: return proto_state_name((enum proto_state)v);
	}
}

static unsigned enum_parse(const struct field *f, const char *s)
{
	unsigned v;
	switch (f->kind) {
	case K_ROLE: return (unsigned)proto_role_parse(s);
	case K_MODE: return (unsigned)proto_mode_parse(s);
	default:
		v = (unsigned)proto_state_parse(s);
		return enum_name(f, v) != NULL ? v : 0;
	}
}

/* NULL when `s` (n bytes) fits the field, else the error code to report. */
static const char *str_check(const struct field *f, const char *s, size_t n)
{
	if ((int64_t)n > f->hi)
		return (f->flags & F_BIG) ? "too_large" : "bad_field";
	if ((int64_t)n < f->lo || memchr(s, '\0', n) != NULL)
		return "bad_field";
	if (f->kind == K_TOPIC && !proto_topic_valid(s))
		return "bad_field";
	if (f->kind == K_SUB && !proto_sub_valid(s))
		return "bad_field";
	return NULL;
}

/* What a field must look like, for the `reason` of a bad_field error. */
static void field_shape(const struct field *f, char *buf, size_t cap)
{
	switch (f->kind) {
	case K_BOOL: snprintf(buf, cap, "true or false"); break;
	case K_ROLE: snprintf(buf, cap, "client, counselor or operator"); break;
	case K_MODE: snprintf(buf, cap, "text or voice"); break;
	case K_STATE: snprintf(buf, cap, "a state name"); break;
	case K_SETSTATE: snprintf(buf, cap, "available or away"); break;
	case K_TOPIC: snprintf(buf, cap, "1-%d chars of [a-z0-9_-]", PROTO_TOPIC_MAX); break;
	case K_SUB: snprintf(buf, cap, "1-%d chars of [A-Za-z0-9._@-]", PROTO_SUB_MAX); break;
	case K_STR:
		snprintf(buf, cap, "a string of %lld-%lld bytes",
		         (long long)f->lo, (long long)f->hi);
		break;
	default:
		if (f->hi == INT64_MAX)
			snprintf(buf, cap, "an integer >= %lld", (long long)f->lo);
		else
			snprintf(buf, cap, "an integer %lld-%lld",
			         (long long)f->lo, (long long)f->hi);
		break;
	}
}

static enum proto_status fail(struct proto_err *err, const char *code,
                              const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum proto_status fail(struct proto_err *err, const char *code,
                              const char *fmt, ...)
{
	va_list ap;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->reason, sizeof err->reason, fmt, ap);
	va_end(ap);
	/* The reason may quote peer bytes (the type, jansson's "near '...'")
	 * and goes back in an `error` message and maybe a log line: keep it
	 * printable ASCII so it is always valid UTF-8 and encodable, even when
	 * the %.Ns above cut a multi-byte character. */
	for (char *c = err->reason; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
			*c = '?';
	return PROTO_ERR;
}

static enum proto_status field_fail(const struct field *f, int missing,
                                    struct proto_err *err)
{
	char shape[64];
	field_shape(f, shape, sizeof shape);
	if (missing)
		return fail(err, "bad_field", "field '%s' is required (%s)",
		            f->name, shape);
	return fail(err, "bad_field", "field '%s' must be %s", f->name, shape);
}

/* ---- decoding ----------------------------------------------------------- */

static enum proto_status field_decode(const struct field *f, json_t *v,
                                      struct proto_msg *m,
                                      struct proto_err *err)
{
	if ((f->flags & F_WRAPUP) && m->state != ST_WRAPUP)
		return PROTO_OK;  /* meaningless here: ignored like unknown fields */
	if (v == NULL) {
		if (f->flags & F_REQ)
			return field_fail(f, 1, err);
		if (is_int_kind(f->kind))
			int_store(f, m, f->dflt);
		return PROTO_OK;  /* optional strings stay "" */
	}
	if (f->kind == K_BOOL) {
		if (!json_is_boolean(v))
			return field_fail(f, 0, err);
		int_store(f, m, json_is_true(v));
	} else if (is_int_kind(f->kind)) {
		/* json_is_integer is false for reals: 1.0 is not an integer here. */
		if (!json_is_integer(v) || json_integer_value(v) < f->lo ||
		    json_integer_value(v) > f->hi)
			return field_fail(f, 0, err);
		int_store(f, m, json_integer_value(v));
	} else if (f->kind == K_STR || f->kind == K_TOPIC || f->kind == K_SUB) {
		if (!json_is_string(v))
			return field_fail(f, 0, err);
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		const char *code = str_check(f, s, n);
		if (code != NULL && strcmp(code, "too_large") == 0)
			return fail(err, code, "field '%s' exceeds %lld bytes",
			            f->name, (long long)f->hi);
		if (code != NULL)
			return field_fail(f, 0, err);
		memcpy((char *)m + f->off, s, n + 1);
	} else {
		unsigned e = json_is_string(v) ? enum_parse(f, json_string_value(v)) : 0;
		if (e == 0)
			return field_fail(f, 0, err);
		enum_store(f, m, e);
	}
	return PROTO_OK;
}

/* `stats` is informational (an operator's dashboard), so absent or null
 * numbers read as 0; a present number of the wrong type is still an error,
 * since it means the sender is broken. */
enum stat_kind { S_U32, S_U64, S_REAL };

struct stat_field {
	const char *parent;   /* nested object, or NULL for top level */
	const char *name;
	enum stat_kind kind;
	size_t off;           /* into struct proto_stats */
};

#define SOFF(m) offsetof(struct proto_stats, m)

static const struct stat_field stat_fields[] = {
	{ NULL, "queue", S_U32, SOFF(queue) },
	{ NULL, "oldest_wait_s", S_U32, SOFF(oldest_wait_s) },
	{ "counselors", "available", S_U32, SOFF(available) },
	{ "counselors", "ringing", S_U32, SOFF(ringing) },
	{ "counselors", "busy", S_U32, SOFF(busy) },
	{ "counselors", "wrapup", S_U32, SOFF(wrapup) },
	{ "counselors", "away", S_U32, SOFF(away) },
	{ NULL, "sessions", S_U32, SOFF(sessions) },
	{ NULL, "served", S_U32, SOFF(served) },
	{ NULL, "abandoned", S_U32, SOFF(abandoned) },
	{ NULL, "connections", S_U32, SOFF(connections) },
	{ "ratings", "count", S_U32, SOFF(ratings_count) },
	{ "ratings", "mean", S_REAL, SOFF(ratings_mean) },
	{ NULL, "uptime_s", S_U64, SOFF(uptime_s) },
	{ "media", "relayed", S_U64, SOFF(media_relayed) },
	{ "media", "dropped_auth", S_U64, SOFF(media_auth) },
	{ "media", "dropped_replay", S_U64, SOFF(media_replay) },
	{ "media", "dropped_not_opus", S_U64, SOFF(media_not_opus) },
	{ "media", "dropped_too_large", S_U64, SOFF(media_too_large) },
	{ "media", "dropped_rate", S_U64, SOFF(media_rate) },
	{ "media", "dropped_stale", S_U64, SOFF(media_stale) },
	{ "media", "dropped_bad_rtp", S_U64, SOFF(media_bad_rtp) },
	{ "media", "dropped_no_session", S_U64, SOFF(media_no_session) },
	{ "media", "dropped_slow_reader", S_U64, SOFF(media_slow_reader) },
};

static enum proto_status stat_decode(const struct stat_field *sf, json_t *root,
                                     struct proto_stats *st,
                                     struct proto_err *err)
{
	json_t *obj = root;
	if (sf->parent != NULL) {
		obj = json_object_get(root, sf->parent);
		if (obj == NULL || json_is_null(obj))
			return PROTO_OK;
		if (!json_is_object(obj))
			return fail(err, "bad_field", "field '%s' must be an object",
			            sf->parent);
	}
	json_t *v = json_object_get(obj, sf->name);
	if (v == NULL || json_is_null(v))
		return PROTO_OK;
	char *p = (char *)st + sf->off;
	const char *dot = sf->parent != NULL ? "." : "";
	const char *parent = sf->parent != NULL ? sf->parent : "";
	if (sf->kind == S_REAL) {
		if (!json_is_number(v))
			return fail(err, "bad_field", "field '%s%s%s' must be a number",
			            parent, dot, sf->name);
		*(double *)p = json_number_value(v);
		return PROTO_OK;
	}
	json_int_t x = json_is_integer(v) ? json_integer_value(v) : -1;
	if (x < 0 || (sf->kind == S_U32 && x > (json_int_t)UINT32_MAX))
		return fail(err, "bad_field",
		            "field '%s%s%s' must be an integer >= 0%s", parent, dot,
		            sf->name, sf->kind == S_U32 ? " below 2^32" : "");
	if (sf->kind == S_U32)
		*(uint32_t *)p = (uint32_t)x;
	else
		*(uint64_t *)p = (uint64_t)x;
	return PROTO_OK;
}

/* `stats.nodes`: an array of at most PROTO_NODES_MAX node objects. */
static const struct {
	const char *name;
	enum stat_kind kind;
	size_t off;
} node_fields[] = {
	{ "sessions", S_U32, offsetof(struct proto_node_stats, sessions) },
	{ "connections", S_U32, offsetof(struct proto_node_stats, connections) },
	{ "relayed", S_U64, offsetof(struct proto_node_stats, relayed) },
	{ "dropped", S_U64, offsetof(struct proto_node_stats, dropped) },
	{ "uptime_s", S_U64, offsetof(struct proto_node_stats, uptime_s) },
};

static int node_id_ok(const char *s, size_t n)
{
	if (n == 0 || n > PROTO_NODE_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
			return 0;
	return 1;
}

static enum proto_status nodes_decode(json_t *root, struct proto_stats *st,
                                      struct proto_err *err)
{
	json_t *arr = json_object_get(root, "nodes");
	if (arr == NULL || json_is_null(arr))
		return PROTO_OK;
	if (!json_is_array(arr) || json_array_size(arr) > PROTO_NODES_MAX)
		return fail(err, "bad_field", "field 'nodes' must be an array of at most %d",
		            PROTO_NODES_MAX);
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		json_t *id = json_object_get(o, "node");
		struct proto_node_stats *n = &st->nodes[i];
		if (!json_is_object(o) || !json_is_string(id) ||
		    !node_id_ok(json_string_value(id), json_string_length(id)))
			return fail(err, "bad_field", "nodes[%zu] needs a 'node' id", i);
		memcpy(n->node, json_string_value(id), json_string_length(id) + 1);
		for (size_t f = 0; f < NELEM(node_fields); f++) {
			json_t *v = json_object_get(o, node_fields[f].name);
			if (v == NULL || json_is_null(v))
				continue;
			json_int_t x = json_is_integer(v) ? json_integer_value(v) : -1;
			if (x < 0 || (node_fields[f].kind == S_U32 && x > (json_int_t)UINT32_MAX))
				return fail(err, "bad_field", "nodes[%zu].%s must be an integer >= 0", i,
				            node_fields[f].name);
			char *p = (char *)n + node_fields[f].off;
			if (node_fields[f].kind == S_U32)
				*(uint32_t *)p = (uint32_t)x;
			else
				*(uint64_t *)p = (uint64_t)x;
		}
		st->nnodes = (uint32_t)i + 1;
	}
	return PROTO_OK;
}

static int nodes_encode(const struct proto_stats *st, json_t *root)
{
	if (st->nnodes > PROTO_NODES_MAX)
		return -1;
	json_t *arr = json_array();
	if (json_object_set_new(root, "nodes", arr) != 0)
		return -1;
	for (uint32_t i = 0; i < st->nnodes; i++) {
		const struct proto_node_stats *n = &st->nodes[i];
		size_t len = strnlen(n->node, sizeof n->node);
		json_t *o = json_object();
		if (!node_id_ok(n->node, len) || json_array_append_new(arr, o) != 0 ||
		    json_object_set_new(o, "node", json_stringn(n->node, len)) != 0)
			return -1;
		for (size_t f = 0; f < NELEM(node_fields); f++) {
			const char *p = (const char *)n + node_fields[f].off;
			uint64_t u = node_fields[f].kind == S_U32 ? *(const uint32_t *)p
			                                         : *(const uint64_t *)p;
			if (u > (uint64_t)INT64_MAX ||
			    json_object_set_new(o, node_fields[f].name, json_integer((json_int_t)u)) != 0)
				return -1;
		}
	}
	return 0;
}

/* `stats.crises`: at most PROTO_CRISES_MAX {session_id, counselor, since_s}. */
static enum proto_status crises_decode(json_t *root, struct proto_stats *st,
                                       struct proto_err *err)
{
	json_t *arr = json_object_get(root, "crises");
	if (arr == NULL || json_is_null(arr))
		return PROTO_OK;
	if (!json_is_array(arr) || json_array_size(arr) > PROTO_CRISES_MAX)
		return fail(err, "bad_field", "field 'crises' must be an array of at most %d",
		            PROTO_CRISES_MAX);
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		json_t *id = json_object_get(o, "session_id"), *k = json_object_get(o, "counselor");
		json_t *since = json_object_get(o, "since_s");
		struct proto_crisis *c = &st->crises[i];
		if (!json_is_object(o) || !json_is_string(id) || json_string_length(id) == 0 ||
		    json_string_length(id) > PROTO_ID_MAX || !json_is_string(k) ||
		    !proto_sub_valid(json_string_value(k)) || !json_is_integer(since) ||
		    json_integer_value(since) < 0)
			return fail(err, "bad_field", "crises[%zu] needs session_id, counselor, since_s", i);
		memcpy(c->session_id, json_string_value(id), json_string_length(id) + 1);
		snprintf(c->counselor, sizeof c->counselor, "%s", json_string_value(k));
		c->since_s = (uint64_t)json_integer_value(since);
		st->ncrises = (uint32_t)i + 1;
	}
	return PROTO_OK;
}

static int crises_encode(const struct proto_stats *st, json_t *root)
{
	if (st->ncrises > PROTO_CRISES_MAX)
		return -1;
	json_t *arr = json_array();
	if (json_object_set_new(root, "crises", arr) != 0)
		return -1;
	for (uint32_t i = 0; i < st->ncrises; i++) {
		const struct proto_crisis *c = &st->crises[i];
		size_t idlen = strnlen(c->session_id, sizeof c->session_id);
		json_t *o = json_object();
		if (idlen == 0 || idlen > PROTO_ID_MAX || !memchr(c->counselor, 0, sizeof c->counselor) ||
		    !proto_sub_valid(c->counselor) || c->since_s > (uint64_t)INT64_MAX ||
		    json_array_append_new(arr, o) != 0 ||
		    json_object_set_new(o, "session_id", json_stringn(c->session_id, idlen)) != 0 ||
		    json_object_set_new(o, "counselor", json_string(c->counselor)) != 0 ||
		    json_object_set_new(o, "since_s", json_integer((json_int_t)c->since_s)) != 0)
			return -1;
	}
	return 0;
}

/* ---- ratings: {counselors: [...], topics: [...]} ------------------------ */

/* Entries of `counselors` are named by "sub", those of `topics` by "topic". */
static const char *const rating_list[2] = { "counselors", "topics" };
static const char *const rating_key[2] = { "sub", "topic" };

static int rating_name_ok(int topic, const char *s)
{
	return topic ? proto_topic_valid(s) : proto_sub_valid(s);
}

static int mean_ok(double d)
{
	return isfinite(d) && d >= 0.0 && d <= 5.0;
}

static int u32_value(json_t *v, uint32_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > (json_int_t)UINT32_MAX)
		return -1;
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

/* A counselor's recent comments: at most PROTO_COMMENTS_MAX strings of
 * 1..PROTO_COMMENT_MAX bytes. */
static enum proto_status comments_decode(json_t *arr, struct proto_ratings *r,
                                         struct proto_err *err)
{
	if (!json_is_array(arr) || json_array_size(arr) > PROTO_COMMENTS_MAX)
		return fail(err, "bad_field", "counselors[0].comments must be an array of at most %d",
		            PROTO_COMMENTS_MAX);
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *c = json_array_get(arr, i);
		if (!json_is_string(c) || json_string_length(c) == 0 ||
		    json_string_length(c) > PROTO_COMMENT_MAX)
			return fail(err, "bad_field", "counselors[0].comments[%zu] must be a string of "
			            "1-%d bytes", i, PROTO_COMMENT_MAX);
		memcpy(r->comments[i], json_string_value(c), json_string_length(c) + 1);
		r->ncomments = (uint32_t)i + 1;
	}
	return PROTO_OK;
}

static enum proto_status rating_decode(json_t *o, int topic, size_t i, struct proto_ratings *r,
                                       struct proto_err *err)
{
	struct proto_rating *e = topic ? &r->topics[i] : &r->counselors[i];
	json_t *name = json_object_get(o, rating_key[topic]);
	json_t *mean = json_object_get(o, "mean"), *hist = json_object_get(o, "hist");
	int ok = json_is_object(o) && json_is_string(name) &&
	         rating_name_ok(topic, json_string_value(name)) &&
	         u32_value(json_object_get(o, "count"), &e->count) == 0 &&
	         json_is_number(mean) && mean_ok(json_number_value(mean)) &&
	         json_is_array(hist) && json_array_size(hist) == 5;
	for (size_t k = 0; ok && k < 5; k++)
		ok = u32_value(json_array_get(hist, k), &e->hist[k]) == 0;
	if (!ok)
		return fail(err, "bad_field", "%s[%zu] needs %s, count, mean (0-5) and hist (5 counts)",
		            rating_list[topic], i, rating_key[topic]);
	snprintf(e->name, sizeof e->name, "%s", json_string_value(name));
	e->mean = json_number_value(mean);
	json_t *comments = json_object_get(o, "comments");
	if (comments == NULL || json_is_null(comments))
		return PROTO_OK;
	if (topic || i > 0)
		return fail(err, "bad_field", "%s[%zu]: only a counselor's own entry has comments",
		            rating_list[topic], i);
	return comments_decode(comments, r, err);
}

/* Absent or null lists are empty: that is the request's shape. */
static enum proto_status ratings_decode(json_t *root, struct proto_ratings *r,
                                        struct proto_err *err)
{
	static const size_t max[2] = { PROTO_RATED_MAX, PROTO_TOPICS_MAX };
	for (int topic = 0; topic < 2; topic++) {
		json_t *arr = json_object_get(root, rating_list[topic]);
		if (arr == NULL || json_is_null(arr))
			continue;
		if (!json_is_array(arr) || json_array_size(arr) > max[topic])
			return fail(err, "bad_field", "field '%s' must be an array of at most %zu",
			            rating_list[topic], max[topic]);
		for (size_t i = 0; i < json_array_size(arr); i++) {
			if (rating_decode(json_array_get(arr, i), topic, i, r, err) != PROTO_OK)
				return PROTO_ERR;
			*(topic ? &r->ntopics : &r->ncounselors) = (uint32_t)i + 1;
		}
	}
	return PROTO_OK;
}

static json_t *rating_encode(const struct proto_rating *e, int topic)
{
	if (!memchr(e->name, 0, sizeof e->name) || !rating_name_ok(topic, e->name) ||
	    !mean_ok(e->mean))
		return NULL;
	json_t *o = json_object(), *hist = json_array();
	int bad = o == NULL || hist == NULL ||
	          json_object_set_new(o, rating_key[topic], json_string(e->name)) != 0 ||
	          json_object_set_new(o, "count", json_integer(e->count)) != 0 ||
	          json_object_set_new(o, "mean", json_real(e->mean)) != 0;
	for (int k = 0; !bad && k < 5; k++)
		bad = json_array_append_new(hist, json_integer(e->hist[k])) != 0;
	if (bad)
		json_decref(hist);
	if (bad || json_object_set_new(o, "hist", hist) != 0) {   /* a failed set frees hist */
		json_decref(o);
		return NULL;
	}
	return o;
}

/* The request (nothing in it) is written as {"type":"ratings"}; a reply
 * always has both lists. */
static int ratings_encode(const struct proto_ratings *r, json_t *root)
{
	if (r->ncounselors > PROTO_RATED_MAX || r->ntopics > PROTO_TOPICS_MAX ||
	    r->ncomments > PROTO_COMMENTS_MAX || (r->ncomments && !r->ncounselors))
		return -1;
	if (!r->ncounselors && !r->ntopics)
		return 0;
	for (int topic = 0; topic < 2; topic++) {
		json_t *arr = json_array();
		if (json_object_set_new(root, rating_list[topic], arr) != 0)
			return -1;
		uint32_t n = topic ? r->ntopics : r->ncounselors;
		for (uint32_t i = 0; i < n; i++)
			if (json_array_append_new(arr, rating_encode(topic ? &r->topics[i]
			                                             : &r->counselors[i], topic)) != 0)
				return -1;
	}
	if (!r->ncomments)
		return 0;
	json_t *arr = json_array();
	json_t *own = json_array_get(json_object_get(root, "counselors"), 0);
	if (json_object_set_new(own, "comments", arr) != 0)
		return -1;
	for (uint32_t i = 0; i < r->ncomments; i++) {
		size_t n = strnlen(r->comments[i], sizeof r->comments[i]);
		/* json_stringn is NULL for invalid UTF-8, and the append then fails. */
		if (n == 0 || n > PROTO_COMMENT_MAX ||
		    json_array_append_new(arr, json_stringn(r->comments[i], n)) != 0)
			return -1;
	}
	return 0;
}

static enum proto_status decode_object(json_t *root, struct proto_msg *out,
                                       struct proto_err *err)
{
	json_t *jt = json_object_get(root, "type");
	if (!json_is_string(jt))
		return fail(err, "bad_json", "no string field 'type'");
	enum proto_type t = proto_type_parse(json_string_value(jt));
	if (t == PT_NONE)
		return fail(err, "unknown_type", "unknown type '%.32s'",
		            json_string_value(jt));
	out->type = t;
	const struct type_spec *ts = &types[t];
	for (size_t i = 0; i < ts->nfields; i++) {
		const struct field *f = &ts->fields[i];
		if (field_decode(f, json_object_get(root, f->name), out, err) != PROTO_OK)
			return PROTO_ERR;
	}
	if (t == PT_STATS) {
		for (size_t i = 0; i < NELEM(stat_fields); i++)
			if (stat_decode(&stat_fields[i], root, &out->stats, err) != PROTO_OK)
				return PROTO_ERR;
		if (nodes_decode(root, &out->stats, err) != PROTO_OK)
			return PROTO_ERR;
		return crises_decode(root, &out->stats, err);
	}
	if (t == PT_RATINGS) {
		/* No storage from the caller: checked all the same, then dropped. */
		struct proto_ratings *r = out->ratings ? out->ratings : malloc(sizeof *r);
		if (r == NULL)
			return fail(err, "too_large", "no memory for the ratings");
		memset(r, 0, sizeof *r);
		enum proto_status st = ratings_decode(root, r, err);
		if (r != out->ratings)
			free(r);
		return st;
	}
	return PROTO_OK;
}

enum proto_status proto_decode(const char *buf, size_t len,
                               struct proto_msg *out, struct proto_err *err)
{
	return proto_decode_with(buf, len, out, NULL, err);
}

enum proto_status proto_decode_with(const char *buf, size_t len, struct proto_msg *out,
                                    struct proto_ratings *ratings, struct proto_err *err)
{
	memset(out, 0, sizeof *out);
	out->ratings = ratings;
	err->code = NULL;
	err->reason[0] = '\0';
	json_error_t je;
	/* json_loadb stops at `len`, not at a NUL: an embedded NUL byte is an
	 * invalid character to it, and "\u0000" in a string is refused
	 * (JSON_ALLOW_NUL is not given), so decoded strings are C strings. */
	json_t *root = json_loadb(buf != NULL ? buf : "", buf != NULL ? len : 0,
	                          JSON_REJECT_DUPLICATES, &je);
	if (root == NULL)
		return fail(err, "bad_json", "not JSON: %.120s", je.text);
	enum proto_status rc;
	if (!json_is_object(root))
		rc = fail(err, "bad_json", "not a JSON object");
	else
		rc = decode_object(root, out, err);
	json_decref(root);
	return rc;
}

/* ---- encoding ----------------------------------------------------------- */

/* Adds `f` of `m` to `obj`, or skips an optional field left at "absent".
 * Returns -1 when the value is one the decoder would refuse. */
static int field_encode(const struct field *f, const struct proto_msg *m,
                        json_t *obj)
{
	if (((f->flags & F_WRAPUP) && m->state != ST_WRAPUP) ||
	    ((f->flags & F_RESUMED) && !m->resumed))
		return 0;
	json_t *v;
	if (f->kind == K_BOOL) {
		if (!(f->flags & F_REQ) && int_load(f, m) == 0)
			return 0;
		v = json_boolean(int_load(f, m) != 0);
	} else if (is_int_kind(f->kind)) {
		int64_t x = int_load(f, m);
		if (x < f->lo || x > f->hi)
			return !(f->flags & F_REQ) && x == f->dflt ? 0 : -1;
		v = json_integer(x);
	} else if (f->kind == K_STR || f->kind == K_TOPIC || f->kind == K_SUB) {
		const char *s = (const char *)m + f->off;
		/* strnlen: an unterminated array must not be read past its end. */
		size_t n = strnlen(s, (size_t)f->hi + 1);
		if (str_check(f, s, n) != NULL)
			return -1;
		if (n == 0 && !(f->flags & F_REQ))
			return 0;
		v = json_stringn(s, n);  /* NULL for invalid UTF-8 */
	} else {
		const char *name = enum_name(f, enum_load(f, m));
		if (name == NULL)
			return -1;
		v = json_string(name);
	}
	/* json_object_set_new fails on a NULL value and frees a non-NULL one. */
	return json_object_set_new(obj, f->name, v);
}

static int stat_encode(const struct stat_field *sf, const struct proto_stats *st,
                       json_t *root)
{
	json_t *obj = root;
	if (sf->parent != NULL) {
		obj = json_object_get(root, sf->parent);
		if (obj == NULL) {
			obj = json_object();
			if (json_object_set_new(root, sf->parent, obj) != 0)
				return -1;
		}
	}
	const char *p = (const char *)st + sf->off;
	json_t *v;
	if (sf->kind == S_REAL) {
		double d = *(const double *)p;
		v = isfinite(d) ? json_real(d) : NULL;
	} else if (sf->kind == S_U32) {
		v = json_integer(*(const uint32_t *)p);
	} else {
		uint64_t u = *(const uint64_t *)p;
		v = u <= (uint64_t)INT64_MAX ? json_integer((json_int_t)u) : NULL;
	}
	return json_object_set_new(obj, sf->name, v);
}

static int encode_fields(const struct proto_msg *m, json_t *root)
{
	const struct type_spec *ts = &types[m->type];
	if (json_object_set_new(root, "type", json_string(ts->name)) != 0)
		return -1;
	for (size_t i = 0; i < ts->nfields; i++)
		if (field_encode(&ts->fields[i], m, root) != 0)
			return -1;
	if (m->type == PT_STATS) {
		for (size_t i = 0; i < NELEM(stat_fields); i++)
			if (stat_encode(&stat_fields[i], &m->stats, root) != 0)
				return -1;
		return nodes_encode(&m->stats, root) == 0 ? crises_encode(&m->stats, root) : -1;
	}
	if (m->type == PT_RATINGS && m->ratings)
		return ratings_encode(m->ratings, root);
	return 0;
}

long proto_encode(const struct proto_msg *m, char *buf, size_t cap)
{
	if (m == NULL || proto_type_name(m->type) == NULL)
		return -1;
	json_t *root = json_object();
	if (root == NULL)
		return -1;
	long n = -1;
	if (encode_fields(m, root) == 0) {
		/* json_dumpb returns the size it needs even when it does not fit
		 * (then the buffer holds a truncated prefix); 0 on failure. */
		size_t need = json_dumpb(root, buf, cap, JSON_COMPACT);
		if (need > 0 && cap > 0 && need <= cap - 1) {
			buf[need] = '\0';
			n = (long)need;
		}
	}
	json_decref(root);
	return n;
}
