/*
 * test_queue_attempts — the attempt history relayctl show tells and the
 * per-upstream totals relayctl stats and /metrics count: written with
 * queue_update(), in order per recipient, trimmed to the last
 * QUEUE_ATTEMPTS_KEPT, gone with the message (delivered or deleted), while
 * the totals outlive it; read back read-only; hostile lengths cut.
 */
#include "tests/unit/queue_update_helpers.h"

struct seen {
	struct queue_attempt a[64];
	size_t n;
};

static int keep(void *arg, const struct queue_attempt *a)
{
	struct seen *s = arg;
	if (s->n < 64) {
		struct queue_attempt *c = &s->a[s->n++];
		*c = (struct queue_attempt){ .rcpt = a->rcpt, .time = a->time };
		c->status = a->status ? strdup(a->status) : NULL;
		c->upstream = a->upstream ? strdup(a->upstream) : NULL;
		c->relay = a->relay ? strdup(a->relay) : NULL;
		c->dsn = a->dsn ? strdup(a->dsn) : NULL;
		c->reply = a->reply ? strdup(a->reply) : NULL;
	}
	return 0;
}

static void seen_clear(struct seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		queue_attempt_clear(&s->a[i]);
	s->n = 0;
}

static void history(struct queue *q, const char *id, struct seen *s)
{
	seen_clear(s);
	CHECK(queue_attempts(q, id, keep, s) == 0);
}

struct totals {
	struct queue_total t[8];
	char names[8][32];
	size_t n;
};

static int keep_total(void *arg, const struct queue_total *t)
{
	struct totals *all = arg;
	if (all->n < 8) {
		all->t[all->n] = *t;
		snprintf(all->names[all->n], sizeof all->names[0], "%s", t->name);
		all->t[all->n].name = all->names[all->n];
		all->n++;
	}
	return 0;
}

/* The totals of name, zero when it has none. */
static struct queue_total total_of(struct queue *q, const char *name)
{
	struct totals all = { .n = 0 };
	struct queue_total none = { .name = NULL };
	CHECK(queue_totals(q, keep_total, &all) == 0);
	for (size_t i = 0; i < all.n; i++)
		if (strcmp(all.names[i], name) == 0)
			return all.t[i];
	return none;
}

static void add(struct queue_envelope *st, uint32_t rcpt, int64_t t, const char *status,
    const char *upstream, const char *relay, const char *dsn, const char *reply)
{
	struct queue_attempt a = { .rcpt = rcpt, .time = t, .status = (char *)status,
		.upstream = (char *)upstream, .relay = (char *)relay, .dsn = (char *)dsn,
		.reply = (char *)reply };
	CHECK(queue_envelope_add_attempt(st, &a) == 0);
}

static void admin_done(void *arg, enum queue_status status, unsigned count)
{
	(void)arg;
	CHECK(status == QUEUE_OK && count == 1);
	callbacks++;
}

static void test_history_and_totals(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	static const int64_t arrivals[] = { 1000, 1000 };
	static const size_t nrcpts[] = { 2, 1 };
	static const size_t sizes[] = { 100, 10 };
	struct msg m[2];
	commit_all(q, m, 2, arrivals, nrcpts, sizes);
	struct seen s = { .n = 0 };
	history(q, m[0].id, &s);
	CHECK(s.n == 0);

	/* One try: rcpt 1 fails over from up1 to up2 and goes; rcpt 0 waits. */
	struct queue_envelope *st = queue_load(q, m[0].id);
	set_rcpt(&st->rcpts[0], QUEUE_RCPT_PENDING, 1, 2000, "451 4.7.1 later", "a[192.0.2.1]:25",
	    1100, 0);
	set_rcpt(&st->rcpts[1], QUEUE_RCPT_SENT, 1, 0, "250 ok", "b[192.0.2.2]:25", 1100, 0);
	add(st, 1, 1100, "failover", "up1", NULL, "4.4.1", "connect: refused");
	add(st, 0, 1100, "deferred", "up1", "a[192.0.2.1]:25", "4.7.1", "451 4.7.1 later");
	add(st, 1, 1101, "sent", "up2", "b[192.0.2.2]:25", "2.0.0", "250 ok");
	add(st, 0, 1102, "bogus", NULL, NULL, NULL, NULL);	/* no upstream: history only */
	add(st, 7, 1102, "sent", "up2", NULL, "2.0.0", "no such recipient");	/* ignored */
	update_ok(q, st, 1000, 2000, NULL, NULL);
	history(q, m[0].id, &s);
	CHECK(s.n == 4);
	if (s.n == 4) {
		CHECK(s.a[0].rcpt == 0 && s.a[0].time == 1100);
		CHECK_STR(s.a[0].status, "deferred");
		CHECK_STR(s.a[0].upstream, "up1");
		CHECK_STR(s.a[0].relay, "a[192.0.2.1]:25");
		CHECK_STR(s.a[0].dsn, "4.7.1");
		CHECK_STR(s.a[0].reply, "451 4.7.1 later");
		CHECK(s.a[1].rcpt == 0 && s.a[1].upstream == NULL && s.a[1].reply == NULL);
		CHECK(s.a[2].rcpt == 1 && s.a[2].relay == NULL);
		CHECK_STR(s.a[2].status, "failover");
		CHECK(s.a[3].rcpt == 1 && s.a[3].time == 1101);
		CHECK_STR(s.a[3].status, "sent");
	}
	history(q, m[1].id, &s);
	CHECK(s.n == 0);
	struct queue_total t = total_of(q, "up1");
	CHECK(t.sent == 0 && t.deferred == 1 && t.failover == 1 && t.bounced == 0);
	CHECK(t.last_ok == 0 && t.last_fail == 1100);
	t = total_of(q, "up2");
	CHECK(t.sent == 2 && t.deferred == 0 && t.last_ok == 1102);

	/* Retried for days: only the last QUEUE_ATTEMPTS_KEPT of rcpt 0 stay. */
	int64_t due = 2000;
	for (int i = 0; i < QUEUE_ATTEMPTS_KEPT + 5; i++) {
		st = queue_load(q, m[0].id);
		add(st, 0, 3000 + i, "deferred", "up1", NULL, "4.4.1", "timeout");
		update_ok(q, st, due, due + 1, NULL, NULL);
		due++;
	}
	history(q, m[0].id, &s);
	CHECK(s.n == QUEUE_ATTEMPTS_KEPT + 2);
	CHECK(s.a[0].rcpt == 0 && s.a[0].time == 3000 + 5);	/* 2 + 5 dropped */
	CHECK(s.a[QUEUE_ATTEMPTS_KEPT - 1].time == 3000 + QUEUE_ATTEMPTS_KEPT + 4);
	CHECK(s.a[QUEUE_ATTEMPTS_KEPT].rcpt == 1);
	CHECK(total_of(q, "up1").deferred == 1 + QUEUE_ATTEMPTS_KEPT + 5);

	/* Hostile lengths: the reply is cut at 300 bytes, the record still reads. */
	char *big = malloc(70000);
	memset(big, 'x', 69999);
	big[69999] = '\0';
	st = queue_load(q, m[1].id);
	add(st, 0, 4000, "deferred", big, big, big, big);
	update_ok(q, st, 1000, 5000, NULL, NULL);
	free(big);
	history(q, m[1].id, &s);
	CHECK(s.n == 1 && strlen(s.a[0].reply) == 300 && strlen(s.a[0].relay) == 255);
	queue_close(q);

	/* Read-only (relayctl): the same. */
	char err[256];
	q = queue_open_readonly(dir, err, sizeof err);
	CHECK(q != NULL);
	if (!q)
		return;
	history(q, m[0].id, &s);
	CHECK(s.n == QUEUE_ATTEMPTS_KEPT + 2);
	CHECK(total_of(q, "up2").sent == 2);
	CHECK(queue_attempts(q, "not-an-id", keep, &s) == -1);
	queue_close(q);

	/* Delivered: the history goes with the message, the totals stay. */
	q = open_queue(dir, 0, 0, 64 * KiB);
	if (!q)
		return;
	st = all_sent(q, m[0].id);
	add(st, 0, 6000, "sent", "up1", "a[192.0.2.1]:25", "2.0.0", "250 ok");
	update_ok(q, st, due, -1, NULL, NULL);
	history(q, m[0].id, &s);
	CHECK(s.n == 0);
	t = total_of(q, "up1");
	CHECK(t.sent == 1 && t.last_ok == 6000 && t.last_fail == 3000 + QUEUE_ATTEMPTS_KEPT + 4);

	/* Deleted (relayctl delete): gone as well; a late result still counts. */
	callbacks = 0;
	CHECK(queue_admin(q, QUEUE_ADMIN_DELETE, m[1].id, NULL, admin_done, NULL) == 0);
	CHECK(wait_callbacks(q, 1));
	history(q, m[1].id, &s);
	CHECK(s.n == 0);
	st = state_for(m[1].id);
	add(st, 0, 7000, "bounced", "up3", NULL, "5.1.1", "550 no such user");
	update_ok(q, st, 5000, -1, NULL, NULL);
	history(q, m[1].id, &s);
	CHECK(s.n == 0);
	t = total_of(q, "up3");
	CHECK(t.bounced == 1 && t.last_fail == 7000);
	queue_close(q);
	seen_clear(&s);
	free_msgs(m, 2);
}

int main(void)
{
	if (scratch_init("test_queue_attempts") < 0)
		return 1;
	TEST_CASE(test_history_and_totals);
	scratch_remove();
	return check_exit();
}
