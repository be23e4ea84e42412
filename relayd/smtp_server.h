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

/* Take over an accepted connection: greet the client and serve it. */
void smtp_server_accept(struct server *srv, evutil_socket_t fd,
    const struct sockaddr *addr, socklen_t addrlen);
/* Graceful stop: end idle sessions with 421 now, the others once their commit is done. */
void smtp_server_shutdown(struct server *srv);

#endif
