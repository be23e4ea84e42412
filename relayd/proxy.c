/*
 * proxy — parse the PROXY protocol header (proxy-protocol.txt §2.1 text
 * version 1, §2.2 binary version 2) from the bytes a connection has sent so
 * far.  Strict: anything that does not match the specification exactly is
 * PROXY_BAD, and nothing past the header is ever looked at.
 */
#include "relayd/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define V1_PREFIX	"PROXY "
#define V1_PREFIX_LEN	6
#define V1_FIELDS	6		/* PROXY TCP4 src dst sport dport */
#define V2_SIG_LEN	12
#define V2_FIXED	16		/* signature, version/command, family, length */

enum { V2_LOCAL = 0x0, V2_PROXY = 0x1 };

static const unsigned char v2_signature[V2_SIG_LEN] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
};

/* §2.2: the family/transport bytes a sender may use, and their address block sizes. */
static const struct { unsigned char family; size_t address_len; } v2_families[] = {
	{ 0x00, 0 },	/* UNSPEC */
	{ 0x11, 12 },	/* TCP over IPv4 */
	{ 0x12, 12 },	/* UDP over IPv4 */
	{ 0x21, 36 },	/* TCP over IPv6 */
	{ 0x22, 36 },	/* UDP over IPv6 */
	{ 0x31, 216 },	/* UNIX stream */
	{ 0x32, 216 },	/* UNIX datagram */
};

static enum proxy_status bad(const char **why, const char *reason)
{
	*why = reason;
	return PROXY_BAD;
}

static void set_address(struct sockaddr_storage *ss, int family, const void *addr,
    unsigned port)
{
	memset(ss, 0, sizeof *ss);
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, addr, 4);
		in->sin_port = htons((uint16_t)port);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, addr, 16);
		in6->sin6_port = htons((uint16_t)port);
	}
}

/* §2.1: decimal 0..65535, no leading zero. */
static int v1_port(const char *s, unsigned *port)
{
	size_t len = strlen(s);
	unsigned n = 0;

	if (len == 0 || len > 5 || (s[0] == '0' && len > 1))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		n = n * 10 + (unsigned)(s[i] - '0');
	}
	if (n > 65535)
		return -1;
	*port = n;
	return 0;
}

/* One whole v1 line, CRLF excluded (len < PROXY_V1_MAX). */
static enum proxy_status v1_line(const unsigned char *buf, size_t len,
    struct proxy_header *out, const char **why)
{
	char line[PROXY_V1_MAX + 1], *field[V1_FIELDS];
	unsigned char src[16], dst[16];
	unsigned sport, dport;
	int nfields = 0, family;

	memcpy(line, buf, len);
	line[len] = '\0';
	/* "For UNKNOWN … the receiver must ignore anything presented before the CRLF." */
	if (strncmp(line + V1_PREFIX_LEN, "UNKNOWN", 7) == 0 &&
	    (line[V1_PREFIX_LEN + 7] == '\0' || line[V1_PREFIX_LEN + 7] == ' ')) {
		memset(out, 0, sizeof *out);
		out->length = len + 2;
		out->version = 1;
		return PROXY_DONE;
	}
	/* Fields separated by exactly one space: an empty field is an error. */
	for (char *p = line;;) {
		char *space = strchr(p, ' ');
		if (nfields == V1_FIELDS)
			return bad(why, "v1: too many fields");
		field[nfields++] = p;
		if (!space)
			break;
		*space = '\0';
		p = space + 1;
	}
	if (nfields < 2)
		return bad(why, "v1: no protocol");
	for (int i = 0; i < nfields; i++)
		if (field[i][0] == '\0')
			return bad(why, "v1: fields not separated by exactly one space");
	if (strcmp(field[1], "TCP4") == 0)
		family = AF_INET;
	else if (strcmp(field[1], "TCP6") == 0)
		family = AF_INET6;
	else
		return bad(why, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
	if (nfields != V1_FIELDS)
		return bad(why, "v1: too few fields");
	if (inet_pton(family, field[2], src) != 1 || inet_pton(family, field[3], dst) != 1)
		return bad(why, family == AF_INET ? "v1: bad IPv4 address" :
		    "v1: bad IPv6 address");
	if (v1_port(field[4], &sport) < 0 || v1_port(field[5], &dport) < 0)
		return bad(why, "v1: bad port");
	memset(out, 0, sizeof *out);
	out->length = len + 2;
	out->version = 1;
	out->relayed = 1;
	set_address(&out->source, family, src, sport);
	set_address(&out->destination, family, dst, dport);
	return PROXY_DONE;
}

/* §2.1: "PROXY " and printable US-ASCII up to a CRLF within the first 107 bytes. */
static enum proxy_status v1(const unsigned char *buf, size_t len, struct proxy_header *out,
    const char **why)
{
	size_t prefix = len < V1_PREFIX_LEN ? len : V1_PREFIX_LEN;

	if (memcmp(buf, V1_PREFIX, prefix) != 0)
		return bad(why, "no PROXY header");
	for (size_t i = V1_PREFIX_LEN; i < len; i++) {
		if (i + 2 > PROXY_V1_MAX)
			return bad(why, "v1: no CRLF within 107 bytes");
		if (buf[i] == '\r') {
			if (i + 1 == len)
				return PROXY_NEED_MORE;
			if (buf[i + 1] != '\n')
				return bad(why, "v1: CR without LF");
			return v1_line(buf, i, out, why);
		}
		if (buf[i] < 0x20 || buf[i] > 0x7e)	/* a bare LF among them */
			return bad(why, "v1: not a line of text");
	}
	return PROXY_NEED_MORE;
}

/* §2.2: signature, version 2, LOCAL or PROXY, a known family, then the length says it all. */
static enum proxy_status v2(const unsigned char *buf, size_t len, struct proxy_header *out,
    const char **why)
{
	size_t prefix = len < V2_SIG_LEN ? len : V2_SIG_LEN, need = 0, total;
	int command;

	if (memcmp(buf, v2_signature, prefix) != 0)
		return bad(why, "no PROXY header");
	if (len <= V2_SIG_LEN)
		return PROXY_NEED_MORE;
	command = buf[12] & 0x0f;
	if (buf[12] >> 4 != 2)
		return bad(why, "v2: version is not 2");
	if (command != V2_LOCAL && command != V2_PROXY)
		return bad(why, "v2: command is not LOCAL or PROXY");
	if (len <= 13)
		return PROXY_NEED_MORE;
	if (command == V2_PROXY) {	/* LOCAL: "the family … is ignored" */
		size_t i, n = sizeof v2_families / sizeof v2_families[0];
		for (i = 0; i < n && v2_families[i].family != buf[13]; i++)
			;
		if (i == n)
			return bad(why, "v2: unknown address family or transport");
		need = v2_families[i].address_len;
	}
	if (len < V2_FIXED)
		return PROXY_NEED_MORE;
	total = V2_FIXED + ((size_t)buf[14] << 8 | buf[15]);
	if (total > PROXY_HEADER_MAX)
		return bad(why, "v2: header longer than 536 bytes");
	if (total - V2_FIXED < need)
		return bad(why, "v2: address block shorter than its family needs");
	if (len < total)
		return PROXY_NEED_MORE;

	memset(out, 0, sizeof *out);
	out->length = total;	/* TLVs after the addresses are skipped */
	out->version = 2;
	if (command == V2_PROXY && (buf[13] == 0x11 || buf[13] == 0x21)) {
		const unsigned char *a = buf + V2_FIXED;
		int family = buf[13] == 0x11 ? AF_INET : AF_INET6;
		size_t alen = family == AF_INET ? 4 : 16;
		const unsigned char *ports = a + 2 * alen;
		out->relayed = 1;
		set_address(&out->source, family, a, (unsigned)ports[0] << 8 | ports[1]);
		set_address(&out->destination, family, a + alen,
		    (unsigned)ports[2] << 8 | ports[3]);
	}
	/* UNSPEC, UDP and UNIX: the spec's fallback is the real endpoints (relayed = 0). */
	return PROXY_DONE;
}

enum proxy_status proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *out,
    const char **why)
{
	const char *ignored;

	if (!why)
		why = &ignored;
	if (len == 0)
		return PROXY_NEED_MORE;
	if (buf[0] == V1_PREFIX[0])
		return v1(buf, len, out, why);
	if (buf[0] == v2_signature[0])
		return v2(buf, len, out, why);
	return bad(why, "no PROXY header");
}
