/*
 * limits — the rate limits (DESIGN.md: auth owns how much who may send):
 * limit_user, limit_client and limit_rcpt on four sliding-window counters
 * (auth/rate.c: messages per login, per address; recipients per login, per
 * address), and max_connections_per_client on a count of open sessions per
 * address.  The SMTP session calls in at connect, MAIL FROM, RCPT TO, the
 * commit and the end of a transaction; see auth.h for when what counts.
 */
#include "auth/auth.h"

#include <ctype.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HOUR 3600

enum { USER_MESSAGES, CLIENT_MESSAGES, USER_RCPTS, CLIENT_RCPTS, COUNTERS };

/* Open sessions from one address; gone when it reaches 0. */
struct limit_conn {
	unsigned n;
	char addr[64];
};

struct auth_limits {
	struct auth_rate *rate[COUNTERS];
	void *conns;			/* tsearch() tree of struct limit_conn by addr */
};

/* The limit behind each counter. */
static const struct conf_rate_limit *limit_of(const struct config *conf, int counter)
{
	switch (counter) {
	case USER_MESSAGES: return &conf->limit_user;
	case CLIENT_MESSAGES: return &conf->limit_client;
	default: return &conf->limit_rcpt;
	}
}

/* Without a limit, counts are still kept (relayctl policy shows them) per hour. */
static unsigned window_of(const struct config *conf, int counter)
{
	const struct conf_rate_limit *lim = limit_of(conf, counter);
	return lim->count ? lim->window : HOUR;
}

struct auth_limits *auth_limits_new(const struct config *conf, size_t max_keys)
{
	struct auth_limits *l = calloc(1, sizeof *l);

	if (!l)
		return NULL;
	for (int i = 0; i < COUNTERS; i++)
		if (!(l->rate[i] = auth_rate_new(window_of(conf, i), max_keys))) {
			auth_limits_free(l);
			return NULL;
		}
	return l;
}

void auth_limits_free(struct auth_limits *l)
{
	if (!l)
		return;
	for (int i = 0; i < COUNTERS; i++)
		auth_rate_free(l->rate[i]);
	tdestroy(l->conns, free);
	free(l);
}

void auth_limits_configure(struct auth_limits *l, const struct config *conf, time_t now)
{
	for (int i = 0; i < COUNTERS; i++)
		auth_rate_set_window(l->rate[i], window_of(conf, i), now);
}

int auth_limit_exempt(const struct config *conf, const struct sockaddr *client)
{
	for (size_t i = 0; i < conf->nlimit_exempt; i++)
		if (auth_cidr_match(&conf->limit_exempt[i], client))
			return 1;
	return 0;
}

const char *auth_limit_user_key(const struct config *conf, const char *user, char *buf,
    size_t len)
{
	size_t n = strlen(user);
	const char *at = strrchr(user, '@');

	if (at && strcasecmp(at + 1, conf->hostname) == 0)
		n = (size_t)(at - user);
	if (n >= len)
		n = len - 1;
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)tolower((unsigned char)user[i]);
	buf[n] = '\0';
	return buf;
}

static void fill_over(struct auth_limit_over *over, struct auth_rate *r, const char *key,
    enum auth_limit which, const char *name, const struct conf_rate_limit *lim, int by_user,
    time_t now)
{
	memset(over, 0, sizeof *over);
	over->which = which;
	over->name = name;
	over->limit = lim->count;
	over->window = lim->window;
	over->count = auth_rate_count(r, key, now);
	over->reserved = auth_rate_reserved(r, key);
	over->wait = auth_rate_wait(r, key, now);
	over->by_user = by_user;
}

/* Room for one more under lim (always, when exempt or no limit)? */
static int room(struct auth_rate *r, const char *key, const struct conf_rate_limit *lim,
    int exempt, time_t now)
{
	if (exempt || lim->count == 0)
		return 1;
	return (unsigned long long)auth_rate_count(r, key, now) + auth_rate_reserved(r, key) <
	    lim->count;
}

enum auth_limit auth_limits_mail(struct auth_limits *l, const struct config *conf,
    struct auth_limit_hold *hold, const char *user, const char *client, int exempt,
    time_t now, struct auth_limit_over *over)
{
	auth_limits_release(l, hold, now);	/* a transaction left open by mistake */
	hold->has_user = user != NULL;
	hold->user[0] = '\0';
	if (user)
		auth_limit_user_key(conf, user, hold->user, sizeof hold->user);
	snprintf(hold->client, sizeof hold->client, "%s", client);
	hold->exempt = exempt;

	/* Both checked before either is reserved: a refusal holds nothing. */
	if (user && !room(l->rate[USER_MESSAGES], hold->user, &conf->limit_user, 0, now)) {
		fill_over(over, l->rate[USER_MESSAGES], hold->user, AUTH_LIMIT_USER, "limit_user",
		    &conf->limit_user, 1, now);
		return AUTH_LIMIT_USER;
	}
	if (!room(l->rate[CLIENT_MESSAGES], hold->client, &conf->limit_client, exempt, now)) {
		fill_over(over, l->rate[CLIENT_MESSAGES], hold->client, AUTH_LIMIT_CLIENT,
		    "limit_client", &conf->limit_client, 0, now);
		return AUTH_LIMIT_CLIENT;
	}
	if (user)
		auth_rate_reserve(l->rate[USER_MESSAGES], hold->user, 0, now);
	auth_rate_reserve(l->rate[CLIENT_MESSAGES], hold->client, 0, now);
	hold->message = 1;
	return AUTH_LIMIT_OK;
}

/* Recipients count per login, or per address for a client that did not log in. */
static struct auth_rate *rcpt_counter(struct auth_limits *l, const struct auth_limit_hold *h,
    const char **key)
{
	*key = h->has_user ? h->user : h->client;
	return l->rate[h->has_user ? USER_RCPTS : CLIENT_RCPTS];
}

enum auth_limit auth_limits_rcpt(struct auth_limits *l, const struct config *conf,
    struct auth_limit_hold *hold, time_t now, struct auth_limit_over *over)
{
	const char *key;
	struct auth_rate *r = rcpt_counter(l, hold, &key);
	int exempt = hold->exempt && !hold->has_user;	/* a login is never exempt */

	if (!room(r, key, &conf->limit_rcpt, exempt, now)) {
		fill_over(over, r, key, AUTH_LIMIT_RCPT, "limit_rcpt", &conf->limit_rcpt,
		    hold->has_user, now);
		return AUTH_LIMIT_RCPT;
	}
	auth_rate_reserve(r, key, 0, now);
	hold->rcpts++;
	return AUTH_LIMIT_OK;
}

void auth_limits_commit(struct auth_limits *l, struct auth_limit_hold *h, unsigned nrcpts,
    time_t now)
{
	const char *key;

	if (h->message) {
		if (h->has_user)
			auth_rate_commit(l->rate[USER_MESSAGES], h->user, 1, now);
		auth_rate_commit(l->rate[CLIENT_MESSAGES], h->client, 1, now);
	}
	struct auth_rate *r = rcpt_counter(l, h, &key);
	if (nrcpts)
		auth_rate_commit(r, key, nrcpts, now);
	if (h->rcpts > nrcpts)
		auth_rate_release(r, key, h->rcpts - nrcpts, now);
	h->message = 0;
	h->rcpts = 0;
}

void auth_limits_release(struct auth_limits *l, struct auth_limit_hold *h, time_t now)
{
	const char *key;

	if (h->message) {
		if (h->has_user)
			auth_rate_release(l->rate[USER_MESSAGES], h->user, 1, now);
		auth_rate_release(l->rate[CLIENT_MESSAGES], h->client, 1, now);
	}
	if (h->rcpts) {
		struct auth_rate *r = rcpt_counter(l, h, &key);	/* sets key: not in the call */
		auth_rate_release(r, key, h->rcpts, now);
	}
	h->message = 0;
	h->rcpts = 0;
}

static int conn_compare(const void *a, const void *b)
{
	return strcmp(((const struct limit_conn *)a)->addr, ((const struct limit_conn *)b)->addr);
}

static struct limit_conn *conn_find(struct auth_limits *l, const char *client)
{
	struct limit_conn probe;
	snprintf(probe.addr, sizeof probe.addr, "%s", client);
	void *found = tfind(&probe, &l->conns, conn_compare);
	return found ? *(struct limit_conn **)found : NULL;
}

enum auth_limit auth_limits_connect(struct auth_limits *l, const struct config *conf,
    const char *client, int exempt, struct auth_limit_over *over)
{
	struct limit_conn *c = conn_find(l, client);
	unsigned max = conf->max_connections_per_client;

	if (c && max && !exempt && c->n >= max) {
		memset(over, 0, sizeof *over);
		over->which = AUTH_LIMIT_CONNECTIONS;
		over->name = "max_connections_per_client";
		over->limit = max;
		over->count = c->n;
		return AUTH_LIMIT_CONNECTIONS;
	}
	if (!c) {
		if (!(c = calloc(1, sizeof *c)))
			return AUTH_LIMIT_OK;	/* not counted: disconnect finds nothing */
		snprintf(c->addr, sizeof c->addr, "%s", client);
		if (!tsearch(c, &l->conns, conn_compare)) {
			free(c);
			return AUTH_LIMIT_OK;
		}
	}
	c->n++;
	return AUTH_LIMIT_OK;
}

void auth_limits_disconnect(struct auth_limits *l, const char *client)
{
	struct limit_conn *c = conn_find(l, client);

	if (!c || --c->n > 0)
		return;
	tdelete(c, &l->conns, conn_compare);
	free(c);
}

unsigned auth_limits_connections(struct auth_limits *l, const char *client)
{
	struct limit_conn *c = conn_find(l, client);
	return c ? c->n : 0;
}

unsigned long long auth_limits_evicted(const struct auth_limits *l)
{
	unsigned long long n = 0;
	for (int i = 0; i < COUNTERS; i++)
		n += auth_rate_evicted(l->rate[i]);
	return n;
}

struct auth_rate *auth_limits_counter(struct auth_limits *l, enum auth_limit which,
    int by_user)
{
	switch (which) {
	case AUTH_LIMIT_USER: return l->rate[USER_MESSAGES];
	case AUTH_LIMIT_CLIENT: return l->rate[CLIENT_MESSAGES];
	case AUTH_LIMIT_RCPT: return l->rate[by_user ? USER_RCPTS : CLIENT_RCPTS];
	default: return NULL;
	}
}
