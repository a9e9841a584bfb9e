/* config.c - earshotd's directive table and the parsers that apply a config
 * file or a command-line option to a struct config, then check it as a whole.
 *
 * Every directive lives in one declarative table (name, type, field, bounds,
 * default, help): defaults, the file parser, `--name value` options and
 * --help all read that table, so a directive cannot exist in one and be
 * forgotten in another. (Redis `static_configs[]`, nginx `ngx_command_t`.) */
#include "config.h"
#include "../proto/proto.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A config line may not be longer than this (not counting the newline). */
#define CONFIG_LINE_MAX 4096
/* Bad values are quoted in errors but cut to this many bytes, so that the
 * bounds after them still fit in CONFIG_ERR_MAX. */
#define CONFIG_QUOTE_MAX 48
#define CONFIG_SECRET_MIN 32

static const char dev_secret[] = "earshot-dev-secret-do-not-use-in-production";

enum dtype {
	T_STRING,    /* char[]: longer than the field is an error */
	T_INT,       /* int in [min, max] */
	T_BOOL,      /* int 0/1 from yes/no/true/false/on/off/1/0 */
	T_DURATION,  /* int seconds in [min, max] from 30, 30s, 5m, 1h, 1h30m */
	T_MARKS,     /* int[] of durations, strictly descending; aux = count */
	T_LEVEL,     /* enum config_log_level */
	T_REFERRAL,  /* char[]: each directive appends a line; aux = referral_set */
};

/* The secret is never echoed in an error: errors end up in logs. */
#define D_SECRET 1u

static const struct directive {
	const char *name;
	enum dtype type;
	size_t offset;
	size_t size;
	size_t aux;
	int min, max;
	const char *def;
	unsigned flags;
	const char *help;
} directives[] = {
#define FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)
	{ "listen", T_STRING, FIELD(listen), 0, 0, 0, "127.0.0.1", 0,
	  "address to listen on (an IP address or localhost)" },
	{ "port", T_INT, FIELD(port), 0, 0, 65535, "8080", 0,
	  "TCP port for WebSocket connections (0: the kernel picks)" },
	{ "tls-cert", T_STRING, FIELD(tls_cert), 0, 0, 0, "", 0,
	  "PEM certificate chain; empty for no TLS" },
	{ "tls-key", T_STRING, FIELD(tls_key), 0, 0, 0, "", 0,
	  "PEM private key for tls-cert" },
	{ "insecure-public", T_BOOL, FIELD(insecure_public), 0, 0, 1, "no", 0,
	  "allow a non-loopback listen address without TLS (behind a TLS proxy)" },
	{ "dev-mode", T_BOOL, FIELD(dev_mode), 0, 0, 1, "yes", 0,
	  "anonymous clients and a built-in token secret; loopback only" },
	{ "token-secret", T_STRING, FIELD(token_secret), 0, 0, 0, "", D_SECRET,
	  "HS256 secret for tokens, at least 32 bytes outside dev mode" },
	{ "slot-length", T_DURATION, FIELD(slot_length), 0, 900, 1800, "20m", 0,
	  "length of a listening session before the goodbye" },
	{ "warn-at", T_MARKS, FIELD(warn_at), offsetof(struct config, warn_count),
	  1, 1800, "5m,1m", 0,
	  "time-left warnings, descending, each below slot-length" },
	{ "goodbye-grace", T_DURATION, FIELD(goodbye_grace), 0, 5, 300, "30s", 0,
	  "time to say goodbye after the slot ends" },
	{ "ring-timeout", T_DURATION, FIELD(ring_timeout), 0, 5, 120, "20s", 0,
	  "how long an offer rings before going to the next counselor" },
	{ "max-missed-offers", T_INT, FIELD(max_missed_offers), 0, 1, 10, "2", 0,
	  "missed offers in a row before a counselor is set away" },
	{ "wrapup", T_DURATION, FIELD(wrapup), 0, 0, 900, "1m", 0,
	  "counselor's pause after a session before new offers" },
	{ "crisis-wrapup", T_DURATION, FIELD(crisis_wrapup), 0, 0, 3600, "10m", 0,
	  "counselor's pause after a session flagged in crisis, before new offers" },
	{ "resume-grace", T_DURATION, FIELD(resume_grace), 0, 0, 600, "30s", 0,
	  "how long a person whose connection dropped keeps their place in line or "
	  "their session, to come back with their resume token (0: not at all)" },
	{ "shift-sessions", T_INT, FIELD(shift_sessions), 0, 0, 100, "0", 0,
	  "sessions a counselor takes in one shift (from sign-in), then no more offers "
	  "(0: no limit)" },
	{ "shift-hours", T_INT, FIELD(shift_hours), 0, 0, 24, "0", 0,
	  "hours of a counselor's shift from sign-in, then no more offers; a session in "
	  "progress is never cut (0: no limit)" },
	{ "topic-wait", T_DURATION, FIELD(topic_wait), 0, 0, 600, "1m", 0,
	  "how long a person is kept for a counselor with their topic among their skills "
	  "before anyone free takes them (0: no waiting for a specialty)" },
	{ "previous-wait", T_DURATION, FIELD(previous_wait), 0, 0, 600, "45s", 0,
	  "how long a returning person who asked for their previous counselor waits for "
	  "them while they are busy, before anyone free takes them" },
	{ "continuity-days", T_INT, FIELD(continuity_days), 0, 0, 3650, "90", 0,
	  "days earshot remembers whom a person talked with last (under a pseudonym), "
	  "so they can ask for them again; 0 remembers nothing" },
	{ "crisis-question", T_STRING, FIELD(crisis_question), 0, 0, 0, "", 0,
	  "a yes/no question the person's page asks before Talk now; yes puts them ahead "
	  "as someone who may not be safe (empty: no question)" },
	{ "max-message-bytes", T_INT, FIELD(max_message_bytes), 0, 256, 65536, "8192", 0,
	  "largest WebSocket frame accepted, in bytes" },
	{ "max-text-bytes", T_INT, FIELD(max_text_bytes), 0, 16, 4000, "4000", 0,
	  "largest chat message text, in bytes of UTF-8" },
	{ "msg-rate", T_INT, FIELD(msg_rate), 0, 1, 1000, "20", 0,
	  "messages per second a connection may send, sustained" },
	{ "msg-burst", T_INT, FIELD(msg_burst), 0, 1, 10000, "40", 0,
	  "messages a connection may send in a burst" },
	{ "max-queue", T_INT, FIELD(max_queue), 0, 1, 1000000, "10000", 0,
	  "most people waiting at once; beyond it server_busy" },
	{ "auth-timeout", T_DURATION, FIELD(auth_timeout), 0, 1, 120, "10s", 0,
	  "time a new connection has to send hello" },
	{ "shutdown-grace", T_DURATION, FIELD(shutdown_grace), 0, 0, 60, "3s", 0,
	  "time to flush goodbyes when stopping" },
	{ "time-scale", T_INT, FIELD(time_scale), 0, 1, 1000, "1", 0,
	  "dev mode only: session clocks run this many times faster" },
	{ "log-level", T_LEVEL, FIELD(log_level), 0, 0, 0, "info", 0,
	  "error, warn, info or debug" },
	{ "web-root", T_STRING, FIELD(web_root), 0, 0, 0, "client-demo/web", 0,
	  "directory of the browser pages and their modules" },
	{ "srtp-profile", T_STRING, FIELD(srtp_profile), 0, 0, 0, "aead_aes_128_gcm", 0,
	  "voice SRTP profile: aead_aes_128_gcm or aes_cm_128_hmac_sha1_80" },
	{ "media-max-packet", T_INT, FIELD(media_max_packet), 0, 200, 1500, "1200", 0,
	  "largest protected voice packet accepted, in bytes" },
	{ "media-max-pps", T_INT, FIELD(media_max_pps), 0, 50, 1000, "100", 0,
	  "voice packets per second one party may send (50 is real time)" },
	{ "media-stale-ms", T_INT, FIELD(media_stale_ms), 0, 0, 10000, "400", 0,
	  "voice arriving this much later than its time is dropped (0: never)" },
	{ "media-queue", T_INT, FIELD(media_queue), 0, 2, 256, "16", 0,
	  "voice packets queued for a slow receiver before the oldest is dropped" },
	{ "silence-timeout", T_DURATION, FIELD(silence_timeout), 0, 1, 60, "5s", 0,
	  "no audio this long from an unmuted party: both sides are told" },
	{ "link-report", T_DURATION, FIELD(link_report), 0, 1, 60, "5s", 0,
	  "interval of link-quality reports in voice sessions" },
	{ "redis", T_STRING, FIELD(redis), 0, 0, 0, "", 0,
	  "redis://host[:port][/db]: share presence and one queue with other nodes "
	  "(empty: the embedded in-memory store, one node)" },
	{ "node-id", T_STRING, FIELD(node_id), 0, 0, 0, "", 0,
	  "this node's name in Redis, 1-40 of A-Z a-z 0-9 . _ - (empty: random at start)" },
	{ "advertise-url", T_STRING, FIELD(advertise_url), 0, 0, 0, "", 0,
	  "ws[s]://host:port/ws where other nodes reach this one for sessions across nodes "
	  "(empty: built from listen and port)" },
	{ "presence-ttl", T_DURATION, FIELD(presence_ttl), 0, 1, 300, "10s", 0,
	  "a node that stops renewing its presence is gone after this long, and with it "
	  "its counselors and the clients it had waiting" },
	{ "referral", T_REFERRAL, FIELD(referral), offsetof(struct config, referral_set),
	  0, 0,
	  "If you are in danger now, call your local emergency number "
	  "(112 in the EU, 911 in the US).\n"
	  "To talk again or book a longer session, open earshot and tap Talk now.",
	  0,
	  "a line of referral text sent to the client at the end; repeat for "
	  "more lines, the first replaces the default, \"\" for none" },
	{ "topic-referral", T_REFERRAL, FIELD(topic_referral),
	  offsetof(struct config, topic_referral_set), 0, 0, "", 0,
	  "\"topic: text\": a line of referral for sessions about that topic, shown before "
	  "the general referral lines; repeat for more" },
#undef FIELD
};

#define NDIRECTIVES (sizeof(directives) / sizeof(directives[0]))

static const char *const level_names[] = { "error", "warn", "info", "debug" };

/* Write "where: message" into err; a NULL or empty `where` drops the prefix. */
__attribute__((format(printf, 4, 5)))
static void config_err(char *err, size_t errlen, const char *where, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	size_t n = 0;
	if (where && *where) {
		int k = snprintf(err, errlen, "%s: ", where);
		if (k < 0)
			k = 0;
		n = (size_t)k < errlen ? (size_t)k : errlen - 1;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
}

/* Copy a bad value for an error message: cut long ones (so the bounds that
 * follow are not lost to truncation) and blank out control bytes (so one
 * error stays one log line). */
static const char *config_quote(const char *v, char *buf, size_t len)
{
	size_t i = 0;
	for (; v[i] && i + 1 < len; i++)
		buf[i] = iscntrl((unsigned char)v[i]) ? '?' : v[i];
	buf[i] = '\0';
	if (v[i] && len > 4)
		memcpy(buf + len - 4, "...", 4);
	return buf;
}

static const struct directive *config_find(const char *name)
{
	for (size_t i = 0; i < NDIRECTIVES; i++)
		if (strcmp(directives[i].name, name) == 0)
			return &directives[i];
	return NULL;
}

/* Seconds in the form the table is written in: 900 -> "15m", 90 -> "1m30s". */
static const char *config_fmt_duration(int secs, char *buf, size_t len)
{
	int h = secs / 3600, m = secs % 3600 / 60, s = secs % 60;
	size_t n = 0;
	buf[0] = '\0';
	if (h)
		n += (size_t)snprintf(buf + n, len - n, "%dh", h);
	if (m && n < len)
		n += (size_t)snprintf(buf + n, len - n, "%dm", m);
	if ((s || secs == 0) && n < len)
		snprintf(buf + n, len - n, "%ds", s);
	return buf;
}

/* A decimal integer filling the whole string. Returns 0 and sets *out;
 * -1 if it is not a number; -2 if it is a number beyond an int. */
static int config_parse_int(const char *s, int *out)
{
	if (!*s || isspace((unsigned char)*s))
		return -1;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (*end)
		return -1;
	if (errno == ERANGE || v < INT_MIN || v > INT_MAX)
		return -2;
	*out = (int)v;
	return 0;
}

/* "30" (seconds), or number-unit pairs with units h, m, s in that order:
 * "30s", "5m", "1h", "1h30m". A bare number is accepted only on its own:
 * in "1h30" the unit of 30 is a guess we refuse to make. Returns 0, -1 if
 * it is not a duration, -2 if it is beyond an int of seconds. */
int config_parse_duration(const char *s, int *out)
{
	static const char units[] = "hms";
	static const long long mult[] = { 3600, 60, 1 };
	long long total = 0;
	int plain = strspn(s, "0123456789") == strlen(s);
	size_t next_unit = 0;
	const char *p = s;

	if (!*s)
		return -1;
	while (*p) {
		if (!isdigit((unsigned char)*p))
			return -1;
		long long n = 0;
		while (isdigit((unsigned char)*p)) {
			n = n * 10 + (*p++ - '0');
			if (n > INT_MAX)
				n = (long long)INT_MAX + 1;  /* saturate: reported as too big */
		}
		if (plain) {
			total = n;
			break;
		}
		const char *u = strchr(units + next_unit, *p);
		if (!*p || !u)
			return -1;
		next_unit = (size_t)(u - units) + 1;
		total += n * mult[u - units];
		if (total > INT_MAX)
			total = (long long)INT_MAX + 1;
		p++;
	}
	if (total > INT_MAX)
		return -2;
	*out = (int)total;
	return 0;
}

static int config_parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* Bounds in the unit the directive is written in. */
static const char *config_fmt_range(const struct directive *d, char *buf, size_t len)
{
	if (d->type == T_DURATION || d->type == T_MARKS) {
		char lo[32], hi[32];
		snprintf(buf, len, "%s..%s", config_fmt_duration(d->min, lo, sizeof(lo)),
		         config_fmt_duration(d->max, hi, sizeof(hi)));
	} else {
		snprintf(buf, len, "%d..%d", d->min, d->max);
	}
	return buf;
}

/* "5m,1m": parsed whole into locals first so that a bad mark leaves the
 * config as it was. */
static int config_set_marks(struct config *c, const struct directive *d, const char *value,
                            const char *where, char *err, size_t errlen)
{
	int marks[CONFIG_WARN_MARKS_MAX], n = 0;
	char q[CONFIG_QUOTE_MAX], qm[CONFIG_QUOTE_MAX], range[64];
	const char *p = value;

	config_quote(value, q, sizeof(q));
	for (;;) {
		char item[32];
		size_t len = strcspn(p, ",");
		const char *b = p, *e = p + len;
		while (b < e && isspace((unsigned char)*b))
			b++;
		while (e > b && isspace((unsigned char)e[-1]))
			e--;
		if (n == CONFIG_WARN_MARKS_MAX) {
			config_err(err, errlen, where, "%s '%s' has more than %d marks",
			           d->name, q, CONFIG_WARN_MARKS_MAX);
			return -1;
		}
		size_t ilen = (size_t)(e - b);
		if (ilen >= sizeof(item))
			ilen = sizeof(item) - 1; /* still too long to be a valid mark */
		memcpy(item, b, ilen);
		item[ilen] = '\0';
		int v, r = ilen == (size_t)(e - b) ? config_parse_duration(item, &v) : -2;
		if (r == -1) {
			config_err(err, errlen, where, "%s '%s': '%s' is not a duration (e.g. 30s, 5m)",
			           d->name, q, config_quote(item, qm, sizeof(qm)));
			return -1;
		}
		if (r == -2 || v < d->min || v > d->max) {
			config_err(err, errlen, where, "%s '%s': '%s' is out of range (%s)", d->name,
			           q, config_quote(item, qm, sizeof(qm)),
			           config_fmt_range(d, range, sizeof(range)));
			return -1;
		}
		if (n > 0 && v >= marks[n - 1]) {
			config_err(err, errlen, where,
			           "%s '%s' is not strictly descending (largest first, e.g. 5m,1m)",
			           d->name, q);
			return -1;
		}
		marks[n++] = v;
		if (!p[len])
			break;
		p += len + 1;
	}
	memcpy((char *)c + d->offset, marks, (size_t)n * sizeof(int));
	*(int *)((char *)c + d->aux) = n;
	return 0;
}

/* The first `referral` replaces the built-in lines, later ones append: a
 * deployment knows its own hotlines, and the generic lines must not linger
 * above them. `referral ""` clears, for a service that sends none. */
static int config_set_referral(struct config *c, const struct directive *d, const char *value,
                               const char *where, char *err, size_t errlen)
{
	char *dst = (char *)c + d->offset;
	int *set = (int *)((char *)c + d->aux);
	size_t have = *set ? strlen(dst) : 0;
	size_t add = strlen(value) + (have && *value ? 1 : 0);

	if (!*value) {
		dst[0] = '\0';
		*set = 1;
		return 0;
	}
	if (have + add > d->size - 1) {
		config_err(err, errlen, where, "referral would exceed %zu bytes in total",
		           d->size - 1);
		return -1;
	}
	if (have)
		dst[have++] = '\n';
	memcpy(dst + have, value, strlen(value) + 1);
	*set = 1;
	return 0;
}

/* Apply one directive's value; on error `c` is unchanged. */
static int config_apply(struct config *c, const struct directive *d, const char *value,
                        const char *where, char *err, size_t errlen)
{
	char q[CONFIG_QUOTE_MAX], range[64];
	void *field = (char *)c + d->offset;
	int v, r;

	config_quote(value, q, sizeof(q));
	switch (d->type) {
	case T_STRING:
		if (strlen(value) >= d->size) {
			if (d->flags & D_SECRET)
				config_err(err, errlen, where, "%s is too long (at most %zu bytes)",
				           d->name, d->size - 1);
			else
				config_err(err, errlen, where, "%s '%s' is too long (at most %zu bytes)",
				           d->name, q, d->size - 1);
			return -1;
		}
		memcpy(field, value, strlen(value) + 1);
		return 0;
	case T_INT:
		r = config_parse_int(value, &v);
		if (r == -1) {
			config_err(err, errlen, where, "%s '%s' is not a number", d->name, q);
			return -1;
		}
		break;
	case T_DURATION:
		r = config_parse_duration(value, &v);
		if (r == -1) {
			config_err(err, errlen, where,
			           "%s '%s' is not a duration (e.g. 30, 30s, 5m, 1h)", d->name, q);
			return -1;
		}
		break;
	case T_BOOL:
		if (config_parse_bool(value, &v) < 0) {
			config_err(err, errlen, where, "%s '%s' is not yes or no", d->name, q);
			return -1;
		}
		*(int *)field = v;
		return 0;
	case T_LEVEL:
		for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
			if (strcasecmp(value, level_names[i]) == 0) {
				*(enum config_log_level *)field = (enum config_log_level)i;
				return 0;
			}
		}
		config_err(err, errlen, where, "%s '%s' is not one of error, warn, info, debug",
		           d->name, q);
		return -1;
	case T_MARKS:
		return config_set_marks(c, d, value, where, err, errlen);
	case T_REFERRAL:
		return config_set_referral(c, d, value, where, err, errlen);
	default:
		config_err(err, errlen, where, "%s has an unknown type", d->name);
		return -1;
	}
	/* T_INT and T_DURATION: bounds. */
	if (r == -2 || v < d->min || v > d->max) {
		config_err(err, errlen, where, "%s '%s' is out of range (%s)", d->name, q,
		           config_fmt_range(d, range, sizeof(range)));
		return -1;
	}
	*(int *)field = v;
	return 0;
}

void config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	/* The defaults go through the same parsers as user values; the unit test
	 * checks that every one of them applies cleanly. */
	for (size_t i = 0; i < NDIRECTIVES; i++)
		config_apply(c, &directives[i], directives[i].def, NULL, NULL, 0);
	c->referral_set = 0;
}

int config_set(struct config *c, const char *name, const char *value,
               const char *where, char *err, size_t errlen)
{
	char q[CONFIG_QUOTE_MAX];
	const struct directive *d = config_find(name);
	if (!d) {
		config_err(err, errlen, where, "unknown directive '%s'",
		           config_quote(name, q, sizeof(q)));
		return -1;
	}
	return config_apply(c, d, value ? value : "", where, err, errlen);
}

/* Trim surrounding whitespace in place; returns the new start. */
static char *config_trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* One line: blank, a comment, or `directive value`. `#` is a comment only at
 * the start, so referral text and secrets may contain it. */
static int config_parse_line(struct config *c, char *line, const char *where,
                             char *err, size_t errlen)
{
	char q[CONFIG_QUOTE_MAX];
	char *s = config_trim(line);
	if (!*s || *s == '#')
		return 0;

	char *value = s + strcspn(s, " \t\v\f\r");
	int has_value = *value != '\0';
	if (has_value)
		*value++ = '\0';
	const struct directive *d = config_find(s);
	if (!d) {
		config_err(err, errlen, where, "unknown directive '%s'", config_quote(s, q, sizeof(q)));
		return -1;
	}
	value = config_trim(value);
	if (!has_value || !*value) {
		config_err(err, errlen, where, "%s needs a value (\"\" for an empty one)", d->name);
		return -1;
	}
	size_t len = strlen(value);
	if (len >= 2 && value[0] == '"' && value[len - 1] == '"') {
		value[len - 1] = '\0';
		value++;
	}
	return config_apply(c, d, value, where, err, errlen);
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
	/* +2: the newline and the NUL, so a line of exactly CONFIG_LINE_MAX fits. */
	char line[CONFIG_LINE_MAX + 2], where[CONFIG_ERR_MAX];
	unsigned lineno = 0;
	FILE *f = fopen(path, "r");
	if (!f) {
		config_err(err, errlen, NULL, "%s: %s", path, strerror(errno));
		return -1;
	}

	/* Work on a copy: a file that fails half-way must not leave a config
	 * half-applied (a reload keeps running on the old one). */
	struct config *tmp = malloc(sizeof(*tmp));
	if (!tmp) {
		fclose(f);
		config_err(err, errlen, NULL, "%s: out of memory", path);
		return -1;
	}
	*tmp = *c;

	int rc = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		size_t len = strlen(line);
		if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
			config_err(err, errlen, where, "line is longer than %d bytes", CONFIG_LINE_MAX);
			rc = -1;
			break;
		}
		char *s = line;
		/* A UTF-8 byte-order mark from a Windows editor is not a directive. */
		if (lineno == 1 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
			s += 3;
		if (config_parse_line(tmp, s, where, err, errlen) < 0) {
			rc = -1;
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		config_err(err, errlen, NULL, "%s: %s", path, strerror(errno));
		rc = -1;
	}
	fclose(f);
	if (rc == 0)
		*c = *tmp;
	free(tmp);
	return rc;
}

int config_is_loopback(const char *addr)
{
	unsigned char a[16];
	if (!addr)
		return 0;
	if (strcasecmp(addr, "localhost") == 0 || strcmp(addr, "lo") == 0)
		return 1;
	if (inet_pton(AF_INET, addr, a) == 1)
		return a[0] == 127;
	if (inet_pton(AF_INET6, addr, a) == 1) {
		static const unsigned char v6_lo[16] = { [15] = 1 };
		static const unsigned char v4_mapped[12] = { [10] = 0xff, [11] = 0xff };
		return memcmp(a, v6_lo, 16) == 0 ||
		       (memcmp(a, v4_mapped, 12) == 0 && a[12] == 127);
	}
	return 0;
}

void config_referral_for(const struct config *c, const char *topic, char *out, size_t cap)
{
	size_t used = 0, tlen = strlen(topic);
	out[0] = '\0';
	for (const char *p = c->topic_referral; *p;) {
		size_t n = strcspn(p, "\n");
		if (n > tlen + 1 && memcmp(p, topic, tlen) == 0 && p[tlen] == ':') {
			const char *text = p + tlen + 1;
			while (*text == ' ')
				text++;
			int k = snprintf(out + used, cap - used, "%.*s\n", (int)(n - (size_t)(text - p)), text);
			if (k > 0 && (size_t)k < cap - used)
				used += (size_t)k;
		}
		p += n + (p[n] == '\n');
	}
	snprintf(out + used, cap - used, "%s", c->referral);
}

/* Each topic-referral line is "topic: text" with a valid topic. */
static int topic_referral_ok(const char *s)
{
	for (const char *p = s; *p;) {
		size_t n = strcspn(p, "\n"), t = strcspn(p, ":\n");
		char topic[PROTO_TOPIC_MAX + 1];
		if (t == n || t == 0 || t > PROTO_TOPIC_MAX)
			return 0;
		memcpy(topic, p, t);
		topic[t] = '\0';
		if (!proto_topic_valid(topic))
			return 0;
		p += n + (p[n] == '\n');
	}
	return 1;
}

int config_validate(const struct config *c, char *err, size_t errlen)
{
	char a[32], b[32], q[CONFIG_QUOTE_MAX];

	if (!topic_referral_ok(c->topic_referral)) {
		config_err(err, errlen, NULL, "topic-referral lines are \"topic: text\", topic a-z 0-9 _ -");
		return -1;
	}

	for (int i = 0; i < c->warn_count; i++) {
		if (c->warn_at[i] >= c->slot_length) {
			config_err(err, errlen, NULL,
			           "warn-at mark %s is not below slot-length %s",
			           config_fmt_duration(c->warn_at[i], a, sizeof(a)),
			           config_fmt_duration(c->slot_length, b, sizeof(b)));
			return -1;
		}
	}
	if (!*c->tls_cert != !*c->tls_key) {
		config_err(err, errlen, NULL, "%s is set but %s is not: set both or neither",
		           *c->tls_cert ? "tls-cert" : "tls-key",
		           *c->tls_cert ? "tls-key" : "tls-cert");
		return -1;
	}
	int loopback = config_is_loopback(c->listen);
	config_quote(c->listen, q, sizeof(q));
	/* Dev mode first: it admits anyone without a token, so on a public
	 * address TLS would not make it safe and the TLS hint would mislead. */
	if (c->dev_mode && !loopback) {
		config_err(err, errlen, NULL,
		           "dev-mode yes needs a loopback listen address, not '%s'", q);
		return -1;
	}
	if (!loopback && !*c->tls_cert && !c->insecure_public) {
		config_err(err, errlen, NULL,
		           "listen '%s' is not loopback: set tls-cert and tls-key, or insecure-public yes",
		           q);
		return -1;
	}
	if (c->time_scale > 1 && !c->dev_mode) {
		config_err(err, errlen, NULL, "time-scale %d needs dev-mode yes", c->time_scale);
		return -1;
	}
	if (c->redis[0] && strncmp(c->redis, "redis://", 8) != 0) {
		config_quote(c->redis, q, sizeof(q));
		config_err(err, errlen, NULL, "redis '%s' is not redis://host[:port][/db]", q);
		return -1;
	}
	if (c->advertise_url[0] && strncmp(c->advertise_url, "ws://", 5) != 0 &&
	    strncmp(c->advertise_url, "wss://", 6) != 0) {
		config_quote(c->advertise_url, q, sizeof(q));
		config_err(err, errlen, NULL, "advertise-url '%s' is not ws://... or wss://...", q);
		return -1;
	}
	if (strspn(c->node_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
	    strlen(c->node_id)) {
		config_quote(c->node_id, q, sizeof(q));
		config_err(err, errlen, NULL, "node-id '%s' may hold only A-Z a-z 0-9 . _ -", q);
		return -1;
	}
	if (strcmp(c->srtp_profile, "aead_aes_128_gcm") != 0 &&
	    strcmp(c->srtp_profile, "aes_cm_128_hmac_sha1_80") != 0) {
		config_quote(c->srtp_profile, q, sizeof(q));
		config_err(err, errlen, NULL,
		           "srtp-profile '%s' is not aead_aes_128_gcm or aes_cm_128_hmac_sha1_80", q);
		return -1;
	}
	/* The shipped example's placeholder is public: a node started with it
	 * would accept anyone's self-minted counselor token. */
	if (!c->dev_mode && strstr(c->token_secret, "CHANGE-ME")) {
		config_err(err, errlen, NULL,
		           "token-secret is still the example placeholder: "
		           "generate one with: openssl rand -hex 32");
		return -1;
	}
	if (!c->dev_mode && strlen(c->token_secret) < CONFIG_SECRET_MIN) {
		config_err(err, errlen, NULL,
		           "token-secret must be at least %d bytes outside dev mode "
		           "(generate one with: openssl rand -hex 32)", CONFIG_SECRET_MIN);
		return -1;
	}
	return 0;
}

const char *config_token_secret(const struct config *c)
{
	/* Only dev mode falls back: outside it an empty secret is a config error,
	 * and handing out a published constant would hide it. */
	if (!*c->token_secret && c->dev_mode)
		return dev_secret;
	return c->token_secret;
}

static const char *config_metavar(enum dtype t)
{
	switch (t) {
	case T_INT: return "N";
	case T_BOOL: return "yes|no";
	case T_DURATION: return "DURATION";
	case T_MARKS: return "DURATION,...";
	case T_LEVEL: return "LEVEL";
	case T_REFERRAL: return "LINE";
	case T_STRING: break;
	}
	return "VALUE";
}

void config_print_help(void *stream)
{
	FILE *f = stream ? stream : stdout;
	int width = 0;
	for (size_t i = 0; i < NDIRECTIVES; i++) {
		int w = (int)(strlen(directives[i].name) + strlen(config_metavar(directives[i].type)));
		if (w > width)
			width = w;
	}
	for (size_t i = 0; i < NDIRECTIVES; i++) {
		const struct directive *d = &directives[i];
		const char *mv = config_metavar(d->type);
		char range[64];
		int pad = width - (int)(strlen(d->name) + strlen(mv));
		fprintf(f, "  --%s %s%*s   %s (", d->name, mv, pad, "", d->help);
		if (d->type == T_REFERRAL)
			fprintf(f, "default two generic lines: emergency number, Talk now)\n");
		else if (d->type == T_STRING && !*d->def)
			fprintf(f, "default empty)\n");
		else if (d->type == T_INT || d->type == T_DURATION || d->type == T_MARKS)
			fprintf(f, "default %s, range %s)\n", d->def,
			        config_fmt_range(d, range, sizeof(range)));
		else
			fprintf(f, "default %s)\n", d->def);
	}
}
