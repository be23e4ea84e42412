/*
 * test_bounce — delivery status notifications (relayd/bounce.c): who gets
 * one (NOTIFY), and what a report looks like once it has gone through the
 * queue and come back: RFC 3464 structure, every field, CRLF and line
 * lengths, the original whole or only its headers, and network text that
 * cannot break out of the lines it was put on.  When TEST_BOUNCE_OUT names a
 * directory, each report read back is also written there as NAME.eml, for a
 * MIME parser outside C to check.
 */
#include "queue/queue.h"
#include "relayd/bounce.h"
#include "tests/unit/check.h"

#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HOSTNAME "relay.example.org"
#define NOW ((int64_t)1731318503)

static char dir_template[] = "/tmp/test_bounce.XXXXXX";
static char *base_dir;
static int dir_counter;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static struct queue *open_queue(void)
{
	char dir[256], err[256] = "";
	snprintf(dir, sizeof dir, "%s/q%d", base_dir, dir_counter++);
	struct queue_options opt = { .dir = dir, .spool_memory = 64 * 1024 };
	struct queue *q = queue_open(&opt, err, sizeof err);
	if (!q)
		fprintf(stderr, "  queue_open: %s\n", err);
	CHECK(q != NULL);
	return q;
}

/* Commit and wait for the writer, as the event loop would. */
static int done_status = -1;

static void on_done(void *arg, enum queue_status status)
{
	(void)arg;
	done_status = (int)status;
}

static int commit_wait(struct queue *q, struct queue_envelope *env, struct queue_spool *sp)
{
	done_status = -1;
	if (queue_commit(q, env, sp, on_done, NULL) < 0)
		return -1;
	time_t deadline = time(NULL) + 10;
	while (done_status < 0 && time(NULL) < deadline) {
		struct pollfd pfd = { .fd = queue_notify_fd(q), .events = POLLIN };
		if (poll(&pfd, 1, 100) > 0)
			queue_dispatch(q);
	}
	return done_status == QUEUE_OK ? 0 : -1;
}

/* A message's bytes, NUL-terminated so the checks can use string functions. */
struct text {
	char *data;
	size_t len;
};

static int collect(void *arg, const void *data, size_t len)
{
	struct text *t = arg;
	char *p = realloc(t->data, t->len + len + 1);
	if (!p)
		return -1;
	memcpy(p + t->len, data, len);
	t->data = p;
	t->len += len;
	t->data[t->len] = '\0';
	return 0;
}

/* The original: queued, then loaded back, as the scheduler would see it. */
struct original {
	const char *sender, *envid;
	enum queue_ret ret;
	enum queue_body body;
	int smtputf8;
	const char *text;		/* the stored message */
};

static struct queue_envelope *store_original(struct queue *q, const struct original *o,
    const char *const *addrs, const char *const *orcpts, size_t n)
{
	struct queue_envelope *env = queue_envelope_new();
	env->sender = strdup(o->sender);
	env->envid = o->envid ? strdup(o->envid) : NULL;
	env->client_addr = strdup("192.0.2.7");
	env->ret = o->ret;
	env->body = o->body;
	env->smtputf8 = o->smtputf8;
	env->arrival = NOW - 3600;
	for (size_t i = 0; i < n; i++)
		queue_envelope_add_rcpt(env, addrs[i], orcpts ? orcpts[i] : NULL, 0);
	queue_new_id(q, env->id);
	char id[QUEUE_ID_LEN + 1];
	memcpy(id, env->id, sizeof id);
	struct queue_spool *sp = queue_spool_new(q);
	queue_spool_write(sp, o->text, strlen(o->text));
	CHECK(commit_wait(q, env, sp) == 0);
	struct queue_envelope *loaded = queue_load(q, id);
	CHECK(loaded != NULL);
	return loaded;
}

static void save_report(const char *name, const struct text *t)
{
	const char *dir = getenv("TEST_BOUNCE_OUT");
	if (!dir)
		return;
	char path[512];
	snprintf(path, sizeof path, "%s/%s.eml", dir, name);
	FILE *f = fopen(path, "wb");
	if (f) {
		fwrite(t->data, 1, t->len, f);
		fclose(f);
	}
}

/*
 * Build the report, check its envelope, queue it, and read it back as a
 * recipient would get it.  0 when all of that worked.
 */
static int build_and_read(struct queue *q, const struct queue_envelope *orig,
    const struct bounce_rcpt *rcpts, size_t n, const char *name, struct text *out,
    struct queue_envelope **stored)
{
	struct queue_envelope *env = NULL;
	struct queue_spool *sp = NULL;

	memset(out, 0, sizeof *out);
	*stored = NULL;
	CHECK(bounce_build(q, HOSTNAME, orig, rcpts, n, NOW, &env, &sp) == 0);
	if (!env || !sp)
		return -1;
	CHECK(env->size == queue_spool_size(sp));
	CHECK(strlen(env->id) == QUEUE_ID_LEN && strcmp(env->id, orig->id) > 0);
	char id[QUEUE_ID_LEN + 1];
	memcpy(id, env->id, sizeof id);
	if (commit_wait(q, env, sp) < 0)
		return -1;
	*stored = queue_load(q, id);
	CHECK(*stored != NULL);
	CHECK(queue_read_body(q, id, collect, out) == 0);
	if (!*stored || !out->data)
		return -1;
	CHECK((*stored)->size == out->len);
	save_report(name, out);
	return 0;
}

/* The new message goes from <> to the original sender, who gets no report about it. */
static void check_envelope(const struct queue_envelope *env, const struct queue_envelope *orig)
{
	CHECK_STR(env->sender, "");
	CHECK(env->ret == QUEUE_RET_NONE);
	CHECK(env->smtputf8 == orig->smtputf8);
	CHECK(env->arrival == NOW);
	CHECK(env->auth_user == NULL);
	CHECK(env->nrcpts == 1);
	if (env->nrcpts != 1)
		return;
	CHECK_STR(env->rcpts[0].addr, orig->sender);
	CHECK(env->rcpts[0].orcpt == NULL);
	CHECK(env->rcpts[0].notify == QUEUE_NOTIFY_NEVER);
}

/* Every line ends with CRLF (no bare CR or LF) and holds at most `max` bytes. */
static int lines_ok(const char *p, size_t len, size_t max)
{
	size_t start = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\r' && (i + 1 == len || p[i + 1] != '\n'))
			return 0;
		if (p[i] == '\n') {
			if (i == 0 || p[i - 1] != '\r' || i - 1 - start > max)
				return 0;
			start = i + 1;
		}
	}
	return start == len;
}

/*
 * Printable ASCII, space, CRLF and a tab that folds a header line: nothing
 * from the network got through raw.
 */
static int plain_ascii(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		int fold = c == '\t' && i > 0 && p[i - 1] == '\n';
		if ((c < 0x20 && c != '\r' && c != '\n' && !fold) || c >= 0x7f)
			return 0;
	}
	return 1;
}

/* The end of the header section (just past its empty line), or NULL. */
static const char *header_end(const char *p)
{
	if (strncmp(p, "\r\n", 2) == 0)
		return p + 2;
	const char *e = strstr(p, "\r\n\r\n");
	return e ? e + 4 : NULL;
}

/* A field's number of occurrences in the header block [p, end) (name is case-insensitive). */
static int field_count(const char *p, const char *end, const char *name)
{
	size_t n = strlen(name);
	int count = 0;
	for (const char *line = p; line && line < end; ) {
		if (strncasecmp(line, name, n) == 0 && line[n] == ':')
			count++;
		line = strstr(line, "\r\n");
		if (line)
			line += 2;
	}
	return count;
}

/*
 * A field's value, unfolded (CRLF before white space removed), without the
 * white space after the colon; "" when absent.  Points into a static buffer.
 */
static const char *field(const char *p, const char *end, const char *name)
{
	static char value[8192];
	size_t n = strlen(name), o = 0;

	value[0] = '\0';
	for (const char *line = p; line && line < end; ) {
		if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
			const char *v = line + n + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			while (v < end && o + 1 < sizeof value) {
				if (v[0] == '\r' && v[1] == '\n' && v[2] != ' ' && v[2] != '\t')
					break;
				if (v[0] == '\r' && v[1] == '\n')
					v += 2;
				else
					value[o++] = *v++;
			}
			value[o] = '\0';
			return value;
		}
		line = strstr(line, "\r\n");
		if (line)
			line += 2;
	}
	return value;
}

/* A report split into its top-level header and its MIME parts. */
#define MAX_PARTS 8

struct part {
	const char *start, *head_end, *end;	/* headers at start, content to end */
};

struct report {
	struct text t;
	const char *head_end;
	char boundary[128];
	struct part parts[MAX_PARTS];
	int nparts;
	int closed;		/* the closing delimiter was found */
	int stray;		/* lines that start like a delimiter but are none */
};

/*
 * RFC 2046 §5.1.1: a delimiter is CRLF "--" boundary at the start of a line;
 * the CRLF before it belongs to it, not to the part.
 */
static void split_parts(struct report *r)
{
	const char *body = r->head_end, *end = r->t.data + r->t.len;
	size_t blen = strlen(r->boundary);
	struct part *cur = NULL;

	for (const char *line = body; line < end; ) {
		const char *eol = strstr(line, "\r\n");
		const char *next = eol ? eol + 2 : end;
		int delim = strncmp(line, "--", 2) == 0 && strncmp(line + 2, r->boundary, blen) == 0;
		const char *rest = line + 2 + blen;
		int open = delim && strncmp(rest, "\r\n", 2) == 0;
		int close = delim && strncmp(rest, "--\r\n", 4) == 0;
		if (delim && !open && !close)
			r->stray++;
		if ((open || close) && cur) {
			cur->end = line - 2;
			cur = NULL;
		}
		if (open && !r->closed && r->nparts < MAX_PARTS) {
			cur = &r->parts[r->nparts++];
			cur->start = next;
			cur->head_end = header_end(next);
		} else if (open) {
			r->stray++;
		}
		r->closed += close;
		line = next;
	}
}

static int parse_report(struct report *r)
{
	char *b;

	r->head_end = header_end(r->t.data);
	CHECK(r->head_end != NULL);
	if (!r->head_end)
		return -1;
	static const char type[] = "multipart/report; report-type=delivery-status;";
	const char *ct = field(r->t.data, r->head_end, "Content-Type");
	CHECK(strncmp(ct, type, sizeof type - 1) == 0);
	b = strstr(ct, "boundary=\"");
	CHECK(b != NULL);
	if (!b)
		return -1;
	snprintf(r->boundary, sizeof r->boundary, "%s", b + 10);
	b = strchr(r->boundary, '"');
	if (b)
		*b = '\0';
	split_parts(r);
	CHECK(r->nparts == 3);
	CHECK(r->closed == 1);
	CHECK(r->stray == 0);
	for (int i = 0; i < r->nparts; i++)
		CHECK(r->parts[i].head_end != NULL && r->parts[i].end != NULL);
	return r->nparts == 3 && r->closed == 1 && r->parts[2].end ? 0 : -1;
}

static const char *part_field(const struct report *r, int i, const char *name)
{
	return field(r->parts[i].start, r->parts[i].head_end, name);
}

/* The content of part i as a fresh string. */
static char *part_content(const struct report *r, int i)
{
	const struct part *p = &r->parts[i];
	return strndup(p->head_end, (size_t)(p->end - p->head_end));
}

/* The n-th block (0: per-message fields) of a delivery-status content, as a fresh string. */
static char *dsn_block(const char *content, int n)
{
	const char *p = content;
	for (int i = 0; i < n && p; i++) {
		p = strstr(p, "\r\n\r\n");
		if (p)
			p += 4;
	}
	if (!p)
		return strdup("");
	const char *e = strstr(p, "\r\n\r\n");
	return e ? strndup(p, (size_t)(e - p + 2)) : strdup(p);
}

static const char *block_field(const char *block, const char *name)
{
	return field(block, block + strlen(block), name);
}

/* An RFC 5322 date names exactly this moment. */
static int date_is(const char *s, int64_t when)
{
	struct tm tm;
	memset(&tm, 0, sizeof tm);
	const char *end = strptime(s, "%a, %d %b %Y %H:%M:%S %z", &tm);
	long off = tm.tm_gmtoff;	/* timegm() resets it */
	if (!end || *end != '\0')
		return 0;
	return (int64_t)timegm(&tm) - off == when;
}

static int report_open(struct report *r, struct queue *q, const struct queue_envelope *orig,
    const struct bounce_rcpt *rcpts, size_t n, const char *name,
    struct queue_envelope **stored)
{
	memset(r, 0, sizeof *r);
	if (build_and_read(q, orig, rcpts, n, name, &r->t, stored) < 0)
		return -1;
	CHECK(lines_ok(r->t.data, r->t.len, 998));
	check_envelope(*stored, orig);
	return parse_report(r);
}

static void report_close(struct report *r, struct queue_envelope *stored)
{
	free(r->t.data);
	queue_envelope_free(stored);
}

/* RFC 3461 §4.1, and without NOTIFY: failures and delays both, never success. */
static void test_bounce_wanted(void)
{
	static const struct {
		unsigned notify;
		int action, want;
	} rows[] = {
		{ 0, 0, 1 },
		{ 0, 1, 1 },
		{ QUEUE_NOTIFY_NEVER, 0, 0 },
		{ QUEUE_NOTIFY_NEVER, 1, 0 },
		{ QUEUE_NOTIFY_FAILURE, 0, 1 },
		{ QUEUE_NOTIFY_FAILURE, 1, 0 },
		{ QUEUE_NOTIFY_DELAY, 0, 0 },
		{ QUEUE_NOTIFY_DELAY, 1, 1 },
		{ QUEUE_NOTIFY_SUCCESS, 0, 0 },
		{ QUEUE_NOTIFY_SUCCESS, 1, 0 },
		{ QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY, 0, 1 },
		{ QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY, 1, 1 },
		{ QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE, 0, 1 },
		{ QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_DELAY, 0, 0 },
		{ QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY, 1, 1 },
		{ 0, BOUNCE_RELAYED, 0 },
		{ QUEUE_NOTIFY_NEVER, BOUNCE_RELAYED, 0 },
		{ QUEUE_NOTIFY_SUCCESS, BOUNCE_RELAYED, 1 },
		{ QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY, BOUNCE_RELAYED, 0 },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		if (bounce_wanted(rows[i].notify, rows[i].action) != rows[i].want) {
			fprintf(stderr, "  row %zu: notify %#x action %d\n", i, rows[i].notify,
			    rows[i].action);
			CHECK(bounce_wanted(rows[i].notify, rows[i].action) == rows[i].want);
		}
}

static const char simple_message[] =
    "Received: from mail.example.org ([192.0.2.7])\r\n"
    "\tby relay.example.org (relayd) with ESMTP id 0123456789AB;\r\n"
    "\tMon, 11 Nov 2024 09:48:23 +0000\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: bob@example.net, carol@example.com\r\n"
    "Subject: lunch\r\n"
    "Message-ID: <lunch.1@example.org>\r\n"
    "\r\n"
    "Caf\xc3\xa9 at noon?\r\n"
    "-- \r\n"
    "Alice\r\n";

static const char gmail_reply[] =
    "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
    "550-5.1.1 double-checking the recipient's email address for typos or\n"
    "550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser";

/* Two recipients: one refused upstream (ORCPT, a three-line 550), one expired locally. */
static void test_failure_report(void)
{
	struct queue *q = open_queue();
	if (!q)
		return;
	const struct original o = { "alice@example.org", "QQ+2B314159", QUEUE_RET_NONE,
	    QUEUE_BODY_8BITMIME, 0, simple_message };
	const char *addrs[] = { "bob@example.net", "carol@example.com" };
	const char *orcpts[] = { "rfc822;b+2Bob@example.net", NULL };
	struct queue_envelope *orig = store_original(q, &o, addrs, orcpts, 2);
	if (!orig) {
		queue_close(q);
		return;
	}
	const struct bounce_rcpt rcpts[] = {
		{ &orig->rcpts[0], BOUNCE_FAILED, "5.1.1", "mx.example.net", gmail_reply, NULL, NOW - 60 },
		{ &orig->rcpts[1], BOUNCE_FAILED, "4.4.7", NULL, NULL, "delivery time expired", 0 },
	};
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, rcpts, 2, "failure", &stored) == 0) {
		const char *h = r.t.data, *he = r.head_end;
		char want[256];
		CHECK_STR(field(h, he, "From"), "Mail Delivery System <MAILER-DAEMON@" HOSTNAME ">");
		CHECK_STR(field(h, he, "To"), "<alice@example.org>");
		CHECK_STR(field(h, he, "Subject"), "Undelivered Mail Returned to Sender");
		CHECK(date_is(field(h, he, "Date"), NOW));
		snprintf(want, sizeof want, "<%s.%lld@%s>", stored->id, (long long)NOW, HOSTNAME);
		CHECK_STR(field(h, he, "Message-ID"), want);
		CHECK_STR(field(h, he, "Auto-Submitted"), "auto-replied");
		CHECK_STR(field(h, he, "MIME-Version"), "1.0");
		CHECK(strstr(r.boundary, stored->id) != NULL);
		CHECK(strlen(r.boundary) >= QUEUE_ID_LEN + 32 && strlen(r.boundary) <= 70);
		CHECK(stored->body == QUEUE_BODY_8BITMIME);

		/* Part 1: for people. */
		CHECK_STR(part_field(&r, 0, "Content-Type"), "text/plain; charset=us-ascii");
		char *text = part_content(&r, 0);
		CHECK(plain_ascii(text, strlen(text)));
		CHECK(lines_ok(text, strlen(text), 78));
		CHECK(strstr(text, "This is the mail system at host " HOSTNAME ".\r\n") != NULL);
		CHECK(strstr(text, "could not\r\nbe delivered to one or more recipients") != NULL);
		CHECK(strstr(text, "It is attached below.") != NULL);
		CHECK(strstr(text, "\r\n<bob@example.net>: host mx.example.net said: "
		    "550-5.1.1 The email account that\r\n    you tried") != NULL);
		CHECK(strstr(text, "\r\n    550-5.1.1 double-checking the recipient's") != NULL);
		CHECK(strstr(text, "\r\n    550 5.1.1 unnecessary spaces.") != NULL);
		CHECK(strstr(text, "\r\n<carol@example.com>: delivery time expired\r\n") != NULL);
		free(text);

		/* Part 2: for programs. */
		CHECK_STR(part_field(&r, 1, "Content-Type"), "message/delivery-status");
		char *status = part_content(&r, 1);
		CHECK(plain_ascii(status, strlen(status)));
		CHECK(lines_ok(status, strlen(status), 78));
		char *msg = dsn_block(status, 0), *bob = dsn_block(status, 1);
		char *carol = dsn_block(status, 2), *none = dsn_block(status, 3);
		CHECK_STR(block_field(msg, "Reporting-MTA"), "dns; " HOSTNAME);
		CHECK_STR(block_field(msg, "Original-Envelope-Id"), "QQ+314159");
		CHECK(date_is(block_field(msg, "Arrival-Date"), orig->arrival));
		CHECK_STR(block_field(bob, "Original-Recipient"), "rfc822;b+ob@example.net");
		CHECK_STR(block_field(bob, "Final-Recipient"), "rfc822; bob@example.net");
		CHECK_STR(block_field(bob, "Action"), "failed");
		CHECK_STR(block_field(bob, "Status"), "5.1.1");
		CHECK_STR(block_field(bob, "Remote-MTA"), "dns; mx.example.net");
		CHECK_STR(block_field(bob, "Diagnostic-Code"), "smtp; 550-5.1.1 The email account "
		    "that you tried to reach does not exist. Please try 550-5.1.1 double-checking "
		    "the recipient's email address for typos or 550 5.1.1 unnecessary spaces. "
		    "https://support.google.com/mail/?p=NoSuchUser");
		CHECK(date_is(block_field(bob, "Last-Attempt-Date"), NOW - 60));
		CHECK(field_count(carol, carol + strlen(carol), "Original-Recipient") == 0);
		CHECK_STR(block_field(carol, "Final-Recipient"), "rfc822; carol@example.com");
		CHECK_STR(block_field(carol, "Action"), "failed");
		CHECK_STR(block_field(carol, "Status"), "4.4.7");
		CHECK(field_count(carol, carol + strlen(carol), "Remote-MTA") == 0);
		CHECK(field_count(carol, carol + strlen(carol), "Diagnostic-Code") == 0);
		CHECK(field_count(carol, carol + strlen(carol), "Last-Attempt-Date") == 0);
		CHECK_STR(none, "");
		free(msg);
		free(bob);
		free(carol);
		free(none);
		free(status);

		/* Part 3: the original, byte for byte. */
		CHECK_STR(part_field(&r, 2, "Content-Type"), "message/rfc822");
		CHECK_STR(part_field(&r, 2, "Content-Transfer-Encoding"), "8bit");
		char *original = part_content(&r, 2);
		CHECK_STR(original, simple_message);
		free(original);
	}
	report_close(&r, stored);
	queue_envelope_free(orig);
	queue_close(q);
}

/* RET=HDRS, or a body over BOUNCE_FULL_MAX: the header section only, and 7bit. */
static void test_headers_only(void)
{
	struct queue *q = open_queue();
	if (!q)
		return;
	size_t big_len = BOUNCE_FULL_MAX + 10000;
	char *big = malloc(sizeof simple_message + big_len);
	memcpy(big, simple_message, sizeof simple_message);
	char *p = big + strlen(big);
	for (size_t i = 0; i + 80 <= big_len; i += 80, p += 80)
		memcpy(p, "0123456789012345678901234567890123456789"
		    "01234567890123456789012345678901234567\r\n", 80);
	*p = '\0';
	const struct {
		enum queue_ret ret;
		const char *text;
		const char *says;
	} rows[] = {
		{ QUEUE_RET_HDRS, simple_message, "Its headers are attached below." },
		{ QUEUE_RET_FULL, big, "larger than 50000 bytes, so only its headers" },
		{ QUEUE_RET_NONE, big, "larger than 50000 bytes, so only its headers" },
	};
	const char *headers_end = strstr(simple_message, "\r\n\r\n") + 4;
	size_t headers_len = (size_t)(headers_end - simple_message);

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const struct original o = { "alice@example.org", NULL, rows[i].ret,
		    QUEUE_BODY_8BITMIME, 0, rows[i].text };
		const char *addrs[] = { "bob@example.net" };
		struct queue_envelope *orig = store_original(q, &o, addrs, NULL, 1);
		if (!orig)
			continue;
		const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_FAILED, "5.1.1", "mx.example.net",
		    "550 5.1.1 no such user", NULL, NOW };
		struct report r;
		struct queue_envelope *stored;
		char name[32];
		snprintf(name, sizeof name, "headers-only-%zu", i);
		if (report_open(&r, q, orig, &rcpt, 1, name, &stored) == 0) {
			CHECK(stored->body == QUEUE_BODY_7BIT);
			CHECK(r.t.len < 8000);
			CHECK(field_count(r.t.data, r.head_end, "Content-Transfer-Encoding") == 0);
			char *text = part_content(&r, 0);
			CHECK(strstr(text, rows[i].says) != NULL);
			free(text);
			CHECK_STR(part_field(&r, 2, "Content-Type"), "text/rfc822-headers");
			char *headers = part_content(&r, 2);
			CHECK(strlen(headers) == headers_len &&
			    memcmp(headers, simple_message, headers_len) == 0);
			free(headers);
		}
		report_close(&r, stored);
		queue_envelope_free(orig);
	}
	free(big);
	queue_close(q);
}

/* A message that is all header (no empty line) is cut after the line that passes the limit. */
static void test_endless_header(void)
{
	struct queue *q = open_queue();
	if (!q)
		return;
	size_t len = 0, cap = BOUNCE_FULL_MAX + 10000;
	char *text = malloc(cap + 1);
	for (int i = 0; len + 80 <= cap; i++)
		len += (size_t)snprintf(text + len, cap + 1 - len, "X-Filler-%05d: %062d\r\n", i, i);
	const struct original o = { "alice@example.org", NULL, QUEUE_RET_HDRS,
	    QUEUE_BODY_7BIT, 0, text };
	const char *addrs[] = { "bob@example.net" };
	struct queue_envelope *orig = store_original(q, &o, addrs, NULL, 1);
	if (!orig) {
		free(text);
		queue_close(q);
		return;
	}
	const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_FAILED, "5.1.1", NULL, NULL, "gone", 0 };
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, &rcpt, 1, "endless-header", &stored) == 0) {
		char *headers = part_content(&r, 2);
		size_t n = strlen(headers);
		CHECK(n >= BOUNCE_FULL_MAX && n < BOUNCE_FULL_MAX + 80);
		CHECK(n % 80 == 0 && memcmp(headers, text, n) == 0);
		free(headers);
	}
	report_close(&r, stored);
	queue_envelope_free(orig);
	free(text);
	queue_close(q);
}

/* A delay warning: its own subject and words, Action: delayed. */
static void test_delay_report(void)
{
	struct queue *q = open_queue();
	if (!q)
		return;
	const struct original o = { "alice@example.org", NULL, QUEUE_RET_NONE,
	    QUEUE_BODY_7BIT, 0, "Subject: x\r\n\r\nhi\r\n" };
	const char *addrs[] = { "bob@example.net" };
	struct queue_envelope *orig = store_original(q, &o, addrs, NULL, 1);
	if (!orig) {
		queue_close(q);
		return;
	}
	const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_DELAYED, "4.4.1",
	    "mx.example.net", "451 4.4.1 try again later", NULL, NOW - 5 };
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, &rcpt, 1, "delay", &stored) == 0) {
		CHECK_STR(field(r.t.data, r.head_end, "Subject"), "Delayed Mail (still being retried)");
		CHECK(stored->body == QUEUE_BODY_7BIT);
		char *text = part_content(&r, 0);
		CHECK(strstr(text, "THIS IS A WARNING ONLY") != NULL);
		CHECK(strstr(text, "still being retried") != NULL);
		CHECK(strstr(text, "<bob@example.net>: host mx.example.net said: 451 4.4.1 try "
		    "again later\r\n") != NULL);
		free(text);
		char *status = part_content(&r, 1);
		char *bob = dsn_block(status, 1);
		CHECK_STR(block_field(bob, "Action"), "delayed");
		CHECK_STR(block_field(bob, "Status"), "4.4.1");
		CHECK(field_count(bob, bob + strlen(bob), "Will-Retry-Until") == 0);
		free(bob);
		free(status);
		/* A warning returns the headers only, whatever RET says. */
		CHECK(strstr(r.t.data, "Content-Type: text/rfc822-headers") != NULL);
		char *original = part_content(&r, 2);
		CHECK_STR(original, "Subject: x\r\n\r\n");
		free(original);
	}
	report_close(&r, stored);
	queue_envelope_free(orig);
	queue_close(q);
}

/* NOTIFY=SUCCESS through an upstream without DSN: Action: relayed, headers only. */
static void test_relayed_report(void)
{
	struct queue *q = open_queue();
	if (!q)
		return;
	const struct original o = { "alice@example.org", NULL, QUEUE_RET_FULL,
	    QUEUE_BODY_7BIT, 0, "Subject: x\r\n\r\nhi\r\n" };
	const char *addrs[] = { "bob@example.net" };
	struct queue_envelope *orig = store_original(q, &o, addrs, NULL, 1);
	if (!orig) {
		queue_close(q);
		return;
	}
	const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_RELAYED, "2.0.0",
	    "smtp.example.net", "250 2.0.0 Ok: queued as 1234", NULL, NOW };
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, &rcpt, 1, "relayed", &stored) == 0) {
		CHECK(strstr(field(r.t.data, r.head_end, "Subject"), "Relayed") != NULL);
		char *text = part_content(&r, 0);
		CHECK(strstr(text, "does not support delivery status notifications") != NULL);
		CHECK(strstr(text, "<bob@example.net>: host smtp.example.net said: 250 2.0.0 Ok: "
		    "queued as 1234\r\n") != NULL);
		free(text);
		char *status = part_content(&r, 1);
		char *bob = dsn_block(status, 1);
		CHECK_STR(block_field(bob, "Action"), "relayed");
		CHECK_STR(block_field(bob, "Status"), "2.0.0");
		CHECK_STR(block_field(bob, "Remote-MTA"), "dns; smtp.example.net");
		free(bob);
		free(status);
		/* RET=FULL is for failures: a success report returns the headers only. */
		CHECK(strstr(r.t.data, "Content-Type: text/rfc822-headers") != NULL);
	}
	report_close(&r, stored);
	queue_envelope_free(orig);
	queue_close(q);
}

/* Given up after temporary failures: relayd's reason and the last reply, both. */
static void test_expired_after_reply(void)
{
	struct queue *q = open_queue();
	if (!q)
		return;
	const struct original o = { "alice@example.org", NULL, QUEUE_RET_NONE,
	    QUEUE_BODY_7BIT, 0, "Subject: x\r\n\r\nhi\r\n" };
	const char *addrs[] = { "bob@example.net" };
	struct queue_envelope *orig = store_original(q, &o, addrs, NULL, 1);
	if (!orig) {
		queue_close(q);
		return;
	}
	const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_FAILED, "4.4.7", "mx.example.net",
	    "451 4.2.0 mailbox busy", "delivery time expired", NOW };
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, &rcpt, 1, "expired", &stored) == 0) {
		char *text = part_content(&r, 0);
		CHECK(strstr(text, "\r\n<bob@example.net>: delivery time expired; host "
		    "mx.example.net said: 451 4.2.0\r\n    mailbox busy\r\n") != NULL);
		free(text);
		char *status = part_content(&r, 1);
		char *bob = dsn_block(status, 1);
		CHECK_STR(block_field(bob, "Action"), "failed");
		CHECK_STR(block_field(bob, "Status"), "4.4.7");
		CHECK_STR(block_field(bob, "Diagnostic-Code"), "smtp; 451 4.2.0 mailbox busy");
		free(bob);
		free(status);
	}
	report_close(&r, stored);
	queue_envelope_free(orig);
	queue_close(q);
}

/*
 * Replies, reasons, addresses and xtext are network text: CR, LF, controls,
 * 8-bit bytes, boundary look-alikes and endless words stay inside their
 * field, escaped, and the report keeps its shape.
 */
static void test_hostile_text(void)
{
	struct queue *q = open_queue();
	if (!q)
		return;
	char endless[3001], spaced[5001];
	memset(endless, 'A', sizeof endless - 1);
	endless[sizeof endless - 1] = '\0';
	for (size_t i = 0; i < sizeof spaced - 1; i++)
		spaced[i] = i % 9 == 8 ? ' ' : 'b';
	spaced[sizeof spaced - 1] = '\0';
	char reply[9000];
	snprintf(reply, sizeof reply,
	    "550 evil\r\n--=_relayd_000000000000_00\r\nContent-Type: text/html\r\n\r\n"
	    "\r\nBcc: victim@example.com\n\x01\x1b[31m\xc3\xa9\xff\t\t end\n%s\n%s",
	    endless, spaced);
	const struct original o = { "alice@example.org\r\nBcc: x@example.com",
	    "+0D+0ASubject:+20evil", QUEUE_RET_FULL, QUEUE_BODY_7BIT, 0,
	    "Subject: x\r\n\r\nhi\r\n" };
	const char *addrs[] = { "bob@example.net\r\nX-Injected: 1", "carol@example.com" };
	const char *orcpts[] = { "rfc822;x+0D+0AFrom:+20evil@example.com+00", NULL };
	struct queue_envelope *orig = store_original(q, &o, addrs, orcpts, 2);
	if (!orig) {
		queue_close(q);
		return;
	}
	const struct bounce_rcpt rcpts[] = {
		{ &orig->rcpts[0], BOUNCE_FAILED, "5.1.1\r\nX-Status: 1", "mx.example.net\r\nX-Host: 1", reply,
		  NULL, NOW },
		{ &orig->rcpts[1], BOUNCE_FAILED, NULL, NULL, NULL, "expired\r\n\r\n--=_relayd_x", 0 },
	};
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, rcpts, 2, "hostile", &stored) == 0) {
		const char *h = r.t.data, *he = r.head_end;
		static const char *const once[] = { "From", "To", "Subject", "Date", "Message-ID",
		    "MIME-Version", "Content-Type", "Auto-Submitted" };
		for (size_t i = 0; i < sizeof once / sizeof once[0]; i++)
			CHECK(field_count(h, he, once[i]) == 1);
		CHECK(field_count(h, he, "Bcc") == 0);
		CHECK_STR(field(h, he, "To"), "<alice@example.org Bcc: x@example.com>");
		CHECK(stored->body == QUEUE_BODY_7BIT);
		CHECK(plain_ascii(r.t.data, (size_t)(r.parts[2].start - r.t.data)));

		char *text = part_content(&r, 0);
		CHECK_STR(part_field(&r, 0, "Content-Type"), "text/plain; charset=us-ascii");
		CHECK(strstr(text, "\\x01\\x1B[31m\\xC3\\xA9\\xFF end") != NULL);
		CHECK(strstr(text, "\r\n<carol@example.com>: expired --=_relayd_x\r\n") != NULL);
		CHECK(strstr(text, "\r\nBcc:") == NULL && strstr(text, "\r\n--") == NULL);
		CHECK(strstr(text, "Content-Type: text/html\r\n    Bcc: victim") != NULL);
		free(text);

		char *status = part_content(&r, 1);
		CHECK(strstr(status, "\r\n\r\n\r\n") == NULL);
		char *msg = dsn_block(status, 0), *bob = dsn_block(status, 1);
		char *carol = dsn_block(status, 2), *none = dsn_block(status, 3);
		CHECK_STR(block_field(msg, "Original-Envelope-Id"), "Subject: evil");
		CHECK(field_count(msg, msg + strlen(msg), "Subject") == 0);
		CHECK_STR(block_field(bob, "Original-Recipient"),
		    "rfc822;x From: evil@example.com\\x00");
		CHECK_STR(block_field(bob, "Final-Recipient"),
		    "rfc822; bob@example.net X-Injected: 1");
		CHECK_STR(block_field(bob, "Status"), "5.0.0");
		CHECK_STR(block_field(bob, "Remote-MTA"), "dns; mx.example.net X-Host: 1");
		static const char diag[] = "smtp; 550 evil --=_relayd_000000000000_00 "
		    "Content-Type: text/html Bcc: victim@example.com \\x01\\x1B[31m";
		CHECK(strncmp(block_field(bob, "Diagnostic-Code"), diag, sizeof diag - 1) == 0);
		static const char *const never[] = { "From", "X-Injected", "X-Status", "X-Host",
		    "Bcc", "Content-Type" };
		for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
			CHECK(field_count(bob, bob + strlen(bob), never[i]) == 0);
		CHECK_STR(block_field(carol, "Status"), "5.0.0");
		CHECK_STR(none, "");
		free(msg);
		free(bob);
		free(carol);
		free(none);
		free(status);
	}
	report_close(&r, stored);
	queue_envelope_free(orig);
	queue_close(q);
}

/* SMTPUTF8: UTF-8 passes (RFC 6533 types, charset=utf-8, 8bit); broken UTF-8 does not. */
static void test_smtputf8_report(void)
{
	struct queue *q = open_queue();
	if (!q)
		return;
	const struct original o = { "j\xc3\xb8rn@example.org", NULL, QUEUE_RET_NONE,
	    QUEUE_BODY_7BIT, 1, "Subject: \xc3\xb8l\r\n\r\nhi\r\n" };
	const char *addrs[] = { "m\xc3\xbcller@b\xc3\xbc" "cher.example" };
	struct queue_envelope *orig = store_original(q, &o, addrs, NULL, 1);
	if (!orig) {
		queue_close(q);
		return;
	}
	const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_FAILED, "5.1.1", "mx.example.net",
	    "550 5.1.1 Benutzer unbekannt: m\xc3\xbcller \xc3\x28", NULL, NOW };
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, &rcpt, 1, "smtputf8", &stored) == 0) {
		CHECK(stored->smtputf8 == 1);
		CHECK(stored->body == QUEUE_BODY_8BITMIME);
		CHECK_STR(field(r.t.data, r.head_end, "To"), "<j\xc3\xb8rn@example.org>");
		CHECK_STR(part_field(&r, 0, "Content-Type"), "text/plain; charset=utf-8");
		CHECK_STR(part_field(&r, 0, "Content-Transfer-Encoding"), "8bit");
		CHECK_STR(part_field(&r, 1, "Content-Type"), "message/global-delivery-status");
		CHECK_STR(part_field(&r, 2, "Content-Type"), "message/global");
		char *status = part_content(&r, 1);
		char *rcpt_block = dsn_block(status, 1);
		CHECK_STR(block_field(rcpt_block, "Final-Recipient"),
		    "utf-8; m\xc3\xbcller@b\xc3\xbc" "cher.example");
		CHECK_STR(block_field(rcpt_block, "Diagnostic-Code"),
		    "smtp; 550 5.1.1 Benutzer unbekannt: m\xc3\xbcller \\xC3(");
		free(rcpt_block);
		free(status);
	}
	report_close(&r, stored);
	queue_envelope_free(orig);
	queue_close(q);
}

/* No report to <>, none about nobody, none without the original; nothing leaks. */
static void test_refused(void)
{
	struct queue *q = open_queue();
	if (!q)
		return;
	const struct original o = { "alice@example.org", NULL, QUEUE_RET_NONE,
	    QUEUE_BODY_7BIT, 0, "Subject: x\r\n\r\nhi\r\n" };
	const char *addrs[] = { "bob@example.net" };
	struct queue_envelope *orig = store_original(q, &o, addrs, NULL, 1);
	if (!orig) {
		queue_close(q);
		return;
	}
	const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_FAILED, "5.1.1", NULL, NULL, "gone", 0 };
	struct queue_envelope *env = NULL;
	struct queue_spool *sp = NULL;

	errno = 0;
	CHECK(bounce_build(q, HOSTNAME, orig, &rcpt, 0, NOW, &env, &sp) == -1 && errno == EINVAL);
	char *sender = orig->sender;
	orig->sender = (char *)"";
	errno = 0;
	CHECK(bounce_build(q, HOSTNAME, orig, &rcpt, 1, NOW, &env, &sp) == -1 && errno == EINVAL);
	orig->sender = sender;
	CHECK(env == NULL && sp == NULL);

	/* The original is gone (delivered meanwhile, deleted by relayctl). */
	memcpy(orig->id, "000000000001", sizeof orig->id);
	errno = 0;
	CHECK(bounce_build(q, HOSTNAME, orig, &rcpt, 1, NOW, &env, &sp) == -1 && errno == EIO);
	CHECK(env == NULL && sp == NULL);
	queue_envelope_free(orig);
	queue_close(q);
}

int main(void)
{
	base_dir = mkdtemp(dir_template);
	if (!base_dir) {
		perror("mkdtemp");
		return 1;
	}
	/* Dates in the report are local time: pin the zone so the checks mean something. */
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	TEST_CASE(test_bounce_wanted);
	TEST_CASE(test_failure_report);
	TEST_CASE(test_headers_only);
	TEST_CASE(test_endless_header);
	TEST_CASE(test_delay_report);
	TEST_CASE(test_relayed_report);
	TEST_CASE(test_expired_after_reply);
	TEST_CASE(test_hostile_text);
	TEST_CASE(test_smtputf8_report);
	TEST_CASE(test_refused);
	nftw(base_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return check_exit();
}
