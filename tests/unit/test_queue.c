/*
 * test_queue — the LMDB queue end to end, in a fresh directory under /tmp:
 * messages committed through the writer thread come back after a reopen with
 * every field and every body byte; ids stay unique and increasing; a full map
 * fails only the message that does not fit; commits from many threads all land.
 */
#include "tests/unit/queue_helpers.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* What a test message should look like when it comes back. */
struct sample {
	const char *sender, *envid, *client_addr, *helo, *auth_user;
	enum queue_ret ret;
	enum queue_body bodytype;
	int smtputf8;
	int64_t arrival;
	size_t nrcpts;
	size_t size;
	unsigned seed;
	/* filled in */
	char id[QUEUE_ID_LEN + 1];
	unsigned char *body;
	struct result result;
};

static struct sample samples[] = {
	{ "alice@example.org", "ENV1", "192.0.2.7", "mail.example.org", "alice",
	  QUEUE_RET_HDRS, QUEUE_BODY_8BITMIME, 1, 1731318503, 3, 1234, 1, "", NULL, { 0, 0 } },
	{ "", NULL, "2001:db8::25", "[2001:db8::25]", NULL,
	  QUEUE_RET_NONE, QUEUE_BODY_7BIT, 0, 0, 1, 0, 2, "", NULL, { 0, 0 } },
	/* Over a MiB: through a spool file, and stored as six chunks. */
	{ "big@example.org", "", "198.51.100.1", "", "",
	  QUEUE_RET_FULL, QUEUE_BODY_8BITMIME, 0, 1700000000, 2, 5 * CHUNK + 4321, 3, "", NULL,
	  { 0, 0 } },
	{ "exact@example.org", NULL, NULL, NULL, NULL,
	  QUEUE_RET_NONE, QUEUE_BODY_7BIT, 0, 1, 1, 2 * CHUNK, 4, "", NULL, { 0, 0 } },
};
#define NSAMPLES (sizeof samples / sizeof samples[0])

static void rcpt_addr(char *buf, size_t len, size_t msg, size_t i)
{
	snprintf(buf, len, "rcpt%zu-%zu@example.net", msg, i);
}

static void commit_sample(struct queue *q, size_t k)
{
	struct sample *s = &samples[k];
	struct queue_envelope *env = queue_envelope_new();

	env->sender = strdup(s->sender);
	env->envid = dup_or_null(s->envid);
	env->client_addr = dup_or_null(s->client_addr);
	env->helo = dup_or_null(s->helo);
	env->auth_user = dup_or_null(s->auth_user);
	env->ret = s->ret;
	env->body = s->bodytype;
	env->smtputf8 = s->smtputf8;
	env->arrival = s->arrival;
	for (size_t i = 0; i < s->nrcpts; i++) {
		char addr[64];
		rcpt_addr(addr, sizeof addr, k, i);
		CHECK(queue_envelope_add_rcpt(env, addr, i == 1 ? "rfc822;orig@example.net" : NULL,
		    i == 0 ? QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY : QUEUE_NOTIFY_NEVER) == 0);
	}
	s->body = malloc(s->size + 1);
	fill_body(s->body, s->size, s->seed);
	queue_new_id(q, env->id);
	memcpy(s->id, env->id, sizeof s->id);
	queue_commit(q, env, spool_of(q, s->body, s->size, 1000), on_done, &s->result);
}

static void check_sample(const struct queue_envelope *env, size_t k)
{
	const struct sample *s = &samples[k];
	CHECK_STR(env->id, s->id);
	CHECK_STR(env->sender, s->sender);
	CHECK_STR(env->envid, s->envid);
	CHECK_STR(env->client_addr, s->client_addr);
	CHECK_STR(env->helo, s->helo);
	CHECK_STR(env->auth_user, s->auth_user);
	CHECK(env->ret == s->ret);
	CHECK(env->body == s->bodytype);
	CHECK(env->smtputf8 == s->smtputf8);
	CHECK(env->size == s->size);
	if (s->arrival)
		CHECK(env->arrival == s->arrival);
	else	/* 0 means "now": the writer stamps it */
		CHECK(env->arrival > 1700000000 && env->arrival <= time(NULL));
	CHECK(env->nrcpts == s->nrcpts);
	for (size_t i = 0; i < env->nrcpts && i < s->nrcpts; i++) {
		char addr[64];
		rcpt_addr(addr, sizeof addr, k, i);
		CHECK_STR(env->rcpts[i].addr, addr);
		CHECK_STR(env->rcpts[i].orcpt, i == 1 ? "rfc822;orig@example.net" : NULL);
		CHECK(env->rcpts[i].notify == (i == 0 ? QUEUE_NOTIFY_FAILURE | QUEUE_NOTIFY_DELAY :
		    QUEUE_NOTIFY_NEVER));
		CHECK(env->rcpts[i].state == QUEUE_RCPT_PENDING);
		CHECK(env->rcpts[i].attempts == 0);
		CHECK(env->rcpts[i].last_reply == NULL);
	}
}

static void check_body(struct queue *q, size_t k)
{
	const struct sample *s = &samples[k];
	struct body_copy b = { 0 };
	CHECK(queue_read_body(q, s->id, collect_body, &b) == 0);
	CHECK(b.len == s->size);
	CHECK(b.len == s->size && (s->size == 0 || memcmp(b.data, s->body, s->size) == 0));
	CHECK(b.calls == (int)((s->size + CHUNK - 1) / CHUNK));
	CHECK(!b.chunk_too_big);
	free(b.data);
}

struct walk_state {
	size_t seen;
	char last[QUEUE_ID_LEN + 1];
	int out_of_order;
	struct queue *q;
};

static int walk_samples(void *arg, const struct queue_envelope *env)
{
	struct walk_state *w = arg;
	if (strcmp(env->id, w->last) <= 0)
		w->out_of_order = 1;
	memcpy(w->last, env->id, sizeof w->last);
	for (size_t k = 0; k < NSAMPLES; k++)
		if (strcmp(samples[k].id, env->id) == 0) {
			check_sample(env, k);
			check_body(w->q, k);	/* reading from inside a walk works */
		}
	w->seen++;
	return 0;
}

static void test_commit_walk_reopen(void)
{
	const char *dir = new_dir();
	/* A small first map, so the big message makes it grow. */
	struct queue *q = open_queue(dir, 256 * KiB, 64 * MiB, 64 * KiB);
	if (!q)
		return;
	callbacks = 0;
	for (size_t k = 0; k < NSAMPLES; k++)
		commit_sample(q, k);
	CHECK(callbacks == 0);		/* callbacks come from queue_dispatch, never from commit */
	CHECK(wait_callbacks(q, NSAMPLES));
	for (size_t k = 0; k < NSAMPLES; k++) {
		CHECK(samples[k].result.called == 1);
		CHECK(samples[k].result.status == QUEUE_OK);
		if (k > 0)
			CHECK(strcmp(samples[k - 1].id, samples[k].id) < 0);
	}
	queue_close(q);

	q = open_queue(dir, 256 * KiB, 64 * MiB, 64 * KiB);
	if (!q)
		return;
	struct walk_state w = { .q = q };
	CHECK(queue_walk(q, walk_samples, &w) == 0);
	CHECK(w.seen == NSAMPLES);
	CHECK(!w.out_of_order);
	for (size_t k = 0; k < NSAMPLES; k++) {
		struct queue_envelope *env = queue_load(q, samples[k].id);
		CHECK(env != NULL);
		if (env)
			check_sample(env, k);
		queue_envelope_free(env);
	}
	char id[QUEUE_ID_LEN + 1];
	queue_new_id(q, id);
	CHECK(strlen(id) == QUEUE_ID_LEN);
	CHECK(strcmp(id, samples[NSAMPLES - 1].id) > 0);
	queue_close(q);

	/* relayctl's view: the same, read-only. */
	char err[256];
	q = queue_open_readonly(dir, err, sizeof err);
	CHECK(q != NULL);
	if (!q)
		return;
	memset(&w, 0, sizeof w);
	w.q = q;
	CHECK(queue_walk(q, walk_samples, &w) == 0);
	CHECK(w.seen == NSAMPLES);
	CHECK(queue_spool_new(q) == NULL);
	queue_close(q);
	for (size_t k = 0; k < NSAMPLES; k++) {
		free(samples[k].body);
		samples[k].body = NULL;
	}
}

static int stop_walk(void *arg, const struct queue_envelope *env)
{
	(void)env;
	return ++*(size_t *)arg == 2;
}

/* Addresses relayctl passes on are not trusted either. */
static void test_lookups_of_bad_ids(void)
{
	struct queue *q = open_queue(new_dir(), 0, 0, 4096);
	if (!q)
		return;
	static const char *const ids[] = { "", "123", "0123456789ab", "0123456789ABC",
	    "0123456789A!", "000000000000", "../../etc/pa" };
	struct body_copy b = { 0 };
	for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		CHECK(queue_load(q, ids[i]) == NULL);
		CHECK(queue_read_body(q, ids[i], collect_body, &b) == -1);
	}
	CHECK(queue_load(q, NULL) == NULL);
	CHECK(b.calls == 0);
	size_t n = 0;
	CHECK(queue_walk(q, count_walk, &n) == 0);
	CHECK(n == 0);
	queue_close(q);
	char err[256];
	CHECK(queue_open_readonly(new_dir(), err, sizeof err) == NULL);
}

/* Ids and map growth assume one writer: a second relayd on the same queue is refused. */
static void test_second_writer_refused(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 4096);
	if (!q)
		return;
	char err[256] = "";
	struct queue_options opt = { .dir = dir };
	CHECK(queue_open(&opt, err, sizeof err) == NULL);
	CHECK_STR(err, "in use by another relayd");
	queue_close(q);
	q = queue_open(&opt, err, sizeof err);	/* free again once closed */
	CHECK(q != NULL);
	queue_close(q);
}

/* The callbacks of commits nobody dispatched yet still come, from queue_close. */
static void test_close_finishes_commits(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 4096);
	if (!q)
		return;
	struct result results[20] = { { 0, 0 } };
	callbacks = 0;
	for (size_t i = 0; i < 20; i++) {
		struct queue_envelope *env = queue_envelope_new();
		env->sender = strdup("s@example.org");
		queue_envelope_add_rcpt(env, "r@example.org", NULL, 0);
		queue_new_id(q, env->id);
		queue_commit(q, env, spool_of(q, (const unsigned char *)"Subject: x\r\n\r\nhi\r\n", 18, 18),
		    on_done, &results[i]);
	}
	queue_close(q);
	CHECK(callbacks == 20);
	for (size_t i = 0; i < 20; i++)
		CHECK(results[i].called == 1 && results[i].status == QUEUE_OK);

	q = open_queue(dir, 0, 0, 4096);
	if (!q)
		return;
	size_t n = 0;
	CHECK(queue_walk(q, count_walk, &n) == 0);
	CHECK(n == 20);
	n = 0;
	CHECK(queue_walk(q, stop_walk, &n) == 0);	/* fn's non-zero stops the walk */
	CHECK(n == 2);
	queue_close(q);
}

/* Even after the clock went back, ids after a restart are above every stored one. */
static void test_ids_survive_clock_going_back(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 0, 0, 4096);
	if (!q)
		return;
	char prev[QUEUE_ID_LEN + 1] = "", id[QUEUE_ID_LEN + 1];
	for (int i = 0; i < 1000; i++) {
		queue_new_id(q, id);
		CHECK(strlen(id) == QUEUE_ID_LEN && strspn(id, "0123456789ABCDEF") == QUEUE_ID_LEN);
		CHECK(strcmp(prev, id) < 0);
		memcpy(prev, id, sizeof prev);
	}
	/* A message from "the future", as if the clock had been far ahead. */
	struct result r = { 0, 0 };
	struct queue_envelope *env = queue_envelope_new();
	env->sender = strdup("");
	queue_envelope_add_rcpt(env, "r@example.org", NULL, 0);
	memcpy(env->id, "F00000000000", sizeof env->id);
	callbacks = 0;
	queue_commit(q, env, spool_of(q, (const unsigned char *)"x\r\n", 3, 3), on_done, &r);
	CHECK(wait_callbacks(q, 1));
	CHECK(r.status == QUEUE_OK);
	/* A body callback's failure is reported. */
	CHECK(queue_read_body(q, "F00000000000", fail_body, NULL) == -1);
	queue_close(q);

	q = open_queue(dir, 0, 0, 4096);
	if (!q)
		return;
	queue_new_id(q, id);
	CHECK(strcmp(id, "F00000000000") > 0);
	queue_close(q);
}

/* A message that cannot fit fails alone (452); a small one beside it is queued. */
static void test_full_map_fails_only_the_big_message(void)
{
	const char *dir = new_dir();
	struct queue *q = open_queue(dir, 1 * MiB, 1 * MiB, 64 * KiB);
	if (!q)
		return;
	size_t big_len = 4 * MiB;
	unsigned char *big = malloc(big_len);
	fill_body(big, big_len, 7);
	struct result rbig = { 0, 0 }, rsmall = { 0, 0 }, rafter = { 0, 0 };
	char big_id[QUEUE_ID_LEN + 1], small_id[QUEUE_ID_LEN + 1], after_id[QUEUE_ID_LEN + 1];
	const unsigned char small[] = "Subject: small\r\n\r\nstill here\r\n";

	callbacks = 0;
	struct queue_envelope *env = queue_envelope_new();
	env->sender = strdup("big@example.org");
	queue_envelope_add_rcpt(env, "r@example.org", NULL, 0);
	queue_new_id(q, env->id);
	memcpy(big_id, env->id, sizeof big_id);
	queue_commit(q, env, spool_of(q, big, big_len, 64 * KiB), on_done, &rbig);

	env = queue_envelope_new();
	env->sender = strdup("small@example.org");
	queue_envelope_add_rcpt(env, "r@example.org", NULL, 0);
	queue_new_id(q, env->id);
	memcpy(small_id, env->id, sizeof small_id);
	queue_commit(q, env, spool_of(q, small, sizeof small - 1, 100), on_done, &rsmall);
	CHECK(wait_callbacks(q, 2));
	CHECK(rbig.called == 1 && rbig.status == QUEUE_FULL);
	CHECK(rsmall.called == 1 && rsmall.status == QUEUE_OK);

	/* And the queue keeps working afterwards. */
	env = queue_envelope_new();
	env->sender = strdup("after@example.org");
	queue_envelope_add_rcpt(env, "r@example.org", NULL, 0);
	queue_new_id(q, env->id);
	memcpy(after_id, env->id, sizeof after_id);
	queue_commit(q, env, spool_of(q, small, sizeof small - 1, 100), on_done, &rafter);
	CHECK(wait_callbacks(q, 3));
	CHECK(rafter.status == QUEUE_OK);
	queue_close(q);

	q = open_queue(dir, 1 * MiB, 1 * MiB, 64 * KiB);
	if (!q)
		return;
	size_t n = 0;
	CHECK(queue_walk(q, count_walk, &n) == 0);
	CHECK(n == 2);
	CHECK(queue_load(q, big_id) == NULL);
	struct body_copy b = { 0 };
	CHECK(queue_read_body(q, big_id, collect_body, &b) == -1);
	CHECK(b.len == 0);
	CHECK(queue_read_body(q, small_id, collect_body, &b) == 0);
	CHECK(b.len == sizeof small - 1 && memcmp(b.data, small, b.len) == 0);
	free(b.data);
	queue_close(q);
	free(big);
}

/* A duplicate id is refused without taking its batch down with it. */
static void test_duplicate_id_fails_alone(void)
{
	struct queue *q = open_queue(new_dir(), 0, 0, 4096);
	if (!q)
		return;
	struct result r[3] = { { 0, 0 } };
	char id[QUEUE_ID_LEN + 1];
	queue_new_id(q, id);
	callbacks = 0;
	for (int i = 0; i < 3; i++) {
		struct queue_envelope *env = queue_envelope_new();
		env->sender = strdup("s@example.org");
		queue_envelope_add_rcpt(env, "r@example.org", NULL, 0);
		if (i < 2)
			memcpy(env->id, id, sizeof env->id);
		else
			queue_new_id(q, env->id);
		queue_commit(q, env, spool_of(q, (const unsigned char *)"x\r\n", 3, 3), on_done, &r[i]);
	}
	CHECK(wait_callbacks(q, 3));
	CHECK(r[0].status == QUEUE_OK);
	CHECK(r[1].status == QUEUE_ERROR);
	CHECK(r[2].status == QUEUE_OK);
	/* An envelope that cannot be stored (no sender) is an error too, not a crash. */
	struct result bad = { 0, 0 };
	struct queue_envelope *env = queue_envelope_new();
	queue_new_id(q, env->id);
	queue_commit(q, env, NULL, on_done, &bad);
	CHECK(wait_callbacks(q, 4));
	CHECK(bad.status == QUEUE_ERROR);
	size_t n = 0;
	CHECK(queue_walk(q, count_walk, &n) == 0);
	CHECK(n == 2);
	queue_close(q);
}

/* A spool that cannot grow reports it: -1 and errno (EFBIG here, ENOSPC on a full disk). */
static void test_spool_write_error(void)
{
	struct queue *q = open_queue(new_dir(), 0, 0, 4 * KiB);
	if (!q)
		return;
	struct rlimit old, small = { 200 * KiB, 0 };
	getrlimit(RLIMIT_FSIZE, &old);
	small.rlim_max = old.rlim_max;
	signal(SIGXFSZ, SIG_IGN);
	struct queue_spool *sp = queue_spool_new(q);
	CHECK(sp != NULL);
	CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
	char line[1000];
	memset(line, 'a', sizeof line);
	int failed = 0, err = 0;
	for (int i = 0; i < 400 && !failed; i++)
		if (queue_spool_write(sp, line, sizeof line) < 0) {
			failed = 1;
			err = errno;
		}
	setrlimit(RLIMIT_FSIZE, &old);
	CHECK(failed);
	CHECK(err == EFBIG);
	errno = 0;
	CHECK(queue_spool_write(sp, line, 10) == -1 && errno == EFBIG);	/* and stays failed */
	signal(SIGXFSZ, SIG_DFL);

	/* Committed anyway, a partial body is refused, not stored. */
	struct result r = { 0, 0 };
	struct queue_envelope *env = queue_envelope_new();
	env->sender = strdup("s@example.org");
	queue_envelope_add_rcpt(env, "r@example.org", NULL, 0);
	queue_new_id(q, env->id);
	callbacks = 0;
	queue_commit(q, env, sp, on_done, &r);
	CHECK(wait_callbacks(q, 1));
	CHECK(r.status == QUEUE_FULL);
	size_t n = 0;
	CHECK(queue_walk(q, count_walk, &n) == 0);
	CHECK(n == 0);
	queue_close(q);
}

/*
 * The disk refusing LMDB's writes at commit (a file size limit stands in for
 * a full disk): that message fails, nothing of it is stored, and the queue
 * goes on working.
 */
static void test_disk_full_at_commit(void)
{
	struct queue *q = open_queue(new_dir(), 0, 0, 8 * MiB);
	if (!q)
		return;
	size_t big_len = 2 * MiB;
	unsigned char *big = malloc(big_len);
	fill_body(big, big_len, 9);
	const unsigned char small[] = "Subject: small\r\n\r\nok\r\n";
	struct result rbig = { 0, 0 }, rsmall = { 0, 0 };
	struct queue_envelope *env;
	struct rlimit old, limit;

	getrlimit(RLIMIT_FSIZE, &old);
	limit = (struct rlimit){ 1 * MiB, old.rlim_max };
	signal(SIGXFSZ, SIG_IGN);
	callbacks = 0;
	env = queue_envelope_new();
	env->sender = strdup("big@example.org");
	queue_envelope_add_rcpt(env, "r@example.org", NULL, 0);
	queue_new_id(q, env->id);
	struct queue_spool *sp = spool_of(q, big, big_len, 64 * KiB);
	CHECK(setrlimit(RLIMIT_FSIZE, &limit) == 0);
	queue_commit(q, env, sp, on_done, &rbig);
	CHECK(wait_callbacks(q, 1));
	/* LMDB sees a short write: EIO, which is QUEUE_FULL only when the disk has no room. */
	CHECK(rbig.called == 1 && rbig.status != QUEUE_OK);

	/* Still under the limit: the pages the failed commit wanted are free again. */
	env = queue_envelope_new();
	env->sender = strdup("small@example.org");
	queue_envelope_add_rcpt(env, "r@example.org", NULL, 0);
	queue_new_id(q, env->id);
	queue_commit(q, env, spool_of(q, small, sizeof small - 1, 100), on_done, &rsmall);
	CHECK(wait_callbacks(q, 2));
	CHECK(rsmall.status == QUEUE_OK);
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, SIG_DFL);

	size_t n = 0;
	CHECK(queue_walk(q, count_walk, &n) == 0);
	CHECK(n == 1);
	queue_close(q);
	free(big);
}

/* Four threads commit at once; the writer groups them; every one is queued. */
#define THREADS 4
#define PER_THREAD 150

struct committer {
	struct queue *q;
	struct result results[PER_THREAD];
	char ids[PER_THREAD][QUEUE_ID_LEN + 1];
	int t;
};

static void *commit_many(void *arg)
{
	struct committer *c = arg;
	unsigned char body[3000];
	for (int i = 0; i < PER_THREAD; i++) {
		struct queue_envelope *env = queue_envelope_new();
		char addr[64];
		snprintf(addr, sizeof addr, "t%d-%d@example.org", c->t, i);
		env->sender = strdup(addr);
		queue_envelope_add_rcpt(env, addr, NULL, 0);
		queue_new_id(c->q, env->id);
		memcpy(c->ids[i], env->id, sizeof c->ids[i]);
		size_t len = 100 + (size_t)(i * 37 % 2900);
		fill_body(body, len, (unsigned)(c->t * 1000 + i));
		struct queue_spool *sp = queue_spool_new(c->q);
		queue_spool_write(sp, body, len);
		queue_commit(c->q, env, sp, on_done, &c->results[i]);
	}
	return NULL;
}

/* Reads while the map grows under it: map_lock keeps them apart. */
struct reader {
	struct queue *q;
	atomic_int stop;
	int walks, errors;
};

static int load_each(void *arg, const struct queue_envelope *env)
{
	struct reader *r = arg;
	struct queue_envelope *again = queue_load(r->q, env->id);
	struct body_copy b = { 0 };
	if (!again || strcmp(again->sender, env->sender) != 0 ||
	    queue_read_body(r->q, env->id, collect_body, &b) != 0 || b.len != env->size)
		r->errors++;
	queue_envelope_free(again);
	free(b.data);
	return 0;
}

static void *read_while_writing(void *arg)
{
	struct reader *r = arg;
	while (!r->stop) {
		if (queue_walk(r->q, load_each, r) != 0)
			r->errors++;
		r->walks++;
		/* A breath between walks: under valgrind, which runs one thread at a time
		 * and not fairly, a reader that never sleeps starved the writer for minutes. */
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	return NULL;
}

static int compare_ids(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void test_concurrent_commits(void)
{
	/* A tiny first map: it has to grow several times while the reader reads. */
	struct queue *q = open_queue(new_dir(), 64 * KiB, 256 * MiB, 1 * KiB);
	if (!q)
		return;
	static struct committer c[THREADS];
	pthread_t th[THREADS], rth;
	struct reader reader = { .q = q };
	CHECK(pthread_create(&rth, NULL, read_while_writing, &reader) == 0);
	callbacks = 0;
	for (int t = 0; t < THREADS; t++) {
		memset(&c[t], 0, sizeof c[t]);
		c[t].q = q;
		c[t].t = t;
		CHECK(pthread_create(&th[t], NULL, commit_many, &c[t]) == 0);
	}
	/* Dispatch while they commit, as the event loop would. */
	CHECK(wait_callbacks(q, THREADS * PER_THREAD));
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	reader.stop = 1;
	pthread_join(rth, NULL);
	CHECK(reader.walks > 0);
	CHECK(reader.errors == 0);
	static char all[THREADS * PER_THREAD][QUEUE_ID_LEN + 1];
	int ok = 0;
	for (int t = 0; t < THREADS; t++)
		for (int i = 0; i < PER_THREAD; i++) {
			ok += c[t].results[i].called == 1 && c[t].results[i].status == QUEUE_OK;
			memcpy(all[t * PER_THREAD + i], c[t].ids[i], QUEUE_ID_LEN + 1);
			if (i > 0)
				CHECK(strcmp(c[t].ids[i - 1], c[t].ids[i]) < 0);
		}
	CHECK(ok == THREADS * PER_THREAD);
	qsort(all, THREADS * PER_THREAD, sizeof all[0], compare_ids);
	for (int i = 1; i < THREADS * PER_THREAD; i++)
		CHECK(strcmp(all[i - 1], all[i]) < 0);
	size_t n = 0;
	CHECK(queue_walk(q, count_walk, &n) == 0);
	CHECK(n == THREADS * PER_THREAD);
	queue_close(q);
}

int main(void)
{
	if (scratch_init("test_queue") < 0)
		return 1;
	TEST_CASE(test_commit_walk_reopen);
	TEST_CASE(test_lookups_of_bad_ids);
	TEST_CASE(test_second_writer_refused);
	TEST_CASE(test_close_finishes_commits);
	TEST_CASE(test_ids_survive_clock_going_back);
	TEST_CASE(test_full_map_fails_only_the_big_message);
	TEST_CASE(test_duplicate_id_fails_alone);
	TEST_CASE(test_spool_write_error);
	TEST_CASE(test_disk_full_at_commit);
	TEST_CASE(test_concurrent_commits);
	scratch_remove();
	return check_exit();
}
