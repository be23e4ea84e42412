/*
 * queue_helpers.h — a scratch queue for the unit tests that need one
 * (test_queue, test_queue_update*, test_bounce*): a temporary directory
 * holding one fresh queue directory per test case, removed at the end; a
 * queue opened in it; commits and updates waited for and dispatched as the
 * event loop would; bodies written into spools and read back.
 *
 * Everything here is static (functions static inline, so that a test which
 * does not use one is not warned about it) and compiled into each test
 * program: CHECK() records its failures in check.h's per-file state, which a
 * separately compiled helpers object would not share with TEST_CASE().
 */
#ifndef RELAYD_QUEUE_HELPERS_H
#define RELAYD_QUEUE_HELPERS_H

#include "queue/queue.h"
#include "tests/unit/check.h"

#include <ftw.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KiB 1024
#define MiB (1024 * 1024)
#define CHUNK (256 * KiB)

/* The scratch directory. */

static char scratch_template[256];
static char *base_dir;
static int dir_counter;

/* Make /tmp/NAME.XXXXXX, the base of every new_dir(); 0, or -1 (and perror) if it fails. */
static inline int scratch_init(const char *name)
{
	snprintf(scratch_template, sizeof scratch_template, "/tmp/%s.XXXXXX", name);
	base_dir = mkdtemp(scratch_template);
	if (!base_dir) {
		perror("mkdtemp");
		return -1;
	}
	return 0;
}

/* A fresh queue directory per test case, all inside base_dir. */
static inline char *new_dir(void)
{
	static char path[256];
	snprintf(path, sizeof path, "%s/q%d", base_dir, dir_counter++);
	return path;
}

static inline int remove_entry(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

/* Remove base_dir and everything the test cases left in it. */
static inline void scratch_remove(void)
{
	nftw(base_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static inline struct queue *open_queue(const char *dir, uint64_t map, uint64_t max,
    size_t memory)
{
	char err[256] = "";
	struct queue_options opt = { .dir = dir, .map_size = map, .max_size = max,
	    .spool_memory = memory };
	struct queue *q = queue_open(&opt, err, sizeof err);
	if (!q)
		fprintf(stderr, "  queue_open: %s\n", err);
	CHECK(q != NULL);
	return q;
}

/* Callbacks. */

/* One commit's or update's outcome, filled by its callback. */
struct result {
	int called;
	enum queue_status status;
};

static int callbacks;		/* all callbacks so far, on the test's main thread */

static inline void on_done(void *arg, enum queue_status status)
{
	struct result *r = arg;
	r->called++;
	r->status = status;
	callbacks++;
}

/*
 * Poll the notification fd and dispatch until `want` callbacks have arrived, at
 * most 60 s: a bound against a hang, not a timing (under valgrind, on a loaded
 * machine with a slow disk, test_concurrent_commits' 600 commits took over 10 s).
 */
static inline int wait_callbacks(struct queue *q, int want)
{
	time_t deadline = time(NULL) + 60;
	while (callbacks < want && time(NULL) < deadline) {
		struct pollfd pfd = { .fd = queue_notify_fd(q), .events = POLLIN };
		if (poll(&pfd, 1, 100) > 0)
			queue_dispatch(q);
	}
	return callbacks >= want;
}

/* Keep dispatching for a while: a callback that comes twice would show up here. */
static inline void linger(struct queue *q, int ms)
{
	for (int waited = 0; waited < ms; waited += 50) {
		struct pollfd pfd = { .fd = queue_notify_fd(q), .events = POLLIN };
		if (poll(&pfd, 1, 50) > 0)
			queue_dispatch(q);
	}
}

/*
 * Commit and wait for the writer, as the event loop would: 0 when it says
 * QUEUE_OK.  Counts callbacks from 0; the result is static, so a callback
 * that comes after the 10 s are up still has somewhere to write.
 */
static inline int commit_wait(struct queue *q, struct queue_envelope *env,
    struct queue_spool *sp)
{
	static struct result r;
	r = (struct result){ 0, 0 };
	callbacks = 0;
	if (queue_commit(q, env, sp, on_done, &r) < 0)
		return -1;
	wait_callbacks(q, 1);
	return r.called && r.status == QUEUE_OK ? 0 : -1;
}

/* Bodies. */

static inline void fill_body(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245 + 12345;
		p[i] = (i % 78 == 76) ? '\r' : (i % 78 == 77) ? '\n' : (unsigned char)(seed >> 16);
	}
}

/* Write body into a new spool in pieces of `piece` bytes, as DATA would. */
static inline struct queue_spool *spool_of(struct queue *q, const unsigned char *body,
    size_t len, size_t piece)
{
	struct queue_spool *sp = queue_spool_new(q);
	CHECK(sp != NULL);
	for (size_t off = 0; off < len; off += piece)
		CHECK(queue_spool_write(sp, body + off, len - off < piece ? len - off : piece) == 0);
	CHECK(queue_spool_size(sp) == len);
	return sp;
}

/* Collects what queue_read_body / queue_read_chunk hand out. */
struct body_copy {
	unsigned char *data;
	size_t len, cap;
	int calls;
	size_t last_piece;
	int chunk_too_big;	/* a piece was larger than a stored chunk */
};

static inline int collect_body(void *arg, const void *data, size_t len)
{
	struct body_copy *b = arg;
	if (len > CHUNK)
		b->chunk_too_big = 1;
	if (b->len + len > b->cap) {
		b->cap = (b->len + len) * 2;
		b->data = realloc(b->data, b->cap);
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->last_piece = len;
	b->calls++;
	return 0;
}

/* A body callback that fails, counting its calls in *(int *)arg when arg is not NULL. */
static inline int fail_body(void *arg, const void *data, size_t len)
{
	(void)data; (void)len;
	if (arg)
		(*(int *)arg)++;
	return -1;
}

/* Walks. */

static inline int count_walk(void *arg, const struct queue_envelope *env)
{
	(void)env;
	(*(size_t *)arg)++;
	return 0;
}

#endif
