/* store.h - presence and the queue behind one function table, with two
 * backends: memory (one node: the pure matcher, store_mem.c) and Redis
 * (many nodes sharing one queue: the same rules in Lua, store_redis.c).
 *
 * The hub names its peers by connection id; the store keeps who waits,
 * who is free and who is offered to whom, and says what must happen
 * through events. Every operation returns at once; its outcome and all
 * its consequences arrive as events, through the callback given when the
 * store was made: the memory backend delivers them before the call
 * returns, Redis when its replies come (in the order the operations were
 * made). Events about a counselor or a waiting client go to the node it is
 * connected to, only.
 *
 * The callback may call back into the store: events are delivered after
 * the store's own state is consistent. */
#ifndef EARSHOT_STORE_H
#define EARSHOT_STORE_H

#include <stdint.h>
#include "../proto/proto.h"

struct ev_loop;
struct config;

#define STORE_NODE_MAX 40
#define STORE_WHO_MAX 32

/* A connection somewhere in the cluster: its node's id and its id there. */
struct store_ref {
	char node[STORE_NODE_MAX + 1];
	uint32_t conn;
};

enum store_ev {
	SE_RESULT,      /* the outcome of `ref` (talk_now, cancel, set_state,
	                 * accept, decline, rate, ratings) sent by `conn`: `err` */
	SE_OFFER,       /* offer `client` (topic, mode, waited_s, crisis,
	                 * talked_before) to counselor `conn` as `offer_id` */
	SE_OFFER_GONE,  /* withdraw `offer_id` from counselor `conn`: `reason` */
	SE_STATE,       /* counselor `conn` is now `state`, because `reason`
	                 * (a break: `for_ms` long) */
	SE_MATCHED,     /* counselor `conn` accepted `client` (topic, mode):
	                 * start the session */
	SE_POSITION,    /* waiting client `conn` is `position` in line; `wait_s`,
	                 * `online` counselors; `waiting_for` a preference */
	SE_STATS,       /* the cluster's figures changed (no `conn`) */
	SE_RATINGS,     /* the feedback `conn` asked for: `ratings` */
};

/* Errors in SE_RESULT; they map to wire error codes. */
enum store_err {
	STORE_OK = 0,
	STORE_WRONG_STATE = -1,   /* "wrong_state" */
	STORE_NO_SUCH_OFFER = -2, /* "no_such_offer" */
	STORE_FULL = -3,          /* "server_busy": the queue is full */
	STORE_DOWN = -4,          /* "store_unavailable": cannot reach Redis */
	STORE_SHIFT_OVER = -5,    /* "shift_over" */
};

struct store_event {
	enum store_ev type;
	uint32_t conn;
	enum proto_type ref;
	int err;
	struct store_ref client;
	char url[256];                 /* SE_MATCHED: the client's node's address */
	char place[96];                /* SE_MATCHED: where the client waited (backend's) */
	int64_t offer_id;
	uint32_t waited_s;
	char topic[PROTO_TOPIC_MAX + 1];
	enum proto_mode mode;
	int crisis;                    /* SE_OFFER */
	int talked_before;             /* SE_OFFER: the counselor they talked with last */
	const char *waiting_for;       /* SE_POSITION: "previous", "topic" or NULL */
	enum proto_state state;
	const char *reason;            /* static string, or NULL */
	int64_t for_ms;                /* SE_STATE: the length of a break */
	uint32_t position, wait_s, online;
	/* SE_RATINGS: the store's, valid during the callback only (too big
	 * to be copied with every event). */
	struct proto_ratings *ratings;
};

typedef void (*store_emit_fn)(void *ctx, const struct store_event *e);

#define STORE_FIGURES_MAX 1024

/* What the operator sees of the queue and the counselors (cluster-wide),
 * and every live node's own figures as it published them. */
struct store_stats {
	uint32_t queue, oldest_wait_s;
	uint32_t by_state[ST__COUNT];
	uint64_t served, abandoned;
	uint64_t ratings_count, ratings_sum;   /* every rating the store keeps */
	uint32_t nnodes;
	struct {
		char node[STORE_NODE_MAX + 1];
		char url[256];             /* where other nodes reach it ("-" unknown) */
		char figures[STORE_FIGURES_MAX];
	} nodes[PROTO_NODES_MAX];      /* sorted by node id */
};

/* What a person asks for when they join the queue. */
struct store_request {
	const char *topic;
	enum proto_mode mode;
	int crisis;            /* may not be safe: ahead of everyone not in crisis */
	int previous;          /* asks for the counselor they talked with last */
	const char *who;       /* their pseudonym (auth_pseudonym), under which the
	                        * store remembers that counselor; "" none */
};

struct store;

struct store_ops {
	const char *name;
	/* Join the queue (the rules: matcher.h); SE_RESULT only on error. */
	void (*client_enqueue)(struct store *s, uint32_t conn, const struct store_request *r);
	/* SE_RESULT for PT_CANCEL: 0 when the client left the queue; an
	 * error when they were no longer in it (a session is starting). */
	void (*client_cancel)(struct store *s, uint32_t conn);
	/* The client disconnected: leave the queue if in it; no result. */
	void (*client_gone)(struct store *s, uint32_t conn);
	/* The waiting client lost their connection (`away` 1: they keep their
	 * place but are offered to nobody) or is back (0); no result. */
	void (*client_away)(struct store *s, uint32_t conn, int away);
	/* A counselor signed in (AWAY; `skills` comma-separated topics) or
	 * disconnected. */
	void (*counselor_add)(struct store *s, uint32_t conn, const char *sub, const char *skills);
	void (*counselor_gone)(struct store *s, uint32_t conn);
	/* `st`: ST_AVAILABLE or ST_AWAY; SE_RESULT only on error. */
	void (*counselor_set)(struct store *s, uint32_t conn, enum proto_state st);
	/* A break of `ms` (matcher.h's take_break); SE_RESULT only on error. */
	void (*counselor_break)(struct store *s, uint32_t conn, int64_t ms);
	/* Accept or decline `offer_id`; SE_RESULT only on error. */
	void (*counselor_answer)(struct store *s, uint32_t conn, int64_t offer_id,
	                         int accept);
	/* An SE_MATCHED whose counselor had gone before it arrived: the client
	 * goes back to their place in line (`present` 0: they are gone too). */
	void (*client_requeue)(struct store *s, const struct store_event *matched, int present);
	/* The counselor's session closed: wrap-up (the crisis one after a
	 * session in `crisis`), or available. */
	void (*counselor_session_over)(struct store *s, uint32_t conn, int crisis);
	/* A client rated a finished session with `counselor` about `topic`
	 * ("" unknown): `score` 1-5, `comment` ("" none), counted for the
	 * counselor, the topic and the service (ratings.h). SE_RESULT for
	 * PT_RATE: 0 once it is counted, or an error (it is then lost). */
	void (*rate)(struct store *s, uint32_t conn, const char *counselor, const char *topic,
	             int score, const char *comment);
	/* SE_RATINGS for `conn`: `counselor`'s own feedback, with their recent
	 * comments; or with `counselor` NULL every counselor's (the first
	 * PROTO_RATED_MAX by sub) and every topic's, without comments. An
	 * error comes as SE_RESULT for PT_RATINGS. */
	void (*ratings)(struct store *s, uint32_t conn, const char *counselor);
	/* The latest known figures (Redis: refreshed four times a second). */
	void (*stats)(struct store *s, struct store_stats *out);
	/* This node's own figures, a line the hub writes and reads back from
	 * `stats` (sessions, connections, ...): shared with its presence. */
	void (*publish)(struct store *s, const char *figures);
	/* Whether the store can take new work now. */
	int (*up)(struct store *s);
	void (*free)(struct store *s);
};

struct store {
	const struct store_ops *ops;
};

/* The rules' parameters, in ms (session clocks already time-scaled). */
struct store_config {
	int64_t ring_ms, wrapup_ms, crisis_wrapup_ms, handle_ms, redecline_ms;
	int max_missed;
	uint32_t max_queue;
	int64_t topic_wait_ms, previous_wait_ms;
	int64_t memory_ms;             /* how long who talked with whom is kept */
	uint32_t shift_sessions;       /* 0: no limit */
	int64_t shift_ms;              /* 0: no limit */
};

/* The memory backend: the pure matcher with a timer on `loop`; every
 * connection is on this node, `node`. */
struct store *store_mem_new(struct ev_loop *loop, const struct store_config *cfg,
                            const char *node, store_emit_fn emit, void *ctx);

/* The Redis backend at `url` (redis://host[:port][/db]) as node `node`,
 * reached by other nodes at `node_url`, whose presence expires `ttl_ms`
 * after its last renewal. Connects (and
 * reconnects, with backoff) in the background: until it is ready, new
 * work is refused with STORE_DOWN. NULL with `err` set on a bad url. */
struct store *store_redis_new(struct ev_loop *loop, const struct store_config *cfg,
                              const char *url, const char *node, const char *node_url,
                              int64_t ttl_ms,
                              store_emit_fn emit, void *ctx, char *err, size_t errlen);

#endif
