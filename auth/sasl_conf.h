/*
 * sasl_conf — the AUTH settings checked before Cyrus SASL starts (auth/sasl.c
 * only; see sasl_conf.c).
 */
#ifndef RELAYD_SASL_CONF_H
#define RELAYD_SASL_CONF_H

#include <stddef.h>

#include "conf/conf.h"

/* err = "FILE:LINE: " (or "FILE: " for line 0) and the message. */
void sasl_conf_message(char *err, size_t errlen, const struct config *conf, int line,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* auth_sasldb, auth_saslauthd and auth_mechanisms usable: 0, or -1 with err. */
int sasl_conf_check(const struct config *conf, char *err, size_t errlen);
/* 1 when word (n bytes) is one of the space-separated names in list. */
int sasl_list_has(const char *list, const char *word, size_t n);

#endif
