/*
 * values — the config's value syntaxes: durations (30s 5m 4h 5d), sizes
 * (512 10K 50M 2G), counts, ports, networks (CIDR) and listen addresses.
 * Each parser takes the whole word: no signs, no blanks, no trailing junk,
 * and overflow is an error rather than a wrap.
 */
#include "conf/internal.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* One or more decimal digits into *out; *end points past them.  -1 on none or overflow. */
static int conf_digits(const char *s, uint64_t *out, const char **end)
{
	uint64_t n = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (n > (UINT64_MAX - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	*out = n;
	*end = s;
	return 0;
}

int conf_parse_duration(const char *s, unsigned *seconds)
{
	uint64_t n, unit;
	const char *end;

	if (conf_digits(s, &n, &end) < 0)
		return -1;
	switch (*end) {
	case '\0':
	case 's': unit = 1; break;
	case 'm': unit = 60; break;
	case 'h': unit = 60 * 60; break;
	case 'd': unit = 24 * 60 * 60; break;
	default: return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	if (n > UINT_MAX / unit)
		return -1;
	*seconds = (unsigned)(n * unit);
	return 0;
}

int conf_parse_size(const char *s, uint64_t *bytes)
{
	uint64_t n, unit;
	const char *end;

	if (conf_digits(s, &n, &end) < 0)
		return -1;
	switch (*end) {
	case '\0': unit = 1; break;
	case 'k': case 'K': unit = UINT64_C(1) << 10; break;
	case 'm': case 'M': unit = UINT64_C(1) << 20; break;
	case 'g': case 'G': unit = UINT64_C(1) << 30; break;
	default: return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	if (n > UINT64_MAX / unit)
		return -1;
	*bytes = n * unit;
	return 0;
}

int conf_parse_count(const char *s, unsigned *out)
{
	uint64_t n;
	const char *end;

	if (conf_digits(s, &n, &end) < 0 || *end != '\0' || n == 0 || n > UINT_MAX)
		return -1;
	*out = (unsigned)n;
	return 0;
}

int conf_parse_port(const char *s, unsigned *out)
{
	unsigned n;

	if (conf_parse_count(s, &n) < 0 || n > 65535)
		return -1;
	*out = n;
	return 0;
}

int conf_parse_cidr(const char *s, struct conf_cidr *out)
{
	struct conf_cidr net = { 0 };
	char addr[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t len = slash ? (size_t)(slash - s) : strlen(s);
	unsigned bits;

	if (len == 0 || len >= sizeof addr)
		return -1;
	memcpy(addr, s, len);
	addr[len] = '\0';
	if (inet_pton(AF_INET, addr, net.addr) == 1) {
		net.family = AF_INET;
		bits = 32;
	} else if (inet_pton(AF_INET6, addr, net.addr) == 1) {
		net.family = AF_INET6;
		bits = 128;
	} else {
		return -1;
	}
	net.prefix = bits;
	if (slash) {
		uint64_t n;
		const char *end;
		if (conf_digits(slash + 1, &n, &end) < 0 || *end != '\0' || n > bits)
			return -1;
		net.prefix = (unsigned)n;
	}
	/* `allow 10.1.2.3/8` means 10.0.0.0/8: clear the host bits. */
	for (unsigned i = 0; i < bits / 8; i++) {
		unsigned first = i * 8;
		if (first >= net.prefix)
			net.addr[i] = 0;
		else if (net.prefix - first < 8)
			net.addr[i] &= (unsigned char)(0xff << (8 - (net.prefix - first)));
	}
	*out = net;
	return 0;
}

int conf_parse_listen(const char *s, struct conf_listen *out)
{
	struct conf_listen l;
	char host[INET6_ADDRSTRLEN], shown[INET6_ADDRSTRLEN];
	const char *port_text;
	size_t len;
	unsigned port;
	int n;

	memset(&l, 0, sizeof l);
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -1;
		len = (size_t)(close - s - 1);
		port_text = close + 2;
	} else {
		const char *colon = strchr(s, ':');
		if (!colon || strchr(colon + 1, ':'))	/* IPv6 must be bracketed */
			return -1;
		len = (size_t)(colon - s);
		port_text = colon + 1;
	}
	if (len == 0 || len >= sizeof host || conf_parse_port(port_text, &port) < 0)
		return -1;
	memcpy(host, s + (s[0] == '['), len);
	host[len] = '\0';

	if (s[0] == '[') {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l.addr;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		l.addrlen = sizeof *sin6;
		inet_ntop(AF_INET6, &sin6->sin6_addr, shown, sizeof shown);
		n = snprintf(l.text, sizeof l.text, "[%s]:%u", shown, port);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&l.addr;
		if (strcmp(host, "*") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		l.addrlen = sizeof *sin;
		inet_ntop(AF_INET, &sin->sin_addr, shown, sizeof shown);
		n = snprintf(l.text, sizeof l.text, "%s:%u", shown, port);
	}
	if (n < 0 || (size_t)n >= sizeof l.text)
		return -1;
	*out = l;
	return 0;
}

const char *conf_tls_mode_name(enum conf_tls_mode m)
{
	switch (m) {
	case CONF_TLS_STARTTLS: return "starttls";
	case CONF_TLS_IMPLICIT: return "tls";
	case CONF_TLS_MAY: return "may";
	case CONF_TLS_NONE: return "none";
	}
	return "?";
}
