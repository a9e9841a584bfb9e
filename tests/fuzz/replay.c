/* replay.c - runs the fuzz target once on every file of the given corpus
 * directories, without libFuzzer, so the kept corpus and crash inputs are
 * a regression test under any compiler (`make fuzz-replay`).
 *
 * A failing input aborts inside the target, so reaching the end means no
 * input crashed. A directory that does not exist is skipped: crashes/ may
 * hold nothing but .gitkeep, or be absent in an export. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whole file into a malloc'd buffer (never NULL on success, even when
 * empty); -1 on a read error. */
static int read_file(const char *path, uint8_t **data, size_t *size)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return -1;
	size_t cap = 4096, len = 0;
	uint8_t *buf = malloc(cap);
	while (buf != NULL) {
		len += fread(buf + len, 1, cap - len, f);
		if (len < cap)
			break;
		uint8_t *grown = realloc(buf, cap * 2);
		if (grown == NULL) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = grown;
		cap *= 2;
	}
	int bad = buf == NULL || ferror(f);
	fclose(f);
	if (bad) {
		free(buf);
		return -1;
	}
	*data = buf;
	*size = len;
	return 0;
}

static int replay_dir(const char *dir, long *count)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		if (errno == ENOENT)
			return 0;
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	int rc = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char path[4096];
		struct stat st;
		if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path ||
		    stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		uint8_t *data;
		size_t size;
		if (read_file(path, &data, &size) != 0) {
			fprintf(stderr, "replay: cannot read %s\n", path);
			rc = -1;
			continue;
		}
		LLVMFuzzerTestOneInput(data, size);
		free(data);
		(*count)++;
	}
	closedir(d);
	return rc;
}

int main(int argc, char **argv)
{
	long count = 0;
	int rc = 0;
	for (int i = 1; i < argc; i++)
		if (replay_dir(argv[i], &count) != 0)
			rc = 1;
	printf("replay: %ld inputs, 0 crashes\n", count);
	return rc;
}
