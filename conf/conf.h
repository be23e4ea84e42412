/*
 * conf — relayd.conf parsed into one immutable struct config (DESIGN.md, Configuration).
 * Grammar: `keyword args…` one statement per line, `#` comments, and
 * `upstream NAME { … }` blocks.  Errors read `FILE:LINE: message`.
 * This module opens no sockets and never touches the queue.
 */
#ifndef RELAYD_CONF_H
#define RELAYD_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* One `listen ADDR:PORT [tls] [proxy]` statement, already resolved to a socket address. */
struct conf_listen {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char text[64];			/* "127.0.0.1:2525" or "[::1]:2525", for logs */
	int tls;			/* `tls`: implicit TLS (RFC 8314) */
	int proxy;			/* `proxy`: a PROXY protocol header (HAProxy) comes first */
	int line;
};

/* A file named in the config, with where, for messages about its contents. */
struct conf_file {
	char *path;			/* NULL when not given */
	int line;
};

/* One network of `allow CIDR…`. */
struct conf_cidr {
	int family;			/* AF_INET or AF_INET6 */
	unsigned char addr[16];		/* network address, host bits cleared */
	unsigned prefix;		/* 0..32 or 0..128 */
};

/* starttls: required and verified; tls: implicit (465); may: STARTTLS when offered. */
enum conf_tls_mode { CONF_TLS_STARTTLS, CONF_TLS_IMPLICIT, CONF_TLS_NONE, CONF_TLS_MAY };

/* `notify` classes. */
enum {
	CONF_NOTIFY_BOUNCE = 1 << 0,	/* a copy (headers only) of every failure report */
	CONF_NOTIFY_DELAY = 1 << 1,	/* … and of every delay warning */
	CONF_NOTIFY_RESOURCE = 1 << 2,	/* the queue over queue_warn, the disk over 90 % */
};

/* One `upstream NAME { … }` block: where to forward mail (used by delivery). */
struct conf_upstream {
	char *name;
	int direct;			/* `direct`: each domain's MX hosts, no host of its own */
	int anonymous;			/* made from a routes_file line, named "host:port" */
	char *host;			/* without next-hop brackets or port */
	unsigned host_port;		/* the port of host [name]:port, or 0 */
	unsigned port;			/* default: host's, else 587; 465 with `tls tls`, 25 with
					 * `tls none` or `tls may` */
	enum conf_tls_mode tls;
	int verify;			/* 1: check chain and host name (default) */
	char *ca_file;			/* NULL: the system store */
	char *user;
	char *password_file;
	unsigned max_connections;	/* default 4 */
	/* RFC 5321 §4.5.3.2 client timeouts, seconds. */
	unsigned timeout_connect;	/* TCP connect, default 30 */
	unsigned timeout_command;	/* each reply (greeting, EHLO, MAIL, RCPT…), default 300 */
	unsigned timeout_data;		/* the reply to the final dot, default 600 */
	unsigned timeout_idle;		/* an unused connection is closed after this, default 5 */
	char **failover_on;		/* enhanced codes (prefixes) that go to the next upstream */
	size_t nfailover_on;
	int null_sender;		/* takes MAIL FROM:<> (default 1); 0: bounces skip it */
	char *envelope_from;		/* MAIL FROM for every non-null sender, or NULL */
	char *preset;			/* the provider preset it started from, or NULL */
	const char *spf_include;	/* its preset's SPF include (static), or NULL */
	unsigned max_per_hour;		/* recipients sent per hour, per day; 0: no quota */
	unsigned max_per_day;
	int line;			/* where the block starts, for messages */
};

/*
 * One `route PATTERN UPSTREAM…` (recipient domains) or `route_sender
 * PATTERN UPSTREAM…` (envelope senders): matching mail goes to these, in order.
 */
struct conf_route {
	int sender;			/* 1: route_sender */
	char *file;			/* the routes_file it came from, or NULL: relayd.conf */
	char *pattern;			/* "*", "example.com", ".example.com"; sender: or an address */
	char **names;			/* upstream names as written */
	size_t *upstreams;		/* the same as indices into config.upstreams */
	size_t nupstreams;
	int line;
};

/* One hints_file row: a reply whose code starts with code and whose text has words. */
struct conf_hint {
	char *code;			/* "5.7.1", "5.7"; NULL: any */
	char *words;			/* NULL: any */
	char *hint;
};

/*
 * One entry of a sender rule (`deny_sender`, `sender_login`, or a line of
 * their files): an envelope sender address or a whole domain, in lower case
 * with the domain in A-labels, and where it was written.
 */
struct conf_sender_rule {
	char *address;			/* "user@example.com", or "@example.com" */
	const char *file;		/* the config's deny_sender_file or sender_login_file
					 * it came from, or NULL: relayd.conf */
	int line;
};

/* The envelope senders one SASL login may use (`sender_login USER …` and its file). */
struct conf_sender_login {
	char *user;			/* as first written; compared without regard to case */
	struct conf_sender_rule *senders;	/* sorted by strcmp of address, none twice */
	size_t nsenders;
	const char *file;		/* where the user's first entry is (NULL: relayd.conf) */
	int line;
};

/*
 * A rate limit, `limit_user 100/hour`: at most count events in any window
 * seconds (60 for /minute, 3600 for /hour).  count 0: no limit.
 */
struct conf_rate_limit {
	unsigned count;
	unsigned window;
	int line;
};

enum conf_log_target { CONF_LOG_STDERR, CONF_LOG_SYSLOG, CONF_LOG_FILE };

struct config {
	char *path;			/* the file this came from */
	char *hostname;			/* default: gethostname() */
	char *queue_dir;		/* default /var/spool/relayd */
	uint64_t queue_map_size;	/* initial LMDB map size, default 256M */
	uint64_t queue_max_size;	/* the map never grows past this, default 16G */
	enum conf_log_target log_target;
	char *log_file;			/* with CONF_LOG_FILE */
	struct conf_listen *listen;
	size_t nlisten;
	struct conf_cidr *allow;	/* networks that may relay without AUTH; default none */
	size_t nallow;
	uint64_t max_message_size;	/* default 50M */
	unsigned max_recipients;	/* default 1000 */
	unsigned max_clients;		/* concurrent sessions, default 1000 */
	unsigned max_errors;		/* errors before a session is dropped, default 20 */
	unsigned timeout_idle;		/* seconds of silence allowed, default 300 */
	unsigned timeout_command;	/* seconds to send one whole command line, default 60 */
	unsigned timeout_data;		/* seconds for the whole DATA phase, default 1800 */
	char *user;			/* drop privileges to this user after binding */
	char *pid_file;			/* written at start (after daemonizing), or NULL */
	char *control;			/* relayctl's socket; NULL: QUEUE_DIR/control */
	struct conf_listen http;	/* `http ADDR:PORT`: /metrics and the status page */
	int has_http;			/* 0: off (the default) */
	struct conf_file tls_cert;	/* PEM certificate (chain); STARTTLS offered when set */
	struct conf_file tls_key;	/* PEM private key */
	struct conf_file auth_sasldb;	/* Cyrus sasldb file of users */
	struct conf_file auth_saslauthd;	/* saslauthd's socket directory */
	char *auth_mechanisms;		/* space-separated, default "PLAIN LOGIN" */
	int auth_require_tls;		/* AUTH only after TLS (default 1) */
	unsigned auth_max_failures;	/* failed AUTHs before the session is dropped, default 3 */
	unsigned auth_timeout;		/* seconds to wait for Cyrus/saslauthd, default 30 */
	char *postmaster;		/* where RCPT TO:<postmaster> and relayd's notices go;
					 * default postmaster@HOSTNAME */
	unsigned notify;		/* CONF_NOTIFY_*: what the postmaster is told besides
					 * double bounces (Postfix's notify_classes) */
	unsigned queue_warn;		/* notify resource: more queued messages than this */
	struct conf_upstream *upstreams;
	size_t nupstreams;
	struct conf_route *routes;
	size_t nroutes;
	unsigned retry_min;		/* first retry after this many seconds, default 300 */
	unsigned retry_max;		/* retries at most this far apart, default 3600 */
	unsigned queue_lifetime;	/* a recipient expires after this, default 5 days */
	unsigned delay_warning;		/* warn the sender after this; 0 (default): never */
	int soft_bounce;		/* permanent failures are deferred instead (Postfix's) */
	char *routes_file;		/* qmail smtproutes file, or NULL */
	char *resolver;			/* DNS server for direct delivery, "addr[:port]"; NULL:
					 * /etc/resolv.conf */
	unsigned direct_port;		/* port of MX hosts for direct delivery, default 25 */
	char *hints_file;		/* the site's own hints, or NULL */
	char **dnsbl;			/* blocklist zones relayctl doctor asks; NULL: Spamhaus ZEN */
	size_t ndnsbl;
	struct conf_hint *hints;
	size_t nhints;
	/* Sender rules (auth/sender.c applies them at MAIL FROM). */
	struct conf_sender_rule *deny_sender;	/* refused senders, sorted by strcmp of
					 * address, none twice */
	size_t ndeny_sender;
	char *deny_sender_file;		/* qmail badmailfrom file, or NULL */
	struct conf_sender_login *sender_login;	/* sorted by user (strcasecmp), one per user */
	size_t nsender_login;
	char *sender_login_file;	/* lines "user: address @domain …", or NULL */
	int sender_login_strict;	/* 1: a login without an entry may use no sender */
	/* Rate limits (auth/limits.c applies them at connect, MAIL FROM and RCPT TO). */
	struct conf_rate_limit limit_user;	/* messages per login */
	struct conf_rate_limit limit_client;	/* messages per client address */
	struct conf_rate_limit limit_rcpt;	/* recipients per login, else per address */
	unsigned max_connections_per_client;	/* concurrent sessions per address; 0: any */
	struct conf_cidr *limit_exempt;	/* addresses free of the per-address limits */
	size_t nlimit_exempt;
};

/*
 * Parse FILE.  On success returns a config the caller frees with conf_free();
 * on failure returns NULL and writes "FILE:LINE: message" into err.
 */
struct config *conf_load(const char *path, char *err, size_t errlen);
/* The same from a string; name is used in messages in place of a path. */
struct config *conf_parse(const char *name, const char *text, char *err, size_t errlen);
void conf_free(struct config *conf);

/* "30s 5m 4h 5d" → seconds; a bare number is seconds.  0 on success, -1 on error. */
int conf_parse_duration(const char *s, unsigned *seconds);
/* "512 10K 50M 2G" → bytes (K = 1024).  0 on success, -1 on error. */
int conf_parse_size(const char *s, uint64_t *bytes);
/* "10.0.0.0/8", "::1", "192.168.1.7" → network.  0 on success, -1 on error. */
int conf_parse_cidr(const char *s, struct conf_cidr *out);
/* "100/hour", "10/minute" → count (1..UINT_MAX) and window seconds.  0 / -1. */
int conf_parse_rate(const char *s, unsigned *count, unsigned *window);
/* "127.0.0.1:2525", "[::1]:25", "*:2525" → socket address.  0 / -1. */
int conf_parse_listen(const char *s, struct conf_listen *out);
/* The `tls` word that selects m: "starttls", "tls", "may", "none". */
const char *conf_tls_mode_name(enum conf_tls_mode m);

#endif
