/*
 * routes — the `route PATTERN UPSTREAM…` and `route_sender PATTERN
 * UPSTREAM…` statements of relayd.conf: which upstreams carry mail for
 * which recipient domains, or from which senders.  Names are checked
 * against the upstream blocks at the end of the file, since a route may come
 * before the block it names.  Lookup belongs to routes/; this is the syntax.
 */
#include "conf/internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/*
 * `*`, a domain (example.com), or every domain under one (.example.com); for
 * route_sender also an address (user@example.com), but not `*`.
 */
int conf_valid_route_pattern(const char *s, int sender)
{
	const char *at = strrchr(s, '@');
	size_t len = strlen(s);

	if (strcmp(s, "*") == 0)
		return !sender;
	if (sender && at) {
		for (const char *c = s; c < at; c++)
			if (*c <= ' ' || *c >= 127 || strchr("<>()[],;:\\\"@", *c))
				return 0;
		return at > s && at[1] != '.' && conf_valid_route_pattern(at + 1, 0);
	}
	if (len == 0 || len > 253 || s[len - 1] == '.' || (s[0] == '.' && len == 1))
		return 0;
	for (const char *c = s; *c; c++)
		if (!isalnum((unsigned char)*c) && *c != '.' && *c != '-' && *c != '_')
			return 0;
	return strstr(s, "..") == NULL;
}

int conf_add_route(struct conf_parser *p, void *base, size_t offset, int argc, char **argv)
{
	struct config *conf = base;
	int sender = strcmp(p->keyword, "route_sender") == 0;

	(void)offset;
	if (!conf_valid_route_pattern(argv[0], sender)) {
		conf_error(p, sender ? "route_sender: bad sender \"%s\" (use user@example.com, "
		    "example.com or .example.com)" : "route: bad domain \"%s\" (use *, "
		    "example.com or .example.com)", argv[0]);
		return -1;
	}
	for (size_t i = 0; i < conf->nroutes; i++) {
		if (conf->routes[i].sender == sender &&
		    strcasecmp(conf->routes[i].pattern, argv[0]) == 0) {
			conf_error(p, "%s %s given twice (first at line %d)", p->keyword, argv[0],
			    conf->routes[i].line);
			return -1;
		}
	}
	return conf_new_route(p, conf, sender, argv[0], argv + 1, (size_t)argc - 1, NULL);
}

int conf_new_route(struct conf_parser *p, struct config *conf, int sender, const char *pattern,
    char **names, size_t nnames, const char *file)
{
	struct conf_route *grown = reallocarray(conf->routes, conf->nroutes + 1, sizeof *grown);
	struct conf_route *r;

	if (!grown) {
		conf_error(p, "out of memory");
		return -1;
	}
	conf->routes = grown;
	r = &conf->routes[conf->nroutes];
	memset(r, 0, sizeof *r);
	r->line = p->line;
	r->sender = sender;
	if (!(r->pattern = strdup(pattern)) ||
	    !(r->names = calloc(nnames, sizeof *r->names)) ||
	    !(r->upstreams = calloc(nnames, sizeof *r->upstreams)) ||
	    (file && !(r->file = strdup(file)))) {
		free(r->pattern);
		free(r->names);
		free(r->upstreams);
		conf_error(p, "out of memory");
		return -1;
	}
	conf->nroutes++;
	for (size_t i = 0; i < nnames; i++) {
		if (!(r->names[r->nupstreams++] = strdup(names[i]))) {
			conf_error(p, "out of memory");
			return -1;
		}
	}
	return 0;
}

/* At end of file: every name a route gives must be an upstream block. */
int conf_check_routes(struct conf_parser *p, struct config *conf)
{
	for (size_t i = 0; i < conf->nroutes; i++) {
		struct conf_route *r = &conf->routes[i];
		for (size_t j = 0; j < r->nupstreams; j++) {
			size_t k = 0;
			while (k < conf->nupstreams &&
			    strcmp(conf->upstreams[k].name, r->names[j]) != 0)
				k++;
			/* `direct` needs no block: it is made with its defaults. */
			if (k == conf->nupstreams && strcmp(r->names[j], "direct") == 0) {
				struct conf_upstream *u = conf_new_upstream(p, conf, "direct");
				if (!u || conf_finish_upstream(p, u) < 0)
					return -1;
			}
			if (k == conf->nupstreams) {
				p->line = r->line;
				conf_error(p, "%s %s: no upstream block named \"%s\"",
				    r->sender ? "route_sender" : "route", r->pattern, r->names[j]);
				return -1;
			}
			r->upstreams[j] = k;
		}
	}
	return 0;
}

void conf_free_routes(struct config *conf)
{
	for (size_t i = 0; i < conf->nroutes; i++) {
		struct conf_route *r = &conf->routes[i];
		for (size_t j = 0; j < r->nupstreams; j++)
			free(r->names[j]);
		free(r->names);
		free(r->upstreams);
		free(r->pattern);
		free(r->file);
	}
	free(conf->routes);
}
