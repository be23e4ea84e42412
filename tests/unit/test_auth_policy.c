/*
 * test_auth_policy — what relayctl policy prints for a login and for an
 * address: the sender rules that apply, each limit (set or not) with its
 * count on a fake clock, and without counts when relayd does not run; an
 * IPv6 address counted with its /64.
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

static const char config[] =
    "hostname relay.test\n"
    "allow 127.0.0.0/8\n"
    "tls_cert /c.pem\ntls_key /k.pem\nauth_sasldb /etc/sasldb2\n"
    "sender_login bob bob@example.com\n"			/* line 6 */
    "sender_login bob@relay.test @bob.example\n"		/* line 7 */
    "deny_sender spam@example.com @spam.example\n"
    "limit_user 2/hour\n"
    "limit_client 10/minute\n"
    "limit_exempt 10.0.0.0/8\n";

/* What describe writes, in a string the caller frees; NULL when it returned -1. */
static char *describe(const struct config *c, struct auth_limits *l, const char *who,
    time_t now)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (!out)
		return NULL;
	int rc = auth_policy_describe(out, c, l, who, now);
	fclose(out);
	if (rc < 0) {
		CHECK_STR(text, "not a login name or an IP address\n");
		free(text);
		return NULL;
	}
	return text;
}

static void test_a_login(void)
{
	struct config *c = parse_ok("t", config);
	if (!c)
		return;
	char *text = describe(c, NULL, "Bob", T0);
	CHECK_STR(text,
	    "login Bob (counted as bob, the same login as bob@relay.test)\n"
	    "sender rules\n"
	    "  deny_sender: 2 entries (t): refused to every client\n"
	    "  sender_login: Bob may use 2 senders (others: 553 5.7.1):\n"
	    "    bob@example.com (t:6)\n"
	    "    @bob.example (t:7)\n"
	    "limits (relayd is not running: no counts)\n"
	    "  limit_user 2/hour\n"
	    "  limit_rcpt: not set\n"
	    "  limit_client, max_connections_per_client: per address (relayctl policy ADDRESS)\n");
	free(text);

	struct auth_limits *l = auth_limits_new(c, 10);
	struct auth_limit_hold h = { 0 };
	struct auth_limit_over over;
	for (int i = 0; i < 2; i++) {
		CHECK(auth_limits_mail(l, c, &h, "bob", "127.0.0.1", 0, T0, &over) == AUTH_LIMIT_OK);
		CHECK(auth_limits_rcpt(l, c, &h, T0, &over) == AUTH_LIMIT_OK);
		auth_limits_commit(l, &h, 1, T0);
	}
	text = describe(c, l, "carol", T0 + 600);
	CHECK(text && strstr(text, "  sender_login: no entry for carol; sender_login_strict no: "
	    "may use any sender deny_sender allows\n"));
	CHECK(text && strstr(text, "  limit_user 2/hour: 0 messages in the last hour\n"));
	free(text);
	text = describe(c, l, "bob@relay.test", T0 + 600);
	CHECK(text && strstr(text, "limits\n"
	    "  limit_user 2/hour: 2 messages in the last hour; full, room again in 51m 0s\n"
	    "  limit_rcpt: not set (2 recipients in the last hour)\n"));
	free(text);
	auth_limits_free(l);
	conf_free(c);
}

static void test_an_address(void)
{
	struct config *c = parse_ok("t", config);
	if (!c)
		return;
	struct auth_limits *l = auth_limits_new(c, 10);
	struct auth_limit_over over;
	CHECK(auth_limits_connect(l, c, "10.1.2.3", 1, &over) == AUTH_LIMIT_OK);
	char *text = describe(c, l, "::ffff:10.1.2.3", T0);
	CHECK_STR(text,
	    "client address 10.1.2.3\n"
	    "  not in allow: relays only after logging in\n"
	    "  limit_exempt 10.0.0.0/8: limit_client, limit_rcpt and max_connections_per_client "
	    "do not apply\n"
	    "sender rules\n"
	    "  deny_sender: 2 entries (t): refused to every client\n"
	    "  sender_login: applies to logins (relayctl policy USER), not to addresses\n"
	    "limits\n"
	    "  limit_client 10/minute (exempt): 0 messages in the last minute\n"
	    "  limit_rcpt: not set (0 recipients in the last hour)\n"
	    "  max_connections_per_client: not set (1 open now)\n"
	    "  limit_user: per login (relayctl policy USER)\n");
	free(text);
	text = describe(c, NULL, "127.0.0.9", T0);
	CHECK(text && strstr(text, "  allow 127.0.0.0/8: relays without logging in\n"));
	free(text);
	text = describe(c, NULL, "2001:DB8::1", T0);
	static const char v6[] = "client address 2001:db8::1 (counted as 2001:db8::/64)\n";
	CHECK(text && strncmp(text, v6, sizeof v6 - 1) == 0);
	free(text);
	auth_limits_disconnect(l, "10.1.2.3");
	auth_limits_free(l);
	conf_free(c);
}

/* The key of an address as a session would make it. */
static void key_of(const char *text, char *key)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, text, &in->sin_addr) == 1)
		in->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1)
		in6->sin6_family = AF_INET6;
	auth_client_key((const struct sockaddr *)&ss, key, AUTH_CLIENT_KEY_MAX);
}

/* IPv6 clients count per /64: a host cannot dodge a limit by changing address. */
static void test_an_ipv6_address_counts_its_64(void)
{
	static const struct { const char *addr, *key; } keys[] = {
		{ "192.0.2.1", "192.0.2.1" },
		{ "::ffff:192.0.2.1", "192.0.2.1" },
		{ "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64" },
		{ "2001:DB8:1:2::ffff", "2001:db8:1:2::/64" },
		{ "2001:db8:1:3::1", "2001:db8:1:3::/64" },
		{ "::1", "::/64" },
	};
	char key[AUTH_CLIENT_KEY_MAX];
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		key_of(keys[i].addr, key);
		CHECK_STR(key, keys[i].key);
	}

	struct config *c = parse_ok("t", config);
	if (!c)
		return;
	struct auth_limits *l = auth_limits_new(c, 10);
	struct auth_limit_over over;
	char a[AUTH_CLIENT_KEY_MAX], b[AUTH_CLIENT_KEY_MAX];
	key_of("2001:db8:1:2::10", a);
	key_of("2001:db8:1:2:ffff::20", b);
	CHECK(auth_limits_connect(l, c, a, 0, &over) == AUTH_LIMIT_OK);
	CHECK(auth_limits_connect(l, c, b, 0, &over) == AUTH_LIMIT_OK);
	char *text = describe(c, l, "2001:db8:1:2::30", T0);
	CHECK(text && strstr(text, "client address 2001:db8:1:2::30 (counted as "
	    "2001:db8:1:2::/64)\n") && strstr(text, "(2 open now)\n"));
	free(text);
	text = describe(c, l, "2001:db8:1:3::10", T0);
	CHECK(text && strstr(text, "(0 open now)\n"));
	free(text);
	auth_limits_disconnect(l, a);
	auth_limits_disconnect(l, b);
	auth_limits_free(l);
	conf_free(c);
}

static void test_neither_a_login_nor_an_address(void)
{
	static const char *const bad[] = { "", "two words", "tab\there", "\x1b[2J", "caf\xc3\xa9" };
	char long_name[300];
	struct config *c = parse_ok("t", config);
	if (!c)
		return;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK(describe(c, NULL, bad[i], T0) == NULL);
	memset(long_name, 'a', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = '\0';
	CHECK(describe(c, NULL, long_name, T0) == NULL);
	conf_free(c);
}

int main(void)
{
	TEST_CASE(test_a_login);
	TEST_CASE(test_an_address);
	TEST_CASE(test_an_ipv6_address_counts_its_64);
	TEST_CASE(test_neither_a_login_nor_an_address);
	return check_exit();
}
