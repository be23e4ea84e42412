/*
 * smtp_server — the server side of SMTP: one struct smtp_session per client
 * connection, from greeting to QUIT (DESIGN.md, Data flow: listener → smtp
 * session → queue).
 */
#ifndef RELAYD_SMTP_SERVER_H
#define RELAYD_SMTP_SERVER_H

#include <event2/util.h>
#include <sys/socket.h>

struct server;
struct server_listener;

/*
 * Take over a connection accepted on listener: greet the client and serve it
 * (on a `proxy` listener, once its PROXY header names the client).
 */
void smtp_server_accept(const struct server_listener *listener, evutil_socket_t fd,
    const struct sockaddr *addr, socklen_t addrlen);
/*
 * Graceful stop: end sessions with 421 (after their commit, when one is in
 * flight).  With now set (a second TERM/INT), drop them without waiting for
 * the 421 to be read; sessions waiting for a commit still get their answer.
 */
void smtp_server_shutdown(struct server *srv, int now);

#endif
