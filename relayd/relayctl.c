/*
 * relayctl — the admin's view of relayd's queue, read-only through queue/:
 * `queue` lists messages like mailq, `show ID` prints one envelope (and its
 * body with --body), `route ADDRESS` explains which upstreams a recipient
 * takes.  Commands that change state arrive with the control socket.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "relayd/hints.h"
#include "relayd/log.h"
#include "relayd/smtp_reply.h"
#include "routes/routes.h"

#define DEFAULT_CONFIG "/etc/relayd/relayd.conf"

static void usage(void)
{
	fprintf(stderr, "usage: relayctl [-c FILE] queue\n"
	    "       relayctl [-c FILE] show ID [--body]\n"
	    "       relayctl [-c FILE] route ADDRESS [--from SENDER]\n"
	    "       relayctl [-c FILE] flush [ID... | --domain DOMAIN]\n"
	    "       relayctl [-c FILE] hold|release|delete|requeue ID... | --domain DOMAIN\n");
	exit(2);
}

static const char *state_name(enum queue_rcpt_state st)
{
	switch (st) {
	case QUEUE_RCPT_PENDING: return "pending";
	case QUEUE_RCPT_SENT: return "sent";
	case QUEUE_RCPT_BOUNCED: return "bounced";
	}
	return "?";
}

/* Addresses come from the network: print them escaped. */
static const char *esc(const char *s, char *buf, size_t len)
{
	return s ? log_escape(buf, len, s, strlen(s)) : "";
}

struct totals { unsigned long long bytes; unsigned messages; const struct config *conf; };

/* The hint about a stored reply ("550 5.7.1 …"), from its code and words. */
static const char *reply_hint(const struct config *conf, const char *reply)
{
	char dsn[16];
	int code = reply && reply[0] >= '2' && reply[0] <= '5' ? atoi(reply) : 0;
	if (!reply)
		return NULL;
	smtp_reply_dsn(code, reply, dsn);
	return code / 100 == 2 ? NULL : hint_for(conf, code ? dsn : NULL, reply);
}

static int list_one(void *arg, const struct queue_envelope *env)
{
	struct totals *t = arg;
	char when[32], buf[1100];
	time_t at = (time_t)env->arrival;
	struct tm tm;

	localtime_r(&at, &tm);
	strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);
	printf("%-12s%c%9llu %s  %s\n", env->id, env->held ? '!' : ' ',
	    (unsigned long long)env->size, when, env->sender[0] ? esc(env->sender, buf,
	    sizeof buf) : "<>");
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		if (r->state != QUEUE_RCPT_PENDING)
			continue;
		printf("%45s%s\n", "", esc(r->addr, buf, sizeof buf));
		if (r->last_reply)
			printf("%45s(%s)\n", "", esc(r->last_reply, buf, sizeof buf));
		const char *hint = reply_hint(t->conf, r->last_reply);
		if (hint)
			printf("%45shint: %s\n", "", hint);
		if (env->held) {
			printf("%45s(held: relayctl release %s)\n", "", env->id);
		} else if (r->next_attempt > time(NULL)) {
			time_t next = (time_t)r->next_attempt;
			localtime_r(&next, &tm);
			strftime(when, sizeof when, "%a %b %e %H:%M:%S", &tm);
			printf("%45snext try: %s\n", "", when);
		}
	}
	t->bytes += env->size;
	t->messages++;
	return 0;
}

static int cmd_queue(struct queue *q, const struct config *conf)
{
	struct totals t = { 0, 0, conf };
	printf("-Queue ID-   --Size-- ----Arrival Time----  -Sender/Recipient-------\n");
	if (queue_walk(q, list_one, &t) < 0) {
		fprintf(stderr, "relayctl: cannot read the queue\n");
		return 1;
	}
	if (t.messages == 0)
		printf("Mail queue is empty\n");
	else
		printf("-- %llu Kbytes in %u Request%s.\n", (t.bytes + 1023) / 1024, t.messages,
		    t.messages == 1 ? "" : "s");
	return 0;
}

static int print_body(void *arg, const void *data, size_t len)
{
	(void)arg;
	return fwrite(data, 1, len, stdout) == len ? 0 : -1;
}

static int cmd_show(struct queue *q, const struct config *conf, const char *id, int body)
{
	struct queue_envelope *env = queue_load(q, id);
	char buf[1100], buf2[1100];
	if (!env) {
		fprintf(stderr, "relayctl: %s: no such message\n", id);
		return 1;
	}
	printf("id: %s\narrival: %lld\nsize: %llu\nsender: <%s>\n", env->id,
	    (long long)env->arrival, (unsigned long long)env->size,
	    esc(env->sender, buf, sizeof buf));
	printf("client: %s\nhelo: %s\n", esc(env->client_addr, buf, sizeof buf),
	    env->helo ? esc(env->helo, buf2, sizeof buf2) : "");
	if (env->auth_user)
		printf("sasl_username: %s\n", esc(env->auth_user, buf, sizeof buf));
	if (env->envid)
		printf("envid: %s\n", esc(env->envid, buf, sizeof buf));
	printf("ret: %s\nbody: %s\nsmtputf8: %s\n",
	    env->ret == QUEUE_RET_FULL ? "FULL" : env->ret == QUEUE_RET_HDRS ? "HDRS" : "-",
	    env->body == QUEUE_BODY_8BITMIME ? "8BITMIME" : "7BIT", env->smtputf8 ? "yes" : "no");
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct queue_rcpt *r = &env->rcpts[i];
		printf("rcpt: <%s> state=%s attempts=%u notify=%s%s%s%s", esc(r->addr, buf, sizeof buf),
		    state_name(r->state), r->attempts,
		    r->notify & QUEUE_NOTIFY_NEVER ? "NEVER" : "",
		    r->notify & QUEUE_NOTIFY_SUCCESS ? "SUCCESS," : "",
		    r->notify & QUEUE_NOTIFY_FAILURE ? "FAILURE," : "",
		    r->notify & QUEUE_NOTIFY_DELAY ? "DELAY," : "");
		if (r->orcpt)
			printf(" orcpt=%s", esc(r->orcpt, buf, sizeof buf));
		printf("\n");
		if (r->last_reply)
			printf("  last: %s%s%s\n", esc(r->last_reply, buf, sizeof buf),
			    r->last_relay ? " from " : "", r->last_relay ? esc(r->last_relay, buf2,
			    sizeof buf2) : "");
		const char *hint = reply_hint(conf, r->last_reply);
		if (hint)
			printf("  hint: %s\n", hint);
	}
	queue_envelope_free(env);
	if (body) {
		printf("\n");
		fflush(stdout);
		if (queue_read_body(q, id, print_body, NULL) < 0) {
			fprintf(stderr, "relayctl: %s: body missing\n", id);
			return 1;
		}
	}
	return 0;
}

static const char *tls_name(enum conf_tls_mode m)
{
	switch (m) {
	case CONF_TLS_STARTTLS: return "starttls";
	case CONF_TLS_IMPLICIT: return "tls";
	case CONF_TLS_MAY: return "may";
	case CONF_TLS_NONE: return "none";
	}
	return "?";
}

/* An upstream's quota and how much of it is used, from the queue's counters (q may be NULL). */
static void print_quota(struct queue *q, const struct conf_upstream *u)
{
	struct queue_counter c;
	int64_t now = (int64_t)time(NULL);

	if (!u->max_per_hour && !u->max_per_day)
		return;
	if (!q || queue_counter_get(q, u->name, &c) < 0) {
		printf("      quota: max_per_hour %u, max_per_day %u (use unknown)\n",
		    u->max_per_hour, u->max_per_day);
		return;
	}
	unsigned hour = now < c.hour_start + 3600 ? c.hour_count : 0;
	unsigned day = now < c.day_start + 86400 ? c.day_count : 0;
	printf("      quota:");
	if (u->max_per_hour)
		printf(" %u of %u this hour%s", hour, u->max_per_hour,
		    hour >= u->max_per_hour ? " (FULL)" : "");
	if (u->max_per_day)
		printf("%s %u of %u today%s", u->max_per_hour ? "," : "", day, u->max_per_day,
		    day >= u->max_per_day ? " (FULL)" : "");
	printf("\n");
}

/* Which rule a recipient falls under, and its upstreams in the order they are tried. */
static int cmd_route(const struct config *conf, struct queue *q, const char *rcpt,
    const char *sender)
{
	char buf[1100], buf2[1100];
	const struct conf_route *r = routes_find(conf, rcpt, sender);

	printf("<%s>", esc(rcpt, buf, sizeof buf));
	if (sender)
		printf(" from <%s>", esc(sender, buf2, sizeof buf2));
	if (!r) {
		printf(": no route: %s\n", conf->nroutes ? "refused at RCPT with 550 5.4.4" :
		    "relayd.conf has no route at all, mail waits in the queue");
		return 1;
	}
	printf(": %s %s (%s:%d)\n", r->sender ? "route_sender" : "route", r->pattern,
	    r->file ? r->file : conf->path, r->line);
	for (size_t i = 0; i < r->nupstreams; i++) {
		const struct conf_upstream *u = &conf->upstreams[r->upstreams[i]];
		char where[300];
		if (u->direct)
			snprintf(where, sizeof where, "the domain's MX hosts, port %u,", u->port);
		else
			snprintf(where, sizeof where, "%s:%u", u->host, u->port);
		printf("  %zu. %s: %s tls %s%s%s%s%s\n", i + 1, u->name, where,
		    tls_name(u->tls), u->tls != CONF_TLS_NONE && u->tls != CONF_TLS_MAY ?
		    (u->verify ? ", verified" : ", not verified") : "",
		    u->user ? ", user " : "", u->user ? u->user : "",
		    u->null_sender ? "" : ", no bounces (null_sender no)");
		for (size_t k = 0; k < u->nfailover_on; k++)
			printf("%s%s", k ? " " : "      failover_on ", u->failover_on[k]);
		if (u->nfailover_on)
			printf("\n");
		print_quota(q, u);
	}
	return 0;
}

/* One request over the control socket; its answer's count, or -1 (said on stderr). */
static long control_request(const struct config *conf, const char *line)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[sizeof sa.sun_path + 1], answer[512];
	struct timeval tv = { 30, 0 };
	size_t used = 0;
	ssize_t n;
	int fd;

	if (conf->control)
		snprintf(path, sizeof path, "%s", conf->control);
	else
		snprintf(path, sizeof path, "%s/control", conf->queue_dir);
	if (strlen(path) >= sizeof sa.sun_path) {
		fprintf(stderr, "relayctl: control socket path too long: %s\n", path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		fprintf(stderr, "relayctl: %s: %s (is relayd running? relayctl needs relayd's "
		    "user or root)\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
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
static int cmd_admin(const struct config *conf, const char *cmd, int argc, char **argv)
{
	const char *op = strcmp(cmd, "requeue") == 0 ? "flush" : cmd;	/* routes apply anew */
	char line[400];
	long total = 0;
	int rc = 0;

	if (argc == 0 && strcmp(op, "flush") != 0)
		usage();
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

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	char err[1024];
	int opt;

	while ((opt = getopt(argc, argv, "+c:")) != -1) {
		if (opt == 'c')
			path = optarg;
		else
			usage();
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();

	struct config *conf = conf_load(path, err, sizeof err);
	if (!conf) {
		fprintf(stderr, "relayctl: %s\n", err);
		return 1;
	}
	static const char *const admin[] = { "flush", "hold", "release", "delete", "requeue" };
	for (size_t i = 0; i < sizeof admin / sizeof admin[0]; i++)
		if (strcmp(argv[0], admin[i]) == 0) {
			int rc = cmd_admin(conf, argv[0], argc - 1, argv + 1);
			conf_free(conf);
			return rc;
		}
	struct queue *q = queue_open_readonly(conf->queue_dir, err, sizeof err);
	int rc;
	if (strcmp(argv[0], "route") == 0 && (argc == 2 ||
	    (argc == 4 && strcmp(argv[2], "--from") == 0))) {
		rc = cmd_route(conf, q, argv[1], argc == 4 ? argv[3] : NULL);	/* q may be NULL */
	} else if (!q) {
		fprintf(stderr, "relayctl: queue %s: %s\n", conf->queue_dir, err);
		rc = 1;
	} else if (strcmp(argv[0], "queue") == 0 && argc == 1)
		rc = cmd_queue(q, conf);
	else if (strcmp(argv[0], "show") == 0 && (argc == 2 ||
	    (argc == 3 && strcmp(argv[2], "--body") == 0)))
		rc = cmd_show(q, conf, argv[1], argc == 3);
	else {
		fprintf(stderr, "relayctl: unknown command %s\n", argv[0]);
		rc = 2;
	}
	if (q)
		queue_close(q);
	conf_free(conf);
	return rc;
}
