/*
 * auth — who may relay through relayd (DESIGN.md, Modules).  For now the
 * network allow-list (`allow CIDR…`); SASL logins and sender rules join it.
 * Knows nothing about queues or SMTP sessions.
 */
#ifndef RELAYD_AUTH_H
#define RELAYD_AUTH_H

#include <sys/socket.h>

#include "conf/conf.h"

/* 1 when the client address lies inside one of the config's `allow` networks. */
int auth_network_allowed(const struct config *conf, const struct sockaddr *client);

/* 1 when addr (AF_INET/AF_INET6; IPv4-mapped IPv6 counts as IPv4) is inside net. */
int auth_cidr_match(const struct conf_cidr *net, const struct sockaddr *addr);

#endif
