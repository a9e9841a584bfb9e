/* wav.h - 16-bit PCM WAV files for the voice client: read one whole file
 * into memory as 48 kHz mono samples, and write 48 kHz mono samples as they
 * arrive (the header's sizes are fixed up on close).
 *
 * Bounded: a file read is at most WAV_MAX_SECONDS long, a file written at
 * most what a RIFF header can describe (just under 4 GiB); every read and
 * write is checked. Errors come back as a sentence in the caller's buffer;
 * nothing here prints. */
#ifndef EARSHOT_WAV_H
#define EARSHOT_WAV_H

#include <stddef.h>
#include <stdint.h>

#define WAV_RATE 48000           /* the only sample rate earshot speaks */
#define WAV_MAX_SECONDS 600      /* longest file wav_read_mono accepts */

/* Read a 16-bit PCM WAV, mono or stereo (mixed down to mono), at exactly
 * WAV_RATE. On success returns 0 with `*samples` (malloc'd, the caller
 * frees) holding `*n` >= 1 samples. On failure returns -1 with `err` saying
 * what is wrong with the file (another sample rate is refused by name:
 * earshot does not resample). */
int wav_read_mono(const char *path, int16_t **samples, size_t *n, char *err, size_t errlen);

struct wav_writer;

/* Create (or truncate) `path` and write a 48 kHz mono 16-bit header whose
 * sizes say "empty" until wav_writer_close. NULL with `err` on failure. */
struct wav_writer *wav_writer_open(const char *path, char *err, size_t errlen);
/* Append `n` samples. 0, or -1 once the file failed or is full (later
 * calls keep returning -1 and write nothing). Allocates nothing. */
int wav_writer_write(struct wav_writer *w, const int16_t *pcm, size_t n);
/* Samples written so far. */
uint64_t wav_writer_samples(const struct wav_writer *w);
/* Fix up the header, close the file and free `w` (NULL is a no-op).
 * 0, or -1 if any write, the fix-up or the close failed. */
int wav_writer_close(struct wav_writer *w);

#endif
