/* test_web.c - what a browser gets over HTTP: the three pages and their
 * modules with the security headers, nothing outside web-root, and the
 * dev-only token endpoint, which production does not have. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "../../server/auth.h"
#include "../../server/config.h"

static char resp[65536];

static void test_pages_and_headers(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, NULL), 0);
	const char *pages[] = { "/", "/counselor", "/operator", "/static/socket.js" };
	for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
		if (h_http_get_raw(s.port, pages[i], resp, sizeof resp) != 200)
			fail_msg("%s is not served", pages[i]);
		assert_non_null(strstr(resp, "content-security-policy: default-src 'self'"));
		assert_non_null(strstr(resp, "x-content-type-options: nosniff"));
	}
	assert_int_equal(h_http_get_raw(s.port, "/static/socket.js", resp, sizeof resp), 200);
	assert_non_null(strstr(resp, "content-type: text/javascript"));
	assert_non_null(strstr(resp, "export class EarshotSocket"));
	/* Nothing outside web-root, whatever the spelling. */
	const char *bad[] = { "/static/../Makefile", "/static/..%2fMakefile", "/static/.hidden.js",
		              "/static/README.md", "/static/", "/client.html", "/static/a/b.js" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (h_http_get(s.port, bad[i], resp, sizeof resp) != 404)
			fail_msg("%s should be 404", bad[i]);
	assert_int_equal(h_server_stop(&s), 0);
}

static void test_dev_token(void **state)
{
	(void)state;
	struct h_server s;
	assert_int_equal(h_server_start(&s, NULL), 0);
	char tok[PROTO_TOKEN_MAX + 1];
	assert_int_equal(h_http_get(s.port, "/dev/token?role=counselor&sub=kim&name=Kim+Lee&skills=grief%2Canxiety",
	                            tok, sizeof tok), 200);
	struct config cfg;
	config_defaults(&cfg);
	struct auth_identity id;
	assert_int_equal(auth_verify(tok, config_token_secret(&cfg), (int64_t)time(NULL), &id), AUTH_OK);
	assert_int_equal(id.role, ROLE_COUNSELOR);
	assert_string_equal(id.sub, "kim");
	assert_string_equal(id.name, "Kim Lee");
	assert_int_equal(id.nskills, 2);
	assert_string_equal(id.skills[1], "anxiety");
	/* Nonsense is refused, not minted. */
	assert_int_equal(h_http_get(s.port, "/dev/token?role=admin&sub=x", tok, sizeof tok), 404);
	assert_int_equal(h_http_get(s.port, "/dev/token?role=client&sub=bad%20sub", tok, sizeof tok), 404);
	assert_int_equal(h_server_stop(&s), 0);

	/* Production has no such endpoint. */
	const char *const prod[] = { "--dev-mode", "no", "--token-secret",
		                     "0123456789abcdef0123456789abcdef", NULL };
	assert_int_equal(h_server_start(&s, prod), 0);
	assert_int_equal(h_http_get(s.port, "/dev/token?role=counselor&sub=kim", tok, sizeof tok), 404);
	assert_int_equal(h_http_get(s.port, "/", resp, sizeof resp), 200);
	assert_int_equal(h_server_stop(&s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pages_and_headers),
		cmocka_unit_test(test_dev_token),
	};
	return cmocka_run_group_tests(tests, h_group_setup, h_group_teardown);
}
