/*
 * test_smtp_send — SMTP smuggling on the way out: whatever bytes a message
 * holds in the queue, the body relayd writes to an upstream
 * (tx_pump_body() in relayd/smtp_transaction.c) has CRLF line ends only,
 * every line that starts with "." dot-stuffed, and ends with exactly one
 * <CRLF>.<CRLF>.  The receiving side refuses bare CR and LF, so the queue
 * should never hold one — this test stores them anyway (straight through
 * the queue API), including across the 256 KiB chunks the body is read in
 * and the 16 KiB pieces it is stuffed in.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "relayd/smtp_client.h"
#include "tests/unit/queue_helpers.h"

static struct queue *q;
static struct event_base *base;

/* Store body as a message; its id in id; 0 when committed. */
static int store(const void *body, size_t len, char id[QUEUE_ID_LEN + 1])
{
	struct queue_envelope *env = queue_envelope_new();
	env->sender = strdup("alice@example.org");
	CHECK(queue_envelope_add_rcpt(env, "bob@example.net", NULL, 0) == 0);
	queue_new_id(q, env->id);
	memcpy(id, env->id, QUEUE_ID_LEN + 1);
	struct queue_spool *sp = queue_spool_new(q);
	if (len)
		CHECK(queue_spool_write(sp, body, len) == 0);
	return commit_wait(q, env, sp);
}

/* What tx_pump_body() writes for a stored body of len bytes (the DATA after 354). */
static unsigned char *wire(const void *body, size_t len, size_t *wire_len)
{
	char id[QUEUE_ID_LEN + 1];
	*wire_len = 0;
	if (store(body, len, id) < 0) {
		CHECK(!"commit");
		return NULL;
	}
	struct conf_upstream cu = { .name = (char *)"test", .timeout_command = 300,
	    .timeout_data = 600 };
	struct delivery d = { .queue = q, .base = base };
	struct upstream up = { .conf = &cu, .d = &d };
	struct queue_envelope env = { .size = len };
	memcpy(env.id, id, sizeof env.id);
	struct delivery_job job = { .env = &env };
	struct smtp_client c = { .up = &up, .job = &job, .state = C_BODY,
	    .dot = { .bol = 1 } };
	struct evbuffer *got = evbuffer_new();

	/* A bufferevent without a socket: what is written stays in its output (whose
	 * front a socket bufferevent keeps frozen until it connects). */
	c.bev = bufferevent_socket_new(base, -1, 0);
	bufferevent_disable(c.bev, EV_READ | EV_WRITE);
	evbuffer_unfreeze(bufferevent_get_output(c.bev), 1);
	for (int rounds = 0; !c.body_done && rounds < 1000; rounds++) {
		tx_pump_body(&c);
		evbuffer_add_buffer(got, bufferevent_get_output(c.bev));
	}
	CHECK(c.body_done && c.state == C_DOT);
	CHECK(c.body_read == len);
	bufferevent_free(c.bev);
	*wire_len = evbuffer_get_length(got);
	unsigned char *out = malloc(*wire_len + 1);
	evbuffer_remove(got, out, *wire_len);
	out[*wire_len] = '\0';
	evbuffer_free(got);
	return out;
}

/*
 * The model: CR LF, a bare CR and a bare LF each end a line (RFC 5321
 * §2.3.8: "CRLF"), the last line is ended if it was not, a line that starts
 * with "." gets another (§4.5.2), then ".\r\n".
 */
static unsigned char *model(const unsigned char *p, size_t len, size_t *out_len)
{
	unsigned char *out = malloc(len * 3 + 8);
	size_t o = 0;
	int bol = 1;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\r' || p[i] == '\n') {
			if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n')
				i++;
			out[o++] = '\r';
			out[o++] = '\n';
			bol = 1;
			continue;
		}
		if (bol && p[i] == '.')
			out[o++] = '.';
		out[o++] = p[i];
		bol = 0;
	}
	if (!bol) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	*out_len = o + 3;
	return out;
}

/* No bare CR or LF anywhere; "." alone only as the last line. */
static int framed(const unsigned char *w, size_t n)
{
	if (n < 3 || memcmp(w + n - 3, ".\r\n", 3) != 0 || (n > 3 && w[n - 4] != '\n'))
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (w[i] == '\r' && (i + 1 >= n || w[i + 1] != '\n'))
			return 0;
		if (w[i] == '\n' && (i == 0 || w[i - 1] != '\r'))
			return 0;
		int bol = i == 0 || w[i - 1] == '\n';
		if (bol && i + 3 < n && memcmp(w + i, ".\r\n", 3) == 0)
			return 0;	/* an end of data before the end */
	}
	return 1;
}

static void check_body(const void *body, size_t len, const char *want, const char *what)
{
	size_t n, m;
	unsigned char *w = wire(body, len, &n);
	unsigned char *expect = model(body, len, &m);
	if (!w) {
		free(expect);
		return;
	}
	if (!framed(w, n) || n != m || memcmp(w, expect, n) != 0 ||
	    (want && (strlen(want) != n || memcmp(w, want, n) != 0))) {
		fprintf(stderr, "  %s: wire is \"", what);
		for (size_t i = 0; i < n && i < 200; i++)
			fprintf(stderr, w[i] >= 0x20 && w[i] < 0x7f ? "%c" : "\\x%02X", w[i]);
		fprintf(stderr, "\"%s\n", n > 200 ? "…" : "");
		CHECK(!"the wire bytes");
	}
	free(w);
	free(expect);
}

/* One row per end-of-data look-alike and line-end form a queue could hold. */
static void test_send_bare_cr_lf_and_dots(void)
{
	static const struct { const char *body; const char *want; } rows[] = {
		{ "a\r\nb\r\n", "a\r\nb\r\n.\r\n" },
		{ "", ".\r\n" },
		{ "a\nb\n", "a\r\nb\r\n.\r\n" },
		{ "a\rb\r", "a\r\nb\r\n.\r\n" },
		{ "no line end", "no line end\r\n.\r\n" },
		{ ".\r\n", "..\r\n.\r\n" },
		{ "..\r\n", "...\r\n.\r\n" },
		{ ".leading\r\n", "..leading\r\n.\r\n" },
		{ "x\n.\n", "x\r\n..\r\n.\r\n" },
		{ "x\r.\r", "x\r\n..\r\n.\r\n" },
		{ "x\n.\r\n", "x\r\n..\r\n.\r\n" },
		{ "x\r\n.\n", "x\r\n..\r\n.\r\n" },
		{ "x\r.\n", "x\r\n..\r\n.\r\n" },
		{ "x\n.\r", "x\r\n..\r\n.\r\n" },
		{ "x\r\n.\r", "x\r\n..\r\n.\r\n" },
		{ "x\r.\r\n", "x\r\n..\r\n.\r\n" },
		{ "x\r\n.\r\r\n", "x\r\n..\r\n\r\n.\r\n" },
		{ "x.\r\n", "x.\r\n.\r\n" },
		{ "x\r\n.\r\nMAIL FROM:<evil@example.com>\r\nDATA\r\n",
		  "x\r\n..\r\nMAIL FROM:<evil@example.com>\r\nDATA\r\n.\r\n" },
		{ "x\n.\nRCPT TO:<victim@example.org>\n", "x\r\n..\r\nRCPT TO:<victim@example.org>\r\n.\r\n" },
		{ "\r\r\n\n", "\r\n\r\n\r\n.\r\n" },
		{ "\n\n", "\r\n\r\n.\r\n" },
		{ "\r", "\r\n.\r\n" },
		{ "\n", "\r\n.\r\n" },
		{ ".", "..\r\n.\r\n" },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char what[32];
		snprintf(what, sizeof what, "row %zu", i);
		check_body(rows[i].body, strlen(rows[i].body), rows[i].want, what);
	}
	/* NUL bytes are carried, never taken for an end. */
	static const char nul[] = "a\0.\r\n\0\r\n.\0\r\n";
	check_body(nul, sizeof nul - 1, NULL, "NUL bytes");
}

/* The body is read in 256 KiB chunks and stuffed in 16 KiB pieces: a CR at the end of
 * one and LF or "." at the start of the next are still one line end, and a stuffed dot. */
static void test_send_across_chunks(void)
{
	static const char *const seams[] = { "\r|\n", "\r|.", "\n|.", "\r|\r\n.", "|.\r\n",
	    "\r\n|.", "\r|", "\n|" };
	static const size_t at[] = { 16 * 1024, 3 * 16 * 1024, CHUNK };
	for (size_t k = 0; k < sizeof seams / sizeof seams[0] * 3; k++) {
		const char *seam = seams[k / 3], *bar = strchr(seam, '|');
		size_t pos = at[k % 3];
		size_t before = (size_t)(bar - seam), after = strlen(bar + 1);
		size_t len = pos + after + (k % 2 ? 100 : 0);
		unsigned char *body = malloc(len);
		for (size_t i = 0; i < len; i++)
			body[i] = i % 80 == 78 ? '\r' : i % 80 == 79 ? '\n' : (i % 80 == 0 ? '.' : 'y');
		memcpy(body + pos - before, seam, before);
		memcpy(body + pos, bar + 1, after);
		char what[32];
		snprintf(what, sizeof what, "seam %zu at %zu", k / 3, pos);
		check_body(body, len, NULL, what);
		free(body);
	}
}

/* Long random bodies of text runs, line ends and dots (the stuffer copies runs whole),
 * some with bare LFs only: across pieces and chunks, always the model's bytes. */
static void test_send_random_long_bodies(void)
{
	unsigned seed = 777;
	for (int n = 0; n < 12; n++) {
		seed = seed * 1103515245 + 12345;
		size_t len = 1000 + (seed >> 8) % (CHUNK + 40000);
		unsigned char *body = malloc(len);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245 + 12345;
			unsigned r = (seed >> 16) % 200;
			body[i] = r == 0 ? '.' : r == 1 ? (n % 3 ? '\r' : '\n') : r == 2 ? '\n' :
			    (unsigned char)('a' + r % 26);
		}
		char what[32];
		snprintf(what, sizeof what, "random long %d", n);
		check_body(body, len, NULL, what);
		free(body);
	}
}

/* Random bodies over an alphabet of line ends, dots and NULs: always the model's bytes. */
static void test_send_random_bodies(void)
{
	static const unsigned char alphabet[] = { 'a', '.', '.', '\r', '\n', '\0', ' ' };
	unsigned seed = 12345;
	for (int n = 0; n < 150; n++) {
		unsigned char body[64];
		seed = seed * 1103515245 + 12345;
		size_t len = (seed >> 16) % sizeof body;
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245 + 12345;
			body[i] = alphabet[(seed >> 16) % sizeof alphabet];
		}
		char what[32];
		snprintf(what, sizeof what, "random %d", n);
		check_body(body, len, NULL, what);
	}
}

int main(void)
{
	if (scratch_init("test_smtp_send") < 0)
		return 1;
	q = open_queue(new_dir(), 64 * MiB, 64 * MiB, 4096);
	base = event_base_new();
	if (!q || !base)
		return 1;
	TEST_CASE(test_send_bare_cr_lf_and_dots);
	TEST_CASE(test_send_across_chunks);
	TEST_CASE(test_send_random_bodies);
	TEST_CASE(test_send_random_long_bodies);
	queue_close(q);
	event_base_free(base);
	scratch_remove();
	return check_exit();
}
