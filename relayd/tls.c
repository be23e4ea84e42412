/*
 * tls — the server SSL_CTX and handshake descriptions.  TLS 1.2 and 1.3 only;
 * the 1.2 suites are Mozilla's "intermediate" list (AEAD with forward secrecy),
 * 1.3 keeps OpenSSL's defaults, which are all AEAD.
 */
#include "relayd/tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define TLS12_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:" \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define TLS_GROUPS "X25519:prime256v1:secp384r1"

void tls_errors(char *out, size_t outlen)
{
	unsigned long e;
	size_t n = 0;
	out[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		char one[256];
		ERR_error_string_n(e, one, sizeof one);
		int w = snprintf(out + n, outlen - n, "%s%s", n ? "; " : "", one);
		if (w < 0 || (size_t)w >= outlen - n)
			n = outlen - 1;
		else
			n += (size_t)w;
	}
	if (n == 0)
		snprintf(out, outlen, "%s", errno ? strerror(errno) : "unknown error");
}

static SSL_CTX *fail(SSL_CTX *ctx, const struct config *conf, const struct conf_file *f,
    const char *what, char *err, size_t errlen)
{
	char detail[512];
	tls_errors(detail, sizeof detail);
	snprintf(err, errlen, "%s:%d: %s %s: %s", conf->path, f->line, what, f->path, detail);
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_server_ctx_new(const struct config *conf, char *err, size_t errlen)
{
	const struct conf_file *cert = &conf->tls_cert, *key = &conf->tls_key;
	struct stat st;

	err[0] = '\0';
	if (!cert->path)
		return NULL;
	/* The key is a secret: refuse one that any local user can read. */
	if (stat(key->path, &st) < 0) {
		snprintf(err, errlen, "%s:%d: tls_key %s: %s", conf->path, key->line, key->path,
		    strerror(errno));
		return NULL;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		snprintf(err, errlen, "%s:%d: tls_key %s: readable by everyone (chmod o-rwx)",
		    conf->path, key->line, key->path);
		return NULL;
	}

	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return fail(NULL, conf, cert, "tls_cert", err, errlen);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1 ||
	    SSL_CTX_set_dh_auto(ctx, 1) != 1)
		return fail(ctx, conf, cert, "tls_cert", err, errlen);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"relayd", 6);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert->path) != 1)
		return fail(ctx, conf, cert, "tls_cert", err, errlen);
	if (SSL_CTX_use_PrivateKey_file(ctx, key->path, SSL_FILETYPE_PEM) != 1)
		return fail(ctx, conf, key, "tls_key", err, errlen);
	if (SSL_CTX_check_private_key(ctx) != 1)
		return fail(ctx, conf, key, "tls_key (does not match tls_cert)", err, errlen);
	return ctx;
}

void tls_describe(SSL *ssl, char *out, size_t outlen)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	int alg = 0, bits = c ? SSL_CIPHER_get_bits(c, &alg) : 0;
	snprintf(out, outlen, "%s with cipher %s (%d/%d bits)", SSL_get_version(ssl),
	    c ? SSL_CIPHER_get_name(c) : "none", bits, alg);
}

unsigned tls_strength(SSL *ssl)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	return c ? (unsigned)SSL_CIPHER_get_bits(c, NULL) : 0;
}

void tls_close_notify(struct bufferevent *bev)
{
	SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;

	if (!ssl || !SSL_is_init_finished(ssl) ||
	    evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	SSL_shutdown(ssl);	/* one non-blocking write of the alert; no wait for the peer's */
	ERR_clear_error();
}
