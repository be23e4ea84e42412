/*
 * client — SMTP AUTH towards an upstream (RFC 4954), through the Cyrus SASL
 * client library: the credentials of an upstream block, the mechanism picked
 * from what the upstream offers, and the base64 on both sides done by Cyrus.
 * Also reads an upstream's password_file.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sasl/sasl.h>
#include <sasl/saslutil.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"

#define SECRET_MAX 1024			/* a password longer than this is not one */
#define CHALLENGE_MAX 12288		/* decoded bytes of one 334 challenge */

/* Mechanisms relayd will use, best first; others (GSSAPI, ANONYMOUS) never. */
static const char *const usable[] = {
	"SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN",
};

struct auth_client {
	sasl_conn_t *conn;
	char *user;
	sasl_secret_t *secret;
	sasl_callback_t callbacks[4];
	char *out;			/* base64 of the last response */
	size_t out_size;
	char mech[32];
};

char *auth_read_secret(const char *path, char *err, size_t errlen)
{
	char buf[SECRET_MAX + 2];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	ssize_t n;

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen, "%s: readable by group or others (mode %03o): chmod 600 it",
		    path, (unsigned)(st.st_mode & 0777));
		close(fd);
		return NULL;
	}
	do
		n = read(fd, buf, sizeof buf - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0' || (size_t)n > SECRET_MAX) {
		snprintf(err, errlen, "%s: %s", path, buf[0] ? "first line too long" :
		    "no password on the first line");
		explicit_bzero(buf, sizeof buf);
		return NULL;
	}
	char *secret = strdup(buf);
	explicit_bzero(buf, sizeof buf);
	if (!secret)
		snprintf(err, errlen, "out of memory");
	return secret;
}

static int get_user(void *context, int id, const char **result, unsigned *len)
{
	struct auth_client *ac = context;
	if (id != SASL_CB_USER && id != SASL_CB_AUTHNAME)
		return SASL_BADPARAM;
	/* The authorization identity is empty: act as the login itself. */
	*result = id == SASL_CB_USER ? "" : ac->user;
	if (len)
		*len = (unsigned)strlen(*result);
	return SASL_OK;
}

static int get_pass(sasl_conn_t *conn, void *context, int id, sasl_secret_t **psecret)
{
	struct auth_client *ac = context;
	(void)conn;
	if (id != SASL_CB_PASS)
		return SASL_BADPARAM;
	*psecret = ac->secret;
	return SASL_OK;
}

typedef int (*sasl_cb_fn)(void);

/* Cyrus' own mutexes are no-ops unless given: the server side runs on another thread. */
static void *mutex_alloc(void)
{
	pthread_mutex_t *m = malloc(sizeof *m);
	if (m)
		pthread_mutex_init(m, NULL);
	return m;
}
static int mutex_lock(void *m) { return pthread_mutex_lock(m) ? SASL_FAIL : SASL_OK; }
static int mutex_unlock(void *m) { return pthread_mutex_unlock(m) ? SASL_FAIL : SASL_OK; }
static void mutex_free(void *m)
{
	pthread_mutex_destroy(m);
	free(m);
}

void auth_sasl_threads(void)
{
	sasl_set_mutex(mutex_alloc, mutex_lock, mutex_unlock, mutex_free);
}

int auth_client_init(void)
{
	return sasl_client_init(NULL) == SASL_OK ? 0 : -1;
}

void auth_client_done(void)
{
	sasl_client_done();
}

void auth_client_free(struct auth_client *ac)
{
	if (!ac)
		return;
	if (ac->conn)
		sasl_dispose(&ac->conn);
	if (ac->secret) {
		explicit_bzero(ac->secret->data, ac->secret->len);
		free(ac->secret);
	}
	free(ac->user);
	if (ac->out) {
		explicit_bzero(ac->out, ac->out_size);
		free(ac->out);
	}
	free(ac);
}

struct auth_client *auth_client_new(const char *host, const char *user, const char *password,
    unsigned tls_ssf)
{
	struct auth_client *ac = calloc(1, sizeof *ac);
	size_t plen = strlen(password);
	sasl_security_properties_t props = {
		.min_ssf = 0, .max_ssf = 0, .maxbufsize = 0,
		.security_flags = SASL_SEC_NOANONYMOUS,
	};
	sasl_ssf_t ssf = tls_ssf;

	if (!ac || !(ac->user = strdup(user)) ||
	    !(ac->secret = malloc(sizeof *ac->secret + plen + 1))) {
		auth_client_free(ac);
		return NULL;
	}
	ac->secret->len = plen;
	memcpy(ac->secret->data, password, plen + 1);
	ac->callbacks[0] = (sasl_callback_t){ SASL_CB_USER, (sasl_cb_fn)(void (*)(void))get_user,
	    ac };
	ac->callbacks[1] = (sasl_callback_t){ SASL_CB_AUTHNAME,
	    (sasl_cb_fn)(void (*)(void))get_user, ac };
	ac->callbacks[2] = (sasl_callback_t){ SASL_CB_PASS, (sasl_cb_fn)(void (*)(void))get_pass,
	    ac };
	ac->callbacks[3] = (sasl_callback_t){ SASL_CB_LIST_END, NULL, NULL };
	if (sasl_client_new("smtp", host, NULL, NULL, ac->callbacks, 0, &ac->conn) != SASL_OK ||
	    sasl_setprop(ac->conn, SASL_SSF_EXTERNAL, &ssf) != SASL_OK ||
	    sasl_setprop(ac->conn, SASL_SEC_PROPS, &props) != SASL_OK) {
		auth_client_free(ac);
		return NULL;
	}
	return ac;
}

/* Base64 of Cyrus' output into ac->out; NULL output stays NULL. */
static int encode(struct auth_client *ac, const char *data, unsigned len, const char **b64)
{
	size_t need = ((size_t)len + 2) / 3 * 4 + 2;
	unsigned outlen = 0;

	if (!data) {
		*b64 = NULL;
		return 0;
	}
	if (need > ac->out_size) {
		char *p = malloc(need);
		if (!p)
			return -1;
		if (ac->out) {
			explicit_bzero(ac->out, ac->out_size);
			free(ac->out);
		}
		ac->out = p;
		ac->out_size = need;
	}
	if (len == 0) {
		memcpy(ac->out, "=", 2);	/* RFC 4954 §4: an empty initial response */
	} else if (sasl_encode64(data, len, ac->out, (unsigned)need, &outlen) != SASL_OK) {
		return -1;
	}
	*b64 = ac->out;
	return 0;
}

int auth_client_start(struct auth_client *ac, const char *offered, const char **mech,
    const char **initial, char *err, size_t errlen)
{
	char list[256] = "";
	const char *out = NULL, *chosen = NULL;
	unsigned outlen = 0;

	for (size_t i = 0; i < sizeof usable / sizeof usable[0]; i++) {
		size_t n = strlen(usable[i]);
		for (const char *p = offered; (p = strcasestr(p, usable[i])); p += n) {
			if ((p == offered || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) {
				snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
				    list[0] ? " " : "", usable[i]);
				break;
			}
		}
	}
	if (!list[0]) {
		snprintf(err, errlen, "no usable AUTH mechanism offered (\"%s\")", offered);
		return -1;
	}
	int r = sasl_client_start(ac->conn, list, NULL, &out, &outlen, &chosen);
	if ((r != SASL_OK && r != SASL_CONTINUE) || !chosen) {
		snprintf(err, errlen, "SASL client: %s", sasl_errdetail(ac->conn));
		return -1;
	}
	snprintf(ac->mech, sizeof ac->mech, "%s", chosen);
	*mech = ac->mech;
	if (encode(ac, out, outlen, initial) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int auth_client_step(struct auth_client *ac, const char *challenge, const char **response,
    char *err, size_t errlen)
{
	char in[CHALLENGE_MAX];
	unsigned inlen = 0;
	const char *out = NULL;
	unsigned outlen = 0;

	if (sasl_decode64(challenge, (unsigned)strlen(challenge), in, sizeof in, &inlen) !=
	    SASL_OK) {
		snprintf(err, errlen, "the upstream's challenge is not base64");
		return -1;
	}
	int r = sasl_client_step(ac->conn, in, inlen, NULL, &out, &outlen);
	if (r != SASL_OK && r != SASL_CONTINUE) {
		snprintf(err, errlen, "SASL client: %s", sasl_errdetail(ac->conn));
		return -1;
	}
	if (!out) {
		out = "";
		outlen = 0;
	}
	/* A step's empty answer is an empty line, not "=". */
	if (outlen == 0) {
		*response = "";
		return 0;
	}
	if (encode(ac, out, outlen, response) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}
