/*
 * fuzz_conf — the config parser (conf/) on a relayd.conf as conf_load() reads
 * it from disk: the input goes to a scratch directory's relayd.conf.  The
 * files a config names and conf/ reads while parsing (routes_file,
 * hints_file, deny_sender_file, sender_login_file) are confined: this target
 * is linked with -Wl,--wrap=fopen, and while conf_load() runs, a path under
 * /fuzz/ opens the scratch directory's file of that name and every other
 * path fails with EACCES, so no input can read /dev/zero, a FIFO or the
 * machine's own files.  Without a NUL byte, conf_parse() on the same text
 * must say the same.  FUZZ_CONF_PRINT=1 prints each verdict (for seeds).
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "conf/conf.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_ROOT "/fuzz/"

FILE *__real_fopen(const char *path, const char *mode);
FILE *__wrap_fopen(const char *path, const char *mode);

static const char *dir;		/* the scratch directory */
static int confined;		/* inside conf_load(): only /fuzz/ paths open */

FILE *__wrap_fopen(const char *path, const char *mode)
{
	char real[256];
	const char *name = path + strlen(FUZZ_ROOT);

	if (!confined)
		return __real_fopen(path, mode);
	if (strncmp(path, FUZZ_ROOT, strlen(FUZZ_ROOT)) != 0 || !*name ||
	    strchr(name, '/') || strcmp(mode, "r") != 0) {
		errno = EACCES;
		return NULL;
	}
	snprintf(real, sizeof real, "%s/%s", dir, name);
	return __real_fopen(real, mode);
}

static void write_file(const char *name, const void *data, size_t len)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	/* A new file, not a truncated one: ext4 flushes a file truncated and rewritten. */
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	FUZZ_ASSERT(fd >= 0);
	FUZZ_ASSERT(write(fd, data, len) == (ssize_t)len);
	close(fd);
}

/* What the seeds' *_file statements find: small, and each line a valid entry. */
static const struct { const char *name, *text; } files[] = {
	{ "routes", "example.com:smtp.example.net:587\n.example.org:[192.0.2.1]\n:relay.example.net\n" },
	{ "hints", "5.7.1 | access denied | ask the upstream's postmaster\n" },
	{ "badmailfrom", "spammer@example.com\n@spam.example\n# a comment\n" },
	{ "sender_login", "app: noreply@example.com @example.org\n" },
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char probe[] = "allow 127.0.0.1\nroutes_file /etc/passwd\n";
	char err[512];

	(void)argc, (void)argv;
	dir = fuzz_scratch("relayd-fuzz-conf");
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
		write_file(files[i].name, files[i].text, strlen(files[i].text));
	/* The confinement works only if conf/ calls fopen itself (not fopen64, say). */
	confined = 1;
	struct config *conf = conf_parse("probe", probe, err, sizeof err);
	confined = 0;
	if (conf || !strstr(err, strerror(EACCES))) {
		fprintf(stderr, "fuzz_conf: the fopen wrapper is not in place (%s)\n",
		    conf ? "/etc/passwd was read" : err);
		exit(1);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512], err2[512];

	write_file("relayd.conf", data, size);
	err[0] = '\0';
	confined = 1;
	struct config *conf = conf_load(FUZZ_ROOT "relayd.conf", err, sizeof err);
	confined = 0;
	FUZZ_ASSERT(conf || (err[0] && strlen(err) < sizeof err));
	if (getenv("FUZZ_CONF_PRINT"))
		fprintf(stderr, "conf: %s\n", conf ? "ok" : err);

	if (!memchr(data, '\0', size)) {
		char *text = fuzz_string(data, size);
		err2[0] = '\0';
		confined = 1;
		struct config *again = conf_parse(FUZZ_ROOT "relayd.conf", text, err2,
		    sizeof err2);
		confined = 0;
		FUZZ_ASSERT(!conf == !again);
		FUZZ_ASSERT(conf || strcmp(err, err2) == 0);
		conf_free(again);
		free(text);
	}
	conf_free(conf);
	return 0;
}
