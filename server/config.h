/* config.h - earshotd's configuration: one declarative table of directives
 * (name, type, default, bounds, field), read from a `directive value` file
 * and from `--directive value` command-line options, validated at load.
 *
 * Pure: no I/O beyond reading the named file; errors are returned in a
 * caller buffer quoting the bad value and its line, never logged here. */
#ifndef EARSHOT_CONFIG_H
#define EARSHOT_CONFIG_H

#include <stddef.h>

#define CONFIG_ERR_MAX 256
#define CONFIG_REFERRAL_MAX 2000
#define CONFIG_WARN_MARKS_MAX 4

enum config_log_level { CFG_LOG_ERROR, CFG_LOG_WARN, CFG_LOG_INFO, CFG_LOG_DEBUG };

struct config {
	char listen[64];          /* "127.0.0.1" */
	int port;                 /* 8080, 1..65535 (0 allowed: kernel picks) */
	char tls_cert[256];       /* "" = no TLS */
	char tls_key[256];
	int insecure_public;      /* allow non-loopback listen without TLS */
	int dev_mode;             /* 1 by default: anonymous clients, dev secret */
	char token_secret[256];   /* "" in dev mode = built-in dev secret */
	/* All durations are in seconds. */
	int slot_length;          /* 1200, 900..1800 */
	int warn_at[CONFIG_WARN_MARKS_MAX]; /* {300, 60}, descending, each < slot */
	int warn_count;           /* 2 */
	int goodbye_grace;        /* 30, 5..300 */
	int ring_timeout;         /* 20, 5..120 */
	int max_missed_offers;    /* 2, 1..10 */
	int wrapup;               /* 60, 0..900 */
	int resume_grace;         /* 30, 0..600: a dropped connection's place is kept */
	int crisis_wrapup;        /* 600, 0..3600: wrap-up after a session in crisis */
	int shift_sessions;       /* 0 (no limit), 0..100: sessions in a shift */
	int shift_hours;          /* 0 (no limit), 0..24: hours in a shift from sign-in */
	int topic_wait;           /* 60, 0..600: extra wait for a skilled counselor */
	int previous_wait;        /* 45, 0..600: extra wait for the asked-for counselor */
	int continuity_days;      /* 90, 0..3650: whom a person talked with is kept */
	char crisis_question[256];/* "": a yes/no question before Talk now; yes is crisis */
	int max_message_bytes;    /* 8192, 256..65536 */
	int max_text_bytes;       /* 4000, 16..4000 */
	int msg_rate;             /* 20 per second, 1..1000 */
	int msg_burst;            /* 40, 1..10000 */
	int max_queue;            /* 10000, 1..1000000 */
	int auth_timeout;         /* 10, 1..120 */
	int shutdown_grace;       /* 3, 0..60: seconds to flush goodbyes */
	int time_scale;           /* 1, 1..1000; dev mode only: session clocks run this many times faster */
	enum config_log_level log_level; /* info */
	char web_root[256];       /* "client-demo/web": the pages and their modules */
	char srtp_profile[32];    /* "aead_aes_128_gcm" or "aes_cm_128_hmac_sha1_80" */
	int media_max_packet;     /* 1200 bytes, 200..1500 */
	int media_max_pps;        /* 100, 50..1000 */
	int media_stale_ms;       /* 400 ms, 0..10000 (0: never) */
	int media_queue;          /* 16 packets, 2..256 */
	int silence_timeout;      /* 5 s, 1..60 */
	int link_report;          /* 5 s, 1..60 */
	char redis[256];          /* "": the embedded store; redis://host[:port][/db] shares one queue */
	char node_id[41];         /* "": random at start; this node's name in Redis */
	int presence_ttl;         /* 10 s, 1..300: a silent node's presence expires after this */
	char advertise_url[256];  /* "": ws[s]://listen:port/ws; where other nodes reach this one */
	char referral[CONFIG_REFERRAL_MAX + 1]; /* repeated `referral` lines joined by '\n' */
	/* 0 while `referral` holds the built-in default: the first `referral`
	 * directive replaces the default, later ones append a line. Without
	 * this an operator could never drop the generic default lines. */
	int referral_set;
	/* Repeated `topic-referral` lines, "topic: text", joined by '\n'. */
	char topic_referral[CONFIG_REFERRAL_MAX + 1];
	int topic_referral_set;
};

/* Fill `c` with every default. */
void config_defaults(struct config *c);

/* Apply a config file. Returns 0, or -1 with `err` set to a message such as
 * "FILE:12: slot-length '45m' is out of range (15m..30m)". On error `c` is
 * left exactly as it was: a file that fails half-way applies nothing. */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen);

/* Apply one directive by name ("slot-length") and string value ("25m"),
 * as from the command line. `where` prefixes errors (e.g. "--slot-length").
 * On error `c` is unchanged. `referral` appends, as in a file. */
int config_set(struct config *c, const char *name, const char *value,
               const char *where, char *err, size_t errlen);

/* Cross-field checks after everything is applied: warn marks below the slot
 * length, TLS cert and key together, non-loopback listen only with TLS or
 * insecure-public, dev mode only on loopback, time-scale only in dev mode,
 * a token secret of at least 32 bytes outside dev mode. */
int config_validate(const struct config *c, char *err, size_t errlen);

/* The referral for a session about `topic`: its topic-referral lines, then
 * the general `referral` lines, joined by '\n' into `out` (cut to fit). */
void config_referral_for(const struct config *c, const char *topic, char *out, size_t cap);

/* The secret in force: the configured one, or the built-in dev secret. */
const char *config_token_secret(const struct config *c);

/* Whether a listen address is loopback ("127.x", "::1", "localhost", "lo"). */
int config_is_loopback(const char *addr);

/* Parse a duration: "30" (seconds), "30s", "5m", "1h", "1h30m". Returns 0,
 * -1 if it is not a duration, -2 if it overflows an int of seconds. */
int config_parse_duration(const char *s, int *out_seconds);

/* Print every directive with its type, default and bounds (for --help).
 * `stream` is a FILE * (NULL means stdout). */
void config_print_help(void *stream);

#endif
