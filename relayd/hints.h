/*
 * hints — a one-line explanation and fix for well-known failures (Gmail's
 * NotAuthorizedError, 5.7.26, a refused login, a TLS port mix-up, a blocked
 * port 25…), for the delivery log, relayctl show and the DSN.
 */
#ifndef RELAYD_HINTS_H
#define RELAYD_HINTS_H

#include "conf/conf.h"

/* The hint for a reply (its enhanced code and whole text), or NULL. */
const char *hint_for(const struct config *conf, const char *dsn, const char *text);
/* The same for a stored reply ("452 4.2.2 …"): its code read from the text. */
const char *hint_for_reply(const struct config *conf, const char *reply);

#endif
