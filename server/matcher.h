/* matcher.h - the queue and offer state machine: who waits, who is free,
 * who is offered to whom.
 *
 * Pure: every event takes an explicit `now` (milliseconds on any monotonic
 * clock) and reports what must happen through the action callback; it never
 * touches a socket, a timer or a clock. The caller arms one timer for
 * matcher_next_deadline() and calls matcher_tick() when it fires.
 *
 * Ownership: the caller owns every struct mclient / mcounselor (they are
 * meant to be embedded in its connection objects) and keeps it alive while
 * it is registered; the matcher only links them into its lists. Actions are
 * delivered synchronously, from inside the event call: the callback must not
 * call back into the matcher (queue the work instead). */
#ifndef EARSHOT_MATCHER_H
#define EARSHOT_MATCHER_H

#include <stdint.h>
#include "list.h"
#include "../proto/proto.h"

#define MATCHER_DECLINED_MAX 4
/* A counselor's skills, comma-separated topics ("grief,anxiety"). */
#define MATCHER_SKILLS_MAX 528

struct mcounselor;

/* What a waiting client is held back for while a counselor is free: the
 * counselor they asked for, or one with their topic among their skills. */
enum matcher_hold { HOLD_NONE, HOLD_PREVIOUS, HOLD_TOPIC };

/* What a client asks for when joining the queue. */
struct matcher_request {
	const char *topic;
	enum proto_mode mode;
	int crisis;                    /* waits ahead of everyone not in crisis */
	const char *previous;          /* counselor sub they talked with last, "" none */
	int ask_previous;              /* and they ask for them again */
};

struct mclient {
	struct list link;              /* in the queue, FIFO */
	uint32_t id;                   /* caller's id, for actions */
	int64_t since;                 /* enqueued at */
	char topic[PROTO_TOPIC_MAX + 1];
	enum proto_mode mode;
	int crisis;                    /* waits ahead of everyone not in crisis */
	char previous[PROTO_SUB_MAX + 1];
	int ask_previous;
	int64_t lapse;                 /* when a preference lapses next */
	int away;                      /* lost their connection: keeps the place, not offered */
	struct mcounselor *offered_to; /* NULL unless an offer is out */
	/* Counselors who recently declined or missed this client: not offered
	 * the same person again while someone else is free. */
	struct { uint32_t id; int64_t at; } declined[MATCHER_DECLINED_MAX];
};

struct mcounselor {
	struct list link;              /* in the roster */
	uint32_t id;
	char sub[PROTO_SUB_MAX + 1];
	char skills[MATCHER_SKILLS_MAX];
	struct mclient *kept_for;      /* a waiting client who asked for them */
	enum proto_state state;        /* AWAY AVAILABLE RINGING BUSY WRAPUP */
	int64_t idle_since;            /* when last available after work */
	int64_t deadline;              /* ring timeout or wrap-up end */
	int64_t busy_since;
	int64_t offer_id;
	struct mclient *offer;         /* while RINGING */
	int missed;                    /* ring timeouts in a row */
	int registered;
	int64_t shift_start;           /* signed in */
	uint32_t sessions;             /* accepted this shift */
	int64_t break_until;           /* AWAY on a break: back then (0: not) */
	int64_t break_ms;              /* BUSY: a break asked for, after the session */
};

enum matcher_action_type {
	MA_OFFER,           /* offer `client` to `counselor` as `offer_id` */
	MA_OFFER_GONE,      /* withdraw `offer_id` from `counselor`: `reason` */
	MA_MATCHED,         /* `counselor` accepted `client`: start the session */
	MA_STATE,           /* `counselor` is now `state`, because `reason` */
};

struct matcher_action {
	enum matcher_action_type type;
	uint32_t client, counselor;
	int64_t offer_id;
	enum proto_state state;
	const char *reason;            /* static string, or NULL */
	uint32_t waited_s;             /* MA_OFFER */
	int crisis;                    /* MA_OFFER */
	int talked_before;             /* MA_OFFER: the client's previous counselor */
	int64_t for_ms;                /* MA_STATE away for a break: its length */
};

typedef void (*matcher_emit_fn)(void *ctx, const struct matcher_action *a);

struct matcher_config {
	int64_t ring_ms;
	int64_t wrapup_ms;
	int64_t crisis_wrapup_ms;      /* the wrap-up after a session in crisis */
	int64_t handle_ms;             /* first guess of a session + wrap-up */
	int64_t redecline_ms;          /* how long a decline is remembered */
	int max_missed;
	uint32_t max_queue;
	int64_t topic_wait_ms;         /* how long a skilled counselor is waited for */
	int64_t previous_wait_ms;      /* how long an asked-for counselor is waited for */
	uint32_t shift_sessions;       /* sessions in a shift; then no offers (0: no limit) */
	int64_t shift_ms;              /* length of a shift from sign-in (0: no limit) */
};

struct matcher_stats {
	uint32_t queue, offered, oldest_wait_s;
	uint32_t by_state[ST__COUNT];
	uint64_t served, abandoned;
};

struct matcher {
	struct matcher_config cfg;
	struct list queue;             /* mclient.link, oldest first */
	struct list roster;            /* mcounselor.link, idle longest first
	                                * among equals; all registered */
	uint32_t queue_len;
	uint32_t by_state[ST__COUNT];
	uint32_t skilled_active;       /* counselors with skills, not away */
	int64_t next_offer_id;
	int64_t handle_ms;             /* moving average */
	uint64_t served, abandoned;
	int queue_dirty;               /* positions or estimates may have changed */
	matcher_emit_fn emit;
	void *ctx;
};

/* Error results of events; 0 is success. They map to wire error codes. */
enum matcher_err {
	MATCHER_OK = 0,
	MATCHER_WRONG_STATE = -1,      /* "wrong_state" */
	MATCHER_NO_SUCH_OFFER = -2,    /* "no_such_offer" */
	MATCHER_FULL = -3,             /* "server_busy" */
	MATCHER_SHIFT_OVER = -4,       /* "shift_over" */
};

void matcher_init(struct matcher *m, const struct matcher_config *cfg,
                  matcher_emit_fn emit, void *ctx);

/* Clients. The queue is first come, first served, except that a client in
 * `crisis` goes ahead of every client not in crisis (and behind earlier
 * ones in crisis).
 *
 * Who is offered whom: each waiting client in queue order gets, among the
 * available counselors (idle longest first):
 *  1. the counselor they asked for, if that one is free; while that one is
 *     online but busy, the client is held for at most previous_wait_ms
 *     from arrival (the asked-for counselor is kept for them meanwhile,
 *     except from someone in crisis). A decline or a missed ring by that
 *     counselor ends the wish;
 *  2. else a counselor with their topic among their skills;
 *  3. else, while some skilled counselor is online and topic_wait_ms from
 *     arrival have not passed, they are held;
 *  4. else anyone.
 * Counselors who recently passed on the client are neither preferred nor
 * waited for, and are offered only when nobody else is (see match()). */
int matcher_client_enqueue(struct matcher *m, struct mclient *c, uint32_t id,
                           const struct matcher_request *r, int64_t now);
/* Leaves the queue (cancel or disconnect); no-op when not queued. An
 * outstanding offer is withdrawn with reason "client_left". */
void matcher_client_remove(struct matcher *m, struct mclient *c, int64_t now,
                           int abandoned);
int matcher_client_queued(const struct mclient *c);
/* The client lost their connection (`away`) or is back. Away, they keep
 * their place but are offered to nobody (an offer ringing for them is
 * withdrawn, "client_left"); back, they are matched again. */
void matcher_client_away(struct matcher *m, struct mclient *c, int away, int64_t now);

/* Counselors. A registered counselor starts AWAY. `skills`: comma-separated
 * topics ("" none). */
void matcher_counselor_add(struct matcher *m, struct mcounselor *k, uint32_t id,
                           const char *sub, const char *skills, int64_t now);
/* Disconnect: an offer out to them goes back to the queue. */
void matcher_counselor_remove(struct matcher *m, struct mcounselor *k, int64_t now);
/* Refused with MATCHER_SHIFT_OVER once the counselor's shift is over:
 * shift_sessions accepted, or shift_ms since they signed in. Whenever a
 * counselor would become available after that, they go AWAY with reason
 * "shift_over" instead (an available one when the hours run out). */
int matcher_counselor_set_available(struct matcher *m, struct mcounselor *k, int64_t now);
int matcher_counselor_set_away(struct matcher *m, struct mcounselor *k, int64_t now);
int matcher_counselor_accept(struct matcher *m, struct mcounselor *k,
                             int64_t offer_id, int64_t now);
int matcher_counselor_decline(struct matcher *m, struct mcounselor *k,
                              int64_t offer_id, int64_t now);
/* A break of `ms` asked for by the counselor: AWAY with reason "break"
 * (an offer ringing is withdrawn), back AVAILABLE ("break_over") when it
 * ends; set_available ends it early, set_away makes it open-ended. In a
 * session (BUSY) it starts when the session closes, taking the place of
 * the wrap-up (and lasting at least as long); the counselor is told with
 * a STATE busy, reason "break_next". */
int matcher_counselor_take_break(struct matcher *m, struct mcounselor *k, int64_t ms,
                                 int64_t now);
/* The counselor's session closed: BUSY -> WRAPUP (or AVAILABLE with no
 * wrap-up), the longer crisis wrap-up after a session in `crisis`. Feeds
 * the handling-time average. */
void matcher_counselor_session_over(struct matcher *m, struct mcounselor *k, int crisis,
                                    int64_t now);

/* Time. */
void matcher_tick(struct matcher *m, int64_t now);
int64_t matcher_next_deadline(const struct matcher *m); /* INT64_MAX: none */

/* Queue view. The estimate is PROTOCOL.md's: 0 if a counselor is free for
 * this position, else (position - free counselors) x average handling
 * time / counselors online; at least what is left of a preference the
 * client is held for; rounded up to 10 s. */
uint32_t matcher_estimate_s(struct matcher *m, const struct mclient *c,
                            uint32_t position, int64_t now);
/* The same from the figures: `free_now` counselors available or ringing,
 * `online` not away, `handle_ms` the average handling time, `held_ms` what
 * is left of the client's hold (0 none). */
uint32_t matcher_estimate_for(uint32_t position, uint32_t free_now, uint32_t online,
                              int64_t handle_ms, int64_t held_ms);
/* What waiting client `c` is held for while a counselor who is not their
 * preference is free, and `until` when at the latest (HOLD_NONE: nothing). */
enum matcher_hold matcher_held(struct matcher *m, const struct mclient *c, int64_t now,
                               int64_t *until);
const char *matcher_hold_name(enum matcher_hold h); /* NULL for HOLD_NONE */
uint32_t matcher_online(const struct matcher *m);
void matcher_get_stats(const struct matcher *m, int64_t now, struct matcher_stats *s);

#endif
