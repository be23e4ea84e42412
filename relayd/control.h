/*
 * control — the unix socket relayctl changes the queue through (flush,
 * hold, release, delete) and asks about a login's or address's policy
 * (read-only).  One line per connection, one answer.
 */
#ifndef RELAYD_CONTROL_H
#define RELAYD_CONTROL_H

#include <event2/event.h>
#include <stddef.h>

#include "queue/queue.h"

struct delivery;
struct control;
struct server;

/*
 * Listen at path (mode 0600; a stale socket there is replaced).  srv gives
 * the running configuration and the rate limits' counts.  NULL with err.
 */
struct control *control_new(struct event_base *base, const char *path, struct queue *queue,
    struct delivery *delivery, const struct server *srv, char *err, size_t errlen);
/* After the queue closed (no answer pending): the socket and its connections go. */
void control_free(struct control *ctl);

#endif
