/*
 * bounce — builds the delivery status notification (RFC 3464) that tells a
 * sender which recipients failed, are delayed or were relayed to a server
 * without DSN support: a human-readable part, the
 * machine-readable message/delivery-status part and the original (or its
 * headers), as a new message from the null sender, ready for the queue.
 * Everything that came from the network is escaped on its way into the report.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relayd/bounce.h"
#include "relayd/smtp_parse.h"

#define LINE_SOFT 78		/* RFC 5322 §2.1.1: SHOULD */
#define LINE_HARD 998		/* RFC 5322 §2.1.1: MUST */
#define BOUNDARY_RANDOM 16	/* random bytes in a MIME boundary */
#define TEXT_INDENT "    "	/* continuation of a line in the text part */

/* One report under construction. */
struct report {
	const char *hostname;
	const struct queue_envelope *orig;
	const struct bounce_rcpt *rcpts;
	size_t n;
	int64_t now;
	enum bounce_action kind;	/* the gravest action reported: what the report is */
	int headers_only;	/* part 3 is the original's header section only */
	const char *to;		/* the report's recipient: the sender, or the postmaster */
	int notice;		/* to the postmaster: 1 + enum bounce_notice, or 0 */
	int utf8;		/* SMTPUTF8 original: UTF-8 may go into the report (RFC 6533) */
	int eight_bit;		/* UTF-8 went into the part being built */
	int failed;		/* an allocation failed: the report is incomplete */
	struct evbuffer *line;	/* the logical line being built, before folding */
	char last;		/* its last byte, so runs of white space collapse */
	char id[QUEUE_ID_LEN + 1];
	char boundary[64];
};

int bounce_wanted(unsigned notify, enum bounce_action action)
{
	static const unsigned asks[] = {
		[BOUNCE_FAILED] = QUEUE_NOTIFY_FAILURE,
		[BOUNCE_DELAYED] = QUEUE_NOTIFY_DELAY,
		[BOUNCE_RELAYED] = QUEUE_NOTIFY_SUCCESS,
	};
	if (notify & QUEUE_NOTIFY_NEVER)
		return 0;
	if (notify == 0)
		return action != BOUNCE_RELAYED;
	return (notify & asks[action]) != 0;
}

void bounce_format_date(char *buf, size_t len, int64_t when)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)when;
	struct tm tm;

	if (!localtime_r(&t, &tm)) {
		t = 0;
		gmtime_r(&t, &tm);
	}
	long off = tm.tm_gmtoff / 60;
	long aoff = off < 0 ? -off : off;
	snprintf(buf, len, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld",
	    days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
	    tm.tm_hour, tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+', aoff / 60, aoff % 60);
}

/* Output helpers: an allocation failure is remembered, checked once at the end. */

static void out_add(struct report *r, struct evbuffer *out, const char *s)
{
	if (evbuffer_add(out, s, strlen(s)) < 0)
		r->failed = 1;
}

static void out_printf(struct report *r, struct evbuffer *out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void out_printf(struct report *r, struct evbuffer *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(out, fmt, ap) < 0)
		r->failed = 1;
	va_end(ap);
}

/*
 * Logical lines.  A header field or a line of the text part is gathered in
 * r->line from trusted pieces (line_raw) and network text (line_text), then
 * folded onto the output by line_end.
 */

static void line_put(struct report *r, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (evbuffer_add(r->line, p, n) < 0)
		r->failed = 1;
	r->last = p[n - 1];
}

static void line_raw(struct report *r, const char *s)
{
	line_put(r, s, strlen(s));
}

/* Length of the valid UTF-8 character at s, or 0. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
	size_t k = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;

	if (k == 0 || k > n || !smtp_utf8_valid(s, k))
		return 0;
	return k;
}

/*
 * Network text: no byte of it can end a line or start a header, so CR, LF
 * and tabs become one space (runs of them too, so folding never makes a
 * line of only white space); other controls, and bytes that are not
 * allowed UTF-8, become \xHH (STYLE.md, rule 16).
 */
static void line_text(struct report *r, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0; i < n; ) {
		size_t k = p[i] >= 0x80 && r->utf8 ? utf8_char(p + i, n - i) : 0;
		if (k > 0) {
			line_put(r, s + i, k);
			r->eight_bit = 1;
			i += k;
			continue;
		}
		if (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n') {
			if (r->last != ' ')
				line_put(r, " ", 1);
		} else if (p[i] < 0x20 || p[i] >= 0x7f) {
			char hex[5];
			snprintf(hex, sizeof hex, "\\x%02X", p[i]);
			line_put(r, hex, 4);
		} else {
			line_put(r, s + i, 1);
		}
		i++;
	}
}

static void line_str(struct report *r, const char *s)
{
	line_text(r, s, strlen(s));
}

static int hex_value(char c)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *p = c ? strchr(hex, c) : NULL;

	return p ? (int)(p - hex) : -1;
}

/* xtext (RFC 3461 §4): "+HH" stands for one byte.  The result is network text. */
static void line_xtext(struct report *r, const char *s, size_t n)
{
	char *plain = malloc(n + 1);
	size_t o = 0;

	if (!plain) {
		r->failed = 1;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		int hi = s[i] == '+' && i + 2 < n ? hex_value(s[i + 1]) : -1;
		int lo = hi >= 0 ? hex_value(s[i + 2]) : -1;
		if (lo >= 0) {
			plain[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			plain[o++] = s[i];
		}
	}
	line_text(r, plain, o);
	free(plain);
}

/*
 * Where to end the first piece of s (n bytes, more than fit) on a line that
 * has col bytes already: at the last space within LINE_SOFT, else the first
 * one within LINE_HARD, else (a word too long for any line) at LINE_HARD, on
 * a UTF-8 character boundary.  n when all of it may stay on this line.
 * Spaces that indent the line are not places to break.
 */
static size_t fold_point(const char *s, size_t n, size_t col)
{
	size_t soft = LINE_SOFT - col, hard = LINE_HARD - col;
	size_t lead = 0;

	while (lead < n && s[lead] == ' ')
		lead++;
	for (size_t i = soft; i > lead; i--)
		if (s[i] == ' ')
			return i;
	for (size_t i = soft + 1; i < n && i <= hard; i++)
		if (s[i] == ' ')
			return i;
	if (n <= hard)
		return n;
	while (hard > lead + 1 && ((unsigned char)s[hard] & 0xc0) == 0x80)
		hard--;
	return hard;
}

/* Fold the logical line onto out: continuation lines start with indent. */
static void line_end(struct report *r, struct evbuffer *out, const char *indent)
{
	size_t n = evbuffer_get_length(r->line);
	const char *s = (const char *)evbuffer_pullup(r->line, -1);
	size_t col = 0;

	if (!s && n > 0) {
		r->failed = 1;
		n = 0;
	}
	while (n > 0 && s[n - 1] == ' ')
		n--;
	while (n > LINE_SOFT - col) {
		size_t cut = fold_point(s, n, col);
		if (cut >= n)
			break;
		if (evbuffer_add(out, s, cut) < 0 || evbuffer_add(out, "\r\n", 2) < 0)
			r->failed = 1;
		out_add(r, out, indent);
		col = strlen(indent);
		if (s[cut] == ' ')
			cut++;
		s += cut;
		n -= cut;
	}
	if ((n > 0 && evbuffer_add(out, s, n) < 0) || evbuffer_add(out, "\r\n", 2) < 0)
		r->failed = 1;
	evbuffer_drain(r->line, evbuffer_get_length(r->line));
	r->last = '\0';
}

/* A header field (or DSN field) whose value is network text. */
static void field_text(struct report *r, struct evbuffer *out, const char *name,
    const char *prefix, const char *value)
{
	line_raw(r, name);
	line_raw(r, ": ");
	line_raw(r, prefix);
	line_str(r, value);
	line_end(r, out, " ");
}

static void field_date(struct report *r, struct evbuffer *out, const char *name,
    int64_t when)
{
	char date[64];

	bounce_format_date(date, sizeof date, when);
	out_printf(r, out, "%s: %s\r\n", name, date);
}

/* Address type for an address: RFC 6533's utf-8 for one that is not ASCII. */
static const char *addr_type(const struct report *r, const char *addr)
{
	for (const char *p = addr; r->utf8 && *p; p++)
		if ((unsigned char)*p >= 0x80)
			return "utf-8; ";
	return "rfc822; ";
}

/* Part 1: the explanation, as Postfix words it, so admins recognise it. */
static void text_intro(struct report *r, struct evbuffer *out)
{
	line_raw(r, "This is the mail system at host ");
	line_str(r, r->hostname);
	line_raw(r, ".");
	line_end(r, out, TEXT_INDENT);
	out_add(r, out, "\r\n");
	if (r->notice == 1 + BOUNCE_NOTICE_DOUBLE) {
		out_add(r, out,
		    "A delivery status notification (a bounce) could not be delivered to\r\n"
		    "its recipient, listed below.  It is not retried and not returned\r\n"
		    "again: this notice to the postmaster is the last word about it.\r\n"
		    "Its headers are attached below.\r\n");
		return;
	}
	if (r->notice == 1 + BOUNCE_NOTICE_COPY) {
		out_add(r, out, "This is a copy for the postmaster (notify) of a report sent to\r\n");
		line_raw(r, "<");
		line_str(r, r->orig->sender);
		line_raw(r, ">.  The message's headers are attached below.");
		line_end(r, out, TEXT_INDENT);
		out_add(r, out, "\r\n");
	}
	if (r->kind == BOUNCE_RELAYED) {
		out_add(r, out,
		    "Your message was handed on to the recipients listed below.  The server\r\n"
		    "it went to does not support delivery status notifications, so this is\r\n"
		    "the last report you will get about it, as you asked (NOTIFY=SUCCESS).\r\n");
	} else if (r->kind == BOUNCE_DELAYED) {
		out_add(r, out,
		    "####################################################################\r\n"
		    "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
		    "####################################################################\r\n"
		    "\r\n"
		    "Your message could not be delivered to one or more recipients yet.\r\n"
		    "It is still being retried until its time in the queue runs out;\r\n"
		    "you will be told if it cannot be delivered in the end.\r\n");
	} else {
		out_add(r, out,
		    "I'm sorry to have to inform you that your message could not\r\n"
		    "be delivered to one or more recipients.\r\n");
	}
	if (r->headers_only && r->orig->ret != QUEUE_RET_HDRS)
		out_printf(r, out,
		    "The message is larger than %d bytes, so only its headers\r\n"
		    "are attached below, not the whole message.\r\n", BOUNCE_FULL_MAX);
	else if (r->headers_only)
		out_add(r, out, "Its headers are attached below.\r\n");
	else
		out_add(r, out, "It is attached below.\r\n");
	out_add(r, out,
	    "\r\n"
	    "For further assistance, please send mail to postmaster.\r\n"
	    "\r\n"
	    "If you do so, please include this problem report. You can\r\n"
	    "delete your own text from the attached returned message.\r\n"
	    "\r\n"
	    "                   The mail system\r\n");
}

static const char *const action_words[] = {
	[BOUNCE_FAILED] = "delivery failed",
	[BOUNCE_DELAYED] = "delivery temporarily deferred",
	[BOUNCE_RELAYED] = "relayed",
};

/*
 * "<addr>: host H said: REPLY", each further line of the reply on its own
 * line; or "<addr>: REASON"; or both, when relayd gave up after a reply.
 */
static void text_rcpt_reply(struct report *r, struct evbuffer *out,
    const struct bounce_rcpt *b);

/* A recipient's paragraph, and the hint about it on a line of its own. */
static void text_rcpt(struct report *r, struct evbuffer *out, const struct bounce_rcpt *b)
{
	text_rcpt_reply(r, out, b);
	if (b->hint) {
		line_raw(r, TEXT_INDENT "Hint: ");
		line_str(r, b->hint);
		line_end(r, out, TEXT_INDENT);
	}
}

static void text_rcpt_reply(struct report *r, struct evbuffer *out,
    const struct bounce_rcpt *b)
{
	const char *reply = b->diagnostic && *b->diagnostic ? b->diagnostic : NULL;

	out_add(r, out, "\r\n");
	line_raw(r, "<");
	line_str(r, b->rcpt->addr);
	line_raw(r, ">: ");
	if (!reply) {
		line_str(r, b->reason ? b->reason : action_words[b->action]);
		line_end(r, out, TEXT_INDENT);
		return;
	}
	if (b->reason) {	/* expired: why relayd gave up, then the last reply */
		line_str(r, b->reason);
		line_raw(r, "; ");
	}
	if (b->remote_mta) {
		line_raw(r, "host ");
		line_str(r, b->remote_mta);
		line_raw(r, " said: ");
	}
	/* Empty lines of a reply would only be blank lines in the report: dropped. */
	for (int first = 1; *reply; ) {
		size_t len = strcspn(reply, "\n");
		if (first || strspn(reply, " \t\r") < len) {
			if (!first)
				line_raw(r, TEXT_INDENT);
			line_text(r, reply, len);
			line_end(r, out, TEXT_INDENT);
			first = 0;
		}
		reply += len + (reply[len] == '\n');
	}
}

static struct evbuffer *text_part(struct report *r)
{
	struct evbuffer *out = evbuffer_new();

	if (!out) {
		r->failed = 1;
		return NULL;
	}
	r->eight_bit = 0;
	text_intro(r, out);
	for (size_t i = 0; i < r->n; i++)
		text_rcpt(r, out, &r->rcpts[i]);
	return out;
}

/* "X.Y.Z" (RFC 3463): class 2, 4 or 5, then two numbers of one to three digits. */
static int status_valid(const char *s)
{
	size_t a, b;

	if (!s || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	a = strspn(s + 2, "0123456789");
	if (a < 1 || a > 3 || s[2 + a] != '.')
		return 0;
	b = strspn(s + 3 + a, "0123456789");
	return b >= 1 && b <= 3 && s[3 + a + b] == '\0';
}

/* Original-Recipient from ORCPT "addr-type;xtext" (RFC 3464 §2.3.1). */
static void status_orcpt(struct report *r, struct evbuffer *out, const char *orcpt)
{
	const char *semi = strchr(orcpt, ';');

	if (!semi || semi == orcpt)
		return;
	line_raw(r, "Original-Recipient: ");
	line_text(r, orcpt, (size_t)(semi - orcpt));
	line_raw(r, ";");
	line_xtext(r, semi + 1, strlen(semi + 1));
	line_end(r, out, " ");
}

static void status_rcpt(struct report *r, struct evbuffer *out, const struct bounce_rcpt *b)
{
	out_add(r, out, "\r\n");
	if (b->rcpt->orcpt)
		status_orcpt(r, out, b->rcpt->orcpt);
	field_text(r, out, "Final-Recipient", addr_type(r, b->rcpt->addr), b->rcpt->addr);
	static const char *const action[] = { "failed", "delayed", "relayed" };
	static const char *const fallback[] = { "5.0.0", "4.0.0", "2.0.0" };
	out_printf(r, out, "Action: %s\r\n", action[b->action]);
	out_printf(r, out, "Status: %s\r\n", status_valid(b->status) ? b->status :
	    fallback[b->action]);
	if (b->remote_mta)
		field_text(r, out, "Remote-MTA", "dns; ", b->remote_mta);
	if (b->diagnostic && *b->diagnostic)
		field_text(r, out, "Diagnostic-Code", "smtp; ", b->diagnostic);
	if (b->last_attempt != 0)
		field_date(r, out, "Last-Attempt-Date", b->last_attempt);
}

/* Part 2: the per-message fields, then one group per recipient. */
static struct evbuffer *status_part(struct report *r)
{
	struct evbuffer *out = evbuffer_new();

	if (!out) {
		r->failed = 1;
		return NULL;
	}
	r->eight_bit = 0;
	field_text(r, out, "Reporting-MTA", "dns; ", r->hostname);
	out_printf(r, out, "X-Relayd-Queue-ID: %s\r\n", r->orig->id);
	if (r->orig->envid) {
		line_raw(r, "Original-Envelope-Id: ");
		line_xtext(r, r->orig->envid, strlen(r->orig->envid));
		line_end(r, out, " ");
	}
	field_date(r, out, "Arrival-Date", r->orig->arrival);
	for (size_t i = 0; i < r->n; i++)
		status_rcpt(r, out, &r->rcpts[i]);
	return out;
}

/* A boundary no content can hold: the new id and 128 random bits. */
static int make_boundary(struct report *r)
{
	unsigned char rnd[BOUNDARY_RANDOM];
	char hex[2 * BOUNDARY_RANDOM + 1];

	if (RAND_bytes(rnd, sizeof rnd) != 1) {
		errno = EIO;
		return -1;
	}
	for (size_t i = 0; i < sizeof rnd; i++)
		snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
	snprintf(r->boundary, sizeof r->boundary, "=_relayd_%s_%s", r->id, hex);
	return 0;
}

static void top_headers(struct report *r, struct evbuffer *out, int eight_bit)
{
	char date[64];

	line_raw(r, "From: Mail Delivery System <MAILER-DAEMON@");
	line_str(r, r->hostname);
	line_raw(r, ">");
	line_end(r, out, " ");
	line_raw(r, "To: <");
	line_str(r, r->to);
	line_raw(r, ">");
	line_end(r, out, " ");
	static const char *const subject[] = {
		[BOUNCE_FAILED] = "Undelivered Mail Returned to Sender",
		[BOUNCE_DELAYED] = "Delayed Mail (still being retried)",
		[BOUNCE_RELAYED] = "Mail Relayed (no further notice will follow)",
	};
	if (r->notice == 1 + BOUNCE_NOTICE_DOUBLE)
		out_add(r, out, "Subject: Postmaster Warning: Undelivered Bounce\r\n");
	else
		out_printf(r, out, "Subject: %s%s\r\n", r->notice ? "Postmaster Copy: " : "",
		    subject[r->kind]);
	bounce_format_date(date, sizeof date, r->now);
	out_printf(r, out, "Date: %s\r\n", date);
	char msgid[80];
	snprintf(msgid, sizeof msgid, "Message-ID: <%s.%lld@", r->id, (long long)r->now);
	line_raw(r, msgid);
	line_str(r, r->hostname);
	line_raw(r, ">");
	line_end(r, out, " ");
	out_add(r, out, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
	out_printf(r, out, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s\"\r\n", r->boundary);
	if (eight_bit)
		out_add(r, out, "Content-Transfer-Encoding: 8bit\r\n");
	out_add(r, out, "\r\nThis is a MIME-encapsulated message.\r\n");
}

static void part_header(struct report *r, struct evbuffer *out, const char *description,
    const char *type, int eight_bit)
{
	out_printf(r, out, "\r\n--%s\r\nContent-Description: %s\r\nContent-Type: %s\r\n",
	    r->boundary, description, type);
	if (eight_bit)
		out_add(r, out, "Content-Transfer-Encoding: 8bit\r\n");
	out_add(r, out, "\r\n");
}

/* Part 3's header: RFC 6533's global types when the original may hold UTF-8. */
static void original_header(struct report *r, struct evbuffer *out, int eight_bit)
{
	if (r->headers_only)
		part_header(r, out, "Undelivered Message Headers",
		    r->utf8 ? "message/global-headers" : "text/rfc822-headers", eight_bit);
	else
		part_header(r, out, "Undelivered Message",
		    r->utf8 ? "message/global" : "message/rfc822", eight_bit);
}

/* Everything before the original: headers, parts 1 and 2, part 3's header; NULL on ENOMEM. */
static struct evbuffer *report_head(struct report *r, int eight_bit)
{
	struct evbuffer *text = text_part(r);
	int text_8bit = r->eight_bit;
	struct evbuffer *status = status_part(r);
	int status_8bit = r->eight_bit;
	struct evbuffer *out = evbuffer_new();

	if (out && text && status) {
		top_headers(r, out, eight_bit);
		part_header(r, out, "Notification", text_8bit ?
		    "text/plain; charset=utf-8" : "text/plain; charset=us-ascii", text_8bit);
		if (evbuffer_add_buffer(out, text) < 0)
			r->failed = 1;
		part_header(r, out, "Delivery report", r->utf8 ?
		    "message/global-delivery-status" : "message/delivery-status", status_8bit);
		if (evbuffer_add_buffer(out, status) < 0)
			r->failed = 1;
		original_header(r, out, eight_bit);
	}
	if (text)
		evbuffer_free(text);
	if (status)
		evbuffer_free(status);
	if (out && (r->failed || !text || !status)) {
		evbuffer_free(out);
		out = NULL;
	}
	if (!out)
		errno = ENOMEM;
	return out;
}

/* Copying the original (or its header section) from the queue into the new spool. */
struct original_copy {
	struct queue_spool *spool;
	int headers_only;
	uint64_t copied;
	size_t col;		/* bytes of the current line so far */
	char last;		/* the byte before p[0] */
	int done;		/* the header section is complete: stop reading */
	int error;		/* errno of a failed spool write */
};

/*
 * How much of p belongs to the header section: everything up to and
 * including the first empty line.  A message without one (or with a
 * monstrous header) is cut at the first line end past BOUNCE_FULL_MAX.
 */
static size_t header_section(struct original_copy *c, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char prev = c->last;
		c->last = p[i];
		if (p[i] != '\n') {
			c->col++;
			continue;
		}
		int empty = c->col == 0 || (c->col == 1 && prev == '\r');
		c->col = 0;
		if (empty || c->copied + i + 1 >= BOUNCE_FULL_MAX) {
			c->done = 1;
			return i + 1;
		}
	}
	return len;
}

static int copy_original(void *arg, const void *data, size_t len)
{
	struct original_copy *c = arg;
	size_t n = c->headers_only ? header_section(c, data, len) : len;

	if (queue_spool_write(c->spool, data, n) < 0) {
		c->error = errno ? errno : EIO;
		return -1;
	}
	c->copied += n;
	return c->done;
}

static int write_original(struct queue *q, const struct report *r, struct queue_spool *sp)
{
	struct original_copy c = { .spool = sp, .headers_only = r->headers_only };

	/* Stopping after the header section makes queue_read_body say -1 too. */
	if (queue_read_body(q, r->orig->id, copy_original, &c) != 0 && !c.done) {
		errno = c.error ? c.error : EIO;
		return -1;
	}
	return 0;
}

/* The whole body into sp. */
static int report_write(struct queue *q, struct report *r, struct queue_spool *sp,
    int eight_bit)
{
	struct evbuffer *head = report_head(r, eight_bit);
	char end[sizeof r->boundary + 16];

	if (!head)
		return -1;
	size_t len = evbuffer_get_length(head);
	const unsigned char *p = evbuffer_pullup(head, -1);
	int rc = p ? queue_spool_write(sp, p, len) : (errno = ENOMEM, -1);
	evbuffer_free(head);
	if (rc < 0 || write_original(q, r, sp) < 0)
		return -1;
	int n = snprintf(end, sizeof end, "\r\n--%s--\r\n", r->boundary);
	return queue_spool_write(sp, end, (size_t)n);
}

/* The new message's envelope: from <>, to the original sender, never reported on. */
static struct queue_envelope *report_envelope(const struct report *r, int eight_bit)
{
	struct queue_envelope *env = queue_envelope_new();

	if (!env)
		return NULL;
	memcpy(env->id, r->id, sizeof env->id);
	env->ret = QUEUE_RET_NONE;
	env->body = eight_bit ? QUEUE_BODY_8BITMIME : QUEUE_BODY_7BIT;
	env->smtputf8 = r->utf8;
	env->arrival = r->now;
	env->notice = r->notice != 0;
	if (!(env->sender = strdup("")) ||
	    queue_envelope_add_rcpt(env, r->to, NULL, QUEUE_NOTIFY_NEVER) < 0) {
		queue_envelope_free(env);
		errno = ENOMEM;
		return NULL;
	}
	return env;
}

static int args_valid(const char *hostname, const char *to, const struct queue_envelope *orig,
    const struct bounce_rcpt *rcpts, size_t n)
{
	if (!hostname || !orig || !orig->sender || !to || !to[0] || !rcpts || n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!rcpts[i].rcpt || !rcpts[i].rcpt->addr)
			return 0;
	return 1;
}

static void report_init(struct report *r, const char *hostname,
    const struct queue_envelope *orig, const struct bounce_rcpt *rcpts, size_t n,
    int64_t now)
{
	memset(r, 0, sizeof *r);
	r->hostname = hostname;
	r->orig = orig;
	r->rcpts = rcpts;
	r->n = n;
	r->now = now;
	r->kind = BOUNCE_RELAYED;
	for (size_t i = 0; i < n; i++)
		if (rcpts[i].action == BOUNCE_FAILED ||
		    (rcpts[i].action == BOUNCE_DELAYED && r->kind == BOUNCE_RELAYED))
			r->kind = rcpts[i].action;
	/* RET governs failure reports (RFC 3461 §4.3); the others return headers only. */
	r->headers_only = r->kind != BOUNCE_FAILED || orig->ret == QUEUE_RET_HDRS ||
	    orig->size > BOUNCE_FULL_MAX;
	r->utf8 = orig->smtputf8 != 0;
	r->to = orig->sender;
}

/* The report r describes, as a new message: 0 with *env and *spool, or -1 (errno). */
static int build(struct queue *q, struct report *r, struct queue_envelope **env,
    struct queue_spool **spool)
{
	struct queue_envelope *e = NULL;
	struct queue_spool *sp = NULL;

	queue_new_id(q, r->id);
	/* 8-bit: the original's body returned whole, or UTF-8 allowed anywhere. */
	int eight_bit = r->utf8 || (!r->headers_only && r->orig->body == QUEUE_BODY_8BITMIME);
	if (make_boundary(r) < 0 || !(r->line = evbuffer_new()) ||
	    !(e = report_envelope(r, eight_bit)) || !(sp = queue_spool_new(q)) ||
	    report_write(q, r, sp, eight_bit) < 0) {
		int saved = errno ? errno : ENOMEM;
		if (r->line)
			evbuffer_free(r->line);
		queue_envelope_free(e);
		queue_spool_free(sp);
		errno = saved;
		return -1;
	}
	evbuffer_free(r->line);
	e->size = queue_spool_size(sp);
	*env = e;
	*spool = sp;
	return 0;
}

int bounce_build(struct queue *q, const char *hostname, const struct queue_envelope *orig,
    const struct bounce_rcpt *rcpts, size_t n, int64_t now,
    struct queue_envelope **env, struct queue_spool **spool)
{
	struct report r;

	if (!q || !env || !spool || !orig || !args_valid(hostname, orig->sender, orig, rcpts, n) ||
	    !orig->sender[0]) {
		errno = EINVAL;
		return -1;
	}
	report_init(&r, hostname, orig, rcpts, n, now);
	return build(q, &r, env, spool);
}

int bounce_build_notice(struct queue *q, const char *hostname, const char *postmaster,
    enum bounce_notice what, const struct queue_envelope *orig,
    const struct bounce_rcpt *rcpts, size_t n, int64_t now,
    struct queue_envelope **env, struct queue_spool **spool)
{
	struct report r;

	if (!q || !env || !spool || !args_valid(hostname, postmaster, orig, rcpts, n) ||
	    (what == BOUNCE_NOTICE_COPY && !orig->sender[0])) {
		errno = EINVAL;
		return -1;
	}
	report_init(&r, hostname, orig, rcpts, n, now);
	r.to = postmaster;
	r.notice = 1 + what;
	r.headers_only = 1;	/* the postmaster needs to know what, not to read it */
	return build(q, &r, env, spool);
}
