/*
 * attempt — each recipient's delivery attempts (db "attempt"), so that
 * relayctl show can tell the story of a stuck message, not only its last
 * chapter.  Key: the id, the recipient index and a sequence number (4 bytes
 * each, big-endian: a recipient's attempts follow each other, oldest first).
 * Only the last QUEUE_ATTEMPTS_KEPT of a recipient stay: a message retried
 * for days must not grow without bound.  Record: version, time, then five
 * strings (2-byte length, all ones for NULL, then the bytes).
 */
#include <stdlib.h>
#include <string.h>

#include "queue/internal.h"
#include "queue/record.h"

#define ATTEMPT_VERSION 1
#define ATTEMPT_KEY_LEN (QUEUE_ID_LEN + 4 + 4)
#define STR_NULL 0xffff
#define REPLY_MAX 300			/* the far end's words, cut there (the recipient
					 * record keeps the last one whole) */
#define WORD_MAX 255			/* status, upstream, relay, dsn */

static void attempt_key(unsigned char *key, const char *id, uint32_t rcpt, uint32_t seq)
{
	memcpy(key, id, QUEUE_ID_LEN);
	queue_be32_put(key + QUEUE_ID_LEN, rcpt);
	queue_be32_put(key + QUEUE_ID_LEN + 4, seq);
}

static size_t str_len(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	return n > max ? max : n;
}

static unsigned char *str_put(unsigned char *p, const char *s, size_t max)
{
	size_t n = str_len(s, max);
	p[0] = s ? (unsigned char)(n >> 8) : 0xff;
	p[1] = s ? (unsigned char)n : 0xff;
	if (n)
		memcpy(p + 2, s, n);
	return p + 2 + n;
}

/* One string at *p of the len bytes left; -1 when it does not fit. */
static int str_get(const unsigned char **p, size_t *left, char **out)
{
	if (*left < 2)
		return -1;
	size_t n = (size_t)(*p)[0] << 8 | (*p)[1];
	*p += 2;
	*left -= 2;
	if (n == STR_NULL)
		return 0;
	if (n > *left || !(*out = malloc(n + 1)))
		return -1;
	memcpy(*out, *p, n);
	(*out)[n] = '\0';
	*p += n;
	*left -= n;
	return 0;
}

static int attempt_decode(const MDB_val *key, const MDB_val *val, struct queue_attempt *a)
{
	const unsigned char *p = val->mv_data;
	size_t left = val->mv_size;

	memset(a, 0, sizeof *a);
	if (key->mv_size != ATTEMPT_KEY_LEN || left < 1 + 8 || p[0] != ATTEMPT_VERSION)
		return -1;
	a->rcpt = queue_be32_get((const unsigned char *)key->mv_data + QUEUE_ID_LEN);
	a->time = (int64_t)queue_be64_get(p + 1);
	p += 9;
	left -= 9;
	if (str_get(&p, &left, &a->status) < 0 || str_get(&p, &left, &a->upstream) < 0 ||
	    str_get(&p, &left, &a->relay) < 0 || str_get(&p, &left, &a->dsn) < 0 ||
	    str_get(&p, &left, &a->reply) < 0 || left != 0) {
		queue_attempt_clear(a);
		return -1;
	}
	return 0;
}

/* The sequence number after rcpt's last stored attempt. */
static int next_seq(MDB_cursor *cur, const char *id, uint32_t rcpt, uint32_t *seq)
{
	unsigned char k[ATTEMPT_KEY_LEN];
	MDB_val key = { sizeof k, k }, val;

	attempt_key(k, id, rcpt, UINT32_MAX);
	int rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	rc = rc == 0 || rc == MDB_NOTFOUND ? mdb_cursor_get(cur, &key, &val,
	    rc == 0 ? MDB_PREV : MDB_LAST) : rc;
	*seq = 0;
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (key.mv_size == ATTEMPT_KEY_LEN && memcmp(key.mv_data, k, QUEUE_ID_LEN + 4) == 0)
		*seq = queue_be32_get((const unsigned char *)key.mv_data + QUEUE_ID_LEN + 4) + 1;
	return 0;
}

static int put_one(struct queue *q, MDB_txn *txn, MDB_cursor *cur, const char *id,
    const struct queue_attempt *a)
{
	unsigned char k[ATTEMPT_KEY_LEN];
	uint32_t seq;
	int rc;

	if ((rc = next_seq(cur, id, a->rcpt, &seq)) != 0)
		return rc;
	size_t len = 1 + 8 + 5 * 2 + str_len(a->status, WORD_MAX) +
	    str_len(a->upstream, WORD_MAX) + str_len(a->relay, WORD_MAX) +
	    str_len(a->dsn, WORD_MAX) + str_len(a->reply, REPLY_MAX);
	attempt_key(k, id, a->rcpt, seq);
	MDB_val key = { sizeof k, k }, val = { len, NULL };
	if ((rc = mdb_put(txn, q->db_attempt, &key, &val, MDB_RESERVE)) != 0)
		return rc;
	unsigned char *p = val.mv_data;
	p[0] = ATTEMPT_VERSION;
	queue_be64_put(p + 1, (uint64_t)a->time);
	p = str_put(p + 9, a->status, WORD_MAX);
	p = str_put(p, a->upstream, WORD_MAX);
	p = str_put(p, a->relay, WORD_MAX);
	p = str_put(p, a->dsn, WORD_MAX);
	str_put(p, a->reply, REPLY_MAX);
	if (seq < QUEUE_ATTEMPTS_KEPT)
		return 0;
	attempt_key(k, id, a->rcpt, seq - QUEUE_ATTEMPTS_KEPT);
	key = (MDB_val){ sizeof k, k };
	rc = mdb_del(txn, q->db_attempt, &key, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int queue_put_attempts(struct queue *q, MDB_txn *txn, const struct queue_envelope *st)
{
	MDB_cursor *cur;
	int rc = 0;

	if (st->nattempts == 0)
		return 0;
	if ((rc = mdb_cursor_open(txn, q->db_attempt, &cur)) != 0)
		return rc;
	for (size_t i = 0; i < st->nattempts && rc == 0; i++)
		if (st->attempts[i].rcpt < st->nrcpts)
			rc = put_one(q, txn, cur, st->id, &st->attempts[i]);
	mdb_cursor_close(cur);
	return rc;
}

int queue_attempts(struct queue *q, const char *id, queue_attempt_fn *fn, void *arg)
{
	struct queue_attempt *all = NULL;
	size_t n = 0, cap = 0;
	MDB_txn *txn;
	MDB_cursor *cur;
	unsigned char k[ATTEMPT_KEY_LEN];
	MDB_val key = { sizeof k, k }, val;
	int rc, failed = 0;

	if (!queue_id_valid(id, strlen(id)))
		return -1;
	if (q->no_attempts)
		return 0;	/* a queue from before the history was kept */
	if (queue_read_begin(q, &txn) != 0)
		return -1;
	if (mdb_cursor_open(txn, q->db_attempt, &cur) != 0) {
		queue_read_end(q, txn);
		return -1;
	}
	/* Collected first: the read transaction must not span the callbacks. */
	attempt_key(k, id, 0, 0);
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0 &&
	    key.mv_size >= QUEUE_ID_LEN && memcmp(key.mv_data, id, QUEUE_ID_LEN) == 0;
	    rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (n == cap) {
			struct queue_attempt *g = reallocarray(all, cap ? cap * 2 : 16, sizeof *g);
			if (!g) {
				failed = 1;
				break;
			}
			all = g;
			cap = cap ? cap * 2 : 16;
		}
		if (attempt_decode(&key, &val, &all[n]) == 0)
			n++;
	}
	mdb_cursor_close(cur);
	queue_read_end(q, txn);
	for (size_t i = 0; i < n && !failed; i++)
		if (fn(arg, &all[i]))
			break;
	for (size_t i = 0; i < n; i++)
		queue_attempt_clear(&all[i]);
	free(all);
	return failed ? -1 : 0;
}
