/*
 * smtp_reply — an upstream's replies (RFC 5321 §4.2): multi-line replies
 * read whole from an evbuffer with bounds, the enhanced status code (RFC
 * 2034/3463) taken from the text or derived from the basic code.
 */
#ifndef RELAYD_SMTP_REPLY_H
#define RELAYD_SMTP_REPLY_H

#include <event2/buffer.h>

#define SMTP_REPLY_LINE_MAX 2048	/* RFC 5321 says 512; servers say more */
#define SMTP_REPLY_TEXT_MAX 8192	/* all lines of one reply, joined by "\n" */
#define SMTP_REPLY_LINES_MAX 64

struct smtp_reply {
	int code;			/* 250, 451, …; 0 while incomplete */
	char text[SMTP_REPLY_TEXT_MAX];	/* "250-a\n250 b" as received, without CRLF */
	size_t len;
	unsigned lines;
	char dsn[16];			/* "2.0.0": from the first line, or derived */
};

enum smtp_reply_status { SMTP_REPLY_MORE, SMTP_REPLY_DONE, SMTP_REPLY_BAD };

/* Start a new reply. */
void smtp_reply_reset(struct smtp_reply *r);
/* Take lines from in until the reply is whole (DONE), input runs out (MORE), or it is malformed. */
enum smtp_reply_status smtp_reply_read(struct smtp_reply *r, struct evbuffer *in);
/* The enhanced code of a reply text, or the class default (2.0.0, 4.0.0, 5.0.0). */
void smtp_reply_dsn(int code, const char *text, char dsn[16]);
/* The text after "NNN " or "NNN-" of line i (0-based) of the reply, with its length. */
const char *smtp_reply_line(const struct smtp_reply *r, unsigned i, size_t *len);

#endif
