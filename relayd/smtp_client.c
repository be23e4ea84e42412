/*
 * smtp_client — one connection to an upstream (RFC 5321 client side): DNS,
 * connect, greeting, EHLO (HELO fallback), STARTTLS or implicit TLS with
 * verification, AUTH through Cyrus, then transactions — MAIL, RCPT…, DATA,
 * the body dot-stuffed with CRLF line ends — one job after another while the
 * upstream has work, with PIPELINING when offered.  A failure to get ready
 * defers the job with the reason; never a silent downgrade to plaintext.
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
#include "relayd/smtp_reply.h"
#include "relayd/tls.h"

/*
 * Timeouts are the upstream's timeout_* (RFC 5321 §4.5.3.2 minimums as
 * defaults): timeout_command covers every reply and every write of the body
 * (RFC: 5, 2 and 3 minutes), timeout_data the reply to the final dot (10).
 */
#define T_CONNECT(c)	((c)->up->conf->timeout_connect)
#define T_COMMAND(c)	((c)->up->conf->timeout_command)
#define T_DATA_END(c)	((c)->up->conf->timeout_data)
#define T_IDLE(c)	((c)->up->conf->timeout_idle)
#define BODY_HIGH	(256 * 1024)	/* output kept below this while streaming */

enum client_state {
	C_RESOLVE, C_CONNECT, C_GREETING, C_EHLO, C_HELO, C_STARTTLS, C_HANDSHAKE,
	C_AUTH, C_IDLE, C_MAIL, C_RCPT, C_DATA, C_BODY, C_DOT, C_RSET, C_QUIT,
};

struct dns_wait {
	struct smtp_client *c;		/* NULL once the client is gone */
};

struct smtp_client {
	struct upstream *up;
	struct bufferevent *bev;
	enum client_state state;
	struct smtp_reply reply;
	struct evutil_addrinfo *addrs, *addr;
	struct dns_wait *dns;
	struct evdns_getaddrinfo_request *dns_req;
	struct event *idle_timer;
	char relay[300];		/* "host[ip]:port" */
	int tls;			/* TLS is up */
	int esmtp, pipelining, starttls, dsn, eightbit, smtputf8, size;
	uint64_t size_limit;		/* SIZE n; 0 = none given */
	char auth_mechs[256];		/* EHLO AUTH words */
	struct auth_client *sasl;
	int auth_started;
	struct delivery_job *job;
	size_t rcpt_i;			/* next RCPT reply to match */
	size_t sent_rcpts;		/* RCPTs sent (non-pipelined: one at a time) */
	unsigned accepted;
	int mail_failed;
	struct smtp_reply fail;		/* MAIL's refusal, applied to every recipient */
	uint32_t chunk;			/* next body chunk */
	int bol, prev_cr;		/* dot-stuffing state */
	int body_done;
	unsigned busy;			/* callbacks running: free later */
	int dead;			/* freed as soon as they return */
	struct smtp_client *next_idle;
	struct smtp_client *next_conn;	/* in up->conns */
};

static void client_free(struct smtp_client *c);
static void begin_job(struct smtp_client *c);

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

static void set_timeout(struct smtp_client *c, unsigned seconds)
{
	struct timeval tv = { seconds, 0 };
	bufferevent_set_timeouts(c->bev, &tv, &tv);
}

static void sendf(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sendf(struct smtp_client *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	va_end(ap);
	evbuffer_add(bufferevent_get_output(c->bev), "\r\n", 2);
}

/* Set a job recipient's outcome (once). */
static void rcpt_result(struct job_rcpt *r, int code, const char *dsn, const char *text)
{
	if (r->code)
		return;
	r->code = code;
	snprintf(r->dsn, sizeof r->dsn, "%s", dsn);
	free(r->text);
	r->text = strdup(text);
}

/* Every recipient of the job still open gets this outcome (code 0: none); the job is done. */
static void finish_job(struct smtp_client *c, int code, const char *dsn, const char *text)
{
	struct delivery_job *job = c->job;
	if (!job)
		return;
	for (size_t i = 0; code && i < job->nrcpts; i++)
		rcpt_result(&job->rcpts[i], code, dsn, text);
	snprintf(job->relay, sizeof job->relay, "%s", c->relay[0] ? c->relay : "none");
	job->t_done = delivery_now();
	c->job = NULL;
	delivery_job_done(job);
}

/*
 * The connection is unusable: its job and, when no other connection is
 * left, everything waiting for this upstream are deferred with why.
 */
static void fail(struct smtp_client *c, int code, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct smtp_client *c, int code, const char *dsn, const char *fmt, ...)
{
	char why[SMTP_REPLY_TEXT_MAX + 128];
	va_list ap;
	struct upstream *up = c->up;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (!c->job && c->state == C_IDLE)
		log_debug("upstream %s: %s: %s", up->conf->name, c->relay, why);
	else
		log_info("upstream %s: %s: %s", up->conf->name, c->relay[0] ? c->relay :
		    up->conf->host, why);
	char relay[300];
	snprintf(relay, sizeof relay, "%s", c->relay[0] ? c->relay : "none");
	int was_ready = c->state >= C_IDLE;
	c->dead = 1;
	finish_job(c, code, dsn, why);
	/* A connection that never got ready says the upstream is down for now. */
	if (!was_ready)
		upstream_failed(up, code, dsn, why, relay);
	client_free(c);
}

/* A refusal before any transaction is a deferral, whatever its class. */
static void fail_reply(struct smtp_client *c, const char *what)
{
	char dsn[16];
	snprintf(dsn, sizeof dsn, "4%s", c->reply.dsn + 1);
	fail(c, 400 + c->reply.code % 100, dsn, "%s: %s", what, c->reply.text);
}

/* ---- body -------------------------------------------------------------- */

struct stuff_ctx {
	struct smtp_client *c;
	struct evbuffer *out;
};

/* Copy a chunk with dot-stuffing; bare CR or LF become CRLF (RFC 5321 §2.3.8). */
static int stuff_chunk(void *arg, const void *data, size_t len)
{
	struct stuff_ctx *x = arg;
	struct smtp_client *c = x->c;
	const unsigned char *p = data;
	unsigned char *buf = malloc(len * 2 + 4);
	size_t o = 0;

	if (!buf)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char b = p[i];
		if (c->prev_cr) {
			c->prev_cr = 0;
			buf[o++] = '\r';
			buf[o++] = '\n';
			c->bol = 1;
			if (b == '\n')
				continue;
		}
		if (b == '\r') {
			c->prev_cr = 1;
			continue;
		}
		if (b == '\n') {
			buf[o++] = '\r';
			buf[o++] = '\n';
			c->bol = 1;
			continue;
		}
		if (c->bol && b == '.')
			buf[o++] = '.';
		buf[o++] = b;
		c->bol = 0;
	}
	int rc = evbuffer_add(x->out, buf, o);
	free(buf);
	return rc;
}

/* Fill the output up to BODY_HIGH; after the last chunk, the terminating dot. */
static void pump_body(struct smtp_client *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct stuff_ctx x = { c, out };

	while (!c->body_done && evbuffer_get_length(out) < BODY_HIGH) {
		int r = queue_read_chunk(c->up->d->queue, c->job->env->id, c->chunk, stuff_chunk, &x);
		if (r < 0) {
			fail(c, 451, "4.3.0", "cannot read the message from the queue");
			return;
		}
		if (r == 0) {
			if (c->prev_cr || !c->bol)
				evbuffer_add(out, "\r\n", 2);
			evbuffer_add(out, ".\r\n", 3);
			c->body_done = 1;
			c->state = C_DOT;
			set_timeout(c, T_DATA_END(c));
			bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
			return;
		}
		c->chunk++;
	}
}

/* ---- transaction ------------------------------------------------------- */

/* ORCPT and ENVID are stored as received (xtext): passed on unchanged. */
static void send_mail(struct smtp_client *c)
{
	const struct queue_envelope *env = c->job->env;
	struct evbuffer *out = bufferevent_get_output(c->bev);

	evbuffer_add_printf(out, "MAIL FROM:<%s>", env->sender);
	if (c->size)	/* RFC 1870: only to a server that offers SIZE */
		evbuffer_add_printf(out, " SIZE=%llu", (unsigned long long)env->size);
	if (c->eightbit && env->body == QUEUE_BODY_8BITMIME)
		evbuffer_add_printf(out, " BODY=8BITMIME");
	if (c->smtputf8 && env->smtputf8)
		evbuffer_add_printf(out, " SMTPUTF8");
	if (c->dsn && env->ret != QUEUE_RET_NONE)
		evbuffer_add_printf(out, " RET=%s", env->ret == QUEUE_RET_FULL ? "FULL" : "HDRS");
	if (c->dsn && env->envid)
		evbuffer_add_printf(out, " ENVID=%s", env->envid);
	evbuffer_add(out, "\r\n", 2);
}

static void send_rcpt(struct smtp_client *c, size_t i)
{
	const struct queue_rcpt *r = &c->job->env->rcpts[c->job->rcpts[i].index];
	struct evbuffer *out = bufferevent_get_output(c->bev);

	evbuffer_add_printf(out, "RCPT TO:<%s>", r->addr);
	if (c->dsn && r->notify) {
		char list[32];
		snprintf(list, sizeof list, "%s%s%s%s",
		    r->notify & QUEUE_NOTIFY_NEVER ? ",NEVER" : "",
		    r->notify & QUEUE_NOTIFY_SUCCESS ? ",SUCCESS" : "",
		    r->notify & QUEUE_NOTIFY_FAILURE ? ",FAILURE" : "",
		    r->notify & QUEUE_NOTIFY_DELAY ? ",DELAY" : "");
		evbuffer_add_printf(out, " NOTIFY=%s", list + 1);
	}
	if (c->dsn && r->orcpt)
		evbuffer_add_printf(out, " ORCPT=%s", r->orcpt);
	evbuffer_add(out, "\r\n", 2);
}

static int non_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

static int needs_utf8(const struct delivery_job *job)
{
	if (non_ascii(job->env->sender))
		return 1;
	for (size_t i = 0; i < job->nrcpts; i++)
		if (non_ascii(job->env->rcpts[job->rcpts[i].index].addr))
			return 1;
	return 0;
}

static void begin_job(struct smtp_client *c)
{
	struct delivery_job *job = c->job;

	snprintf(job->relay, sizeof job->relay, "%s", c->relay);
	job->t_ready = delivery_now();
	job->dsn_passed = c->dsn;
	if (c->size_limit && job->env->size > c->size_limit) {
		char why[160];
		snprintf(why, sizeof why, "message size %llu exceeds the upstream's limit of %llu "
		    "bytes (SIZE)", (unsigned long long)job->env->size,
		    (unsigned long long)c->size_limit);
		finish_job(c, 552, "5.3.4", why);
		c->state = C_IDLE;
		smtp_client_run(c, upstream_next_job(c->up));
		return;
	}
	if (job->env->smtputf8 && !c->smtputf8 && needs_utf8(job)) {
		/*
		 * RFC 6531 §3.4: non-ASCII addresses need SMTPUTF8 all the way.  Like
		 * Postfix, an ASCII envelope goes on without it even when asked for.
		 */
		finish_job(c, 553, "5.6.7", "the message needs SMTPUTF8 (non-ASCII addresses) "
		    "and the upstream does not offer it");
		c->state = C_IDLE;
		smtp_client_run(c, upstream_next_job(c->up));
		return;
	}
	c->rcpt_i = 0;
	c->accepted = 0;
	c->mail_failed = 0;
	c->chunk = 0;
	c->bol = 1;
	c->prev_cr = 0;
	c->body_done = 0;
	c->state = C_MAIL;
	set_timeout(c, T_COMMAND(c));
	send_mail(c);
	if (c->pipelining) {
		for (size_t i = 0; i < job->nrcpts; i++)
			send_rcpt(c, i);
		sendf(c, "DATA");
		c->sent_rcpts = job->nrcpts;
	} else {
		c->sent_rcpts = 0;
	}
}

/* After a transaction that ended early: RSET, then the next job. */
static void reset_after(struct smtp_client *c)
{
	c->state = C_RSET;
	set_timeout(c, T_COMMAND(c));
	sendf(c, "RSET");
}

static void mail_reply(struct smtp_client *c)
{
	struct delivery_job *job = c->job;
	if (c->reply.code / 100 != 2) {
		c->mail_failed = 1;
		c->fail = c->reply;
		for (size_t i = 0; i < job->nrcpts; i++)
			rcpt_result(&job->rcpts[i], c->reply.code, c->reply.dsn, c->reply.text);
		if (!c->pipelining) {
			finish_job(c, 0, "", "");
			reset_after(c);
			return;
		}
	}
	c->state = C_RCPT;
	if (!c->pipelining) {
		send_rcpt(c, 0);
		c->sent_rcpts = 1;
	}
}

static void rcpt_reply(struct smtp_client *c)
{
	struct delivery_job *job = c->job;
	struct job_rcpt *r = &job->rcpts[c->rcpt_i++];

	if (c->reply.code / 100 == 2 && !c->mail_failed) {
		r->accepted = 1;
		c->accepted++;
	} else {
		rcpt_result(r, c->reply.code, c->reply.dsn, c->reply.text);
	}
	if (c->rcpt_i < job->nrcpts) {
		if (!c->pipelining) {
			send_rcpt(c, c->sent_rcpts++);
		}
		return;
	}
	c->state = C_DATA;
	set_timeout(c, T_COMMAND(c));
	if (!c->pipelining) {
		if (c->accepted == 0) {
			finish_job(c, 0, "", "");
			reset_after(c);
			return;
		}
		sendf(c, "DATA");
	}
}

static void data_reply(struct smtp_client *c)
{
	if (c->reply.code == 354 && (c->accepted == 0 || c->mail_failed)) {
		/* RFC 2920 §3.1: DATA was accepted though nobody was: send an empty message. */
		evbuffer_add(bufferevent_get_output(c->bev), ".\r\n", 3);
		c->state = C_DOT;
		c->body_done = 1;
		return;
	}
	if (c->reply.code != 354) {
		if (c->accepted > 0)
			finish_job(c, c->reply.code, c->reply.dsn, c->reply.text);
		else
			finish_job(c, 0, "", "");
		reset_after(c);
		return;
	}
	c->state = C_BODY;
	set_timeout(c, T_COMMAND(c));
	bufferevent_setwatermark(c->bev, EV_WRITE, BODY_HIGH / 4, 0);
	pump_body(c);
}

static void dot_reply(struct smtp_client *c)
{
	struct delivery_job *job = c->job;
	for (size_t i = 0; i < job->nrcpts; i++)
		if (job->rcpts[i].accepted)
			rcpt_result(&job->rcpts[i], c->reply.code, c->reply.dsn, c->reply.text);
	int ok = c->accepted > 0 && !c->mail_failed;
	finish_job(c, 0, "", "");
	if (!ok) {
		reset_after(c);
		return;
	}
	c->state = C_IDLE;
	smtp_client_run(c, upstream_next_job(c->up));
}

/* ---- getting ready ----------------------------------------------------- */

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
		c->size = 1, c->size_limit = line[4] ? strtoull(line + 5, NULL, 10) : 0;
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
	set_timeout(c, T_COMMAND(c));
	sendf(c, "EHLO %s", hostname(c));
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
			fail(c, 451, "4.7.0", "cannot start SASL for AUTH");
			return;
		}
		if (auth_client_start(c->sasl, c->auth_mechs, &mech, &initial, err, sizeof err) < 0) {
			fail(c, 454, "4.7.0", "AUTH: %s", err);
			return;
		}
		c->auth_started = 1;
		c->state = C_AUTH;
		set_timeout(c, T_COMMAND(c));
		if (initial)
			sendf(c, "AUTH %s %s", mech, initial);
		else
			sendf(c, "AUTH %s", mech);
		return;
	}
	if (c->reply.code == 334) {
		const char *response;
		size_t n;
		const char *challenge = smtp_reply_line(&c->reply, 0, &n);
		char text[SMTP_REPLY_LINE_MAX];
		snprintf(text, sizeof text, "%.*s", (int)n, challenge ? challenge : "");
		if (auth_client_step(c->sasl, text, &response, err, sizeof err) < 0) {
			sendf(c, "*");
			fail(c, 454, "4.7.0", "AUTH: %s", err);
			return;
		}
		sendf(c, "%s", response);
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

	if (u->tls == CONF_TLS_STARTTLS && !c->tls) {
		if (!c->starttls) {
			fail(c, 454, "4.7.0", "the upstream does not offer STARTTLS (tls starttls "
			    "is configured: never sent in plaintext)");
			return;
		}
		c->state = C_STARTTLS;
		set_timeout(c, T_COMMAND(c));
		sendf(c, "STARTTLS");
		return;
	}
	if (u->user) {
		if (!c->auth_mechs[0]) {
			fail(c, 454, "4.7.0", "the upstream offers no AUTH (user %s is configured)",
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
	c->state = C_IDLE;
	log_debug("upstream %s: %s: ready%s%s", c->up->conf->name, c->relay,
	    c->tls ? ", TLS" : "", c->pipelining ? ", PIPELINING" : "");
	smtp_client_run(c, upstream_next_job(c->up));
}

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/* Swap the plain bufferevent for a TLS one on the same socket. */
static int start_tls(struct smtp_client *c, int fd)
{
	const struct conf_upstream *u = c->up->conf;
	SSL *ssl = SSL_new(c->up->tls);
	struct in6_addr ip;

	if (!ssl)
		return -1;
	SSL_set_tlsext_host_name(ssl, u->host);
	if (u->verify) {
		int literal = inet_pton(AF_INET, u->host, &ip) == 1 ||
		    inet_pton(AF_INET6, u->host, &ip) == 1;
		if (literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), u->host) != 1 :
		    SSL_set1_host(ssl, u->host) != 1) {
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
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->state = C_HANDSHAKE;
	set_timeout(c, T_COMMAND(c));
	return 0;
}

static void on_reply(struct smtp_client *c)
{
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
			sendf(c, "HELO %s", hostname(c));
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
		if (c->reply.code != 220) {
			fail_reply(c, "STARTTLS refused");
			return;
		}
		/* Anything the server sent after its 220 would be plaintext injection. */
		if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
			fail(c, 454, "4.7.0", "data after the STARTTLS reply (injection?)");
			return;
		}
		if (start_tls(c, bufferevent_getfd(c->bev)) < 0)
			fail(c, 454, "4.7.0", "cannot start TLS");
		return;
	case C_AUTH:
		auth_next(c);
		return;
	case C_MAIL:
		mail_reply(c);
		return;
	case C_RCPT:
		rcpt_reply(c);
		return;
	case C_DATA:
		data_reply(c);
		return;
	case C_DOT:
		dot_reply(c);
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
		fail(c, 421, "4.4.2", "unexpected reply: %s", c->reply.text);
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
			fail(c, 421, "4.5.0", "malformed reply from the upstream");
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
		pump_body(c);
	let_go(c);
}

static void try_connect(struct smtp_client *c);

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
				set_timeout(c, T_COMMAND(c));
			} else {
				send_ehlo(c);
			}
		} else {
			c->state = C_GREETING;
			set_timeout(c, T_COMMAND(c));
			if (c->up->conf->tls == CONF_TLS_IMPLICIT &&
			    start_tls(c, bufferevent_getfd(c->bev)) < 0)
				fail(c, 454, "4.7.0", "cannot start TLS");
		}
	} else if (c->state == C_HANDSHAKE && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))) {
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
		long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
		tls_errors(why, sizeof why);
		if (v != X509_V_OK)
			fail(c, 454, "4.7.5", "TLS: certificate verification failed: %s",
			    X509_verify_cert_error_string(v));
		else
			fail(c, 454, "4.7.0", "TLS handshake failed: %s", why[0] ? why :
			    "connection closed");
	} else if (c->state == C_CONNECT && (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))) {
		int err = EVUTIL_SOCKET_ERROR();
		log_info("upstream %s: connect to %s: %s", c->up->conf->name, c->relay,
		    what & BEV_EVENT_TIMEOUT ? "timed out" : evutil_socket_error_to_string(err));
		snprintf(why, sizeof why, "connect to %s: %s", c->relay,
		    what & BEV_EVENT_TIMEOUT ? "timed out" : evutil_socket_error_to_string(err));
		if (c->addr && c->addr->ai_next) {
			c->addr = c->addr->ai_next;
			try_connect(c);
		} else {
			fail(c, 451, "4.4.1", "%s", why);
		}
	} else if (c->state == C_QUIT || (c->state == C_IDLE && !c->job)) {
		client_free(c);		/* nothing was waiting for it */
	} else if (what & BEV_EVENT_TIMEOUT) {
		fail(c, 421, "4.4.2", "conversation timed out %s", state_what(c->state));
	} else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		fail(c, 421, "4.4.2", "lost connection %s", state_what(c->state));
	}
	let_go(c);
}

/* ---- connecting -------------------------------------------------------- */

static void try_connect(struct smtp_client *c)
{
	const struct conf_upstream *u = c->up->conf;
	char ip[INET6_ADDRSTRLEN] = "?";
	const struct sockaddr *sa = c->addr->ai_addr;

	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, ip,
		    sizeof ip);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, ip,
		    sizeof ip);
	snprintf(c->relay, sizeof c->relay, "%s[%s]:%u", u->host, ip, u->port);
	if (c->bev)
		bufferevent_free(c->bev);
	c->bev = bufferevent_socket_new(c->up->d->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		fail(c, 451, "4.3.0", "out of memory");
		return;
	}
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->state = C_CONNECT;
	set_timeout(c, T_CONNECT(c));
	if (bufferevent_socket_connect(c->bev, c->addr->ai_addr, (int)c->addr->ai_addrlen) < 0) {
		int err = EVUTIL_SOCKET_ERROR();
		if (c->addr->ai_next) {
			c->addr = c->addr->ai_next;
			try_connect(c);
			return;
		}
		fail(c, 451, "4.4.1", "connect to %s: %s", c->relay,
		    evutil_socket_error_to_string(err));
	}
}

static void resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct dns_wait *w = arg;
	struct smtp_client *c = w->c;

	free(w);
	if (!c) {
		if (res)
			evutil_freeaddrinfo(res);
		return;
	}
	c->dns = NULL;
	c->dns_req = NULL;
	hold(c);
	if (result != 0 || !res) {
		fail(c, 451, "4.4.3", "cannot resolve %s: %s", c->up->conf->host,
		    evutil_gai_strerror(result));
	} else {
		c->addrs = c->addr = res;
		try_connect(c);
	}
	let_go(c);
}

int smtp_client_open(struct upstream *up)
{
	struct smtp_client *c = calloc(1, sizeof *c);
	struct evutil_addrinfo hints = { 0 };
	char port[8];

	if (!c)
		return -1;
	c->up = up;
	up->nconn++;
	c->next_conn = up->conns;
	up->conns = c;
	c->state = C_RESOLVE;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	snprintf(port, sizeof port, "%u", up->conf->port);
	if (!(c->dns = calloc(1, sizeof *c->dns))) {
		client_free(c);
		return -1;
	}
	c->dns->c = c;
	hold(c);
	/* The callback may run before this returns (a literal address, /etc/hosts). */
	struct dns_wait *w = c->dns;
	struct evdns_getaddrinfo_request *req = evdns_getaddrinfo(up->d->dns, up->conf->host,
	    port, &hints, resolved, w);
	if (req && c->dns == w)
		c->dns_req = req;
	let_go(c);
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
	set_timeout(c, T_COMMAND(c));
	sendf(c, "QUIT");
}

void smtp_client_run(struct smtp_client *c, struct delivery_job *job)
{
	if (c->idle_timer)
		evtimer_del(c->idle_timer);
	unidle(c);
	if (job) {
		c->job = job;
		job->t_assigned = job->t_assigned ? job->t_assigned : delivery_now();
		begin_job(c);
		return;
	}
	if (c->up->d->stopping) {
		c->state = C_QUIT;
		sendf(c, "QUIT");
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
		finish_job(c, JOB_UNDECIDED, "", "");
		client_free(c);
	}
}

void smtp_client_free_all(struct upstream *up)
{
	while (up->conns) {
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
	if (c->dns) {
		c->dns->c = NULL;
		if (c->dns_req)
			evdns_getaddrinfo_cancel(c->dns_req);
	}
	if (c->addrs)
		evutil_freeaddrinfo(c->addrs);
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
