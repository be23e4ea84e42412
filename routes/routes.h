/*
 * routes — recipient → the upstreams that carry its mail, in order
 * (DESIGN.md, Modules).  Lookups read the config only: no I/O.
 */
#ifndef RELAYD_ROUTES_H
#define RELAYD_ROUTES_H

#include "conf/conf.h"

/*
 * The route for a recipient of a message from sender (as in Postfix: the
 * recipient's routes, then the sender's, then the default).  A recipient
 * route is its domain exactly, else the longest `.parent` pattern; a sender
 * route the address exactly, else its domain the same way; then `*`.  NULL
 * when none matches.  sender may be NULL or "" (the null sender).
 */
const struct conf_route *routes_find(const struct config *conf, const char *rcpt,
    const char *sender);

/*
 * domain as routes and DNS compare it: A-labels, lower case, no trailing
 * dot.  0, or -1 when it is not a valid IDN or does not fit out.
 */
int routes_domain_ascii(const char *domain, char *out, size_t outlen);

/*
 * addr ("local@domain") as routes compare it: the domain as
 * routes_domain_ascii() gives it, or as written when it is not a valid IDN;
 * the local part untouched.  An address without '@' is copied whole.  0, or
 * -1 (and out "") when it does not fit out.  Sender rules (auth/) take this
 * form too, so a U-label sender matches an A-label rule.
 */
int routes_address_ascii(const char *addr, char *out, size_t outlen);

#endif
