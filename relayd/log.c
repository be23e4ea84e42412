/*
 * log — writes relayd's log lines.  stderr and files get a timestamp and
 * "relayd[PID]: "; syslog adds its own.  A line is written with one write()
 * so lines from several processes appending to one file never interleave.
 */
#include "relayd/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static enum { TO_STDERR, TO_SYSLOG, TO_FILE } log_to = TO_STDERR;
static int log_fd = 2;
static int log_debug_on;
static char log_path[4096];

static int open_file(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int log_open(const char *target, int debug, char *err, size_t errlen)
{
	log_debug_on = debug;
	if (strcmp(target, "stderr") == 0) {
		log_to = TO_STDERR;
		log_fd = 2;
	} else if (strcmp(target, "syslog") == 0) {
		log_to = TO_SYSLOG;
		openlog("relayd", LOG_PID | LOG_NDELAY, LOG_MAIL);
	} else {
		int fd = open_file(target);
		if (fd < 0) {
			snprintf(err, errlen, "%s: %s", target, strerror(errno));
			return -1;
		}
		if (snprintf(log_path, sizeof log_path, "%s", target) >= (int)sizeof log_path) {
			close(fd);
			snprintf(err, errlen, "log file name too long");
			return -1;
		}
		log_to = TO_FILE;
		log_fd = fd;
	}
	return 0;
}

void log_reopen(void)
{
	if (log_to != TO_FILE)
		return;
	int fd = open_file(log_path);
	if (fd < 0) {
		log_err("cannot reopen log file %s: %s", log_path, strerror(errno));
		return;
	}
	dup2(fd, log_fd);
	close(fd);
}

void log_close(void)
{
	if (log_to == TO_SYSLOG)
		closelog();
	else if (log_to == TO_FILE)
		close(log_fd);
	log_to = TO_STDERR;
	log_fd = 2;
}

/* The format attribute lets clang check the callers (its -Wformat-nonliteral). */
__attribute__((format(printf, 2, 0)))
static void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	static const char *const tag[] = { "error: ", "warning: ", "", "debug: " };
	char text[2048];

	if (level == LOG_LEVEL_DEBUG && !log_debug_on)
		return;
	vsnprintf(text, sizeof text, fmt, ap);
	if (log_to == TO_SYSLOG) {
		syslog(prio[level], "%s%s", tag[level], text);
		return;
	}

	struct timeval tv;
	struct tm tm;
	char stamp[32], line[2200];
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
	int n = snprintf(line, sizeof line, "%s.%03ldZ relayd[%ld]: %s%s\n", stamp,
	    (long)(tv.tv_usec / 1000), (long)getpid(), tag[level], text);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line) {
		n = sizeof line - 1;
		line[n - 1] = '\n';
	}
	ssize_t r;
	do
		r = write(log_fd, line, (size_t)n);
	while (r < 0 && errno == EINTR);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_LEVEL_ERR, fmt, ap);
	va_end(ap);
	if (log_to != TO_STDERR) {	/* whoever started us should see it too */
		va_start(ap, fmt);
		fputs("relayd: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
	exit(1);
}

char *log_escape(char *out, size_t outlen, const char *in, size_t inlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	if (outlen == 0)
		return out;
	for (size_t i = 0; i < inlen; i++) {
		unsigned char c = (unsigned char)in[i];
		int plain = c >= 0x20 && c < 0x7f && c != '\\';
		size_t need = plain ? 1 : 4;
		if (o + need + 1 > outlen) {	/* cut: end with "..." where it fits */
			if (outlen >= 4) {
				if (o + 4 > outlen)
					o = outlen - 4;
				memcpy(out + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (plain) {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}
