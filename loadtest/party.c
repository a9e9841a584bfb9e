/* party.c - the people earshot-loadtest plays: counselors that take offers
 * after a think time, decline some and take breaks; clients that ask to
 * talk, hold a session for --session-s and leave. One connection each.
 *
 * Every client's topic is "lt-<slot>-<serial>": the offer a counselor gets
 * names its client, so the time from talk_now to offer is measured exactly
 * and the two sides of a session find each other without a search.
 * Counselors have no skills, so the topic plays no part in matching. */
#include "lt.h"
#include "../client-demo/esclient.h"
#include "../server/auth.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define LT_TOKEN_TTL_S 3600
#define LT_ERRORS_SHOWN 5
/* After the client decides to end, both sides stop sending and wait this
 * long at most for what is in flight: more than the second of audio
 * esclient may hold in a connection's send queue. */
#define LT_QUIET_S 1.5
/* A counselor's think time stays below the ring timeout by this share. */
#define LT_THINK_SHARE 0.8

static struct proto_msg omsg;   /* scratch for outgoing messages */
static uint64_t shown;          /* errors and closes shown on stderr */

static const struct esc_handlers handlers;

static const char *party_name(const struct party *p, char *buf, size_t cap)
{
	if (p->counselor)
		snprintf(buf, cap, "counselor lt-k-%d", p->index);
	else
		snprintf(buf, cap, "client %u", p->serial);
	return buf;
}

static void send_type(struct party *p, enum proto_type t)
{
	memset(&omsg, 0, sizeof omsg);
	omsg.type = t;
	esc_send(p->c, &omsg);
}

static void send_state(struct party *p, enum proto_state st)
{
	memset(&omsg, 0, sizeof omsg);
	omsg.type = PT_SET_STATE;
	omsg.state = st;
	esc_send(p->c, &omsg);
}

static void timer_after(struct party *p, double s)
{
	ev_timer_stop(lt.loop, &p->timer);
	ev_timer_set(&p->timer, s, 0.0);
	ev_timer_start(lt.loop, &p->timer);
}

static void brk_after(struct party *p, double s)
{
	ev_timer_stop(lt.loop, &p->brk);
	ev_timer_set(&p->brk, s, 0.0);
	ev_timer_start(lt.loop, &p->brk);
}

static void mark_ready(struct party *p)
{
	if (!p->ready) {
		p->ready = 1;
		lt.ready++;
	}
}

static void mark_gone(struct party *p)
{
	if (p->live) {
		p->live = 0;
		lt.live_clients--;
	}
}

/* The client an offer's topic names, if it is still waiting. */
static struct party *client_named(int slot, uint32_t serial)
{
	if (slot < 0 || slot >= lt.nclients)
		return NULL;
	struct party *c = &lt.clients[slot];
	return c->serial == serial && c->st == P_WAITING ? c : NULL;
}

/* ---- counselors -------------------------------------------------------------- */

static void take_break(struct party *k)
{
	k->break_due = 0;
	k->on_break = 1;
	send_state(k, ST_AWAY);
	brk_after(k, lt.o.away_for);
}

static void decide(struct party *k)
{
	memset(&omsg, 0, sizeof omsg);
	omsg.offer_id = k->offer_id;
	if (lt.o.decline > 0 && lt_uniform() < lt.o.decline) {
		omsg.type = PT_DECLINE;
		lt.c.declined++;
		k->st = P_READY;
	} else {
		omsg.type = PT_ACCEPT;
		lt.c.accepted++;
		struct party *c = client_named(k->offer_slot, k->offer_serial);
		k->cand = c;
		if (c)
			c->cand = k;
	}
	esc_send(k->c, &omsg);
}

static void on_offer(struct party *k, const struct proto_msg *m)
{
	int slot;
	unsigned serial;
	lt.c.offers++;
	k->offer_slot = -1;
	if (sscanf(m->topic, "lt-%d-%u", &slot, &serial) == 2) {
		k->offer_slot = slot;
		k->offer_serial = serial;
	}
	struct party *c = client_named(k->offer_slot, k->offer_serial);
	if (!c) {
		lt.c.offers_unknown++;
	} else if (!c->offered) {
		c->offered = 1;
		lt.c.first_offers++;
		if (lt.measuring)
			hist_add(&lt.h_offer, now_ns() - c->t_talk);
	}
	k->st = P_RINGING;
	k->offer_id = m->offer_id;
	if (lt.o.think_ms <= 0) {
		decide(k);
		return;
	}
	double think = lt_exp(lt.o.think_ms / 1000.0), cap = LT_THINK_SHARE * m->ring_s;
	timer_after(k, think < cap ? think : cap);
}

static void on_offer_gone(struct party *k, const struct proto_msg *m)
{
	if (k->st != P_RINGING || m->offer_id != k->offer_id)
		return;
	ev_timer_stop(lt.loop, &k->timer);
	lt.c.offers_gone++;
	k->st = P_READY;
	k->cand = NULL;
}

static void on_state(struct party *k, const struct proto_msg *m)
{
	char name[48];
	k->kstate = m->state;
	if (lt.phase >= PH_ENDING || lt.o.load == LOAD_IDLE)
		return;
	switch (m->state) {
	case ST_AVAILABLE:
		mark_ready(k);
		run_check();
		if (k->break_due && k->st == P_READY)
			take_break(k);
		break;
	case ST_WRAPUP:
		/* The wrap-up pause is for people: the generator is ready at once. */
		if (k->break_due)
			take_break(k);
		else
			send_state(k, ST_AVAILABLE);
		break;
	case ST_AWAY:
		if (k->on_break)
			break;
		/* Missed offers mean we answered too slowly: say so, and come back. */
		note("%s: set away (%s); going available again", party_name(k, name, sizeof name),
		     m->reason);
		send_state(k, ST_AVAILABLE);
		break;
	default:
		break;
	}
}

/* Breaks: an exponential wait of mean --away-every, then --away-for away,
 * taken when the counselor is next free (never mid-offer or mid-session). */
static void brk_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct party *k = w->data;
	if (k->on_break) {
		k->on_break = 0;
		send_state(k, ST_AVAILABLE);
		brk_after(k, lt_exp(lt.o.away_every));
		return;
	}
	k->break_due = 1;
	if (k->st == P_READY && k->kstate == ST_AVAILABLE)
		take_break(k);
}

void party_breaks(int on)
{
	if (lt.o.away_every <= 0)
		return;
	for (int i = 0; i < lt.ncounselors; i++) {
		struct party *k = &lt.counselors[i];
		if (on) {
			brk_after(k, lt_exp(lt.o.away_every));
		} else {
			ev_timer_stop(lt.loop, &k->brk);
			k->break_due = 0;
		}
	}
}

/* ---- clients ----------------------------------------------------------------- */

static void talk_now(struct party *c)
{
	memset(&omsg, 0, sizeof omsg);
	omsg.type = PT_TALK_NOW;
	omsg.mode = lt.o.mode;
	snprintf(omsg.topic, sizeof omsg.topic, "lt-%d-%u", c->index, c->serial);
	c->t_talk = now_ns();
	c->st = P_WAITING;
	lt.c.talk_now++;
	esc_send(c->c, &omsg);
}

static void send_end(struct party *c)
{
	ev_timer_stop(lt.loop, &c->timer);
	c->st = P_ENDING;
	send_type(c, PT_END);
}

void party_finish(struct party *c)
{
	if (c->st != P_IN_SESSION)
		return;
	c->st = P_QUIET;
	c->sending = c->texting = 0;
	if (c->peer)
		c->peer->sending = c->peer->texting = 0;
	timer_after(c, LT_QUIET_S);
	party_quiet_check(c);
}

void party_quiet_check(struct party *c)
{
	if (c->st == P_QUIET && traffic_settled(c))
		send_end(c);
}

/* ---- sessions ---------------------------------------------------------------- */

static void session_start(struct party *p, const struct proto_msg *m)
{
	char name[48];
	int64_t now = now_ns();
	ev_timer_stop(lt.loop, &p->timer);
	snprintf(p->session_id, sizeof p->session_id, "%s", m->session_id);
	p->peer = p->cand && p->cand->cand == p ? p->cand : NULL;
	if (traffic_start(p, m) != 0) {
		abort_run("%s: session_start without usable voice keys (mode %s, profile '%s')",
		          party_name(p, name, sizeof name), proto_mode_name(m->mode),
		          m->srtp_profile);
		return;
	}
	p->st = P_IN_SESSION;
	if (p->peer && p->peer->st == P_IN_SESSION &&
	    strcmp(p->peer->session_id, p->session_id) == 0)
		lt.c.pairs++;
	if (!p->counselor) {
		lt.c.started++;
		if (lt.measuring)
			hist_add(&lt.h_start, now - p->t_talk);
		if (lt.phase >= PH_ENDING)
			party_finish(p);
		else if (lt.o.session_s > 0)
			timer_after(p, lt.o.session_s);
	}
	run_check();
}

/* What is owed to `p` and never came is lost; the session's state goes. */
static void leave_session(struct party *p)
{
	if (p->text_expected > p->text_received)
		lt.c.text_lost += p->text_expected - p->text_received;
	p->text_expected = p->text_received = p->text_sent = 0;
	p->text_delivered = 0;
	traffic_stop(p);
	ev_timer_stop(lt.loop, &p->timer);
	if (p->peer && p->peer->peer == p)
		p->peer->peer = NULL;
	p->peer = p->cand = NULL;
	p->session_id[0] = '\0';
}

static int in_session(const struct party *p)
{
	return p->st == P_IN_SESSION || p->st == P_QUIET || p->st == P_ENDING;
}

static void session_end(struct party *p)
{
	if (!in_session(p))
		return;
	if (!p->counselor) {
		lt.c.ended++;
		if (p->st != P_ENDING)
			lt.c.ended_early++;
	}
	leave_session(p);
	if (p->counselor) {
		p->st = P_READY;
		return;
	}
	party_close(p);
	run_check();
}

/* ---- messages ---------------------------------------------------------------- */

static void on_error_msg(struct party *p, const struct proto_msg *m)
{
	char name[48];
	/* Audio still queued when the session ended reaches a server that
	 * no longer takes it: expected, counted apart. */
	if (strcmp(m->code, "wrong_state") == 0 && !m->ref[0] && p->st != P_IN_SESSION) {
		lt.late_refusals++;
		return;
	}
	measure_error(m->code);
	if (shown++ < LT_ERRORS_SHOWN)
		note("%s: error %s (%s)%s%s", party_name(p, name, sizeof name), m->code, m->reason,
		     m->ref[0] ? " answering " : "", m->ref);
	if (p->counselor && p->st == P_RINGING &&
	    (strcmp(m->ref, "accept") == 0 || strcmp(m->ref, "decline") == 0)) {
		p->st = P_READY;
		p->cand = NULL;
	} else if (!p->counselor && p->st == P_WAITING && strcmp(m->ref, "talk_now") == 0) {
		/* Refused a place in the queue: this person leaves. */
		party_close(p);
		run_check();
	}
}

static void on_welcome(struct party *p, const struct proto_msg *m)
{
	p->st = P_READY;
	if (p->counselor) {
		p->kstate = m->state;
		if (lt.o.load == LOAD_IDLE)
			mark_ready(p);
		else
			send_state(p, ST_AVAILABLE);
	} else if (lt.o.load == LOAD_IDLE) {
		mark_ready(p);
	} else if (lt.phase >= PH_AFTER) {
		party_close(p);
	} else {
		talk_now(p);
	}
	run_check();
}

static void on_message(struct esc_conn *c, const struct proto_msg *m, const char *raw,
                       size_t rawlen, void *ud)
{
	(void)c;
	(void)raw;
	(void)rawlen;
	struct party *p = ud;
	/* A connection we are closing has nothing more to say to us. */
	if (p->st == P_CLOSING || p->st == P_CLOSED)
		return;
	switch (m->type) {
	case PT_WELCOME: on_welcome(p, m); break;
	case PT_OFFER: on_offer(p, m); break;
	case PT_OFFER_GONE: on_offer_gone(p, m); break;
	case PT_STATE: on_state(p, m); break;
	case PT_SESSION_START: session_start(p, m); break;
	case PT_SESSION_END: session_end(p); break;
	case PT_MSG: traffic_text(p, m); break;
	case PT_DELIVERED: traffic_delivered(p, m); break;
	case PT_ERROR: on_error_msg(p, m); break;
	case PT_AUDIO:
		if (strcmp(m->audio, "stopped") == 0)
			lt.audio_stopped++;
		break;
	case PT_GOING_AWAY: lt.going_away++; break;
	default: break;
	}
}

static void on_binary(struct esc_conn *c, const uint8_t *buf, size_t len, void *ud)
{
	(void)c;
	struct party *p = ud;
	if (p->st != P_CLOSING && p->st != P_CLOSED)
		traffic_binary(p, buf, len);
}

static void on_open(struct esc_conn *c, void *ud)
{
	(void)c;
	struct party *p = ud;
	char name[48];
	memset(&omsg, 0, sizeof omsg);
	omsg.type = PT_HELLO;
	omsg.role = p->counselor ? ROLE_COUNSELOR : ROLE_CLIENT;
	if (p->counselor) {
		struct auth_identity id;
		memset(&id, 0, sizeof id);
		id.role = ROLE_COUNSELOR;
		snprintf(id.sub, sizeof id.sub, "lt-k-%d", p->index);
		if (auth_mint(&id, lt.o.secret, (int64_t)time(NULL), LT_TOKEN_TTL_S, omsg.token,
		              sizeof omsg.token) != 0) {
			abort_run("%s: cannot mint a token", party_name(p, name, sizeof name));
			return;
		}
	}
	esc_send(p->c, &omsg);
}

static void on_closed(struct esc_conn *c, int code, const char *why, void *ud)
{
	(void)c;
	struct party *p = ud;
	char name[48];
	int expected = p->st == P_CLOSING || lt.phase == PH_CLOSING;
	if (in_session(p)) {
		if (!p->counselor) {
			lt.c.ended++;
			lt.c.ended_early++;
		}
		leave_session(p);
	}
	ev_timer_stop(lt.loop, &p->timer);
	ev_timer_stop(lt.loop, &p->brk);
	mark_gone(p);
	p->st = P_CLOSED;
	if (!expected) {
		party_name(p, name, sizeof name);
		if (lt.phase == PH_SETUP) {
			abort_run("setup failed: %s: connection closed (code %d: %s)", name, code, why);
			return;
		}
		lt.c.unexpected_closes++;
		if (shown++ < LT_ERRORS_SHOWN)
			note("%s: connection closed (code %d: %s)", name, code, why);
	}
	run_closed();
}

static const struct esc_handlers handlers = {
	.open = on_open, .message = on_message, .binary = on_binary, .closed = on_closed,
};

/* ---- life and death of a connection ------------------------------------------ */

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct party *p = w->data;
	if (p->st == P_RINGING)
		decide(p);
	else if (p->st == P_IN_SESSION)
		party_finish(p);
	else if (p->st == P_QUIET)
		send_end(p);   /* what was in flight did not all land: loss */
}

/* A fresh client from the pool, or NULL when the pool is exhausted. */
struct party *party_client_new(void)
{
	if (!lt.nfree)
		return NULL;
	int slot = lt.free_slots[--lt.nfree];
	struct party *p = &lt.clients[slot];
	int64_t phase = p->phase_ns;
	memset(p, 0, sizeof *p);
	p->index = slot;
	p->phase_ns = phase;
	p->serial = ++lt.next_serial;
	p->offer_slot = -1;
	ev_init(&p->timer, timer_cb);
	p->timer.data = p;
	return p;
}

/* Counselors are set up once (their slots never go back). */
int party_connect(struct party *p)
{
	char err[256], name[48];
	if (p->counselor) {
		ev_init(&p->timer, timer_cb);
		p->timer.data = p;
		ev_init(&p->brk, brk_cb);
		p->brk.data = p;
		p->offer_slot = -1;
	} else {
		p->live = 1;
		lt.live_clients++;
	}
	p->st = P_CONNECTING;
	/* Counselors by index and clients by serial, in turn over the nodes:
	 * on a cluster most offers then cross nodes, as they would. */
	const char *url = lt.o.urls[(p->counselor ? (uint32_t)p->index : p->serial) %
	                            (uint32_t)lt.o.nurls];
	p->c = esc_connect(lt.x, url, &handlers, p, err, sizeof err);
	if (!p->c) {
		abort_run("%s: %s", party_name(p, name, sizeof name), err);
		return -1;
	}
	return 0;
}

void party_close(struct party *p)
{
	if (p->st == P_CLOSED || p->st == P_FREE)
		return;
	ev_timer_stop(lt.loop, &p->timer);
	mark_gone(p);
	p->st = P_CLOSING;
	if (p->c && !esc_is_closed(p->c))
		esc_close(p->c);
}

/* Outside any of its callbacks: a connection is freed only here. */
void party_reap(void)
{
	for (int i = 0; i < lt.nclients; i++) {
		struct party *p = &lt.clients[i];
		if (p->st != P_CLOSED)
			continue;
		if (p->c) {
			lt.dropped_freed += esc_binary_dropped(p->c);
			esc_conn_free(p->c);
			p->c = NULL;
		}
		p->st = P_FREE;
		lt.free_slots[lt.nfree++] = i;
	}
}
