/*
 * quota — max_per_hour and max_per_day of an upstream (a provider's sending
 * limits).  Recipients sent count in fixed windows that start with the
 * first recipient after the last window ended; those out to the upstream
 * and not back count too, so a burst cannot overshoot.  The counts live in
 * the queue's LMDB (written at most once a second, and at stop), so a
 * restart does not reset a day's quota.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "relayd/delivery_internal.h"
#include "relayd/log.h"

#define HOUR 3600
#define DAY 86400

/* A direct child counts in its parent; after a reload, in the new upstream of the name. */
struct upstream *quota_upstream(struct upstream *up)
{
	if (up->parent)
		up = up->parent;
	while (up->successor)
		up = up->successor;
	return up;
}

static int has_quota(const struct upstream *up)
{
	return up->conf->max_per_hour || up->conf->max_per_day;
}

/* A window that has run out starts again (empty) at now. */
static void roll(int64_t *start, uint32_t *count, int64_t len, int64_t now)
{
	if (now >= *start + len || *start > now + len) {	/* also a clock set back */
		*start = now;
		*count = 0;
	}
}

int quota_full(struct upstream *up, int64_t now, int64_t *until, char *why, size_t whylen)
{
	up = quota_upstream(up);
	struct queue_counter *q = &up->quota;
	const struct conf_upstream *u = up->conf;

	if (!has_quota(up))
		return 0;
	roll(&q->hour_start, &q->hour_count, HOUR, now);
	roll(&q->day_start, &q->day_count, DAY, now);
	if (u->max_per_day && q->day_count + up->reserved >= u->max_per_day) {
		*until = q->day_start + DAY;
		snprintf(why, whylen, "upstream %s over its quota (max_per_day %u)", u->name,
		    u->max_per_day);
		return 1;
	}
	if (u->max_per_hour && q->hour_count + up->reserved >= u->max_per_hour) {
		*until = q->hour_start + HOUR;
		snprintf(why, whylen, "upstream %s over its quota (max_per_hour %u)", u->name,
		    u->max_per_hour);
		return 1;
	}
	return 0;
}

static void saved(void *arg, enum queue_status status)
{
	if (status != QUEUE_OK)
		log_warn("upstream %s: cannot record its quota counters", (const char *)arg);
}

static void save_one(struct upstream *up, void *arg)
{
	struct delivery *d = arg;
	if (up->quota_dirty) {
		up->quota_dirty = 0;
		if (queue_counter_put(d->queue, up->conf->name, &up->quota, saved,
		    (void *)up->conf->name) < 0)
			log_warn("upstream %s: cannot record its quota counters: out of memory",
			    up->conf->name);
	}
}

void quota_save(struct delivery *d)
{
	for (size_t i = 0; i < d->nupstreams; i++)
		save_one(&d->upstreams[i], d);
}

void quota_count(struct upstream *up, unsigned sent)
{
	int64_t now = (int64_t)time(NULL);
	struct timeval second = { 1, 0 };

	up = quota_upstream(up);
	if (!has_quota(up) || sent == 0)
		return;
	roll(&up->quota.hour_start, &up->quota.hour_count, HOUR, now);
	roll(&up->quota.day_start, &up->quota.day_count, DAY, now);
	up->quota.hour_count += sent;
	up->quota.day_count += sent;
	up->quota_dirty = 1;
	if (up->d->quota_timer && !evtimer_pending(up->d->quota_timer, NULL))
		evtimer_add(up->d->quota_timer, &second);
}

static void load_one(struct delivery *d, struct upstream *up)
{
	if (has_quota(up) && queue_counter_get(d->queue, up->conf->name, &up->quota) < 0)
		log_warn("upstream %s: cannot read its quota counters: starting from 0",
		    up->conf->name);
}

void quota_load(struct delivery *d)
{
	for (size_t i = 0; i < d->nupstreams; i++)
		load_one(d, &d->upstreams[i]);
}

void quota_load_new(struct delivery *d)
{
	for (size_t i = 0; i < d->nupstreams; i++) {
		struct upstream *up = &d->upstreams[i];
		int inherited = 0;
		for (size_t j = 0; d->retired && j < d->retired->n; j++)
			inherited |= d->retired->ups[j].successor == up;
		if (!inherited && d->queue)
			load_one(d, up);
	}
}

void quota_used(const struct upstream *up, int64_t now, unsigned *hour, unsigned *day)
{
	const struct queue_counter *q = &up->quota;

	*hour = now >= q->hour_start && now < q->hour_start + HOUR ? q->hour_count : 0;
	*day = now >= q->day_start && now < q->day_start + DAY ? q->day_count : 0;
}
