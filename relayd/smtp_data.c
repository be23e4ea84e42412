/*
 * smtp_data — the DATA phase: a Received: header, then the client's lines
 * framed strictly by smtp_dot.c (only <CRLF>.<CRLF> ends the message; a bare
 * CR or LF ends the session, so no sequence can smuggle a second message),
 * dot-unstuffed, size- and line-checked, streamed into a queue spool; then the commit, and
 * the 250 only once the queue says the message is on disk.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relayd/delivery.h"
#include "relayd/log.h"
#include "relayd/metrics.h"
#include "relayd/smtp_session.h"

/*
 * RFC 5321 §4.4 trace header.  The HELO name is escaped (STYLE.md, rule 16);
 * the recipient went through smtp_parse (printable, or UTF-8 under SMTPUTF8,
 * which RFC 6532 allows in headers) and is written as it is, when its line
 * stays within 998 octets.
 */
static int write_received(struct smtp_session *s)
{
	const struct queue_envelope *env = s->env;
	char date[64], forclause[SMTP_TEXT_LINE_MAX];
	char header[4096];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
	forclause[0] = '\0';
	if (env->nrcpts == 1 && strlen(env->rcpts[0].addr) < 900)
		snprintf(forclause, sizeof forclause, "\r\n\tfor <%s>", env->rcpts[0].addr);
	/* RFC 3848 / RFC 6531 protocol names: S for TLS, A for AUTH. */
	char with[16];
	snprintf(with, sizeof with, "%s%s%s",
	    env->smtputf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP",
	    s->tls && (s->esmtp || env->smtputf8) ? "S" : "",
	    env->auth_user && (s->esmtp || env->smtputf8) ? "A" : "");
	char using[sizeof s->tls_info + 16] = "";
	if (s->tls)
		snprintf(using, sizeof using, "\r\n\t(using %s)", s->tls_info);
	int n = snprintf(header, sizeof header,
	    "Received: from %s ([%s%s])%s\r\n"
	    "\tby %s (relayd) with %s id %s%s;\r\n"
	    "\t%s\r\n",
	    s->helo, strchr(s->client_addr, ':') ? "IPv6:" : "", s->client_addr, using,
	    s->srv->conf->hostname, with, env->id, forclause, date);
	if (n < 0 || (size_t)n >= sizeof header)
		return -1;
	return queue_spool_write(s->spool, header, (size_t)n);
}

int smtp_data_begin(struct smtp_session *s)
{
	struct queue *q = s->srv->queue;

	s->spool = queue_spool_new(q);
	if (!s->spool) {
		smtp_reply(s, REPLY_STORAGE_ERROR);
		return -1;
	}
	queue_new_id(q, s->env->id);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	s->env->arrival = now.tv_sec;
	s->env->arrival_usec = (uint32_t)(now.tv_nsec / 1000);
	s->data_bytes = 0;
	s->data_error = SMTP_DATA_OK;
	s->dot = (struct smtp_dot_reader){ 0 };
	if (write_received(s) < 0)
		s->data_error = SMTP_DATA_STORAGE;
	smtp_session_enter(s, SMTP_DATA);
	smtp_reply(s, REPLY_DATA_GO);

	struct timeval tv = { .tv_sec = s->srv->conf->timeout_data, .tv_usec = 0 };
	evtimer_add(s->deadline, &tv);
	return 0;
}

/*
 * More logins or addresses active at once than the rate limits keep counts
 * for: the least recently active were forgotten and may send afresh.  Say
 * so, at most once a minute.
 */
static void warn_limits_full(const struct server *srv, time_t now)
{
	static unsigned long long reported;
	static time_t last;
	unsigned long long n = auth_limits_evicted(srv->limits);

	if (n == reported || (last && now - last < 60))
		return;
	log_warn("rate limits: counts of %llu login(s) or address(es) forgotten to make room "
	    "(over %d active at once): they start again from zero", n - reported,
	    AUTH_LIMIT_KEYS);
	reported = n;
	last = now;
}

static void commit_done(void *arg, enum queue_status status)
{
	struct smtp_session *s = arg;

	switch (status) {
	case QUEUE_OK:
		/* Accepted for delivery: now the message and its recipients count. */
		auth_limits_commit(s->srv->limits, &s->limit_hold, (unsigned)s->commit_nrcpts,
		    server_limits_clock());
		warn_limits_full(s->srv, server_limits_clock());
		log_info("%s", s->accept_line);
		metrics.messages++;
		metrics.recipients += s->commit_nrcpts;
		metrics_observe(&metrics.commit, delivery_monotonic() - s->commit_started);
		s->messages++;
		smtp_reply(s, 250, "2.0.0", "Ok: queued as %s", s->commit_id);
		delivery_kick(s->srv->delivery);
		break;
	case QUEUE_FULL:
		metrics.commit_failed++;
		log_warn("%s: not queued: queue map or disk full (452 4.3.1) from [%s]:%u",
		    s->commit_id, s->client_addr, s->client_port);
		smtp_reply(s, REPLY_STORAGE_FULL);
		break;
	case QUEUE_ERROR:
		metrics.commit_failed++;
		log_err("%s: not queued: storage error (451 4.3.0) from [%s]:%u",
		    s->commit_id, s->client_addr, s->client_port);
		smtp_reply(s, REPLY_STORAGE_ERROR);
		break;
	}
	smtp_session_enter(s, SMTP_IDLE);
	smtp_session_reset(s);
	smtp_session_resume(s);
}

/* The final dot: answer what went wrong, or hand the message to the queue. */
static void data_end(struct smtp_session *s)
{
	evtimer_del(s->deadline);
	switch (s->data_error) {
	case SMTP_DATA_OK:
		break;
	case SMTP_DATA_TOO_BIG:
		log_info("reject: message from [%s]:%u over max_message_size (%llu bytes)",
		    s->client_addr, s->client_port,
		    (unsigned long long)s->srv->conf->max_message_size);
		smtp_reply(s, REPLY_SIZE_EXCEEDED);
		smtp_session_reset(s);
		return;
	case SMTP_DATA_LINE_TOO_LONG:
		log_info("reject: message from [%s]:%u has a line over 1000 octets",
		    s->client_addr, s->client_port);
		smtp_reply(s, REPLY_TEXT_LINE_TOO_LONG);
		smtp_session_reset(s);
		return;
	case SMTP_DATA_STORAGE:
		smtp_reply(s, REPLY_STORAGE_FULL);
		smtp_session_reset(s);
		return;
	}

	struct queue_envelope *env = s->env;
	char from[SMTP_TEXT_LINE_MAX];
	char line[2 * SMTP_TEXT_LINE_MAX];
	log_escape(from, sizeof from, env->sender, strlen(env->sender));
	char user[300] = "";
	if (env->auth_user) {
		char esc[256];
		snprintf(user, sizeof user, ", sasl_username=%s",
		    log_escape(esc, sizeof esc, env->auth_user, strlen(env->auth_user)));
	}
	snprintf(line, sizeof line, "%s: client=[%s]:%u%s, helo=<%s>, from=<%s>, size=%llu, nrcpt=%zu",
	    env->id, s->client_addr, s->client_port, user, s->helo, from,
	    (unsigned long long)queue_spool_size(s->spool), env->nrcpts);
	s->accept_line = strdup(line);
	memcpy(s->commit_id, env->id, sizeof s->commit_id);
	s->commit_nrcpts = env->nrcpts;
	s->commit_started = delivery_monotonic();

	smtp_session_enter(s, SMTP_COMMIT);
	bufferevent_disable(s->bev, EV_READ);
	s->env = NULL;		/* the queue owns them now */
	struct queue_spool *spool = s->spool;
	s->spool = NULL;
	if (queue_commit(s->srv->queue, env, spool, commit_done, s) < 0) {
		metrics.commit_failed++;
		log_err("%s: not queued: out of memory (451 4.3.0) from [%s]:%u",
		    s->commit_id, s->client_addr, s->client_port);
		smtp_session_enter(s, SMTP_IDLE);
		smtp_reply(s, REPLY_STORAGE_ERROR);
		smtp_session_reset(s);
		bufferevent_enable(s->bev, EV_READ);
	}
}

/* One body line (CRLF included, already unstuffed) into the spool, unless refused. */
static void data_line(struct smtp_session *s, const char *p, size_t len)
{
	s->data_bytes += len;
	if (len > SMTP_TEXT_LINE_MAX && s->data_error == SMTP_DATA_OK)
		s->data_error = SMTP_DATA_LINE_TOO_LONG;
	if (s->data_bytes > s->srv->conf->max_message_size && s->data_error == SMTP_DATA_OK)
		s->data_error = SMTP_DATA_TOO_BIG;
	if (s->data_error != SMTP_DATA_OK)
		return;
	if (queue_spool_write(s->spool, p, len) < 0) {
		log_warn("spool write for [%s]:%u failed: %m", s->client_addr, s->client_port);
		s->data_error = SMTP_DATA_STORAGE;
	}
}

int smtp_data_input(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	char buf[SMTP_DOT_LINE_BUF];
	const char *line;
	size_t len;

	switch (smtp_dot_read(&s->dot, in, buf, &line, &len)) {
	case SMTP_DOT_MORE:
		if (len > 0) {		/* part of an endless line, dropped */
			s->data_bytes += len;
			if (s->data_error == SMTP_DATA_OK)
				s->data_error = SMTP_DATA_LINE_TOO_LONG;
		}
		return 0;
	case SMTP_DOT_LONG_END:
		s->data_bytes += len;
		if (s->data_error == SMTP_DATA_OK)
			s->data_error = SMTP_DATA_LINE_TOO_LONG;
		return 1;
	case SMTP_DOT_LINE:
		data_line(s, line, len);
		return 1;
	case SMTP_DOT_END:
		data_end(s);
		return 1;
	case SMTP_DOT_BARE_LF:
		smtp_reply(s, REPLY_BARE_LF);
		return 0;
	case SMTP_DOT_BARE_CR:
		smtp_reply(s, REPLY_BARE_CR);
		return 0;
	}
	return 0;
}
