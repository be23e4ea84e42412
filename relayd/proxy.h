/*
 * proxy — the PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1
 * and 2) that a load balancer sends before the client's first byte, naming the
 * client it relays (DESIGN.md, Scaling out).  A pure parser over the bytes
 * received so far: no I/O, no allocation; smtp_server.c does the reading.
 */
#ifndef RELAYD_PROXY_H
#define RELAYD_PROXY_H

#include <stddef.h>
#include <sys/socket.h>

#define PROXY_V1_MAX	 107	/* "PROXY UNKNOWN ffff:…:ffff ffff:…:ffff 65535 65535\r\n" */
#define PROXY_HEADER_MAX 536	/* v2: 16 + 216 address bytes + TLVs; a longer one is refused */

enum proxy_status {
	PROXY_NEED_MORE,	/* every byte so far belongs to a header that is not whole yet */
	PROXY_BAD,		/* not a header, or a malformed one: drop the connection */
	PROXY_DONE,		/* a whole header: the client's own bytes start at length */
};

struct proxy_header {
	size_t length;		/* the header's bytes, TLVs included */
	int version;		/* 1 or 2 */
	/*
	 * 1: source and destination are the relayed connection's.  0 (v2 LOCAL,
	 * v1 UNKNOWN, v2 families other than TCP over IPv4/IPv6): the proxy speaks
	 * for itself (health checks), so the real peer address stays.
	 */
	int relayed;
	struct sockaddr_storage source, destination;	/* AF_INET or AF_INET6, with ports */
};

/*
 * Look at the first len bytes of a connection.  PROXY_NEED_MORE guarantees
 * len < PROXY_HEADER_MAX and that every one of the bytes is part of the
 * header; PROXY_DONE fills out (out->length <= len); PROXY_BAD sets *why to
 * a short reason for the log.  Never reads past buf[len - 1].
 */
enum proxy_status proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *out,
    const char **why);

#endif
