/*
 * test_conf_routes — the config of forwarding: routes and route_sender,
 * retries, upstream failover keywords, provider presets.  (Errors in them
 * are rows of test_conf's test_errors.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "tests/unit/check.h"
#include "tests/unit/conf_helpers.h"

/* `log` targets and upstream port defaults: one small file per row. */
static void test_routes_and_retries(void)
{
	const char *text =
	    "route .example.com backup\n"
	    "upstream main {\n host smtp.example.net\n}\n"
	    "upstream backup {\n host 192.0.2.1\n}\n"
	    "route * main backup\n"
	    "retry_min 1s\nretry_max 10s\nqueue_lifetime 1m\ndelay_warning 30s\n";
	struct config *c = parse_ok("t", text);

	if (!c)
		return;
	CHECK(c->nroutes == 2);
	if (c->nroutes == 2) {
		CHECK_STR(c->routes[0].pattern, ".example.com");
		CHECK(c->routes[0].nupstreams == 1 && c->routes[0].upstreams[0] == 1);
		CHECK_STR(c->routes[1].pattern, "*");
		CHECK(c->routes[1].nupstreams == 2 && c->routes[1].upstreams[0] == 0 &&
		    c->routes[1].upstreams[1] == 1);
		CHECK(c->routes[1].line == 8);
	}
	CHECK(c->retry_min == 1 && c->retry_max == 10);
	CHECK(c->queue_lifetime == 60 && c->delay_warning == 30);
	conf_free(c);

	c = parse_ok("t", "");
	CHECK(c && c->retry_min == 300 && c->retry_max == 3600 &&
	    c->queue_lifetime == 5 * 86400 && c->delay_warning == 0 && c->nroutes == 0);
	conf_free(c);
}

/* route_sender, failover_on, null_sender, envelope_from, and what each refuses. */
static void test_failover_keywords(void)
{
	const char *text =
	    "upstream mx {\n host [mx.example.net]\n tls may\n failover_on 5.7.1 5.7 4\n"
	    " null_sender no\n envelope_from relay@example.com\n}\n"
	    "upstream relay {\n host relay.example.net\n}\n"
	    "route * mx relay\n"
	    "route_sender shop.example.com relay\n"
	    "route_sender Boss@Example.com relay mx\n";
	struct config *c = parse_ok("t", text);

	if (!c)
		return;
	const struct conf_upstream *u = &c->upstreams[0];
	CHECK_STR(u->host, "mx.example.net");
	CHECK(u->tls == CONF_TLS_MAY && u->port == 25 && u->null_sender == 0);
	CHECK(u->nfailover_on == 3 && strcmp(u->failover_on[1], "5.7") == 0);
	CHECK_STR(u->envelope_from, "relay@example.com");
	CHECK(c->upstreams[1].null_sender == 1 && c->upstreams[1].envelope_from == NULL);
	CHECK(c->nroutes == 3 && c->routes[0].sender == 0 && c->routes[1].sender == 1);
	CHECK(c->nroutes == 3 && c->routes[2].nupstreams == 2 && c->routes[2].upstreams[1] == 0);
	conf_free(c);
}

/* A preset fills what the block does not say, whatever the order of its lines. */
static void test_presets(void)
{
	const char *text =
	    "upstream g {\n user me@gmail.com\n password_file /etc/relayd/g\n preset gmail\n}\n"
	    "upstream y {\n preset yandex\n tls starttls\n user me@yandex.ru\n"
	    " password_file /etc/relayd/y\n}\n"
	    "upstream s {\n preset sendgrid\n password_file /etc/relayd/s\n"
	    " host [smtp.eu.sendgrid.example]:2525\n max_per_day 100\n}\n"
	    "upstream m {\n preset mailgun-eu\n user postmaster@mg.example.com\n"
	    " password_file /etc/relayd/m\n envelope_from bounce@mg.example.com\n}\n";
	struct config *c = parse_ok("t", text);

	if (!c)
		return;
	const struct conf_upstream *g = &c->upstreams[0], *y = &c->upstreams[1];
	const struct conf_upstream *sg = &c->upstreams[2], *m = &c->upstreams[3];
	CHECK_STR(g->host, "smtp.gmail.com");
	CHECK(g->port == 587 && g->tls == CONF_TLS_STARTTLS && g->max_per_day == 500);
	CHECK_STR(g->envelope_from, "me@gmail.com");
	CHECK_STR(y->host, "smtp.yandex.ru");
	CHECK(y->tls == CONF_TLS_STARTTLS && y->port == 587 && y->null_sender == 0);
	CHECK_STR(y->envelope_from, "me@yandex.ru");
	CHECK_STR(sg->host, "smtp.eu.sendgrid.example");
	CHECK_STR(sg->user, "apikey");
	CHECK(sg->port == 2525 && sg->max_per_day == 100 && sg->envelope_from == NULL);
	CHECK_STR(m->host, "smtp.eu.mailgun.org");
	CHECK_STR(m->envelope_from, "bounce@mg.example.com");
	CHECK(m->null_sender == 1 && m->max_per_day == 0);
	conf_free(c);
}

/* qmail's smtproutes, as its documentation writes it, beside relayd.conf's own routes. */
static void test_routes_file(void)
{
	char path[] = "/tmp/relayd-smtproutes-XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;

	CHECK(f != NULL);
	if (!f)
		return;
	fputs("# a comment\n"
	    "caramail.com:213.186.33.9\n"
	    ".caramail.com:[213.186.33.9]\n"
	    "example.net:relay.example.net:2525  # a comment after\n"
	    "\n"
	    "example.org:\n"
	    ":smarthost.example.com\n", f);
	fclose(f);
	char text[512];
	snprintf(text, sizeof text, "routes_file %s\nroute gmail.com direct\n"
	    "resolver 127.0.0.1:5353\ndirect_port 2525\n", path);
	struct config *c = parse_ok("t", text);
	unlink(path);
	if (!c)
		return;
	CHECK(c->nroutes == 6);
	CHECK_STR(c->resolver, "127.0.0.1:5353");
	/* Upstreams: direct (made for gmail.com's route), then one per distinct relay. */
	CHECK(c->nupstreams == 4);
	if (c->nroutes == 6 && c->nupstreams == 4) {
		const struct conf_upstream *u = &c->upstreams[c->routes[1].upstreams[0]];
		CHECK_STR(c->routes[1].pattern, "caramail.com");
		CHECK_STR(c->routes[1].file, path);
		CHECK(c->routes[1].line == 2);
		CHECK_STR(u->name, "213.186.33.9:25");
		CHECK(u->anonymous && u->tls == CONF_TLS_MAY && u->port == 25);
		CHECK(c->routes[2].upstreams[0] == c->routes[1].upstreams[0]);	/* shared */
		u = &c->upstreams[c->routes[3].upstreams[0]];
		CHECK_STR(u->host, "relay.example.net");
		CHECK(u->port == 2525);
		u = &c->upstreams[c->routes[4].upstreams[0]];
		CHECK(u->direct && u->port == 2525 && u->tls == CONF_TLS_MAY);
		CHECK_STR(c->routes[5].pattern, "*");
		CHECK(c->routes[0].file == NULL && c->upstreams[c->routes[0].upstreams[0]].direct);
	}
	conf_free(c);
}

int main(void)
{
	TEST_CASE(test_routes_and_retries);
	TEST_CASE(test_failover_keywords);
	TEST_CASE(test_presets);
	TEST_CASE(test_routes_file);
	return check_exit();
}
