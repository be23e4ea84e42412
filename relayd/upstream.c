/*
 * upstream — the run-time side of the `upstream` blocks: a TLS client
 * context and the password for each, made at start (as root) and again at
 * each reload; the sets a reload replaced stay until relayd ends, since
 * messages in flight still use them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "relayd/delivery_internal.h"
#include "relayd/log.h"
#include "relayd/tls.h"
#include "routes/routes.h"

static SSL_CTX *client_ctx(const struct conf_upstream *u, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char why[256];

	if (!ctx) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* tls may is opportunistic (RFC 7435): any certificate is better than plaintext. */
	SSL_CTX_set_verify(ctx, u->verify && u->tls != CONF_TLS_MAY ? SSL_VERIFY_PEER :
	    SSL_VERIFY_NONE, NULL);
	if (!u->verify || u->tls == CONF_TLS_MAY)
		return ctx;	/* never verified: no CA store (it costs about a megabyte) */
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

/* The password read at start for the same file, when it cannot be read any more. */
static const char *earlier_password(const struct upstream *old, size_t nold, const char *file)
{
	for (size_t i = 0; i < nold; i++)
		if (old[i].password && old[i].conf->password_file &&
		    strcmp(old[i].conf->password_file, file) == 0)
			return old[i].password;
	return NULL;
}

static int upstream_init(struct upstream *up, const struct config *conf,
    const struct conf_upstream *u, const struct upstream *old, size_t nold, char *err,
    size_t errlen)
{
	char why[512];
	const char *kept;

	memset(up, 0, sizeof *up);
	up->conf = u;
	if (u->tls != CONF_TLS_NONE && !(up->tls = client_ctx(u, why, sizeof why))) {
		snprintf(err, errlen, "%s:%d: %s", conf->path, u->line, why);
		return -1;
	}
	if (!u->password_file || (up->password = auth_read_secret(u->password_file, why,
	    sizeof why)))
		return 0;
	if ((kept = earlier_password(old, nold, u->password_file))) {
		log_info("reload: upstream %s: password_file %s (keeping the password read "
		    "at start)", u->name, why);
		if ((up->password = strdup(kept)))
			return 0;
	}
	snprintf(err, errlen, "%s:%d: upstream %s: password_file %s", conf->path, u->line,
	    u->name, why);
	return -1;
}

static void upstream_clear(struct upstream *up)
{
	if (!up->parent)
		SSL_CTX_free(up->tls);	/* a child borrows its parent's */
	free(up->domain);
	if (up->password) {
		explicit_bzero(up->password, strlen(up->password));
		free(up->password);
	}
}

int delivery_check(const struct config *conf, char *err, size_t errlen)
{
	for (size_t i = 0; i < conf->nupstreams; i++) {
		struct upstream up;
		int rc = upstream_init(&up, conf, &conf->upstreams[i], NULL, 0, err, errlen);
		upstream_clear(&up);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static void child_free(struct upstream *child)
{
	smtp_client_free_all(child);
	upstream_clear(child);
	free(child);
}

void upstreams_free(struct upstream *ups, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct upstream *child;
		while ((child = ups[i].children)) {
			ups[i].children = child->next_child;
			child_free(child);
		}
		smtp_client_free_all(&ups[i]);
		upstream_clear(&ups[i]);
	}
	free(ups);
}

struct upstream *upstream_for(struct upstream *up, const char *rcpt)
{
	const char *at = strrchr(rcpt, '@');
	char domain[256];
	struct upstream *child;

	if (!up->conf->direct)
		return up;
	/* DNS knows A-labels: an SMTPUTF8 recipient's U-label domain is converted. */
	if (routes_domain_ascii(at ? at + 1 : "", domain, sizeof domain) < 0)
		snprintf(domain, sizeof domain, "%s", at ? at + 1 : "");
	for (child = up->children; child; child = child->next_child)
		if (strcmp(child->domain, domain) == 0)
			return child;
	if (!(child = calloc(1, sizeof *child)) || !(child->domain = strdup(domain))) {
		free(child);
		return NULL;
	}
	child->conf = up->conf;
	child->d = up->d;
	child->parent = up;
	child->tls = up->tls;
	child->next_child = up->children;
	up->children = child;
	return child;
}

/* A domain that was down is remembered this long after, so its hold-off can grow. */
#define DOWN_MEMORY 3600

/* Children nothing points to, with no connection, not (lately) down, go. */
static void sweep_one(struct upstream *up, void *arg)
{
	double now = delivery_monotonic();
	(void)arg;
	for (struct upstream **p = &up->children; *p; ) {
		struct upstream *child = *p;
		if (child->refs == 0 && child->nconn == 0 && !child->wait_head &&
		    (child->down_count == 0 || child->down_until + DOWN_MEMORY <= now)) {
			*p = child->next_child;
			child_free(child);
		} else {
			p = &child->next_child;
		}
	}
}

void upstreams_sweep(struct delivery *d)
{
	upstreams_each(d, sweep_one, NULL);
}

struct upstream *upstreams_new(struct delivery *d, const struct config *conf,
    const struct upstream *old, size_t nold, char *err, size_t errlen)
{
	struct upstream *ups = calloc(conf->nupstreams ? conf->nupstreams : 1, sizeof *ups);

	if (!ups) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < conf->nupstreams; i++) {
		if (upstream_init(&ups[i], conf, &conf->upstreams[i], old, nold, err, errlen) < 0) {
			upstreams_free(ups, i + 1);
			return NULL;
		}
		ups[i].d = d;
	}
	return ups;
}

/* fn on up, then on its children (fn may not free them). */
static void each_one(struct upstream *up, void (*fn)(struct upstream *, void *), void *arg)
{
	fn(up, arg);
	for (struct upstream *child = up->children; child; child = child->next_child)
		fn(child, arg);
}

void upstreams_each(struct delivery *d, void (*fn)(struct upstream *, void *), void *arg)
{
	for (size_t i = 0; i < d->nupstreams; i++)
		each_one(&d->upstreams[i], fn, arg);
	for (struct upstream_set *s = d->retired; s; s = s->older)
		for (size_t i = 0; i < s->n; i++)
			each_one(&s->ups[i], fn, arg);
}

/* Upstreams of older sets that pointed into s point past it. */
static void unlink_successors(struct delivery *d, const struct upstream_set *s)
{
	for (struct upstream_set *o = d->retired; o; o = o->older)
		for (size_t i = 0; i < o->n; i++) {
			struct upstream *up = &o->ups[i];
			while (up->successor && up->successor >= s->ups &&
			    up->successor < s->ups + s->n)
				up->successor = up->successor->successor;
		}
}

/* Jobs of newer messages whose quota reservation sits in s move it on. */
static void move_reservations(struct delivery *d, const struct upstream_set *s)
{
	for (struct delivery_msg *m = d->active; m; m = m->next)
		for (size_t j = 0; j < m->njobs; j++) {
			struct delivery_job *job = m->jobs[j];
			struct upstream *q = job->quota_up;
			if (!q || q < s->ups || q >= s->ups + s->n)
				continue;
			job->quota_up = q->successor;
			if (q->successor)
				q->successor->reserved += (unsigned)job->nrcpts;
		}
}

/* From the loop (never inside a connection's callback): retired sets nothing uses go. */
void upstreams_gc(struct delivery *d)
{
	for (struct upstream_set **p = &d->retired; *p; ) {
		struct upstream_set *s = *p;
		if (s->refs > 0) {
			p = &s->older;
			continue;
		}
		*p = s->older;
		unlink_successors(d, s);
		move_reservations(d, s);
		upstreams_free(s->ups, s->n);
		free(s);
	}
}

void upstreams_release(struct delivery *d, struct upstream *ups)
{
	struct timeval now = { 0, 0 };

	if (ups == d->upstreams) {
		d->refs--;
		return;
	}
	for (struct upstream_set *s = d->retired; s; s = s->older)
		if (s->ups == ups && --s->refs == 0 && d->gc)
			evtimer_add(d->gc, &now);
}

int delivery_reload(struct delivery *d, const struct config *conf, char *err, size_t errlen)
{
	struct upstream_set *old = calloc(1, sizeof *old);
	struct upstream *ups = old ? upstreams_new(d, conf, d->upstreams, d->nupstreams, err,
	    errlen) : NULL;
	struct timeval now = { 0, 0 };

	if (!ups) {
		if (!old)
			snprintf(err, errlen, "out of memory");
		free(old);
		return -1;
	}
	/* Quotas go on where they were, under the same name. */
	for (size_t i = 0; i < conf->nupstreams; i++)
		for (size_t j = 0; j < d->nupstreams; j++)
			if (strcmp(d->upstreams[j].conf->name, ups[i].conf->name) == 0) {
				ups[i].quota = d->upstreams[j].quota;
				ups[i].quota_dirty = d->upstreams[j].quota_dirty;
				d->upstreams[j].successor = &ups[i];
			}
	old->ups = d->upstreams;
	old->n = d->nupstreams;
	old->refs = d->refs;
	old->older = d->retired;
	d->retired = old;
	d->upstreams = ups;
	d->nupstreams = conf->nupstreams;
	d->refs = 0;
	d->conf = conf;
	quota_load_new(d);	/* a name not seen before: its counts from the queue */
	if (old->refs == 0 && d->gc)
		evtimer_add(d->gc, &now);
	delivery_kick(d);	/* mail waiting for a route may have one now */
	return 0;
}
