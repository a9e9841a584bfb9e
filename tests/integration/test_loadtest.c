/* test_loadtest.c - the load generator still works: brief runs of
 * earshot-loadtest against the real earshotd in each of its loads (held
 * voice, arrivals with text, declines and think time, TLS, idle on a Redis
 * node), checked through its --json. No time is asserted: benchmarks
 * measure speed, and this machine is shared. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* Run the generator with `args` against `url`; its --json, parsed (the
 * caller frees it). The run must exit 0. */
static json_t *run(const char *url, const char *args)
{
	char out[] = "/tmp/earshot-loadtest-XXXXXX";
	int fd = mkstemp(out);
	assert_true(fd >= 0);
	close(fd);
	const char *bin = getenv("EARSHOT_LOADTEST") ? getenv("EARSHOT_LOADTEST")
	                                             : "build/earshot-loadtest";
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "timeout 120 %s --url %s %s --json %s >/dev/null 2>&1", bin, url,
	         args, out);
	int st = system(cmd);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) != 0)
		fail_msg("'%s' exited %d", cmd, WEXITSTATUS(st));
	json_error_t e;
	json_t *j = json_load_file(out, 0, &e);
	unlink(out);
	if (!j)
		fail_msg("its --json does not parse: %s (line %d)", e.text, e.line);
	return j;
}

/* The number at a dotted path ("flow.started"); fails if it is missing. */
static double num(const json_t *j, const char *path)
{
	char copy[128], *save, *key;
	snprintf(copy, sizeof copy, "%s", path);
	const json_t *v = j;
	for (key = strtok_r(copy, ".", &save); key && v; key = strtok_r(NULL, ".", &save))
		v = json_object_get(v, key);
	if (!json_is_number(v))
		fail_msg("no number at '%s' in the generator's JSON", path);
	return json_number_value(v);
}

/* Every row of the time series has the columns the plot and readers use. */
static void check_timeseries(const json_t *j, size_t rows)
{
	const json_t *ts = json_object_get(j, "timeseries");
	assert_true(json_is_array(ts));
	assert_int_equal(json_array_size(ts), rows);
	static const char *const keys[] = { "t_s", "sessions", "waiting", "counselors_available",
		"offers_per_s", "started_per_s", "audio_pps", "text_per_s", "text_p50_ms",
		"text_p99_ms", "audio_lost", "text_lost", "errors", "server_cpu_pct",
		"server_rss_kb", "redis_cmds_per_s", "generator_cpu_pct" };
	for (size_t i = 0; i < rows; i++)
		for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
			if (!json_object_get(json_array_get(ts, i), keys[k]))
				fail_msg("time series row %zu has no '%s'", i, keys[k]);
}

static void test_brief_voice_run(void **state)
{
	(void)state;
	struct h_server srv;
	assert_int_equal(h_server_start(&srv, NULL), 0);
	json_t *j = run(srv.url, "--voice-sessions 5 --seconds 2 --warmup 1");
	assert_int_equal(h_server_stop(&srv), 0);
	assert_int_equal(num(j, "sessions"), 5);
	double sent = num(j, "sent");
	/* 10 parties x 50 packets a second x 2 s, give or take a tick. */
	assert_in_range(sent, 900, 1100);
	assert_int_equal(num(j, "bad"), 0);
	assert_int_equal(num(j, "unexpected_closes"), 0);
	assert_true(num(j, "received") * 100 >= sent * 98);
	assert_true(num(j, "latency_ms.samples") > 0);
	check_timeseries(j, 2);
	json_decref(j);
}

/* Clients arrive for 3 s, counselors think and decline some offers,
 * sessions last 1 s with chat both ways, then the queue drains: every
 * arrival is offered, served and ends, and every message arrives. */
static void test_arrivals_text(void **state)
{
	(void)state;
	struct h_server srv;
	assert_int_equal(h_server_start(&srv, NULL), 0);
	char svg[] = "/tmp/earshot-loadtest-plot-XXXXXX.svg", args[512];
	int fd = mkstemps(svg, 4);
	assert_true(fd >= 0);
	close(fd);
	snprintf(args, sizeof args,
	         "--arrivals 8 --counselors 16 --mode text --text-rate 4 --think-ms 100 "
	         "--decline 0.3 --session-s 1 --seconds 3 --server-pid %d --plot %s",
	         (int)srv.pid, svg);
	json_t *j = run(srv.url, args);
	assert_int_equal(h_server_stop(&srv), 0);

	double started = num(j, "flow.started");
	assert_true(started > 0);
	assert_int_equal(num(j, "flow.arrivals"), num(j, "flow.talk_now"));
	assert_int_equal(started, num(j, "flow.talk_now"));
	assert_int_equal(num(j, "flow.accepted"), started);
	assert_int_equal(num(j, "flow.offers"), num(j, "flow.accepted") + num(j, "flow.declined"));
	assert_int_equal(num(j, "flow.ended"), started);
	assert_int_equal(num(j, "flow.ended_early"), 0);
	assert_int_equal(num(j, "flow.left_waiting"), 0);
	/* Every client's first offer and its start were timed. */
	assert_int_equal(num(j, "offer_latency_ms.samples"), started);
	assert_int_equal(num(j, "start_latency_ms.samples"), started);
	assert_true(num(j, "offer_latency_ms.p99") >= 0);

	double text = num(j, "text.sent");
	assert_true(text > 0);
	assert_int_equal(num(j, "text.received"), text);
	assert_int_equal(num(j, "text.lost"), 0);
	assert_int_equal(num(j, "text.bad"), 0);
	assert_int_equal(num(j, "text.latency_ms.samples"), text);

	assert_int_equal(num(j, "errors"), 0);
	assert_int_equal(json_object_size(json_object_get(j, "errors_by_code")), 0);
	assert_int_equal(num(j, "unexpected_closes"), 0);
	assert_true(num(j, "server.cpu_s") >= 0);
	assert_true(num(j, "server.peak_rss_kb") > 0);
	check_timeseries(j, 3);
	json_decref(j);

	/* The chart: gnuplot drew an SVG. */
	FILE *f = fopen(svg, "r");
	assert_non_null(f);
	char head[512] = "";
	size_t n = fread(head, 1, sizeof head - 1, f);
	fclose(f);
	unlink(svg);
	head[n] = '\0';
	assert_non_null(strstr(head, "<svg"));
}

/* wss:// with a self-signed certificate: held voice sessions of 1 s with
 * chat, each client replaced as it leaves. */
static void test_tls_voice(void **state)
{
	(void)state;
	struct h_server srv;
	assert_int_equal(h_server_start_tls(&srv, NULL), 0);
	json_t *j = run(srv.url, "--insecure --sessions 3 --mode voice --session-s 1 "
	                         "--text-rate 2 --seconds 2 --warmup 0");
	assert_int_equal(h_server_stop(&srv), 0);

	assert_true(json_is_true(json_object_get(json_object_get(j, "scenario"), "tls")));
	assert_true(num(j, "flow.started") > 0);
	assert_true(num(j, "received") > 0);
	assert_int_equal(num(j, "bad"), 0);
	assert_true(num(j, "text.received") > 0);
	assert_int_equal(num(j, "text.lost"), 0);
	assert_int_equal(num(j, "errors"), 0);
	assert_int_equal(num(j, "unexpected_closes"), 0);
	check_timeseries(j, 2);
	json_decref(j);
}

/* Idle connections on a node backed by Redis: all held, the server's
 * memory per connection and Redis' commands measured. */
static void test_idle_on_redis(void **state)
{
	(void)state;
	struct h_redis r;
	assert_int_equal(h_redis_start(&r), 0);
	struct h_server srv;
	const char *const sargs[] = { "--redis", r.url, NULL };
	assert_int_equal(h_server_start(&srv, sargs), 0);
	char args[256];
	snprintf(args, sizeof args, "--idle 40 --seconds 2 --server-pid %d --redis 127.0.0.1:%d",
	         (int)srv.pid, r.port);
	json_t *j = run(srv.url, args);
	assert_int_equal(h_server_stop(&srv), 0);
	h_redis_stop(&r);

	assert_int_equal(num(j, "idle.connections"), 40);
	assert_int_equal(num(j, "idle.counselors"), 20);
	assert_true(num(j, "idle.rss_after_kb") > num(j, "idle.rss_before_kb"));
	assert_true(num(j, "idle.kb_per_connection") > 0);
	assert_true(num(j, "redis.commands") > 0);
	assert_int_equal(num(j, "errors"), 0);
	assert_int_equal(num(j, "unexpected_closes"), 0);
	check_timeseries(j, 2);
	const json_t *last = json_array_get(json_object_get(j, "timeseries"), 1);
	assert_int_equal(json_integer_value(json_object_get(last, "connected")), 40);
	assert_int_equal(json_integer_value(json_object_get(last, "counselors_away")), 20);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_brief_voice_run),
		cmocka_unit_test(test_arrivals_text),
		cmocka_unit_test(test_tls_voice),
		cmocka_unit_test(test_idle_on_redis),
	};
	return cmocka_run_group_tests(tests, h_group_setup, h_group_teardown);
}
