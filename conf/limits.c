/*
 * limits — the syntax of the rate limits that auth/limits.c applies:
 *
 *     limit_user 100/hour               messages per login
 *     limit_client 500/hour             messages per client address
 *     limit_rcpt 1000/hour              recipients per login, else per address
 *     max_connections_per_client 20     concurrent sessions per address
 *     limit_exempt 192.0.2.7 10.1.0.0/16   addresses the per-address limits spare
 *
 * A rate is N/hour or N/minute: at most N in any hour (or minute), a window
 * that slides rather than a clock hour.
 */
#include "conf/internal.h"

#include <stdlib.h>
#include <string.h>

static const struct { const char *name; unsigned seconds; } rate_units[] = {
	{ "minute", 60 },
	{ "hour", 60 * 60 },
};

int conf_parse_rate(const char *s, unsigned *count, unsigned *window)
{
	const char *slash = strchr(s, '/');
	char digits[32];

	if (!slash || (size_t)(slash - s) >= sizeof digits)
		return -1;
	memcpy(digits, s, (size_t)(slash - s));
	digits[slash - s] = '\0';
	for (size_t i = 0; i < sizeof rate_units / sizeof rate_units[0]; i++)
		if (strcmp(slash + 1, rate_units[i].name) == 0) {
			if (conf_parse_count(digits, count) < 0)
				return -1;
			*window = rate_units[i].seconds;
			return 0;
		}
	return -1;
}

/* limit_user, limit_client, limit_rcpt: N/hour or N/minute. */
int conf_set_rate(struct conf_parser *p, void *base, size_t offset, int argc, char **argv)
{
	struct conf_rate_limit *r = CONF_FIELD(base, offset, struct conf_rate_limit);

	(void)argc;
	if (conf_parse_rate(argv[0], &r->count, &r->window) < 0) {
		conf_error(p, "%s: \"%s\" is not N/hour or N/minute (like 100/hour; N at least 1)",
		    p->keyword, argv[0]);
		return -1;
	}
	r->line = p->line;
	return 0;
}

/* limit_exempt CIDR…: repeatable, like allow. */
int conf_add_limit_exempt(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	struct config *conf = base;
	struct conf_cidr *grown;

	(void)offset;
	grown = reallocarray(conf->limit_exempt, conf->nlimit_exempt + (size_t)argc,
	    sizeof *grown);
	if (!grown) {
		conf_error(p, "out of memory");
		return -1;
	}
	conf->limit_exempt = grown;
	for (int i = 0; i < argc; i++) {
		if (conf_parse_cidr(argv[i], &conf->limit_exempt[conf->nlimit_exempt]) < 0) {
			conf_error(p, "limit_exempt: bad network \"%s\" (use 192.0.2.7, "
			    "10.0.0.0/8, fd00::/8)", argv[i]);
			return -1;
		}
		conf->nlimit_exempt++;
	}
	return 0;
}
