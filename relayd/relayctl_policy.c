/*
 * relayctl_policy — `relayctl policy USER|ADDRESS`: which sender rules and
 * rate limits apply to a login or a client address, and how much it sent in
 * each window.  The running relayd answers over its control socket, from the
 * configuration it runs with and its counters (auth/policy.c writes the
 * text); when relayd does not run, the same from the configuration file,
 * without counts.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "relayd/relayctl.h"

#define POLICY_ANSWER_MAX (1024 * 1024)	/* far more than relayd ever writes */
#define POLICY_WHO_MAX	  255

/* A login name or an address: one printable word (the daemon checks again). */
static int valid_who(const char *who)
{
	size_t len = strlen(who);

	if (len == 0 || len > POLICY_WHO_MAX)
		return 0;
	for (const unsigned char *c = (const unsigned char *)who; *c; c++)
		if (*c <= ' ' || *c >= 0x7f)
			return 0;
	return 1;
}

/* Print the answer's text; 0, or 1 after saying why on stderr. */
static int print_answer(const char *path, char *answer, size_t len)
{
	if (len >= 3 && memcmp(answer, "ok\n", 3) == 0) {
		/* Ours to print as it came, but never a terminal's control character. */
		for (size_t i = 3; i < len; i++) {
			unsigned char c = (unsigned char)answer[i];
			putchar(c == '\n' || c == '\t' || (c >= ' ' && c != 0x7f) ? c : '?');
		}
		return 0;
	}
	answer[strcspn(answer, "\n")] = '\0';
	fprintf(stderr, "relayctl: %s: %s\n", path, len ? answer : "no answer from relayd");
	return 1;
}

int relayctl_policy(const struct config *conf, const char *who)
{
	char path[PATH_MAX];

	if (!valid_who(who)) {
		fprintf(stderr, "relayctl: policy: \"%s\" is not a login name or an IP address\n",
		    who);
		return 2;
	}
	int fd = relayctl_control_open(conf, path, sizeof path);
	if (fd < 0) {
		fprintf(stderr, "relayctl: %s: %s: relayd is not running (or relayctl is not "
		    "relayd's user or root); the rules of %s follow, without counts\n", path,
		    strerror(errno), conf->path);
		return auth_policy_describe(stdout, conf, NULL, who, 0) < 0 ? 2 : 0;
	}
	char line[POLICY_WHO_MAX + 16], *answer = malloc(POLICY_ANSWER_MAX + 1);
	size_t used = 0;
	ssize_t n;
	snprintf(line, sizeof line, "policy %s\n", who);
	if (!answer || write(fd, line, strlen(line)) != (ssize_t)strlen(line)) {
		fprintf(stderr, "relayctl: %s: %s\n", path, answer ? strerror(errno) :
		    "out of memory");
		free(answer);
		close(fd);
		return 1;
	}
	while (used < POLICY_ANSWER_MAX &&
	    (n = read(fd, answer + used, POLICY_ANSWER_MAX - used)) > 0)
		used += (size_t)n;
	close(fd);
	answer[used] = '\0';
	int rc = print_answer(path, answer, used);
	free(answer);
	return rc;
}
