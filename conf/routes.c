/*
 * routes — the `route PATTERN UPSTREAM…` statements of relayd.conf: which
 * upstreams carry mail for which recipient domains.  Names are checked
 * against the upstream blocks at the end of the file, since a route may come
 * before the block it names.  Lookup belongs to routes/; this is the syntax.
 */
#include "conf/internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* `*`, a domain (example.com), or every domain under one (.example.com). */
static int valid_pattern(const char *s)
{
	size_t len = strlen(s);

	if (strcmp(s, "*") == 0)
		return 1;
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
	struct conf_route *grown, *r;

	(void)offset;
	if (!valid_pattern(argv[0])) {
		conf_error(p, "route: bad domain \"%s\" (use *, example.com or .example.com)",
		    argv[0]);
		return -1;
	}
	for (size_t i = 0; i < conf->nroutes; i++) {
		if (strcasecmp(conf->routes[i].pattern, argv[0]) == 0) {
			conf_error(p, "route %s given twice (first at line %d)", argv[0],
			    conf->routes[i].line);
			return -1;
		}
	}
	grown = reallocarray(conf->routes, conf->nroutes + 1, sizeof *grown);
	if (!grown) {
		conf_error(p, "out of memory");
		return -1;
	}
	conf->routes = grown;
	r = &conf->routes[conf->nroutes];
	memset(r, 0, sizeof *r);
	r->line = p->line;
	if (!(r->pattern = strdup(argv[0])) ||
	    !(r->names = calloc((size_t)argc - 1, sizeof *r->names)) ||
	    !(r->upstreams = calloc((size_t)argc - 1, sizeof *r->upstreams))) {
		free(r->pattern);
		free(r->names);
		conf_error(p, "out of memory");
		return -1;
	}
	conf->nroutes++;
	for (int i = 1; i < argc; i++) {
		if (!(r->names[r->nupstreams++] = strdup(argv[i]))) {
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
			while (k < conf->nupstreams && strcmp(conf->upstreams[k].name, r->names[j]))
				k++;
			if (k == conf->nupstreams) {
				p->line = r->line;
				conf_error(p, "route %s: no upstream block named \"%s\"", r->pattern,
				    r->names[j]);
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
	}
	free(conf->routes);
}
