/*
 * test_bounce — delivery status notifications (relayd/bounce.c): who gets
 * one (NOTIFY), and what a report looks like once it has gone through the
 * queue and come back: RFC 3464 structure, every field, CRLF and line
 * lengths, the original whole or only its headers; failure, delay, relayed
 * and expired reports.  Network text that cannot break out of the lines it
 * was put on, SMTPUTF8 and the reports refused are in test_bounce_hostile.c.
 * TEST_BOUNCE_OUT: see bounce_helpers.h.
 */
#include "tests/unit/bounce_helpers.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* RFC 3461 §4.1, and without NOTIFY: failures and delays both, never success. */
static void test_bounce_wanted(void)
{
	static const struct {
		unsigned notify;
		int action, want;
	} rows[] = {
		{ 0, 0, 1 },
		{ 0, 1, 1 },
		{ QUEUE_NOTIFY_NEVER, 0, 0 },
		{ QUEUE_NOTIFY_NEVER, 1, 0 },
		{ QUEUE_NOTIFY_FAILURE, 0, 1 },
		{ QUEUE_NOTIFY_FAILURE, 1, 0 },
		{ QUEUE_NOTIFY_DELAY, 0, 0 },
		{ QUEUE_NOTIFY_DELAY, 1, 1 },
		{ QUEUE_NOTIFY_SUCCESS, 0, 0 },
		{ QUEUE_NOTIFY_SUCCESS, 1, 0 },
		{ QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY, 0, 1 },
		{ QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY, 1, 1 },
		{ QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE, 0, 1 },
		{ QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_DELAY, 0, 0 },
		{ QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY, 1, 1 },
		{ 0, BOUNCE_RELAYED, 0 },
		{ QUEUE_NOTIFY_NEVER, BOUNCE_RELAYED, 0 },
		{ QUEUE_NOTIFY_SUCCESS, BOUNCE_RELAYED, 1 },
		{ QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY, BOUNCE_RELAYED, 0 },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		if (bounce_wanted(rows[i].notify, rows[i].action) != rows[i].want) {
			fprintf(stderr, "  row %zu: notify %#x action %d\n", i, rows[i].notify,
			    rows[i].action);
			CHECK(bounce_wanted(rows[i].notify, rows[i].action) == rows[i].want);
		}
}

static const char simple_message[] =
    "Received: from mail.example.org ([192.0.2.7])\r\n"
    "\tby relay.example.org (relayd) with ESMTP id 0123456789AB;\r\n"
    "\tMon, 11 Nov 2024 09:48:23 +0000\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: bob@example.net, carol@example.com\r\n"
    "Subject: lunch\r\n"
    "Message-ID: <lunch.1@example.org>\r\n"
    "\r\n"
    "Caf\xc3\xa9 at noon?\r\n"
    "-- \r\n"
    "Alice\r\n";

static const char gmail_reply[] =
    "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
    "550-5.1.1 double-checking the recipient's email address for typos or\n"
    "550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser";

/* Two recipients: one refused upstream (ORCPT, a three-line 550), one expired locally. */
static void test_failure_report(void)
{
	const struct original o = { "alice@example.org", "QQ+2B314159", QUEUE_RET_NONE,
	    QUEUE_BODY_8BITMIME, 0, simple_message };
	const char *addrs[] = { "bob@example.net", "carol@example.com" };
	const char *orcpts[] = { "rfc822;b+2Bob@example.net", NULL };
	struct queue *q;
	struct queue_envelope *orig = open_original(&q, &o, addrs, orcpts, 2);
	if (!orig)
		return;
	const struct bounce_rcpt rcpts[] = {
		{ &orig->rcpts[0], BOUNCE_FAILED, "5.1.1", "mx.example.net", gmail_reply, NULL, NOW - 60, NULL },
		{ &orig->rcpts[1], BOUNCE_FAILED, "4.4.7", NULL, NULL, "delivery time expired", 0, NULL },
	};
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, rcpts, 2, "failure", &stored) == 0) {
		const char *h = r.t.data, *he = r.head_end;
		char want[256];
		CHECK_STR(field(h, he, "From"), "Mail Delivery System <MAILER-DAEMON@" HOSTNAME ">");
		CHECK_STR(field(h, he, "To"), "<alice@example.org>");
		CHECK_STR(field(h, he, "Subject"), "Undelivered Mail Returned to Sender");
		CHECK(date_is(field(h, he, "Date"), NOW));
		snprintf(want, sizeof want, "<%s.%lld@%s>", stored->id, (long long)NOW, HOSTNAME);
		CHECK_STR(field(h, he, "Message-ID"), want);
		CHECK_STR(field(h, he, "Auto-Submitted"), "auto-replied");
		CHECK_STR(field(h, he, "MIME-Version"), "1.0");
		CHECK(strstr(r.boundary, stored->id) != NULL);
		CHECK(strlen(r.boundary) >= QUEUE_ID_LEN + 32 && strlen(r.boundary) <= 70);
		CHECK(stored->body == QUEUE_BODY_8BITMIME);

		/* Part 1: for people. */
		CHECK_STR(part_field(&r, 0, "Content-Type"), "text/plain; charset=us-ascii");
		char *text = part_content(&r, 0);
		CHECK(plain_ascii(text, strlen(text)));
		CHECK(lines_ok(text, strlen(text), 78));
		CHECK(strstr(text, "This is the mail system at host " HOSTNAME ".\r\n") != NULL);
		CHECK(strstr(text, "could not\r\nbe delivered to one or more recipients") != NULL);
		CHECK(strstr(text, "It is attached below.") != NULL);
		CHECK(strstr(text, "\r\n<bob@example.net>: host mx.example.net said: "
		    "550-5.1.1 The email account that\r\n    you tried") != NULL);
		CHECK(strstr(text, "\r\n    550-5.1.1 double-checking the recipient's") != NULL);
		CHECK(strstr(text, "\r\n    550 5.1.1 unnecessary spaces.") != NULL);
		CHECK(strstr(text, "\r\n<carol@example.com>: delivery time expired\r\n") != NULL);
		free(text);

		/* Part 2: for programs. */
		CHECK_STR(part_field(&r, 1, "Content-Type"), "message/delivery-status");
		char *status = part_content(&r, 1);
		CHECK(plain_ascii(status, strlen(status)));
		CHECK(lines_ok(status, strlen(status), 78));
		char *msg = dsn_block(status, 0), *bob = dsn_block(status, 1);
		char *carol = dsn_block(status, 2), *none = dsn_block(status, 3);
		CHECK_STR(block_field(msg, "Reporting-MTA"), "dns; " HOSTNAME);
		CHECK_STR(block_field(msg, "Original-Envelope-Id"), "QQ+314159");
		CHECK(date_is(block_field(msg, "Arrival-Date"), orig->arrival));
		CHECK_STR(block_field(bob, "Original-Recipient"), "rfc822;b+ob@example.net");
		CHECK_STR(block_field(bob, "Final-Recipient"), "rfc822; bob@example.net");
		CHECK_STR(block_field(bob, "Action"), "failed");
		CHECK_STR(block_field(bob, "Status"), "5.1.1");
		CHECK_STR(block_field(bob, "Remote-MTA"), "dns; mx.example.net");
		CHECK_STR(block_field(bob, "Diagnostic-Code"), "smtp; 550-5.1.1 The email account "
		    "that you tried to reach does not exist. Please try 550-5.1.1 double-checking "
		    "the recipient's email address for typos or 550 5.1.1 unnecessary spaces. "
		    "https://support.google.com/mail/?p=NoSuchUser");
		CHECK(date_is(block_field(bob, "Last-Attempt-Date"), NOW - 60));
		CHECK(field_count(carol, carol + strlen(carol), "Original-Recipient") == 0);
		CHECK_STR(block_field(carol, "Final-Recipient"), "rfc822; carol@example.com");
		CHECK_STR(block_field(carol, "Action"), "failed");
		CHECK_STR(block_field(carol, "Status"), "4.4.7");
		CHECK(field_count(carol, carol + strlen(carol), "Remote-MTA") == 0);
		CHECK(field_count(carol, carol + strlen(carol), "Diagnostic-Code") == 0);
		CHECK(field_count(carol, carol + strlen(carol), "Last-Attempt-Date") == 0);
		CHECK_STR(none, "");
		free(msg);
		free(bob);
		free(carol);
		free(none);
		free(status);

		/* Part 3: the original, byte for byte. */
		CHECK_STR(part_field(&r, 2, "Content-Type"), "message/rfc822");
		CHECK_STR(part_field(&r, 2, "Content-Transfer-Encoding"), "8bit");
		char *original = part_content(&r, 2);
		CHECK_STR(original, simple_message);
		free(original);
	}
	report_close(&r, stored);
	close_original(q, orig);
}

/* RET=HDRS, or a body over BOUNCE_FULL_MAX: the header section only, and 7bit. */
static void test_headers_only(void)
{
	struct queue *q = open_queue(new_dir(), 0, 0, 64 * KiB);
	if (!q)
		return;
	size_t big_len = BOUNCE_FULL_MAX + 10000;
	char *big = malloc(sizeof simple_message + big_len);
	memcpy(big, simple_message, sizeof simple_message);
	char *p = big + strlen(big);
	for (size_t i = 0; i + 80 <= big_len; i += 80, p += 80)
		memcpy(p, "0123456789012345678901234567890123456789"
		    "01234567890123456789012345678901234567\r\n", 80);
	*p = '\0';
	const struct {
		enum queue_ret ret;
		const char *text;
		const char *says;
	} rows[] = {
		{ QUEUE_RET_HDRS, simple_message, "Its headers are attached below." },
		{ QUEUE_RET_FULL, big, "larger than 50000 bytes, so only its headers" },
		{ QUEUE_RET_NONE, big, "larger than 50000 bytes, so only its headers" },
	};
	const char *headers_end = strstr(simple_message, "\r\n\r\n") + 4;
	size_t headers_len = (size_t)(headers_end - simple_message);

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const struct original o = { "alice@example.org", NULL, rows[i].ret,
		    QUEUE_BODY_8BITMIME, 0, rows[i].text };
		const char *addrs[] = { "bob@example.net" };
		struct queue_envelope *orig = store_original(q, &o, addrs, NULL, 1);
		if (!orig)
			continue;
		const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_FAILED, "5.1.1", "mx.example.net",
		    "550 5.1.1 no such user", NULL, NOW, NULL };
		struct report r;
		struct queue_envelope *stored;
		char name[32];
		snprintf(name, sizeof name, "headers-only-%zu", i);
		if (report_open(&r, q, orig, &rcpt, 1, name, &stored) == 0) {
			CHECK(stored->body == QUEUE_BODY_7BIT);
			CHECK(r.t.len < 8000);
			CHECK(field_count(r.t.data, r.head_end, "Content-Transfer-Encoding") == 0);
			char *text = part_content(&r, 0);
			CHECK(strstr(text, rows[i].says) != NULL);
			free(text);
			CHECK_STR(part_field(&r, 2, "Content-Type"), "text/rfc822-headers");
			char *headers = part_content(&r, 2);
			CHECK(strlen(headers) == headers_len &&
			    memcmp(headers, simple_message, headers_len) == 0);
			free(headers);
		}
		report_close(&r, stored);
		queue_envelope_free(orig);
	}
	free(big);
	queue_close(q);
}

/* A message that is all header (no empty line) is cut after the line that passes the limit. */
static void test_endless_header(void)
{
	size_t len = 0, cap = BOUNCE_FULL_MAX + 10000;
	char *text = malloc(cap + 1);
	for (int i = 0; len + 80 <= cap; i++)
		len += (size_t)snprintf(text + len, cap + 1 - len, "X-Filler-%05d: %062d\r\n", i, i);
	const struct original o = { "alice@example.org", NULL, QUEUE_RET_HDRS,
	    QUEUE_BODY_7BIT, 0, text };
	const char *addrs[] = { "bob@example.net" };
	struct queue *q;
	struct queue_envelope *orig = open_original(&q, &o, addrs, NULL, 1);
	if (!orig) {
		free(text);
		return;
	}
	const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_FAILED, "5.1.1", NULL, NULL, "gone", 0, NULL };
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, &rcpt, 1, "endless-header", &stored) == 0) {
		char *headers = part_content(&r, 2);
		size_t n = strlen(headers);
		CHECK(n >= BOUNCE_FULL_MAX && n < BOUNCE_FULL_MAX + 80);
		CHECK(n % 80 == 0 && memcmp(headers, text, n) == 0);
		free(headers);
	}
	report_close(&r, stored);
	free(text);
	close_original(q, orig);
}

/* A delay warning: its own subject and words, Action: delayed. */
static void test_delay_report(void)
{
	struct queue *q;
	struct queue_envelope *orig = open_plain_original(&q, QUEUE_RET_NONE);
	if (!orig)
		return;
	const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_DELAYED, "4.4.1",
	    "mx.example.net", "451 4.4.1 try again later", NULL, NOW - 5, NULL };
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, &rcpt, 1, "delay", &stored) == 0) {
		CHECK_STR(field(r.t.data, r.head_end, "Subject"), "Delayed Mail (still being retried)");
		CHECK(stored->body == QUEUE_BODY_7BIT);
		char *text = part_content(&r, 0);
		CHECK(strstr(text, "THIS IS A WARNING ONLY") != NULL);
		CHECK(strstr(text, "still being retried") != NULL);
		CHECK(strstr(text, "<bob@example.net>: host mx.example.net said: 451 4.4.1 try "
		    "again later\r\n") != NULL);
		free(text);
		char *status = part_content(&r, 1);
		char *bob = dsn_block(status, 1);
		CHECK_STR(block_field(bob, "Action"), "delayed");
		CHECK_STR(block_field(bob, "Status"), "4.4.1");
		CHECK(field_count(bob, bob + strlen(bob), "Will-Retry-Until") == 0);
		free(bob);
		free(status);
		/* A warning returns the headers only, whatever RET says. */
		CHECK(strstr(r.t.data, "Content-Type: text/rfc822-headers") != NULL);
		char *original = part_content(&r, 2);
		CHECK_STR(original, "Subject: x\r\n\r\n");
		free(original);
	}
	report_close(&r, stored);
	close_original(q, orig);
}

/* NOTIFY=SUCCESS through an upstream without DSN: Action: relayed, headers only. */
static void test_relayed_report(void)
{
	struct queue *q;
	struct queue_envelope *orig = open_plain_original(&q, QUEUE_RET_FULL);
	if (!orig)
		return;
	const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_RELAYED, "2.0.0",
	    "smtp.example.net", "250 2.0.0 Ok: queued as 1234", NULL, NOW, NULL };
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, &rcpt, 1, "relayed", &stored) == 0) {
		CHECK(strstr(field(r.t.data, r.head_end, "Subject"), "Relayed") != NULL);
		char *text = part_content(&r, 0);
		CHECK(strstr(text, "does not support delivery status notifications") != NULL);
		CHECK(strstr(text, "<bob@example.net>: host smtp.example.net said: 250 2.0.0 Ok: "
		    "queued as 1234\r\n") != NULL);
		free(text);
		char *status = part_content(&r, 1);
		char *bob = dsn_block(status, 1);
		CHECK_STR(block_field(bob, "Action"), "relayed");
		CHECK_STR(block_field(bob, "Status"), "2.0.0");
		CHECK_STR(block_field(bob, "Remote-MTA"), "dns; smtp.example.net");
		free(bob);
		free(status);
		/* RET=FULL is for failures: a success report returns the headers only. */
		CHECK(strstr(r.t.data, "Content-Type: text/rfc822-headers") != NULL);
	}
	report_close(&r, stored);
	close_original(q, orig);
}

/* Given up after temporary failures: relayd's reason and the last reply, both. */
static void test_expired_after_reply(void)
{
	struct queue *q;
	struct queue_envelope *orig = open_plain_original(&q, QUEUE_RET_NONE);
	if (!orig)
		return;
	const struct bounce_rcpt rcpt = { &orig->rcpts[0], BOUNCE_FAILED, "4.4.7", "mx.example.net",
	    "451 4.2.0 mailbox busy", "delivery time expired", NOW, NULL };
	struct report r;
	struct queue_envelope *stored;
	if (report_open(&r, q, orig, &rcpt, 1, "expired", &stored) == 0) {
		char *text = part_content(&r, 0);
		CHECK(strstr(text, "\r\n<bob@example.net>: delivery time expired; host "
		    "mx.example.net said: 451 4.2.0\r\n    mailbox busy\r\n") != NULL);
		free(text);
		char *status = part_content(&r, 1);
		char *bob = dsn_block(status, 1);
		CHECK_STR(block_field(bob, "Action"), "failed");
		CHECK_STR(block_field(bob, "Status"), "4.4.7");
		CHECK_STR(block_field(bob, "Diagnostic-Code"), "smtp; 451 4.2.0 mailbox busy");
		free(bob);
		free(status);
	}
	report_close(&r, stored);
	close_original(q, orig);
}

int main(void)
{
	if (report_tests_init("test_bounce") < 0)
		return 1;
	TEST_CASE(test_bounce_wanted);
	TEST_CASE(test_failure_report);
	TEST_CASE(test_headers_only);
	TEST_CASE(test_endless_header);
	TEST_CASE(test_delay_report);
	TEST_CASE(test_relayed_report);
	TEST_CASE(test_expired_after_reply);
	scratch_remove();
	return check_exit();
}
