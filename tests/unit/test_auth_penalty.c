/* test_auth_penalty — failed logins slow down the address they come from, and age out. */
#include "auth/auth.h"
#include "tests/unit/check.h"

static void test_delay_grows_and_is_capped(void)
{
	struct auth_penalty *p = auth_penalty_new();
	time_t t = 1000000;
	unsigned d0 = auth_penalty_delay_ms(p, "192.0.2.1", t);
	CHECK(d0 >= 100 && d0 < 1000);
	for (int i = 0; i < 5; i++)
		auth_penalty_failed(p, "192.0.2.1", t);
	CHECK(auth_penalty_failures(p, "192.0.2.1", t) == 5);
	unsigned d5 = auth_penalty_delay_ms(p, "192.0.2.1", t);
	CHECK(d5 >= 5100 && d5 < 6000);
	for (int i = 0; i < 50; i++)
		auth_penalty_failed(p, "192.0.2.1", t);
	CHECK(auth_penalty_delay_ms(p, "192.0.2.1", t) < 11000);
	/* Another address is not punished for it. */
	CHECK(auth_penalty_delay_ms(p, "192.0.2.2", t) < 1000);
	auth_penalty_free(p);
}

static void test_forgotten_after_a_while(void)
{
	struct auth_penalty *p = auth_penalty_new();
	auth_penalty_failed(p, "2001:db8::1", 5000);
	auth_penalty_failed(p, "2001:db8::1", 5000);
	CHECK(auth_penalty_failures(p, "2001:db8::1", 5000 + 60) == 2);
	CHECK(auth_penalty_failures(p, "2001:db8::1", 5000 + 16 * 60) == 0);
	auth_penalty_free(p);
}

static void test_table_full_evicts_the_stalest(void)
{
	struct auth_penalty *p = auth_penalty_new();
	char addr[32];
	for (int i = 0; i < 3000; i++) {
		snprintf(addr, sizeof addr, "10.0.%d.%d", i / 256, i % 256);
		auth_penalty_failed(p, addr, 7000 + i / 100);
	}
	CHECK(auth_penalty_failures(p, "10.0.11.183", 7000 + 29) == 1);	/* the newest */
	CHECK(auth_penalty_failures(p, "10.0.0.0", 7000 + 29) == 0);	/* evicted */
	auth_penalty_free(p);
}

int main(void)
{
	TEST_CASE(test_delay_grows_and_is_capped);
	TEST_CASE(test_forgotten_after_a_while);
	TEST_CASE(test_table_full_evicts_the_stalest);
	return check_exit();
}
