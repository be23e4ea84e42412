/*
 * delivery — the scheduler: due messages from the queue's schedule become
 * jobs for their upstreams; when every job of a message is back, the
 * recipients' new states (and any DSN they call for) are written in one
 * transaction, and only then logged as final.  A crash before that write
 * means the attempt is made again: nothing acknowledged is lost, and only
 * what was in flight can go out twice.
 */
#include "relayd/delivery_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relayd/log.h"
#include "relayd/mx.h"
#include "routes/routes.h"

#define ACTIVE_MAX 1000			/* messages in flight at once */
#define SCAN_MAX 256			/* messages taken per look at the schedule */

double delivery_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double delivery_monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct delivery_job *upstream_next_job(struct upstream *up)
{
	struct delivery_job *job = up->wait_head;
	if (job && !(up->wait_head = job->next))
		up->wait_tail = NULL;
	if (job)
		job->next = NULL;
	return job;
}

void upstream_submit(struct upstream *up, struct delivery_job *job)
{
	job->t_created = delivery_now();
	if (up->idle) {
		smtp_client_run(up->idle, job);
		return;
	}
	if (up->wait_tail)
		up->wait_tail->next = job;
	else
		up->wait_head = job;
	up->wait_tail = job;
	if (up->nconn < upstream_conn_limit(up) && smtp_client_open(up) < 0)
		log_warn("upstream %s: cannot open a connection: out of memory", up->conf->name);
}

void upstream_slot_free(struct upstream *up)
{
	if (up->wait_head && !up->d->stopping && up->nconn < upstream_conn_limit(up) &&
	    smtp_client_open(up) < 0)
		log_warn("upstream %s: cannot open a connection: out of memory", up->conf->name);
}

/* ---- scheduling ---------------------------------------------------------- */

struct due_list {
	struct delivery *d;
	char ids[SCAN_MAX][QUEUE_ID_LEN + 1];
	int64_t due[SCAN_MAX];
	size_t n, room;
};

static int collect(void *arg, const char *id, int64_t due)
{
	struct due_list *l = arg;
	if (active_has(l->d, id))
		return 0;
	/* Due twice (a stale entry beside its own): one start; the other waits its turn. */
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->ids[i], id) == 0)
			return 0;
	memcpy(l->ids[l->n], id, QUEUE_ID_LEN + 1);
	l->due[l->n] = due;
	return ++l->n >= l->room;
}

struct delivery_job *msg_job(struct delivery_msg *m, struct upstream *up, int fresh)
{
	for (size_t i = 0; i < m->njobs && !fresh; i++)
		if (m->jobs[i]->up == up)
			return m->jobs[i];
	// NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, sized as such
	struct delivery_job **grown = reallocarray(m->jobs, m->njobs + 1, sizeof *grown);
	struct delivery_job *job = calloc(1, sizeof *job);
	if (!grown || !job) {
		free(job);
		if (grown)
			m->jobs = grown;
		return NULL;
	}
	m->jobs = grown;
	job->msg = m;
	job->env = m->env;
	job->up = up;
	job->rcpts = calloc(m->env->nrcpts, sizeof *job->rcpts);
	if (!job->rcpts) {
		free(job);
		return NULL;
	}
	up->refs++;	/* a direct child lives while jobs point to it */
	m->jobs[m->njobs++] = job;
	return job;
}

static void unscheduled(void *arg, enum queue_status status)
{
	(void)arg, (void)status;
}

/* Route each pending recipient; the jobs go to their upstreams. */
static int start_message(struct delivery *d, const char *id, int64_t due)
{
	struct delivery_msg *m = calloc(1, sizeof *m);
	if (!m)
		return -1;
	m->d = d;
	memcpy(m->id, id, sizeof m->id);
	m->due = due;
	if (!(m->env = queue_load(d->queue, id))) {
		/* Deleted meanwhile (the entry goes), or damaged (relayctl shows it; it stays). */
		log_warn("%s: scheduled but cannot be loaded: gone, or damaged", id);
		if (queue_unschedule(d->queue, id, due, unscheduled, NULL) < 0)
			log_warn("%s: cannot drop the schedule entry: out of memory", id);
		free(m);
		return -1;
	}
	if (m->env->held) {
		/*
		 * Held (relayctl): not now.  Hold took every entry it could find;
		 * one it could not (see queue/admin.c) would come due again and
		 * again, so it goes — unless released by the time that is written.
		 */
		if (queue_unschedule(d->queue, id, due, unscheduled, NULL) < 0)
			log_warn("%s: cannot drop the schedule entry: out of memory", id);
		queue_envelope_free(m->env);
		free(m);
		return 0;
	}
	m->ups = d->upstreams;	/* its routes index these, whatever a reload does meanwhile */
	d->refs++;
	/* A recipient without a way out is decided at once, in a job of no upstream. */
	struct upstream none = { 0 };
	for (size_t i = 0; i < m->env->nrcpts; i++) {
		const struct queue_rcpt *r = &m->env->rcpts[i];
		if (r->state != QUEUE_RCPT_PENDING)
			continue;
		const struct conf_route *route = routes_find(d->conf, r->addr, m->env->sender);
		int64_t retry_at = 0;
		int hop = route ? route_hop(m, route, 0, i, 1, &retry_at) : -1;
		struct upstream *up = hop >= 0 ? upstream_for(&m->ups[route->upstreams[hop]],
		    r->addr) : &none;
		struct delivery_job *job = up ? msg_job(m, up, 0) : NULL;
		if (!job) {
			msg_free(m);
			return -1;
		}
		struct job_rcpt *jr = &job->rcpts[job->nrcpts++];
		jr->index = i;
		jr->route = route;
		jr->hop = hop >= 0 ? (size_t)hop : 0;
		if (hop >= 0)
			job_reserve(job);
		if (hop == -2) {
			char when[40];
			struct tm tm;
			time_t t = (time_t)retry_at;
			strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
			jr->code = 451;
			snprintf(jr->dsn, sizeof jr->dsn, "4.7.0");
			jr->retry_at = retry_at;
			if (asprintf(&jr->text, "every upstream of its route is over its quota "
			    "(max_per_hour, max_per_day) until %s", when) < 0)
				jr->text = NULL;
		} else if (route && hop < 0) {
			jr->code = 451;
			snprintf(jr->dsn, sizeof jr->dsn, "4.3.5");
			jr->text = strdup("no upstream of its route takes the null sender "
			    "(null_sender no)");
		} else if (!route && d->conf->nroutes > 0) {
			/* Accepted before a reload took its route away (RCPT checks it). */
			jr->code = 550;
			snprintf(jr->dsn, sizeof jr->dsn, "5.4.4");
			jr->text = strdup("no route for this recipient in relayd.conf");
		} else if (!route) {
			jr->code = 451;
			snprintf(jr->dsn, sizeof jr->dsn, "4.3.5");
			jr->text = strdup("no route in relayd.conf: mail waits in the queue");
		}
	}
	active_add(d, m);
	/* The jobs, plus one for this loop: none can finish the message while it runs. */
	m->jobs_left = m->njobs + 1;
	size_t n = m->njobs;
	for (size_t j = 0; j < n; j++) {
		struct delivery_job *job = m->jobs[j];
		if (job->up == &none) {
			job->up = NULL;
			job->t_created = job->t_assigned = job->t_done = delivery_now();
			snprintf(job->relay, sizeof job->relay, "none");
			delivery_job_done(job);
		} else {
			upstream_submit(job->up, job);
		}
	}
	struct delivery_job hold = { .msg = m };
	delivery_job_done(&hold);	/* nothing pending at all: only the schedule entry goes */
	return 0;
}

static void schedule(struct delivery *d, int64_t next)
{
	struct timeval tv = { 0, 0 };
	if (next < 0)
		return;
	int64_t wait = next - (int64_t)time(NULL);
	tv.tv_sec = wait > 0 ? wait : 0;
	evtimer_add(d->timer, &tv);
}

static void scan(struct delivery *d)
{
	struct due_list *l = malloc(sizeof *l);
	int64_t next = -1;

	if (!l || d->stopping) {
		free(l);
		return;
	}
	l->d = d;
	l->n = 0;
	l->room = d->nactive < ACTIVE_MAX ? ACTIVE_MAX - d->nactive : 0;
	if (l->room > SCAN_MAX)
		l->room = SCAN_MAX;
	if (l->room > 0 && queue_due(d->queue, (int64_t)time(NULL), collect, l, &next) < 0)
		log_warn("cannot read the queue's schedule");
	upstreams_sweep(d);
	for (size_t i = 0; i < l->n; i++)
		start_message(d, l->ids[i], l->due[i]);
	/* More due than taken: look again soon; else at the next due time. */
	schedule(d, l->n == l->room && l->room > 0 ? (int64_t)time(NULL) : next);
	free(l);
}

static void cut_one(struct upstream *up, void *arg)
{
	(void)arg;
	smtp_client_stop(up, 1);
}

static void cut_off(struct delivery *d)
{
	upstreams_each(d, cut_one, NULL);
}

/* Stopping: work not on a connection yet stays as it was; idle connections go. */
static void stop_one(struct upstream *up, void *arg)
{
	struct delivery_job *job;
	(void)arg;
	while ((job = upstream_next_job(up))) {
		for (size_t j = 0; j < job->nrcpts; j++)
			if (!job->rcpts[j].code)
				job->rcpts[j].code = JOB_UNDECIDED;
		delivery_job_done(job);
	}
	smtp_client_stop(up, 0);
}

static void gc_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	upstreams_gc(arg);
}

static void quota_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	quota_save(arg);
}

static void notice_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	notice_check(arg);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct delivery *d = arg;
	(void)fd, (void)what;
	if (d->stopping) {
		if (d->nactive)
			log_info("stopping: %zu message(s) still in transactions after %ds: cut "
			    "off, they stay queued", d->nactive, DELIVERY_STOP_GRACE);
		cut_off(d);
		return;
	}
	scan(d);
}

void delivery_kick(struct delivery *d)
{
	struct timeval now = { 0, 0 };
	if (d && !d->stopping)
		evtimer_add(d->timer, &now);
}

struct delivery *delivery_new(const struct config *conf, struct event_base *base, char *err,
    size_t errlen)
{
	struct delivery *d = calloc(1, sizeof *d);

	if (!d) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->conf = conf;
	d->base = base;
	if (conf->nupstreams && !(d->upstreams = upstreams_new(d, conf, NULL, 0, err, errlen))) {
		free(d);
		return NULL;
	}
	d->nupstreams = conf->nupstreams;
	return d;
}

int delivery_start(struct delivery *d, struct queue *q)
{
	d->queue = q;
	d->dns = evdns_base_new(d->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (!d->dns)
		d->dns = evdns_base_new(d->base, 0);	/* no resolv.conf: /etc/hosts and literals */
	d->timer = evtimer_new(d->base, timer_cb, d);
	d->quota_timer = evtimer_new(d->base, quota_cb, d);
	d->gc = evtimer_new(d->base, gc_cb, d);
	d->notice_timer = event_new(d->base, -1, EV_PERSIST, notice_cb, d);
	if (!d->dns || !d->timer || !d->quota_timer || !d->gc || !d->notice_timer)
		return -1;
	struct timeval every = { NOTICE_CHECK, 0 };
	evtimer_add(d->notice_timer, &every);
	quota_load(d);
	if (d->conf->nroutes == 0)
		log_warn("no route in the configuration: mail stays in the queue");
	delivery_kick(d);
	return 0;
}

void delivery_stop(struct delivery *d, int now, void (*stopped)(void *), void *arg)
{
	struct timeval grace = { DELIVERY_STOP_GRACE, 0 };
	if (!d)
		return;
	d->stopped = stopped;
	d->stopped_arg = arg;
	if (!d->stopping) {
		d->stopping = 1;
		if (d->notice_timer)
			evtimer_del(d->notice_timer);
		if (d->timer)
			evtimer_add(d->timer, &grace);
		upstreams_each(d, stop_one, NULL);
	}
	if (now)
		cut_off(d);
	if (d->queue)
		quota_save(d);
	if (d->nactive == 0 && d->stopped) {
		d->stopped = NULL;
		stopped(arg);
	}
}

size_t delivery_active_ids(const struct delivery *d, char (*ids)[QUEUE_ID_LEN + 1],
    size_t max)
{
	size_t n = 0;
	for (const struct delivery_msg *m = d ? d->active : NULL; m && n < max; m = m->next)
		memcpy(ids[n++], m->id, QUEUE_ID_LEN + 1);
	return n;
}

int delivery_busy(const struct delivery *d)
{
	return d && d->nactive > 0;
}

void delivery_free(struct delivery *d)
{
	if (!d)
		return;
	d->stopping = 1;	/* freed connections must not open others */
	struct delivery_msg *m;
	while ((m = d->active)) {
		active_del(d, m);
		msg_free(m);
	}
	upstreams_free(d->upstreams, d->nupstreams);
	while (d->retired) {
		struct upstream_set *old = d->retired;
		d->retired = old->older;
		upstreams_free(old->ups, old->n);
		free(old);
	}
	if (d->timer)
		event_free(d->timer);
	if (d->quota_timer)
		event_free(d->quota_timer);
	if (d->notice_timer)
		event_free(d->notice_timer);
	if (d->gc)
		event_free(d->gc);
	if (d->dns)
		evdns_base_free(d->dns, 1);
	mx_resolver_free(d->mx);
	free(d);
}
