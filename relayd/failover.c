/*
 * failover — a route lists upstreams in order; a recipient that one of them
 * fails (no connection, TLS or AUTH trouble, a 4xx, or a 5xx its upstream's
 * failover_on names) goes to the next one in the same attempt, and is only
 * deferred or bounced when the last one fails it too.  An upstream whose
 * connections keep failing is passed over for a growing hold-off while
 * another hop remains, so one dead provider does not cost every message a
 * connection timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relayd/delivery_internal.h"
#include "relayd/log.h"

#define DOWN_HOLD_MIN 10		/* seconds an upstream is passed over, first time */
#define DOWN_HOLD_MAX 600		/* doubling up to this */

void job_rcpt_settle(struct job_rcpt *jr)
{
	if (jr->code != 0)
		return;
	jr->code = 451;
	snprintf(jr->dsn, sizeof jr->dsn, "4.4.0");
	free(jr->text);
	jr->text = strdup("no answer for this recipient");
}

static int is_down(const struct upstream *up, double now)
{
	return now < up->down_until;
}

void upstream_ready(struct upstream *up)
{
	if (up->down_count && !is_down(up, delivery_monotonic()))
		log_info("upstream %s%s%s: up again", up->conf->name, up->domain ? " for " : "",
		    up->domain ? up->domain : "");
	up->down_count = 0;
	up->down_until = 0;
}

/* A connection failed before it was ready: the upstream is down for a while. */
static void mark_down(struct upstream *up, const char *why)
{
	double now = delivery_monotonic();
	if (is_down(up, now))
		return;		/* its other connections failing too: one failure */
	unsigned hold = DOWN_HOLD_MIN;
	for (unsigned i = 1; i < up->down_count + 1 && hold < DOWN_HOLD_MAX; i++)
		hold *= 2;
	if (hold > DOWN_HOLD_MAX)
		hold = DOWN_HOLD_MAX;
	up->down_count++;
	up->down_until = now + hold;
	snprintf(up->down_why, sizeof up->down_why, "%s", why);
	log_info("upstream %s%s%s: marked down for %us: %s", up->conf->name,
	    up->domain ? " for " : "", up->domain ? up->domain : "", hold, why);
}

#define CAP_HOLD 60			/* seconds an upstream gets fewer connections */

void upstream_fewer(struct upstream *up, const char *why)
{
	unsigned open = up->nconn > 1 ? up->nconn - 1 : 1;	/* the others */
	if (delivery_monotonic() < up->cap_until && up->cap <= open)
		return;
	up->cap = open;
	up->cap_until = delivery_monotonic() + CAP_HOLD;
	log_info("upstream %s%s%s: at most %u connection(s) for %ds: %s", up->conf->name,
	    up->domain ? " for " : "", up->domain ? up->domain : "", open, CAP_HOLD, why);
}

unsigned upstream_conn_limit(const struct upstream *up)
{
	unsigned limit = up->conf->max_connections;
	if (delivery_monotonic() < up->cap_until && up->cap < limit)
		limit = up->cap;
	return limit;
}

void upstream_failed(struct upstream *up, int code, const char *dsn, const char *why,
    const char *relay)
{
	struct delivery_job *job;

	if (code / 100 != 5)	/* a null MX or no such domain is no outage */
		mark_down(up, why);
	while ((job = upstream_next_job(up))) {
		for (size_t i = 0; i < job->nrcpts; i++) {
			struct job_rcpt *r = &job->rcpts[i];
			if (!r->code) {
				r->code = code;
				snprintf(r->dsn, sizeof r->dsn, "%s", dsn);
				r->text = strdup(why);
			}
		}
		snprintf(job->relay, sizeof job->relay, "%s", relay);
		job->t_assigned = job->t_ready = job->t_done = delivery_now();
		delivery_job_done(job);
	}
}

static int takes(const struct delivery_msg *m, const struct upstream *up)
{
	return m->env->sender[0] != '\0' || up->conf->null_sender;
}

/* The log line of a recipient passed over an upstream (down, or over its quota). */
static void log_passed_over(struct delivery_msg *m, struct upstream *up, size_t index,
    double now, double mono, const char *why)
{
	char text[400];
	struct delivery_job job = { .msg = m, .env = m->env, .up = up, .t_created = now,
	    .t_assigned = now, .t_done = now };
	struct job_rcpt jr = { .index = index, .code = 451, .dsn = "4.4.1", .text = text };

	snprintf(job.relay, sizeof job.relay, "none");
	if (why) {
		snprintf(jr.dsn, sizeof jr.dsn, "4.7.0");
		snprintf(text, sizeof text, "%s", why);
	} else {
		snprintf(text, sizeof text, "upstream marked down for %.0fs more: %s",
		    up->down_until - mono, up->down_why);
	}
	log_attempt(m, &job, &jr, "failover", now);
}

int route_hop(struct delivery_msg *m, const struct conf_route *route, size_t from,
    size_t index, int log, int64_t *retry_at)
{
	struct upstream *ups = m->ups;
	double now = delivery_now(), mono = delivery_monotonic();
	int64_t until, first_open = -1;
	int last = -1, any = 0;
	char why[200];

	/* The last hop that may be tried at all: it is tried even when marked down. */
	const char *rcpt = m->env->rcpts[index].addr;

	for (size_t h = from; h < route->nupstreams; h++) {
		struct upstream *up = upstream_for(&ups[route->upstreams[h]], rcpt);
		if (!up || !takes(m, up))
			continue;
		any = 1;
		if (!quota_full(up, (int64_t)now, &until, why, sizeof why))
			last = (int)h;
		else if (first_open < 0 || until < first_open)
			first_open = until;
	}
	if (last < 0) {
		if (any)
			*retry_at = first_open;
		return any ? -2 : -1;
	}
	for (size_t h = from; h < (size_t)last; h++) {
		struct upstream *up = upstream_for(&ups[route->upstreams[h]], rcpt);
		if (!up || !takes(m, up))
			continue;
		int full = quota_full(up, (int64_t)now, &until, why, sizeof why);
		if (!full && !is_down(up, mono))
			return (int)h;
		if (log)
			log_passed_over(m, up, index, now, mono, full ? why : NULL);
	}
	return last;
}

/* failover_on: the reply's enhanced code starts with one of the listed codes. */
static int failover_code(const struct conf_upstream *u, const char *dsn)
{
	for (size_t i = 0; i < u->nfailover_on; i++) {
		size_t n = strlen(u->failover_on[i]);
		if (strncmp(dsn, u->failover_on[i], n) == 0 && (dsn[n] == '\0' || dsn[n] == '.'))
			return 1;
	}
	return 0;
}

static int fails_over(const struct delivery_job *job, const struct job_rcpt *jr)
{
	int code = jr->code == 0 ? 451 : jr->code;
	if (jr->code == JOB_UNDECIDED || jr->code == JOB_MOVED || !jr->route || !job->up ||
	    jr->uncertain)
		return 0;
	return code / 100 == 4 || (code / 100 == 5 && failover_code(job->up->conf, jr->dsn));
}

void job_reserve(struct delivery_job *job)
{
	if (!job->quota_up)
		job->quota_up = quota_upstream(job->up);
	job->quota_up->reserved++;
}

/* job's recipients are back from its upstream: no longer reserved, the sent ones counted. */
static void job_back(struct delivery_job *job)
{
	unsigned sent = 0;
	if (!job->quota_up)
		return;
	job->quota_up->reserved -= (unsigned)job->nrcpts;
	job->quota_up = NULL;
	for (size_t i = 0; i < job->nrcpts; i++)
		sent += job->rcpts[i].code / 100 == 2;
	quota_count(job->up, sent);
}

void failover(struct delivery_msg *m, struct delivery_job *job)
{
	struct delivery *d = m->d;
	size_t first = m->njobs;	/* jobs made here: m->jobs[first…] */
	double now = delivery_now();

	job_back(job);
	if (d->stopping)
		return;		/* results as they are: the rest waits for the next start */
	for (size_t i = 0; i < job->nrcpts; i++) {
		struct job_rcpt *jr = &job->rcpts[i];
		int64_t retry_at = 0;
		if (!fails_over(job, jr))
			continue;
		int hop = route_hop(m, jr->route, jr->hop + 1, jr->index, 0, &retry_at);
		if (hop == -2) {	/* the rest of the route is over quota: wait for it */
			jr->retry_at = retry_at;
			if (jr->code / 100 == 5) {	/* a failover_on code: not a bounce yet */
				jr->code = 451;
				jr->dsn[0] = '4';
			}
		}
		if (hop < 0)
			continue;
		struct upstream *up = upstream_for(&m->ups[jr->route->upstreams[hop]],
		    m->env->rcpts[jr->index].addr);
		struct delivery_job *next = NULL;
		for (size_t j = first; j < m->njobs && !next; j++)
			if (m->jobs[j]->up == up)
				next = m->jobs[j];
		if (!up || (!next && !(next = msg_job(m, up, 1))))
			continue;	/* out of memory: decided on this upstream after all */
		job_rcpt_settle(jr);
		log_attempt(m, job, jr, "failover", now);
		route_hop(m, jr->route, jr->hop + 1, jr->index, 1, &retry_at);	/* its log lines */
		struct job_rcpt *moved = &next->rcpts[next->nrcpts++];
		moved->index = jr->index;
		moved->route = jr->route;
		moved->hop = (size_t)hop;
		job_reserve(next);
		jr->code = JOB_MOVED;
	}
	for (size_t j = first, n = m->njobs; j < n; j++) {
		m->jobs_left++;
		upstream_submit(m->jobs[j]->up, m->jobs[j]);
	}
}
