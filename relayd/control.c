/*
 * control — relayctl's way in for what changes the queue: a unix socket
 * (mode 0600, beside the queue unless `control` says where) taking one
 * line per connection,
 *
 *     flush [ID | --domain D]     hold ID | --domain D
 *     release ID | --domain D     delete ID | --domain D
 *
 * answered "ok N" (N messages changed) or "error WHY", then closed.  The
 * work goes through the queue's writer thread; flush and release wake the
 * scheduler.  And one that only reads,
 *
 *     policy USER|ADDRESS
 *
 * answered "ok" and the text relayctl policy prints (auth/policy.c: the
 * sender rules and limits in force, with the counts now).  Lines are
 * bounded, connections time out.
 */
#include "relayd/control.h"

#include <errno.h>
#include <stdarg.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "auth/auth.h"
#include "relayd/delivery.h"
#include "relayd/log.h"
#include "relayd/server.h"

#define CONTROL_LINE_MAX 300
#define CONTROL_TIMEOUT 10		/* for the request line */
#define CONTROL_ANSWER_TIMEOUT 60	/* for the answer to be taken */
#define ACTIVE_IDS_MAX 1000		/* delivery's ACTIVE_MAX */

struct control {
	struct evconnlistener *evl;
	struct queue *queue;
	struct delivery *delivery;
	const struct server *srv;
	char *path;
	struct control_conn *conns;	/* freed with the control, after the queue closed */
};

struct control_conn {
	struct control *ctl;
	struct control_conn *next;
	struct bufferevent *bev;
	enum queue_admin_op op;
	int waiting;		/* the queue has the request */
	int gone;		/* the client left meanwhile: free when the answer comes */
	int answered;		/* free once the answer is written */
};

static const char *const op_names[] = { "flush", "hold", "release", "delete" };

static void conn_free(struct control_conn *cc)
{
	if (cc->waiting) {
		cc->gone = 1;
		return;
	}
	for (struct control_conn **p = &cc->ctl->conns; *p; p = &(*p)->next)
		if (*p == cc) {
			*p = cc->next;
			break;
		}
	bufferevent_free(cc->bev);
	free(cc);
}

static void reply(struct control_conn *cc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void reply(struct control_conn *cc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(cc->bev), fmt, ap);
	va_end(ap);
	bufferevent_disable(cc->bev, EV_READ);
	cc->answered = 1;
}

static void admin_done(void *arg, enum queue_status status, unsigned count)
{
	struct control_conn *cc = arg;

	cc->waiting = 0;
	if (status == QUEUE_OK && (cc->op == QUEUE_ADMIN_FLUSH || cc->op == QUEUE_ADMIN_RELEASE))
		delivery_kick(cc->ctl->delivery);
	if (cc->gone) {
		conn_free(cc);
		return;
	}
	if (status == QUEUE_OK)
		reply(cc, "ok %u\n", count);
	else
		reply(cc, "error the queue could not be written\n");
}

/* "policy WHO": read-only, answered at once from the running config and counters. */
static void policy(struct control_conn *cc, const char *who)
{
	const struct server *srv = cc->ctl->srv;
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	if (!out) {
		reply(cc, "error out of memory\n");
		return;
	}
	int rc = auth_policy_describe(out, srv->conf, srv->limits, who, server_limits_clock());
	if (fclose(out) != 0 || !text) {
		free(text);
		reply(cc, "error out of memory\n");
		return;
	}
	if (rc < 0)
		reply(cc, "error %s", text);	/* one line, with its newline */
	else
		reply(cc, "ok\n%s", text);
	free(text);
}

/* "flush", "hold ID", "delete --domain example.com", "policy bob" … */
static void command(struct control_conn *cc, char *line)
{
	char *words[4] = { 0 }, *save = NULL;
	size_t n = 0;

	for (char *w = strtok_r(line, " \t", &save); w && n < 4; w = strtok_r(NULL, " \t", &save))
		words[n++] = w;
	if (words[0] && strcmp(words[0], "policy") == 0) {
		if (n == 2)
			policy(cc, words[1]);
		else
			reply(cc, "error usage: policy USER|ADDRESS\n");
		return;
	}
	size_t op = 0;
	while (op < 4 && (!words[0] || strcmp(words[0], op_names[op]) != 0))
		op++;
	const char *id = NULL, *domain = NULL;
	if (op == 4) {
		reply(cc, "error unknown command (flush, hold, release, delete, policy)\n");
		return;
	}
	if (n == 2 && words[1][0] != '-')
		id = words[1];
	else if (n == 3 && strcmp(words[1], "--domain") == 0)
		domain = words[2];
	else if (!(n == 1 && op == QUEUE_ADMIN_FLUSH)) {
		reply(cc, "error usage: %s ID | --domain DOMAIN\n", op_names[op]);
		return;
	}
	cc->op = (enum queue_admin_op)op;
	/* Messages out for delivery now: their result places them in the schedule. */
	static char active[ACTIVE_IDS_MAX][QUEUE_ID_LEN + 1];
	size_t nactive = delivery_active_ids(cc->ctl->delivery, active, ACTIVE_IDS_MAX);
	if (id && (op == QUEUE_ADMIN_FLUSH || op == QUEUE_ADMIN_RELEASE))
		for (size_t i = 0; i < nactive; i++)
			if (strcmp(active[i], id) == 0) {
				reply(cc, "error %s is being delivered right now: try again when this "
				    "attempt is over\n", id);
				return;
			}
	if (queue_admin_skip(cc->ctl->queue, cc->op, id, domain,
	    (const char (*)[QUEUE_ID_LEN + 1])active, nactive, admin_done, cc) < 0) {
		reply(cc, "error %s\n", id ? "no such queue id" : "out of memory");
		return;
	}
	cc->waiting = 1;
	/* The answer may take a while (a big queue): no read timeout, no more input. */
	bufferevent_disable(cc->bev, EV_READ);
	struct timeval answer = { CONTROL_ANSWER_TIMEOUT, 0 };
	bufferevent_set_timeouts(cc->bev, NULL, &answer);
	char esc[CONTROL_LINE_MAX * 4 + 1];
	log_info("relayctl: %s %s%s", op_names[op], id ? id : domain ? "--domain " : "(all)",
	    domain ? log_escape(esc, sizeof esc, domain, strlen(domain)) : "");
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct control_conn *cc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	if (cc->waiting)
		return;
	if (!(line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF))) {
		if (evbuffer_get_length(in) > CONTROL_LINE_MAX)
			reply(cc, "error line too long\n");
		return;
	}
	if (len > CONTROL_LINE_MAX || memchr(line, '\0', len))
		reply(cc, "error bad line\n");
	else
		command(cc, line);
	free(line);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct control_conn *cc = arg;
	(void)bev;
	/* The answer is out: done. */
	if (!cc->waiting && cc->answered)
		conn_free(cc);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev, (void)what;
	conn_free(arg);
}

static void accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct control *ctl = arg;
	struct control_conn *cc = calloc(1, sizeof *cc);
	struct timeval tv = { CONTROL_TIMEOUT, 0 };

	(void)sa, (void)salen;
	if (!cc || !(cc->bev = bufferevent_socket_new(evconnlistener_get_base(evl), fd,
	    BEV_OPT_CLOSE_ON_FREE))) {
		free(cc);
		evutil_closesocket(fd);
		return;
	}
	cc->ctl = ctl;
	cc->next = ctl->conns;
	ctl->conns = cc;
	bufferevent_setcb(cc->bev, read_cb, write_cb, event_cb, cc);
	bufferevent_set_timeouts(cc->bev, &tv, &tv);
	bufferevent_enable(cc->bev, EV_READ | EV_WRITE);
}

struct control *control_new(struct event_base *base, const char *path, struct queue *queue,
    struct delivery *delivery, const struct server *srv, char *err, size_t errlen)
{
	struct control *ctl = calloc(1, sizeof *ctl);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (!ctl || strlen(path) >= sizeof sa.sun_path || !(ctl->path = strdup(path))) {
		snprintf(err, errlen, "control %s: %s", path, ctl ? "path too long" :
		    "out of memory");
		free(ctl);
		return NULL;
	}
	memcpy(sa.sun_path, path, strlen(path));
	ctl->queue = queue;
	ctl->delivery = delivery;
	ctl->srv = srv;
	/* A socket left by a relayd that died (the queue's lock says none runs now);
	 * anything else there is not ours to remove. */
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	mode_t old = umask(0077);	/* no moment with the socket open to others */
	ctl->evl = evconnlistener_new_bind(base, accept_cb, ctl,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (ctl->evl && chmod(path, 0600) < 0)	/* bind made it 0700 under that umask */
		log_warn("control %s: chmod: %s", path, strerror(errno));
	if (!ctl->evl) {
		snprintf(err, errlen, "control %s: %s", path, strerror(errno));
		free(ctl->path);
		free(ctl);
		return NULL;
	}
	return ctl;
}

void control_free(struct control *ctl)
{
	if (!ctl)
		return;
	evconnlistener_free(ctl->evl);
	while (ctl->conns) {		/* the queue has closed: no answer is pending */
		ctl->conns->waiting = 0;	// NOLINT(clang-analyzer-unix.Malloc): freed ones are unlinked
		conn_free(ctl->conns);
	}
	unlink(ctl->path);
	free(ctl->path);
	free(ctl);
}
