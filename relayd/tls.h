/*
 * tls — relayd's OpenSSL glue for the server side: the one SSL_CTX made from
 * tls_cert/tls_key with Mozilla's "intermediate" profile, and a line that
 * describes a finished handshake for logs and the Received: header.
 */
#ifndef RELAYD_TLS_H
#define RELAYD_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "conf/conf.h"

/*
 * The server context, or NULL: with err "" when no certificate is configured,
 * else "FILE:LINE: message" (unreadable or mismatched files, a key readable by
 * everyone).  Also what `relayd -n` checks.
 */
SSL_CTX *tls_server_ctx_new(const struct config *conf, char *err, size_t errlen);

/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)". */
void tls_describe(SSL *ssl, char *out, size_t outlen);
/* The cipher's strength in bits, for SASL's external SSF. */
unsigned tls_strength(SSL *ssl);
/* The queued OpenSSL errors as one line (and the queue emptied). */
void tls_errors(char *out, size_t outlen);
struct bufferevent;
/*
 * Before freeing a TLS bufferevent: send close_notify (RFC 8446 §6.1) when
 * the handshake is done and nothing is left to write, so the peer can tell
 * an orderly end from a cut connection.  Best effort, never blocks.
 */
void tls_close_notify(struct bufferevent *bev);

#endif
