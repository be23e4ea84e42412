/*
 * internal — what the files of queue/ share and nobody else may see: the
 * struct queue itself, a commit job, and the helpers one file offers another
 * (read transactions that are safe against map growth, the writer thread,
 * spool reading, id checks).
 */
#ifndef RELAYD_QUEUE_INTERNAL_H
#define RELAYD_QUEUE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>

#include "queue/queue.h"

/* One queue_commit() on its way through the writer thread. */
struct queue_job {
	struct queue_job *next;
	struct queue_envelope *env;	/* a new message, or NULL */
	struct queue_spool *spool;
	struct queue_envelope *state;	/* queue_update(): an existing message's recipients */
	int64_t old_due, new_due;
	char *counter_name;		/* queue_counter_put(): this record, or NULL */
	int admin;			/* queue_admin(): the operation + 1, or 0 */
	queue_admin_fn *admin_done;	/* its callback, instead of done */
	char admin_id[QUEUE_ID_LEN + 1];	/* "" for every message */
	char *admin_domain;		/* only messages with a pending recipient there */
	char (*admin_skip)[QUEUE_ID_LEN + 1];	/* passed over by flush and release */
	size_t admin_nskip;
	unsigned admin_count;		/* messages it touched */
	struct queue_counter counter;
	int lazy;			/* losing it in a crash costs a repeat, not a message:
					 * delivery results, counters (see writer.c) */
	queue_done_fn *done;
	void *arg;
	enum queue_status status;
};

struct queue_job_list {
	struct queue_job *head, *tail;
};

struct queue {
	char *dir;
	char *spool_dir;		/* DIR/spool: bodies too big for memory */
	size_t spool_memory;
	int readonly;
	int lock_fd;			/* flock()ed: one writing relayd per queue */

	/*
	 * The environment.  Read transactions hold map_lock for reading;
	 * growing the map (or reopening after MDB_PANIC) holds it for writing,
	 * because LMDB requires that no transaction of this process is open
	 * while the map changes.  Only the writer thread writes.
	 */
	MDB_env *env;
	MDB_dbi db_msg, db_body, db_rcpt, db_sched, db_counter, db_hold, db_attempt, db_total;
	/* read-only, a queue from before those databases */
	int no_counters, no_hold, no_attempts, no_totals;
	pthread_rwlock_t map_lock;
	uint64_t map_size;		/* current */
	uint64_t max_size;

	/* Ids (id.c). */
	pthread_mutex_t id_lock;
	uint64_t id_last;

	/* Writer thread and its job lists (writer.c), all under lock. */
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* a job was queued, or stopping */
	struct queue_job_list pending;
	size_t pending_durable;		/* pending jobs that are not lazy */
	struct queue_job_list done;
	int stopping;
	int writer_running;
	pthread_t writer;
	int notify_rd, notify_wr;	/* non-blocking pipe: commits have finished */
	struct queue_stats stats;	/* under lock */
};

/* queue.c: reopen the environment after LMDB declared it unusable (MDB_PANIC). */
int queue_env_reopen(struct queue *q);
/* queue.c: double the map, up to max_size.  0 when it grew, -1 when it cannot. */
int queue_map_grow(struct queue *q);

/* read.c: a short read transaction, and its end (which also drops map_lock). */
int queue_read_begin(struct queue *q, MDB_txn **txn);
void queue_read_end(struct queue *q, MDB_txn *txn);

/*
 * update.c: a queue_update() job's writes into txn; *gone is set when the
 * message no longer exists (its bounce is not written).  0 or an LMDB /
 * errno code.
 */
int queue_put_update(struct queue *q, MDB_txn *txn, const struct queue_job *job, int *gone);

/* attempt.c: st's attempts appended to its recipients' histories in txn. */
int queue_put_attempts(struct queue *q, MDB_txn *txn, const struct queue_envelope *st);
/* total.c: st's attempts counted in their upstreams' totals in txn. */
int queue_put_totals(struct queue *q, MDB_txn *txn, const struct queue_envelope *st);

/* update.c: every record of dbi whose key starts with id (rcpt, body, attempt). */
int queue_del_prefixed(MDB_txn *txn, MDB_dbi dbi, const char *id);
/*
 * queue/forget.c: the map's pages of a value read once leave relayd's resident
 * set (they stay in the page cache).  queue_forget: the whole pages inside
 * [p, p + len), for a body chunk sent; queue_forget_first: the page holding p,
 * once the chunk is deleted.  p: from a transaction still open.
 */
#define QUEUE_FORGET_MIN 2048		/* smaller values share their pages: kept */
void queue_forget(const void *p, size_t len);
void queue_forget_first(const void *p);

/* read.c: id's envelope with its recipients, read in txn; NULL when absent or damaged. */
struct queue_envelope *queue_load_txn(struct queue *q, MDB_txn *txn, const char *id);

/* admin.c: a queue_admin() job's writes into txn. */
int queue_put_admin(struct queue *q, MDB_txn *txn, struct queue_job *job);
/* 1 when id is held (the hold database), 0 when not; read in txn. */
int queue_is_held(struct queue *q, MDB_txn *txn, const char *id);

/* counter.c: a queue_counter_put() job's write into txn. */
int queue_put_counter(struct queue *q, MDB_txn *txn, const struct queue_job *job);

/* writer.c */
/* A job writing env and spool (either may be NULL); NULL, with both freed, on ENOMEM. */
struct queue_job *queue_job_new(struct queue_envelope *env, struct queue_spool *spool,
    queue_done_fn *done, void *arg);
int queue_submit(struct queue *q, struct queue_job *job);
int queue_writer_start(struct queue *q);
void queue_writer_stop(struct queue *q);

/* id.c */
int queue_id_valid(const char *id, size_t len);
int queue_id_init(struct queue *q, MDB_txn *txn);

/* spool.c: the errno of a write that failed (the body is incomplete), or 0. */
int queue_spool_error(const struct queue_spool *sp);
/* spool.c: copy len bytes at off of the body into dst.  -1 and errno on failure. */
int queue_spool_read(struct queue_spool *sp, uint64_t off, void *dst, size_t len);

#endif
