/*
 * auth — who may relay through relayd (DESIGN.md, Modules): the network
 * allow-list (`allow CIDR…`), SASL logins, sender rules (who may send as
 * whom) and rate limits (how much).  Knows nothing about queues or SMTP
 * sessions.
 */
#ifndef RELAYD_AUTH_H
#define RELAYD_AUTH_H

#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "conf/conf.h"

/*
 * The start-up check that relayd is never an open relay nor a useless one:
 * somebody must be able to relay (allow networks or an AUTH backend).
 * 0, or -1 with "FILE: message" in err.
 */
int auth_check_config(const struct config *conf, char *err, size_t errlen);

/* 1 when the client address lies inside one of the config's `allow` networks. */
int auth_network_allowed(const struct config *conf, const struct sockaddr *client);

/* 1 when addr (AF_INET/AF_INET6; IPv4-mapped IPv6 counts as IPv4) is inside net. */
int auth_cidr_match(const struct conf_cidr *net, const struct sockaddr *addr);

/*
 * Sender rules (auth/sender.c), checked at MAIL FROM.  sender is the address
 * as routes_address_ascii() gives it (the domain in A-labels); "" is the null
 * sender, which every rule lets through.  user is the SASL login, or NULL for
 * a client that did not log in: `sender_login` does not apply to it, while
 * `deny_sender` applies to every client.  A login of the default realm is
 * one user under both its names, "bob" and "bob@HOSTNAME" (Cyrus says the
 * latter).  *rule is set to the deny_sender entry that refused (for the
 * log), else to NULL.
 */
enum auth_sender_result {
	AUTH_SENDER_OK,
	AUTH_SENDER_DENIED,		/* a deny_sender entry: 553 5.7.1 Access denied */
	AUTH_SENDER_NOT_OWNED,		/* not among the login's sender_login entries */
	AUTH_SENDER_NO_ENTRY,		/* sender_login_strict, and the login has no entry */
};
enum auth_sender_result auth_sender_check(const struct config *conf, const char *user,
    const char *sender, const struct conf_sender_rule **rule);

/*
 * The login's sender_login entries (at most two: a login of the default realm
 * has two names, "bob" and "bob@HOSTNAME"); their number.
 */
size_t auth_sender_logins(const struct config *conf, const char *user,
    const struct conf_sender_login *entries[2]);

/*
 * Sliding-window counters per key (auth/rate.c), the engine of the rate
 * limits: events are reserved while a transaction runs, then committed
 * (counted at that time) or released.  Each call takes the time (seconds of
 * a clock that does not go back; tests pass a fake one).  At most max_keys
 * keys; a key longer than AUTH_RATE_KEY_MAX - 1 bytes counts as its
 * beginning.
 */
#define AUTH_RATE_KEY_MAX 320
struct auth_rate;
/* window: seconds, 60 granules of window/60 (N/minute: 60, N/hour: 3600). */
struct auth_rate *auth_rate_new(unsigned window, size_t max_keys);
void auth_rate_free(struct auth_rate *r);
/* Events committed within the window ending now (not those reserved). */
unsigned auth_rate_count(struct auth_rate *r, const char *key, time_t now);
unsigned auth_rate_reserved(struct auth_rate *r, const char *key);
/*
 * Room for one more (counted + reserved < limit; limit 0: always)?  1 after
 * reserving it, 0 when full (nothing reserved).
 */
int auth_rate_reserve(struct auth_rate *r, const char *key, unsigned limit, time_t now);
/* n reservations given back: what they were for did not happen. */
void auth_rate_release(struct auth_rate *r, const char *key, unsigned n, time_t now);
/* n events happened now; as many reservations (as there are) end. */
void auth_rate_commit(struct auth_rate *r, const char *key, unsigned n, time_t now);
/* Seconds until the oldest counted event leaves the window; 0 when none is counted. */
unsigned auth_rate_wait(struct auth_rate *r, const char *key, time_t now);
/* A reload changed the unit: counts that may lie in the new window are kept. */
void auth_rate_set_window(struct auth_rate *r, unsigned window, time_t now);
unsigned auth_rate_window(const struct auth_rate *r);
/* Keys tracked (idle ones dropped first), and active keys dropped for room so far. */
size_t auth_rate_keys(struct auth_rate *r, time_t now);
unsigned long long auth_rate_evicted(const struct auth_rate *r);

/*
 * Rate limits (auth/limits.c): limit_user (messages per login), limit_client
 * (messages per client address), limit_rcpt (recipients per login, else per
 * address) and max_connections_per_client.  Counts are kept whether or not a
 * limit is set (relayctl policy shows them), in memory, and survive reloads.
 *
 * A message is checked at MAIL FROM and reserved there; it counts when it is
 * committed (the 250 after DATA).  A recipient is checked and reserved at
 * RCPT TO and counts with its message.  A transaction that ends otherwise
 * (RSET, QUIT, a lost connection, a refused message) gives its reservations
 * back.  Reservations count against the limit, so parallel sessions of one
 * login cannot overshoot it together.
 *
 * Clients in `limit_exempt` are free of the per-address limits (limit_client,
 * limit_rcpt without a login, max_connections_per_client); a login's limits
 * follow the login wherever it comes from.
 */
#define AUTH_LIMIT_KEYS 10000		/* keys per counter: logins, or addresses */
struct auth_limits;
struct auth_limits *auth_limits_new(const struct config *conf, size_t max_keys);
void auth_limits_free(struct auth_limits *l);
/* After a reload: the windows of the new limits; the counts stay. */
void auth_limits_configure(struct auth_limits *l, const struct config *conf, time_t now);

/* 1 when client lies in one of the config's limit_exempt networks. */
int auth_limit_exempt(const struct config *conf, const struct sockaddr *client);
/*
 * The key an address is counted under (limit_client, limit_rcpt without a
 * login, max_connections_per_client, the AUTH penalty): an IPv4 address
 * (::ffff:a.b.c.d too) as it is, an IPv6 address as its /64, "2001:db8:1:2::/64":
 * one host holds a whole /64 (SLAAC, privacy addresses) and could otherwise
 * take a fresh address for each connection.  At least AUTH_CLIENT_KEY_MAX bytes.
 */
#define AUTH_CLIENT_KEY_MAX 64
void auth_client_key(const struct sockaddr *client, char *key, size_t len);
/*
 * The key a login counts under: in lower case, "@HOSTNAME" dropped, so that
 * bob, Bob and bob@HOSTNAME are one login (as for sender_login).
 */
const char *auth_limit_user_key(const struct config *conf, const char *user, char *buf,
    size_t len);

enum auth_limit {
	AUTH_LIMIT_OK,
	AUTH_LIMIT_USER,		/* limit_user */
	AUTH_LIMIT_CLIENT,		/* limit_client */
	AUTH_LIMIT_RCPT,		/* limit_rcpt */
	AUTH_LIMIT_CONNECTIONS,		/* max_connections_per_client */
};

/* What reached a limit, for the reply and the log line. */
struct auth_limit_over {
	enum auth_limit which;
	const char *name;		/* "limit_user" … */
	unsigned limit;
	unsigned window;		/* seconds; 0 for connections */
	unsigned count;			/* counted in the window (open connections) */
	unsigned reserved;		/* in transactions now */
	unsigned wait;			/* seconds until the oldest counted one leaves */
	int by_user;			/* counted per login, else per address */
};

/* What one SMTP transaction holds, from MAIL FROM to its end.  Zero it to start. */
struct auth_limit_hold {
	int has_user;
	char user[AUTH_RATE_KEY_MAX];	/* the login's key (auth_limit_user_key) */
	char client[64];		/* the client address */
	int exempt;
	int message;			/* 1: a message is reserved */
	unsigned rcpts;			/* recipients reserved */
};

/*
 * MAIL FROM: user is the login (NULL: none), client the address as logs
 * show it.  AUTH_LIMIT_OK after reserving the message in hold; else *over
 * says which limit, and nothing is held.
 */
enum auth_limit auth_limits_mail(struct auth_limits *l, const struct config *conf,
    struct auth_limit_hold *hold, const char *user, const char *client, int exempt,
    time_t now, struct auth_limit_over *over);
/* RCPT TO, within hold's transaction: one more recipient, or *over. */
enum auth_limit auth_limits_rcpt(struct auth_limits *l, const struct config *conf,
    struct auth_limit_hold *hold, time_t now, struct auth_limit_over *over);
/*
 * The message was committed with nrcpts recipients: it and they count now,
 * any other reservation goes back; hold is empty after.
 */
void auth_limits_commit(struct auth_limits *l, struct auth_limit_hold *hold, unsigned nrcpts,
    time_t now);
/* The transaction ended without a message: hold's reservations go back. */
void auth_limits_release(struct auth_limits *l, struct auth_limit_hold *hold, time_t now);
/*
 * A new session from client: counted and AUTH_LIMIT_OK, or (over
 * max_connections_per_client, not exempt) AUTH_LIMIT_CONNECTIONS, not counted.
 */
enum auth_limit auth_limits_connect(struct auth_limits *l, const struct config *conf,
    const char *client, int exempt, struct auth_limit_over *over);
/* A session counted by auth_limits_connect() ended. */
void auth_limits_disconnect(struct auth_limits *l, const char *client);
unsigned auth_limits_connections(struct auth_limits *l, const char *client);
/* Active keys forgotten so far to make room, over all counters (for the log). */
unsigned long long auth_limits_evicted(const struct auth_limits *l);
/* The counter behind a limit (limit_rcpt: by_user picks per login or per address). */
struct auth_rate *auth_limits_counter(struct auth_limits *l, enum auth_limit which,
    int by_user);

/*
 * relayctl policy WHO (auth/policy.c): which sender rules and limits apply
 * to a login or a client address (WHO is an address when it parses as one),
 * and with l, the counts now.  -1 (with a line on out) when WHO is neither.
 */
int auth_policy_describe(FILE *out, const struct config *conf, struct auth_limits *l,
    const char *who, time_t now);

/*
 * Failed logins per client address: each failure answer waits a random
 * 0.1-1 s, plus a second for every earlier failure from the same address in
 * the last 15 minutes (at most 10 s more).
 */
struct auth_penalty;
struct auth_penalty *auth_penalty_new(void);
void auth_penalty_free(struct auth_penalty *p);
unsigned auth_penalty_delay_ms(struct auth_penalty *p, const char *addr, time_t now);
void auth_penalty_failed(struct auth_penalty *p, const char *addr, time_t now);
unsigned auth_penalty_failures(struct auth_penalty *p, const char *addr, time_t now);

/*
 * SMTP AUTH (RFC 4954) through the Cyrus SASL server library.  One
 * auth_server per process (sasl_server_init, options from the config through
 * callbacks, so nothing under /etc/sasl2 is read); one auth_session per SMTP
 * session.  Client data arrives and challenges leave base64-encoded, exactly
 * as on the wire; this module decodes and encodes with Cyrus' own helpers.
 */
struct auth_server;
struct auth_session;

enum auth_result {
	AUTH_OK,		/* 235 2.7.0: logged in, auth_session_user() names who */
	AUTH_CONTINUE,		/* 334 with the challenge */
	AUTH_FAILED,		/* 535 5.7.8: bad user or password */
	AUTH_TEMPFAIL,		/* 454 4.7.0: backend down or unreadable: the client retries */
	AUTH_NOMECH,		/* 504 5.5.4: mechanism not on offer */
	AUTH_MALFORMED,		/* 501 5.5.2: not base64, or the mechanism's syntax broken */
	AUTH_CANCELLED,		/* 501 5.0.0: the client sent "*" */
	AUTH_TOOWEAK,		/* 534 5.7.9: the mechanism needs more than this connection */
};

/*
 * Check the backends (sasldb readable, not world-readable; saslauthd dir) and
 * start Cyrus SASL.  NULL with "FILE:LINE: message" in err on failure.  Also
 * used by `relayd -n`.  NULL without error when the config has no AUTH backend
 * (then *err is "").
 */
struct auth_server *auth_server_new(const struct config *conf, char *err, size_t errlen);
void auth_server_free(struct auth_server *srv);

/*
 * local and remote are "IP;PORT" as Cyrus wants them; tls_ssf is the TLS
 * cipher strength in bits (0 before TLS).
 */
struct auth_session *auth_session_new(struct auth_server *srv, const char *local,
    const char *remote, unsigned tls_ssf);
void auth_session_free(struct auth_session *as);
/* Mechanisms to advertise in EHLO ("PLAIN LOGIN"), or "" if none. */
const char *auth_session_mechanisms(struct auth_session *as);

/*
 * AUTH MECH [initial-response]: initial is the base64 text after the
 * mechanism, "=" for an empty one, or NULL when absent.  *challenge is set to
 * base64 text to send after "334 " when AUTH_CONTINUE (owned by the session,
 * valid until the next call).
 */
enum auth_result auth_session_start(struct auth_session *as, const char *mech,
    const char *initial, const char **challenge);
/* The client's answer line to a 334 ("*" cancels). */
enum auth_result auth_session_step(struct auth_session *as, const char *response,
    const char **challenge);
/* After AUTH_OK: the authenticated user name; NULL before. */
const char *auth_session_user(const struct auth_session *as);
/* After a failure: Cyrus' own words for the log (never holds the password). */
const char *auth_session_detail(const struct auth_session *as);

/*
 * The daemon runs every Cyrus call on one worker thread (auth/worker.c):
 * saslauthd and PAM may block for seconds, or for ever.  Start it after any
 * fork.  Results come back through auth_worker_dispatch(), to be called when
 * auth_worker_fd() is readable; done() runs there, on the caller's thread.
 * Once a session is handed to the worker, only the worker touches it:
 * auth_worker_release() instead of auth_session_free(), and no done() of it
 * is called afterwards.  -1 from start/step: out of memory, no callback.
 */
struct auth_worker;
typedef void auth_done_fn(void *arg, enum auth_result r, const char *challenge);
struct auth_worker *auth_worker_new(void);
int auth_worker_fd(const struct auth_worker *w);
int auth_worker_start(struct auth_worker *w, struct auth_session *as, const char *mech,
    const char *initial, auth_done_fn *done, void *arg);
int auth_worker_step(struct auth_worker *w, struct auth_session *as, const char *response,
    auth_done_fn *done, void *arg);
void auth_worker_release(struct auth_worker *w, struct auth_session *as);
void auth_worker_dispatch(struct auth_worker *w);
/*
 * Finish the queued jobs and stop the thread, waiting at most wait_ms.  -1
 * when it is still stuck in a backend: it is left running (the process is
 * about to exit) and the auth_server must not be freed under it.
 */
int auth_worker_free(struct auth_worker *w, unsigned wait_ms);

/*
 * Outbound: credentials for an upstream and SMTP AUTH as a client
 * (auth/client.c).  auth_sasl_threads() gives Cyrus real mutexes and must
 * run before any Cyrus init; auth_client_init() once per process.
 */
/* The first line of a password_file; NULL with err when unreadable or group/world-readable. */
char *auth_read_secret(const char *path, char *err, size_t errlen);
void auth_sasl_threads(void);
int auth_client_init(void);
void auth_client_done(void);
struct auth_client;
struct auth_client *auth_client_new(const char *host, const char *user, const char *password,
    unsigned tls_ssf);
void auth_client_free(struct auth_client *ac);
/*
 * Pick the best mechanism among offered (the EHLO AUTH line's words): *mech
 * and *initial (base64, "=" for empty, NULL for none) for the AUTH command.
 * Then each 334's text to auth_client_step for the next line to send.
 * 0, or -1 with err.  Strings live in ac until its next call.
 */
int auth_client_start(struct auth_client *ac, const char *offered, const char **mech,
    const char **initial, char *err, size_t errlen);
int auth_client_step(struct auth_client *ac, const char *challenge, const char **response,
    char *err, size_t errlen);

#endif
