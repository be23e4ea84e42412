/*
 * test_queue_admin — relayctl's operations on the queue: flush (due at once),
 * hold (out of the schedule, also across a delivery's update), release,
 * delete (everything of the message), and the --domain filter.
 */
#include "tests/unit/queue_update_helpers.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct admin_result {
	int called;
	enum queue_status status;
	unsigned count;
};

static void admin_done(void *arg, enum queue_status status, unsigned count)
{
	struct admin_result *r = arg;
	r->called++;
	r->status = status;
	r->count = count;
	callbacks++;
}

/* Run op and wait: the number of messages it changed, or -1. */
static int admin(struct queue *q, enum queue_admin_op op, const char *id, const char *domain)
{
	struct admin_result r = { 0, 0, 0 };
	callbacks = 0;
	if (queue_admin(q, op, id, domain, admin_done, &r) < 0)
		return -1;
	CHECK(wait_callbacks(q, 1) && r.called == 1 && r.status == QUEUE_OK);
	callbacks = 0;
	return (int)r.count;
}

static void test_hold_release_flush(void)
{
	struct queue *q = open_queue(new_dir(), 0, 0, 64 * KiB);
	if (!q)
		return;
	static const int64_t arrivals[] = { 1000, 1000 };
	static const size_t nrcpts[] = { 1, 2 }, sizes[] = { 100, 200 };
	struct msg m[2];
	commit_all(q, m, 2, arrivals, nrcpts, sizes);
	struct due_seen s;
	int64_t next, due;

	CHECK(admin(q, QUEUE_ADMIN_HOLD, m[0].id, NULL) == 1);
	CHECK(admin(q, QUEUE_ADMIN_HOLD, m[0].id, NULL) == 0);	/* already */
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(due_count(&s, m[0].id, NULL) == 0 && due_count(&s, m[1].id, NULL) == 1);
	struct queue_envelope *env = queue_load(q, m[0].id);
	CHECK(env && env->held);
	queue_envelope_free(env);
	/* A delivery that was out when it was held writes its results, not a schedule entry. */
	update_ok(q, state_for(m[0].id), 1000, 3000, NULL, NULL);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(due_count(&s, m[0].id, NULL) == 0);
	CHECK(admin(q, QUEUE_ADMIN_FLUSH, NULL, NULL) == 1);	/* only the other */
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(due_count(&s, m[1].id, &due) == 1 && due == 0);
	due_at(q, 0, 0, &s, &next);	/* at once, whatever the clock says */
	CHECK(s.n == 1 && due_count(&s, m[1].id, NULL) == 1);
	CHECK(admin(q, QUEUE_ADMIN_RELEASE, m[0].id, NULL) == 1);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(due_count(&s, m[0].id, &due) == 1 && due == 0);
	env = queue_load(q, m[0].id);
	CHECK(env && !env->held);
	queue_envelope_free(env);
	CHECK(admin(q, QUEUE_ADMIN_RELEASE, m[0].id, NULL) == 0);	/* not held */
	/* Everything held: the schedule is empty, and a flush of all changes nothing. */
	CHECK(admin(q, QUEUE_ADMIN_HOLD, NULL, NULL) == 2);
	CHECK(admin(q, QUEUE_ADMIN_FLUSH, NULL, NULL) == 0);
	CHECK(admin(q, QUEUE_ADMIN_RELEASE, NULL, "example.net") == 2);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(s.n == 2 && due_count(&s, m[0].id, &due) == 1 && due == 0);
	queue_close(q);
	free_msgs(m, 2);
}

static void test_delete_and_domain(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	static const int64_t arrivals[] = { 1000, 1000, 1000 };
	static const size_t nrcpts[] = { 1, 1, 2 }, sizes[] = { 100, CHUNK + 10, 300 };
	struct msg m[3];
	commit_all(q, m, 3, arrivals, nrcpts, sizes);
	struct due_seen s;
	int64_t next;

	/* Every recipient is @example.net: a domain filter that matches all, then none. */
	CHECK(admin(q, QUEUE_ADMIN_FLUSH, NULL, "EXAMPLE.net") == 3);
	CHECK(admin(q, QUEUE_ADMIN_HOLD, NULL, "example.org") == 0);
	CHECK(admin(q, QUEUE_ADMIN_HOLD, m[2].id, NULL) == 1);
	CHECK(admin(q, QUEUE_ADMIN_DELETE, m[1].id, NULL) == 1);
	CHECK(admin(q, QUEUE_ADMIN_DELETE, m[2].id, NULL) == 1);	/* held: still goes */
	CHECK(admin(q, QUEUE_ADMIN_DELETE, m[2].id, NULL) == 0);
	check_gone(q, m[1].id);
	check_gone(q, m[2].id);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(s.n == 1 && due_count(&s, m[0].id, NULL) == 1);
	CHECK(queue_admin(q, QUEUE_ADMIN_DELETE, "not-an-id", NULL, admin_done, NULL) < 0);
	queue_close(q);
	struct raw r = raw_count(dir, m[1].id);
	CHECK(r.msg == 0 && r.rcpt == 0 && r.body == 0 && r.sched == 0);
	free_msgs(m, 3);
}

/*
 * The scheduler found an entry of a message it does not act on (held, or
 * unloadable) and asks queue_unschedule() about it: a held message's entry
 * goes, and stays gone even when it was read before the hold; once released,
 * the message keeps its entry.
 */
static void test_unschedule_held(void)
{
	struct queue *q = open_queue(new_dir(), 0, 0, 64 * KiB);
	if (!q)
		return;
	static const int64_t arrivals[] = { 1000 };
	static const size_t nrcpts[] = { 1 }, sizes[] = { 100 };
	struct msg m[1];
	commit_all(q, m, 1, arrivals, nrcpts, sizes);
	struct due_seen s;
	struct result r = { 0, 0 };
	int64_t next, due;

	CHECK(admin(q, QUEUE_ADMIN_HOLD, m[0].id, NULL) == 1);
	/* Read (due 1000) before the hold, answered after it: not brought back. */
	CHECK(queue_unschedule(q, m[0].id, 1000, on_done, &r) == 0);
	CHECK(wait_callbacks(q, 1) && r.status == QUEUE_OK);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(s.n == 0);
	CHECK(admin(q, QUEUE_ADMIN_RELEASE, m[0].id, NULL) == 1);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(s.n == 1 && due_count(&s, m[0].id, &due) == 1);
	/* Released by the time it is written: the entry stays. */
	r = (struct result){ 0, 0 };
	CHECK(queue_unschedule(q, m[0].id, due, on_done, &r) == 0);
	CHECK(wait_callbacks(q, 1) && r.status == QUEUE_OK);
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(s.n == 1 && due_count(&s, m[0].id, NULL) == 1);
	queue_close(q);
	free_msgs(m, 1);
}

int main(void)
{
	if (scratch_init("test_queue_admin") < 0)
		return 1;
	TEST_CASE(test_hold_release_flush);
	TEST_CASE(test_delete_and_domain);
	TEST_CASE(test_unschedule_held);
	scratch_remove();
	return check_exit();
}
