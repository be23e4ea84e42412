/*
 * http — the evhttp server behind `http ADDR:PORT` (see http.h).  Only GET
 * and HEAD, no request body, small headers, a short timeout: it answers
 * scrapers and browsers, nothing else.  evhttp (libevent 2.1) bounds neither
 * the number of connections nor how long one may trickle its headers, so
 * this file does: each connection's bufferevent is ours (evhttp_set_bevcb),
 * counted until evhttp's close callback says the connection is going, and
 * ended at HTTP_DEADLINE whatever it does; past HTTP_MAX_CONNS the listener
 * pauses and the kernel's backlog holds the rest.  The SMTP side must never
 * run out of descriptors for this, nor share one with an HTTP leftover.
 */
#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "relayd/delivery.h"
#include "relayd/http.h"
#include "relayd/log.h"
#include "relayd/server.h"

#define HTTP_TIMEOUT 10			/* seconds without progress: idle, or a stalled read */
#define HTTP_DEADLINE 15		/* seconds a connection may live, however it trickles */
#define HTTP_MAX_CONNS 32		/* at once; more wait in the listen backlog */
#define HTTP_MAX_HEADERS 8192
#define HTTP_PAUSE 1			/* seconds without accepting after EMFILE and friends */

struct http_conn {
	struct bufferevent *bev;	/* one reference is ours: see conn_forget() */
	struct evhttp_connection *evcon;	/* NULL until adopt_cb has seen it */
	double started;			/* monotonic seconds */
};

struct http {
	struct evhttp *evh;
	struct evconnlistener *listener;
	struct event *tick;		/* each second while connections are open */
	struct event *adopt;		/* made active by each new connection */
	struct event *pause;		/* accepting again after an accept error */
	struct http_conn conns[HTTP_MAX_CONNS];
	size_t nconns;
	int paused;			/* by an accept error: the tick leaves the listener off */
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

/*
 * The Host a request names must be an address, localhost or relayd's own
 * hostname: a web page an admin visits could otherwise point its own name
 * at 127.0.0.1 (DNS rebinding) and read the page from the admin's browser.
 * Browsers always send Host; a request without one is no browser's.
 */
static int host_allowed(const char *host, const char *hostname)
{
	char name[256], addr[sizeof(struct in6_addr)];
	size_t n;

	if (!host)
		return 1;
	if (host[0] == '[') {		/* [v6]:port */
		n = strcspn(host + 1, "]");
		if (host[1 + n] != ']' || n >= sizeof name)
			return 0;
		memcpy(name, host + 1, n);
		name[n] = '\0';
		return inet_pton(AF_INET6, name, addr) == 1;
	}
	n = strcspn(host, ":");
	if (n == 0 || n >= sizeof name)
		return 0;
	memcpy(name, host, n);
	name[n] = '\0';
	return inet_pton(AF_INET, name, addr) == 1 || strcasecmp(name, "localhost") == 0 ||
	    strcasecmp(name, hostname) == 0;
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
	if (!host_allowed(evhttp_find_header(evhttp_request_get_input_headers(req), "Host"),
	    h->srv->conf->hostname)) {
		text_reply(req, 403, "Forbidden (Host: use the address, localhost or the hostname)");
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

static int is_loopback(const struct conf_listen *l)
{
	if (l->addr.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&l->addr;
		return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	}
	const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&l->addr;
	return l->addr.ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
}

/*
 * Entry i goes, and our reference with it.  Called from closed_cb, before
 * evhttp's own bufferevent_free(): that free then drops the last reference,
 * which deletes the bufferevent's events before evhttp closes the socket.
 * Held any longer, the reference would keep a read event on a descriptor
 * number the kernel hands to the next connection, an SMTP session's, whose
 * bytes it would then read (03f465e did this until its next sweep).
 */
static void conn_forget(struct http *h, size_t i)
{
	bufferevent_decref(h->conns[i].bev);
	h->conns[i] = h->conns[--h->nconns];
	if (h->nconns < HTTP_MAX_CONNS && !h->paused && h->listener)
		evconnlistener_enable(h->listener);
}

/*
 * For one evhttp has freed without telling us (bufferevent_free() clears the
 * callbacks): only on its out-of-memory paths, before adopt_cb ran, or at
 * evhttp_free().  Its socket is closed already, so our reference must not
 * keep an event on the number.
 */
static void conn_drop(struct http *h, size_t i)
{
	bufferevent_disable(h->conns[i].bev, EV_READ | EV_WRITE);
	bufferevent_setfd(h->conns[i].bev, -1);
	conn_forget(h, i);
}

static int conn_freed(const struct http_conn *c)
{
	bufferevent_event_cb eventcb;

	bufferevent_getcb(c->bev, NULL, NULL, &eventcb, NULL);
	return eventcb == NULL;
}

/* evhttp is about to free evcon: it has not yet freed the bufferevent or closed the socket. */
static void closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct http *h = arg;

	for (size_t i = 0; i < h->nconns; i++)
		if (h->conns[i].evcon == evcon) {
			conn_forget(h, i);
			return;
		}
}

/*
 * Right after the accept that new_conn() saw (event_active: before the loop
 * polls again, so no event has run on the connection): evhttp has made its
 * evhttp_connection by now and given the bufferevent its callbacks, whose
 * argument is that evhttp_connection (libevent 2.1's http.c passes it
 * wherever it sets them, and 2.1 offers no other way to reach a connection
 * that never gets as far as a request).  Its close callback is ours now.
 */
static void adopt_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http *h = arg;
	(void)fd, (void)what;

	for (size_t i = h->nconns; i-- > 0;) {
		struct http_conn *c = &h->conns[i];
		void *evcon;

		if (c->evcon)
			continue;
		if (conn_freed(c)) {
			conn_drop(h, i);
			continue;
		}
		bufferevent_getcb(c->bev, NULL, NULL, NULL, &evcon);
		c->evcon = evcon;
		evhttp_connection_set_closecb(c->evcon, closed_cb, h);
	}
}

/*
 * Each second: a connection past the deadline is told it timed out, the way
 * evhttp's own timeouts end one (evhttp frees it, closed_cb forgets it).
 */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http *h = arg;
	double now = delivery_monotonic();
	(void)fd, (void)what;

	/* From the end: conn_forget() moves the last entry, already seen, into i. */
	for (size_t i = h->nconns; i-- > 0;) {
		struct http_conn *c = &h->conns[i];
		if (!c->evcon)
			continue;
		if (conn_freed(c))
			conn_drop(h, i);	/* never: closed_cb comes first */
		else if (now - c->started >= HTTP_DEADLINE)
			bufferevent_trigger_event(c->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0);
	}
	if (h->nconns == 0)
		evtimer_del(h->tick);
}

/* A new connection: its bufferevent, counted. */
static struct bufferevent *new_conn(struct event_base *base, void *arg)
{
	struct http *h = arg;
	struct timeval second = { 1, 0 };

	/* No BEV_OPT_CLOSE_ON_FREE: evhttp closes the socket itself when it is done. */
	struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
	if (!bev)
		return NULL;	/* evhttp makes one of its own, uncounted */
	if (h->nconns < HTTP_MAX_CONNS) {
		bufferevent_incref(bev);
		h->conns[h->nconns++] = (struct http_conn){ bev, NULL, delivery_monotonic() };
		event_active(h->adopt, EV_TIMEOUT, 1);
		if (!evtimer_pending(h->tick, NULL))
			evtimer_add(h->tick, &second);
	}
	if (h->nconns >= HTTP_MAX_CONNS)
		evconnlistener_disable(h->listener);
	return bev;
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http *h = arg;
	(void)fd, (void)what;
	h->paused = 0;
	if (h->nconns < HTTP_MAX_CONNS)
		evconnlistener_enable(h->listener);
}

/* The one server (evhttp owns the listener's callback argument, so it cannot carry h). */
static struct http *the_http;

/* Out of descriptors: the socket stays readable, so pause rather than spin. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct http *h = the_http;
	struct timeval pause = { HTTP_PAUSE, 0 };
	(void)arg;

	log_warn("http: accept: %s: not accepting for %ds",
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()), HTTP_PAUSE);
	evconnlistener_disable(l);
	h->paused = 1;
	evtimer_add(h->pause, &pause);
}

struct http *http_new(struct event_base *base, const struct conf_listen *l, char *err,
    size_t errlen)
{
	struct http *h = calloc(1, sizeof *h);
	struct evhttp_bound_socket *bound;
	evutil_socket_t fd;

	if (!h || !(h->evh = evhttp_new(base)) ||
	    !(h->tick = event_new(base, -1, EV_PERSIST, tick_cb, h)) ||
	    !(h->adopt = event_new(base, -1, 0, adopt_cb, h)) ||
	    !(h->pause = evtimer_new(base, resume_cb, h))) {
		snprintf(err, errlen, "http %s: out of memory", l->text);
		http_free(h);
		return NULL;
	}
	if ((fd = server_bind_one(l, err, errlen)) < 0) {
		http_free(h);
		return NULL;
	}
	if (!(bound = evhttp_accept_socket_with_handle(h->evh, fd))) {
		close(fd);
		snprintf(err, errlen, "http %s: cannot watch the socket", l->text);
		http_free(h);
		return NULL;
	}
	the_http = h;
	h->listener = evhttp_bound_socket_get_listener(bound);
	evconnlistener_set_error_cb(h->listener, accept_error_cb);
	evhttp_set_bevcb(h->evh, new_conn, h);
	evhttp_set_allowed_methods(h->evh, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(h->evh, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(h->evh, 0);
	evhttp_set_timeout(h->evh, HTTP_TIMEOUT);
	evhttp_set_gencb(h->evh, request_cb, h);
	log_info("http: /metrics and the status page on %s", l->text);
	if (!is_loopback(l))
		log_warn("http %s: not a loopback address: the status page shows senders, "
		    "recipients and replies to anyone who can reach it", l->text);
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
	/* evhttp_free() frees the listener, then each connection (closed_cb for most). */
	h->listener = NULL;
	if (h->evh)
		evhttp_free(h->evh);
	while (h->nconns > 0)
		conn_drop(h, h->nconns - 1);
	if (h->tick)
		event_free(h->tick);
	if (h->adopt)
		event_free(h->adopt);
	if (h->pause)
		event_free(h->pause);
	if (the_http == h)
		the_http = NULL;
	free(h);
}
