/*
 * routes — which `route` statement a recipient's domain falls under.  Domains
 * compare without regard to case (RFC 5321 §2.4), a trailing dot ignored.
 */
#include "routes/routes.h"

#include <string.h>
#include <strings.h>

const struct conf_route *routes_find(const struct config *conf, const char *rcpt)
{
	const char *at = strrchr(rcpt, '@');
	const char *domain = at ? at + 1 : "";
	size_t dlen = strlen(domain);
	const struct conf_route *best = NULL, *star = NULL;
	size_t best_len = 0;

	if (dlen > 0 && domain[dlen - 1] == '.')
		dlen--;
	for (size_t i = 0; i < conf->nroutes; i++) {
		const struct conf_route *r = &conf->routes[i];
		size_t plen = strlen(r->pattern);
		if (strcmp(r->pattern, "*") == 0) {
			star = r;
		} else if (r->pattern[0] != '.') {
			if (plen == dlen && strncasecmp(r->pattern, domain, dlen) == 0)
				return r;
		} else if (dlen > plen && strncasecmp(domain + dlen - plen, r->pattern, plen) == 0 &&
		    plen > best_len) {
			best = r;
			best_len = plen;
		}
	}
	return best ? best : star;
}
