/* web.c - pages, their modules and the dev token endpoint (see web.h). */
#include "web.h"
#include "auth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WEB_FILE_MAX (1024 * 1024)

static const struct { const char *path, *file; } pages[] = {
	{ "/", "client.html" },
	{ "/counselor", "counselor.html" },
	{ "/operator", "operator.html" },
};

static const struct { const char *ext, *type; } types[] = {
	{ ".html", "text/html; charset=utf-8" },
	{ ".js", "text/javascript; charset=utf-8" },
	{ ".css", "text/css; charset=utf-8" },
	{ ".svg", "image/svg+xml" },
	{ ".wav", "audio/wav" },
};

static const char *type_of(const char *name)
{
	const char *dot = strrchr(name, '.');
	for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return NULL;
}

/* A file name the web may serve: [a-z0-9_-]+ and a known extension, so no
 * path can climb out of web-root. */
static int name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 64 || !type_of(name))
		return 0;
	for (const char *p = name; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) ||
		      *p == '_' || *p == '-' || *p == '.'))
			return 0;
	return strstr(name, "..") == NULL && name[0] != '.';
}

static int read_file(const char *root, const char *name, struct ws_http_reply *r)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", root, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	r->body = malloc(WEB_FILE_MAX);
	size_t n = r->body ? fread(r->body, 1, WEB_FILE_MAX, f) : 0;
	int err = ferror(f) || !feof(f);
	fclose(f);
	if (!r->body || err) {
		free(r->body);
		r->body = NULL;
		return -1;
	}
	r->len = n;
	r->content_type = type_of(name);
	return 0;
}

/* The value of `key` in `query` (decoded arguments joined by '&'), or ""
 * when absent. */
static void query_get(const char *query, const char *key, char *out, size_t cap)
{
	size_t klen = strlen(key);
	out[0] = '\0';
	for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (strncmp(p, key, klen) != 0 || p[klen] != '=')
			continue;
		const char *v = p + klen + 1;
		size_t n = strcspn(v, "&");
		snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), v);
		return;
	}
}

/* Dev mode only: a token for whoever asks, so the pages work with no setup.
 * Production has no such endpoint: tokens come from the hosting app. */
static int dev_token(const struct config *cfg, const char *query, int64_t now,
                     struct ws_http_reply *r)
{
	char role[16], skills[256];
	struct auth_identity id;
	memset(&id, 0, sizeof id);
	query_get(query, "role", role, sizeof role);
	query_get(query, "sub", id.sub, sizeof id.sub);
	query_get(query, "name", id.name, sizeof id.name);
	query_get(query, "skills", skills, sizeof skills);
	id.role = proto_role_parse(role);
	for (char *t = strtok(skills, ","); t && id.nskills < AUTH_SKILLS_MAX; t = strtok(NULL, ","))
		snprintf(id.skills[id.nskills++], sizeof id.skills[0], "%s", t);
	r->body = malloc(PROTO_TOKEN_MAX + 1);
	if (!r->body || auth_mint(&id, config_token_secret(cfg), now, 12 * 3600, r->body,
	                          PROTO_TOKEN_MAX + 1) != 0) {
		free(r->body);
		r->body = NULL;
		return -1;
	}
	r->len = strlen(r->body);
	r->content_type = "text/plain";
	return 0;
}

int web_serve(const struct config *cfg, const char *path, const char *query,
              int64_t now, struct ws_http_reply *r)
{
	for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++)
		if (strcmp(path, pages[i].path) == 0)
			return read_file(cfg->web_root, pages[i].file, r);
	if (strncmp(path, "/static/", 8) == 0)
		return name_ok(path + 8) ? read_file(cfg->web_root, path + 8, r) : -1;
	if (strcmp(path, "/dev/token") == 0)
		return cfg->dev_mode ? dev_token(cfg, query, now, r) : -1;
	return 1;
}
