/*
 * notify — tells systemd how relayd is doing (Type=notify): READY=1 once it
 * listens with its queue open, RELOADING=1 around a reload, STOPPING=1 at
 * SIGTERM.  The protocol is one datagram to the unix socket named in
 * NOTIFY_SOCKET ('@' for the abstract namespace), so no libsystemd is
 * needed; without NOTIFY_SOCKET nothing is sent.
 */
#include "relayd/notify.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void notify_systemd(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len;
	int fd;

	if (!path || (path[0] != '/' && path[0] != '@') ||
	    (len = strlen(path)) >= sizeof sa.sun_path)
		return;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return;
	/* Best effort: systemd waiting for READY times out on its own. */
	(void)sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	close(fd);
}
