/*
 * relayctl_check — `check UPSTREAM [--from A --to B]`: talk to an upstream
 * step by step the way relayd would (its host, port, TLS mode, CA, user and
 * password_file), printing one line per step with OK or FAIL and the
 * server's own words: connect (each address), greeting, EHLO, STARTTLS or
 * TLS (protocol, cipher, certificate, verification), AUTH, and optionally
 * MAIL and RCPT, then RSET and QUIT.  A command-line tool: plain blocking
 * sockets with timeouts are the simple, right tool here.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "relayd/relayctl.h"

#define CHECK_REPLY_MAX 4096

struct conv {
	int fd;
	SSL *ssl;
	char buf[CHECK_REPLY_MAX];
	size_t len;
	char reply[CHECK_REPLY_MAX];	/* the last reply, lines joined by " / " */
	char first[CHECK_REPLY_MAX];	/* its first line's text, after "NNN " */
	int code;
	int failed;
};

static void step(struct conv *cv, int ok, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void step(struct conv *cv, int ok, const char *what, const char *fmt, ...)
{
	va_list ap;
	char text[CHECK_REPLY_MAX], esc[CHECK_REPLY_MAX];
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	/* The server's words, escaped: a terminal is no place for its control bytes. */
	printf("%-4s %-9s %s\n", ok ? "OK" : "FAIL", what, relayctl_esc(text, esc, sizeof esc));
	cv->failed |= !ok;
}

static int conv_read(struct conv *cv, char *p, size_t n)
{
	return cv->ssl ? SSL_read(cv->ssl, p, (int)n) : (int)read(cv->fd, p, n);
}

static int conv_write(struct conv *cv, const char *p, size_t n)
{
	return cv->ssl ? SSL_write(cv->ssl, p, (int)n) == (int)n : write(cv->fd, p, n) == (ssize_t)n;
}

static int conv_send(struct conv *cv, const char *line)
{
	return conv_write(cv, line, strlen(line)) && conv_write(cv, "\r\n", 2);
}

/* One whole reply (continuation lines too) into cv->reply and cv->code; -1 on EOF. */
static int conv_reply(struct conv *cv)
{
	cv->reply[0] = '\0';
	cv->code = 0;
	for (;;) {
		char *nl = memchr(cv->buf, '\n', cv->len);
		if (!nl) {
			if (cv->len == sizeof cv->buf)
				return -1;
			int n = conv_read(cv, cv->buf + cv->len, sizeof cv->buf - cv->len);
			if (n <= 0)
				return -1;
			cv->len += (size_t)n;
			continue;
		}
		size_t len = (size_t)(nl - cv->buf);
		char line[CHECK_REPLY_MAX];
		snprintf(line, sizeof line, "%.*s", (int)(len && nl[-1] == '\r' ? len - 1 : len),
		    cv->buf);
		memmove(cv->buf, nl + 1, cv->len - len - 1);
		cv->len -= len + 1;
		size_t used = strlen(cv->reply);
		if (!used)
			snprintf(cv->first, sizeof cv->first, "%s", strlen(line) > 4 ? line + 4 : "");
		snprintf(cv->reply + used, sizeof cv->reply - used, "%s%s", used ? " / " : "", line);
		if (strlen(line) < 4 || line[3] != '-') {
			cv->code = atoi(line);
			return 0;
		}
	}
}

static int command(struct conv *cv, const char *line)
{
	return conv_send(cv, line) && conv_reply(cv) == 0 ? cv->code : -1;
}

static int try_connect(struct conv *cv, const struct conf_upstream *u)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC }, *res, *a;
	struct timeval tv = { (time_t)u->timeout_connect, 0 };
	char port[8], ip[INET6_ADDRSTRLEN];
	int rc;

	snprintf(port, sizeof port, "%u", u->port);
	if ((rc = getaddrinfo(u->host, port, &hints, &res)) != 0) {
		step(cv, 0, "resolve", "%s: %s", u->host, gai_strerror(rc));
		return -1;
	}
	for (a = res; a; a = a->ai_next) {
		getnameinfo(a->ai_addr, a->ai_addrlen, ip, sizeof ip, NULL, 0, NI_NUMERICHOST);
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);	/* connect too */
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
			struct timeval io = { (time_t)u->timeout_command, 0 };
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &io, sizeof io);
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &io, sizeof io);
			step(cv, 1, "connect", "%s[%s]:%u", u->host, ip, u->port);
			cv->fd = fd;
			freeaddrinfo(res);
			return 0;
		}
		step(cv, 0, "connect", "%s[%s]:%u: %s%s", u->host, ip, u->port,
		    errno == EINPROGRESS || errno == EAGAIN ? "timed out" : strerror(errno),
		    u->port == 25 ? " (outgoing port 25 is often blocked at VPS providers)" : "");
		close(fd);
	}
	freeaddrinfo(res);
	return -1;
}

/* The handshake, and what the certificate says; -1 when it failed or did not verify. */
static int start_tls(struct conv *cv, const struct conf_upstream *u)
{
	int verify = u->verify && u->tls != CONF_TLS_MAY;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char subject[256] = "?", issuer[256] = "?", until[64] = "?";

	if (!ctx)
		return -1;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (verify && (u->ca_file ? SSL_CTX_load_verify_locations(ctx, u->ca_file, NULL) :
	    SSL_CTX_set_default_verify_paths(ctx)) != 1) {
		step(cv, 0, "TLS", "cannot load %s", u->ca_file ? u->ca_file : "the system CA store");
		SSL_CTX_free(ctx);
		return -1;
	}
	cv->ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);	/* the SSL keeps its own reference */
	if (!cv->ssl)
		return -1;
	SSL_set_fd(cv->ssl, cv->fd);
	SSL_set_tlsext_host_name(cv->ssl, u->host);
	unsigned char ip[16];	/* as relayd checks it: an address literal against IP names */
	if (inet_pton(AF_INET, u->host, ip) == 1 || inet_pton(AF_INET6, u->host, ip) == 1)
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(cv->ssl), u->host);
	else
		SSL_set1_host(cv->ssl, u->host);
	if (SSL_connect(cv->ssl) != 1) {
		char err[256] = "";
		ERR_error_string_n(ERR_get_error(), err, sizeof err);
		step(cv, 0, "TLS", "handshake failed: %s", err[0] ? err : "connection closed");
		SSL_free(cv->ssl);
		cv->ssl = NULL;
		return -1;
	}
	X509 *cert = SSL_get1_peer_certificate(cv->ssl);
	if (cert) {
		X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
		X509_NAME_oneline(X509_get_issuer_name(cert), issuer, sizeof issuer);
		struct tm tm;
		if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
			strftime(until, sizeof until, "%Y-%m-%d", &tm);
		X509_free(cert);
	}
	long v = SSL_get_verify_result(cv->ssl);
	step(cv, 1, "TLS", "%s %s, certificate %s, issuer %s, expires %s", SSL_get_version(cv->ssl),
	    SSL_get_cipher_name(cv->ssl), subject, issuer, until);
	if (verify)
		step(cv, v == X509_V_OK, "verify", "%s for %s", v == X509_V_OK ? "trusted" :
		    X509_verify_cert_error_string(v), u->host);
	return verify && v != X509_V_OK ? -1 : 0;
}

static int ehlo(struct conv *cv, const char *name)
{
	char line[300];
	snprintf(line, sizeof line, "EHLO %s", name);
	int code = command(cv, line);
	step(cv, code / 100 == 2, "EHLO", "%s", cv->reply);
	return code / 100 == 2 ? 0 : -1;
}

/* The AUTH words of the last EHLO reply ("PLAIN LOGIN"), or "". */
static void auth_words(const char *reply, char *out, size_t len)
{
	const char *p = strstr(reply, "AUTH ");
	out[0] = '\0';
	if (p) {
		p += 5;
		snprintf(out, len, "%.*s", (int)strcspn(p, "/"), p);
	}
}

static int login(struct conv *cv, const struct conf_upstream *u, const char *ehlo_reply)
{
	char offered[256], err[256];
	const char *mech, *initial, *response;
	char *password = auth_read_secret(u->password_file, err, sizeof err);
	int ssf = cv->ssl ? 128 : 0, code;

	if (!password) {
		step(cv, 0, "AUTH", "password_file %s", err);
		return -1;
	}
	auth_words(ehlo_reply, offered, sizeof offered);
	struct auth_client *ac = auth_client_new(u->host, u->user, password, (unsigned)ssf);
	explicit_bzero(password, strlen(password));
	free(password);
	if (!ac || auth_client_start(ac, offered, &mech, &initial, err, sizeof err) < 0) {
		step(cv, 0, "AUTH", "%s (offered: %s)", ac ? err : "cannot start SASL",
		    offered[0] ? offered : "none");
		auth_client_free(ac);
		return -1;
	}
	char line[1100];
	snprintf(line, sizeof line, "AUTH %s%s%s", mech, initial ? " " : "", initial ? initial : "");
	for (code = command(cv, line); code == 334; code = command(cv, response)) {
		if (auth_client_step(ac, cv->first, &response, err, sizeof err) < 0) {
			step(cv, 0, "AUTH", "%s", err);
			command(cv, "*");
			break;
		}
	}
	step(cv, code == 235, "AUTH", "%s as %s: %s", mech, u->user, cv->reply);
	auth_client_free(ac);
	return code == 235 ? 0 : -1;
}

int relayctl_check(const struct config *conf, const char *name, const char *from, const char *to)
{
	const struct conf_upstream *u = NULL;
	struct conv cv = { .fd = -1 };

	for (size_t i = 0; i < conf->nupstreams; i++)
		if (strcmp(conf->upstreams[i].name, name) == 0)
			u = &conf->upstreams[i];
	if (!u || u->direct) {
		fprintf(stderr, "relayctl: %s\n", !u ? "no upstream of that name in the "
		    "configuration" : "direct has no host of its own: check an upstream");
		return 2;
	}
	if (try_connect(&cv, u) < 0) {
		printf("FAILED: relayd's deliveries through it will fail the same way\n");
		return 1;
	}
	if (u->tls == CONF_TLS_IMPLICIT && start_tls(&cv, u) < 0)
		goto done;
	if (conv_reply(&cv) < 0 || cv.code != 220) {
		step(&cv, 0, "greeting", "%s", cv.reply[0] ? cv.reply : "connection closed");
		goto done;
	}
	step(&cv, 1, "greeting", "%s", cv.reply);
	if (ehlo(&cv, conf->hostname) < 0)
		goto done;
	int offers_tls = strstr(cv.reply, "STARTTLS") != NULL;
	if ((u->tls == CONF_TLS_STARTTLS || (u->tls == CONF_TLS_MAY && offers_tls)) && !cv.ssl) {
		if (!offers_tls) {
			step(&cv, 0, "STARTTLS", "not offered (tls starttls: relayd will not send)");
			goto done;
		}
		int code = command(&cv, "STARTTLS");
		step(&cv, code == 220 && cv.len == 0, "STARTTLS", "%s%s", cv.reply, cv.len ?
		    " (and more plaintext after it: injection?)" : "");
		if (code != 220 || cv.len || start_tls(&cv, u) < 0 || ehlo(&cv, conf->hostname) < 0)
			goto done;
	}
	if (u->user && login(&cv, u, cv.reply) < 0)
		goto done;
	if (from && to) {
		char line[1100];
		snprintf(line, sizeof line, "MAIL FROM:<%s>", from);
		int code = command(&cv, line);
		step(&cv, code / 100 == 2, "MAIL", "%s", cv.reply);
		if (code / 100 == 2) {
			snprintf(line, sizeof line, "RCPT TO:<%s>", to);
			code = command(&cv, line);
			step(&cv, code / 100 == 2, "RCPT", "%s", cv.reply);
		}
		command(&cv, "RSET");
	}
	command(&cv, "QUIT");
done:
	if (cv.ssl) {
		SSL_shutdown(cv.ssl);
		SSL_free(cv.ssl);
	}
	close(cv.fd);
	printf("%s\n", cv.failed ? "FAILED: relayd's deliveries through it will fail the same way" :
	    "all steps OK");
	return cv.failed ? 1 : 0;
}
