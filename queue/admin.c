/*
 * admin — what relayctl asks of the queue through the daemon: flush (due
 * at once), delete, hold (out of the schedule, kept), release (due again),
 * for one message, every message, or those with a pending recipient in a
 * domain.  Done by the writer thread in one transaction like every write;
 * one message's schedule entries are found by their keys (a few lookups),
 * every message's through an index of the schedule built once.
 */
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "queue/internal.h"
#include "queue/record.h"

int queue_is_held(struct queue *q, MDB_txn *txn, const char *id)
{
	MDB_val key = { QUEUE_ID_LEN, (void *)id }, val;
	return !q->no_hold && mdb_get(txn, q->db_hold, &key, &val) == 0;
}

/* Remove every schedule entry of id by walking the whole schedule. */
static int unschedule_walk(struct queue *q, MDB_txn *txn, const char *id)
{
	MDB_cursor *cur;
	MDB_val key, val;
	int rc = mdb_cursor_open(txn, q->db_sched, &cur);

	if (rc != 0)
		return rc;
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (key.mv_size == QUEUE_KEY_SCHED_LEN &&
		    memcmp((const char *)key.mv_data + 8, id, QUEUE_ID_LEN) == 0 &&
		    (rc = mdb_cursor_del(cur, 0)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int unschedule_at(struct queue *q, MDB_txn *txn, const char *id, int64_t due)
{
	unsigned char sched[QUEUE_KEY_SCHED_LEN];
	MDB_val key = { sizeof sched, sched };
	queue_key_sched(sched, due, id);
	int rc = mdb_del(txn, q->db_sched, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * Remove id's entries without walking the schedule (a walk reads every
 * page of it, on the writer thread that every 250 waits for).  Each entry
 * the queue writes for a message is due at
 *   - its arrival (queue_commit, writer.c), or
 *   - QUEUE_DUE_AT_ONCE (flush, release: below), or
 *   - a recipient's next_attempt, in the transaction that writes that
 *     recipient's record (queue_update's new_due: the earliest pending one);
 * and only queue_update() changes those records, moving the entry it is
 * given (old_due) at the same time.  So a message's one entry is at one of
 * these keys.  An entry can lose its key only beside another one, when an
 * update moves the other: a flush racing a delivery that started after
 * relayctl looked, an update whose old_due was not its entry's.  Or it was
 * written by an older relayd (flush at the time of the request: due, so
 * the scheduler takes it at its next look).  Such an entry left behind by
 * hold or delete comes due, and the scheduler finds the message held or
 * gone and drops it (queue_unschedule); left by flush, it brings one early
 * attempt, whose update removes it.  The bulk operations find every entry.
 */
static int unschedule_by_keys(struct queue *q, MDB_txn *txn, const char *id)
{
	struct queue_envelope *env = queue_load_txn(q, txn, id);
	int rc;

	if (!env)	/* damaged (or out of memory): its keys are unknown */
		return unschedule_walk(q, txn, id);
	if ((rc = unschedule_at(q, txn, id, QUEUE_DUE_AT_ONCE)) == 0)
		rc = unschedule_at(q, txn, id, env->arrival);
	for (size_t i = 0; i < env->nrcpts && rc == 0; i++) {
		/* Every recipient: one sent since keeps the time an older entry has. */
		int64_t due = env->rcpts[i].next_attempt;
		if (i == 0 || due != env->rcpts[i - 1].next_attempt)
			rc = unschedule_at(q, txn, id, due);
	}
	queue_envelope_free(env);
	return rc;
}

/* Every schedule entry, sorted by id: a bulk operation finds a message's entries by
 * bsearch instead of walking the schedule once per message. */
struct sched_entry {
	char id[QUEUE_ID_LEN];
	int64_t due;
};

struct sched_index {
	struct sched_entry *e;
	size_t n;
};

static int by_id(const void *a, const void *b)
{
	return memcmp(a, b, QUEUE_ID_LEN);
}

static int index_schedule(struct queue *q, MDB_txn *txn, struct sched_index *ix)
{
	MDB_cursor *cur;
	MDB_val key, val;
	size_t cap = 0;
	int rc = mdb_cursor_open(txn, q->db_sched, &cur);

	if (rc != 0)
		return rc;
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (key.mv_size != QUEUE_KEY_SCHED_LEN)
			continue;
		if (ix->n == cap) {
			void *grown = reallocarray(ix->e, cap ? cap * 2 : 256, sizeof *ix->e);
			if (!grown) {
				rc = ENOMEM;
				break;
			}
			ix->e = grown;
			cap = cap ? cap * 2 : 256;
		}
		memcpy(ix->e[ix->n].id, (const char *)key.mv_data + 8, QUEUE_ID_LEN);
		ix->e[ix->n++].due = (int64_t)queue_be64_get(key.mv_data);
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return rc;
	if (ix->n > 1)
		qsort(ix->e, ix->n, sizeof *ix->e, by_id);
	return 0;
}

/* Remove id's entries: through the index when there is one, else by their keys. */
static int unschedule(struct queue *q, MDB_txn *txn, const struct sched_index *ix,
    const char *id)
{
	if (!ix)
		return unschedule_by_keys(q, txn, id);
	if (ix->n == 0)
		return 0;
	struct sched_entry *hit = bsearch(id, ix->e, ix->n, sizeof *ix->e, by_id);
	if (!hit)
		return 0;
	while (hit > ix->e && memcmp(hit[-1].id, id, QUEUE_ID_LEN) == 0)
		hit--;
	for (; hit < ix->e + ix->n && memcmp(hit->id, id, QUEUE_ID_LEN) == 0; hit++) {
		int rc = unschedule_at(q, txn, id, hit->due);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int schedule_at_once(struct queue *q, MDB_txn *txn, const char *id)
{
	unsigned char sched[QUEUE_KEY_SCHED_LEN];
	MDB_val key = { sizeof sched, sched }, val = { 0, NULL };
	queue_key_sched(sched, QUEUE_DUE_AT_ONCE, id);
	return mdb_put(txn, q->db_sched, &key, &val, 0);
}

/* A pending recipient of id in domain (without regard to case). */
static int has_pending_in(struct queue *q, MDB_txn *txn, const char *id, const char *domain)
{
	struct queue_envelope *env = queue_load_txn(q, txn, id);
	int hit = 0;

	for (size_t i = 0; env && i < env->nrcpts && !hit; i++) {
		const char *at = strrchr(env->rcpts[i].addr, '@');
		hit = env->rcpts[i].state == QUEUE_RCPT_PENDING && at &&
		    strcasecmp(at + 1, domain) == 0;
	}
	queue_envelope_free(env);
	return hit;
}

static int skipped(const struct queue_job *job, const char *id)
{
	for (size_t i = 0; i < job->admin_nskip; i++)
		if (memcmp(job->admin_skip[i], id, QUEUE_ID_LEN) == 0)
			return 1;
	return 0;
}

/* One message: the operation; 1 when it changed something, 0 not, or -LMDB code. */
static int admin_one(struct queue *q, MDB_txn *txn, const struct queue_job *job,
    const struct sched_index *ix, enum queue_admin_op op, const char *id)
{
	MDB_val key = { QUEUE_ID_LEN, (void *)id }, val;
	int rc, held;

	if (mdb_get(txn, q->db_msg, &key, &val) != 0)
		return 0;	/* no such message */
	if ((op == QUEUE_ADMIN_FLUSH || op == QUEUE_ADMIN_RELEASE) && skipped(job, id))
		return 0;	/* out for delivery: its result schedules it */
	held = queue_is_held(q, txn, id);
	switch (op) {
	case QUEUE_ADMIN_FLUSH:
		if (held)
			return 0;
		if ((rc = unschedule(q, txn, ix, id)) != 0)
			return -rc;
		return (rc = schedule_at_once(q, txn, id)) != 0 ? -rc : 1;
	case QUEUE_ADMIN_HOLD:
		if (held)
			return 0;
		if ((rc = unschedule(q, txn, ix, id)) != 0)
			return -rc;
		val = (MDB_val){ 0, NULL };
		return (rc = mdb_put(txn, q->db_hold, &key, &val, 0)) != 0 ? -rc : 1;
	case QUEUE_ADMIN_RELEASE:
		if (!held)
			return 0;
		if ((rc = mdb_del(txn, q->db_hold, &key, NULL)) != 0)
			return -rc;
		return (rc = schedule_at_once(q, txn, id)) != 0 ? -rc : 1;
	case QUEUE_ADMIN_DELETE:
		if ((rc = unschedule(q, txn, ix, id)) != 0 ||
		    (held && (rc = mdb_del(txn, q->db_hold, &key, NULL)) != 0) ||
		    (rc = mdb_del(txn, q->db_msg, &key, NULL)) != 0 ||
		    (rc = queue_del_prefixed(txn, q->db_rcpt, id)) != 0 ||
		    (rc = queue_del_prefixed(txn, q->db_body, id)) != 0 ||
		    (rc = queue_del_prefixed(txn, q->db_attempt, id)) != 0)
			return -rc;
		return 1;
	}
	return 0;
}

int queue_put_admin(struct queue *q, MDB_txn *txn, struct queue_job *job)
{
	enum queue_admin_op op = (enum queue_admin_op)(job->admin - 1);
	MDB_cursor *cur;
	MDB_val key, val;
	char (*ids)[QUEUE_ID_LEN + 1] = NULL;
	size_t n = 0, cap = 0;
	int rc;

	job->admin_count = 0;
	if (job->admin_id[0]) {
		if ((rc = admin_one(q, txn, job, NULL, op, job->admin_id)) < 0)
			return -rc;
		job->admin_count = (unsigned)rc;
		return 0;
	}
	/* Every message (of a domain): the ids first, since the walk must not see changes. */
	if ((rc = mdb_cursor_open(txn, q->db_msg, &cur)) != 0)
		return rc;
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (key.mv_size != QUEUE_ID_LEN)
			continue;
		if (n == cap) {
			void *grown = reallocarray(ids, cap ? cap * 2 : 64, sizeof *ids);
			if (!grown) {
				rc = ENOMEM;
				break;
			}
			ids = grown;
			cap = cap ? cap * 2 : 64;
		}
		memcpy(ids[n], key.mv_data, QUEUE_ID_LEN);
		ids[n++][QUEUE_ID_LEN] = '\0';
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND) {
		free(ids);
		return rc;
	}
	struct sched_index ix = { NULL, 0 };
	rc = index_schedule(q, txn, &ix);	/* entries are removed, never added to it */
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (job->admin_domain && !has_pending_in(q, txn, ids[i], job->admin_domain))
			continue;
		int r = admin_one(q, txn, job, &ix, op, ids[i]);
		if (r < 0)
			rc = -r;
		else
			job->admin_count += (unsigned)r;
	}
	free(ix.e);
	free(ids);
	return rc;
}

int queue_admin(struct queue *q, enum queue_admin_op op, const char *id, const char *domain,
    queue_admin_fn *done, void *arg)
{
	return queue_admin_skip(q, op, id, domain, NULL, 0, done, arg);
}

int queue_admin_skip(struct queue *q, enum queue_admin_op op, const char *id,
    const char *domain, const char (*skip)[QUEUE_ID_LEN + 1], size_t nskip,
    queue_admin_fn *done, void *arg)
{
	struct queue_job *job;

	if (id && (strlen(id) != QUEUE_ID_LEN || !queue_id_valid(id, QUEUE_ID_LEN)))
		return -1;
	if (!(job = queue_job_new(NULL, NULL, NULL, NULL)))
		return -1;
	job->admin = (int)op + 1;
	job->admin_done = done;
	job->arg = arg;
	if (id)
		memcpy(job->admin_id, id, QUEUE_ID_LEN + 1);
	if ((domain && !(job->admin_domain = strdup(domain))) ||
	    (nskip && !(job->admin_skip = calloc(nskip, sizeof *job->admin_skip)))) {
		free(job->admin_domain);
		free(job);
		return -1;
	}
	if (nskip)
		memcpy(job->admin_skip, skip, nskip * sizeof *skip);
	job->admin_nskip = nskip;
	return queue_submit(q, job);
}
