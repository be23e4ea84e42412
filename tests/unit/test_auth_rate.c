/*
 * test_auth_rate — the sliding window behind the rate limits, on a fake
 * clock: an event counts for a whole window (and at most a granule more),
 * the turn of the hour gives no second allowance, reservations hold room
 * and cost nothing when released, idle keys go, the number of keys is
 * bounded, and a reload that changes the unit keeps what still counts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "tests/unit/check.h"

#define HOUR 3600
#define T0 ((time_t)1000 * HOUR)	/* an hour's turn: T0 % 3600 == 0 */

/* n events for key at now, each reserved (under limit) and then committed. */
static unsigned events(struct auth_rate *r, const char *key, unsigned n, unsigned limit,
    time_t now)
{
	unsigned sent = 0;
	for (unsigned i = 0; i < n; i++) {
		if (!auth_rate_reserve(r, key, limit, now))
			break;
		auth_rate_commit(r, key, 1, now);
		sent++;
	}
	return sent;
}

static void test_an_event_counts_for_a_whole_window(void)
{
	struct auth_rate *r = auth_rate_new(HOUR, 100);
	time_t t = T0 + 1234;			/* inside the granule [T0+1200, T0+1260) */

	CHECK(auth_rate_count(r, "bob", t) == 0);
	CHECK(events(r, "bob", 3, 0, t) == 3);
	CHECK(auth_rate_count(r, "bob", t) == 3);
	CHECK(auth_rate_count(r, "alice", t) == 0);
	CHECK(auth_rate_count(r, "bob", t + HOUR) == 3);	/* a whole hour later: still */
	CHECK(auth_rate_count(r, "bob", t + HOUR + 25) == 3);	/* until its granule is out */
	CHECK(auth_rate_count(r, "bob", t + HOUR + 26) == 0);	/* T0+1200 + 61 minutes */
	auth_rate_free(r);
}

static void test_the_turn_of_the_hour_gives_no_second_allowance(void)
{
	struct auth_rate *r = auth_rate_new(HOUR, 100);

	/* 100/hour used up in the last second before the hour turns… */
	CHECK(events(r, "bob", 100, 100, T0 - 1) == 100);
	CHECK(events(r, "bob", 1, 100, T0 - 1) == 0);
	/* …a clock-hour bucket would start afresh now; the sliding window does not. */
	CHECK(events(r, "bob", 1, 100, T0 + 1) == 0);
	CHECK(events(r, "bob", 1, 100, T0 + 30 * 60) == 0);
	CHECK(events(r, "bob", 1, 100, T0 - 1 + HOUR) == 0);
	/* Once an hour (and the granule) has passed since the burst, it opens again. */
	CHECK(auth_rate_wait(r, "bob", T0 - 1 + HOUR) == 1);
	CHECK(events(r, "bob", 100, 100, T0 + HOUR) == 100);
	auth_rate_free(r);
}

static void test_events_leave_one_granule_at_a_time(void)
{
	struct auth_rate *r = auth_rate_new(HOUR, 100);

	CHECK(events(r, "bob", 4, 10, T0) == 4);
	CHECK(events(r, "bob", 6, 10, T0 + 1800) == 6);
	CHECK(events(r, "bob", 1, 10, T0 + 3000) == 0);
	CHECK(auth_rate_wait(r, "bob", T0 + 3000) == HOUR + 60 - 3000);
	/* The first four leave; the last six still count. */
	CHECK(auth_rate_count(r, "bob", T0 + HOUR + 60) == 6);
	CHECK(events(r, "bob", 5, 10, T0 + HOUR + 60) == 4);
	CHECK(auth_rate_count(r, "bob", T0 + 1800 + HOUR + 60) == 4);
	auth_rate_free(r);
}

static void test_per_minute_has_one_second_granules(void)
{
	struct auth_rate *r = auth_rate_new(60, 100);

	CHECK(auth_rate_window(r) == 60);
	CHECK(events(r, "10.0.0.1", 2, 2, T0 + 10) == 2);
	CHECK(events(r, "10.0.0.1", 1, 2, T0 + 69) == 0);
	CHECK(auth_rate_wait(r, "10.0.0.1", T0 + 69) == 2);
	CHECK(events(r, "10.0.0.1", 1, 2, T0 + 70) == 0);
	CHECK(events(r, "10.0.0.1", 1, 2, T0 + 71) == 1);
	auth_rate_free(r);
}

static void test_reservations_hold_room_and_cost_nothing_when_released(void)
{
	struct auth_rate *r = auth_rate_new(HOUR, 100);

	CHECK(auth_rate_reserve(r, "bob", 2, T0) == 1);
	CHECK(auth_rate_reserve(r, "bob", 2, T0) == 1);
	CHECK(auth_rate_reserved(r, "bob") == 2);
	CHECK(auth_rate_reserve(r, "bob", 2, T0) == 0);	/* two transactions hold the room */
	auth_rate_release(r, "bob", 1, T0 + 5);		/* one aborted: RSET */
	CHECK(auth_rate_count(r, "bob", T0 + 5) == 0);
	CHECK(auth_rate_reserve(r, "bob", 2, T0 + 5) == 1);
	auth_rate_commit(r, "bob", 1, T0 + 6);
	CHECK(auth_rate_count(r, "bob", T0 + 6) == 1);
	CHECK(auth_rate_reserved(r, "bob") == 1);
	auth_rate_release(r, "bob", 5, T0 + 7);		/* more than held: only what is held */
	CHECK(auth_rate_reserved(r, "bob") == 0);
	CHECK(auth_rate_count(r, "bob", T0 + 7) == 1);
	/* Counting many at once (a message's recipients), and limit 0 is no limit. */
	auth_rate_commit(r, "bob", 500, T0 + 8);
	CHECK(auth_rate_count(r, "bob", T0 + 8) == 501);
	CHECK(auth_rate_reserve(r, "bob", 0, T0 + 8) == 1);
	auth_rate_free(r);
}

static void test_idle_keys_expire(void)
{
	struct auth_rate *r = auth_rate_new(HOUR, 100);

	events(r, "a", 1, 0, T0);
	events(r, "b", 1, 0, T0 + 600);
	CHECK(auth_rate_reserve(r, "c", 0, T0));	/* in a transaction: never idle */
	CHECK(auth_rate_keys(r, T0 + 600) == 3);
	CHECK(auth_rate_keys(r, T0 + HOUR + 60) == 2);	/* a's event left the window */
	CHECK(auth_rate_keys(r, T0 + 600 + HOUR + 60) == 1);
	auth_rate_release(r, "c", 1, T0 + 600 + HOUR + 60);
	CHECK(auth_rate_keys(r, T0 + 600 + HOUR + 60) == 0);
	/* A key whose reservation was given back without an event is idle at once. */
	CHECK(auth_rate_reserve(r, "d", 0, T0 + 5 * HOUR));
	auth_rate_release(r, "d", 1, T0 + 5 * HOUR);
	CHECK(auth_rate_keys(r, T0 + 5 * HOUR) == 0);
	auth_rate_free(r);
}

static void test_the_number_of_keys_is_bounded(void)
{
	struct auth_rate *r = auth_rate_new(HOUR, 100);
	char key[32];

	CHECK(auth_rate_reserve(r, "held", 0, T0));	/* the oldest, but in a transaction */
	for (int i = 0; i < 150; i++) {
		snprintf(key, sizeof key, "10.1.%d.%d", i / 256, i % 256);
		events(r, key, 1, 0, T0 + i);
	}
	CHECK(auth_rate_keys(r, T0 + 150) == 100);
	CHECK(auth_rate_evicted(r) == 51);
	CHECK(auth_rate_count(r, "10.1.0.149", T0 + 150) == 1);	/* the newest stay */
	CHECK(auth_rate_count(r, "10.1.0.51", T0 + 150) == 1);
	CHECK(auth_rate_count(r, "10.1.0.50", T0 + 150) == 0);	/* the least recent went */
	CHECK(auth_rate_reserved(r, "held") == 1);		/* passed over while others could go */
	auth_rate_free(r);
}

static void test_transactions_given_up_leave_nothing_behind(void)
{
	struct auth_rate *r = auth_rate_new(HOUR, 100);
	char key[32];

	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof key, "sender%d", i);
		events(r, key, 1, 0, T0);
	}
	/* Thousands of addresses that only start transactions (MAIL, then RSET)… */
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof key, "2001:db8::%x", i);
		CHECK(auth_rate_reserve(r, key, 0, T0 + 10));
		auth_rate_release(r, key, 1, T0 + 10);
	}
	/* …take no room from those that send. */
	CHECK(auth_rate_keys(r, T0 + 10) == 50);
	CHECK(auth_rate_evicted(r) == 0);
	CHECK(auth_rate_count(r, "sender0", T0 + 10) == 1);
	auth_rate_free(r);
}

static void test_long_keys_count_as_their_beginning(void)
{
	struct auth_rate *r = auth_rate_new(HOUR, 10);
	char a[1000], b[1000];

	memset(a, 'x', sizeof a - 1);
	a[sizeof a - 1] = '\0';
	memcpy(b, a, sizeof b);
	b[sizeof b - 2] = 'y';
	events(r, a, 2, 0, T0);
	events(r, b, 1, 0, T0);
	CHECK(auth_rate_count(r, a, T0) == 3);
	CHECK(auth_rate_keys(r, T0) == 1);
	auth_rate_free(r);
}

static void test_a_new_unit_keeps_what_still_counts(void)
{
	struct auth_rate *r = auth_rate_new(HOUR, 10);

	/* Per hour, then per minute: events of the last minute or two stay, as if sent now. */
	events(r, "old", 5, 0, T0);
	events(r, "new", 3, 0, T0 + 590);
	auth_rate_set_window(r, 60, T0 + 600);
	CHECK(auth_rate_window(r) == 60);
	CHECK(auth_rate_count(r, "old", T0 + 600) == 0);	/* ten minutes old */
	CHECK(auth_rate_count(r, "new", T0 + 600) == 3);
	CHECK(auth_rate_count(r, "new", T0 + 660) == 3);
	CHECK(auth_rate_count(r, "new", T0 + 661) == 0);
	/* Per minute, then per hour: everything the minute saw. */
	events(r, "m", 2, 0, T0 + 700);
	events(r, "m", 1, 0, T0 + 730);
	auth_rate_set_window(r, HOUR, T0 + 740);
	CHECK(auth_rate_count(r, "m", T0 + 740) == 3);
	CHECK(auth_rate_count(r, "m", T0 + 740 + HOUR) == 3);
	CHECK(auth_rate_count(r, "m", T0 + 720 + HOUR + 60) == 0);
	/* The same unit again changes nothing. */
	events(r, "s", 1, 0, T0 + 800);
	auth_rate_set_window(r, HOUR, T0 + 2000);
	CHECK(auth_rate_count(r, "s", T0 + 800 + HOUR) == 1);
	CHECK(auth_rate_count(r, "s", T0 + 780 + HOUR + 60) == 0);
	auth_rate_free(r);
}

static void test_a_clock_set_back_forgets_nothing(void)
{
	struct auth_rate *r = auth_rate_new(HOUR, 10);

	events(r, "bob", 2, 2, T0 + 500);
	CHECK(events(r, "bob", 1, 2, T0 + 100) == 0);
	CHECK(auth_rate_count(r, "bob", T0) == 2);
	CHECK(auth_rate_count(r, "bob", T0 + 480 + HOUR + 60) == 0);
	auth_rate_free(r);
}

int main(void)
{
	TEST_CASE(test_an_event_counts_for_a_whole_window);
	TEST_CASE(test_the_turn_of_the_hour_gives_no_second_allowance);
	TEST_CASE(test_events_leave_one_granule_at_a_time);
	TEST_CASE(test_per_minute_has_one_second_granules);
	TEST_CASE(test_reservations_hold_room_and_cost_nothing_when_released);
	TEST_CASE(test_idle_keys_expire);
	TEST_CASE(test_the_number_of_keys_is_bounded);
	TEST_CASE(test_transactions_given_up_leave_nothing_behind);
	TEST_CASE(test_long_keys_count_as_their_beginning);
	TEST_CASE(test_a_new_unit_keeps_what_still_counts);
	TEST_CASE(test_a_clock_set_back_forgets_nothing);
	return check_exit();
}
