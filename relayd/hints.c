/*
 * hints — what a failure usually means, in one line an admin can act on.
 * A reply matches a row when its enhanced status code starts with the row's
 * code (or the row has none) and its text contains the row's words (or the
 * row has none), without regard to case.  The admin's hints_file rows come
 * first, then this table; the first match wins.  Add a row here for a
 * failure every relayd user meets; a site's own go in hints_file.
 */
#include "relayd/hints.h"

#include "relayd/smtp_reply.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct hint_row {
	const char *code, *words, *hint;
};

static const struct hint_row builtin[] = {
	{ NULL, "NotAuthorizedError", "Gmail does not take mail from this IP directly "
	  "(Spamhaus PBL, or no reverse DNS): route Gmail's mail through an upstream" },
	{ NULL, "using to send mail is not authorized", "Gmail does not take mail from this "
	  "IP directly (Spamhaus PBL, or no reverse DNS): route Gmail's mail through an "
	  "upstream" },
	{ NULL, "spamhaus", "the sending IP is on a Spamhaus list: direct delivery from it "
	  "will keep failing; route through an upstream" },
	{ "5.7.26", NULL, "the receiver wants SPF, DKIM or DMARC to pass: publish SPF that "
	  "includes the upstream and sign with DKIM" },
	{ NULL, "not owned by auth user", "the provider takes only its account's address as "
	  "sender: set envelope_from (the gmail, yandex and mailru presets do)" },
	{ NULL, "Sender address rejected: not owned", "the provider takes only its account's "
	  "address as sender: set envelope_from" },
	{ NULL, "Relay access denied", "the server does not relay for relayd: give the "
	  "upstream user and password_file, or allow relayd's IP there" },
	{ "5.7.8", NULL, "the upstream refused the login: check user and password_file "
	  "(SendGrid's user is apikey, Gmail needs an app password)" },
	{ NULL, "535 ", "the upstream refused the login: check user and password_file" },
	{ NULL, "wrong version number", "TLS mix-up: port 465 needs `tls tls`, ports 587 "
	  "and 25 need `tls starttls`" },
	{ NULL, "certificate verification failed", "the upstream's certificate is not "
	  "trusted here: host must match the certificate; check ca_file or the system CA store" },
	{ NULL, "does not offer STARTTLS", "the server has no STARTTLS: use its TLS port "
	  "(tls tls, 465), or `tls may` if plaintext is acceptable" },
	{ NULL, "STARTTLS command first", "the server wants TLS first: set `tls starttls`" },
	{ NULL, ":25: timed out", "nothing answers on port 25: outgoing port 25 is often "
	  "blocked at VPS providers; use an upstream on port 587 or 465" },
	{ NULL, "Connection refused", "nothing listens at that host and port: check host "
	  "and port (or the server is down)" },
	{ NULL, "cannot resolve", "the host name does not resolve: check host, and the "
	  "machine's DNS" },
	{ NULL, "too many concurrent", "the server limits connections: lower "
	  "max_connections" },
	{ NULL, "too many connections", "the server limits connections: lower "
	  "max_connections" },
	{ NULL, "sending limit exceeded", "the provider's sending quota is used up: set "
	  "max_per_day below it, and add another upstream to the route" },
	{ NULL, "greylist", "greylisting: the receiver defers first attempts; relayd tries "
	  "again by itself" },
	{ "5.1.1", NULL, "the recipient's address does not exist at its domain" },
	{ "5.2.2", NULL, "the recipient's mailbox is full" },
	{ "5.1.10", NULL, "the recipient's domain accepts no mail (null MX)" },
	{ "5.1.2", NULL, "the recipient's domain does not exist (check for a typo)" },
	{ "5.3.4", NULL, "the message is bigger than the upstream accepts: the sender must "
	  "send it smaller" },
};

/* The case-insensitive substring test strcasestr would be, without _GNU_SOURCE's help. */
static int contains(const char *text, const char *words)
{
	size_t n = strlen(words);
	for (; *text; text++)
		if (strncasecmp(text, words, n) == 0)
			return 1;
	return 0;
}

/*
 * A row's code matches whatever the class: relayd defers what happens before
 * a transaction, so a 535 5.7.8 refusal of AUTH is logged as 4.7.8.
 */
static int matches(const char *code, const char *words, const char *dsn, const char *text)
{
	size_t n = code ? strlen(code) : 0;
	if (code && (!dsn || !dsn[0] || strncmp(dsn + 1, code + 1, n - 1) != 0 ||
	    (dsn[n] && dsn[n] != '.')))
		return 0;
	return !words || (text && contains(text, words));
}

const char *hint_for(const struct config *conf, const char *dsn, const char *text)
{
	for (size_t i = 0; conf && i < conf->nhints; i++)
		if (matches(conf->hints[i].code, conf->hints[i].words, dsn, text))
			return conf->hints[i].hint;
	for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
		if (matches(builtin[i].code, builtin[i].words, dsn, text))
			return builtin[i].hint;
	return NULL;
}

const char *hint_for_reply(const struct config *conf, const char *reply)
{
	char dsn[16];
	int code = reply && reply[0] >= '2' && reply[0] <= '5' ? atoi(reply) : 0;

	if (!reply || code / 100 == 2)
		return NULL;
	smtp_reply_dsn(code, strlen(reply) > 4 ? reply + 4 : "", dsn);
	return hint_for(conf, code ? dsn : NULL, reply);
}
