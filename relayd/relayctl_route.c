/*
 * relayctl_route — `route ADDRESS [--from SENDER]`: the rule a recipient falls
 * under (file:line) and its upstreams in the order they are tried.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "relayd/relayctl.h"
#include "routes/routes.h"

/* An upstream's quota and how much of it is used, from the queue's counters (q may be NULL). */
static void print_quota(struct queue *q, const struct conf_upstream *u)
{
	struct queue_counter c;
	int64_t now = (int64_t)time(NULL);

	if (!u->max_per_hour && !u->max_per_day)
		return;
	if (!q || queue_counter_get(q, u->name, &c) < 0) {
		printf("      quota: max_per_hour %u, max_per_day %u (use unknown)\n",
		    u->max_per_hour, u->max_per_day);
		return;
	}
	unsigned hour = now < c.hour_start + 3600 ? c.hour_count : 0;
	unsigned day = now < c.day_start + 86400 ? c.day_count : 0;
	printf("      quota:");
	if (u->max_per_hour)
		printf(" %u of %u this hour%s", hour, u->max_per_hour,
		    hour >= u->max_per_hour ? " (FULL)" : "");
	if (u->max_per_day)
		printf("%s %u of %u today%s", u->max_per_hour ? "," : "", day, u->max_per_day,
		    day >= u->max_per_day ? " (FULL)" : "");
	printf("\n");
}

/* Which rule a recipient falls under, and its upstreams in the order they are tried. */
int relayctl_route(const struct config *conf, struct queue *q, const char *rcpt,
    const char *sender)
{
	char buf[1100], buf2[1100];
	const struct conf_route *r = routes_find(conf, rcpt, sender);

	printf("<%s>", relayctl_esc(rcpt, buf, sizeof buf));
	if (sender)
		printf(" from <%s>", relayctl_esc(sender, buf2, sizeof buf2));
	if (!r) {
		printf(": no route: %s\n", !conf->nroutes ?
		    "relayd.conf has no route at all, mail waits in the queue" :
		    conf->soft_bounce ? "refused at RCPT with 450 4.4.4 (soft_bounce)" :
		    "refused at RCPT with 550 5.4.4");
		return 1;
	}
	printf(": %s %s (%s:%d)\n", r->sender ? "route_sender" : "route", r->pattern,
	    r->file ? r->file : conf->path, r->line);
	for (size_t i = 0; i < r->nupstreams; i++) {
		const struct conf_upstream *u = &conf->upstreams[r->upstreams[i]];
		char where[300];
		if (u->direct)
			snprintf(where, sizeof where, "the domain's MX hosts, port %u,", u->port);
		else
			snprintf(where, sizeof where, "%s:%u", u->host, u->port);
		printf("  %zu. %s: %s tls %s%s%s%s%s\n", i + 1, u->name, where,
		    conf_tls_mode_name(u->tls), u->tls != CONF_TLS_NONE && u->tls != CONF_TLS_MAY ?
		    (u->verify ? ", verified" : ", not verified") : "",
		    u->user ? ", user " : "", u->user ? u->user : "",
		    u->null_sender ? "" : ", no bounces (null_sender no)");
		for (size_t k = 0; k < u->nfailover_on; k++)
			printf("%s%s", k ? " " : "      failover_on ", u->failover_on[k]);
		if (u->nfailover_on)
			printf("\n");
		print_quota(q, u);
	}
	return 0;
}

