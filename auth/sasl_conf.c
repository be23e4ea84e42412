/*
 * sasl_conf — what the AUTH settings must be before Cyrus SASL is started
 * (auth_server_new(), so `relayd -n` too): the sasldb a regular file nobody
 * else can read, saslauthd's run directory, no mechanism that cannot work;
 * and the "FILE:LINE: message" every such refusal is worded as.
 */
#include "auth/sasl_conf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

void sasl_conf_message(char *err, size_t errlen, const struct config *conf, int line,
    const char *fmt, ...)
{
	va_list ap;
	int n;

	if (errlen == 0)
		return;
	if (line > 0)
		n = snprintf(err, errlen, "%s:%d: ", conf->path ? conf->path : "-", line);
	else
		n = snprintf(err, errlen, "%s: ", conf->path ? conf->path : "-");
	if (n < 0 || (size_t)n >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/*
 * The sasldb file holds every password (in clear, for CRAM-MD5's sake):
 * readable by relayd, a regular file, and nobody else's business.  Group
 * access is fine: saslpasswd2 makes 0640 files for Debian's group sasl.
 */
static int check_sasldb(const struct config *conf, char *err, size_t errlen)
{
	const struct conf_file *f = &conf->auth_sasldb;
	struct stat st;
	int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0 || fstat(fd, &st) < 0) {
		sasl_conf_message(err, errlen, conf, f->line, "auth_sasldb %s: %s", f->path,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	if (!S_ISREG(st.st_mode)) {
		sasl_conf_message(err, errlen, conf, f->line, "auth_sasldb %s: not a regular file",
		    f->path);
		return -1;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		sasl_conf_message(err, errlen, conf, f->line, "auth_sasldb %s: %s by everyone "
		    "(chmod o-rwx)", f->path, (st.st_mode & S_IROTH) ? "readable" : "writable");
		return -1;
	}
	return 0;
}

/* saslauthd's socket is DIR/mux; saslauthd itself may start later (454 until then). */
static int check_saslauthd(const struct config *conf, char *err, size_t errlen)
{
	const struct conf_file *f = &conf->auth_saslauthd;
	struct sockaddr_un sun;
	struct stat st;

	if (stat(f->path, &st) < 0) {
		sasl_conf_message(err, errlen, conf, f->line, "auth_saslauthd %s: %s", f->path,
		    strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		sasl_conf_message(err, errlen, conf, f->line, "auth_saslauthd %s: not a directory "
		    "(give saslauthd's run directory, the one that holds mux)", f->path);
		return -1;
	}
	if (strlen(f->path) + sizeof "/mux" > sizeof sun.sun_path) {
		sasl_conf_message(err, errlen, conf, f->line, "auth_saslauthd %s: path too long for "
		    "a socket", f->path);
		return -1;
	}
	return 0;
}

/*
 * Mechanisms that cannot work whatever is installed: ANONYMOUS would make
 * relayd an open relay, and saslauthd checks only plaintext passwords, so
 * without a sasldb nothing can answer CRAM-MD5, DIGEST-MD5, SCRAM or NTLM.
 */
static int check_mechanism_names(const struct config *conf, char *err, size_t errlen)
{
	const char *list = conf->auth_mechanisms ? conf->auth_mechanisms : "";

	for (const char *p = list; *p; ) {
		size_t n = strcspn(p, " ");
		if (n == 9 && strncasecmp(p, "ANONYMOUS", n) == 0) {
			sasl_conf_message(err, errlen, conf, 0, "auth_mechanisms: ANONYMOUS would let "
			    "anybody relay");
			return -1;
		}
		if (!conf->auth_sasldb.path && !(n == 5 && strncasecmp(p, "PLAIN", n) == 0) &&
		    !(n == 5 && strncasecmp(p, "LOGIN", n) == 0)) {
			sasl_conf_message(err, errlen, conf, 0, "auth_mechanisms: %.*s needs auth_sasldb "
			    "(saslauthd checks PLAIN and LOGIN passwords only)", (int)n, p);
			return -1;
		}
		p += n;
		p += strspn(p, " ");
	}
	return 0;
}

int sasl_list_has(const char *list, const char *word, size_t n)
{
	for (const char *p = list; *p; ) {
		size_t m = strcspn(p, " ");
		if (m == n && strncasecmp(p, word, n) == 0)
			return 1;
		p += m;
		p += strspn(p, " ");
	}
	return 0;
}

int sasl_conf_check(const struct config *conf, char *err, size_t errlen)
{
	if (conf->auth_sasldb.path && check_sasldb(conf, err, errlen) < 0)
		return -1;
	if (conf->auth_saslauthd.path && check_saslauthd(conf, err, errlen) < 0)
		return -1;
	return check_mechanism_names(conf, err, errlen);
}
