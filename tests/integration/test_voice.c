/* test_voice.c - voice end to end through the real earshotd with the real
 * C voice client: the person streams a 440 Hz tone, the counselor 660 Hz;
 * each side's recording is dominated by the other's tone, and at least 98%
 * of the frames sent arrived, in order. Also with the CM profile. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "../../client-demo/wav.h"

static void spawn(struct h_proc *p, const char *const *args)
{
	assert_int_equal(h_proc_spawn(p, NULL, args), 0);
}

static void say(struct h_proc *p, const char *line)
{
	assert_int_equal(h_proc_say(p, line), 0);
}

static const char *until(struct h_proc *p, const char *needle, int ms)
{
	const char *line = h_proc_until(p, needle, ms);
	if (!line)
		fail_msg("no output line with '%s'", needle);
	return line;
}

struct vstats { long sent, received, out_of_order, lost, bad; };

static void parse_stats(const char *line, struct vstats *v)
{
	assert_int_equal(sscanf(line, "voice: sent %ld frames, received %ld frames, out of order %ld, "
	                              "lost %ld, bad %ld",
	                        &v->sent, &v->received, &v->out_of_order, &v->lost, &v->bad), 5);
}

/* Goertzel power of `hz` in `n` samples at 48 kHz. */
static double goertzel(const int16_t *x, size_t n, double hz)
{
	double k = 2.0 * cos(2.0 * M_PI * hz / 48000.0), s1 = 0, s2 = 0;
	for (size_t i = 0; i < n; i++) {
		double s0 = x[i] + k * s1 - s2;
		s2 = s1;
		s1 = s0;
	}
	return s1 * s1 + s2 * s2 - k * s1 * s2;
}

/* The recording's strongest frequency among 200..2000 Hz in 20 Hz steps,
 * over its middle (skipping the codec's start-up). */
static double dominant_hz(const char *path)
{
	char err[256];
	int16_t *pcm = NULL;
	size_t n = 0;
	if (wav_read_mono(path, &pcm, &n, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_true(n > 48000);  /* more than a second of audio: what was received, plus concealment */
	size_t from = n / 4, len = n / 2;
	double best = 0, best_hz = 0;
	for (double hz = 200; hz <= 2000; hz += 20) {
		double p = goertzel(pcm + from, len, hz);
		if (p > best) {
			best = p;
			best_hz = hz;
		}
	}
	free(pcm);
	return best_hz;
}

/* A call between a client on `csrv` and a counselor on `ksrv` (the same
 * server, or two nodes sharing Redis). */
static void call(const struct h_server *csrv, const struct h_server *ksrv)
{
	char dir[] = "/tmp/earshot-voice-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char cwav[128], kwav[128];
	snprintf(cwav, sizeof cwav, "%s/client.wav", dir);
	snprintf(kwav, sizeof kwav, "%s/counselor.wav", dir);
	char tok[PROTO_TOKEN_MAX + 1];
	snprintf(tok, sizeof tok, "%s", h_token(ROLE_COUNSELOR, "vk", "Vee", NULL, 600));

	struct h_proc k, c;
	const char *const kargs[] = { "counselor", "--url", ksrv->url, "--token", tok, "--available",
		                      "--voice", "--tone", "660", "--record", kwav,
		                      "--voice-seconds", "3", NULL };
	spawn(&k, kargs);
	until(&k, "you are available", H_TIMEOUT_MS);
	const char *const cargs[] = { "client", "--url", csrv->url, "--topic", "grief", "--voice",
		                      "--tone", "440", "--record", cwav, "--voice-seconds", "3", NULL };
	spawn(&c, cargs);
	until(&k, "incoming:", H_TIMEOUT_MS);
	say(&k, "/accept");
	until(&c, "connected with", H_TIMEOUT_MS);
	/* Three seconds of audio each way, then a little time to drain. */
	usleep(3600 * 1000);
	say(&c, "/end");
	struct vstats cs, ks;
	parse_stats(until(&c, "voice: sent", H_TIMEOUT_MS), &cs);
	parse_stats(until(&k, "voice: sent", H_TIMEOUT_MS), &ks);
	say(&c, "/quit");
	say(&k, "/quit");
	assert_int_equal(h_proc_reap(&c), 0);
	assert_int_equal(h_proc_reap(&k), 0);

	/* At least 98% of what each side sent arrived, in order. How much was
	 * sent depends on the machine (a busy or sanitized client skips frames
	 * it could not send on time, by design), so only ask for enough to
	 * analyse: over a second of audio, at most the three seconds asked. */
	assert_in_range(cs.sent, 60, 160);
	assert_in_range(ks.sent, 60, 160);
	assert_true(ks.received * 100 >= cs.sent * 98);
	assert_true(cs.received * 100 >= ks.sent * 98);
	assert_int_equal(cs.out_of_order, 0);
	assert_int_equal(ks.out_of_order, 0);
	assert_int_equal(cs.bad + ks.bad, 0);
	/* Each hears the other's tone. */
	assert_true(fabs(dominant_hz(kwav) - 440) <= 20);
	assert_true(fabs(dominant_hz(cwav) - 660) <= 20);
	unlink(cwav);
	unlink(kwav);
	rmdir(dir);
}

static void run_call(const char *const *server_args)
{
	struct h_server srv;
	assert_int_equal(h_server_start(&srv, server_args), 0);
	call(&srv, &srv);
	assert_int_equal(h_server_stop(&srv), 0);
}

static void test_tones_gcm(void **state)
{
	(void)state;
	run_call(NULL);
}

/* The client on one node, the counselor on another: the session runs on
 * the counselor's node and the client's node relays its audio. */
static void test_tones_across_nodes(void **state)
{
	(void)state;
	struct h_redis r;
	assert_int_equal(h_redis_start(&r), 0);
	const char *const a_args[] = { "--redis", r.url, "--node-id", "hostnode", NULL };
	const char *const b_args[] = { "--redis", r.url, "--node-id", "ownernode", NULL };
	struct h_server a, b;
	assert_int_equal(h_server_start(&a, a_args), 0);
	assert_int_equal(h_server_start(&b, b_args), 0);
	char body[64] = "";
	for (int i = 0; i < 200 && (strcmp(body, "ok\n") != 0); i++) {
		h_http_get(a.port, "/healthz", body, sizeof body);
		h_pump(25);
	}
	call(&a, &b);
	char stats[4096];
	assert_int_equal(h_http_get(b.port, "/stats", stats, sizeof stats), 200);
	assert_non_null(strstr(stats, "\"dropped_auth\":0,"));
	assert_int_equal(h_server_stop(&a), 0);
	assert_int_equal(h_server_stop(&b), 0);
	h_redis_stop(&r);
}

static void test_tones_cm(void **state)
{
	(void)state;
	const char *const args[] = { "--srtp-profile", "aes_cm_128_hmac_sha1_80", NULL };
	run_call(args);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tones_gcm),
		cmocka_unit_test(test_tones_cm),
		cmocka_unit_test(test_tones_across_nodes),
	};
	return cmocka_run_group_tests(tests, h_group_setup, h_group_teardown);
}
