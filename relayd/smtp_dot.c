/*
 * smtp_dot — DATA's text framing: the server reads lines that only CRLF ends
 * and unstuffs them (smtp_data.c around it), the client stuffs what the queue
 * holds (smtp_transaction.c around it).  Split out of both so that one fuzz
 * target can check that whatever the writer emits, the reader takes back
 * unchanged and ends exactly at the final dot.
 */
#include "relayd/smtp_dot.h"

#include <string.h>

/* 1 when the first n bytes of in hold a CR (in an overlong line, always a bare one). */
static int has_cr(struct evbuffer *in, size_t n)
{
	struct evbuffer_ptr end;
	if (n == 0 || evbuffer_ptr_set(in, &end, n, EVBUFFER_PTR_SET) < 0)
		return 0;
	return evbuffer_search_range(in, "\r", 1, NULL, &end).pos >= 0;
}

enum smtp_dot_event smtp_dot_read(struct smtp_dot_reader *r, struct evbuffer *in, char *buf,
    const char **line, size_t *len)
{
	size_t avail = evbuffer_get_length(in);

	*line = NULL;
	*len = 0;
	struct evbuffer_ptr lf = evbuffer_search(in, "\n", 1, NULL);
	if (lf.pos < 0) {
		/* An endless line: count and drop it, keeping a last byte that may be CR. */
		if (avail > SMTP_DOT_LINE_BUF) {
			/* No LF anywhere, so any CR among the dropped bytes is bare. */
			if (has_cr(in, avail - 1))
				return SMTP_DOT_BARE_CR;
			r->in_long_line = 1;
			*len = avail - 1;
			evbuffer_drain(in, avail - 1);
		}
		return SMTP_DOT_MORE;
	}

	size_t n = (size_t)lf.pos + 1;
	if (r->in_long_line || n > SMTP_DOT_LINE_BUF) {
		/* The end of an overlong line: still never a bare LF. */
		char tail[2] = { 0, 0 };
		if (n >= 2) {
			struct evbuffer_ptr at;
			evbuffer_ptr_set(in, &at, n - 2, EVBUFFER_PTR_SET);
			evbuffer_copyout_from(in, &at, tail, 1);
		}
		if (n < 2 || tail[0] != '\r')
			return SMTP_DOT_BARE_LF;
		if (has_cr(in, n - 2))
			return SMTP_DOT_BARE_CR;
		r->in_long_line = 0;
		*len = n;
		evbuffer_drain(in, n);
		return SMTP_DOT_LONG_END;
	}

	evbuffer_remove(in, buf, n);
	if (n < 2 || buf[n - 2] != '\r')
		return SMTP_DOT_BARE_LF;
	if (memchr(buf, '\r', n - 2))
		return SMTP_DOT_BARE_CR;
	if (n == 3 && buf[0] == '.')
		return SMTP_DOT_END;
	if (buf[0] == '.') {
		*line = buf + 1;
		*len = n - 1;
	} else {
		*line = buf;
		*len = n;
	}
	return SMTP_DOT_LINE;
}

void smtp_dot_writer_init(struct smtp_dot_writer *w)
{
	w->bol = 1;
	w->prev_cr = 0;
}

/* The first c at or after p (end if none), remembered in *at until p passes it. */
static const unsigned char *next_of(const unsigned char **at, const unsigned char *p,
    const unsigned char *end, int c)
{
	if (!*at || *at < p) {
		*at = memchr(p, c, (size_t)(end - p));
		if (!*at)
			*at = end;
	}
	return *at;
}

/*
 * Byte by byte only at line ends and dots; the text between goes with memcpy.
 * The next CR and LF are each searched for once (a text of bare LFs must not
 * make every line search the rest of the chunk for a CR).
 */
size_t smtp_dot_stuff(struct smtp_dot_writer *w, const void *in, size_t len, char *out)
{
	const unsigned char *p = in, *end = p + len, *cr = NULL, *lf = NULL;
	size_t o = 0;

	while (p < end) {
		if (w->prev_cr) {
			w->prev_cr = 0;
			out[o++] = '\r';
			out[o++] = '\n';
			w->bol = 1;
			if (*p == '\n') {
				p++;
				continue;
			}
		}
		if (*p == '\r') {
			w->prev_cr = 1;
			p++;
			continue;
		}
		if (*p == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
			w->bol = 1;
			p++;
			continue;
		}
		if (w->bol && *p == '.')
			out[o++] = '.';
		const unsigned char *c = next_of(&cr, p, end, '\r'), *l = next_of(&lf, p, end, '\n');
		const unsigned char *stop = c < l ? c : l;
		memcpy(out + o, p, (size_t)(stop - p));
		o += (size_t)(stop - p);
		p = stop;
		w->bol = 0;
	}
	return o;
}

size_t smtp_dot_finish(struct smtp_dot_writer *w, char *out)
{
	static const char dot[3] = { '.', '\r', '\n' };	/* bytes, not a string */
	size_t o = 0;
	if (w->prev_cr || !w->bol) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, dot, sizeof dot);
	w->prev_cr = 0;
	w->bol = 1;
	return o + sizeof dot;
}
