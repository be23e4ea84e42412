/*
 * conf_helpers — what the config unit tests share.
 */
#ifndef RELAYD_TEST_CONF_HELPERS_H
#define RELAYD_TEST_CONF_HELPERS_H

#include <stdio.h>

#include "conf/conf.h"
#include "tests/unit/check.h"

/* Parse text that must be valid: the config, or NULL after a failed CHECK with the error. */
static inline struct config *parse_ok(const char *name, const char *text)
{
	char err[256];
	struct config *c = conf_parse(name, text, err, sizeof err);

	CHECK(c != NULL);
	if (!c)
		fprintf(stderr, "  %s\n", err);
	return c;
}

#endif
