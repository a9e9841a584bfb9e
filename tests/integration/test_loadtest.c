/* test_loadtest.c - the load generator still works: a brief voice run of
 * earshot-loadtest against the real earshotd sets up every session and
 * gets every packet back. No time is asserted: benchmarks measure speed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* The integer after "key": in the generator's JSON summary. */
static long json_int(const char *json, const char *key)
{
	char k[64];
	snprintf(k, sizeof k, "\"%s\":", key);
	const char *p = strstr(json, k);
	if (!p)
		fail_msg("no '%s' in the summary", key);
	return strtol(p + strlen(k), NULL, 10);
}

static void test_brief_voice_run(void **state)
{
	(void)state;
	struct h_server srv;
	assert_int_equal(h_server_start(&srv, NULL), 0);
	char out[] = "/tmp/earshot-loadtest-XXXXXX";
	int fd = mkstemp(out);
	assert_true(fd >= 0);
	close(fd);
	const char *bin = getenv("EARSHOT_LOADTEST") ? getenv("EARSHOT_LOADTEST")
	                                             : "build/earshot-loadtest";
	char cmd[1024];
	snprintf(cmd, sizeof cmd,
	         "%s --url %s --voice-sessions 5 --seconds 2 --warmup 1 --json %s >/dev/null 2>&1",
	         bin, srv.url, out);
	int st = system(cmd);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(h_server_stop(&srv), 0);

	FILE *f = fopen(out, "r");
	assert_non_null(f);
	char json[16384];
	size_t n = fread(json, 1, sizeof json - 1, f);
	fclose(f);
	unlink(out);
	json[n] = '\0';
	assert_int_equal(json_int(json, "sessions"), 5);
	long sent = json_int(json, "sent");
	/* 10 parties x 50 packets a second x 2 s, give or take a tick. */
	assert_in_range(sent, 900, 1100);
	assert_int_equal(json_int(json, "bad"), 0);
	assert_int_equal(json_int(json, "unexpected_closes"), 0);
	assert_true(json_int(json, "received") * 100 >= sent * 98);
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_brief_voice_run) };
	return cmocka_run_group_tests(tests, h_group_setup, h_group_teardown);
}
