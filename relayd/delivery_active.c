/*
 * The messages in flight: a list in start order (walked by the few that
 * need them all) and a hash by id, because the scheduler asks of every due
 * schedule entry whether its message is already out — with a thousand in
 * flight a list walk per entry made strcmp relayd's busiest function.
 */
#include <stdint.h>
#include <string.h>

#include "relayd/delivery_internal.h"

/* FNV-1a: ids are short and well spread, nothing here is chosen by a peer. */
static size_t bucket(const char *id)
{
	uint32_t h = 2166136261u;
	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h % DELIVERY_ACTIVE_BUCKETS;
}

void active_add(struct delivery *d, struct delivery_msg *m)
{
	m->next = d->active;
	if (m->next)
		m->next->pprev = &m->next;
	m->pprev = &d->active;
	d->active = m;
	d->nactive++;

	struct delivery_msg **b = &d->active_by_id[bucket(m->id)];
	m->hnext = *b;
	*b = m;
}

void active_del(struct delivery *d, struct delivery_msg *m)
{
	if (!m->pprev)
		return;		/* never added, or gone already */
	*m->pprev = m->next;
	if (m->next)
		m->next->pprev = m->pprev;
	m->next = NULL;
	m->pprev = NULL;
	d->nactive--;

	for (struct delivery_msg **p = &d->active_by_id[bucket(m->id)]; *p; p = &(*p)->hnext)
		if (*p == m) {
			*p = m->hnext;
			break;
		}
	m->hnext = NULL;
}

int active_has(const struct delivery *d, const char *id)
{
	for (const struct delivery_msg *m = d->active_by_id[bucket(id)]; m; m = m->hnext)
		if (strcmp(m->id, id) == 0)
			return 1;
	return 0;
}
