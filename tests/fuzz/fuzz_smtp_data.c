/*
 * fuzz_smtp_data — DATA's text framing (relayd/smtp_dot.c), both directions.
 * Input: a mode byte, two bytes that choose how the stream is cut into reads,
 * then the bytes.
 *  - receive (mode even): the bytes are what a client sends after 354.  They
 *    are fed to smtp_dot_read() in pieces, as TCP would deliver them, and
 *    every event must match a plain reading of RFC 5321 over the whole
 *    stream: only CRLF ends a line, any other CR or LF ends the session, a
 *    line over 1000 octets is counted and dropped, "." alone ends the
 *    message, a leading dot is removed.  However the stream is cut, the
 *    reader sees the same message (SMTP smuggling: the end-of-data variants).
 *  - round trip (mode odd): the bytes are a stored message.  smtp_dot_stuff()
 *    must emit no bare CR or LF and smtp_dot_read() must take back exactly
 *    the message, ending at the final dot and not a byte before or after.
 */
#include "relayd/smtp_dot.h"
#include "tests/fuzz/fuzz.h"

/* How the stream is cut: mostly small pieces, now and then one past a long line. */
static size_t next_piece(uint32_t *state)
{
	uint32_t x = *state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*state = x;
	return x % 4 == 0 ? 1 + (x >> 8) % 2100 : 1 + (x >> 8) % 64;
}

enum ref_event { REF_LINE, REF_LONG, REF_END, REF_BARE, REF_INCOMPLETE };

/*
 * The reference: the next line of p[*at..n) read by the rules alone.  For
 * REF_LINE, *line and *len are the unstuffed line; for REF_LONG, *len the raw
 * length; for REF_INCOMPLETE, *may_bare says whether a reader that has not
 * seen the end of the line may already call a CR in it bare.
 */
static enum ref_event ref_next(const unsigned char *p, size_t n, size_t *at,
    const unsigned char **line, size_t *len, int *may_bare)
{
	const unsigned char *s = p + *at;
	size_t left = n - *at;
	const unsigned char *lf = memchr(s, '\n', left);

	*may_bare = 0;
	if (!lf) {
		*may_bare = left > SMTP_DOT_LINE_BUF && memchr(s, '\r', left - 1) != NULL;
		return REF_INCOMPLETE;
	}
	size_t k = (size_t)(lf - s) + 1;
	if (k < 2 || s[k - 2] != '\r' || memchr(s, '\r', k - 2))
		return REF_BARE;
	*at += k;
	if (k > SMTP_DOT_LINE_BUF) {
		*len = k;
		return REF_LONG;
	}
	if (k == 3 && s[0] == '.')
		return REF_END;
	*line = s[0] == '.' ? s + 1 : s;
	*len = s[0] == '.' ? k - 1 : k;
	return REF_LINE;
}

/* Receive: the reader against the reference, the stream cut by state. */
static void fuzz_receive(const unsigned char *p, size_t n, uint32_t state)
{
	struct evbuffer *in = evbuffer_new();
	struct smtp_dot_reader r = { 0 };
	char buf[SMTP_DOT_LINE_BUF];
	size_t fed = 0, at = 0, dropped = 0;

	FUZZ_ASSERT(in);
	for (;;) {
		const char *line;
		size_t len;
		const unsigned char *want;
		size_t want_len = 0;
		int may_bare;
		enum smtp_dot_event ev = smtp_dot_read(&r, in, buf, &line, &len);

		if (ev == SMTP_DOT_MORE) {
			dropped += len;
			if (fed == n) {		/* all in, and no whole line: so says the reference */
				FUZZ_ASSERT(ref_next(p, n, &at, &want, &want_len, &may_bare) ==
				    REF_INCOMPLETE);
				break;
			}
			size_t piece = next_piece(&state);
			if (piece > n - fed)
				piece = n - fed;
			FUZZ_ASSERT(evbuffer_add(in, p + fed, piece) == 0);
			fed += piece;
			continue;
		}
		enum ref_event want_ev = ref_next(p, n, &at, &want, &want_len, &may_bare);
		if (ev == SMTP_DOT_BARE_LF || ev == SMTP_DOT_BARE_CR) {
			FUZZ_ASSERT(want_ev == REF_BARE || (want_ev == REF_INCOMPLETE && may_bare));
			break;
		}
		if (ev == SMTP_DOT_LONG_END) {
			FUZZ_ASSERT(want_ev == REF_LONG && dropped + len == want_len);
			dropped = 0;
			continue;
		}
		FUZZ_ASSERT(dropped == 0);
		if (ev == SMTP_DOT_END) {
			FUZZ_ASSERT(want_ev == REF_END);
			break;
		}
		FUZZ_ASSERT(ev == SMTP_DOT_LINE && want_ev == REF_LINE);
		FUZZ_ASSERT(len == want_len && memcmp(line, want, len) == 0);
		FUZZ_ASSERT(len <= SMTP_DOT_LINE_BUF);
	}
	evbuffer_free(in);
}

/* Round trip: stuff the stored message in pieces, check the wire, read it back. */
static void fuzz_round_trip(const unsigned char *p, size_t n, uint32_t state)
{
	char *wire = malloc(2 * n + 8);
	struct smtp_dot_writer w;
	size_t o = 0;

	FUZZ_ASSERT(wire);
	smtp_dot_writer_init(&w);
	for (size_t i = 0; i < n; ) {
		size_t piece = next_piece(&state);
		if (piece > n - i)
			piece = n - i;
		o += smtp_dot_stuff(&w, p + i, piece, wire + o);
		FUZZ_ASSERT(o <= 2 * (i + piece) + 2);
		i += piece;
	}
	o += smtp_dot_finish(&w, wire + o);
	FUZZ_ASSERT(o <= 2 * n + 5);

	/* On the wire: CR and LF only as CRLF, and the end only at the end. */
	for (size_t i = 0; i < o; i++) {
		if (wire[i] == '\r')
			FUZZ_ASSERT(i + 1 < o && wire[i + 1] == '\n');
		if (wire[i] == '\n')
			FUZZ_ASSERT(i > 0 && wire[i - 1] == '\r');
	}
	FUZZ_ASSERT(o == 3 ? memcmp(wire, ".\r\n", 3) == 0 :
	    o >= 5 && memcmp(wire + o - 5, "\r\n.\r\n", 5) == 0);

	/* Read back: each stored line (CR, LF or CRLF ended) as a CRLF line. */
	struct evbuffer *in = evbuffer_new();
	struct smtp_dot_reader r = { 0 };
	char buf[SMTP_DOT_LINE_BUF];
	size_t start = 0, dropped = 0;
	FUZZ_ASSERT(in && evbuffer_add(in, wire, o) == 0);
	for (;;) {
		const char *line;
		size_t len;
		enum smtp_dot_event ev;

		/* The next stored line: p[start..end), its line break skipped. */
		size_t end = start;
		while (end < n && p[end] != '\r' && p[end] != '\n')
			end++;
		int last = end == n && start == n;	/* nothing left: the dot is next */
		size_t next = end < n && p[end] == '\r' && end + 1 < n && p[end + 1] == '\n' ?
		    end + 2 : end + 1;
		size_t raw = end - start + 2 + (end > start && p[start] == '.');

		while ((ev = smtp_dot_read(&r, in, buf, &line, &len)) == SMTP_DOT_MORE) {
			FUZZ_ASSERT(len > 0);	/* all of it is in: only drops */
			dropped += len;
		}
		if (last) {
			FUZZ_ASSERT(ev == SMTP_DOT_END && dropped == 0);
			FUZZ_ASSERT(evbuffer_get_length(in) == 0);
			break;
		}
		if (raw > SMTP_DOT_LINE_BUF) {
			FUZZ_ASSERT(ev == SMTP_DOT_LONG_END && dropped + len == raw);
		} else {
			FUZZ_ASSERT(ev == SMTP_DOT_LINE && dropped == 0);
			FUZZ_ASSERT(len == end - start + 2);
			FUZZ_ASSERT(memcmp(line, p + start, end - start) == 0);
			FUZZ_ASSERT(memcmp(line + len - 2, "\r\n", 2) == 0);
		}
		dropped = 0;
		start = next > n ? n : next;
	}
	evbuffer_free(in);
	free(wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	uint32_t state = 0x9e3779b9u ^ ((uint32_t)data[1] << 8 | data[2]);
	if (data[0] & 1)
		fuzz_round_trip(data + 3, size - 3, state);
	else
		fuzz_receive(data + 3, size - 3, state);
	return 0;
}
