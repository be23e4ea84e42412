/*
 * fuzz_sasl_client — relayd as a SASL client (auth/client.c) facing a
 * hostile upstream: the input is the EHLO AUTH line's mechanisms, then the
 * text of each 334 challenge, one a line.  The upstream's base64 is decoded
 * with Cyrus' sasl_decode64 and handed to the real Cyrus client mechanisms
 * (SCRAM-SHA-256/1, CRAM-MD5, PLAIN, LOGIN).  Like smtp_reply_read(), the
 * harness turns control bytes into spaces first.  Responses must be base64
 * (or "=" / empty where RFC 4954 says so), errors terminated and without
 * control bytes: they end up in the log line and the DSN.
 */
#include <sasl/sasl.h>
#include <sasl/saslutil.h>

#include "auth/auth.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	auth_sasl_threads();
	if (auth_client_init() < 0) {
		fprintf(stderr, "fuzz_sasl_client: sasl_client_init failed\n");
		exit(1);
	}
	return 0;
}

/* What smtp_reply_read() does to an upstream's text, and what must hold after. */
static void blank_controls(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

static int no_controls(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

static void check_response(const char *r)
{
	static char out[16384];
	unsigned len;
	FUZZ_ASSERT(r);
	size_t n = strlen(r);
	FUZZ_ASSERT(n < sizeof out);
	FUZZ_ASSERT(n == 0 || strcmp(r, "=") == 0 ||
	    sasl_decode64(r, (unsigned)n, out, sizeof out, &len) == SASL_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_string(data, size), *rest = text, err[512];
	char *offered = rest, *lf = strchr(rest, '\n');
	const char *mech, *initial, *response;

	if (lf) {
		*lf = '\0';
		rest = lf + 1;
	} else {
		rest = NULL;
	}
	blank_controls(offered);
	struct auth_client *ac = auth_client_new("mx.example.com", "bob@example.com",
	    "fuzz-password", 0);
	FUZZ_ASSERT(ac);
	err[0] = '\0';
	if (auth_client_start(ac, offered, &mech, &initial, err, sizeof err) < 0) {
		FUZZ_ASSERT(err[0] && no_controls(err));
		goto done;
	}
	FUZZ_ASSERT(mech && *mech);
	if (initial)
		check_response(initial);
	/* Each line is one 334's text, as smtp_client.c passes it on. */
	while (rest) {
		char *line = rest;
		if ((lf = strchr(rest, '\n'))) {
			*lf = '\0';
			rest = lf + 1;
		} else {
			rest = NULL;
		}
		blank_controls(line);
		err[0] = '\0';
		if (auth_client_step(ac, line, &response, err, sizeof err) < 0) {
			FUZZ_ASSERT(err[0] && no_controls(err));
			break;
		}
		check_response(response);
	}
done:
	auth_client_free(ac);
	free(text);
	return 0;
}
