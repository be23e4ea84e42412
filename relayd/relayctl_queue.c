/*
 * relayctl_queue — looking at the queue: `queue` (like mailq, or --json),
 * `show ID` (envelope, recipients, last reply and hint, --body), `stats`
 * (pending recipients by domain, upstream or sender and age, like qshape).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "relayd/hints.h"
#include "relayd/log.h"
#include "relayd/relayctl.h"
#include "relayd/smtp_parse.h"
#include "routes/routes.h"

static const char *state_name(enum queue_rcpt_state st)
{
	switch (st) {
	case QUEUE_RCPT_PENDING: return "pending";
	case QUEUE_RCPT_SENT: return "sent";
	case QUEUE_RCPT_BOUNCED: return "bounced";
	}
	return "?";
}

/* Addresses come from the network: print them escaped. */
const char *relayctl_esc(const char *s, char *buf, size_t len)
{
	return s ? log_escape(buf, len, s, strlen(s)) : "";
}

struct totals { unsigned long long bytes; unsigned messages; const struct config *conf; };

/* The hint about a stored reply ("550 5.7.1 …"), from its code and words. */
const char *relayctl_hint(const struct config *conf, const char *reply)
{
	return hint_for_reply(conf, reply);
}

static int list_one(void *arg, const struct queue_envelope *env)
{
	struct totals *t = arg;
	char when[32], buf[1100];
	time_t at = (time_t)env->arrival;
	struct tm tm;

	localtime_r(&at, &tm);
	strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);
	printf("%-12s%c%9llu %s  %s\n", env->id, env->held ? '!' : ' ',
	    (unsigned long long)env->size, when, env->sender[0] ? relayctl_esc(env->sender, buf,
	    sizeof buf) : "<>");
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		if (r->state != QUEUE_RCPT_PENDING)
			continue;
		printf("%45s%s\n", "", relayctl_esc(r->addr, buf, sizeof buf));
		if (r->last_reply)
			printf("%45s(%s)\n", "", relayctl_esc(r->last_reply, buf, sizeof buf));
		const char *hint = relayctl_hint(t->conf, r->last_reply);
		if (hint)
			printf("%45shint: %s\n", "", hint);
		if (env->held) {
			printf("%45s(held: relayctl release %s)\n", "", env->id);
		} else if (r->next_attempt > time(NULL)) {
			time_t next = (time_t)r->next_attempt;
			localtime_r(&next, &tm);
			strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);
			printf("%45snext try: %s\n", "", when);
		}
	}
	t->bytes += env->size;
	t->messages++;
	return 0;
}

/* The length of the UTF-8 sequence at p if it is a valid one, else 0. */
static size_t utf8_len(const unsigned char *p)
{
	size_t n = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc0 ? 2 : 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n && smtp_utf8_valid(p, n) ? n : 0;
}

/* s as a JSON string: quotes, backslashes and control characters escaped, and a
 * byte that is not valid UTF-8 (a reply cut mid-character) as U+FFFD. */
static void json_str(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		size_t n;
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			printf("\\u%04x", *p);
		else if (*p < 0x80)
			putchar(*p);
		else if ((n = utf8_len(p)) > 0) {
			fwrite(p, 1, n, stdout);
			p += n - 1;
		} else
			printf("\\ufffd");
	}
	putchar('"');
}

/* One message as a JSON object (a line of its own, for jq and scripts). */
static int json_one(void *arg, const struct queue_envelope *env)
{
	struct totals *t = arg;

	printf("%s{\"id\":\"%s\",\"size\":%llu,\"arrival\":%lld,\"held\":%s,\"sender\":",
	    t->messages ? ",\n" : "", env->id, (unsigned long long)env->size,
	    (long long)env->arrival, env->held ? "true" : "false");
	json_str(env->sender);
	printf(",\"recipients\":[");
	for (size_t i = 0, n = 0; i < env->nrcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		if (r->state != QUEUE_RCPT_PENDING)
			continue;
		printf("%s{\"address\":", n++ ? "," : "");
		json_str(r->addr);
		printf(",\"attempts\":%u,\"next_attempt\":%lld,\"last_attempt\":%lld,"
		    "\"last_reply\":", r->attempts, (long long)r->next_attempt,
		    (long long)r->last_attempt);
		r->last_reply ? json_str(r->last_reply) : (void)printf("null");
		printf(",\"last_relay\":");
		r->last_relay ? json_str(r->last_relay) : (void)printf("null");
		const char *hint = relayctl_hint(t->conf, r->last_reply);
		printf(",\"hint\":");
		hint ? json_str(hint) : (void)printf("null");
		printf("}");
	}
	printf("]}");
	t->messages++;
	return 0;
}

int relayctl_queue(struct queue *q, const struct config *conf, int json)
{
	struct totals t = { 0, 0, conf };
	if (json) {
		printf("[");
	} else {
		if (conf->soft_bounce)
			printf("soft_bounce is on: permanent failures are deferred, nothing "
			    "bounces\n");
		printf("-Queue ID-   --Size-- ----Arrival Time----  -Sender/Recipient-------\n");
	}
	if (queue_walk(q, json ? json_one : list_one, &t) < 0) {
		fprintf(stderr, "relayctl: cannot read the queue\n");
		return 1;
	}
	if (json)
		printf("]\n");
	else if (t.messages == 0)
		printf("Mail queue is empty\n");
	else
		printf("-- %llu Kbytes in %u Request%s.\n", (t.bytes + 1023) / 1024, t.messages,
		    t.messages == 1 ? "" : "s");
	return 0;
}

static int print_body(void *arg, const void *data, size_t len)
{
	(void)arg;
	return fwrite(data, 1, len, stdout) == len ? 0 : -1;
}

static int keep_attempt(void *arg, const struct queue_attempt *a)
{
	return queue_envelope_add_attempt(arg, a) < 0;
}

/* Recipient index's attempts of hist, from *at on (they come in recipient order). */
static void print_history(const struct queue_envelope *hist, size_t *at, uint32_t index)
{
	char when[32], reply[1100], relay[300];

	for (; *at < hist->nattempts && hist->attempts[*at].rcpt <= index; (*at)++) {
		const struct queue_attempt *a = &hist->attempts[*at];
		time_t t = (time_t)a->time;
		struct tm tm;
		if (a->rcpt != index)
			continue;
		localtime_r(&t, &tm);
		strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
		printf("  %s %s upstream=%s relay=%s dsn=%s (%s)\n", when,
		    a->status ? a->status : "?", a->upstream ? a->upstream : "none",
		    a->relay ? relayctl_esc(a->relay, relay, sizeof relay) : "none",
		    a->dsn ? a->dsn : "-", a->reply ? relayctl_esc(a->reply, reply, sizeof reply) : "");
	}
}

int relayctl_show(struct queue *q, const struct config *conf, const char *id, int body)
{
	struct queue_envelope *env = queue_load(q, id), *hist = queue_envelope_new();
	char buf[1100], buf2[1100];
	size_t at = 0;
	if (!env || !hist) {
		fprintf(stderr, "relayctl: %s: %s\n", id, env ? "out of memory" :
		    "no such message");
		queue_envelope_free(env);
		queue_envelope_free(hist);
		return 1;
	}
	if (queue_attempts(q, id, keep_attempt, hist) < 0)
		fprintf(stderr, "relayctl: %s: cannot read the attempt history\n", id);
	printf("id: %s\narrival: %lld\nsize: %llu\nsender: <%s>\n", env->id,
	    (long long)env->arrival, (unsigned long long)env->size,
	    relayctl_esc(env->sender, buf, sizeof buf));
	printf("client: %s\nhelo: %s\n", relayctl_esc(env->client_addr, buf, sizeof buf),
	    env->helo ? relayctl_esc(env->helo, buf2, sizeof buf2) : "");
	if (env->auth_user)
		printf("sasl_username: %s\n", relayctl_esc(env->auth_user, buf, sizeof buf));
	if (env->envid)
		printf("envid: %s\n", relayctl_esc(env->envid, buf, sizeof buf));
	printf("ret: %s\nbody: %s\nsmtputf8: %s\n",
	    env->ret == QUEUE_RET_FULL ? "FULL" : env->ret == QUEUE_RET_HDRS ? "HDRS" : "-",
	    env->body == QUEUE_BODY_8BITMIME ? "8BITMIME" : "7BIT", env->smtputf8 ? "yes" : "no");
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		printf("rcpt: <%s> state=%s attempts=%u notify=%s%s%s%s", relayctl_esc(r->addr, buf, sizeof buf),
		    state_name(r->state), r->attempts,
		    r->notify & QUEUE_NOTIFY_NEVER ? "NEVER" : "",
		    r->notify & QUEUE_NOTIFY_SUCCESS ? "SUCCESS," : "",
		    r->notify & QUEUE_NOTIFY_FAILURE ? "FAILURE," : "",
		    r->notify & QUEUE_NOTIFY_DELAY ? "DELAY," : "");
		if (r->orcpt)
			printf(" orcpt=%s", relayctl_esc(r->orcpt, buf, sizeof buf));
		printf("\n");
		if (r->last_reply)
			printf("  last: %s%s%s\n", relayctl_esc(r->last_reply, buf, sizeof buf),
			    r->last_relay ? " from " : "", r->last_relay ? relayctl_esc(r->last_relay, buf2,
			    sizeof buf2) : "");
		const char *hint = relayctl_hint(conf, r->last_reply);
		if (hint)
			printf("  hint: %s\n", hint);
		print_history(hist, &at, (uint32_t)i);
	}
	queue_envelope_free(env);
	queue_envelope_free(hist);
	if (body) {
		printf("\n");
		fflush(stdout);
		if (queue_read_body(q, id, print_body, NULL) < 0) {
			fprintf(stderr, "relayctl: %s: body missing\n", id);
			return 1;
		}
	}
	return 0;
}


/* qshape's buckets: minutes in the queue, each twice the one before. */
static const unsigned bucket_min[] = { 5, 10, 20, 40, 80, 160, 320, 640, 1280 };
#define NBUCKETS (sizeof bucket_min / sizeof bucket_min[0] + 1)

struct shape_row {
	char key[256];
	unsigned total, b[NBUCKETS];
};

struct shape {
	const struct config *conf;
	const char *by;
	struct shape_row *rows;
	size_t n, cap;
	time_t now;
	int failed;
};

static struct shape_row *shape_row(struct shape *sh, const char *key)
{
	for (size_t i = 0; i < sh->n; i++)
		if (strcmp(sh->rows[i].key, key) == 0)
			return &sh->rows[i];
	if (sh->n == sh->cap) {
		size_t cap = sh->cap ? sh->cap * 2 : 16;
		struct shape_row *grown = reallocarray(sh->rows, cap, sizeof *grown);
		if (!grown)
			return NULL;
		sh->rows = grown;
		sh->cap = cap;
	}
	struct shape_row *row = &sh->rows[sh->n++];
	memset(row, 0, sizeof *row);
	snprintf(row->key, sizeof row->key, "%s", key);
	return row;
}

static int shape_one(void *arg, const struct queue_envelope *env)
{
	struct shape *sh = arg;
	double age = difftime(sh->now, (time_t)env->arrival) / 60;
	size_t b = 0;

	while (b < NBUCKETS - 1 && age > bucket_min[b])
		b++;
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		const char *key, *at;
		char buf[256];
		if (r->state != QUEUE_RCPT_PENDING)
			continue;
		if (strcmp(sh->by, "sender") == 0) {
			key = env->sender[0] ? env->sender : "<>";
		} else if (strcmp(sh->by, "upstream") == 0) {
			const struct conf_route *route = routes_find(sh->conf, r->addr, env->sender);
			key = route ? sh->conf->upstreams[route->upstreams[0]].name : "(no route)";
		} else {
			at = strrchr(r->addr, '@');
			key = at ? at + 1 : r->addr;
		}
		struct shape_row *row = shape_row(sh, relayctl_esc(key, buf, sizeof buf));
		if (!row) {
			sh->failed = 1;
			return 1;
		}
		row->total++;
		row->b[b]++;
	}
	return 0;
}

static int by_total(const void *a, const void *b)
{
	const struct shape_row *x = a, *y = b;
	return x->total != y->total ? (x->total < y->total ? 1 : -1) : strcmp(x->key, y->key);
}

static int print_total(void *arg, const struct queue_total *t)
{
	char name[256];
	int *first = arg;

	if (*first) {
		/* Attempts per recipient since the queue was made, as the log counts them. */
		printf("\n%-32s %10s %10s %10s %10s\n", "upstream", "sent", "deferred", "bounced",
		    "failover");
		*first = 0;
	}
	printf("%-32.32s %10llu %10llu %10llu %10llu\n", relayctl_esc(t->name, name, sizeof name),
	    (unsigned long long)t->sent, (unsigned long long)t->deferred,
	    (unsigned long long)t->bounced, (unsigned long long)t->failover);
	return 0;
}

int relayctl_stats(struct queue *q, const struct config *conf, const char *by)
{
	int first = 1;
	struct shape sh = { .conf = conf, .by = by, .now = time(NULL) };
	struct shape_row all = { "TOTAL", 0, { 0 } };

	if (queue_walk(q, shape_one, &sh) < 0 || sh.failed) {
		fprintf(stderr, "relayctl: cannot read the queue\n");
		free(sh.rows);
		return 1;
	}
	if (sh.n)
		qsort(sh.rows, sh.n, sizeof *sh.rows, by_total);
	for (size_t i = 0; i < sh.n; i++) {
		all.total += sh.rows[i].total;
		for (size_t b = 0; b < NBUCKETS; b++)
			all.b[b] += sh.rows[i].b[b];
	}
	/* Pending recipients by age in minutes, as Postfix's qshape shows them. */
	printf("%-32s %6s", by, "T");
	for (size_t b = 0; b < NBUCKETS - 1; b++)
		printf(" %5u", bucket_min[b]);
	printf(" %5u+\n", bucket_min[NBUCKETS - 2]);
	for (size_t i = 0; i <= sh.n; i++) {
		const struct shape_row *row = i == 0 ? &all : &sh.rows[i - 1];
		printf("%-32.32s %6u", row->key, row->total);
		for (size_t b = 0; b < NBUCKETS; b++)
			printf(" %5u", row->b[b]);
		printf("\n");
	}
	free(sh.rows);
	if (queue_totals(q, print_total, &first) < 0) {
		fprintf(stderr, "relayctl: cannot read the delivery totals\n");
		return 1;
	}
	return 0;
}
