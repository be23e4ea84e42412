/*
 * total — delivery totals by upstream name (db "total"), counted from the
 * attempts a queue_update() records, in its transaction: so relayctl stats
 * and /metrics agree with the log, across restarts.  Record: version, then
 * sent, deferred, bounced, failover, last_ok, last_fail (8 bytes each,
 * big-endian).
 */
#include <stdlib.h>
#include <string.h>

#include "queue/internal.h"
#include "queue/record.h"

#define TOTAL_VERSION 1
#define TOTAL_LEN (1 + 6 * 8)
#define TOTAL_NAME_MAX 200

static void total_decode(const MDB_val *val, struct queue_total *t)
{
	const unsigned char *p = val->mv_data;
	uint64_t *fields[] = { &t->sent, &t->deferred, &t->bounced, &t->failover };

	memset(t, 0, sizeof *t);
	if (val->mv_size != TOTAL_LEN || p[0] != TOTAL_VERSION)
		return;		/* unreadable: counted afresh */
	for (size_t i = 0; i < 4; i++)
		*fields[i] = queue_be64_get(p + 1 + 8 * i);
	t->last_ok = (int64_t)queue_be64_get(p + 33);
	t->last_fail = (int64_t)queue_be64_get(p + 41);
}

static int count_one(struct queue *q, MDB_txn *txn, const struct queue_attempt *a)
{
	size_t len = strlen(a->upstream);
	MDB_val key = { len, a->upstream }, val;
	struct queue_total t;
	unsigned char rec[TOTAL_LEN];
	int rc;

	if (len == 0 || len > TOTAL_NAME_MAX || !a->status)
		return 0;
	if ((rc = mdb_get(txn, q->db_total, &key, &val)) == 0)
		total_decode(&val, &t);
	else if (rc == MDB_NOTFOUND)
		memset(&t, 0, sizeof t);
	else
		return rc;
	if (strcmp(a->status, "sent") == 0) {
		t.sent++;
		t.last_ok = a->time;
	} else {
		if (strcmp(a->status, "deferred") == 0)
			t.deferred++;
		else if (strcmp(a->status, "failover") == 0)
			t.failover++;
		else
			t.bounced++;	/* bounced, expired */
		t.last_fail = a->time;
	}
	rec[0] = TOTAL_VERSION;
	queue_be64_put(rec + 1, t.sent);
	queue_be64_put(rec + 9, t.deferred);
	queue_be64_put(rec + 17, t.bounced);
	queue_be64_put(rec + 25, t.failover);
	queue_be64_put(rec + 33, (uint64_t)t.last_ok);
	queue_be64_put(rec + 41, (uint64_t)t.last_fail);
	val = (MDB_val){ sizeof rec, rec };
	return mdb_put(txn, q->db_total, &key, &val, 0);
}

int queue_put_totals(struct queue *q, MDB_txn *txn, const struct queue_envelope *st)
{
	int rc = 0;

	for (size_t i = 0; i < st->nattempts && rc == 0; i++)
		if (st->attempts[i].upstream)
			rc = count_one(q, txn, &st->attempts[i]);
	return rc;
}

int queue_totals(struct queue *q, queue_total_fn *fn, void *arg)
{
	struct { char *name; struct queue_total t; } *all = NULL;
	size_t n = 0, cap = 0;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val key, val;
	int rc, failed = 0;

	if (q->no_totals)
		return 0;
	if (queue_read_begin(q, &txn) != 0)
		return -1;
	if (mdb_cursor_open(txn, q->db_total, &cur) != 0) {
		queue_read_end(q, txn);
		return -1;
	}
	/* Collected first: the read transaction must not span the callbacks. */
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (key.mv_size == 0 || key.mv_size > TOTAL_NAME_MAX)
			continue;
		if (n == cap) {
			void *g = reallocarray(all, cap ? cap * 2 : 8, sizeof *all);
			if (!g) {
				failed = 1;
				break;
			}
			all = g;
			cap = cap ? cap * 2 : 8;
		}
		if (!(all[n].name = strndup(key.mv_data, key.mv_size))) {
			failed = 1;
			break;
		}
		total_decode(&val, &all[n].t);
		all[n].t.name = all[n].name;
		n++;
	}
	mdb_cursor_close(cur);
	queue_read_end(q, txn);
	for (size_t i = 0; i < n && !failed; i++)
		if (fn(arg, &all[i].t))
			break;
	for (size_t i = 0; i < n; i++)
		free(all[i].name);
	free(all);
	return failed ? -1 : 0;
}
