/*
 * smtp_auth — SMTP AUTH (RFC 4954) in the server session: the AUTH command,
 * the 334 exchange, and who may relay.  Passwords are checked by auth/
 * (Cyrus SASL); this file only speaks SMTP about it.  Every failure's answer
 * waits a while (longer for an address that keeps failing), and after
 * auth_max_failures the session ends: a password cannot be guessed quickly.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/auth.h"
#include "relayd/log.h"
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

void smtp_auth_reset(struct smtp_session *s)
{
	auth_session_free(s->auth);
	s->auth = NULL;
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

/* The delayed answer to a failure is due. */
static void delay_done(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	(void)fd, (void)what;
	s->auth_waiting = 0;
	if (s->state == SMTP_CLOSING)	/* stopping: the 421 is already on its way */
		return;
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
	if (s->auth_delay)
		event_free(s->auth_delay);
	s->auth_delay = NULL;
}

/* Answer a failure only after the penalty; the session reads nothing meanwhile. */
static void fail_slowly(struct smtp_session *s, int code, const char *enh, const char *text)
{
	struct server *srv = s->srv;
	time_t now = time(NULL);
	unsigned ms = auth_penalty_delay_ms(srv->auth_penalty, s->client_addr, now);
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	char why[300];

	if (!s->auth_delay && !(s->auth_delay = evtimer_new(srv->base, delay_done, s))) {
		smtp_reply(s, code, enh, "%s", text);
		smtp_reply(s, REPLY_AUTH_TOO_MANY);
		return;
	}
	s->auth_reply.code = code;
	s->auth_reply.enh = enh;
	s->auth_reply.text = text;
	auth_penalty_failed(srv->auth_penalty, s->client_addr, now);
	log_info("authentication failed from [%s]:%u: mechanism=%s: %s (failure %u, "
	    "answer delayed %u ms)", s->client_addr, s->client_port, s->auth_mech,
	    detail(s, why, sizeof why), s->auth_failures + 1, ms);
	/* A new exchange starts from scratch: Cyrus' state after a failure is spent. */
	auth_session_free(s->auth);
	s->auth = NULL;
	if (++s->auth_failures >= srv->conf->auth_max_failures)
		s->auth_delayed_close = 1;
	s->auth_waiting = 1;
	bufferevent_disable(s->bev, EV_READ);
	evtimer_add(s->auth_delay, &tv);
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
	auth_session_free(s->auth);
	s->auth = NULL;
}

void smtp_auth_command(struct smtp_session *s, const char *args)
{
	const struct config *conf = s->srv->conf;
	char mech[sizeof s->auth_mech];
	const char *initial = NULL, *challenge = NULL;

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
	size_t n = strcspn(args, " ");
	if (n == 0) {
		smtp_reply_error(s, REPLY_AUTH_SYNTAX);
		return;
	}
	if (n >= sizeof mech) {
		smtp_reply_error(s, REPLY_AUTH_NOMECH);
		return;
	}
	memcpy(mech, args, n);
	mech[n] = '\0';
	if (args[n] == ' ') {
		initial = args + n + 1;
		if (!*initial || strchr(initial, ' ')) {
			smtp_reply_error(s, REPLY_AUTH_SYNTAX);
			return;
		}
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
	for (char *c = mech; *c; c++)
		if (*c >= 'a' && *c <= 'z')
			*c = (char)(*c - 'a' + 'A');
	memcpy(s->auth_mech, mech, sizeof mech);
	answer(s, auth_session_start(s->auth, mech, initial, &challenge), challenge);
}

void smtp_auth_response(struct smtp_session *s, const char *line)
{
	const char *challenge = NULL;
	answer(s, auth_session_step(s->auth, line, &challenge), challenge);
}
