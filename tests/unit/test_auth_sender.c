/*
 * test_auth_sender — the sender rules at MAIL FROM, one row per case: who
 * (a login, or nobody) sends as what, and what auth_sender_check() answers.
 * deny_sender before sender_login; addresses and user names without regard
 * to case; a quoted local part as its plain form; @domain for exactly that
 * domain; the null sender always; a U-label sender through
 * routes_address_ascii(), as the SMTP server calls it; a login of the
 * default realm under both its names.
 */
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"
#include "conf/conf.h"
#include "routes/routes.h"
#include "tests/unit/check.h"
#include "tests/unit/conf_helpers.h"

#define NROWS(a) (sizeof (a) / sizeof (a)[0])

#define RULES \
    "hostname relay.example\n" \
    "tls_cert /c.pem\ntls_key /k.pem\nauth_sasldb /etc/sasldb2\n" \
    "deny_sender spam@example.com @bad.example Mixed@Case.Example\n" \
    "deny_sender @xn--e1afmkfd.xn--p1ai\n"				/* @пример.рф */ \
    "sender_login alice alice@example.com @alice.example\n" \
    "sender_login Bob bob@example.com\n" \
    "sender_login bob bob.smith@example.org spam@example.com\n" \
    "sender_login dave@Relay.Example dave@example.com\n" \
    "sender_login dave @dave.example\n" \
    "sender_login erin@other.example erin@example.com\n"

static const char *result_name(enum auth_sender_result r)
{
	switch (r) {
	case AUTH_SENDER_OK: return "ok";
	case AUTH_SENDER_DENIED: return "denied";
	case AUTH_SENDER_NOT_OWNED: return "not owned";
	case AUTH_SENDER_NO_ENTRY: return "no entry";
	}
	return "?";
}

struct row {
	const char *user, *sender;
	enum auth_sender_result want;
	const char *rule;		/* the deny_sender entry that refused */
};

static void check_rows(const char *text, const struct row *rows, size_t n)
{
	struct config *c = parse_ok("t", text);

	if (!c)
		return;
	for (size_t i = 0; i < n; i++) {
		char ascii[1024];
		static const struct conf_sender_rule unset = { "(not reset)", NULL, 0 };
		const struct conf_sender_rule *rule = &unset;
		CHECK(routes_address_ascii(rows[i].sender, ascii, sizeof ascii) == 0);
		enum auth_sender_result got = auth_sender_check(c, rows[i].user, ascii, &rule);
		if (got != rows[i].want)
			fprintf(stderr, "  %s as <%s>: %s, want %s\n", rows[i].user ? rows[i].user :
			    "(nobody)", rows[i].sender, result_name(got), result_name(rows[i].want));
		CHECK(got == rows[i].want);
		CHECK_STR(rule ? rule->address : NULL, rows[i].rule);
	}
	conf_free(c);
}

static void test_deny_sender(void)
{
	static const struct row rows[] = {
		{ NULL, "", AUTH_SENDER_OK, NULL },
		{ NULL, "spam@example.com", AUTH_SENDER_DENIED, "spam@example.com" },
		{ NULL, "SPAM@Example.COM", AUTH_SENDER_DENIED, "spam@example.com" },
		{ NULL, "\"spam\"@example.com", AUTH_SENDER_DENIED, "spam@example.com" },
		{ NULL, "\"sp\\am\"@example.com", AUTH_SENDER_DENIED, "spam@example.com" },
		{ NULL, "mixed@CASE.example", AUTH_SENDER_DENIED, "mixed@case.example" },
		{ NULL, "anyone@bad.example", AUTH_SENDER_DENIED, "@bad.example" },
		{ NULL, "anyone@BAD.EXAMPLE.", AUTH_SENDER_DENIED, "@bad.example" },
		{ NULL, "x@пример.рф", AUTH_SENDER_DENIED, "@xn--e1afmkfd.xn--p1ai" },
		{ NULL, "x@ПРИМЕР.РФ", AUTH_SENDER_DENIED, "@xn--e1afmkfd.xn--p1ai" },
		{ NULL, "x@xn--e1afmkfd.xn--p1ai", AUTH_SENDER_DENIED, "@xn--e1afmkfd.xn--p1ai" },
		/* qmail's @domain is that domain only; a near miss is no match. */
		{ NULL, "anyone@sub.bad.example", AUTH_SENDER_OK, NULL },
		{ NULL, "anyone@notbad.example", AUTH_SENDER_OK, NULL },
		{ NULL, "xspam@example.com", AUTH_SENDER_OK, NULL },
		{ NULL, "spam@example.com.evil", AUTH_SENDER_OK, NULL },
		{ NULL, "\"spam@example.com\"@good.example", AUTH_SENDER_OK, NULL },
		{ NULL, "bad.example", AUTH_SENDER_OK, NULL },
		{ NULL, "postmaster", AUTH_SENDER_OK, NULL },
		/* It refuses logins too, even one that owns the address. */
		{ "bob", "spam@example.com", AUTH_SENDER_DENIED, "spam@example.com" },
		{ "alice", "x@bad.example", AUTH_SENDER_DENIED, "@bad.example" },
	};
	check_rows(RULES, rows, NROWS(rows));
}

static void test_sender_login(void)
{
	static const struct row rows[] = {
		{ "alice", "alice@example.com", AUTH_SENDER_OK, NULL },
		{ "alice", "Alice@EXAMPLE.com", AUTH_SENDER_OK, NULL },
		{ "alice", "\"alice\"@example.com", AUTH_SENDER_OK, NULL },
		{ "alice", "shop@alice.example", AUTH_SENDER_OK, NULL },
		{ "ALICE", "alice@example.com", AUTH_SENDER_OK, NULL },
		{ "alice", "", AUTH_SENDER_OK, NULL },
		{ "alice", "bob@example.com", AUTH_SENDER_NOT_OWNED, NULL },
		{ "alice", "alice@sub.alice.example", AUTH_SENDER_NOT_OWNED, NULL },
		{ "alice", "alice@example.com@evil.example", AUTH_SENDER_NOT_OWNED, NULL },
		{ "alice", "alice", AUTH_SENDER_NOT_OWNED, NULL },
		{ "alic", "bob@example.com", AUTH_SENDER_OK, NULL },	/* another user: no entry */
		/* Bob and bob are one user, with both statements' addresses. */
		{ "bob", "bob@example.com", AUTH_SENDER_OK, NULL },
		{ "BOB", "bob.smith@example.org", AUTH_SENDER_OK, NULL },
		{ "bob", "alice@example.com", AUTH_SENDER_NOT_OWNED, NULL },
		/*
		 * Cyrus says "bob@relay.example" for bob of the default realm (the
		 * hostname), saslauthd may say "bob": entries for either are the login's.
		 */
		{ "bob@relay.example", "bob@example.com", AUTH_SENDER_OK, NULL },
		{ "Bob@RELAY.example", "alice@example.com", AUTH_SENDER_NOT_OWNED, NULL },
		{ "dave", "dave@example.com", AUTH_SENDER_OK, NULL },
		{ "dave", "x@dave.example", AUTH_SENDER_OK, NULL },
		{ "dave@relay.example", "dave@example.com", AUTH_SENDER_OK, NULL },
		{ "dave@relay.example", "x@dave.example", AUTH_SENDER_OK, NULL },
		{ "dave@relay.example", "bob@example.com", AUTH_SENDER_NOT_OWNED, NULL },
		/* Another realm is another user. */
		{ "bob@other.example", "alice@example.com", AUTH_SENDER_OK, NULL },
		{ "erin@other.example", "bob@example.com", AUTH_SENDER_NOT_OWNED, NULL },
		{ "erin", "bob@example.com", AUTH_SENDER_OK, NULL },
		{ "erin@relay.example", "bob@example.com", AUTH_SENDER_OK, NULL },
		/* Without an entry, a login sends as anyone (not strict); nobody is never held. */
		{ "carol", "alice@example.com", AUTH_SENDER_OK, NULL },
		{ NULL, "alice@example.com", AUTH_SENDER_OK, NULL },
	};
	check_rows(RULES, rows, NROWS(rows));

	static const struct row strict[] = {
		{ "carol", "carol@example.com", AUTH_SENDER_NO_ENTRY, NULL },
		{ "carol@relay.example", "carol@example.com", AUTH_SENDER_NO_ENTRY, NULL },
		{ "bob@other.example", "bob@example.com", AUTH_SENDER_NO_ENTRY, NULL },
		{ "bob@relay.example", "bob@example.com", AUTH_SENDER_OK, NULL },
		{ "carol", "", AUTH_SENDER_OK, NULL },
		{ "carol", "spam@example.com", AUTH_SENDER_DENIED, "spam@example.com" },
		{ "alice", "alice@example.com", AUTH_SENDER_OK, NULL },
		{ "alice", "bob@example.com", AUTH_SENDER_NOT_OWNED, NULL },
		{ NULL, "carol@example.com", AUTH_SENDER_OK, NULL },
	};
	check_rows(RULES "sender_login_strict yes\n", strict, NROWS(strict));
}

/*
 * No rules: everything passes.  A sender longer than relayd takes (512 bytes)
 * compares by its @domain alone: no address entry is that long.
 */
static void test_no_rules_and_long_senders(void)
{
	static const struct row none[] = {
		{ NULL, "spam@example.com", AUTH_SENDER_OK, NULL },
		{ "alice", "bob@example.com", AUTH_SENDER_OK, NULL },
	};
	check_rows("allow ::1\n", none, NROWS(none));

	struct config *c = parse_ok("t", RULES);
	if (!c)
		return;
	static char sender[2000];
	const struct conf_sender_rule *rule;
	static const struct { const char *domain, *user; enum auth_sender_result want; } rows[] = {
		{ "@alice.example", "alice", AUTH_SENDER_OK },
		{ "@example.com", "alice", AUTH_SENDER_NOT_OWNED },
		{ "@example.com", NULL, AUTH_SENDER_OK },
		{ "@Bad.Example", NULL, AUTH_SENDER_DENIED },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		size_t len = strlen(rows[i].domain);
		memset(sender, 'a', sizeof sender - 1);
		memcpy(sender + sizeof sender - 1 - len, rows[i].domain, len);
		CHECK(auth_sender_check(c, rows[i].user, sender, &rule) == rows[i].want);
	}
	/* Not even the domain fits, or there is none: nothing matches. */
	memset(sender, 'a', sizeof sender - 1);
	sender[1] = '@';
	CHECK(auth_sender_check(c, "alice", sender, &rule) == AUTH_SENDER_NOT_OWNED);
	sender[1] = 'a';
	CHECK(auth_sender_check(c, "alice", sender, &rule) == AUTH_SENDER_NOT_OWNED);
	CHECK(auth_sender_check(c, NULL, sender, &rule) == AUTH_SENDER_OK && rule == NULL);
	conf_free(c);
}

int main(void)
{
	TEST_CASE(test_deny_sender);
	TEST_CASE(test_sender_login);
	TEST_CASE(test_no_rules_and_long_senders);
	return check_exit();
}
