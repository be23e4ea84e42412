/*
 * fuzz_smtp_parse — the server's command parsers (relayd/smtp_parse.c) on one
 * command line as smtp_command() gets it (CRLF removed, no NUL): the verb,
 * MAIL FROM and RCPT TO with their ESMTP parameters (SIZE, BODY, RET, ENVID,
 * AUTH, NOTIFY, ORCPT: xtext), AUTH's arguments, and the escaping of an EHLO
 * name.  Whatever is accepted must be bounded, terminated, and free of the
 * control bytes that would break a log line, a header or a DSN.
 */
#include "relayd/log.h"
#include "relayd/smtp_parse.h"
#include "tests/fuzz/fuzz.h"

/* A mailbox as stored: bounded, no control byte, well-formed UTF-8. */
static void check_address(const char *addr, size_t max)
{
	size_t n = strlen(addr);
	FUZZ_ASSERT(n <= max);
	for (size_t i = 0; i < n; i++)
		FUZZ_ASSERT((unsigned char)addr[i] >= 0x20 && addr[i] != 0x7f);
	FUZZ_ASSERT(smtp_utf8_valid((const unsigned char *)addr, n));
}

static int has_non_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

static void fuzz_mail(const char *args)
{
	struct smtp_mail_args m;
	if (smtp_parse_mail(args, &m) != SMTP_PARSE_OK) {
		FUZZ_ASSERT(strlen(m.bad_param) < sizeof m.bad_param);
		return;
	}
	check_address(m.addr, SMTP_ADDR_MAX);
	FUZZ_ASSERT(!has_non_ascii(m.addr) || m.smtputf8);
	FUZZ_ASSERT(strlen(m.envid) <= SMTP_ENVID_MAX && fuzz_printable(m.envid));
	FUZZ_ASSERT(m.size_given || m.size == 0);
	FUZZ_ASSERT(m.bad_param[0] == '\0');
}

static void fuzz_rcpt(const char *args, int utf8)
{
	struct smtp_rcpt_args r;
	if (smtp_parse_rcpt(args, utf8, &r) != SMTP_PARSE_OK)
		return;
	check_address(r.addr, SMTP_ADDR_MAX);
	FUZZ_ASSERT(utf8 || !has_non_ascii(r.addr));
	FUZZ_ASSERT(strlen(r.orcpt) <= SMTP_ORCPT_MAX && (utf8 || fuzz_printable(r.orcpt)));
	FUZZ_ASSERT(!r.postmaster || strcmp(r.addr, "postmaster") == 0);
	FUZZ_ASSERT(r.postmaster || strchr(r.addr, '@'));
	FUZZ_ASSERT(!(r.notify & SMTP_NOTIFY_NEVER) || r.notify == SMTP_NOTIFY_NEVER);
}

static void fuzz_auth(const char *args)
{
	char mech[24];
	const char *initial;
	if (smtp_parse_auth(args, mech, sizeof mech, &initial) != SMTP_PARSE_OK)
		return;
	FUZZ_ASSERT(mech[0] && strlen(mech) < sizeof mech && !strchr(mech, ' '));
	for (const char *c = mech; *c; c++)
		FUZZ_ASSERT(!(*c >= 'a' && *c <= 'z'));
	FUZZ_ASSERT(!initial || (*initial && !strchr(initial, ' ')));
}

/* EHLO and HELO: the name is kept escaped (smtp_commands.c), for logs and Received:. */
static void fuzz_helo(const char *args)
{
	char helo[256];
	log_escape(helo, sizeof helo, args, strlen(args));
	FUZZ_ASSERT(strlen(helo) < sizeof helo && fuzz_printable(helo));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = fuzz_string(data, size);
	char verb[SMTP_VERB_MAX + 1];
	const char *args;

	if (smtp_parse_verb(line, verb, &args) == 0) {
		FUZZ_ASSERT(strlen(verb) <= SMTP_VERB_MAX);
		FUZZ_ASSERT(args >= line && args <= line + strlen(line));
	} else {
		args = line;
	}
	/* Every parser sees every line: the verb only decides which one the server calls. */
	fuzz_mail(args);
	fuzz_rcpt(args, 0);
	fuzz_rcpt(args, 1);
	fuzz_auth(args);
	fuzz_helo(args);
	free(line);
	return 0;
}
