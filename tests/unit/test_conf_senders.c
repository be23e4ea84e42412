/*
 * test_conf_senders — the config of sender rules: deny_sender and qmail's
 * badmailfrom file, sender_login and its file, sender_login_strict; entries
 * in lower case, sorted, one per address and one per user, with where each
 * was written; and every kind of bad line in the files with its FILE:LINE.
 * (Errors on relayd.conf's own lines are rows of test_conf's test_errors.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "tests/unit/check.h"
#include "tests/unit/conf_helpers.h"

#define NROWS(a) (sizeof (a) / sizeof (a)[0])

/* What sender_login needs around it: an AUTH backend, which needs TLS. */
#define AUTH_CONF "tls_cert /c.pem\ntls_key /k.pem\nauth_sasldb /etc/sasldb2\n"

/* A temporary file holding len bytes of content; its path goes into path (size 40). */
static void temp_file(char *path, const char *content, size_t len)
{
	snprintf(path, 40, "/tmp/relayd-senders-XXXXXX");
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK(write(fd, content, len) == (ssize_t)len);
	close(fd);
}

/* The config head, then "keyword path", then tail. */
static struct config *parse_with(const char *head, const char *keyword, const char *path,
    const char *tail, char *err, size_t errlen)
{
	char text[1024];
	snprintf(text, sizeof text, "%s%s %s\n%s", head, keyword, path, tail);
	return conf_parse("t", text, err, errlen);
}

static void test_deny_sender_inline_and_file(void)
{
	static const char file[] =
	    "# qmail's badmailfrom\n"
	    "\n"
	    "Spam@Example.NET\n"
	    "  @Bulk.Example  \r\n"
	    "#@not.example\n"
	    "a#b@example.org\n"
	    "first@example.com\n";			/* also in relayd.conf: that one stays */
	char path[40], err[256] = "";
	temp_file(path, file, sizeof file - 1);
	struct config *c = parse_with("allow ::1\n"
	    "deny_sender first@example.com @Example.ORG\n", "deny_sender_file", path,
	    "deny_sender @example.org x@y.example\n", err, sizeof err);
	unlink(path);
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	static const struct { const char *address; int in_file, line; } want[] = {
		{ "@bulk.example", 1, 4 },
		{ "@example.org", 0, 2 },
		{ "a#b@example.org", 1, 6 },
		{ "first@example.com", 0, 2 },
		{ "spam@example.net", 1, 3 },
		{ "x@y.example", 0, 4 },
	};
	CHECK(c->ndeny_sender == NROWS(want));
	for (size_t i = 0; i < NROWS(want) && i < c->ndeny_sender; i++) {
		const struct conf_sender_rule *r = &c->deny_sender[i];
		CHECK_STR(r->address, want[i].address);
		CHECK(r->line == want[i].line);
		CHECK(want[i].in_file ? r->file == c->deny_sender_file : r->file == NULL);
	}
	CHECK_STR(c->deny_sender_file, path);
	CHECK(c->nsender_login == 0 && c->sender_login_strict == 0);
	conf_free(c);

	c = parse_ok("t", "allow ::1\n");
	CHECK(c && c->ndeny_sender == 0 && c->deny_sender == NULL && !c->deny_sender_file);
	conf_free(c);
}

static void test_sender_login_inline_and_file(void)
{
	static const char file[] =
	    "# user: the senders it may use\n"
	    "bob: bob@example.com\tBob@Example.com  # twice, in two cases\n"
	    "carol : @Example.NET carol@example.org\n"
	    "ALICE: alice@file.example\n"
	    "\n"
	    "dave@example.com: dave@example.com\n";
	char path[40], err[256] = "";
	temp_file(path, file, sizeof file - 1);
	struct config *c = parse_with(AUTH_CONF
	    "sender_login alice alice@example.com @shop.example\n", "sender_login_file", path,
	    "sender_login Alice alice@example.com other@example.com\n"
	    "sender_login_strict yes\n", err, sizeof err);
	unlink(path);
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK(c->sender_login_strict == 1);
	CHECK_STR(c->sender_login_file, path);
	CHECK(c->nsender_login == 4);
	if (c->nsender_login != 4) {
		conf_free(c);
		return;
	}
	/* One entry per user, whatever the case: relayd.conf's spelling first. */
	const struct conf_sender_login *l = &c->sender_login[0];
	CHECK_STR(l->user, "alice");
	CHECK(l->file == NULL && l->line == 4);
	static const char *const alice[] = {
		"@shop.example", "alice@example.com", "alice@file.example", "other@example.com",
	};
	CHECK(l->nsenders == NROWS(alice));
	for (size_t i = 0; i < NROWS(alice) && i < l->nsenders; i++)
		CHECK_STR(l->senders[i].address, alice[i]);
	CHECK(l->nsenders == 4 && l->senders[1].file == NULL && l->senders[1].line == 4);
	CHECK(l->nsenders == 4 && l->senders[2].file == c->sender_login_file &&
	    l->senders[2].line == 4);

	l = &c->sender_login[1];
	CHECK_STR(l->user, "bob");
	CHECK(l->file == c->sender_login_file && l->line == 2);
	CHECK(l->nsenders == 1 && strcmp(l->senders[0].address, "bob@example.com") == 0);
	l = &c->sender_login[2];
	CHECK_STR(l->user, "carol");
	CHECK(l->nsenders == 2 && strcmp(l->senders[0].address, "@example.net") == 0 &&
	    strcmp(l->senders[1].address, "carol@example.org") == 0);
	l = &c->sender_login[3];
	CHECK_STR(l->user, "dave@example.com");
	conf_free(c);
}

/* Bad lines in the files: the message points at FILE:LINE. */
static void test_file_errors(void)
{
	static const struct { const char *keyword, *content; size_t len; int line;
	    const char *err; } rows[] = {
		{ "deny_sender_file", "a@example.com\nspam@example.com # why\n", 0, 2,
		  "deny_sender_file: \"spam@example.com # why\" is not an address or @domain "
		  "(user@example.com, @example.com; IDNs in A-labels)" },
		{ "deny_sender_file", "a@example.com b@example.com\n", 0, 1,
		  "deny_sender_file: \"a@example.com b@example.com\" is not an address or "
		  "@domain (user@example.com, @example.com; IDNs in A-labels)" },
		{ "deny_sender_file", "\n\n@\n", 0, 3, "deny_sender_file: \"@\" is not an address "
		  "or @domain (user@example.com, @example.com; IDNs in A-labels)" },
		{ "deny_sender_file", "a@example.com\nb\0@example.com\n", 29, 2,
		  "deny_sender_file: line too long, or with a NUL byte" },
		{ "sender_login_file", "bob bob@example.com\n", 0, 1,
		  "sender_login_file: \"bob bob@example.com\" is not user: address @domain …" },
		{ "sender_login_file", "# none\nbob:   # nothing\n", 0, 2,
		  "sender_login_file: bob: no address after the ':'" },
		{ "sender_login_file", ": a@example.com\n", 0, 1,
		  "sender_login_file: bad user name \"\" (no blanks, no ':')" },
		{ "sender_login_file", "b o b: a@example.com\n", 0, 1,
		  "sender_login_file: bad user name \"b o b\" (no blanks, no ':')" },
		{ "sender_login_file", "bob: a@example.com example.com\n", 0, 1,
		  "sender_login_file: \"example.com\" is not an address or @domain "
		  "(user@example.com, @example.com; IDNs in A-labels)" },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		char path[40], err[300] = "", want[400];
		size_t len = rows[i].len ? rows[i].len : strlen(rows[i].content);
		temp_file(path, rows[i].content, len);
		struct config *c = parse_with(AUTH_CONF, rows[i].keyword, path, "", err, sizeof err);
		unlink(path);
		CHECK(c == NULL);
		conf_free(c);
		snprintf(want, sizeof want, "%s:%d: %s", path, rows[i].line, rows[i].err);
		CHECK_STR(err, want);
	}

	/* A line as long as the limit (1024 bytes with its newline) passes; one more is refused. */
	static const struct { size_t len; int ok; } sizes[] = { { 1024, 1 }, { 1025, 0 } };
	for (size_t i = 0; i < NROWS(sizes); i++) {
		char line[1100], path[40], err[300] = "", want[400];
		size_t len = sizes[i].len, domain = strlen("@x.example\n");
		memset(line, 'a', len - domain);
		memcpy(line + len - domain, "@x.example\n", domain);
		temp_file(path, line, len);
		struct config *c = parse_with("allow ::1\n", "deny_sender_file", path, "", err,
		    sizeof err);
		unlink(path);
		CHECK((c != NULL) == sizes[i].ok);
		CHECK(!c || (c->ndeny_sender == 1 && strlen(c->deny_sender[0].address) == len - 1));
		conf_free(c);
		snprintf(want, sizeof want, "%s:1: deny_sender_file: line too long, or with a "
		    "NUL byte", path);
		if (!sizes[i].ok)
			CHECK_STR(err, want);
	}
}

int main(void)
{
	TEST_CASE(test_deny_sender_inline_and_file);
	TEST_CASE(test_sender_login_inline_and_file);
	TEST_CASE(test_file_errors);
	return check_exit();
}
