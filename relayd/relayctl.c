/*
 * relayctl — the admin's tool: options and the command table.  Looking
 * (queue, show, stats, route) reads the queue read-only and works whether
 * relayd runs or not; changing (flush, hold, release, delete, requeue) goes
 * through the running relayd's control socket, and so does asking for the
 * counts behind the rate limits (policy).  See relayctl.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "relayd/relayctl.h"

#define DEFAULT_CONFIG "/etc/relayd/relayd.conf"

void relayctl_usage(void)
{
	fprintf(stderr, "usage: relayctl [-c FILE] queue [--json]\n"
	    "       relayctl [-c FILE] show ID [--body]\n"
	    "       relayctl [-c FILE] stats [--by domain|upstream|sender]\n"
	    "       relayctl [-c FILE] route ADDRESS [--from SENDER]\n"
	    "       relayctl [-c FILE] check UPSTREAM [--from SENDER --to RECIPIENT]\n"
	    "       relayctl [-c FILE] doctor [--ip IP] [--domain DOMAIN]\n"
	    "       relayctl [-c FILE] policy USER|ADDRESS\n"
	    "       relayctl [-c FILE] flush [ID... | --domain DOMAIN]\n"
	    "       relayctl [-c FILE] hold|release|delete|requeue ID... | --domain DOMAIN\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	char err[1024];
	int opt;

	while ((opt = getopt(argc, argv, "+c:")) != -1) {
		if (opt == 'c')
			path = optarg;
		else
			relayctl_usage();
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		relayctl_usage();

	struct config *conf = conf_load(path, err, sizeof err);
	if (!conf) {
		fprintf(stderr, "relayctl: %s\n", err);
		return 1;
	}
	if (strcmp(argv[0], "check") == 0 && (argc == 2 || (argc == 6 &&
	    strcmp(argv[2], "--from") == 0 && strcmp(argv[4], "--to") == 0))) {
		int rc = auth_client_init() < 0 ? 1 : relayctl_check(conf, argv[1],
		    argc == 6 ? argv[3] : NULL, argc == 6 ? argv[5] : NULL);
		auth_client_done();
		conf_free(conf);
		return rc;
	}
	if (strcmp(argv[0], "policy") == 0) {
		if (argc != 2)
			relayctl_usage();
		int rc = relayctl_policy(conf, argv[1]);
		conf_free(conf);
		return rc;
	}
	if (strcmp(argv[0], "doctor") == 0) {
		const char *ip = NULL, *domain = NULL;
		for (int i = 1; i + 1 < argc; i += 2) {
			if (strcmp(argv[i], "--ip") == 0)
				ip = argv[i + 1];
			else if (strcmp(argv[i], "--domain") == 0)
				domain = argv[i + 1];
			else
				relayctl_usage();
		}
		if ((!ip && !domain) || argc % 2 == 0)
			relayctl_usage();
		int rc = relayctl_doctor(conf, ip, domain);
		conf_free(conf);
		return rc;
	}
		static const char *const admin[] = { "flush", "hold", "release", "delete", "requeue" };
	for (size_t i = 0; i < sizeof admin / sizeof admin[0]; i++)
		if (strcmp(argv[0], admin[i]) == 0) {
			int rc = relayctl_admin(conf, argv[0], argc - 1, argv + 1);
			conf_free(conf);
			return rc;
		}
	struct queue *q = queue_open_readonly(conf->queue_dir, err, sizeof err);
	int rc;
	if (strcmp(argv[0], "route") == 0 && (argc == 2 ||
	    (argc == 4 && strcmp(argv[2], "--from") == 0))) {
		rc = relayctl_route(conf, q, argv[1], argc == 4 ? argv[3] : NULL);	/* q may be NULL */
	} else if (!q) {
		fprintf(stderr, "relayctl: queue %s: %s\n", conf->queue_dir, err);
		rc = 1;
	} else if (strcmp(argv[0], "queue") == 0 && (argc == 1 ||
	    (argc == 2 && strcmp(argv[1], "--json") == 0)))
		rc = relayctl_queue(q, conf, argc == 2);
	else if (strcmp(argv[0], "stats") == 0 && (argc == 1 || (argc == 3 &&
	    strcmp(argv[1], "--by") == 0 && (strcmp(argv[2], "domain") == 0 ||
	    strcmp(argv[2], "upstream") == 0 || strcmp(argv[2], "sender") == 0))))
		rc = relayctl_stats(q, conf, argc == 3 ? argv[2] : "domain");
	else if (strcmp(argv[0], "show") == 0 && (argc == 2 ||
	    (argc == 3 && strcmp(argv[2], "--body") == 0)))
		rc = relayctl_show(q, conf, argv[1], argc == 3);
	else {
		fprintf(stderr, "relayctl: unknown command %s\n", argv[0]);
		rc = 2;
	}
	if (q)
		queue_close(q);
	conf_free(conf);
	return rc;
}
