/*
 * smtp_reply — reading an upstream's replies whole.  Every line is bounded,
 * and so are the number of lines and the joined text: a hostile upstream
 * cannot make relayd buffer without end.
 */
#include "relayd/smtp_reply.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

void smtp_reply_reset(struct smtp_reply *r)
{
	r->code = 0;
	r->len = 0;
	r->lines = 0;
	r->text[0] = '\0';
	r->dsn[0] = '\0';
}

/* "X.Y.Z" at the start of s with X matching the basic code's class: its length, or 0. */
static size_t enhanced_len(const char *s, int code)
{
	const char *p = s;
	if (*p != '0' + code / 100 || p[1] != '.')
		return 0;
	p += 2;
	for (int part = 0; part < 2; part++) {
		size_t n = strspn(p, "0123456789");
		if (n == 0 || n > 3)
			return 0;
		p += n;
		if (part == 0) {
			if (*p != '.')
				return 0;
			p++;
		}
	}
	return *p == ' ' || *p == '\0' || *p == '\n' ? (size_t)(p - s) : 0;
}

void smtp_reply_dsn(int code, const char *text, char dsn[16])
{
	size_t n = text ? enhanced_len(text, code) : 0;
	if (n > 0 && n < 16) {
		memcpy(dsn, text, n);
		dsn[n] = '\0';
		return;
	}
	/* RFC 3463: the class alone says success, persistent or permanent. */
	snprintf(dsn, 16, "%d.0.0", code >= 200 && code < 600 ? code / 100 : 4);
}

enum smtp_reply_status smtp_reply_read(struct smtp_reply *r, struct evbuffer *in)
{
	char line[SMTP_REPLY_LINE_MAX + 2];
	size_t n;

	for (;;) {
		struct evbuffer_ptr lf = evbuffer_search(in, "\n", 1, NULL);
		if (lf.pos < 0)
			return evbuffer_get_length(in) > SMTP_REPLY_LINE_MAX ? SMTP_REPLY_BAD :
			    SMTP_REPLY_MORE;
		n = (size_t)lf.pos + 1;
		if (n > SMTP_REPLY_LINE_MAX)
			return SMTP_REPLY_BAD;
		evbuffer_remove(in, line, n);
		line[--n] = '\0';
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		if (n < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
		    !isdigit((unsigned char)line[2]) || (n > 3 && line[3] != ' ' && line[3] != '-'))
			return SMTP_REPLY_BAD;
		int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (code < 200 || code > 599 || (r->lines > 0 && code != r->code))
			return SMTP_REPLY_BAD;
		if (++r->lines > SMTP_REPLY_LINES_MAX)
			return SMTP_REPLY_BAD;
		/* Control bytes never reach the log or a DSN. */
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
				line[i] = ' ';
		if (r->len + n + 2 < sizeof r->text) {
			if (r->len)
				r->text[r->len++] = '\n';
			memcpy(r->text + r->len, line, n);
			r->len += n;
			r->text[r->len] = '\0';
		}
		if (r->lines == 1)
			smtp_reply_dsn(code, n > 4 ? line + 4 : "", r->dsn);
		r->code = code;
		if (n == 3 || line[3] == ' ')
			return SMTP_REPLY_DONE;
	}
}

const char *smtp_reply_line(const struct smtp_reply *r, unsigned i, size_t *len)
{
	const char *p = r->text;
	for (unsigned k = 0; k < i; k++) {
		p = strchr(p, '\n');
		if (!p)
			return NULL;
		p++;
	}
	size_t n = strcspn(p, "\n");
	if (n < 4) {
		*len = 0;
		return p + n;
	}
	*len = n - 4;
	return p + 4;
}
