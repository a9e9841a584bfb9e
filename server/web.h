/* web.h - the HTTP side a person's browser sees: the three pages, their
 * ES modules, and in dev mode a token endpoint so the pages need no setup.
 * Files come from `web-root`; no other path is ever read. */
#ifndef EARSHOT_WEB_H
#define EARSHOT_WEB_H

#include <stdint.h>
#include "config.h"
#include "ws.h"

/* Answer GET `path` (with `query`, "" if none) when it is a page, a static
 * file or (dev mode) /dev/token. Returns 0 with `r` filled, 1 when the
 * path is not the web's, -1 on failure (404). `now` is Unix seconds. */
int web_serve(const struct config *cfg, const char *path, const char *query,
              int64_t now, struct ws_http_reply *r);

#endif
