/* session.c - a session between a client and a counselor: the timed slot
 * and its warnings, chat relay with sequence numbers and delivery
 * acknowledgements, typing, the end, and the rating that may follow.
 * Message text passes through and is never stored or logged. */
#include "hub_int.h"
#include "log.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void audio_notice(struct session *s, int side, const char *state);

/* Relayed messages a reader has not acknowledged, kept for a resume: at
 * most this many per reader (a reader that never acks loses the oldest). */
#define SESSION_UNACKED_MAX 256

_Static_assert(RELAY_DROP_STALE - RELAY_DROP_AUTH == MD_STALE - MD_AUTH &&
               RELAY_VERDICTS - RELAY_DROP_AUTH == MD_NO_SESSION - MD_AUTH &&
               RELAY_DROP_NOT_OPUS - RELAY_DROP_AUTH == MD_NOT_OPUS - MD_AUTH,
               "metrics_media_drop lists the relay's drops in relay_verdict's order");
_Static_assert(sizeof(((struct proto_msg *)0)->tx_key) == sizeof(((struct relay_keys *)0)->tx),
               "a base64 SRTP key fits the message field exactly");

static struct conn *peer_of(const struct session *s, const struct conn *c)
{
	return c == s->client ? s->counselor : s->client;
}

static uint32_t to_peer_s(const struct hub *h, int64_t ms)
{
	int64_t scale = h->cfg.dev_mode && h->cfg.time_scale > 1 ? h->cfg.time_scale : 1;
	return (uint32_t)((ms * scale + 500) / 1000);
}

static void send_both(struct session *s, const struct proto_msg *m)
{
	if (s->client)
		hub_send(s->client, m);
	if (s->counselor)
		hub_send(s->counselor, m);
}

static void arm_timer(struct session *s)
{
	int64_t next = slot_next_deadline(&s->slot);
	ev_timer_stop(s->hub->loop, &s->timer);
	if (next == INT64_MAX)
		return;
	int64_t delay = next - hub_now_ms();
	ev_timer_set(&s->timer, delay > 0 ? (double)delay / 1000.0 : 0.0, 0.0);
	ev_timer_start(s->hub->loop, &s->timer);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct session *s = w->data;
	int64_t rem;
	enum slot_event ev;
	while ((ev = slot_advance(&s->slot, hub_now_ms(), &rem)) != SLOT_EV_NONE) {
		struct proto_msg m = { .type = PT_NONE };
		if (ev == SLOT_EV_WARNING) {
			m.type = PT_SLOT_WARNING;
			m.remaining_s = to_peer_s(s->hub, rem);
			send_both(s, &m);
		} else if (ev == SLOT_EV_OVER) {
			m.type = PT_SLOT_OVER;
			m.grace_s = (uint32_t)s->hub->cfg.goodbye_grace;
			send_both(s, &m);
			log_info("session %s: slot over, goodbye grace", s->id);
		} else {
			session_close(s, "slot_over", NULL);
			return; /* s is freed */
		}
	}
	arm_timer(s);
}

/* Fresh keys for every direction of both legs. Without them the session
 * goes on as text: better than no session for someone who waited. */
static void start_voice(struct session *s, struct relay_keys keys[2])
{
	const struct config *cfg = &s->hub->cfg;
	struct relay_limits lim = {
		.max_packet = (size_t)cfg->media_max_packet,
		.max_pps = cfg->media_max_pps,
		.silence_ms = (int64_t)cfg->silence_timeout * 1000,
		.report_ms = (int64_t)cfg->link_report * 1000,
		.stale_ms = cfg->media_stale_ms,
	};
	enum media_profile p = MEDIA_GCM;
	media_profile_parse(cfg->srtp_profile, &p);
	if (relay_init(&s->relay, p, &lim, hub_now_ms(), keys) != 0) {
		log_error("session %s: cannot set up SRTP; continuing as text", s->id);
		s->mode = MODE_TEXT;
		return;
	}
	s->voice = 1;
}

/* ---- what a reader has not acknowledged ---- */

static void unacked_push(struct chat_buf *b, int64_t seq, const char *text)
{
	size_t len = strlen(text);
	struct chat_item *it = malloc(sizeof *it + len + 1);
	if (!it)
		return;
	it->next = NULL;
	it->seq = seq;
	memcpy(it->text, text, len + 1);
	if (b->tail)
		b->tail->next = it;
	else
		b->head = it;
	b->tail = it;
	if (++b->n > SESSION_UNACKED_MAX) {
		struct chat_item *old = b->head;
		b->head = old->next;
		b->n--;
		free(old);
	}
}

/* The reader acknowledged `seq`, and so everything before it. */
static void unacked_drop(struct chat_buf *b, int64_t seq)
{
	while (b->head && b->head->seq <= seq) {
		struct chat_item *it = b->head;
		b->head = it->next;
		b->n--;
		free(it);
	}
	if (!b->head)
		b->tail = NULL;
}

static int side_of(const struct session *s, const struct conn *c)
{
	return c == s->counselor;
}

/* `crisis` to `side`: who flagged it, and the person gets the referral. */
static void send_crisis(struct session *s, int side)
{
	struct proto_msg m = { .type = PT_CRISIS };
	snprintf(m.who, sizeof m.who, "%s", s->crisis_by == side ? "you" : "peer");
	if (!side)
		config_referral_for(&s->hub->cfg, s->topic, m.referral, sizeof m.referral);
	hub_send(side ? s->counselor : s->client, &m);
}

/* `session_start` to `side`: the session as it is now, with that party's
 * SRTP keys (NULL: none); `resumed`, with what it needs to carry on. */
static void send_start(struct session *s, int side, const struct relay_keys *keys, int resumed)
{
	struct hub *h = s->hub;
	struct proto_msg m = { .type = PT_SESSION_START, .mode = s->mode,
	                       .slot_s = (uint32_t)h->cfg.slot_length,
	                       .remaining_s = to_peer_s(h, slot_remaining(&s->slot, hub_now_ms())),
	                       .resumed = resumed, .last_id = s->last_id[side],
	                       .acked = s->acked[side] };
	snprintf(m.session_id, sizeof m.session_id, "%s", s->id);
	snprintf(m.topic, sizeof m.topic, "%s", s->topic);
	snprintf(m.name, sizeof m.name, "%s", (side ? s->client : s->counselor)->ident.name);
	if (keys) {
		snprintf(m.srtp_profile, sizeof m.srtp_profile, "%s",
		         media_profile_name(s->relay.profile));
		memcpy(m.tx_key, keys->tx, sizeof m.tx_key);
		memcpy(m.rx_key, keys->rx, sizeof m.rx_key);
	}
	hub_send(side ? s->counselor : s->client, &m);
	memset(m.tx_key, 0, sizeof m.tx_key);
	memset(m.rx_key, 0, sizeof m.rx_key);
}

void session_start(struct hub *h, struct conn *client, struct conn *counselor,
                   const char *topic, enum proto_mode mode)
{
	struct session *s = calloc(1, sizeof *s);
	if (!s) {
		log_error("out of memory starting a session");
		return;
	}
	unsigned char rnd[8];
	if (RAND_bytes(rnd, sizeof rnd) != 1)
		abort();
	snprintf(s->id, sizeof s->id, "s%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
	         rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	s->hub = h;
	s->client = client;
	s->counselor = counselor;
	s->mode = mode;
	snprintf(s->topic, sizeof s->topic, "%s", topic);
	client->session = counselor->session = s;
	client->state = ST_IN_SESSION;
	s->last_id[0] = s->last_id[1] = -1;
	list_add_tail(&h->sessions, &s->link);
	h->nsessions++;
	slot_start(&s->slot, hub_now_ms(), h->slot_ms, h->marks_ms, h->cfg.warn_count,
	           h->grace_ms);
	ev_init(&s->timer, timer_cb);
	s->timer.data = s;
	arm_timer(s);

	struct relay_keys keys[2];
	if (s->mode == MODE_VOICE)
		start_voice(s, keys);
	for (int side = 0; side < 2; side++)
		send_start(s, side, s->voice ? &keys[side] : NULL, 0);
	memset(keys, 0, sizeof keys);
	log_info("session %s started: client %u, counselor %u, %s", s->id, client->id,
	         counselor->id, proto_mode_name(s->mode));
	if (client->ghost)   /* lost their connection as the counselor accepted */
		session_party_lost(s, client);
}

void session_party_lost(struct session *s, struct conn *c)
{
	struct proto_msg m = { .type = PT_PEER_LOST,
	                       .grace_s = (uint32_t)s->hub->cfg.resume_grace };
	hub_send(peer_of(s, c), &m);
	log_info("session %s: the %s lost their connection", s->id,
	         side_of(s, c) ? "counselor" : "client");
}

/* Back after a dropped connection: the session as it is now, with fresh
 * keys for this party's leg, then what it has not acknowledged. */
void session_resume(struct session *s, struct conn *c)
{
	struct hub *h = s->hub;
	int side = side_of(s, c);
	struct conn *peer = peer_of(s, c);
	struct relay_keys keys;
	int fresh = s->voice && relay_rekey(&s->relay, side, hub_now_ms(), &keys) == 0;
	if (s->voice && !fresh)
		log_error("session %s: no fresh SRTP keys; the voice leg stays down", s->id);
	send_start(s, side, fresh ? &keys : NULL, 1);
	memset(&keys, 0, sizeof keys);
	if (s->crisis_at) {
		send_crisis(s, side);
	} else if (s->slot.phase == SLOT_GOODBYE) {
		int64_t left = s->slot.grace_end - hub_now_ms();
		struct proto_msg over = { .type = PT_SLOT_OVER,
		                          .grace_s = to_peer_s(h, left > 0 ? left : 0) };
		hub_send(c, &over);
	}
	for (const struct chat_item *it = s->unacked[side].head; it; it = it->next) {
		struct proto_msg out = { .type = PT_MSG, .id = -1, .seq = it->seq };
		snprintf(out.text, sizeof out.text, "%s", it->text);
		hub_send(c, &out);
	}
	struct proto_msg back = { .type = PT_PEER_BACK };
	hub_send(peer, &back);
	log_info("session %s: the %s is back (%u messages to read again)", s->id,
	         side ? "counselor" : "client", s->unacked[side].n);
}

void session_close(struct session *s, const char *reason, struct conn *gone)
{
	struct hub *h = s->hub;
	struct proto_msg m = { .type = PT_SESSION_END };
	snprintf(m.session_id, sizeof m.session_id, "%s", s->id);
	snprintf(m.reason, sizeof m.reason, "%s", reason);
	ev_timer_stop(h->loop, &s->timer);
	slot_close(&s->slot);
	struct conn *away = s->counselor && s->counselor != gone && s->counselor->ghost
	                    ? s->counselor : NULL;
	if (s->counselor) {
		s->counselor->session = NULL;
		if (s->counselor != gone)
			hub_send(s->counselor, &m);
		s->counselor->crisis_wrapup = s->crisis_at != 0;
		h->store->ops->counselor_session_over(h->store, s->counselor->id, s->crisis_at != 0);
	}
	if (s->client) {
		s->client->session = NULL;
		if (s->client != gone) {
			s->client->state = ST_ENDED;
			if (s->counselor)
				snprintf(s->client->rate_for, sizeof s->client->rate_for, "%s",
				         s->counselor->ident.sub);
			memcpy(s->client->rate_topic, s->topic, sizeof s->client->rate_topic);
			config_referral_for(&h->cfg, s->topic, m.referral, sizeof m.referral);
			if (s->client->pipe)   /* its node takes it from here, with this */
				span_release(s->client, s->client->rate_for, &m);
			else
				hub_send(s->client, &m);
		}
	}
	log_info("session %s closed: %s%s", s->id, reason, s->crisis_at ? " (in crisis)" : "");
	if (s->voice)
		relay_free(&s->relay);
	for (int side = 0; side < 2; side++)
		unacked_drop(&s->unacked[side], INT64_MAX);
	list_del(&s->link);
	h->nsessions--;
	free(s);
	hub_stats_changed(h);
	/* A counselor away from their desk has nothing left to come back to:
	 * no offers for an empty chair. */
	if (away)
		hub_conn_gone(away);
}

static void relay_msg(struct session *s, struct conn *from, const struct proto_msg *m)
{
	struct hub *h = s->hub;
	if (m->id < 0) {
		hub_error(from, "bad_field", "field 'id' is required (integer >= 0)", m->type);
		return;
	}
	if (strlen(m->text) > (size_t)h->cfg.max_text_bytes) {
		hub_error(from, "too_large", "text longer than max-text-bytes", m->type);
		return;
	}
	int side = side_of(s, from);
	if (m->id <= s->last_id[side]) {
		hub_error(from, "duplicate",
		          "a message with this id or a later one was already taken; not sent again",
		          m->type);
		return;
	}
	s->last_id[side] = m->id;
	struct proto_msg out = { .type = PT_MSG, .id = -1, .seq = ++s->last_seq[side] };
	memcpy(out.text, m->text, sizeof out.text);
	unacked_push(&s->unacked[!side], out.seq, out.text);
	hub_send(peer_of(s, from), &out);
	struct proto_msg ack = { .type = PT_SENT, .id = m->id, .seq = out.seq };
	hub_send(from, &ack);
	h->metrics.chat_relayed++;
}

/* Either side flags a crisis: the clock can no longer end the session,
 * both sides are told (the person with the referral), operators see it in
 * `stats.crises`, and the counselor's wrap-up after it is the longer one.
 * Flagging again changes nothing. */
static void flag_crisis(struct session *s, struct conn *by)
{
	struct hub *h = s->hub;
	if (s->crisis_at)
		return;
	s->crisis_at = (int64_t)time(NULL);
	if (s->crisis_at == 0)
		s->crisis_at = 1;
	s->crisis_by = side_of(s, by);
	slot_hold(&s->slot);
	ev_timer_stop(h->loop, &s->timer);
	h->metrics.crises_flagged++;
	for (int side = 0; side < 2; side++)
		send_crisis(s, side);
	log_warn("session %s flagged in crisis by the %s (counselor %s)", s->id,
	         by == s->client ? "client" : "counselor", s->counselor->ident.sub);
	hub_stats_changed(h);
}

void session_on_message(struct conn *c, const struct proto_msg *m)
{
	struct session *s = c->session;
	if (!s) {
		hub_error(c, "wrong_state", "not in a session", m->type);
		return;
	}
	struct conn *peer = peer_of(s, c);
	switch (m->type) {
	case PT_MSG:
		relay_msg(s, c, m);
		break;
	case PT_ACK: {
		int peer_side = side_of(s, peer);
		if (m->seq < 1 || m->seq > s->last_seq[peer_side]) {
			hub_error(c, "bad_field", "field 'seq' names no message you received", m->type);
			break;
		}
		unacked_drop(&s->unacked[!peer_side], m->seq);
		if (m->seq > s->acked[peer_side])
			s->acked[peer_side] = m->seq;
		struct proto_msg d = { .type = PT_DELIVERED, .seq = m->seq };
		hub_send(peer, &d);
		break;
	}
	case PT_TYPING: {
		struct proto_msg t = { .type = PT_TYPING, .on = m->on };
		hub_send(peer, &t);
		break;
	}
	case PT_MUTE: {
		if (!s->voice) {
			hub_error(c, "wrong_state", "not a voice session", m->type);
			break;
		}
		relay_mute(&s->relay, c == s->counselor, m->on, hub_now_ms());
		struct proto_msg t = { .type = PT_PEER_MUTE, .on = m->on };
		hub_send(peer, &t);
		break;
	}
	case PT_CRISIS:
		flag_crisis(s, c);
		break;
	default: /* PT_END */
		session_close(s, c == s->client ? "ended_by_client" : "ended_by_counselor", NULL);
		break;
	}
}

void session_rate(struct conn *c, const struct proto_msg *m)
{
	struct hub *h = c->hub;
	if (c->state != ST_ENDED || c->rate_for[0] == '\0') {
		hub_error(c, "wrong_state", "there is no finished session to rate", m->type);
		return;
	}
	/* Once: the client is idle from now; `rated` follows once the store
	 * has counted it, for the counselor and the topic (hub.c on_result). */
	char counselor[sizeof c->rate_for];
	memcpy(counselor, c->rate_for, sizeof counselor);
	c->rate_for[0] = '\0';
	c->state = ST_IDLE;
	log_info("client %u rated a session", c->id);
	h->store->ops->rate(h->store, c->id, counselor, c->rate_topic, m->score, m->comment);
}

int session_media(struct conn *c, const uint8_t *frame, size_t len)
{
	struct session *s = c->session;
	if (!s || !s->voice)
		return -1;
	struct metrics *mt = &s->hub->metrics;
	int side = c == s->counselor;
	uint8_t buf[MEDIA_PACKET_MAX + MEDIA_TRAILER_MAX];
	if (len > MEDIA_PACKET_MAX) {
		mt->media_dropped[MD_TOO_LARGE]++;
		return 0;
	}
	memcpy(buf, frame, len);
	int resumed;
	enum relay_verdict v = relay_packet(&s->relay, side, buf, &len, hub_now_ms(), &resumed);
	if (v != RELAY_FORWARD) {
		/* metrics_media_drop lists the drops in relay_verdict's order. */
		mt->media_dropped[v - RELAY_DROP_AUTH]++;
		return 0;
	}
	struct conn *peer = peer_of(s, c);
	int q = hub_send_media(peer, buf, len);
	if (q == 1)
		mt->media_dropped[MD_SLOW_READER]++;
	if (q >= 0)
		mt->media_relayed++;
	if (resumed)
		audio_notice(s, side, "flowing");
	return 0;
}

/* `side` went silent or came back: the silent party hears "we can't hear
 * you", the other "the other side's audio stopped". */
static void audio_notice(struct session *s, int side, const char *state)
{
	struct proto_msg m = { .type = PT_AUDIO };
	snprintf(m.audio, sizeof m.audio, "%s", state);
	for (int to = 0; to < 2; to++) {
		struct conn *c = to ? s->counselor : s->client;
		snprintf(m.who, sizeof m.who, "%s", to == side ? "you" : "peer");
		hub_send(c, &m);
	}
}

void session_media_tick(struct session *s, int64_t now)
{
	if (!s->voice)
		return;
	int stopped[2], report;
	struct quality_report rep[2];
	relay_tick(&s->relay, now, stopped, &report, rep);
	for (int side = 0; side < 2; side++)
		if (stopped[side]) {
			log_info("session %s: no audio from the %s", s->id, side ? "counselor" : "client");
			audio_notice(s, side, "stopped");
		}
	if (!report)
		return;
	for (int side = 0; side < 2; side++) {
		struct proto_msg m = { .type = PT_LINK,
		                       .loss_pct = (uint32_t)(rep[side].loss_pct + 0.5),
		                       .jitter_ms = (uint32_t)(rep[side].jitter_ms + 0.5) };
		snprintf(m.link_you, sizeof m.link_you, "%s", quality_grade_name(rep[side].grade));
		snprintf(m.link_peer, sizeof m.link_peer, "%s", quality_grade_name(rep[!side].grade));
		hub_send(side ? s->counselor : s->client, &m);
	}
}
