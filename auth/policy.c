/*
 * policy — what `relayctl policy WHO` prints: for a login or a client
 * address, the sender rules and rate limits that apply to it and, from the
 * running relayd's counters, how much it sent in each window.  The daemon
 * writes it for its control socket; relayctl writes it from the file alone
 * (without counts) when relayd does not run.
 */
#include "auth/auth.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define POLICY_WHO_MAX	   255	/* a login name, or an address */
#define POLICY_SENDERS_MAX 50	/* sender_login entries listed for one login */

static const char *unit(unsigned window)
{
	return window == 60 ? "minute" : "hour";
}

/* "45s", "12m 5s", "1h 2m": how long until the window has room. */
static const char *span(unsigned s, char *buf, size_t len)
{
	if (s >= 3600)
		snprintf(buf, len, "%uh %um", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, len, "%um %us", s / 60, s % 60);
	else
		snprintf(buf, len, "%us", s);
	return buf;
}

/* "5 in the last hour, 1 in a transaction now, full: room in 12m 3s" after "limit_user 5/hour: ". */
static void counts(FILE *out, struct auth_limits *l, enum auth_limit which, int by_user,
    const char *key, const struct conf_rate_limit *lim, const char *what, time_t now)
{
	if (!l) {
		fprintf(out, "\n");
		return;
	}
	struct auth_rate *r = auth_limits_counter(l, which, by_user);
	unsigned window = auth_rate_window(r);
	unsigned n = auth_rate_count(r, key, now), held = auth_rate_reserved(r, key);
	char wait[32];

	fprintf(out, "%s%u %s%s in the last %s", lim->count ? ": " : " (", n, what,
	    n == 1 ? "" : "s", unit(window));
	if (held)
		fprintf(out, ", %u in transactions now", held);
	if (lim->count && (unsigned long long)n + held >= lim->count)
		fprintf(out, "; full%s%s", n ? ", room again in " : "",
		    n ? span(auth_rate_wait(r, key, now), wait, sizeof wait) : "");
	fprintf(out, "%s\n", lim->count ? "" : ")");
}

static void limit_line(FILE *out, const char *name, const struct conf_rate_limit *lim,
    const char *extra)
{
	if (lim->count)
		fprintf(out, "  %s %u/%s%s", name, lim->count, unit(lim->window), extra);
	else
		fprintf(out, "  %s: not set", name);
}

static void deny_sender(FILE *out, const struct config *conf)
{
	int inline_ = 0, file = 0;

	for (size_t i = 0; i < conf->ndeny_sender; i++) {
		if (conf->deny_sender[i].file)
			file = 1;
		else
			inline_ = 1;
	}
	if (conf->ndeny_sender == 0) {
		fprintf(out, "  deny_sender: none\n");
		return;
	}
	fprintf(out, "  deny_sender: %zu entr%s (%s%s%s): refused to every client\n",
	    conf->ndeny_sender, conf->ndeny_sender == 1 ? "y" : "ies",
	    inline_ ? conf->path : "", inline_ && file ? ", " : "",
	    file ? conf->deny_sender_file : "");
}

static void sender_login(FILE *out, const struct config *conf, const char *user)
{
	const struct conf_sender_login *logins[2];
	size_t n = auth_sender_logins(conf, user, logins), shown = 0, total = 0;

	if (n == 0) {
		fprintf(out, "  sender_login: no entry for %s; sender_login_strict %s: %s\n", user,
		    conf->sender_login_strict ? "yes" : "no", conf->sender_login_strict ?
		    "may use no sender (but <>)" : "may use any sender deny_sender allows");
		return;
	}
	for (size_t i = 0; i < n; i++)
		total += logins[i]->nsenders;
	fprintf(out, "  sender_login: %s may use %zu sender%s (others: 553 5.7.1):\n", user,
	    total, total == 1 ? "" : "s");
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < logins[i]->nsenders && shown < POLICY_SENDERS_MAX; j++) {
			const struct conf_sender_rule *r = &logins[i]->senders[j];
			fprintf(out, "    %s (%s:%d)\n", r->address, r->file ? r->file : conf->path,
			    r->line);
			shown++;
		}
	if (total > shown)
		fprintf(out, "    ... and %zu more\n", total - shown);
}

/* The first network of list that holds sa, as text; NULL when none does. */
static const char *network(const struct conf_cidr *list, size_t n, const struct sockaddr *sa,
    char *buf, size_t len)
{
	for (size_t i = 0; i < n; i++) {
		if (!auth_cidr_match(&list[i], sa))
			continue;
		char addr[INET6_ADDRSTRLEN];
		inet_ntop(list[i].family, list[i].addr, addr, sizeof addr);
		snprintf(buf, len, "%s/%u", addr, list[i].prefix);
		return buf;
	}
	return NULL;
}

static void describe_address(FILE *out, const struct config *conf, struct auth_limits *l,
    const struct sockaddr *sa, const char *addr, time_t now)
{
	char net[INET6_ADDRSTRLEN + 8], key[AUTH_CLIENT_KEY_MAX];
	int exempt = auth_limit_exempt(conf, sa);

	auth_client_key(sa, key, sizeof key);
	if (strcmp(key, addr) == 0)
		fprintf(out, "client address %s\n", addr);
	else	/* an IPv6 address: counted with the rest of its /64 */
		fprintf(out, "client address %s (counted as %s)\n", addr, key);
	if (network(conf->allow, conf->nallow, sa, net, sizeof net))
		fprintf(out, "  allow %s: relays without logging in\n", net);
	else
		fprintf(out, "  not in allow: relays only after logging in%s\n",
		    conf->auth_sasldb.path || conf->auth_saslauthd.path ? "" :
		    " (no AUTH backend: never)");
	if (network(conf->limit_exempt, conf->nlimit_exempt, sa, net, sizeof net))
		fprintf(out, "  limit_exempt %s: limit_client, limit_rcpt and "
		    "max_connections_per_client do not apply\n", net);
	fprintf(out, "sender rules\n");
	deny_sender(out, conf);
	fprintf(out, "  sender_login: applies to logins (relayctl policy USER), not to addresses\n");
	fprintf(out, "limits%s\n", l ? "" : " (relayd is not running: no counts)");
	const char *ex = exempt ? " (exempt)" : "";
	limit_line(out, "limit_client", &conf->limit_client, ex);
	counts(out, l, AUTH_LIMIT_CLIENT, 0, key, &conf->limit_client, "message", now);
	limit_line(out, "limit_rcpt", &conf->limit_rcpt, exempt ? " (exempt without a login)" :
	    " (without a login)");
	counts(out, l, AUTH_LIMIT_RCPT, 0, key, &conf->limit_rcpt, "recipient", now);
	if (conf->max_connections_per_client)
		fprintf(out, "  max_connections_per_client %u%s", conf->max_connections_per_client,
		    ex);
	else
		fprintf(out, "  max_connections_per_client: not set");
	if (l)
		fprintf(out, "%s%u open now%s\n", conf->max_connections_per_client ? ": " : " (",
		    auth_limits_connections(l, key), conf->max_connections_per_client ? "" : ")");
	else
		fprintf(out, "\n");
	fprintf(out, "  limit_user: per login (relayctl policy USER)\n");
}

static void describe_user(FILE *out, const struct config *conf, struct auth_limits *l,
    const char *user, time_t now)
{
	char key[AUTH_RATE_KEY_MAX];

	auth_limit_user_key(conf, user, key, sizeof key);
	fprintf(out, "login %s (counted as %s, the same login as %s@%s)\n", user, key, key,
	    conf->hostname);
	if (!conf->auth_sasldb.path && !conf->auth_saslauthd.path)
		fprintf(out, "  no AUTH backend (auth_sasldb, auth_saslauthd): nobody logs in\n");
	fprintf(out, "sender rules\n");
	deny_sender(out, conf);
	sender_login(out, conf, user);
	fprintf(out, "limits%s\n", l ? "" : " (relayd is not running: no counts)");
	limit_line(out, "limit_user", &conf->limit_user, "");
	counts(out, l, AUTH_LIMIT_USER, 1, key, &conf->limit_user, "message", now);
	limit_line(out, "limit_rcpt", &conf->limit_rcpt, "");
	counts(out, l, AUTH_LIMIT_RCPT, 1, key, &conf->limit_rcpt, "recipient", now);
	fprintf(out, "  limit_client, max_connections_per_client: per address "
	    "(relayctl policy ADDRESS)\n");
}

int auth_policy_describe(FILE *out, const struct config *conf, struct auth_limits *l,
    const char *who, time_t now)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	char addr[INET6_ADDRSTRLEN];

	if (inet_pton(AF_INET, who, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
	} else if (inet_pton(AF_INET6, who, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {	/* as sessions name it */
			struct in_addr v4;
			memcpy(&v4, in6->sin6_addr.s6_addr + 12, sizeof v4);
			memset(&ss, 0, sizeof ss);
			in->sin_family = AF_INET;
			in->sin_addr = v4;
		}
	} else {
		size_t len = strlen(who);
		int ok = len > 0 && len <= POLICY_WHO_MAX;
		for (const unsigned char *c = (const unsigned char *)who; ok && *c; c++)
			ok = *c > ' ' && *c < 0x7f;
		if (!ok) {
			fprintf(out, "not a login name or an IP address\n");
			return -1;
		}
		describe_user(out, conf, l, who, now);
		return 0;
	}
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &in->sin_addr, addr, sizeof addr);
	else
		inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof addr);
	describe_address(out, conf, l, (const struct sockaddr *)&ss, addr, now);
	return 0;
}
