/*
 * spool — a message body while DATA streams in: kept in memory up to
 * spool_memory bytes, then in a temporary file in DIR/spool that is unlinked
 * as soon as it exists, so a crash leaves nothing behind.  The writer thread
 * copies it into LMDB with queue_spool_read() (pread, so no shared offset).
 */
#include "queue/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Once on disk, writes are gathered into a buffer of this size: one write(2) per line is slow. */
#define SPOOL_WRITE_BUFFER (64 * 1024)

struct queue_spool {
	struct queue *q;
	char *buf;		/* the whole body while in memory; later the bytes not yet written */
	size_t len, cap;
	int fd;			/* -1 while the body is in memory */
	uint64_t flushed;	/* bytes already in the file */
	int error;		/* a write failed: the body is incomplete, refuse the rest */
};

struct queue_spool *queue_spool_new(struct queue *q)
{
	if (q->readonly) {
		errno = EROFS;
		return NULL;
	}
	struct queue_spool *sp = calloc(1, sizeof *sp);
	if (!sp)
		return NULL;
	sp->q = q;
	sp->fd = -1;
	return sp;
}

void queue_spool_free(struct queue_spool *sp)
{
	if (!sp)
		return;
	if (sp->fd >= 0)
		close(sp->fd);
	free(sp->buf);
	free(sp);
}

uint64_t queue_spool_size(const struct queue_spool *sp)
{
	return sp->flushed + sp->len;
}

static int grow(struct queue_spool *sp, size_t need)
{
	if (need <= sp->cap)
		return 0;
	size_t cap = sp->cap ? sp->cap : 4096;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	char *p = realloc(sp->buf, cap);
	if (!p)
		return -1;
	sp->buf = p;
	sp->cap = cap;
	return 0;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int flush(struct queue_spool *sp)
{
	if (write_all(sp->fd, sp->buf, sp->len) < 0)
		return -1;
	sp->flushed += sp->len;
	sp->len = 0;
	return 0;
}

/* Move the body to a fresh unlinked file; what is in memory is written with the next flush. */
static int spill(struct queue_spool *sp)
{
	size_t n = strlen(sp->q->spool_dir) + sizeof "/XXXXXX";
	char *path = malloc(n);
	if (!path)
		return -1;
	snprintf(path, n, "%s/XXXXXX", sp->q->spool_dir);
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		free(path);
		return -1;
	}
	unlink(path);
	free(path);
	sp->fd = fd;
	return 0;
}

int queue_spool_write(struct queue_spool *sp, const void *data, size_t len)
{
	if (sp->error) {
		errno = sp->error;
		return -1;
	}
	if (len == 0)
		return 0;
	if (sp->fd < 0 && sp->len + len > sp->q->spool_memory && spill(sp) < 0)
		goto fail;
	if (sp->fd < 0) {
		if (grow(sp, sp->len + len) < 0)
			goto fail;
		memcpy(sp->buf + sp->len, data, len);
		sp->len += len;
		return 0;
	}
	if (sp->len + len > SPOOL_WRITE_BUFFER && sp->len + len > sp->cap) {
		if (flush(sp) < 0)
			goto fail;
		if (len >= SPOOL_WRITE_BUFFER) {
			if (write_all(sp->fd, data, len) < 0)
				goto fail;
			sp->flushed += len;
			return 0;
		}
	}
	if (grow(sp, sp->len + len) < 0)
		goto fail;
	memcpy(sp->buf + sp->len, data, len);
	sp->len += len;
	return 0;
fail:
	sp->error = errno ? errno : EIO;
	return -1;
}

int queue_spool_error(const struct queue_spool *sp)
{
	return sp->error;
}

int queue_spool_read(struct queue_spool *sp, uint64_t off, void *dst, size_t len)
{
	char *out = dst;

	while (len > 0 && off < sp->flushed) {
		size_t want = sp->flushed - off < len ? (size_t)(sp->flushed - off) : len;
		ssize_t n = pread(sp->fd, out, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;	/* the file is shorter than what we wrote */
			return -1;
		}
		out += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	if (len == 0)
		return 0;
	if (off - sp->flushed > sp->len || len > sp->len - (off - sp->flushed)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(out, sp->buf + (off - sp->flushed), len);
	return 0;
}
