/*
 * log — relayd's one way to write a log line: to stderr, a file or syslog
 * (mail facility), each line "relayd[PID]: text" as admins know from Postfix.
 * Anything a client sent goes through log_escape() before it reaches a line.
 */
#ifndef RELAYD_LOG_H
#define RELAYD_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_ERR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* target: "stderr", "syslog" or an absolute file path.  0, or -1 with err. */
int log_open(const char *target, int debug, char *err, size_t errlen);
/* Reopen a log file (SIGHUP, after logrotate moved it); no-op for the others. */
void log_reopen(void);
void log_close(void);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define log_err(...)   log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

/* Print an error at start-up and exit(1). */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * Copy client text into out (size outlen, always terminated): printable ASCII
 * passes, '\\' and everything else becomes \xHH, so a log line, header or DSN
 * never gets a control character or line break from the network.  Text that
 * does not fit is cut and ends with "...".  Returns out.
 */
char *log_escape(char *out, size_t outlen, const char *in, size_t inlen);

#endif
