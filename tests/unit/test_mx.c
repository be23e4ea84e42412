/*
 * test_mx — where direct delivery sends mail for a domain, asked of a real
 * DNS server: a dnsmasq of our own on a loopback port, authoritative for
 * .test with only the records below.  MX order, implicit MX (RFC 5321 §5.1),
 * null MX (RFC 7505), NXDOMAIN, hosts without address, dead servers, and
 * cancelling: done() never runs after mx_cancel or mx_resolver_free.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "relayd/mx.h"
#include "tests/unit/check.h"

#define NROWS(a) (sizeof (a) / sizeof (a)[0])
#define DNSMASQ "/usr/sbin/dnsmasq"
#define PORT 2525

/* The zone.  --local=/test/ makes dnsmasq authoritative for .test (unknown
 * names are NXDOMAIN); it has no upstream, so other names are REFUSED, but
 * for slow.example, forwarded to a black hole: no answer at all. */
static const char *const zone[] = {
	"--local=/test/",
	/* two preferences */
	"--mx-host=order.test,mx2.order.test,20",
	"--mx-host=order.test,mx1.order.test,10",
	"--host-record=mx1.order.test,192.0.2.1,2001:db8::1",
	"--host-record=mx2.order.test,192.0.2.2",
	/* equal preferences */
	"--mx-host=equal.test,a.equal.test,10",
	"--mx-host=equal.test,b.equal.test,10",
	"--host-record=a.equal.test,192.0.2.11",
	"--host-record=b.equal.test,192.0.2.12",
	/* no MX: the domain's own addresses, or none */
	"--host-record=implicit.test,192.0.2.30,2001:db8::30",
	"--txt-record=txtonly.test,no mail here",
	/* null MX, "MX 0 .": dnsmasq takes "." as the root name; the raw RDATA
	 * (preference 0, the root label) gives the same answer */
	"--mx-host=nullmx.test,.,0",
	"--dns-rr=mixednull.test,15,000000",
	"--mx-host=mixednull.test,mx1.order.test,10",
	/* hosts without address */
	"--mx-host=partial.test,gone.partial.test,5",
	"--mx-host=partial.test,mx2.order.test,10",
	"--mx-host=noaddr.test,gone.noaddr.test,10",
	"--mx-host=noaddr.test,gone2.noaddr.test,20",
	/* a host outside .test: REFUSED, a temporary failure */
	"--mx-host=far.test,mx.far.example,10",
	"--mx-host=farmix.test,mx.far.example,5",
	"--mx-host=farmix.test,mx2.order.test,10",
	/* a host whose lookup never ends: see slow_arg */
	"--mx-host=slow.test,mx.slow.example,10",
	/* two hosts, one address */
	"--mx-host=shared.test,mx2.order.test,10",
	"--mx-host=shared.test,alias.order.test,20",
	"--host-record=alias.order.test,192.0.2.2",
	/* more addresses than MX_TARGETS_MAX */
	"--mx-host=many.test,h1.many.test,1", "--mx-host=many.test,h2.many.test,2",
	"--mx-host=many.test,h3.many.test,3", "--mx-host=many.test,h4.many.test,4",
	"--mx-host=many.test,h5.many.test,5", "--mx-host=many.test,h6.many.test,6",
	"--mx-host=many.test,h7.many.test,7", "--mx-host=many.test,h8.many.test,8",
	"--mx-host=many.test,h9.many.test,9", "--mx-host=many.test,h10.many.test,10",
	"--mx-host=many.test,h11.many.test,11", "--mx-host=many.test,h12.many.test,12",
	"--host-record=h1.many.test,192.0.2.101,2001:db8::101",
	"--host-record=h2.many.test,192.0.2.102,2001:db8::102",
	"--host-record=h3.many.test,192.0.2.103,2001:db8::103",
	"--host-record=h4.many.test,192.0.2.104,2001:db8::104",
	"--host-record=h5.many.test,192.0.2.105,2001:db8::105",
	"--host-record=h6.many.test,192.0.2.106,2001:db8::106",
	"--host-record=h7.many.test,192.0.2.107,2001:db8::107",
	"--host-record=h8.many.test,192.0.2.108,2001:db8::108",
	"--host-record=h9.many.test,192.0.2.109,2001:db8::109",
	"--host-record=h10.many.test,192.0.2.110,2001:db8::110",
	"--host-record=h11.many.test,192.0.2.111,2001:db8::111",
	"--host-record=h12.many.test,192.0.2.112,2001:db8::112",
};

static struct event_base *base;
static int blackhole = -1;		/* a bound UDP socket nobody reads */
static char blackhole_server[64];	/* "127.0.0.1:PORT" of it */
static pid_t dns_pid = -1;
static char dns_server[64];		/* "127.0.0.1:PORT" of our dnsmasq */
static int in_lookup;			/* set while mx_lookup runs */
static struct mx_resolver *shared;	/* on our dnsmasq, for the tests of answers */

/* ---- the DNS server ---- */

static int bind_loopback(int type, unsigned short port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

static unsigned short bound_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;

	if (getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
		return 0;
	return ntohs(sin.sin_port);
}

/* A port free for UDP and TCP, as dnsmasq takes both. */
static unsigned short free_port(void)
{
	for (int i = 0; i < 50; i++) {
		int u = bind_loopback(SOCK_DGRAM, 0);
		unsigned short port = u >= 0 ? bound_port(u) : 0;
		int t = port ? bind_loopback(SOCK_STREAM, port) : -1;
		if (u >= 0)
			close(u);
		if (t >= 0) {
			close(t);
			return port;
		}
	}
	return 0;
}

static int tcp_answers(unsigned short port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static void dns_stop(void)
{
	if (dns_pid <= 0)
		return;
	kill(dns_pid, SIGTERM);
	for (int i = 0; i < 100; i++) {		/* 2 s, then no more asking */
		if (waitpid(dns_pid, NULL, WNOHANG) == dns_pid) {
			dns_pid = -1;
			return;
		}
		usleep(20000);
	}
	kill(dns_pid, SIGKILL);
	waitpid(dns_pid, NULL, 0);
	dns_pid = -1;
}

/* dnsmasq in the foreground with only the zone above; 0 once it answers. */
static int dns_start(void)
{
	char port_arg[32], slow_arg[64], *argv[NROWS(zone) + 16];
	unsigned short port = free_port();
	size_t n = 0;
	int status;

	if (!port)
		return -1;
	snprintf(port_arg, sizeof port_arg, "--port=%u", port);
	snprintf(slow_arg, sizeof slow_arg, "--server=/slow.example/127.0.0.1#%u",
	    bound_port(blackhole));
	argv[n++] = (char *)DNSMASQ;
	argv[n++] = (char *)"--keep-in-foreground";
	argv[n++] = (char *)"--conf-file=/dev/null";	/* not /etc/dnsmasq.conf */
	argv[n++] = (char *)"--pid-file=";		/* none */
	argv[n++] = (char *)"--log-facility=-";		/* stderr, sent to /dev/null */
	argv[n++] = (char *)"--no-resolv";
	argv[n++] = (char *)"--no-hosts";
	argv[n++] = (char *)"--bind-interfaces";
	argv[n++] = (char *)"--listen-address=127.0.0.1";
	argv[n++] = port_arg;
	argv[n++] = slow_arg;
	if (geteuid() == 0) {
		/* Stay root: a change of user would clear PR_SET_PDEATHSIG. */
		argv[n++] = (char *)"--user=root";
		argv[n++] = (char *)"--group=root";
	}
	for (size_t i = 0; i < NROWS(zone); i++)
		argv[n++] = (char *)zone[i];
	argv[n] = NULL;

	if ((dns_pid = fork()) < 0)
		return -1;
	if (dns_pid == 0) {
		/* Gone with us, even when the test dies without cleaning up. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (!freopen("/dev/null", "r", stdin))
			_exit(127);
		if (!getenv("TEST_MX_VERBOSE") && (!freopen("/dev/null", "w", stdout) ||
		    !freopen("/dev/null", "w", stderr)))
			_exit(127);
		execv(DNSMASQ, argv);
		_exit(127);
	}
	for (int i = 0; i < 250; i++) {		/* up to 5 s */
		if (waitpid(dns_pid, &status, WNOHANG) == dns_pid) {
			fprintf(stderr, "  dnsmasq exited (status %d); TEST_MX_VERBOSE=1 shows why\n",
			    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			dns_pid = -1;
			return -1;
		}
		if (tcp_answers(port)) {
			snprintf(dns_server, sizeof dns_server, "127.0.0.1:%u", port);
			return 0;
		}
		usleep(20000);
	}
	dns_stop();
	return -1;
}

/* ---- running lookups ---- */

struct outcome {
	int calls;			/* times done() ran */
	int during_lookup;		/* done() ran inside mx_lookup */
	enum mx_status st;
	int implicit;
	struct mx_target t[MX_TARGETS_MAX];
	size_t n;
	char why[512];
	struct mx_resolver *free_me;	/* done() frees this resolver */
};

static void record(void *arg, enum mx_status st, const struct mx_result *res, const char *why)
{
	struct outcome *o = arg;

	o->calls++;
	o->during_lookup |= in_lookup;
	o->st = st;
	o->implicit = res->implicit;
	o->n = res->ntargets < MX_TARGETS_MAX ? res->ntargets : MX_TARGETS_MAX;
	if (o->n)
		memcpy(o->t, res->targets, o->n * sizeof *o->t);
	snprintf(o->why, sizeof o->why, "%s", why ? why : "(null)");
	if (o->free_me)
		mx_resolver_free(o->free_me);
	event_base_loopbreak(base);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	event_base_loopbreak(base);
}

/* Run the loop until a done() breaks it or ms have passed. */
static void run_loop(unsigned ms)
{
	struct event *deadline = evtimer_new(base, deadline_cb, NULL);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(deadline, &tv);
	event_base_dispatch(base);
	event_free(deadline);
}

static struct mx_query *start(struct mx_resolver *r, const char *domain, struct outcome *o)
{
	struct mx_query *q;

	in_lookup = 1;
	q = mx_lookup(r, domain, PORT, record, o);
	in_lookup = 0;
	return q;
}

/* One lookup to its end (10 s at most). */
static void lookup(struct mx_resolver *r, const char *domain, struct outcome *o)
{
	memset(o, 0, sizeof *o);
	CHECK(start(r, domain, o) != NULL);
	run_loop(10000);
	CHECK(o->calls == 1);
	CHECK(!o->during_lookup);
}

static struct mx_resolver *resolver(const char *server)
{
	char err[256] = "";
	struct mx_resolver *r = mx_resolver_new(base, server, err, sizeof err);

	if (!r)
		fprintf(stderr, "  mx_resolver_new(%s): %s\n", server ? server : "NULL", err);
	CHECK(r != NULL);
	return r;
}

static unsigned target_port(const struct mx_target *t)
{
	if (t->addr.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&t->addr)->sin_port);
	if (t->addr.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&t->addr)->sin6_port);
	return 0;
}

/* "host/pref host/pref …", one per target; and every target on PORT. */
static const char *describe(const struct outcome *o, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < o->n && used < len; i++) {
		used += (size_t)snprintf(buf + used, len - used, "%s%s/%u", i ? " " : "",
		    o->t[i].host, o->t[i].pref);
		CHECK(target_port(&o->t[i]) == PORT);
		CHECK(o->t[i].addrlen == (o->t[i].addr.ss_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)));
	}
	return buf;
}

static const char *status_name(enum mx_status st)
{
	static const char *const names[] = { "MX_OK", "MX_NULL", "MX_NXDOMAIN", "MX_NOHOST",
	    "MX_TEMPFAIL" };
	return (unsigned)st < NROWS(names) ? names[st] : "?";
}

/* ---- the cases ---- */

/* Everything with one right answer, as the zone above defines it. */
static void test_answers(void)
{
	static const struct {
		const char *domain;
		enum mx_status st;
		const char *targets;		/* host/pref for each address, in order */
		int implicit;
		const char *why;		/* a part of why */
	} rows[] = {
		/* lower preference first; each host's addresses together */
		{ "order.test", MX_OK, "mx1.order.test/10 mx1.order.test/10 mx2.order.test/20",
		    0, "" },
		{ "ORDER.test.", MX_OK, "mx1.order.test/10 mx1.order.test/10 mx2.order.test/20",
		    0, "" },
		/* no MX: the domain's own A and AAAA, preference 0 */
		{ "implicit.test", MX_OK, "implicit.test/0 implicit.test/0", 1, "" },
		{ "txtonly.test", MX_NOHOST, "", 1, "txtonly.test: no MX record, no address" },
		/* RFC 7505; a null MX among real ones is ignored */
		{ "nullmx.test", MX_NULL, "", 0, "null MX" },
		{ "mixednull.test", MX_OK, "mx1.order.test/10 mx1.order.test/10", 0, "" },
		{ "nosuch.test", MX_NXDOMAIN, "", 0, "nosuch.test: no such domain" },
		/* a host without address is skipped, and said so */
		{ "partial.test", MX_OK, "mx2.order.test/10", 0, "gone.partial.test: no address" },
		{ "noaddr.test", MX_NOHOST, "", 0,
		    "gone.noaddr.test: no address; gone2.noaddr.test: no address" },
		/* a host whose lookup failed: skipped, and only that is temporary */
		{ "far.test", MX_TEMPFAIL, "", 0, "mx.far.example: " },
		{ "farmix.test", MX_OK, "mx2.order.test/10", 0, "mx.far.example: " },
		/* an address is listed once, under the better host */
		{ "shared.test", MX_OK, "mx2.order.test/10", 0, "" },
		/* names c-ares will not send (a label of 64): answered from the loop all the same */
		{ "", MX_NXDOMAIN, "", 0, "not a valid domain name" },
		{ ".", MX_NXDOMAIN, "", 0, "not a valid domain name" },
		{ "a-label-longer-than-sixty-three-characters-is-not-allowed-in-dns.test",
		    MX_NXDOMAIN, "", 0, "not a valid domain name" },
	};
	struct outcome o;
	char buf[2048];

	for (size_t i = 0; i < NROWS(rows); i++) {
		lookup(shared, rows[i].domain, &o);
		describe(&o, buf, sizeof buf);
		if (o.st != rows[i].st || strcmp(buf, rows[i].targets) != 0 ||
		    o.implicit != rows[i].implicit || !strstr(o.why, rows[i].why))
			fprintf(stderr, "  %s: %s [%s] implicit %d, \"%s\"; want %s [%s] implicit %d, "
			    "\"%s\"\n", rows[i].domain, status_name(o.st), buf, o.implicit, o.why,
			    status_name(rows[i].st), rows[i].targets, rows[i].implicit,
			    rows[i].why);
		CHECK(o.st == rows[i].st);
		CHECK_STR(buf, rows[i].targets);
		CHECK(o.implicit == rows[i].implicit);
		CHECK(strstr(o.why, rows[i].why) != NULL);
	}
}

static const char *addr_text(const struct mx_target *t, char *buf, size_t len)
{
	const void *a = t->addr.ss_family == AF_INET ?
	    (const void *)&((const struct sockaddr_in *)&t->addr)->sin_addr :
	    (const void *)&((const struct sockaddr_in6 *)&t->addr)->sin6_addr;
	return inet_ntop(t->addr.ss_family, a, buf, (socklen_t)len) ? buf : "?";
}

/* A host's two addresses are its IPv6 and its IPv4 one, in either order. */
static void test_both_families(void)
{
	struct outcome o;
	char buf[INET6_ADDRSTRLEN];
	int v4;

	lookup(shared, "implicit.test", &o);
	CHECK(o.st == MX_OK && o.n == 2);
	if (o.n != 2)
		return;
	v4 = o.t[0].addr.ss_family == AF_INET ? 0 : 1;
	CHECK(o.t[0].addr.ss_family != o.t[1].addr.ss_family);
	CHECK_STR(addr_text(&o.t[v4], buf, sizeof buf), "192.0.2.30");
	CHECK_STR(addr_text(&o.t[1 - v4], buf, sizeof buf), "2001:db8::30");
}

/* Equal preferences: both hosts, in an order that may change between lookups. */
static void test_equal_preferences(void)
{
	struct outcome o;
	char buf[512];
	int a_first = 0;

	for (int i = 0; i < 8; i++) {
		lookup(shared, "equal.test", &o);
		describe(&o, buf, sizeof buf);
		CHECK(o.st == MX_OK && o.n == 2);
		CHECK(strcmp(buf, "a.equal.test/10 b.equal.test/10") == 0 ||
		    strcmp(buf, "b.equal.test/10 a.equal.test/10") == 0);
		a_first += strncmp(buf, "a.", 2) == 0;
	}
	printf("  a.equal.test came first %d times in 8\n", a_first);	/* not asserted */
}

/* Twelve hosts with two addresses each: the best twenty addresses. */
static void test_at_most_twenty_targets(void)
{
	struct outcome o;
	char want[32];

	lookup(shared, "many.test", &o);
	CHECK(o.st == MX_OK);
	CHECK(o.n == MX_TARGETS_MAX);
	for (size_t i = 0; i < o.n; i++) {
		snprintf(want, sizeof want, "h%zu.many.test", i / 2 + 1);
		CHECK_STR(o.t[i].host, want);
		CHECK(o.t[i].pref == i / 2 + 1);
		CHECK(target_port(&o.t[i]) == PORT);
	}
}

/* A server that never answers: deferred after c-ares' tries, within 10 s. */
static void test_silent_server_tempfail(void)
{
	struct mx_resolver *r = resolver(blackhole_server);
	struct outcome o;
	struct timespec t0, t1;

	if (!r)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	lookup(r, "order.test", &o);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("  MX_TEMPFAIL after %.1f s: %s\n", secs, o.why);
	CHECK(o.st == MX_TEMPFAIL);
	CHECK(strstr(o.why, "order.test MX: DNS timeout") != NULL);
	CHECK(secs < 10);
	mx_resolver_free(r);
}

/* A port nobody listens on: ICMP says so, deferred at once. */
static void test_closed_port_tempfail(void)
{
	int fd = bind_loopback(SOCK_DGRAM, 0);
	char server[64];
	struct mx_resolver *r;
	struct outcome o;

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	snprintf(server, sizeof server, "127.0.0.1:%u", bound_port(fd));
	close(fd);
	if ((r = resolver(server))) {
		lookup(r, "order.test", &o);
		CHECK(o.st == MX_TEMPFAIL);
		mx_resolver_free(r);
	}
}

/*
 * mx_cancel before the MX answer, with the answer in flight, and while the
 * hosts' addresses are looked up (slow.test): done() never runs, and what
 * comes back later goes nowhere.
 */
static void test_cancel_before_answer(void)
{
	struct mx_resolver *silent = resolver(blackhole_server), *live = resolver(dns_server);
	struct outcome o[5];
	struct mx_query *q;

	memset(o, 0, sizeof o);
	if (silent) {
		CHECK((q = start(silent, "order.test", &o[0])) != NULL);
		mx_cancel(q);
		run_loop(300);
		mx_resolver_free(silent);
	}
	if (!live)
		return;
	CHECK((q = start(live, "order.test", &o[1])) != NULL);
	mx_cancel(q);
	CHECK((q = start(live, "nosuch.test", &o[2])) != NULL);
	mx_cancel(q);
	CHECK((q = start(live, "slow.test", &o[3])) != NULL);
	run_loop(300);		/* MX answered; mx.slow.example's lookups hang */
	mx_cancel(q);
	run_loop(300);
	for (size_t i = 0; i < NROWS(o); i++)
		CHECK(o[i].calls == 0);
	/* The resolver still works afterwards. */
	lookup(live, "partial.test", &o[4]);
	CHECK(o[4].st == MX_OK);
	mx_resolver_free(live);
}

static struct mx_query *other;		/* what the first done() cancels */

static void cancel_other(void *arg, enum mx_status st, const struct mx_result *res,
    const char *why)
{
	struct outcome *o = arg;
	(void)st, (void)res, (void)why;
	o->calls++;
	if (other) {
		mx_cancel(other);
		other = NULL;
	}
}

/* Two lookups; the first done() cancels the other, finished or not. */
static void test_cancel_from_done(void)
{
	struct mx_resolver *r = resolver(dns_server);
	struct outcome o = { 0 };
	struct mx_query *a, *b;

	if (!r)
		return;
	a = mx_lookup(r, "nosuch.test", PORT, cancel_other, &o);
	b = mx_lookup(r, "nosuch.test", PORT, cancel_other, &o);
	CHECK(a && b);
	other = b;
	run_loop(1000);
	CHECK(o.calls == 1);
	other = NULL;
	mx_resolver_free(r);
}

/* mx_resolver_free with queries at every stage: no callback, no leak (ASan). */
static void test_free_with_pending(void)
{
	struct mx_resolver *r;
	struct outcome o[6];

	memset(o, 0, sizeof o);
	if ((r = resolver(blackhole_server))) {	/* MX queries sent, never answered */
		CHECK(start(r, "order.test", &o[0]) != NULL);
		CHECK(start(r, "implicit.test", &o[1]) != NULL);
		run_loop(50);
		mx_resolver_free(r);
	}
	if ((r = resolver(dns_server))) {	/* freed at once */
		CHECK(start(r, "many.test", &o[2]) != NULL);
		CHECK(start(r, "", &o[3]) != NULL);	/* finished already, done() not yet run */
		mx_resolver_free(r);
	}
	if ((r = resolver(dns_server))) {	/* freed during the hosts' lookups */
		CHECK(start(r, "slow.test", &o[4]) != NULL);
		CHECK(start(r, "slow.test", &o[5]) != NULL);
		run_loop(300);
		mx_resolver_free(r);
	}
	run_loop(300);
	for (size_t i = 0; i < NROWS(o); i++)
		CHECK(o[i].calls == 0);
}

/* done() may free the resolver that called it. */
static void test_free_from_done(void)
{
	struct mx_resolver *r = resolver(dns_server);
	struct outcome o = { 0 }, o2 = { 0 };

	if (!r)
		return;
	o.free_me = r;
	CHECK(start(r, "order.test", &o) != NULL);
	CHECK(start(r, "many.test", &o2) != NULL);
	run_loop(10000);
	CHECK(o.calls == 1 || o2.calls == 1);
	if (o.calls == 0)		/* many.test answered first: free it here */
		mx_resolver_free(r);
	run_loop(300);
	CHECK(o.calls + o2.calls == 1);
}

/* A name over 253 characters never reaches c-ares. */
static void test_name_too_long(void)
{
	struct outcome o;
	char name[300];

	memset(name, 'a', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	for (size_t i = 50; i < sizeof name - 1; i += 51)
		name[i] = '.';
	lookup(shared, name, &o);
	CHECK(o.st == MX_NXDOMAIN);
	CHECK(strstr(o.why, "not a valid domain name") != NULL);
}

static void test_server_syntax(void)
{
	static const struct { const char *server; int ok; } rows[] = {
		{ "127.0.0.1:5353", 1 },
		{ "[::1]:53", 1 },
		{ "127.0.0.1", 1 },
		{ NULL, 1 },
		{ "not an address", 0 },
	};
	char err[256];

	for (size_t i = 0; i < NROWS(rows); i++) {
		struct mx_resolver *r = mx_resolver_new(base, rows[i].server, err, sizeof err);
		if ((r != NULL) != rows[i].ok)
			fprintf(stderr, "  %s: %s\n", rows[i].server ? rows[i].server : "NULL",
			    r ? "accepted" : err);
		CHECK((r != NULL) == rows[i].ok);
		if (!r)
			CHECK(strstr(err, rows[i].server) != NULL);
		mx_resolver_free(r);
	}
	mx_resolver_free(NULL);
}

int main(void)
{
	char err[256] = "";

	signal(SIGPIPE, SIG_IGN);
	if ((blackhole = bind_loopback(SOCK_DGRAM, 0)) >= 0)
		snprintf(blackhole_server, sizeof blackhole_server, "127.0.0.1:%u",
		    bound_port(blackhole));
	if (blackhole < 0 || !(base = event_base_new()) || dns_start() != 0 ||
	    !(shared = mx_resolver_new(base, dns_server, err, sizeof err))) {
		fprintf(stderr, "  %s\n", err);
		printf("FAIL test_mx_dnsmasq_starts\n");
		dns_stop();
		if (base)
			event_base_free(base);
		return 1;
	}
	atexit(dns_stop);
	TEST_CASE(test_answers);
	TEST_CASE(test_both_families);
	TEST_CASE(test_equal_preferences);
	TEST_CASE(test_at_most_twenty_targets);
	TEST_CASE(test_name_too_long);
	TEST_CASE(test_silent_server_tempfail);
	TEST_CASE(test_closed_port_tempfail);
	TEST_CASE(test_cancel_before_answer);
	TEST_CASE(test_cancel_from_done);
	TEST_CASE(test_free_with_pending);
	TEST_CASE(test_free_from_done);
	TEST_CASE(test_server_syntax);
	mx_resolver_free(shared);
	dns_stop();
	event_base_free(base);
	close(blackhole);
	return check_exit();
}
