/*
 * relayctl — the admin's tool, in files by command: relayctl.c (options,
 * dispatch), relayctl_queue.c (queue, show, stats), relayctl_route.c
 * (route), relayctl_check.c (an upstream step by step), relayctl_doctor.c (the
 * sender's DNS), relayctl_admin.c
 * (flush, hold, release, delete through the control socket),
 * relayctl_policy.c (a login's or address's rules, limits and counts, asked
 * of relayd through the same socket).  Reading goes through queue/ read-only.
 */
#ifndef RELAYD_RELAYCTL_H
#define RELAYD_RELAYCTL_H

#include "conf/conf.h"
#include "queue/queue.h"

/* relayctl_queue.c */
/* Text from the network, escaped for the terminal. */
const char *relayctl_esc(const char *s, char *buf, size_t len);
/* The hint about a stored reply ("550 5.7.1 …"), from its code and words, or NULL. */
const char *relayctl_hint(const struct config *conf, const char *reply);
int relayctl_queue(struct queue *q, const struct config *conf, int json);
int relayctl_show(struct queue *q, const struct config *conf, const char *id, int body);
int relayctl_stats(struct queue *q, const struct config *conf, const char *by);

/* relayctl_route.c: which rule and upstreams a recipient takes (q may be NULL). */
int relayctl_route(const struct config *conf, struct queue *q, const char *rcpt,
    const char *sender);

/* relayctl_check.c: an upstream step by step; 0 all OK, 1 a step failed, 2 usage. */
int relayctl_check(const struct config *conf, const char *name, const char *from,
    const char *to);

/* relayctl_doctor.c: the IP's PTR and blocklists, the domain's MX, SPF, DMARC. */
int relayctl_doctor(const struct config *conf, const char *ip, const char *domain);

/* relayctl_admin.c: flush / hold / release / delete / requeue through relayd. */
int relayctl_admin(const struct config *conf, const char *cmd, int argc, char **argv);
/* A connection to relayd's control socket (its path in path); -1 with errno. */
int relayctl_control_open(const struct config *conf, char *path, size_t pathlen);

/* relayctl_policy.c: the sender rules and limits of a login or address, and the counts. */
int relayctl_policy(const struct config *conf, const char *who);

/* relayctl.c */
void relayctl_usage(void) __attribute__((noreturn));

#endif
