/*
 * queue_forget — the queue's map is a window on the page cache, and relayd
 * reads most of it once: a body chunk on its way out, then its first page
 * again when the chunk is deleted.  Left mapped, every page read stays in
 * relayd's RSS: 200 MB after two thousand 100 KB messages, reclaimable but
 * what an admin sees in top and what PSS counts.  MADV_DONTNEED on LMDB's
 * read-only shared map only drops our page-table entries: the data stays in
 * the page cache, and a later read refaults it (LMDB writes with pwrite,
 * never through the map).  Only pages of the value itself are dropped, so
 * nothing outside the map is ever touched.
 */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "queue/internal.h"

static uintptr_t page_size(void)
{
	static uintptr_t page;
	if (!page)
		page = (uintptr_t)sysconf(_SC_PAGESIZE);
	return page;
}

void queue_forget(const void *p, size_t len)
{
	uintptr_t page = page_size();
	/*
	 * The page holding p stays: LMDB reads the value's header there when the
	 * chunk is deleted, and a fault then would map the kernel's whole
	 * fault-around window (64 KB of neighbours) back in.
	 */
	uintptr_t from = ((uintptr_t)p + page - 1) & ~(page - 1);
	uintptr_t to = ((uintptr_t)p + len) & ~(page - 1);
	if (to > from)
		(void)madvise((void *)from, to - from, MADV_DONTNEED);
}

void queue_forget_first(const void *p)
{
	uintptr_t page = page_size();
	(void)madvise((void *)((uintptr_t)p & ~(page - 1)), page, MADV_DONTNEED);
}
