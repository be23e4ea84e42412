/*
 * test_queue_update — delivery results going back into the queue, in a fresh
 * directory under /tmp: the schedule (queue_due) in due-time order; recipients'
 * new states written back and the message moved in the schedule; a finished
 * message removed with every record it had; a bounce committed in the same
 * transaction as the results that call for it; results for a message that is
 * gone; bodies read chunk by chunk.  Every done callback comes exactly once,
 * through queue_dispatch().  After queue_close() the LMDB file itself is
 * opened read-only to count what is left of a message, record by record.
 */
#include "queue/queue.h"
#include "tests/unit/check.h"

#include <ftw.h>
#include <inttypes.h>
#include <lmdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KiB 1024
#define MiB (1024 * 1024)
#define CHUNK (256 * KiB)

static char dir_template[] = "/tmp/test_queue_update.XXXXXX";
static char *base_dir;
static int dir_counter;

/* A fresh queue directory per test case, all inside base_dir. */
static char *new_dir(void)
{
	static char path[256];
	snprintf(path, sizeof path, "%s/q%d", base_dir, dir_counter++);
	return path;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static struct queue *open_queue(const char *dir, uint64_t map, uint64_t max, size_t memory)
{
	char err[256] = "";
	struct queue_options opt = { .dir = dir, .map_size = map, .max_size = max,
	    .spool_memory = memory };
	struct queue *q = queue_open(&opt, err, sizeof err);
	if (!q)
		fprintf(stderr, "  queue_open: %s\n", err);
	CHECK(q != NULL);
	return q;
}

/* Callbacks. */

/* One commit's or update's outcome, filled by its callback. */
struct result {
	int called;
	enum queue_status status;
};

static int callbacks;		/* all callbacks so far, on the test's main thread */

static void on_done(void *arg, enum queue_status status)
{
	struct result *r = arg;
	r->called++;
	r->status = status;
	callbacks++;
}

/* Poll the notification fd and dispatch until `want` callbacks have arrived, at most 10 s. */
static int wait_callbacks(struct queue *q, int want)
{
	time_t deadline = time(NULL) + 10;
	while (callbacks < want && time(NULL) < deadline) {
		struct pollfd pfd = { .fd = queue_notify_fd(q), .events = POLLIN };
		if (poll(&pfd, 1, 100) > 0)
			queue_dispatch(q);
	}
	return callbacks >= want;
}

/* Keep dispatching for a while: a callback that comes twice would show up here. */
static void linger(struct queue *q, int ms)
{
	for (int waited = 0; waited < ms; waited += 50) {
		struct pollfd pfd = { .fd = queue_notify_fd(q), .events = POLLIN };
		if (poll(&pfd, 1, 50) > 0)
			queue_dispatch(q);
	}
}

/* Bodies. */

static void fill_body(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245 + 12345;
		p[i] = (i % 78 == 76) ? '\r' : (i % 78 == 77) ? '\n' : (unsigned char)(seed >> 16);
	}
}

/* Write body into a new spool in pieces of `piece` bytes, as DATA would. */
static struct queue_spool *spool_of(struct queue *q, const unsigned char *body, size_t len,
    size_t piece)
{
	struct queue_spool *sp = queue_spool_new(q);
	CHECK(sp != NULL);
	for (size_t off = 0; off < len; off += piece)
		CHECK(queue_spool_write(sp, body + off, len - off < piece ? len - off : piece) == 0);
	CHECK(queue_spool_size(sp) == len);
	return sp;
}

/* Collects what queue_read_body / queue_read_chunk hand out. */
struct body_copy {
	unsigned char *data;
	size_t len, cap;
	int calls;
	size_t last_piece;
};

static int collect_body(void *arg, const void *data, size_t len)
{
	struct body_copy *b = arg;
	if (b->len + len > b->cap) {
		b->cap = (b->len + len) * 2;
		b->data = realloc(b->data, b->cap);
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->last_piece = len;
	b->calls++;
	return 0;
}

static int fail_body(void *arg, const void *data, size_t len)
{
	(void)data; (void)len;
	(*(int *)arg)++;
	return -1;
}

/* Messages. */

/* A test message: what was committed, so it can be compared with what comes back. */
struct msg {
	char id[QUEUE_ID_LEN + 1];
	char sender[64];
	int64_t arrival;
	size_t nrcpts;
	size_t size;
	unsigned char *body;
	struct result result;
};

static void rcpt_addr(char *buf, size_t len, const char *id, size_t i)
{
	snprintf(buf, len, "r%zu-%s@example.net", i, id);
}

/* Build and commit m (its callback is counted like any other). */
static void commit_msg(struct queue *q, struct msg *m, int64_t arrival, size_t nrcpts,
    size_t size, unsigned seed)
{
	struct queue_envelope *env = queue_envelope_new();
	queue_new_id(q, env->id);
	memcpy(m->id, env->id, sizeof m->id);
	snprintf(m->sender, sizeof m->sender, "s-%s@example.org", m->id);
	m->arrival = arrival;
	m->nrcpts = nrcpts;
	m->size = size;
	m->result = (struct result){ 0, 0 };
	env->sender = strdup(m->sender);
	env->client_addr = strdup("192.0.2.7");
	env->helo = strdup("client.example.org");
	env->arrival = arrival;
	for (size_t i = 0; i < nrcpts; i++) {
		char addr[64];
		rcpt_addr(addr, sizeof addr, m->id, i);
		CHECK(queue_envelope_add_rcpt(env, addr, i == 1 ? "rfc822;orig@example.net" : NULL,
		    i == 0 ? QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY : 0) == 0);
	}
	m->body = malloc(size + 1);
	fill_body(m->body, size, seed);
	CHECK(queue_commit(q, env, spool_of(q, m->body, size, 4000), on_done, &m->result) == 0);
}

/* Commit n messages and wait for all of them. */
static void commit_all(struct queue *q, struct msg *m, size_t n, const int64_t *arrivals,
    const size_t *nrcpts, const size_t *sizes)
{
	callbacks = 0;
	for (size_t i = 0; i < n; i++)
		commit_msg(q, &m[i], arrivals[i], nrcpts[i], sizes[i], (unsigned)(i + 1) * 77);
	CHECK(wait_callbacks(q, (int)n));
	for (size_t i = 0; i < n; i++)
		CHECK(m[i].result.called == 1 && m[i].result.status == QUEUE_OK);
	callbacks = 0;
}

static void free_msgs(struct msg *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(m[i].body);
		m[i].body = NULL;
	}
}

/* The envelope and recipient addresses as committed (states aside). */
static void check_envelope(struct queue *q, const struct msg *m)
{
	struct queue_envelope *env = queue_load(q, m->id);
	CHECK(env != NULL);
	if (!env)
		return;
	CHECK_STR(env->id, m->id);
	CHECK_STR(env->sender, m->sender);
	CHECK_STR(env->client_addr, "192.0.2.7");
	CHECK_STR(env->helo, "client.example.org");
	CHECK(env->arrival == m->arrival);
	CHECK(env->size == m->size);
	CHECK(env->nrcpts == m->nrcpts);
	for (size_t i = 0; i < env->nrcpts && i < m->nrcpts; i++) {
		char addr[64];
		rcpt_addr(addr, sizeof addr, m->id, i);
		CHECK_STR(env->rcpts[i].addr, addr);
		CHECK_STR(env->rcpts[i].orcpt, i == 1 ? "rfc822;orig@example.net" : NULL);
		CHECK(env->rcpts[i].notify ==
		    (i == 0 ? QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY : 0u));
	}
	queue_envelope_free(env);
}

/* The whole body through queue_read_body, and again chunk by chunk. */
static void check_body(struct queue *q, const struct msg *m)
{
	struct body_copy b = { 0 }, c = { 0 };
	CHECK(queue_read_body(q, m->id, collect_body, &b) == 0);
	CHECK(b.len == m->size && (m->size == 0 || memcmp(b.data, m->body, m->size) == 0));
	uint32_t n = 0;
	int rc;
	while ((rc = queue_read_chunk(q, m->id, n, collect_body, &c)) == 1 && n < 1000)
		n++;
	CHECK(rc == 0);
	CHECK(n == (m->size + CHUNK - 1) / CHUNK);
	CHECK(c.len == m->size && (m->size == 0 || memcmp(c.data, m->body, m->size) == 0));
	free(b.data);
	free(c.data);
}

/* The message is gone through every reading function. */
static void check_gone(struct queue *q, const char *id)
{
	CHECK(queue_load(q, id) == NULL);
	struct body_copy b = { 0 };
	CHECK(queue_read_body(q, id, collect_body, &b) == -1);
	CHECK(b.calls == 0);
	for (uint32_t n = 0; n < 8; n++) {
		int rc = queue_read_chunk(q, id, n, collect_body, &b);
		CHECK(rc == 0 || rc == -1);
	}
	CHECK(b.calls == 0);
	free(b.data);
}

/* Set one recipient's delivery state (strings copied; NULL stays NULL). */
static void set_rcpt(struct queue_rcpt *r, enum queue_rcpt_state state, uint32_t attempts,
    int64_t next_attempt, const char *reply, const char *relay, int64_t last_attempt,
    unsigned flags)
{
	r->state = state;
	r->attempts = attempts;
	r->next_attempt = next_attempt;
	free(r->last_reply);
	r->last_reply = reply ? strdup(reply) : NULL;
	free(r->last_relay);
	r->last_relay = relay ? strdup(relay) : NULL;
	r->last_attempt = last_attempt;
	r->flags = flags;
}

/* Every recipient of id done (sent), as the scheduler would hand it back. */
static struct queue_envelope *all_sent(struct queue *q, const char *id)
{
	struct queue_envelope *st = queue_load(q, id);
	CHECK(st != NULL);
	if (st)
		for (size_t i = 0; i < st->nrcpts; i++)
			set_rcpt(&st->rcpts[i], QUEUE_RCPT_SENT, 1, 0, "250 2.0.0 Ok",
			    "mx.example.net[192.0.2.25]:25", 5000, 0);
	return st;
}

/* A state for a message that is not (or no longer) in the queue: built by hand. */
static struct queue_envelope *state_for(const char *id)
{
	struct queue_envelope *st = queue_envelope_new();
	memcpy(st->id, id, QUEUE_ID_LEN + 1);
	st->sender = strdup("gone@example.org");
	CHECK(queue_envelope_add_rcpt(st, "r@example.net", NULL, 0) == 0);
	set_rcpt(&st->rcpts[0], QUEUE_RCPT_PENDING, 1, 2000, "451 4.3.0 later", NULL, 1000, 0);
	return st;
}

/* One queue_update(), waited for: its callback must come once, with QUEUE_OK. */
static void update_ok(struct queue *q, struct queue_envelope *st, int64_t old_due,
    int64_t new_due, struct queue_envelope *bounce, struct queue_spool *bounce_spool)
{
	struct result r = { 0, 0 };
	callbacks = 0;
	CHECK(queue_update(q, st, old_due, new_due, bounce, bounce_spool, on_done, &r) == 0);
	CHECK(callbacks == 0);	/* never from inside queue_update */
	CHECK(wait_callbacks(q, 1));
	CHECK(r.called == 1);
	CHECK(r.status == QUEUE_OK);
	callbacks = 0;
}

/* The schedule. */

#define MAX_DUE 64

struct due_seen {
	size_t n;
	char ids[MAX_DUE][QUEUE_ID_LEN + 1];
	int64_t due[MAX_DUE];
	size_t stop_after;	/* 0: never stop */
	int bad;		/* an id that is not QUEUE_ID_LEN long */
};

static int collect_due(void *arg, const char *id, int64_t due)
{
	struct due_seen *s = arg;
	if (strlen(id) != QUEUE_ID_LEN)
		s->bad = 1;
	if (s->n < MAX_DUE) {
		memcpy(s->ids[s->n], id, QUEUE_ID_LEN);
		s->ids[s->n][QUEUE_ID_LEN] = '\0';
		s->due[s->n] = due;
	}
	s->n++;
	return s->stop_after && s->n >= s->stop_after;
}

/* Everything due at now (stopping after stop_after when not 0). */
static void due_at(struct queue *q, int64_t now, size_t stop_after, struct due_seen *s,
    int64_t *next)
{
	memset(s, 0, sizeof *s);
	s->stop_after = stop_after;
	*next = 12345;		/* must be overwritten */
	CHECK(queue_due(q, now, collect_due, s, next) == 0);
	CHECK(!s->bad);
	CHECK(s->n <= MAX_DUE);
}

/* How often id is in the schedule, and (when there) its first due time. */
static size_t due_count(const struct due_seen *s, const char *id, int64_t *due)
{
	size_t count = 0;
	for (size_t i = 0; i < s->n && i < MAX_DUE; i++)
		if (strcmp(s->ids[i], id) == 0) {
			if (count++ == 0 && due)
				*due = s->due[i];
		}
	return count;
}

/* The schedule, listed for a NOTE. */
static void print_due(const char *what, const struct due_seen *s)
{
	fprintf(stderr, "  NOTE: %s:", what);
	for (size_t i = 0; i < s->n && i < MAX_DUE; i++)
		fprintf(stderr, " %s@%" PRId64, s->ids[i], s->due[i]);
	fprintf(stderr, "%s\n", s->n ? "" : " (nothing)");
}

static int count_walk(void *arg, const struct queue_envelope *env)
{
	(void)env;
	(*(size_t *)arg)++;
	return 0;
}

struct find_walk {
	const char *id;
	int seen;
};

static int find_in_walk(void *arg, const struct queue_envelope *env)
{
	struct find_walk *f = arg;
	if (strcmp(env->id, f->id) == 0)
		f->seen++;
	return 0;
}

static int walk_sees(struct queue *q, const char *id)
{
	struct find_walk f = { id, 0 };
	CHECK(queue_walk(q, find_in_walk, &f) == 0);
	return f.seen;
}

static size_t walk_count(struct queue *q)
{
	size_t n = 0;
	CHECK(queue_walk(q, count_walk, &n) == 0);
	return n;
}

/*
 * The LMDB file itself, opened read-only once the queue is closed (one
 * process must not have the same environment open twice): the records of one
 * message in each database.  Layout (queue/record.h): msg by id; rcpt and
 * body by id + 4-byte number; sched by 8-byte time + id.
 */
struct raw {
	size_t msg, rcpt, body, sched;			/* this id's */
	size_t all_msg, all_rcpt, all_body, all_sched;	/* everything */
};

static void raw_count_db(MDB_txn *txn, const char *name, const char *id, size_t *mine,
    size_t *all)
{
	MDB_dbi dbi;
	MDB_cursor *cur;
	MDB_val key, val;
	*mine = *all = 0;
	CHECK(mdb_dbi_open(txn, name, 0, &dbi) == 0);
	CHECK(mdb_cursor_open(txn, dbi, &cur) == 0);
	for (int rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		const char *k = key.mv_data;
		int is_mine;
		if (strcmp(name, "msg") == 0)
			is_mine = key.mv_size == QUEUE_ID_LEN && memcmp(k, id, QUEUE_ID_LEN) == 0;
		else if (strcmp(name, "sched") == 0)
			is_mine = key.mv_size == 8 + QUEUE_ID_LEN &&
			    memcmp(k + 8, id, QUEUE_ID_LEN) == 0;
		else
			is_mine = key.mv_size == QUEUE_ID_LEN + 4 &&
			    memcmp(k, id, QUEUE_ID_LEN) == 0;
		*mine += is_mine;
		++*all;
	}
	mdb_cursor_close(cur);
}

static struct raw raw_count(const char *dir, const char *id)
{
	struct raw r = { 0, 0, 0, 0, 0, 0, 0, 0 };
	MDB_env *env;
	MDB_txn *txn;
	CHECK(mdb_env_create(&env) == 0);
	CHECK(mdb_env_set_maxdbs(env, 4) == 0);
	int rc = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0600);
	CHECK(rc == 0);
	if (rc == 0 && mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0) {
		raw_count_db(txn, "msg", id, &r.msg, &r.all_msg);
		raw_count_db(txn, "rcpt", id, &r.rcpt, &r.all_rcpt);
		raw_count_db(txn, "body", id, &r.body, &r.all_body);
		raw_count_db(txn, "sched", id, &r.sched, &r.all_sched);
		mdb_txn_abort(txn);
	}
	mdb_env_close(env);
	return r;
}

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
 * is not the one deleted.  What happens is printed (NOTE) rather than
 * asserted; see the report.
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

	/* The scheduler's natural reaction: remove it from where queue_due found it. */
	update_ok(q, state_for(m[0].id), 1000, -1, NULL, NULL);
	due_at(q, INT64_MAX, 0, &s, &next);
	print_due("after queue_update(that id, old_due 1000, new_due -1), the schedule is", &s);
	if (due_count(&s, m[0].id, NULL) > 0)
		fprintf(stderr, "  NOTE: the stale entry cannot be removed through queue_update: "
		    "it returns before deleting the schedule key when the message is gone\n");
	CHECK(walk_count(q) == 0);
	queue_close(q);
	struct raw r = raw_count(dir, m[0].id);
	CHECK(r.msg == 0 && r.rcpt == 0 && r.body == 0);
	fprintf(stderr, "  NOTE: in the file, sched holds %zu entr%s for the removed %s\n",
	    r.sched, r.sched == 1 ? "y" : "ies", m[0].id);
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

/* (4) A bounce committed with the results that call for it. */

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

/* (5) Results for a message that is not there: accepted, nothing created. */

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

	/*
	 * With a bounce: the results are dropped; whether the bounce is queued
	 * is not specified by queue.h.  Printed, not asserted.
	 */
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
	fprintf(stderr, "  NOTE: queue_update for a message that is gone, carrying a bounce: "
	    "the bounce %s\n", env ? "is queued anyway" : "is dropped too");
	queue_envelope_free(env);
	queue_close(q);
	free_msgs(m, 2);
}

/* (6) Bodies chunk by chunk. */

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

/* (7) Every callback once, through queue_dispatch. */

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
	base_dir = mkdtemp(dir_template);
	if (!base_dir) {
		perror("mkdtemp");
		return 1;
	}
	TEST_CASE(test_due_empty);
	TEST_CASE(test_due_order);
	TEST_CASE(test_update_reschedules);
	TEST_CASE(test_update_wrong_old_due);
	TEST_CASE(test_update_removes);
	TEST_CASE(test_update_with_bounce);
	TEST_CASE(test_update_vanished);
	TEST_CASE(test_read_chunk);
	TEST_CASE(test_callbacks_once);
	nftw(base_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return check_exit();
}
