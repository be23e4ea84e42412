/*
 * test_smtp_parse — the server's command parsers, one table row per rule:
 * verbs, MAIL and RCPT paths, ESMTP parameters, AUTH's arguments, UTF-8.
 */
#include <string.h>

#include "relayd/smtp_parse.h"
#include "tests/unit/check.h"

static void test_verb(void)
{
	static const struct { const char *line; int ok; const char *verb, *args; } rows[] = {
		{ "EHLO example.com", 0, "EHLO", "example.com" },
		{ "ehlo x", 0, "EHLO", "x" },
		{ "QUIT", 0, "QUIT", "" },
		{ "mail FROM:<a@b>", 0, "MAIL", "FROM:<a@b>" },
		{ "", -1, NULL, NULL },
		{ " NOOP", -1, NULL, NULL },
		{ "HOST: x", -1, NULL, NULL },
		{ "ABCDEFGHIJKLMNOPQ", -1, NULL, NULL },
		{ "NO0P", -1, NULL, NULL },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char verb[SMTP_VERB_MAX + 1];
		const char *args = NULL;
		int r = smtp_parse_verb(rows[i].line, verb, &args);
		CHECK(r == rows[i].ok);
		if (r == 0 && rows[i].ok == 0) {
			CHECK_STR(verb, rows[i].verb);
			CHECK_STR(args, rows[i].args);
		}
	}
}

static void test_mail(void)
{
	static const struct {
		const char *args;
		enum smtp_parse_status want;
		const char *addr;
	} rows[] = {
		{ "FROM:<alice@example.com>", SMTP_PARSE_OK, "alice@example.com" },
		{ "from:<alice@example.com>", SMTP_PARSE_OK, "alice@example.com" },
		{ "FROM: <alice@example.com>", SMTP_PARSE_OK, "alice@example.com" },
		{ "FROM:<>", SMTP_PARSE_OK, "" },
		{ "FROM:<\"john doe\"@example.com>", SMTP_PARSE_OK, "\"john doe\"@example.com" },
		{ "FROM:<a.b+tag@sub.example.co.uk>", SMTP_PARSE_OK, "a.b+tag@sub.example.co.uk" },
		{ "FROM:<@relay.example,@b.example:u@example.com>", SMTP_PARSE_OK, "u@example.com" },
		{ "FROM:<u@[192.0.2.1]>", SMTP_PARSE_OK, "u@[192.0.2.1]" },
		{ "FROM:<u@[IPv6:2001:db8::1]>", SMTP_PARSE_OK, "u@[IPv6:2001:db8::1]" },
		{ "FROM:<u@localhost>", SMTP_PARSE_OK, "u@localhost" },
		{ "FROM:<a@b> SIZE=1000", SMTP_PARSE_OK, "a@b" },
		{ "FROM:<a@b> BODY=8BITMIME SIZE=10 RET=HDRS ENVID=QQ+2B1", SMTP_PARSE_OK, "a@b" },
		{ "FROM:<a@b>  SIZE=10 ", SMTP_PARSE_OK, "a@b" },
		{ "FROM:<pelé@exemple.fr> SMTPUTF8", SMTP_PARSE_OK, "pelé@exemple.fr" },
		{ "FROM:<pelé@exemple.fr>", SMTP_PARSE_NEED_UTF8, NULL },
		{ "FROM:<a@b> SMTPUTF8=yes", SMTP_PARSE_BAD_PARAM, NULL },
		{ "FROM:a@b", SMTP_PARSE_SYNTAX, NULL },
		{ "TO:<a@b>", SMTP_PARSE_SYNTAX, NULL },
		{ "FROM", SMTP_PARSE_SYNTAX, NULL },
		{ "FROM:<a@b", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<a@b>x", SMTP_PARSE_SYNTAX, NULL },
		{ "FROM:<a>", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<@b>", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<a..b@c>", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<.a@c>", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<a@-c.com>", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<a@c-.com>", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<a@c..com>", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<a b@c>", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<a@[999.1.1.1]>", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<a@[IPv6:zz]>", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<\"unterminated@c>", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<a\xff@c> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<a\xc0\xaf@c> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS, NULL },
		{ "FROM:<a@b> SIZE=", SMTP_PARSE_SYNTAX, NULL },
		{ "FROM:<a@b> SIZE=12x", SMTP_PARSE_BAD_PARAM, NULL },
		{ "FROM:<a@b> SIZE=999999999999999999999", SMTP_PARSE_BAD_PARAM, NULL },
		{ "FROM:<a@b> SIZE=99999999999999999999", SMTP_PARSE_OK, "a@b" },
		{ "FROM:<a@b> SIZE=1 SIZE=2", SMTP_PARSE_BAD_PARAM, NULL },
		{ "FROM:<a@b> BODY=BINARYMIME", SMTP_PARSE_BAD_PARAM, NULL },
		{ "FROM:<a@b> RET=ALL", SMTP_PARSE_BAD_PARAM, NULL },
		{ "FROM:<a@b> ENVID=a+zz", SMTP_PARSE_BAD_PARAM, NULL },
		{ "FROM:<a@b> ENVID=a+2", SMTP_PARSE_BAD_PARAM, NULL },
		{ "FROM:<a@b> AUTH=<>", SMTP_PARSE_OK, "a@b" },
		{ "FROM:<a@b> AUTH=e+3Dmc2@example.com", SMTP_PARSE_OK, "a@b" },
		{ "FROM:<a@b> AUTH=<> AUTH=<>", SMTP_PARSE_BAD_PARAM, NULL },
		{ "FROM:<a@b> AUTH=a+zz", SMTP_PARSE_BAD_PARAM, NULL },
		{ "FROM:<a@b> XFOO", SMTP_PARSE_UNKNOWN_PARAM, NULL },
		{ "FROM:<a@b> =x", SMTP_PARSE_SYNTAX, NULL },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct smtp_mail_args m;
		enum smtp_parse_status st = smtp_parse_mail(rows[i].args, &m);
		if (st != rows[i].want)
			fprintf(stderr, "  row %zu \"%s\": status %d, want %d\n", i, rows[i].args,
			    st, rows[i].want);
		CHECK(st == rows[i].want);
		if (st == SMTP_PARSE_OK && rows[i].addr)
			CHECK_STR(m.addr, rows[i].addr);
	}
}

static void test_mail_values(void)
{
	struct smtp_mail_args m;
	CHECK(smtp_parse_mail("FROM:<a@b> SIZE=4096 BODY=8bitmime RET=FULL ENVID=X+2BY SMTPUTF8",
	    &m) == SMTP_PARSE_OK);
	CHECK(m.size_given && m.size == 4096);
	CHECK(m.body == SMTP_BODY_8BITMIME);
	CHECK(m.ret == SMTP_RET_FULL);
	CHECK(m.smtputf8);
	CHECK_STR(m.envid, "X+2BY");
	CHECK(smtp_parse_mail("FROM:<a@b> SIZE=99999999999999999999", &m) == SMTP_PARSE_OK);
	CHECK(m.size == UINT64_MAX);
	CHECK(smtp_parse_mail("FROM:<a@b> XYZZY=1", &m) == SMTP_PARSE_UNKNOWN_PARAM);
	CHECK_STR(m.bad_param, "XYZZY");
}

static void test_rcpt(void)
{
	static const struct {
		const char *args;
		int utf8;
		enum smtp_parse_status want;
		unsigned notify;
		const char *orcpt;
	} rows[] = {
		{ "TO:<bob@example.org>", 0, SMTP_PARSE_OK, 0, "" },
		{ "to: <bob@example.org>", 0, SMTP_PARSE_OK, 0, "" },
		{ "TO:<bob@example.org> NOTIFY=NEVER", 0, SMTP_PARSE_OK, SMTP_NOTIFY_NEVER, "" },
		{ "TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE", 0, SMTP_PARSE_OK,
		  SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, "" },
		{ "TO:<bob@example.org> NOTIFY=delay ORCPT=rfc822;bob@example.org", 0, SMTP_PARSE_OK,
		  SMTP_NOTIFY_DELAY, "rfc822;bob@example.org" },
		{ "TO:<bob@example.org> ORCPT=rfc822;b+2Bb@example.org", 0, SMTP_PARSE_OK, 0,
		  "rfc822;b+2Bb@example.org" },
		{ "TO:<bob@example.org> NOTIFY=NEVER,SUCCESS", 0, SMTP_PARSE_BAD_PARAM, 0, NULL },
		{ "TO:<bob@example.org> NOTIFY=SUCCESS,SUCCESS", 0, SMTP_PARSE_BAD_PARAM, 0, NULL },
		{ "TO:<bob@example.org> NOTIFY=SOMETIMES", 0, SMTP_PARSE_BAD_PARAM, 0, NULL },
		{ "TO:<bob@example.org> NOTIFY=SUCCESS,", 0, SMTP_PARSE_BAD_PARAM, 0, NULL },
		{ "TO:<bob@example.org> ORCPT=bob@example.org", 0, SMTP_PARSE_BAD_PARAM, 0, NULL },
		{ "TO:<bob@example.org> ORCPT=rfc822;", 0, SMTP_PARSE_BAD_PARAM, 0, NULL },
		{ "TO:<bob@example.org> SIZE=1", 0, SMTP_PARSE_UNKNOWN_PARAM, 0, NULL },
		{ "TO:<>", 0, SMTP_PARSE_BAD_ADDRESS, 0, NULL },
		{ "TO:<postmaster>", 0, SMTP_PARSE_OK, 0, "" },
		{ "TO:<PostMaster> NOTIFY=NEVER", 0, SMTP_PARSE_OK, SMTP_NOTIFY_NEVER, "" },
		{ "TO:<postmaster2>", 0, SMTP_PARSE_BAD_ADDRESS, 0, NULL },
		{ "TO:<jürgen@example.de>", 0, SMTP_PARSE_NEED_UTF8, 0, NULL },
		{ "TO:<jürgen@example.de>", 1, SMTP_PARSE_OK, 0, "" },
		{ "TO:<user@bücher.example>", 1, SMTP_PARSE_OK, 0, "" },
		{ "FROM:<bob@example.org>", 0, SMTP_PARSE_SYNTAX, 0, NULL },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct smtp_rcpt_args r;
		enum smtp_parse_status st = smtp_parse_rcpt(rows[i].args, rows[i].utf8, &r);
		if (st != rows[i].want)
			fprintf(stderr, "  row %zu \"%s\": status %d, want %d\n", i, rows[i].args,
			    st, rows[i].want);
		CHECK(st == rows[i].want);
		if (st == SMTP_PARSE_OK) {
			CHECK(r.notify == rows[i].notify);
			CHECK_STR(r.orcpt, rows[i].orcpt);
		}
	}
}

static void test_long_addresses(void)
{
	char args[2 * SMTP_ADDR_MAX];
	struct smtp_rcpt_args r;
	/* A 300-octet SRS-style local part is fine; past SMTP_ADDR_MAX it is not. */
	strcpy(args, "TO:<");
	memset(args + 4, 'a', 300);
	strcpy(args + 304, "@example.com>");
	CHECK(smtp_parse_rcpt(args, 0, &r) == SMTP_PARSE_OK);
	memset(args + 4, 'a', SMTP_ADDR_MAX);
	strcpy(args + 4 + SMTP_ADDR_MAX, "@example.com>");
	CHECK(smtp_parse_rcpt(args, 0, &r) == SMTP_PARSE_BAD_ADDRESS);
	/* A label over 63 octets is not a domain. */
	strcpy(args, "TO:<a@");
	memset(args + 6, 'b', 64);
	strcpy(args + 70, ".com>");
	CHECK(smtp_parse_rcpt(args, 0, &r) == SMTP_PARSE_BAD_ADDRESS);
}

static void test_auth_args(void)
{
	static const struct {
		const char *args;
		enum smtp_parse_status want;
		const char *mech, *initial;
	} rows[] = {
		{ "PLAIN", SMTP_PARSE_OK, "PLAIN", NULL },
		{ "plain AGJvYgBzZWNyZXQ=", SMTP_PARSE_OK, "PLAIN", "AGJvYgBzZWNyZXQ=" },
		{ "cram-md5", SMTP_PARSE_OK, "CRAM-MD5", NULL },
		{ "PLAIN =", SMTP_PARSE_OK, "PLAIN", "=" },
		{ "", SMTP_PARSE_SYNTAX, NULL, NULL },
		{ " PLAIN", SMTP_PARSE_SYNTAX, NULL, NULL },
		{ "PLAIN ", SMTP_PARSE_SYNTAX, NULL, NULL },
		{ "PLAIN a b", SMTP_PARSE_SYNTAX, NULL, NULL },
		{ "PLAIN  a", SMTP_PARSE_SYNTAX, NULL, NULL },
		{ "A-MECHANISM-NAME-LONGER-THAN-ANY", SMTP_PARSE_UNKNOWN_PARAM, NULL, NULL },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char mech[24];
		const char *initial = "unset";
		enum smtp_parse_status st = smtp_parse_auth(rows[i].args, mech, sizeof mech,
		    &initial);
		CHECK(st == rows[i].want);
		if (st != rows[i].want)
			fprintf(stderr, "  row %zu: \"%s\": status %d\n", i, rows[i].args, (int)st);
		if (st == SMTP_PARSE_OK && rows[i].want == SMTP_PARSE_OK) {
			CHECK_STR(mech, rows[i].mech);
			CHECK_STR(initial, rows[i].initial);
		}
	}
}

static void test_utf8(void)
{
	static const struct { const char *s; int ok; } rows[] = {
		{ "plain", 1 }, { "caf\xc3\xa9", 1 }, { "\xe2\x82\xac", 1 }, { "\xf0\x9f\x98\x80", 1 },
		{ "\xc3", 0 }, { "\xc0\x80", 0 }, { "\xe0\x80\x80", 0 }, { "\xed\xa0\x80", 0 },
		{ "\xf4\x90\x80\x80", 0 }, { "\xff", 0 }, { "\x80", 0 },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		CHECK(smtp_utf8_valid((const unsigned char *)rows[i].s, strlen(rows[i].s)) ==
		    rows[i].ok);
}

int main(void)
{
	TEST_CASE(test_verb);
	TEST_CASE(test_mail);
	TEST_CASE(test_mail_values);
	TEST_CASE(test_rcpt);
	TEST_CASE(test_long_addresses);
	TEST_CASE(test_auth_args);
	TEST_CASE(test_utf8);
	return check_exit();
}
