/* hub.h - the one module that knows the others: it takes the transport's
 * connections and messages, authenticates peers, drives the matcher and the
 * sessions, and answers HTTP. main.c sees only this. */
#ifndef EARSHOT_HUB_H
#define EARSHOT_HUB_H

#include <stddef.h>
#include "config.h"

struct ev_loop;
struct hub;

/* Create the hub and start listening. `cfg` is copied. */
struct hub *hub_new(struct ev_loop *loop, const struct config *cfg,
                    char *err, size_t errlen);
int hub_port(const struct hub *h);
/* SIGTERM: take no new work, end sessions with reason "shutdown", tell
 * everyone `going_away`, close every connection once flushed. */
void hub_shutdown(struct hub *h);
size_t hub_connections(const struct hub *h);
/* Must not be called from inside a transport callback. */
void hub_free(struct hub *h);

#endif
