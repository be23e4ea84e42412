/*
 * penalty — remembers failed logins per client address, so that repeated
 * failures from one address wait longer and longer (issue: brute force).  A
 * small fixed table: an address not seen for PENALTY_FORGET seconds is
 * forgotten, and when the table is full the stalest entry makes room, so a
 * flood of addresses costs memory no more than PENALTY_SLOTS entries.
 */
#include "auth/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PENALTY_SLOTS  1024
#define PENALTY_FORGET (15 * 60)
#define PENALTY_STEP_MS 1000		/* added per earlier failure */
#define PENALTY_MAX_MS  (10 * 1000)

struct penalty_slot {
	char addr[64];
	unsigned failures;
	time_t last;
};

struct auth_penalty {
	struct penalty_slot slots[PENALTY_SLOTS];
};

struct auth_penalty *auth_penalty_new(void)
{
	return calloc(1, sizeof(struct auth_penalty));
}

void auth_penalty_free(struct auth_penalty *p)
{
	free(p);
}

/* The slot of addr; with create, a new one (an empty slot, else the stalest). */
static struct penalty_slot *find(struct auth_penalty *p, const char *addr, time_t now,
    int create)
{
	struct penalty_slot *victim = NULL;
	for (size_t i = 0; i < PENALTY_SLOTS; i++) {
		struct penalty_slot *s = &p->slots[i];
		if (s->addr[0] && now - s->last > PENALTY_FORGET)
			s->addr[0] = '\0';
		if (s->addr[0] && strcmp(s->addr, addr) == 0)
			return s;
		if (!victim || (victim->addr[0] && (!s->addr[0] || s->last < victim->last)))
			victim = s;
	}
	if (!create)
		return NULL;
	memset(victim, 0, sizeof *victim);
	snprintf(victim->addr, sizeof victim->addr, "%s", addr);
	return victim;
}

unsigned auth_penalty_delay_ms(struct auth_penalty *p, const char *addr, time_t now)
{
	/* A random part (as OpenSMTPD does) so timing tells nothing, then the penalty. */
	unsigned ms = 100 + (unsigned)(random() % 900);
	struct penalty_slot *s = find(p, addr, now, 0);
	if (s) {
		unsigned extra = s->failures * PENALTY_STEP_MS;
		ms += extra > PENALTY_MAX_MS ? PENALTY_MAX_MS : extra;
	}
	return ms;
}

void auth_penalty_failed(struct auth_penalty *p, const char *addr, time_t now)
{
	struct penalty_slot *s = find(p, addr, now, 1);
	s->failures++;
	s->last = now;
}

unsigned auth_penalty_failures(struct auth_penalty *p, const char *addr, time_t now)
{
	struct penalty_slot *s = find(p, addr, now, 0);
	return s ? s->failures : 0;
}
