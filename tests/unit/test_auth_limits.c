/*
 * test_auth_limits — the rate limits as a session meets them, on a fake
 * clock: limit_user and limit_client at MAIL FROM, limit_rcpt at RCPT TO
 * (per login, else per address), what a committed or an abandoned
 * transaction costs, limit_exempt, one login under its several names,
 * max_connections_per_client, and a reload that changes a limit.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "tests/unit/check.h"
#include "tests/unit/conf_helpers.h"

#define T0 ((time_t)1000 * 3600)

/* One whole message: MAIL, nrcpts RCPTs, committed; the limit that stopped it, if any. */
static enum auth_limit message(struct auth_limits *l, const struct config *c, const char *user,
    const char *client, int exempt, unsigned nrcpts, time_t now)
{
	struct auth_limit_hold h = { 0 };
	struct auth_limit_over over;
	enum auth_limit r = auth_limits_mail(l, c, &h, user, client, exempt, now, &over);
	for (unsigned i = 0; r == AUTH_LIMIT_OK && i < nrcpts; i++)
		r = auth_limits_rcpt(l, c, &h, now, &over);
	if (h.rcpts)
		auth_limits_commit(l, &h, h.rcpts, now);
	else
		auth_limits_release(l, &h, now);
	return r;
}

static void test_limit_user_at_mail(void)
{
	struct config *c = parse_ok("t", "hostname relay.test\nallow ::1\nlimit_user 2/hour\n");
	struct auth_limits *l = c ? auth_limits_new(c, 100) : NULL;
	struct auth_limit_hold h = { 0 };
	struct auth_limit_over over;

	CHECK(l != NULL);
	if (!l) {
		conf_free(c);
		return;
	}
	CHECK(message(l, c, "bob", "192.0.2.1", 0, 1, T0) == AUTH_LIMIT_OK);
	CHECK(message(l, c, "bob", "192.0.2.2", 0, 1, T0 + 60) == AUTH_LIMIT_OK);
	CHECK(auth_limits_mail(l, c, &h, "bob", "192.0.2.3", 0, T0 + 120, &over) ==
	    AUTH_LIMIT_USER);
	CHECK(h.message == 0 && h.rcpts == 0);		/* a refusal holds nothing */
	CHECK_STR(over.name, "limit_user");
	CHECK(over.limit == 2 && over.window == 3600 && over.count == 2 && over.reserved == 0);
	CHECK(over.by_user == 1 && over.wait == 3660 - 120);
	/* Another login, and a client without one, are not bob. */
	CHECK(message(l, c, "carol", "192.0.2.3", 0, 1, T0 + 120) == AUTH_LIMIT_OK);
	CHECK(message(l, c, NULL, "192.0.2.3", 0, 1, T0 + 120) == AUTH_LIMIT_OK);
	/* An hour (and a granule) after the first, bob has room for one again. */
	CHECK(message(l, c, "bob", "192.0.2.1", 0, 1, T0 + 3659) == AUTH_LIMIT_USER);
	CHECK(message(l, c, "bob", "192.0.2.1", 0, 1, T0 + 3660) == AUTH_LIMIT_OK);
	CHECK(message(l, c, "bob", "192.0.2.1", 0, 1, T0 + 3660) == AUTH_LIMIT_USER);
	auth_limits_free(l);
	conf_free(c);
}

static void test_one_login_under_its_names(void)
{
	struct config *c = parse_ok("t", "hostname Relay.Test\nallow ::1\nlimit_user 3/hour\n");
	struct auth_limits *l = c ? auth_limits_new(c, 100) : NULL;
	char key[AUTH_RATE_KEY_MAX];

	CHECK(l != NULL);
	if (!l) {
		conf_free(c);
		return;
	}
	CHECK_STR(auth_limit_user_key(c, "Bob@relay.test", key, sizeof key), "bob");
	CHECK_STR(auth_limit_user_key(c, "bob@other.example", key, sizeof key),
	    "bob@other.example");
	CHECK_STR(auth_limit_user_key(c, "x@y@RELAY.TEST", key, sizeof key), "x@y");
	CHECK_STR(auth_limit_user_key(c, "abcdef", key, 4), "abc");
	CHECK(message(l, c, "bob", "192.0.2.1", 0, 1, T0) == AUTH_LIMIT_OK);
	CHECK(message(l, c, "Bob@Relay.Test", "192.0.2.1", 0, 1, T0) == AUTH_LIMIT_OK);
	CHECK(message(l, c, "BOB", "192.0.2.1", 0, 1, T0) == AUTH_LIMIT_OK);
	CHECK(message(l, c, "bob@relay.test", "192.0.2.1", 0, 1, T0) == AUTH_LIMIT_USER);
	CHECK(message(l, c, "bob@elsewhere.example", "192.0.2.1", 0, 1, T0) == AUTH_LIMIT_OK);
	auth_limits_free(l);
	conf_free(c);
}

static void test_limit_client_counts_every_message_from_the_address(void)
{
	struct config *c = parse_ok("t", "allow ::1\nlimit_client 3/minute\n"
	    "limit_exempt 192.0.2.0/24\n");
	struct auth_limits *l = c ? auth_limits_new(c, 100) : NULL;
	struct auth_limit_hold h = { 0 };
	struct auth_limit_over over;

	CHECK(l != NULL);
	if (!l) {
		conf_free(c);
		return;
	}
	CHECK(message(l, c, NULL, "2001:db8::7", 0, 1, T0) == AUTH_LIMIT_OK);
	CHECK(message(l, c, "bob", "2001:db8::7", 0, 1, T0) == AUTH_LIMIT_OK);
	CHECK(message(l, c, "carol", "2001:db8::7", 0, 1, T0) == AUTH_LIMIT_OK);
	CHECK(auth_limits_mail(l, c, &h, "dave", "2001:db8::7", 0, T0 + 59, &over) ==
	    AUTH_LIMIT_CLIENT);
	CHECK_STR(over.name, "limit_client");
	CHECK(over.count == 3 && over.limit == 3 && over.window == 60 && over.by_user == 0);
	CHECK(over.wait == 2);
	/* A refused MAIL reserved nothing for dave either. */
	CHECK(auth_rate_reserved(auth_limits_counter(l, AUTH_LIMIT_USER, 1), "dave") == 0);
	CHECK(message(l, c, NULL, "2001:db8::7", 0, 1, T0 + 61) == AUTH_LIMIT_OK);
	/* Exempt addresses are counted, never held back. */
	for (int i = 0; i < 10; i++)
		CHECK(message(l, c, NULL, "192.0.2.9", 1, 1, T0) == AUTH_LIMIT_OK);
	CHECK(auth_rate_count(auth_limits_counter(l, AUTH_LIMIT_CLIENT, 0), "192.0.2.9", T0) ==
	    10);
	auth_limits_free(l);
	conf_free(c);
}

static void test_open_transactions_hold_room(void)
{
	struct config *c = parse_ok("t", "allow ::1\nlimit_user 2/hour\n");
	struct auth_limits *l = c ? auth_limits_new(c, 100) : NULL;
	struct auth_limit_hold a = { 0 }, b = { 0 }, x = { 0 };
	struct auth_limit_over over;

	CHECK(l != NULL);
	if (!l) {
		conf_free(c);
		return;
	}
	/* Two sessions of bob at MAIL at once: a third must wait… */
	CHECK(auth_limits_mail(l, c, &a, "bob", "192.0.2.1", 0, T0, &over) == AUTH_LIMIT_OK);
	CHECK(auth_limits_mail(l, c, &b, "bob", "192.0.2.2", 0, T0, &over) == AUTH_LIMIT_OK);
	CHECK(auth_limits_mail(l, c, &x, "bob", "192.0.2.3", 0, T0, &over) == AUTH_LIMIT_USER);
	CHECK(over.count == 0 && over.reserved == 2);
	/* …until one gives up (RSET, QUIT, a lost connection): that cost nothing. */
	auth_limits_release(l, &b, T0 + 1);
	CHECK(b.message == 0);
	CHECK(auth_limits_mail(l, c, &x, "bob", "192.0.2.3", 0, T0 + 1, &over) == AUTH_LIMIT_OK);
	CHECK(auth_limits_rcpt(l, c, &a, T0 + 2, &over) == AUTH_LIMIT_OK);
	auth_limits_commit(l, &a, 1, T0 + 2);
	CHECK(a.message == 0 && a.rcpts == 0);
	auth_limits_commit(l, &x, 0, T0 + 3);
	CHECK(auth_rate_count(auth_limits_counter(l, AUTH_LIMIT_USER, 1), "bob", T0 + 3) == 2);
	CHECK(auth_rate_reserved(auth_limits_counter(l, AUTH_LIMIT_USER, 1), "bob") == 0);
	CHECK(auth_rate_reserved(auth_limits_counter(l, AUTH_LIMIT_CLIENT, 0), "192.0.2.2") == 0);
	/* A second MAIL on the same hold gives the first's reservation back. */
	CHECK(message(l, c, "carol", "192.0.2.1", 0, 0, T0) == AUTH_LIMIT_OK);
	struct auth_limit_hold h = { 0 };
	CHECK(auth_limits_mail(l, c, &h, "carol", "192.0.2.1", 0, T0, &over) == AUTH_LIMIT_OK);
	CHECK(auth_limits_mail(l, c, &h, "carol", "192.0.2.1", 0, T0, &over) == AUTH_LIMIT_OK);
	CHECK(auth_rate_reserved(auth_limits_counter(l, AUTH_LIMIT_USER, 1), "carol") == 1);
	auth_limits_release(l, &h, T0);
	auth_limits_free(l);
	conf_free(c);
}

static void test_limit_rcpt_per_login_else_per_address(void)
{
	struct config *c = parse_ok("t", "allow ::1\nlimit_rcpt 5/hour\nlimit_exempt 10.0.0.0/8\n");
	struct auth_limits *l = c ? auth_limits_new(c, 100) : NULL;
	struct auth_limit_hold h = { 0 };
	struct auth_limit_over over;

	CHECK(l != NULL);
	if (!l) {
		conf_free(c);
		return;
	}
	/* Three recipients committed; a message of three more gets two of them. */
	CHECK(message(l, c, "bob", "192.0.2.1", 0, 3, T0) == AUTH_LIMIT_OK);
	CHECK(auth_limits_mail(l, c, &h, "bob", "192.0.2.2", 0, T0, &over) == AUTH_LIMIT_OK);
	CHECK(auth_limits_rcpt(l, c, &h, T0, &over) == AUTH_LIMIT_OK);
	CHECK(auth_limits_rcpt(l, c, &h, T0, &over) == AUTH_LIMIT_OK);
	CHECK(auth_limits_rcpt(l, c, &h, T0, &over) == AUTH_LIMIT_RCPT);
	CHECK_STR(over.name, "limit_rcpt");
	CHECK(over.by_user == 1 && over.count == 3 && over.reserved == 2 && over.limit == 5);
	CHECK(h.rcpts == 2);
	auth_limits_commit(l, &h, 2, T0 + 1);
	CHECK(auth_rate_count(auth_limits_counter(l, AUTH_LIMIT_RCPT, 1), "bob", T0 + 1) == 5);
	/* Without a login they count per address, and bob's address is not bob. */
	CHECK(message(l, c, NULL, "192.0.2.1", 0, 5, T0) == AUTH_LIMIT_OK);
	CHECK(message(l, c, NULL, "192.0.2.1", 0, 1, T0) == AUTH_LIMIT_RCPT);
	/* An abandoned message gives its recipients back. */
	CHECK(message(l, c, NULL, "192.0.2.3", 0, 4, T0) == AUTH_LIMIT_OK);
	CHECK(auth_limits_mail(l, c, &h, NULL, "192.0.2.3", 0, T0, &over) == AUTH_LIMIT_OK);
	CHECK(auth_limits_rcpt(l, c, &h, T0, &over) == AUTH_LIMIT_OK);
	CHECK(auth_limits_rcpt(l, c, &h, T0, &over) == AUTH_LIMIT_RCPT);
	auth_limits_release(l, &h, T0);
	CHECK(message(l, c, NULL, "192.0.2.3", 0, 1, T0) == AUTH_LIMIT_OK);
	/* A message committed with fewer recipients than it reserved: the rest go back. */
	CHECK(auth_limits_mail(l, c, &h, NULL, "192.0.2.4", 0, T0, &over) == AUTH_LIMIT_OK);
	for (int i = 0; i < 3; i++)
		CHECK(auth_limits_rcpt(l, c, &h, T0, &over) == AUTH_LIMIT_OK);
	auth_limits_commit(l, &h, 1, T0);
	CHECK(auth_rate_count(auth_limits_counter(l, AUTH_LIMIT_RCPT, 0), "192.0.2.4", T0) == 1);
	CHECK(auth_rate_reserved(auth_limits_counter(l, AUTH_LIMIT_RCPT, 0), "192.0.2.4") == 0);
	/* An exempt address is free of it; a login from there is not. */
	CHECK(message(l, c, NULL, "10.1.1.1", 1, 50, T0) == AUTH_LIMIT_OK);
	CHECK(message(l, c, "carol", "10.1.1.1", 1, 5, T0) == AUTH_LIMIT_OK);
	CHECK(message(l, c, "carol", "10.1.1.1", 1, 1, T0) == AUTH_LIMIT_RCPT);
	auth_limits_free(l);
	conf_free(c);
}

static void test_exempt_networks(void)
{
	struct config *c = parse_ok("t", "allow ::1\nlimit_exempt 192.0.2.0/28 2001:db8::/64\n");
	struct sockaddr_in in = { .sin_family = AF_INET };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };

	if (!c)
		return;
	inet_pton(AF_INET, "192.0.2.15", &in.sin_addr);
	CHECK(auth_limit_exempt(c, (struct sockaddr *)&in) == 1);
	inet_pton(AF_INET, "192.0.2.16", &in.sin_addr);
	CHECK(auth_limit_exempt(c, (struct sockaddr *)&in) == 0);
	inet_pton(AF_INET6, "2001:db8::99", &in6.sin6_addr);
	CHECK(auth_limit_exempt(c, (struct sockaddr *)&in6) == 1);
	inet_pton(AF_INET6, "::ffff:192.0.2.1", &in6.sin6_addr);	/* mapped: the IPv4 */
	CHECK(auth_limit_exempt(c, (struct sockaddr *)&in6) == 1);
	inet_pton(AF_INET6, "2001:db8:1::1", &in6.sin6_addr);
	CHECK(auth_limit_exempt(c, (struct sockaddr *)&in6) == 0);
	conf_free(c);
}

static void test_max_connections_per_client(void)
{
	struct config *c = parse_ok("t", "allow ::1\nmax_connections_per_client 2\n");
	struct auth_limits *l = c ? auth_limits_new(c, 100) : NULL;
	struct auth_limit_over over;

	CHECK(l != NULL);
	if (!l) {
		conf_free(c);
		return;
	}
	CHECK(auth_limits_connect(l, c, "192.0.2.1", 0, &over) == AUTH_LIMIT_OK);
	CHECK(auth_limits_connect(l, c, "192.0.2.1", 0, &over) == AUTH_LIMIT_OK);
	CHECK(auth_limits_connect(l, c, "192.0.2.1", 0, &over) == AUTH_LIMIT_CONNECTIONS);
	CHECK_STR(over.name, "max_connections_per_client");
	CHECK(over.limit == 2 && over.count == 2);
	CHECK(auth_limits_connections(l, "192.0.2.1") == 2);	/* the refused one is not counted */
	CHECK(auth_limits_connect(l, c, "192.0.2.2", 0, &over) == AUTH_LIMIT_OK);
	auth_limits_disconnect(l, "192.0.2.1");
	CHECK(auth_limits_connect(l, c, "192.0.2.1", 0, &over) == AUTH_LIMIT_OK);
	for (int i = 0; i < 5; i++)			/* exempt: counted, never refused */
		CHECK(auth_limits_connect(l, c, "192.0.2.3", 1, &over) == AUTH_LIMIT_OK);
	CHECK(auth_limits_connections(l, "192.0.2.3") == 5);
	for (int i = 0; i < 5; i++)
		auth_limits_disconnect(l, "192.0.2.3");
	CHECK(auth_limits_connections(l, "192.0.2.3") == 0);
	auth_limits_disconnect(l, "192.0.2.3");		/* more than connected: harmless */
	auth_limits_disconnect(l, "198.51.100.1");
	auth_limits_free(l);			/* with 192.0.2.1 and .2 still open */
	conf_free(c);
}

static void test_reload_changes_a_limit_and_keeps_the_counts(void)
{
	struct config *c = parse_ok("t", "allow ::1\nlimit_user 3/hour\n");
	struct config *d = parse_ok("t", "allow ::1\nlimit_user 2/hour\n");
	struct config *e = parse_ok("t", "allow ::1\nlimit_user 10/minute\n");
	struct auth_limits *l = c ? auth_limits_new(c, 100) : NULL;

	CHECK(l && d && e);
	if (l && d && e) {
		CHECK(message(l, c, "bob", "192.0.2.1", 0, 1, T0) == AUTH_LIMIT_OK);
		CHECK(message(l, c, "bob", "192.0.2.1", 0, 1, T0) == AUTH_LIMIT_OK);
		auth_limits_configure(l, d, T0 + 10);		/* 3/hour → 2/hour */
		CHECK(message(l, d, "bob", "192.0.2.1", 0, 1, T0 + 10) == AUTH_LIMIT_USER);
		auth_limits_configure(l, e, T0 + 20);		/* → 10/minute: the two stay a minute */
		CHECK(auth_rate_count(auth_limits_counter(l, AUTH_LIMIT_USER, 1), "bob", T0 + 20)
		    == 2);
		CHECK(auth_rate_count(auth_limits_counter(l, AUTH_LIMIT_USER, 1), "bob", T0 + 81)
		    == 0);
		auth_limits_configure(l, c, T0 + 100);		/* no limit on rcpt: counted per hour */
		CHECK(auth_rate_window(auth_limits_counter(l, AUTH_LIMIT_RCPT, 1)) == 3600);
	}
	auth_limits_free(l);
	conf_free(c);
	conf_free(d);
	conf_free(e);
}

static void test_forgotten_counts_are_counted(void)
{
	struct config *c = parse_ok("t", "allow ::1\nlimit_user 1/hour\n");
	struct auth_limits *l = c ? auth_limits_new(c, 2) : NULL;

	CHECK(l != NULL);
	if (!l) {
		conf_free(c);
		return;
	}
	CHECK(message(l, c, "a", "192.0.2.1", 0, 1, T0) == AUTH_LIMIT_OK);
	CHECK(auth_limits_evicted(l) == 0);
	CHECK(message(l, c, "b", "192.0.2.1", 0, 1, T0) == AUTH_LIMIT_OK);
	CHECK(message(l, c, "c", "192.0.2.1", 0, 1, T0) == AUTH_LIMIT_OK);
	/* a's counts (messages and recipients) made room for c's: a starts afresh. */
	CHECK(auth_limits_evicted(l) == 2);
	CHECK(message(l, c, "a", "192.0.2.1", 0, 1, T0) == AUTH_LIMIT_OK);
	auth_limits_free(l);
	conf_free(c);
}

int main(void)
{
	TEST_CASE(test_limit_user_at_mail);
	TEST_CASE(test_one_login_under_its_names);
	TEST_CASE(test_limit_client_counts_every_message_from_the_address);
	TEST_CASE(test_open_transactions_hold_room);
	TEST_CASE(test_limit_rcpt_per_login_else_per_address);
	TEST_CASE(test_exempt_networks);
	TEST_CASE(test_max_connections_per_client);
	TEST_CASE(test_reload_changes_a_limit_and_keeps_the_counts);
	TEST_CASE(test_forgotten_counts_are_counted);
	return check_exit();
}
