/*
 * id — queue ids: 12 upper-case hex digits of (unix milliseconds << 4), bumped
 * past the last id handed out, so they sort by arrival, stay unique when many
 * come in one millisecond, and stay unique across a restart even if the clock
 * went back (the last id is read back from the msg database on open).
 */
#include "queue/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define ID_MASK ((UINT64_C(1) << (4 * QUEUE_ID_LEN)) - 1)

int queue_id_valid(const char *id, size_t len)
{
	if (len != QUEUE_ID_LEN)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'A' && id[i] <= 'F')))
			return 0;
	return 1;
}

static uint64_t id_value(const char *id)
{
	uint64_t v = 0;
	for (size_t i = 0; i < QUEUE_ID_LEN; i++)
		v = v << 4 | (uint64_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'A' + 10);
	return v;
}

/* Raise id_last to the largest well-formed id in msg; foreign keys are passed over. */
int queue_id_init(struct queue *q, MDB_txn *txn)
{
	MDB_cursor *cur;
	MDB_val key, val;
	int rc = mdb_cursor_open(txn, q->db_msg, &cur);
	if (rc != 0)
		return rc;
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_LAST); rc == 0;
	    rc = mdb_cursor_get(cur, &key, &val, MDB_PREV)) {
		if (queue_id_valid(key.mv_data, key.mv_size)) {
			/* Only ever raised: after a reopen, ids already handed out stay behind us. */
			uint64_t v = id_value(key.mv_data);
			pthread_mutex_lock(&q->id_lock);
			if (v > q->id_last)
				q->id_last = v;
			pthread_mutex_unlock(&q->id_lock);
			break;
		}
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

void queue_new_id(struct queue *q, char id[QUEUE_ID_LEN + 1])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000) << 4;

	pthread_mutex_lock(&q->id_lock);
	uint64_t v = q->id_last + 1 > now ? q->id_last + 1 : now;
	q->id_last = v;
	pthread_mutex_unlock(&q->id_lock);
	/* 48 bits of milliseconds << 4 last until the year 2527. */
	snprintf(id, QUEUE_ID_LEN + 1, "%012" PRIX64, v & ID_MASK);
}
