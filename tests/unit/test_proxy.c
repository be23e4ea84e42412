/*
 * test_proxy — the PROXY protocol header parser (relayd/proxy.c), one table
 * row per rule of proxy-protocol.txt: v1 TCP4/TCP6/UNKNOWN, v2 IPv4/IPv6/
 * LOCAL/TLVs, and what must be refused.  Every row is also fed cut at every
 * length and followed by the client's own bytes; each buffer is allocated to
 * its exact size so that ASan catches a read past its end.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relayd/proxy.h"
#include "tests/unit/check.h"

#define NROWS(a) (sizeof (a) / sizeof (a)[0])
#define BYTES(s) s, sizeof s - 1

/* The v2 signature, then version 2 with LOCAL (\x20) or PROXY (\x21). */
#define SIG	"\r\n\r\n\0\r\nQUIT\n"
/* 203.0.113.7:40000 -> 127.0.0.1:25 */
#define V4	"\xcb\x00\x71\x07" "\x7f\x00\x00\x01" "\x9c\x40" "\x00\x19"
/* [2001:db8::7]:587 -> [::1]:2525 */
#define V6	"\x20\x01\x0d\xb8" "\0\0\0\0" "\0\0\0\0" "\0\0\0\x07" \
		"\0\0\0\0" "\0\0\0\0" "\0\0\0\0" "\0\0\0\x01" "\x02\x4b" "\x09\xdd"
#define MAXV6	"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
/* The rest of a row that must be refused, or that keeps the real peer address. */
#define REFUSED		PROXY_BAD, 0, 0, NULL, 0, NULL, 0
#define PEER_KEPT(v)	PROXY_DONE, v, 0, NULL, 0, NULL, 0

struct row {
	const char *name;
	const char *bytes;
	size_t len;
	enum proxy_status want;
	int version, relayed;
	const char *source;
	unsigned source_port;
	const char *destination;
	unsigned destination_port;
};

static const struct row rows[] = {
	/* version 1 */
	{ "v1 TCP4", BYTES("PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\r\n"), PROXY_DONE, 1, 1,
	  "203.0.113.7", 40000, "127.0.0.1", 25 },
	{ "v1 TCP6", BYTES("PROXY TCP6 2001:db8::7 ::1 65535 587\r\n"), PROXY_DONE, 1, 1,
	  "2001:db8::7", 65535, "::1", 587 },
	{ "v1 TCP6 longest", BYTES("PROXY TCP6 " MAXV6 " " MAXV6 " 65535 65535\r\n"),
	  PROXY_DONE, 1, 1, MAXV6, 65535, MAXV6, 65535 },
	{ "v1 ports 0", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n"), PROXY_DONE, 1, 1,
	  "1.2.3.4", 0, "5.6.7.8", 0 },
	{ "v1 UNKNOWN", BYTES("PROXY UNKNOWN\r\n"), PEER_KEPT(1) },
	{ "v1 UNKNOWN longest", BYTES("PROXY UNKNOWN " MAXV6 " " MAXV6 " 65535 65535\r\n"),
	  PEER_KEPT(1) },
	{ "v1 not SMTP", BYTES("EHLO client.test\r\n"), REFUSED },
	{ "v1 not HTTP", BYTES("GET / HTTP/1.0\r\n"), REFUSED },
	{ "v1 lower case", BYTES("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), REFUSED },
	{ "v1 PROXYX", BYTES("PROXYX TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), REFUSED },
	{ "v1 empty", BYTES("PROXY \r\n"), REFUSED },
	{ "v1 UNKNOWNX", BYTES("PROXY UNKNOWNX\r\n"), REFUSED },
	{ "v1 UDP4", BYTES("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), REFUSED },
	{ "v1 address 999", BYTES("PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n"), REFUSED },
	{ "v1 address leading zero", BYTES("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), REFUSED },
	{ "v1 address short", BYTES("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), REFUSED },
	{ "v1 destination bad", BYTES("PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n"), REFUSED },
	{ "v1 TCP4 with IPv6", BYTES("PROXY TCP4 ::1 ::1 1 2\r\n"), REFUSED },
	{ "v1 TCP6 with IPv4", BYTES("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), REFUSED },
	{ "v1 TCP6 bad", BYTES("PROXY TCP6 2001:db8:::7 ::1 1 2\r\n"), REFUSED },
	{ "v1 port 70000", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 70000 25\r\n"), REFUSED },
	{ "v1 port 65536", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"), REFUSED },
	{ "v1 port leading zero", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 025 25\r\n"), REFUSED },
	{ "v1 port sign", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 +1 25\r\n"), REFUSED },
	{ "v1 port minus", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 -1 25\r\n"), REFUSED },
	{ "v1 port letters", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 1a 25\r\n"), REFUSED },
	{ "v1 port huge", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 4294967297 25\r\n"), REFUSED },
	{ "v1 too few fields", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), REFUSED },
	{ "v1 too many fields", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), REFUSED },
	{ "v1 two spaces", BYTES("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), REFUSED },
	{ "v1 trailing space", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), REFUSED },
	{ "v1 tab", BYTES("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n"), REFUSED },
	{ "v1 bare LF", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), REFUSED },
	{ "v1 CR without LF", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"), REFUSED },
	{ "v1 NUL", BYTES("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n"), REFUSED },
	{ "v1 8-bit", BYTES("PROXY UNKNOWN \xff\r\n"), REFUSED },
	{ "v1 108 bytes", BYTES("PROXY UNKNOWN " MAXV6 " " MAXV6 " 65535 655355\r\n"),
	  REFUSED },

	/* version 2 */
	{ "v2 TCP4", BYTES(SIG "\x21\x11\x00\x0c" V4), PROXY_DONE, 2, 1, "203.0.113.7", 40000,
	  "127.0.0.1", 25 },
	{ "v2 TCP6", BYTES(SIG "\x21\x21\x00\x24" V6), PROXY_DONE, 2, 1, "2001:db8::7", 587,
	  "::1", 2525 },
	{ "v2 TCP4 with TLVs", BYTES(SIG "\x21\x11\x00\x1e" V4 "\x04\x00\x03" "abc"
	  "\x05\x00\x06" "id-123" "\x20\x00\x00"), PROXY_DONE, 2, 1, "203.0.113.7", 40000,
	  "127.0.0.1", 25 },
	{ "v2 TCP6 with TLV", BYTES(SIG "\x21\x21\x00\x28" V6 "\x04\x00\x01" "z"), PROXY_DONE,
	  2, 1, "2001:db8::7", 587, "::1", 2525 },
	{ "v2 LOCAL", BYTES(SIG "\x20\x00\x00\x00"), PEER_KEPT(2) },
	{ "v2 LOCAL with addresses", BYTES(SIG "\x20\x11\x00\x0c" V4), PEER_KEPT(2) },
	{ "v2 LOCAL any family", BYTES(SIG "\x20\xff\x00\x01" "x"), PEER_KEPT(2) },
	{ "v2 UNSPEC", BYTES(SIG "\x21\x00\x00\x00"), PEER_KEPT(2) },
	{ "v2 UDP4", BYTES(SIG "\x21\x12\x00\x0c" V4), PEER_KEPT(2) },
	{ "v2 bad signature", BYTES("\r\n\r\n\0\r\nQUIT\r" "\x21\x11\x00\x0c" V4), REFUSED },
	{ "v2 version 1", BYTES(SIG "\x11\x11\x00\x0c" V4), REFUSED },
	{ "v2 version 3", BYTES(SIG "\x31\x11\x00\x0c" V4), REFUSED },
	{ "v2 command 2", BYTES(SIG "\x22\x11\x00\x0c" V4), REFUSED },
	{ "v2 command 15", BYTES(SIG "\x2f\x11\x00\x0c" V4), REFUSED },
	{ "v2 family 4", BYTES(SIG "\x21\x41\x00\x0c" V4), REFUSED },
	{ "v2 transport 3", BYTES(SIG "\x21\x13\x00\x0c" V4), REFUSED },
	{ "v2 UNSPEC family STREAM", BYTES(SIG "\x21\x01\x00\x00"), REFUSED },
	{ "v2 TCP4 address short", BYTES(SIG "\x21\x11\x00\x0b" "\xcb\x00\x71\x07"
	  "\x7f\x00\x00\x01" "\x9c\x40" "\x00"), REFUSED },
	{ "v2 TCP6 with IPv4 length", BYTES(SIG "\x21\x21\x00\x0c" V4), REFUSED },
	{ "v2 length 65535", BYTES(SIG "\x21\x11\xff\xff" V4), REFUSED },
	{ "v2 length 521", BYTES(SIG "\x20\x00\x02\x09"), REFUSED },
	{ "TLS first", BYTES("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), REFUSED },
	{ "NUL first", BYTES("\0PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), REFUSED },
};

/* proxy_parse over an exact-size copy of bytes[0..len). */
static enum proxy_status parse(const void *bytes, size_t len, struct proxy_header *h,
    const char **why)
{
	unsigned char *copy = malloc(len ? len : 1);
	enum proxy_status r;

	if (!copy)
		abort();
	memcpy(copy, bytes, len);
	memset(h, 0xa5, sizeof *h);
	*why = NULL;
	r = proxy_parse(copy, len, h, why);
	free(copy);
	if (r == PROXY_NEED_MORE)
		CHECK(len < PROXY_HEADER_MAX);
	if (r == PROXY_DONE)
		CHECK(h->length > 0 && h->length <= len);
	if (r == PROXY_BAD)
		CHECK(*why != NULL && (*why)[0] != '\0');
	return r;
}

static void check_address(const struct sockaddr_storage *ss, const char *text, unsigned port)
{
	char got[INET6_ADDRSTRLEN] = "";
	unsigned got_port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, got, sizeof got);
		got_port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, got, sizeof got);
		got_port = ntohs(in6->sin6_port);
	}
	CHECK_STR(got, text);
	CHECK(got_port == port);
}

static void check_row(const struct row *r, const struct proxy_header *h, size_t length)
{
	CHECK(h->length == length);
	CHECK(h->version == r->version);
	CHECK(h->relayed == r->relayed);
	if (r->relayed) {
		check_address(&h->source, r->source, r->source_port);
		check_address(&h->destination, r->destination, r->destination_port);
	}
}

static void test_rows(void)
{
	for (size_t i = 0; i < NROWS(rows); i++) {
		struct proxy_header h;
		const char *why;
		enum proxy_status got = parse(rows[i].bytes, rows[i].len, &h, &why);
		if (got != rows[i].want)
			fprintf(stderr, "  %s: got %d, want %d (%s)\n", rows[i].name, got,
			    rows[i].want, why ? why : "");
		CHECK(got == rows[i].want);
		if (got == PROXY_DONE && rows[i].want == PROXY_DONE)
			check_row(&rows[i], &h, rows[i].len);
	}
}

/*
 * A header cut anywhere is "need more" (byte by byte it still arrives whole),
 * never "done"; once a prefix is bad, every longer one is bad too.
 */
static void test_truncated_at_every_length(void)
{
	for (size_t i = 0; i < NROWS(rows); i++) {
		enum proxy_status before = PROXY_NEED_MORE;
		for (size_t k = 0; k < rows[i].len; k++) {
			struct proxy_header h;
			const char *why;
			enum proxy_status got = parse(rows[i].bytes, k, &h, &why);
			if (rows[i].want == PROXY_DONE && got != PROXY_NEED_MORE)
				fprintf(stderr, "  %s cut at %zu: %d (%s)\n", rows[i].name, k, got,
				    why ? why : "");
			if (rows[i].want == PROXY_DONE)
				CHECK(got == PROXY_NEED_MORE);
			CHECK(got != PROXY_DONE);
			CHECK(before != PROXY_BAD || got == PROXY_BAD);
			before = got;
		}
	}
}

/* What follows the header (an early EHLO, a TLS ClientHello) is never taken as part of it. */
static void test_client_bytes_follow(void)
{
	static const char *const tails[] = {
		"EHLO client.test\r\n", "\x16\x03\x01\x02\x00\x01", "\r\n", "PROXY TCP4 ",
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		if (rows[i].want != PROXY_DONE)
			continue;
		for (size_t t = 0; t < NROWS(tails); t++) {
			char buf[PROXY_HEADER_MAX + 64];
			size_t tail = strlen(tails[t]);
			struct proxy_header h;
			const char *why;
			memcpy(buf, rows[i].bytes, rows[i].len);
			memcpy(buf + rows[i].len, tails[t], tail);
			CHECK(parse(buf, rows[i].len + tail, &h, &why) == PROXY_DONE);
			check_row(&rows[i], &h, rows[i].len);
		}
	}
}

/* v2 lengths at the limits: the UNIX block (216), 536 in all, and one more. */
static void test_v2_sizes(void)
{
	static const struct {
		unsigned char family;
		size_t block;
		enum proxy_status want;
	} sizes[] = {
		{ 0x31, 216, PROXY_DONE },
		{ 0x32, 216, PROXY_DONE },
		{ 0x31, 215, PROXY_BAD },
		{ 0x11, PROXY_HEADER_MAX - 16, PROXY_DONE },	/* TLVs up to the cap */
		{ 0x11, PROXY_HEADER_MAX - 15, PROXY_BAD },
		{ 0x21, PROXY_HEADER_MAX - 16, PROXY_DONE },
	};
	for (size_t i = 0; i < NROWS(sizes); i++) {
		unsigned char buf[16 + 1024];
		struct proxy_header h;
		const char *why;
		memcpy(buf, SIG, 12);
		buf[12] = 0x21;
		buf[13] = sizes[i].family;
		buf[14] = (unsigned char)(sizes[i].block >> 8);
		buf[15] = (unsigned char)sizes[i].block;
		memset(buf + 16, 0x7f, sizes[i].block);
		enum proxy_status got = parse(buf, 16 + sizes[i].block, &h, &why);
		CHECK(got == sizes[i].want);
		if (got == PROXY_DONE) {
			CHECK(h.length == 16 + sizes[i].block);
			CHECK(h.relayed == (sizes[i].family == 0x11 || sizes[i].family == 0x21));
		}
	}
}

/* A v1 line with no CRLF is refused at 107 bytes, before any more is waited for. */
static void test_v1_without_end(void)
{
	char buf[200];
	struct proxy_header h;
	const char *why;

	memcpy(buf, "PROXY UNKNOWN ", 14);
	memset(buf + 14, 'a', sizeof buf - 14);
	CHECK(parse(buf, PROXY_V1_MAX - 1, &h, &why) == PROXY_NEED_MORE);
	CHECK(parse(buf, PROXY_V1_MAX, &h, &why) == PROXY_BAD);
	CHECK(parse(buf, sizeof buf, &h, &why) == PROXY_BAD);
	buf[PROXY_V1_MAX - 2] = '\r';	/* the CRLF ends exactly at byte 107: whole */
	buf[PROXY_V1_MAX - 1] = '\n';
	CHECK(parse(buf, PROXY_V1_MAX, &h, &why) == PROXY_DONE && h.length == PROXY_V1_MAX);
	CHECK(proxy_parse((const unsigned char *)buf, 0, &h, NULL) == PROXY_NEED_MORE);
	CHECK(proxy_parse((const unsigned char *)"X", 1, &h, NULL) == PROXY_BAD);
}

/* Hostile input: random bytes, and valid headers with bytes changed, never crash. */
static void test_random_input(void)
{
	uint32_t x = 2463534242u;
	unsigned char buf[PROXY_HEADER_MAX + 100];

	for (int round = 0; round < 200000; round++) {
		struct proxy_header h;
		const char *why;
		size_t len;
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		if (round % 2) {
			const struct row *r = &rows[x % NROWS(rows)];
			len = r->len;
			memcpy(buf, r->bytes, len);
			for (int flips = 1 + (int)(x >> 28) % 3; flips > 0; flips--) {
				x ^= x << 13, x ^= x >> 17, x ^= x << 5;
				buf[x % len] = (unsigned char)(x >> 8);
			}
		} else {
			len = x % sizeof buf;
			buf[0] = (x >> 9) & 1 ? 'P' : '\r';
			for (size_t i = 1; i < len; i++) {
				x ^= x << 13, x ^= x >> 17, x ^= x << 5;
				buf[i] = (unsigned char)x;
			}
		}
		parse(buf, len, &h, &why);
	}
}

int main(void)
{
	TEST_CASE(test_rows);
	TEST_CASE(test_truncated_at_every_length);
	TEST_CASE(test_client_bytes_follow);
	TEST_CASE(test_v2_sizes);
	TEST_CASE(test_v1_without_end);
	TEST_CASE(test_random_input);
	return check_exit();
}
