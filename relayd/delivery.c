/*
 * delivery — the scheduler: due messages from the queue's schedule become
 * jobs for their upstreams; when every job of a message is back, the
 * recipients' new states (and any DSN they call for) are written in one
 * transaction, and only then logged as final.  A crash before that write
 * means the attempt is made again: nothing acknowledged is lost, and only
 * what was in flight can go out twice.
 */
#include "relayd/delivery.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/auth.h"
#include "relayd/bounce.h"
#include "relayd/log.h"
#include "relayd/tls.h"
#include "routes/routes.h"

#define ACTIVE_MAX 1000			/* messages in flight at once */
#define SCAN_MAX 256			/* messages taken per look at the schedule */

struct delivery_msg {
	struct delivery *d;
	struct queue_envelope *env;
	char id[QUEUE_ID_LEN + 1];
	int64_t due;			/* where the schedule holds it */
	struct delivery_job **jobs;
	size_t njobs;
	size_t jobs_left;
	char **lines;			/* its log lines, written once its results are */
	size_t nlines;
	struct delivery_msg *next;
};

/* A log line about m, held until m's results are in the queue. */
static void msg_log(struct delivery_msg *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void msg_log(struct delivery_msg *m, const char *fmt, ...)
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

double delivery_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- upstreams ----------------------------------------------------------- */

static SSL_CTX *client_ctx(const struct conf_upstream *u, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char why[256];

	if (!ctx) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, u->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	if (u->ca_file ? SSL_CTX_load_verify_locations(ctx, u->ca_file, NULL) != 1 :
	    SSL_CTX_set_default_verify_paths(ctx) != 1) {
		tls_errors(why, sizeof why);
		snprintf(err, errlen, "upstream %s: ca_file %s: %s", u->name,
		    u->ca_file ? u->ca_file : "(system store)", why);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static int upstream_init(struct upstream *up, const struct config *conf,
    const struct conf_upstream *u, char *err, size_t errlen)
{
	char why[512];

	memset(up, 0, sizeof *up);
	up->conf = u;
	if (u->tls != CONF_TLS_NONE && !(up->tls = client_ctx(u, why, sizeof why))) {
		snprintf(err, errlen, "%s:%d: %s", conf->path, u->line, why);
		return -1;
	}
	if (u->password_file && !(up->password = auth_read_secret(u->password_file, why,
	    sizeof why))) {
		snprintf(err, errlen, "%s:%d: upstream %s: password_file %s", conf->path, u->line,
		    u->name, why);
		return -1;
	}
	return 0;
}

static void upstream_clear(struct upstream *up)
{
	SSL_CTX_free(up->tls);
	if (up->password) {
		explicit_bzero(up->password, strlen(up->password));
		free(up->password);
	}
}

int delivery_check(const struct config *conf, char *err, size_t errlen)
{
	for (size_t i = 0; i < conf->nupstreams; i++) {
		struct upstream up;
		int rc = upstream_init(&up, conf, &conf->upstreams[i], err, errlen);
		upstream_clear(&up);
		if (rc < 0)
			return -1;
	}
	return 0;
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

static void upstream_submit(struct upstream *up, struct delivery_job *job)
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
	if (up->nconn < up->conf->max_connections && smtp_client_open(up) < 0)
		log_warn("upstream %s: cannot open a connection: out of memory", up->conf->name);
}

void upstream_slot_free(struct upstream *up)
{
	if (up->wait_head && !up->d->stopping && up->nconn < up->conf->max_connections &&
	    smtp_client_open(up) < 0)
		log_warn("upstream %s: cannot open a connection: out of memory", up->conf->name);
}

void upstream_failed(struct upstream *up, int code, const char *dsn, const char *why,
    const char *relay)
{
	struct delivery_job *job;
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

/* ---- results ------------------------------------------------------------- */

static void job_free(struct delivery_job *job)
{
	for (size_t i = 0; i < job->nrcpts; i++)
		free(job->rcpts[i].text);
	free(job->rcpts);
	free(job);
}

static void msg_free(struct delivery_msg *m)
{
	for (size_t i = 0; i < m->njobs; i++)
		job_free(m->jobs[i]);
	free(m->jobs);
	for (size_t i = 0; i < m->nlines; i++)
		free(m->lines[i]);
	free(m->lines);
	queue_envelope_free(m->env);
	free(m);
}

static void msg_unlink(struct delivery *d, struct delivery_msg *m)
{
	for (struct delivery_msg **p = &d->active; *p; p = &(*p)->next)
		if (*p == m) {
			*p = m->next;
			d->nactive--;
			return;
		}
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

static void log_attempt(struct delivery_msg *m, const struct delivery_job *job,
    const struct job_rcpt *jr, const char *status, double now)
{
	const struct queue_envelope *env = m->env;
	char reply[2048], addr[600];
	double arrival = (double)env->arrival;
	double a = job->t_created - arrival, b = job->t_assigned - job->t_created;
	double c = job->t_ready > job->t_assigned ? job->t_ready - job->t_assigned :
	    job->t_done - job->t_assigned, d = job->t_ready > 0 && job->t_done > job->t_ready ?
	    job->t_done - job->t_ready : 0;

	msg_log(m, "%s: to=<%s>, relay=%s, upstream=%s, delay=%.2g, delays=%.2g/%.2g/%.2g/%.2g, "
	    "dsn=%s, status=%s (%s)", m->id,
	    log_escape(addr, sizeof addr, env->rcpts[jr->index].addr,
	    strlen(env->rcpts[jr->index].addr)),
	    job->relay[0] ? job->relay : "none", job->up ? job->up->conf->name : "none",
	    now - arrival, a < 0 ? 0 : a, b < 0 ? 0 : b, c < 0 ? 0 : c, d, jr->dsn, status,
	    one_line(jr->text, reply, sizeof reply));
}

/* m is out of flight; when stopping, the last one says so. */
static void msg_done(struct delivery *d, struct delivery_msg *m)
{
	msg_unlink(d, m);
	msg_free(m);
	if (!d->stopping)
		delivery_kick(d);
	else if (d->nactive == 0 && d->stopped) {
		void (*stopped)(void *) = d->stopped;
		d->stopped = NULL;
		stopped(d->stopped_arg);
	}
}

static void update_done(void *arg, enum queue_status status)
{
	struct delivery_msg *m = arg;

	msg_flush_log(m);	/* the attempt happened, recorded or not */
	if (status != QUEUE_OK)
		log_warn("%s: cannot record delivery results (queue %s): the attempt will be "
		    "repeated", m->id, status == QUEUE_FULL ? "full" : "error");
	msg_done(m->d, m);
}

/* A report about br[0..n) to the sender; NULL env when none is due. */
static int make_report(struct delivery *d, struct delivery_msg *m, struct bounce_rcpt *br,
    size_t n, struct queue_envelope **benv, struct queue_spool **bspool)
{
	if (n == 0 || m->env->sender[0] == '\0')
		return 0;
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
	return 0;
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
			decided += m->jobs[j]->rcpts[i].code != JOB_UNDECIDED;
	if (m->njobs > 0 && decided == 0) {	/* stopped before anything happened */
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
			if (jr->code == JOB_UNDECIDED)
				continue;	/* as it was: due again at the next start */
			if (!jr->code) {
				jr->code = 451;
				snprintf(jr->dsn, sizeof jr->dsn, "4.4.0");
				free(jr->text);
				jr->text = strdup("no answer for this recipient");
			}
			r->attempts++;
			r->last_attempt = inow;
			free(r->last_reply);
			r->last_reply = jr->text ? strdup(jr->text) : NULL;
			free(r->last_relay);
			r->last_relay = job->relay[0] && strcmp(job->relay, "none") ?
			    strdup(job->relay) : NULL;
			if (jr->code / 100 == 2) {
				r->state = QUEUE_RCPT_SENT;
				status = "sent";
			} else if (jr->code / 100 == 5) {
				r->state = QUEUE_RCPT_BOUNCED;
				status = "bounced";
			} else if (inow - env->arrival >= (int64_t)conf->queue_lifetime) {
				r->state = QUEUE_RCPT_BOUNCED;
				status = "expired";
			} else {
				r->next_attempt = inow + backoff(conf, r->attempts);
				status = "deferred";
			}
			log_attempt(m, job, jr, status, now);
			if (r->state == QUEUE_RCPT_SENT && !job->dsn_passed && br &&
			    bounce_wanted(r->notify, BOUNCE_RELAYED)) {
				/* RFC 3461 §4.1: the upstream cannot report success; say so now. */
				br[nbr++] = (struct bounce_rcpt){ .rcpt = r,
				    .action = BOUNCE_RELAYED, .status = jr->dsn,
				    .remote_mta = job->up->conf->host, .diagnostic = r->last_reply,
				    .last_attempt = inow };
			}
			if (r->state == QUEUE_RCPT_BOUNCED && br &&
			    bounce_wanted(r->notify, BOUNCE_FAILED)) {
				struct bounce_rcpt *b = &br[nbr++];
				nfailed++;
				int expired = status[0] == 'e';
				b->rcpt = r;
				b->status = jr->dsn;
				b->remote_mta = job->up && r->last_relay ? job->up->conf->host : NULL;
				b->diagnostic = r->last_relay ? r->last_reply : NULL;
				b->reason = expired ? "delivery time expired (queue_lifetime)" :
				    r->last_relay ? NULL : r->last_reply;
				b->last_attempt = inow;
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
			    .last_attempt = r->last_attempt };
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
	if (--m->jobs_left == 0)
		msg_finish(m);
}

/* ---- scheduling ---------------------------------------------------------- */

static int is_active(const struct delivery *d, const char *id)
{
	for (const struct delivery_msg *m = d->active; m; m = m->next)
		if (strcmp(m->id, id) == 0)
			return 1;
	return 0;
}

struct due_list {
	struct delivery *d;
	char ids[SCAN_MAX][QUEUE_ID_LEN + 1];
	int64_t due[SCAN_MAX];
	size_t n, room;
};

static int collect(void *arg, const char *id, int64_t due)
{
	struct due_list *l = arg;
	if (is_active(l->d, id))
		return 0;
	memcpy(l->ids[l->n], id, QUEUE_ID_LEN + 1);
	l->due[l->n] = due;
	return ++l->n >= l->room;
}

static struct delivery_job *job_for(struct delivery_msg *m, struct upstream *up)
{
	for (size_t i = 0; i < m->njobs; i++)
		if (m->jobs[i]->up == up)
			return m->jobs[i];
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
	struct upstream none = { 0 };
	for (size_t i = 0; i < m->env->nrcpts; i++) {
		const struct queue_rcpt *r = &m->env->rcpts[i];
		if (r->state != QUEUE_RCPT_PENDING)
			continue;
		const struct conf_route *route = routes_find(d->conf, r->addr);
		struct delivery_job *job = job_for(m, route ? &d->upstreams[route->upstreams[0]] :
		    &none);
		if (!job) {
			msg_free(m);
			return -1;
		}
		struct job_rcpt *jr = &job->rcpts[job->nrcpts++];
		jr->index = i;
		if (!route) {
			jr->code = 451;
			snprintf(jr->dsn, sizeof jr->dsn, "4.3.5");
			jr->text = strdup("no route for this domain in relayd.conf");
		}
	}
	m->next = d->active;
	d->active = m;
	d->nactive++;
	m->jobs_left = m->njobs;
	if (m->njobs == 0) {	/* nothing pending: only the schedule entry is left */
		m->jobs_left = 1;
		struct delivery_job fake = { .msg = m };
		delivery_job_done(&fake);
		return 0;
	}
	/* Unroutable recipients are done at once; the others wait for their upstream. */
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
	for (size_t i = 0; i < l->n; i++)
		start_message(d, l->ids[i], l->due[i]);
	/* More due than taken: look again soon; else at the next due time. */
	schedule(d, l->n == l->room && l->room > 0 ? (int64_t)time(NULL) : next);
	free(l);
}

static void cut_off(struct delivery *d)
{
	for (size_t i = 0; i < d->nupstreams; i++)
		smtp_client_stop(&d->upstreams[i], 1);
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

	if (!d || (conf->nupstreams && !(d->upstreams = calloc(conf->nupstreams,
	    sizeof *d->upstreams)))) {
		free(d);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->conf = conf;
	d->base = base;
	for (size_t i = 0; i < conf->nupstreams; i++, d->nupstreams++) {
		if (upstream_init(&d->upstreams[i], conf, &conf->upstreams[i], err, errlen) < 0) {
			upstream_clear(&d->upstreams[i]);
			delivery_free(d);
			return NULL;
		}
		d->upstreams[i].d = d;
	}
	return d;
}

int delivery_start(struct delivery *d, struct queue *q)
{
	d->queue = q;
	d->dns = evdns_base_new(d->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (!d->dns)
		d->dns = evdns_base_new(d->base, 0);	/* no resolv.conf: /etc/hosts and literals */
	d->timer = evtimer_new(d->base, timer_cb, d);
	if (!d->dns || !d->timer)
		return -1;
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
		if (d->timer)
			evtimer_add(d->timer, &grace);
		for (size_t i = 0; i < d->nupstreams; i++) {
			struct upstream *up = &d->upstreams[i];
			struct delivery_job *job;
			while ((job = upstream_next_job(up))) {
				for (size_t j = 0; j < job->nrcpts; j++)
					if (!job->rcpts[j].code)
						job->rcpts[j].code = JOB_UNDECIDED;
				delivery_job_done(job);
			}
			smtp_client_stop(up, 0);
		}
	}
	if (now)
		cut_off(d);
	if (d->nactive == 0 && d->stopped) {
		d->stopped = NULL;
		stopped(arg);
	}
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
		d->active = m->next;
		msg_free(m);
	}
	for (size_t i = 0; i < d->nupstreams; i++) {
		smtp_client_free_all(&d->upstreams[i]);
		upstream_clear(&d->upstreams[i]);
	}
	free(d->upstreams);
	if (d->timer)
		event_free(d->timer);
	if (d->dns)
		evdns_base_free(d->dns, 1);
	free(d);
}
