/*
 * smtp_auth — SMTP AUTH (RFC 4954) in the server session: the AUTH command,
 * the 334 exchange, and who may relay.  Passwords are checked by auth/
 * (Cyrus SASL) on its worker thread; this file only speaks SMTP about it.
 * While the worker checks, the session reads nothing; a check that takes
 * longer than auth_timeout is answered 454.  Every failure's answer waits a
 * while (longer for an address that keeps failing), and after
 * auth_max_failures the session ends: a password cannot be guessed quickly.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/auth.h"
#include "relayd/log.h"
#include "relayd/metrics.h"
#include "relayd/smtp_parse.h"
#include "relayd/smtp_session.h"

const char *smtp_auth_offer(struct smtp_session *s)
{
	const struct config *conf = s->srv->conf;
	if (!s->srv->auth || s->auth_user || (conf->auth_require_tls && !s->tls))
		return NULL;
	return conf->auth_mechanisms;
}

int smtp_auth_may_relay(const struct smtp_session *s)
{
	return s->relay_ok || s->auth_user != NULL;
}

/* The Cyrus exchange is over: a new AUTH starts from a fresh one. */
void smtp_auth_drop(struct smtp_session *s)
{
	if (s->auth)
		auth_worker_release(s->srv->auth_worker, s->auth);
	s->auth = NULL;
	s->auth_exchange = 0;
}

void smtp_auth_reset(struct smtp_session *s)
{
	smtp_auth_drop(s);
	free(s->auth_user);
	s->auth_user = NULL;
	s->auth_exchange = 0;
}

/* "IP;PORT" of our end, as Cyrus wants it. */
static void local_address(struct smtp_session *s, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char ip[INET6_ADDRSTRLEN] = "0.0.0.0";
	unsigned port = 0;

	if (getsockname(bufferevent_getfd(s->bev), (struct sockaddr *)&ss, &len) == 0)
		smtp_format_addr((struct sockaddr *)&ss, ip, sizeof ip, &port);
	snprintf(out, outlen, "%s;%u", ip, port);
}

/* Cyrus' words about a failure, escaped: they may quote the user name the client gave. */
static const char *detail(struct smtp_session *s, char *out, size_t outlen)
{
	const char *d = s->auth ? auth_session_detail(s->auth) : NULL;
	return d ? log_escape(out, outlen, d, strlen(d)) : "";
}

/* The backend has not answered within auth_timeout: the client may retry later. */
static void backend_timeout(struct smtp_session *s)
{
	log_warn("authentication backend did not answer within %us for [%s]:%u: "
	    "mechanism=%s", s->srv->conf->auth_timeout, s->client_addr, s->client_port,
	    s->auth_mech);
	s->auth_busy = 0;
	s->auth_waiting = 0;
	smtp_auth_drop(s);
	smtp_reply(s, REPLY_AUTH_TEMPFAIL);
	smtp_session_resume(s);
}

/* The timer: either the backend's time is up, or a failure's delayed answer is due. */
static void timer_done(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	(void)fd, (void)what;
	if (s->state == SMTP_CLOSING) {	/* stopping: the 421 is already on its way */
		s->auth_waiting = 0;
		return;
	}
	if (s->auth_busy) {
		backend_timeout(s);
		return;
	}
	s->auth_waiting = 0;
	smtp_reply(s, s->auth_reply.code, s->auth_reply.enh, "%s", s->auth_reply.text);
	if (s->auth_delayed_close) {
		smtp_reply(s, REPLY_AUTH_TOO_MANY);
		return;
	}
	smtp_session_resume(s);
}

void smtp_auth_free(struct smtp_session *s)
{
	smtp_auth_reset(s);
	if (s->auth_timer)
		event_free(s->auth_timer);
	s->auth_timer = NULL;
}

static int timer_ready(struct smtp_session *s)
{
	return s->auth_timer || (s->auth_timer = evtimer_new(s->srv->base, timer_done, s));
}

/* Answer a failure only after the penalty; the session reads nothing meanwhile. */
static void fail_slowly(struct smtp_session *s, int code, const char *enh, const char *text)
{
	struct server *srv = s->srv;
	time_t now = time(NULL);
	unsigned ms = auth_penalty_delay_ms(srv->auth_penalty, s->client_key, now);
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	char why[300];

	if (!timer_ready(s)) {
		smtp_reply(s, code, enh, "%s", text);
		smtp_reply(s, REPLY_AUTH_TOO_MANY);
		return;
	}
	s->auth_reply.code = code;
	s->auth_reply.enh = enh;
	s->auth_reply.text = text;
	auth_penalty_failed(srv->auth_penalty, s->client_key, now);
	metrics.refused[METRICS_REFUSED_AUTH]++;
	log_info("authentication failed from [%s]:%u: mechanism=%s: %s (failure %u, "
	    "answer delayed %u ms)", s->client_addr, s->client_port, s->auth_mech,
	    detail(s, why, sizeof why), s->auth_failures + 1, ms);
	/* A new exchange starts from scratch: Cyrus' state after a failure is spent. */
	smtp_auth_drop(s);
	if (++s->auth_failures >= srv->conf->auth_max_failures)
		s->auth_delayed_close = 1;
	s->auth_waiting = 1;
	bufferevent_disable(s->bev, EV_READ);
	evtimer_add(s->auth_timer, &tv);
}

static void answer(struct smtp_session *s, enum auth_result r, const char *challenge)
{
	char why[300];
	s->auth_exchange = r == AUTH_CONTINUE;
	switch (r) {
	case AUTH_CONTINUE:
		smtp_reply(s, 334, "", "%s", challenge ? challenge : "");
		return;
	case AUTH_OK: {
		const char *user = auth_session_user(s->auth);
		char esc[512];
		s->auth_user = strdup(user ? user : "");
		log_info("[%s]:%u: login: method=%s, sasl_username=%s", s->client_addr,
		    s->client_port, s->auth_mech,
		    log_escape(esc, sizeof esc, s->auth_user ? s->auth_user : "",
		    s->auth_user ? strlen(s->auth_user) : 0));
		smtp_reply(s, REPLY_AUTH_OK);
		return;
	}
	case AUTH_FAILED:
		/* The same words for a bad password and an unknown user. */
		fail_slowly(s, REPLY_AUTH_FAILED);
		return;
	case AUTH_TEMPFAIL:
		/* 454, never 535: a Postfix client would bounce its user's mail on a 5xx. */
		log_warn("authentication backend failure for [%s]:%u: mechanism=%s: %s",
		    s->client_addr, s->client_port, s->auth_mech, detail(s, why, sizeof why));
		smtp_reply(s, REPLY_AUTH_TEMPFAIL);
		break;
	case AUTH_NOMECH:
		smtp_reply_error(s, REPLY_AUTH_NOMECH);
		break;
	case AUTH_MALFORMED:
		fail_slowly(s, REPLY_AUTH_MALFORMED);
		return;
	case AUTH_CANCELLED:
		smtp_reply_error(s, REPLY_AUTH_CANCELLED);
		break;
	case AUTH_TOOWEAK:
		smtp_reply_error(s, REPLY_AUTH_TOOWEAK);
		break;
	}
	smtp_auth_drop(s);
}

/* The worker has Cyrus' answer. */
static void worker_done(void *arg, enum auth_result r, const char *challenge)
{
	struct smtp_session *s = arg;

	s->auth_busy = 0;
	s->auth_waiting = 0;
	evtimer_del(s->auth_timer);
	if (s->state == SMTP_CLOSING)
		return;
	answer(s, r, challenge);
	if (!s->auth_waiting && s->state != SMTP_CLOSING)
		smtp_session_resume(s);
}

/* Hand the exchange to the worker; the session reads nothing until it answers. */
static void ask_worker(struct smtp_session *s, const char *mech, const char *text)
{
	struct server *srv = s->srv;
	struct timeval tv = { .tv_sec = srv->conf->auth_timeout, .tv_usec = 0 };
	int r;

	if (!timer_ready(s))
		r = -1;
	else if (mech)
		r = auth_worker_start(srv->auth_worker, s->auth, mech, text, worker_done, s);
	else
		r = auth_worker_step(srv->auth_worker, s->auth, text, worker_done, s);
	if (r < 0) {
		smtp_auth_drop(s);
		smtp_reply(s, REPLY_AUTH_TEMPFAIL);
		return;
	}
	s->auth_exchange = 0;
	s->auth_busy = 1;
	s->auth_waiting = 1;
	bufferevent_disable(s->bev, EV_READ);
	evtimer_add(s->auth_timer, &tv);
}

void smtp_auth_command(struct smtp_session *s, const char *args)
{
	const struct config *conf = s->srv->conf;
	char mech[sizeof s->auth_mech];
	const char *initial = NULL;

	if (!s->srv->auth) {
		smtp_reply_error(s, REPLY_NOT_IMPLEMENTED);
		return;
	}
	if (s->auth_user) {
		smtp_reply_error(s, REPLY_AUTH_TWICE);
		return;
	}
	if (conf->auth_require_tls && !s->tls) {
		smtp_reply_error(s, REPLY_AUTH_NEED_TLS);
		return;
	}
	switch (smtp_parse_auth(args, mech, sizeof mech, &initial)) {
	case SMTP_PARSE_OK:
		break;
	case SMTP_PARSE_UNKNOWN_PARAM:
		smtp_reply_error(s, REPLY_AUTH_NOMECH);
		return;
	default:
		smtp_reply_error(s, REPLY_AUTH_SYNTAX);
		return;
	}
	if (!s->auth) {
		char local[80], remote[80];
		local_address(s, local, sizeof local);
		snprintf(remote, sizeof remote, "%s;%u", s->client_addr, s->client_port);
		s->auth = auth_session_new(s->srv->auth, local, remote, s->tls_bits);
		if (!s->auth) {
			smtp_reply(s, REPLY_AUTH_TEMPFAIL);
			return;
		}
	}
	memcpy(s->auth_mech, mech, sizeof mech);
	ask_worker(s, mech, initial);
}

void smtp_auth_response(struct smtp_session *s, const char *line)
{
	ask_worker(s, NULL, line);
}
