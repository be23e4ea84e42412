/*
 * delivery internals shared by delivery.c (upstreams, the scheduler),
 * delivery_result.c (what an attempt's replies mean, written back and
 * logged) and failover.c (which upstream of a route a recipient tries next).
 */
#ifndef RELAYD_DELIVERY_INTERNAL_H
#define RELAYD_DELIVERY_INTERNAL_H

#include "relayd/delivery.h"

/* One message in flight: its envelope, and a job per upstream it is out to. */
struct delivery_msg {
	struct delivery *d;
	struct queue_envelope *env;
	char id[QUEUE_ID_LEN + 1];
	int64_t due;			/* where the schedule holds it */
	struct delivery_job **jobs;
	size_t njobs;
	size_t jobs_left;
	struct upstream *ups;		/* the upstreams its routes index (of its config) */
	struct queue_envelope *copy;	/* notify: the postmaster's copy of its report, */
	struct queue_spool *copy_spool;	/* committed after its results */
	char **lines;			/* its log lines, written once its results are */
	size_t nlines;
	struct delivery_msg *next, **pprev;	/* d->active, in start order */
	struct delivery_msg *hnext;		/* its bucket of d->active_by_id */
};

/* delivery_active.c: the messages in flight, listed and hashed by id. */
void active_add(struct delivery *d, struct delivery_msg *m);
void active_del(struct delivery *d, struct delivery_msg *m);
int active_has(const struct delivery *d, const char *id);

/* delivery_result.c */
/* A log line about m, held until m's results are in the queue. */
void msg_log(struct delivery_msg *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* m is out of flight: unlinked and freed; the scheduler looks again. */
void msg_done(struct delivery *d, struct delivery_msg *m);
void msg_free(struct delivery_msg *m);
/* The delivery log line of one recipient's attempt on job's upstream. */
void log_attempt(struct delivery_msg *m, const struct delivery_job *job,
    const struct job_rcpt *jr, const char *status, double now);

/* upstream.c */
/*
 * An upstream for each of conf's blocks, with its TLS context and password
 * (a password_file that cannot be read now, after privileges went, is taken
 * from old, the set being replaced, when it names the same file).  NULL
 * with err.
 */
struct upstream *upstreams_new(struct delivery *d, const struct config *conf,
    const struct upstream *old, size_t nold, char *err, size_t errlen);
/* Close every connection of the set, then free it. */
void upstreams_free(struct upstream *ups, size_t n);
/* up itself, or for `direct` the child upstream of rcpt's domain (made on first use);
 * NULL without memory. */
struct upstream *upstream_for(struct upstream *up, const char *rcpt);
/* Free the direct children nothing uses any more (called with each scan). */
void upstreams_sweep(struct delivery *d);
/* A message routing with ups is done with it; an unused retired set is freed soon. */
void upstreams_release(struct delivery *d, struct upstream *ups);
/* Free the retired sets nothing uses (from the loop). */
void upstreams_gc(struct delivery *d);
/* fn on every upstream (and direct child): the current ones and those a reload retired. */
void upstreams_each(struct delivery *d, void (*fn)(struct upstream *, void *), void *arg);

/* delivery.c */
void upstream_submit(struct upstream *up, struct delivery_job *job);
/* m's job for up (fresh: always a new one), or NULL without memory. */
struct delivery_job *msg_job(struct delivery_msg *m, struct upstream *up, int fresh);

/* quota.c */
/* 1 when up may not take another recipient now: *until is when it may, why says so. */
int quota_full(struct upstream *up, int64_t now, int64_t *until, char *why, size_t whylen);
/* Where up's recipients count: itself, a direct child's parent, a retired one's successor. */
struct upstream *quota_upstream(struct upstream *up);
/* sent recipients went out through up. */
void quota_count(struct upstream *up, unsigned sent);
/* The counters from the queue (at start), and the changed ones back (timer, stop). */
void quota_load(struct delivery *d);
/* After a reload: counters of upstreams whose name the previous set did not have. */
void quota_load_new(struct delivery *d);
void quota_save(struct delivery *d);

/* notice.c: notify resource, every NOTICE_CHECK seconds. */
#define NOTICE_CHECK 5
void notice_check(struct delivery *d);

/* failover.c */
/*
 * The first hop from `from` on of route that can carry m (an upstream that
 * takes the null sender, for a bounce, and is under its quota), passing over
 * upstreams marked down while a later hop remains (with a log line for
 * recipient index, when log).  -1 when none can; -2 when only quotas stand
 * in the way: *retry_at is when the first window opens.
 */
int route_hop(struct delivery_msg *m, const struct conf_route *route, size_t from,
    size_t index, int log, int64_t *retry_at);
/* job is back: recipients it failed that their route can take further go to the
 * next upstream now (JOB_MOVED here, with a log line of their own). */
void failover(struct delivery_msg *m, struct delivery_job *job);
/* One more recipient of job counts against its upstream's quota until the job is back. */
void job_reserve(struct delivery_job *job);
/* A job recipient without an answer gets 451 4.4.0, so it can be logged and decided. */
void job_rcpt_settle(struct job_rcpt *jr);

#endif
