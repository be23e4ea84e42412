/*
 * smtp_parse — the server's pure parsers for what a client sends: the command
 * verb, MAIL FROM and RCPT TO paths (RFC 5321 §4.1.2, RFC 6531 for UTF-8) and
 * their ESMTP parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, NOTIFY, ORCPT).
 * No I/O and no session state, so every rule is unit-tested in a table.
 */
#ifndef RELAYD_SMTP_PARSE_H
#define RELAYD_SMTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define SMTP_ADDR_MAX   512	/* mailbox bytes we store; RFC 5321 says 256 for a path, SRS needs more */
#define SMTP_ENVID_MAX  100	/* RFC 3461 §4.4 */
#define SMTP_ORCPT_MAX  500	/* RFC 3461 §4.2 */
#define SMTP_VERB_MAX   16

enum smtp_parse_status {
	SMTP_PARSE_OK,
	SMTP_PARSE_SYNTAX,		/* no "FROM:<…>" shape at all: 501 5.5.4 */
	SMTP_PARSE_BAD_ADDRESS,		/* the mailbox is malformed: 501 5.1.7 / 5.1.3 */
	SMTP_PARSE_NEED_UTF8,		/* non-ASCII without SMTPUTF8: 553 5.6.7 */
	SMTP_PARSE_UNKNOWN_PARAM,	/* 555 5.5.4 */
	SMTP_PARSE_BAD_PARAM,		/* known parameter, bad or repeated value: 501 5.5.4 */
};

enum smtp_body { SMTP_BODY_NONE, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };
enum smtp_ret { SMTP_RET_NONE, SMTP_RET_FULL, SMTP_RET_HDRS };

enum {
	SMTP_NOTIFY_NEVER   = 1 << 0,
	SMTP_NOTIFY_SUCCESS = 1 << 1,
	SMTP_NOTIFY_FAILURE = 1 << 2,
	SMTP_NOTIFY_DELAY   = 1 << 3,
};

struct smtp_mail_args {
	char addr[SMTP_ADDR_MAX + 1];	/* "" for the null sender <> */
	int size_given;
	uint64_t size;
	enum smtp_body body;
	int smtputf8;
	enum smtp_ret ret;
	char envid[SMTP_ENVID_MAX + 1];	/* xtext as received; "" when absent */
	char bad_param[64];		/* the offending keyword, for the reply */
};

struct smtp_rcpt_args {
	char addr[SMTP_ADDR_MAX + 1];
	unsigned notify;		/* SMTP_NOTIFY_* bits, 0 when absent */
	char orcpt[SMTP_ORCPT_MAX + 1];	/* "addr-type;xtext" as received; "" when absent */
	int postmaster;			/* RCPT TO:<postmaster>, addr is "postmaster" */
	char bad_param[64];
};

/*
 * Split a command line (without CRLF) into its verb, upper-cased into verb
 * (size SMTP_VERB_MAX + 1), and *args pointing past one space (or at "").
 * Returns -1 when the line holds no plausible verb.
 */
int smtp_parse_verb(const char *line, char *verb, const char **args);

/* "FROM:<path> params"; the null path <> is allowed. */
enum smtp_parse_status smtp_parse_mail(const char *args, struct smtp_mail_args *out);
/* "TO:<path> params"; utf8 is 1 when the transaction's MAIL had SMTPUTF8. */
enum smtp_parse_status smtp_parse_rcpt(const char *args, int utf8,
    struct smtp_rcpt_args *out);

/*
 * "MECHANISM [initial-response]" of AUTH (RFC 4954 §4): the mechanism,
 * upper-cased, into mech (mechlen bytes with the NUL); *initial points at the
 * response in args, or is NULL.  SMTP_PARSE_SYNTAX when there is no
 * mechanism, an empty response or more than one; SMTP_PARSE_UNKNOWN_PARAM when
 * the name is too long to be one on offer.  Whether the response is base64 is
 * for the SASL layer to say.
 */
enum smtp_parse_status smtp_parse_auth(const char *args, char *mech, size_t mechlen,
    const char **initial);

/* 1 when s (len bytes) is well-formed UTF-8. */
int smtp_utf8_valid(const unsigned char *s, size_t len);

#endif
