/*
 * queue_fill — builds a big queue of deferred recipients for the benchmark,
 * the way relayd itself would leave it after an upstream refused every
 * connection: each message is committed through queue_commit() (envelope,
 * recipients, body, schedule entry at arrival), then its first attempt is
 * recorded through queue_update() (attempts 1, the reply, the history entry,
 * the schedule entry moved to the next try).  Both go through the writer
 * thread, so they share transactions and fsyncs exactly as in relayd (group
 * commit, durability on); only the SMTP conversation is left out.
 *
 *   queue_fill DIR MESSAGES RCPTS_PER_MESSAGE BODY_BYTES [MAX_SECONDS]
 *
 * Every retry is due between 30 and 90 minutes from now, so nothing comes
 * due while the benchmark runs.  Prints one line of key=value results, and
 * sample=ID lines (messages spread over the queue) for relayctl flush.  On a
 * disk too slow to write them all in MAX_SECONDS (default 1800) it stops
 * there, and its result line says how many it did write (stopped=1).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/queue.h"

#define WINDOW 20000			/* jobs handed to the writer and not yet done */
#define SAMPLES 10			/* ids printed for relayctl flush */
#define MAX_SECONDS 1800		/* the default bound, whatever the disk does */
#define REPLY "connect to 127.0.0.1[127.0.0.1]:25: Connection refused"

struct fill {
	struct queue *q;
	uint64_t outstanding, failed;
};

static double now_monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fill_done(void *arg, enum queue_status status)
{
	struct fill *f = arg;
	f->outstanding--;
	if (status != QUEUE_OK)
		f->failed++;
}

/* Wait (bounded) until the writer has finished some jobs, and run their callbacks. */
static int fill_wait(struct fill *f)
{
	struct pollfd pfd = { .fd = queue_notify_fd(f->q), .events = POLLIN };
	if (poll(&pfd, 1, 60000) <= 0) {
		fprintf(stderr, "queue_fill: no commit finished in 60 s\n");
		return -1;
	}
	queue_dispatch(f->q);
	return 0;
}

/* A message as relayd accepts it from a local MTA: one sender, nrcpts recipients. */
static struct queue_envelope *fill_envelope(const char *id, uint64_t n, unsigned nrcpts,
    int64_t arrival)
{
	struct queue_envelope *env = queue_envelope_new();
	char addr[64];

	if (!env)
		return NULL;
	memcpy(env->id, id, sizeof env->id);
	env->arrival = arrival;
	env->sender = strdup("newsletter@example.com");
	env->client_addr = strdup("127.0.0.1");
	env->helo = strdup("mta.example.com");
	if (!env->sender || !env->client_addr || !env->helo) {
		queue_envelope_free(env);
		return NULL;
	}
	for (unsigned i = 0; i < nrcpts; i++) {
		snprintf(addr, sizeof addr, "user%" PRIu64 "-%u@example.org", n, i);
		if (queue_envelope_add_rcpt(env, addr, NULL, 0) < 0) {
			queue_envelope_free(env);
			return NULL;
		}
	}
	return env;
}

static struct queue_spool *fill_body(struct queue *q, const char *id, size_t bytes)
{
	struct queue_spool *sp = queue_spool_new(q);
	char head[256], line[80];
	int n = snprintf(head, sizeof head, "Received: from mta.example.com ([127.0.0.1])\r\n"
	    "\tby relay.bench with ESMTP id %s\r\nFrom: newsletter@example.com\r\n"
	    "To: undisclosed-recipients:;\r\nSubject: bench %s\r\n\r\n", id, id);

	if (!sp || queue_spool_write(sp, head, (size_t)n) < 0) {
		queue_spool_free(sp);
		return NULL;
	}
	memset(line, 'x', sizeof line - 2);
	memcpy(line + sizeof line - 2, "\r\n", 2);
	for (size_t done = 0; done < bytes; done += sizeof line)
		if (queue_spool_write(sp, line, sizeof line) < 0) {
			queue_spool_free(sp);
			return NULL;
		}
	return sp;
}

/* The recipients' state after one refused connection, as delivery_result.c writes it. */
static struct queue_envelope *fill_deferred(const char *id, uint64_t n, unsigned nrcpts,
    int64_t arrival, int64_t now)
{
	struct queue_envelope *st = fill_envelope(id, n, nrcpts, arrival);
	int64_t next = now + 1800 + (int64_t)(random() % 3600);

	for (unsigned i = 0; st && i < nrcpts; i++) {
		struct queue_rcpt *r = &st->rcpts[i];
		struct queue_attempt at = { .rcpt = i, .time = now, .status = "deferred",
		    .upstream = "upstream", .dsn = "4.4.1", .reply = REPLY };
		r->attempts = 1;
		r->last_attempt = now;
		r->next_attempt = next;
		if (!(r->last_reply = strdup(REPLY)) || queue_envelope_add_attempt(st, &at) < 0) {
			queue_envelope_free(st);
			return NULL;
		}
	}
	return st;
}

/* One message: its commit and its first (failed) attempt, both to the writer thread. */
static int fill_one(struct fill *f, uint64_t n, unsigned nrcpts, size_t body, char *id_out)
{
	char id[QUEUE_ID_LEN + 1];
	int64_t now = (int64_t)time(NULL);

	queue_new_id(f->q, id);
	memcpy(id_out, id, sizeof id);
	struct queue_envelope *env = fill_envelope(id, n, nrcpts, now);
	struct queue_spool *sp = env ? fill_body(f->q, id, body) : NULL;
	if (!sp) {
		queue_envelope_free(env);
		return -1;
	}
	if (queue_commit(f->q, env, sp, fill_done, f) < 0)
		return -1;
	f->outstanding++;
	/* Same transaction or a later one: the writer takes jobs in order. */
	struct queue_envelope *st = fill_deferred(id, n, nrcpts, now, now);
	int64_t new_due = st ? st->rcpts[0].next_attempt : 0;
	if (!st || queue_update(f->q, st, now, new_due, NULL, NULL, fill_done, f) < 0)
		return -1;
	f->outstanding++;
	return 0;
}

int main(int argc, char **argv)
{
	char err[256], id[QUEUE_ID_LEN + 1];

	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: queue_fill DIR MESSAGES RCPTS_PER_MESSAGE BODY_BYTES "
		    "[MAX_SECONDS]\n");
		return 2;
	}
	double max_seconds = argc == 6 ? strtod(argv[5], NULL) : MAX_SECONDS;
	uint64_t messages = strtoull(argv[2], NULL, 10);
	unsigned nrcpts = (unsigned)strtoul(argv[3], NULL, 10);
	size_t body = (size_t)strtoull(argv[4], NULL, 10);
	if (messages == 0 || nrcpts == 0 || nrcpts > 1000) {
		fprintf(stderr, "queue_fill: MESSAGES > 0, 1 <= RCPTS_PER_MESSAGE <= 1000\n");
		return 2;
	}
	/* Room for everything from the start: growing the map is tested elsewhere. */
	uint64_t need = messages * (body + 600 + 400 * (uint64_t)nrcpts) * 2;
	struct queue_options opt = { .dir = argv[1], .map_size = need < (256ULL << 20) ?
	    (256ULL << 20) : need, .max_size = 4 * need + (1ULL << 30),
	    .spool_memory = 256 * 1024 };
	struct fill f = { .q = queue_open(&opt, err, sizeof err) };
	if (!f.q) {
		fprintf(stderr, "queue_fill: %s: %s\n", argv[1], err);
		return 1;
	}
	srandom(1);
	double t0 = now_monotonic(), last_report = t0;
	int rc = 0, stopped = 0;
	for (uint64_t n = 0; n < messages && rc == 0 && !stopped; n++) {
		while (f.outstanding >= WINDOW && rc == 0)
			rc = fill_wait(&f);
		if (rc == 0 && fill_one(&f, n, nrcpts, body, id) < 0) {
			fprintf(stderr, "queue_fill: out of memory at message %" PRIu64 "\n", n);
			rc = -1;
		}
		if (rc == 0 && n % (messages / SAMPLES > 0 ? messages / SAMPLES : 1) ==
		    messages / (2 * SAMPLES))
			printf("sample=%s\n", id);
		if (now_monotonic() - t0 > max_seconds) {
			fprintf(stderr, "queue_fill: over %.0f s, stopping after %" PRIu64
			    " messages\n", max_seconds, n + 1);
			stopped = 1;
		}
		if (now_monotonic() - last_report >= 10) {
			last_report = now_monotonic();
			fprintf(stderr, "queue_fill: %" PRIu64 " messages, %.0f s\n", n,
			    last_report - t0);
		}
	}
	while (f.outstanding > 0 && fill_wait(&f) == 0)
		;
	struct queue_stats st;
	queue_get_stats(f.q, &st);
	queue_close(f.q);
	double secs = now_monotonic() - t0;
	printf("messages=%" PRIu64 " recipients=%" PRIu64 " seconds=%.2f transactions=%" PRIu64
	    " failed=%" PRIu64 " stopped=%d\n", (uint64_t)st.messages,
	    (uint64_t)st.messages * nrcpts, secs, (uint64_t)st.transactions, f.failed, stopped);
	return rc == 0 && f.failed == 0 && f.outstanding == 0 ? 0 : 1;
}
