/*
 * mx — where mail for a domain goes when relayd delivers directly: the MX
 * records (RFC 5321 §5.1, RFC 7505 null MX), then each host's AAAA and A,
 * as one ordered list of addresses to try.  Asynchronous on relayd's
 * libevent loop through c-ares, since libevent's evdns cannot ask for MX.
 */
#ifndef RELAYD_MX_H
#define RELAYD_MX_H

#include <event2/event.h>
#include <stddef.h>
#include <sys/socket.h>

#define MX_TARGETS_MAX	20	/* addresses in one result */
#define MX_HOSTS_MAX	20	/* MX hosts looked up, best preferences first */

struct mx_resolver;

/*
 * A resolver on base.  server: "127.0.0.1:5353", "[::1]:53", "127.0.0.1"
 * (port 53), or NULL for the servers of /etc/resolv.conf.  NULL with err
 * when c-ares refuses the server or cannot start.
 */
struct mx_resolver *mx_resolver_new(struct event_base *base, const char *server, char *err,
    size_t errlen);
/* Cancels every query: their callbacks never run.  NULL is a no-op. */
void mx_resolver_free(struct mx_resolver *r);

enum mx_status {
	MX_OK,		/* targets found */
	MX_NULL,	/* RFC 7505 null MX ("MX 0 ."): the domain accepts no mail (5.1.10) */
	MX_NXDOMAIN,	/* the domain does not exist (5.1.2) */
	MX_NOHOST,	/* the MX hosts (or the implicit A/AAAA) have no address at all */
	MX_TEMPFAIL,	/* timeout, SERVFAIL, refused…: defer */
};

struct mx_target {			/* one address to try, in order */
	char host[256];			/* the MX host (the domain itself for an implicit MX) */
	unsigned pref;			/* its MX preference (0 for an implicit MX) */
	struct sockaddr_storage addr;	/* with the port already set */
	socklen_t addrlen;
};

struct mx_result {
	struct mx_target *targets;	/* NULL when ntargets is 0 */
	size_t ntargets;
	int implicit;			/* no MX records: the domain's own A/AAAA (§5.1) */
};

/*
 * res and why are valid during the call only.  why is a short text for the
 * log, never NULL: "mx1.example.test: no address", "example.test MX: DNS
 * timeout"; with MX_OK the hosts that were skipped, or "".
 */
typedef void mx_done_fn(void *arg, enum mx_status st, const struct mx_result *res,
    const char *why);

struct mx_query;

/*
 * Look up domain's MX, then each host's AAAA and A.  The targets come in
 * preference order, hosts of equal preference shuffled, each host's
 * addresses together (IPv6 first when this machine has an IPv6 route);
 * an address already listed is not repeated; port goes into every target.
 * The answer waits for every host's lookup, so a host whose DNS is dead
 * delays it by the resolver's timeout (6 s).  Nothing is cached here: the
 * system's recursive resolver does that.  done() runs later from the event
 * loop, never from inside mx_lookup, and may free the resolver.  NULL on
 * allocation failure.
 */
struct mx_query *mx_lookup(struct mx_resolver *r, const char *domain, unsigned port,
    mx_done_fn *done, void *arg);
/* done() will not run.  Safe until done() has begun; not from inside done(). */
void mx_cancel(struct mx_query *q);

#endif
