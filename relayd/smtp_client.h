/*
 * smtp_client internals, shared by its two halves: smtp_client.c (the
 * connection: DNS, connect, greeting, EHLO, TLS, AUTH, idle, close) and
 * smtp_transaction.c (one message: MAIL, RCPT…, DATA, the body).  The
 * interface to the rest of relayd is in delivery.h.
 */
#ifndef RELAYD_SMTP_CLIENT_H
#define RELAYD_SMTP_CLIENT_H

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <stdint.h>

#include "relayd/client_resolve.h"
#include "relayd/delivery.h"
#include "relayd/smtp_dot.h"
#include "relayd/smtp_reply.h"

/*
 * Timeouts are the upstream's timeout_* (RFC 5321 §4.5.3.2 minimums as
 * defaults): timeout_command covers every reply and every write of the body
 * (RFC: 5, 2 and 3 minutes), timeout_data the reply to the final dot (10).
 */
#define T_CONNECT(c)	((c)->up->conf->timeout_connect)
#define T_COMMAND(c)	((c)->up->conf->timeout_command)
#define T_DATA_END(c)	((c)->up->conf->timeout_data)
#define T_IDLE(c)	((c)->up->conf->timeout_idle)
#define BODY_HIGH	(256 * 1024)	/* output kept below this while streaming */

enum client_state {
	C_RESOLVE, C_CONNECT, C_GREETING, C_EHLO, C_HELO, C_STARTTLS, C_HANDSHAKE,
	C_AUTH, C_IDLE, C_MAIL, C_RCPT, C_DATA, C_BODY, C_DOT, C_RSET, C_QUIT,
};

struct smtp_client {
	struct upstream *up;
	struct bufferevent *bev;
	enum client_state state;
	struct smtp_reply reply;
	struct resolve_req *resolve;	/* looking up where to connect */
	struct client_target *targets;	/* where to connect, in order */
	size_t ntargets, target;	/* and the one being tried */
	struct event *idle_timer;
	char relay[320];		/* "host[ip]:port" */
	double t_opened;		/* when it began (delays= c: connection setup) */
	int ran_job;			/* has had a job: the next one waited for it, not its setup */
	int tls;			/* TLS is up */
	int no_starttls;		/* tls may, after a failed handshake: plaintext */
	int esmtp, pipelining, starttls, dsn, eightbit, smtputf8, size;
	uint64_t size_limit;		/* SIZE n; 0 = none given */
	char auth_mechs[256];		/* EHLO AUTH words */
	struct auth_client *sasl;
	int auth_started;
	struct delivery_job *job;
	size_t rcpt_i;			/* next RCPT reply to match */
	size_t sent_rcpts;		/* RCPTs sent (non-pipelined: one at a time) */
	unsigned accepted;
	int mail_failed;
	uint32_t chunk;			/* next body chunk */
	uint64_t body_read;		/* body bytes read from the queue so far */
	struct smtp_dot_writer dot;	/* dot-stuffing state */
	int body_done;
	unsigned busy;			/* callbacks running: free later */
	int dead;			/* freed as soon as they return */
	struct smtp_client *next_idle;
	struct smtp_client *next_conn;	/* in up->conns */
};


/* smtp_client.c */
void client_set_timeout(struct smtp_client *c, unsigned seconds);
void client_send(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Set a job recipient's outcome, unless it has one. */
void client_rcpt_result(struct job_rcpt *r, int code, const char *dsn, const char *text);
/* Every recipient of the job still open gets this outcome (code 0: none); the job is done. */
void client_finish_job(struct smtp_client *c, int code, const char *dsn, const char *text);
/* The connection is unusable: its job is deferred with why, and it closes. */
void client_fail(struct smtp_client *c, int code, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* smtp_transaction.c */
/* Start c->job on a ready connection (MAIL, and with PIPELINING the rest). */
void tx_begin(struct smtp_client *c);
/* A reply in C_MAIL, C_RCPT, C_DATA or C_DOT. */
void tx_reply(struct smtp_client *c);
/* The output drained while the body goes out: refill it. */
void tx_pump_body(struct smtp_client *c);

#endif
