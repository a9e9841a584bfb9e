/* test_config.c - unit tests for the config table, file parser, command-line
 * setter and cross-field validation. Includes config.c to reach its statics;
 * runs from the repository root (it loads configs/earshot.conf and dev.conf). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../server/config.c"

#include <unistd.h>

/* A temp file holding `text`; its path is written to `path`. */
static void write_tmp(char *path, size_t len, const char *text)
{
	snprintf(path, len, "/tmp/earshot-test-config-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	size_t n = strlen(text);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	close(fd);
}

/* Load `text` as a file over defaults. Returns config_load_file's result;
 * on error `msg` holds the error with the temp path replaced by "FILE". */
static int load_text(struct config *c, const char *text, char *msg, size_t msglen)
{
	char path[64], err[CONFIG_ERR_MAX] = "";
	write_tmp(path, sizeof(path), text);
	int rc = config_load_file(c, path, err, sizeof(err));
	unlink(path);
	msg[0] = '\0';
	size_t plen = strlen(path);
	if (strncmp(err, path, plen) == 0)
		snprintf(msg, msglen, "FILE%s", err + plen);
	else
		snprintf(msg, msglen, "%s", err);
	return rc;
}

/* Load over defaults and expect the exact error message. */
static void expect_load_error(const char *text, const char *want)
{
	struct config c;
	char msg[CONFIG_ERR_MAX + 16];
	config_defaults(&c);
	if (load_text(&c, text, msg, sizeof(msg)) != -1)
		fail_msg("loaded without error: %s", text);
	assert_string_equal(msg, want);
}

static void expect_load_ok(struct config *c, const char *text)
{
	char msg[CONFIG_ERR_MAX + 16];
	config_defaults(c);
	int rc = load_text(c, text, msg, sizeof(msg));
	if (rc != 0)
		fail_msg("unexpected error: %s", msg);
}

static void expect_valid(const struct config *c)
{
	char err[CONFIG_ERR_MAX] = "";
	int rc = config_validate(c, err, sizeof(err));
	if (rc != 0)
		fail_msg("unexpected validation error: %s", err);
}

static void expect_invalid(const struct config *c, const char *want)
{
	char err[CONFIG_ERR_MAX] = "";
	assert_int_equal(config_validate(c, err, sizeof(err)), -1);
	assert_string_equal(err, want);
}

/* A production config that passes validation, for the rule tests to break. */
static void prod_config(struct config *c)
{
	config_defaults(c);
	snprintf(c->listen, sizeof(c->listen), "0.0.0.0");
	snprintf(c->tls_cert, sizeof(c->tls_cert), "/etc/cert.pem");
	snprintf(c->tls_key, sizeof(c->tls_key), "/etc/key.pem");
	c->dev_mode = 0;
	snprintf(c->token_secret, sizeof(c->token_secret), "%s",
	         "0123456789abcdef0123456789abcdef");
}

/* ---- defaults and the table ------------------------------------------- */

static void test_defaults(void **state)
{
	(void)state;
	struct config c;
	config_defaults(&c);
	assert_string_equal(c.listen, "127.0.0.1");
	assert_int_equal(c.port, 8080);
	assert_string_equal(c.tls_cert, "");
	assert_string_equal(c.tls_key, "");
	assert_int_equal(c.insecure_public, 0);
	assert_int_equal(c.dev_mode, 1);
	assert_string_equal(c.token_secret, "");
	assert_int_equal(c.slot_length, 1200);
	assert_int_equal(c.warn_count, 2);
	assert_int_equal(c.warn_at[0], 300);
	assert_int_equal(c.warn_at[1], 60);
	assert_int_equal(c.goodbye_grace, 30);
	assert_int_equal(c.ring_timeout, 20);
	assert_int_equal(c.max_missed_offers, 2);
	assert_int_equal(c.wrapup, 60);
	assert_int_equal(c.max_message_bytes, 8192);
	assert_int_equal(c.max_text_bytes, 4000);
	assert_int_equal(c.msg_rate, 20);
	assert_int_equal(c.msg_burst, 40);
	assert_int_equal(c.max_queue, 10000);
	assert_int_equal(c.auth_timeout, 10);
	assert_int_equal(c.shutdown_grace, 3);
	assert_int_equal(c.time_scale, 1);
	assert_int_equal(c.log_level, CFG_LOG_INFO);
	assert_string_equal(c.referral,
	                    "If you are in danger now, call your local emergency number "
	                    "(112 in the EU, 911 in the US).\n"
	                    "To talk again or book a longer session, open earshot and tap Talk now.");
	assert_int_equal(c.referral_set, 0);
	expect_valid(&c);
}

/* Every default must pass its own parser and bounds: config_defaults
 * ignores errors, so a typo in the table would otherwise go unnoticed. */
static void test_table_defaults_apply_cleanly(void **state)
{
	(void)state;
	struct config c;
	memset(&c, 0, sizeof(c));
	for (size_t i = 0; i < NDIRECTIVES; i++) {
		char err[CONFIG_ERR_MAX] = "";
		if (config_apply(&c, &directives[i], directives[i].def, "default", err,
		                 sizeof(err)) != 0)
			fail_msg("%s: %s", directives[i].name, err);
	}
}

static void test_validate_srtp_profile(void **state)
{
	(void)state;
	struct config c;
	char err[CONFIG_ERR_MAX];
	config_defaults(&c);
	assert_string_equal(c.srtp_profile, "aead_aes_128_gcm");
	assert_int_equal(config_set(&c, "srtp-profile", "aes_cm_128_hmac_sha1_80", "--srtp-profile",
	                            err, sizeof(err)), 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_int_equal(config_set(&c, "srtp-profile", "rot13", "--srtp-profile", err, sizeof(err)), 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "srtp-profile 'rot13' is not aead_aes_128_gcm or aes_cm_128_hmac_sha1_80");
}

static void test_validate_redis_and_node(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	config_defaults(&c);
	assert_string_equal(c.redis, "");
	assert_int_equal(c.presence_ttl, 10);
	assert_int_equal(config_set(&c, "redis", "redis://10.0.0.5:6380/2", "--redis", err, sizeof(err)), 0);
	assert_int_equal(config_set(&c, "node-id", "eu-1.a_b", "--node-id", err, sizeof(err)), 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), 0);
	assert_int_equal(config_set(&c, "redis", "http://x", "--redis", err, sizeof(err)), 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "redis 'http://x' is not redis://host[:port][/db]");
	assert_int_equal(config_set(&c, "redis", "", "--redis", err, sizeof(err)), 0);
	assert_int_equal(config_set(&c, "node-id", "a/b", "--node-id", err, sizeof(err)), 0);
	assert_int_equal(config_validate(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "node-id 'a/b' may hold only A-Z a-z 0-9 . _ -");
	assert_int_equal(config_set(&c, "presence-ttl", "0s", "--presence-ttl", err, sizeof(err)), -1);
}

/* Referral per topic: that topic's lines first, then the general ones;
 * a line must name a valid topic. */
static void test_topic_referral(void **state)
{
	(void)state;
	struct config c;
	char err[256], out[CONFIG_REFERRAL_MAX + 1];
	config_defaults(&c);
	assert_int_equal(config_set(&c, "referral", "Call 112 in danger.", "--referral", err, sizeof err), 0);
	assert_int_equal(config_set(&c, "topic-referral", "grief: Cruse 0808 808 1677", "x", err,
	                            sizeof err), 0);
	assert_int_equal(config_set(&c, "topic-referral", "work: Acas 0300 123 1100", "x", err,
	                            sizeof err), 0);
	assert_int_equal(config_set(&c, "topic-referral", "grief: griefline.example", "x", err,
	                            sizeof err), 0);
	assert_int_equal(config_validate(&c, err, sizeof err), 0);
	config_referral_for(&c, "grief", out, sizeof out);
	assert_string_equal(out, "Cruse 0808 808 1677\ngriefline.example\nCall 112 in danger.");
	config_referral_for(&c, "gri", out, sizeof out);   /* whole topics only */
	assert_string_equal(out, "Call 112 in danger.");
	config_referral_for(&c, "work", out, sizeof out);
	assert_string_equal(out, "Acas 0300 123 1100\nCall 112 in danger.");
	assert_int_equal(config_set(&c, "topic-referral", "no topic here", "x", err, sizeof err), 0);
	assert_int_equal(config_validate(&c, err, sizeof err), -1);
	assert_non_null(strstr(err, "topic-referral"));
}

static void test_table_names_unique_and_complete(void **state)
{
	(void)state;
	static const char *const want[] = {
		"listen", "port", "tls-cert", "tls-key", "insecure-public", "dev-mode",
		"token-secret", "slot-length", "warn-at", "goodbye-grace", "ring-timeout",
		"max-missed-offers", "wrapup", "max-message-bytes", "max-text-bytes",
		"msg-rate", "msg-burst", "max-queue", "auth-timeout", "shutdown-grace",
		"time-scale", "log-level", "referral", "srtp-profile", "media-max-packet",
		"media-max-pps", "media-stale-ms", "media-queue", "silence-timeout", "link-report", "web-root",
		"redis", "node-id", "presence-ttl", "advertise-url", "topic-wait",
		"previous-wait", "continuity-days", "crisis-question", "crisis-wrapup",
		"shift-sessions", "shift-hours", "topic-referral", "resume-grace",
	};
	assert_int_equal(NDIRECTIVES, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_non_null(config_find(want[i]));
	for (size_t i = 0; i < NDIRECTIVES; i++)
		for (size_t j = i + 1; j < NDIRECTIVES; j++)
			assert_string_not_equal(directives[i].name, directives[j].name);
}

/* ---- value parsers ------------------------------------------------------ */

static void test_parse_duration(void **state)
{
	(void)state;
	static const struct { const char *in; int want; } ok[] = {
		{ "0", 0 }, { "30", 30 }, { "30s", 30 }, { "5m", 300 }, { "1h", 3600 },
		{ "1h30m", 5400 }, { "1m30s", 90 }, { "1h0m5s", 3605 }, { "90s", 90 },
		{ "007", 7 },
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int v = -1;
		assert_int_equal(config_parse_duration(ok[i].in, &v), 0);
		assert_int_equal(v, ok[i].want);
	}
	static const char *const bad[] = {
		"", "s", "m5", "5x", "-5", "+5", " 5", "5 ", "1h30", "30m1h", "5m5m",
		"1.5m", "5M", "5ms", "1h 30m",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int v = -1;
		if (config_parse_duration(bad[i], &v) != -1)
			fail_msg("'%s' parsed as a duration", bad[i]);
	}
	int v;
	assert_int_equal(config_parse_duration("99999999999999999999", &v), -2);
	assert_int_equal(config_parse_duration("999999999h", &v), -2);
}

static void test_fmt_duration(void **state)
{
	(void)state;
	char b[32];
	assert_string_equal(config_fmt_duration(0, b, sizeof(b)), "0s");
	assert_string_equal(config_fmt_duration(5, b, sizeof(b)), "5s");
	assert_string_equal(config_fmt_duration(90, b, sizeof(b)), "1m30s");
	assert_string_equal(config_fmt_duration(900, b, sizeof(b)), "15m");
	assert_string_equal(config_fmt_duration(3600, b, sizeof(b)), "1h");
	assert_string_equal(config_fmt_duration(5400, b, sizeof(b)), "1h30m");
	assert_string_equal(config_fmt_duration(3661, b, sizeof(b)), "1h1m1s");
}

static void test_int_values(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "port 9000\nmax-queue 1000000\nmax-missed-offers 1\n");
	assert_int_equal(c.port, 9000);
	assert_int_equal(c.max_queue, 1000000);
	assert_int_equal(c.max_missed_offers, 1);
	expect_load_ok(&c, "port 0\n");
	assert_int_equal(c.port, 0);
	expect_load_error("port abc\n", "FILE:1: port 'abc' is not a number");
	expect_load_error("\nport 12x\n", "FILE:2: port '12x' is not a number");
	expect_load_error("port 65536\n", "FILE:1: port '65536' is out of range (0..65535)");
	expect_load_error("port -1\n", "FILE:1: port '-1' is out of range (0..65535)");
	expect_load_error("max-text-bytes 4001\n",
	                  "FILE:1: max-text-bytes '4001' is out of range (16..4000)");
	expect_load_error("msg-rate 99999999999999999999\n",
	                  "FILE:1: msg-rate '99999999999999999999' is out of range (1..1000)");
}

static void test_duration_values(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "goodbye-grace 30\nring-timeout 45s\nwrapup 5m\nslot-length 25m\n");
	assert_int_equal(c.goodbye_grace, 30);
	assert_int_equal(c.ring_timeout, 45);
	assert_int_equal(c.wrapup, 300);
	assert_int_equal(c.slot_length, 1500);
	expect_load_ok(&c, "wrapup 0\nshutdown-grace 0s\nauth-timeout 2m\n");
	assert_int_equal(c.wrapup, 0);
	assert_int_equal(c.shutdown_grace, 0);
	assert_int_equal(c.auth_timeout, 120);
	/* 1h parses; it is rejected by bounds, which are shown in human form. */
	expect_load_error("# slot\n\nslot-length 1h\n",
	                  "FILE:3: slot-length '1h' is out of range (15m..30m)");
	expect_load_error("slot-length 45m\n",
	                  "FILE:1: slot-length '45m' is out of range (15m..30m)");
	expect_load_error("ring-timeout 2m30s\n",
	                  "FILE:1: ring-timeout '2m30s' is out of range (5s..2m)");
	expect_load_error("goodbye-grace 4\n",
	                  "FILE:1: goodbye-grace '4' is out of range (5s..5m)");
	expect_load_error("slot-length abc\n",
	                  "FILE:1: slot-length 'abc' is not a duration (e.g. 30, 30s, 5m, 1h)");
}

static void test_bool_values(void **state)
{
	(void)state;
	static const struct { const char *v; int want; } cases[] = {
		{ "yes", 1 }, { "no", 0 }, { "true", 1 }, { "false", 0 }, { "on", 1 },
		{ "off", 0 }, { "1", 1 }, { "0", 0 }, { "YES", 1 }, { "Off", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		char text[64];
		snprintf(text, sizeof(text), "insecure-public %s\n", cases[i].v);
		expect_load_ok(&c, text);
		assert_int_equal(c.insecure_public, cases[i].want);
	}
	expect_load_error("dev-mode maybe\n", "FILE:1: dev-mode 'maybe' is not yes or no");
	expect_load_error("dev-mode 2\n", "FILE:1: dev-mode '2' is not yes or no");
}

static void test_string_values(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "listen ::1\ntls-cert /a b/cert.pem\n");
	assert_string_equal(c.listen, "::1");
	assert_string_equal(c.tls_cert, "/a b/cert.pem");

	/* 63 bytes fit in listen[64]; 64 do not. */
	char text[256], want[256], v[80];
	memset(v, 'a', 63);
	v[63] = '\0';
	snprintf(text, sizeof(text), "listen %s\n", v);
	expect_load_ok(&c, text);
	assert_string_equal(c.listen, v);
	v[63] = 'a';
	v[64] = '\0';
	snprintf(text, sizeof(text), "listen %s\n", v);
	/* The quoted value is cut to keep the bound readable. */
	snprintf(want, sizeof(want), "FILE:1: listen '%.44s...' is too long (at most 63 bytes)", v);
	expect_load_error(text, want);
}

static void test_secret_never_quoted(void **state)
{
	(void)state;
	char text[400];
	memset(text, 0, sizeof(text));
	memcpy(text, "token-secret ", 13);
	memset(text + 13, 's', 300);
	text[313] = '\n';
	expect_load_error(text, "FILE:1: token-secret is too long (at most 255 bytes)");
}

static void test_log_level_values(void **state)
{
	(void)state;
	static const struct { const char *v; enum config_log_level want; } cases[] = {
		{ "error", CFG_LOG_ERROR }, { "warn", CFG_LOG_WARN },
		{ "info", CFG_LOG_INFO }, { "debug", CFG_LOG_DEBUG },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		char text[64];
		snprintf(text, sizeof(text), "log-level %s\n", cases[i].v);
		expect_load_ok(&c, text);
		assert_int_equal(c.log_level, cases[i].want);
	}
	expect_load_error("log-level verbose\n",
	                  "FILE:1: log-level 'verbose' is not one of error, warn, info, debug");
}

static void test_warn_at(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "warn-at 10m,5m,1m\n");
	assert_int_equal(c.warn_count, 3);
	assert_int_equal(c.warn_at[0], 600);
	assert_int_equal(c.warn_at[1], 300);
	assert_int_equal(c.warn_at[2], 60);
	expect_load_ok(&c, "warn-at 2m\n");
	assert_int_equal(c.warn_count, 1);
	assert_int_equal(c.warn_at[0], 120);
	expect_load_ok(&c, "warn-at 4m, 3m ,2m,30\n");
	assert_int_equal(c.warn_count, 4);
	assert_int_equal(c.warn_at[3], 30);

	expect_load_error("warn-at 1m,5m\n",
	                  "FILE:1: warn-at '1m,5m' is not strictly descending (largest first, e.g. 5m,1m)");
	expect_load_error("warn-at 5m,5m\n",
	                  "FILE:1: warn-at '5m,5m' is not strictly descending (largest first, e.g. 5m,1m)");
	expect_load_error("warn-at 5m,0\n",
	                  "FILE:1: warn-at '5m,0': '0' is out of range (1s..30m)");
	expect_load_error("warn-at 5m,4m,3m,2m,1m\n",
	                  "FILE:1: warn-at '5m,4m,3m,2m,1m' has more than 4 marks");
	expect_load_error("warn-at 5m,,1m\n",
	                  "FILE:1: warn-at '5m,,1m': '' is not a duration (e.g. 30s, 5m)");
	expect_load_error("warn-at 5m,soon\n",
	                  "FILE:1: warn-at '5m,soon': 'soon' is not a duration (e.g. 30s, 5m)");

	/* A bad list leaves the previous marks alone. */
	char err[CONFIG_ERR_MAX];
	config_defaults(&c);
	assert_int_equal(config_set(&c, "warn-at", "3m,4m", "--warn-at", err, sizeof(err)), -1);
	assert_int_equal(c.warn_count, 2);
	assert_int_equal(c.warn_at[0], 300);
	assert_int_equal(c.warn_at[1], 60);
}

/* ---- file syntax -------------------------------------------------------- */

static void test_unknown_directive(void **state)
{
	(void)state;
	expect_load_error("port 8080\n# ok\nfoo bar\n", "FILE:3: unknown directive 'foo'");
	expect_load_error("slot_length 20m\n", "FILE:1: unknown directive 'slot_length'");
}

static void test_missing_value(void **state)
{
	(void)state;
	expect_load_error("dev-mode\n", "FILE:1: dev-mode needs a value (\"\" for an empty one)");
	expect_load_error("tls-cert   \t\n",
	                  "FILE:1: tls-cert needs a value (\"\" for an empty one)");
}

static void test_quotes(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "listen \"127.0.0.2\"\ntls-cert \"\"\nreferral \"  padded  \"\n");
	assert_string_equal(c.listen, "127.0.0.2");
	assert_string_equal(c.tls_cert, "");
	assert_string_equal(c.referral, "  padded  ");
	expect_load_ok(&c, "slot-length \"25m\"\n");
	assert_int_equal(c.slot_length, 1500);
	/* Only a pair around the whole value is stripped. */
	expect_load_ok(&c, "referral Call \"Samaritans\" now\nreferral \"x\n");
	assert_string_equal(c.referral, "Call \"Samaritans\" now\n\"x");
	expect_load_error("port \"80a\"\n", "FILE:1: port '80a' is not a number");
}

static void test_comments_and_blank_lines(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "# first\n\n   \n\t# indented comment\n   # port 1\nport 1234\n"
	                   "  \t\n#port 9\n");
	assert_int_equal(c.port, 1234);
	expect_load_error("# one\n\n   # three\nport x\n", "FILE:4: port 'x' is not a number");
}

static void test_hash_inside_value(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "referral Call line #1 today # not a comment\n"
	                   "token-secret abc#def\n");
	assert_string_equal(c.referral, "Call line #1 today # not a comment");
	assert_string_equal(c.token_secret, "abc#def");
	/* A trailing comment after a number is part of the value, and says so. */
	expect_load_error("port 80 # http\n", "FILE:1: port '80 # http' is not a number");
}

static void test_whitespace_crlf_and_bom(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "\xef\xbb\xbfport 81\r\n  listen \t 127.0.0.3  \r\nwarn-at 2m,1m");
	assert_int_equal(c.port, 81);
	assert_string_equal(c.listen, "127.0.0.3");
	assert_int_equal(c.warn_count, 2);
	assert_int_equal(c.warn_at[0], 120);
}

static void test_long_lines(void **state)
{
	(void)state;
	/* Exactly CONFIG_LINE_MAX bytes is fine (a comment), one more is not. */
	size_t n = CONFIG_LINE_MAX;
	char *text = malloc(n + 32);
	assert_non_null(text);
	memset(text, '#', n);
	strcpy(text + n, "\nport 82\n");
	struct config c;
	expect_load_ok(&c, text);
	assert_int_equal(c.port, 82);

	strcpy(text, "port 1\n");
	memset(text + 7, '#', n + 1);
	strcpy(text + 7 + n + 1, "\n");
	expect_load_error(text, "FILE:2: line is longer than 4096 bytes");
	free(text);
}

static void test_missing_file(void **state)
{
	(void)state;
	struct config c;
	char err[CONFIG_ERR_MAX];
	config_defaults(&c);
	assert_int_equal(config_load_file(&c, "/nonexistent/earshot.conf", err, sizeof(err)), -1);
	assert_string_equal(err, "/nonexistent/earshot.conf: No such file or directory");
}

/* A file that fails half-way changes nothing. */
static void test_load_is_atomic(void **state)
{
	(void)state;
	struct config c, before;
	char msg[CONFIG_ERR_MAX + 16];
	config_defaults(&c);
	before = c;
	assert_int_equal(load_text(&c, "port 9999\nreferral x\nslot-length 1\n", msg, sizeof(msg)), -1);
	assert_string_equal(msg, "FILE:3: slot-length '1' is out of range (15m..30m)");
	assert_memory_equal(&c, &before, sizeof(c));
}

/* Directives apply in order over what is already there: the last one wins. */
static void test_later_directive_wins(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "port 1\nport 2\n");
	assert_int_equal(c.port, 2);
}

/* ---- referral ----------------------------------------------------------- */

static void test_referral_appends(void **state)
{
	(void)state;
	struct config c;
	char err[CONFIG_ERR_MAX];
	/* The first line replaces the built-in default; later ones append. */
	expect_load_ok(&c, "referral Line one\nport 8081\nreferral Line two\n");
	assert_string_equal(c.referral, "Line one\nLine two");
	assert_int_equal(c.referral_set, 1);
	/* The command line appends to what the file set. */
	assert_int_equal(config_set(&c, "referral", "Line three", "--referral", err, sizeof(err)), 0);
	assert_string_equal(c.referral, "Line one\nLine two\nLine three");

	/* From defaults, the command line also replaces the default first. */
	config_defaults(&c);
	assert_int_equal(config_set(&c, "referral", "Only", "--referral", err, sizeof(err)), 0);
	assert_string_equal(c.referral, "Only");

	/* "" clears: a service may send no referral at all. */
	expect_load_ok(&c, "referral \"\"\n");
	assert_string_equal(c.referral, "");
	expect_load_ok(&c, "referral a\nreferral \"\"\nreferral b\n");
	assert_string_equal(c.referral, "b");
}

static void test_referral_total_bound(void **state)
{
	(void)state;
	struct config c;
	char err[CONFIG_ERR_MAX], line[1001];
	memset(line, 'r', 999);
	line[999] = '\0';
	config_defaults(&c);
	/* 999 + 1 + 999 = 1999, then "\nx" would be 2001 > 2000. */
	assert_int_equal(config_set(&c, "referral", line, "--referral", err, sizeof(err)), 0);
	assert_int_equal(config_set(&c, "referral", line, "--referral", err, sizeof(err)), 0);
	assert_int_equal(strlen(c.referral), 1999);
	assert_int_equal(config_set(&c, "referral", "x", "--referral", err, sizeof(err)), -1);
	assert_string_equal(err, "--referral: referral would exceed 2000 bytes in total");
	assert_int_equal(strlen(c.referral), 1999);
	/* Exactly 2000 fits. */
	assert_int_equal(config_set(&c, "referral", "", "--referral", err, sizeof(err)), 0);
	line[999] = 'r';
	line[1000] = '\0';
	assert_int_equal(config_set(&c, "referral", line, "--referral", err, sizeof(err)), 0);
	line[999] = '\0';
	assert_int_equal(config_set(&c, "referral", line, "--referral", err, sizeof(err)), 0);
	assert_int_equal(strlen(c.referral), 2000);
}

/* ---- command line ------------------------------------------------------- */

static void test_config_set(void **state)
{
	(void)state;
	struct config c;
	char err[CONFIG_ERR_MAX];
	config_defaults(&c);
	assert_int_equal(config_set(&c, "slot-length", "25m", "--slot-length", err, sizeof(err)), 0);
	assert_int_equal(c.slot_length, 1500);
	assert_int_equal(config_set(&c, "dev-mode", "no", "--dev-mode", err, sizeof(err)), 0);
	assert_int_equal(c.dev_mode, 0);
	assert_int_equal(config_set(&c, "log-level", "debug", "--log-level", err, sizeof(err)), 0);
	assert_int_equal(c.log_level, CFG_LOG_DEBUG);
	/* No quote stripping on the command line: the shell already did it. */
	assert_int_equal(config_set(&c, "tls-cert", "", "--tls-cert", err, sizeof(err)), 0);
	assert_string_equal(c.tls_cert, "");

	assert_int_equal(config_set(&c, "slot-length", "45m", "--slot-length", err, sizeof(err)), -1);
	assert_string_equal(err, "--slot-length: slot-length '45m' is out of range (15m..30m)");
	assert_int_equal(c.slot_length, 1500);
	assert_int_equal(config_set(&c, "foo", "1", "--foo", err, sizeof(err)), -1);
	assert_string_equal(err, "--foo: unknown directive 'foo'");
	assert_int_equal(config_set(&c, "port", "x", NULL, err, sizeof(err)), -1);
	assert_string_equal(err, "port 'x' is not a number");
	/* A control byte in a value is not echoed raw into a log line. */
	assert_int_equal(config_set(&c, "port", "8\n0", "--port", err, sizeof(err)), -1);
	assert_string_equal(err, "--port: port '8?0' is not a number");
	/* A tiny error buffer truncates instead of overflowing. */
	char small[8];
	assert_int_equal(config_set(&c, "port", "x", "--port", small, sizeof(small)), -1);
	assert_string_equal(small, "--port:");
	assert_int_equal(config_set(&c, "port", "x", "--port", NULL, 0), -1);
}

/* ---- validation --------------------------------------------------------- */

static void test_validate_warn_marks(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "slot-length 15m\nwarn-at 14m,1m\n");
	expect_valid(&c);
	expect_load_ok(&c, "slot-length 15m\nwarn-at 15m,1m\n");
	expect_invalid(&c, "warn-at mark 15m is not below slot-length 15m");
	expect_load_ok(&c, "slot-length 15m\nwarn-at 20m\n");
	expect_invalid(&c, "warn-at mark 20m is not below slot-length 15m");
}

static void test_validate_tls_pair(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "tls-cert /c.pem\ntls-key /k.pem\n");
	expect_valid(&c);
	expect_load_ok(&c, "tls-cert /c.pem\n");
	expect_invalid(&c, "tls-cert is set but tls-key is not: set both or neither");
	expect_load_ok(&c, "tls-key /k.pem\n");
	expect_invalid(&c, "tls-key is set but tls-cert is not: set both or neither");
}

static void test_validate_public_listen(void **state)
{
	(void)state;
	struct config c;
	prod_config(&c);
	expect_valid(&c);
	c.tls_cert[0] = c.tls_key[0] = '\0';
	expect_invalid(&c, "listen '0.0.0.0' is not loopback: set tls-cert and tls-key, "
	                   "or insecure-public yes");
	c.insecure_public = 1;
	expect_valid(&c);
	/* Loopback needs neither. */
	c.insecure_public = 0;
	snprintf(c.listen, sizeof(c.listen), "127.0.0.1");
	expect_valid(&c);
}

static void test_validate_dev_mode_loopback(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "dev-mode yes\nlisten ::1\n");
	expect_valid(&c);
	expect_load_ok(&c, "dev-mode yes\nlisten localhost\n");
	expect_valid(&c);
	/* Not even with TLS: dev mode admits anyone without a token. */
	expect_load_ok(&c, "dev-mode yes\nlisten 0.0.0.0\ntls-cert /c\ntls-key /k\n");
	expect_invalid(&c, "dev-mode yes needs a loopback listen address, not '0.0.0.0'");
	expect_load_ok(&c, "dev-mode yes\nlisten 192.168.1.10\ninsecure-public yes\n");
	expect_invalid(&c, "dev-mode yes needs a loopback listen address, not '192.168.1.10'");
}

static void test_validate_time_scale(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "dev-mode yes\ntime-scale 60\n");
	expect_valid(&c);
	assert_int_equal(c.time_scale, 60);
	prod_config(&c);
	c.time_scale = 1;
	expect_valid(&c);
	c.time_scale = 2;
	expect_invalid(&c, "time-scale 2 needs dev-mode yes");
}

static void test_validate_token_secret(void **state)
{
	(void)state;
	struct config c;
	prod_config(&c);
	expect_valid(&c);
	/* 31 bytes */
	snprintf(c.token_secret, sizeof(c.token_secret), "%s", "0123456789abcdef0123456789abcde");
	expect_invalid(&c, "token-secret must be at least 32 bytes outside dev mode "
	                   "(generate one with: openssl rand -hex 32)");
	c.token_secret[0] = '\0';
	expect_invalid(&c, "token-secret must be at least 32 bytes outside dev mode "
	                   "(generate one with: openssl rand -hex 32)");
	/* Dev mode on loopback: empty is fine, the built-in secret is used. */
	snprintf(c.listen, sizeof(c.listen), "127.0.0.1");
	c.dev_mode = 1;
	expect_valid(&c);
}

/* msg-burst below msg-rate is allowed (a strict limiter). */
static void test_validate_burst_below_rate(void **state)
{
	(void)state;
	struct config c;
	expect_load_ok(&c, "msg-rate 100\nmsg-burst 10\n");
	expect_valid(&c);
}

static void test_token_secret(void **state)
{
	(void)state;
	struct config c;
	config_defaults(&c);
	assert_string_equal(config_token_secret(&c), "earshot-dev-secret-do-not-use-in-production");
	snprintf(c.token_secret, sizeof(c.token_secret), "mine");
	assert_string_equal(config_token_secret(&c), "mine");
	/* Outside dev mode the published dev secret is never handed out. */
	c.token_secret[0] = '\0';
	c.dev_mode = 0;
	assert_string_equal(config_token_secret(&c), "");
}

static void test_is_loopback(void **state)
{
	(void)state;
	static const char *const yes[] = {
		"127.0.0.1", "127.1.2.3", "127.255.255.255", "127.0.0.0", "::1",
		"0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "localhost", "LOCALHOST", "lo",
	};
	static const char *const no[] = {
		"0.0.0.0", "128.0.0.1", "10.0.0.1", "126.255.255.255", "127.0.0",
		"127.0.0.256", "1270.0.0.1", "127.0.0.1 ", "", "::", "::2", "::ffff:10.0.0.1",
		"localhost.example.com", "lo0", "eth0", "*",
	};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!config_is_loopback(yes[i]))
			fail_msg("'%s' should be loopback", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (config_is_loopback(no[i]))
			fail_msg("'%s' should not be loopback", no[i]);
	assert_false(config_is_loopback(NULL));
}

static void test_print_help(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	config_print_help(f);
	fclose(f);
	for (size_t i = 0; i < NDIRECTIVES; i++) {
		char opt[64];
		snprintf(opt, sizeof(opt), "  --%s ", directives[i].name);
		if (!strstr(buf, opt))
			fail_msg("help lacks %s", opt);
	}
	assert_non_null(strstr(buf, "--slot-length DURATION"));
	assert_non_null(strstr(buf, "(default 20m, range 15m..30m)"));
	assert_non_null(strstr(buf, "(default 8080, range 0..65535)"));
	assert_non_null(strstr(buf, "(default 5m,1m, range 1s..30m)"));
	assert_non_null(strstr(buf, "--dev-mode yes|no"));
	assert_non_null(strstr(buf, "(default yes)"));
	assert_non_null(strstr(buf, "(default info)"));
	assert_non_null(strstr(buf, "(default 127.0.0.1)"));
	free(buf);
}

/* ---- shipped config files ----------------------------------------------- */

static void load_shipped(struct config *c, const char *path)
{
	char err[CONFIG_ERR_MAX] = "";
	config_defaults(c);
	if (config_load_file(c, path, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	if (!c->dev_mode) {
		/* The example refuses to start until its placeholder secret is
		 * replaced; then it must validate as shipped. */
		assert_int_equal(config_validate(c, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "token-secret is still the example placeholder"));
		assert_int_equal(config_set(c, "token-secret", "0123456789abcdef0123456789abcdef",
		                            "--token-secret", err, sizeof(err)), 0);
	}
	if (config_validate(c, err, sizeof(err)) != 0)
		fail_msg("%s: %s", path, err);
}

static void test_earshot_conf(void **state)
{
	(void)state;
	struct config c;
	load_shipped(&c, "configs/earshot.conf");
	assert_int_equal(c.dev_mode, 0);
	assert_string_equal(c.listen, "0.0.0.0");
	assert_string_equal(c.tls_cert, "/etc/earshot/tls/cert.pem");
	assert_string_equal(c.tls_key, "/etc/earshot/tls/key.pem");
	assert_true(strlen(c.token_secret) >= 32);
	assert_int_equal(c.time_scale, 1);
	assert_int_equal(c.referral_set, 1);
	assert_non_null(strstr(c.referral, "\n"));

	/* The example documents every directive. */
	FILE *f = fopen("configs/earshot.conf", "r");
	assert_non_null(f);
	char line[CONFIG_LINE_MAX + 2];
	int seen[NDIRECTIVES] = { 0 };
	while (fgets(line, sizeof(line), f))
		for (size_t i = 0; i < NDIRECTIVES; i++)
			if (strncmp(line, directives[i].name, strlen(directives[i].name)) == 0 &&
			    line[strlen(directives[i].name)] == ' ')
				seen[i] = 1;
	fclose(f);
	for (size_t i = 0; i < NDIRECTIVES; i++)
		if (!seen[i])
			fail_msg("configs/earshot.conf does not set %s", directives[i].name);
}

static void test_dev_conf(void **state)
{
	(void)state;
	struct config c;
	load_shipped(&c, "configs/dev.conf");
	assert_int_equal(c.dev_mode, 1);
	assert_string_equal(c.listen, "127.0.0.1");
	assert_int_equal(c.port, 8080);
	assert_int_equal(c.log_level, CFG_LOG_INFO);
	assert_string_equal(config_token_secret(&c), "earshot-dev-secret-do-not-use-in-production");
}

/* The two-node example: the same service, distinct names and addresses. */
static void test_node_confs(void **state)
{
	(void)state;
	struct config a, b;
	load_shipped(&a, "configs/node-a.conf");
	load_shipped(&b, "configs/node-b.conf");
	assert_string_equal(a.redis, b.redis);
	assert_true(strncmp(a.redis, "redis://", 8) == 0);
	assert_string_equal(a.node_id, "a");
	assert_string_equal(b.node_id, "b");
	assert_int_not_equal(a.port, b.port);
	assert_string_equal(a.advertise_url, "ws://127.0.0.1:8081/ws");
	assert_string_equal(b.advertise_url, "ws://127.0.0.1:8082/ws");
	assert_string_equal(config_token_secret(&a), config_token_secret(&b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node_confs),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_validate_srtp_profile),
		cmocka_unit_test(test_table_defaults_apply_cleanly),
		cmocka_unit_test(test_validate_redis_and_node),
		cmocka_unit_test(test_topic_referral),
		cmocka_unit_test(test_table_names_unique_and_complete),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_fmt_duration),
		cmocka_unit_test(test_int_values),
		cmocka_unit_test(test_duration_values),
		cmocka_unit_test(test_bool_values),
		cmocka_unit_test(test_string_values),
		cmocka_unit_test(test_secret_never_quoted),
		cmocka_unit_test(test_log_level_values),
		cmocka_unit_test(test_warn_at),
		cmocka_unit_test(test_unknown_directive),
		cmocka_unit_test(test_missing_value),
		cmocka_unit_test(test_quotes),
		cmocka_unit_test(test_comments_and_blank_lines),
		cmocka_unit_test(test_hash_inside_value),
		cmocka_unit_test(test_whitespace_crlf_and_bom),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_load_is_atomic),
		cmocka_unit_test(test_later_directive_wins),
		cmocka_unit_test(test_referral_appends),
		cmocka_unit_test(test_referral_total_bound),
		cmocka_unit_test(test_config_set),
		cmocka_unit_test(test_validate_warn_marks),
		cmocka_unit_test(test_validate_tls_pair),
		cmocka_unit_test(test_validate_public_listen),
		cmocka_unit_test(test_validate_dev_mode_loopback),
		cmocka_unit_test(test_validate_time_scale),
		cmocka_unit_test(test_validate_token_secret),
		cmocka_unit_test(test_validate_burst_below_rate),
		cmocka_unit_test(test_token_secret),
		cmocka_unit_test(test_is_loopback),
		cmocka_unit_test(test_print_help),
		cmocka_unit_test(test_earshot_conf),
		cmocka_unit_test(test_dev_conf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
