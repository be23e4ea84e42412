/*
 * http_metrics — /metrics in the Prometheus text exposition format (0.0.4):
 * the process's counters (metrics.h), the queue's size and age, and each
 * upstream's delivery totals (from the queue, so they survive restarts and
 * agree with relayctl stats), connections, health and quota.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "relayd/delivery.h"
#include "relayd/http.h"
#include "relayd/metrics.h"
#include "relayd/server.h"

/* A label value: backslash, double quote and newline escaped. */
static const char *label(const char *s, char *buf, size_t len)
{
	size_t n = 0;

	for (; s && *s && n + 3 < len; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			buf[n++] = '\\';
			buf[n++] = *s == '\n' ? 'n' : *s;
		} else {
			buf[n++] = *s;
		}
	}
	buf[n] = '\0';
	return buf;
}

static void head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(struct evbuffer *out, const char *name, const char *type, const char *help,
    double v)
{
	head(out, name, type, help);
	evbuffer_add_printf(out, "%s %.17g\n", name, v);
}

static void histogram(struct evbuffer *out, const char *name, const char *help,
    const struct metrics_histogram *h)
{
	uint64_t cum = 0;

	head(out, name, "histogram", help);
	for (size_t i = 0; i < METRICS_BUCKETS && h->bounds; i++) {
		cum += h->count[i];
		evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
		    (unsigned long long)cum);
	}
	evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.17g\n%s_count %llu\n",
	    name, (unsigned long long)h->total, name, h->sum, name,
	    (unsigned long long)h->total);
}

static int totals_cb(void *arg, const struct queue_total *t)
{
	struct evbuffer *out = arg;
	char name[420];
	const char *results[] = { "sent", "deferred", "bounced", "failover" };
	uint64_t counts[] = { t->sent, t->deferred, t->bounced, t->failover };

	label(t->name, name, sizeof name);
	for (size_t i = 0; i < 4; i++)
		evbuffer_add_printf(out, "relayd_deliveries_total{upstream=\"%s\",result=\"%s\"} "
		    "%llu\n", name, results[i], (unsigned long long)counts[i]);
	return 0;
}

/* Every configured upstream's connections, health and quota. */
static void upstreams(struct evbuffer *out, struct delivery *d)
{
	double mono = delivery_monotonic();
	int64_t now = (int64_t)time(NULL);
	char name[420];

	head(out, "relayd_upstream_connections", "gauge",
	    "Connections to the upstream open or opening (direct: to every MX).");
	for (size_t i = 0; i < d->nupstreams; i++) {
		const struct upstream *up = &d->upstreams[i];
		unsigned n = up->nconn;
		for (const struct upstream *c = up->children; c; c = c->next_child)
			n += c->nconn;
		evbuffer_add_printf(out, "relayd_upstream_connections{upstream=\"%s\"} %u\n",
		    label(up->conf->name, name, sizeof name), n);
	}
	head(out, "relayd_upstream_down", "gauge",
	    "1 while the upstream is passed over after failed connections.");
	for (size_t i = 0; i < d->nupstreams; i++) {
		const struct upstream *up = &d->upstreams[i];
		evbuffer_add_printf(out, "relayd_upstream_down{upstream=\"%s\"} %d\n",
		    label(up->conf->name, name, sizeof name), up->down_until > mono);
	}
	head(out, "relayd_quota_used", "gauge",
	    "Recipients sent in the upstream's current quota window.");
	for (size_t i = 0; i < d->nupstreams; i++) {
		const struct upstream *up = &d->upstreams[i];
		unsigned hour, day;
		if (!up->conf->max_per_hour && !up->conf->max_per_day)
			continue;
		quota_used(up, now, &hour, &day);
		label(up->conf->name, name, sizeof name);
		if (up->conf->max_per_hour)
			evbuffer_add_printf(out, "relayd_quota_used{upstream=\"%s\",window=\"hour\"} "
			    "%u\n", name, hour);
		if (up->conf->max_per_day)
			evbuffer_add_printf(out, "relayd_quota_used{upstream=\"%s\",window=\"day\"} "
			    "%u\n", name, day);
	}
	head(out, "relayd_quota_limit", "gauge", "The upstream's max_per_hour and max_per_day.");
	for (size_t i = 0; i < d->nupstreams; i++) {
		const struct conf_upstream *u = d->upstreams[i].conf;
		label(u->name, name, sizeof name);
		if (u->max_per_hour)
			evbuffer_add_printf(out, "relayd_quota_limit{upstream=\"%s\",window=\"hour\"} "
			    "%u\n", name, u->max_per_hour);
		if (u->max_per_day)
			evbuffer_add_printf(out, "relayd_quota_limit{upstream=\"%s\",window=\"day\"} "
			    "%u\n", name, u->max_per_day);
	}
}

int http_metrics_page(struct evbuffer *out, struct server *srv, struct queue *q)
{
	struct queue_summary s;
	struct queue_stats st;
	double now = delivery_now();

	one(out, "relayd_start_time_seconds", "gauge", "When relayd started (unix time).",
	    metrics.started);
	one(out, "relayd_connections_total", "counter", "SMTP sessions begun.",
	    (double)metrics.connections);
	one(out, "relayd_connections_refused_total", "counter",
	    "SMTP connections refused (max_clients, or stopping).",
	    (double)metrics.connections_refused);
	one(out, "relayd_connections_open", "gauge", "SMTP sessions open now.",
	    srv->nsessions);
	one(out, "relayd_messages_accepted_total", "counter",
	    "Messages committed to the queue and answered 250.", (double)metrics.messages);
	one(out, "relayd_recipients_accepted_total", "counter", "Recipients of those messages.",
	    (double)metrics.recipients);
	one(out, "relayd_messages_refused_total", "counter",
	    "Messages that could not be stored (answered 451 or 452).",
	    (double)metrics.commit_failed);
	head(out, "relayd_smtp_refused_total", "counter",
	    "Commands refused by relayd's own rules, by reason.");
	for (size_t i = 0; i < METRICS_REFUSALS; i++)
		evbuffer_add_printf(out, "relayd_smtp_refused_total{reason=\"%s\"} %llu\n",
		    metrics_refusal_names[i], (unsigned long long)metrics.refused[i]);
	histogram(out, "relayd_commit_duration_seconds",
	    "From the end of DATA to the commit's fsync.", &metrics.commit);
	histogram(out, "relayd_delivery_duration_seconds",
	    "From arrival to delivery, per recipient.", &metrics.delivery);
	if (queue_summary(q, &s) < 0)
		return -1;
	one(out, "relayd_queue_messages", "gauge", "Messages in the queue (held ones too).",
	    (double)s.messages);
	one(out, "relayd_queue_recipients", "gauge", "Recipients of the queued messages.",
	    (double)s.recipients);
	one(out, "relayd_queue_held_messages", "gauge", "Messages held by relayctl hold.",
	    (double)s.held);
	one(out, "relayd_queue_oldest_age_seconds", "gauge",
	    "Age of the oldest queued message (0 when empty).",
	    s.oldest_arrival > 0 && now > (double)s.oldest_arrival ?
	    now - (double)s.oldest_arrival : 0);
	queue_get_stats(q, &st);
	one(out, "relayd_queue_transactions_total", "counter",
	    "Queue write transactions committed (each one fsync).", (double)st.transactions);
	one(out, "relayd_messages_in_flight", "gauge", "Messages out for delivery now.",
	    (double)srv->delivery->nactive);
	head(out, "relayd_deliveries_total", "counter",
	    "Recipient delivery attempts by upstream and result, since the queue was made.");
	if (queue_totals(q, totals_cb, out) < 0)
		return -1;
	upstreams(out, srv->delivery);
	return 0;
}
