/* hub_int.h - the hub's internal types, shared by hub.c (connections,
 * authentication, queue, operators) and session.c (sessions and chat).
 * Nothing outside the hub includes this. */
#ifndef EARSHOT_HUB_INT_H
#define EARSHOT_HUB_INT_H

#include <ev.h>
#include <stdint.h>

#include "../proto/proto.h"
#include "auth.h"
#include "config.h"
#include "list.h"
#include "metrics.h"
#include "relay.h"
#include "slot.h"
#include "store.h"
#include "ws.h"

#define HUB_BUCKETS 16384

struct session;

/* One peer connection. Lives from the transport's `open` until the loop
 * pass after its `closed` (practice: never free inside its own callback). */
struct conn {
	struct list link;              /* hub->conns */
	struct conn *hnext;            /* id hash chain */
	struct hub *hub;
	struct ws_conn *ws;            /* NULL once the transport closed it */
	uint32_t id;
	enum proto_role role;          /* ROLE_NONE until hello */
	enum proto_state state;        /* client / operator state; counselors: kstate */
	struct auth_identity ident;
	int64_t opened_ms;
	enum proto_state kstate;       /* counselors: the store's last word */
	struct session *session;
	uint32_t sent_pos, sent_wait, sent_online; /* last `queue` pushed */
	const char *sent_for;
	int crisis_wrapup;             /* counselors: their last session was in crisis */
	char rate_for[PROTO_SUB_MAX + 1]; /* counselor a rating would go to */
	char rate_topic[PROTO_TOPIC_MAX + 1]; /* and that session's topic */
	int subscribed;
	int64_t media_err_ms;          /* last wrong_state for a stray binary frame */
	/* Sessions across nodes (span.c). On the session's node, a client
	 * connected elsewhere: no ws, its frames travel over `pipe` to its
	 * connection `rconn` there. On the client's node, a client whose
	 * session runs elsewhere: `via` is that node's link (a ROLE_NODE conn). */
	struct pipe *pipe;
	uint32_t rconn;
	struct store_event *matched;   /* the match that brought it here (malloc'd) */
	struct conn *rnext;            /* remote-client hash chain */
	struct conn *via;
	char via_session[PROTO_ID_MAX + 1]; /* that session's id, from its session_start */
};

struct session {
	struct list link;              /* hub->sessions */
	struct hub *hub;
	char id[PROTO_ID_MAX + 1];
	struct conn *client, *counselor;
	enum proto_mode mode;
	char topic[PROTO_TOPIC_MAX + 1];
	struct slot slot;
	ev_timer timer;
	int64_t last_seq[2];           /* per sender: 0 client, 1 counselor */
	int voice;                     /* relay is live */
	struct relay relay;
	int64_t crisis_at;             /* when it was flagged in crisis (Unix s), 0 not */
};

struct hub {
	struct ev_loop *loop;
	struct config cfg;
	struct ws_server *ws;
	struct store *store;
	char node[STORE_NODE_MAX + 1]; /* this node's name in the cluster */
	struct metrics metrics;
	struct list conns, sessions;
	struct conn *buckets[HUB_BUCKETS];
	struct conn *rbuckets[HUB_BUCKETS]; /* remote clients by rconn */
	struct pipe_set *pipes;        /* links to other nodes (Redis only) */
	struct conn *dead;             /* closed, freed after this loop pass */
	uint32_t next_id;
	uint32_t nsessions;
	int64_t started_ms;
	int draining;
	/* Session clocks in ms, already divided by time-scale. */
	int64_t slot_ms, grace_ms, marks_ms[CONFIG_WARN_MARKS_MAX];
	ev_timer house_timer, stats_timer;
	ev_idle reaper;
	struct proto_stats last_stats; /* last pushed to operators */
};

/* hub.c */
int64_t hub_now_ms(void);
void hub_send(struct conn *c, const struct proto_msg *m);
/* An audio frame to `c`: 0 queued, 1 queued over an older dropped one, -1 not. */
int hub_send_media(struct conn *c, const uint8_t *buf, size_t len);
struct conn *hub_conn_by_id(struct hub *h, uint32_t id);
/* A connection with no transport of its own (a remote client), hashed and
 * listed; NULL when out of memory. */
struct conn *hub_conn_new(struct hub *h);
/* The connection is gone: consequences, then freed after this loop pass. */
void hub_conn_gone(struct conn *c);
/* A decoded message from `c`, as if it came from its own socket. */
void hub_dispatch(struct conn *c, const struct proto_msg *m);
void hub_error(struct conn *c, const char *code, const char *reason,
               enum proto_type ref);
void hub_stats_changed(struct hub *h);

/* stats.c: the service's figures, as operators see them. */
void hub_stats_fill(struct hub *h, struct proto_stats *s);

/* session.c */
void session_start(struct hub *h, struct conn *client, struct conn *counselor,
                   const char *topic, enum proto_mode mode);
/* Close for `reason`; `gone` (may be NULL) is a party that already left and
 * is told nothing. */
void session_close(struct session *s, const char *reason, struct conn *gone);
void session_on_message(struct conn *c, const struct proto_msg *m);
void session_rate(struct conn *c, const struct proto_msg *m);
/* A binary frame from a party; returns 0, or -1 if `c` is in no voice session. */
int session_media(struct conn *c, const uint8_t *buf, size_t len);
/* About once a second: silence notices and link reports. */
void session_media_tick(struct session *s, int64_t now);

/* span.c - sessions across nodes. The session's node (the owner): */
void span_free(struct hub *h);
/* A session with a client on another node is starting: the client as a
 * conn here, attached over the link to its node; NULL on failure. */
struct conn *span_remote_client(struct hub *h, const struct store_event *matched,
                                const char *counselor_sub);
void span_send(struct conn *r, const char *json, size_t len);
int span_send_media(struct conn *r, const uint8_t *buf, size_t len);
/* The remote client's session closed (not by its leaving): its node gets
 * `end` (the session_end) and who to rate, in one frame, and it goes. */
void span_release(struct conn *r, const char *counselor_sub, const struct proto_msg *end);
/* The client's node (the host), for frames on a ROLE_NODE conn: */
void span_host_text(struct conn *link, const char *buf, size_t len);
void span_host_media(struct conn *link, const uint8_t *buf, size_t len);
/* A local client in a session elsewhere sent a session message or audio. */
void span_forward(struct conn *c, const char *raw, size_t len);
void span_forward_media(struct conn *c, const uint8_t *buf, size_t len);
/* A local client in a session elsewhere disconnected. */
void span_client_gone(struct conn *c);
/* A ROLE_NODE link closed: the sessions it carried have ended. */
void span_link_gone(struct conn *link);

#endif
