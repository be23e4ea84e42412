/*
 * test_routes — which route a recipient takes: recipient routes (exact, then
 * the longest .parent), then sender routes (address, domain, .parent), then
 * `*`; case-insensitive, a trailing dot ignored, U-labels as A-labels.
 */
#include <stdio.h>
#include <string.h>

#include "conf/conf.h"
#include "routes/routes.h"
#include "tests/unit/check.h"

#define NROWS(a) (sizeof (a) / sizeof (a)[0])

static const char *conf_text =
    "upstream a {\n host a.example\n}\n"
    "upstream b {\n host b.example\n}\n"
    "route * a\n"
    "route example.com b\n"
    "route .example.com a b\n"
    "route .deep.example.com b a\n"
    "route_sender shop.example.org b\n"
    "route_sender .example.org a\n"
    "route_sender Boss@Example.net b a\n"
    "route xn--e1afmkfd.xn--p1ai b\n"		/* пример.рф */
    "route .xn--p1ai a\n"				/* every domain under .рф */
    "route_sender xn--mller-kva.example b\n";	/* müller.example */

/* The pattern of the route found (a sender route is marked "s:"), or "none". */
static const char *found(const struct config *c, const char *rcpt, const char *sender,
    char *buf, size_t len)
{
	const struct conf_route *r = routes_find(c, rcpt, sender);
	snprintf(buf, len, "%s%s", r && r->sender ? "s:" : "", r ? r->pattern : "none");
	return buf;
}

static void test_precedence(void)
{
	static const struct { const char *rcpt, *sender, *want; } rows[] = {
		{ "x@example.com", "y@shop.example.org", "example.com" },
		{ "x@EXAMPLE.com.", NULL, "example.com" },
		{ "x@mx.example.com", NULL, ".example.com" },
		{ "x@a.deep.example.com", NULL, ".deep.example.com" },
		{ "x@deep.example.com", NULL, ".example.com" },
		{ "x@gmail.com", "y@shop.example.org", "s:shop.example.org" },
		{ "x@gmail.com", "y@Shop.Example.Org", "s:shop.example.org" },
		{ "x@gmail.com", "y@eu.shop.example.org", "s:.example.org" },
		{ "x@gmail.com", "boss@example.net", "s:Boss@Example.net" },
		{ "x@gmail.com", "other@example.net", "*" },
		{ "x@gmail.com", "", "*" },
		{ "x@gmail.com", NULL, "*" },
		{ "x@notexample.com", NULL, "*" },
		{ "postmaster", NULL, "*" },
		/* SMTPUTF8 addresses: U-labels match the A-labels relayd.conf is written in. */
		{ "x@пример.рф", NULL, "xn--e1afmkfd.xn--p1ai" },
		{ "x@ПРИМЕР.РФ", NULL, "xn--e1afmkfd.xn--p1ai" },
		{ "x@почта.пример.рф", NULL, ".xn--p1ai" },
		{ "x@gmail.com", "y@müller.example", "s:xn--mller-kva.example" },
		{ "x@\xff\xfe.рф", NULL, "*" },	/* not UTF-8: as written, so only `*` */
	};
	char err[256], buf[300];
	struct config *c = conf_parse("t", conf_text, err, sizeof err);

	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	for (size_t i = 0; i < NROWS(rows); i++) {
		found(c, rows[i].rcpt, rows[i].sender, buf, sizeof buf);
		if (strcmp(buf, rows[i].want) != 0)
			fprintf(stderr, "  %s from %s: got %s, want %s\n", rows[i].rcpt,
			    rows[i].sender ? rows[i].sender : "(null)", buf, rows[i].want);
		CHECK(strcmp(buf, rows[i].want) == 0);
	}
	conf_free(c);
}

/* Without `*`, what nothing covers has no route. */
static void test_no_default(void)
{
	char err[256], buf[300];
	struct config *c = conf_parse("t", "upstream a {\n host h\n}\nroute example.com a\n",
	    err, sizeof err);

	CHECK(c != NULL);
	if (!c)
		return;
	CHECK(strcmp(found(c, "x@example.com", NULL, buf, sizeof buf), "example.com") == 0);
	CHECK(strcmp(found(c, "x@example.org", "y@example.com", buf, sizeof buf), "none") == 0);
	conf_free(c);
}

static void test_domain_ascii(void)
{
	static const struct { const char *in, *want; } rows[] = {
		{ "Example.COM.", "example.com" },
		{ "пример.рф", "xn--e1afmkfd.xn--p1ai" },
		{ "Bücher.Example", "xn--bcher-kva.example" },
		{ "faß.de", "xn--fa-hia.de" },	/* non-transitional: ß stays */
	};
	char out[256];
	for (size_t i = 0; i < NROWS(rows); i++) {
		CHECK(routes_domain_ascii(rows[i].in, out, sizeof out) == 0);
		if (strcmp(out, rows[i].want) != 0)
			fprintf(stderr, "  %s: got %s, want %s\n", rows[i].in, out, rows[i].want);
		CHECK(strcmp(out, rows[i].want) == 0);
	}
	CHECK(routes_domain_ascii("\xff\xfe.рф", out, sizeof out) < 0);
	CHECK(routes_domain_ascii("example.com", out, 5) < 0);
}

/* Whole addresses: the domain in A-labels, the local part as it is. */
static void test_address_ascii(void)
{
	static const struct { const char *in, *want; } rows[] = {
		{ "Bob@Example.COM.", "Bob@example.com" },
		{ "Иван@пример.рф", "Иван@xn--e1afmkfd.xn--p1ai" },
		{ "\"a@b\"@Bücher.Example", "\"a@b\"@xn--bcher-kva.example" },
		{ "x@\xff\xfe.рф", "x@\xff\xfe.рф" },		/* not UTF-8: as written */
		{ "postmaster", "postmaster" },
		{ "@example.com", "@example.com" },
		{ "", "" },
	};
	char out[256];
	for (size_t i = 0; i < NROWS(rows); i++) {
		CHECK(routes_address_ascii(rows[i].in, out, sizeof out) == 0);
		CHECK_STR(out, rows[i].want);
	}
	CHECK(routes_address_ascii("bob@example.com", out, 15) < 0);
	CHECK_STR(out, "");
	CHECK(routes_address_ascii("bob@example.com", out, 16) == 0);
	CHECK(routes_address_ascii("bob@example.com", out, 4) < 0);
	CHECK(routes_address_ascii("bob@пример.рф", out, 10) < 0);
	CHECK_STR(out, "");
}

int main(void)
{
	TEST_CASE(test_precedence);
	TEST_CASE(test_no_default);
	TEST_CASE(test_domain_ascii);
	TEST_CASE(test_address_ascii);
	return check_exit();
}
