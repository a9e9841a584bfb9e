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
#define RESUME_SECRET_LEN 32           /* hex */
/* Binary frames on a node link for a person resumed on another node (and
 * not a client in a session across nodes): the connection id's top bit. */
#define LINK_RESUMED 0x80000000u

struct session;
struct pipe;
struct pipe_set;

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
	/* Resume after a dropped connection (resume.c). On the person's home
	 * node (where they first connected): `secret` is in their resume token;
	 * a `ghost` lost its connection and is kept for the grace (`grace`
	 * timer), `ended` holds the session_end it missed meanwhile; a person
	 * who came back on another node is reached through `proxy` (that
	 * node's link) as its connection `proxy_conn` there. On that other
	 * node, the connection forwards everything to its `home` pipe as the
	 * home's connection `home_conn`. */
	char secret[RESUME_SECRET_LEN + 1];
	int anon;                      /* a dev-mode client without a token */
	int ghost;
	ev_timer grace;
	struct proto_msg *ended;
	struct conn *proxy;
	uint32_t proxy_conn;
	struct pipe *home;
	uint32_t home_conn;
	enum proto_role resume_role;   /* `home`: the role asked for, should it fail */
};

/* A chat message relayed and not yet acknowledged by its reader: sent
 * again should they resume after a dropped connection. */
struct chat_item {
	struct chat_item *next;
	int64_t seq;
	char text[];
};

struct chat_buf {
	struct chat_item *head, *tail;
	uint32_t n;
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
	int64_t last_id[2];            /* per sender: the last `msg` id taken, -1 none */
	int64_t acked[2];              /* per sender: its last seq the reader acked */
	struct chat_buf unacked[2];    /* per reader: relayed, not yet acked */
	int voice;                     /* relay is live */
	struct relay relay;
	int64_t crisis_at;             /* when it was flagged in crisis (Unix s), 0 not */
	int crisis_by;                 /* the side that flagged it */
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
/* An encoded message, to wherever `c` is connected now. */
void hub_send_raw(struct conn *c, const char *json, size_t len);
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
/* A text or binary frame from `c`, as if from its own socket. */
void hub_text(struct conn *c, const char *buf, size_t len);
void hub_binary(struct conn *c, const uint8_t *buf, size_t len);
/* `welcome` for `c`, as at hello (`resumed`: after a dropped connection). */
void hub_welcome(struct conn *c, int resumed);
/* Admit `c` as `role` with its identity checked: replace an earlier
 * connection of the same person, welcome, roster. */
void hub_admit(struct conn *c, enum proto_role role);
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

/* A party of `s` lost its connection (kept for the resume grace), or is
 * back: the other side is told; back, it gets the session as it is now
 * (fresh SRTP keys, what it has not acknowledged). */
void session_party_lost(struct session *s, struct conn *c);
void session_resume(struct session *s, struct conn *c);

/* resume.c - resume after a dropped connection (PROTOCOL.md). */
void resume_init(struct conn *c);
/* `c`'s connection closed (`peer_code` as ws.h's closed): 1 when it is kept
 * for the grace, 0 when it is gone now. */
int resume_keep(struct conn *c, int peer_code);
/* A hello with `resume` from `c`, whose identity is checked (`anon`: no
 * token): 1 when taken care of (resumed, or asked of its home node), 0 when
 * `c` is to be admitted afresh. */
int resume_hello(struct conn *c, const struct proto_msg *hello, int anon);
/* `c` is going: its grace and what it kept. */
void resume_drop(struct conn *c);
/* The home side: frames from a link (`resume`, `up`, `gone`, binary). */
void resume_link_text(struct conn *link, const char *op, uint32_t conn, const char *rest,
                      size_t len);
void resume_link_media(struct conn *link, uint32_t conn, const uint8_t *buf, size_t len);
/* The link is gone: people reached through it lost their connection. */
void resume_link_gone(struct conn *link);
/* The other side: frames from the home's pipe (`down`, `bye`, `nope`,
 * binary), and the pipe gone. */
void resume_pipe_text(struct hub *h, struct pipe *p, const char *op, uint32_t conn,
                      const char *rest);
void resume_pipe_media(struct hub *h, struct pipe *p, uint32_t conn, const uint8_t *buf,
                       size_t len);
void resume_pipe_gone(struct hub *h, struct pipe *p);
/* From a connection resumed here to its home. */
void resume_up(struct conn *c, const char *buf, size_t len, int binary);
void resume_home_gone(struct conn *c);

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
/* A frame "op conn rest" on a ROLE_NODE link. */
void span_link_send(struct conn *link, const char *op, uint32_t conn, const char *rest,
                    size_t len);
/* An audio frame for `id` on a ROLE_NODE link: as ws_send_media. */
int span_link_media(struct conn *link, uint32_t id, const uint8_t *buf, size_t len);
/* The pipes to other nodes, opened on first use; NULL when they cannot be. */
struct pipe_set *span_pipes(struct hub *h);

#endif
