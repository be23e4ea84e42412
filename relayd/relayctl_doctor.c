/*
 * relayctl_doctor — `doctor --ip IP --domain DOMAIN`: the sender-side checks
 * an admin otherwise does by hand with dig and host, each explained: the
 * IP's reverse DNS and whether it resolves back, its DNS blocklist entries
 * (Spamhaus return codes spelled out: PBL means "do not send directly"), the
 * domain's MX, SPF (one record, and does it include the upstreams relayd
 * uses) and DMARC.  Through c-ares, with relayd's `resolver` setting; a
 * blocking loop is right for a command-line tool.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>

#include "relayd/relayctl.h"

#define DOCTOR_NAME_MAX 300

struct answer {
	int done, status;
	unsigned char *buf;
	int len;
};

struct doctor {
	ares_channel ch;
	int failed;
};

static void report(struct doctor *dr, const char *level, const char *what, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));
static void report(struct doctor *dr, const char *level, const char *what, const char *fmt,
    ...)
{
	va_list ap;
	char text[1200], esc[1200];
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	printf("%-4s %-9s %s\n", level, what, relayctl_esc(text, esc, sizeof esc));
	dr->failed |= strcmp(level, "FAIL") == 0;
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *buf, int len)
{
	struct answer *a = arg;
	(void)timeouts;
	a->done = 1;
	a->status = status;
	if (status == ARES_SUCCESS && (a->buf = malloc((size_t)len))) {
		memcpy(a->buf, buf, (size_t)len);
		a->len = len;
	}
}

/* One query, waited for: ARES_SUCCESS with a->buf (the caller frees it), or the status. */
static int query(struct doctor *dr, const char *name, int type, struct answer *a)
{
	memset(a, 0, sizeof *a);
	ares_query(dr->ch, name, C_IN, type, on_answer, a);
	while (!a->done) {
		fd_set r, w;
		struct timeval tv, *tvp;
		FD_ZERO(&r);
		FD_ZERO(&w);
		int nfds = ares_fds(dr->ch, &r, &w);
		if (nfds == 0)
			break;
		tvp = ares_timeout(dr->ch, NULL, &tv);
		select(nfds, &r, &w, NULL, tvp);
		ares_process(dr->ch, &r, &w);
	}
	return a->done ? a->status : ARES_ETIMEOUT;
}

/* The TXT records of name that start with prefix (strings of a record joined). */
static size_t txt_records(struct doctor *dr, const char *name, const char *prefix,
    char out[][1000], size_t max, int *status)
{
	struct answer a;
	struct ares_txt_ext *txt = NULL;
	size_t n = 0;

	if ((*status = query(dr, name, T_TXT, &a)) != ARES_SUCCESS)
		return 0;
	if (ares_parse_txt_reply_ext(a.buf, a.len, &txt) == ARES_SUCCESS) {
		char rec[1000] = "";
		for (struct ares_txt_ext *t = txt; t; t = t->next) {
			if (t->record_start && rec[0]) {
				if (strncasecmp(rec, prefix, strlen(prefix)) == 0 && n < max)
					snprintf(out[n++], 1000, "%s", rec);
				rec[0] = '\0';
			}
			size_t used = strlen(rec);
			snprintf(rec + used, sizeof rec - used, "%.*s", (int)t->length, t->txt);
		}
		if (rec[0] && strncasecmp(rec, prefix, strlen(prefix)) == 0 && n < max)
			snprintf(out[n++], 1000, "%s", rec);
		ares_free_data(txt);
	}
	free(a.buf);
	return n;
}

/* What a Spamhaus ZEN answer means (https://www.spamhaus.org/faqs/dnsbl-usage/). */
static const char *zen_meaning(unsigned last)
{
	switch (last) {
	case 2: return "SBL: a known spam source";
	case 3: return "SBL CSS: a snowshoe spam source";
	case 4: case 5: case 6: case 7: return "XBL: a hijacked or infected machine";
	case 9: return "DROP: a hijacked network";
	case 10: case 11: return "PBL: this IP must not send mail directly to MX hosts "
	    "(a dynamic or end-user range, or the provider's policy): use an upstream";
	default: return "listed";
	}
}

static void check_ip(struct doctor *dr, const struct config *conf, const char *ip)
{
	unsigned char bin[16];
	char rev[80], name[DOCTOR_NAME_MAX] = "";
	struct answer a;
	int v6 = strchr(ip, ':') != NULL, st;

	if (inet_pton(v6 ? AF_INET6 : AF_INET, ip, bin) != 1) {
		report(dr, "FAIL", "ip", "%s is not an IP address", ip);
		return;
	}
	/* The reversed form: d.c.b.a for IPv4, nibbles for IPv6. */
	rev[0] = '\0';
	for (int i = v6 ? 15 : 3; i >= 0; i--) {
		size_t used = strlen(rev);
		if (v6)
			snprintf(rev + used, sizeof rev - used, "%x.%x.", bin[i] & 15, bin[i] >> 4);
		else
			snprintf(rev + used, sizeof rev - used, "%u.", bin[i]);
	}
	snprintf(name, sizeof name, "%s%s", rev, v6 ? "ip6.arpa" : "in-addr.arpa");
	struct hostent *host = NULL;
	if ((st = query(dr, name, T_PTR, &a)) == ARES_SUCCESS &&
	    ares_parse_ptr_reply(a.buf, a.len, bin, v6 ? 16 : 4, v6 ? AF_INET6 : AF_INET,
	    &host) == ARES_SUCCESS && host && host->h_name) {
		char ptr[DOCTOR_NAME_MAX];
		snprintf(ptr, sizeof ptr, "%s", host->h_name);
		ares_free_hostent(host);
		struct answer f;
		int back = 0;
		if (query(dr, ptr, v6 ? T_AAAA : T_A, &f) == ARES_SUCCESS) {
			struct hostent *fh = NULL;
			if ((v6 ? ares_parse_aaaa_reply(f.buf, f.len, &fh, NULL, NULL) :
			    ares_parse_a_reply(f.buf, f.len, &fh, NULL, NULL)) == ARES_SUCCESS && fh) {
				for (char **p = fh->h_addr_list; *p && !back; p++)
					back = memcmp(*p, bin, v6 ? 16 : 4) == 0;
				ares_free_hostent(fh);
			}
			free(f.buf);
		}
		if (back)
			report(dr, "OK", "PTR", "%s is %s, which resolves back to it", ip, ptr);
		else
			report(dr, "WARN", "PTR", "%s is %s, but %s does not resolve back to %s: "
			    "receivers check that both directions agree", ip, ptr, ptr, ip);
	} else {
		report(dr, "FAIL", "PTR", "%s has no reverse DNS (%s): Gmail and many others "
		    "refuse or junk mail from such an IP; ask its provider to set the PTR to "
		    "your mail host's name", ip, ares_strerror(st));
	}
	free(a.buf);

	size_t nz = conf->ndnsbl ? conf->ndnsbl : 1;
	for (size_t z = 0; z < nz; z++) {
		const char *zone = conf->ndnsbl ? conf->dnsbl[z] : "zen.spamhaus.org";
		int zen = strstr(zone, "spamhaus") != NULL || strncmp(zone, "zen.", 4) == 0;
		snprintf(name, sizeof name, "%s%s", rev, zone);
		st = query(dr, name, T_A, &a);
		struct hostent *h = NULL;
		if (st == ARES_ENOTFOUND || st == ARES_ENODATA) {
			report(dr, "OK", "dnsbl", "%s is not listed in %s", ip, zone);
		} else if (st == ARES_SUCCESS && ares_parse_a_reply(a.buf, a.len, &h, NULL, NULL) ==
		    ARES_SUCCESS && h && h->h_addr_list[0]) {
			const unsigned char *x = (const unsigned char *)h->h_addr_list[0];
			if (x[0] == 127 && x[1] == 255 && x[2] == 255)
				report(dr, "WARN", "dnsbl", "%s refuses to answer through this resolver "
				    "(127.255.255.%u: a public or open resolver): set `resolver` to "
				    "your own", zone, x[3]);
			else
				report(dr, "FAIL", "dnsbl", "%s is listed in %s (127.%u.%u.%u): %s", ip,
				    zone, x[1], x[2], x[3], zen ? zen_meaning(x[3]) : "listed");
		} else {
			report(dr, "WARN", "dnsbl", "cannot ask %s: %s", zone, ares_strerror(st));
		}
		if (h)
			ares_free_hostent(h);
		free(a.buf);
	}
}

static void check_domain(struct doctor *dr, const struct config *conf, const char *domain,
    const char *ip)
{
	struct answer a;
	struct ares_mx_reply *mx = NULL;
	char name[DOCTOR_NAME_MAX], recs[4][1000], hosts[600] = "";
	int st = query(dr, domain, T_MX, &a);

	if (st == ARES_SUCCESS && ares_parse_mx_reply(a.buf, a.len, &mx) == ARES_SUCCESS && mx) {
		for (struct ares_mx_reply *m = mx; m; m = m->next) {
			size_t used = strlen(hosts);
			snprintf(hosts + used, sizeof hosts - used, "%s%u %s", used ? ", " : "",
			    m->priority, m->host[0] ? m->host : ".");
		}
		report(dr, "OK", "MX", "%s: %s", domain, hosts);
		ares_free_data(mx);
	} else {
		report(dr, "WARN", "MX", "%s has no MX record (%s): replies and bounces to it go "
		    "to its address record, if any", domain, ares_strerror(st));
	}
	free(a.buf);

	size_t n = txt_records(dr, domain, "v=spf1", recs, 4, &st);
	if (n == 0) {
		report(dr, "FAIL", "SPF", "%s has no SPF record: receivers cannot tell which "
		    "servers may send for it; publish one that includes your upstreams", domain);
	} else if (n > 1) {
		report(dr, "FAIL", "SPF", "%s has %zu SPF records: RFC 7208 makes that an error "
		    "for every receiver; merge them into one", domain, n);
	} else {
		report(dr, "OK", "SPF", "%s", recs[0]);
		for (size_t i = 0; i < conf->nupstreams; i++) {
			const struct conf_upstream *u = &conf->upstreams[i];
			if (u->direct || u->anonymous)
				continue;
			const char *want = u->spf_include;
			if (!want) {	/* the host's parent domain, as its SPF usually names it */
				const char *dot = strchr(u->host, '.');
				want = dot && strchr(dot + 1, '.') ? dot + 1 : u->host;
			}
			if (strstr(recs[0], want))
				report(dr, "OK", "SPF", "includes %s (upstream %s)", want, u->name);
			else
				report(dr, "WARN", "SPF", "does not mention %s (upstream %s): mail sent "
				    "through it may fail SPF; add include:%s if its documentation says so",
				    want, u->name, want);
		}
		if (ip && !strstr(recs[0], ip))
			report(dr, "WARN", "SPF", "does not list %s: needed only if relayd delivers "
			    "directly (route … direct)", ip);
	}

	snprintf(name, sizeof name, "_dmarc.%s", domain);
	n = txt_records(dr, name, "v=DMARC1", recs, 4, &st);
	if (n == 1)
		report(dr, "OK", "DMARC", "%s", recs[0]);
	else
		report(dr, "WARN", "DMARC", "%s has %s DMARC record: Gmail and Yahoo want one from "
		    "bulk senders; start with \"v=DMARC1; p=none; rua=mailto:...\"", domain,
		    n ? "more than one" : "no");
}

int relayctl_doctor(const struct config *conf, const char *ip, const char *domain)
{
	struct doctor dr = { 0 };
	struct ares_options opt = { .timeout = 3000, .tries = 2 };

	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS ||
	    ares_init_options(&dr.ch, &opt, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES) != ARES_SUCCESS) {
		fprintf(stderr, "relayctl: cannot start the DNS resolver\n");
		return 1;
	}
	if (conf->resolver && ares_set_servers_ports_csv(dr.ch, conf->resolver) != ARES_SUCCESS) {
		fprintf(stderr, "relayctl: resolver %s: not usable\n", conf->resolver);
		ares_destroy(dr.ch);
		ares_library_cleanup();
		return 1;
	}
	if (ip)
		check_ip(&dr, conf, ip);
	if (domain)
		check_domain(&dr, conf, domain, ip);
	ares_destroy(dr.ch);
	ares_library_cleanup();
	printf("%s\n", dr.failed ? "FAILED: see the FAIL lines" : "no failures");
	return dr.failed ? 1 : 0;
}
