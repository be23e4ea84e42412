/*
 * smtp_dot — the message text of DATA in both directions (RFC 5321 §4.5.2):
 * the server's reader, strict about CRLF (no bare CR or LF, so no end-of-data
 * can be smuggled), dot-unstuffing and spotting <CRLF>.<CRLF>; and the
 * client's writer, dot-stuffing with CRLF line ends whatever was stored.
 * Pure: no session state, so the fuzz targets drive exactly this code.
 */
#ifndef RELAYD_SMTP_DOT_H
#define RELAYD_SMTP_DOT_H

#include <event2/buffer.h>
#include <stddef.h>

#define SMTP_TEXT_LINE_MAX  1000	/* RFC 5321 §4.5.3.1.6, with CRLF */
#define SMTP_DOT_LINE_BUF   (SMTP_TEXT_LINE_MAX + 2)	/* a stuffed dot may make it 1001 */

/* What smtp_dot_read() found at the head of the input. */
enum smtp_dot_event {
	SMTP_DOT_MORE,		/* no whole line yet; *len bytes of an overlong line dropped */
	SMTP_DOT_LINE,		/* *line, *len: one text line, CRLF included, unstuffed */
	SMTP_DOT_LONG_END,	/* the end of a line past SMTP_DOT_LINE_BUF: *len bytes dropped */
	SMTP_DOT_END,		/* the final <CRLF>.<CRLF> */
	SMTP_DOT_BARE_LF,	/* an LF without its CR: the session must end */
	SMTP_DOT_BARE_CR,	/* a CR without its LF: the session must end */
};

struct smtp_dot_reader {
	int in_long_line;	/* inside a text line already over the limit */
};

/*
 * Take one step of DATA input from in: a line, the end, or a refusal.  buf
 * holds SMTP_DOT_LINE_BUF bytes; *line points into it for SMTP_DOT_LINE.
 * *len counts the bytes consumed for the message size (0 unless LINE, MORE or
 * LONG_END).  An overlong line is dropped as it comes, keeping its last byte
 * (it may be the CR of the CRLF), so the input never grows past the buffer.
 */
enum smtp_dot_event smtp_dot_read(struct smtp_dot_reader *r, struct evbuffer *in, char *buf,
    const char **line, size_t *len);

struct smtp_dot_writer {
	int bol;		/* at the beginning of a line */
	int prev_cr;		/* the last byte was a CR, its LF (if any) not seen yet */
};

/* A writer at the start of a message. */
void smtp_dot_writer_init(struct smtp_dot_writer *w);
/*
 * Stuff len bytes of stored message into out (room for 2 * len + 2 bytes):
 * a dot at the start of a line doubled, a bare CR or LF or a CRLF written as
 * CRLF (RFC 5321 §2.3.8).  Returns the bytes written.
 */
size_t smtp_dot_stuff(struct smtp_dot_writer *w, const void *in, size_t len, char *out);
/* The end of the message: CRLF if the last line is open, then ".\r\n"; out has 5 bytes. */
size_t smtp_dot_finish(struct smtp_dot_writer *w, char *out);

#endif
