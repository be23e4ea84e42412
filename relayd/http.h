/*
 * http — `http ADDR:PORT`: /metrics (Prometheus text format) and / (the
 * status page), served read-only by libevent's evhttp from the event loop.
 * Off by default; it shows senders and recipients, so loopback is advised.
 */
#ifndef RELAYD_HTTP_H
#define RELAYD_HTTP_H

#include <event2/buffer.h>
#include <event2/event.h>

#include "conf/conf.h"

struct server;
struct queue;
struct http;

/* Bind l (before privileges go); NULL with err.  Requests wait for http_attach. */
struct http *http_new(struct event_base *base, const struct conf_listen *l, char *err,
    size_t errlen);
/* Serve srv's state and q's from now on. */
void http_attach(struct http *h, struct server *srv, struct queue *q);
void http_free(struct http *h);

/* http_metrics.c, http_status.c: the pages into out; 0, or -1 (out of memory). */
int http_metrics_page(struct evbuffer *out, struct server *srv, struct queue *q);
int http_status_page(struct evbuffer *out, struct server *srv, struct queue *q);

#endif
