/*
 * fuzz.h — what the libFuzzer targets share: the entry points' prototypes
 * (the build has -Wmissing-prototypes), the input as a C string, and an
 * assertion that libFuzzer reports as a crash with its input saved.
 */
#ifndef RELAYD_FUZZ_H
#define RELAYD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_ASSERT(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
		abort(); \
	} \
} while (0)

/* The input up to its first NUL, as a malloc'd string (as a NUL would end it in C). */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* A fresh directory /tmp/PREFIX.XXXXXX in dir (64 bytes), removed at exit. */
static char fuzz_scratch_[64];
static inline void fuzz_scratch_remove_(void)
{
	char cmd[96];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_scratch_);
	if (fuzz_scratch_[0] && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", fuzz_scratch_);
}
static inline const char *fuzz_scratch(const char *prefix)
{
	snprintf(fuzz_scratch_, sizeof fuzz_scratch_, "/tmp/%s.XXXXXX", prefix);
	if (!mkdtemp(fuzz_scratch_)) {
		perror("mkdtemp");
		abort();
	}
	atexit(fuzz_scratch_remove_);
	return fuzz_scratch_;
}

/* 1 when s holds only printable ASCII (what may reach a log line or a header). */
static inline int fuzz_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return 0;
	return 1;
}

#endif
