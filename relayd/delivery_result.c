/*
 * delivery_result — what an attempt's replies mean for each recipient: sent,
 * deferred with backoff, bounced or expired (with the DSN it calls for),
 * written back to the queue in one transaction with the message's new place
 * in the schedule, and only then logged.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relayd/bounce.h"
#include "relayd/delivery_internal.h"
#include "relayd/hints.h"
#include "relayd/log.h"
#include "relayd/metrics.h"

void msg_log(struct delivery_msg *m, const char *fmt, ...)
{
	va_list ap;
	char *line = NULL;
	char **grown = reallocarray(m->lines, m->nlines + 1, sizeof *grown);

	if (grown)
		m->lines = grown;
	va_start(ap, fmt);
	int n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (!grown || n < 0) {
		log_warn("%s: out of memory for a log line", m->id);
		if (n >= 0)
			free(line);
		return;
	}
	m->lines[m->nlines++] = line;
}

static void msg_flush_log(struct delivery_msg *m)
{
	for (size_t i = 0; i < m->nlines; i++) {
		log_info("%s", m->lines[i]);
		free(m->lines[i]);
	}
	m->nlines = 0;
}

static void job_free(struct delivery_job *job)
{
	if (job->up)
		job->up->refs--;
	for (size_t i = 0; i < job->nrcpts; i++)
		free(job->rcpts[i].text);
	free(job->rcpts);
	free(job);
}

void msg_free(struct delivery_msg *m)
{
	for (size_t i = 0; i < m->njobs; i++)
		job_free(m->jobs[i]);
	free(m->jobs);
	for (size_t i = 0; i < m->nlines; i++)
		free(m->lines[i]);
	free(m->lines);
	queue_envelope_free(m->env);
	queue_envelope_free(m->copy);
	queue_spool_free(m->copy_spool);
	if (m->ups)
		upstreams_release(m->d, m->ups);
	free(m);
}

/* retry_min * 2^(attempts-1), at most retry_max, ±10 %. */
static int64_t backoff(const struct config *conf, uint32_t attempts)
{
	double s = conf->retry_min;
	for (uint32_t i = 1; i < attempts && s < conf->retry_max; i++)
		s *= 2;
	if (s > conf->retry_max)
		s = conf->retry_max;
	s *= 0.9 + 0.2 * ((double)random() / RAND_MAX);
	return s < 1 ? 1 : (int64_t)s;
}

/* The reply for a log line: one line, escaped. */
static const char *one_line(const char *text, char *out, size_t outlen)
{
	char flat[2048];
	size_t n = 0;
	for (const char *p = text ? text : ""; *p && n + 1 < sizeof flat; p++)
		flat[n++] = *p == '\n' ? ' ' : *p;
	flat[n] = '\0';
	return log_escape(out, outlen, flat, n);
}

/* Seconds as Postfix writes them: two significant digits, no exponent, 0 below 0.01. */
static const char *secs(double v, char *buf, size_t len)
{
	if (v < 0.01)
		snprintf(buf, len, "0");
	else if (v < 10)
		snprintf(buf, len, "%.2g", v);
	else
		snprintf(buf, len, "%.0f", v);
	return buf;
}

void log_attempt(struct delivery_msg *m, const struct delivery_job *job,
    const struct job_rcpt *jr, const char *status, double now)
{
	const struct queue_envelope *env = m->env;
	char reply[2048], addr[600], t[5][24];
	double arrival = (double)env->arrival + env->arrival_usec / 1e6;
	/* a: in the queue before this try; b: waiting for a connection; c: its setup; d: the
	 * transaction. */
	double a = job->t_created - arrival, b = job->t_assigned - job->t_created;
	double c = job->t_ready > job->t_assigned ? job->t_ready - job->t_assigned :
	    job->t_done - job->t_assigned, d = job->t_ready > 0 && job->t_done > job->t_ready ?
	    job->t_done - job->t_ready : 0;

	const char *hint = jr->code / 100 == 2 ? NULL : hint_for(m->d->conf, jr->dsn, jr->text);
	msg_log(m, "%s: to=<%s>, relay=%s, upstream=%s, delay=%s, delays=%s/%s/%s/%s, "
	    "dsn=%s, status=%s (%s)%s%s%s", m->id,
	    log_escape(addr, sizeof addr, env->rcpts[jr->index].addr,
	    strlen(env->rcpts[jr->index].addr)),
	    job->relay[0] ? job->relay : "none", job->up ? job->up->conf->name : "none",
	    secs(now - arrival, t[0], sizeof t[0]), secs(a, t[1], sizeof t[1]),
	    secs(b, t[2], sizeof t[2]), secs(c, t[3], sizeof t[3]), secs(d, t[4], sizeof t[4]),
	    jr->dsn, status, one_line(jr->text, reply, sizeof reply), hint ? " hint=\"" : "",
	    hint ? hint : "", hint ? "\"" : "");
	/* The same, for the recipient's history in the queue and the upstream's totals. */
	struct queue_attempt at = { .rcpt = (uint32_t)jr->index, .time = (int64_t)now,
	    .status = (char *)status, .upstream = job->up ? job->up->conf->name : NULL,
	    .relay = job->relay[0] && strcmp(job->relay, "none") != 0 ? (char *)job->relay : NULL,
	    .dsn = (char *)jr->dsn, .reply = jr->text };
	if (queue_envelope_add_attempt(m->env, &at) < 0)
		log_warn("%s: out of memory for the attempt history", m->id);
	if (jr->code / 100 == 2)
		metrics_observe(&metrics.delivery, now - arrival);
	else
		metrics_failure((int64_t)now, m->id, env->rcpts[jr->index].addr, at.upstream,
		    status, jr->dsn, jr->text, hint);
}

/* When stopping, the last message out of flight says so. */
void msg_done(struct delivery *d, struct delivery_msg *m)
{
	active_del(d, m);
	msg_free(m);
	if (!d->stopping)
		delivery_kick(d);
	else
		quota_save(d);	/* before the queue closes */
	if (d->stopping && d->nactive == 0 && d->stopped) {
		void (*stopped)(void *) = d->stopped;
		d->stopped = NULL;
		stopped(d->stopped_arg);
	}
}

/* The postmaster's copy of a report to the sender, committed once the results are. */
static void copy_done(void *arg, enum queue_status status)
{
	char *id = arg;

	if (status != QUEUE_OK)
		log_warn("%s: the postmaster's copy is lost (queue %s)", id,
		    status == QUEUE_FULL ? "full" : "error");
	free(id);
}

static void commit_copy(struct delivery *d, struct delivery_msg *m)
{
	char *id = strdup(m->copy->id);

	if (!id || queue_commit(d->queue, m->copy, m->copy_spool, copy_done, id) < 0) {
		log_warn("%s: the postmaster's copy is lost: out of memory", m->id);
		free(id);
	}
	m->copy = NULL;
	m->copy_spool = NULL;
}

static void update_done(void *arg, enum queue_status status)
{
	struct delivery_msg *m = arg;

	msg_flush_log(m);	/* the attempt happened, recorded or not */
	if (status != QUEUE_OK)
		log_warn("%s: cannot record delivery results (queue %s): the attempt will be "
		    "repeated", m->id, status == QUEUE_FULL ? "full" : "error");
	else if (m->copy)
		commit_copy(m->d, m);
	msg_done(m->d, m);
}

/*
 * A message from the null sender (a bounce) whose recipients failed: the
 * postmaster hears of it once (a double bounce), unless it was a notice to
 * the postmaster already, which is dropped.  Never a report to the null
 * sender, so nothing loops.
 */
static int make_double_bounce(struct delivery *d, struct delivery_msg *m,
    struct bounce_rcpt *br, size_t n, struct queue_envelope **benv,
    struct queue_spool **bspool)
{
	size_t failed = 0;
	char addr[600];

	for (size_t i = 0; i < n; i++)
		if (br[i].action == BOUNCE_FAILED)
			br[failed++] = br[i];
	if (failed == 0)
		return 0;
	if (m->env->notice) {
		for (size_t i = 0; i < failed; i++)
			msg_log(m, "%s: postmaster notice to <%s> undeliverable: dropped", m->id,
			    log_escape(addr, sizeof addr, br[i].rcpt->addr, strlen(br[i].rcpt->addr)));
		return 0;
	}
	if (bounce_build_notice(d->queue, d->conf->hostname, d->conf->postmaster,
	    BOUNCE_NOTICE_DOUBLE, m->env, br, failed, (int64_t)time(NULL), benv, bspool) < 0) {
		log_warn("%s: cannot build the postmaster's double-bounce notice: %s", m->id,
		    strerror(errno));
		return -1;
	}
	msg_log(m, "%s: undeliverable bounce: postmaster notice: %s", m->id, (*benv)->id);
	return 0;
}

/* A report about br[0..n) to the sender; NULL env when none is due. */
static int make_report(struct delivery *d, struct delivery_msg *m, struct bounce_rcpt *br,
    size_t n, struct queue_envelope **benv, struct queue_spool **bspool)
{
	if (n == 0)
		return 0;
	if (m->env->sender[0] == '\0')
		return make_double_bounce(d, m, br, n, benv, bspool);
	if (bounce_build(d->queue, d->conf->hostname, m->env, br, n, (int64_t)time(NULL), benv,
	    bspool) < 0) {
		log_warn("%s: cannot build the delivery status notification: %s", m->id,
		    strerror(errno));
		return -1;
	}
	const char *kind = "success";	/* the gravest action, as bounce_build words it */
	for (size_t i = 0; i < n; i++)
		if (br[i].action == BOUNCE_FAILED)
			kind = "non-delivery";
		else if (br[i].action == BOUNCE_DELAYED && kind[0] == 's')
			kind = "delay";
	msg_log(m, "%s: sender %s notification: %s", m->id, kind, (*benv)->id);
	/* notify bounce / delay: the postmaster gets a copy, headers only. */
	unsigned want = kind[0] == 'n' ? CONF_NOTIFY_BOUNCE : kind[0] == 'd' ?
	    CONF_NOTIFY_DELAY : 0;
	if (d->conf->notify & want) {
		if (bounce_build_notice(d->queue, d->conf->hostname, d->conf->postmaster,
		    BOUNCE_NOTICE_COPY, m->env, br, n, (int64_t)time(NULL), &m->copy,
		    &m->copy_spool) < 0)
			log_warn("%s: cannot build the postmaster's copy: %s", m->id,
			    strerror(errno));
		else
			msg_log(m, "%s: postmaster copy of the %s notification: %s", m->id, kind,
			    m->copy->id);
	}
	return 0;
}

/*
 * soft_bounce: what would bounce (a 5xx, or the end of queue_lifetime) is
 * deferred instead and says so, with a 4.x.x code, as Postfix does.
 */
static void soften(struct job_rcpt *jr, int expired)
{
	char *text = NULL;

	if (jr->code / 100 == 5) {
		jr->code = 450;
		jr->dsn[0] = '4';
	}
	if (asprintf(&text, "%s; soft_bounce%s", jr->text ? jr->text : "",
	    expired ? ": queue_lifetime is over" : "") >= 0) {
		free(jr->text);
		jr->text = text;
	}
}

/* Every job of m is back: decide each recipient, write, then log the end. */
static void msg_finish(struct delivery_msg *m)
{
	struct delivery *d = m->d;
	const struct config *conf = d->conf;
	struct queue_envelope *env = m->env;
	double now = delivery_now();
	int64_t inow = (int64_t)now, new_due = -1;
	size_t decided = 0;

	for (size_t j = 0; j < m->njobs; j++)
		for (size_t i = 0; i < m->jobs[j]->nrcpts; i++)
			decided += m->jobs[j]->rcpts[i].code != JOB_UNDECIDED &&
			    m->jobs[j]->rcpts[i].code != JOB_MOVED;
	if (m->njobs > 0 && decided == 0) {	/* stopped before anything was decided */
		msg_flush_log(m);	/* failovers that happened still get their lines */
		msg_done(d, m);
		return;
	}
	/* Each recipient is reported at most once: failed, relayed or delayed. */
	struct bounce_rcpt *br = calloc(env->nrcpts ? env->nrcpts : 1, sizeof *br);
	size_t nbr = 0, nfailed = 0;

	for (size_t j = 0; j < m->njobs; j++) {
		struct delivery_job *job = m->jobs[j];
		for (size_t i = 0; i < job->nrcpts; i++) {
			struct job_rcpt *jr = &job->rcpts[i];
			struct queue_rcpt *r = &env->rcpts[jr->index];
			const char *status;
			if (jr->code == JOB_UNDECIDED || jr->code == JOB_MOVED)
				continue;	/* as it was (due at the next start), or another job's */
			job_rcpt_settle(jr);
			r->attempts++;
			r->last_attempt = inow;
			free(r->last_reply);
			r->last_reply = jr->text ? strdup(jr->text) : NULL;
			free(r->last_relay);
			r->last_relay = job->relay[0] && strcmp(job->relay, "none") != 0 ?
			    strdup(job->relay) : NULL;
			int expired = inow - env->arrival >= (int64_t)conf->queue_lifetime;
			if (conf->soft_bounce && jr->code / 100 != 2 &&
			    (jr->code / 100 == 5 || expired))
				soften(jr, expired);
			if (jr->code / 100 == 2) {
				r->state = QUEUE_RCPT_SENT;
				status = "sent";
			} else if (jr->code / 100 == 5) {
				r->state = QUEUE_RCPT_BOUNCED;
				status = "bounced";
			} else if (expired && !conf->soft_bounce) {
				r->state = QUEUE_RCPT_BOUNCED;
				status = "expired";
			} else {
				r->next_attempt = inow + backoff(conf, r->attempts);
				if (jr->retry_at > r->next_attempt)	/* quota windows */
					r->next_attempt = jr->retry_at;
				status = "deferred";
			}
			log_attempt(m, job, jr, status, now);
			if (r->state == QUEUE_RCPT_SENT && !job->dsn_passed && br &&
			    bounce_wanted(r->notify, BOUNCE_RELAYED)) {
				/* RFC 3461 §4.1: the upstream cannot report success; say so now. */
				br[nbr++] = (struct bounce_rcpt){ .rcpt = r,
				    .action = BOUNCE_RELAYED, .status = jr->dsn,
				    .remote_mta = job->mta[0] ? job->mta : NULL,
				    .diagnostic = r->last_reply,
				    .last_attempt = inow };
			}
			/* A bounce's own failures always count: they make a double bounce. */
			if (r->state == QUEUE_RCPT_BOUNCED && br &&
			    (bounce_wanted(r->notify, BOUNCE_FAILED) || env->sender[0] == '\0')) {
				struct bounce_rcpt *b = &br[nbr++];
				nfailed++;
				b->rcpt = r;
				b->status = jr->dsn;
				b->remote_mta = job->mta[0] && r->last_relay ? job->mta : NULL;
				b->diagnostic = r->last_relay ? r->last_reply : NULL;
				b->reason = status[0] == 'e' ? "delivery time expired (queue_lifetime)" :
				    r->last_relay ? NULL : r->last_reply;
				b->last_attempt = inow;
				b->hint = hint_for(conf, jr->dsn, jr->text);
			}
		}
	}
	for (size_t i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].state == QUEUE_RCPT_PENDING &&
		    (new_due < 0 || env->rcpts[i].next_attempt < new_due))
			new_due = env->rcpts[i].next_attempt;
	/* Delay warnings, once per recipient, when no failure report goes out now. */
	if (nfailed == 0 && conf->delay_warning && br &&
	    inow - env->arrival >= (int64_t)conf->delay_warning) {
		for (size_t i = 0; i < env->nrcpts; i++) {
			struct queue_rcpt *r = &env->rcpts[i];
			if (r->state != QUEUE_RCPT_PENDING || (r->flags & QUEUE_RCPT_WARNED) ||
			    !bounce_wanted(r->notify, BOUNCE_DELAYED) || nbr >= env->nrcpts)
				continue;
			r->flags |= QUEUE_RCPT_WARNED;
			br[nbr++] = (struct bounce_rcpt){ .rcpt = r, .action = BOUNCE_DELAYED,
			    .status = "4.4.7", .diagnostic = r->last_relay ? r->last_reply : NULL,
			    .reason = r->last_relay ? NULL : r->last_reply,
			    .last_attempt = r->last_attempt,
			    .hint = hint_for_reply(conf, r->last_reply) };
		}
	}
	struct queue_envelope *benv = NULL;
	struct queue_spool *bspool = NULL;
	make_report(d, m, br, nbr, &benv, &bspool);
	free(br);
	if (new_due < 0)
		msg_log(m, "%s: removed", m->id);
	m->env = NULL;		/* the queue owns it now */
	if (queue_update(d->queue, env, m->due, new_due, benv, bspool, update_done, m) < 0) {
		msg_flush_log(m);
		log_warn("%s: cannot record delivery results: out of memory", m->id);
		msg_done(d, m);
	}
}

void delivery_job_done(struct delivery_job *job)
{
	struct delivery_msg *m = job->msg;
	failover(m, job);
	if (--m->jobs_left == 0)
		msg_finish(m);
}
