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
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "../../client-demo/wav.h"

struct proc {
	pid_t pid;
	int in, out;
	char buf[16384];
	size_t len;
	char line[4096];
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void spawn(struct proc *p, const char *const *args)
{
	int to[2], from[2];
	assert_int_equal(pipe(to), 0);
	assert_int_equal(pipe(from), 0);
	memset(p, 0, sizeof *p);
	p->pid = fork();
	assert_true(p->pid >= 0);
	if (p->pid == 0) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[1]);
		close(from[0]);
		const char *argv[32];
		int n = 0;
		argv[n++] = getenv("EARSHOT") ? getenv("EARSHOT") : "build/earshot";
		for (int i = 0; args[i] && n < 31; i++)
			argv[n++] = args[i];
		argv[n] = NULL;
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	p->in = to[1];
	p->out = from[0];
}

static void say(struct proc *p, const char *line)
{
	size_t n = strlen(line);
	assert_int_equal(write(p->in, line, n), (ssize_t)n);
	assert_int_equal(write(p->in, "\n", 1), 1);
}

/* The next output line containing `needle`, within `ms`. */
static const char *until(struct proc *p, const char *needle, int ms)
{
	int64_t end = now_ms() + ms;
	for (;;) {
		char *nl;
		while ((nl = memchr(p->buf, '\n', p->len)) != NULL) {
			size_t n = (size_t)(nl - p->buf);
			snprintf(p->line, sizeof p->line, "%.*s", (int)n, p->buf);
			memmove(p->buf, nl + 1, p->len - n - 1);
			p->len -= n + 1;
			if (getenv("H_TRACE"))
				fprintf(stderr, "  voice> %s\n", p->line);
			if (strstr(p->line, needle))
				return p->line;
		}
		int64_t left = end - now_ms();
		if (left <= 0)
			fail_msg("no output line with '%s'", needle);
		struct pollfd pfd = { .fd = p->out, .events = POLLIN };
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		ssize_t r = read(p->out, p->buf + p->len, sizeof p->buf - 1 - p->len);
		if (r <= 0)
			fail_msg("output ended before a line with '%s'", needle);
		p->len += (size_t)r;
	}
}

static int reap(struct proc *p)
{
	close(p->in);
	int st = 0;
	int64_t end = now_ms() + H_TIMEOUT_MS;
	while (waitpid(p->pid, &st, WNOHANG) == 0) {
		if (now_ms() > end) {
			kill(p->pid, SIGKILL);
			waitpid(p->pid, &st, 0);
			break;
		}
		usleep(10000);
	}
	close(p->out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
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
	assert_true(n > 48000);  /* more than a second of audio */
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

static void run_call(const char *const *server_args)
{
	struct h_server srv;
	assert_int_equal(h_server_start(&srv, server_args), 0);
	char dir[] = "/tmp/earshot-voice-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char cwav[128], kwav[128];
	snprintf(cwav, sizeof cwav, "%s/client.wav", dir);
	snprintf(kwav, sizeof kwav, "%s/counselor.wav", dir);
	char tok[PROTO_TOKEN_MAX + 1];
	snprintf(tok, sizeof tok, "%s", h_token(ROLE_COUNSELOR, "vk", "Vee", NULL, 600));

	struct proc k, c;
	const char *const kargs[] = { "counselor", "--url", srv.url, "--token", tok, "--available",
		                      "--voice", "--tone", "660", "--record", kwav,
		                      "--voice-seconds", "3", NULL };
	spawn(&k, kargs);
	until(&k, "you are available", H_TIMEOUT_MS);
	const char *const cargs[] = { "client", "--url", srv.url, "--topic", "grief", "--voice",
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
	assert_int_equal(reap(&c), 0);
	assert_int_equal(reap(&k), 0);
	assert_int_equal(h_server_stop(&srv), 0);

	/* About 150 frames each way; at least 98% arrived, in order. */
	assert_in_range(cs.sent, 140, 160);
	assert_in_range(ks.sent, 140, 160);
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

static void test_tones_gcm(void **state)
{
	(void)state;
	run_call(NULL);
}

static void test_tones_cm(void **state)
{
	(void)state;
	const char *const args[] = { "--srtp-profile", "aes_cm_128_hmac_sha1_80", NULL };
	run_call(args);
}

static int setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	h_init();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	h_fini();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tones_gcm),
		cmocka_unit_test(test_tones_cm),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
