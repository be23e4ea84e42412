/*
 * fuzz_sasl — SMTP AUTH's input path: the AUTH command's arguments
 * (smtp_parse_auth, relayd/smtp_parse.c), then the client's base64 initial
 * response and answers to each 334 through auth/sasl.c, which decodes them
 * with Cyrus' sasl_decode64 and hands them to the real Cyrus mechanisms
 * (PLAIN, LOGIN, CRAM-MD5) against a sasldb made with saslpasswd2 at start.
 * Input: "MECH [initial]" then one response per line, as the server reads
 * them (a line never holds CR, LF or NUL; the command line is printable).
 * Challenges must be base64, failures' details printable (they reach the log).
 */
#include <sasl/sasl.h>
#include <sasl/saslutil.h>
#include <sys/stat.h>

#include "auth/auth.h"
#include "conf/conf.h"
#include "relayd/smtp_parse.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_PASSWORD "fuzz-password"	/* bob@relay.test's, for seeds that log in */

static struct config *conf;
static struct auth_server *srv;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = fuzz_scratch("relayd-fuzz-sasl");
	char cmd[512], text[512], err[512];

	(void)argc, (void)argv;
	snprintf(cmd, sizeof cmd, "printf '%%s\\n' '%s' | saslpasswd2 -p -f %s/sasldb2 "
	    "-u relay.test -c bob && chmod 0640 %s/sasldb2", FUZZ_PASSWORD, dir, dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "fuzz_sasl: \"%s\" failed (saslpasswd2 from sasl2-bin?)\n", cmd);
		exit(1);
	}
	snprintf(text, sizeof text, "hostname relay.test\nauth_require_tls no\n"
	    "auth_sasldb %s/sasldb2\nauth_mechanisms PLAIN LOGIN CRAM-MD5\n", dir);
	if (!(conf = conf_parse("fuzz", text, err, sizeof err)) ||
	    !(srv = auth_server_new(conf, err, sizeof err))) {
		fprintf(stderr, "fuzz_sasl: %s\n", err);
		exit(1);
	}
	return 0;
}

/* What follows "334 " must be base64 a client can decode. */
static void check_challenge(const char *challenge)
{
	static char out[16384];
	unsigned len;
	FUZZ_ASSERT(challenge);
	size_t n = strlen(challenge);
	FUZZ_ASSERT(n < sizeof out);
	FUZZ_ASSERT(n == 0 || sasl_decode64(challenge, (unsigned)n, out, sizeof out, &len) ==
	    SASL_OK);
}

/* The next line of *rest (an empty one too), or NULL at the end. */
static char *next_line(char **rest)
{
	char *line = *rest, *lf;
	if (!line)
		return NULL;
	if ((lf = strchr(line, '\n'))) {
		*lf = '\0';
		*rest = lf + 1;
	} else {
		*rest = NULL;
	}
	return line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_string(data, size), *rest = text;
	char *line = next_line(&rest);
	char mech[24];
	const char *initial, *challenge = NULL;

	if (!line || !fuzz_printable(line) ||
	    smtp_parse_auth(line, mech, sizeof mech, &initial) != SMTP_PARSE_OK) {
		free(text);
		return 0;
	}
	struct auth_session *as = auth_session_new(srv, "127.0.0.1;25", "192.0.2.7;40112", 0);
	FUZZ_ASSERT(as);
	enum auth_result r = auth_session_start(as, mech, initial, &challenge);
	while (r == AUTH_CONTINUE) {
		check_challenge(challenge);
		if (!(line = next_line(&rest)))
			break;
		r = auth_session_step(as, line, &challenge);
	}
	FUZZ_ASSERT(r >= AUTH_OK && r <= AUTH_TOOWEAK);
	FUZZ_ASSERT(r != AUTH_OK || auth_session_user(as));
	FUZZ_ASSERT(fuzz_printable(auth_session_detail(as)));
	auth_session_free(as);
	free(text);
	return 0;
}
