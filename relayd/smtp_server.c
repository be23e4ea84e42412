/*
 * smtp_server — one SMTP session's connection: accept (reading the PROXY
 * header first on a `proxy` listener) and greet, frame the client's bytes into
 * strict CRLF command lines (bounded, bare CR/LF refused), timeouts, replies
 * with back-pressure, and the single place a session is freed.  Commands are
 * in smtp_commands.c, the message body in smtp_data.c.
 */
#include "relayd/smtp_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "relayd/log.h"
#include "relayd/metrics.h"
#include "relayd/proxy.h"
#include "relayd/smtp_session.h"
#include "relayd/tls.h"

static const char *const state_names[] = {
	"PROXY", "HELO", "IDLE", "MAIL", "RCPT", "DATA", "COMMIT", "CLOSING",
};

/* The PROXY header being read: taken off the socket only as far as it goes. */
struct smtp_proxy_wait {
	struct event *readable;
	evutil_socket_t fd;		/* the session's until a bufferevent takes it */
	size_t have;			/* header bytes read so far */
	unsigned char buf[PROXY_HEADER_MAX];
};

static void session_free(struct smtp_session *s);
static void session_process(struct smtp_session *s);
static void starttls_switch(struct smtp_session *s);

void smtp_session_enter(struct smtp_session *s, enum smtp_state state)
{
	log_debug("[%s]:%u: %s -> %s", s->client_addr, s->client_port,
	    state_names[s->state], state_names[state]);
	s->state = state;
}

__attribute__((format(printf, 4, 0)))
static void vreply(struct smtp_session *s, int code, const char *enh, const char *fmt,
    va_list ap)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	if (s->state == SMTP_CLOSING)
		return;
	evbuffer_add_printf(out, "%d %s%s", code, enh, *enh ? " " : "");
	evbuffer_add_vprintf(out, fmt, ap);
	evbuffer_add(out, "\r\n", 2);
	if (code == 421 || code == 521)
		smtp_session_close(s);
}

void smtp_reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreply(s, code, enh, fmt, ap);
	va_end(ap);
}

/* One more protocol error; past max_errors the session ends with 421. */
static void count_error(struct smtp_session *s)
{
	if (++s->errors >= s->srv->conf->max_errors && s->state != SMTP_CLOSING) {
		log_info("too many errors from [%s]:%u", s->client_addr, s->client_port);
		smtp_reply(s, REPLY_TOO_MANY_ERRORS);
	}
}

int smtp_reply_policy(struct smtp_session *s, int error, int code, const char *enh,
    const char *fmt, ...)
{
	char soft[16];
	va_list ap;

	if (s->srv->conf->soft_bounce && code / 100 == 5) {
		code -= 100;
		snprintf(soft, sizeof soft, "4%s", enh + 1);
		enh = soft;
	}
	va_start(ap, fmt);
	vreply(s, code, enh, fmt, ap);
	va_end(ap);
	if (error)
		count_error(s);
	return code;
}

void smtp_reply_error(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreply(s, code, enh, fmt, ap);
	va_end(ap);
	count_error(s);
}

void smtp_session_reset(struct smtp_session *s)
{
	/* No message came of the transaction (or it counted already): nothing stays held. */
	auth_limits_release(s->srv->limits, &s->limit_hold, server_limits_clock());
	s->limit_rcpt_logged = 0;
	queue_envelope_free(s->env);
	s->env = NULL;
	queue_spool_free(s->spool);
	s->spool = NULL;
	s->data_bytes = 0;
	s->data_error = SMTP_DATA_OK;
	s->dot = (struct smtp_dot_reader){ 0 };
	free(s->accept_line);
	s->accept_line = NULL;
	if (s->state != SMTP_CLOSING)
		smtp_session_enter(s, s->helo[0] ? SMTP_IDLE : SMTP_HELO);
}

/* Stop reading; free the session once everything queued for the client is sent. */
void smtp_session_close(struct smtp_session *s)
{
	if (s->state == SMTP_CLOSING)
		return;
	smtp_session_enter(s, SMTP_CLOSING);
	bufferevent_disable(s->bev, EV_READ);
	evtimer_del(s->deadline);
	bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
	/*
	 * Mid-handshake nothing can be flushed, and with reading off the
	 * handshake would never move again: free now, or the session (and a
	 * max_clients slot, and a graceful stop) waits for ever.
	 */
	if (s->tls_handshaking ||
	    evbuffer_get_length(bufferevent_get_output(s->bev)) == 0) {
		/* Nothing to flush, so no write callback will come: free from the
		 * loop, never under the feet of the caller still holding s. */
		struct timeval now = { 0, 0 };
		evtimer_add(s->deadline, &now);
	}
}

static void session_free(struct smtp_session *s)
{
	struct server *srv = s->srv;
	if (s->state == SMTP_COMMIT) {	/* the queue still holds our callback */
		s->client_gone = 1;
		return;
	}
	if (s->bev)	/* else it never started: no connect line, no disconnect line */
		log_info("disconnect from [%s]:%u commands=%u messages=%u errors=%u",
		    s->client_addr, s->client_port, s->commands, s->messages, s->errors);
	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	srv->nsessions--;
	auth_limits_release(srv->limits, &s->limit_hold, server_limits_clock());
	if (s->limit_connection)
		auth_limits_disconnect(srv->limits, s->client_key);
	queue_envelope_free(s->env);
	queue_spool_free(s->spool);
	free(s->accept_line);
	smtp_auth_free(s);
	event_free(s->deadline);
	if (s->proxy) {
		if (s->proxy->readable)
			event_free(s->proxy->readable);
		evutil_closesocket(s->proxy->fd);
		free(s->proxy);
	}
	if (s->bev) {
		tls_close_notify(s->bev);
		bufferevent_free(s->bev);
	}
	free(s);
	server_session_gone(srv);
}

static void arm_deadline(struct smtp_session *s, unsigned seconds)
{
	struct timeval tv = { .tv_sec = seconds, .tv_usec = 0 };
	evtimer_add(s->deadline, &tv);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	(void)fd, (void)what;
	if (s->state == SMTP_CLOSING) {
		session_free(s);
		return;
	}
	if (s->state == SMTP_PROXY) {	/* not greeted: nothing is said to it */
		log_info("timeout waiting for the PROXY header from [%s]:%u", s->client_addr,
		    s->client_port);
		session_free(s);
		return;
	}
	log_info("timeout (%s) from [%s]:%u", s->state == SMTP_DATA ? "DATA" : "command",
	    s->client_addr, s->client_port);
	smtp_reply(s, REPLY_TIMEOUT);
}

/* An overlong line; in the middle of an AUTH exchange, it also ends the exchange. */
static void line_too_long(struct smtp_session *s)
{
	if (s->auth_exchange) {
		smtp_auth_drop(s);
		smtp_reply_error(s, REPLY_AUTH_LINE_TOO_LONG);	/* RFC 4954 §4 */
		return;
	}
	smtp_reply_error(s, REPLY_LINE_TOO_LONG);
}

/*
 * Drop the rest of an overlong command line.  Returns 1 when its end was
 * found (and answered), 0 when more input is needed.
 */
static int discard_line(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_ptr lf = evbuffer_search(in, "\n", 1, NULL);
	if (lf.pos < 0) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return 0;
	}
	evbuffer_drain(in, (size_t)lf.pos + 1);
	s->discarding = 0;
	line_too_long(s);
	return 1;
}

/*
 * Take one complete command line from the input.  Returns 1 when a line was
 * handled, 0 when a whole line is not there yet.
 */
static int command_input(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t avail = evbuffer_get_length(in);
	char line[SMTP_LINE_HARD_MAX + 1];

	if (avail == 0)
		return 0;
	if (s->discarding)
		return discard_line(s, in);

	struct evbuffer_ptr lf = evbuffer_search(in, "\n", 1, NULL);
	if (lf.pos < 0) {
		if (avail > SMTP_LINE_HARD_MAX) {
			s->discarding = 1;
			return discard_line(s, in);
		}
		return 0;
	}
	size_t len = (size_t)lf.pos + 1;
	if (len > SMTP_LINE_HARD_MAX) {
		evbuffer_drain(in, len);
		line_too_long(s);
		return 1;
	}
	evbuffer_remove(in, line, len);
	s->commands++;

	/* Only CRLF ends a line; a bare LF or CR is refused, never guessed at. */
	if (len < 2 || line[len - 2] != '\r') {
		smtp_reply(s, REPLY_BARE_LF);
		return 1;
	}
	len -= 2;
	line[len] = '\0';
	if (memchr(line, '\r', len)) {
		smtp_reply(s, REPLY_BARE_CR);
		return 1;
	}
	if (memchr(line, '\0', len)) {
		smtp_reply_error(s, REPLY_NUL);
		return 1;
	}
	if (s->auth_exchange)
		smtp_auth_response(s, line);
	else
		smtp_command(s, line, len);
	return 1;
}

static void session_process(struct smtp_session *s)
{
	const struct config *conf = s->srv->conf;
	int progressed_cmd = 0;

	for (;;) {
		if (s->state == SMTP_COMMIT || s->state == SMTP_CLOSING || s->starttls_pending ||
		    s->auth_waiting)
			return;
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > SMTP_OUTPUT_MAX) {
			/* The client pipelines without reading our replies: wait for it. */
			s->paused_for_output = 1;
			bufferevent_disable(s->bev, EV_READ);
			bufferevent_setwatermark(s->bev, EV_WRITE, SMTP_OUTPUT_MAX / 4, 0);
			return;
		}
		if (s->state == SMTP_DATA) {
			if (!smtp_data_input(s))
				return;
			continue;
		}
		if (!command_input(s))
			break;
		progressed_cmd = 1;
	}

	/* A command line that has begun must be finished within timeout_command. */
	if (s->state == SMTP_DATA)
		return;
	size_t pending = evbuffer_get_length(bufferevent_get_input(s->bev));
	if (pending == 0 && !s->discarding)
		evtimer_del(s->deadline);
	else if (progressed_cmd || !evtimer_pending(s->deadline, NULL))
		arm_deadline(s, conf->timeout_command);
}

void smtp_session_resume(struct smtp_session *s)
{
	if (s->client_gone) {
		smtp_session_enter(s, SMTP_CLOSING);
		session_free(s);
		return;
	}
	if (s->stop_after_commit) {
		smtp_reply(s, REPLY_SHUTDOWN);
		return;
	}
	if (s->client_eof) {
		/* Answer what the client pipelined before it half-closed, then end. */
		session_process(s);
		if (s->state != SMTP_COMMIT && s->state != SMTP_CLOSING)
			smtp_session_close(s);
		return;
	}
	bufferevent_enable(s->bev, EV_READ);
	session_process(s);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	session_process(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	if (s->state == SMTP_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			session_free(s);
		return;
	}
	if (s->starttls_pending) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			starttls_switch(s);
		return;
	}
	if (s->paused_for_output) {
		s->paused_for_output = 0;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		smtp_session_resume(s);
	}
}

static void tls_established(struct smtp_session *s)
{
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	s->tls_handshaking = 0;
	s->tls = 1;
	s->tls_bits = tls_strength(ssl);
	tls_describe(ssl, s->tls_info, sizeof s->tls_info);
	log_info("TLS from [%s]:%u: %s", s->client_addr, s->client_port, s->tls_info);
	if (s->limit_refuse_after_tls)
		smtp_reply(s, REPLY_TOO_MANY_FROM_YOU, s->srv->conf->hostname);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		tls_established(s);
		return;
	}
	if ((what & BEV_EVENT_ERROR) && s->tls_handshaking) {
		char why[512] = "";
		unsigned long e;
		size_t n = 0;
		while ((e = bufferevent_get_openssl_error(s->bev)) != 0 && n < sizeof why - 2) {
			if (n)
				why[n++] = ';', why[n++] = ' ';
			ERR_error_string_n(e, why + n, sizeof why - n);
			n = strlen(why);
		}
		log_info("TLS handshake failed from [%s]:%u: %s", s->client_addr, s->client_port,
		    n ? why : "connection closed");
		smtp_session_enter(s, SMTP_CLOSING);
		session_free(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		log_info("timeout (idle) from [%s]:%u", s->client_addr, s->client_port);
		if (what & BEV_EVENT_READING) {
			smtp_reply(s, REPLY_TIMEOUT);
			return;
		}
	} else if (what & BEV_EVENT_ERROR) {
		log_info("lost connection from [%s]:%u: %s", s->client_addr, s->client_port,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	} else if (what & BEV_EVENT_EOF) {
		/* The client half-closed: it may still read the replies it is owed,
		 * the 250 for a message being committed above all. */
		if (s->state != SMTP_IDLE && s->state != SMTP_HELO && s->state != SMTP_CLOSING)
			log_info("lost connection from [%s]:%u in state %s", s->client_addr,
			    s->client_port, state_names[s->state]);
		if (s->state == SMTP_COMMIT)
			s->client_eof = 1;
		else
			smtp_session_close(s);
		return;
	}
	if (s->state == SMTP_COMMIT) {
		s->client_gone = 1;
		return;
	}
	smtp_session_enter(s, SMTP_CLOSING);
	session_free(s);
}

void smtp_format_addr(const struct sockaddr *sa, char *out, size_t outlen, unsigned *port)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, out, (socklen_t)outlen);
		*port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			inet_ntop(AF_INET, in6->sin6_addr.s6_addr + 12, out, (socklen_t)outlen);
		else
			inet_ntop(AF_INET6, &in6->sin6_addr, out, (socklen_t)outlen);
		*port = ntohs(in6->sin6_port);
	} else {
		snprintf(out, outlen, "unknown");
		*port = 0;
	}
}

/* Callbacks and timeouts on the session's (new) bufferevent. */
static void session_watch(struct smtp_session *s)
{
	struct timeval idle = { .tv_sec = s->srv->conf->timeout_idle, .tv_usec = 0 };
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	bufferevent_set_timeouts(s->bev, &idle, &idle);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (s->tls_handshaking)	/* a client that just closes is not an attack */
		bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
}

/*
 * After "220 Ready to start TLS" is queued: drop pipelined plaintext and stop
 * reading; write_cb switches to TLS once the 220 has left, so the handshake
 * runs on the bare socket and no plaintext byte can be taken as sent inside TLS.
 */
void smtp_session_starttls(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t plain = evbuffer_get_length(in);

	/* CVE-2011-0411: nothing sent before the handshake may count as sent after it. */
	if (plain > 0) {
		log_info("discarded %zu octets pipelined after STARTTLS by [%s]:%u", plain,
		    s->client_addr, s->client_port);
		evbuffer_drain(in, plain);
	}
	s->starttls_pending = 1;
	bufferevent_disable(s->bev, EV_READ);
	bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
}

/* The 220 is out: the same socket, now under a TLS bufferevent. */
static void starttls_switch(struct smtp_session *s)
{
	evutil_socket_t fd = bufferevent_getfd(s->bev);
	SSL *ssl = SSL_new(s->srv->tls_ctx);
	struct bufferevent *tls = ssl ? bufferevent_openssl_socket_new(s->srv->base, fd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE) : NULL;

	s->starttls_pending = 0;
	if (!tls) {
		if (ssl)
			SSL_free(ssl);
		smtp_reply(s, REPLY_TLS_FAILED);
		return;
	}
	bufferevent_setfd(s->bev, -1);	/* the old one must not close the socket */
	bufferevent_free(s->bev);
	s->bev = tls;
	s->tls_handshaking = 1;
	session_watch(s);
	/* RFC 3207 §4.2: everything learned before TLS is forgotten; EHLO again. */
	smtp_session_reset(s);
	smtp_auth_reset(s);
	s->helo[0] = '\0';
	s->esmtp = 0;
	smtp_session_enter(s, SMTP_HELO);
}

/* The client the session serves (logs, allow, Received:, the AUTH penalty). */
static void session_set_client(struct smtp_session *s, const struct sockaddr *addr,
    socklen_t addrlen)
{
	memset(&s->addr, 0, sizeof s->addr);
	memcpy(&s->addr, addr, addrlen < sizeof s->addr ? addrlen : sizeof s->addr);
	smtp_format_addr(addr, s->client_addr, sizeof s->client_addr, &s->client_port);
	auth_client_key(addr, s->client_key, sizeof s->client_key);
}

/*
 * max_connections_per_client, once the client's address is known (after the
 * PROXY header, if any).  0: counted, it may go on; 1: over the limit, logged.
 */
static int too_many_from_client(struct smtp_session *s, const char *via)
{
	const struct config *conf = s->srv->conf;
	const struct sockaddr *sa = (const struct sockaddr *)&s->addr;
	struct auth_limit_over over;

	if (auth_limits_connect(s->srv->limits, conf, s->client_key,
	    auth_limit_exempt(conf, sa), &over) == AUTH_LIMIT_OK) {
		s->limit_connection = 1;
		return 0;
	}
	metrics.refused[METRICS_REFUSED_CONNECTIONS]++;
	log_info("reject: connect from [%s]:%u%s: 421 4.7.0 too many connections from your "
	    "address; limit=max_connections_per_client %u, address=%s, open=%u", s->client_addr,
	    s->client_port, via, over.limit, s->client_key, over.count);
	return 1;
}

/* Speak first: the bufferevent (TLS for `listen … tls`), the connect line, the 220. */
static void session_start(struct smtp_session *s, evutil_socket_t fd, const char *via)
{
	struct server *srv = s->srv;
	int refuse = too_many_from_client(s, via);

	s->relay_ok = auth_network_allowed(srv->conf, (const struct sockaddr *)&s->addr);
	if (s->implicit_tls) {
		SSL *ssl = SSL_new(srv->tls_ctx);
		s->bev = ssl ? bufferevent_openssl_socket_new(srv->base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE) : NULL;
		if (ssl && !s->bev)
			SSL_free(ssl);
		s->tls_handshaking = 1;
	} else {
		s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	if (!s->bev) {
		evutil_closesocket(fd);
		session_free(s);
		return;
	}
	session_watch(s);
	smtp_session_enter(s, SMTP_HELO);
	if (refuse) {
		/*
		 * The 421 in the protocol the listener speaks: after TLS on a TLS
		 * port.  Such a session is not counted, so it gets little time to
		 * hold a max_clients slot with a handshake that never ends.
		 */
		if (s->tls_handshaking) {
			struct timeval brief = { SMTP_REFUSE_TLS_TIMEOUT, 0 };
			s->limit_refuse_after_tls = 1;
			bufferevent_set_timeouts(s->bev, &brief, &brief);
		} else {
			smtp_reply(s, REPLY_TOO_MANY_FROM_YOU, srv->conf->hostname);
		}
		return;
	}
	log_info("connect from [%s]:%u%s%s", s->client_addr, s->client_port, via,
	    s->relay_ok ? " (allowed network)" : "");
	evbuffer_add_printf(bufferevent_get_output(s->bev), "220 %s ESMTP relayd\r\n",
	    srv->conf->hostname);
}

/* No valid header: closed without a word, so nothing of SMTP reaches a stranger. */
static void proxy_refuse(struct smtp_session *s, const char *why)
{
	log_info("refused [%s]:%u: no valid PROXY header (%s)", s->client_addr,
	    s->client_port, why);
	session_free(s);
}

/* Read bytes off the socket until upto of them are in the buffer; 0 / -1. */
static int proxy_take(struct smtp_proxy_wait *w, size_t upto)
{
	while (w->have < upto) {
		ssize_t n = recv(w->fd, w->buf + w->have, upto - w->have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		w->have += (size_t)n;
	}
	return 0;
}

/* The header is whole: its client becomes the session's, and the session starts. */
static void proxy_done(struct smtp_session *s, const struct proxy_header *h)
{
	struct smtp_proxy_wait *w = s->proxy;
	evutil_socket_t fd = w->fd;
	char via[INET6_ADDRSTRLEN + 16] = "";

	if (h->relayed) {
		snprintf(via, sizeof via, " via [%s]:%u", s->client_addr, s->client_port);
		session_set_client(s, (const struct sockaddr *)&h->source, sizeof h->source);
	}
	event_free(w->readable);
	free(w);
	s->proxy = NULL;
	evtimer_del(s->deadline);
	session_start(s, fd, via);
}

/*
 * Bytes arrived on a `proxy` listener's connection.  They are peeked, not
 * read: only those the parser says belong to the header leave the socket, so
 * whatever follows (a TLS ClientHello, an early EHLO) is the session's.
 */
static void proxy_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	struct smtp_proxy_wait *w = s->proxy;
	struct proxy_header h;
	const char *why = "";
	(void)what;

	if (w->have >= sizeof w->buf) {	/* the parser promises this cannot be */
		proxy_refuse(s, "header too long");
		return;
	}
	ssize_t n = recv(fd, w->buf + w->have, sizeof w->buf - w->have, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		proxy_refuse(s, n == 0 ? "connection closed" : strerror(errno));
		return;
	}
	size_t seen = w->have + (size_t)n;
	switch (proxy_parse(w->buf, seen, &h, &why)) {
	case PROXY_NEED_MORE:	/* every byte seen is the header's */
		if (proxy_take(w, seen) < 0)
			proxy_refuse(s, "connection lost");
		return;
	case PROXY_DONE:
		if (proxy_take(w, h.length) < 0)
			proxy_refuse(s, "connection lost");
		else
			proxy_done(s, &h);
		return;
	case PROXY_BAD:
		proxy_refuse(s, why);
		return;
	}
}

/* `listen … proxy`: wait (SMTP_PROXY_TIMEOUT at most) for the header, saying nothing. */
static void proxy_wait(struct smtp_session *s, evutil_socket_t fd)
{
	struct smtp_proxy_wait *w = calloc(1, sizeof *w);
	struct timeval tv = { .tv_sec = SMTP_PROXY_TIMEOUT, .tv_usec = 0 };

	if (!w) {
		evutil_closesocket(fd);
		session_free(s);
		return;
	}
	w->fd = fd;
	s->proxy = w;
	w->readable = event_new(s->srv->base, fd, EV_READ | EV_PERSIST, proxy_read_cb, s);
	if (!w->readable || event_add(w->readable, NULL) < 0) {
		session_free(s);
		return;
	}
	evtimer_add(s->deadline, &tv);
}

void smtp_server_accept(const struct server_listener *listener, evutil_socket_t fd,
    const struct sockaddr *addr, socklen_t addrlen)
{
	struct server *srv = listener->srv;
	const struct config *conf = srv->conf;
	char text[INET6_ADDRSTRLEN];
	unsigned port;

	smtp_format_addr(addr, text, sizeof text, &port);
	if (srv->stopping || srv->nsessions >= conf->max_clients) {
		char msg[512];
		int n = snprintf(msg, sizeof msg, "421 4.7.0 %s Error: too many connections, "
		    "try again later\r\n", conf->hostname);
		metrics.connections_refused++;
		log_warn("refused [%s]:%u: %u sessions (max_clients)", text, port, srv->nsessions);
		/* Plain SMTP only where the client speaks it first: not before a PROXY header
		 * (the proxy would pass it on as ours) nor where TLS comes first. */
		if (!listener->proxy && !listener->implicit_tls && n > 0 && (size_t)n < sizeof msg &&
		    write(fd, msg, (size_t)n) < 0)
			log_debug("refusal to [%s] not sent: %s", text, strerror(errno));
		evutil_closesocket(fd);
		return;
	}

	struct smtp_session *s = calloc(1, sizeof *s);
	if (!s || !(s->deadline = evtimer_new(srv->base, deadline_cb, s))) {
		free(s);
		evutil_closesocket(fd);
		return;
	}
	s->srv = srv;
	s->implicit_tls = listener->implicit_tls;
	session_set_client(s, addr, addrlen);
	s->next = srv->sessions;
	if (s->next)
		s->next->prev = s;
	srv->sessions = s;
	srv->nsessions++;
	metrics.connections++;

	if (listener->proxy)
		proxy_wait(s, fd);	/* state SMTP_PROXY, the first of every session */
	else
		session_start(s, fd, "");
}

void smtp_server_shutdown(struct server *srv, int now)
{
	/* A client that does not read its 421 may delay the stop this long, no more. */
	struct timeval flush = { .tv_sec = SMTP_SHUTDOWN_FLUSH, .tv_usec = 0 };
	struct smtp_session *s = srv->sessions, *next;

	for (; s; s = next) {
		next = s->next;
		if (s->state == SMTP_COMMIT) {
			s->stop_after_commit = 1;	/* its message is answered first */
		} else if (now || s->state == SMTP_PROXY) {	/* nothing said yet: no 421 */
			smtp_session_enter(s, SMTP_CLOSING);
			session_free(s);
		} else {
			smtp_reply(s, REPLY_SHUTDOWN);
			bufferevent_set_timeouts(s->bev, NULL, &flush);
		}
	}
}
