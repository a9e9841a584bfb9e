/* wav.c - 16-bit PCM WAV reading and streaming writing (see wav.h). */
#include "wav.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define WAV_HEADER_LEN 44
#define WAV_MAX_CHUNKS 1000      /* chunks walked before "data"; any real file has a few */
#define WAV_FMT_PCM 1
#define WAV_FMT_EXTENSIBLE 0xfffe
#define WAV_IO_SAMPLES 1024      /* samples converted per fread/fwrite */
/* RIFF sizes are 32-bit: the data of a file we write must leave room for
 * the rest of the header in the RIFF size. */
#define WAV_DATA_MAX (UINT32_MAX - (WAV_HEADER_LEN - 8))

struct wav_fmt {
	unsigned format, channels, rate, block_align, bits;
};

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned le16(const uint8_t *p)
{
	return (unsigned)p[0] | (unsigned)p[1] << 8;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* ---- reading ----------------------------------------------------------------- */

/* The "fmt " chunk of `size` bytes; the reader is positioned at its body. */
static int read_fmt(FILE *f, uint32_t size, struct wav_fmt *fmt, char *err, size_t errlen)
{
	uint8_t b[40];
	size_t want = size < sizeof b ? size : sizeof b;
	if (size < 16)
		return fail(err, errlen, "its fmt chunk is too short (%u bytes)", (unsigned)size);
	if (fread(b, 1, want, f) != want)
		return fail(err, errlen, "it ends inside its fmt chunk");
	fmt->format = le16(b);
	fmt->channels = le16(b + 2);
	fmt->rate = le32(b + 4);
	fmt->block_align = le16(b + 12);
	fmt->bits = le16(b + 14);
	/* WAVE_FORMAT_EXTENSIBLE names the real format in its sub-format GUID,
	 * whose first two bytes are the plain format tag. */
	if (fmt->format == WAV_FMT_EXTENSIBLE && want >= 26)
		fmt->format = le16(b + 24);
	if (size > want && fseek(f, (long)(size - want), SEEK_CUR) != 0)
		return fail(err, errlen, "it ends inside its fmt chunk");
	return 0;
}

static int check_fmt(const struct wav_fmt *fmt, char *err, size_t errlen)
{
	if (fmt->format != WAV_FMT_PCM)
		return fail(err, errlen, "it is not PCM (format tag %u); earshot reads 16-bit PCM",
		            fmt->format);
	if (fmt->bits != 16)
		return fail(err, errlen, "it has %u-bit samples; earshot reads 16-bit PCM", fmt->bits);
	if (fmt->channels != 1 && fmt->channels != 2)
		return fail(err, errlen, "it has %u channels; earshot reads mono or stereo",
		            fmt->channels);
	if (fmt->block_align != 2 * fmt->channels)
		return fail(err, errlen, "its block alignment (%u) does not match %u channels",
		            fmt->block_align, fmt->channels);
	if (fmt->rate != WAV_RATE)
		return fail(err, errlen, "its sample rate is %u Hz; earshot needs %d Hz "
		            "(resample it first, e.g. sox IN.wav -r %d OUT.wav)",
		            fmt->rate, WAV_RATE, WAV_RATE);
	return 0;
}

/* Walk the chunks up to "data": on success the reader is at its first
 * sample and `*data_len` is its length, clamped to what the file holds
 * (streaming writers leave 0 or 0xffffffff there). */
static int find_data(FILE *f, long file_len, struct wav_fmt *fmt, uint32_t *data_len,
                     char *err, size_t errlen)
{
	uint8_t h[12];
	int have_fmt = 0;
	if (fread(h, 1, 12, f) != 12 || memcmp(h, "RIFF", 4) != 0 || memcmp(h + 8, "WAVE", 4) != 0)
		return fail(err, errlen, "it is not a WAV file (no RIFF/WAVE header)");
	for (int i = 0; i < WAV_MAX_CHUNKS; i++) {
		if (fread(h, 1, 8, f) != 8)
			return fail(err, errlen, have_fmt ? "it has no data chunk" : "it has no fmt chunk");
		uint32_t size = le32(h + 4);
		if (memcmp(h, "fmt ", 4) == 0) {
			if (read_fmt(f, size, fmt, err, errlen) != 0)
				return -1;
			have_fmt = 1;
		} else if (memcmp(h, "data", 4) == 0) {
			if (!have_fmt)
				return fail(err, errlen, "its data chunk comes before its fmt chunk");
			long pos = ftell(f);
			if (pos < 0)
				return fail(err, errlen, "cannot tell the read position: %s", strerror(errno));
			if (size == 0 || (uint64_t)size > (uint64_t)(file_len - pos))
				size = (uint32_t)(file_len - pos);
			*data_len = size;
			return 0;
		} else if (fseek(f, (long)size, SEEK_CUR) != 0) {
			return fail(err, errlen, "it ends inside a chunk");
		}
		/* Chunks are word-aligned: an odd size is followed by a pad byte. */
		if ((size & 1) && fseek(f, 1, SEEK_CUR) != 0)
			return fail(err, errlen, "it ends inside a chunk");
	}
	return fail(err, errlen, "no data chunk among its first %d chunks", WAV_MAX_CHUNKS);
}

/* Read `frames` frames of `channels` 16-bit samples into mono `out`. */
static int read_samples(FILE *f, unsigned channels, size_t frames, int16_t *out,
                        char *err, size_t errlen)
{
	uint8_t b[WAV_IO_SAMPLES * 2];
	size_t per = WAV_IO_SAMPLES / channels, done = 0;
	while (done < frames) {
		size_t k = frames - done < per ? frames - done : per;
		if (fread(b, 2 * channels, k, f) != k)
			return fail(err, errlen, "reading its samples failed after %zu of %zu", done, frames);
		for (size_t i = 0; i < k; i++) {
			const uint8_t *p = b + 2 * channels * i;
			int32_t s = (int16_t)le16(p);
			if (channels == 2)
				s = (s + (int16_t)le16(p + 2)) / 2;
			out[done + i] = (int16_t)s;
		}
		done += k;
	}
	return 0;
}

static int read_file(FILE *f, int16_t **samples, size_t *n, char *err, size_t errlen)
{
	struct stat st;
	struct wav_fmt fmt = { 0 };
	uint32_t data_len = 0;
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
		return fail(err, errlen, "it is not a regular file");
	if (find_data(f, (long)st.st_size, &fmt, &data_len, err, errlen) != 0 ||
	    check_fmt(&fmt, err, errlen) != 0)
		return -1;
	size_t frames = data_len / fmt.block_align;
	if (frames == 0)
		return fail(err, errlen, "it holds no samples");
	if (frames > (size_t)WAV_MAX_SECONDS * WAV_RATE)
		return fail(err, errlen, "it is longer than %d s (%zu s)", WAV_MAX_SECONDS,
		            frames / WAV_RATE);
	int16_t *out = malloc(frames * sizeof *out);
	if (!out)
		return fail(err, errlen, "out of memory for %zu samples", frames);
	if (read_samples(f, fmt.channels, frames, out, err, errlen) != 0) {
		free(out);
		return -1;
	}
	*samples = out;
	*n = frames;
	return 0;
}

int wav_read_mono(const char *path, int16_t **samples, size_t *n, char *err, size_t errlen)
{
	char why[256];
	FILE *f = fopen(path, "rb");
	if (!f)
		return fail(err, errlen, "%s: %s", path, strerror(errno));
	int rc = read_file(f, samples, n, why, sizeof why);
	fclose(f);
	if (rc != 0)
		return fail(err, errlen, "%s: %s", path, why);
	return 0;
}

/* ---- writing ----------------------------------------------------------------- */

struct wav_writer {
	FILE *f;
	uint64_t samples;
	int failed;              /* a write failed, or the file is full */
};

static void header(uint8_t *h, uint32_t data_len)
{
	memcpy(h, "RIFF", 4);
	put32(h + 4, data_len + WAV_HEADER_LEN - 8);
	memcpy(h + 8, "WAVEfmt ", 8);
	put32(h + 16, 16);
	put16(h + 20, WAV_FMT_PCM);
	put16(h + 22, 1);                        /* channels */
	put32(h + 24, WAV_RATE);
	put32(h + 28, WAV_RATE * 2);             /* bytes per second */
	put16(h + 32, 2);                        /* block alignment */
	put16(h + 34, 16);                       /* bits per sample */
	memcpy(h + 36, "data", 4);
	put32(h + 40, data_len);
}

struct wav_writer *wav_writer_open(const char *path, char *err, size_t errlen)
{
	uint8_t h[WAV_HEADER_LEN];
	struct wav_writer *w = calloc(1, sizeof *w);
	if (!w) {
		fail(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	w->f = fopen(path, "wb");
	if (!w->f) {
		fail(err, errlen, "%s: %s", path, strerror(errno));
		free(w);
		return NULL;
	}
	header(h, 0);
	if (fwrite(h, 1, sizeof h, w->f) != sizeof h) {
		fail(err, errlen, "%s: %s", path, strerror(errno));
		fclose(w->f);
		free(w);
		return NULL;
	}
	return w;
}

int wav_writer_write(struct wav_writer *w, const int16_t *pcm, size_t n)
{
	uint8_t b[WAV_IO_SAMPLES * 2];
	if (w->failed)
		return -1;
	if ((w->samples + n) * 2 > WAV_DATA_MAX) {
		w->failed = 1;
		return -1;
	}
	for (size_t done = 0; done < n;) {
		size_t k = n - done < WAV_IO_SAMPLES ? n - done : WAV_IO_SAMPLES;
		for (size_t i = 0; i < k; i++)
			put16(b + 2 * i, (uint16_t)pcm[done + i]);
		if (fwrite(b, 2, k, w->f) != k) {
			w->failed = 1;
			return -1;
		}
		done += k;
		w->samples += k;
	}
	return 0;
}

uint64_t wav_writer_samples(const struct wav_writer *w)
{
	return w->samples;
}

int wav_writer_close(struct wav_writer *w)
{
	if (!w)
		return 0;
	uint8_t h[WAV_HEADER_LEN];
	int rc = w->failed ? -1 : 0;
	/* Whatever was written is described truthfully, even after a failure. */
	header(h, (uint32_t)(w->samples * 2));
	if (fflush(w->f) != 0 || fseek(w->f, 0, SEEK_SET) != 0 ||
	    fwrite(h, 1, sizeof h, w->f) != sizeof h)
		rc = -1;
	if (fclose(w->f) != 0)
		rc = -1;
	free(w);
	return rc;
}
