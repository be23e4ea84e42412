/*
 * server — binds the listeners, owns the event loop and its signal and queue
 * events, and stops gracefully: no new connections, idle sessions told 421,
 * sessions waiting for a commit answered first, then the loop ends.
 */
#include "relayd/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relayd/log.h"
#include "relayd/smtp_server.h"

#define LISTEN_BACKLOG 511

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	(void)l;
	smtp_server_accept(arg, fd, sa, (socklen_t)salen);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	(void)l, (void)arg;
	/* EMFILE and friends: log and keep listening; libevent retries on the next event. */
	log_warn("accept: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static evutil_socket_t bind_one(const struct conf_listen *l, char *err, size_t errlen)
{
	int family = l->addr.ss_family;
	evutil_socket_t fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int on = 1;

	if (fd < 0) {
		snprintf(err, errlen, "listen %s: socket: %s", l->text, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (family == AF_INET6)	/* [::]:25 and 0.0.0.0:25 may both be listed */
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
	if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) < 0 ||
	    listen(fd, LISTEN_BACKLOG) < 0) {
		snprintf(err, errlen, "listen %s: %s", l->text, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int server_bind(struct server *srv, const struct config *conf, struct event_base *base,
    char *err, size_t errlen)
{
	memset(srv, 0, sizeof *srv);
	srv->conf = conf;
	srv->base = base;
	srv->listeners = calloc(conf->nlisten, sizeof *srv->listeners);
	if (!srv->listeners) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < conf->nlisten; i++) {
		evutil_socket_t fd = bind_one(&conf->listen[i], err, errlen);
		if (fd < 0)
			return -1;
		struct evconnlistener *l = evconnlistener_new(base, accept_cb, srv,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
		if (!l) {
			close(fd);
			snprintf(err, errlen, "listen %s: cannot watch the socket",
			    conf->listen[i].text);
			return -1;
		}
		evconnlistener_set_error_cb(l, accept_error_cb);
		evconnlistener_disable(l);	/* until the queue is open */
		srv->listeners[srv->nlisteners++] = l;
	}
	return 0;
}

static void stop_listening(struct server *srv)
{
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_free(srv->listeners[i]);
	srv->nlisteners = 0;
}

void server_session_gone(struct server *srv)
{
	if (srv->stopping && srv->nsessions == 0)
		event_base_loopexit(srv->base, NULL);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	(void)what;
	if (sig == SIGHUP) {
		log_reopen();
		log_info("SIGHUP: log file reopened");
		return;
	}
	if (srv->stopping)
		return;
	log_info("%s: stopping: no new connections, finishing %u session(s)",
	    sig == SIGTERM ? "SIGTERM" : "SIGINT", srv->nsessions);
	srv->stopping = 1;
	stop_listening(srv);
	smtp_server_shutdown(srv);
	server_session_gone(srv);
}

static void queue_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	(void)fd, (void)what;
	queue_dispatch(srv->queue);
}

int server_run(struct server *srv, struct queue *queue)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };

	srv->queue = queue;
	srv->queue_event = event_new(srv->base, queue_notify_fd(queue), EV_READ | EV_PERSIST,
	    queue_cb, srv);
	if (!srv->queue_event || event_add(srv->queue_event, NULL) < 0)
		return -1;
	for (size_t i = 0; i < 3; i++) {
		srv->signals[i] = evsignal_new(srv->base, sigs[i], signal_cb, srv);
		if (!srv->signals[i] || evsignal_add(srv->signals[i], NULL) < 0)
			return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_enable(srv->listeners[i]);
	for (size_t i = 0; i < srv->conf->nlisten; i++)
		log_info("listening on %s", srv->conf->listen[i].text);
	return event_base_dispatch(srv->base);
}

void server_free(struct server *srv)
{
	stop_listening(srv);
	free(srv->listeners);
	srv->listeners = NULL;
	if (srv->queue_event)
		event_free(srv->queue_event);
	for (size_t i = 0; i < 3; i++)
		if (srv->signals[i])
			event_free(srv->signals[i]);
}
