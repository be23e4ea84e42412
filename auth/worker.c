/*
 * worker — every Cyrus SASL call of the running daemon, on one thread of its
 * own.  Cyrus' calls block: saslauthd is asked over a Unix socket with no
 * timeout, PAM behind it may sleep seconds after a bad password.  On the
 * event loop that would stall every SMTP session; here it stalls only the
 * logins queued behind it, and the caller gives up on them after its own
 * timeout.  One thread, because Cyrus runs without mutex callbacks and its
 * plugins keep global state.
 *
 * Jobs go in through `queued`, come back through `done` with a byte on a pipe
 * (the event loop watches auth_worker_fd()).  A session released while a job
 * of it is pending is only marked: its callback is never called, and the
 * worker disposes of it after whatever it is doing.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"

enum job_type { JOB_START, JOB_STEP, JOB_FREE };

struct job {
	enum job_type type;
	struct auth_session *as;
	char *mech, *text;		/* text: initial response or response line */
	int has_text;
	auth_done_fn *done;
	void *arg;
	int cancelled;			/* the session was released: no callback */
	enum auth_result result;
	const char *challenge;
	struct job *next;
};

struct job_list {
	struct job *head, *tail;
};

struct auth_worker {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* queued has work, or stop */
	pthread_cond_t idle;		/* the thread has finished (auth_worker_free waits) */
	struct job_list queued, done;
	struct job *running;
	int stop, finished;
	int notify_rd, notify_wr;
};

static void list_push(struct job_list *l, struct job *j)
{
	j->next = NULL;
	if (l->tail)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
}

static struct job *list_pop(struct job_list *l)
{
	struct job *j = l->head;
	if (j && !(l->head = j->next))
		l->tail = NULL;
	return j;
}

/* Response lines may hold a password: wipe them before the memory is reused. */
static void job_free(struct job *j)
{
	if (j->text) {
		explicit_bzero(j->text, strlen(j->text));
		free(j->text);
	}
	free(j->mech);
	free(j);
}

static void run(struct job *j)
{
	switch (j->type) {
	case JOB_START:
		j->result = auth_session_start(j->as, j->mech, j->has_text ? j->text : NULL,
		    &j->challenge);
		break;
	case JOB_STEP:
		j->result = auth_session_step(j->as, j->text, &j->challenge);
		break;
	case JOB_FREE:
		/* j->as stays as it was: auth_worker_release() reads it under the lock. */
		auth_session_free(j->as);
		break;
	}
}

/* Wake the event loop; a full pipe is already readable, so EAGAIN is fine. */
static void notify(struct auth_worker *w)
{
	ssize_t n;
	do
		n = write(w->notify_wr, "", 1);
	while (n < 0 && errno == EINTR);
}

static void *worker_main(void *arg)
{
	struct auth_worker *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct job *j = list_pop(&w->queued);
		if (!j) {
			if (w->stop)
				break;
			pthread_cond_wait(&w->wake, &w->lock);
			continue;
		}
		if (j->cancelled && j->type != JOB_FREE) {
			job_free(j);	/* its session is gone: do not ask the backend */
			continue;
		}
		w->running = j;
		pthread_mutex_unlock(&w->lock);
		run(j);
		pthread_mutex_lock(&w->lock);
		w->running = NULL;
		if (j->type == JOB_FREE) {
			job_free(j);
			continue;
		}
		list_push(&w->done, j);
		notify(w);
	}
	w->finished = 1;
	pthread_cond_broadcast(&w->idle);
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

struct auth_worker *auth_worker_new(void)
{
	struct auth_worker *w = calloc(1, sizeof *w);
	int fds[2];

	if (!w)
		return NULL;
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		free(w);
		return NULL;
	}
	w->notify_rd = fds[0];
	w->notify_wr = fds[1];
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	pthread_cond_init(&w->idle, NULL);
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
		close(fds[0]);
		close(fds[1]);
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->wake);
		pthread_cond_destroy(&w->idle);
		free(w);
		return NULL;
	}
	return w;
}

int auth_worker_fd(const struct auth_worker *w)
{
	return w->notify_rd;
}

static int submit(struct auth_worker *w, enum job_type type, struct auth_session *as,
    const char *mech, const char *text, auth_done_fn *done, void *arg)
{
	struct job *j = calloc(1, sizeof *j);

	if (!j || (mech && !(j->mech = strdup(mech))) || (text && !(j->text = strdup(text)))) {
		if (j)
			job_free(j);
		return -1;
	}
	j->type = type;
	j->as = as;
	j->has_text = text != NULL;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&w->lock);
	list_push(&w->queued, j);
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

int auth_worker_start(struct auth_worker *w, struct auth_session *as, const char *mech,
    const char *initial, auth_done_fn *done, void *arg)
{
	return submit(w, JOB_START, as, mech, initial, done, arg);
}

int auth_worker_step(struct auth_worker *w, struct auth_session *as, const char *response,
    auth_done_fn *done, void *arg)
{
	return submit(w, JOB_STEP, as, NULL, response, done, arg);
}

static void cancel_in(struct job_list *l, const struct auth_session *as)
{
	for (struct job *j = l->head; j; j = j->next)
		if (j->as == as)
			j->cancelled = 1;
}

void auth_worker_release(struct auth_worker *w, struct auth_session *as)
{
	if (!as)
		return;
	pthread_mutex_lock(&w->lock);
	cancel_in(&w->queued, as);
	cancel_in(&w->done, as);
	if (w->running && w->running->as == as)
		w->running->cancelled = 1;
	pthread_mutex_unlock(&w->lock);
	/* Out of memory here would leak one session, which beats disposing it under the worker. */
	(void)submit(w, JOB_FREE, as, NULL, NULL, NULL, NULL);
}

void auth_worker_dispatch(struct auth_worker *w)
{
	char buf[256];
	ssize_t n;

	/* Drain first: a job finishing after this still leaves the pipe readable. */
	while ((n = read(w->notify_rd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
		;
	pthread_mutex_lock(&w->lock);
	struct job_list done = w->done;
	w->done.head = w->done.tail = NULL;
	pthread_mutex_unlock(&w->lock);

	/* Cancellation happens on this thread too, so a callback may release later jobs. */
	struct job *j;
	while ((j = list_pop(&done))) {
		pthread_mutex_lock(&w->lock);
		int cancelled = j->cancelled;
		pthread_mutex_unlock(&w->lock);
		if (!cancelled)
			j->done(j->arg, j->result, j->challenge);
		job_free(j);
	}
}

int auth_worker_free(struct auth_worker *w, unsigned wait_ms)
{
	struct timespec until;
	int finished;

	if (!w)
		return 0;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += wait_ms / 1000;
	until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->lock);
	w->stop = 1;
	pthread_cond_signal(&w->wake);
	while (!w->finished)
		if (pthread_cond_timedwait(&w->idle, &w->lock, &until) == ETIMEDOUT)
			break;
	finished = w->finished;
	pthread_mutex_unlock(&w->lock);
	if (!finished)
		return -1;	/* stuck in a backend: left running, the process is exiting */
	pthread_join(w->thread, NULL);
	struct job *j;
	while ((j = list_pop(&w->done)))
		job_free(j);
	close(w->notify_rd);
	close(w->notify_wr);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->wake);
	pthread_cond_destroy(&w->idle);
	free(w);
	return 0;
}
