/*
 * allow — the `allow` network list: clients inside may relay without AUTH.
 * An IPv4 client reached through an IPv6 socket (::ffff:a.b.c.d) is matched
 * as the IPv4 address it is, so `allow 127.0.0.0/8` means what it says.
 * Also the key a client's address is counted under by the limits.
 */
#include "auth/auth.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int auth_cidr_match(const struct conf_cidr *net, const struct sockaddr *addr)
{
	const unsigned char *bytes;
	int family = addr->sa_family;

	if (family == AF_INET) {
		bytes = (const unsigned char *)&((const struct sockaddr_in *)addr)->sin_addr;
	} else if (family == AF_INET6) {
		bytes = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
		if (net->family == AF_INET && memcmp(bytes, v4mapped, 12) == 0) {
			bytes += 12;
			family = AF_INET;
		}
	} else {
		return 0;
	}
	if (family != net->family)
		return 0;

	unsigned full = net->prefix / 8, rest = net->prefix % 8;
	if (memcmp(bytes, net->addr, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (bytes[full] & mask) == (net->addr[full] & mask);
}

int auth_check_config(const struct config *conf, char *err, size_t errlen)
{
	if (conf->nallow == 0 && !conf->auth_sasldb.path && !conf->auth_saslauthd.path) {
		snprintf(err, errlen, "%s: nobody may relay: give `allow` networks or an AUTH "
		    "backend (auth_sasldb, auth_saslauthd)", conf->path);
		return -1;
	}
	return 0;
}

int auth_network_allowed(const struct config *conf, const struct sockaddr *client)
{
	for (size_t i = 0; i < conf->nallow; i++)
		if (auth_cidr_match(&conf->allow[i], client))
			return 1;
	return 0;
}

void auth_client_key(const struct sockaddr *client, char *key, size_t len)
{
	char text[INET6_ADDRSTRLEN] = "?";

	if (client->sa_family == AF_INET6) {
		struct in6_addr a = ((const struct sockaddr_in6 *)client)->sin6_addr;
		if (memcmp(a.s6_addr, v4mapped, sizeof v4mapped) == 0) {
			inet_ntop(AF_INET, a.s6_addr + 12, text, sizeof text);
			snprintf(key, len, "%s", text);
			return;
		}
		memset(a.s6_addr + 8, 0, 8);
		inet_ntop(AF_INET6, &a, text, sizeof text);
		snprintf(key, len, "%s/64", text);
		return;
	}
	if (client->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)client)->sin_addr, text, sizeof text);
	snprintf(key, len, "%s", text);
}
