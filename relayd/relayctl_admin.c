/*
 * relayctl_admin — what changes the queue goes through the running relayd:
 * one request per connection to its control socket (relayd/control.c).
 * relayctl_policy.c asks through the same socket.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "relayd/relayctl.h"

int relayctl_control_open(const struct config *conf, char *path, size_t pathlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { 30, 0 };
	int fd;

	if (conf->control)
		snprintf(path, pathlen, "%s", conf->control);
	else
		snprintf(path, pathlen, "%s/control", conf->queue_dir);
	if (strlen(path) >= sizeof sa.sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

/* One request over the control socket; its answer's count, or -1 (said on stderr). */
static long control_request(const struct config *conf, const char *line)
{
	char path[PATH_MAX], answer[512];
	size_t used = 0;
	ssize_t n;
	int fd = relayctl_control_open(conf, path, sizeof path);

	if (fd < 0) {
		fprintf(stderr, "relayctl: %s: %s (is relayd running? relayctl needs relayd's "
		    "user or root)\n", path, strerror(errno));
		return -1;
	}
	if (write(fd, line, strlen(line)) != (ssize_t)strlen(line)) {
		fprintf(stderr, "relayctl: %s: %s\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	while (used < sizeof answer - 1 && (n = read(fd, answer + used,
	    sizeof answer - 1 - used)) > 0)
		used += (size_t)n;
	close(fd);
	answer[used] = '\0';
	answer[strcspn(answer, "\n")] = '\0';
	if (strncmp(answer, "ok ", 3) == 0)
		return strtol(answer + 3, NULL, 10);
	fprintf(stderr, "relayctl: %s\n", answer[0] ? answer : "no answer from relayd");
	return -1;
}

/* flush / hold / release / delete / requeue: per id, or once for --domain or all. */
int relayctl_admin(const struct config *conf, const char *cmd, int argc, char **argv)
{
	const char *op = strcmp(cmd, "requeue") == 0 ? "flush" : cmd;	/* routes apply anew */
	char line[400];
	long total = 0;
	int rc = 0;

	if (argc == 0 && strcmp(op, "flush") != 0)
		relayctl_usage();
	if (argc == 0 || (argc == 2 && strcmp(argv[0], "--domain") == 0)) {
		snprintf(line, sizeof line, "%s%s%s%s\n", op, argc ? " --domain " : "",
		    argc ? argv[1] : "", "");
		total = control_request(conf, line);
		rc = total < 0;
	} else {
		for (int i = 0; i < argc; i++) {
			snprintf(line, sizeof line, "%s %s\n", op, argv[i]);
			long n = control_request(conf, line);
			if (n < 0)
				rc = 1;
			else if (n == 0)
				fprintf(stderr, "relayctl: %s: %s\n", argv[i], strcmp(op, "release") == 0 ?
				    "not queued, or not held" : strcmp(op, "delete") == 0 ? "not queued" :
				    "not queued, or held");
			else
				total += n;
		}
	}
	if (total >= 0)
		printf("%s: %ld message(s)\n", cmd, total);
	return rc;
}

