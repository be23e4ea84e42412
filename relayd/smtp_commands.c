/*
 * smtp_commands — one function per SMTP command, and the table that says in
 * which states each is allowed and how long its line may be.  The 503 for a
 * command out of sequence comes from bad_sequence() alone.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"
#include "relayd/log.h"
#include "relayd/metrics.h"
#include "relayd/smtp_parse.h"
#include "relayd/smtp_session.h"
#include "routes/routes.h"

#define IN(state) (1u << (state))
#define SESSION_STATES (IN(SMTP_HELO) | IN(SMTP_IDLE) | IN(SMTP_MAIL) | IN(SMTP_RCPT))

enum { CMD_NO_ARGS = 1 << 0, CMD_UTF8_ARGS = 1 << 1 };

struct smtp_command {
	const char *verb;
	void (*run)(struct smtp_session *s, const char *args);
	unsigned states;	/* IN(...) bits where the command is in sequence */
	unsigned flags;
	size_t max_line;	/* with CRLF */
};

/* EHLO and HELO both start over: any transaction is dropped (RFC 5321 §4.1.4). */
static int cmd_ehlo_common(struct smtp_session *s, const char *args, int esmtp)
{
	if (!*args) {
		smtp_reply_error(s, REPLY_SYNTAX_HELO);
		return -1;
	}
	smtp_session_reset(s);
	log_escape(s->helo, sizeof s->helo, args, strlen(args));
	s->esmtp = esmtp;
	smtp_session_enter(s, SMTP_IDLE);
	return 0;
}

static void cmd_ehlo(struct smtp_session *s, const char *args)
{
	const struct config *conf = s->srv->conf;
	struct evbuffer *out = bufferevent_get_output(s->bev);
	if (cmd_ehlo_common(s, args, 1) < 0)
		return;
	evbuffer_add_printf(out,
	    "250-%s\r\n"
	    "250-PIPELINING\r\n"
	    "250-SIZE %llu\r\n"
	    "250-8BITMIME\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n"
	    "250-DSN\r\n",
	    conf->hostname, (unsigned long long)conf->max_message_size);
	if (s->srv->tls_ctx && !s->tls)
		evbuffer_add_printf(out, "250-STARTTLS\r\n");
	const char *mechs = smtp_auth_offer(s);
	if (mechs)
		evbuffer_add_printf(out, "250-AUTH %s\r\n", mechs);
	evbuffer_add_printf(out, "250 SMTPUTF8\r\n");
}

static void cmd_helo(struct smtp_session *s, const char *args)
{
	if (cmd_ehlo_common(s, args, 0) == 0)
		smtp_reply(s, 250, "", "%s", s->srv->conf->hostname);
}

/* Answer a MAIL or RCPT the parser refused; 0 when it was fine. */
static int parse_failed(struct smtp_session *s, enum smtp_parse_status st, int mail,
    const char *bad_param)
{
	switch (st) {
	case SMTP_PARSE_OK:
		return 0;
	case SMTP_PARSE_SYNTAX:
		if (mail)
			smtp_reply_error(s, REPLY_SYNTAX_MAIL);
		else
			smtp_reply_error(s, REPLY_SYNTAX_RCPT);
		break;
	case SMTP_PARSE_BAD_ADDRESS:
		if (mail)
			smtp_reply_error(s, REPLY_BAD_SENDER);
		else
			smtp_reply_error(s, REPLY_BAD_RCPT);
		break;
	case SMTP_PARSE_NEED_UTF8:
		smtp_reply_error(s, REPLY_NEED_UTF8);
		break;
	case SMTP_PARSE_UNKNOWN_PARAM:
		smtp_reply_error(s, 555, "5.5.4", "Unsupported option: %s", bad_param);
		break;
	case SMTP_PARSE_BAD_PARAM:
		smtp_reply_error(s, 501, "5.5.4", "Bad %s parameter", bad_param);
		break;
	}
	return 1;
}

/*
 * The sender rules (deny_sender, sender_login: auth/sender.c) for this
 * client and sender.  1 after the 553 and its log line, 0 when it may go on.
 */
static int sender_refused(struct smtp_session *s, const char *sender)
{
	const struct config *conf = s->srv->conf;
	const struct conf_sender_rule *rule;
	char ascii[1024];

	/* Rules hold domains in A-labels; too long to convert, it is compared as written. */
	if (routes_address_ascii(sender, ascii, sizeof ascii) < 0)
		snprintf(ascii, sizeof ascii, "%s", sender);
	enum auth_sender_result r = auth_sender_check(conf, s->auth_user, ascii, &rule);
	if (r == AUTH_SENDER_OK)
		return 0;
	metrics.refused[METRICS_REFUSED_SENDER]++;

	char from[SMTP_ADDR_MAX * 4 + 1], user[256] = "";	/* longer logins end in "..." */
	log_escape(from, sizeof from, sender, strlen(sender));
	if (s->auth_user)
		log_escape(user, sizeof user, s->auth_user, strlen(s->auth_user));
	if (r == AUTH_SENDER_DENIED) {
		int code = smtp_reply_policy(s, 1, 553, "5.7.1",
		    "Sender address rejected: Access denied");
		log_info("reject: MAIL from [%s]:%u: %d %d.7.1 Sender address rejected: Access "
		    "denied; from=<%s>%s%s, rule=deny_sender %s:%d%s", s->client_addr,
		    s->client_port, code, code / 100, from, s->auth_user ? ", sasl_username=" : "",
		    user, rule->file ? rule->file : conf->path, rule->line,
		    code / 100 == 4 ? " (soft_bounce)" : "");
		return 1;
	}
	int code = smtp_reply_policy(s, 1, 553, "5.7.1", "<%s>: Sender address rejected: not "
	    "owned by user %s", sender, user);
	log_info("reject: MAIL from [%s]:%u: %d %d.7.1 <%s>: Sender address rejected: not owned "
	    "by user %s; from=<%s>, sasl_username=%s%s%s", s->client_addr, s->client_port, code,
	    code / 100, from, user, from, user, r == AUTH_SENDER_NO_ENTRY ?
	    ", rule=sender_login_strict (no sender_login entry)" : "",
	    code / 100 == 4 ? " (soft_bounce)" : "");
	return 1;
}

/* "limit=limit_user 2/minute, user=bob, sent=2, pending=0, room_in=45s" for a log line. */
static const char *limit_log(const struct auth_limit_over *o, const char *key, char *buf,
    size_t len)
{
	char esc[AUTH_RATE_KEY_MAX * 4 + 1];
	snprintf(buf, len, "limit=%s %u/%s, %s=%s, sent=%u, pending=%u, room_in=%us", o->name,
	    o->limit, o->window == 60 ? "minute" : "hour", o->by_user ? "user" : "address",
	    log_escape(esc, sizeof esc, key, strlen(key)), o->count, o->reserved, o->wait);
	return buf;
}

/*
 * limit_user and limit_client (auth/limits.c): 1 after the 450 and its log
 * line; 0 when the message is reserved in s->limit_hold and may go on.  The
 * 450 counts as an error, so a client that keeps trying in one session is
 * cut off at max_errors; the sending MTA keeps the mail and tries later.
 */
static int mail_over_limit(struct smtp_session *s, const char *sender)
{
	const struct config *conf = s->srv->conf;
	struct auth_limit_over o;

	s->limit_rcpt_logged = 0;
	if (auth_limits_mail(s->srv->limits, conf, &s->limit_hold, s->auth_user, s->client_key,
	    auth_limit_exempt(conf, (const struct sockaddr *)&s->addr), server_limits_clock(),
	    &o) == AUTH_LIMIT_OK)
		return 0;

	const char *unit = o.window == 60 ? "minute" : "hour";
	char from[SMTP_ADDR_MAX * 4 + 1], user[256] = "", detail[AUTH_RATE_KEY_MAX * 4 + 160];
	log_escape(from, sizeof from, sender, strlen(sender));
	if (s->auth_user)
		log_escape(user, sizeof user, s->auth_user, strlen(s->auth_user));
	limit_log(&o, o.by_user ? s->limit_hold.user : s->client_key, detail, sizeof detail);
	const char *whose = o.by_user ? "this login" : "your address";
	metrics.refused[METRICS_REFUSED_RATE]++;
	log_info("reject: MAIL from [%s]:%u: 450 4.7.1 Message rate limit exceeded for %s; "
	    "from=<%s>%s%s, %s", s->client_addr, s->client_port, whose, from,
	    s->auth_user ? ", sasl_username=" : "", user, detail);
	smtp_reply_error(s, REPLY_RATE_LIMIT, "Message", whose, o.name, o.limit, unit);
	return 1;
}

/*
 * limit_rcpt: 1 after the 450, 0 when the recipient is reserved.  Not an
 * error, as 452 too many recipients is not (RFC 5321 §4.5.3.1.10): the
 * client sends the message to the recipients accepted so far and the rest
 * later, and a long list must not end the session.  Logged once per
 * transaction.
 */
static int rcpt_over_limit(struct smtp_session *s, const char *rcpt)
{
	const struct config *conf = s->srv->conf;
	struct auth_limit_over o;

	if (auth_limits_rcpt(s->srv->limits, conf, &s->limit_hold, server_limits_clock(),
	    &o) == AUTH_LIMIT_OK)
		return 0;
	const char *whose = o.by_user ? "this login" : "your address";
	metrics.refused[METRICS_REFUSED_RATE]++;
	if (!s->limit_rcpt_logged) {
		char to[SMTP_ADDR_MAX * 4 + 1], from[SMTP_ADDR_MAX * 4 + 1], user[256] = "";
		char detail[AUTH_RATE_KEY_MAX * 4 + 160];
		log_escape(to, sizeof to, rcpt, strlen(rcpt));
		log_escape(from, sizeof from, s->env->sender, strlen(s->env->sender));
		if (s->auth_user)
			log_escape(user, sizeof user, s->auth_user, strlen(s->auth_user));
		log_info("reject: RCPT from [%s]:%u: 450 4.7.1 <%s>: Recipient rate limit exceeded "
		    "for %s; from=<%s>%s%s, %s (more in this transaction not logged)",
		    s->client_addr, s->client_port, to, whose, from,
		    s->auth_user ? ", sasl_username=" : "", user,
		    limit_log(&o, o.by_user ? s->limit_hold.user : s->client_key, detail,
		    sizeof detail));
		s->limit_rcpt_logged = 1;
	}
	smtp_reply(s, REPLY_RATE_LIMIT, "Recipient", whose, o.name, o.limit,
	    o.window == 60 ? "minute" : "hour");
	return 1;
}

static void cmd_mail(struct smtp_session *s, const char *args)
{
	const struct config *conf = s->srv->conf;
	struct smtp_mail_args m;

	if (parse_failed(s, smtp_parse_mail(args, &m), 1, m.bad_param))
		return;
	if (m.size_given && m.size > conf->max_message_size) {
		smtp_reply(s, REPLY_SIZE_EXCEEDED);
		return;
	}
	if (sender_refused(s, m.addr))
		return;

	struct queue_envelope *env = queue_envelope_new();
	if (!env || !(env->sender = strdup(m.addr)) ||
	    (m.envid[0] && !(env->envid = strdup(m.envid))) ||
	    !(env->client_addr = strdup(s->client_addr)) || !(env->helo = strdup(s->helo)) ||
	    (s->auth_user && !(env->auth_user = strdup(s->auth_user)))) {
		queue_envelope_free(env);
		smtp_reply(s, 451, "4.3.0", "Error: out of memory");
		return;
	}
	env->ret = m.ret == SMTP_RET_FULL ? QUEUE_RET_FULL :
	    m.ret == SMTP_RET_HDRS ? QUEUE_RET_HDRS : QUEUE_RET_NONE;
	env->body = m.body == SMTP_BODY_8BITMIME ? QUEUE_BODY_8BITMIME : QUEUE_BODY_7BIT;
	env->smtputf8 = m.smtputf8;
	if (mail_over_limit(s, m.addr)) {
		queue_envelope_free(env);
		return;
	}
	s->env = env;
	smtp_session_enter(s, SMTP_MAIL);
	smtp_reply(s, 250, "2.1.0", "Ok");
}

static void cmd_rcpt(struct smtp_session *s, const char *args)
{
	const struct config *conf = s->srv->conf;
	struct smtp_rcpt_args r;

	if (parse_failed(s, smtp_parse_rcpt(args, s->env->smtputf8, &r), 0, r.bad_param))
		return;
	if (!smtp_auth_may_relay(s)) {
		char esc[SMTP_ADDR_MAX * 4 + 1];
		log_escape(esc, sizeof esc, r.addr, strlen(r.addr));
		if (s->srv->auth) {	/* it could log in: say so (RFC 4954 §6) */
			log_info("reject: RCPT from [%s]:%u: 530 5.7.0 <%s>: Authentication required",
			    s->client_addr, s->client_port, esc);
			smtp_reply_error(s, REPLY_AUTH_REQUIRED);
		} else {
			log_info("reject: RCPT from [%s]:%u: 554 5.7.1 <%s>: Relay access denied",
			    s->client_addr, s->client_port, esc);
			smtp_reply_error(s, 554, "5.7.1", "<%s>: Relay access denied", r.addr);
			metrics.refused[METRICS_REFUSED_RELAY]++;
		}
		return;
	}
	if (r.postmaster)	/* RFC 5321 §4.5.1: always taken, for the configured one */
		snprintf(r.addr, sizeof r.addr, "%s", conf->postmaster);
	/*
	 * With routes configured, a recipient none of them covers is refused now,
	 * so the submitting MTA returns it at once with our words, instead of
	 * relayd bouncing it later (without any route, mail only waits: see
	 * delivery_start's warning).
	 */
	if (conf->nroutes > 0 && !routes_find(conf, r.addr, s->env->sender)) {
		char esc[SMTP_ADDR_MAX * 4 + 1], from[SMTP_ADDR_MAX * 4 + 1];
		log_escape(esc, sizeof esc, r.addr, strlen(r.addr));
		log_escape(from, sizeof from, s->env->sender, strlen(s->env->sender));
		metrics.refused[METRICS_REFUSED_NO_ROUTE]++;
		int code = smtp_reply_policy(s, 0, 550, "5.4.4", "<%s>: no route to this domain here "
		    "(relayd.conf)", r.addr);
		log_info("reject: RCPT from [%s]:%u: %d %c.4.4 <%s>: no route; from=<%s>%s",
		    s->client_addr, s->client_port, code, '0' + code / 100, esc, from,
		    code / 100 == 4 ? " (soft_bounce)" : "");
		return;
	}
	/* Not an error: RFC 5321 §4.5.3.1.10, the client sends the rest later. */
	if (s->env->nrcpts >= conf->max_recipients) {
		smtp_reply(s, REPLY_TOO_MANY_RCPTS);
		return;
	}
	if (rcpt_over_limit(s, r.addr))
		return;
	unsigned notify = (r.notify & SMTP_NOTIFY_NEVER ? QUEUE_NOTIFY_NEVER : 0) |
	    (r.notify & SMTP_NOTIFY_SUCCESS ? QUEUE_NOTIFY_SUCCESS : 0) |
	    (r.notify & SMTP_NOTIFY_FAILURE ? QUEUE_NOTIFY_FAILURE : 0) |
	    (r.notify & SMTP_NOTIFY_DELAY ? QUEUE_NOTIFY_DELAY : 0);
	if (queue_envelope_add_rcpt(s->env, r.addr, r.orcpt[0] ? r.orcpt : NULL, notify) < 0) {
		smtp_reply(s, 451, "4.3.0", "Error: out of memory");	/* the commit counts nrcpts */
		return;
	}
	smtp_session_enter(s, SMTP_RCPT);
	smtp_reply(s, 250, "2.1.5", "Ok");
}

static void cmd_data(struct smtp_session *s, const char *args)
{
	(void)args;
	smtp_data_begin(s);
}

static void cmd_rset(struct smtp_session *s, const char *args)
{
	(void)args;
	smtp_session_reset(s);
	smtp_reply(s, REPLY_OK);
}

static void cmd_noop(struct smtp_session *s, const char *args)
{
	(void)args;
	smtp_reply(s, REPLY_OK);
}

static void cmd_quit(struct smtp_session *s, const char *args)
{
	(void)args;
	smtp_reply(s, REPLY_BYE);
	smtp_session_close(s);
}

static void cmd_vrfy(struct smtp_session *s, const char *args)
{
	if (!*args)
		smtp_reply_error(s, REPLY_SYNTAX_VRFY);
	else
		smtp_reply(s, REPLY_VRFY);
}

static void cmd_starttls(struct smtp_session *s, const char *args)
{
	(void)args;
	if (!s->srv->tls_ctx) {
		smtp_reply_error(s, REPLY_NOT_IMPLEMENTED);
		return;
	}
	if (s->tls) {
		smtp_reply_error(s, REPLY_TLS_ACTIVE);
		return;
	}
	smtp_reply(s, REPLY_TLS_GO);
	smtp_session_starttls(s);
}

static void cmd_help(struct smtp_session *s, const char *args)
{
	(void)args;
	smtp_reply(s, REPLY_HELP);
}

static void cmd_not_implemented(struct smtp_session *s, const char *args)
{
	(void)args;
	smtp_reply_error(s, REPLY_NOT_IMPLEMENTED);
}

static const struct smtp_command commands[] = {
	{ "EHLO", cmd_ehlo, SESSION_STATES, 0, SMTP_CMD_LINE_MAX },
	{ "HELO", cmd_helo, SESSION_STATES, 0, SMTP_CMD_LINE_MAX },
	{ "MAIL", cmd_mail, IN(SMTP_IDLE), CMD_UTF8_ARGS, SMTP_MAIL_LINE_MAX },
	{ "RCPT", cmd_rcpt, IN(SMTP_MAIL) | IN(SMTP_RCPT), CMD_UTF8_ARGS, SMTP_RCPT_LINE_MAX },
	{ "DATA", cmd_data, IN(SMTP_RCPT), CMD_NO_ARGS, SMTP_CMD_LINE_MAX },
	{ "RSET", cmd_rset, SESSION_STATES, CMD_NO_ARGS, SMTP_CMD_LINE_MAX },
	{ "NOOP", cmd_noop, SESSION_STATES, 0, SMTP_CMD_LINE_MAX },
	{ "QUIT", cmd_quit, SESSION_STATES, CMD_NO_ARGS, SMTP_CMD_LINE_MAX },
	{ "VRFY", cmd_vrfy, SESSION_STATES, CMD_UTF8_ARGS, SMTP_CMD_LINE_MAX },
	{ "AUTH", smtp_auth_command, IN(SMTP_IDLE), 0, SMTP_LINE_HARD_MAX },
	{ "STARTTLS", cmd_starttls, IN(SMTP_HELO) | IN(SMTP_IDLE), CMD_NO_ARGS, SMTP_CMD_LINE_MAX },
	{ "HELP", cmd_help, SESSION_STATES, 0, SMTP_CMD_LINE_MAX },
	{ "EXPN", cmd_not_implemented, SESSION_STATES, 0, SMTP_CMD_LINE_MAX },
	{ "TURN", cmd_not_implemented, SESSION_STATES, 0, SMTP_CMD_LINE_MAX },
};

/* Cross-protocol requests (a browser pointed at the port): end at once, as Postfix does. */
static const char *const http_verbs[] = { "GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS" };

static void bad_sequence(struct smtp_session *s, const struct smtp_command *cmd)
{
	if (s->state == SMTP_HELO)
		smtp_reply_error(s, REPLY_NEED_HELO);
	else if ((s->state == SMTP_MAIL || s->state == SMTP_RCPT) &&
	    (strcmp(cmd->verb, "AUTH") == 0 || strcmp(cmd->verb, "STARTTLS") == 0))
		smtp_reply_error(s, REPLY_IN_TRANSACTION);	/* RFC 4954 §4, RFC 3207 §4 */
	else if (strcmp(cmd->verb, "MAIL") == 0)
		smtp_reply_error(s, REPLY_NESTED_MAIL);
	else if (s->state == SMTP_MAIL)
		smtp_reply_error(s, REPLY_NEED_RCPT);
	else
		smtp_reply_error(s, REPLY_NEED_MAIL);
}

/* Printable ASCII only, except where the command takes UTF-8 (RFC 6531). */
static int text_ok(const char *args, unsigned flags)
{
	for (const unsigned char *p = (const unsigned char *)args; *p; p++)
		if (*p < 32 || *p == 127 || (*p >= 128 && !(flags & CMD_UTF8_ARGS)))
			return 0;
	return 1;
}

void smtp_command(struct smtp_session *s, char *line, size_t len)
{
	char verb[SMTP_VERB_MAX + 1];
	const char *args;
	const struct smtp_command *cmd = NULL;

	if (smtp_parse_verb(line, verb, &args) < 0) {
		smtp_reply_error(s, REPLY_UNKNOWN);
		return;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(commands[i].verb, verb) == 0)
			cmd = &commands[i];
	if (!cmd) {
		for (size_t i = 0; i < sizeof http_verbs / sizeof http_verbs[0]; i++)
			if (strcmp(http_verbs[i], verb) == 0) {
				log_info("HTTP request from [%s]:%u", s->client_addr, s->client_port);
				smtp_reply(s, REPLY_HTTP);
				return;
			}
		smtp_reply_error(s, REPLY_UNKNOWN);
		return;
	}
	if (len + 2 > cmd->max_line) {
		smtp_reply_error(s, REPLY_LINE_TOO_LONG);
		return;
	}
	if (!(cmd->states & IN(s->state))) {
		bad_sequence(s, cmd);
		return;
	}
	if (!text_ok(args, cmd->flags)) {
		smtp_reply_error(s, REPLY_BAD_TEXT);
		return;
	}
	if ((cmd->flags & CMD_NO_ARGS) && *args) {
		smtp_reply_error(s, REPLY_NO_ARGS);
		return;
	}
	cmd->run(s, args);
}
