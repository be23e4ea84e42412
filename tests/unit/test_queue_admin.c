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

/* (2) One message among many: only its entries change, found by their keys. */

#define MANY 8
#define DELIVER (-1)		/* a step that is not a relayctl op: a delivery's result */

/* What the schedule must hold for one message: one entry at due, or none (-1). */
struct model {
	int64_t due;
	int held, gone;
	int rounds;		/* deliveries so far */
};

/*
 * A delivery, recorded as the scheduler does: taken from the entry at
 * want->due; round 2 sends the last recipient (it keeps its old
 * next_attempt), every other pending one is deferred to a time of its own;
 * the entry moves to the earliest, or the message goes with none pending.
 */
static void deliver(struct queue *q, const struct msg *m, size_t k, struct model *want)
{
	struct queue_envelope *st = queue_load(q, m->id);
	int64_t new_due = -1;
	int round = ++want->rounds;

	CHECK(st != NULL && !want->held && !want->gone && want->due >= 0);
	if (!st)
		return;
	for (size_t i = 0; i < st->nrcpts; i++) {
		struct queue_rcpt *r = &st->rcpts[i];
		if (r->state != QUEUE_RCPT_PENDING)
			continue;
		if (round == 2 && i == st->nrcpts - 1) {
			set_rcpt(r, QUEUE_RCPT_SENT, r->attempts + 1, r->next_attempt,
			    "250 2.0.0 Ok", "mx.example.net[192.0.2.25]:25", 100000, 0);
			continue;
		}
		int64_t next = 10000 * round + 100 * (int64_t)k + 10 * (int64_t)(st->nrcpts - i);
		set_rcpt(r, QUEUE_RCPT_PENDING, r->attempts + 1, next, "451 4.3.0 later",
		    "mx.example.net[192.0.2.25]:25", 100000, 0);
		if (new_due < 0 || next < new_due)
			new_due = next;
	}
	update_ok(q, st, want->due, new_due, NULL, NULL);
	want->due = new_due;
	want->gone = new_due < 0;
}

/* The whole schedule, walked: exactly one entry per message the model has one for. */
static void check_schedule(struct queue *q, const struct msg *m, const struct model *want,
    size_t n, size_t step)
{
	struct due_seen s;
	int64_t next, due = -1;
	size_t entries = 0;

	due_at(q, INT64_MAX, 0, &s, &next);
	for (size_t k = 0; k < n; k++) {
		size_t count = due_count(&s, m[k].id, &due);
		entries += count;
		if (count != (want[k].due >= 0) || (count == 1 && due != want[k].due)) {
			fprintf(stderr, "  step %zu: message %zu is in the schedule %zu times "
			    "(first at %" PRId64 "), want %s%" PRId64 "\n", step, k, count, due,
			    want[k].due >= 0 ? "once at " : "none: ", want[k].due);
			CHECK(0);
		}
		struct queue_envelope *env = queue_load(q, m[k].id);
		CHECK(want[k].gone ? env == NULL : env != NULL && env->held == want[k].held);
		queue_envelope_free(env);
	}
	CHECK(s.n == entries);
}

/* A relayctl op on the model: the count it must report. */
static int model_op(enum queue_admin_op op, struct model *w)
{
	if (w->gone)
		return 0;
	switch (op) {
	case QUEUE_ADMIN_FLUSH:
		if (w->held)
			return 0;
		w->due = 0;
		return 1;
	case QUEUE_ADMIN_HOLD:
		if (w->held)
			return 0;
		w->held = 1;
		w->due = -1;
		return 1;
	case QUEUE_ADMIN_RELEASE:
		if (!w->held)
			return 0;
		w->held = 0;
		w->due = 0;
		return 1;
	case QUEUE_ADMIN_DELETE:
		w->gone = 1;
		w->held = 0;
		w->due = -1;
		return 1;
	}
	return -1;
}

static void test_one_among_many(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	static const size_t nrcpts[MANY] = { 3, 3, 3, 3, 2, 2, 3, 1 };
	static const int rounds[MANY] = { 1, 2, 3, 3, 2, 1, 0, 0 };	/* deferred so often */
	int64_t arrivals[MANY];
	size_t sizes[MANY];
	struct model want[MANY];
	struct msg m[MANY];
	for (size_t k = 0; k < MANY; k++) {
		arrivals[k] = 1000 + 10 * (int64_t)k;
		sizes[k] = 100 + 10 * k;
		want[k] = (struct model){ .due = arrivals[k] };
	}
	commit_all(q, m, MANY, arrivals, nrcpts, sizes);
	for (size_t k = 0; k < MANY; k++)
		for (int r = 0; r < rounds[k]; r++)
			deliver(q, &m[k], k, &want[k]);
	check_schedule(q, m, want, MANY, 0);

	/* Each step on one message, then the whole schedule compared with the model. */
	static const struct { int op; size_t msg; int count; } steps[] = {
		{ QUEUE_ADMIN_FLUSH, 3, 1 },	/* deferred three times: to 0 */
		{ QUEUE_ADMIN_FLUSH, 3, 1 },	/* from 0 to 0 */
		{ DELIVER, 3, 0 },		/* deferred again, from 0 */
		{ QUEUE_ADMIN_HOLD, 3, 1 },
		{ QUEUE_ADMIN_HOLD, 3, 0 },
		{ QUEUE_ADMIN_FLUSH, 3, 0 },	/* held: stays out */
		{ QUEUE_ADMIN_RELEASE, 3, 1 },
		{ QUEUE_ADMIN_RELEASE, 3, 0 },
		{ QUEUE_ADMIN_HOLD, 3, 1 },
		{ QUEUE_ADMIN_DELETE, 3, 1 },	/* held: goes all the same */
		{ QUEUE_ADMIN_DELETE, 3, 0 },
		{ QUEUE_ADMIN_FLUSH, 3, 0 },
		{ QUEUE_ADMIN_RELEASE, 3, 0 },
		{ QUEUE_ADMIN_HOLD, 6, 1 },	/* never tried: its entry is at arrival */
		{ QUEUE_ADMIN_RELEASE, 6, 1 },
		{ DELIVER, 6, 0 },
		{ QUEUE_ADMIN_DELETE, 6, 1 },
		{ QUEUE_ADMIN_FLUSH, 7, 1 },	/* never tried, one recipient */
		{ DELIVER, 7, 0 },
		{ DELIVER, 7, 0 },		/* sent: removed */
		{ QUEUE_ADMIN_DELETE, 7, 0 },
		{ QUEUE_ADMIN_DELETE, 2, 1 },	/* deferred three times, one recipient sent */
		{ QUEUE_ADMIN_HOLD, 0, 1 },	/* deferred once */
		{ QUEUE_ADMIN_DELETE, 0, 1 },
		{ QUEUE_ADMIN_HOLD, 4, 1 },	/* deferred twice */
		{ QUEUE_ADMIN_RELEASE, 4, 1 },
		{ DELIVER, 4, 0 },
		{ QUEUE_ADMIN_FLUSH, 4, 1 },
		{ QUEUE_ADMIN_FLUSH, 1, 1 },
		{ QUEUE_ADMIN_HOLD, 5, 1 },
	};
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		size_t k = steps[i].msg;
		if (steps[i].op == DELIVER) {
			deliver(q, &m[k], k, &want[k]);
		} else {
			enum queue_admin_op op = (enum queue_admin_op)steps[i].op;
			int count = admin(q, op, m[k].id, NULL);
			CHECK(count == steps[i].count && model_op(op, &want[k]) == count);
			if (count != steps[i].count)
				fprintf(stderr, "  step %zu: count %d, want %d\n", i + 1, count,
				    steps[i].count);
		}
		check_schedule(q, m, want, MANY, i + 1);
	}
	queue_close(q);
	for (size_t k = 0; k < MANY; k++) {
		struct raw r = raw_count(dir, m[k].id);
		if (want[k].gone)
			CHECK(r.msg == 0 && r.rcpt == 0 && r.body == 0 && r.sched == 0);
		else
			CHECK(r.msg == 1 && r.rcpt == nrcpts[k] && r.sched == (want[k].due >= 0));
	}
	free_msgs(m, MANY);
}

/* id's recipients deferred to first, first + 100, …; its entry moves from old_due. */
static void defer_to(struct queue *q, const char *id, int64_t old_due, int64_t first)
{
	struct queue_envelope *st = queue_load(q, id);
	CHECK(st != NULL);
	if (!st)
		return;
	for (size_t i = 0; i < st->nrcpts; i++)
		set_rcpt(&st->rcpts[i], QUEUE_RCPT_PENDING, st->rcpts[i].attempts + 1,
		    first + 100 * (int64_t)i, "451 4.3.0 later", NULL, first - 1000, 0);
	update_ok(q, st, old_due, first, NULL, NULL);
}

/* The schedule is exactly these (id, due) pairs, in its order. */
static void check_entries(struct queue *q, size_t n, const char *const *ids, const int64_t *dues)
{
	struct due_seen s;
	int64_t next;
	due_at(q, INT64_MAX, 0, &s, &next);
	CHECK(s.n == n);
	for (size_t i = 0; i < n && i < s.n; i++)
		CHECK(strcmp(s.ids[i], ids[i]) == 0 && s.due[i] == dues[i]);
	if (s.n != n)
		print_due("the schedule is", &s);
}

/*
 * The one-message path rebuilds keys and does not walk: an entry at a time
 * that no key of the message gives any more (a stale one, beside its own)
 * is left where it is — a walk would have found it.  What becomes of it is
 * the scheduler's: queue_unschedule() drops it for a held or gone message;
 * beside a flush, it stays (one early attempt).  The bulk operations, which
 * index the whole schedule, find it.
 */
static void test_one_leaves_stale(void)
{
	struct queue *q = open_queue(new_dir(), 0, 0, 64 * KiB);
	if (!q)
		return;
	static const int64_t arrivals[] = { 1000, 1000 };
	static const size_t nrcpts[] = { 2, 2 }, sizes[] = { 100, 100 };
	struct msg m[2];
	commit_all(q, m, 2, arrivals, nrcpts, sizes);
	const char *a = m[0].id, *b = m[1].id;
	struct result r = { 0, 0 };

	/* An update from a wrong old_due leaves the 1000 entry; the next moves that one. */
	defer_to(q, a, 999, 2000);
	defer_to(q, a, 1000, 3000);
	check_entries(q, 3, (const char *[]){ b, a, a }, (const int64_t[]){ 1000, 2000, 3000 });
	CHECK(admin(q, QUEUE_ADMIN_HOLD, a, NULL) == 1);
	check_entries(q, 2, (const char *[]){ b, a }, (const int64_t[]){ 1000, 2000 });
	callbacks = 0;
	CHECK(queue_unschedule(q, a, 2000, on_done, &r) == 0);	/* it came due: held */
	CHECK(wait_callbacks(q, 1) && r.status == QUEUE_OK);
	check_entries(q, 1, (const char *[]){ b }, (const int64_t[]){ 1000 });

	CHECK(admin(q, QUEUE_ADMIN_RELEASE, a, NULL) == 1);
	defer_to(q, a, 999, 4000);
	defer_to(q, a, 0, 5000);
	CHECK(admin(q, QUEUE_ADMIN_FLUSH, a, NULL) == 1);
	check_entries(q, 3, (const char *[]){ a, b, a }, (const int64_t[]){ 0, 1000, 4000 });
	CHECK(admin(q, QUEUE_ADMIN_DELETE, a, NULL) == 1);
	check_entries(q, 2, (const char *[]){ b, a }, (const int64_t[]){ 1000, 4000 });
	r = (struct result){ 0, 0 };
	callbacks = 0;
	CHECK(queue_unschedule(q, a, 4000, on_done, &r) == 0);	/* it came due: gone */
	CHECK(wait_callbacks(q, 1) && r.status == QUEUE_OK);
	check_entries(q, 1, (const char *[]){ b }, (const int64_t[]){ 1000 });

	defer_to(q, b, 999, 2000);
	defer_to(q, b, 1000, 3000);
	CHECK(admin(q, QUEUE_ADMIN_HOLD, NULL, NULL) == 1);
	check_entries(q, 0, NULL, NULL);
	queue_close(q);
	free_msgs(m, 2);
}

/* Damage id's first recipient record (an unknown version), the queue closed. */
static void damage_rcpt(const char *dir, const char *id)
{
	unsigned char k[QUEUE_ID_LEN + 4] = { 0 }, buf[4096];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val key = { sizeof k, k }, val;

	memcpy(k, id, QUEUE_ID_LEN);
	CHECK(mdb_env_create(&env) == 0);
	CHECK(mdb_env_set_maxdbs(env, 16) == 0);
	CHECK(mdb_env_open(env, dir, MDB_NOTLS, 0600) == 0);
	CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	CHECK(mdb_dbi_open(txn, "rcpt", 0, &dbi) == 0);
	CHECK(mdb_get(txn, dbi, &key, &val) == 0 && val.mv_size <= sizeof buf);
	memcpy(buf, val.mv_data, val.mv_size);
	buf[0] = 0xff;
	val.mv_data = buf;
	CHECK(mdb_put(txn, dbi, &key, &val, 0) == 0);
	CHECK(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
}

/* A message that cannot be loaded has no keys to rebuild: its entries are walked for. */
static void test_one_damaged_walks(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	static const int64_t arrivals[] = { 1000, 1000 };
	static const size_t nrcpts[] = { 2, 2 }, sizes[] = { 100, CHUNK + 10 };
	struct msg m[2];
	commit_all(q, m, 2, arrivals, nrcpts, sizes);
	const char *a = m[0].id, *b = m[1].id;

	defer_to(q, b, 999, 2000);	/* two entries, one stale */
	defer_to(q, b, 1000, 3000);
	queue_close(q);
	damage_rcpt(dir, b);
	if (!(q = open_queue(dir, 0, 0, 64 * KiB)))
		return;
	CHECK(queue_load(q, b) == NULL);
	check_entries(q, 3, (const char *[]){ a, b, b }, (const int64_t[]){ 1000, 2000, 3000 });
	CHECK(admin(q, QUEUE_ADMIN_HOLD, b, NULL) == 1);
	check_entries(q, 1, (const char *[]){ a }, (const int64_t[]){ 1000 });
	CHECK(admin(q, QUEUE_ADMIN_RELEASE, b, NULL) == 1);
	CHECK(admin(q, QUEUE_ADMIN_FLUSH, b, NULL) == 1);
	check_entries(q, 2, (const char *[]){ b, a }, (const int64_t[]){ 0, 1000 });
	CHECK(admin(q, QUEUE_ADMIN_DELETE, b, NULL) == 1);
	check_entries(q, 1, (const char *[]){ a }, (const int64_t[]){ 1000 });
	queue_close(q);
	struct raw r = raw_count(dir, b);
	CHECK(r.msg == 0 && r.rcpt == 0 && r.body == 0 && r.sched == 0);
	CHECK(r.all_msg == 1 && r.all_rcpt == 2 && r.all_sched == 1);
	free_msgs(m, 2);
}

int main(void)
{
	if (scratch_init("test_queue_admin") < 0)
		return 1;
	TEST_CASE(test_hold_release_flush);
	TEST_CASE(test_delete_and_domain);
	TEST_CASE(test_unschedule_held);
	TEST_CASE(test_one_among_many);
	TEST_CASE(test_one_leaves_stale);
	TEST_CASE(test_one_damaged_walks);
	scratch_remove();
	return check_exit();
}
