/*
 * bounce — the delivery status notifications relayd sends back to a sender
 * (RFC 3464 multipart/report; report-type=delivery-status, RFC 3461 NOTIFY
 * and RET, RFC 3834 Auto-Submitted).  Builds the message; the caller commits
 * it to the queue together with the recipients' new states.
 */
#ifndef RELAYD_BOUNCE_H
#define RELAYD_BOUNCE_H

#include <stdint.h>

#include "queue/queue.h"

/* Above this many body bytes a DSN returns only the original's headers (like Postfix). */
#define BOUNCE_FULL_MAX 50000

/* What happened to a reported recipient: its Action field (RFC 3464 §2.3.3). */
enum bounce_action {
	BOUNCE_FAILED,			/* given up: a failure report */
	BOUNCE_DELAYED,			/* still retried: a warning */
	BOUNCE_RELAYED,			/* sent on to an upstream without DSN (NOTIFY=SUCCESS) */
};

/* One recipient to report. */
struct bounce_rcpt {
	const struct queue_rcpt *rcpt;	/* addr, orcpt (xtext as received), notify */
	enum bounce_action action;
	const char *status;		/* enhanced status code, "5.1.1" */
	const char *remote_mta;		/* upstream host name (not host[ip]:port), or NULL */
	const char *diagnostic;		/* the upstream's whole reply (lines joined by "\n"),
					 * or NULL when the failure was local */
	const char *reason;		/* relayd's own words, alone or before the
					 * diagnostic ("delivery time expired ...") */
	int64_t last_attempt;		/* unix seconds, 0 when never tried */
	const char *hint;		/* what it usually means (hints.c), or NULL */
};

/*
 * Whether the sender asked for a report (RFC 3461 §4.1): never for NOTIFY=NEVER;
 * with NOTIFY given, only for what it lists (SUCCESS for relayed); without
 * NOTIFY, failures and delays.  The null sender never gets one (bounce_build).
 */
int bounce_wanted(unsigned notify, enum bounce_action action);

/*
 * Build the report about orig's recipients rcpts[0..n), to orig->sender, from the null sender.  The new message gets its
 * own id (queue_new_id), arrival now, one recipient (orig->sender, NOTIFY
 * NEVER so no report about a report), and a body in a fresh spool: headers
 * (From MAILER-DAEMON@hostname, To, Subject, Date, Message-ID, MIME-Version,
 * Auto-Submitted: auto-replied), a text/plain part that quotes each
 * recipient's reply, the message/delivery-status part, and the original as
 * message/rfc822 (a failure report with RET=FULL or none, body at most
 * BOUNCE_FULL_MAX bytes) or text/rfc822-headers.  Its words follow the gravest
 * action reported: failed, else delayed, else relayed.  CRLF line ends, no line over 998 bytes.
 * 0 with *env and *spool set (the caller owns them), or -1 (errno set;
 * EINVAL when orig->sender is "").
 */
int bounce_build(struct queue *q, const char *hostname, const struct queue_envelope *orig,
    const struct bounce_rcpt *rcpts, size_t n, int64_t now,
    struct queue_envelope **env, struct queue_spool **spool);

/*
 * A report to the postmaster instead, headers only, its envelope marked a
 * notice (env->notice: when it cannot be delivered it is dropped, never
 * reported on).  COPY: the report just built for orig's sender, for
 * `notify bounce` / `notify delay`.  DOUBLE: orig is itself a bounce (null
 * sender) that could not be delivered; the postmaster hears of it once.
 */
enum bounce_notice { BOUNCE_NOTICE_COPY, BOUNCE_NOTICE_DOUBLE };
/* RFC 5322 §3.3 date in local time; day and month names never from the locale. */
void bounce_format_date(char *buf, size_t len, int64_t when);
int bounce_build_notice(struct queue *q, const char *hostname, const char *postmaster,
    enum bounce_notice what, const struct queue_envelope *orig,
    const struct bounce_rcpt *rcpts, size_t n, int64_t now,
    struct queue_envelope **env, struct queue_spool **spool);

#endif
