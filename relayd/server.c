/*
 * server — binds the listeners, owns the event loop and its signal and queue
 * events, and stops gracefully: no new connections, idle sessions told 421,
 * sessions waiting for a commit answered first, then the loop ends.
 */
#include "relayd/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "relayd/delivery.h"
#include "relayd/log.h"
#include "relayd/notify.h"
#include "relayd/smtp_server.h"

#define LISTEN_BACKLOG 511
#define ACCEPT_PAUSE   1	/* seconds without accepting after EMFILE and friends */

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	(void)l;
	smtp_server_accept(arg, fd, sa, (socklen_t)salen);
}

static void listeners_enable(struct server *srv, int on)
{
	for (size_t i = 0; i < srv->nlisteners; i++)
		if (on)
			evconnlistener_enable(srv->listeners[i].evl);
		else
			evconnlistener_disable(srv->listeners[i].evl);
}

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	listeners_enable(arg, 1);
}

/*
 * Out of descriptors or memory: the pending connection stays in the backlog
 * and the socket stays readable, so retrying at once would spin.  Pause
 * accepting for a second instead (sessions ending meanwhile free descriptors).
 */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct server *srv = ((struct server_listener *)arg)->srv;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval pause = { ACCEPT_PAUSE, 0 };
	(void)l;

	log_warn("accept: %s: not accepting for %ds (%u sessions)",
	    evutil_socket_error_to_string(err), ACCEPT_PAUSE, srv->nsessions);
	listeners_enable(srv, 0);
	evtimer_add(srv->accept_pause, &pause);
}

evutil_socket_t server_bind_one(const struct conf_listen *l, char *err, size_t errlen)
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
	srv->accept_pause = evtimer_new(base, accept_resume_cb, srv);
	if (!srv->listeners || !srv->accept_pause) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < conf->nlisten; i++) {
		evutil_socket_t fd = server_bind_one(&conf->listen[i], err, errlen);
		if (fd < 0)
			return -1;
		struct server_listener *sl = &srv->listeners[i];
		sl->srv = srv;
		sl->implicit_tls = conf->listen[i].tls;
		sl->proxy = conf->listen[i].proxy;
		struct evconnlistener *l = evconnlistener_new(base, accept_cb, sl,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
		if (!l) {
			close(fd);
			snprintf(err, errlen, "listen %s: cannot watch the socket",
			    conf->listen[i].text);
			return -1;
		}
		evconnlistener_set_error_cb(l, accept_error_cb);
		evconnlistener_disable(l);	/* until the queue is open */
		sl->evl = l;
		srv->nlisteners++;
	}
	return 0;
}

static void stop_listening(struct server *srv)
{
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_free(srv->listeners[i].evl);
	srv->nlisteners = 0;
	if (srv->accept_pause)
		evtimer_del(srv->accept_pause);
}

time_t server_limits_clock(void)
{
	return (time_t)delivery_monotonic();
}

void server_session_gone(struct server *srv)
{
	if (srv->stopping && srv->nsessions == 0 && !delivery_busy(srv->delivery))
		event_base_loopexit(srv->base, NULL);
}

static void delivery_stopped(void *arg)
{
	server_session_gone(arg);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	(void)what;
	if (sig == SIGUSR1) {	/* logrotate: the file only */
		log_reopen();
		log_info("SIGUSR1: log file reopened");
		return;
	}
	if (sig == SIGHUP) {
		log_reopen();
		log_info("SIGHUP: log file reopened, reading the configuration again");
		if (!srv->stopping) {
			notify_systemd("RELOADING=1");
			server_reload(srv);
			notify_systemd("READY=1");
		}
		return;
	}
	if (srv->stopping) {
		log_info("%s again: dropping %u session(s) and every delivery now",
		    sig == SIGTERM ? "SIGTERM" : "SIGINT", srv->nsessions);
		delivery_stop(srv->delivery, 1, delivery_stopped, srv);
		smtp_server_shutdown(srv, 1);
		server_session_gone(srv);
		return;
	}
	notify_systemd("STOPPING=1");
	log_info("%s: stopping: no new connections, finishing %u session(s)",
	    sig == SIGTERM ? "SIGTERM" : "SIGINT", srv->nsessions);
	srv->stopping = 1;
	stop_listening(srv);
	delivery_stop(srv->delivery, 0, delivery_stopped, srv);
	smtp_server_shutdown(srv, 0);
	server_session_gone(srv);
}

static void queue_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	(void)fd, (void)what;
	queue_dispatch(srv->queue);
}

static void auth_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	(void)fd, (void)what;
	auth_worker_dispatch(srv->auth_worker);
}

void server_signals_hold(int hold)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(hold ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

int server_run(struct server *srv, struct queue *queue)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };

	srv->queue = queue;
	srv->queue_event = event_new(srv->base, queue_notify_fd(queue), EV_READ | EV_PERSIST,
	    queue_cb, srv);
	if (!srv->queue_event || event_add(srv->queue_event, NULL) < 0)
		return -1;
	if (srv->auth_worker) {
		srv->auth_event = event_new(srv->base, auth_worker_fd(srv->auth_worker),
		    EV_READ | EV_PERSIST, auth_cb, srv);
		if (!srv->auth_event || event_add(srv->auth_event, NULL) < 0)
			return -1;
	}
	for (size_t i = 0; i < 4; i++) {
		srv->signals[i] = evsignal_new(srv->base, sigs[i], signal_cb, srv);
		if (!srv->signals[i] || evsignal_add(srv->signals[i], NULL) < 0)
			return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	server_signals_hold(0);	/* held since start-up: pending ones arrive now */
	if (srv->delivery && delivery_start(srv->delivery, queue) < 0)
		return -1;
	listeners_enable(srv, 1);
	for (size_t i = 0; i < srv->conf->nlisten; i++)
		log_info("listening on %s%s%s", srv->conf->listen[i].text,
		    srv->conf->listen[i].tls ? " (TLS)" : srv->tls_ctx ? " (STARTTLS)" : "",
		    srv->conf->listen[i].proxy ? " (PROXY protocol)" : "");
	notify_systemd("READY=1\nSTATUS=accepting mail");
	return event_base_dispatch(srv->base);
}

void server_free(struct server *srv)
{
	stop_listening(srv);
	free(srv->listeners);
	srv->listeners = NULL;
	if (srv->queue_event)
		event_free(srv->queue_event);
	if (srv->auth_event)
		event_free(srv->auth_event);
	if (srv->accept_pause)
		event_free(srv->accept_pause);
	for (size_t i = 0; i < 4; i++)
		if (srv->signals[i])
			event_free(srv->signals[i]);
}
