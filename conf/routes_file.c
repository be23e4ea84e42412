/*
 * routes_file — qmail's control/smtproutes, so a qmail admin can point
 * relayd at the file they have:
 *
 *     example.com:relay.example.net       mail for example.com
 *     .example.com:[192.0.2.7]:2525       for every domain under it
 *     :smarthost.example.net              for everything else
 *     example.org:                        empty: the domain's own MX hosts
 *
 * Each relay is an anonymous upstream named "host:port" (port 25 unless
 * given) with opportunistic STARTTLS, shared by every line that names it;
 * an empty relay is `direct`.  Blank lines and '#' comments are allowed.
 * A domain that relayd.conf routes too is an error, not a silent choice.
 */
#include "conf/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* "host[:port]" or "[addr][:port]" into host and port (25 when absent); -1 when malformed. */
static int parse_relay(const char *s, char *host, size_t hostlen, unsigned *port)
{
	const char *end, *colon;
	size_t len;

	*port = 25;
	if (s[0] == '[') {
		if (!(end = strchr(s, ']')) || (end[1] && end[1] != ':'))
			return -1;
		len = (size_t)(end - s - 1);
		s++;
		colon = end[1] == ':' ? end + 1 : NULL;
	} else {
		colon = strchr(s, ':');
		len = colon ? (size_t)(colon - s) : strlen(s);
	}
	if (len == 0 || len >= hostlen)
		return -1;
	memcpy(host, s, len);
	host[len] = '\0';
	if (!conf_valid_name(host, ".-_:", 253))
		return -1;
	return colon ? conf_parse_port(colon + 1, port) : 0;
}

/* The anonymous upstream for host:port, made on first use. */
static const char *relay_upstream(struct conf_parser *p, struct config *conf, const char *host,
    unsigned port)
{
	char name[300];
	struct conf_upstream *u;

	snprintf(name, sizeof name, "%s:%u", host, port);
	for (size_t i = 0; i < conf->nupstreams; i++)
		if (conf->upstreams[i].anonymous && strcmp(conf->upstreams[i].name, name) == 0)
			return conf->upstreams[i].name;
	if (!(u = conf_new_upstream(p, conf, name)))
		return NULL;
	u->anonymous = 1;
	u->tls = CONF_TLS_MAY;
	u->port = port;
	if (conf_store_string(p, &u->host, host) < 0 || conf_finish_upstream(p, u) < 0)
		return NULL;
	return u->name;
}

static int routes_line(struct conf_parser *p, struct config *conf, char *line, const char *file)
{
	char host[256], *colon = strchr(line, ':');
	unsigned port;
	const char *name = "direct";

	if (!colon) {
		conf_error(p, "routes_file: \"%s\" is not domain:relay[:port]", line);
		return -1;
	}
	*colon = '\0';
	const char *domain = line[0] ? line : "*", *relay = colon + 1;
	if (!conf_valid_route_pattern(domain, 0)) {
		conf_error(p, "routes_file: bad domain \"%s\"", domain);
		return -1;
	}
	for (size_t i = 0; i < conf->nroutes; i++) {
		const struct conf_route *r = &conf->routes[i];
		if (!r->sender && strcasecmp(r->pattern, domain) == 0) {
			conf_error(p, "routes_file: %s is routed already (%s:%d)", domain,
			    r->file ? r->file : conf->path, r->line);
			return -1;
		}
	}
	if (relay[0]) {
		if (parse_relay(relay, host, sizeof host, &port) < 0) {
			conf_error(p, "routes_file: bad relay \"%s\" (use host, host:port or "
			    "[address]:port)", relay);
			return -1;
		}
		if (!(name = relay_upstream(p, conf, host, port)))
			return -1;
	}
	char *names[] = { (char *)name };
	return conf_new_route(p, conf, 0, domain, names, 1, file);
}

static int routes_file_line(struct conf_parser *p, struct config *conf, char *line)
{
	return routes_line(p, conf, line, conf->routes_file);
}

int conf_read_routes_file(struct conf_parser *p, struct config *conf)
{
	if (!conf->routes_file)
		return 0;
	p->keyword = "routes_file";
	return conf_read_lines(p, conf, conf->routes_file, 1, routes_file_line);
}
