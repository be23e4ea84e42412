/*
 * check.h — the unit tests' whole framework: CHECK() records a failure with its
 * place, TEST_CASE() prints "PASS name" or "FAIL name" (tests/run counts those
 * lines), and check_exit() makes the program's status tell the same.
 */
#ifndef RELAYD_CHECK_H
#define RELAYD_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_case_failed;
static int check_any_failed;

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
		check_case_failed = 1; \
	} \
} while (0)

#define CHECK_STR(got, want) do { \
	const char *check_g_ = (got), *check_w_ = (want); \
	if (!check_g_ || !check_w_ ? check_g_ != check_w_ : strcmp(check_g_, check_w_) != 0) { \
		fprintf(stderr, "  %s:%d: %s is \"%s\", want \"%s\"\n", __FILE__, __LINE__, \
		    #got, check_g_ ? check_g_ : "(null)", check_w_ ? check_w_ : "(null)"); \
		check_case_failed = 1; \
	} \
} while (0)

/* Run one test function and report it under its own name. */
#define TEST_CASE(fn) do { \
	check_case_failed = 0; \
	fn(); \
	printf("%s %s\n", check_case_failed ? "FAIL" : "PASS", #fn); \
	fflush(stdout); \
	if (check_case_failed) check_any_failed = 1; \
} while (0)

static inline int check_exit(void) { return check_any_failed ? 1 : 0; }

#endif
