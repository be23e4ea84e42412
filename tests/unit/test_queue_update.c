/*
 * test_queue_update — delivery results going back into the queue, in a fresh
 * directory under /tmp: the schedule (queue_due) in due-time order;
 * recipients' new states written back and the message moved in the schedule;
 * a finished message removed with every record it had; bodies read chunk by
 * chunk.  Bounces committed with the results, results for a message that is
 * gone and every callback coming once are in test_queue_update_bounce.c.
 * After queue_close() the LMDB file itself is opened read-only to count what
 * is left of a message, record by record.
 */
#include "tests/unit/queue_update_helpers.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* (1) The schedule. */

static void test_due_empty(void)
{
	struct queue *q = open_queue(new_dir(), 0, 0, 64 * KiB);
	if (!q)
		return;
	static const int64_t nows[] = { 0, 1, 1700000000, INT64_MAX };
	for (size_t i = 0; i < sizeof nows / sizeof nows[0]; i++) {
		struct due_seen s;
		int64_t next;
		due_at(q, nows[i], 0, &s, &next);
		CHECK(s.n == 0);
		CHECK(next == -1);
	}
	queue_close(q);
}

static void test_due_order(void)
{
	struct queue *q = open_queue(new_dir(), 0, 0, 64 * KiB);
	if (!q)
		return;
	/* Ids ascend with the index; due times do not: the schedule is by time, then id. */
	static const int64_t arrivals[] = { 3000, 1000, 2000, 5000, 2000 };
	static const size_t nrcpts[] = { 1, 2, 1, 1, 3 };
	static const size_t sizes[] = { 100, 200, 0, 300, 400 };
	struct msg m[5];
	commit_all(q, m, 5, arrivals, nrcpts, sizes);
	struct due_seen s;
	int64_t next;

	due_at(q, 999, 0, &s, &next);
	CHECK(s.n == 0);
	CHECK(next == 1000);

	due_at(q, 2500, 0, &s, &next);
	CHECK(s.n == 3);
	CHECK_STR(s.ids[0], m[1].id);
	CHECK(s.due[0] == 1000);
	CHECK_STR(s.ids[1], m[2].id);		/* equal times: id order */
	CHECK(s.due[1] == 2000);
	CHECK_STR(s.ids[2], m[4].id);
	CHECK(s.due[2] == 2000);
	CHECK(next == 3000);

	due_at(q, 3000, 0, &s, &next);		/* "at or before now" */
	CHECK(s.n == 4);
	CHECK_STR(s.ids[3], m[0].id);
	CHECK(s.due[3] == 3000);
	CHECK(next == 5000);

	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(s.n == 5);
	static const size_t order[] = { 1, 2, 4, 0, 3 };
	for (size_t i = 0; i < 5 && i < s.n; i++) {
		CHECK_STR(s.ids[i], m[order[i]].id);
		CHECK(s.due[i] == arrivals[order[i]]);
	}
	CHECK(next == -1);

	/* fn's non-zero stops the walk: no further calls. */
	due_at(q, INT64_MAX, 1, &s, &next);
	CHECK(s.n == 1);
	CHECK_STR(s.ids[0], m[1].id);
	due_at(q, 2500, 2, &s, &next);
	CHECK(s.n == 2);
	CHECK_STR(s.ids[1], m[2].id);
	/*
	 * What *next says after a stop is not specified by queue.h; record it.
	 * (A caller that stops early and then trusts -1 as "nothing later"
	 * would not wake for m[0] at 3000.)
	 */
	if (next != 3000)
		fprintf(stderr, "  NOTE: after fn stopped the walk at 2500, *next is %" PRId64
		    " although a message is due at 3000\n", next);

	/* Nothing of it changed anything: all five still there, bodies intact. */
	CHECK(walk_count(q) == 5);
	for (size_t i = 0; i < 5; i++)
		check_body(q, &m[i]);
	queue_close(q);
	free_msgs(m, 5);
}

/* (2) New states written back, the message moved in the schedule. */

static void check_rescheduled_state(struct queue *q, const struct msg *m, uint32_t r1_attempts,
    int64_t r1_next)
{
	check_envelope(q, m);
	struct queue_envelope *env = queue_load(q, m->id);
	CHECK(env != NULL);
	if (!env)
		return;
	CHECK(env->nrcpts == 3);
	if (env->nrcpts == 3) {
		const struct queue_rcpt *r = env->rcpts;
		CHECK(r[0].state == QUEUE_RCPT_SENT);
		CHECK(r[0].attempts == 1);
		CHECK(r[0].next_attempt == 0);
		CHECK_STR(r[0].last_reply, "250 2.0.0 Ok: queued as 4XyZ");
		CHECK_STR(r[0].last_relay, "mx1.example.net[192.0.2.25]:25");
		CHECK(r[0].last_attempt == 1001);
		CHECK(r[0].flags == 0);

		CHECK(r[1].state == QUEUE_RCPT_PENDING);
		CHECK(r[1].attempts == r1_attempts);
		CHECK(r[1].next_attempt == r1_next);
		CHECK_STR(r[1].last_reply, "451-4.7.1 Greylisted\n451 4.7.1 try again later");
		CHECK_STR(r[1].last_relay, "mx2.example.net[2001:db8::25]:25");
		CHECK(r[1].last_attempt == 1002);
		CHECK(r[1].flags == QUEUE_RCPT_WARNED);

		CHECK(r[2].state == QUEUE_RCPT_BOUNCED);
		CHECK(r[2].attempts == 3);
		CHECK(r[2].next_attempt == 0);
		CHECK_STR(r[2].last_reply, "550-5.1.1 No such user\n550 5.1.1 here");
		CHECK(r[2].last_relay == NULL);
		CHECK(r[2].last_attempt == 1003);
		CHECK(r[2].flags == QUEUE_RCPT_WARNED);
	}
	queue_envelope_free(env);
}

static void test_update_reschedules(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	static const int64_t arrivals[] = { 1000, 1500 };
	static const size_t nrcpts[] = { 3, 1 };
	static const size_t sizes[] = { 5000, 77 };
	struct msg m[2];
	commit_all(q, m, 2, arrivals, nrcpts, sizes);

	struct queue_envelope *st = queue_load(q, m[0].id);
	CHECK(st != NULL && st->nrcpts == 3);
	if (!st || st->nrcpts != 3) {
		queue_envelope_free(st);
		queue_close(q);
		return;
	}
	/* As loaded: a fresh recipient. */
	CHECK(st->rcpts[0].last_relay == NULL && st->rcpts[0].last_attempt == 0 &&
	    st->rcpts[0].flags == 0 && st->rcpts[0].last_reply == NULL);
	set_rcpt(&st->rcpts[0], QUEUE_RCPT_SENT, 1, 0, "250 2.0.0 Ok: queued as 4XyZ",
	    "mx1.example.net[192.0.2.25]:25", 1001, 0);
	set_rcpt(&st->rcpts[1], QUEUE_RCPT_PENDING, 1, 1900,
	    "451-4.7.1 Greylisted\n451 4.7.1 try again later",
	    "mx2.example.net[2001:db8::25]:25", 1002, QUEUE_RCPT_WARNED);
	set_rcpt(&st->rcpts[2], QUEUE_RCPT_BOUNCED, 3, 0,
	    "550-5.1.1 No such user\n550 5.1.1 here", NULL, 1003, QUEUE_RCPT_WARNED);
	update_ok(q, st, 1000, 1900, NULL, NULL);

	check_rescheduled_state(q, &m[0], 1, 1900);
	check_body(q, &m[0]);
	check_envelope(q, &m[1]);
	check_body(q, &m[1]);

	/* Not at its old time any more; at its new one. */
	struct due_seen s;
	int64_t next;
	due_at(q, 1000, 0, &s, &next);
	CHECK(s.n == 0);
	CHECK(next == 1500);
	due_at(q, 1899, 0, &s, &next);
	CHECK(s.n == 1);
	CHECK_STR(s.ids[0], m[1].id);
	CHECK(next == 1900);
	due_at(q, 1900, 0, &s, &next);
	CHECK(s.n == 2);
	CHECK_STR(s.ids[1], m[0].id);
	CHECK(s.due[1] == 1900);
	CHECK(next == -1);

	/* Once more, from where queue_due found it; then to the same time again. */
	st = queue_load(q, m[0].id);
	CHECK(st != NULL && st->nrcpts == 3);
	if (st && st->nrcpts == 3) {
		st->rcpts[1].attempts = 2;
		st->rcpts[1].next_attempt = 2600;
		update_ok(q, st, 1900, 2600, NULL, NULL);
		st = queue_load(q, m[0].id);
		CHECK(st != NULL);
		if (st)
			update_ok(q, st, 2600, 2600, NULL, NULL);
		st = NULL;
	}
	queue_envelope_free(st);
	int64_t due = 0;
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(s.n == 2);
	CHECK(due_count(&s, m[0].id, &due) == 1);
	CHECK(due == 2600);
	CHECK(due_count(&s, m[1].id, &due) == 1);
	CHECK(due == 1500);
	check_rescheduled_state(q, &m[0], 2, 2600);
	queue_close(q);

	/* Durable, and exactly one schedule entry per message in the file. */
	struct raw r = raw_count(dir, m[0].id);
	CHECK(r.msg == 1 && r.rcpt == 3 && r.body == 1 && r.sched == 1);
	CHECK(r.all_msg == 2 && r.all_rcpt == 4 && r.all_body == 2 && r.all_sched == 2);
	q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	check_rescheduled_state(q, &m[0], 2, 2600);
	check_body(q, &m[0]);
	due_at(q, 2599, 0, &s, &next);
	CHECK(s.n == 1 && next == 2600);
	queue_close(q);
	free_msgs(m, 2);
}

/*
 * A wrong old_due: the update is applied, but the entry at the real old time
 * is not the one deleted; queue_unschedule() cleans it up once the message
 * is gone.
 */
static void test_update_wrong_old_due(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	static const int64_t arrivals[] = { 1000 };
	static const size_t nrcpts[] = { 2 };
	static const size_t sizes[] = { 300 };
	struct msg m[1];
	commit_all(q, m, 1, arrivals, nrcpts, sizes);
	struct due_seen s;
	int64_t next, due = 0;

	struct queue_envelope *st = queue_load(q, m[0].id);
	CHECK(st != NULL);
	if (!st) {
		queue_close(q);
		return;
	}
	set_rcpt(&st->rcpts[0], QUEUE_RCPT_PENDING, 1, 3000, "421 4.4.2 timeout", NULL, 1000, 0);
	update_ok(q, st, 999, 3000, NULL, NULL);	/* really due at 1000 */
	st = queue_load(q, m[0].id);
	CHECK(st != NULL && st->rcpts[0].attempts == 1 && st->rcpts[0].next_attempt == 3000);
	queue_envelope_free(st);
	due_at(q, INT64_MAX, 0, &s, &next);
	print_due("after an update with old_due 999 (due really 1000) to 3000, the schedule is", &s);
	size_t entries = due_count(&s, m[0].id, &due);
	CHECK(entries >= 1);
	if (entries > 1)
		fprintf(stderr, "  NOTE: the message is in the schedule %zu times; the one at 1000 "
		    "is stale and queue_due(now >= 1000) keeps reporting it\n", entries);

	/* The scheduler finishes it from the new entry: the stale one outlives the message. */
	update_ok(q, all_sent(q, m[0].id), 3000, -1, NULL, NULL);
	check_gone(q, m[0].id);
	CHECK(walk_count(q) == 0);
	due_at(q, INT64_MAX, 0, &s, &next);
	print_due("after removing it (old_due 3000), the schedule is", &s);
	if (due_count(&s, m[0].id, NULL) > 0)
		fprintf(stderr, "  NOTE: queue_due reports %s, which queue_load says does not "
		    "exist\n", m[0].id);

	/* The scheduler's reaction (queue_unschedule): the entry of a message gone goes. */
	struct result r0 = { 0, 0 };
	callbacks = 0;
	CHECK(queue_unschedule(q, m[0].id, 1000, on_done, &r0) == 0);
	CHECK(wait_callbacks(q, 1) && r0.status == QUEUE_OK);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(due_count(&s, m[0].id, NULL) == 0);
	CHECK(walk_count(q) == 0);
	queue_close(q);
	struct raw r = raw_count(dir, m[0].id);
	CHECK(r.msg == 0 && r.rcpt == 0 && r.body == 0);
	CHECK(r.sched == 0);
	free_msgs(m, 1);
}

/* (3) new_due < 0: everything of the message goes, nothing else does. */

static void test_update_removes(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	/*
	 * Id order x < a < b < c.  a has four chunks and 300 recipients (several
	 * LMDB pages of rcpt records); c's records are the last in every database.
	 */
	static const int64_t arrivals[] = { 1000, 1000, 1000, 2000 };
	static const size_t nrcpts[] = { 2, 300, 2, 3 };
	static const size_t sizes[] = { 999, 3 * CHUNK + 777, 2 * CHUNK + 5, CHUNK + 1 };
	struct msg m[4];
	commit_all(q, m, 4, arrivals, nrcpts, sizes);
	struct msg *x = &m[0], *a = &m[1], *b = &m[2], *c = &m[3];
	for (size_t i = 0; i < 4; i++)
		check_body(q, &m[i]);
	queue_close(q);
	struct raw r = raw_count(dir, a->id);
	CHECK(r.msg == 1 && r.rcpt == 300 && r.body == 4 && r.sched == 1);
	q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;

	update_ok(q, all_sent(q, a->id), 1000, -1, NULL, NULL);
	check_gone(q, a->id);
	CHECK(walk_sees(q, a->id) == 0);
	CHECK(walk_count(q) == 3);
	struct due_seen s;
	int64_t next;
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(s.n == 3);
	CHECK(due_count(&s, a->id, NULL) == 0);
	CHECK(due_count(&s, x->id, NULL) == 1);
	CHECK(due_count(&s, b->id, NULL) == 1);
	CHECK(due_count(&s, c->id, NULL) == 1);
	for (size_t i = 0; i < 4; i++)
		if (&m[i] != a) {
			check_envelope(q, &m[i]);
			check_body(q, &m[i]);
			CHECK(walk_sees(q, m[i].id) == 1);
		}

	/* The last message in every database. */
	update_ok(q, all_sent(q, c->id), 2000, -1, NULL, NULL);
	check_gone(q, c->id);
	CHECK(walk_count(q) == 2);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(s.n == 2);
	CHECK(due_count(&s, c->id, NULL) == 0);
	CHECK(next == -1);
	for (size_t i = 0; i < 2; i++) {
		check_envelope(q, &m[i == 0 ? 0 : 2]);
		check_body(q, &m[i == 0 ? 0 : 2]);
	}
	queue_close(q);

	/* Record by record: nothing of a and c left, x and b whole. */
	r = raw_count(dir, a->id);
	CHECK(r.msg == 0 && r.rcpt == 0 && r.body == 0 && r.sched == 0);
	CHECK(r.all_msg == 2 && r.all_rcpt == 4 && r.all_body == 4 && r.all_sched == 2);
	r = raw_count(dir, c->id);
	CHECK(r.msg == 0 && r.rcpt == 0 && r.body == 0 && r.sched == 0);
	r = raw_count(dir, b->id);
	CHECK(r.msg == 1 && r.rcpt == 2 && r.body == 3 && r.sched == 1);
	r = raw_count(dir, x->id);
	CHECK(r.msg == 1 && r.rcpt == 2 && r.body == 1 && r.sched == 1);

	/* And the last two: an empty queue again. */
	q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	check_body(q, b);
	update_ok(q, all_sent(q, x->id), 1000, -1, NULL, NULL);
	update_ok(q, all_sent(q, b->id), 1000, -1, NULL, NULL);
	CHECK(walk_count(q) == 0);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(s.n == 0 && next == -1);
	queue_close(q);
	r = raw_count(dir, x->id);
	CHECK(r.all_msg == 0 && r.all_rcpt == 0 && r.all_body == 0 && r.all_sched == 0);
	free_msgs(m, 4);
}

/* (4) Bodies chunk by chunk. */

static void test_read_chunk(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	static const int64_t arrivals[] = { 1000, 1000, 1000, 1000 };
	static const size_t nrcpts[] = { 1, 1, 1, 1 };
	static const size_t sizes[] = { 3 * CHUNK + 1234, 0, 2 * CHUNK, 10 };
	struct msg m[4];
	commit_all(q, m, 4, arrivals, nrcpts, sizes);

	for (int pass = 0; pass < 2; pass++) {
		/* Four chunks, in order, the last one short; then 0 past the end. */
		struct body_copy c = { 0 }, b = { 0 };
		static const size_t want[] = { CHUNK, CHUNK, CHUNK, 1234 };
		for (uint32_t n = 0; n < 4; n++) {
			int calls = c.calls;
			CHECK(queue_read_chunk(q, m[0].id, n, collect_body, &c) == 1);
			CHECK(c.calls == calls + 1);
			CHECK(c.last_piece == want[n]);
		}
		CHECK(queue_read_chunk(q, m[0].id, 4, collect_body, &c) == 0);
		CHECK(queue_read_chunk(q, m[0].id, 1000, collect_body, &c) == 0);
		CHECK(queue_read_chunk(q, m[0].id, UINT32_MAX, collect_body, &c) == 0);
		CHECK(c.calls == 4);
		CHECK(queue_read_body(q, m[0].id, collect_body, &b) == 0);
		CHECK(c.len == m[0].size && b.len == c.len && memcmp(c.data, b.data, c.len) == 0);
		CHECK(c.len == m[0].size && memcmp(c.data, m[0].body, c.len) == 0);
		/* Any chunk alone, in any order. */
		struct body_copy one = { 0 };
		CHECK(queue_read_chunk(q, m[0].id, 2, collect_body, &one) == 1);
		CHECK(one.len == CHUNK && memcmp(one.data, m[0].body + 2 * CHUNK, CHUNK) == 0);
		free(one.data);
		free(c.data);
		free(b.data);

		/* An empty body has no chunk; an exact multiple has no short last one. */
		memset(&c, 0, sizeof c);
		CHECK(queue_read_chunk(q, m[1].id, 0, collect_body, &c) == 0);
		CHECK(c.calls == 0);
		CHECK(queue_read_body(q, m[1].id, collect_body, &c) == 0);
		CHECK(c.len == 0);
		CHECK(queue_read_chunk(q, m[2].id, 0, collect_body, &c) == 1);
		CHECK(queue_read_chunk(q, m[2].id, 1, collect_body, &c) == 1);
		CHECK(queue_read_chunk(q, m[2].id, 2, collect_body, &c) == 0);
		CHECK(c.len == 2 * CHUNK && memcmp(c.data, m[2].body, c.len) == 0);
		free(c.data);
		check_body(q, &m[3]);

		/* fn's failure, malformed ids, an id that is not there. */
		int failed = 0;
		CHECK(queue_read_chunk(q, m[3].id, 0, fail_body, &failed) == -1);
		CHECK(failed == 1);
		memset(&c, 0, sizeof c);
		static const char *const bad[] = { "", "123", "0123456789ab", "0123456789ABC",
		    "0123456789A!", "../../etc/pa" };
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
			CHECK(queue_read_chunk(q, bad[i], 0, collect_body, &c) == -1);
		CHECK(queue_read_chunk(q, NULL, 0, collect_body, &c) == -1);
		CHECK(queue_read_chunk(q, "000000000001", 0, collect_body, &c) == 0);
		CHECK(c.calls == 0);

		/* The second time round, as relayctl sees it. */
		queue_close(q);
		char err[256];
		q = pass == 0 ? queue_open_readonly(dir, err, sizeof err) : NULL;
		if (pass == 0)
			CHECK(q != NULL);
		if (!q)
			break;
	}
	free_msgs(m, 4);
}

int main(void)
{
	if (scratch_init("test_queue_update") < 0)
		return 1;
	TEST_CASE(test_due_empty);
	TEST_CASE(test_due_order);
	TEST_CASE(test_update_reschedules);
	TEST_CASE(test_update_wrong_old_due);
	TEST_CASE(test_update_removes);
	TEST_CASE(test_read_chunk);
	scratch_remove();
	return check_exit();
}
