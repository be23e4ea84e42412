/*
 * mx — MX resolution for direct delivery (interface in mx.h).  c-ares does
 * the DNS; its sockets and its one timer are libevent events on relayd's
 * loop (ARES_OPT_SOCK_STATE_CB), so nothing blocks.  This file adds the
 * mail rules: RFC 5321 §5.1 (no MX means the domain's own addresses),
 * RFC 7505 (null MX), preference order, and which failures are permanent.
 */
#include <ares.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "relayd/mx.h"

/* One server, tries 2: 2 s then 4 s (c-ares doubles each round), so a dead
 * server defers a lookup after 6 s, and a lost packet costs 2 s. */
#define MX_TIMEOUT_MS	2000
#define MX_TRIES	2

/* A socket c-ares asked us to watch. */
struct mx_watch {
	struct mx_watch *next;
	ares_socket_t fd;
	struct event *ev;
};

struct mx_resolver {
	struct event_base *base;
	ares_channel channel;
	struct event *timer;		/* c-ares' next timeout */
	struct mx_watch *watches;
	struct mx_query *queries;	/* not yet handed to done() nor cancelled */
};

enum { MX_FAMILY_V6, MX_FAMILY_V4, MX_FAMILIES };

/*
 * One family of one host.  AAAA and A are separate lookups because
 * ares_getaddrinfo(AF_UNSPEC) reports the status of whichever answer came
 * last: a timed-out A hidden behind an AAAA "no data" would read as "no
 * address", a permanent failure, where the truth is "try again later".
 */
struct mx_addr_lookup {
	struct mx_host *host;
	int status;			/* ARES_… */
	struct ares_addrinfo *ai;	/* with ARES_SUCCESS */
};

struct mx_host {
	struct mx_query *q;
	char name[256];
	unsigned pref;
	struct mx_addr_lookup lookup[MX_FAMILIES];
};

struct mx_query {
	struct mx_resolver *r;		/* NULL once unlinked from r->queries */
	struct mx_query *prev, *next;
	char domain[256];
	unsigned port;
	mx_done_fn *done;
	void *arg;
	struct event *finish;		/* runs done() from the loop */
	int cancelled;			/* done() will not run; freed by the last callback */
	int in_done;
	int pending;			/* c-ares callbacks still to come */
	struct mx_host *hosts;
	size_t nhosts;
	int implicit;
	enum mx_status status;
	struct mx_target *targets;
	size_t ntargets;
	char why[512];
};

/* What an admin reads for a failed lookup; ares_strerror() for the rest. */
static const struct {
	int status;
	const char *text;
} dns_errors[] = {
	{ ARES_ETIMEOUT, "DNS timeout" },
	{ ARES_ESERVFAIL, "DNS server failure" },
	{ ARES_EREFUSED, "DNS query refused" },
	{ ARES_ECONNREFUSED, "DNS server refused or unreachable" },
	{ ARES_ENOTFOUND, "no such domain" },
	{ ARES_ENODATA, "no address" },
	{ ARES_EBADNAME, "not a valid domain name" },
	{ ARES_ENOMEM, "out of memory" },
};

static const char *dns_error(int status)
{
	for (size_t i = 0; i < sizeof dns_errors / sizeof dns_errors[0]; i++)
		if (dns_errors[i].status == status)
			return dns_errors[i].text;
	return ares_strerror(status);
}

/* The name has no address (permanent), as opposed to a lookup that failed. */
static int addr_missing(int status)
{
	return status == ARES_ENOTFOUND || status == ARES_ENODATA || status == ARES_EBADNAME;
}

/* ---- c-ares on the libevent loop ---- */

/* Whenever c-ares may have changed its plans: its earliest timeout, or none. */
static void resolver_arm(struct mx_resolver *r)
{
	struct timeval tv, *t = ares_timeout(r->channel, NULL, &tv);

	if (t)
		evtimer_add(r->timer, t);
	else
		evtimer_del(r->timer);
}

static void watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mx_resolver *r = arg;

	/* May close this very socket (sock_state frees its watch): r only after. */
	ares_process_fd(r->channel, what & EV_READ ? fd : ARES_SOCKET_BAD,
	    what & EV_WRITE ? fd : ARES_SOCKET_BAD);
	resolver_arm(r);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mx_resolver *r = arg;
	(void)fd, (void)what;

	ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	resolver_arm(r);
}

/*
 * c-ares opens, changes or closes (0, 0) a socket; it calls this before
 * close(), so a reused descriptor never meets a stale event.  Without memory
 * for an event the socket goes unwatched and its queries end by timeout.
 */
static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct mx_resolver *r = data;
	struct mx_watch **p = &r->watches, *w;

	while (*p && (*p)->fd != fd)
		p = &(*p)->next;
	w = *p;
	if (w && w->ev) {
		event_free(w->ev);
		w->ev = NULL;
	}
	if (!readable && !writable) {
		if (w) {
			*p = w->next;
			free(w);
		}
		return;
	}
	if (!w) {
		if (!(w = calloc(1, sizeof *w)))
			return;
		w->fd = fd;
		w->next = r->watches;
		r->watches = w;
	}
	w->ev = event_new(r->base, fd, (short)((readable ? EV_READ : 0) |
	    (writable ? EV_WRITE : 0) | EV_PERSIST), watch_cb, r);
	if (w->ev)
		event_add(w->ev, NULL);
}

struct mx_resolver *mx_resolver_new(struct event_base *base, const char *server, char *err,
    size_t errlen)
{
	static char lookups[] = "b";	/* DNS only: no /etc/hosts for mail routing */
	struct ares_options opt = { 0 };
	struct mx_resolver *r;
	int rc;

	if (!(r = calloc(1, sizeof *r)) || !(r->timer = evtimer_new(base, timer_cb, r))) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->base = base;
	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		event_free(r->timer);
		free(r);
		return NULL;
	}
	opt.timeout = MX_TIMEOUT_MS;
	opt.tries = MX_TRIES;
	opt.lookups = lookups;
	opt.sock_state_cb = sock_state;
	opt.sock_state_cb_data = r;
	rc = ares_init_options(&r->channel, &opt, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
	    ARES_OPT_LOOKUPS | ARES_OPT_SOCK_STATE_CB);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		event_free(r->timer);
		free(r);
		ares_library_cleanup();
		return NULL;
	}
	if (server && *server &&
	    (rc = ares_set_servers_ports_csv(r->channel, server)) != ARES_SUCCESS) {
		snprintf(err, errlen, "DNS server %s: %s", server, ares_strerror(rc));
		mx_resolver_free(r);
		return NULL;
	}
	return r;
}

/* ---- queries ---- */

static void query_unlink(struct mx_query *q)
{
	if (!q->r)
		return;
	if (q->prev)
		q->prev->next = q->next;
	else
		q->r->queries = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->r = NULL;
	q->prev = q->next = NULL;
}

/* Only with no c-ares callback to come (q->pending == 0). */
static void query_free(struct mx_query *q)
{
	query_unlink(q);
	for (size_t i = 0; i < q->nhosts; i++)
		for (int f = 0; f < MX_FAMILIES; f++)
			if (q->hosts[i].lookup[f].ai)
				ares_freeaddrinfo(q->hosts[i].lookup[f].ai);
	free(q->hosts);
	free(q->targets);
	if (q->finish)
		event_free(q->finish);
	free(q);
}

/* A c-ares callback of a cancelled query: the last one frees it. */
static void query_release(struct mx_query *q)
{
	if (q->pending == 0)
		query_free(q);
}

/* Called with no c-ares callback to come; done() runs from the loop. */
__attribute__((format(printf, 3, 4)))
static void query_finish(struct mx_query *q, enum mx_status st, const char *fmt, ...)
{
	va_list ap;

	q->status = st;
	va_start(ap, fmt);
	vsnprintf(q->why, sizeof q->why, fmt, ap);
	va_end(ap);
	event_active(q->finish, EV_TIMEOUT, 0);
}

static void finish_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mx_query *q = arg;
	struct mx_result res = { q->targets, q->ntargets, q->implicit };
	(void)fd, (void)what;

	/* done() may free the resolver: q leaves it first and never looks back. */
	query_unlink(q);
	q->in_done = 1;
	q->done(q->arg, q->status, &res, q->why);
	query_free(q);
}

void mx_cancel(struct mx_query *q)
{
	if (!q || q->in_done)
		return;
	query_unlink(q);
	q->cancelled = 1;
	if (q->finish) {
		event_free(q->finish);
		q->finish = NULL;
	}
	query_release(q);
}

void mx_resolver_free(struct mx_resolver *r)
{
	if (!r)
		return;
	for (struct mx_query *q = r->queries; q; q = q->next)
		q->cancelled = 1;
	/* Every outstanding callback runs now with ARES_EDESTRUCTION and frees its query. */
	ares_destroy(r->channel);
	while (r->queries)
		query_free(r->queries);		/* finished, done() not yet run */
	while (r->watches) {			/* ares_destroy closed its sockets; in case */
		struct mx_watch *w = r->watches;
		r->watches = w->next;
		if (w->ev)
			event_free(w->ev);
		free(w);
	}
	event_free(r->timer);
	free(r);
	ares_library_cleanup();
}

/* ---- the addresses of the hosts ---- */

/* RFC 6724 rule 1 at the family level: is there a route to this address? */
static int routable(const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0), ok;

	if (fd < 0)
		return 0;
	ok = connect(fd, sa, len) == 0;		/* UDP: no packet leaves */
	close(fd);
	return ok;
}

static void set_port(struct sockaddr_storage *ss, unsigned port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
	    &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* Append one address of h unless it is listed already or the list is full. */
static void add_target(struct mx_query *q, const struct mx_host *h,
    const struct ares_addrinfo_node *n)
{
	struct mx_target *t = &q->targets[q->ntargets];

	if (q->ntargets == MX_TARGETS_MAX || (n->ai_family != AF_INET &&
	    n->ai_family != AF_INET6) || n->ai_addrlen > sizeof t->addr)
		return;
	memset(t, 0, sizeof *t);
	memcpy(&t->addr, n->ai_addr, n->ai_addrlen);
	t->addrlen = n->ai_addrlen;
	set_port(&t->addr, q->port);
	for (size_t i = 0; i < q->ntargets; i++)
		if (same_addr(&q->targets[i].addr, &t->addr))
			return;
	snprintf(t->host, sizeof t->host, "%s", h->name);
	t->pref = h->pref;
	q->ntargets++;
}

/* Add a note for the log, "; "-separated, silently cut at the buffer's end. */
__attribute__((format(printf, 2, 3)))
static void note(struct mx_query *q, const char *fmt, ...)
{
	size_t len = strlen(q->why);
	va_list ap;

	if (len + 3 >= sizeof q->why)
		return;
	if (len)
		len += (size_t)snprintf(q->why + len, sizeof q->why - len, "; ");
	va_start(ap, fmt);
	vsnprintf(q->why + len, sizeof q->why - len, fmt, ap);
	va_end(ap);
}

/* Every address lookup has answered: the targets, host after host. */
static void hosts_done(struct mx_query *q)
{
	int temporary = 0;

	q->why[0] = '\0';
	if (!(q->targets = calloc(MX_TARGETS_MAX, sizeof *q->targets))) {
		query_finish(q, MX_TEMPFAIL, "%s: out of memory", q->domain);
		return;
	}
	for (size_t i = 0; i < q->nhosts; i++) {
		struct mx_host *h = &q->hosts[i];
		struct mx_addr_lookup *v6 = &h->lookup[MX_FAMILY_V6], *v4 = &h->lookup[MX_FAMILY_V4];
		struct mx_addr_lookup *order[2] = { v6, v4 };
		int failure = 0;

		if (v6->ai && v6->ai->nodes && !routable(v6->ai->nodes->ai_addr,
		    v6->ai->nodes->ai_addrlen)) {
			order[0] = v4;
			order[1] = v6;
		}
		for (int k = 0; k < 2; k++) {
			if (order[k]->ai)
				for (struct ares_addrinfo_node *n = order[k]->ai->nodes; n;
				    n = n->ai_next)
					add_target(q, h, n);
			else if (!addr_missing(order[k]->status))
				failure = order[k]->status;
		}
		if ((v6->ai && v6->ai->nodes) || (v4->ai && v4->ai->nodes))
			continue;
		if (failure)
			temporary = 1;
		note(q, "%s: %s%s%s", h->name, q->implicit ? "no MX record, " : "",
		    failure && q->implicit ? "address lookup: " : "",
		    failure ? dns_error(failure) : "no address");
	}
	if (q->ntargets)
		q->status = MX_OK;
	else
		q->status = temporary ? MX_TEMPFAIL : MX_NOHOST;
	event_active(q->finish, EV_TIMEOUT, 0);
}

static void addr_reply(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct mx_addr_lookup *l = arg;
	struct mx_query *q = l->host->q;
	(void)timeouts;

	q->pending--;
	if (q->cancelled) {
		if (ai)
			ares_freeaddrinfo(ai);
		query_release(q);
		return;
	}
	l->status = status;
	if (status == ARES_SUCCESS && ai)
		l->ai = ai;
	else if (ai)
		ares_freeaddrinfo(ai);
	if (q->pending == 0)
		hosts_done(q);
}

/* Look up the AAAA and A of every host in q->hosts, all at once. */
static void lookup_hosts(struct mx_query *q)
{
	static const int families[MX_FAMILIES] = { AF_INET6, AF_INET };
	char fqdn[258];

	/* Held, since c-ares may answer (a numeric name, no memory) before it returns. */
	q->pending++;
	for (size_t i = 0; i < q->nhosts; i++) {
		struct mx_host *h = &q->hosts[i];

		h->q = q;
		/* The trailing dot: never the resolv.conf search list, never /etc/hosts' names. */
		snprintf(fqdn, sizeof fqdn, "%s.", h->name);
		for (int f = 0; f < MX_FAMILIES; f++) {
			struct ares_addrinfo_hints hints = { 0 };

			h->lookup[f].host = h;
			hints.ai_family = families[f];
			hints.ai_socktype = SOCK_STREAM;
			hints.ai_protocol = IPPROTO_TCP;
			q->pending++;
			ares_getaddrinfo(q->r->channel, fqdn, NULL, &hints, addr_reply, &h->lookup[f]);
		}
	}
	if (--q->pending == 0)
		hosts_done(q);
}

/* ---- the MX records ---- */

static int by_pref(const void *a, const void *b)
{
	const struct mx_host *x = a, *y = b;
	return x->pref < y->pref ? -1 : x->pref > y->pref;
}

/* Sort by preference, shuffle each run of equal preference (RFC 5321 §5.1). */
static void order_hosts(struct mx_host *h, size_t n)
{
	qsort(h, n, sizeof *h, by_pref);
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && h[j].pref == h[i].pref; j++)
			;
		for (size_t k = j - 1; k > i; k--) {
			size_t m = i + arc4random_uniform((uint32_t)(k - i + 1));
			struct mx_host tmp = h[k];
			h[k] = h[m];
			h[m] = tmp;
		}
	}
}

/* No MX record: the domain itself is the one host, preference 0 (§5.1). */
static void implicit_mx(struct mx_query *q)
{
	if (!(q->hosts = calloc(1, sizeof *q->hosts))) {
		query_finish(q, MX_TEMPFAIL, "%s: out of memory", q->domain);
		return;
	}
	q->nhosts = 1;
	q->implicit = 1;
	snprintf(q->hosts[0].name, sizeof q->hosts[0].name, "%s", q->domain);
	lookup_hosts(q);
}

static void mx_answer(struct mx_query *q, unsigned char *abuf, int alen)
{
	struct ares_mx_reply *mx = NULL;
	size_t n = 0, nnull = 0;
	int rc = ares_parse_mx_reply(abuf, alen, &mx);

	if (rc == ARES_ENODATA) {	/* an answer without MX, e.g. a lone CNAME */
		implicit_mx(q);
		return;
	}
	if (rc != ARES_SUCCESS) {
		query_finish(q, MX_TEMPFAIL, "%s MX: %s", q->domain, dns_error(rc));
		return;
	}
	for (struct ares_mx_reply *m = mx; m; m = m->next)
		n++;
	if (!(q->hosts = calloc(n ? n : 1, sizeof *q->hosts))) {
		ares_free_data(mx);
		query_finish(q, MX_TEMPFAIL, "%s: out of memory", q->domain);
		return;
	}
	for (struct ares_mx_reply *m = mx; m; m = m->next) {
		struct mx_host *h = &q->hosts[q->nhosts];

		/* c-ares spells the root "." as "": RFC 7505's null MX. */
		if (!m->host[0] || strcmp(m->host, ".") == 0) {
			nnull++;
			continue;
		}
		if ((size_t)snprintf(h->name, sizeof h->name, "%s", m->host) >= sizeof h->name)
			continue;
		h->pref = m->priority;
		q->nhosts++;
	}
	ares_free_data(mx);
	if (q->nhosts == 0) {
		if (nnull)
			query_finish(q, MX_NULL, "%s: null MX, the domain accepts no mail",
			    q->domain);
		else
			query_finish(q, MX_NOHOST, "%s: no usable MX host name", q->domain);
		return;
	}
	/* A null MX among others is a mistake of the domain's: the others count. */
	order_hosts(q->hosts, q->nhosts);
	n = 0;
	for (size_t i = 0; i < q->nhosts && n < MX_HOSTS_MAX; i++) {
		size_t k;
		for (k = 0; k < n && strcasecmp(q->hosts[k].name, q->hosts[i].name) != 0; k++)
			;
		if (k == n)
			q->hosts[n++] = q->hosts[i];
	}
	q->nhosts = n;
	lookup_hosts(q);
}

static void mx_reply(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct mx_query *q = arg;
	(void)timeouts;

	q->pending--;
	if (q->cancelled) {		/* ARES_EDESTRUCTION too: no new query then */
		query_release(q);
		return;
	}
	switch (status) {
	case ARES_SUCCESS:
		mx_answer(q, abuf, alen);
		break;
	case ARES_ENODATA:		/* the name exists, without MX */
		implicit_mx(q);
		break;
	case ARES_ENOTFOUND:
	case ARES_EBADNAME:
		query_finish(q, MX_NXDOMAIN, "%s: %s", q->domain, dns_error(status));
		break;
	default:
		query_finish(q, MX_TEMPFAIL, "%s MX: %s", q->domain, dns_error(status));
		break;
	}
}

struct mx_query *mx_lookup(struct mx_resolver *r, const char *domain, unsigned port,
    mx_done_fn *done, void *arg)
{
	struct mx_query *q = calloc(1, sizeof *q);
	size_t len = strlen(domain);

	if (!q)
		return NULL;
	if (!(q->finish = event_new(r->base, -1, 0, finish_cb, q))) {
		free(q);
		return NULL;
	}
	q->r = r;
	q->next = r->queries;
	if (r->queries)
		r->queries->prev = q;
	r->queries = q;
	q->port = port;
	q->done = done;
	q->arg = arg;
	if (len && domain[len - 1] == '.')
		len--;				/* "example.com." is example.com */
	if (len == 0 || len > 253) {
		snprintf(q->domain, sizeof q->domain, "%.*s", (int)(len ? 253 : 0), domain);
		query_finish(q, MX_NXDOMAIN, "%s: %s", q->domain, dns_error(ARES_EBADNAME));
		return q;
	}
	memcpy(q->domain, domain, len);
	q->domain[len] = '\0';
	q->pending++;
	ares_query(r->channel, q->domain, C_IN, T_MX, mx_reply, q);
	resolver_arm(r);
	return q;
}
