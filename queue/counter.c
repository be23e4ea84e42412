/*
 * counter — small named records beside the messages (db "counter"): an
 * upstream's quota windows, so that a restart does not hand a provider a
 * fresh day's quota.  A record: version, then hour start, hour count, day
 * start, day count, big-endian.  Written by the writer thread like
 * everything else; read in a short read transaction.
 */
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "queue/internal.h"
#include "queue/record.h"

#define COUNTER_VERSION 1
#define COUNTER_LEN (1 + 8 + 4 + 8 + 4)
#define COUNTER_NAME_MAX 200

int queue_put_counter(struct queue *q, MDB_txn *txn, const struct queue_job *job)
{
	unsigned char rec[COUNTER_LEN];
	const struct queue_counter *c = &job->counter;
	MDB_val key = { strlen(job->counter_name), job->counter_name };
	MDB_val val = { sizeof rec, rec };

	rec[0] = COUNTER_VERSION;
	queue_be64_put(rec + 1, (uint64_t)c->hour_start);
	queue_be32_put(rec + 9, c->hour_count);
	queue_be64_put(rec + 13, (uint64_t)c->day_start);
	queue_be32_put(rec + 21, c->day_count);
	return mdb_put(txn, q->db_counter, &key, &val, 0);
}

int queue_counter_get(struct queue *q, const char *name, struct queue_counter *c)
{
	MDB_txn *txn;
	MDB_val key = { strlen(name), (void *)name }, val;
	int rc;

	memset(c, 0, sizeof *c);
	if (q->no_counters)
		return 1;
	if (key.mv_size == 0 || key.mv_size > COUNTER_NAME_MAX || queue_read_begin(q, &txn) != 0)
		return -1;
	rc = mdb_get(txn, q->db_counter, &key, &val);
	if (rc == 0 && val.mv_size == COUNTER_LEN &&
	    ((const unsigned char *)val.mv_data)[0] == COUNTER_VERSION) {
		const unsigned char *p = val.mv_data;
		c->hour_start = (int64_t)queue_be64_get(p + 1);
		c->hour_count = queue_be32_get(p + 9);
		c->day_start = (int64_t)queue_be64_get(p + 13);
		c->day_count = queue_be32_get(p + 21);
	}
	queue_read_end(q, txn);
	return rc == MDB_NOTFOUND ? 1 : rc == 0 ? 0 : -1;
}

int queue_counter_put(struct queue *q, const char *name, const struct queue_counter *c,
    queue_done_fn *done, void *arg)
{
	size_t len = strlen(name);
	struct queue_job *job;

	if (len == 0 || len > COUNTER_NAME_MAX)
		return -1;
	if (!(job = queue_job_new(NULL, NULL, done, arg)))
		return -1;
	if (!(job->counter_name = strdup(name))) {
		free(job);
		return -1;
	}
	job->counter = *c;
	job->lazy = 1;		/* a quota count a crash undoes is a few recipients more */
	return queue_submit(q, job);
}
