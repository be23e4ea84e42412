/*
 * routes — recipient → the upstreams that carry its mail, in order
 * (DESIGN.md, Modules).  Lookups read the config only: no I/O.
 */
#ifndef RELAYD_ROUTES_H
#define RELAYD_ROUTES_H

#include "conf/conf.h"

/*
 * The route for a recipient address (its domain after the last '@'): an
 * exact domain wins, then the longest `.parent` pattern, then `*`.  NULL
 * when none matches.
 */
const struct conf_route *routes_find(const struct config *conf, const char *rcpt);

#endif
