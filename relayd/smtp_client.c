/*
 * smtp_client — one connection to an upstream (RFC 5321 client side): DNS,
 * connect, greeting, EHLO (HELO fallback), STARTTLS or implicit TLS with
 * verification, AUTH through Cyrus, then one job after another while the
 * upstream has work (each job's transaction is smtp_transaction.c), idle
 * for timeout_idle, QUIT.  A failure to get ready defers the job with the
 * reason; never a silent downgrade to plaintext.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "relayd/delivery.h"
#include "relayd/log.h"
#include "relayd/smtp_client.h"
#include "relayd/tls.h"

static void client_free(struct smtp_client *c);
static void try_connect(struct smtp_client *c);

/* For "lost connection …" and "timed out …": where the conversation was. */
static const char *state_what(enum client_state s)
{
	switch (s) {
	case C_RESOLVE: case C_CONNECT: return "while connecting";
	case C_GREETING: return "while waiting for the greeting";
	case C_EHLO: return "after EHLO";
	case C_HELO: return "after HELO";
	case C_STARTTLS: return "after STARTTLS";
	case C_HANDSHAKE: return "during the TLS handshake";
	case C_AUTH: return "during AUTH";
	case C_IDLE: return "between messages";
	case C_MAIL: return "after MAIL FROM";
	case C_RCPT: return "after RCPT TO";
	case C_DATA: return "after DATA";
	case C_BODY: return "while sending the message body";
	case C_DOT: return "after the end of data (the upstream may have the message)";
	case C_RSET: return "after RSET";
	case C_QUIT: return "after QUIT";
	}
	return "";
}

static const char *hostname(const struct smtp_client *c)
{
	return c->up->d->conf->hostname;
}

void client_set_timeout(struct smtp_client *c, unsigned seconds)
{
	struct timeval tv = { seconds, 0 };
	bufferevent_set_timeouts(c->bev, &tv, &tv);
}

void client_send(struct smtp_client *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	va_end(ap);
	evbuffer_add(bufferevent_get_output(c->bev), "\r\n", 2);
}

void client_rcpt_result(struct job_rcpt *r, int code, const char *dsn, const char *text)
{
	if (r->code)
		return;
	r->code = code;
	snprintf(r->dsn, sizeof r->dsn, "%s", dsn);
	free(r->text);
	r->text = strdup(text);
}

void client_finish_job(struct smtp_client *c, int code, const char *dsn, const char *text)
{
	struct delivery_job *job = c->job;
	if (!job)
		return;
	for (size_t i = 0; code && i < job->nrcpts; i++)
		client_rcpt_result(&job->rcpts[i], code, dsn, text);
	snprintf(job->relay, sizeof job->relay, "%s", c->relay[0] ? c->relay : "none");
	job->t_done = delivery_now();
	c->job = NULL;
	delivery_job_done(job);
}

/*
 * The connection is unusable: its job and, when no other connection is
 * left, everything waiting for this upstream are deferred with why.
 */
static int others_live(const struct smtp_client *c)
{
	for (const struct smtp_client *o = c->up->conns; o; o = o->next_conn)
		if (o != c && !o->dead)
			return 1;
	return 0;
}

/*
 * Before the connection is ready, another address may do better: the next
 * MX host (RFC 5321 §5.1) for direct; the next address of a host that did
 * not greet; for `tls may`, the same host again without STARTTLS when the
 * handshake failed (RFC 7435).  1 when a new attempt is under way.
 */
static int retry_elsewhere(struct smtp_client *c, const char *why)
{
	const struct conf_upstream *u = c->up->conf;
	int plain = c->state == C_HANDSHAKE && u->tls == CONF_TLS_MAY && !c->no_starttls;
	int next = c->target + 1 < c->ntargets && (c->up->parent || c->state == C_GREETING);

	if (c->state < C_CONNECT || c->state >= C_IDLE || c->dead || (!plain && !next))
		return 0;
	log_info("upstream %s: %s: %s; %s", u->name, c->relay, why, plain ?
	    "trying again without TLS" : "trying the next address");
	if (plain)
		c->no_starttls = 1;
	else
		c->target++;
	c->tls = 0;
	c->auth_started = 0;
	auth_client_free(c->sasl);
	c->sasl = NULL;
	smtp_reply_reset(&c->reply);
	try_connect(c);
	return 1;
}

void client_fail(struct smtp_client *c, int code, const char *dsn, const char *fmt, ...)
{
	char why[SMTP_REPLY_TEXT_MAX + 128];
	va_list ap;
	struct upstream *up = c->up;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (retry_elsewhere(c, why))
		return;
	if (!c->job && c->state == C_IDLE)
		log_debug("upstream %s: %s: %s", up->conf->name, c->relay, why);
	else
		log_info("upstream %s: %s: %s", up->conf->name, c->relay[0] ? c->relay :
		    up->domain ? up->domain : up->conf->host, why);
	char relay[sizeof c->relay];
	snprintf(relay, sizeof relay, "%s", c->relay[0] ? c->relay : "none");
	int was_ready = c->state >= C_IDLE;
	c->dead = 1;
	client_finish_job(c, code, dsn, why);
	/*
	 * A connection that never got ready says the upstream is down for now —
	 * unless others of it are up or coming: then it only had too many.
	 */
	if (!was_ready && !others_live(c))
		upstream_failed(up, code, dsn, why, relay);
	else if (!was_ready)
		upstream_fewer(up, why);
	client_free(c);
}

/* A refusal before any transaction is a deferral, whatever its class. */
static void fail_reply(struct smtp_client *c, const char *what)
{
	char dsn[16];
	snprintf(dsn, sizeof dsn, "4%s", c->reply.dsn + 1);
	client_fail(c, 400 + c->reply.code % 100, dsn, "%s: %s", what, c->reply.text);
}

/* ---- getting ready ----------------------------------------------------- */

/*
 * The limit in EHLO "SIZE n": RFC 1870 says 1*20DIGIT, 0 or nothing for no
 * fixed limit.  Anything else ("1e9", "-1", "12abc") is no limit at all, as
 * Postfix takes it: strtoull() would read a limit of 1 octet or a wrapped
 * one, and every message would bounce (5.3.4) without ever being tried.
 * Past 2^64 is no limit either.
 */
static uint64_t ehlo_size_limit(const struct smtp_client *c, const char *v)
{
	size_t n = strspn(v, "0123456789");

	if (n == 0 || n > 20 || v[n + strspn(v + n, " ")] != '\0') {
		char esc[128];
		if (*v)
			log_info("upstream %s: %s: EHLO SIZE \"%s\" is not a number: no limit taken",
			    c->up->conf->name, c->relay, log_escape(esc, sizeof esc, v, strlen(v)));
		return 0;
	}
	errno = 0;
	unsigned long long size = strtoull(v, NULL, 10);
	return errno == ERANGE ? 0 : size;
}

/* One EHLO reply line's keyword (after "250-" or "250 "). */
static void ehlo_keyword(struct smtp_client *c, const char *s, size_t n)
{
	char line[300];
	if (n >= sizeof line)
		n = sizeof line - 1;
	memcpy(line, s, n);
	line[n] = '\0';
	for (char *p = line; *p && *p != ' ' && *p != '='; p++)
		*p = (char)toupper((unsigned char)*p);
	if (strcmp(line, "PIPELINING") == 0)
		c->pipelining = 1;
	else if (strcmp(line, "STARTTLS") == 0)
		c->starttls = 1;
	else if (strcmp(line, "DSN") == 0)
		c->dsn = 1;
	else if (strcmp(line, "8BITMIME") == 0)
		c->eightbit = 1;
	else if (strcmp(line, "SMTPUTF8") == 0)
		c->smtputf8 = 1;
	else if (strncmp(line, "SIZE", 4) == 0 && (line[4] == ' ' || line[4] == '\0'))
		c->size = 1, c->size_limit = line[4] ? ehlo_size_limit(c, line + 5) : 0;
	else if (strncmp(line, "AUTH", 4) == 0 && (line[4] == ' ' || line[4] == '='))
		snprintf(c->auth_mechs, sizeof c->auth_mechs, "%.200s", line + 5);
}

static void send_ehlo(struct smtp_client *c)
{
	c->esmtp = c->pipelining = c->starttls = c->dsn = c->eightbit = c->smtputf8 = 0;
	c->size = 0;
	c->size_limit = 0;
	c->auth_mechs[0] = '\0';
	c->state = C_EHLO;
	client_set_timeout(c, T_COMMAND(c));
	client_send(c, "EHLO %s", hostname(c));
}

static void ready(struct smtp_client *c);

static void auth_next(struct smtp_client *c)
{
	const struct conf_upstream *u = c->up->conf;
	char err[256];

	if (!c->auth_started) {
		const char *mech, *initial;
		SSL *ssl = c->tls ? bufferevent_openssl_get_ssl(c->bev) : NULL;
		c->sasl = auth_client_new(u->host, u->user, c->up->password,
		    ssl ? tls_strength(ssl) : 0);
		if (!c->sasl) {
			client_fail(c, 451, "4.7.0", "cannot start SASL for AUTH");
			return;
		}
		if (auth_client_start(c->sasl, c->auth_mechs, &mech, &initial, err, sizeof err) < 0) {
			client_fail(c, 454, "4.7.0", "AUTH: %s", err);
			return;
		}
		c->auth_started = 1;
		c->state = C_AUTH;
		client_set_timeout(c, T_COMMAND(c));
		if (initial)
			client_send(c, "AUTH %s %s", mech, initial);
		else
			client_send(c, "AUTH %s", mech);
		return;
	}
	if (c->reply.code == 334) {
		const char *response;
		size_t n;
		const char *challenge = smtp_reply_line(&c->reply, 0, &n);
		char text[SMTP_REPLY_LINE_MAX];
		snprintf(text, sizeof text, "%.*s", (int)n, challenge ? challenge : "");
		if (auth_client_step(c->sasl, text, &response, err, sizeof err) < 0) {
			client_send(c, "*");
			client_fail(c, 454, "4.7.0", "AUTH: %s", err);
			return;
		}
		client_send(c, "%s", response);
		return;
	}
	if (c->reply.code == 235) {
		auth_client_free(c->sasl);
		c->sasl = NULL;
		ready(c);
		return;
	}
	fail_reply(c, "AUTH failed");
}

/* After EHLO: STARTTLS when due, then AUTH when configured, then work. */
static void after_ehlo(struct smtp_client *c)
{
	const struct conf_upstream *u = c->up->conf;

	if (u->tls == CONF_TLS_MAY && !c->tls && c->starttls && !c->no_starttls) {
		c->state = C_STARTTLS;	/* opportunistic: offered, so taken */
		client_set_timeout(c, T_COMMAND(c));
		client_send(c, "STARTTLS");
		return;
	}
	if (u->tls == CONF_TLS_STARTTLS && !c->tls) {
		if (!c->starttls) {
			client_fail(c, 454, "4.7.0", "the upstream does not offer STARTTLS (tls starttls "
			    "is configured: never sent in plaintext)");
			return;
		}
		c->state = C_STARTTLS;
		client_set_timeout(c, T_COMMAND(c));
		client_send(c, "STARTTLS");
		return;
	}
	if (u->user) {
		if (!c->auth_mechs[0]) {
			client_fail(c, 454, "4.7.0", "the upstream offers no AUTH (user %s is configured)",
			    u->user);
			return;
		}
		auth_next(c);
		return;
	}
	ready(c);
}

static void ready(struct smtp_client *c)
{
	upstream_ready(c->up);
	c->state = C_IDLE;
	log_debug("upstream %s: %s: ready%s%s", c->up->conf->name, c->relay,
	    c->tls ? ", TLS" : "", c->pipelining ? ", PIPELINING" : "");
	smtp_client_run(c, upstream_next_job(c->up));
}

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/*
 * libevent writes at most 16 KB per bufferevent per loop iteration by default:
 * a 100 KB body took seven turns of the loop.  A body goes out BODY_HIGH at a
 * time instead (2,000 queued 100 KB messages to smtp-sink: 930-1,076 ->
 * 1,360-1,397 msg/s, less CPU).  Reads stay small: replies are short.
 */
static void client_tune(struct smtp_client *c)
{
	bufferevent_set_max_single_write(c->bev, BODY_HIGH);
}

/* Swap the plain bufferevent for a TLS one on the same socket. */
static int start_tls(struct smtp_client *c, int fd)
{
	const struct conf_upstream *u = c->up->conf;
	SSL *ssl = SSL_new(c->up->tls);
	struct in6_addr ip;

	if (!ssl)
		return -1;
	/* The name connected to: the upstream's host, or the MX host for direct. */
	const char *host = c->targets ? c->targets[c->target].host : u->host;
	SSL_set_tlsext_host_name(ssl, host);
	if (u->verify && u->tls != CONF_TLS_MAY) {	/* may: encrypted, not authenticated */
		int literal = inet_pton(AF_INET, host, &ip) == 1 ||
		    inet_pton(AF_INET6, host, &ip) == 1;
		if (literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1 :
		    SSL_set1_host(ssl, host) != 1) {
			SSL_free(ssl);
			return -1;
		}
	}
	if (c->bev) {
		bufferevent_setfd(c->bev, -1);
		bufferevent_free(c->bev);
	}
	c->bev = bufferevent_openssl_socket_new(c->up->d->base, fd, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		SSL_free(ssl);
		evutil_closesocket(fd);
		return -1;
	}
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	client_tune(c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->state = C_HANDSHAKE;
	client_set_timeout(c, T_COMMAND(c));
	return 0;
}

static void on_reply(struct smtp_client *c)
{
	if (c->reply.code == 421 && c->state > C_GREETING && c->state != C_QUIT) {
		/* RFC 5321 §3.8: the server is closing: nothing more goes over this connection. */
		if (c->state >= C_IDLE)
			client_fail(c, 421, c->reply.dsn, "%s", c->reply.text);
		else
			fail_reply(c, "closing");
		return;
	}
	switch (c->state) {
	case C_GREETING:
		if (c->reply.code != 220) {
			fail_reply(c, "greeting");
			return;
		}
		send_ehlo(c);
		return;
	case C_EHLO:
		if (c->reply.code / 100 != 2) {
			/* An old server: HELO, and nothing that needs ESMTP. */
			c->state = C_HELO;
			client_send(c, "HELO %s", hostname(c));
			return;
		}
		c->esmtp = 1;
		for (unsigned i = 1; i < c->reply.lines; i++) {
			size_t n;
			const char *kw = smtp_reply_line(&c->reply, i, &n);
			if (kw)
				ehlo_keyword(c, kw, n);
		}
		after_ehlo(c);
		return;
	case C_HELO:
		if (c->reply.code / 100 != 2) {
			fail_reply(c, "HELO refused");
			return;
		}
		after_ehlo(c);
		return;
	case C_STARTTLS:
		if (c->reply.code != 220 && c->up->conf->tls == CONF_TLS_MAY) {
			c->starttls = 0;	/* opportunistic: on without it */
			after_ehlo(c);
			return;
		}
		if (c->reply.code != 220) {
			fail_reply(c, "STARTTLS refused");
			return;
		}
		/* Anything the server sent after its 220 would be plaintext injection. */
		if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
			client_fail(c, 454, "4.7.0", "data after the STARTTLS reply (injection?)");
			return;
		}
		if (start_tls(c, bufferevent_getfd(c->bev)) < 0)
			client_fail(c, 454, "4.7.0", "cannot start TLS");
		return;
	case C_AUTH:
		auth_next(c);
		return;
	case C_MAIL: case C_RCPT: case C_DATA: case C_DOT:
		tx_reply(c);
		return;
	case C_RSET:
		if (c->reply.code / 100 != 2) {
			fail_reply(c, "RSET refused");
			return;
		}
		c->state = C_IDLE;
		smtp_client_run(c, upstream_next_job(c->up));
		return;
	case C_QUIT:
		client_free(c);
		return;
	default:
		/* A reply nobody asked for (idle, or while the body goes out). */
		client_fail(c, 421, "4.4.2", "unexpected reply: %s", c->reply.text);
		return;
	}
}

/* Callbacks hold the client; a free asked for meanwhile happens when they let go. */
static void hold(struct smtp_client *c)
{
	c->busy++;
}

static void let_go(struct smtp_client *c)
{
	if (--c->busy == 0 && c->dead)
		client_free(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;

	hold(c);
	while (!c->dead && c->bev == bev) {
		struct evbuffer *in = bufferevent_get_input(bev);
		if (evbuffer_get_length(in) == 0)
			break;
		enum smtp_reply_status st = smtp_reply_read(&c->reply, in);
		if (st == SMTP_REPLY_MORE)
			break;
		if (st == SMTP_REPLY_BAD) {
			client_fail(c, 421, "4.5.0", "malformed reply from the upstream");
			break;
		}
		on_reply(c);
		smtp_reply_reset(&c->reply);
	}
	let_go(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;
	(void)bev;
	hold(c);
	if (c->state == C_BODY && !c->dead)
		tx_pump_body(c);
	let_go(c);
}

/* The data went out and no answer came: the upstream may have the message. */
static void no_answer_after_dot(struct smtp_client *c)
{
	if (c->job && c->state == C_DOT)
		for (size_t i = 0; i < c->job->nrcpts; i++)
			c->job->rcpts[i].uncertain = c->job->rcpts[i].accepted;
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_client *c = arg;
	char why[512];

	(void)bev;
	hold(c);
	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == C_HANDSHAKE) {
			SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
			char desc[200];
			c->tls = 1;
			tls_describe(ssl, desc, sizeof desc);
			log_debug("upstream %s: %s: %s", c->up->conf->name, c->relay, desc);
			if (c->up->conf->tls == CONF_TLS_IMPLICIT) {
				c->state = C_GREETING;
				client_set_timeout(c, T_COMMAND(c));
			} else {
				send_ehlo(c);
			}
		} else {
			c->state = C_GREETING;
			client_set_timeout(c, T_COMMAND(c));
			if (c->up->conf->tls == CONF_TLS_IMPLICIT &&
			    start_tls(c, bufferevent_getfd(c->bev)) < 0)
				client_fail(c, 454, "4.7.0", "cannot start TLS");
		}
	} else if (c->state == C_HANDSHAKE && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))) {
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
		long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
		tls_errors(why, sizeof why);
		if (v != X509_V_OK)
			client_fail(c, 454, "4.7.5", "TLS: certificate verification failed: %s",
			    X509_verify_cert_error_string(v));
		else
			client_fail(c, 454, "4.7.0", "TLS handshake failed: %s", why[0] ? why :
			    "connection closed");
	} else if (c->state == C_CONNECT && (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))) {
		int err = EVUTIL_SOCKET_ERROR();
		log_info("upstream %s: connect to %s: %s", c->up->conf->name, c->relay,
		    what & BEV_EVENT_TIMEOUT ? "timed out" : evutil_socket_error_to_string(err));
		snprintf(why, sizeof why, "connect to %s: %s", c->relay,
		    what & BEV_EVENT_TIMEOUT ? "timed out" : evutil_socket_error_to_string(err));
		if (c->target + 1 < c->ntargets) {
			c->target++;
			try_connect(c);
		} else {
			client_fail(c, 451, "4.4.1", "%s", why);
		}
	} else if (c->state == C_QUIT || (c->state == C_IDLE && !c->job)) {
		client_free(c);		/* nothing was waiting for it */
	} else if (what & BEV_EVENT_TIMEOUT) {
		no_answer_after_dot(c);
		client_fail(c, 421, "4.4.2", "conversation timed out %s", state_what(c->state));
	} else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		no_answer_after_dot(c);
		client_fail(c, 421, "4.4.2", "lost connection %s", state_what(c->state));
	}
	let_go(c);
}

/* ---- connecting -------------------------------------------------------- */

static void try_connect(struct smtp_client *c)
{
	const struct client_target *t = &c->targets[c->target];
	const struct sockaddr *sa = (const struct sockaddr *)&t->addr;
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
		port = ntohs(in6->sin6_port);
	}
	snprintf(c->relay, sizeof c->relay, "%s[%s]:%u", t->host, ip, port);
	if (c->bev)
		bufferevent_free(c->bev);
	c->bev = bufferevent_socket_new(c->up->d->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		client_fail(c, 451, "4.3.0", "out of memory");
		return;
	}
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	client_tune(c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->state = C_CONNECT;
	client_set_timeout(c, T_CONNECT(c));
	if (bufferevent_socket_connect(c->bev, sa, (int)t->addrlen) < 0) {
		int err = EVUTIL_SOCKET_ERROR();
		if (c->target + 1 < c->ntargets) {
			c->target++;
			try_connect(c);
			return;
		}
		client_fail(c, 451, "4.4.1", "connect to %s: %s", c->relay,
		    evutil_socket_error_to_string(err));
	}
}

static void resolved(void *arg, int code, const char *dsn, const char *why,
    const struct client_target *targets, size_t n)
{
	struct smtp_client *c = arg;

	c->resolve = NULL;
	hold(c);
	if (code) {
		client_fail(c, code, dsn, "%s", why);
	} else if (!(c->targets = malloc(n * sizeof *targets))) {
		client_fail(c, 451, "4.3.0", "out of memory");
	} else {
		memcpy(c->targets, targets, n * sizeof *targets);
		c->ntargets = n;
		c->target = 0;
		try_connect(c);
	}
	let_go(c);
}

int smtp_client_open(struct upstream *up)
{
	struct smtp_client *c = calloc(1, sizeof *c);

	if (!c)
		return -1;
	c->up = up;
	up->nconn++;
	c->next_conn = up->conns;
	up->conns = c;
	c->state = C_RESOLVE;
	c->t_opened = delivery_now();
	if (!(c->resolve = resolve_targets(up, resolved, c))) {
		client_free(c);
		return -1;
	}
	return 0;
}

static void unidle(struct smtp_client *c)
{
	for (struct smtp_client **p = &c->up->idle; *p; p = &(*p)->next_idle)
		if (*p == c) {
			*p = c->next_idle;
			break;
		}
	c->next_idle = NULL;
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	(void)fd, (void)what;
	unidle(c);
	c->state = C_QUIT;
	client_set_timeout(c, T_COMMAND(c));
	client_send(c, "QUIT");
}

void smtp_client_run(struct smtp_client *c, struct delivery_job *job)
{
	if (c->idle_timer)
		evtimer_del(c->idle_timer);
	unidle(c);
	if (job) {
		c->job = job;
		/*
		 * Its wait (Postfix's b) ends where the setup it then waited for (c) began:
		 * the first job of a new connection waited for its setup; a job handed
		 * to a connection that was ready already waited until now, all of it b.
		 */
		if (!job->t_assigned && c->ran_job)
			job->t_assigned = delivery_now();
		else if (!job->t_assigned)
			job->t_assigned = c->t_opened > job->t_created ? c->t_opened :
			    job->t_created;
		c->ran_job = 1;
		tx_begin(c);
		return;
	}
	if (c->up->d->stopping) {
		c->state = C_QUIT;
		client_send(c, "QUIT");
		return;
	}
	c->state = C_IDLE;
	c->next_idle = c->up->idle;
	c->up->idle = c;
	if (!c->idle_timer)
		c->idle_timer = evtimer_new(c->up->d->base, idle_cb, c);
	struct timeval tv = { T_IDLE(c), 0 };
	if (c->idle_timer)
		evtimer_add(c->idle_timer, &tv);
}

void smtp_client_stop(struct upstream *up, int now)
{
	struct smtp_client *c = up->conns, *next;
	for (; c; c = next) {
		next = c->next_conn;
		if (c->job && !now)
			continue;	/* its transaction may finish */
		if (c->state == C_IDLE && !now) {
			smtp_client_run(c, NULL);	/* QUIT */
			continue;
		}
		client_finish_job(c, JOB_UNDECIDED, "", "");
		client_free(c);
	}
}

void smtp_client_free_all(struct upstream *up)
{
	while (up->conns) {
		// NOLINTNEXTLINE(clang-analyzer-unix.Malloc): client_free unlinks what it frees
		up->conns->job = NULL;	/* the delivery is going away with its jobs */
		up->conns->busy = 0;	/* no callback of it is running now */
		client_free(up->conns);
	}
}

static void client_free(struct smtp_client *c)
{
	if (c->busy) {
		c->dead = 1;
		return;
	}
	struct upstream *up = c->up;
	unidle(c);
	for (struct smtp_client **p = &up->conns; *p; p = &(*p)->next_conn)
		if (*p == c) {
			*p = c->next_conn;
			break;
		}
	resolve_cancel(c->resolve);
	free(c->targets);
	if (c->tls)
		tls_close_notify(c->bev);
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->idle_timer)
		event_free(c->idle_timer);
	auth_client_free(c->sasl);
	free(c);
	up->nconn--;
	/* A slot is free: work waiting for this upstream may start a connection. */
	upstream_slot_free(up);
}
