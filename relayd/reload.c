/*
 * reload — SIGHUP: read relayd.conf again and use it for what comes next
 * (routes, upstreams, retries, limits, allow, sender rules and their files,
 * rate limits: their counts stay).  A file with an error, or one
 * that changes what only a restart can (listening sockets, the queue, TLS
 * keys, the AUTH backend, the user), is reported and the running
 * configuration stays.  Configurations replaced stay in memory until relayd
 * ends: sessions and messages in flight may still point into them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "relayd/delivery.h"
#include "relayd/log.h"
#include "relayd/server.h"

struct retired_conf {
	struct config *conf;
	struct retired_conf *older;
};

static int same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The first setting only a restart can change, or NULL when none differs. */
static const char *restart_only(const struct config *a, const struct config *b)
{
	if (!same_str(a->queue_dir, b->queue_dir) || a->queue_map_size != b->queue_map_size ||
	    a->queue_max_size != b->queue_max_size)
		return "queue";
	if (a->log_target != b->log_target || !same_str(a->log_file, b->log_file))
		return "log";
	if (a->nlisten != b->nlisten)
		return "listen";
	for (size_t i = 0; i < a->nlisten; i++)
		if (!same_str(a->listen[i].text, b->listen[i].text) ||
		    a->listen[i].tls != b->listen[i].tls ||
		    a->listen[i].proxy != b->listen[i].proxy)
			return "listen";
	if (!same_str(a->user, b->user))
		return "user";
	if (!same_str(a->pid_file, b->pid_file))
		return "pid_file";
	if (!same_str(a->control, b->control))
		return "control";
	if (a->has_http != b->has_http || (a->has_http && strcmp(a->http.text, b->http.text) != 0))
		return "http";
	if (!same_str(a->tls_cert.path, b->tls_cert.path) ||
	    !same_str(a->tls_key.path, b->tls_key.path))
		return "tls_cert/tls_key";
	if (!same_str(a->auth_sasldb.path, b->auth_sasldb.path) ||
	    !same_str(a->auth_saslauthd.path, b->auth_saslauthd.path) ||
	    !same_str(a->auth_mechanisms, b->auth_mechanisms))
		return "the AUTH backend";
	if (a->max_clients != b->max_clients)
		return "max_clients";
	if (!same_str(a->resolver, b->resolver))
		return "resolver";
	return NULL;
}

void server_reload(struct server *srv)
{
	char err[1024];
	const char *path = srv->conf->path;
	struct config *conf = conf_load(path, err, sizeof err);
	const char *what;

	if (!conf) {
		log_warn("reload: %s: keeping the running configuration", err);
		return;
	}
	if ((what = restart_only(srv->conf, conf))) {
		log_warn("reload: %s: %s changed, which needs a restart: keeping the running "
		    "configuration", path, what);
		conf_free(conf);
		return;
	}
	struct retired_conf *old = calloc(1, sizeof *old);
	if (!old || auth_check_config(conf, err, sizeof err) < 0 ||
	    (srv->delivery && delivery_reload(srv->delivery, conf, err, sizeof err) < 0)) {
		log_warn("reload: %s: keeping the running configuration",
		    old ? err : "out of memory");
		free(old);
		conf_free(conf);
		return;
	}
	old->conf = (struct config *)srv->conf;
	old->older = srv->retired;
	srv->retired = old;
	srv->conf = conf;
	auth_limits_configure(srv->limits, conf, server_limits_clock());	/* counts stay */
	log_info("reload: %s: %zu upstream(s), %zu route(s)", path, conf->nupstreams,
	    conf->nroutes);
}

void server_free_configs(struct server *srv)
{
	while (srv->retired) {
		struct retired_conf *old = srv->retired;
		srv->retired = old->older;
		conf_free(old->conf);
		free(old);
	}
	conf_free((struct config *)srv->conf);
	srv->conf = NULL;
}
