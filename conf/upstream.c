/*
 * upstream — the `upstream NAME { … }` block: where mail is forwarded and
 * how (host in plain or next-hop form, TLS mode, AUTH, limits, timeouts,
 * failover codes, sender rules).  Defaults are set when the block opens,
 * checked when it closes.
 */
#include "conf/internal.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/*
 * An upstream's host: a name or an IP address, also in Postfix's next-hop
 * form — [smtp.example.com]:587, [2001:db8::1]:465, smtp.example.com:587 —
 * as mailcow's relay-host form and most guides write it.  The brackets only
 * mean "no MX lookup" to Postfix; relayd never looks up MX for an upstream.
 * A port given here applies unless a `port` line says otherwise.
 */
static int conf_set_host(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	struct conf_upstream *u = base;
	char host[256];
	const char *v = argv[0], *port = NULL;
	size_t len;

	(void)offset, (void)argc;
	if (v[0] == '[') {
		const char *end = strchr(v, ']');
		if (!end || (end[1] && end[1] != ':')) {
			conf_error(p, "%s: bad next hop \"%s\" (use [host]:port)", p->keyword, v);
			return -1;
		}
		len = (size_t)(end - v - 1);
		v++;
		port = end[1] == ':' ? end + 2 : NULL;
	} else {
		const char *colon = strchr(v, ':');
		len = strlen(v);
		if (colon && !strchr(colon + 1, ':')) {	/* host:port; several: an IPv6 address */
			len = (size_t)(colon - v);
			port = colon + 1;
		}
	}
	if (len >= sizeof host) {
		conf_error(p, "%s: bad host name \"%s\"", p->keyword, argv[0]);
		return -1;
	}
	memcpy(host, v, len);
	host[len] = '\0';
	if (!conf_valid_name(host, ".-_:", 253)) {
		conf_error(p, "%s: bad host name \"%s\"", p->keyword, argv[0]);
		return -1;
	}
	if (port && conf_parse_port(port, &u->host_port) < 0) {
		conf_error(p, "%s: bad port in \"%s\" (1..65535)", p->keyword, argv[0]);
		return -1;
	}
	return conf_store_string(p, &u->host, host);
}

static int conf_set_tls(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	static const struct { const char *word; enum conf_tls_mode mode; } modes[] = {
		{ "starttls", CONF_TLS_STARTTLS },
		{ "tls", CONF_TLS_IMPLICIT },
		{ "none", CONF_TLS_NONE },
		{ "may", CONF_TLS_MAY },
	};

	(void)argc;
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		if (strcmp(argv[0], modes[i].word) == 0) {
			*CONF_FIELD(base, offset, enum conf_tls_mode) = modes[i].mode;
			return 0;
		}
	}
	conf_error(p, "%s: \"%s\" is not starttls, tls, may or none", p->keyword, argv[0]);
	return -1;
}


/*
 * failover_on 5.7.1 5.7 …: permanent replies whose enhanced code starts with
 * one of these go to the next upstream of the route instead of bouncing
 * (Gmail's "550 5.7.1 … not authorized" to a direct delivery).
 */
static int valid_code_prefix(const char *c)
{
	int ok = (c[0] == '4' || c[0] == '5') && (c[1] == '\0' || c[1] == '.');
	for (int dots = 0; ok && *++c; )
		ok = isdigit((unsigned char)*c) ? 1 : *c == '.' && ++dots < 3 && c[1] &&
		    c[-1] != '.';
	return ok;
}

static int conf_set_failover_on(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	struct conf_upstream *u = base;
	(void)offset;
	return conf_store_words(p, &u->failover_on, &u->nfailover_on, argc, argv,
	    valid_code_prefix, "an enhanced status code or prefix (5.7.1, 5.7, 4)");
}

static int conf_set_preset(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	if (!conf_find_preset(argv[0])) {
		conf_error(p, "preset: unknown provider \"%s\" (mailgun, mailgun-eu, sendgrid, "
		    "gmail, yandex, mailru)", argv[0]);
		return -1;
	}
	return conf_set_string(p, base, offset, argc, argv);
}

static const struct conf_keyword conf_upstream_keywords[] = {
	{ "preset", conf_set_preset, offsetof(struct conf_upstream, preset), 1, 1, CONF_ONCE },
	{ "host", conf_set_host, offsetof(struct conf_upstream, host), 1, 1, CONF_ONCE },
	{ "port", conf_set_port, offsetof(struct conf_upstream, port), 1, 1, CONF_ONCE },
	{ "tls", conf_set_tls, offsetof(struct conf_upstream, tls), 1, 1, CONF_ONCE },
	{ "verify", conf_set_yes_no, offsetof(struct conf_upstream, verify), 1, 1, CONF_ONCE },
	{ "ca_file", conf_set_path, offsetof(struct conf_upstream, ca_file), 1, 1, CONF_ONCE },
	{ "user", conf_set_string, offsetof(struct conf_upstream, user), 1, 1, CONF_ONCE },
	{ "password_file", conf_set_path, offsetof(struct conf_upstream, password_file), 1, 1,
	    CONF_ONCE },
	{ "max_connections", conf_set_count, offsetof(struct conf_upstream, max_connections),
	    1, 1, CONF_ONCE },
	{ "timeout_connect", conf_set_timeout, offsetof(struct conf_upstream, timeout_connect),
	    1, 1, CONF_ONCE },
	{ "timeout_command", conf_set_timeout, offsetof(struct conf_upstream, timeout_command),
	    1, 1, CONF_ONCE },
	{ "timeout_data", conf_set_timeout, offsetof(struct conf_upstream, timeout_data), 1, 1,
	    CONF_ONCE },
	{ "timeout_idle", conf_set_timeout, offsetof(struct conf_upstream, timeout_idle), 1, 1,
	    CONF_ONCE },
	{ "failover_on", conf_set_failover_on, offsetof(struct conf_upstream, failover_on), 1,
	    CONF_ARGS_MAX, CONF_ONCE },
	{ "null_sender", conf_set_yes_no, offsetof(struct conf_upstream, null_sender), 1, 1,
	    CONF_ONCE },
	{ "envelope_from", conf_set_address, offsetof(struct conf_upstream, envelope_from), 1, 1,
	    CONF_ONCE },
	{ "max_per_hour", conf_set_count, offsetof(struct conf_upstream, max_per_hour), 1, 1,
	    CONF_ONCE },
	{ "max_per_day", conf_set_count, offsetof(struct conf_upstream, max_per_day), 1, 1,
	    CONF_ONCE },
};

_Static_assert(sizeof conf_upstream_keywords / sizeof conf_upstream_keywords[0] <=
    CONF_KEYWORDS_MAX, "raise CONF_KEYWORDS_MAX");

/* What the block does not say, its preset does (the order of lines does not matter). */
static int apply_preset(struct conf_parser *p, struct conf_upstream *u)
{
	const struct conf_preset *pr = u->preset ? conf_find_preset(u->preset) : NULL;

	if (!pr)
		return 0;
	u->spf_include = pr->spf_include;
	if (!u->host && conf_store_string(p, &u->host, pr->host) < 0)
		return -1;
	if (!conf_seen(p, "tls")) {
		u->tls = pr->tls;
		if (!conf_seen(p, "port") && !u->host_port)
			u->port = pr->port;
	}
	if (pr->user && !u->user && conf_store_string(p, &u->user, pr->user) < 0)
		return -1;
	if (!conf_seen(p, "null_sender"))
		u->null_sender = pr->null_sender;
	if (!conf_seen(p, "max_per_day"))
		u->max_per_day = pr->max_per_day;
	if (!u->user || !u->password_file) {
		conf_error(p, "upstream \"%s\": preset %s needs %s", u->name, pr->name,
		    pr->user ? "password_file (the API key)" : "user and password_file (the login)");
		return -1;
	}
	if (pr->sender_is_login && !u->envelope_from && strchr(u->user, '@') &&
	    conf_store_string(p, &u->envelope_from, u->user) < 0)
		return -1;
	return 0;
}

/* At `}`: the block must name a host; the port follows the TLS mode unless given. */
static int conf_close_upstream(struct conf_parser *p, void *base)
{
	return conf_finish_upstream(p, base);
}

int conf_finish_upstream(struct conf_parser *p, struct conf_upstream *u)
{
	if (apply_preset(p, u) < 0)
		return -1;
	if (u->direct) {
		if (u->host || u->user || u->preset) {
			conf_error(p, "upstream direct delivers to each domain's MX hosts: it takes "
			    "no host, user or preset");
			return -1;
		}
		if (!u->port)
			u->port = 25;	/* direct_port, when given, wins at the end of the file */
		return 0;
	}
	if (!u->host) {
		conf_error(p, "upstream \"%s\" has no host", u->name);
		return -1;
	}
	if (!u->user != !u->password_file) {
		conf_error(p, "upstream \"%s\": user and password_file go together", u->name);
		return -1;
	}
	if (u->port == 0)
		u->port = u->host_port ? u->host_port : u->tls == CONF_TLS_IMPLICIT ? 465 :
		    u->tls == CONF_TLS_NONE || u->tls == CONF_TLS_MAY ? 25 : 587;
	return 0;
}

const struct conf_section conf_upstream_section = {
	"upstream", conf_upstream_keywords,
	sizeof conf_upstream_keywords / sizeof conf_upstream_keywords[0],
	conf_close_upstream,
};

struct conf_upstream *conf_new_upstream(struct conf_parser *p, struct config *conf,
    const char *name)
{
	struct conf_upstream *u;

	for (size_t i = 0; i < conf->nupstreams; i++) {
		if (strcmp(conf->upstreams[i].name, name) == 0) {
			conf_error(p, "upstream \"%s\" defined twice (first at line %d)", name,
			    conf->upstreams[i].line);
			return NULL;
		}
	}
	u = reallocarray(conf->upstreams, conf->nupstreams + 1, sizeof *u);
	if (!u) {
		conf_error(p, "out of memory");
		return NULL;
	}
	conf->upstreams = u;
	u = &conf->upstreams[conf->nupstreams++];
	memset(u, 0, sizeof *u);
	u->direct = strcmp(name, "direct") == 0;
	u->tls = u->direct ? CONF_TLS_MAY : CONF_TLS_STARTTLS;	/* MX hosts: opportunistic */
	u->verify = 1;
	u->max_connections = u->direct ? 2 : 4;		/* per destination domain for direct */
	u->timeout_connect = 30;
	u->timeout_command = 5 * 60;
	u->timeout_data = 10 * 60;
	u->timeout_idle = 5;
	u->null_sender = 1;
	u->line = p->line;
	if (conf_store_string(p, &u->name, name) < 0)
		return NULL;
	return u;
}

/* upstream NAME { — NAME is what routes and log lines (`upstream=NAME`) call it. */
int conf_open_upstream(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	struct conf_upstream *u;

	(void)argc, (void)offset;
	if (!conf_valid_name(argv[0], "._-", 64)) {
		conf_error(p, "upstream: bad name \"%s\" (letters, digits, . _ -)", argv[0]);
		return -1;
	}
	if (!(u = conf_new_upstream(p, base, argv[0])))
		return -1;
	conf_enter(p, &conf_upstream_section, u);
	return 0;
}

void conf_free_upstreams(struct config *conf)
{
	for (size_t i = 0; i < conf->nupstreams; i++) {
		struct conf_upstream *u = &conf->upstreams[i];
		free(u->name);
		free(u->host);
		free(u->ca_file);
		free(u->user);
		free(u->password_file);
		free(u->envelope_from);
		free(u->preset);
		for (size_t j = 0; j < u->nfailover_on; j++)
			free(u->failover_on[j]);
		free(u->failover_on);
	}
	free(conf->upstreams);
}
