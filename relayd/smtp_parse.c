/*
 * smtp_parse — parsers for the verb, the MAIL/RCPT paths and their ESMTP
 * parameters.  Strict where RFC 5321 is strict (angle brackets, atom and
 * quoted-string syntax, address literals), lenient where real MTAs differ
 * (a space after the colon, a source route, which is accepted and dropped).
 */
#include "relayd/smtp_parse.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int smtp_utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			n = 1, cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2, cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3, cp = c & 0x07;
		} else {
			return 0;
		}
		for (size_t k = 1; k <= n; k++) {
			if (i + k >= len || (s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		/* no overlong forms, no surrogates, nothing past U+10FFFF */
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return 0;
		i += n + 1;
	}
	return 1;
}

int smtp_parse_verb(const char *line, char *verb, const char **args)
{
	size_t n = 0;
	while (line[n] && line[n] != ' ') {
		if (n >= SMTP_VERB_MAX || !isalpha((unsigned char)line[n]))
			return -1;
		verb[n] = (char)toupper((unsigned char)line[n]);
		n++;
	}
	if (n == 0)
		return -1;
	verb[n] = '\0';
	*args = line[n] == ' ' ? line + n + 1 : line + n;
	return 0;
}

/* RFC 5321 atext, plus UTF-8 bytes (checked for well-formedness later). */
static int is_atext(unsigned char c)
{
	return isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL || c >= 0x80;
}

static int is_letdig(unsigned char c)
{
	return isalnum(c) || c >= 0x80;
}

/* Dot-string or Quoted-string; returns the length consumed, 0 on error. */
static size_t scan_local_part(const char *s)
{
	size_t i = 0;
	if (s[0] == '"') {
		for (i = 1; s[i] != '"'; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c == '\\') {
				c = (unsigned char)s[++i];
				if (c < 32 || c > 126)
					return 0;
			} else if (c < 32 || c == 127) {
				return 0;	/* includes the terminating NUL */
			}
		}
		return i + 1;
	}
	for (;;) {
		size_t start = i;
		while (s[i] && is_atext((unsigned char)s[i]))
			i++;
		if (i == start)
			return 0;
		if (s[i] != '.')
			return i;
		i++;
	}
}

static size_t scan_domain_name(const char *s)
{
	size_t i = 0;
	for (;;) {
		size_t start = i;
		if (!is_letdig((unsigned char)s[i]))
			return 0;
		while (is_letdig((unsigned char)s[i]) || s[i] == '-')
			i++;
		if (s[i - 1] == '-' || i - start > 63)
			return 0;
		if (s[i] != '.' || !is_letdig((unsigned char)s[i + 1]))
			return i;
		i++;
	}
}

/* "[192.0.2.1]", "[IPv6:2001:db8::1]"; returns the length consumed, 0 on error. */
static size_t scan_address_literal(const char *s)
{
	const char *end = strchr(s, ']');
	char buf[64];
	unsigned char bin[16];
	if (!end || (size_t)(end - s - 1) >= sizeof buf)
		return 0;
	memcpy(buf, s + 1, (size_t)(end - s - 1));
	buf[end - s - 1] = '\0';
	if (strncasecmp(buf, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, buf + 5, bin) != 1)
			return 0;
	} else if (inet_pton(AF_INET, buf, bin) != 1) {
		return 0;
	}
	return (size_t)(end - s + 1);
}

/*
 * Parse "<mailbox>" (or "<>" when null_ok) at *sp into addr; advances *sp past
 * the '>'.  *non_ascii is set when the mailbox holds UTF-8.
 */
static enum smtp_parse_status parse_path(const char **sp, int null_ok, char *addr,
    int *non_ascii)
{
	const char *s = *sp;
	if (*s != '<')
		return SMTP_PARSE_SYNTAX;
	s++;
	if (*s == '>') {
		if (!null_ok)
			return SMTP_PARSE_BAD_ADDRESS;
		addr[0] = '\0';
		*non_ascii = 0;
		*sp = s + 1;
		return SMTP_PARSE_OK;
	}
	if (*s == '@') {	/* source route "@a,@b:" — RFC 5321 §4.1.2: accept, ignore */
		const char *colon = strchr(s, ':');
		const char *close = strchr(s, '>');
		if (!colon || (close && close < colon))
			return SMTP_PARSE_BAD_ADDRESS;
		s = colon + 1;
	}
	const char *mailbox = s;
	size_t n = scan_local_part(s);
	if (n == 0 || s[n] != '@')
		return SMTP_PARSE_BAD_ADDRESS;
	s += n + 1;
	n = *s == '[' ? scan_address_literal(s) : scan_domain_name(s);
	if (n == 0 || n > 255 || s[n] != '>')
		return SMTP_PARSE_BAD_ADDRESS;
	s += n;
	size_t len = (size_t)(s - mailbox);
	if (len > SMTP_ADDR_MAX)
		return SMTP_PARSE_BAD_ADDRESS;
	if (!smtp_utf8_valid((const unsigned char *)mailbox, len))
		return SMTP_PARSE_BAD_ADDRESS;
	memcpy(addr, mailbox, len);
	addr[len] = '\0';
	*non_ascii = 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)mailbox[i] >= 0x80)
			*non_ascii = 1;
	*sp = s + 1;
	return SMTP_PARSE_OK;
}

/* "FROM:" / "TO:" with an optional space after the colon (Postfix accepts it). */
static const char *skip_keyword(const char *args, const char *kw)
{
	size_t n = strlen(kw);
	if (strncasecmp(args, kw, n) != 0)
		return NULL;
	args += n;
	while (*args == ' ')
		args++;
	return args;
}

/*
 * The next "KEY[=VALUE]" of an ESMTP parameter list (RFC 5321 §4.1.2:
 * esmtp-keyword and esmtp-value).  Returns 0 with *sp advanced, 1 at the end,
 * -1 on bad syntax.
 */
static int next_param(const char **sp, char *key, size_t keylen, const char **val,
    size_t *vallen)
{
	const char *s = *sp;
	if (*s == '\0')
		return 1;
	if (*s != ' ')
		return -1;
	while (*s == ' ')
		s++;
	if (*s == '\0')
		return 1;	/* trailing spaces: harmless */
	size_t k = 0;
	if (!isalnum((unsigned char)*s))
		return -1;
	while (isalnum((unsigned char)*s) || *s == '-') {
		if (k + 1 >= keylen)
			return -1;
		key[k++] = (char)toupper((unsigned char)*s++);
	}
	key[k] = '\0';
	*val = NULL;
	*vallen = 0;
	if (*s == '=') {
		*val = ++s;
		while (*s && *s != ' ' && *s != '=' && (unsigned char)*s > 32 &&
		    (unsigned char)*s != 127)
			s++;
		*vallen = (size_t)(s - *val);
		if (*vallen == 0)
			return -1;
	}
	if (*s != '\0' && *s != ' ')
		return -1;
	*sp = s;
	return 0;
}

/* xtext (RFC 3461 §4): printable ASCII except '+' and '=', or "+HH"; UTF-8 when utf8. */
static int xtext_valid(const char *v, size_t n, int utf8)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c == '+') {
			if (i + 2 >= n)
				return 0;
			for (int k = 1; k <= 2; k++)
				if (!isxdigit((unsigned char)v[i + k]) ||
				    islower((unsigned char)v[i + k]))
					return 0;
			i += 2;
		} else if (c >= 0x80) {
			if (!utf8)
				return 0;
		} else if (c < 33 || c > 126 || c == '=') {
			return 0;
		}
	}
	return utf8 ? smtp_utf8_valid((const unsigned char *)v, n) : 1;
}

static int value_is(const char *v, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(v, word, n) == 0;
}

static void note_param(char *bad, size_t badlen, const char *key)
{
	size_t n = strlen(key);
	if (n >= badlen)
		n = badlen - 1;
	memcpy(bad, key, n);
	bad[n] = '\0';
}

enum smtp_parse_status smtp_parse_mail(const char *args, struct smtp_mail_args *out)
{
	memset(out, 0, sizeof *out);
	const char *s = skip_keyword(args, "FROM:");
	if (!s)
		return SMTP_PARSE_SYNTAX;
	int non_ascii;
	enum smtp_parse_status st = parse_path(&s, 1, out->addr, &non_ascii);
	if (st != SMTP_PARSE_OK)
		return st;

	char key[32];
	const char *v;
	size_t n;
	int r;
	int seen_envid = 0, seen_auth = 0;
	while ((r = next_param(&s, key, sizeof key, &v, &n)) == 0) {
		note_param(out->bad_param, sizeof out->bad_param, key);
		if (strcmp(key, "SIZE") == 0) {
			if (out->size_given || !v || n > 20 || strspn(v, "0123456789") < n)
				return SMTP_PARSE_BAD_PARAM;
			/* RFC 1870 allows 20 digits: past 2^64 is "too big", not bad syntax. */
			errno = 0;
			unsigned long long size = strtoull(v, NULL, 10);
			out->size = errno == ERANGE ? UINT64_MAX : size;
			out->size_given = 1;
		} else if (strcmp(key, "BODY") == 0) {
			if (out->body != SMTP_BODY_NONE || !v)
				return SMTP_PARSE_BAD_PARAM;
			if (value_is(v, n, "7BIT"))
				out->body = SMTP_BODY_7BIT;
			else if (value_is(v, n, "8BITMIME"))
				out->body = SMTP_BODY_8BITMIME;
			else
				return SMTP_PARSE_BAD_PARAM;	/* BINARYMIME is not offered */
		} else if (strcmp(key, "SMTPUTF8") == 0) {
			if (out->smtputf8 || v)
				return SMTP_PARSE_BAD_PARAM;
			out->smtputf8 = 1;
		} else if (strcmp(key, "RET") == 0) {
			if (out->ret != SMTP_RET_NONE || !v)
				return SMTP_PARSE_BAD_PARAM;
			if (value_is(v, n, "FULL"))
				out->ret = SMTP_RET_FULL;
			else if (value_is(v, n, "HDRS"))
				out->ret = SMTP_RET_HDRS;
			else
				return SMTP_PARSE_BAD_PARAM;
		} else if (strcmp(key, "ENVID") == 0) {
			if (seen_envid || !v || n > SMTP_ENVID_MAX || !xtext_valid(v, n, 0))
				return SMTP_PARSE_BAD_PARAM;
			memcpy(out->envid, v, n);
			out->envid[n] = '\0';
			seen_envid = 1;
		} else if (strcmp(key, "AUTH") == 0) {
			/* RFC 4954 §5: who submitted it first; checked, then not trusted. */
			if (seen_auth++ || !v || n > 500 ||
			    !(value_is(v, n, "<>") || xtext_valid(v, n, 1)))
				return SMTP_PARSE_BAD_PARAM;
		} else {
			return SMTP_PARSE_UNKNOWN_PARAM;
		}
	}
	if (r < 0)
		return SMTP_PARSE_SYNTAX;
	out->bad_param[0] = '\0';
	if (non_ascii && !out->smtputf8)
		return SMTP_PARSE_NEED_UTF8;
	return SMTP_PARSE_OK;
}

/* NOTIFY=NEVER or a comma list of SUCCESS, FAILURE, DELAY (RFC 3461 §4.1). */
static int parse_notify(const char *v, size_t n, unsigned *notify)
{
	static const struct { const char *word; unsigned bit; } words[] = {
		{ "NEVER", SMTP_NOTIFY_NEVER }, { "SUCCESS", SMTP_NOTIFY_SUCCESS },
		{ "FAILURE", SMTP_NOTIFY_FAILURE }, { "DELAY", SMTP_NOTIFY_DELAY },
	};
	unsigned bits = 0;
	size_t i = 0;
	while (i <= n) {
		size_t j = i;
		while (j < n && v[j] != ',')
			j++;
		unsigned bit = 0;
		for (size_t w = 0; w < sizeof words / sizeof words[0]; w++)
			if (value_is(v + i, j - i, words[w].word))
				bit = words[w].bit;
		if (bit == 0 || (bits & bit))
			return -1;
		bits |= bit;
		i = j + 1;
	}
	if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
		return -1;
	*notify = bits;
	return 0;
}

/* ORCPT=addr-type;xtext (RFC 3461 §4.2; "utf-8" type per RFC 6533). */
static int orcpt_valid(const char *v, size_t n, int utf8)
{
	const char *semi = memchr(v, ';', n);
	if (!semi || semi == v || (size_t)(semi - v) + 1 >= n)
		return 0;
	for (const char *p = v; p < semi; p++)
		if (!isalnum((unsigned char)*p) && *p != '-')
			return 0;
	return xtext_valid(semi + 1, n - (size_t)(semi - v) - 1, utf8);
}

enum smtp_parse_status smtp_parse_rcpt(const char *args, int utf8,
    struct smtp_rcpt_args *out)
{
	memset(out, 0, sizeof *out);
	const char *s = skip_keyword(args, "TO:");
	if (!s)
		return SMTP_PARSE_SYNTAX;
	int non_ascii = 0;
	enum smtp_parse_status st;
	/* The one address without a domain every relay must take (RFC 5321 §4.5.1). */
	if (strncasecmp(s, "<postmaster>", 12) == 0) {
		strcpy(out->addr, "postmaster");
		out->postmaster = 1;
		s += 12;
	} else if ((st = parse_path(&s, 0, out->addr, &non_ascii)) != SMTP_PARSE_OK) {
		return st;
	}
	if (non_ascii && !utf8)
		return SMTP_PARSE_NEED_UTF8;

	char key[32];
	const char *v;
	size_t n;
	int r;
	while ((r = next_param(&s, key, sizeof key, &v, &n)) == 0) {
		note_param(out->bad_param, sizeof out->bad_param, key);
		if (strcmp(key, "NOTIFY") == 0) {
			if (out->notify || !v || parse_notify(v, n, &out->notify) < 0)
				return SMTP_PARSE_BAD_PARAM;
		} else if (strcmp(key, "ORCPT") == 0) {
			if (out->orcpt[0] || !v || n > SMTP_ORCPT_MAX || !orcpt_valid(v, n, utf8))
				return SMTP_PARSE_BAD_PARAM;
			memcpy(out->orcpt, v, n);
			out->orcpt[n] = '\0';
		} else {
			return SMTP_PARSE_UNKNOWN_PARAM;
		}
	}
	if (r < 0)
		return SMTP_PARSE_SYNTAX;
	out->bad_param[0] = '\0';
	return SMTP_PARSE_OK;
}

enum smtp_parse_status smtp_parse_auth(const char *args, char *mech, size_t mechlen,
    const char **initial)
{
	size_t n = strcspn(args, " ");

	*initial = NULL;
	if (n == 0)
		return SMTP_PARSE_SYNTAX;
	if (n >= mechlen)
		return SMTP_PARSE_UNKNOWN_PARAM;
	if (args[n] == ' ') {
		const char *text = args + n + 1;
		if (!*text || strchr(text, ' '))
			return SMTP_PARSE_SYNTAX;
		*initial = text;
	}
	for (size_t i = 0; i < n; i++)
		mech[i] = args[i] >= 'a' && args[i] <= 'z' ? (char)(args[i] - 'a' + 'A') : args[i];
	mech[n] = '\0';
	return SMTP_PARSE_OK;
}
