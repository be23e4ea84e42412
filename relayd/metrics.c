/*
 * metrics — the process's counters (see metrics.h).  Bucket bounds follow
 * what is worth telling apart: a commit is an fsync (milliseconds), a
 * delivery anything from a second to the queue lifetime.
 */
#include <stdio.h>
#include <string.h>

#include "relayd/metrics.h"

struct metrics metrics;

const char *const metrics_refusal_names[METRICS_REFUSALS] = {
	[METRICS_REFUSED_RELAY] = "relay_denied",
	[METRICS_REFUSED_AUTH] = "auth_failed",
	[METRICS_REFUSED_SENDER] = "sender_rule",
	[METRICS_REFUSED_NO_ROUTE] = "no_route",
	[METRICS_REFUSED_RATE] = "rate_limit",
	[METRICS_REFUSED_CONNECTIONS] = "connections_per_client",
};

static const double commit_bounds[METRICS_BUCKETS] = { 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1, 5 };
static const double delivery_bounds[METRICS_BUCKETS] = { 0.5, 1, 2.5, 5, 10, 30, 60, 300,
	900, 3600, 14400, 86400 };

void metrics_init(double now)
{
	memset(&metrics, 0, sizeof metrics);
	metrics.started = now;
	metrics.commit.bounds = commit_bounds;
	metrics.delivery.bounds = delivery_bounds;
}

void metrics_observe(struct metrics_histogram *h, double seconds)
{
	size_t i = 0;

	if (!h->bounds)
		return;		/* before metrics_init (unit tests) */
	if (seconds < 0)
		seconds = 0;
	while (i < METRICS_BUCKETS && seconds > h->bounds[i])
		i++;
	h->count[i]++;
	h->total++;
	h->sum += seconds;
}

void metrics_failure(int64_t time, const char *id, const char *rcpt, const char *upstream,
    const char *status, const char *dsn, const char *reply, const char *hint)
{
	struct metrics_failure *f = &metrics.failures[metrics.next];

	f->time = time;
	snprintf(f->id, sizeof f->id, "%s", id ? id : "");
	snprintf(f->rcpt, sizeof f->rcpt, "%s", rcpt ? rcpt : "");
	snprintf(f->upstream, sizeof f->upstream, "%s", upstream ? upstream : "none");
	snprintf(f->status, sizeof f->status, "%s", status ? status : "");
	snprintf(f->dsn, sizeof f->dsn, "%s", dsn ? dsn : "");
	snprintf(f->reply, sizeof f->reply, "%s", reply ? reply : "");
	snprintf(f->hint, sizeof f->hint, "%s", hint ? hint : "");
	metrics.next = (metrics.next + 1) % METRICS_FAILURES;
	if (metrics.nfailures < METRICS_FAILURES)
		metrics.nfailures++;
}

const struct metrics_failure *metrics_failure_at(size_t i)
{
	if (i >= metrics.nfailures)
		return NULL;
	return &metrics.failures[(metrics.next + METRICS_FAILURES - 1 - i) % METRICS_FAILURES];
}
