/*
 * routes — which `route` or `route_sender` statement a message's recipient
 * falls under.  Domains compare in A-label form without regard to case (RFC
 * 5321 §2.4), a trailing dot ignored; a sender address as a whole, also
 * without case.
 */
#include "routes/routes.h"

#include <string.h>
#include <strings.h>

/* 2: exact domain, 1: under a .parent pattern (*len: its length), 0: no. */
static int domain_match(const char *pattern, const char *domain, size_t dlen, size_t *len)
{
	size_t plen = strlen(pattern);

	if (pattern[0] != '.')
		return plen == dlen && strncasecmp(pattern, domain, dlen) == 0 ? 2 : 0;
	if (dlen > plen && strncasecmp(domain + dlen - plen, pattern, plen) == 0) {
		*len = plen;
		return 1;
	}
	return 0;
}

/* The best route of one kind for addr: an exact address (senders), an exact domain,
 * then the longest .parent; `*` into *star.  Domains compare in A-label form. */
static const struct conf_route *best(const struct config *conf, int sender, const char *addr,
    const struct conf_route **star)
{
	char ascii_addr[1024];
	size_t dlen, best_len = 0, len = 0;
	const struct conf_route *exact = NULL, *parent = NULL;

	routes_address_ascii(addr, ascii_addr, sizeof ascii_addr);	/* "" when too long */
	const char *at = strrchr(ascii_addr, '@'), *domain = at ? at + 1 : "";
	dlen = strlen(domain);
	for (size_t i = 0; i < conf->nroutes; i++) {
		const struct conf_route *r = &conf->routes[i];
		if (r->sender != sender)
			continue;
		if (strcmp(r->pattern, "*") == 0) {
			*star = r;
		} else if (strchr(r->pattern, '@')) {
			if (strcasecmp(r->pattern, ascii_addr) == 0)
				return r;
		} else {
			int m = domain_match(r->pattern, domain, dlen, &len);
			if (m == 2 && !exact)
				exact = r;
			else if (m == 1 && len > best_len) {
				parent = r;
				best_len = len;
			}
		}
	}
	return exact ? exact : parent;
}

const struct conf_route *routes_find(const struct config *conf, const char *rcpt,
    const char *sender)
{
	const struct conf_route *star = NULL, *r;

	if ((r = best(conf, 0, rcpt, &star)))
		return r;
	if (sender && sender[0] && (r = best(conf, 1, sender, &star)))
		return r;
	return star;
}
