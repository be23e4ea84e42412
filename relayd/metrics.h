/*
 * metrics — what relayd counts since it started, for /metrics and the status
 * page: connections, accepted messages, commit and delivery latency
 * (histograms), and the last failed attempts.  Delivery totals per upstream
 * and the queue's size are not here: they come from the queue itself.  One
 * set per process, touched only by the event loop's thread.
 */
#ifndef RELAYD_METRICS_H
#define RELAYD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_BUCKETS 12

struct metrics_histogram {
	const double *bounds;		/* upper bounds, seconds, METRICS_BUCKETS of them */
	uint64_t count[METRICS_BUCKETS + 1];	/* per bucket; the last: above every bound */
	uint64_t total;
	double sum;
};

/* One attempt that did not deliver, as the status page lists them. */
struct metrics_failure {
	int64_t time;
	char id[16];
	char rcpt[256];
	char upstream[64];
	char status[12];		/* deferred, bounced, expired, failover */
	char dsn[16];
	char reply[400];
	char hint[300];			/* "" when none */
};

#define METRICS_FAILURES 20

/* Why the SMTP side refused something (relayd_smtp_refused_total{reason}). */
enum metrics_refusal {
	METRICS_REFUSED_RELAY,		/* relay access denied: neither allowed nor logged in */
	METRICS_REFUSED_AUTH,		/* a failed login */
	METRICS_REFUSED_SENDER,		/* deny_sender, sender_login */
	METRICS_REFUSED_NO_ROUTE,
	METRICS_REFUSED_RATE,		/* limit_user, limit_client, limit_rcpt */
	METRICS_REFUSED_CONNECTIONS,	/* max_connections_per_client */
	METRICS_REFUSALS
};
extern const char *const metrics_refusal_names[METRICS_REFUSALS];

struct metrics {
	double started;			/* unix seconds */
	uint64_t connections;		/* SMTP sessions begun */
	uint64_t connections_refused;	/* over max_clients, or while stopping */
	uint64_t messages;		/* accepted (committed, answered 250) */
	uint64_t recipients;		/* of those messages */
	uint64_t commit_failed;		/* answered 451/452: not stored */
	uint64_t refused[METRICS_REFUSALS];
	struct metrics_histogram commit;	/* end of DATA to the commit's fsync */
	struct metrics_histogram delivery;	/* arrival to delivered, per recipient */
	struct metrics_failure failures[METRICS_FAILURES];	/* a ring, newest at next - 1 */
	size_t nfailures, next;
};

extern struct metrics metrics;

void metrics_init(double now);
void metrics_observe(struct metrics_histogram *h, double seconds);
void metrics_failure(int64_t time, const char *id, const char *rcpt, const char *upstream,
    const char *status, const char *dsn, const char *reply, const char *hint);
/* The i-th most recent failure (0: the newest), or NULL. */
const struct metrics_failure *metrics_failure_at(size_t i);

#endif
