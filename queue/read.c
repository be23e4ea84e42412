/*
 * read — looking at the queue without changing it (relayctl, the scheduler):
 * walking every message in id order, loading one envelope, streaming a body.
 * Read transactions stay short and never span a callback: an open reader pins
 * old pages (the file grows) and would hold off map growth (map_lock).
 */
#include "queue/internal.h"
#include "queue/record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Messages decoded per read transaction while walking. */
#define WALK_PAGE 64

int queue_read_begin(struct queue *q, MDB_txn **txn)
{
	for (int tries = 0;; tries++) {
		pthread_rwlock_rdlock(&q->map_lock);
		int rc = q->env ? mdb_txn_begin(q->env, NULL, MDB_RDONLY, txn) : MDB_PANIC;
		if (rc == 0)
			return 0;
		pthread_rwlock_unlock(&q->map_lock);
		if (rc != MDB_MAP_RESIZED || tries > 0)
			return rc;
		/* Another process grew the map (relayd, while relayctl looks): adopt its size. */
		pthread_rwlock_wrlock(&q->map_lock);
		mdb_env_set_mapsize(q->env, 0);
		pthread_rwlock_unlock(&q->map_lock);
	}
}

void queue_read_end(struct queue *q, MDB_txn *txn)
{
	mdb_txn_abort(txn);
	pthread_rwlock_unlock(&q->map_lock);
}

/*
 * The n recipient records of env, which follow each other in rcpt.  The array
 * grows as records are found, so a hostile count cannot make us allocate.
 */
static int load_rcpts(struct queue *q, MDB_txn *txn, struct queue_envelope *env, uint32_t n)
{
	unsigned char sub[QUEUE_KEY_SUB_LEN];
	MDB_cursor *cur;
	MDB_val key, val;
	size_t cap = 0;

	if (n == 0)
		return 0;
	if (mdb_cursor_open(txn, q->db_rcpt, &cur) != 0)
		return -1;
	queue_key_sub(sub, env->id, 0);
	key = (MDB_val){ sizeof sub, sub };
	int rc = mdb_cursor_get(cur, &key, &val, MDB_SET_KEY);
	for (uint32_t i = 0; i < n; i++) {
		queue_key_sub(sub, env->id, i);
		if (rc != 0 || key.mv_size != sizeof sub || memcmp(key.mv_data, sub, sizeof sub) != 0)
			goto fail;
		if (env->nrcpts == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			struct queue_rcpt *p = reallocarray(env->rcpts, ncap, sizeof *p);
			if (!p)
				goto fail;
			env->rcpts = p;
			cap = ncap;
		}
		struct queue_rcpt *r = &env->rcpts[env->nrcpts];
		memset(r, 0, sizeof *r);
		if (queue_record_rcpt_decode(val.mv_data, val.mv_size, r) < 0)
			goto fail;
		env->nrcpts++;
		rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return 0;
fail:
	mdb_cursor_close(cur);
	return -1;
}

/* A whole envelope from its msg record and its recipients; NULL when malformed. */
static struct queue_envelope *envelope_get(struct queue *q, MDB_txn *txn, const char *id,
    const MDB_val *val)
{
	struct queue_envelope *env = queue_envelope_new();
	uint32_t n;

	if (!env)
		return NULL;
	memcpy(env->id, id, QUEUE_ID_LEN);
	env->id[QUEUE_ID_LEN] = '\0';
	if (queue_record_envelope_decode(val->mv_data, val->mv_size, env, &n) < 0 ||
	    load_rcpts(q, txn, env, n) < 0) {
		queue_envelope_free(env);
		return NULL;
	}
	env->held = queue_is_held(q, txn, env->id);
	return env;
}

struct queue_envelope *queue_load_txn(struct queue *q, MDB_txn *txn, const char *id)
{
	MDB_val key = { QUEUE_ID_LEN, (void *)id }, val;
	return mdb_get(txn, q->db_msg, &key, &val) == 0 ? envelope_get(q, txn, id, &val) : NULL;
}

static int id_ok(const char *id)
{
	return id && queue_id_valid(id, strnlen(id, QUEUE_ID_LEN + 1));
}

struct queue_envelope *queue_load(struct queue *q, const char *id)
{
	MDB_txn *txn;
	MDB_val key, val;
	struct queue_envelope *env = NULL;

	if (!id_ok(id) || queue_read_begin(q, &txn) != 0)
		return NULL;
	key = (MDB_val){ QUEUE_ID_LEN, (void *)id };
	if (mdb_get(txn, q->db_msg, &key, &val) == 0)
		env = envelope_get(q, txn, id, &val);
	queue_read_end(q, txn);
	return env;
}

/*
 * Walk in pages: decode up to WALK_PAGE envelopes in one short transaction,
 * end it, then call fn on each (so fn may itself read the queue).  A record
 * that cannot be decoded is passed over and makes the result -1 at the end,
 * so one damaged message neither hides the others nor goes unnoticed.
 */
int queue_walk(struct queue *q, queue_walk_fn *fn, void *arg)
{
	unsigned char last[512];	/* key to resume after; LMDB keys are at most 511 bytes */
	size_t last_len = 0;
	int bad = 0, started = 0;

	for (;;) {
		struct queue_envelope *page[WALK_PAGE];
		size_t n = 0;
		MDB_txn *txn;
		MDB_cursor *cur;
		MDB_val key, val;

		if (queue_read_begin(q, &txn) != 0)
			return -1;
		int rc = mdb_cursor_open(txn, q->db_msg, &cur);
		if (rc != 0) {
			queue_read_end(q, txn);
			return -1;
		}
		if (!started) {
			rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
		} else {
			key = (MDB_val){ last_len, last };
			rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
			if (rc == 0 && key.mv_size == last_len && memcmp(key.mv_data, last, last_len) == 0)
				rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
		}
		started = 1;
		while (rc == 0 && n < WALK_PAGE) {
			if (key.mv_size > sizeof last) {
				rc = EINVAL;
				break;
			}
			memcpy(last, key.mv_data, key.mv_size);
			last_len = key.mv_size;
			struct queue_envelope *env = NULL;
			if (queue_id_valid(key.mv_data, key.mv_size))
				env = envelope_get(q, txn, key.mv_data, &val);
			if (env)
				page[n++] = env;
			else
				bad = 1;
			rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
		}
		mdb_cursor_close(cur);
		queue_read_end(q, txn);

		int stop = 0;
		for (size_t i = 0; i < n; i++) {
			if (!stop && fn(arg, page[i]) != 0)
				stop = 1;
			queue_envelope_free(page[i]);
		}
		if (stop)
			return 0;
		if (rc == MDB_NOTFOUND)
			return bad ? -1 : 0;
		if (rc != 0)
			return -1;
	}
}

/*
 * Chunk by chunk, each copied out in its own short transaction.  The stored
 * size must be matched exactly, so a body that is missing a chunk (or one
 * deleted while we read) is an error, never a silently shorter message.
 */
int queue_read_body(struct queue *q, const char *id, queue_body_fn *fn, void *arg)
{
	unsigned char sub[QUEUE_KEY_SUB_LEN];
	MDB_txn *txn;
	MDB_val key, val;
	uint64_t size;
	uint32_t nrcpts;

	if (!id_ok(id) || queue_read_begin(q, &txn) != 0)
		return -1;
	struct queue_envelope *env = queue_envelope_new();
	key = (MDB_val){ QUEUE_ID_LEN, (void *)id };
	int rc = !env ? ENOMEM : mdb_get(txn, q->db_msg, &key, &val);
	if (rc == 0)
		rc = queue_record_envelope_decode(val.mv_data, val.mv_size, env, &nrcpts);
	queue_read_end(q, txn);
	size = env ? env->size : 0;
	queue_envelope_free(env);
	if (rc != 0)
		return -1;

	char *buf = malloc(size < QUEUE_BODY_CHUNK ? (size_t)size + 1 : QUEUE_BODY_CHUNK);
	if (!buf)
		return -1;
	uint64_t off = 0;
	for (uint32_t chunk = 0; off < size; chunk++) {
		size_t n = 0;
		if (queue_read_begin(q, &txn) != 0)
			break;
		queue_key_sub(sub, id, chunk);
		key = (MDB_val){ sizeof sub, sub };
		if (mdb_get(txn, q->db_body, &key, &val) == 0 && val.mv_size > 0 &&
		    val.mv_size <= QUEUE_BODY_CHUNK && val.mv_size <= size - off) {
			n = val.mv_size;
			memcpy(buf, val.mv_data, n);
		}
		queue_read_end(q, txn);
		if (n == 0 || fn(arg, buf, n) != 0)
			break;
		off += n;
	}
	free(buf);
	return off == size ? 0 : -1;
}

int queue_read_chunk(struct queue *q, const char *id, uint32_t n, queue_body_fn *fn,
    void *arg)
{
	unsigned char sub[QUEUE_KEY_SUB_LEN];
	MDB_txn *txn;
	MDB_val key, val;
	int rc;

	if (!id_ok(id) || queue_read_begin(q, &txn) != 0)
		return -1;
	queue_key_sub(sub, id, n);
	key = (MDB_val){ sizeof sub, sub };
	rc = mdb_get(txn, q->db_body, &key, &val);
	if (rc == MDB_NOTFOUND) {
		queue_read_end(q, txn);
		return 0;
	}
	/* The map stays valid only inside the transaction: fn copies what it keeps. */
	rc = rc == 0 && val.mv_size > 0 && val.mv_size <= QUEUE_BODY_CHUNK &&
	    fn(arg, val.mv_data, val.mv_size) == 0 ? 1 : -1;
	if (rc == 1)
		queue_forget(val.mv_data, val.mv_size);
	queue_read_end(q, txn);
	return rc;
}

int queue_due(struct queue *q, int64_t now, queue_due_fn *fn, void *arg, int64_t *next)
{
	unsigned char first[QUEUE_KEY_SCHED_LEN] = { 0 };
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val key = { sizeof first, first }, val;
	char id[QUEUE_ID_LEN + 1];
	int rc;

	*next = -1;
	if (queue_read_begin(q, &txn) != 0)
		return -1;
	if (mdb_cursor_open(txn, q->db_sched, &cur) != 0) {
		queue_read_end(q, txn);
		return -1;
	}
	/* fn runs inside the read transaction: it must not wait for the writer. */
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0;
	    rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (key.mv_size != QUEUE_KEY_SCHED_LEN)
			continue;
		int64_t due = (int64_t)queue_be64_get(key.mv_data);
		if (due > now) {
			*next = due;
			break;
		}
		memcpy(id, (const char *)key.mv_data + 8, QUEUE_ID_LEN);
		id[QUEUE_ID_LEN] = '\0';
		if (queue_id_valid(id, QUEUE_ID_LEN) && fn(arg, id, due) != 0)
			break;
	}
	mdb_cursor_close(cur);
	queue_read_end(q, txn);
	return 0;
}

int queue_summary(struct queue *q, struct queue_summary *s)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_stat st;
	MDB_val key, val;

	memset(s, 0, sizeof *s);
	s->next_due = -1;
	if (queue_read_begin(q, &txn) != 0)
		return -1;
	if (mdb_stat(txn, q->db_msg, &st) == 0)
		s->messages = st.ms_entries;
	if (mdb_stat(txn, q->db_rcpt, &st) == 0)
		s->recipients = st.ms_entries;
	if (!q->no_hold && mdb_stat(txn, q->db_hold, &st) == 0)
		s->held = st.ms_entries;
	/* Ids sort by the time they were made: the first message is the oldest. */
	if (mdb_cursor_open(txn, q->db_msg, &cur) == 0) {
		if (mdb_cursor_get(cur, &key, &val, MDB_FIRST) == 0) {
			struct queue_envelope env = { .sender = NULL };
			uint32_t n;
			if (queue_record_envelope_decode(val.mv_data, val.mv_size, &env, &n) == 0)
				s->oldest_arrival = env.arrival;
			free(env.sender);
			free(env.envid);
			free(env.client_addr);
			free(env.helo);
			free(env.auth_user);
		}
		mdb_cursor_close(cur);
	}
	if (mdb_cursor_open(txn, q->db_sched, &cur) == 0) {
		if (mdb_cursor_get(cur, &key, &val, MDB_FIRST) == 0 &&
		    key.mv_size == QUEUE_KEY_SCHED_LEN)
			s->next_due = (int64_t)queue_be64_get(key.mv_data);
		mdb_cursor_close(cur);
	}
	queue_read_end(q, txn);
	return 0;
}
