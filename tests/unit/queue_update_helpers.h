/*
 * queue_update_helpers.h — what test_queue_update and test_queue_update_bounce
 * share: test messages committed and compared with what comes back; delivery
 * states built and handed to queue_update(), which is waited for; the
 * schedule as queue_due() reports it; and, after queue_close(), the LMDB file
 * itself opened read-only to count what is left of a message, record by
 * record.  Static, like queue_helpers.h, and for the same reason.
 */
#ifndef RELAYD_QUEUE_UPDATE_HELPERS_H
#define RELAYD_QUEUE_UPDATE_HELPERS_H

#include "tests/unit/queue_helpers.h"

#include <inttypes.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static inline void rcpt_addr(char *buf, size_t len, const char *id, size_t i)
{
	snprintf(buf, len, "r%zu-%.12s@example.net", i, id);
}

/* Build and commit m (its callback is counted like any other). */
static inline void commit_msg(struct queue *q, struct msg *m, int64_t arrival, size_t nrcpts,
    size_t size, unsigned seed)
{
	struct queue_envelope *env = queue_envelope_new();
	queue_new_id(q, env->id);
	memcpy(m->id, env->id, sizeof m->id);
	snprintf(m->sender, sizeof m->sender, "s-%.12s@example.org", m->id);
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
static inline void commit_all(struct queue *q, struct msg *m, size_t n, const int64_t *arrivals,
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

static inline void free_msgs(struct msg *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(m[i].body);
		m[i].body = NULL;
	}
}

/* The envelope and recipient addresses as committed (states aside). */
static inline void check_envelope(struct queue *q, const struct msg *m)
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
static inline void check_body(struct queue *q, const struct msg *m)
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
static inline void check_gone(struct queue *q, const char *id)
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
static inline void set_rcpt(struct queue_rcpt *r, enum queue_rcpt_state state, uint32_t attempts,
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
static inline struct queue_envelope *all_sent(struct queue *q, const char *id)
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
static inline struct queue_envelope *state_for(const char *id)
{
	struct queue_envelope *st = queue_envelope_new();
	memcpy(st->id, id, QUEUE_ID_LEN + 1);
	st->sender = strdup("gone@example.org");
	CHECK(queue_envelope_add_rcpt(st, "r@example.net", NULL, 0) == 0);
	set_rcpt(&st->rcpts[0], QUEUE_RCPT_PENDING, 1, 2000, "451 4.3.0 later", NULL, 1000, 0);
	return st;
}

/* One queue_update(), waited for: its callback must come once, with QUEUE_OK. */
static inline void update_ok(struct queue *q, struct queue_envelope *st, int64_t old_due,
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

static inline int collect_due(void *arg, const char *id, int64_t due)
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
static inline void due_at(struct queue *q, int64_t now, size_t stop_after, struct due_seen *s,
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
static inline size_t due_count(const struct due_seen *s, const char *id, int64_t *due)
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
static inline void print_due(const char *what, const struct due_seen *s)
{
	fprintf(stderr, "  NOTE: %s:", what);
	for (size_t i = 0; i < s->n && i < MAX_DUE; i++)
		fprintf(stderr, " %s@%" PRId64, s->ids[i], s->due[i]);
	fprintf(stderr, "%s\n", s->n ? "" : " (nothing)");
}

struct find_walk {
	const char *id;
	int seen;
};

static inline int find_in_walk(void *arg, const struct queue_envelope *env)
{
	struct find_walk *f = arg;
	if (strcmp(env->id, f->id) == 0)
		f->seen++;
	return 0;
}

static inline int walk_sees(struct queue *q, const char *id)
{
	struct find_walk f = { id, 0 };
	CHECK(queue_walk(q, find_in_walk, &f) == 0);
	return f.seen;
}

static inline size_t walk_count(struct queue *q)
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

static inline void raw_count_db(MDB_txn *txn, const char *name, const char *id, size_t *mine,
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

static inline struct raw raw_count(const char *dir, const char *id)
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

#endif
