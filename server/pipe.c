/* pipe.c - links to other nodes for sessions across nodes (see pipe.h),
 * on the C client library's connections, on the server's loop. */
#include "pipe.h"
#include "log.h"
#include "../client-demo/esclient.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIPE_AUDIO_QUEUE 1024          /* audio frames waiting on one link */
#define PIPE_EARLY_MAX (1024 * 1024)   /* bytes queued before the host said welcome */
#define PIPE_FRAME_MAX 1600            /* largest audio frame relayed */

struct early {                          /* a frame waiting for the welcome */
	struct early *next;
	int binary;
	size_t len;
	char data[];
};

struct pipe {
	struct pipe *next;
	struct pipe_set *set;
	struct esc_conn *c;
	char node[64];
	int up;                         /* welcome received: frames go straight out */
	int was_up;
	int dead;                       /* closed; freed by the reaper */
	struct early *qhead, *qtail;
	size_t qbytes;
};

struct pipe_set {
	struct ev_loop *loop;
	struct esc_ctx *esc;
	char token[PROTO_TOKEN_MAX + 1];
	struct pipe_handlers h;
	struct pipe *pipes;             /* live, and dead ones awaiting the reaper */
	ev_idle reaper;
};

const char *pipe_node(const struct pipe *p) { return p->node; }

int pipe_was_up(const struct pipe *p) { return p->was_up; }

static void early_free(struct pipe *p)
{
	while (p->qhead) {
		struct early *e = p->qhead;
		p->qhead = e->next;
		free(e);
	}
	p->qtail = NULL;
	p->qbytes = 0;
}

static void die(struct pipe *p, const char *why)
{
	if (p->dead)
		return;
	p->dead = 1;
	p->up = 0;
	early_free(p);
	log_warn("node link to %s closed: %s", p->node, why);
	esc_close(p->c);
	p->set->h.closed(p->set->h.ctx, p);
	ev_idle_start(p->set->loop, &p->set->reaper);
}

static int out(struct pipe *p, const void *buf, size_t len, int binary)
{
	if (p->dead)
		return -1;
	if (p->up)
		return esc_send_raw(p->c, buf, len, binary);
	if (p->qbytes + len > PIPE_EARLY_MAX) {
		die(p, "the host does not answer");
		return -1;
	}
	struct early *e = malloc(sizeof *e + len);
	if (!e)
		return -1;
	e->next = NULL;
	e->binary = binary;
	e->len = len;
	memcpy(e->data, buf, len);
	if (p->qtail)
		p->qtail->next = e;
	else
		p->qhead = e;
	p->qtail = e;
	p->qbytes += len;
	return 0;
}

int pipe_text(struct pipe *p, const char *op, uint32_t conn, const char *rest, size_t len)
{
	size_t cap = strlen(op) + len + 16;
	char *buf = malloc(cap);
	if (!buf)
		return -1;
	int n = snprintf(buf, cap, "%s %u ", op, conn);
	memcpy(buf + n, rest, len);
	int r = out(p, buf, (size_t)n + len, 0);
	free(buf);
	return r;
}

int pipe_media(struct pipe *p, uint32_t conn, const uint8_t *buf, size_t len)
{
	uint8_t frame[4 + PIPE_FRAME_MAX];
	if (len > PIPE_FRAME_MAX)
		return -1;
	frame[0] = (uint8_t)(conn >> 24);
	frame[1] = (uint8_t)(conn >> 16);
	frame[2] = (uint8_t)(conn >> 8);
	frame[3] = (uint8_t)conn;
	memcpy(frame + 4, buf, len);
	unsigned long before = p->c ? esc_binary_dropped(p->c) : 0;
	if (out(p, frame, len + 4, 1) != 0)
		return -1;
	return p->c && esc_binary_dropped(p->c) != before;
}

/* ---- the client library's callbacks ---- */

static void on_open(struct esc_conn *c, void *ud)
{
	struct pipe *p = ud;
	struct proto_msg hello = { .type = PT_HELLO, .role = ROLE_NODE };
	snprintf(hello.token, sizeof hello.token, "%s", p->set->token);
	esc_send(c, &hello);
}

static void on_message(struct esc_conn *c, const struct proto_msg *m, const char *raw,
                       size_t len, void *ud)
{
	(void)c;
	struct pipe *p = ud;
	if (p->dead)
		return;
	if (m->type == PT_WELCOME) {
		p->up = p->was_up = 1;
		for (struct early *e = p->qhead; e; e = e->next)
			esc_send_raw(p->c, e->data, e->len, e->binary);
		early_free(p);
		log_info("node link to %s is up", p->node);
		return;
	}
	if (m->type == PT_ERROR) {
		log_warn("node link to %s: %s (%s)", p->node, m->code, m->reason);
		return;
	}
	/* "op conn rest" */
	char *line = malloc(len + 1);
	if (!line)
		return;
	memcpy(line, raw, len);
	line[len] = '\0';
	char *sp1 = strchr(line, ' ');
	char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (sp1) {
		*sp1 = '\0';
		if (sp2)
			*sp2 = '\0';
		uint32_t conn = (uint32_t)strtoul(sp1 + 1, NULL, 10);
		p->set->h.text(p->set->h.ctx, p, line, conn, sp2 ? sp2 + 1 : "");
	}
	free(line);
}

static void on_binary(struct esc_conn *c, const uint8_t *buf, size_t len, void *ud)
{
	(void)c;
	struct pipe *p = ud;
	if (p->dead || len < 4 || len - 4 > PIPE_FRAME_MAX)
		return;
	uint32_t conn = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
	p->set->h.media(p->set->h.ctx, p, conn, buf + 4, len - 4);
}

static void on_closed(struct esc_conn *c, int code, const char *why, void *ud)
{
	(void)c;
	(void)code;
	die(ud, why && *why ? why : "connection lost");
}

static const struct esc_handlers handlers = {
	.open = on_open, .message = on_message, .binary = on_binary, .closed = on_closed,
};

/* ---- the set ---- */

struct pipe *pipe_to(struct pipe_set *s, const char *node, const char *url)
{
	for (struct pipe *p = s->pipes; p; p = p->next)
		if (!p->dead && strcmp(p->node, node) == 0)
			return p;
	struct pipe *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	char err[128];
	p->set = s;
	snprintf(p->node, sizeof p->node, "%s", node);
	p->c = esc_connect(s->esc, url, &handlers, p, err, sizeof err);
	if (!p->c) {
		log_error("node link to %s at %s: %s", node, url, err);
		free(p);
		return NULL;
	}
	p->next = s->pipes;
	s->pipes = p;
	log_info("node link to %s at %s: connecting", node, url);
	return p;
}

static void reaper_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)revents;
	struct pipe_set *s = w->data;
	for (struct pipe **pp = &s->pipes; *pp;) {
		struct pipe *p = *pp;
		if (p->dead) {
			*pp = p->next;
			esc_conn_free(p->c);
			free(p);
		} else {
			pp = &p->next;
		}
	}
	ev_idle_stop(loop, w);
}

struct pipe_set *pipe_set_new(struct ev_loop *loop, const char *token, int insecure,
                              const struct pipe_handlers *h, char *err, size_t errlen)
{
	struct pipe_set *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	struct esc_options opt = { .insecure = insecure, .binary_queue = PIPE_AUDIO_QUEUE };
	s->esc = esc_ctx_new(loop, &opt, err, errlen);
	if (!s->esc) {
		free(s);
		return NULL;
	}
	s->loop = loop;
	s->h = *h;
	snprintf(s->token, sizeof s->token, "%s", token);
	ev_idle_init(&s->reaper, reaper_cb);
	s->reaper.data = s;
	return s;
}

void pipe_set_free(struct pipe_set *s)
{
	if (!s)
		return;
	ev_idle_stop(s->loop, &s->reaper);
	while (s->pipes) {
		struct pipe *p = s->pipes;
		s->pipes = p->next;
		early_free(p);
		esc_conn_free(p->c);
		free(p);
	}
	esc_ctx_free(s->esc);
	free(s);
}
