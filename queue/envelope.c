/*
 * envelope — struct queue_envelope's constructor, destructor and recipient
 * list.  An envelope owns every string it points to.
 */
#include "queue/record.h"

#include <stdlib.h>
#include <string.h>

struct queue_envelope *queue_envelope_new(void)
{
	return calloc(1, sizeof(struct queue_envelope));
}

void queue_envelope_free(struct queue_envelope *env)
{
	if (!env)
		return;
	free(env->sender);
	free(env->envid);
	free(env->client_addr);
	free(env->helo);
	free(env->auth_user);
	for (size_t i = 0; i < env->nrcpts; i++)
		queue_rcpt_clear(&env->rcpts[i]);
	free(env->rcpts);
	for (size_t i = 0; i < env->nattempts; i++)
		queue_attempt_clear(&env->attempts[i]);
	free(env->attempts);
	free(env);
}

void queue_attempt_clear(struct queue_attempt *a)
{
	free(a->status);
	free(a->upstream);
	free(a->relay);
	free(a->dsn);
	free(a->reply);
}

/* A copy of s (NULL stays NULL); 0, or -1 when out of memory. */
static int copy(char **dst, const char *s)
{
	*dst = s ? strdup(s) : NULL;
	return s && !*dst ? -1 : 0;
}

int queue_envelope_add_attempt(struct queue_envelope *env, const struct queue_attempt *a)
{
	struct queue_attempt c = { .rcpt = a->rcpt, .time = a->time };

	if (copy(&c.status, a->status) < 0 || copy(&c.upstream, a->upstream) < 0 ||
	    copy(&c.relay, a->relay) < 0 || copy(&c.dsn, a->dsn) < 0 ||
	    copy(&c.reply, a->reply) < 0) {
		queue_attempt_clear(&c);
		return -1;
	}
	struct queue_attempt *p = reallocarray(env->attempts, env->nattempts + 1, sizeof *p);
	if (!p) {
		queue_attempt_clear(&c);
		return -1;
	}
	env->attempts = p;
	env->attempts[env->nattempts++] = c;
	return 0;
}

int queue_envelope_add_rcpt(struct queue_envelope *env, const char *addr,
    const char *orcpt, unsigned notify)
{
	struct queue_rcpt r = { .notify = notify, .state = QUEUE_RCPT_PENDING };

	if (!(r.addr = strdup(addr)) || (orcpt && !(r.orcpt = strdup(orcpt)))) {
		free(r.addr);
		return -1;
	}
	/* Grown one at a time: a message has a handful of recipients, SMTP caps them. */
	struct queue_rcpt *p = reallocarray(env->rcpts, env->nrcpts + 1, sizeof *p);
	if (!p) {
		queue_rcpt_clear(&r);
		return -1;
	}
	env->rcpts = p;
	env->rcpts[env->nrcpts++] = r;
	return 0;
}
