/* test_metrics.c - the Prometheus rendering, and the error-code table
 * against PROTOCOL.md: every code the protocol lists is counted, and
 * nothing is counted that the protocol does not list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../server/metrics.h"

static void test_render(void **state)
{
	(void)state;
	struct metrics m = { .connections_total = 7, .chat_relayed = 3, .media_relayed = 500 };
	m.media_dropped[MD_SLOW_READER] = 4;
	metrics_count_error(&m, "wrong_state");
	metrics_count_error(&m, "wrong_state");
	metrics_count_error(&m, "no_such_code");
	struct proto_stats s = { .queue = 4, .oldest_wait_s = 61, .available = 1, .busy = 2,
	                         .served = 9, .ratings_count = 2, .ratings_mean = 4.5 };
	char buf[8192];
	long n = metrics_render(&m, &s, buf, sizeof buf);
	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(buf));
	assert_non_null(strstr(buf, "\nearshot_queue_depth 4\n"));
	assert_non_null(strstr(buf, "\nearshot_queue_oldest_wait_seconds 61\n"));
	assert_non_null(strstr(buf, "\nearshot_counselors{state=\"busy\"} 2\n"));
	assert_non_null(strstr(buf, "\nearshot_sessions_served_total 9\n"));
	assert_non_null(strstr(buf, "\nearshot_rating_mean 4.5\n"));
	assert_non_null(strstr(buf, "\nearshot_chat_relayed_total 3\n"));
	assert_non_null(strstr(buf, "\nearshot_errors_total{code=\"wrong_state\"} 2\n"));
	assert_non_null(strstr(buf, "# TYPE earshot_connections_total counter\n"));
	assert_non_null(strstr(buf, "\nearshot_media_packets_relayed_total 500\n"));
	assert_non_null(strstr(buf, "\nearshot_media_packets_dropped_total{reason=\"slow_reader\"} 4\n"));
	assert_non_null(strstr(buf, "\nearshot_media_packets_dropped_total{reason=\"auth\"} 0\n"));
	/* Too small a buffer is an error, never a truncated exposition. */
	assert_int_equal(metrics_render(&m, &s, buf, 100), -1);
	assert_int_equal(metrics_render(&m, &s, buf, (size_t)n), -1);
	assert_int_equal(metrics_render(&m, &s, buf, (size_t)n + 1), n);
}

/* The rows of PROTOCOL.md's error table: "| `code` | when |". */
static void test_codes_match_protocol(void **state)
{
	(void)state;
	FILE *f = fopen("proto/PROTOCOL.md", "r");
	assert_non_null(f);
	char line[1024];
	int in_table = 0, listed = 0;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, "## Error codes", 14) == 0) {
			in_table = 1;
			continue;
		}
		if (in_table && strncmp(line, "## ", 3) == 0)
			break;
		char code[64];
		if (!in_table || sscanf(line, "| `%63[a-z_]` |", code) != 1)
			continue;
		listed++;
		if (metrics_error_index(code) < 0)
			fail_msg("PROTOCOL.md lists '%s' but metrics does not count it", code);
	}
	fclose(f);
	assert_int_equal((size_t)listed, metrics_error_count);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_codes_match_protocol),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
