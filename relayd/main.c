/*
 * main — relayd's start-up: read the config (or only check it with -n), open
 * the log, bind the listeners, leave the terminal unless -d, drop privileges,
 * open the queue, and run the event loop until TERM/INT.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"
#include "conf/conf.h"
#include "queue/queue.h"
#include "relayd/control.h"
#include "relayd/delivery.h"
#include "relayd/http.h"
#include "relayd/log.h"
#include "relayd/metrics.h"
#include "relayd/server.h"
#include "relayd/tls.h"

#define DEFAULT_CONFIG "/etc/relayd/relayd.conf"
#define SPOOL_MEMORY   (256 * 1024)	/* body bytes held in memory before a spool file */

static void usage(void)
{
	fprintf(stderr, "usage: relayd [-c FILE] [-d] [-n] [-v]\n"
	    "  -c FILE  configuration (default " DEFAULT_CONFIG ")\n"
	    "  -d       stay in the foreground\n"
	    "  -n       check the configuration and exit\n"
	    "  -v       log debug lines too\n");
	exit(2);
}

/* mkdir -p with mode 0700 for the last component, 0755 for missing parents. */
static int make_dirs(const char *path)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(buf, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/* A path made absolute, so leaving the working directory (daemon) cannot move it. */
static char *absolute_path(const char *path)
{
	char cwd[PATH_MAX], *out;
	if (path[0] == '/')
		return strdup(path);
	if (!getcwd(cwd, sizeof cwd))
		return NULL;
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

static uid_t owner_uid;
static gid_t owner_gid;

static int chown_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)type, (void)ftw;
	if ((st->st_uid != owner_uid || st->st_gid != owner_gid) &&
	    lchown(path, owner_uid, owner_gid) < 0)
		fatal("chown %s: %s", path, strerror(errno));
	return 0;
}

static void drop_privileges(const char *user, const char *queue_dir)
{
	struct passwd *pw = getpwnam(user);
	if (!pw)
		fatal("user %s: no such user", user);
	if (getuid() == pw->pw_uid)
		return;
	if (geteuid() != 0)
		fatal("user %s: relayd must start as root to become another user", user);
	/* The queue may have been created by an earlier run as root: hand all of it over. */
	owner_uid = pw->pw_uid;
	owner_gid = pw->pw_gid;
	if (nftw(queue_dir, chown_entry, 16, FTW_PHYS) < 0)
		fatal("chown %s: %s", queue_dir, strerror(errno));
	if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0)
		fatal("cannot become user %s: %s", user, strerror(errno));
	if (setuid(0) == 0)
		fatal("privileges were not dropped");
}

/*
 * A session can hold two descriptors (socket, spool file): ask for the hard
 * limit, and say so when max_clients still cannot be met.
 */
static void raise_fd_limit(unsigned max_clients)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < 2 * (rlim_t)max_clients + 64)
		log_warn("open file limit %llu is low for max_clients %u: "
		    "at most %llu sessions at once", (unsigned long long)rl.rlim_cur,
		    max_clients, (unsigned long long)(rl.rlim_cur > 64 ? (rl.rlim_cur - 64) / 2 : 0));
}

/* The pid file, written before privileges go (so it may live in /run). */
static void write_pid_file(const char *path)
{
	char buf[32];
	struct stat st;
	/* Not through a link, not blocking on a FIFO, only a plain file of its own. */
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
	int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());

	if (fd < 0)
		fatal("pid_file %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1)
		fatal("pid_file %s: not a plain file", path);
	if (ftruncate(fd, 0) < 0 || write(fd, buf, (size_t)n) != n)
		fatal("pid_file %s: %s", path, strerror(errno));
	close(fd);
}

static void daemonize(struct event_base *base)
{
	pid_t pid = fork();
	if (pid < 0)
		fatal("fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		fatal("setsid: %s", strerror(errno));
	if (event_reinit(base) < 0)
		fatal("event_reinit failed");
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	if (chdir("/") < 0)
		fatal("chdir /: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	int foreground = 0, check_only = 0, debug = 0, opt;
	char err[1024];

	while ((opt = getopt(argc, argv, "c:dnv")) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'd': foreground = 1; break;
		case 'n': check_only = 1; break;
		case 'v': debug = 1; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	/*
	 * Until the event loop's handlers are in place (server_run), HUP, TERM and
	 * INT wait: logrotate's HUP during start-up would otherwise kill relayd.
	 * Threads started meanwhile inherit the mask, so signals reach this one.
	 */
	server_signals_hold(1);
	/* Absolute, so that a reload after daemonizing (chdir /) finds the same file. */
	char *conf_path = absolute_path(path);
	if (!conf_path) {
		fprintf(stderr, "relayd: %s: %s\n", path, strerror(errno));
		return 1;
	}

	struct config *conf = conf_load(conf_path, err, sizeof err);
	free(conf_path);
	if (!conf) {
		fprintf(stderr, "relayd: %s\n", err);
		return 1;
	}
	if (auth_check_config(conf, err, sizeof err) < 0) {
		fprintf(stderr, "relayd: %s\n", err);
		conf_free(conf);
		return 1;
	}
	/* Certificates and key are read now, as root, before privileges go. */
	SSL_CTX *tls_ctx = tls_server_ctx_new(conf, err, sizeof err);
	if (!tls_ctx && err[0]) {
		fprintf(stderr, "relayd: %s\n", err);
		conf_free(conf);
		return 1;
	}
	auth_sasl_threads();	/* before any Cyrus init: the worker thread shares Cyrus */
	struct auth_server *auth = auth_server_new(conf, err, sizeof err);
	if (!auth && err[0]) {
		fprintf(stderr, "relayd: %s\n", err);
		SSL_CTX_free(tls_ctx);
		conf_free(conf);
		return 1;
	}
	if (delivery_check(conf, err, sizeof err) < 0 || auth_client_init() < 0) {
		fprintf(stderr, "relayd: %s\n", err[0] ? err : "Cyrus SASL client: cannot start");
		auth_server_free(auth);
		SSL_CTX_free(tls_ctx);
		conf_free(conf);
		return 1;
	}
	if (check_only) {
		printf("%s: configuration ok\n", path);
		auth_server_free(auth);
		SSL_CTX_free(tls_ctx);
		conf_free(conf);
		return 0;
	}
	/* Without a terminal, stderr goes nowhere: log to syslog instead. */
	const char *target = conf->log_target == CONF_LOG_FILE ? conf->log_file :
	    conf->log_target == CONF_LOG_SYSLOG || !foreground ? "syslog" : "stderr";
	if (log_open(target, debug, err, sizeof err) < 0) {
		fprintf(stderr, "relayd: log: %s\n", err);
		return 1;
	}

	char *queue_dir = absolute_path(conf->queue_dir);
	if (!queue_dir)
		fatal("queue %s: %s", conf->queue_dir, strerror(errno));
	if (make_dirs(queue_dir) < 0)
		fatal("queue %s: %s", queue_dir, strerror(errno));

	raise_fd_limit(conf->max_clients);
	evthread_use_pthreads();
	metrics_init(delivery_now());
	struct event_base *base = event_base_new();
	if (!base)
		fatal("cannot create the event loop");
	struct server srv;
	if (server_bind(&srv, conf, base, err, sizeof err) < 0)
		fatal("%s", err);
	struct http *http = NULL;
	if (conf->has_http && !(http = http_new(base, &conf->http, err, sizeof err)))
		fatal("%s", err);
	srv.tls_ctx = tls_ctx;
	srv.auth = auth;
	/* Passwords and CA files are read now, before privileges go. */
	if (!(srv.delivery = delivery_new(conf, base, err, sizeof err)))
		fatal("%s", err);
	if (!(srv.auth_penalty = auth_penalty_new()) ||
	    !(srv.limits = auth_limits_new(conf, AUTH_LIMIT_KEYS)))
		fatal("out of memory");
	if (!foreground)
		daemonize(base);
	char *pid_file = conf->pid_file ? strdup(conf->pid_file) : NULL;	/* for the end */
	if (pid_file)
		write_pid_file(pid_file);
	if (conf->user)
		drop_privileges(conf->user, queue_dir);
	/* Cyrus opens the sasldb at each login, as the user we are now. */
	if (conf->auth_sasldb.path && access(conf->auth_sasldb.path, R_OK) < 0)
		fatal("%s:%d: auth_sasldb %s: %s (relayd's user must be able to read it)",
		    conf->path, conf->auth_sasldb.line, conf->auth_sasldb.path, strerror(errno));
	/* A thread: only now, after the fork of daemonize(). */
	if (auth && !(srv.auth_worker = auth_worker_new()))
		fatal("cannot start the authentication thread");

	struct queue_options qopt = {
		.dir = queue_dir,
		.map_size = conf->queue_map_size,
		.max_size = conf->queue_max_size,
		.spool_memory = SPOOL_MEMORY,
	};
	struct queue *queue = queue_open(&qopt, err, sizeof err);
	if (!queue)
		fatal("queue %s: %s", queue_dir, err);
	char *control_path = conf->control ? strdup(conf->control) : NULL;
	if (!control_path && asprintf(&control_path, "%s/control", queue_dir) < 0)
		control_path = NULL;
	struct control *control = control_path ? control_new(base, control_path, queue,
	    srv.delivery, &srv, err, sizeof err) : NULL;
	if (!control)
		log_warn("%s: relayctl cannot flush, hold, release or delete",
		    control_path ? err : "out of memory");
	free(control_path);
	http_attach(http, &srv, queue);
	log_info("relayd started: hostname %s, queue %s", conf->hostname, queue_dir);

	int rc = server_run(&srv, queue);
	http_free(http);	/* before the server and queue it shows */
	server_free(&srv);
	SSL_CTX_free(tls_ctx);
	if (auth_worker_free(srv.auth_worker, 5000) < 0)
		log_warn("the authentication backend is still busy (saslauthd hung?): "
		    "not waiting for it");
	else
		auth_server_free(auth);
	auth_penalty_free(srv.auth_penalty);
	struct queue_stats st;
	queue_get_stats(queue, &st);
	log_info("queue: %llu messages committed in %llu transactions, %llu refused",
	    (unsigned long long)st.messages, (unsigned long long)st.transactions,
	    (unsigned long long)st.refused);
	queue_close(queue);	/* the last results' callbacks still need the delivery */
	control_free(control);	/* its answers came with the queue's last callbacks */
	delivery_free(srv.delivery);
	auth_client_done();
	log_info("relayd stopped");
	event_base_free(base);
	libevent_global_shutdown();
	free(queue_dir);
	if (pid_file && unlink(pid_file) < 0 && errno != ENOENT)	/* often not ours to remove */
		log_debug("pid_file %s: %s", pid_file, strerror(errno));
	free(pid_file);
	auth_limits_free(srv.limits);	/* sessions, the last to count, are gone */
	server_free_configs(&srv);	/* the running one and those reloads replaced */
	log_close();
	return rc < 0 ? 1 : 0;
}
