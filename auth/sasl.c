/*
 * sasl — SMTP AUTH (RFC 4954) through the Cyrus SASL server library.  One
 * auth_server starts Cyrus once per process and hands it every option through
 * callbacks (nothing under /etc/sasl2 is read); one auth_session per SMTP
 * session runs the exchanges.  A backend that is down or unreadable is a
 * temporary failure (454), never a wrong password (535): see session_result().
 * Cyrus' own log lines are kept for auth_session_detail(); nothing is printed.
 */
#include "auth/auth.h"
#include "auth/sasl_conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sasl/sasl.h>
#include <sasl/saslutil.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Base64 characters in one client response: a login is a few hundred bytes. */
#define AUTH_RESPONSE_MAX 12288
#define AUTH_DECODED_MAX (AUTH_RESPONSE_MAX / 4 * 3)
#define AUTH_DETAIL_MAX 512
#define AUTH_LOG_MAX 384		/* Cyrus' lines: room left in a detail for more */
/* RFC 4422 §3.1: mechanism names are 1-20 of A-Z 0-9 - _. */
#define AUTH_MECH_NAME_MAX 20
/* A user name a client sends (PLAIN, LOGIN): longer is nobody's; see name_refused(). */
#define AUTH_NAME_MAX 255

/* Where the client's next message carries the user name, if it does. */
enum auth_name_in { AUTH_NAME_NONE, AUTH_NAME_PLAIN, AUTH_NAME_LOGIN };

struct auth_server {
	char *hostname;			/* Cyrus' serverFQDN and user realm */
	char *sasldb;			/* auth_sasldb, NULL when not given */
	char *saslauthd;		/* auth_saslauthd's DIR/mux, NULL when not given */
	char *mechanisms;		/* mech_list: conf->auth_mechanisms */
	const char *pwcheck;		/* "auxprop", "saslauthd" or both */
	const char *auxprop;		/* "sasldb", or a name no plugin has */
	sasl_callback_t callbacks[4];	/* Cyrus keeps the pointer until sasl_server_done */
	char log[AUTH_LOG_MAX];		/* Cyrus' words outside any session (start-up) */
};

struct auth_session {
	struct auth_server *srv;
	sasl_conn_t *conn;
	sasl_callback_t callbacks[2];	/* this connection's log goes to this session */
	char *local, *remote;		/* "IP;PORT" or NULL */
	unsigned tls_ssf;
	int used;			/* conn has run an exchange: the next one gets a fresh conn */
	int in_progress;		/* a 334 is out, auth_session_step() is next */
	enum auth_name_in name_in;	/* what the next client message holds */
	char *user;			/* after AUTH_OK */
	char *challenge;		/* base64, what follows "334 " */
	size_t challenge_size;
	char mechanisms[512];
	char log[AUTH_LOG_MAX];		/* Cyrus' log lines during the current exchange */
	char detail[AUTH_DETAIL_MAX];
};

/* sasl_server_init() has run and no auth_server_free() since: one server per process. */
static struct auth_server *sasl_running;

/* Cyrus' callback table holds int (*)(void); the double cast keeps -Wcast-function-type quiet. */
#define AUTH_SASL_CB(id, fn, ctx) { (id), (int (*)(void))(void (*)(void))(fn), (ctx) }

/*
 * Append one message to a detail buffer, "; " between messages, each byte
 * outside printable ASCII as '?': these lines may quote what a client sent
 * and end up in the log.  A message already there is not repeated.
 */
static void detail_add(char *buf, size_t size, const char *msg)
{
	size_t n = strlen(buf);

	if (!msg || !*msg || strstr(buf, msg))
		return;
	if (n > 0) {
		if (n + 3 >= size)
			return;
		buf[n++] = ';';
		buf[n++] = ' ';
	}
	for (const char *c = msg; *c && n + 1 < size; c++)
		buf[n++] = (*c >= 0x20 && *c < 0x7f) ? *c : '?';
	buf[n] = '\0';
}

/* Errors, failures and warnings are worth a log line; notes and debugging are not. */
static int sasl_log_server(void *context, int level, const char *message)
{
	struct auth_server *srv = context;

	if (srv && level <= SASL_LOG_WARN)
		detail_add(srv->log, sizeof srv->log, message);
	return SASL_OK;
}

static int sasl_log_session(void *context, int level, const char *message)
{
	struct auth_session *as = context;

	if (as && level <= SASL_LOG_WARN)
		detail_add(as->log, sizeof as->log, message);
	return SASL_OK;
}

/* Every option Cyrus asks for comes from here; what is not set here is not set. */
static int sasl_getopt(void *context, const char *plugin, const char *option,
    const char **result, unsigned *len)
{
	const struct auth_server *srv = context ? context : sasl_running;
	const char *value = NULL;

	(void)plugin;
	if (!srv || !option)
		return SASL_FAIL;
	if (strcmp(option, "pwcheck_method") == 0)
		value = srv->pwcheck;
	else if (strcmp(option, "auxprop_plugin") == 0)
		value = srv->auxprop;
	else if (strcmp(option, "sasldb_path") == 0)
		value = srv->sasldb;
	else if (strcmp(option, "saslauthd_path") == 0)
		value = srv->saslauthd;
	else if (strcmp(option, "mech_list") == 0)
		value = srv->mechanisms;
	if (!value)
		return SASL_FAIL;
	*result = value;
	if (len)
		*len = (unsigned)strlen(value);
	return SASL_OK;
}

/* Plugins load; configuration files (/etc/sasl2/relayd.conf) are skipped. */
static int sasl_verifyfile(void *context, const char *file, sasl_verify_type_t type)
{
	(void)context, (void)file;
	return type == SASL_VRFY_CONF ? SASL_CONTINUE : SASL_OK;
}

static int session_ready(struct auth_session *as);

/*
 * Ask Cyrus for a user nobody has: "no such user" means the sasldb opens;
 * anything else (a text file, a sasldb in another distribution's database
 * format) would make every login a 454.  Only the auxprop method is asked:
 * Cyrus 2.1.28 crashes in sasl_user_exists() when saslauthd is on the list.
 */
static int check_sasldb_format(struct auth_server *srv, struct auth_session *probe,
    const struct config *conf, char *err, size_t errlen)
{
	const char *pwcheck = srv->pwcheck;
	int r;

	srv->pwcheck = "auxprop";
	probe->log[0] = '\0';
	r = sasl_user_exists(probe->conn, "smtp", srv->hostname, "relayd-probe");
	srv->pwcheck = pwcheck;
	if (r == SASL_OK || r == SASL_NOUSER)
		return 0;
	sasl_conf_message(err, errlen, conf, conf->auth_sasldb.line, "auth_sasldb %s: Cyrus SASL "
	    "cannot read it: %s", srv->sasldb, probe->log[0] ? probe->log :
	    sasl_errstring(r, NULL, NULL));
	return -1;
}

/*
 * A first session, as a client would get it: the sasldb must open and every
 * configured mechanism be on offer, or the config is wrong.
 */
static int check_probe_session(struct auth_server *srv, const struct config *conf,
    int line, char *err, size_t errlen)
{
	struct auth_session *probe = auth_session_new(srv, NULL, NULL, 0);

	if (!probe || session_ready(probe) != SASL_OK) {
		sasl_conf_message(err, errlen, conf, line, "Cyrus SASL cannot start a session%s%s",
		    srv->log[0] ? ": " : "", srv->log);
		auth_session_free(probe);
		return -1;
	}
	if (srv->sasldb && check_sasldb_format(srv, probe, conf, err, errlen) < 0) {
		auth_session_free(probe);
		return -1;
	}
	const char *offered = probe->mechanisms;
	for (const char *p = srv->mechanisms; *p; ) {
		size_t n = strcspn(p, " ");
		if (!sasl_list_has(offered, p, n)) {
			sasl_conf_message(err, errlen, conf, 0, "auth_mechanisms: %.*s is not available "
			    "(install libsasl2-modules?)", (int)n, p);
			auth_session_free(probe);
			return -1;
		}
		p += n;
		p += strspn(p, " ");
	}
	auth_session_free(probe);
	return 0;
}

static char *copy_string(const char *s)
{
	return s ? strdup(s) : NULL;
}

struct auth_server *auth_server_new(const struct config *conf, char *err, size_t errlen)
{
	const struct conf_file *sasldb = &conf->auth_sasldb, *saslauthd = &conf->auth_saslauthd;
	int line = sasldb->path ? sasldb->line : saslauthd->line;
	struct auth_server *srv;
	int r;

	if (errlen > 0)
		err[0] = '\0';
	if (!sasldb->path && !saslauthd->path)
		return NULL;
	if (sasl_conf_check(conf, err, errlen) < 0)
		return NULL;
	if (sasl_running) {
		sasl_conf_message(err, errlen, conf, line, "Cyrus SASL is already started (one "
		    "auth_server per process)");
		return NULL;
	}

	if (!(srv = calloc(1, sizeof *srv)))
		goto nomem;
	srv->hostname = copy_string(conf->hostname ? conf->hostname : "localhost");
	srv->mechanisms = copy_string(conf->auth_mechanisms ? conf->auth_mechanisms :
	    "PLAIN LOGIN");
	srv->sasldb = copy_string(sasldb->path);
	if (saslauthd->path) {
		size_t size = strlen(saslauthd->path) + sizeof "/mux";
		if ((srv->saslauthd = malloc(size)))
			snprintf(srv->saslauthd, size, "%s/mux", saslauthd->path);
	}
	if (!srv->hostname || !srv->mechanisms ||
	    (sasldb->path && !srv->sasldb) || (saslauthd->path && !srv->saslauthd)) {
		auth_server_free(srv);
		goto nomem;
	}
	/*
	 * Cyrus tries the methods in order and stops at the first yes.  Without a
	 * sasldb the auxprop layer still runs (for the authorization identity):
	 * naming a plugin that does not exist keeps it from opening /etc/sasldb2.
	 */
	srv->pwcheck = !sasldb->path ? "saslauthd" : saslauthd->path ? "auxprop saslauthd" :
	    "auxprop";
	srv->auxprop = sasldb->path ? "sasldb" : "none";
	srv->callbacks[0] = (sasl_callback_t)AUTH_SASL_CB(SASL_CB_GETOPT, sasl_getopt, srv);
	srv->callbacks[1] = (sasl_callback_t)AUTH_SASL_CB(SASL_CB_LOG, sasl_log_server, srv);
	srv->callbacks[2] = (sasl_callback_t)AUTH_SASL_CB(SASL_CB_VERIFYFILE, sasl_verifyfile,
	    srv);
	srv->callbacks[3] = (sasl_callback_t){ SASL_CB_LIST_END, NULL, NULL };

	sasl_running = srv;
	r = sasl_server_init(srv->callbacks, "relayd");
	if (r != SASL_OK) {
		sasl_conf_message(err, errlen, conf, line, "Cyrus SASL: %s%s%s",
		    sasl_errstring(r, NULL, NULL), srv->log[0] ? ": " : "", srv->log);
		auth_server_free(srv);
		return NULL;
	}
	if (check_probe_session(srv, conf, line, err, errlen) < 0) {
		auth_server_free(srv);
		return NULL;
	}
	return srv;

nomem:
	sasl_conf_message(err, errlen, conf, line, "out of memory");
	return NULL;
}

/* Every auth_session must be freed before its server. */
void auth_server_free(struct auth_server *srv)
{
	if (!srv)
		return;
	if (sasl_running == srv) {
		sasl_server_done();
		sasl_running = NULL;
	}
	free(srv->hostname);
	free(srv->sasldb);
	free(srv->saslauthd);
	free(srv->mechanisms);
	free(srv);
}

/*
 * Cyrus SASL 2.1.28's sasl_seterror() writes its terminating NUL one byte
 * past the connection's error buffer when a message fills the buffer exactly
 * (found by tests/fuzz/fuzz_sasl, confirmed with valgrind): sasldb's "user:
 * NAME@REALM property: … not found" for an unknown user whose name has the
 * right length (84 or 90 bytes with PLAIN under the realm relay.test, 81 with
 * CRAM-MD5) is a one-byte heap overflow that any client can cause before it
 * has logged in, and auth_session_detail() then read past the buffer too.
 * The buffer starts at 150 bytes and only ever grows (doubling), so one long
 * message right after the connection is made grows it past anything a
 * client's response (at most AUTH_DECODED_MAX bytes) and a realm can fill.
 */
#define AUTH_ERROR_FILL (AUTH_DECODED_MAX + 1024)

static void error_buffer_grow(sasl_conn_t *conn)
{
	char *fill = malloc(AUTH_ERROR_FILL + 1);

	if (fill) {
		memset(fill, ' ', AUTH_ERROR_FILL);
		fill[AUTH_ERROR_FILL] = '\0';
		sasl_seterror(conn, SASL_NOLOG, "%s", fill);
		free(fill);
	}
	sasl_seterror(conn, SASL_NOLOG, "%s", "");
}

/* A fresh Cyrus connection: no state from an earlier exchange can leak into this one. */
static int session_connect(struct auth_session *as)
{
	const struct auth_server *srv = as->srv;
	/*
	 * No SASL security layer (SMTP relays never negotiate one: TLS protects
	 * the session), so max_ssf 0; ANONYMOUS never.  Plaintext mechanisms are
	 * allowed: the SMTP layer refuses AUTH before TLS when auth_require_tls.
	 */
	sasl_security_properties_t props = {
		.min_ssf = 0, .max_ssf = 0, .maxbufsize = 0,
		.security_flags = SASL_SEC_NOANONYMOUS,
	};
	sasl_ssf_t ssf = as->tls_ssf;
	int r;

	if (as->conn)
		sasl_dispose(&as->conn);
	as->used = 0;
	r = sasl_server_new("smtp", srv->hostname, srv->hostname, as->local, as->remote,
	    as->callbacks, 0, &as->conn);
	if (r != SASL_OK) {
		as->conn = NULL;
		return r;
	}
	error_buffer_grow(as->conn);
	if ((r = sasl_setprop(as->conn, SASL_SSF_EXTERNAL, &ssf)) != SASL_OK ||
	    (r = sasl_setprop(as->conn, SASL_SEC_PROPS, &props)) != SASL_OK) {
		sasl_dispose(&as->conn);
		return r;
	}
	return SASL_OK;
}

/*
 * s when it is "IP;PORT" as Cyrus parses it, else NULL: Cyrus refuses a
 * connection with an address it cannot parse (and leaks memory doing so),
 * and no mechanism relayd offers needs the addresses anyway.
 */
static const char *cyrus_address(const char *s)
{
	const char *semicolon = s ? strrchr(s, ';') : NULL;
	unsigned char bytes[sizeof(struct in6_addr)];
	char ip[INET6_ADDRSTRLEN];
	if (!semicolon || (size_t)(semicolon - s) >= sizeof ip)
		return NULL;
	size_t n = strlen(semicolon + 1);
	if (n < 1 || n > 5 || strspn(semicolon + 1, "0123456789") != n)
		return NULL;
	memcpy(ip, s, (size_t)(semicolon - s));
	ip[semicolon - s] = '\0';
	if (inet_pton(AF_INET, ip, bytes) != 1 && inet_pton(AF_INET6, ip, bytes) != 1)
		return NULL;
	return s;
}

struct auth_session *auth_session_new(struct auth_server *srv, const char *local,
    const char *remote, unsigned tls_ssf)
{
	struct auth_session *as;

	if (!srv || sasl_running != srv || !(as = calloc(1, sizeof *as)))
		return NULL;
	as->srv = srv;
	as->tls_ssf = tls_ssf;
	as->callbacks[0] = (sasl_callback_t)AUTH_SASL_CB(SASL_CB_LOG, sasl_log_session, as);
	as->callbacks[1] = (sasl_callback_t){ SASL_CB_LIST_END, NULL, NULL };
	local = cyrus_address(local);
	remote = cyrus_address(remote);
	if ((local && !(as->local = strdup(local))) || (remote && !(as->remote = strdup(remote)))) {
		auth_session_free(as);
		return NULL;
	}
	return as;
}

void auth_session_free(struct auth_session *as)
{
	if (!as)
		return;
	if (as->conn)
		sasl_dispose(&as->conn);
	free(as->local);
	free(as->remote);
	free(as->user);
	free(as->challenge);
	free(as);
}

/* The Cyrus connection is made at first use, on the thread that runs the exchange. */
static int session_ready(struct auth_session *as)
{
	const char *list;
	unsigned len;
	int count, r;

	if (as->conn && !as->used)
		return SASL_OK;
	if ((r = session_connect(as)) != SASL_OK)
		return r;
	if (!as->mechanisms[0] &&
	    sasl_listmech(as->conn, NULL, "", " ", "", &list, &len, &count) == SASL_OK &&
	    len < sizeof as->mechanisms)
		memcpy(as->mechanisms, list, (size_t)len + 1);
	return SASL_OK;
}

const char *auth_session_mechanisms(struct auth_session *as)
{
	if (!as || session_ready(as) != SASL_OK)
		return "";
	return as->mechanisms;
}

const char *auth_session_user(const struct auth_session *as)
{
	return as ? as->user : NULL;
}

const char *auth_session_detail(const struct auth_session *as)
{
	return as ? as->detail : "";
}

/* Forget the last exchange's outcome: a new one starts. */
static void session_reset(struct auth_session *as)
{
	as->in_progress = 0;
	as->name_in = AUTH_NAME_NONE;
	free(as->user);
	as->user = NULL;
	as->log[0] = '\0';
	as->detail[0] = '\0';
}

/*
 * Client base64 to bytes in out (AUTH_DECODED_MAX + 1 bytes).  0, or -1 when
 * the text is too long or not base64 (Cyrus' decoder is strict: padding
 * required, no blanks).
 */
static int decode_response(struct auth_session *as, const char *text, char *out,
    unsigned *outlen)
{
	size_t n = strnlen(text, AUTH_RESPONSE_MAX + 1);

	*outlen = 0;
	if (n > AUTH_RESPONSE_MAX) {
		snprintf(as->detail, sizeof as->detail, "response longer than %d characters",
		    AUTH_RESPONSE_MAX);
		return -1;
	}
	if (sasl_decode64(text, (unsigned)n, out, AUTH_DECODED_MAX + 1, outlen) != SASL_OK) {
		explicit_bzero(out, AUTH_DECODED_MAX + 1);
		*outlen = 0;
		snprintf(as->detail, sizeof as->detail, "response is not base64");
		return -1;
	}
	return 0;
}

/*
 * Cyrus SASL 2.1.28 leaks memory on user names a client can send at will
 * (found by tests/fuzz/fuzz_sasl).  LOGIN with a user name that Cyrus'
 * canonicalization refuses loses the copy of the password, and answers
 * SASL_FAIL (a 454, as if the backend were down): an empty name, and one
 * that starts with blanks (its "all-whitespace" check measures from the
 * wrong place, so " b" fails).  A name too long for "@realm" to be added,
 * LOGIN's or PLAIN's authentication identity, loses the canonicalization
 * buffer, up to 9 KiB a try.  No account has such a name: 1 when the
 * decoded message in holds one, which is then a failed login that Cyrus
 * never sees.  Only the name is looked at; a PLAIN message without its two
 * NULs is Cyrus' to refuse.
 */
static int name_refused(struct auth_session *as, const char *in, unsigned inlen)
{
	const char *name = in, *end = in + inlen;

	switch (as->name_in) {
	case AUTH_NAME_NONE:
		return 0;
	case AUTH_NAME_LOGIN:	/* its first answer is the name, its second the password */
		as->name_in = AUTH_NAME_NONE;
		break;
	case AUTH_NAME_PLAIN: {	/* authzid NUL authcid NUL password */
		const char *nul = memchr(in, '\0', inlen);
		if (!nul || !(end = memchr(nul + 1, '\0', (size_t)(in + inlen - nul - 1))))
			return 0;
		name = nul + 1;
		break;
	}
	}
	size_t n = (size_t)(end - name);
	int blank_first = n > 0 && name[0] != '\0' && strchr(" \t\n\v\f\r", name[0]);
	if (n > 0 && n <= AUTH_NAME_MAX && !blank_first)
		return 0;
	snprintf(as->detail, sizeof as->detail, "user name empty, starting with a blank or "
	    "longer than %d bytes", AUTH_NAME_MAX);
	return 1;
}

/* Cyrus' answer in the module's terms (before the backend checks). */
static enum auth_result map_result(int r)
{
	switch (r) {
	case SASL_OK:
		return AUTH_OK;
	case SASL_CONTINUE:
		return AUTH_CONTINUE;
	case SASL_BADAUTH:
	case SASL_NOUSER:
	case SASL_NOAUTHZ:
	case SASL_NOVERIFY:
	case SASL_EXPIRED:
	case SASL_DISABLED:
	/*
	 * The mechanism is on offer (checked before Cyrus is called), so a
	 * NOMECH now comes from inside the exchange: e.g. an authorization
	 * identity other than the login without a sasldb to look it up in.
	 */
	case SASL_NOMECH:
		return AUTH_FAILED;
	case SASL_BADPROT:
	case SASL_BADPARAM:
	case SASL_BUFOVER:
		return AUTH_MALFORMED;
	case SASL_TOOWEAK:
	case SASL_ENCRYPT:
		return AUTH_TOOWEAK;
	default:	/* SASL_FAIL (saslauthd down, sasldb unreadable), SASL_TRYAGAIN, … */
		return AUTH_TEMPFAIL;
	}
}

/*
 * With a sasldb that has gone missing Cyrus says "user not found": that is
 * a broken backend, not a bad login.  0 when the file is still there and
 * readable, -1 (and the reason in detail) when not.
 */
static int sasldb_usable(struct auth_session *as)
{
	const char *path = as->srv->sasldb;
	char why[AUTH_DETAIL_MAX];
	struct stat st;
	int fd;

	if (!path)
		return 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0) {
		snprintf(why, sizeof why, "sasldb %s: %s", path, strerror(errno));
	} else if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, sizeof why, "sasldb %s: not a regular file", path);
	} else {
		close(fd);
		return 0;
	}
	if (fd >= 0)
		close(fd);
	char cyrus[AUTH_DETAIL_MAX];
	snprintf(cyrus, sizeof cyrus, "%s", as->detail);
	as->detail[0] = '\0';
	detail_add(as->detail, sizeof as->detail, why);
	detail_add(as->detail, sizeof as->detail, cyrus);
	return -1;
}

/* Base64 of Cyrus' challenge into the session's buffer. */
static int encode_challenge(struct auth_session *as, const char *out, unsigned outlen)
{
	size_t need = ((size_t)outlen + 2) / 3 * 4 + 1;
	unsigned len = 0;

	if (need > as->challenge_size) {
		char *p = realloc(as->challenge, need);
		if (!p)
			return -1;
		as->challenge = p;
		as->challenge_size = need;
	}
	as->challenge[0] = '\0';
	if (outlen > 0 && (sasl_encode64(out, outlen, as->challenge, (unsigned)need, &len) !=
	    SASL_OK || len >= need))
		return -1;
	as->challenge[outlen > 0 ? len : 0] = '\0';
	return 0;
}

/* Cyrus has answered sasl_server_start or _step with r: the client's answer. */
static enum auth_result session_result(struct auth_session *as, int r, const char *out,
    unsigned outlen, const char **challenge)
{
	enum auth_result result = map_result(r);
	const void *user = NULL;

	as->in_progress = 0;
	if (result == AUTH_CONTINUE) {
		if (encode_challenge(as, out, out ? outlen : 0) < 0) {
			snprintf(as->detail, sizeof as->detail, "out of memory");
			return AUTH_TEMPFAIL;
		}
		as->in_progress = 1;
		*challenge = as->challenge;
		return AUTH_CONTINUE;
	}
	if (result == AUTH_OK) {
		if (sasl_getprop(as->conn, SASL_USERNAME, &user) != SASL_OK || !user ||
		    !(as->user = strdup(user))) {
			snprintf(as->detail, sizeof as->detail, "no user name after login");
			return AUTH_TEMPFAIL;
		}
		return AUTH_OK;
	}
	/* "user not found: Password verification failed" and the like. */
	if (r == SASL_NOMECH) {
		/* Cyrus' own words here are a stale "Unable to find a callback". */
		snprintf(as->detail, sizeof as->detail, "no mechanism available inside the "
		    "exchange (an authorization identity other than the login?)");
	} else if (as->log[0]) {
		snprintf(as->detail, sizeof as->detail, "%s: %s", sasl_errstring(r, NULL, NULL),
		    as->log);
	} else {
		/* "SASL(-13): authentication failure: …": the words after the code. */
		const char *e = sasl_errdetail(as->conn), *words = e ? strstr(e, "): ") : NULL;
		as->detail[0] = '\0';
		detail_add(as->detail, sizeof as->detail, words ? words + 3 : e);
	}
	if (result == AUTH_FAILED && sasldb_usable(as) < 0)
		result = AUTH_TEMPFAIL;
	return result;
}

/* The mechanism as the client spelled it, checked against what this session offers. */
static int mechanism_offered(struct auth_session *as, const char *mech)
{
	size_t n = mech ? strlen(mech) : 0;

	if (n == 0 || n > AUTH_MECH_NAME_MAX || strspn(mech, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_") != n) {
		snprintf(as->detail, sizeof as->detail, "bad mechanism name");
		return 0;
	}
	if (!sasl_list_has(as->mechanisms, mech, n)) {
		snprintf(as->detail, sizeof as->detail, "mechanism %s not on offer", mech);
		return 0;
	}
	return 1;
}

enum auth_result auth_session_start(struct auth_session *as, const char *mech,
    const char *initial, const char **challenge)
{
	char in[AUTH_DECODED_MAX + 1] = "";
	unsigned inlen = 0;
	const char *out = NULL;
	unsigned outlen = 0;
	int r;

	*challenge = NULL;
	session_reset(as);
	if ((r = session_ready(as)) != SASL_OK) {
		snprintf(as->detail, sizeof as->detail, "Cyrus SASL: %s",
		    sasl_errstring(r, NULL, NULL));
		return AUTH_TEMPFAIL;
	}
	if (!mechanism_offered(as, mech))
		return AUTH_NOMECH;
	/* RFC 4954 §4: "=" is an initial response of zero bytes; NULL is none at all. */
	if (initial && strcmp(initial, "=") != 0 && decode_response(as, initial, in, &inlen) < 0)
		return AUTH_MALFORMED;
	as->name_in = strcasecmp(mech, "PLAIN") == 0 ? AUTH_NAME_PLAIN :
	    strcasecmp(mech, "LOGIN") == 0 ? AUTH_NAME_LOGIN : AUTH_NAME_NONE;
	/* LOGIN without an initial response asks for the name first. */
	if (inlen > 0 && name_refused(as, in, inlen)) {
		explicit_bzero(in, sizeof in);
		return AUTH_FAILED;
	}
	as->used = 1;
	r = sasl_server_start(as->conn, mech, initial ? in : NULL, inlen, &out, &outlen);
	explicit_bzero(in, sizeof in);
	return session_result(as, r, out, outlen, challenge);
}

enum auth_result auth_session_step(struct auth_session *as, const char *response,
    const char **challenge)
{
	char in[AUTH_DECODED_MAX + 1];
	unsigned inlen = 0;
	const char *out = NULL;
	unsigned outlen = 0;
	int r;

	*challenge = NULL;
	if (!as->in_progress) {
		snprintf(as->detail, sizeof as->detail, "no authentication exchange in progress");
		return AUTH_MALFORMED;
	}
	as->in_progress = 0;
	as->log[0] = '\0';
	as->detail[0] = '\0';
	if (strcmp(response, "*") == 0) {
		snprintf(as->detail, sizeof as->detail, "cancelled by the client");
		return AUTH_CANCELLED;
	}
	if (decode_response(as, response, in, &inlen) < 0)
		return AUTH_MALFORMED;
	if (name_refused(as, in, inlen)) {
		explicit_bzero(in, sizeof in);
		return AUTH_FAILED;
	}
	r = sasl_server_step(as->conn, in, inlen, &out, &outlen);
	explicit_bzero(in, sizeof in);
	return session_result(as, r, out, outlen, challenge);
}
