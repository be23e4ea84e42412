/*
 * test_conf — relayd.conf, one table row per rule: durations, sizes, networks,
 * listen addresses, the statement grammar, every keyword, every kind of error
 * with its "NAME:LINE:" place, and the two config files shipped in the tree.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "conf/internal.h"
#include "tests/unit/check.h"
#include "tests/unit/conf_helpers.h"

#define NROWS(a) (sizeof (a) / sizeof (a)[0])

static void test_duration(void)
{
	static const struct { const char *s; int ok; unsigned want; } rows[] = {
		{ "30s", 0, 30 },
		{ "5m", 0, 300 },
		{ "4h", 0, 14400 },
		{ "5d", 0, 432000 },
		{ "45", 0, 45 },
		{ "0", 0, 0 },
		{ "007s", 0, 7 },
		{ "4294967295", 0, UINT_MAX },
		{ "49710d", 0, 4294944000u },
		{ "4294967296", -1, 0 },
		{ "49711d", -1, 0 },
		{ "99999999999999999999999s", -1, 0 },
		{ "", -1, 0 },
		{ "s", -1, 0 },
		{ "-5s", -1, 0 },
		{ "+5", -1, 0 },
		{ " 5", -1, 0 },
		{ "5 ", -1, 0 },
		{ "5x", -1, 0 },
		{ "5ms", -1, 0 },
		{ "5M", -1, 0 },
		{ "1.5h", -1, 0 },
		{ "0x10", -1, 0 },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		unsigned got = 12345;
		int r = conf_parse_duration(rows[i].s, &got);
		if (r != rows[i].ok)
			fprintf(stderr, "  duration \"%s\": %d\n", rows[i].s, r);
		CHECK(r == rows[i].ok);
		CHECK(got == (r == 0 ? rows[i].want : 12345));
	}
}

static void test_size(void)
{
	static const struct { const char *s; int ok; uint64_t want; } rows[] = {
		{ "512", 0, 512 },
		{ "0", 0, 0 },
		{ "10K", 0, 10240 },
		{ "10k", 0, 10240 },
		{ "50M", 0, 52428800 },
		{ "50m", 0, 52428800 },
		{ "2G", 0, UINT64_C(2147483648) },
		{ "16g", 0, UINT64_C(17179869184) },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "17179869183G", 0, UINT64_C(17179869183) << 30 },
		{ "18446744073709551616", -1, 0 },
		{ "17179869184G", -1, 0 },
		{ "", -1, 0 },
		{ "K", -1, 0 },
		{ "-1", -1, 0 },
		{ "+1", -1, 0 },
		{ "1T", -1, 0 },
		{ "1KB", -1, 0 },
		{ "1.5M", -1, 0 },
		{ " 1", -1, 0 },
		{ "1 ", -1, 0 },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		uint64_t got = 12345;
		int r = conf_parse_size(rows[i].s, &got);
		if (r != rows[i].ok)
			fprintf(stderr, "  size \"%s\": %d\n", rows[i].s, r);
		CHECK(r == rows[i].ok);
		CHECK(got == (r == 0 ? rows[i].want : 12345));
	}
}

static void test_cidr(void)
{
	static const struct {
		const char *s;
		int ok, family;
		unsigned prefix;
		const char *addr;
	} rows[] = {
		{ "10.0.0.0/8", 0, AF_INET, 8, "10.0.0.0" },
		{ "10.1.2.3/8", 0, AF_INET, 8, "10.0.0.0" },
		{ "192.168.1.7", 0, AF_INET, 32, "192.168.1.7" },
		{ "192.168.1.255/25", 0, AF_INET, 25, "192.168.1.128" },
		{ "127.0.0.1/31", 0, AF_INET, 31, "127.0.0.0" },
		{ "127.0.0.0/8", 0, AF_INET, 8, "127.0.0.0" },
		{ "0.0.0.0/0", 0, AF_INET, 0, "0.0.0.0" },
		{ "8.8.8.8/0", 0, AF_INET, 0, "0.0.0.0" },
		{ "::1", 0, AF_INET6, 128, "::1" },
		{ "fd00::/8", 0, AF_INET6, 8, "fd00::" },
		{ "fdab:cd::1/12", 0, AF_INET6, 12, "fda0::" },
		{ "2001:db8:ffff::1/33", 0, AF_INET6, 33, "2001:db8:8000::" },
		{ "::/0", 0, AF_INET6, 0, "::" },
		{ "::ffff:10.1.2.3/104", 0, AF_INET6, 104, "::ffff:10.0.0.0" },
		{ "10.0.0.0/33", -1, 0, 0, NULL },
		{ "2001:db8::1/129", -1, 0, 0, NULL },
		{ "10.0.0.0/", -1, 0, 0, NULL },
		{ "10.0.0.0/-1", -1, 0, 0, NULL },
		{ "10.0.0.0/+8", -1, 0, 0, NULL },
		{ "10.0.0.0/8x", -1, 0, 0, NULL },
		{ "10.0.0.0/8/8", -1, 0, 0, NULL },
		{ "10.0.0.0/99999999999999999999999", -1, 0, 0, NULL },
		{ "10/8", -1, 0, 0, NULL },
		{ "10.0.0.256", -1, 0, 0, NULL },
		{ "/8", -1, 0, 0, NULL },
		{ "", -1, 0, 0, NULL },
		{ "[::1]", -1, 0, 0, NULL },
		{ "fe80::1%eth0", -1, 0, 0, NULL },
		{ "localhost", -1, 0, 0, NULL },
		{ " 10.0.0.0/8", -1, 0, 0, NULL },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		struct conf_cidr net;
		char shown[INET6_ADDRSTRLEN] = "";
		int r = conf_parse_cidr(rows[i].s, &net);
		if (r != rows[i].ok)
			fprintf(stderr, "  cidr \"%s\": %d\n", rows[i].s, r);
		CHECK(r == rows[i].ok);
		if (r != 0 || rows[i].ok != 0)
			continue;
		CHECK(net.family == rows[i].family);
		CHECK(net.prefix == rows[i].prefix);
		inet_ntop(net.family, net.addr, shown, sizeof shown);
		CHECK_STR(shown, rows[i].addr);
	}
}

static void test_listen(void)
{
	static const struct {
		const char *s;
		int ok, family;
		unsigned port;
		const char *text;
	} rows[] = {
		{ "127.0.0.1:2525", 0, AF_INET, 2525, "127.0.0.1:2525" },
		{ "[::1]:2525", 0, AF_INET6, 2525, "[::1]:2525" },
		{ "*:25", 0, AF_INET, 25, "0.0.0.0:25" },
		{ "[::]:25", 0, AF_INET6, 25, "[::]:25" },
		{ "0.0.0.0:65535", 0, AF_INET, 65535, "0.0.0.0:65535" },
		{ "192.0.2.1:1", 0, AF_INET, 1, "192.0.2.1:1" },
		{ "[2001:DB8:0::1]:587", 0, AF_INET6, 587, "[2001:db8::1]:587" },
		{ "127.0.0.1", -1, 0, 0, NULL },
		{ "127.0.0.1:", -1, 0, 0, NULL },
		{ "127.0.0.1:0", -1, 0, 0, NULL },
		{ "127.0.0.1:65536", -1, 0, 0, NULL },
		{ "127.0.0.1:99999999999999999999", -1, 0, 0, NULL },
		{ "127.0.0.1:25x", -1, 0, 0, NULL },
		{ "127.0.0.1:+25", -1, 0, 0, NULL },
		{ "127.0.0.1:-1", -1, 0, 0, NULL },
		{ "::1:25", -1, 0, 0, NULL },
		{ "[::1]", -1, 0, 0, NULL },
		{ "[::1]25", -1, 0, 0, NULL },
		{ "[::1:25", -1, 0, 0, NULL },
		{ "[]:25", -1, 0, 0, NULL },
		{ "[*]:25", -1, 0, 0, NULL },
		{ "[127.0.0.1]:25", -1, 0, 0, NULL },
		{ "localhost:25", -1, 0, 0, NULL },
		{ ":25", -1, 0, 0, NULL },
		{ "", -1, 0, 0, NULL },
		{ "2525", -1, 0, 0, NULL },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		struct conf_listen l;
		int r = conf_parse_listen(rows[i].s, &l);
		if (r != rows[i].ok)
			fprintf(stderr, "  listen \"%s\": %d\n", rows[i].s, r);
		CHECK(r == rows[i].ok);
		if (r != 0 || rows[i].ok != 0)
			continue;
		CHECK(l.addr.ss_family == rows[i].family);
		CHECK_STR(l.text, rows[i].text);
		if (l.addr.ss_family == AF_INET) {
			CHECK(l.addrlen == sizeof(struct sockaddr_in));
			CHECK(ntohs(((struct sockaddr_in *)&l.addr)->sin_port) == rows[i].port);
		} else {
			CHECK(l.addrlen == sizeof(struct sockaddr_in6));
			CHECK(ntohs(((struct sockaddr_in6 *)&l.addr)->sin6_port) == rows[i].port);
		}
	}
}

static void test_defaults(void)
{
	char err[256];
	struct config *c = conf_parse("t", "", err, sizeof err);

	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_STR(c->path, "t");
	CHECK(c->hostname && c->hostname[0] != '\0');
	CHECK_STR(c->queue_dir, "/var/spool/relayd");
	CHECK(c->queue_map_size == UINT64_C(256) << 20);
	CHECK(c->queue_max_size == UINT64_C(16) << 30);
	CHECK(c->log_target == CONF_LOG_STDERR);
	CHECK(c->log_file == NULL);
	CHECK(c->nlisten == 1);
	CHECK_STR(c->listen[0].text, "127.0.0.1:2525");
	CHECK(c->nallow == 0 && c->allow == NULL);
	CHECK(c->max_message_size == UINT64_C(50) << 20);
	CHECK(c->max_recipients == 1000);
	CHECK(c->max_clients == 1000);
	CHECK(c->max_errors == 20);
	CHECK(c->timeout_idle == 300);
	CHECK(c->timeout_command == 60);
	CHECK(c->timeout_data == 3600);
	CHECK(c->postmaster && strncmp(c->postmaster, "postmaster@", 11) == 0 &&
	    strcmp(c->postmaster + 11, c->hostname) == 0);
	CHECK(c->notify == 0 && c->queue_warn == 0 && !c->soft_bounce);
	CHECK(c->user == NULL);
	CHECK(c->nupstreams == 0);
	conf_free(c);
	conf_free(NULL);
}

static void test_every_keyword(void)
{
	static const char text[] =
	    "# every keyword\n"
	    "hostname relay.example.com\n"
	    "queue /srv/relayd/queue\n"
	    "queue_map_size 1G\n"
	    "queue_max_size 64G\n"
	    "log /var/log/relayd.log\n"
	    "listen 127.0.0.1:2525\n"
	    "listen [::1]:2525 proxy  # and IPv6, behind HAProxy\n"
	    "allow 10.0.0.0/8 ::1\n"
	    "allow 192.168.1.7\n"
	    "max_message_size 20M\n"
	    "max_recipients 50\n"
	    "max_clients 200\n"
	    "max_errors 5\n"
	    "timeout_idle 2m\n"
	    "timeout_command 30s\n"
	    "timeout_data 1h\n"
	    "user relayd\n"
	    "postmaster admin@example.com\n"
	    "\n"
	    "upstream mailgun {\n"
	    "\thost smtp.mailgun.org\n"
	    "\tport 2525\n"
	    "\ttls tls\n"
	    "\tverify no\n"
	    "\tca_file /etc/ssl/mailgun.pem\n"
	    "\tuser \"postmaster@mg.example.com\"\n"
	    "\tpassword_file /etc/relayd/mailgun.secret\n"
	    "\tmax_connections 8\n"
	    "\ttimeout_connect 10s\n"
	    "\ttimeout_command 2m\n"
	    "\ttimeout_data 20m\n"
	    "\ttimeout_idle 1s\n"
	    "}\n"
	    "upstream plain {\n"
	    "\thost 192.0.2.25\n"
	    "\ttls none\n"
	    "}\n";
	struct config *c = parse_ok("every", text);

	if (!c)
		return;
	CHECK_STR(c->hostname, "relay.example.com");
	CHECK_STR(c->queue_dir, "/srv/relayd/queue");
	CHECK(c->queue_map_size == UINT64_C(1) << 30);
	CHECK(c->queue_max_size == UINT64_C(64) << 30);
	CHECK(c->log_target == CONF_LOG_FILE);
	CHECK_STR(c->log_file, "/var/log/relayd.log");
	CHECK(c->nlisten == 2);
	if (c->nlisten == 2) {
		CHECK_STR(c->listen[0].text, "127.0.0.1:2525");
		CHECK_STR(c->listen[1].text, "[::1]:2525");
		CHECK(!c->listen[0].proxy && !c->listen[0].tls);
		CHECK(c->listen[1].proxy && !c->listen[1].tls);
	}
	CHECK(c->nallow == 3);
	if (c->nallow == 3) {
		CHECK(c->allow[0].family == AF_INET && c->allow[0].prefix == 8);
		CHECK(c->allow[1].family == AF_INET6 && c->allow[1].prefix == 128);
		CHECK(c->allow[2].family == AF_INET && c->allow[2].prefix == 32);
	}
	CHECK(c->max_message_size == UINT64_C(20) << 20);
	CHECK(c->max_recipients == 50);
	CHECK(c->max_clients == 200);
	CHECK(c->max_errors == 5);
	CHECK(c->timeout_idle == 120);
	CHECK(c->timeout_command == 30);
	CHECK(c->timeout_data == 3600);
	CHECK_STR(c->user, "relayd");
	CHECK_STR(c->postmaster, "admin@example.com");
	CHECK(c->nupstreams == 2);
	if (c->nupstreams == 2) {
		const struct conf_upstream *u = &c->upstreams[0];
		CHECK_STR(u->name, "mailgun");
		CHECK_STR(u->host, "smtp.mailgun.org");
		CHECK(u->port == 2525);
		CHECK(u->tls == CONF_TLS_IMPLICIT);
		CHECK(u->verify == 0);
		CHECK_STR(u->ca_file, "/etc/ssl/mailgun.pem");
		CHECK_STR(u->user, "postmaster@mg.example.com");
		CHECK_STR(u->password_file, "/etc/relayd/mailgun.secret");
		CHECK(u->max_connections == 8);
		CHECK(u->timeout_connect == 10 && u->timeout_command == 120);
		CHECK(u->timeout_data == 1200 && u->timeout_idle == 1);
		CHECK(u->line == 21);
		u = &c->upstreams[1];
		CHECK_STR(u->name, "plain");
		CHECK_STR(u->host, "192.0.2.25");
		CHECK(u->port == 25);
		CHECK(u->tls == CONF_TLS_NONE);
		CHECK(u->verify == 1);
		CHECK(u->ca_file == NULL && u->user == NULL && u->password_file == NULL);
		CHECK(u->max_connections == 4);
		CHECK(u->timeout_connect == 30 && u->timeout_command == 300);
		CHECK(u->timeout_data == 600 && u->timeout_idle == 5);
		CHECK(u->line == 35);
	}
	conf_free(c);
}

static void test_small_values(void)
{
	static const struct { const char *text; int log; unsigned port; } rows[] = {
		{ "log stderr\n", CONF_LOG_STDERR, 0 },
		{ "log syslog\n", CONF_LOG_SYSLOG, 0 },
		{ "log /tmp/x.log\n", CONF_LOG_FILE, 0 },
		{ "upstream u {\n host h\n}\n", CONF_LOG_STDERR, 587 },
		{ "upstream u {\n host h\n tls starttls\n}\n", CONF_LOG_STDERR, 587 },
		{ "upstream u {\n host h\n tls tls\n}\n", CONF_LOG_STDERR, 465 },
		{ "upstream u {\n host h\n tls none\n}\n", CONF_LOG_STDERR, 25 },
		{ "upstream u {\n port 2465\n tls tls\n host h\n}\n", CONF_LOG_STDERR, 2465 },
		{ "upstream u {\n host h\n tls may\n}\n", CONF_LOG_STDERR, 25 },
		/* Postfix next-hop syntax; an explicit port line still wins. */
		{ "upstream u {\n host [h.example]:2587\n}\n", CONF_LOG_STDERR, 2587 },
		{ "upstream u {\n host h.example:2525\n tls tls\n}\n", CONF_LOG_STDERR, 2525 },
		{ "upstream u {\n host [2001:db8::1]:465\n tls tls\n}\n", CONF_LOG_STDERR, 465 },
		{ "upstream u {\n host 2001:db8::1\n}\n", CONF_LOG_STDERR, 587 },
		{ "upstream u {\n port 26\n host [h.example]:2587\n}\n", CONF_LOG_STDERR, 26 },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		char err[256];
		struct config *c = conf_parse("t", rows[i].text, err, sizeof err);
		CHECK(c != NULL);
		if (!c) {
			fprintf(stderr, "  %s\n", err);
			continue;
		}
		CHECK((int)c->log_target == rows[i].log);
		CHECK(c->nupstreams == (rows[i].port ? 1u : 0u));
		if (c->nupstreams == 1)
			CHECK(c->upstreams[0].port == rows[i].port);
		conf_free(c);
	}
}

/* Words, quotes and comments, seen through the value of `user`. */
static void test_words(void)
{
	static const struct { const char *text; const char *user; } rows[] = {
		{ "user relayd", "relayd" },
		{ "user relayd\n", "relayd" },
		{ "user relayd\r\n", "relayd" },
		{ "\t user \t relayd \t\n", "relayd" },
		{ "user relayd # the daemon's user", "relayd" },
		{ "user relayd#comment", "relayd" },
		{ "# user nobody\nuser relayd", "relayd" },
		{ "user \"two words\"", "two words" },
		{ "user \"a # b\"", "a # b" },
		{ "user \"a\\\"b\\\\c\"", "a\"b\\c" },
		{ "user \"x\"# comment", "x" },
		{ "user \"{\"", "{" },
		{ "user \"}\"", "}" },
		{ "user caf\xc3\xa9", "caf\xc3\xa9" },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		char err[256];
		struct config *c = conf_parse("t", rows[i].text, err, sizeof err);
		CHECK(c != NULL);
		if (!c) {
			fprintf(stderr, "  %s\n", err);
			continue;
		}
		CHECK_STR(c->user, rows[i].user);
		conf_free(c);
	}
}

/* What sender_login needs around it: an AUTH backend, which needs TLS. */
#define SENDER_AUTH "tls_cert /c.pem\ntls_key /k.pem\nauth_sasldb /etc/sasldb2\n"

static void test_errors(void)
{
	static const struct { const char *text; const char *err; } rows[] = {
		/* unknown keywords */
		{ "\n# comment\nfoo bar\n", "t:3: unknown keyword \"foo\"" },
		{ "Hostname x\n", "t:1: unknown keyword \"Hostname\"" },
		{ "upstream a {\n hots x\n}\n", "t:2: unknown keyword \"hots\" in upstream block" },
		{ "upstream a {\n host x\n hostname y\n}\n",
		  "t:3: unknown keyword \"hostname\" in upstream block" },
		/* argument counts */
		{ "hostname\n", "t:1: hostname takes 1 argument, not 0" },
		{ "hostname a b\n", "t:1: hostname takes 1 argument, not 2" },
		{ "listen 127.0.0.1:25 127.0.0.1:26\n",
		  "t:1: listen: unknown option \"127.0.0.1:26\" (use tls, proxy)" },
		{ "listen 127.0.0.1:25 proxy PROXY\n",
		  "t:1: listen: unknown option \"PROXY\" (use tls, proxy)" },
		{ "listen 127.0.0.1:465 tls\n", "t:1: listen 127.0.0.1:465 tls: needs tls_cert and tls_key" },
		{ "allow ::1\ntls_cert /c.pem\n", "t:2: tls_cert and tls_key go together: give both" },
		{ "tls_key /k.pem\n", "t:1: tls_key and tls_cert go together: give both" },
		{ "allow ::1\nauth_sasldb /etc/sasldb2\n",
		  "t:2: AUTH needs TLS (auth_require_tls yes) but there is no tls_cert" },
		{ "auth_mechanisms PLAIN LOG/IN\n", "t:1: auth_mechanisms: bad mechanism name \"LOG/IN\"" },
		{ "tls_cert cert.pem\n", "t:1: tls_cert: \"cert.pem\" is not an absolute path" },
		{ "listen 127.0.0.1:25 tls tls\n", "t:1: listen: \"tls\" given twice" },
		{ "listen 127.0.0.1:25 proxy proxy\n", "t:1: listen: \"proxy\" given twice" },
		{ "listen 127.0.0.1:25 tls proxy tls\n", "t:1: listen takes at most 3 arguments, not 4" },
		{ "listen 127.0.0.1:465 proxy tls\n",
		  "t:1: listen 127.0.0.1:465 tls: needs tls_cert and tls_key" },
		{ "allow\n", "t:1: allow needs at least 1 argument" },
		{ "upstream {\n", "t:1: upstream takes 1 argument, not 0" },
		{ "upstream a b {\n", "t:1: upstream takes 1 argument, not 2" },
		{ "upstream a {\n host\n}\n", "t:2: host takes 1 argument, not 0" },
		/* bad values */
		{ "hostname \"a b\"\n", "t:1: hostname: bad host name \"a b\"" },
		{ "hostname \"\"\n", "t:1: hostname: bad host name \"\"" },
		{ "queue \"\"\n", "t:1: queue: empty value" },
		{ "queue_map_size 1K\n", "t:1: queue_map_size: 1K is less than 1M" },
		{ "queue_max_size big\n",
		  "t:1: queue_max_size: bad size \"big\" (use 512, 10K, 50M, 2G)" },
		{ "log relayd.log\n",
		  "t:1: log: \"relayd.log\" is not stderr, syslog or an absolute file path" },
		{ "listen 127.0.0.1\n",
		  "t:1: listen: bad address \"127.0.0.1\" (use 127.0.0.1:2525, [::1]:2525 or *:25)" },
		{ "listen *:25\nlisten 0.0.0.0:25\n", "t:2: listen: 0.0.0.0:25 given twice" },
		{ "allow 10.0.0.0/8 10.0.0.0/33\n",
		  "t:1: allow: bad network \"10.0.0.0/33\" (use 10.0.0.0/8, ::1, fd00::/8)" },
		{ "max_message_size 0\n",
		  "t:1: max_message_size: bad size \"0\" (use 512, 10K, 50M, 2G)" },
		{ "max_message_size 10X\n",
		  "t:1: max_message_size: bad size \"10X\" (use 512, 10K, 50M, 2G)" },
		{ "max_recipients 0\n", "t:1: max_recipients: \"0\" is not a positive whole number" },
		{ "max_clients 4294967296\n",
		  "t:1: max_clients: \"4294967296\" is not a positive whole number" },
		{ "max_errors -1\n", "t:1: max_errors: \"-1\" is not a positive whole number" },
		{ "timeout_idle 0\n",
		  "t:1: timeout_idle: bad duration \"0\" (use 30s, 5m, 4h, 5d; at least 1s)" },
		{ "timeout_command -5s\n",
		  "t:1: timeout_command: bad duration \"-5s\" (use 30s, 5m, 4h, 5d; at least 1s)" },
		{ "timeout_data 5y\n",
		  "t:1: timeout_data: bad duration \"5y\" (use 30s, 5m, 4h, 5d; at least 1s)" },
		{ "user \"\"\n", "t:1: user: empty value" },
		{ "postmaster root\n",
		  "t:1: postmaster: \"root\" is not an address like postmaster@example.com" },
		{ "postmaster <a@b.example>\n",
		  "t:1: postmaster: \"<a@b.example>\" is not an address like postmaster@example.com" },
		{ "upstream \"a b\" {\n", "t:1: upstream: bad name \"a b\" (letters, digits, . _ -)" },
		{ "upstream a {\n host \"smtp example\"\n}\n",
		  "t:2: host: bad host name \"smtp example\"" },
		{ "upstream a {\n host h\n port 0\n}\n", "t:3: port: bad port \"0\" (1..65535)" },
		{ "upstream a {\n host h\n port 65536\n}\n",
		  "t:3: port: bad port \"65536\" (1..65535)" },
		{ "upstream a {\n host h\n tls ssl\n}\n",
		  "t:3: tls: \"ssl\" is not starttls, tls, may or none" },
		{ "upstream a {\n host h\n verify true\n}\n", "t:3: verify: \"true\" is not yes or no" },
		{ "upstream a {\n host h\n ca_file ca.pem\n}\n",
		  "t:3: ca_file: \"ca.pem\" is not an absolute path" },
		{ "upstream a {\n host h\n max_connections 0\n}\n",
		  "t:3: max_connections: \"0\" is not a positive whole number" },
		/* checks across keywords */
		{ "queue_map_size 32G\n", "t:1: queue_max_size 16G is smaller than queue_map_size 32G" },
		{ "queue_max_size 1G\n\nqueue_map_size 2G\n",
		  "t:1: queue_max_size 1G is smaller than queue_map_size 2G" },
		{ "upstream a {\n port 25\n\n}\n", "t:4: upstream \"a\" has no host" },
		{ "upstream a {\n host h\n user u\n}\n",
		  "t:4: upstream \"a\": user and password_file go together" },
		{ "route example..com a\n", "t:1: route: bad domain \"example..com\" (use *, "
		  "example.com or .example.com)" },
		{ "route * a\n", "t:1: route *: no upstream block named \"a\"" },
		{ "upstream a {\n host h\n}\nroute * a\nroute * a\n",
		  "t:5: route * given twice (first at line 4)" },
		{ "route *\n", "t:1: route needs at least 2 arguments" },
		{ "retry_min 2h\n", "t:1: retry_max 3600s is shorter than retry_min 7200s" },
		{ "retry_min 0\n",
		  "t:1: retry_min: bad duration \"0\" (use 30s, 5m, 4h, 5d; at least 1s)" },
		{ "upstream a {\n host h\n password_file /p\n}\n",
		  "t:4: upstream \"a\": user and password_file go together" },
		/* direct, routes_file, resolver */
		{ "upstream direct {\n host h\n}\n", "t:3: upstream direct delivers to each "
		  "domain's MX hosts: it takes no host, user or preset" },
		{ "routes_file /nonexistent/smtproutes\n",
		  "t:1: routes_file /nonexistent/smtproutes: No such file or directory" },
		{ "resolver dns.example\n", "t:1: resolver: \"dns.example\" is not an "
		  "address[:port] (127.0.0.1:5353, [::1]:53)" },
		{ "resolver [::1]:0\n", "t:1: resolver: \"[::1]:0\" is not an "
		  "address[:port] (127.0.0.1:5353, [::1]:53)" },
		/* failover, senders, presets */
		{ "upstream a {\n host h\n failover_on 6.0\n}\n",
		  "t:3: failover_on: \"6.0\" is not an enhanced status code or prefix (5.7.1, 5.7, 4)" },
		{ "upstream a {\n host h\n failover_on 5..1\n}\n",
		  "t:3: failover_on: \"5..1\" is not an enhanced status code or prefix (5.7.1, 5.7, 4)" },
		{ "upstream a {\n host h\n envelope_from nobody\n}\n",
		  "t:3: envelope_from: \"nobody\" is not an address like postmaster@example.com" },
		{ "upstream a {\n host [h\n}\n",
		  "t:2: host: bad next hop \"[h\" (use [host]:port)" },
		{ "upstream a {\n host h:0\n}\n", "t:2: host: bad port in \"h:0\" (1..65535)" },
		{ "route_sender * a\n",
		  "t:1: route_sender: bad sender \"*\" (use user@example.com, example.com or "
		  ".example.com)" },
		{ "route_sender a@ a\n",
		  "t:1: route_sender: bad sender \"a@\" (use user@example.com, example.com or "
		  ".example.com)" },
		{ "route_sender x.org a\n", "t:1: route_sender x.org: no upstream block named \"a\"" },
		{ "upstream a {\n preset hotmail\n}\n",
		  "t:2: preset: unknown provider \"hotmail\" (mailgun, mailgun-eu, sendgrid, gmail, "
		  "yandex, mailru)" },
		{ "upstream a {\n preset gmail\n}\n",
		  "t:3: upstream \"a\": preset gmail needs user and password_file (the login)" },
		{ "upstream a {\n preset sendgrid\n}\n",
		  "t:3: upstream \"a\": preset sendgrid needs password_file (the API key)" },
		/* sender rules (bad lines of their files: test_conf_senders) */
		{ "deny_sender\n", "t:1: deny_sender needs at least 1 argument" },
		{ "deny_sender bob\n", "t:1: deny_sender: \"bob\" is not an address or @domain "
		  "(user@example.com, @example.com; IDNs in A-labels)" },
		{ "deny_sender a@b.example bob@\n", "t:1: deny_sender: \"bob@\" is not an address "
		  "or @domain (user@example.com, @example.com; IDNs in A-labels)" },
		{ "deny_sender @\n", "t:1: deny_sender: \"@\" is not an address or @domain "
		  "(user@example.com, @example.com; IDNs in A-labels)" },
		{ "deny_sender @*\n", "t:1: deny_sender: \"@*\" is not an address or @domain "
		  "(user@example.com, @example.com; IDNs in A-labels)" },
		{ "deny_sender x@*\n", "t:1: deny_sender: \"x@*\" is not an address or @domain "
		  "(user@example.com, @example.com; IDNs in A-labels)" },
		{ "deny_sender @.example.com\n", "t:1: deny_sender: \"@.example.com\" is not an "
		  "address or @domain (user@example.com, @example.com; IDNs in A-labels)" },
		{ "deny_sender example.com\n", "t:1: deny_sender: \"example.com\" is not an "
		  "address or @domain (user@example.com, @example.com; IDNs in A-labels)" },
		{ "deny_sender @пример.рф\n", "t:1: deny_sender: \"@пример.рф\" is not an "
		  "address or @domain (user@example.com, @example.com; IDNs in A-labels)" },
		{ "deny_sender \"a b@example.com\"\n", "t:1: deny_sender: \"a b@example.com\" is "
		  "not an address or @domain (user@example.com, @example.com; IDNs in A-labels)" },
		{ "deny_sender <a@example.com>\n", "t:1: deny_sender: \"<a@example.com>\" is "
		  "not an address or @domain (user@example.com, @example.com; IDNs in A-labels)" },
		{ "deny_sender_file badmailfrom\n",
		  "t:1: deny_sender_file: \"badmailfrom\" is not an absolute path" },
		{ "deny_sender_file /a\ndeny_sender_file /b\n",
		  "t:2: deny_sender_file given twice (first at line 1)" },
		{ "allow ::1\n\ndeny_sender_file /nonexistent/badmailfrom\n",
		  "t:3: deny_sender_file /nonexistent/badmailfrom: No such file or directory" },
		{ SENDER_AUTH "sender_login bob\n", "t:4: sender_login needs at least 2 arguments" },
		{ SENDER_AUTH "sender_login \"b b\" b@example.com\n",
		  "t:4: sender_login: bad user name \"b b\" (no blanks, no ':')" },
		{ SENDER_AUTH "sender_login b:b b@example.com\n",
		  "t:4: sender_login: bad user name \"b:b\" (no blanks, no ':')" },
		{ SENDER_AUTH "sender_login \"\" b@example.com\n",
		  "t:4: sender_login: bad user name \"\" (no blanks, no ':')" },
		{ SENDER_AUTH "sender_login bob b@example.com @\n", "t:4: sender_login: \"@\" is "
		  "not an address or @domain (user@example.com, @example.com; IDNs in A-labels)" },
		{ SENDER_AUTH "sender_login_strict maybe\n",
		  "t:4: sender_login_strict: \"maybe\" is not yes or no" },
		{ SENDER_AUTH "sender_login_strict yes\n", "t:4: sender_login_strict yes without any "
		  "sender_login entry would refuse every logged-in client" },
		{ "allow ::1\nsender_login bob b@example.com\n", "t:2: sender_login rules need an "
		  "AUTH backend (auth_sasldb, auth_saslauthd): without one nobody logs in" },
		{ "allow ::1\nsender_login_strict yes\n", "t:2: sender_login rules need an "
		  "AUTH backend (auth_sasldb, auth_saslauthd): without one nobody logs in" },
		{ SENDER_AUTH "sender_login_file /nonexistent/logins\n",
		  "t:4: sender_login_file /nonexistent/logins: No such file or directory" },
		/* duplicates */
		{ "hostname a\n\nhostname b\n", "t:3: hostname given twice (first at line 1)" },
		{ "log stderr\nlog syslog\n", "t:2: log given twice (first at line 1)" },
		{ "upstream a {\n host x\n host y\n}\n", "t:3: host given twice (first at line 2)" },
		{ "upstream a {\n host x\n}\n\nupstream a {\n host y\n}\n",
		  "t:5: upstream \"a\" defined twice (first at line 1)" },
		/* blocks */
		{ "upstream a {\n host x\n", "t:1: upstream block has no closing }" },
		{ "hostname a\n}\n", "t:2: } without an open block" },
		{ "upstream a {\n host x\n}\n}\n", "t:4: } without an open block" },
		{ "upstream a {\n host x\n} # end\n}\n", "t:4: } without an open block" },
		{ "upstream a {\n host x\n} x\n", "t:3: } must stand alone on its line" },
		{ "upstream a\n{\n", "t:1: upstream needs { at the end of the line" },
		{ "upstream a { host x }\n", "t:1: upstream needs { at the end of the line" },
		{ "upstream a \"{\"\n", "t:1: upstream needs { at the end of the line" },
		{ "{\n", "t:1: { must end the line that names the block" },
		{ "hostname a {\n", "t:1: hostname does not open a block" },
		{ "upstream a {\n host x\n upstream b {\n",
		  "t:3: unknown keyword \"upstream\" in upstream block" },
		/* words */
		{ "hostname \"abc\n", "t:1: unterminated quoted string" },
		{ "hostname \"abc\\\"\n", "t:1: unterminated quoted string" },
		{ "hostname \"a\\n\"\n",
		  "t:1: unknown escape in quoted string (only \\\" and \\\\ are known)" },
		{ "hostname \"a\"b\n", "t:1: text right after a closing quote" },
		{ "hostname a\"b\"\n", "t:1: quote inside a word (quote the whole argument)" },
		{ "hostname a\x01\n", "t:1: control character 0x01" },
		{ "\n\nhostname a\rb\n", "t:3: control character 0x0d" },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		char err[256] = "";
		struct config *c = conf_parse("t", rows[i].text, err, sizeof err);
		CHECK(c == NULL);
		conf_free(c);
		CHECK_STR(err, rows[i].err);
	}
}

/* Limits of a whole line and of the error buffer. */
static void test_limits(void)
{
	static const struct { size_t fill; const char *err; } rows[] = {
		{ 4095 - 5, NULL },		/* "user " + fill = 4095 bytes: the longest line */
		{ 4096 - 5, "t:2: line longer than 4095 bytes" },
		{ 100000, "t:2: line longer than 4095 bytes" },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		size_t len = strlen("# one\nuser ") + rows[i].fill + 2;
		char *text = malloc(len), err[256] = "";
		if (!text)
			return;
		strcpy(text, "# one\nuser ");
		memset(text + strlen(text), 'a', rows[i].fill);
		strcpy(text + len - 2, "\n");
		struct config *c = conf_parse("t", text, err, sizeof err);
		CHECK((c != NULL) == (rows[i].err == NULL));
		if (rows[i].err)
			CHECK_STR(err, rows[i].err);
		else if (c)
			CHECK(strlen(c->user) == rows[i].fill);
		conf_free(c);
		free(text);
	}

	/* A short buffer gets a truncated, terminated message; none at all is fine. */
	char small[8];
	memset(small, 'x', sizeof small);
	CHECK(conf_parse("t", "foo\n", small, sizeof small) == NULL);
	CHECK_STR(small, "t:1: un");
	CHECK(conf_parse("t", "foo\n", NULL, 0) == NULL);
	char tiny[3];
	CHECK(conf_parse("long-name", "foo\n", tiny, sizeof tiny) == NULL);
	CHECK_STR(tiny, "lo");
}

/* A line of text that starts, after blanks, with the word w. */
static int has_statement(const char *text, const char *w)
{
	size_t n = strlen(w);

	for (const char *s = text; s && *s; s = strchr(s, '\n'), s = s ? s + 1 : NULL) {
		s += strspn(s, " \t");
		if (strncmp(s, w, n) == 0 && (s[n] == ' ' || s[n] == '\t'))
			return 1;
	}
	return 0;
}

/*
 * The sample documents every keyword of both tables, and every statement it
 * shows commented out works when uncommented.
 */
/* The sample's files (qmail's smtproutes, …): a temporary file of the same form
 * stands in for each, and its statement for the sample's. */
static const struct { const char *keyword, *content; } sample_files[] = {
	{ "routes_file", "caramail.com:213.186.33.9\n" },
	{ "hints_file", "5.7.1 | * | ask the relay's admin\n" },
	{ "deny_sender_file", "# badmailfrom\nspam@example.net\n@spam.example.net\n" },
	{ "sender_login_file", "alice: alice@example.com @example.net\n" },
};

static void test_sample_uncommented(void)
{
	FILE *f = fopen("relayd.conf.sample", "r");
	char line[4096], err[256];
	char paths[NROWS(sample_files)][40], statements[NROWS(sample_files)][100];

	for (size_t i = 0; i < NROWS(sample_files); i++) {
		const char *content = sample_files[i].content;
		snprintf(paths[i], sizeof paths[i], "/tmp/relayd-sample-XXXXXX");
		int fd = mkstemp(paths[i]);
		CHECK(fd >= 0 && write(fd, content, strlen(content)) == (ssize_t)strlen(content));
		if (fd >= 0)
			close(fd);
		snprintf(statements[i], sizeof statements[i], "%.50s %.40s\n", sample_files[i].keyword,
		    paths[i]);
	}
	char *text = calloc(1, 1 << 16);
	size_t used = 0;

	CHECK(f != NULL && text != NULL);
	if (!f || !text) {
		if (f)
			fclose(f);
		free(text);
		for (size_t i = 0; i < NROWS(sample_files); i++)
			unlink(paths[i]);
		return;
	}
	while (fgets(line, sizeof line, f)) {
		/* "#keyword …", "#\tkeyword …" and "#}" are statements; "# …" is prose. */
		const char *s = line;
		if (line[0] == '#' && line[1] != ' ' && line[1] != '\n' && line[1] != '#') {
			s = line + 1;
		}
		for (size_t i = 0; i < NROWS(sample_files); i++) {
			size_t kwlen = strlen(sample_files[i].keyword);
			if (strncmp(s, sample_files[i].keyword, kwlen) == 0 && s[kwlen] == ' ')
				s = statements[i];
		}
		size_t n = strlen(s);
		if (used + n + 1 >= 1 << 16)
			break;
		memcpy(text + used, s, n);
		used += n;
	}
	fclose(f);
	const struct conf_section *sections[] = { &conf_top_section, &conf_upstream_section };
	for (size_t i = 0; i < NROWS(sections); i++) {
		for (size_t k = 0; k < sections[i]->nkeywords; k++) {
			const char *kw = sections[i]->keywords[k].name;
			if (!has_statement(text, kw))
				fprintf(stderr, "  the sample does not show \"%s\"\n", kw);
			CHECK(has_statement(text, kw));
		}
	}
	struct config *c = conf_parse("relayd.conf.sample", text, err, sizeof err);
	for (size_t i = 0; i < NROWS(sample_files); i++)
		unlink(paths[i]);
	CHECK(c != NULL);
	if (c) {
		CHECK_STR(c->hostname, "relay.example.com");
		CHECK(c->nlisten == 5);
		CHECK(c->nlisten == 5 && c->listen[4].proxy && c->listen[4].tls);
		CHECK(c->nallow == 5);
		CHECK(c->nupstreams == 4);	/* mailgun, backup, direct, the smtproutes relay */
		CHECK(c->nupstreams == 4 && c->upstreams[1].port == 2525 &&
		    strcmp(c->upstreams[1].host, "smtp.backup.example.net") == 0);
		CHECK_STR(c->user, "relayd");
		CHECK(c->nhints == 1 && strcmp(c->hints[0].code, "5.7.1") == 0 &&
		    c->hints[0].words == NULL);
		CHECK(c->ndeny_sender == 4);	/* two in the sample, two in the file */
		CHECK(c->nsender_login == 3);	/* alice, app, mailcow */
		CHECK(c->nsender_login == 3 && strcmp(c->sender_login[0].user, "alice") == 0);
		CHECK(c->sender_login_strict == 0);
		CHECK(c->limit_user.count == 200 && c->limit_user.window == 3600);
		CHECK(c->limit_client.count == 1000 && c->limit_rcpt.count == 2000);
		CHECK(c->max_connections_per_client == 20 && c->nlimit_exempt == 2);
	} else {
		fprintf(stderr, "  %s\n", err);
	}
	conf_free(c);
	free(text);
}

static void test_load(void)
{
	char err[256];
	struct config *c;

	c = conf_load("relayd.conf.sample", err, sizeof err);
	CHECK(c != NULL);
	if (!c)
		fprintf(stderr, "  %s\n", err);
	conf_free(c);

	c = conf_load("conf/relayd.local.conf", err, sizeof err);
	CHECK(c != NULL);
	if (c) {
		CHECK_STR(c->path, "conf/relayd.local.conf");
		CHECK_STR(c->hostname, "relay.localhost");
		CHECK_STR(c->queue_dir, "./var/queue");
		CHECK(c->log_target == CONF_LOG_STDERR);
		CHECK(c->nlisten == 1);
		if (c->nlisten == 1)
			CHECK_STR(c->listen[0].text, "127.0.0.1:2525");
		CHECK(c->nallow == 2);
		if (c->nallow == 2) {
			CHECK(c->allow[0].family == AF_INET && c->allow[0].prefix == 8);
			CHECK(c->allow[1].family == AF_INET6 && c->allow[1].prefix == 128);
		}
		CHECK(c->user == NULL);
	} else {
		fprintf(stderr, "  %s\n", err);
	}
	conf_free(c);

	c = conf_load("tests/unit/no-such.conf", err, sizeof err);
	CHECK(c == NULL);
	CHECK_STR(err, "tests/unit/no-such.conf: No such file or directory");

	c = conf_load("conf", err, sizeof err);
	CHECK(c == NULL);
	CHECK_STR(err, "conf: Is a directory");

	/* A NUL byte is an error of its line, not the silent end of the file. */
	char path[] = "/tmp/test_conf.XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	static const char nul[] = "hostname a\nuser b\0c\nlog stderr\n";
	CHECK(write(fd, nul, sizeof nul - 1) == (ssize_t)(sizeof nul - 1));
	close(fd);
	c = conf_load(path, err, sizeof err);
	CHECK(c == NULL);
	char want[64];
	snprintf(want, sizeof want, "%s:2: control character 0x00", path);
	CHECK_STR(err, want);
	unlink(path);
}

int main(void)
{
	TEST_CASE(test_duration);
	TEST_CASE(test_size);
	TEST_CASE(test_cidr);
	TEST_CASE(test_listen);
	TEST_CASE(test_defaults);
	TEST_CASE(test_every_keyword);
	TEST_CASE(test_small_values);
	TEST_CASE(test_words);
	TEST_CASE(test_errors);
	TEST_CASE(test_limits);
	TEST_CASE(test_load);
	TEST_CASE(test_sample_uncommented);
	return check_exit();
}
