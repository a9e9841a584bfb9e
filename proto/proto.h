/* proto.h - the earshot v1 message codec: JSON text frames <-> structs.
 *
 * Pure: no I/O, no global state. Decoding fills a caller-owned struct whose
 * strings are fixed-size arrays (NUL-terminated, bounds below), so a decoded
 * message owns no heap memory and needs no free. Internally the JSON parser
 * allocates and frees within the call. PROTOCOL.md is the contract; every
 * bound here is one listed there. */
#ifndef EARSHOT_PROTO_H
#define EARSHOT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_SUBPROTOCOL "earshot.v1"
#define PROTO_VERSION 1

#define PROTO_TOKEN_MAX 4096   /* bytes, excluding NUL */
#define PROTO_TOPIC_MAX 32
#define PROTO_NAME_MAX 64
#define PROTO_SUB_MAX 64
#define PROTO_TEXT_MAX 4000    /* hard cap; config may lower it */
#define PROTO_COMMENT_MAX 280
#define PROTO_REASON_MAX 160
#define PROTO_CODE_MAX 32
#define PROTO_ID_MAX 40        /* session ids */
#define PROTO_REFERRAL_MAX 2000
#define PROTO_QUESTION_MAX 255
#define PROTO_KEY_MAX 43       /* base64 of a 30-byte SRTP key and salt */
#define PROTO_WORD_MAX 7       /* short enumerations carried as strings */
#define PROTO_NODE_MAX 40      /* node ids: [A-Za-z0-9._-] */
#define PROTO_NODES_MAX 16     /* nodes listed in `stats` */
#define PROTO_CRISES_MAX 16    /* sessions in crisis listed in `stats` */
#define PROTO_RESUME_MAX 96    /* resume tokens */
#define PROTO_RATED_MAX 200    /* counselors listed in `ratings` */
#define PROTO_TOPICS_MAX 64    /* topics rated, and listed in `ratings` */
#define PROTO_COMMENTS_MAX 8   /* recent comments kept per counselor */
/* The longest `ratings` can encode to (every list full, every comment's
 * bytes escaped): larger than any other message, so senders size for it. */
#define PROTO_RATINGS_JSON_MAX (64 * 1024)

enum proto_type {
	PT_NONE = 0,
	/* any role */
	PT_HELLO, PT_WELCOME, PT_ERROR, PT_GOING_AWAY,
	/* client */
	PT_TALK_NOW, PT_CANCEL, PT_QUEUE, PT_CANCELLED, PT_RATE, PT_RATED,
	/* counselor */
	PT_SET_STATE, PT_STATE, PT_OFFER, PT_ACCEPT, PT_DECLINE, PT_OFFER_GONE, PT_TAKE_BREAK,
	/* session */
	PT_SESSION_START, PT_MSG, PT_SENT, PT_ACK, PT_DELIVERED, PT_TYPING,
	PT_SLOT_WARNING, PT_SLOT_OVER, PT_END, PT_SESSION_END, PT_CRISIS,
	/* operator */
	PT_SUBSCRIBE, PT_STATS,
	/* voice */
	PT_MUTE, PT_PEER_MUTE, PT_AUDIO, PT_LINK,
	/* resume after a dropped connection */
	PT_PEER_LOST, PT_PEER_BACK,
	/* feedback (counselor, operator) */
	PT_RATINGS,
	PT__COUNT
};

/* ROLE_NODE: another earshot node, linking a session across nodes. */
enum proto_role { ROLE_NONE = 0, ROLE_CLIENT, ROLE_COUNSELOR, ROLE_OPERATOR, ROLE_NODE };
enum proto_mode { MODE_NONE = 0, MODE_TEXT, MODE_VOICE };

/* Counselor states, and the client's own states, share one enum so that
 * `welcome.state` and `state.state` have a single spelling table. */
enum proto_state {
	ST_NONE = 0,
	/* counselor */
	ST_OFFLINE, ST_AVAILABLE, ST_RINGING, ST_BUSY, ST_WRAPUP, ST_AWAY,
	/* client */
	ST_IDLE, ST_WAITING, ST_IN_SESSION, ST_ENDED,
	/* operator */
	ST_WATCHING,
	ST__COUNT
};

/* One node's own figures in `stats.nodes`. */
struct proto_node_stats {
	char node[PROTO_NODE_MAX + 1];
	uint32_t sessions, connections;
	uint64_t relayed, dropped;     /* voice packets; dropped: all reasons */
	uint64_t uptime_s;
};

/* A session in crisis in `stats.crises`: who, never what. */
struct proto_crisis {
	char session_id[PROTO_ID_MAX + 1];
	char counselor[PROTO_SUB_MAX + 1];
	uint64_t since_s;              /* seconds since it was flagged */
};

struct proto_stats {
	uint32_t queue, oldest_wait_s;
	uint32_t available, ringing, busy, wrapup, away;
	uint32_t sessions, served, abandoned, connections;
	uint32_t ratings_count;
	double ratings_mean;
	uint64_t uptime_s;
	/* media packets relayed, and dropped by reason (PROTOCOL.md) */
	uint64_t media_relayed;
	uint64_t media_auth, media_replay, media_not_opus, media_too_large,
	         media_rate, media_stale, media_bad_rtp, media_no_session, media_slow_reader;
	/* Every node of the service (one without Redis); the figures above
	 * are the whole service's. */
	uint32_t nnodes;
	struct proto_node_stats nodes[PROTO_NODES_MAX];
	uint32_t ncrises;
	struct proto_crisis crises[PROTO_CRISES_MAX];
};

/* One counselor's or one topic's ratings in `ratings`: an aggregate, never
 * tied to a session, a person or a time. */
struct proto_rating {
	char name[PROTO_SUB_MAX + 1];  /* the counselor's `sub`, or the `topic` */
	uint32_t count;
	uint32_t hist[5];              /* how many gave 1, 2, 3, 4 and 5 */
	double mean;                   /* 0-5; 0 when count is 0 */
};

/* `ratings` (S->C); the request (C->S) has none of it. */
struct proto_ratings {
	uint32_t ncounselors, ntopics;
	struct proto_rating counselors[PROTO_RATED_MAX];   /* sorted by sub */
	struct proto_rating topics[PROTO_TOPICS_MAX];      /* sorted by topic */
	/* The first counselor's recent comments, newest first: only in a
	 * counselor's own feedback (operators see aggregates). */
	uint32_t ncomments;
	char comments[PROTO_COMMENTS_MAX][PROTO_COMMENT_MAX + 1];
};

/* One message, either direction. Only the fields of `type` are meaningful;
 * the codec never reads the others when encoding and zeroes the struct
 * before decoding. Integer fields hold what PROTOCOL.md allows. */
struct proto_msg {
	enum proto_type type;
	enum proto_role role;          /* hello, welcome */
	enum proto_mode mode;          /* talk_now, offer, session_start */
	enum proto_state state;        /* welcome, state, set_state */
	int on;                        /* typing, mute, peer_mute */
	int crisis;                    /* talk_now, offer: may not be safe (optional) */
	int previous;                  /* talk_now: asks for the last counselor (optional) */
	int talked_before;             /* offer: the client talked with you last (optional) */
	int score;                     /* rate: 1-5 */
	int resumed;                   /* welcome, session_start: restored after a drop */
	int64_t id;                    /* msg (C->S), sent: sender's id, >= 0 */
	int64_t seq;                   /* msg (S->C), sent, ack, delivered: >= 1 */
	int64_t offer_id;              /* offer, accept, decline, offer_gone: >= 1 */
	int64_t last_id;               /* session_start (resumed): your last msg id taken; -1 none */
	int64_t acked;                 /* session_start (resumed): your last msg seq the peer acked; 0 none */
	uint32_t position;             /* queue */
	uint32_t wait_s;               /* queue */
	uint32_t counselors;           /* queue */
	uint32_t waited_s;             /* offer */
	uint32_t ring_s;               /* offer, welcome */
	uint32_t slot_s;               /* session_start, welcome */
	uint32_t remaining_s;          /* session_start, slot_warning */
	uint32_t grace_s;              /* slot_over, peer_lost, welcome (resume grace; 0 absent) */
	uint32_t wrapup_s;             /* state (entering wrapup) */
	uint32_t break_s;              /* state (a break: away/break, busy/break_next); 0 absent */
	int minutes;                   /* take_break: 1-120 */
	uint32_t version;              /* welcome */
	uint32_t loss_pct, jitter_ms;  /* link */
	char token[PROTO_TOKEN_MAX + 1];     /* hello; "" = none */
	char topic[PROTO_TOPIC_MAX + 1];     /* talk_now, offer, session_start */
	char text[PROTO_TEXT_MAX + 1];       /* msg */
	char comment[PROTO_COMMENT_MAX + 1]; /* rate */
	char name[PROTO_NAME_MAX + 1];       /* welcome: own name; session_start: peer */
	char sub[PROTO_SUB_MAX + 1];         /* welcome */
	char code[PROTO_CODE_MAX + 1];       /* error */
	char reason[PROTO_REASON_MAX + 1];   /* error, state, cancelled, offer_gone, session_end, going_away */
	char ref[PROTO_CODE_MAX + 1];        /* error: type name it answers, "" if unknown */
	char session_id[PROTO_ID_MAX + 1];   /* session_start, session_end */
	char referral[PROTO_REFERRAL_MAX + 1]; /* session_end, crisis (client) */
	struct proto_stats stats;            /* stats */
	/* ratings (S->C): where its lists are, out of line so that every
	 * other message stays small. Encoding: NULL is the request. Decoding:
	 * the storage given to proto_decode_with (NULL: the lists are checked
	 * and dropped). */
	struct proto_ratings *ratings;
	/* session_start of a voice session: SRTP profile and this party's keys
	 * (base64 of master key || salt); "" in text sessions. */
	char srtp_profile[24];
	char tx_key[PROTO_KEY_MAX + 1];
	char rx_key[PROTO_KEY_MAX + 1];
	char who[PROTO_WORD_MAX + 1];          /* audio, crisis (`by`): "you" or "peer" */
	char audio[PROTO_WORD_MAX + 1];        /* audio: "stopped" or "flowing" */
	char link_you[PROTO_WORD_MAX + 1];     /* link: "good" "fair" "poor" */
	char link_peer[PROTO_WORD_MAX + 1];
	char waiting_for[16];                  /* queue: "previous", "topic" or "" */
	char question[PROTO_QUESTION_MAX + 1]; /* welcome (client): the crisis question, "" none */
	char resume[PROTO_RESUME_MAX + 1];     /* hello: `resume`; welcome: `resume_token`; "" none */
};

/* Decoding outcome. On PROTO_OK `*out` holds the message. Otherwise
 * `err->code` is the error code to send back (one of PROTOCOL.md's table:
 * "bad_json", "bad_field", "unknown_type", "too_large") and `err->reason`
 * a human-readable reason naming the field; `out->type` is set when the
 * type itself was recognised (so the reply can carry `ref`). */
enum proto_status { PROTO_OK = 0, PROTO_ERR = -1 };

struct proto_err {
	const char *code;              /* static string */
	char reason[PROTO_REASON_MAX + 1];
};

/* Decode one text frame of `len` bytes (need not be NUL-terminated).
 * Validates every field of the recognised type against PROTOCOL.md,
 * including string character sets and integer ranges. Never reads past
 * `len`; safe on arbitrary bytes. */
enum proto_status proto_decode(const char *buf, size_t len,
                               struct proto_msg *out, struct proto_err *err);
/* The same, with a `ratings` reply's lists decoded into `ratings` (which
 * out->ratings then points to). */
enum proto_status proto_decode_with(const char *buf, size_t len, struct proto_msg *out,
                                    struct proto_ratings *ratings, struct proto_err *err);

/* Encode `m` as one JSON object into `buf` (capacity `cap`). Returns the
 * number of bytes written (no NUL is counted; one is written if it fits),
 * or -1 if `m` is invalid for its type or the result does not fit. */
long proto_encode(const struct proto_msg *m, char *buf, size_t cap);

/* Spelling tables: the wire names. Return NULL / 0 for unknown values. */
const char *proto_type_name(enum proto_type t);
enum proto_type proto_type_parse(const char *s);
const char *proto_role_name(enum proto_role r);
enum proto_role proto_role_parse(const char *s);
const char *proto_mode_name(enum proto_mode m);
enum proto_mode proto_mode_parse(const char *s);
const char *proto_state_name(enum proto_state s);
enum proto_state proto_state_parse(const char *s);

/* Topic: 1..PROTO_TOPIC_MAX chars of [a-z0-9_-]. Sub: 1..PROTO_SUB_MAX of
 * [A-Za-z0-9._@-]. Return 1 when valid. */
int proto_topic_valid(const char *s);
int proto_sub_valid(const char *s);

#endif
