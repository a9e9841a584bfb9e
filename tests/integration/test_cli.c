/* test_cli.c - the command-line client as a person uses it in two
 * terminals, and as a script uses it: real `earshot` processes against
 * the real earshotd, driven through their standard input and output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "../../server/auth.h"
#include "../../server/config.h"

static struct h_server srv;

static const char *cli_bin(void)
{
	return getenv("EARSHOT") ? getenv("EARSHOT") : "build/earshot";
}

static void spawn(struct h_proc *p, const char *const *args)
{
	assert_int_equal(h_proc_spawn(p, NULL, args), 0);
}

static void say(struct h_proc *p, const char *line)
{
	assert_int_equal(h_proc_say(p, line), 0);
}

static const char *until(struct h_proc *p, const char *needle)
{
	const char *line = h_proc_until(p, needle, H_TIMEOUT_MS);
	if (!line)
		fail_msg("no output line with '%s'", needle);
	return line;
}

/* `earshot token` output, read through a pipe. */
static void mint(char *out, size_t cap, const char *const *args)
{
	char cmd[512];
	int n = snprintf(cmd, sizeof cmd, "%s token", cli_bin());
	for (int i = 0; args[i]; i++)
		n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s", args[i]);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(out, (int)cap, f));
	out[strcspn(out, "\n")] = '\0';
	assert_int_equal(pclose(f), 0);
}

static void test_token_subcommand(void **state)
{
	(void)state;
	char tok[PROTO_TOKEN_MAX + 2];
	const char *const args[] = { "--role", "counselor", "--sub", "alice", "--name", "Alice",
	                             "--skills", "grief,anxiety", "--ttl", "8h", NULL };
	mint(tok, sizeof tok, args);
	struct config cfg;
	config_defaults(&cfg);
	struct auth_identity id;
	int64_t now = (int64_t)time(NULL);
	assert_int_equal(auth_verify(tok, config_token_secret(&cfg), now, &id), AUTH_OK);
	assert_int_equal(id.role, ROLE_COUNSELOR);
	assert_string_equal(id.sub, "alice");
	assert_string_equal(id.name, "Alice");
	assert_int_equal(id.nskills, 2);
	assert_string_equal(id.skills[1], "anxiety");
	assert_in_range(id.exp - now, 8 * 3600 - 5, 8 * 3600);
}

/* Two terminals: a counselor and a person who needs to talk. */
static void test_two_terminals(void **state)
{
	(void)state;
	char tok[PROTO_TOKEN_MAX + 2];
	const char *const targs[] = { "--role", "counselor", "--sub", "alice", "--name", "Alice", NULL };
	mint(tok, sizeof tok, targs);
	struct h_proc k, c;
	const char *const kargs[] = { "counselor", "--url", srv.url, "--token", tok, "--available", NULL };
	spawn(&k, kargs);
	until(&k, "you are available");
	const char *const cargs[] = { "client", "--url", srv.url, "--topic", "anxiety", NULL };
	spawn(&c, cargs);
	until(&c, "waiting: you are number 1");
	until(&k, "incoming:");
	assert_non_null(strstr(k.line, "anxiety"));
	say(&k, "/accept");
	until(&k, "connected with");
	until(&c, "connected with Alice");
	say(&c, "hi. exams next week and I can't sleep");
	assert_non_null(strstr(until(&k, "client: "), "exams next week"));
	say(&k, "I'm glad you reached out.");
	until(&c, "counselor: I'm glad you reached out.");
	say(&k, "/end");
	until(&c, "session ended");
	until(&c, "referral:");
	until(&k, "wrap-up");
	say(&c, "/rate 5 it helped");
	until(&c, "thank you for your rating");
	say(&c, "/quit");
	say(&k, "/quit");
	assert_int_equal(h_proc_reap(&c), 0);
	assert_int_equal(h_proc_reap(&k), 0);
}

static void test_json_mode_and_exit_codes(void **state)
{
	(void)state;
	struct h_proc c;
	const char *const cargs[] = { "client", "--url", srv.url, "--json", NULL };
	spawn(&c, cargs);
	until(&c, "\"type\":\"welcome\"");
	say(&c, "{\"type\":\"talk_now\",\"topic\":\"grief\",\"mode\":\"text\"}");
	until(&c, "\"type\":\"queue\"");
	say(&c, "{\"type\":\"cancel\"}");
	until(&c, "\"type\":\"cancelled\"");
	say(&c, "not json");
	until(&c, "\"code\":\"bad_json\"");
	assert_int_equal(h_proc_reap(&c), 0);

	/* A refused token: exit code 3. */
	struct h_proc k;
	const char *const bad[] = { "counselor", "--url", srv.url, "--token", "not.a.token", NULL };
	spawn(&k, bad);
	assert_int_equal(h_proc_reap(&k), 3);
	/* Nobody listening: exit code 1. */
	const char *const nowhere[] = { "client", "--url", "ws://127.0.0.1:1/ws", NULL };
	spawn(&k, nowhere);
	assert_int_equal(h_proc_reap(&k), 1);
	/* A usage error: exit code 2. */
	const char *const usage[] = { "client", "--no-such-option", NULL };
	spawn(&k, usage);
	assert_int_equal(h_proc_reap(&k), 2);
}

static int setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	h_init();
	return h_server_start(&srv, NULL);
}

static int teardown(void **state)
{
	(void)state;
	int rc = h_server_stop(&srv);
	h_fini();
	return rc == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_subcommand),
		cmocka_unit_test(test_two_terminals),
		cmocka_unit_test(test_json_mode_and_exit_codes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
