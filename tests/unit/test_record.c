/*
 * test_record — the queue's binary records (queue/record.c): every row of the
 * tables survives encode + decode unchanged (NULL stays NULL, "" stays ""),
 * and truncated, padded, mutated or plain hostile bytes are refused with -1,
 * never a crash or an over-read (ASan watches).
 */
#include "queue/record.h"
#include "tests/unit/check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const struct queue_envelope envelopes[] = {
	{ .sender = "alice@example.org", .envid = "QQ314159", .ret = QUEUE_RET_HDRS,
	  .body = QUEUE_BODY_8BITMIME, .smtputf8 = 1, .arrival = 1731318503, .arrival_usec = 123456, .size = 12345,
	  .client_addr = "192.0.2.7", .helo = "mail.example.org", .auth_user = "alice",
	  .nrcpts = 3 },
	{ .sender = "", .ret = QUEUE_RET_NONE, .body = QUEUE_BODY_7BIT },	/* null sender, all NULL */
	{ .sender = "", .notice = 1, .smtputf8 = 1 },			/* a postmaster notice */
	{ .sender = "", .envid = "", .client_addr = "", .helo = "", .auth_user = "" },
	{ .sender = "b\xc3\xbc" "cher@b\xc3\xbc" "cher.example", .ret = QUEUE_RET_FULL,
	  .arrival = INT64_MAX, .arrival_usec = 999999, .size = UINT64_MAX, .nrcpts = UINT32_MAX,
	  .client_addr = "2001:db8::1", .helo = "[2001:db8::1]" },
	{ .sender = "x", .arrival = INT64_MIN, .auth_user = "user with spaces\tand tab" },
};

static const struct queue_rcpt rcpts[] = {
	{ .addr = "bob@gmail.com", .orcpt = "rfc822;bob@gmail.com",
	  .notify = QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY,
	  .state = QUEUE_RCPT_PENDING, .attempts = 0, .next_attempt = 0 },
	{ .addr = "ann@yandex.ru", .notify = QUEUE_NOTIFY_NEVER, .state = QUEUE_RCPT_BOUNCED,
	  .attempts = 7, .next_attempt = 1731318503, .last_attempt = 1731318000,
	  .last_reply = "553 5.7.1 Sender address rejected:\nnot owned by auth user",
	  .last_relay = "smtp.yandex.ru[77.88.21.158]:465", .flags = QUEUE_RCPT_WARNED },
	{ .addr = "", .orcpt = "", .last_reply = "", .state = QUEUE_RCPT_SENT,
	  .attempts = UINT32_MAX, .next_attempt = INT64_MIN },
};

static void check_envelope_equal(const struct queue_envelope *got,
    const struct queue_envelope *want)
{
	CHECK_STR(got->sender, want->sender);
	CHECK_STR(got->envid, want->envid);
	CHECK_STR(got->client_addr, want->client_addr);
	CHECK_STR(got->helo, want->helo);
	CHECK_STR(got->auth_user, want->auth_user);
	CHECK(got->ret == want->ret);
	CHECK(got->body == want->body);
	CHECK(got->smtputf8 == want->smtputf8);
	CHECK(got->notice == want->notice);
	CHECK(got->arrival == want->arrival);
	CHECK(got->arrival_usec == want->arrival_usec);
	CHECK(got->size == want->size);
}

static void free_envelope_strings(struct queue_envelope *env)
{
	free(env->sender);
	free(env->envid);
	free(env->client_addr);
	free(env->helo);
	free(env->auth_user);
	memset(env, 0, sizeof *env);
}

static unsigned char *encode_envelope(const struct queue_envelope *env, size_t *len)
{
	*len = queue_record_envelope_len(env);
	unsigned char *buf = malloc(*len);
	queue_record_envelope_encode(env, buf);
	return buf;
}

static unsigned char *encode_rcpt(const struct queue_rcpt *r, size_t *len)
{
	*len = queue_record_rcpt_len(r);
	unsigned char *buf = malloc(*len);
	queue_record_rcpt_encode(r, buf);
	return buf;
}

static void test_envelope_round_trip(void)
{
	for (size_t i = 0; i < sizeof envelopes / sizeof envelopes[0]; i++) {
		size_t len;
		unsigned char *buf = encode_envelope(&envelopes[i], &len);
		struct queue_envelope got = { 0 };
		uint32_t n = 0;
		CHECK(len > 0);
		CHECK(buf[0] == QUEUE_RECORD_VERSION);
		CHECK(queue_record_envelope_decode(buf, len, &got, &n) == 0);
		check_envelope_equal(&got, &envelopes[i]);
		CHECK(n == envelopes[i].nrcpts);
		free_envelope_strings(&got);
		free(buf);
	}
}

static void test_rcpt_round_trip(void)
{
	for (size_t i = 0; i < sizeof rcpts / sizeof rcpts[0]; i++) {
		size_t len;
		unsigned char *buf = encode_rcpt(&rcpts[i], &len);
		struct queue_rcpt got = { 0 };
		CHECK(len > 0);
		CHECK(queue_record_rcpt_decode(buf, len, &got) == 0);
		CHECK_STR(got.addr, rcpts[i].addr);
		CHECK_STR(got.orcpt, rcpts[i].orcpt);
		CHECK_STR(got.last_reply, rcpts[i].last_reply);
		CHECK(got.notify == rcpts[i].notify);
		CHECK(got.state == rcpts[i].state);
		CHECK(got.attempts == rcpts[i].attempts);
		CHECK(got.next_attempt == rcpts[i].next_attempt);
		CHECK(got.last_attempt == rcpts[i].last_attempt);
		CHECK(got.flags == rcpts[i].flags);
		CHECK_STR(got.last_relay, rcpts[i].last_relay);
		queue_rcpt_clear(&got);
		free(buf);
	}
}

/* What cannot be decoded must not be written in the first place. */
static void test_unstorable_refused(void)
{
	static const struct queue_envelope bad_envs[] = {
		{ .sender = NULL },
		{ .sender = "", .ret = (enum queue_ret)3 },
		{ .sender = "", .body = (enum queue_body)2 },
		{ .sender = "", .nrcpts = (size_t)UINT32_MAX + 1 },
	};
	static const struct queue_rcpt bad_rcpts[] = {
		{ .addr = NULL },
		{ .addr = "a@b", .state = (enum queue_rcpt_state)3 },
		{ .addr = "a@b", .notify = 1 << 4 },
	};
	for (size_t i = 0; i < sizeof bad_envs / sizeof bad_envs[0]; i++)
		CHECK(queue_record_envelope_len(&bad_envs[i]) == 0);
	for (size_t i = 0; i < sizeof bad_rcpts / sizeof bad_rcpts[0]; i++)
		CHECK(queue_record_rcpt_len(&bad_rcpts[i]) == 0);
}

/* Hand-made hostile records.  Fixed part: version ret body flags arrival(8) size(8) nrcpts(4),
 * and in version 2 arrival_usec(4). */
#define ENV_HEAD(v, ret, body, flags) v, ret, body, flags, 0, 0, 0, 0, 0, 0, 0, 1, \
	0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1
#define NULLSTR 0xff, 0xff, 0xff, 0xff
#define EMPTY 0, 0, 0, 0

static const struct {
	const char *name;
	unsigned char bytes[64];
	size_t len;
} bad_envelope_rows[] = {
	{ "empty", { 0 }, 0 },
	{ "version 0", { ENV_HEAD(0, 0, 0, 0), EMPTY, NULLSTR, NULLSTR, NULLSTR, NULLSTR }, 44 },
	{ "version 3", { ENV_HEAD(3, 0, 0, 0), EMPTY, EMPTY, NULLSTR, NULLSTR, NULLSTR, NULLSTR }, 48 },
	{ "usec 10^6", { ENV_HEAD(2, 0, 0, 0), 0, 0x0f, 0x42, 0x40, EMPTY, NULLSTR, NULLSTR, NULLSTR,
	  NULLSTR }, 48 },
	{ "v2 without usec", { ENV_HEAD(2, 0, 0, 0), EMPTY, NULLSTR, NULLSTR, NULLSTR, NULLSTR }, 44 },
	{ "ret 3", { ENV_HEAD(1, 3, 0, 0), EMPTY, NULLSTR, NULLSTR, NULLSTR, NULLSTR }, 44 },
	{ "body 2", { ENV_HEAD(1, 0, 2, 0), EMPTY, NULLSTR, NULLSTR, NULLSTR, NULLSTR }, 44 },
	{ "unknown flag", { ENV_HEAD(1, 0, 0, 4), EMPTY, NULLSTR, NULLSTR, NULLSTR, NULLSTR }, 44 },
	{ "NULL sender", { ENV_HEAD(1, 0, 0, 0), NULLSTR, NULLSTR, NULLSTR, NULLSTR, NULLSTR }, 44 },
	{ "strings missing", { ENV_HEAD(1, 0, 0, 0), EMPTY, NULLSTR }, 32 },
	{ "trailing byte", { ENV_HEAD(1, 0, 0, 0), EMPTY, NULLSTR, NULLSTR, NULLSTR, NULLSTR, 0 }, 45 },
	{ "length past end", { ENV_HEAD(1, 0, 0, 0), 0, 0, 0, 5, 'a', 'b' }, 30 },
	{ "length 2^32-2", { ENV_HEAD(1, 0, 0, 0), 0xff, 0xff, 0xff, 0xfe, 'a' }, 29 },
	{ "NUL inside", { ENV_HEAD(1, 0, 0, 0), 0, 0, 0, 3, 'a', 0, 'b',
	  NULLSTR, NULLSTR, NULLSTR, NULLSTR }, 47 },
	{ "half a length", { ENV_HEAD(1, 0, 0, 0), EMPTY, NULLSTR, NULLSTR, NULLSTR, 0xff, 0xff }, 42 },
};

/* A version 1 envelope (before arrival_usec) is still read: 0 microseconds. */
static void test_envelope_version_1_read(void)
{
	static const unsigned char v1[] = { ENV_HEAD(1, 0, 0, 0), EMPTY, NULLSTR, NULLSTR, NULLSTR,
	    NULLSTR };
	struct queue_envelope got = { .arrival_usec = 7 };
	uint32_t n = 0;
	CHECK(queue_record_envelope_decode(v1, sizeof v1, &got, &n) == 0);
	CHECK_STR(got.sender, "");
	CHECK(got.arrival == 1 && got.arrival_usec == 0 && got.size == 9 && n == 1);
	free_envelope_strings(&got);
}

static void test_envelope_garbage_refused(void)
{
	for (size_t i = 0; i < sizeof bad_envelope_rows / sizeof bad_envelope_rows[0]; i++) {
		struct queue_envelope got = { 0 };
		uint32_t n;
		/* A heap copy of exactly len bytes, so ASan sees any read past the end. */
		size_t len = bad_envelope_rows[i].len;
		unsigned char *p = malloc(len ? len : 1);
		memcpy(p, bad_envelope_rows[i].bytes, len);
		if (queue_record_envelope_decode(p, len, &got, &n) != -1) {
			fprintf(stderr, "  accepted: %s\n", bad_envelope_rows[i].name);
			CHECK(0);
		}
		CHECK(!got.sender && !got.envid && !got.client_addr && !got.helo && !got.auth_user);
		free_envelope_strings(&got);
		free(p);
	}
}

/* Fixed part: version state notify flags attempts(4) next_attempt(8) last_attempt(8). */
#define RCPT_HEAD(v, state, notify) v, state, notify, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, \
	0, 0, 0, 0, 0, 0, 0, 3

static const struct {
	const char *name;
	unsigned char bytes[64];
	size_t len;
} bad_rcpt_rows[] = {
	{ "empty", { 0 }, 0 },
	{ "version 9", { RCPT_HEAD(9, 0, 0), 0, 0, 0, 1, 'a', NULLSTR, NULLSTR, NULLSTR }, 40 },
	{ "version 1", { RCPT_HEAD(1, 0, 0), 0, 0, 0, 1, 'a', NULLSTR, NULLSTR, NULLSTR }, 40 },
	{ "state 3", { RCPT_HEAD(2, 3, 0), 0, 0, 0, 1, 'a', NULLSTR, NULLSTR, NULLSTR }, 40 },
	{ "notify bit 4", { RCPT_HEAD(2, 0, 16), 0, 0, 0, 1, 'a', NULLSTR, NULLSTR, NULLSTR }, 40 },
	{ "NULL address", { RCPT_HEAD(2, 0, 0), NULLSTR, NULLSTR, NULLSTR, NULLSTR }, 39 },
	{ "reply missing", { RCPT_HEAD(2, 0, 0), 0, 0, 0, 1, 'a', NULLSTR }, 32 },
	{ "relay missing", { RCPT_HEAD(2, 0, 0), 0, 0, 0, 1, 'a', NULLSTR, NULLSTR }, 36 },
	{ "trailing bytes", { RCPT_HEAD(2, 0, 0), 0, 0, 0, 1, 'a', NULLSTR, NULLSTR, NULLSTR, 1, 2 },
	  42 },
	{ "NUL in reply", { RCPT_HEAD(2, 0, 0), 0, 0, 0, 1, 'a', NULLSTR, 0, 0, 0, 1, 0, NULLSTR },
	  41 },
	{ "huge length", { RCPT_HEAD(2, 0, 0), 0x7f, 0xff, 0xff, 0xff, 'a' }, 28 },
};

static void test_rcpt_garbage_refused(void)
{
	for (size_t i = 0; i < sizeof bad_rcpt_rows / sizeof bad_rcpt_rows[0]; i++) {
		struct queue_rcpt got = { 0 };
		size_t len = bad_rcpt_rows[i].len;
		unsigned char *p = malloc(len ? len : 1);
		memcpy(p, bad_rcpt_rows[i].bytes, len);
		if (queue_record_rcpt_decode(p, len, &got) != -1) {
			fprintf(stderr, "  accepted: %s\n", bad_rcpt_rows[i].name);
			CHECK(0);
		}
		CHECK(!got.addr && !got.orcpt && !got.last_reply);
		queue_rcpt_clear(&got);
		free(p);
	}
}

/* Every proper prefix of every valid record is a truncated record. */
static void test_truncated_refused(void)
{
	for (size_t i = 0; i < sizeof envelopes / sizeof envelopes[0]; i++) {
		size_t len;
		unsigned char *buf = encode_envelope(&envelopes[i], &len);
		for (size_t cut = 0; cut < len; cut++) {
			unsigned char *p = malloc(cut ? cut : 1);
			memcpy(p, buf, cut);
			struct queue_envelope got = { 0 };
			uint32_t n;
			CHECK(queue_record_envelope_decode(p, cut, &got, &n) == -1);
			CHECK(!got.sender);
			free(p);
		}
		free(buf);
	}
	for (size_t i = 0; i < sizeof rcpts / sizeof rcpts[0]; i++) {
		size_t len;
		unsigned char *buf = encode_rcpt(&rcpts[i], &len);
		for (size_t cut = 0; cut < len; cut++) {
			unsigned char *p = malloc(cut ? cut : 1);
			memcpy(p, buf, cut);
			struct queue_rcpt got = { 0 };
			CHECK(queue_record_rcpt_decode(p, cut, &got) == -1);
			CHECK(!got.addr && !got.orcpt && !got.last_reply);
			free(p);
		}
		free(buf);
	}
}

/* Random corruption: decoding may succeed or fail, but never misbehaves. */
static void test_mutated_no_crash(void)
{
	uint32_t seed = 12345;
	for (int round = 0; round < 20000; round++) {
		size_t which = round % (sizeof envelopes / sizeof envelopes[0]);
		size_t len;
		unsigned char *buf = round & 1 ? encode_envelope(&envelopes[which], &len) :
		    encode_rcpt(&rcpts[round / 2 % (sizeof rcpts / sizeof rcpts[0])], &len);
		for (int k = 0; k < 3; k++) {
			seed = seed * 1103515245 + 12345;
			buf[(seed >> 8) % len] = (unsigned char)(seed >> 20);
		}
		seed = seed * 1103515245 + 12345;
		size_t cut = len - (seed >> 16) % 3;	/* sometimes shorter too */
		if (round & 1) {
			struct queue_envelope got = { 0 };
			uint32_t n;
			if (queue_record_envelope_decode(buf, cut, &got, &n) == 0)
				CHECK(got.sender != NULL);
			free_envelope_strings(&got);
		} else {
			struct queue_rcpt got = { 0 };
			if (queue_record_rcpt_decode(buf, cut, &got) == 0)
				CHECK(got.addr != NULL);
			queue_rcpt_clear(&got);
		}
		free(buf);
	}
}

/* Big-endian keys: LMDB's byte order must be numeric order. */
static void test_keys_sort_numerically(void)
{
	static const int64_t times[] = { 0, 1, 255, 256, 65536, 1731318503, INT64_MAX };
	static const uint32_t nums[] = { 0, 1, 255, 256, 65535, 65536, UINT32_MAX };
	const char *id = "0123456789AB";
	unsigned char a[QUEUE_KEY_SCHED_LEN], b[QUEUE_KEY_SCHED_LEN];
	unsigned char c[QUEUE_KEY_SUB_LEN], d[QUEUE_KEY_SUB_LEN];

	for (size_t i = 0; i + 1 < sizeof times / sizeof times[0]; i++) {
		queue_key_sched(a, times[i], id);
		queue_key_sched(b, times[i + 1], id);
		CHECK(memcmp(a, b, sizeof a) < 0);
		CHECK(memcmp(a + 8, id, QUEUE_ID_LEN) == 0);
	}
	queue_key_sched(a, -5, id);
	queue_key_sched(b, 0, id);
	CHECK(memcmp(a, b, sizeof a) == 0);
	for (size_t i = 0; i + 1 < sizeof nums / sizeof nums[0]; i++) {
		queue_key_sub(c, id, nums[i]);
		queue_key_sub(d, id, nums[i + 1]);
		CHECK(memcmp(c, d, sizeof c) < 0);
		CHECK(queue_be32_get(c + QUEUE_ID_LEN) == nums[i]);
	}
	unsigned char be[8];
	queue_be64_put(be, UINT64_C(0x0102030405060708));
	CHECK(be[0] == 1 && be[7] == 8);
	CHECK(queue_be64_get(be) == UINT64_C(0x0102030405060708));
}

int main(void)
{
	TEST_CASE(test_envelope_round_trip);
	TEST_CASE(test_envelope_version_1_read);
	TEST_CASE(test_rcpt_round_trip);
	TEST_CASE(test_unstorable_refused);
	TEST_CASE(test_envelope_garbage_refused);
	TEST_CASE(test_rcpt_garbage_refused);
	TEST_CASE(test_truncated_refused);
	TEST_CASE(test_mutated_no_crash);
	TEST_CASE(test_keys_sort_numerically);
	return check_exit();
}
