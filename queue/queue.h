/*
 * queue — everything LMDB (DESIGN.md, Queue).  A message is written while it
 * streams in (struct queue_spool: memory, then an unlinked temporary file) and
 * committed with its envelope by one writer thread, which gathers the messages
 * of many sessions into one transaction and one fsync (group commit).  The
 * event loop never blocks on the disk: it learns of finished commits through
 * queue_notify_fd().  This module knows nothing about SMTP.
 */
#ifndef RELAYD_QUEUE_H
#define RELAYD_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#define QUEUE_ID_LEN 12			/* upper-case hex digits, sortable by time */

struct queue;
struct queue_spool;

/* DSN NOTIFY= bits (RFC 3461); 0 means the client gave none. */
enum {
	QUEUE_NOTIFY_NEVER   = 1 << 0,
	QUEUE_NOTIFY_SUCCESS = 1 << 1,
	QUEUE_NOTIFY_FAILURE = 1 << 2,
	QUEUE_NOTIFY_DELAY   = 1 << 3,
};
enum queue_ret { QUEUE_RET_NONE, QUEUE_RET_FULL, QUEUE_RET_HDRS };
enum queue_body { QUEUE_BODY_7BIT, QUEUE_BODY_8BITMIME };
enum queue_rcpt_state { QUEUE_RCPT_PENDING, QUEUE_RCPT_SENT, QUEUE_RCPT_BOUNCED };

struct queue_rcpt {
	char *addr;			/* the forward-path, without < > */
	char *orcpt;			/* ORCPT= as received (addr-type;xtext), or NULL */
	unsigned notify;		/* QUEUE_NOTIFY_* bits */
	enum queue_rcpt_state state;
	uint32_t attempts;
	int64_t next_attempt;		/* unix seconds */
	char *last_reply;		/* last upstream reply (lines joined by "\n") or local reason */
	char *last_relay;		/* "host[ip]:port" that gave it, or NULL */
	int64_t last_attempt;		/* unix seconds, 0 before the first */
	unsigned flags;			/* QUEUE_RCPT_WARNED */
};

/* The sender has been told this recipient is delayed (delay_warning). */
#define QUEUE_RCPT_WARNED 1

/*
 * One delivery attempt for one recipient, as relayctl show lists them and
 * the per-upstream totals count them.  Strings may be NULL.
 */
struct queue_attempt {
	uint32_t rcpt;			/* index of the recipient in its message */
	int64_t time;			/* unix seconds */
	char *status;			/* sent, deferred, bounced, expired, failover */
	char *upstream;			/* the configured upstream's name */
	char *relay;			/* "host[ip]:port", or NULL when none answered */
	char *dsn;			/* "4.4.1" */
	char *reply;			/* the far end's words, or the local reason */
};

/* Everything about a message except its body. Strings are owned by the envelope. */
struct queue_envelope {
	char id[QUEUE_ID_LEN + 1];
	char *sender;			/* reverse-path without < >; "" is the null sender */
	char *envid;			/* ENVID= as received (xtext), or NULL */
	enum queue_ret ret;
	enum queue_body body;
	int smtputf8;
	int notice;			/* relayd's own notice to the postmaster: when it cannot
					 * be delivered, it is dropped, never reported on */
	int64_t arrival;		/* unix seconds */
	uint32_t arrival_usec;		/* and microseconds: for delay= and delays= */
	uint64_t size;			/* body bytes as stored */
	char *client_addr;		/* "192.0.2.7" */
	char *helo;			/* what the client said in EHLO/HELO */
	char *auth_user;		/* SASL login, or NULL */
	struct queue_rcpt *rcpts;
	size_t nrcpts;
	int held;			/* relayctl hold: out of the schedule (read, not stored
					 * in the record) */
	struct queue_attempt *attempts;	/* queue_update(): attempts to add to its history */
	size_t nattempts;
};

/* Commit outcomes. */
enum queue_status {
	QUEUE_OK = 0,
	QUEUE_FULL,			/* map or disk full: tell the client 452 4.3.1 */
	QUEUE_ERROR,			/* any other storage failure: 451 4.3.0 */
};

struct queue_options {
	const char *dir;		/* created if missing */
	uint64_t map_size;		/* initial LMDB map size in bytes */
	uint64_t max_size;		/* the map grows on MDB_MAP_FULL up to this */
	size_t spool_memory;		/* body bytes kept in memory before a spool file */
};

/* Open (or create) the queue, start the writer thread.  NULL and err on failure. */
struct queue *queue_open(const struct queue_options *opt, char *err, size_t errlen);
/* Open an existing queue read-only (relayctl); no writer thread. */
struct queue *queue_open_readonly(const char *dir, char *err, size_t errlen);
/* Finish every commit already submitted, stop the writer, close LMDB. */
void queue_close(struct queue *q);

/* A new unique queue id, ordered by time (thread-safe). */
void queue_new_id(struct queue *q, char id[QUEUE_ID_LEN + 1]);

/* Message body under construction.  Writes fail (-1, errno set) on a full disk. */
struct queue_spool *queue_spool_new(struct queue *q);
int queue_spool_write(struct queue_spool *sp, const void *data, size_t len);
uint64_t queue_spool_size(const struct queue_spool *sp);
void queue_spool_free(struct queue_spool *sp);

/*
 * Hand a message to the writer thread.  The queue takes ownership of env and
 * spool (also on failure).  env->id must be set (queue_new_id).  When the
 * transaction holding it has committed with fsync — or failed — done(arg,
 * status) is called from queue_dispatch(), i.e. on the caller's thread.
 * Returns 0 then; -1 (out of memory, message dropped, no callback ever) when
 * the job could not even be recorded, so a caller never sees its callback
 * run inside its own call.
 */
typedef void queue_done_fn(void *arg, enum queue_status status);
int queue_commit(struct queue *q, struct queue_envelope *env,
    struct queue_spool *spool, queue_done_fn *done, void *arg);

/*
 * Delivery results for one message, in one transaction: state (its envelope
 * with every recipient's new state; the queue takes ownership) is written
 * back and the message moves in the schedule from old_due (where
 * queue_due() found it) to new_due, which must be the next_attempt of one
 * of state's recipients (relayctl's operations on one message find the
 * entry by it); new_due < 0 removes the message, every recipient being
 * done.  bounce and bounce_spool, when not NULL, are a new message
 * committed in the same transaction — unless the message is gone
 * by then (relayctl delete): then nothing is written but the old schedule
 * entry's removal.  done() as for queue_commit.
 */
int queue_update(struct queue *q, struct queue_envelope *state, int64_t old_due,
    int64_t new_due, struct queue_envelope *bounce, struct queue_spool *bounce_spool,
    queue_done_fn *done, void *arg);
/*
 * A schedule entry (due, id) the scheduler will not act on: its message
 * cannot be loaded, or is held.  Removed when the message is really gone or
 * held (when this is written, not when asked), kept when its record is there
 * (damaged, or released meanwhile).
 */
int queue_unschedule(struct queue *q, const char *id, int64_t due, queue_done_fn *done,
    void *arg);

/*
 * What relayctl asks through the daemon, done by the writer thread: flush
 * (due at once: queue_due() reports it due at 0), hold (out of the schedule
 * until released), release (due at once), delete (gone, with its body).
 * id: one message; NULL: every message, or with domain those with a pending
 * recipient there.  done(arg, status, n) with the number of messages
 * changed.  -1: bad id or out of memory.
 */
enum queue_admin_op { QUEUE_ADMIN_FLUSH, QUEUE_ADMIN_HOLD, QUEUE_ADMIN_RELEASE,
	QUEUE_ADMIN_DELETE };
typedef void queue_admin_fn(void *arg, enum queue_status status, unsigned count);
int queue_admin(struct queue *q, enum queue_admin_op op, const char *id, const char *domain,
    queue_admin_fn *done, void *arg);
/*
 * The same, passing over the messages skip[0..nskip) (those out for delivery:
 * their result will place them in the schedule, and a flush now would leave
 * them there twice).  skip is copied.
 */
int queue_admin_skip(struct queue *q, enum queue_admin_op op, const char *id,
    const char *domain, const char (*skip)[QUEUE_ID_LEN + 1], size_t nskip,
    queue_admin_fn *done, void *arg);

/*
 * Counters that outlive restarts (an upstream's quota windows), by name: a
 * window's start (unix seconds) and the count in it.
 */
struct queue_counter {
	int64_t hour_start, day_start;
	uint32_t hour_count, day_count;
};
/* 0 with *c filled, 1 when there is none yet (*c zeroed), -1 on error. */
int queue_counter_get(struct queue *q, const char *name, struct queue_counter *c);
/* Written by the writer thread, group-committed; done() as for queue_commit. */
int queue_counter_put(struct queue *q, const char *name, const struct queue_counter *c,
    queue_done_fn *done, void *arg);

/*
 * Delivery totals by upstream name, counted from the attempts of every
 * queue_update() in the same transaction, kept across restarts.
 */
struct queue_total {
	const char *name;
	uint64_t sent, deferred, bounced, failover;	/* recipients' attempts */
	int64_t last_ok, last_fail;	/* unix seconds of the last sent / other, or 0 */
};
typedef int queue_total_fn(void *arg, const struct queue_total *t);
/* fn for each upstream in name order (fn returns non-zero to stop).  0, or -1. */
int queue_totals(struct queue *q, queue_total_fn *fn, void *arg);

/*
 * The schedule: fn(arg, id, due) for each message due at or before now, in
 * order of due time; fn returns non-zero to stop.  *next is set to the due
 * time of the first message after now, or -1 when there is none (or fn
 * stopped the walk).  fn runs inside a read transaction: it must not read
 * the queue itself (that can deadlock against map growth); collect ids.
 */
typedef int queue_due_fn(void *arg, const char *id, int64_t due);
int queue_due(struct queue *q, int64_t now, queue_due_fn *fn, void *arg, int64_t *next);

/* How well group commit works: messages stored per fsynced transaction. */
struct queue_stats {
	uint64_t transactions;		/* committed write transactions */
	uint64_t messages;		/* messages they stored */
	uint64_t refused;		/* commits answered QUEUE_FULL or QUEUE_ERROR */
};
void queue_get_stats(struct queue *q, struct queue_stats *out);

/* What the queue holds now, cheaply (no walk): for /metrics and the status page. */
struct queue_summary {
	uint64_t messages;		/* queued, held ones included */
	uint64_t recipients;		/* of those messages, done or not */
	uint64_t held;
	int64_t oldest_arrival;		/* unix seconds, 0 when empty */
	int64_t next_due;		/* the schedule's first entry, -1 when none */
};
int queue_summary(struct queue *q, struct queue_summary *s);

/* Readable when commits have finished; then call queue_dispatch(). */
int queue_notify_fd(const struct queue *q);
void queue_dispatch(struct queue *q);

/* Envelopes. */
struct queue_envelope *queue_envelope_new(void);
void queue_envelope_free(struct queue_envelope *env);
/* Append an attempt to env->attempts (strings copied); -1 on allocation failure. */
int queue_envelope_add_attempt(struct queue_envelope *env, const struct queue_attempt *a);
/* Free the strings of one attempt (not the struct itself). */
void queue_attempt_clear(struct queue_attempt *a);
/* Append a recipient (strings copied); -1 on allocation failure. */
int queue_envelope_add_rcpt(struct queue_envelope *env, const char *addr,
    const char *orcpt, unsigned notify);

/*
 * Reading, for relayctl and the scheduler: walk every message in id order
 * (envelope with recipients; body not loaded).  fn returns non-zero to stop.
 */
typedef int queue_walk_fn(void *arg, const struct queue_envelope *env);
int queue_walk(struct queue *q, queue_walk_fn *fn, void *arg);
/* One message's envelope; NULL when absent. Free with queue_envelope_free(). */
struct queue_envelope *queue_load(struct queue *q, const char *id);
/*
 * A message's attempt history, recipient by recipient, oldest first (the
 * last QUEUE_ATTEMPTS_KEPT of each); gone with the message.  fn returns
 * non-zero to stop.  0, or -1.
 */
#define QUEUE_ATTEMPTS_KEPT 20
typedef int queue_attempt_fn(void *arg, const struct queue_attempt *a);
int queue_attempts(struct queue *q, const char *id, queue_attempt_fn *fn, void *arg);
/* The stored body of a message, passed to fn in chunks.  0, or -1 when absent. */
typedef int queue_body_fn(void *arg, const void *data, size_t len);
int queue_read_body(struct queue *q, const char *id, queue_body_fn *fn, void *arg);
/* Chunk n (0, 1, …) of a body to fn: 1 when passed, 0 past the end, -1 on error. */
int queue_read_chunk(struct queue *q, const char *id, uint32_t n, queue_body_fn *fn,
    void *arg);

#endif
