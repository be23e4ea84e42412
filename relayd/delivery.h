/*
 * delivery — the half of relayd that forwards mail (DESIGN.md, Delivery):
 * the scheduler finds due messages in the queue's schedule, routes each
 * recipient to an upstream, hands jobs to that upstream's SMTP client
 * connections (at most max_connections, reused), and writes every result
 * back before it counts: sent, deferred with exponential backoff, or bounced
 * with a DSN to the sender.  One log line per recipient per attempt.
 */
#ifndef RELAYD_DELIVERY_H
#define RELAYD_DELIVERY_H

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdint.h>

#include "conf/conf.h"
#include "queue/queue.h"

struct smtp_client;
struct delivery_msg;
struct mx_resolver;

#define DELIVERY_ACTIVE_BUCKETS 1024	/* of the hash of messages in flight (about 1,000) */

/*
 * One configured upstream at run time.  `direct` is a parent: each
 * destination domain gets a child upstream of its own (made on first use,
 * freed when unused), with that domain's MX hosts as its hosts.
 */
struct upstream {
	const struct conf_upstream *conf;
	struct delivery *d;
	struct upstream *parent;	/* a direct child: its parent (owns tls) */
	char *domain;			/* a direct child: the destination domain */
	struct upstream *children;	/* direct: the domains' upstreams */
	struct upstream *next_child;
	unsigned refs;			/* jobs that point to it (children are freed at 0) */
	SSL_CTX *tls;			/* client context; NULL with `tls none` */
	char *password;			/* from password_file, or NULL */
	unsigned nconn;			/* connections open or opening */
	struct queue_counter quota;	/* recipients sent in the current hour and day windows */
	unsigned reserved;		/* recipients out to it and not back: counted against quota */
	int quota_dirty;		/* quota changed since it was last written */
	struct upstream *successor;	/* retired by a reload: the new one of the same name */
	double down_until;		/* after failed connections: passed over until then
					 * (delivery_monotonic) */
	unsigned down_count;		/* failures in a row: the hold-off grows with it */
	unsigned cap;			/* refused a connection while cap were open: at most */
	double cap_until;		/* that many until then */
	char down_why[256];
	struct delivery_job *wait_head, *wait_tail;	/* jobs no connection has yet */
	struct smtp_client *idle;	/* connections waiting for a job */
	struct smtp_client *conns;	/* every connection */
};

/* A job recipient's code when relayd stopped before it was tried or answered. */
#define JOB_UNDECIDED (-1)
/* … and when it went on to the next upstream of its route (another job has it). */
#define JOB_MOVED (-2)

/* One recipient's outcome in a job. */
struct job_rcpt {
	size_t index;			/* in msg->env->rcpts */
	const struct conf_route *route;	/* NULL: none matched */
	size_t hop;			/* the job's upstream is route->upstreams[hop] */
	int code;			/* the reply's code; 0 = not yet known; JOB_UNDECIDED */
	char dsn[16];
	char *text;			/* the whole reply, or relayd's own reason */
	int accepted;			/* RCPT got 2xx */
	int uncertain;			/* the data went out, the answer did not come: the
					 * upstream may have it, so no failover (a duplicate) */
	int64_t retry_at;		/* deferred: not before this (quota windows), or 0 */
};

/* Some recipients of one message, for one upstream. */
struct delivery_job {
	struct delivery_msg *msg;
	const struct queue_envelope *env;	/* the message's (owned by msg) */
	struct upstream *up;
	struct job_rcpt *rcpts;
	size_t nrcpts;
	char relay[320];		/* "host[ip]:port", or "none" */
	char mta[256];			/* the host name it went to (Remote-MTA), or "" */
	int dsn_passed;			/* the upstream offered DSN: NOTIFY went on with it */
	struct upstream *quota_up;	/* where its recipients count as reserved, or NULL */
	double t_created, t_assigned, t_ready, t_done;	/* for delays=a/b/c/d */
	struct delivery_job *next;	/* in the upstream's wait list */
};

/* Upstreams of a configuration replaced by a reload: they finish what they have. */
struct upstream_set {
	struct upstream *ups;
	size_t n;
	unsigned refs;			/* messages in flight that route with it */
	struct upstream_set *older;
};

struct delivery {
	const struct config *conf;
	struct event_base *base;
	struct evdns_base *dns;		/* upstream host names */
	struct mx_resolver *mx;		/* direct delivery's MX lookups (c-ares) */
	struct queue *queue;
	struct upstream *upstreams;	/* one per conf->upstreams */
	size_t nupstreams;
	unsigned refs;			/* messages in flight that route with upstreams */
	struct upstream_set *retired;	/* from before reloads, freed once unused */
	struct event *gc;		/* frees unused retired sets, from the loop */
	struct delivery_msg *active;	/* messages in flight */
	size_t nactive;
	/* The same by id: the scheduler asks for each due entry whether it is in flight. */
	struct delivery_msg *active_by_id[DELIVERY_ACTIVE_BUCKETS];
	struct event *timer;		/* the next due time, or a kick; the stop deadline */
	struct event *quota_timer;	/* writes changed quota counters, once a second */
	struct event *notice_timer;	/* notify resource: the queue and its disk */
	int queue_warned, disk_warned;	/* over the threshold at the last look */
	int stopping;
	void (*stopped)(void *);	/* called once nothing is in flight any more */
	void *stopped_arg;
};

/*
 * Read every upstream's password_file and CA now (before privileges go):
 * 0, or -1 with "FILE:LINE: message".  Also what `relayd -n` checks.
 */
int delivery_check(const struct config *conf, char *err, size_t errlen);
struct delivery *delivery_new(const struct config *conf, struct event_base *base, char *err,
    size_t errlen);
/* Begin: due mail is looked for now, and whenever delivery_kick() says so. */
int delivery_start(struct delivery *d, struct queue *q);
/* New mail was committed: look for due work at once. */
void delivery_kick(struct delivery *d);
/*
 * Stop: nothing new starts; work not yet on a connection stays queued, as
 * it was, for the next start.  Transactions in flight get DELIVERY_STOP_GRACE
 * seconds to finish (now: none), and their results are written; what is cut
 * off stays queued too.  stopped(arg) runs once nothing is in flight.
 */
#define DELIVERY_STOP_GRACE 10
void delivery_stop(struct delivery *d, int now, void (*stopped)(void *), void *arg);
/* The ids of the messages out for delivery now (at most max); how many. */
size_t delivery_active_ids(const struct delivery *d, char (*ids)[QUEUE_ID_LEN + 1],
    size_t max);
/* 1 while transactions are in flight or their results are being written. */
int delivery_busy(const struct delivery *d);
void delivery_free(struct delivery *d);
/*
 * SIGHUP: conf replaces the running configuration for the next attempt
 * (routes, upstreams, retries); what is in flight finishes on the upstreams
 * it started with.  0, or -1 with err (nothing changed).  The caller keeps
 * the old config alive until delivery_free.
 */
int delivery_reload(struct delivery *d, const struct config *conf, char *err, size_t errlen);

/* quota.c: recipients up sent in its current hour and day windows (for /metrics). */
void quota_used(const struct upstream *up, int64_t now, unsigned *hour, unsigned *day);

/* smtp_client.c ↔ delivery.c */
struct delivery_job *upstream_next_job(struct upstream *up);
void delivery_job_done(struct delivery_job *job);
/*
 * A connection could not get ready: up is marked down for a while (failover.c)
 * and what waits for it fails with the same reason (going on to the next
 * upstream of its route, if any).
 */
void upstream_failed(struct upstream *up, int code, const char *dsn, const char *why,
    const char *relay);
/* A connection of up failed while others were open: fewer connections for a while. */
void upstream_fewer(struct upstream *up, const char *why);
/* How many connections up may have now (max_connections, or fewer after refusals). */
unsigned upstream_conn_limit(const struct upstream *up);
/* A connection of up got ready: it is not down (any more). */
void upstream_ready(struct upstream *up);
/* A connection of up has closed: waiting work may open another. */
void upstream_slot_free(struct upstream *up);
/* Start a connection for up, which will take jobs from its wait list.  -1 on failure. */
int smtp_client_open(struct upstream *up);
/* Give an idle connection a job. */
void smtp_client_run(struct smtp_client *c, struct delivery_job *job);
/* Stopping: close up's connections without a job; now: every one, its job left undecided. */
void smtp_client_stop(struct upstream *up, int now);
/* delivery_free: every connection goes, whatever it was doing. */
void smtp_client_free_all(struct upstream *up);

/* Wall-clock seconds (log lines, the queue's times). */
double delivery_now(void);
/* Seconds that never jump with the clock (hold-offs). */
double delivery_monotonic(void);

#endif
