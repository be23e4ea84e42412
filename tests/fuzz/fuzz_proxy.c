/*
 * fuzz_proxy — the PROXY protocol v1/v2 header parser (relayd/proxy.c) on the
 * first bytes of a connection.  smtp_server.c calls it again each time more
 * bytes arrive, so every prefix of the input is parsed too, each from a
 * buffer of exactly its size (ASan catches a read past buf[len - 1]): while
 * the header is incomplete the answer is NEED_MORE, and once it is DONE or BAD
 * it stays so, with the same header, whatever follows.
 */
#include <netinet/in.h>

#include "relayd/proxy.h"
#include "tests/fuzz/fuzz.h"

static void check_header(const struct proxy_header *h, size_t len)
{
	FUZZ_ASSERT(h->length > 0 && h->length <= len && h->length <= PROXY_HEADER_MAX);
	FUZZ_ASSERT(h->version == 1 || h->version == 2);
	FUZZ_ASSERT(h->version != 1 || h->length <= PROXY_V1_MAX);
	if (h->relayed) {
		FUZZ_ASSERT(h->source.ss_family == AF_INET || h->source.ss_family == AF_INET6);
		FUZZ_ASSERT(h->destination.ss_family == h->source.ss_family);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header whole, part;
	const char *why = NULL;
	enum proxy_status st = proxy_parse(data, size, &whole, &why);

	if (st == PROXY_NEED_MORE)
		FUZZ_ASSERT(size < PROXY_HEADER_MAX);
	else if (st == PROXY_BAD)
		FUZZ_ASSERT(why && *why);
	else
		check_header(&whole, size);

	/* The prefixes, as the bytes would have arrived (a header is at most 536 bytes). */
	size_t upto = size < PROXY_HEADER_MAX + 1 ? size : PROXY_HEADER_MAX + 1;
	enum proxy_status prev = PROXY_NEED_MORE;
	size_t done_at = 0;
	for (size_t k = 0; k < upto; k++) {
		unsigned char *buf = malloc(k ? k : 1);
		FUZZ_ASSERT(buf);
		memcpy(buf, data, k);
		enum proxy_status s = proxy_parse(buf, k, &part, NULL);
		free(buf);
		if (prev != PROXY_NEED_MORE)
			FUZZ_ASSERT(s == prev);
		if (s == PROXY_DONE) {
			check_header(&part, k);
			if (prev == PROXY_NEED_MORE) {	/* done at its last byte */
				FUZZ_ASSERT(part.length == k);
				done_at = k;
			}
			FUZZ_ASSERT(part.length == done_at);
			FUZZ_ASSERT(st == PROXY_DONE && whole.length == part.length &&
			    whole.version == part.version && whole.relayed == part.relayed &&
			    memcmp(&whole.source, &part.source, sizeof part.source) == 0 &&
			    memcmp(&whole.destination, &part.destination,
			    sizeof part.destination) == 0);
		}
		if (s == PROXY_BAD)
			FUZZ_ASSERT(st == PROXY_BAD);
		prev = s;
	}
	return 0;
}
