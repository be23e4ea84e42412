/* notify — systemd's readiness protocol (sd_notify) without libsystemd. */
#ifndef RELAYD_NOTIFY_H
#define RELAYD_NOTIFY_H

/* Send state ("READY=1", "STOPPING=1", …) to $NOTIFY_SOCKET, if set. */
void notify_systemd(const char *state);

#endif
