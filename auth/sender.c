/*
 * sender — the sender rules at MAIL FROM (DESIGN.md: auth owns who may send
 * as whom): `deny_sender` refuses the senders it lists to every client, and
 * `sender_login` holds a SASL login to the senders listed for it.  Lookups
 * are binary searches in the sorted lists conf/sender_rules.c builds.
 *
 * An address compares as qmail compares badmailfrom (constmap: the whole
 * address without regard to ASCII case, then "@domain") and as Postfix's
 * tables do; a local part in quotes compares as its plain form, since
 * "bob"@example.com is bob@example.com (RFC 5321 §4.1.2): quoting must not
 * slip past a deny_sender entry.
 */
#include "auth/auth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SENDER_KEY_MAX 1280	/* a 512-byte address with its domain in A-labels fits */

static void put(char *key, size_t *n, char c)
{
	key[(*n)++] = (char)tolower((unsigned char)c);
}

/*
 * sender as the rules hold their entries: the local part unquoted, all in
 * lower case.  *domain is the offset of the '@' before the domain, or -1.
 * A sender longer than relayd ever takes is only its "@domain".  0, or -1
 * when not even that fits (then it matches no entry).
 */
static int sender_key(const char *sender, char *key, size_t keylen, long *domain)
{
	const char *at = strrchr(sender, '@'), *end = at ? at : sender + strlen(sender);
	const char *s = sender;
	size_t n = 0;

	if (strlen(sender) >= keylen) {
		if (!at || strlen(at) >= keylen)
			return -1;	/* else only the "@domain" below, compared as a whole too */
	} else if (end - s >= 2 && s[0] == '"' && end[-1] == '"') {
		for (s++; s < end - 1; s++) {
			if (*s == '\\' && s + 1 < end - 1)
				s++;
			put(key, &n, *s);
		}
	} else {
		for (; s < end; s++)
			put(key, &n, *s);
	}
	*domain = at ? (long)n : -1;
	for (s = end; *s; s++)
		put(key, &n, *s);
	key[n] = '\0';
	return 0;
}

static int rule_compare(const void *key, const void *element)
{
	return strcmp(key, ((const struct conf_sender_rule *)element)->address);
}

/* The entry for the address itself, else for its @domain; NULL when none. */
static const struct conf_sender_rule *find(const struct conf_sender_rule *list, size_t n,
    const char *key, long domain)
{
	const struct conf_sender_rule *r;

	if (n == 0)
		return NULL;
	if ((r = bsearch(key, list, n, sizeof *list, rule_compare)))
		return r;
	if (domain >= 0)
		return bsearch(key + domain, list, n, sizeof *list, rule_compare);
	return NULL;
}

static int login_compare(const void *user, const void *element)
{
	return strcasecmp(user, ((const struct conf_sender_login *)element)->user);
}

static const struct conf_sender_login *find_login(const struct config *conf, const char *user)
{
	if (conf->nsender_login == 0)
		return NULL;
	return bsearch(user, conf->sender_login, conf->nsender_login, sizeof *conf->sender_login,
	    login_compare);
}

/*
 * The login's sender_login entries, at most two: Cyrus names a sasldb user of
 * the default realm (relayd's hostname) "bob@HOSTNAME" while saslauthd may say
 * "bob", and admins write either: both spellings are the same login.
 */
size_t auth_sender_logins(const struct config *conf, const char *user,
    const struct conf_sender_login *entries[2])
{
	const char *at = strrchr(user, '@');
	char other[512];
	size_t n = 0;
	int len;

	if ((entries[n] = find_login(conf, user)))
		n++;
	if (at && strcasecmp(at + 1, conf->hostname) == 0)
		len = snprintf(other, sizeof other, "%.*s", (int)(at - user), user);
	else if (!at)
		len = snprintf(other, sizeof other, "%s@%s", user, conf->hostname);
	else
		return n;
	if (len >= 0 && (size_t)len < sizeof other && (entries[n] = find_login(conf, other)))
		n++;
	return n;
}

enum auth_sender_result auth_sender_check(const struct config *conf, const char *user,
    const char *sender, const struct conf_sender_rule **rule)
{
	char key[SENDER_KEY_MAX];
	long domain = -1;
	const struct conf_sender_login *logins[2];

	*rule = NULL;
	if (sender[0] == '\0')
		return AUTH_SENDER_OK;	/* bounces: no address to own or refuse */
	int keyed = sender_key(sender, key, sizeof key, &domain) == 0;
	if (keyed && (*rule = find(conf->deny_sender, conf->ndeny_sender, key, domain)))
		return AUTH_SENDER_DENIED;
	if (!user)
		return AUTH_SENDER_OK;
	size_t n = auth_sender_logins(conf, user, logins);
	if (n == 0)
		return conf->sender_login_strict ? AUTH_SENDER_NO_ENTRY : AUTH_SENDER_OK;
	for (size_t i = 0; keyed && i < n; i++)
		if (find(logins[i]->senders, logins[i]->nsenders, key, domain))
			return AUTH_SENDER_OK;
	return AUTH_SENDER_NOT_OWNED;
}
