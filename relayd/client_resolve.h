/*
 * client_resolve — the addresses a connection to an upstream tries, in
 * order: its host's, or for a `direct` child its domain's MX hosts'.
 */
#ifndef RELAYD_CLIENT_RESOLVE_H
#define RELAYD_CLIENT_RESOLVE_H

#include <sys/socket.h>

struct upstream;

struct client_target {
	char host[256];			/* the name connected to: the upstream's host, an MX host */
	struct sockaddr_storage addr;	/* with the port */
	socklen_t addrlen;
};

/*
 * code 0: targets[0..n) to try in order (the callee frees them after done
 * returns: copy what you keep).  Otherwise the failure: code, enhanced
 * dsn and why, for every job waiting for the upstream (4xx: try later;
 * 5xx: the domain cannot receive mail — null MX, no such domain).
 */
typedef void resolve_done_fn(void *arg, int code, const char *dsn, const char *why,
    const struct client_target *targets, size_t n);

struct resolve_req;
/* Start; done() runs later from the event loop.  NULL without memory. */
struct resolve_req *resolve_targets(struct upstream *up, resolve_done_fn *done, void *arg);
/* Before done() has run: it never will. */
void resolve_cancel(struct resolve_req *r);

#endif
