/*
 * test_hints — the hint for a reply: built-in rows by words and by code
 * (any class), the site's hints_file first, nothing for what no row knows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "relayd/hints.h"
#include "tests/unit/check.h"
#include "tests/unit/conf_helpers.h"

#define NROWS(a) (sizeof (a) / sizeof (a)[0])

static void test_builtin(void)
{
	static const struct { const char *dsn, *text, *starts; } rows[] = {
		{ "5.7.1", "550-5.7.1 [192.0.2.1] The IP you're using to send mail is not authorized\n"
		  "550 5.7.1 https://support.google.com/mail/?p=NotAuthorizedError", "Gmail" },
		{ "5.7.26", "550 5.7.26 This mail has been blocked because the sender is "
		  "unauthenticated.", "the receiver wants SPF" },
		{ "4.7.8", "AUTH failed: 535 5.7.8 Authentication credentials invalid",
		  "the upstream refused the login" },
		{ "4.7.0", "TLS handshake failed: error:0A00010B:SSL routines::wrong version number",
		  "TLS mix-up" },
		{ "4.4.1", "connect to mx.example.com[192.0.2.1]:25: timed out",
		  "nothing answers on port 25" },
		{ "5.7.1", "553 5.7.1 Sender address rejected: not owned by auth user.",
		  "the provider takes only" },
		{ "5.1.1", "550 5.1.1 <x@example.com>: Recipient address rejected", "the recipient's "
		  "address does not exist" },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		const char *h = hint_for(NULL, rows[i].dsn, rows[i].text);
		if (!h || strncmp(h, rows[i].starts, strlen(rows[i].starts)) != 0)
			fprintf(stderr, "  row %zu: got %s\n", i, h ? h : "(none)");
		CHECK(h && strncmp(h, rows[i].starts, strlen(rows[i].starts)) == 0);
	}
	CHECK(hint_for(NULL, "4.2.0", "451 4.2.0 try later") == NULL);
	CHECK(hint_for(NULL, NULL, NULL) == NULL);
	CHECK(hint_for(NULL, "5.1.10", "no mail here") != NULL);	/* not 5.1.1's */
	CHECK(strstr(hint_for(NULL, "5.1.10", "x"), "null MX") != NULL);
}

static void test_site_hints_first(void)
{
	char path[] = "/tmp/relayd-hints-XXXXXX";
	int fd = mkstemp(path);
	const char text[] = "# ours\n\n5.7.1 | relay.example | ask the relay team\n"
	    "* | NotAuthorizedError | our own words\n";
	CHECK(fd >= 0 && write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
	if (fd >= 0)
		close(fd);
	char conf_text[200];
	snprintf(conf_text, sizeof conf_text, "hints_file %s\n", path);
	struct config *c = parse_ok("t", conf_text);
	unlink(path);
	if (!c)
		return;
	CHECK(c->nhints == 2);
	CHECK_STR(hint_for(c, "5.7.1", "550 5.7.1 relay.example: denied"), "ask the relay team");
	CHECK_STR(hint_for(c, "4.7.1", "451 4.7.1 RELAY.EXAMPLE busy"), "ask the relay team");
	CHECK_STR(hint_for(c, "5.7.1", "NotAuthorizedError"), "our own words");
	CHECK(strncmp(hint_for(c, "5.7.26", "x"), "the receiver", 12) == 0);	/* built-in */
	conf_free(c);
}

static void test_bad_files(void)
{
	static const char *const bad[] = { "5.7.1 | only two\n", "* | * | matches everything\n",
	    "9.9 | x | bad code\n", "5.7.1 | words | \n" };
	for (size_t i = 0; i < NROWS(bad); i++) {
		char path[] = "/tmp/relayd-hints-XXXXXX", conf_text[200], err[256];
		int fd = mkstemp(path);
		CHECK(fd >= 0 && write(fd, bad[i], strlen(bad[i])) == (ssize_t)strlen(bad[i]));
		if (fd >= 0)
			close(fd);
		snprintf(conf_text, sizeof conf_text, "hints_file %s\n", path);
		struct config *c = conf_parse("t", conf_text, err, sizeof err);
		unlink(path);
		CHECK(c == NULL && strstr(err, ":1: hints_file") != NULL);
		if (c || !strstr(err, ":1: hints_file"))
			fprintf(stderr, "  row %zu: %s\n", i, c ? "accepted" : err);
		conf_free(c);
	}
}

int main(void)
{
	TEST_CASE(test_builtin);
	TEST_CASE(test_site_hints_first);
	TEST_CASE(test_bad_files);
	return check_exit();
}
