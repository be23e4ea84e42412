/*
 * rate — counts events per key (a login, a client address) in a sliding
 * window, for the rate limits (auth/limits.c).  Pure: the caller passes the
 * time, so tests drive it with a fake clock.
 *
 * Each key keeps a ring of RATE_SLOTS counters, one per granule of
 * window/60 seconds (a second for N/minute, a minute for N/hour): the
 * current granule and the 60 before it.  An event therefore counts for at
 * least a whole window and at most one granule more, so no window of the
 * given length ever holds more events than the limit, wherever it starts:
 * a burst at the turn of the hour cannot double the allowance as a clock-hour
 * bucket would.  The cost is fixed, 61 counters a key, whatever the limit;
 * timestamps would cost one per event.
 *
 * Events are reserved first (a transaction is under way), then committed
 * (counted at the time of the commit) or released (nothing happened), so
 * that parallel transactions cannot overshoot and an aborted one costs
 * nothing.
 *
 * Memory is bounded: at most max_keys keys.  Keys sit in a tree for lookup
 * and in a list by last use (a reservation or an event); a key whose events
 * all left the window and that holds no reservation is idle and dropped
 * from the old end, or at once when its last reservation is given back
 * without an event; when the table is still full the least recently used
 * key makes room (its counts are forgotten, which auth_rate_evicted()
 * counts for the log).
 */
#include "auth/auth.h"

#include <search.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RATE_GRANULES 60		/* a window is this many granules */
#define RATE_SLOTS (RATE_GRANULES + 1)	/* and the current granule */
#define RATE_SCAN 8			/* entries looked at for one free of reservations */

struct rate_entry {
	struct rate_entry *newer, *older;	/* the list by last use */
	long long head;			/* the granule number of the newest slot */
	uint64_t total;			/* the sum of the slots */
	unsigned reserved;
	uint32_t slot[RATE_SLOTS];	/* slot[g % RATE_SLOTS]: events in granule g */
	char key[];
};

struct auth_rate {
	unsigned window, granule;
	size_t max_keys, nkeys;
	void *tree;			/* tsearch() tree of struct rate_entry * by key */
	struct rate_entry *newest, *oldest;
	unsigned long long evicted;
};

/* The tree holds each entry's key; the entry is around it. */
static int key_compare(const void *a, const void *b)
{
	return strcmp(a, b);
}

static struct rate_entry *entry_of(const char *key)
{
	return (struct rate_entry *)(void *)(key - offsetof(struct rate_entry, key));
}

struct auth_rate *auth_rate_new(unsigned window, size_t max_keys)
{
	struct auth_rate *r = calloc(1, sizeof *r);

	if (!r)
		return NULL;
	r->window = window < RATE_GRANULES ? RATE_GRANULES : window;
	r->granule = r->window / RATE_GRANULES;
	r->max_keys = max_keys ? max_keys : 1;
	return r;
}

static void unlink_entry(struct auth_rate *r, struct rate_entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		r->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		r->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void push_newest(struct auth_rate *r, struct rate_entry *e)
{
	e->older = r->newest;
	e->newer = NULL;
	if (r->newest)
		r->newest->newer = e;
	r->newest = e;
	if (!r->oldest)
		r->oldest = e;
}

static void drop_entry(struct auth_rate *r, struct rate_entry *e)
{
	unlink_entry(r, e);
	tdelete(e->key, &r->tree, key_compare);
	r->nkeys--;
	free(e);
}

void auth_rate_free(struct auth_rate *r)
{
	if (!r)
		return;
	while (r->oldest)
		drop_entry(r, r->oldest);
	free(r);
}

static long long granule_of(const struct auth_rate *r, time_t t)
{
	return t < 0 ? 0 : (long long)t / r->granule;
}

/*
 * Bring the ring to now: granules that left the window are emptied.  A clock
 * that went back (never with CLOCK_MONOTONIC) leaves the ring as it is, so
 * its counts only last longer.
 */
static void advance(const struct auth_rate *r, struct rate_entry *e, time_t now)
{
	long long cur = granule_of(r, now);

	if (cur <= e->head)
		return;
	if (cur - e->head >= RATE_SLOTS) {
		memset(e->slot, 0, sizeof e->slot);
		e->total = 0;
	} else {
		for (long long g = e->head + 1; g <= cur; g++) {
			e->total -= e->slot[g % RATE_SLOTS];
			e->slot[g % RATE_SLOTS] = 0;
		}
	}
	e->head = cur;
}

static int idle(const struct auth_rate *r, struct rate_entry *e, time_t now)
{
	if (e->reserved)
		return 0;
	advance(r, e, now);
	return e->total == 0;
}

/* Drop idle entries from the old end of the list. */
static void expire(struct auth_rate *r, time_t now)
{
	while (r->oldest && idle(r, r->oldest, now))
		drop_entry(r, r->oldest);
}

/* A key longer than AUTH_RATE_KEY_MAX - 1 bytes counts as its beginning. */
static const char *clip(const char *key, char *buf)
{
	size_t len = strnlen(key, AUTH_RATE_KEY_MAX);

	if (len < AUTH_RATE_KEY_MAX)
		return key;
	memcpy(buf, key, AUTH_RATE_KEY_MAX - 1);
	buf[AUTH_RATE_KEY_MAX - 1] = '\0';
	return buf;
}

static struct rate_entry *find(struct auth_rate *r, const char *key)
{
	char buf[AUTH_RATE_KEY_MAX];
	void *found = tfind(clip(key, buf), &r->tree, key_compare);
	return found ? entry_of(*(const char **)found) : NULL;
}

/* The least recently used entry that holds no reservation (of the last few), else the oldest. */
static struct rate_entry *victim(struct auth_rate *r)
{
	struct rate_entry *e = r->oldest;
	for (int i = 0; e && i < RATE_SCAN; i++, e = e->newer)
		if (!e->reserved)
			return e;
	return r->oldest;
}

/* key's entry, made (room made first) when there is none; NULL only without memory. */
static struct rate_entry *get(struct auth_rate *r, const char *key, time_t now)
{
	struct rate_entry *e = find(r, key);

	if (e)
		return e;
	if (r->nkeys >= r->max_keys) {
		drop_entry(r, victim(r));
		r->evicted++;
	}
	char buf[AUTH_RATE_KEY_MAX];
	key = clip(key, buf);
	size_t len = strlen(key);
	if (!(e = calloc(1, sizeof *e + len + 1)))
		return NULL;
	memcpy(e->key, key, len + 1);
	e->head = granule_of(r, now);
	void *slot = tsearch(e->key, &r->tree, key_compare);
	if (!slot) {
		free(e);
		return NULL;
	}
	push_newest(r, e);
	r->nkeys++;
	return e;
}

/* In use now: to the new end of the list. */
static void touch(struct auth_rate *r, struct rate_entry *e)
{
	unlink_entry(r, e);
	push_newest(r, e);
}

unsigned auth_rate_count(struct auth_rate *r, const char *key, time_t now)
{
	expire(r, now);
	struct rate_entry *e = find(r, key);
	if (!e)
		return 0;
	advance(r, e, now);
	return e->total > UINT32_MAX ? UINT32_MAX : (unsigned)e->total;
}

unsigned auth_rate_reserved(struct auth_rate *r, const char *key)
{
	struct rate_entry *e = find(r, key);
	return e ? e->reserved : 0;
}

int auth_rate_reserve(struct auth_rate *r, const char *key, unsigned limit, time_t now)
{
	expire(r, now);
	struct rate_entry *e = find(r, key);
	if (e) {
		advance(r, e, now);
		if (limit && e->total + e->reserved >= limit)
			return 0;
	}
	if (!e && !(e = get(r, key, now)))
		return 1;	/* out of memory: let the mail through rather than stall */
	if (e->reserved < UINT32_MAX)
		e->reserved++;
	touch(r, e);
	return 1;
}

void auth_rate_release(struct auth_rate *r, const char *key, unsigned n, time_t now)
{
	struct rate_entry *e = find(r, key);
	if (!e)
		return;		/* evicted meanwhile: nothing is held any more */
	e->reserved -= n < e->reserved ? n : e->reserved;
	/*
	 * Nothing happened and nothing is left: gone at once, wherever it sits
	 * in the list.  Clients that only ever start transactions (MAIL, RSET)
	 * from many addresses thus leave no entries behind that would crowd out
	 * the counts of those that send.
	 */
	if (idle(r, e, now))
		drop_entry(r, e);
	expire(r, now);
}

void auth_rate_commit(struct auth_rate *r, const char *key, unsigned n, time_t now)
{
	expire(r, now);
	struct rate_entry *e = get(r, key, now);
	if (!e)
		return;
	advance(r, e, now);
	e->reserved -= n < e->reserved ? n : e->reserved;
	uint32_t *slot = &e->slot[e->head % RATE_SLOTS];
	uint32_t add = UINT32_MAX - *slot < n ? UINT32_MAX - *slot : n;
	*slot += add;
	e->total += add;
	touch(r, e);
}

unsigned auth_rate_wait(struct auth_rate *r, const char *key, time_t now)
{
	struct rate_entry *e = find(r, key);
	if (!e)
		return 0;
	advance(r, e, now);
	for (long long g = e->head - RATE_GRANULES; g <= e->head; g++) {
		if (g < 0 || e->slot[g % RATE_SLOTS] == 0)
			continue;
		/* granule g leaves the window when granule g + RATE_SLOTS begins */
		long long leaves = (g + RATE_SLOTS) * (long long)r->granule;
		return leaves > now ? (unsigned)(leaves - now) : 0;
	}
	return 0;
}

/*
 * A new window length (a reload changed N/minute into N/hour): what each key
 * counted that may still lie within the new window is kept, as if it had all
 * happened now.  That never forgets an event the new window should see; it
 * may hold some for up to one new window longer than they would have been.
 */
void auth_rate_set_window(struct auth_rate *r, unsigned window, time_t now)
{
	if (window < RATE_GRANULES)
		window = RATE_GRANULES;
	if (window == r->window)
		return;
	unsigned old = r->granule;
	r->window = window;
	r->granule = window / RATE_GRANULES;
	long long from = (long long)now - window - r->granule;	/* the new window's reach */
	for (struct rate_entry *e = r->newest; e; e = e->older) {
		uint64_t kept = 0;
		for (long long g = e->head - RATE_GRANULES; g <= e->head; g++)
			if (g >= 0 && (g + 1) * (long long)old > from)
				kept += e->slot[g % RATE_SLOTS];
		memset(e->slot, 0, sizeof e->slot);
		e->head = granule_of(r, now);
		e->slot[e->head % RATE_SLOTS] = kept > UINT32_MAX ? UINT32_MAX : (uint32_t)kept;
		e->total = e->slot[e->head % RATE_SLOTS];
	}
}

unsigned auth_rate_window(const struct auth_rate *r)
{
	return r->window;
}

size_t auth_rate_keys(struct auth_rate *r, time_t now)
{
	expire(r, now);
	return r->nkeys;
}

unsigned long long auth_rate_evicted(const struct auth_rate *r)
{
	return r->evicted;
}
