/*
 * writer — group commit (DESIGN.md, Queue: Durability).  queue_commit() only
 * appends a job to a list; one writer thread takes every job pending, writes
 * them all in one LMDB transaction and one fsync, then hands them back to the
 * event loop through a pipe, where queue_dispatch() runs the callbacks.
 *
 * Lazy jobs (delivery results, counters) need no durability of their own: a
 * crash that undoes one makes relayd repeat an attempt, never lose mail.  So
 * when only lazy jobs wait, the writer gives a durable one (a new message)
 * LAZY_WAIT to arrive and share the transaction and its fsyncs; and a
 * transaction of lazy jobs alone is committed with MDB_NOMETASYNC: one
 * fdatasync instead of two, integrity kept (LMDB syncs the data before it
 * writes the meta page), only that last transaction at risk — and the next
 * durable commit makes it durable too.
 */
#include "queue/internal.h"
#include "queue/record.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* One transaction's bound: enough to share an fsync widely, small enough to stay quick. */
#define BATCH_JOBS 256
#define BATCH_BYTES (64ULL << 20)
/* How long lazy jobs wait for a durable one to share a commit with. */
#define LAZY_WAIT_NS (10 * 1000 * 1000)
/* Free space under a transaction's body bytes plus this means the disk is full. */
#define DISK_SLACK (16ULL << 20)

static void list_append(struct queue_job_list *l, struct queue_job *job)
{
	job->next = NULL;
	if (l->tail)
		l->tail->next = job;
	else
		l->head = job;
	l->tail = job;
}

static void list_concat(struct queue_job_list *l, struct queue_job_list *more)
{
	if (!more->head)
		return;
	if (l->tail)
		l->tail->next = more->head;
	else
		l->head = more->head;
	l->tail = more->tail;
	more->head = more->tail = NULL;
}

/* Wake the event loop.  A full pipe is already readable, so EAGAIN is fine. */
static void notify(struct queue *q)
{
	ssize_t n;
	do
		n = write(q->notify_wr, "", 1);
	while (n < 0 && errno == EINTR);
}

static uint64_t job_size(const struct queue_job *job)
{
	return job->spool ? queue_spool_size(job->spool) : 0;
}

/* Everything of one message into txn: envelope, recipients, body chunks, schedule entry. */
static int put_job(struct queue *q, MDB_txn *txn, struct queue_job *job)
{
	const struct queue_envelope *env = job->env;
	unsigned char sub[QUEUE_KEY_SUB_LEN], sched[QUEUE_KEY_SCHED_LEN];
	MDB_val key, val;
	int rc, gone = 0;

	if (job->counter_name && (rc = queue_put_counter(q, txn, job)) != 0)
		return rc;
	if (job->admin && (rc = queue_put_admin(q, txn, job)) != 0)
		return rc;
	if (job->state && (rc = queue_put_update(q, txn, job, &gone)) != 0)
		return rc;
	if (!env || gone)
		return 0;

	/* A spool that lost a write holds part of a body: never store that as the message. */
	if (job->spool && (rc = queue_spool_error(job->spool)) != 0)
		return rc;
	size_t len = queue_record_envelope_len(env);
	if (len == 0 || !queue_id_valid(env->id, strnlen(env->id, sizeof env->id)))
		return EINVAL;
	key = (MDB_val){ QUEUE_ID_LEN, (void *)env->id };
	val = (MDB_val){ len, NULL };
	/* NOOVERWRITE: a duplicate id must fail, not replace another message. */
	if ((rc = mdb_put(txn, q->db_msg, &key, &val, MDB_NOOVERWRITE | MDB_RESERVE)) != 0)
		return rc;
	queue_record_envelope_encode(env, val.mv_data);

	for (size_t i = 0; i < env->nrcpts; i++) {
		if ((len = queue_record_rcpt_len(&env->rcpts[i])) == 0)
			return EINVAL;
		queue_key_sub(sub, env->id, (uint32_t)i);
		key = (MDB_val){ sizeof sub, sub };
		val = (MDB_val){ len, NULL };
		if ((rc = mdb_put(txn, q->db_rcpt, &key, &val, MDB_RESERVE)) != 0)
			return rc;
		queue_record_rcpt_encode(&env->rcpts[i], val.mv_data);
	}

	/* The body goes straight from the spool into the map (MDB_RESERVE), chunk by chunk. */
	uint64_t off = 0;
	for (uint32_t chunk = 0; off < env->size; chunk++) {
		size_t n = env->size - off < QUEUE_BODY_CHUNK ? (size_t)(env->size - off) :
		    QUEUE_BODY_CHUNK;
		queue_key_sub(sub, env->id, chunk);
		key = (MDB_val){ sizeof sub, sub };
		val = (MDB_val){ n, NULL };
		if ((rc = mdb_put(txn, q->db_body, &key, &val, MDB_RESERVE)) != 0)
			return rc;
		if (queue_spool_read(job->spool, off, val.mv_data, n) < 0)
			return errno ? errno : EIO;
		off += n;
	}

	/* Due at arrival: the scheduler finds new mail the way it finds retries. */
	queue_key_sched(sched, env->arrival, env->id);
	key = (MDB_val){ sizeof sched, sched };
	val = (MDB_val){ 0, NULL };
	return mdb_put(txn, q->db_sched, &key, &val, 0);
}

/*
 * One transaction holding count jobs from first on, committed; the map grows
 * as often as it has to.  An error aborts everything, so no message is ever
 * half visible.  Returns 0 or an LMDB / errno code.
 */
static int write_txn(struct queue *q, struct queue_job *first, size_t count)
{
	int reopened = 0, lazy = 1;
	struct queue_job *job = first;

	for (size_t i = 0; i < count; i++, job = job->next)
		lazy &= job->lazy;
	for (;;) {
		MDB_txn *txn;
		/* Only this thread writes, and no write transaction is open: safe to flip. */
		if (q->env && lazy)
			mdb_env_set_flags(q->env, MDB_NOMETASYNC, 1);
		int rc = q->env ? mdb_txn_begin(q->env, NULL, 0, &txn) : MDB_PANIC;
		if (rc == 0) {
			job = first;
			for (size_t i = 0; i < count && rc == 0; i++, job = job->next)
				rc = put_job(q, txn, job);
			if (rc == 0)
				rc = mdb_txn_commit(txn);	/* fsyncs */
			else
				mdb_txn_abort(txn);
		}
		if (q->env && lazy)
			mdb_env_set_flags(q->env, MDB_NOMETASYNC, 0);
		if (rc == MDB_MAP_FULL && queue_map_grow(q) == 0)
			continue;
		/* A failed meta-page write makes LMDB refuse everything until reopened. */
		if (rc == MDB_PANIC && !reopened++ && queue_env_reopen(q) == 0)
			continue;
		return rc;
	}
}

/*
 * LMDB reports a short write as EIO ("short write, filesystem full?"), and a
 * full disk mostly shows up as just that.  So an EIO while the disk has less
 * room than the transaction needed counts as a full disk.
 */
static int disk_full(const struct queue *q, uint64_t need)
{
	struct statvfs st;
	if (statvfs(q->dir, &st) < 0)
		return 0;
	return (uint64_t)st.f_bavail * st.f_frsize < need + DISK_SLACK;
}

static enum queue_status status_of(const struct queue *q, int rc, uint64_t need)
{
	switch (rc) {
	case 0:
		return QUEUE_OK;
	case MDB_MAP_FULL:
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return QUEUE_FULL;
	case EIO:
		return disk_full(q, need) ? QUEUE_FULL : QUEUE_ERROR;
	default:
		return QUEUE_ERROR;
	}
}

static void write_batch(struct queue *q, struct queue_job *first, size_t count)
{
	time_t now = time(NULL);
	struct queue_job *job;
	uint64_t bytes = 0;
	size_t i;

	for (i = 0, job = first; i < count; i++, job = job->next) {
		if (!job->env)
			continue;
		job->env->size = job_size(job);
		bytes += job->env->size;
		if (job->env->arrival == 0)
			job->env->arrival = now;
	}
	struct queue_stats st = { 0, 0, 0 };
	int rc = write_txn(q, first, count);
	if (rc == 0 || count == 1) {
		for (i = 0, job = first; i < count; i++, job = job->next)
			job->status = status_of(q, rc, bytes);
		st.transactions = rc == 0;
	} else {
		/* Something in the batch failed: alone, each job fails only for its own reasons. */
		for (i = 0, job = first; i < count; i++, job = job->next) {
			job->status = status_of(q, rc = write_txn(q, job, 1), job_size(job));
			st.transactions += rc == 0;
		}
	}
	for (i = 0, job = first; i < count; i++, job = job->next)
		if (!job->env)
			continue;
		else if (job->status == QUEUE_OK)
			st.messages++;
		else
			st.refused++;
	pthread_mutex_lock(&q->lock);
	q->stats.transactions += st.transactions;
	q->stats.messages += st.messages;
	q->stats.refused += st.refused;
	pthread_mutex_unlock(&q->lock);
}

void queue_get_stats(struct queue *q, struct queue_stats *out)
{
	pthread_mutex_lock(&q->lock);
	*out = q->stats;
	pthread_mutex_unlock(&q->lock);
}

/* Take the pending jobs, up to one batch's bound, off the list (lock held). */
static size_t take_batch(struct queue *q, struct queue_job_list *batch)
{
	uint64_t bytes = 0;
	size_t n = 0;

	batch->head = batch->tail = NULL;
	while (q->pending.head && n < BATCH_JOBS && bytes < BATCH_BYTES) {
		struct queue_job *job = q->pending.head;
		q->pending.head = job->next;
		if (!q->pending.head)
			q->pending.tail = NULL;
		list_append(batch, job);
		bytes += job_size(job);
		q->pending_durable -= !job->lazy;
		n++;
	}
	return n;
}

static void *writer_main(void *arg)
{
	struct queue *q = arg;
	struct queue_job_list batch;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (!q->pending.head && !q->stopping)
			pthread_cond_wait(&q->wake, &q->lock);
		if (q->pending_durable == 0 && !q->stopping) {
			/* Only lazy jobs: a new message arriving soon takes them along. */
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_nsec += LAZY_WAIT_NS;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			while (q->pending_durable == 0 && !q->stopping &&
			    pthread_cond_timedwait(&q->wake, &q->lock, &until) == 0)
				;
		}
		size_t n = take_batch(q, &batch);
		if (n == 0)
			break;		/* stopping, and nothing left to write */
		pthread_mutex_unlock(&q->lock);
		write_batch(q, batch.head, n);
		pthread_mutex_lock(&q->lock);
		list_concat(&q->done, &batch);
		notify(q);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

int queue_writer_start(struct queue *q)
{
	sigset_t all, old;

	/* Signals belong to the event loop: the writer inherits a mask that blocks them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&q->writer, NULL, writer_main, q);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	q->writer_running = 1;
	return 0;
}

void queue_writer_stop(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->stopping = 1;
	pthread_cond_signal(&q->wake);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->writer, NULL);
	pthread_mutex_lock(&q->lock);
	q->writer_running = 0;
	pthread_mutex_unlock(&q->lock);
}

struct queue_job *queue_job_new(struct queue_envelope *env, struct queue_spool *spool,
    queue_done_fn *done, void *arg)
{
	struct queue_job *job = calloc(1, sizeof *job);

	if (!job) {
		queue_envelope_free(env);
		queue_spool_free(spool);
		return NULL;
	}
	job->env = env;
	job->spool = spool;
	job->done = done;
	job->arg = arg;
	return job;
}

int queue_commit(struct queue *q, struct queue_envelope *env,
    struct queue_spool *spool, queue_done_fn *done, void *arg)
{
	struct queue_job *job = queue_job_new(env, spool, done, arg);
	return job ? queue_submit(q, job) : -1;
}

/* Hand a job to the writer thread; its callback comes through queue_dispatch(). */
int queue_submit(struct queue *q, struct queue_job *job)
{
	job->status = QUEUE_ERROR;
	pthread_mutex_lock(&q->lock);
	if (q->readonly || !q->writer_running ||
	    (!job->env && !job->state && !job->counter_name && !job->admin)) {
		/* A misuse, but the caller still hears back, the usual way. */
		list_append(&q->done, job);
		notify(q);
	} else {
		list_append(&q->pending, job);
		q->pending_durable += !job->lazy;
		pthread_cond_signal(&q->wake);
	}
	pthread_mutex_unlock(&q->lock);
	return 0;
}

void queue_dispatch(struct queue *q)
{
	char buf[256];
	ssize_t n;

	/* Drain first: a commit finishing after this still leaves the pipe readable. */
	while ((n = read(q->notify_rd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
		;
	pthread_mutex_lock(&q->lock);
	struct queue_job *job = q->done.head;
	q->done.head = q->done.tail = NULL;
	pthread_mutex_unlock(&q->lock);

	while (job) {
		struct queue_job *next = job->next;
		if (job->admin_done)
			job->admin_done(job->arg, job->status, job->admin_count);
		else
			job->done(job->arg, job->status);
		queue_envelope_free(job->env);
		queue_envelope_free(job->state);
		queue_spool_free(job->spool);
		free(job->counter_name);
		free(job->admin_domain);
		free(job->admin_skip);
		free(job);
		job = next;
	}
}
