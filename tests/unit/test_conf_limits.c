/*
 * test_conf_limits — the config of the rate limits: N/hour and N/minute,
 * max_connections_per_client, limit_exempt networks; none set by default;
 * and every kind of bad value with its message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "tests/unit/check.h"
#include "tests/unit/conf_helpers.h"

#define NROWS(a) (sizeof (a) / sizeof (a)[0])

static void test_rate_syntax(void)
{
	static const struct { const char *text; int ok; unsigned count, window; } rows[] = {
		{ "100/hour", 1, 100, 3600 },
		{ "1/minute", 1, 1, 60 },
		{ "4294967295/hour", 1, 4294967295u, 3600 },
		{ "0/hour", 0, 0, 0 },
		{ "4294967296/hour", 0, 0, 0 },
		{ "100", 0, 0, 0 },
		{ "100/", 0, 0, 0 },
		{ "/hour", 0, 0, 0 },
		{ "100/day", 0, 0, 0 },
		{ "100/Hour", 0, 0, 0 },
		{ "100/hours", 0, 0, 0 },
		{ "100/h", 0, 0, 0 },
		{ "+100/hour", 0, 0, 0 },
		{ "-1/hour", 0, 0, 0 },
		{ "1 /hour", 0, 0, 0 },
		{ "10/hour/minute", 0, 0, 0 },
		{ "00000000000000000010/hour", 1, 10, 3600 },
		{ "000000000000000000000000000000010/hour", 0, 0, 0 },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		unsigned count = 7, window = 7;
		int rc = conf_parse_rate(rows[i].text, &count, &window);
		if ((rc == 0) != rows[i].ok)
			fprintf(stderr, "  row %zu: \"%s\"\n", i, rows[i].text);
		CHECK((rc == 0) == rows[i].ok);
		if (rows[i].ok && rc == 0)
			CHECK(count == rows[i].count && window == rows[i].window);
	}
}

static void test_limits_parsed(void)
{
	struct config *c = parse_ok("t", "allow 127.0.0.0/8\n"
	    "limit_user 100/hour\n"
	    "limit_client 20/minute\n"
	    "limit_rcpt 1000/hour\n"
	    "max_connections_per_client 5\n"
	    "limit_exempt 192.0.2.7 10.1.2.3/16\n"
	    "limit_exempt ::1\n");
	if (!c)
		return;
	CHECK(c->limit_user.count == 100 && c->limit_user.window == 3600 &&
	    c->limit_user.line == 2);
	CHECK(c->limit_client.count == 20 && c->limit_client.window == 60);
	CHECK(c->limit_rcpt.count == 1000 && c->limit_rcpt.window == 3600);
	CHECK(c->max_connections_per_client == 5);
	CHECK(c->nlimit_exempt == 3);
	if (c->nlimit_exempt == 3) {
		CHECK(c->limit_exempt[0].family == AF_INET && c->limit_exempt[0].prefix == 32);
		CHECK(c->limit_exempt[1].prefix == 16 && c->limit_exempt[1].addr[2] == 0);
		CHECK(c->limit_exempt[2].family == AF_INET6 && c->limit_exempt[2].prefix == 128);
	}
	conf_free(c);
}

static void test_no_limits_by_default(void)
{
	struct config *c = parse_ok("t", "allow 127.0.0.0/8\n");
	if (!c)
		return;
	CHECK(c->limit_user.count == 0 && c->limit_client.count == 0 &&
	    c->limit_rcpt.count == 0);
	CHECK(c->max_connections_per_client == 0 && c->nlimit_exempt == 0 &&
	    c->limit_exempt == NULL);
	conf_free(c);
}

static void test_errors(void)
{
	static const struct { const char *text, *err; } rows[] = {
		{ "limit_user 100\n",
		  "t:1: limit_user: \"100\" is not N/hour or N/minute (like 100/hour; N at least 1)" },
		{ "limit_client 5/day\n",
		  "t:1: limit_client: \"5/day\" is not N/hour or N/minute (like 100/hour; N at "
		  "least 1)" },
		{ "limit_rcpt 0/hour\n",
		  "t:1: limit_rcpt: \"0/hour\" is not N/hour or N/minute (like 100/hour; N at least "
		  "1)" },
		{ "limit_user 1/hour 2/hour\n", "t:1: limit_user takes 1 argument, not 2" },
		{ "limit_user\n", "t:1: limit_user takes 1 argument, not 0" },
		{ "limit_user 1/hour\nlimit_user 2/hour\n",
		  "t:2: limit_user given twice (first at line 1)" },
		{ "max_connections_per_client 0\n",
		  "t:1: max_connections_per_client: \"0\" is not a positive whole number" },
		{ "max_connections_per_client many\n",
		  "t:1: max_connections_per_client: \"many\" is not a positive whole number" },
		{ "limit_exempt 10.0.0.0/33\n",
		  "t:1: limit_exempt: bad network \"10.0.0.0/33\" (use 192.0.2.7, 10.0.0.0/8, "
		  "fd00::/8)" },
		{ "limit_exempt\n", "t:1: limit_exempt needs at least 1 argument" },
		{ "upstream a {\n host x\n limit_user 1/hour\n}\n",
		  "t:3: unknown keyword \"limit_user\" in upstream block" },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		char err[256] = "";
		struct config *c = conf_parse("t", rows[i].text, err, sizeof err);
		CHECK(c == NULL);
		conf_free(c);
		CHECK_STR(err, rows[i].err);
	}
}

int main(void)
{
	TEST_CASE(test_rate_syntax);
	TEST_CASE(test_limits_parsed);
	TEST_CASE(test_no_limits_by_default);
	TEST_CASE(test_errors);
	return check_exit();
}
