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

/* One recipient to report. */
struct bounce_rcpt {
	const struct queue_rcpt *rcpt;	/* addr, orcpt (xtext as received), notify */
	int delayed;			/* 1: a delay warning (Action: delayed), 0: failed */
	const char *status;		/* enhanced status code, "5.1.1" */
	const char *remote_mta;		/* upstream host name (not host[ip]:port), or NULL */
	const char *diagnostic;		/* the upstream's whole reply (lines joined by "\n"),
					 * or NULL when the failure was local */
	const char *reason;		/* relayd's own words, alone or before the
					 * diagnostic ("delivery time expired ...") */
	int64_t last_attempt;		/* unix seconds, 0 when never tried */
};

/*
 * Whether the sender asked for a report (RFC 3461 §4.1): never for NOTIFY=NEVER;
 * with NOTIFY given, only for what it lists; without NOTIFY, failures always
 * and delays too.  The null sender never gets one (checked by bounce_build).
 */
int bounce_wanted(unsigned notify, int delayed);

/*
 * Build the report about orig's recipients rcpts[0..n) (all failures or all
 * delays), to orig->sender, from the null sender.  The new message gets its
 * own id (queue_new_id), arrival now, one recipient (orig->sender, NOTIFY
 * NEVER so no report about a report), and a body in a fresh spool: headers
 * (From MAILER-DAEMON@hostname, To, Subject, Date, Message-ID, MIME-Version,
 * Auto-Submitted: auto-replied), a text/plain part that quotes each
 * recipient's reply, the message/delivery-status part, and the original as
 * message/rfc822 (RET=FULL or none, body at most BOUNCE_FULL_MAX bytes) or
 * text/rfc822-headers.  CRLF line ends, no line over 998 bytes.
 * 0 with *env and *spool set (the caller owns them), or -1 (errno set;
 * EINVAL when orig->sender is "").
 */
int bounce_build(struct queue *q, const char *hostname, const struct queue_envelope *orig,
    const struct bounce_rcpt *rcpts, size_t n, int64_t now,
    struct queue_envelope **env, struct queue_spool **spool);

#endif
