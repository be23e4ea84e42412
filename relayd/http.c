/*
 * http — the evhttp server behind `http ADDR:PORT` (see http.h).  Only GET
 * and HEAD, no request body, small headers, a short timeout: it answers
 * scrapers and browsers, nothing else.
 */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relayd/http.h"
#include "relayd/log.h"
#include "relayd/server.h"

#define HTTP_TIMEOUT 10			/* seconds for a request, and idle keep-alive */
#define HTTP_MAX_HEADERS 8192

struct http {
	struct evhttp *evh;
	struct server *srv;		/* NULL until attached */
	struct queue *queue;
};

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
    struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	/* The page has no scripts and loads nothing: say so, so nothing injected could run. */
	evhttp_add_header(h, "Content-Security-Policy",
	    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'");
	evhttp_send_reply(req, code, reason, body);
}

static void text_reply(struct evhttp_request *req, int code, const char *reason)
{
	struct evbuffer *b = evbuffer_new();

	if (b)
		evbuffer_add_printf(b, "%d %s\n", code, reason);
	reply(req, code, reason, "text/plain; charset=utf-8", b);
	if (b)
		evbuffer_free(b);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	struct http *h = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	struct evbuffer *out;
	int rc;

	if (!h->srv) {
		text_reply(req, 503, "Service Unavailable");
		return;
	}
	if (!path || (strcmp(path, "/") != 0 && strcmp(path, "/metrics") != 0)) {
		text_reply(req, 404, "Not Found");
		return;
	}
	if (!(out = evbuffer_new())) {
		text_reply(req, 500, "Internal Server Error");
		return;
	}
	int metrics = path[1] != '\0';
	rc = metrics ? http_metrics_page(out, h->srv, h->queue) :
	    http_status_page(out, h->srv, h->queue);
	if (rc < 0)
		text_reply(req, 500, "Internal Server Error");
	else
		reply(req, 200, "OK", metrics ? "text/plain; version=0.0.4; charset=utf-8" :
		    "text/html; charset=utf-8", out);
	evbuffer_free(out);
}

struct http *http_new(struct event_base *base, const struct conf_listen *l, char *err,
    size_t errlen)
{
	struct http *h = calloc(1, sizeof *h);
	evutil_socket_t fd;

	if (!h || !(h->evh = evhttp_new(base))) {
		snprintf(err, errlen, "http %s: out of memory", l->text);
		free(h);
		return NULL;
	}
	if ((fd = server_bind_one(l, err, errlen)) < 0) {
		http_free(h);
		return NULL;
	}
	if (!evhttp_accept_socket_with_handle(h->evh, fd)) {
		close(fd);
		snprintf(err, errlen, "http %s: cannot watch the socket", l->text);
		http_free(h);
		return NULL;
	}
	evhttp_set_allowed_methods(h->evh, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(h->evh, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(h->evh, 0);
	evhttp_set_timeout(h->evh, HTTP_TIMEOUT);
	evhttp_set_gencb(h->evh, request_cb, h);
	log_info("http: /metrics and the status page on %s", l->text);
	return h;
}

void http_attach(struct http *h, struct server *srv, struct queue *q)
{
	if (!h)
		return;
	h->srv = srv;
	h->queue = q;
}

void http_free(struct http *h)
{
	if (!h)
		return;
	if (h->evh)
		evhttp_free(h->evh);
	free(h);
}
