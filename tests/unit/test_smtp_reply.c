/*
 * test_smtp_reply — the client's reply reader (relayd/smtp_reply.c) against
 * what a hostile or broken upstream sends: the OpenSMTPD CVE-2020-8794 class
 * (multi-line replies with hostile lengths and continuation markers).  Every
 * line, the number of lines and the joined text are bounded; a reply line
 * without a code, mixed codes within one reply or a line too long is an
 * error, never a guess; control bytes never reach the text.  One table row
 * per rule, then the endless cases fed in bulk and byte by byte.
 */
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "relayd/smtp_reply.h"
#include "tests/unit/check.h"

#define BAD SMTP_REPLY_BAD
#define MORE SMTP_REPLY_MORE
#define DONE SMTP_REPLY_DONE

struct row {
	const char *in;
	size_t len;		/* 0: strlen(in) */
	enum smtp_reply_status want;
	int code;
	unsigned lines;
	const char *text;	/* NULL: not checked */
	const char *dsn;
	size_t left;		/* bytes left in the buffer after the reply */
};

static const struct row rows[] = {
	{ "250 ok\r\n", 0, DONE, 250, 1, "250 ok", "2.0.0", 0 },
	{ "250\r\n", 0, DONE, 250, 1, "250", "2.0.0", 0 },
	{ "250 ok\n", 0, DONE, 250, 1, "250 ok", "2.0.0", 0 },	/* lenient on LF alone */
	{ "250-a\r\n250-b\r\n250 c\r\n", 0, DONE, 250, 3, "250-a\n250-b\n250 c", "2.0.0", 0 },
	{ "550-5.7.1 no\r\n550 5.7.1 really\r\n", 0, DONE, 550, 2, NULL, "5.7.1", 0 },
	{ "550 4.7.1 wrong class\r\n", 0, DONE, 550, 1, NULL, "5.0.0", 0 },
	{ "451 4.3.0 later\r\n", 0, DONE, 451, 1, NULL, "4.3.0", 0 },
	{ "250 a\r\n251 b\r\n", 0, DONE, 250, 1, "250 a", "2.0.0", 7 },	/* pipelined */
	/* incomplete: wait for more */
	{ "", 0, MORE, 0, 0, NULL, NULL, 0 },
	{ "250 ok", 0, MORE, 0, 0, NULL, NULL, 6 },
	{ "250-a\r\n", 0, MORE, 250, 1, NULL, NULL, 0 },
	{ "250-a\r\n250-b\r\n250", 0, MORE, 250, 2, NULL, NULL, 3 },
	/* mixed codes within one reply */
	{ "250-a\r\n251 b\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "250-a\r\n550 b\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "250-a\r\n421 closing\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	/* lines without a code, or with a broken one */
	{ "hello\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "25\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "250-a\r\nmore text\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "250-a\r\n-250 b\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ " 250 ok\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "2500 ok\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "250x\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "250_ok\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "2a0 ok\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "199 ok\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "099 ok\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "600 ok\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "999-x\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "HTTP/1.1 400 Bad Request\r\n", 0, BAD, 0, 0, NULL, NULL, 0 },
	{ "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", 12, BAD, 0, 0, NULL, NULL, 0 },
	{ "\0\0\0\n", 4, BAD, 0, 0, NULL, NULL, 0 },
	/* control bytes and NULs become spaces: they never reach a log line or a DSN */
	{ "250 a\rb\x1b[31mc\r\n", 0, DONE, 250, 1, "250 a b [31mc", "2.0.0", 0 },
	{ "250 a\0b\tc\x7f\r\n", 12, DONE, 250, 1, "250 a b c ", "2.0.0", 0 },
	{ "550 5.1.1 x\r\nBcc: evil\r\n", 0, DONE, 550, 1, "550 5.1.1 x", "5.1.1", 11 },
};

static void feed_row(const struct row *w, size_t i)
{
	struct evbuffer *in = evbuffer_new();
	struct smtp_reply r;
	size_t len = w->len ? w->len : strlen(w->in);

	smtp_reply_reset(&r);
	evbuffer_add(in, w->in, len);
	enum smtp_reply_status st = smtp_reply_read(&r, in);
	if (st != w->want)
		fprintf(stderr, "  row %zu: status %d, want %d\n", i, st, w->want);
	CHECK(st == w->want);
	if (st == w->want && st != BAD) {
		CHECK(r.code == w->code);
		CHECK(r.lines == w->lines);
		CHECK(evbuffer_get_length(in) == w->left);
		if (w->text)
			CHECK_STR(r.text, w->text);
		if (w->dsn)
			CHECK_STR(r.dsn, w->dsn);
		CHECK(strlen(r.text) == r.len);
	}
	evbuffer_free(in);
}

static void test_reply_table(void)
{
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		feed_row(&rows[i], i);
}

/* The same rows one byte at a time: the outcome does not depend on how TCP cut them. */
static void test_reply_byte_by_byte(void)
{
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const struct row *w = &rows[i];
		size_t len = w->len ? w->len : strlen(w->in);
		struct evbuffer *in = evbuffer_new();
		struct smtp_reply r;
		enum smtp_reply_status st = MORE;

		smtp_reply_reset(&r);
		for (size_t k = 0; k < len && st == MORE; k++) {
			evbuffer_add(in, w->in + k, 1);
			st = smtp_reply_read(&r, in);
		}
		if (st != w->want)
			fprintf(stderr, "  row %zu byte by byte: status %d, want %d\n", i, st, w->want);
		CHECK(st == w->want);
		if (st == DONE && w->text)
			CHECK_STR(r.text, w->text);
		evbuffer_free(in);
	}
}

/* A line of n octets with its CRLF: "250 xxx…\r\n" (or "250-…" when more). */
static char *reply_line(size_t n, int more)
{
	char *s = malloc(n + 1);
	memcpy(s, more ? "250-" : "250 ", 4);
	memset(s + 4, 'x', n - 6);
	memcpy(s + n - 2, "\r\n", 3);
	return s;
}

/* RFC 5321 says 512 octets a reply line; servers send more: up to the bound, not past it. */
static void test_reply_line_lengths(void)
{
	static const struct { size_t n; enum smtp_reply_status want; } lens[] = {
		{ 512, DONE }, { 513, DONE }, { 1000, DONE }, { 1001, DONE },
		{ SMTP_REPLY_LINE_MAX, DONE }, { SMTP_REPLY_LINE_MAX + 1, BAD },
		{ 65536, BAD }, { 1 << 20, BAD },
	};
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		char *line = reply_line(lens[i].n, 0);
		struct evbuffer *in = evbuffer_new();
		struct smtp_reply r;
		smtp_reply_reset(&r);
		evbuffer_add(in, line, lens[i].n);
		enum smtp_reply_status st = smtp_reply_read(&r, in);
		if (st != lens[i].want)
			fprintf(stderr, "  line of %zu octets: status %d\n", lens[i].n, st);
		CHECK(st == lens[i].want);
		if (st == DONE)
			CHECK(r.len == lens[i].n - 2 && r.text[r.len] == '\0');
		evbuffer_free(in);
		free(line);
	}
}

/* A line that never ends: refused once past the bound, whatever arrives later. */
static void test_reply_endless_line(void)
{
	struct evbuffer *in = evbuffer_new();
	struct smtp_reply r;
	char block[512];
	enum smtp_reply_status st = MORE;
	size_t fed = 0;

	memset(block, 'x', sizeof block);
	memcpy(block, "250 ", 4);
	smtp_reply_reset(&r);
	while (st == MORE && fed < 64 * 1024 * 1024) {
		evbuffer_add(in, block, sizeof block);
		fed += sizeof block;
		st = smtp_reply_read(&r, in);
		memset(block, 'x', 4);
	}
	CHECK(st == BAD);
	CHECK(fed <= SMTP_REPLY_LINE_MAX + sizeof block);
	evbuffer_free(in);
}

/*
 * "250-" for ever: at most SMTP_REPLY_LINES_MAX lines, then an error — and
 * no more of the input is consumed than those lines, so memory stays
 * bounded however much the upstream sends.
 */
static void test_reply_endless_continuation(void)
{
	static const size_t lens[] = { 6, 512, SMTP_REPLY_LINE_MAX };
	for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
		char *line = reply_line(lens[k], 1);
		struct evbuffer *in = evbuffer_new();
		struct smtp_reply r;
		enum smtp_reply_status st = MORE;
		unsigned sent = 0;

		smtp_reply_reset(&r);
		while (st == MORE && sent < 100000) {
			evbuffer_add(in, line, lens[k]);
			sent++;
			st = smtp_reply_read(&r, in);
		}
		CHECK(st == BAD);
		CHECK(sent == SMTP_REPLY_LINES_MAX + 1);
		CHECK(r.len < SMTP_REPLY_TEXT_MAX);
		evbuffer_free(in);
		free(line);
	}

	/* The same, arriving in one piece of 10,000 lines: one reply's worth is read. */
	struct evbuffer *in = evbuffer_new();
	struct smtp_reply r;
	for (int i = 0; i < 10000; i++)
		evbuffer_add(in, "250-more\r\n", 10);
	smtp_reply_reset(&r);
	CHECK(smtp_reply_read(&r, in) == BAD);
	CHECK(evbuffer_get_length(in) == (10000 - (SMTP_REPLY_LINES_MAX + 1)) * 10);
	evbuffer_free(in);
}

/* Exactly the most lines, each the longest: whole, the text cut short within its bound. */
static void test_reply_largest_whole_reply(void)
{
	struct evbuffer *in = evbuffer_new();
	struct smtp_reply r;
	for (unsigned i = 0; i < SMTP_REPLY_LINES_MAX; i++) {
		char *line = reply_line(SMTP_REPLY_LINE_MAX, i + 1 < SMTP_REPLY_LINES_MAX);
		evbuffer_add(in, line, SMTP_REPLY_LINE_MAX);
		free(line);
	}
	smtp_reply_reset(&r);
	CHECK(smtp_reply_read(&r, in) == DONE);
	CHECK(r.code == 250 && r.lines == SMTP_REPLY_LINES_MAX);
	CHECK(r.len < SMTP_REPLY_TEXT_MAX && strlen(r.text) == r.len);
	CHECK(evbuffer_get_length(in) == 0);
	/* smtp_reply_line() past the lines the text kept: NULL, never past the buffer. */
	size_t n;
	CHECK(smtp_reply_line(&r, 0, &n) != NULL && n == SMTP_REPLY_LINE_MAX - 6);
	CHECK(smtp_reply_line(&r, SMTP_REPLY_LINES_MAX - 1, &n) == NULL);
	evbuffer_free(in);
}

/* smtp_reply_line() on short and empty lines (EHLO keywords come through it). */
static void test_reply_lines(void)
{
	struct evbuffer *in = evbuffer_new();
	struct smtp_reply r;
	size_t n;
	const char *p;

	const char *ehlo = "250-relay.example\r\n250-\r\n250-SIZE 1000\r\n250\r\n";
	evbuffer_add(in, ehlo, strlen(ehlo));
	smtp_reply_reset(&r);
	CHECK(smtp_reply_read(&r, in) == DONE);
	CHECK(r.lines == 4);
	p = smtp_reply_line(&r, 0, &n);
	CHECK(p && n == 13 && strncmp(p, "relay.example", n) == 0);
	p = smtp_reply_line(&r, 1, &n);
	CHECK(p && n == 0);
	p = smtp_reply_line(&r, 2, &n);
	CHECK(p && n == 9 && strncmp(p, "SIZE 1000", n) == 0);
	p = smtp_reply_line(&r, 3, &n);
	CHECK(p && n == 0);
	CHECK(smtp_reply_line(&r, 4, &n) == NULL);
	evbuffer_free(in);
}

int main(void)
{
	TEST_CASE(test_reply_table);
	TEST_CASE(test_reply_byte_by_byte);
	TEST_CASE(test_reply_line_lengths);
	TEST_CASE(test_reply_endless_line);
	TEST_CASE(test_reply_endless_continuation);
	TEST_CASE(test_reply_largest_whole_reply);
	TEST_CASE(test_reply_lines);
	return check_exit();
}
