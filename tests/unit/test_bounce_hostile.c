/*
 * test_bounce_hostile — delivery status notifications (relayd/bounce.c) from
 * input that is not plain: network text (replies, reasons, addresses, xtext)
 * that cannot break out of the lines it was put on; SMTPUTF8 reports, where
 * UTF-8 passes and broken UTF-8 does not; and the reports bounce_build()
 * refuses to make.  The report structure itself is in test_bounce.c.
 * TEST_BOUNCE_OUT: see bounce_helpers.h.
 */
#include "tests/unit/bounce_helpers.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * Replies, reasons, addresses and xtext are network text: CR, LF, controls,
 * 8-bit bytes, boundary look-alikes and endless words stay inside their
 * field, escaped, and the report keeps its shape.
 */
static void test_hostile_text(void)
{
	char endless[3001], spaced[5001];
	memset(endless, 'A', sizeof endless - 1);
	endless[sizeof endless - 1] = '\0';
	for (size_t i = 0; i < sizeof spaced - 1; i++)
		spaced[i] = i % 9 == 8 ? ' ' : 'b';
	spaced[sizeof spaced - 1] = '\0';
	char reply[9000];
	snprintf(reply, sizeof reply,
	    "550 evil\r\n--=_relayd_000000000000_00\r\nContent-Type: text/html\r\n\r\n"
	    "\r\nBcc: victim@example.com\n\x01\x1b[31m\xc3\xa9\xff\t\t end\n%s\n%s",
	    endless, spaced);
	const struct original o = { "alice@example.org\r\nBcc: x@example.com",
	    "+0D+0ASubject:+20evil", QUEUE_RET_FULL, QUEUE_BODY_7BIT, 0,
	    "Subject: x\r\n\r\nhi\r\n" };
	const char *addrs[] = { "bob@example.net\r\nX-Injected: 1", "carol@example.com" };
	const char *orcpts[] = { "rfc822;x+0D+0AFrom:+20evil@example.com+00", NULL };
	struct queue *q;
	struct queue_envelope *orig = open_original(&q, &o, addrs, orcpts, 2);
	if (!orig)
		return;
	const struct bounce_rcpt rcpts[] = {
		{ &orig->rcpts[0], BOUNCE_FAILED, "5.1.1\r\nX-Status: 1", "mx.example.net\r\nX-Host: 1", reply,
		  NULL, NOW, NULL },
		{ &orig->rcpts[1], BOUNCE_FAILED, NULL, NULL, NULL, "expired\r\n\r\n--=_relayd_x", 0, NULL },
	};
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, rcpts, 2, "hostile", &stored) == 0) {
		const char *h = r.t.data, *he = r.head_end;
		static const char *const once[] = { "From", "To", "Subject", "Date", "Message-ID",
		    "MIME-Version", "Content-Type", "Auto-Submitted" };
		for (size_t i = 0; i < sizeof once / sizeof once[0]; i++)
			CHECK(field_count(h, he, once[i]) == 1);
		CHECK(field_count(h, he, "Bcc") == 0);
		CHECK_STR(field(h, he, "To"), "<alice@example.org Bcc: x@example.com>");
		CHECK(stored->body == QUEUE_BODY_7BIT);
		CHECK(plain_ascii(r.t.data, (size_t)(r.parts[2].start - r.t.data)));

		char *text = part_content(&r, 0);
		CHECK_STR(part_field(&r, 0, "Content-Type"), "text/plain; charset=us-ascii");
		CHECK(strstr(text, "\\x01\\x1B[31m\\xC3\\xA9\\xFF end") != NULL);
		CHECK(strstr(text, "\r\n<carol@example.com>: expired --=_relayd_x\r\n") != NULL);
		CHECK(strstr(text, "\r\nBcc:") == NULL && strstr(text, "\r\n--") == NULL);
		CHECK(strstr(text, "Content-Type: text/html\r\n    Bcc: victim") != NULL);
		free(text);

		char *status = part_content(&r, 1);
		CHECK(strstr(status, "\r\n\r\n\r\n") == NULL);
		char *msg = dsn_block(status, 0), *bob = dsn_block(status, 1);
		char *carol = dsn_block(status, 2), *none = dsn_block(status, 3);
		CHECK_STR(block_field(msg, "Original-Envelope-Id"), "Subject: evil");
		CHECK(field_count(msg, msg + strlen(msg), "Subject") == 0);
		CHECK_STR(block_field(bob, "Original-Recipient"),
		    "rfc822;x From: evil@example.com\\x00");
		CHECK_STR(block_field(bob, "Final-Recipient"),
		    "rfc822; bob@example.net X-Injected: 1");
		CHECK_STR(block_field(bob, "Status"), "5.0.0");
		CHECK_STR(block_field(bob, "Remote-MTA"), "dns; mx.example.net X-Host: 1");
		static const char diag[] = "smtp; 550 evil --=_relayd_000000000000_00 "
		    "Content-Type: text/html Bcc: victim@example.com \\x01\\x1B[31m";
		CHECK(strncmp(block_field(bob, "Diagnostic-Code"), diag, sizeof diag - 1) == 0);
		static const char *const never[] = { "From", "X-Injected", "X-Status", "X-Host",
		    "Bcc", "Content-Type" };
		for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
			CHECK(field_count(bob, bob + strlen(bob), never[i]) == 0);
		CHECK_STR(block_field(carol, "Status"), "5.0.0");
		CHECK_STR(none, "");
		free(msg);
		free(bob);
		free(carol);
		free(none);
		free(status);
	}
	report_close(&r, stored);
	close_original(q, orig);
}

/* SMTPUTF8: UTF-8 passes (RFC 6533 types, charset=utf-8, 8bit); broken UTF-8 does not. */
static void test_smtputf8_report(void)
{
	const struct original o = { "j\xc3\xb8rn@example.org", NULL, QUEUE_RET_NONE,
	    QUEUE_BODY_7BIT, 1, "Subject: \xc3\xb8l\r\n\r\nhi\r\n" };
	const char *addrs[] = { "m\xc3\xbcller@b\xc3\xbc" "cher.example" };
	struct queue *q;
	struct queue_envelope *orig = open_original(&q, &o, addrs, NULL, 1);
	if (!orig)
		return;
	const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_FAILED, "5.1.1", "mx.example.net",
	    "550 5.1.1 Benutzer unbekannt: m\xc3\xbcller \xc3\x28", NULL, NOW, NULL };
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, &rcpt, 1, "smtputf8", &stored) == 0) {
		CHECK(stored->smtputf8 == 1);
		CHECK(stored->body == QUEUE_BODY_8BITMIME);
		CHECK_STR(field(r.t.data, r.head_end, "To"), "<j\xc3\xb8rn@example.org>");
		CHECK_STR(part_field(&r, 0, "Content-Type"), "text/plain; charset=utf-8");
		CHECK_STR(part_field(&r, 0, "Content-Transfer-Encoding"), "8bit");
		CHECK_STR(part_field(&r, 1, "Content-Type"), "message/global-delivery-status");
		CHECK_STR(part_field(&r, 2, "Content-Type"), "message/global");
		char *status = part_content(&r, 1);
		char *rcpt_block = dsn_block(status, 1);
		CHECK_STR(block_field(rcpt_block, "Final-Recipient"),
		    "utf-8; m\xc3\xbcller@b\xc3\xbc" "cher.example");
		CHECK_STR(block_field(rcpt_block, "Diagnostic-Code"),
		    "smtp; 550 5.1.1 Benutzer unbekannt: m\xc3\xbcller \\xC3(");
		free(rcpt_block);
		free(status);
	}
	report_close(&r, stored);
	close_original(q, orig);
}

/* No report to <>, none about nobody, none without the original; nothing leaks. */
static void test_refused(void)
{
	struct queue *q;
	struct queue_envelope *orig = open_plain_original(&q, QUEUE_RET_NONE);
	if (!orig)
		return;
	const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_FAILED, "5.1.1", NULL, NULL, "gone", 0, NULL };
	struct queue_envelope *env = NULL;
	struct queue_spool *sp = NULL;

	errno = 0;
	CHECK(bounce_build(q, HOSTNAME, orig, &rcpt, 0, NOW, &env, &sp) == -1 && errno == EINVAL);
	char *sender = orig->sender;
	orig->sender = (char *)"";
	errno = 0;
	CHECK(bounce_build(q, HOSTNAME, orig, &rcpt, 1, NOW, &env, &sp) == -1 && errno == EINVAL);
	orig->sender = sender;
	CHECK(env == NULL && sp == NULL);

	/* The original is gone (delivered meanwhile, deleted by relayctl). */
	memcpy(orig->id, "000000000001", sizeof orig->id);
	errno = 0;
	CHECK(bounce_build(q, HOSTNAME, orig, &rcpt, 1, NOW, &env, &sp) == -1 && errno == EIO);
	CHECK(env == NULL && sp == NULL);
	close_original(q, orig);
}

int main(void)
{
	if (report_tests_init("test_bounce_hostile") < 0)
		return 1;
	TEST_CASE(test_hostile_text);
	TEST_CASE(test_smtputf8_report);
	TEST_CASE(test_refused);
	scratch_remove();
	return check_exit();
}
