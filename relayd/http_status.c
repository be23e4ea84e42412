/*
 * http_status — the status page: one self-contained HTML document (inline
 * style, no script, nothing loaded from elsewhere) that says at a glance
 * whether mail is flowing: the queue, each upstream's health and totals,
 * the oldest messages with their last reply and hint, and the last failed
 * attempts.  Everything from the network (addresses, replies) is escaped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relayd/delivery.h"
#include "relayd/hints.h"
#include "relayd/http.h"
#include "relayd/metrics.h"
#include "relayd/server.h"

#define QUEUE_ROWS 50			/* the oldest messages shown */
#define RCPT_ROWS 5			/* pending recipients shown per message; the rest counted */
#define REFRESH 15			/* seconds */

/* s as HTML text (also safe inside a quoted attribute); at most max bytes of it. */
static void esc(struct evbuffer *out, const char *s, size_t max)
{
	const char *run = s;	/* the bytes since the last one replaced, added in one go */
	size_t n = 0;

	if (!s)
		return;
	for (; *s && n < max; s++, n++) {
		const char *rep;
		switch (*s) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		case '\n': rep = " "; break;
		default:
			rep = (unsigned char)*s < 0x20 || *s == 0x7f ? "?" : NULL;
		}
		if (!rep)
			continue;
		evbuffer_add(out, run, (size_t)(s - run));
		evbuffer_add(out, rep, strlen(rep));
		run = s + 1;
	}
	evbuffer_add(out, run, (size_t)(s - run));
	if (*s)
		evbuffer_add(out, "\xe2\x80\xa6", 3);	/* … */
}

/* "3d 4h", "2h 5m", "4m 10s", "12s". */
static const char *span(double secs, char *buf, size_t len)
{
	long s = secs < 0 ? 0 : (long)secs;

	if (s >= 86400)
		snprintf(buf, len, "%ldd %ldh", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, len, "%ldh %ldm", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, len, "%ldm %lds", s / 60, s % 60);
	else
		snprintf(buf, len, "%lds", s);
	return buf;
}

static const char *clock_time(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t <= 0)
		return "never";
	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	return buf;
}

static const char style[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d232a;background:#f6f7f9}"
    "h1{font-size:1.4em;margin:0}h1 span{color:#5a6572;font-weight:normal}"
    "h2{font-size:1.1em;margin:1.6em 0 .5em}.sub{color:#5a6572;margin:.2em 0 1em}"
    ".tiles{display:flex;flex-wrap:wrap;gap:.8em}"
    ".tile{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.6em 1em;"
    "min-width:9em}.tile b{display:block;font-size:1.6em}.tile span{color:#5a6572}"
    "table{border-collapse:collapse;background:#fff;width:100%;font-size:13px}"
    "th,td{border:1px solid #dde1e6;padding:.3em .5em;text-align:left;vertical-align:top}"
    "th{background:#eef1f4}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".ok{color:#17692e;font-weight:600}.bad{color:#b3261e;font-weight:600}"
    ".warn{color:#8a5a00;font-weight:600}.hint{color:#0b5394}.none{color:#5a6572}"
    "code{font-size:12px}";

struct totals {
	struct queue_total *t;
	char **names;
	size_t n;
	int failed;
};

static int keep_total(void *arg, const struct queue_total *t)
{
	struct totals *all = arg;
	struct queue_total *grown = reallocarray(all->t, all->n + 1, sizeof *grown);
	char **names = grown ? reallocarray(all->names, all->n + 1, sizeof *names) : NULL;

	if (grown)
		all->t = grown;
	if (names)
		all->names = names;
	if (!grown || !names || !(all->names[all->n] = strdup(t->name))) {
		all->failed = 1;
		return 1;
	}
	all->t[all->n] = *t;
	all->t[all->n].name = all->names[all->n];
	all->n++;
	return 0;
}

static const struct queue_total *total_of(const struct totals *all, const char *name)
{
	for (size_t i = 0; i < all->n; i++)
		if (strcmp(all->t[i].name, name) == 0)
			return &all->t[i];
	return NULL;
}

static void tile(struct evbuffer *out, const char *cls, const char *value, const char *what)
{
	evbuffer_add_printf(out, "<div class=\"tile\"><b class=\"%s\">", cls);
	esc(out, value, 64);
	evbuffer_add_printf(out, "</b><span>%s</span></div>\n", what);
}

static void summary(struct evbuffer *out, struct server *srv, const struct queue_summary *s,
    const struct totals *all, double now)
{
	char v[64], a[32];
	uint64_t sent = 0, deferred = 0, bounced = 0;

	for (size_t i = 0; i < all->n; i++) {
		sent += all->t[i].sent;
		deferred += all->t[i].deferred;
		bounced += all->t[i].bounced;
	}
	double age = s->oldest_arrival > 0 ? now - (double)s->oldest_arrival : 0;
	evbuffer_add_printf(out, "<section class=\"tiles\">\n");
	snprintf(v, sizeof v, "%llu", (unsigned long long)s->messages);
	tile(out, s->messages == 0 ? "ok" : age > 3600 ? "bad" : "warn", v, "queued messages");
	tile(out, age > 3600 ? "bad" : "ok", s->messages ? span(age, a, sizeof a) : "-",
	    "oldest in the queue");
	snprintf(v, sizeof v, "%llu", (unsigned long long)s->held);
	tile(out, s->held ? "warn" : "ok", v, "held");
	snprintf(v, sizeof v, "%llu", (unsigned long long)metrics.messages);
	tile(out, "ok", v, "accepted since start");
	snprintf(v, sizeof v, "%llu", (unsigned long long)sent);
	tile(out, "ok", v, "sent (all time)");
	snprintf(v, sizeof v, "%llu", (unsigned long long)deferred);
	tile(out, deferred ? "warn" : "ok", v, "deferred attempts");
	snprintf(v, sizeof v, "%llu", (unsigned long long)bounced);
	tile(out, bounced ? "bad" : "ok", v, "bounced");
	snprintf(v, sizeof v, "%u", srv->nsessions);
	tile(out, "ok", v, "SMTP sessions open");
	evbuffer_add_printf(out, "</section>\n");
}

static void upstream_rows(struct evbuffer *out, struct delivery *d, const struct totals *all)
{
	double mono = delivery_monotonic();
	int64_t now = (int64_t)time(NULL);
	char t1[32], t2[32];

	evbuffer_add_printf(out, "<h2>Upstreams</h2>\n<table id=\"upstreams\"><tr><th>upstream"
	    "</th><th>host</th><th>TLS</th><th>state</th><th>connections</th><th>sent</th>"
	    "<th>deferred</th><th>bounced</th><th>failover</th><th>last success</th>"
	    "<th>last failure</th><th>quota</th></tr>\n");
	for (size_t i = 0; i < d->nupstreams; i++) {
		const struct upstream *up = &d->upstreams[i];
		const struct conf_upstream *u = up->conf;
		const struct queue_total *t = total_of(all, u->name);
		unsigned conns = up->nconn;
		for (const struct upstream *c = up->children; c; c = c->next_child)
			conns += c->nconn;
		evbuffer_add_printf(out, "<tr><td>");
		esc(out, u->name, 200);
		evbuffer_add_printf(out, "</td><td>");
		if (u->direct) {
			evbuffer_add_printf(out, "MX of each domain");
		} else {
			esc(out, u->host, 255);
			evbuffer_add_printf(out, ":%u", u->port);
		}
		evbuffer_add_printf(out, "</td><td>%s%s</td><td>", conf_tls_mode_name(u->tls),
		    u->tls != CONF_TLS_NONE && !u->verify ? " (not verified)" : "");
		if (up->down_until > mono) {
			evbuffer_add_printf(out, "<span class=\"bad\">down</span> for %s: ",
			    span(up->down_until - mono, t1, sizeof t1));
			esc(out, up->down_why, sizeof up->down_why);
		} else if (t && t->last_fail > t->last_ok) {
			evbuffer_add_printf(out, "<span class=\"warn\">failing</span>");
		} else if (t && t->last_ok) {
			evbuffer_add_printf(out, "<span class=\"ok\">ok</span>");
		} else {
			evbuffer_add_printf(out, "<span class=\"none\">not used yet</span>");
		}
		evbuffer_add_printf(out, "</td><td class=\"n\">%u</td><td class=\"n\">%llu</td>"
		    "<td class=\"n\">%llu</td><td class=\"n\">%llu</td><td class=\"n\">%llu</td>"
		    "<td>%s</td><td>%s</td><td>", conns,
		    (unsigned long long)(t ? t->sent : 0), (unsigned long long)(t ? t->deferred : 0),
		    (unsigned long long)(t ? t->bounced : 0), (unsigned long long)(t ? t->failover : 0),
		    clock_time(t ? t->last_ok : 0, t1, sizeof t1),
		    clock_time(t ? t->last_fail : 0, t2, sizeof t2));
		unsigned hour, day;
		quota_used(up, now, &hour, &day);
		if (u->max_per_hour)
			evbuffer_add_printf(out, "%u of %u this hour ", hour, u->max_per_hour);
		if (u->max_per_day)
			evbuffer_add_printf(out, "%u of %u today", day, u->max_per_day);
		if (!u->max_per_hour && !u->max_per_day)
			evbuffer_add_printf(out, "<span class=\"none\">none</span>");
		evbuffer_add_printf(out, "</td></tr>\n");
	}
	evbuffer_add_printf(out, "</table>\n");
}

struct queue_rows {
	struct evbuffer *out;
	const struct config *conf;
	double now;
	unsigned n;
};

static int queue_row(void *arg, const struct queue_envelope *env)
{
	struct queue_rows *qr = arg;
	struct evbuffer *out = qr->out;
	char a[32], b[32];

	size_t shown = 0, more = 0;

	if (qr->n++ >= QUEUE_ROWS)
		return 1;
	/* A message may have max_recipients of them: the page stays small whatever comes. */
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		if (r->state != QUEUE_RCPT_PENDING)
			continue;
		if (shown == RCPT_ROWS) {
			more++;
			continue;
		}
		shown++;
		const char *hint = hint_for_reply(qr->conf, r->last_reply);
		evbuffer_add_printf(out, "<tr><td><code>%s</code>%s</td><td>%s</td><td>",
		    env->id, env->held ? " <span class=\"warn\">held</span>" : "",
		    span(qr->now - (double)env->arrival, a, sizeof a));
		esc(out, env->sender[0] ? env->sender : "<>", 200);
		evbuffer_add_printf(out, "</td><td>");
		esc(out, r->addr, 200);
		evbuffer_add_printf(out, "</td><td class=\"n\">%u</td><td>", r->attempts);
		if (r->last_reply)
			esc(out, r->last_reply, 300);
		else
			evbuffer_add_printf(out, "<span class=\"none\">not tried yet</span>");
		evbuffer_add_printf(out, "</td><td class=\"hint\">");
		esc(out, hint, 300);
		evbuffer_add_printf(out, "</td><td>%s</td></tr>\n", env->held ? "held" :
		    r->next_attempt <= (int64_t)qr->now ? "now" :
		    span((double)r->next_attempt - qr->now, b, sizeof b));
	}
	if (more)
		evbuffer_add_printf(out, "<tr><td><code>%s</code></td><td colspan=\"7\" "
		    "class=\"none\">and %zu more pending recipients: <code>relayctl show %s"
		    "</code></td></tr>\n", env->id, more, env->id);
	return 0;
}

static void failure_rows(struct evbuffer *out)
{
	char t[32];

	evbuffer_add_printf(out, "<h2>Recent failed attempts</h2>\n");
	if (metrics.nfailures == 0) {
		evbuffer_add_printf(out, "<p class=\"none\">None since relayd started.</p>\n");
		return;
	}
	evbuffer_add_printf(out, "<table id=\"failures\"><tr><th>time (UTC)</th><th>id</th>"
	    "<th>recipient</th><th>upstream</th><th>status</th><th>DSN</th><th>reply</th>"
	    "<th>hint</th></tr>\n");
	for (size_t i = 0; i < metrics.nfailures; i++) {
		const struct metrics_failure *f = metrics_failure_at(i);
		evbuffer_add_printf(out, "<tr><td>%s</td><td><code>", clock_time(f->time, t,
		    sizeof t));
		esc(out, f->id, sizeof f->id);
		evbuffer_add_printf(out, "</code></td><td>");
		esc(out, f->rcpt, sizeof f->rcpt);
		evbuffer_add_printf(out, "</td><td>");
		esc(out, f->upstream, sizeof f->upstream);
		evbuffer_add_printf(out, "</td><td class=\"%s\">", f->status[0] == 'b' ||
		    f->status[0] == 'e' ? "bad" : "warn");
		esc(out, f->status, sizeof f->status);
		evbuffer_add_printf(out, "</td><td>");
		esc(out, f->dsn, sizeof f->dsn);
		evbuffer_add_printf(out, "</td><td>");
		esc(out, f->reply, sizeof f->reply);
		evbuffer_add_printf(out, "</td><td class=\"hint\">");
		esc(out, f->hint, sizeof f->hint);
		evbuffer_add_printf(out, "</td></tr>\n");
	}
	evbuffer_add_printf(out, "</table>\n");
}

int http_status_page(struct evbuffer *out, struct server *srv, struct queue *q)
{
	const struct config *conf = srv->conf;
	struct totals all = { NULL, NULL, 0, 0 };
	struct queue_summary s;
	double now = delivery_now();
	char up[32], at[32];
	int rc = -1;

	if (queue_summary(q, &s) < 0 || queue_totals(q, keep_total, &all) < 0 || all.failed)
		goto done;
	evbuffer_add_printf(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	    "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
	    "<meta http-equiv=\"refresh\" content=\"%d\"><title>relayd ", REFRESH);
	esc(out, conf->hostname, 255);
	evbuffer_add_printf(out, "</title><style>%s</style></head><body>\n<header><h1>relayd "
	    "<span>", style);
	esc(out, conf->hostname, 255);
	evbuffer_add_printf(out, "</span></h1><p class=\"sub\">up %s &middot; %s UTC &middot; "
	    "this page refreshes every %d s &middot; <a href=\"/metrics\">/metrics</a></p>"
	    "</header>\n", span(now - metrics.started, up, sizeof up),
	    clock_time((int64_t)now, at, sizeof at), REFRESH);
	if (conf->soft_bounce)
		evbuffer_add_printf(out, "<p class=\"warn\" id=\"soft_bounce\">soft_bounce is on: "
		    "permanent failures are deferred and nothing bounces. Turn it off once the "
		    "configuration is right.</p>\n");
	summary(out, srv, &s, &all, now);
	upstream_rows(out, srv->delivery, &all);

	evbuffer_add_printf(out, "<h2>Queue</h2>\n");
	if (s.messages == 0) {
		evbuffer_add_printf(out, "<p class=\"ok\">The queue is empty: everything "
		    "accepted has been delivered or bounced.</p>\n");
	} else {
		struct queue_rows qr = { out, conf, now, 0 };
		evbuffer_add_printf(out, "<table id=\"queue\"><tr><th>id</th><th>age</th>"
		    "<th>from</th><th>to</th><th>attempts</th><th>last reply</th><th>hint</th>"
		    "<th>next try</th></tr>\n");
		int walked = queue_walk(q, queue_row, &qr);
		evbuffer_add_printf(out, "</table>\n");
		if (s.messages > QUEUE_ROWS)
			evbuffer_add_printf(out, "<p class=\"sub\">The oldest %d of %llu messages; "
			    "<code>relayctl queue</code> lists them all.</p>\n", QUEUE_ROWS,
			    (unsigned long long)s.messages);
		if (walked < 0)
			evbuffer_add_printf(out, "<p class=\"bad\">Some queue records cannot be "
			    "read: see the log.</p>\n");
	}
	failure_rows(out);
	evbuffer_add_printf(out, "</body></html>\n");
	rc = 0;
done:
	for (size_t i = 0; i < all.n; i++)
		free(all.names[i]);
	free(all.names);
	free(all.t);
	return rc;
}
