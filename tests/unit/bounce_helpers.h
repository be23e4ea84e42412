/*
 * bounce_helpers.h — what test_bounce and test_bounce_hostile share: an
 * original message stored in a scratch queue and loaded back; a report built
 * from it with bounce_build(), queued, and read back as its recipient would
 * get it; and that report taken apart (header fields, MIME parts,
 * delivery-status blocks, dates) for the checks.  When TEST_BOUNCE_OUT names
 * a directory, each report read back is also written there as NAME.eml, for
 * a MIME parser outside C to check.  Static, like queue_helpers.h, and for
 * the same reason.
 */
#ifndef RELAYD_BOUNCE_HELPERS_H
#define RELAYD_BOUNCE_HELPERS_H

#include "relayd/bounce.h"
#include "tests/unit/queue_helpers.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HOSTNAME "relay.example.org"
#define NOW ((int64_t)1731318503)

/* The scratch directory, and the time zone pinned: 0, or -1 if it cannot be made. */
static inline int report_tests_init(const char *name)
{
	if (scratch_init(name) < 0)
		return -1;
	/* Dates in the report are local time: pin the zone so the checks mean something. */
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	return 0;
}

/* A message's bytes, NUL-terminated so the checks can use string functions. */
struct text {
	char *data;
	size_t len;
};

static inline int collect(void *arg, const void *data, size_t len)
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

static inline struct queue_envelope *store_original(struct queue *q, const struct original *o,
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

/*
 * A scratch queue of its own for one test case, holding the original: the
 * original, with *q set; NULL (nothing left to free) when either fails.
 */
static inline struct queue_envelope *open_original(struct queue **q, const struct original *o,
    const char *const *addrs, const char *const *orcpts, size_t n)
{
	*q = open_queue(new_dir(), 0, 0, 64 * KiB);
	if (!*q)
		return NULL;
	struct queue_envelope *orig = store_original(*q, o, addrs, orcpts, n);
	if (!orig) {
		queue_close(*q);
		*q = NULL;
	}
	return orig;
}

/* open_original() for the plainest original: alice to bob, 7bit, "Subject: x\r\n\r\nhi\r\n". */
static inline struct queue_envelope *open_plain_original(struct queue **q, enum queue_ret ret)
{
	const struct original o = { "alice@example.org", NULL, ret, QUEUE_BODY_7BIT, 0,
	    "Subject: x\r\n\r\nhi\r\n" };
	const char *addrs[] = { "bob@example.net" };
	return open_original(q, &o, addrs, NULL, 1);
}

static inline void close_original(struct queue *q, struct queue_envelope *orig)
{
	queue_envelope_free(orig);
	queue_close(q);
}

static inline void save_report(const char *name, const struct text *t)
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
static inline int build_and_read(struct queue *q, const struct queue_envelope *orig,
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
static inline void check_envelope(const struct queue_envelope *env,
    const struct queue_envelope *orig)
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
static inline int lines_ok(const char *p, size_t len, size_t max)
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
static inline int plain_ascii(const char *p, size_t len)
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
static inline const char *header_end(const char *p)
{
	if (strncmp(p, "\r\n", 2) == 0)
		return p + 2;
	const char *e = strstr(p, "\r\n\r\n");
	return e ? e + 4 : NULL;
}

/* A field's number of occurrences in the header block [p, end) (name is case-insensitive). */
static inline int field_count(const char *p, const char *end, const char *name)
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
static inline const char *field(const char *p, const char *end, const char *name)
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
static inline void split_parts(struct report *r)
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

static inline int parse_report(struct report *r)
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

static inline const char *part_field(const struct report *r, int i, const char *name)
{
	return field(r->parts[i].start, r->parts[i].head_end, name);
}

/* The content of part i as a fresh string. */
static inline char *part_content(const struct report *r, int i)
{
	const struct part *p = &r->parts[i];
	return strndup(p->head_end, (size_t)(p->end - p->head_end));
}

/* The n-th block (0: per-message fields) of a delivery-status content, as a fresh string. */
static inline char *dsn_block(const char *content, int n)
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

static inline const char *block_field(const char *block, const char *name)
{
	return field(block, block + strlen(block), name);
}

/* An RFC 5322 date names exactly this moment. */
static inline int date_is(const char *s, int64_t when)
{
	struct tm tm;
	memset(&tm, 0, sizeof tm);
	const char *end = strptime(s, "%a, %d %b %Y %H:%M:%S %z", &tm);
	long off = tm.tm_gmtoff;	/* timegm() resets it */
	if (!end || *end != '\0')
		return 0;
	return (int64_t)timegm(&tm) - off == when;
}

static inline int report_open(struct report *r, struct queue *q,
    const struct queue_envelope *orig, const struct bounce_rcpt *rcpts, size_t n,
    const char *name, struct queue_envelope **stored)
{
	memset(r, 0, sizeof *r);
	if (build_and_read(q, orig, rcpts, n, name, &r->t, stored) < 0)
		return -1;
	CHECK(lines_ok(r->t.data, r->t.len, 998));
	check_envelope(*stored, orig);
	return parse_report(r);
}

static inline void report_close(struct report *r, struct queue_envelope *stored)
{
	free(r->t.data);
	queue_envelope_free(stored);
}

#endif
