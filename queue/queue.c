/*
 * queue — opening and closing the queue: the directory and its spool/, the
 * lock that keeps a second relayd out, the LMDB environment with its four
 * named databases (msg, body, rcpt, sched; layout in record.h), and growing
 * the map when it fills up.  The writer thread is in writer.c, reading in read.c.
 */
#include "queue/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MAP_SIZE (256ULL << 20)

/* Those from "counter" on came later: a read-only open of an older queue goes on without. */
static const char *const db_names[] = { "msg", "body", "rcpt", "sched", "counter", "hold",
	"attempt", "total" };
#define DB_OPTIONAL 4

static MDB_dbi *db_handle(struct queue *q, size_t i)
{
	MDB_dbi *dbs[] = { &q->db_msg, &q->db_body, &q->db_rcpt, &q->db_sched, &q->db_counter,
		&q->db_hold, &q->db_attempt, &q->db_total };
	return dbs[i];
}

/* The flag that says optional database i is missing. */
static int *db_absent(struct queue *q, size_t i)
{
	int *flags[] = { &q->no_counters, &q->no_hold, &q->no_attempts, &q->no_totals };
	return flags[i - DB_OPTIONAL];
}

/* Create and open q->env with its databases; on failure q->env is NULL. */
static int env_open(struct queue *q, char *err, size_t errlen)
{
	MDB_env *env;
	MDB_txn *txn = NULL;
	const char *what = "mdb_env_create";
	int rc = mdb_env_create(&env);

	if (rc != 0)
		goto fail;
	what = "mdb_env_set_maxdbs";
	if ((rc = mdb_env_set_maxdbs(env, sizeof db_names / sizeof db_names[0])) != 0)
		goto fail;
	/* Read-only, the size recorded in the file is the right one. */
	what = "mdb_env_set_mapsize";
	if (!q->readonly && (rc = mdb_env_set_mapsize(env, q->map_size)) != 0)
		goto fail;
	/*
	 * MDB_NOTLS: read transactions are not tied to a thread's slot, so any
	 * thread may read.  No MDB_NOSYNC / MDB_WRITEMAP, and MDB_NOMETASYNC only
	 * for the writer's lazy transactions (writer.c), never a new message's: the
	 * 250 after DATA promises that the commit reached the disk.
	 */
	what = "mdb_env_open";
	if ((rc = mdb_env_open(env, q->dir, MDB_NOTLS | (q->readonly ? MDB_RDONLY : 0),
	    0600)) != 0)
		goto fail;
	/* Reader slots left by a crashed relayctl would pin old pages forever. */
	int dead;
	if (!q->readonly)
		mdb_reader_check(env, &dead);
	what = "mdb_txn_begin";
	if ((rc = mdb_txn_begin(env, NULL, q->readonly ? MDB_RDONLY : 0, &txn)) != 0)
		goto fail;
	for (size_t i = 0; i < sizeof db_names / sizeof db_names[0]; i++) {
		what = db_names[i];
		rc = mdb_dbi_open(txn, db_names[i], q->readonly ? 0 : MDB_CREATE, db_handle(q, i));
		if (rc == MDB_NOTFOUND && q->readonly && i >= DB_OPTIONAL) {
			*db_absent(q, i) = 1;
			continue;
		}
		if (rc != 0)
			goto fail;
	}
	q->env = env;
	what = "reading the last queue id";
	if ((rc = queue_id_init(q, txn)) != 0)
		goto fail;
	/* Committing (even read-only) is what keeps the database handles open. */
	what = "mdb_txn_commit";
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc != 0)
		goto fail;
	MDB_envinfo info;
	mdb_env_info(env, &info);
	q->map_size = info.me_mapsize;
	return 0;
fail:
	if (txn)
		mdb_txn_abort(txn);
	mdb_env_close(env);
	q->env = NULL;
	if (rc == MDB_NOTFOUND && q->readonly)
		snprintf(err, errlen, "not a relayd queue (no %s database)", what);
	else
		snprintf(err, errlen, "%s: %s", what, mdb_strerror(rc));
	return -1;
}

int queue_env_reopen(struct queue *q)
{
	char err[256];

	pthread_rwlock_wrlock(&q->map_lock);
	mdb_env_close(q->env);
	int rc = env_open(q, err, sizeof err);
	pthread_rwlock_unlock(&q->map_lock);
	return rc;
}

int queue_map_grow(struct queue *q)
{
	if (q->map_size >= q->max_size)
		return -1;
	uint64_t old = q->map_size;
	uint64_t size = old > q->max_size / 2 ? q->max_size : old * 2;

	pthread_rwlock_wrlock(&q->map_lock);
	int rc = mdb_env_set_mapsize(q->env, size);
	pthread_rwlock_unlock(&q->map_lock);
	if (rc != 0) {
		/* The old map is gone and no new one was made: start again at the old size. */
		q->map_size = old;
		queue_env_reopen(q);
		return -1;
	}
	q->map_size = size;
	return 0;
}

static int make_dir(const char *path, char *err, size_t errlen)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Spool files are unlinked at once; anything left is from a crash between mkstemp and unlink. */
static void clean_spool(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + 1 + strlen(name) + 1;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static void queue_free(struct queue *q)
{
	if (q->env)
		mdb_env_close(q->env);
	if (q->notify_rd >= 0)
		close(q->notify_rd);
	if (q->notify_wr >= 0)
		close(q->notify_wr);
	if (q->lock_fd >= 0)
		close(q->lock_fd);
	pthread_rwlock_destroy(&q->map_lock);
	pthread_mutex_destroy(&q->id_lock);
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->wake);
	free(q->dir);
	free(q->spool_dir);
	free(q);
}

/* What both kinds of open share: the struct, its locks, the notification pipe. */
static struct queue *queue_new(const char *dir, int readonly, char *err, size_t errlen)
{
	struct queue *q = calloc(1, sizeof *q);
	if (!q) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	q->readonly = readonly;
	q->lock_fd = q->notify_rd = q->notify_wr = -1;
	pthread_rwlockattr_t attr;
	pthread_rwlockattr_init(&attr);
#ifdef __GLIBC__
	/* Readers come and go all the time; a map resize must not wait for a gap that never comes. */
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
	pthread_rwlock_init(&q->map_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&q->id_lock, NULL);
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->wake, NULL);
	int fds[2];
	if (!(q->dir = strdup(dir)) || !(q->spool_dir = path_join(dir, "spool"))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	q->notify_rd = fds[0];
	q->notify_wr = fds[1];
	return q;
fail:
	queue_free(q);
	return NULL;
}

/* One writing process per queue: ids and map growth are only safe with a single writer. */
static int lock_dir(struct queue *q, char *err, size_t errlen)
{
	char *path = path_join(q->dir, "relayd.lock");
	if (!path) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	q->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (q->lock_fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	free(path);
	if (flock(q->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			snprintf(err, errlen, "in use by another relayd");
		else
			snprintf(err, errlen, "flock: %s", strerror(errno));
		return -1;
	}
	return 0;
}

struct queue *queue_open(const struct queue_options *opt, char *err, size_t errlen)
{
	if (!opt->dir || !opt->dir[0]) {
		snprintf(err, errlen, "no queue directory");
		return NULL;
	}
	struct queue *q = queue_new(opt->dir, 0, err, errlen);
	if (!q)
		return NULL;
	q->spool_memory = opt->spool_memory;
	q->map_size = opt->map_size ? opt->map_size : DEFAULT_MAP_SIZE;
	q->max_size = opt->max_size > q->map_size ? opt->max_size : q->map_size;
	if (make_dir(q->dir, err, errlen) < 0 || make_dir(q->spool_dir, err, errlen) < 0 ||
	    lock_dir(q, err, errlen) < 0 || env_open(q, err, errlen) < 0)
		goto fail;
	clean_spool(q->spool_dir);
	if (queue_writer_start(q) < 0) {
		snprintf(err, errlen, "cannot start the writer thread: %s", strerror(errno));
		goto fail;
	}
	return q;
fail:
	queue_free(q);
	return NULL;
}

struct queue *queue_open_readonly(const char *dir, char *err, size_t errlen)
{
	struct queue *q = queue_new(dir, 1, err, errlen);
	if (!q)
		return NULL;
	if (env_open(q, err, errlen) < 0) {
		queue_free(q);
		return NULL;
	}
	return q;
}

void queue_close(struct queue *q)
{
	if (!q)
		return;
	if (q->writer_running)
		queue_writer_stop(q);
	/* Every queue_commit() gets its callback, even the last ones. */
	queue_dispatch(q);
	queue_free(q);
}

int queue_notify_fd(const struct queue *q)
{
	return q->notify_rd;
}
