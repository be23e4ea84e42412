/*
 * client_resolve — where a connection to an upstream may go, in the order
 * to try: the addresses of its host (libevent's resolver), or for `direct`
 * the MX hosts of the destination domain (mx.c, on c-ares), each with its
 * addresses.  The answer always comes from the event loop, never from
 * inside resolve_targets(), so callers need not guard against re-entry.
 */
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relayd/client_resolve.h"
#include "relayd/delivery.h"
#include "relayd/mx.h"

struct resolve_req {
	struct upstream *up;
	resolve_done_fn *done;
	void *arg;
	struct evdns_getaddrinfo_request *dns;	/* host lookup in progress */
	struct mx_query *mx;			/* MX lookup in progress */
	struct event *later;			/* hands an early answer to the loop */
	int code;				/* the answer, kept for `later` */
	char dsn[16], why[300];
	struct client_target *targets;
	size_t ntargets;
	int cancelled;
};

static void finish(struct resolve_req *r)
{
	resolve_done_fn *done = r->done;
	void *arg = r->arg;
	struct client_target *t = r->targets;
	size_t n = r->ntargets;
	int code = r->code;
	char dsn[16], why[300];

	snprintf(dsn, sizeof dsn, "%s", r->dsn);
	snprintf(why, sizeof why, "%s", r->why);
	if (r->later)
		event_free(r->later);
	free(r);
	done(arg, code, dsn, why, t, n);
	free(t);
}

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	finish(arg);
}

/* The answer is ready: on to the caller, from the loop. */
/* The answer, handed on from the loop (event_active() cannot fail). */
static void answer_soon(struct resolve_req *r, int code, const char *dsn, const char *why)
{
	r->code = code;
	snprintf(r->dsn, sizeof r->dsn, "%s", dsn);
	snprintf(r->why, sizeof r->why, "%s", why);
	r->dns = NULL;
	r->mx = NULL;
	event_active(r->later, EV_TIMEOUT, 1);
}

/* From a resolver's callback: r may have been cancelled meanwhile. */
static void answer(struct resolve_req *r, int code, const char *dsn, const char *why)
{
	if (r->cancelled) {
		free(r->targets);
		event_free(r->later);
		free(r);
		return;
	}
	answer_soon(r, code, dsn, why);
}

static void host_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct resolve_req *r = arg;
	char why[300];
	size_t n = 0;

	for (struct evutil_addrinfo *a = res; a; a = a->ai_next)
		n++;
	if (result == 0 && n > 0 && (r->targets = calloc(n, sizeof *r->targets))) {
		for (struct evutil_addrinfo *a = res; a; a = a->ai_next) {
			struct client_target *t = &r->targets[r->ntargets];
			if (a->ai_addrlen > sizeof t->addr)
				continue;
			snprintf(t->host, sizeof t->host, "%s", r->up->conf->host);
			memcpy(&t->addr, a->ai_addr, a->ai_addrlen);
			t->addrlen = (socklen_t)a->ai_addrlen;
			r->ntargets++;
		}
	}
	if (res)
		evutil_freeaddrinfo(res);
	if (r->ntargets > 0) {
		answer(r, 0, "", "");
		return;
	}
	/*
	 * evdns reports every DNS failure but NXDOMAIN — a timeout, SERVFAIL — as
	 * EAI_FAIL, whose words ("non-recoverable failure") would send an admin
	 * after a permanent problem when the DNS server is merely not answering.
	 */
	snprintf(why, sizeof why, "cannot resolve %s: %s", r->up->conf->host,
	    result == EVUTIL_EAI_CANCEL ? "cancelled" :
	    result == EVUTIL_EAI_FAIL ? "no answer from DNS (timeout or server failure)" :
	    result ? evutil_gai_strerror(result) : "out of memory");
	answer(r, 451, "4.4.3", why);
}

static void mx_resolved(void *arg, enum mx_status st, const struct mx_result *res,
    const char *why)
{
	struct resolve_req *r = arg;
	char text[300];

	switch (st) {
	case MX_OK:
		if ((r->targets = calloc(res->ntargets ? res->ntargets : 1, sizeof *r->targets))) {
			for (size_t i = 0; i < res->ntargets; i++) {
				struct client_target *t = &r->targets[i];
				snprintf(t->host, sizeof t->host, "%s", res->targets[i].host);
				memcpy(&t->addr, &res->targets[i].addr, res->targets[i].addrlen);
				t->addrlen = res->targets[i].addrlen;
			}
			r->ntargets = res->ntargets;
			answer(r, 0, "", "");
		} else {
			answer(r, 451, "4.3.0", "out of memory");
		}
		return;
	case MX_NULL:
		snprintf(text, sizeof text, "%s accepts no mail (null MX, RFC 7505)", r->up->domain);
		answer(r, 556, "5.1.10", text);
		return;
	case MX_NXDOMAIN:
		snprintf(text, sizeof text, "domain %s does not exist (DNS: %s)", r->up->domain,
		    why ? why : "NXDOMAIN");
		answer(r, 550, "5.1.2", text);
		return;
	case MX_NOHOST:
		snprintf(text, sizeof text, "no address for the mail hosts of %s: %s",
		    r->up->domain, why ? why : "");
		answer(r, 550, "5.4.4", text);
		return;
	case MX_TEMPFAIL:
	default:
		snprintf(text, sizeof text, "cannot look up the MX of %s: %s", r->up->domain,
		    why ? why : "DNS failure");
		answer(r, 451, "4.4.3", text);
		return;
	}
}

struct resolve_req *resolve_targets(struct upstream *up, resolve_done_fn *done, void *arg)
{
	struct delivery *d = up->d;
	struct resolve_req *r = calloc(1, sizeof *r);

	if (!r)
		return NULL;
	r->up = up;
	r->done = done;
	r->arg = arg;
	if (!(r->later = evtimer_new(d->base, later_cb, r))) {
		free(r);
		return NULL;
	}
	if (up->parent) {	/* a direct child: its domain's MX hosts */
		char err[256], why[300];
		if (!d->mx && !(d->mx = mx_resolver_new(d->base, d->conf->resolver, err,
		    sizeof err))) {
			snprintf(why, sizeof why, "direct delivery: no DNS resolver: %s", err);
			answer_soon(r, 451, "4.3.5", why);
			return r;
		}
		r->mx = mx_lookup(d->mx, up->domain, up->conf->port, mx_resolved, r);
		if (!r->mx)
			answer_soon(r, 451, "4.3.0", "out of memory");
		return r;
	}
	if (up->conf->direct || !up->conf->host) {	/* never the local machine by mistake */
		answer_soon(r, 451, "4.3.0", "direct delivery without a destination domain");
		return r;
	}
	struct evutil_addrinfo hints = { 0 };
	char port[8];
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	snprintf(port, sizeof port, "%u", up->conf->port);
	/* The callback may run before this returns (a literal, /etc/hosts): answer() defers. */
	struct evdns_getaddrinfo_request *req = evdns_getaddrinfo(d->dns, up->conf->host, port,
	    &hints, host_resolved, r);
	if (req && !r->code && !r->ntargets && !evtimer_pending(r->later, NULL))
		r->dns = req;
	return r;
}

void resolve_cancel(struct resolve_req *r)
{
	if (!r)
		return;
	if (r->later && evtimer_pending(r->later, NULL)) {	/* answered, not yet handed on */
		event_free(r->later);
		free(r->targets);
		free(r);
		return;
	}
	if (r->mx) {
		mx_cancel(r->mx);	/* its callback will not run */
		event_free(r->later);
		free(r);
		return;
	}
	/* evdns: cancelling calls host_resolved with EVUTIL_EAI_CANCEL; it frees r. */
	r->cancelled = 1;
	if (r->dns)
		evdns_getaddrinfo_cancel(r->dns);
}
