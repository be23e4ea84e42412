/*
 * test_queue_update_bounce — delivery results that carry a bounce, and
 * results the queue cannot apply, in a fresh directory under /tmp: a bounce
 * committed in the same transaction as the results that call for it; results
 * for a message that is gone; every done callback exactly once, through
 * queue_dispatch(), also for updates in a batch with bounces, for misuse, at
 * queue_close() and on a read-only queue.  The schedule, states and removal
 * are in test_queue_update.c.
 */
#include "tests/unit/queue_update_helpers.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* (1) A bounce committed with the results that call for it. */

static const unsigned char dsn_text[] =
    "From: Mail Delivery System <MAILER-DAEMON@relay.example.org>\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
    "\r\n"
    "550 5.1.1 unknown\r\n";

static struct queue_envelope *new_bounce(struct queue *q, const char *to, int64_t arrival)
{
	struct queue_envelope *env = queue_envelope_new();
	queue_new_id(q, env->id);
	env->sender = strdup("");
	env->arrival = arrival;
	CHECK(queue_envelope_add_rcpt(env, to, NULL, 0) == 0);
	return env;
}

static void check_bounce(struct queue *q, const char *id, const char *to, int64_t arrival)
{
	struct queue_envelope *env = queue_load(q, id);
	CHECK(env != NULL);
	if (!env)
		return;
	CHECK_STR(env->sender, "");
	CHECK(env->nrcpts == 1);
	if (env->nrcpts == 1) {
		CHECK_STR(env->rcpts[0].addr, to);
		CHECK(env->rcpts[0].state == QUEUE_RCPT_PENDING);
	}
	CHECK(env->size == sizeof dsn_text - 1);
	if (arrival)
		CHECK(env->arrival == arrival);
	queue_envelope_free(env);
	struct body_copy b = { 0 };
	CHECK(queue_read_body(q, id, collect_body, &b) == 0);
	CHECK(b.len == sizeof dsn_text - 1 && memcmp(b.data, dsn_text, b.len) == 0);
	free(b.data);
}

static void test_update_with_bounce(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	static const int64_t arrivals[] = { 1000, 1000, 1000 };
	static const size_t nrcpts[] = { 2, 2, 1 };
	static const size_t sizes[] = { 500, 600, 700 };
	struct msg m[3];
	commit_all(q, m, 3, arrivals, nrcpts, sizes);
	struct due_seen s;
	int64_t next, due = 0;
	char bounce_id[QUEUE_ID_LEN + 1], warn_id[QUEUE_ID_LEN + 1];

	/* m[0] done (one bounced): removed, and its bounce queued, due at its arrival. */
	struct queue_envelope *st = all_sent(q, m[0].id);
	if (st)
		set_rcpt(&st->rcpts[0], QUEUE_RCPT_BOUNCED, 1, 0, "550 5.1.1 unknown",
		    "mx.example.net[192.0.2.25]:25", 1200, 0);
	struct queue_envelope *bounce = new_bounce(q, m[0].sender, 1500);
	memcpy(bounce_id, bounce->id, sizeof bounce_id);
	update_ok(q, st, 1000, -1, bounce, spool_of(q, dsn_text, sizeof dsn_text - 1, 10));
	check_gone(q, m[0].id);
	check_bounce(q, bounce_id, m[0].sender, 1500);
	CHECK(walk_sees(q, bounce_id) == 1);
	due_at(q, 1499, 0, &s, &next);
	CHECK(due_count(&s, bounce_id, NULL) == 0);
	CHECK(next == 1500);
	due_at(q, 1500, 0, &s, &next);
	CHECK(due_count(&s, bounce_id, &due) == 1);
	CHECK(due == 1500);
	CHECK(due_count(&s, m[0].id, NULL) == 0);

	/* m[1] delayed: stays, moves to 2000, and a delay warning arrives "now" (arrival 0). */
	st = queue_load(q, m[1].id);
	CHECK(st != NULL);
	if (st)
		for (size_t i = 0; i < st->nrcpts; i++)
			set_rcpt(&st->rcpts[i], QUEUE_RCPT_PENDING, 4, 2000, "421 4.4.2 timeout",
			    "mx.example.net[192.0.2.25]:25", 1900, QUEUE_RCPT_WARNED);
	int64_t before = time(NULL);
	bounce = new_bounce(q, m[1].sender, 0);
	memcpy(warn_id, bounce->id, sizeof warn_id);
	update_ok(q, st, 1000, 2000, bounce, spool_of(q, dsn_text, sizeof dsn_text - 1, 1000));
	check_bounce(q, warn_id, m[1].sender, 0);
	struct queue_envelope *env = queue_load(q, warn_id);
	int64_t warn_arrival = env ? env->arrival : -1;
	CHECK(warn_arrival >= before && warn_arrival <= time(NULL));
	queue_envelope_free(env);
	env = queue_load(q, m[1].id);
	CHECK(env != NULL && env->nrcpts == 2);
	if (env && env->nrcpts == 2)
		CHECK(env->rcpts[1].flags == QUEUE_RCPT_WARNED && env->rcpts[1].attempts == 4);
	queue_envelope_free(env);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(due_count(&s, warn_id, &due) == 1);
	CHECK(due == warn_arrival);
	CHECK(due_count(&s, m[1].id, &due) == 1);
	CHECK(due == 2000);

	/*
	 * One transaction: a bounce that cannot be stored (its id is taken)
	 * takes the results with it — m[2] keeps its old state and place.
	 */
	st = queue_load(q, m[2].id);
	CHECK(st != NULL);
	if (st)
		set_rcpt(&st->rcpts[0], QUEUE_RCPT_BOUNCED, 1, 0, "550 5.7.1 rejected", NULL, 1100, 0);
	bounce = new_bounce(q, m[2].sender, 1600);
	memcpy(bounce->id, m[1].id, sizeof bounce->id);
	struct result r = { 0, 0 };
	callbacks = 0;
	CHECK(queue_update(q, st, 1000, -1, bounce, spool_of(q, dsn_text, sizeof dsn_text - 1, 7),
	    on_done, &r) == 0);
	CHECK(wait_callbacks(q, 1));
	linger(q, 200);
	CHECK(callbacks == 1 && r.called == 1);
	CHECK(r.status == QUEUE_ERROR);
	env = queue_load(q, m[2].id);
	CHECK(env != NULL);
	if (env && env->nrcpts == 1)
		CHECK(env->rcpts[0].state == QUEUE_RCPT_PENDING && env->rcpts[0].attempts == 0 &&
		    env->rcpts[0].last_reply == NULL);
	queue_envelope_free(env);
	check_envelope(q, &m[1]);		/* the id the bounce wanted is untouched */
	check_body(q, &m[1]);
	check_body(q, &m[2]);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(due_count(&s, m[2].id, &due) == 1);
	CHECK(due == 1000);
	CHECK(s.n == 4);			/* m[1], m[2], the bounce, the warning */
	CHECK(walk_count(q) == 4);
	queue_close(q);

	/* Durable. */
	q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	check_bounce(q, bounce_id, m[0].sender, 1500);
	check_bounce(q, warn_id, m[1].sender, warn_arrival);
	queue_close(q);
	free_msgs(m, 3);
}

/* (2) Results for a message that is not there: accepted, nothing created. */

static void test_update_vanished(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	static const int64_t arrivals[] = { 1000, 1000 };
	static const size_t nrcpts[] = { 1, 2 };
	static const size_t sizes[] = { 100, CHUNK + 10 };
	struct msg m[2];
	commit_all(q, m, 2, arrivals, nrcpts, sizes);
	struct due_seen s;
	int64_t next;

	/* An id that was never committed. */
	char never[QUEUE_ID_LEN + 1];
	queue_new_id(q, never);
	update_ok(q, state_for(never), 1000, 2000, NULL, NULL);
	update_ok(q, state_for(never), 2000, -1, NULL, NULL);
	CHECK(queue_load(q, never) == NULL);
	CHECK(walk_count(q) == 2);

	/* A message already removed, whose (late) results come again. */
	update_ok(q, all_sent(q, m[1].id), 1000, -1, NULL, NULL);
	check_gone(q, m[1].id);
	update_ok(q, state_for(m[1].id), 1000, 2000, NULL, NULL);
	check_gone(q, m[1].id);
	update_ok(q, state_for(m[1].id), 2000, -1, NULL, NULL);
	check_gone(q, m[1].id);

	CHECK(walk_count(q) == 1);
	CHECK(walk_sees(q, m[1].id) == 0);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(s.n == 1);
	CHECK(due_count(&s, m[0].id, NULL) == 1);
	CHECK(next == -1);
	check_envelope(q, &m[0]);
	check_body(q, &m[0]);
	queue_close(q);

	struct raw r = raw_count(dir, never);
	CHECK(r.msg == 0 && r.rcpt == 0 && r.body == 0 && r.sched == 0);
	r = raw_count(dir, m[1].id);
	CHECK(r.msg == 0 && r.rcpt == 0 && r.body == 0 && r.sched == 0);
	CHECK(r.all_msg == 1 && r.all_rcpt == 1 && r.all_body == 1 && r.all_sched == 1);

	/* With a bounce: the results are dropped, and the bounce about them too (queue.h). */
	q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	struct queue_envelope *bounce = new_bounce(q, "gone@example.org", 3000);
	char bounce_id[QUEUE_ID_LEN + 1];
	memcpy(bounce_id, bounce->id, sizeof bounce_id);
	update_ok(q, state_for(never), 1000, -1, bounce,
	    spool_of(q, dsn_text, sizeof dsn_text - 1, 100));
	CHECK(queue_load(q, never) == NULL);
	struct queue_envelope *env = queue_load(q, bounce_id);
	CHECK(env == NULL);
	queue_envelope_free(env);
	/* A damaged record's schedule entry stays: queue_unschedule only drops a gone one. */
	struct result r0 = { 0, 0 };
	callbacks = 0;
	CHECK(queue_unschedule(q, m[0].id, 1000, on_done, &r0) == 0);
	CHECK(wait_callbacks(q, 1) && r0.status == QUEUE_OK);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(due_count(&s, m[0].id, NULL) == 1);
	queue_close(q);
	free_msgs(m, 2);
}

/* (3) Every callback once, through queue_dispatch. */

#define MANY 40

static void test_callbacks_once(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	static struct msg m[MANY];
	int64_t arrivals[MANY];
	size_t nrcpts[MANY], sizes[MANY];
	for (size_t i = 0; i < MANY; i++) {
		arrivals[i] = 1000 + (int64_t)i;
		nrcpts[i] = 1 + i % 3;
		sizes[i] = 100 + i * 50;
	}
	commit_all(q, m, MANY, arrivals, nrcpts, sizes);

	/* A batch of updates of every kind, submitted together: the writer groups them. */
	static struct result r[MANY];
	char bounce_ids[MANY][QUEUE_ID_LEN + 1];
	struct queue_envelope *states[MANY];
	for (size_t i = 0; i < MANY; i++) {
		states[i] = queue_load(q, m[i].id);
		CHECK(states[i] != NULL);
	}
	callbacks = 0;
	for (size_t i = 0; i < MANY; i++) {
		r[i] = (struct result){ 0, 0 };
		bounce_ids[i][0] = '\0';
		if (!states[i])
			continue;
		struct queue_envelope *bounce = NULL;
		struct queue_spool *sp = NULL;
		int64_t new_due = i % 4 == 0 ? -1 : 5000 + (int64_t)i;
		if (i % 4 == 1) {
			bounce = new_bounce(q, m[i].sender, 6000);
			memcpy(bounce_ids[i], bounce->id, sizeof bounce_ids[i]);
			sp = spool_of(q, dsn_text, sizeof dsn_text - 1, 50);
		}
		states[i]->rcpts[0].attempts = 1;
		CHECK(queue_update(q, states[i], arrivals[i], new_due, bounce, sp, on_done,
		    &r[i]) == 0);
	}
	CHECK(callbacks == 0);
	CHECK(wait_callbacks(q, MANY));
	linger(q, 300);
	CHECK(callbacks == MANY);
	for (size_t i = 0; i < MANY; i++)
		CHECK(r[i].called == 1 && r[i].status == QUEUE_OK);
	CHECK(walk_count(q) == MANY - MANY / 4 + MANY / 4);	/* removed ones, bounces */
	for (size_t i = 0; i < MANY; i++) {
		if (i % 4 == 0) {
			check_gone(q, m[i].id);
			continue;
		}
		struct queue_envelope *env = queue_load(q, m[i].id);
		CHECK(env != NULL && env->rcpts[0].attempts == 1);
		queue_envelope_free(env);
		if (i % 4 == 1)
			check_bounce(q, bounce_ids[i], m[i].sender, 6000);
	}

	/* Misuse still answers once, the usual way: neither state nor bounce. */
	struct result bad = { 0, 0 };
	callbacks = 0;
	CHECK(queue_update(q, NULL, 0, 0, NULL, NULL, on_done, &bad) == 0);
	CHECK(callbacks == 0);
	CHECK(wait_callbacks(q, 1));
	linger(q, 100);
	CHECK(callbacks == 1 && bad.called == 1 && bad.status == QUEUE_ERROR);

	/* Updates nobody dispatched yet: their callbacks come from queue_close, once. */
	callbacks = 0;
	size_t submitted = 0;
	for (size_t i = 1; i < MANY; i += 4) {
		struct queue_envelope *st = all_sent(q, m[i].id);
		r[i] = (struct result){ 0, 0 };
		if (st && queue_update(q, st, 5000 + (int64_t)i, -1, NULL, NULL, on_done, &r[i]) == 0)
			submitted++;
	}
	queue_close(q);
	CHECK(callbacks == (int)submitted);
	for (size_t i = 1; i < MANY; i += 4)
		CHECK(r[i].called == 1 && r[i].status == QUEUE_OK);

	q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	for (size_t i = 1; i < MANY; i += 4)
		CHECK(queue_load(q, m[i].id) == NULL);
	CHECK(walk_count(q) == MANY - 2 * (MANY / 4) + MANY / 4);
	queue_close(q);

	/* Read-only (relayctl): refused through the callback; the state is freed. */
	char err[256];
	q = queue_open_readonly(dir, err, sizeof err);
	CHECK(q != NULL);
	if (q) {
		struct result ro = { 0, 0 };
		callbacks = 0;
		CHECK(queue_update(q, all_sent(q, m[2].id), 5002, -1, NULL, NULL, on_done, &ro) == 0);
		CHECK(callbacks == 0);
		CHECK(wait_callbacks(q, 1));
		linger(q, 100);
		CHECK(callbacks == 1 && ro.called == 1 && ro.status == QUEUE_ERROR);
		struct queue_envelope *env = queue_load(q, m[2].id);
		CHECK(env != NULL);
		queue_envelope_free(env);
		queue_close(q);
	}
	free_msgs(m, MANY);
}

int main(void)
{
	if (scratch_init("test_queue_update_bounce") < 0)
		return 1;
	TEST_CASE(test_update_with_bounce);
	TEST_CASE(test_update_vanished);
	TEST_CASE(test_callbacks_once);
	scratch_remove();
	return check_exit();
}
