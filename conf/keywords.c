/*
 * keywords — the keyword tables of relayd.conf (top level and `upstream`
 * blocks), their handlers, the defaults, and the checks that need the whole
 * file.  Adding a keyword is one table row, plus its field in conf.h and its
 * line in relayd.conf.sample.
 */
#include "conf/internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define DEFAULT_QUEUE_DIR	"/var/spool/relayd"
#define DEFAULT_LISTEN		"127.0.0.1:2525"
#define MIN_QUEUE_SIZE		(UINT64_C(1) << 20)

/* Letters, digits and the characters in extra; 1..max bytes. */
int conf_valid_name(const char *s, const char *extra, size_t max)
{
	size_t len = strlen(s);

	if (len == 0 || len > max)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
			return 0;
	return 1;
}

/* 16G, 256M, 1536K or 1000: the largest unit that divides the size exactly. */
static const char *conf_size_text(uint64_t n, char *buf, size_t len)
{
	static const char units[] = "GMK";
	for (int i = 0; i < 3; i++) {
		uint64_t unit = UINT64_C(1) << (10 * (3 - i));
		if (n >= unit && n % unit == 0) {
			snprintf(buf, len, "%llu%c", (unsigned long long)(n / unit), units[i]);
			return buf;
		}
	}
	snprintf(buf, len, "%llu", (unsigned long long)n);
	return buf;
}

int conf_store_string(struct conf_parser *p, char **field, const char *value)
{
	char *copy = strdup(value);

	if (!copy) {
		conf_error(p, "out of memory");
		return -1;
	}
	free(*field);
	*field = copy;
	return 0;
}

int conf_set_string(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	(void)argc;
	if (argv[0][0] == '\0') {
		conf_error(p, "%s: empty value", p->keyword);
		return -1;
	}
	return conf_store_string(p, CONF_FIELD(base, offset, char *), argv[0]);
}

/* user@domain, plain ASCII: postmaster (RFC 5321 §4.5.1), an upstream's envelope_from. */
int conf_set_address(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	const char *at = strchr(argv[0], '@');
	for (const char *c = argv[0]; *c; c++)
		if (*c <= ' ' || *c >= 127 || strchr("<>()[],;:\\\"", *c)) {
			at = NULL;
			break;
		}
	if (!at || at == argv[0] || !at[1] || strchr(at + 1, '@')) {
		conf_error(p, "%s: \"%s\" is not an address like postmaster@example.com",
		    p->keyword, argv[0]);
		return -1;
	}
	return conf_set_string(p, base, offset, argc, argv);
}

/* A file relayd opens later, maybe after chdir("/"): only absolute paths. */
int conf_set_path(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	(void)argc;
	if (argv[0][0] != '/') {
		conf_error(p, "%s: \"%s\" is not an absolute path", p->keyword, argv[0]);
		return -1;
	}
	return conf_store_string(p, CONF_FIELD(base, offset, char *), argv[0]);
}

/* A file that relayd reads at start: kept with its line, for messages about its contents. */
static int conf_set_file(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	struct conf_file *f = CONF_FIELD(base, offset, struct conf_file);
	if (conf_set_path(p, &f->path, 0, argc, argv) < 0)
		return -1;
	f->line = p->line;
	return 0;
}

/* SASL mechanism names (RFC 4422 §3.1): upper-case letters, digits, - and _. */
/* `notify bounce delay resource`: any of them, each once. */
static int conf_set_notify(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	static const struct { const char *name; unsigned bit; } classes[] = {
		{ "bounce", CONF_NOTIFY_BOUNCE },
		{ "delay", CONF_NOTIFY_DELAY },
		{ "resource", CONF_NOTIFY_RESOURCE },
	};
	unsigned *set = CONF_FIELD(base, offset, unsigned);

	for (int i = 0; i < argc; i++) {
		size_t k = 0;
		while (k < sizeof classes / sizeof classes[0] &&
		    strcmp(argv[i], classes[k].name) != 0)
			k++;
		if (k == sizeof classes / sizeof classes[0]) {
			conf_error(p, "notify: unknown class \"%s\" (use bounce, delay, resource)",
			    argv[i]);
			return -1;
		}
		if (*set & classes[k].bit) {
			conf_error(p, "notify: \"%s\" given twice", argv[i]);
			return -1;
		}
		*set |= classes[k].bit;
	}
	return 0;
}

static int conf_set_mechanisms(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	char list[512] = "";
	size_t n = 0;
	for (int i = 0; i < argc; i++) {
		for (char *c = argv[i]; *c; c++)
			*c = (char)toupper((unsigned char)*c);
		if (!conf_valid_name(argv[i], "-_", 20)) {
			conf_error(p, "%s: bad mechanism name \"%s\"", p->keyword, argv[i]);
			return -1;
		}
		int w = snprintf(list + n, sizeof list - n, "%s%s", i ? " " : "", argv[i]);
		if (w < 0 || (size_t)w >= sizeof list - n) {
			conf_error(p, "%s: list too long", p->keyword);
			return -1;
		}
		n += (size_t)w;
	}
	return conf_store_string(p, CONF_FIELD(base, offset, char *), list);
}

/* The name relayd greets with: it lands in SMTP replies and headers, so no blanks. */
static int conf_set_hostname(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	if (!conf_valid_name(argv[0], ".-", 253)) {
		conf_error(p, "%s: bad host name \"%s\"", p->keyword, argv[0]);
		return -1;
	}
	return conf_set_string(p, base, offset, argc, argv);
}

static int conf_set_size(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	uint64_t n;

	(void)argc;
	if (conf_parse_size(argv[0], &n) < 0 || n == 0) {
		conf_error(p, "%s: bad size \"%s\" (use 512, 10K, 50M, 2G)", p->keyword,
		    argv[0]);
		return -1;
	}
	*CONF_FIELD(base, offset, uint64_t) = n;
	return 0;
}

static int conf_set_queue_size(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	if (conf_set_size(p, base, offset, argc, argv) < 0)
		return -1;
	if (*CONF_FIELD(base, offset, uint64_t) < MIN_QUEUE_SIZE) {
		conf_error(p, "%s: %s is less than 1M", p->keyword, argv[0]);
		return -1;
	}
	return 0;
}

int conf_set_count(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	(void)argc;
	if (conf_parse_count(argv[0], CONF_FIELD(base, offset, unsigned)) < 0) {
		conf_error(p, "%s: \"%s\" is not a positive whole number", p->keyword, argv[0]);
		return -1;
	}
	return 0;
}

int conf_set_port(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	(void)argc;
	if (conf_parse_port(argv[0], CONF_FIELD(base, offset, unsigned)) < 0) {
		conf_error(p, "%s: bad port \"%s\" (1..65535)", p->keyword, argv[0]);
		return -1;
	}
	return 0;
}

/* Every duration keyword is a timeout, and a timeout of 0 would drop every client. */
int conf_set_timeout(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	unsigned n;

	(void)argc;
	if (conf_parse_duration(argv[0], &n) < 0 || n == 0) {
		conf_error(p, "%s: bad duration \"%s\" (use 30s, 5m, 4h, 5d; at least 1s)",
		    p->keyword, argv[0]);
		return -1;
	}
	*CONF_FIELD(base, offset, unsigned) = n;
	return 0;
}

int conf_set_yes_no(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	(void)argc;
	if (strcmp(argv[0], "yes") != 0 && strcmp(argv[0], "no") != 0) {
		conf_error(p, "%s: \"%s\" is not yes or no", p->keyword, argv[0]);
		return -1;
	}
	*CONF_FIELD(base, offset, int) = strcmp(argv[0], "yes") == 0;
	return 0;
}

/* log stderr | syslog | /absolute/file */
static int conf_set_log(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	struct config *conf = base;

	(void)argc, (void)offset;
	if (strcmp(argv[0], "stderr") == 0) {
		conf->log_target = CONF_LOG_STDERR;
	} else if (strcmp(argv[0], "syslog") == 0) {
		conf->log_target = CONF_LOG_SYSLOG;
	} else if (argv[0][0] == '/') {
		conf->log_target = CONF_LOG_FILE;
		return conf_store_string(p, &conf->log_file, argv[0]);
	} else {
		conf_error(p, "log: \"%s\" is not stderr, syslog or an absolute file path",
		    argv[0]);
		return -1;
	}
	return 0;
}

/* The words after `listen ADDR:PORT`, in any order, each at most once. */
static const struct { const char *name; size_t offset; } conf_listen_options[] = {
	{ "tls", offsetof(struct conf_listen, tls) },
	{ "proxy", offsetof(struct conf_listen, proxy) },
};

static int conf_add_listen(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	struct config *conf = base;
	struct conf_listen l, *grown;
	const size_t noptions = sizeof conf_listen_options / sizeof conf_listen_options[0];

	(void)offset;
	if (conf_parse_listen(argv[0], &l) < 0) {
		conf_error(p, "listen: bad address \"%s\" (use 127.0.0.1:2525, [::1]:2525 "
		    "or *:25)", argv[0]);
		return -1;
	}
	for (int i = 1; i < argc; i++) {
		size_t k = 0;
		while (k < noptions && strcmp(argv[i], conf_listen_options[k].name) != 0)
			k++;
		if (k == noptions) {
			conf_error(p, "listen: unknown option \"%s\" (use tls, proxy)", argv[i]);
			return -1;
		}
		int *flag = CONF_FIELD(&l, conf_listen_options[k].offset, int);
		if (*flag) {
			conf_error(p, "listen: \"%s\" given twice", argv[i]);
			return -1;
		}
		*flag = 1;
	}
	for (size_t i = 0; i < conf->nlisten; i++) {
		if (strcmp(conf->listen[i].text, l.text) == 0) {
			conf_error(p, "listen: %s given twice", l.text);
			return -1;
		}
	}
	grown = reallocarray(conf->listen, conf->nlisten + 1, sizeof *grown);
	if (!grown) {
		conf_error(p, "out of memory");
		return -1;
	}
	l.line = p->line;
	conf->listen = grown;
	conf->listen[conf->nlisten++] = l;
	return 0;
}

/* `http ADDR:PORT`: where /metrics and the status page are served. */
static int conf_set_http(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	struct config *conf = base;

	(void)offset;
	(void)argc;
	if (conf_parse_listen(argv[0], &conf->http) < 0) {
		conf_error(p, "http: bad address \"%s\" (use 127.0.0.1:8025 or [::1]:8025)",
		    argv[0]);
		return -1;
	}
	conf->http.line = p->line;
	conf->has_http = 1;
	return 0;
}

static int conf_add_allow(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	struct config *conf = base;
	struct conf_cidr *grown;

	(void)offset;
	grown = reallocarray(conf->allow, conf->nallow + (size_t)argc, sizeof *grown);
	if (!grown) {
		conf_error(p, "out of memory");
		return -1;
	}
	conf->allow = grown;
	for (int i = 0; i < argc; i++) {
		if (conf_parse_cidr(argv[i], &conf->allow[conf->nallow]) < 0) {
			conf_error(p, "allow: bad network \"%s\" (use 10.0.0.0/8, ::1, "
			    "fd00::/8)", argv[i]);
			return -1;
		}
		conf->nallow++;
	}
	return 0;
}

/* resolver 127.0.0.1, 127.0.0.1:5353, ::1 or [::1]:53: a DNS server for direct delivery. */
static int conf_set_resolver(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	const char *v = argv[0], *port = NULL, *colon = strchr(v, ':');
	char addr[64];
	size_t len = strlen(v);
	unsigned char bin[16];
	unsigned n;
	int ok = 1;

	if (v[0] == '[') {
		const char *end = strchr(v, ']');
		ok = end && (end[1] == '\0' || end[1] == ':');
		len = ok ? (size_t)(end - v - 1) : 0;
		v++;
		port = ok && end[1] == ':' ? end + 2 : NULL;
	} else if (colon && colon == strrchr(v, ':')) {	/* one colon: IPv4:port */
		len = (size_t)(colon - v);
		port = colon + 1;
	}
	if (ok && len > 0 && len < sizeof addr) {
		memcpy(addr, v, len);
		addr[len] = '\0';
		ok = inet_pton(AF_INET, addr, bin) == 1 || inet_pton(AF_INET6, addr, bin) == 1;
	} else {
		ok = 0;
	}
	if (!ok || (port && conf_parse_port(port, &n) < 0)) {
		conf_error(p, "%s: \"%s\" is not an address[:port] (127.0.0.1:5353, [::1]:53)",
		    p->keyword, argv[0]);
		return -1;
	}
	return conf_set_string(p, base, offset, argc, argv);
}

int conf_store_words(struct conf_parser *p, char ***list, size_t *n, int argc, char **argv,
    int (*valid)(const char *), const char *what)
{
	if (!(*list = calloc((size_t)argc, sizeof **list))) {
		conf_error(p, "out of memory");
		return -1;
	}
	for (int i = 0; i < argc; i++) {
		if (!valid(argv[i])) {
			conf_error(p, "%s: \"%s\" is not %s", p->keyword, argv[i], what);
			return -1;
		}
		if (conf_store_string(p, &(*list)[*n], argv[i]) < 0)
			return -1;
		(*n)++;
	}
	return 0;
}

static int valid_zone(const char *s)
{
	return conf_valid_name(s, ".-_", 200) && strchr(s, '.');
}

/* dnsbl zen.spamhaus.org bl.spamcop.net …: the lists relayctl doctor looks the IP up in. */
static int conf_set_dnsbl(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	struct config *conf = base;
	(void)offset;
	return conf_store_words(p, &conf->dnsbl, &conf->ndnsbl, argc, argv, valid_zone,
	    "a DNS zone");
}

static const struct conf_keyword conf_top_keywords[] = {
	{ "hostname", conf_set_hostname, offsetof(struct config, hostname), 1, 1, CONF_ONCE },
	{ "queue", conf_set_string, offsetof(struct config, queue_dir), 1, 1, CONF_ONCE },
	{ "queue_map_size", conf_set_queue_size, offsetof(struct config, queue_map_size), 1, 1,
	    CONF_ONCE },
	{ "queue_max_size", conf_set_queue_size, offsetof(struct config, queue_max_size), 1, 1,
	    CONF_ONCE },
	{ "log", conf_set_log, offsetof(struct config, log_target), 1, 1, CONF_ONCE },
	{ "listen", conf_add_listen, offsetof(struct config, listen), 1, 3, CONF_MANY },
	{ "allow", conf_add_allow, offsetof(struct config, allow), 1, CONF_ARGS_MAX, CONF_MANY },
	{ "max_message_size", conf_set_size, offsetof(struct config, max_message_size), 1, 1,
	    CONF_ONCE },
	{ "max_recipients", conf_set_count, offsetof(struct config, max_recipients), 1, 1,
	    CONF_ONCE },
	{ "max_clients", conf_set_count, offsetof(struct config, max_clients), 1, 1, CONF_ONCE },
	{ "max_errors", conf_set_count, offsetof(struct config, max_errors), 1, 1, CONF_ONCE },
	{ "timeout_idle", conf_set_timeout, offsetof(struct config, timeout_idle), 1, 1,
	    CONF_ONCE },
	{ "timeout_command", conf_set_timeout, offsetof(struct config, timeout_command), 1, 1,
	    CONF_ONCE },
	{ "timeout_data", conf_set_timeout, offsetof(struct config, timeout_data), 1, 1,
	    CONF_ONCE },
	{ "user", conf_set_string, offsetof(struct config, user), 1, 1, CONF_ONCE },
	{ "pid_file", conf_set_path, offsetof(struct config, pid_file), 1, 1, CONF_ONCE },
	{ "control", conf_set_path, offsetof(struct config, control), 1, 1, CONF_ONCE },
	{ "http", conf_set_http, offsetof(struct config, http), 1, 1, CONF_ONCE },
	{ "postmaster", conf_set_address, offsetof(struct config, postmaster), 1, 1, CONF_ONCE },
	{ "notify", conf_set_notify, offsetof(struct config, notify), 1, 3, CONF_ONCE },
	{ "queue_warn", conf_set_count, offsetof(struct config, queue_warn), 1, 1, CONF_ONCE },
	{ "tls_cert", conf_set_file, offsetof(struct config, tls_cert), 1, 1, CONF_ONCE },
	{ "tls_key", conf_set_file, offsetof(struct config, tls_key), 1, 1, CONF_ONCE },
	{ "auth_sasldb", conf_set_file, offsetof(struct config, auth_sasldb), 1, 1, CONF_ONCE },
	{ "auth_saslauthd", conf_set_file, offsetof(struct config, auth_saslauthd), 1, 1,
	    CONF_ONCE },
	{ "auth_mechanisms", conf_set_mechanisms, offsetof(struct config, auth_mechanisms), 1,
	    CONF_ARGS_MAX, CONF_ONCE },
	{ "auth_require_tls", conf_set_yes_no, offsetof(struct config, auth_require_tls), 1, 1,
	    CONF_ONCE },
	{ "auth_max_failures", conf_set_count, offsetof(struct config, auth_max_failures), 1, 1,
	    CONF_ONCE },
	{ "auth_timeout", conf_set_timeout, offsetof(struct config, auth_timeout), 1, 1,
	    CONF_ONCE },
	{ "route", conf_add_route, offsetof(struct config, routes), 2, CONF_ARGS_MAX, CONF_MANY },
	{ "route_sender", conf_add_route, offsetof(struct config, routes), 2, CONF_ARGS_MAX,
	    CONF_MANY },
	{ "retry_min", conf_set_timeout, offsetof(struct config, retry_min), 1, 1, CONF_ONCE },
	{ "retry_max", conf_set_timeout, offsetof(struct config, retry_max), 1, 1, CONF_ONCE },
	{ "queue_lifetime", conf_set_timeout, offsetof(struct config, queue_lifetime), 1, 1,
	    CONF_ONCE },
	{ "soft_bounce", conf_set_yes_no, offsetof(struct config, soft_bounce), 1, 1,
	    CONF_ONCE },
	{ "delay_warning", conf_set_timeout, offsetof(struct config, delay_warning), 1, 1,
	    CONF_ONCE },
	{ "upstream", conf_open_upstream, offsetof(struct config, upstreams), 1, 1, CONF_BLOCK },
	{ "routes_file", conf_set_path, offsetof(struct config, routes_file), 1, 1, CONF_ONCE },
	{ "resolver", conf_set_resolver, offsetof(struct config, resolver), 1, 1, CONF_ONCE },
	{ "direct_port", conf_set_port, offsetof(struct config, direct_port), 1, 1, CONF_ONCE },
	{ "hints_file", conf_set_path, offsetof(struct config, hints_file), 1, 1, CONF_ONCE },
	{ "dnsbl", conf_set_dnsbl, offsetof(struct config, dnsbl), 1, CONF_ARGS_MAX, CONF_ONCE },
	{ "deny_sender", conf_add_deny_sender, offsetof(struct config, deny_sender), 1,
	    CONF_ARGS_MAX, CONF_MANY },
	{ "deny_sender_file", conf_set_path, offsetof(struct config, deny_sender_file), 1, 1,
	    CONF_ONCE },
	{ "sender_login", conf_add_sender_login, offsetof(struct config, sender_login), 2,
	    CONF_ARGS_MAX, CONF_MANY },
	{ "sender_login_file", conf_set_path, offsetof(struct config, sender_login_file), 1, 1,
	    CONF_ONCE },
	{ "sender_login_strict", conf_set_yes_no, offsetof(struct config, sender_login_strict), 1,
	    1, CONF_ONCE },
	{ "limit_user", conf_set_rate, offsetof(struct config, limit_user), 1, 1, CONF_ONCE },
	{ "limit_client", conf_set_rate, offsetof(struct config, limit_client), 1, 1, CONF_ONCE },
	{ "limit_rcpt", conf_set_rate, offsetof(struct config, limit_rcpt), 1, 1, CONF_ONCE },
	{ "max_connections_per_client", conf_set_count,
	    offsetof(struct config, max_connections_per_client), 1, 1, CONF_ONCE },
	{ "limit_exempt", conf_add_limit_exempt, offsetof(struct config, limit_exempt), 1,
	    CONF_ARGS_MAX, CONF_MANY },
};

_Static_assert(sizeof conf_top_keywords / sizeof conf_top_keywords[0] <= CONF_KEYWORDS_MAX,
    "raise CONF_KEYWORDS_MAX");

struct config *conf_new(void)
{
	struct config *conf = calloc(1, sizeof *conf);

	if (!conf)
		return NULL;
	conf->queue_map_size = UINT64_C(256) << 20;
	conf->queue_max_size = UINT64_C(16) << 30;
	conf->log_target = CONF_LOG_STDERR;
	conf->max_message_size = UINT64_C(50) << 20;
	conf->max_recipients = 1000;
	conf->max_clients = 1000;
	conf->max_errors = 20;
	conf->timeout_idle = 5 * 60;
	conf->timeout_command = 60;
	conf->timeout_data = 60 * 60;
	conf->auth_require_tls = 1;
	conf->auth_max_failures = 3;
	conf->auth_timeout = 30;
	conf->retry_min = 5 * 60;
	conf->retry_max = 60 * 60;
	conf->queue_lifetime = 5 * 24 * 60 * 60;
	return conf;
}

/* TLS and AUTH settings that only make sense together. */
static int conf_check_tls_auth(struct conf_parser *p, struct config *conf)
{
	int has_auth = conf->auth_sasldb.path || conf->auth_saslauthd.path;

	if (!conf->tls_cert.path != !conf->tls_key.path) {
		p->line = conf->tls_cert.path ? conf->tls_cert.line : conf->tls_key.line;
		conf_error(p, "%s go together: give both",
		    conf->tls_cert.path ? "tls_cert and tls_key" : "tls_key and tls_cert");
		return -1;
	}
	for (size_t i = 0; i < conf->nlisten; i++) {
		if (conf->listen[i].tls && !conf->tls_cert.path) {
			p->line = conf->listen[i].line;
			conf_error(p, "listen %s tls: needs tls_cert and tls_key", conf->listen[i].text);
			return -1;
		}
	}
	if (has_auth && conf->auth_require_tls && !conf->tls_cert.path) {
		p->line = conf->auth_sasldb.path ? conf->auth_sasldb.line : conf->auth_saslauthd.line;
		conf_error(p, "AUTH needs TLS (auth_require_tls yes) but there is no tls_cert");
		return -1;
	}
	return 0;
}

/* At end of file: the defaults that are not constants, and checks across keywords. */
static int conf_close_top(struct conf_parser *p, void *base)
{
	struct config *conf = base;

	if (!conf->hostname) {
		char name[256] = "";
		if (gethostname(name, sizeof name - 1) < 0 || name[0] == '\0')
			strcpy(name, "localhost");
		if (conf_store_string(p, &conf->hostname, name) < 0)
			return -1;
	}
	if (!conf->queue_dir && conf_store_string(p, &conf->queue_dir, DEFAULT_QUEUE_DIR) < 0)
		return -1;
	if (!conf->postmaster) {
		char addr[300];
		snprintf(addr, sizeof addr, "postmaster@%s", conf->hostname);
		if (conf_store_string(p, &conf->postmaster, addr) < 0)
			return -1;
	}
	if (conf->nlisten == 0) {
		char def[] = DEFAULT_LISTEN, *argv[] = { def };
		if (conf_add_listen(p, conf, 0, 1, argv) < 0)
			return -1;
	}
	if (!conf->auth_mechanisms && conf_store_string(p, &conf->auth_mechanisms,
	    "PLAIN LOGIN") < 0)
		return -1;
	if (conf_check_tls_auth(p, conf) < 0 || conf_read_hints_file(p, conf) < 0 ||
	    conf_read_routes_file(p, conf) < 0 ||
	    conf_check_routes(p, conf) < 0 || conf_finish_sender_rules(p, conf) < 0)
		return -1;
	for (size_t i = 0; i < conf->nupstreams; i++)
		if (conf->upstreams[i].direct && conf->direct_port)
			conf->upstreams[i].port = conf->direct_port;
	if (conf->retry_max < conf->retry_min) {
		p->line = conf_seen(p, "retry_max") ? conf_seen(p, "retry_max") :
		    conf_seen(p, "retry_min");
		conf_error(p, "retry_max %us is shorter than retry_min %us", conf->retry_max,
		    conf->retry_min);
		return -1;
	}
	if (conf->queue_max_size < conf->queue_map_size) {
		char max[32], map[32];
		int line = conf_seen(p, "queue_max_size");
		p->line = line ? line : conf_seen(p, "queue_map_size");
		conf_error(p, "queue_max_size %s is smaller than queue_map_size %s",
		    conf_size_text(conf->queue_max_size, max, sizeof max),
		    conf_size_text(conf->queue_map_size, map, sizeof map));
		return -1;
	}
	return 0;
}

const struct conf_section conf_top_section = {
	NULL, conf_top_keywords, sizeof conf_top_keywords / sizeof conf_top_keywords[0],
	conf_close_top,
};
