/*
 * fuzz_smtp_reply — the client's reader of an upstream's replies
 * (relayd/smtp_reply.c): the input is what a hostile upstream sends, fed in
 * pieces; replies are read one after another, as a pipelining client does,
 * until one is malformed.  A whole reply must have one code throughout, a
 * bounded text without control bytes (it reaches the log and DSNs), an
 * enhanced code of the reply's class, and lines that smtp_reply_line() finds.
 * The OpenSMTPD CVE-2020-8794 class: continuation markers, short lines and
 * hostile lengths must not make the reader look past what it holds.
 */
#include <ctype.h>

#include "relayd/smtp_reply.h"
#include "tests/fuzz/fuzz.h"

static void check_reply(const struct smtp_reply *r)
{
	FUZZ_ASSERT(r->code >= 200 && r->code <= 599);
	FUZZ_ASSERT(r->lines >= 1 && r->lines <= SMTP_REPLY_LINES_MAX);
	FUZZ_ASSERT(r->len < sizeof r->text && strlen(r->text) == r->len);
	for (size_t i = 0; i < r->len; i++)
		FUZZ_ASSERT(r->text[i] == '\n' || ((unsigned char)r->text[i] >= 0x20 &&
		    r->text[i] != 0x7f));
	/* "C.S.D": the class of the code, subject and detail of 1-3 digits. */
	FUZZ_ASSERT(strlen(r->dsn) < sizeof r->dsn && r->dsn[0] == '0' + r->code / 100);
	FUZZ_ASSERT(r->dsn[1] == '.' && isdigit((unsigned char)r->dsn[2]));
	unsigned shown = 1;
	for (size_t i = 0; i < r->len; i++)
		shown += r->text[i] == '\n';
	FUZZ_ASSERT(shown <= r->lines);
	for (unsigned i = 0; i < shown; i++) {
		size_t len;
		const char *p = smtp_reply_line(r, i, &len);
		FUZZ_ASSERT(p && p >= r->text && p + len <= r->text + r->len);
	}
	size_t len;
	FUZZ_ASSERT(smtp_reply_line(r, shown, &len) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evbuffer *in = evbuffer_new();
	struct smtp_reply *r = malloc(sizeof *r);
	size_t fed = 0;

	FUZZ_ASSERT(in && r);
	if (size == 0)
		goto done;
	/* The first byte chooses the piece size: 1 (a byte at a time) to 256. */
	size_t piece = (size_t)data[0] + 1;
	data++, size--;
	smtp_reply_reset(r);
	for (;;) {
		enum smtp_reply_status st = smtp_reply_read(r, in);
		if (st == SMTP_REPLY_BAD)
			break;
		if (st == SMTP_REPLY_DONE) {
			check_reply(r);
			smtp_reply_reset(r);
			continue;
		}
		/* MORE: the reader holds at most one bounded line. */
		FUZZ_ASSERT(evbuffer_get_length(in) <= SMTP_REPLY_LINE_MAX);
		if (fed == size)
			break;
		size_t n = size - fed < piece ? size - fed : piece;
		FUZZ_ASSERT(evbuffer_add(in, data + fed, n) == 0);
		fed += n;
	}
done:
	free(r);
	evbuffer_free(in);
	return 0;
}
