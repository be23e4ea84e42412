/*
 * server — the daemon's shared state: the config, the event loop, the queue,
 * the listening sockets and the list of live SMTP sessions; start-up binding
 * and the graceful stop (TERM/INT) that waits for commits in flight.
 */
#ifndef RELAYD_SERVER_H
#define RELAYD_SERVER_H

#include <event2/event.h>
#include <event2/listener.h>
#include <time.h>

#include "conf/conf.h"
#include "queue/queue.h"

struct smtp_session;
struct auth_server;
struct auth_penalty;
struct auth_limits;
struct auth_worker;
struct delivery;
struct ssl_ctx_st;

/* One listening socket; its options from `listen ADDR:PORT [tls] [proxy]`. */
struct server_listener {
	struct server *srv;
	struct evconnlistener *evl;
	int implicit_tls;
	int proxy;			/* a PROXY protocol header comes first */
};

struct retired_conf;

struct server {
	const struct config *conf;	/* the running one: replaced by a reload (SIGHUP) */
	struct retired_conf *retired;	/* replaced ones, freed at the end */
	struct event_base *base;
	struct queue *queue;
	struct server_listener *listeners;
	size_t nlisteners;
	struct ssl_ctx_st *tls_ctx;	/* SSL_CTX; NULL without tls_cert */
	struct auth_server *auth;	/* NULL without an AUTH backend */
	struct auth_worker *auth_worker;	/* runs every Cyrus call; with auth */
	struct event *auth_event;	/* the worker's answers are ready */
	struct auth_penalty *auth_penalty;	/* failed logins per address */
	struct auth_limits *limits;	/* rate limits: counts per login and address */
	struct delivery *delivery;	/* forwarding to upstreams */
	struct smtp_session *sessions;	/* doubly linked through session->next/prev */
	unsigned nsessions;
	int stopping;
	struct event *queue_event;
	struct event *accept_pause;	/* re-enables accepting after EMFILE */
	struct event *signals[4];
};

/* A listening socket (non-blocking, close-on-exec) for l; -1 with err. */
evutil_socket_t server_bind_one(const struct conf_listen *l, char *err, size_t errlen);
/* Bind every `listen` address (before privileges are dropped); 0, or -1 with err. */
int server_bind(struct server *srv, const struct config *conf, struct event_base *base,
    char *err, size_t errlen);
/*
 * 1: hold HUP, TERM, INT and USR1 (from the start of main, so a signal during
 * start-up waits instead of killing relayd); 0: let them in (server_run,
 * once the loop handles them).  Threads started meanwhile inherit the hold.
 */
void server_signals_hold(int hold);
/* Attach the open queue and signals, then run the loop until a graceful stop. */
int server_run(struct server *srv, struct queue *queue);
void server_free(struct server *srv);

/* reload.c: SIGHUP — read the config file again and use it if it is good. */
void server_reload(struct server *srv);
/* At the end: free the running config and every one a reload replaced. */
void server_free_configs(struct server *srv);

/* The rate limits' clock: seconds of CLOCK_MONOTONIC, which is never set back. */
time_t server_limits_clock(void);

/* Called by sessions when they end, so a stopping server can exit. */
void server_session_gone(struct server *srv);

#endif
