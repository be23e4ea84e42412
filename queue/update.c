/*
 * update — delivery results into the queue: a message's recipients with
 * their new states, its new place in the schedule, or its removal once every
 * recipient is done; and, in the same transaction, the bounce those results
 * call for.  So a crash never leaves a recipient marked bounced without its
 * DSN, nor a DSN queued for a recipient still pending.  Written by the writer
 * thread, group-committed with everything else.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/internal.h"
#include "queue/record.h"

static int del_key(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t len)
{
	MDB_val key = { len, (void *)k };
	int rc = mdb_del(txn, dbi, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Every record of db whose key starts with the id (rcpt, body, attempt). */
int queue_del_prefixed(MDB_txn *txn, MDB_dbi dbi, const char *id)
{
	unsigned char sub[QUEUE_KEY_SUB_LEN];
	MDB_cursor *cur;
	MDB_val key, val;
	int rc;

	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		return rc;
	queue_key_sub(sub, id, 0);
	key = (MDB_val){ sizeof sub, sub };
	rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	while (rc == 0 && key.mv_size >= QUEUE_ID_LEN && memcmp(key.mv_data, id, QUEUE_ID_LEN) == 0) {
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		/* A body chunk: its first page, read to free it, was the last left mapped. */
		if (val.mv_size > QUEUE_FORGET_MIN)
			queue_forget_first(val.mv_data);
		rc = mdb_cursor_get(cur, &key, &val, MDB_GET_CURRENT);
		if (rc == MDB_NOTFOUND || rc == EINVAL)	/* deleted the last one */
			rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* new_due of a queue_unschedule() job: the entry stays if its message is there, not held. */
#define DUE_KEEP_IF_PRESENT (-2)

int queue_put_update(struct queue *q, MDB_txn *txn, const struct queue_job *job, int *gone)
{
	const struct queue_envelope *st = job->state;
	unsigned char sub[QUEUE_KEY_SUB_LEN], sched[QUEUE_KEY_SCHED_LEN];
	MDB_val key, val;
	int rc;

	/* The attempts happened, whatever became of the message meanwhile. */
	if ((rc = queue_put_totals(q, txn, st)) != 0)
		return rc;
	/* The old entry goes first, so that no stale one can outlive its message. */
	queue_key_sched(sched, job->old_due, st->id);
	if ((rc = del_key(txn, q->db_sched, sched, sizeof sched)) != 0)
		return rc;
	/* Gone already (relayctl delete): nothing to record, no bounce about it. */
	key = (MDB_val){ QUEUE_ID_LEN, (void *)st->id };
	if ((rc = mdb_get(txn, q->db_msg, &key, &val)) == MDB_NOTFOUND) {
		*gone = 1;
		return 0;
	}
	if (rc != 0)
		return rc;
	if (job->new_due == DUE_KEEP_IF_PRESENT) {
		/* A held message has no entry: release writes it a new one. */
		if (queue_is_held(q, txn, st->id))
			return 0;
		key = (MDB_val){ sizeof sched, sched };
		val = (MDB_val){ 0, NULL };
		return mdb_put(txn, q->db_sched, &key, &val, 0);
	}
	int held = queue_is_held(q, txn, st->id);	/* relayctl hold while it was out */
	if (job->new_due < 0) {
		if ((rc = del_key(txn, q->db_msg, st->id, QUEUE_ID_LEN)) != 0 ||
		    (held && (rc = del_key(txn, q->db_hold, st->id, QUEUE_ID_LEN)) != 0) ||
		    (rc = queue_del_prefixed(txn, q->db_rcpt, st->id)) != 0 ||
		    (rc = queue_del_prefixed(txn, q->db_attempt, st->id)) != 0)
			return rc;
		return queue_del_prefixed(txn, q->db_body, st->id);
	}
	for (size_t i = 0; i < st->nrcpts; i++) {
		size_t len = queue_record_rcpt_len(&st->rcpts[i]);
		if (len == 0)
			return EINVAL;
		queue_key_sub(sub, st->id, (uint32_t)i);
		key = (MDB_val){ sizeof sub, sub };
		val = (MDB_val){ len, NULL };
		if ((rc = mdb_put(txn, q->db_rcpt, &key, &val, MDB_RESERVE)) != 0)
			return rc;
		queue_record_rcpt_encode(&st->rcpts[i], val.mv_data);
	}
	if ((rc = queue_put_attempts(q, txn, st)) != 0)
		return rc;
	if (held)
		return 0;	/* out of the schedule until released */
	queue_key_sched(sched, job->new_due, st->id);
	key = (MDB_val){ sizeof sched, sched };
	val = (MDB_val){ 0, NULL };
	return mdb_put(txn, q->db_sched, &key, &val, 0);
}

int queue_update(struct queue *q, struct queue_envelope *state, int64_t old_due,
    int64_t new_due, struct queue_envelope *bounce, struct queue_spool *bounce_spool,
    queue_done_fn *done, void *arg)
{
	struct queue_job *job = queue_job_new(bounce, bounce_spool, done, arg);

	if (!job) {
		queue_envelope_free(state);
		return -1;
	}
	job->state = state;
	job->old_due = old_due;
	job->new_due = new_due;
	job->lazy = 1;		/* undone by a crash, the attempt is repeated: nothing is lost */
	return queue_submit(q, job);
}

int queue_unschedule(struct queue *q, const char *id, int64_t due, queue_done_fn *done,
    void *arg)
{
	struct queue_envelope *st = queue_envelope_new();
	struct queue_job *job = st ? queue_job_new(NULL, NULL, done, arg) : NULL;

	if (!job) {
		queue_envelope_free(st);
		return -1;
	}
	snprintf(st->id, sizeof st->id, "%s", id);
	job->state = st;
	job->old_due = due;
	job->new_due = DUE_KEEP_IF_PRESENT;
	job->lazy = 1;
	return queue_submit(q, job);
}
