/*
 * smtp_session — internal to the server side of SMTP: the session struct,
 * its state machine, and the helpers that smtp_server.c (connection, input
 * framing), smtp_commands.c (one function per command) and smtp_data.c
 * (the DATA phase) share.  Replies and their enhanced codes live in one table:
 * the REPLY_… macros below.
 */
#ifndef RELAYD_SMTP_SESSION_H
#define RELAYD_SMTP_SESSION_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include "auth/auth.h"
#include "queue/queue.h"
#include "relayd/server.h"
#include "relayd/smtp_dot.h"	/* SMTP_TEXT_LINE_MAX */

/* RFC 5321 §4.5.3.1: a command line is 512 octets with CRLF; DSN, SIZE and AUTH
 * parameters raise MAIL and RCPT (RFC 3461 §4 and §5, RFC 1870, RFC 4954). */
#define SMTP_CMD_LINE_MAX   512
#define SMTP_MAIL_LINE_MAX  (512 + 26 + 100 + 500 + 10)
#define SMTP_RCPT_LINE_MAX  (512 + 500)
#define SMTP_LINE_HARD_MAX  12288	/* RFC 4954 §4 (AUTH); nothing longer is buffered */
#define SMTP_OUTPUT_MAX     (64 * 1024)	/* stop reading while replies pile up */
#define SMTP_SHUTDOWN_FLUSH 10		/* seconds to deliver the 421 when stopping */
#define SMTP_PROXY_TIMEOUT  5		/* seconds for the PROXY header (the spec: at least 3) */
#define SMTP_REFUSE_TLS_TIMEOUT 10	/* for the handshake before a refusal's 421 */

enum smtp_state {
	SMTP_PROXY,	/* accepted, not greeted: on a `listen … proxy` port, until the
			 * PROXY header is read (the session has no bufferevent yet) */
	SMTP_HELO,	/* greeted, waiting for EHLO/HELO */
	SMTP_IDLE,	/* no transaction */
	SMTP_MAIL,	/* MAIL accepted, no recipient yet */
	SMTP_RCPT,	/* at least one recipient */
	SMTP_DATA,	/* receiving the message */
	SMTP_COMMIT,	/* message handed to the queue, reading paused */
	SMTP_CLOSING,	/* last reply being flushed */
};

/* What went wrong with the message during DATA, answered at the final dot. */
enum smtp_data_error {
	SMTP_DATA_OK,
	SMTP_DATA_TOO_BIG,
	SMTP_DATA_LINE_TOO_LONG,
	SMTP_DATA_STORAGE,
};

struct smtp_proxy_wait;

struct smtp_session {
	struct server *srv;
	struct smtp_session *next, *prev;
	struct bufferevent *bev;
	struct event *deadline;		/* command line or DATA phase must finish by then */
	enum smtp_state state;

	struct sockaddr_storage addr;	/* the client: the peer, or the one a PROXY header names */
	char client_addr[INET6_ADDRSTRLEN];
	char client_key[AUTH_CLIENT_KEY_MAX];	/* what the limits count it as (an IPv6 /64) */
	unsigned client_port;
	struct smtp_proxy_wait *proxy;	/* reading the PROXY header; NULL after */
	int implicit_tls;		/* `listen … tls`: TLS from the first byte after that */
	char helo[256];			/* escaped for logs and headers */
	int esmtp;
	int relay_ok;			/* client is inside `allow` */
	int tls;			/* the handshake is done */
	int starttls_pending;		/* 220 queued: switch to TLS once it is sent */
	int tls_handshaking;		/* STARTTLS said, or an implicit-TLS listener */
	char tls_info[160];		/* "TLSv1.3 with cipher …", for Received: */
	unsigned tls_bits;

	/* SMTP AUTH (smtp_auth.c) */
	struct auth_session *auth;	/* the Cyrus exchange, made at the first AUTH */
	char *auth_user;		/* logged in as; NULL before */
	char auth_mech[24];		/* the mechanism of the exchange going on */
	int auth_exchange;		/* a 334 is out: the next line is a response */
	unsigned auth_failures;
	struct event *auth_timer;	/* auth_timeout, or a failure's delayed reply */
	int auth_busy;			/* the worker has the exchange */
	int auth_delayed_close;		/* after the delayed reply, end the session */
	int auth_waiting;		/* input waits for the worker or the delayed reply */
	struct { int code; const char *enh, *text; } auth_reply;	/* the delayed one */

	unsigned errors;		/* protocol errors so far (max_errors) */
	unsigned commands;
	unsigned messages;
	int discarding;			/* skipping the rest of an overlong line */
	int paused_for_output;
	int stop_after_commit;		/* server stopping, or client gone */
	int client_gone;		/* connection broken: free once the commit is done */
	int client_eof;			/* client half-closed: flush, then close */

	/* rate limits (auth/limits.c) */
	int limit_connection;		/* counted in max_connections_per_client */
	int limit_refuse_after_tls;	/* over it on a TLS listener: 421 once TLS is up */
	int limit_rcpt_logged;		/* this transaction's limit_rcpt refusal is logged */
	struct auth_limit_hold limit_hold;	/* what the transaction reserved */

	/* the transaction */
	struct queue_envelope *env;
	struct queue_spool *spool;
	uint64_t data_bytes;		/* body bytes received, before the Received: header */
	enum smtp_data_error data_error;
	struct smtp_dot_reader dot;	/* the framing of the text lines */
	char *accept_line;		/* the acceptance log line, written once committed */
	char commit_id[QUEUE_ID_LEN + 1];
	size_t commit_nrcpts;		/* for the counters, once committed */
	double commit_started;		/* monotonic seconds at the final dot */
};

/* Reply table: code, enhanced code, text (RFC 3463 codes on every reply). */
#define REPLY_OK			250, "2.0.0", "Ok"
#define REPLY_BYE			221, "2.0.0", "Bye"
#define REPLY_HELP			214, "2.0.0", "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"
#define REPLY_VRFY			252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery"
#define REPLY_DATA_GO		354, "", "End data with <CR><LF>.<CR><LF>"
#define REPLY_NEED_HELO		503, "5.5.1", "Error: send HELO/EHLO first"
#define REPLY_NESTED_MAIL		503, "5.5.1", "Error: nested MAIL command"
#define REPLY_NEED_MAIL		503, "5.5.1", "Error: need MAIL command"
#define REPLY_NEED_RCPT		503, "5.5.1", "Error: need RCPT command"
#define REPLY_UNKNOWN		500, "5.5.2", "Error: command not recognized"
#define REPLY_NOT_IMPLEMENTED	502, "5.5.1", "Error: command not implemented"
#define REPLY_LINE_TOO_LONG		500, "5.5.2", "Error: command line too long"
#define REPLY_NUL			500, "5.5.2", "Error: NUL character in command"
#define REPLY_BAD_TEXT		501, "5.5.2", "Error: command holds non-ASCII or control characters"
#define REPLY_SYNTAX_HELO		501, "5.5.4", "Syntax: EHLO hostname"
#define REPLY_SYNTAX_MAIL		501, "5.5.4", "Syntax: MAIL FROM:<address>"
#define REPLY_SYNTAX_RCPT		501, "5.5.4", "Syntax: RCPT TO:<address>"
#define REPLY_SYNTAX_VRFY		501, "5.5.4", "Syntax: VRFY address"
#define REPLY_NO_ARGS		501, "5.5.4", "Syntax error: this command takes no parameters"
#define REPLY_BAD_SENDER		501, "5.1.7", "Bad sender address syntax"
#define REPLY_BAD_RCPT		501, "5.1.3", "Bad recipient address syntax"
#define REPLY_NEED_UTF8		553, "5.6.7", "Non-ASCII address requires SMTPUTF8"
#define REPLY_TOO_MANY_RCPTS	452, "4.5.3", "Error: too many recipients"
#define REPLY_SIZE_EXCEEDED		552, "5.3.4", "Message size exceeds fixed limit"
#define REPLY_TEXT_LINE_TOO_LONG	550, "5.6.0", "Error: message has a line longer than 1000 octets"
#define REPLY_STORAGE_FULL		452, "4.3.1", "Insufficient system storage"
#define REPLY_STORAGE_ERROR		451, "4.3.0", "Error: queue file write error"
#define REPLY_TOO_MANY_ERRORS	421, "4.7.0", "Error: too many errors"
#define REPLY_TIMEOUT		421, "4.4.2", "Error: timeout exceeded"
#define REPLY_SHUTDOWN		421, "4.3.2", "Service shutting down, try again later"
#define REPLY_TOO_MANY_CLIENTS	421, "4.7.0", "Error: too many connections, try again later"
/* With the host name first, as the max_clients refusal. */
#define REPLY_TOO_MANY_FROM_YOU	421, "4.7.0", "%s Error: too many connections from your address, try again later"
/* "Message" or "Recipient", "this login" or "your address", the limit's name, N, unit. */
#define REPLY_RATE_LIMIT	450, "4.7.1", "%s rate limit exceeded for %s (%s %u/%s), try again later"
#define REPLY_BARE_LF		521, "5.5.2", "Error: bare <LF> received"
#define REPLY_BARE_CR		521, "5.5.2", "Error: bare <CR> received"
#define REPLY_TLS_ACTIVE		503, "5.5.1", "Error: TLS already active"
#define REPLY_TLS_GO		220, "2.0.0", "Ready to start TLS"
#define REPLY_TLS_FAILED		421, "4.7.0", "Error: cannot start TLS"
#define REPLY_AUTH_OK		235, "2.7.0", "Authentication successful"
#define REPLY_AUTH_FAILED	535, "5.7.8", "Error: authentication failed"
#define REPLY_AUTH_TEMPFAIL	454, "4.7.0", "Temporary authentication failure"
#define REPLY_AUTH_NOMECH	504, "5.5.4", "Unrecognized authentication type"
#define REPLY_AUTH_MALFORMED	501, "5.5.2", "Cannot decode response"
#define REPLY_AUTH_CANCELLED	501, "5.0.0", "Authentication aborted"
#define REPLY_AUTH_TOOWEAK	534, "5.7.9", "Authentication mechanism is too weak"
#define REPLY_AUTH_NEED_TLS	538, "5.7.11", "Encryption required for requested authentication mechanism"
#define REPLY_AUTH_TWICE	503, "5.5.1", "Error: already authenticated"
#define REPLY_IN_TRANSACTION	503, "5.5.1", "Error: MAIL transaction in progress"
#define REPLY_AUTH_LINE_TOO_LONG 500, "5.5.6", "Authentication Exchange line is too long"
#define REPLY_AUTH_SYNTAX	501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"
#define REPLY_AUTH_REQUIRED	530, "5.7.0", "Authentication required"
#define REPLY_AUTH_TOO_MANY	421, "4.7.0", "Error: too many failed authentications"
#define REPLY_HTTP			521, "5.5.1", "Error: this is an SMTP server, not HTTP"

/*
 * Send one reply line: "CODE ENH text".  Codes 421 and 521 also close the
 * session once the reply is flushed.  smtp_reply_error() does the same and
 * counts a protocol error; past max_errors the session ends with 421.
 */
void smtp_reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void smtp_reply_error(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * A refusal by relayd's own policy (no route, sender rules): a 5xx unless
 * soft_bounce is on, then the same as 4xx (4.x.x), as Postfix's smtpd does,
 * so a configuration mistake makes the client retry instead of bounce.
 * With error, it counts as smtp_reply_error() does.  The code actually sent
 * is returned, for the log line.
 */
int smtp_reply_policy(struct smtp_session *s, int error, int code, const char *enh,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The one place a session changes state (logged with debug on). */
void smtp_session_enter(struct smtp_session *s, enum smtp_state state);
/* Flush what is queued for the client, then free the session. */
void smtp_session_close(struct smtp_session *s);
/* Drop the transaction (RSET, EHLO, after the final reply to DATA). */
void smtp_session_reset(struct smtp_session *s);
/* Resume reading after a pause (commit done, output drained). */
void smtp_session_resume(struct smtp_session *s);
/* After "220 Ready to start TLS": drop pipelined plaintext, start the handshake. */
void smtp_session_starttls(struct smtp_session *s);

/* "192.0.2.1" for IPv4 and IPv4-mapped IPv6, "2001:db8::1" otherwise; and the port. */
void smtp_format_addr(const struct sockaddr *sa, char *out, size_t outlen, unsigned *port);

/* smtp_auth.c: the AUTH command, a response line to a 334, and the EHLO keyword. */
void smtp_auth_command(struct smtp_session *s, const char *args);
void smtp_auth_response(struct smtp_session *s, const char *line);
/* The mechanisms to advertise now, or NULL (no backend, or TLS required first). */
const char *smtp_auth_offer(struct smtp_session *s);
/* Forget the login and any exchange (STARTTLS); _free also drops the timer. */
void smtp_auth_reset(struct smtp_session *s);
/* End the Cyrus exchange (the worker disposes of it). */
void smtp_auth_drop(struct smtp_session *s);
void smtp_auth_free(struct smtp_session *s);
/* 1 when this client may have recipients accepted (allow network, or logged in). */
int smtp_auth_may_relay(const struct smtp_session *s);

/* smtp_commands.c: run one complete command line (CRLF already removed). */
void smtp_command(struct smtp_session *s, char *line, size_t len);
/* smtp_data.c: start DATA, and consume DATA input; returns 1 when it made progress. */
int smtp_data_begin(struct smtp_session *s);
int smtp_data_input(struct smtp_session *s);

#endif
