/*
 * test_auth_sasl — SMTP AUTH through Cyrus SASL against a real sasldb made
 * with saslpasswd2 in a scratch directory, and a stand-in saslauthd on a Unix
 * socket: every exchange one table row, the start-up checks one row each, and
 * the rule that a broken backend is a 454 (AUTH_TEMPFAIL), never a 535.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <sasl/sasl.h>
#include <sasl/saslutil.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "auth/auth.h"
#include "conf/conf.h"
#include "tests/unit/check.h"

#define NROWS(a) (sizeof (a) / sizeof (a)[0])
#define PW "hunter2-relay"		/* bob's password; must never show in a detail */
#define MECHS "PLAIN LOGIN CRAM-MD5"

static char dir[64];			/* the scratch directory */
static char sasldb[128];		/* DIR/sasldb2: bob@relay.test */

/* "DIR" in text replaced by the scratch directory, into out. */
static const char *with_dir(const char *text, char *out, size_t outlen)
{
	size_t n = 0;
	for (const char *p = text; *p && n + 1 < outlen; ) {
		if (strncmp(p, "DIR", 3) == 0) {
			n += (size_t)snprintf(out + n, outlen - n, "%s", dir);
			p += 3;
		} else {
			out[n++] = *p++;
		}
	}
	out[n < outlen ? n : outlen - 1] = '\0';
	return out;
}

static struct config *config_from(const char *text)
{
	char buf[2048], err[512];
	struct config *conf = conf_parse("t", with_dir(text, buf, sizeof buf), err, sizeof err);
	if (!conf)
		fprintf(stderr, "  config: %s\n", err);
	return conf;
}

static struct auth_server *server_from(const char *text, struct config **confp)
{
	char err[512];
	struct auth_server *srv;

	*confp = config_from(text);
	if (!*confp)
		return NULL;
	if (!(srv = auth_server_new(*confp, err, sizeof err)))
		fprintf(stderr, "  auth_server_new: %s\n", err);
	return srv;
}

static int run(const char *cmd)
{
	int r = system(cmd);
	if (r != 0)
		fprintf(stderr, "  \"%s\": status %d\n", cmd, r);
	return r;
}

/* ---- the client side: what a mail server's SASL client sends ---- */

/* raw text with '^' for NUL, as base64 into out. */
static void encode_raw(const char *raw, char *out, size_t outlen)
{
	char bytes[512];
	size_t n = strlen(raw);
	unsigned len = 0;

	for (size_t i = 0; i < n; i++)
		bytes[i] = raw[i] == '^' ? '\0' : raw[i];
	if (n == 0) {
		out[0] = '\0';
		return;
	}
	if (sasl_encode64(bytes, (unsigned)n, out, (unsigned)outlen, &len) != SASL_OK)
		out[0] = '\0';
}

static void decode(const char *b64, char *out, size_t outlen)
{
	unsigned len = 0;
	if (sasl_decode64(b64, (unsigned)strlen(b64), out, (unsigned)outlen, &len) != SASL_OK)
		snprintf(out, outlen, "(not base64: %s)", b64);
	else
		out[len] = '\0';
}

/* RFC 2195: "USER HEXDIGEST", HMAC-MD5 of the challenge keyed with the password. */
static void cram_md5_answer(const char *user_password, const char *challenge, char *out,
    size_t outlen)
{
	char user[128], raw[256];
	const char *password = strchr(user_password, ' ') + 1;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;
	size_t n;

	snprintf(user, sizeof user, "%.*s", (int)(password - 1 - user_password), user_password);
	HMAC(EVP_md5(), password, (int)strlen(password), (const unsigned char *)challenge,
	    strlen(challenge), mac, &maclen);
	n = (size_t)snprintf(raw, sizeof raw, "%s ", user);
	for (unsigned i = 0; i < maclen && n + 3 < sizeof raw; i++)
		n += (size_t)snprintf(raw + n, sizeof raw - n, "%02x", mac[i]);
	encode_raw(raw, out, outlen);
}

/*
 * One line from a test row to the wire: NULL stays NULL (no initial
 * response), "raw:TEXT" is base64 of TEXT with '^' as NUL, "cram:USER PASS"
 * answers the last challenge, "long:" is 20000 base64 characters,
 * "longname:" a user name of 1020 bytes and "longplain:" a PLAIN message
 * with it (base64), anything else goes as it is ("*", "=", garbage).
 */
static const char *wire(const char *send, const char *last_challenge, char *out, size_t outlen)
{
	if (!send)
		return NULL;
	if (strncmp(send, "raw:", 4) == 0)
		encode_raw(send + 4, out, outlen);
	else if (strncmp(send, "cram:", 5) == 0)
		cram_md5_answer(send + 5, last_challenge, out, outlen);
	else if (strcmp(send, "long:") == 0) {
		memset(out, 'A', 20000);
		out[20000] = '\0';
	} else if (strcmp(send, "longname:") == 0 || strcmp(send, "longplain:") == 0) {
		char raw[1100];
		unsigned len = 0, n = 0;
		int plain = send[4] == 'p';
		if (plain)
			raw[n++] = '\0';
		memset(raw + n, 'a', 1020);
		n += 1020;
		if (plain) {
			memcpy(raw + n, "\0pw", 3);
			n += 3;
		}
		if (sasl_encode64(raw, n, out, (unsigned)outlen, &len) != SASL_OK)
			out[0] = '\0';
	} else
		snprintf(out, outlen, "%s", send);
	return out;
}

static const char *result_name(enum auth_result r)
{
	static const char *names[] = { "OK", "CONTINUE", "FAILED", "TEMPFAIL", "NOMECH",
	    "MALFORMED", "CANCELLED", "TOOWEAK" };
	return (unsigned)r < NROWS(names) ? names[r] : "?";
}

struct step {
	const char *send;		/* see wire() */
	enum auth_result want;
	const char *challenge;		/* decoded, when want is AUTH_CONTINUE; NULL: any */
};

struct exchange {
	const char *name;
	const char *mech;
	const char *user;		/* after AUTH_OK */
	struct step steps[4];		/* steps[0] is AUTH itself; then until .send is NULL */
};

/*
 * Run one exchange on a new session; 0 when every answer was as wanted.
 * detail_has, when set, must appear in the last detail.
 */
static int run_exchange(struct auth_server *srv, const struct exchange *x, const char *detail_has)
{
	static char line[20001];
	char last[512] = "", decoded[512];
	struct auth_session *as = auth_session_new(srv, "127.0.0.1;2525", "127.0.0.1;40000", 256);
	const char *challenge = NULL;
	enum auth_result r = AUTH_OK;
	int failed = 0;

	if (!as) {
		fprintf(stderr, "  %s: no session\n", x->name);
		return -1;
	}
	for (size_t i = 0; i < NROWS(x->steps) && (i == 0 || x->steps[i].send); i++) {
		const struct step *s = &x->steps[i];
		const char *text = wire(s->send, last, line, sizeof line);
		r = i == 0 ? auth_session_start(as, x->mech, text, &challenge) :
		    auth_session_step(as, text, &challenge);
		if (r != s->want) {
			fprintf(stderr, "  %s step %zu: %s, want %s (%s)\n", x->name, i,
			    result_name(r), result_name(s->want), auth_session_detail(as));
			failed = 1;
			break;
		}
		if (r == AUTH_CONTINUE) {
			if (!challenge) {
				fprintf(stderr, "  %s step %zu: no challenge\n", x->name, i);
				failed = 1;
				break;
			}
			decode(challenge, decoded, sizeof decoded);
			if (s->challenge && strcmp(decoded, s->challenge) != 0) {
				fprintf(stderr, "  %s step %zu: challenge \"%s\", want \"%s\"\n",
				    x->name, i, decoded, s->challenge);
				failed = 1;
			}
			snprintf(last, sizeof last, "%s", decoded);
		} else if (challenge) {
			fprintf(stderr, "  %s step %zu: challenge after %s\n", x->name, i,
			    result_name(r));
			failed = 1;
		}
	}
	const char *user = auth_session_user(as), *want_user = r == AUTH_OK ? x->user : NULL;
	if (!failed && (!user != !want_user || (user && strcmp(user, want_user) != 0))) {
		fprintf(stderr, "  %s: user \"%s\", want \"%s\"\n", x->name, user ? user : "(null)",
		    want_user ? want_user : "(null)");
		failed = 1;
	}
	const char *detail = auth_session_detail(as);
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "  %s: %s user=%s detail=\"%s\"\n", x->name, result_name(r),
		    user ? user : "(null)", detail ? detail : "(null)");
	if (!detail || strstr(detail, PW)) {
		fprintf(stderr, "  %s: detail \"%s\" shows the password\n", x->name,
		    detail ? detail : "(null)");
		failed = 1;
	}
	if (r != AUTH_OK && r != AUTH_CONTINUE && !*detail) {
		fprintf(stderr, "  %s: %s without a detail\n", x->name, result_name(r));
		failed = 1;
	}
	for (const char *c = detail; c && *c; c++)
		if (*c < 0x20 || *c >= 0x7f) {
			fprintf(stderr, "  %s: detail has byte 0x%02x\n", x->name, (unsigned char)*c);
			failed = 1;
			break;
		}
	if (detail_has && !strstr(detail, detail_has)) {
		fprintf(stderr, "  %s: detail \"%s\" lacks \"%s\"\n", x->name, detail, detail_has);
		failed = 1;
	}
	auth_session_free(as);
	return failed ? -1 : 0;
}

#define SASLDB_CONF "hostname relay.test\nauth_require_tls no\nauth_sasldb DIR/sasldb2\n" \
	"auth_mechanisms " MECHS "\n"

/* ---- start-up: what auth_server_new (and relayd -n) says about the config ---- */

static void test_server_config(void)
{
	static const struct { const char *conf, *err; } rows[] = {
		{ "allow 127.0.0.1\n", "" },
		{ "auth_require_tls no\nauth_sasldb DIR/none\n",
		  "t:2: auth_sasldb DIR/none: No such file or directory" },
		{ "auth_require_tls no\n\nauth_sasldb DIR/world-readable\n",
		  "t:3: auth_sasldb DIR/world-readable: readable by everyone (chmod o-rwx)" },
		{ "auth_require_tls no\nauth_sasldb DIR/world-writable\n",
		  "t:2: auth_sasldb DIR/world-writable: writable by everyone (chmod o-rwx)" },
		{ "auth_require_tls no\nauth_sasldb DIR\n",
		  "t:2: auth_sasldb DIR: not a regular file" },
		{ "auth_require_tls no\nauth_sasldb DIR/garbage\n",
		  "t:2: auth_sasldb DIR/garbage: Cyrus SASL cannot read it: unable to open "
		  "Berkeley db DIR/garbage: Invalid argument" },
		{ "auth_require_tls no\nauth_sasldb DIR/garbage\nauth_saslauthd DIR/authd\n",
		  "t:2: auth_sasldb DIR/garbage: Cyrus SASL cannot read it: unable to open "
		  "Berkeley db DIR/garbage: Invalid argument" },
		{ "auth_require_tls no\nauth_saslauthd DIR/none\n",
		  "t:2: auth_saslauthd DIR/none: No such file or directory" },
		{ "auth_require_tls no\nauth_saslauthd DIR/sasldb2\n",
		  "t:2: auth_saslauthd DIR/sasldb2: not a directory (give saslauthd's run "
		  "directory, the one that holds mux)" },
		{ "auth_require_tls no\nauth_sasldb DIR/sasldb2\nauth_mechanisms PLAIN FOO-BAR\n",
		  "t: auth_mechanisms: FOO-BAR is not available (install libsasl2-modules?)" },
		{ "auth_require_tls no\nauth_sasldb DIR/sasldb2\nauth_mechanisms PLAIN anonymous\n",
		  "t: auth_mechanisms: ANONYMOUS would let anybody relay" },
		{ "auth_require_tls no\nauth_saslauthd DIR/authd\nauth_mechanisms PLAIN CRAM-MD5\n",
		  "t: auth_mechanisms: CRAM-MD5 needs auth_sasldb (saslauthd checks PLAIN and "
		  "LOGIN passwords only)" },
		/* Group-readable is how saslpasswd2 and Debian's group sasl want it. */
		{ "auth_require_tls no\nauth_sasldb DIR/sasldb2\n", NULL },
		{ "auth_require_tls no\nauth_saslauthd DIR/authd\n", NULL },
		{ "auth_require_tls no\nauth_sasldb DIR/sasldb2\nauth_saslauthd DIR/authd\n"
		  "auth_mechanisms LOGIN PLAIN CRAM-MD5 SCRAM-SHA-256 DIGEST-MD5\n", NULL },
	};
	for (size_t i = 0; i < NROWS(rows); i++) {
		char err[512] = "unset", want[512];
		struct config *conf = config_from(rows[i].conf);
		CHECK(conf != NULL);
		if (!conf)
			continue;
		struct auth_server *srv = auth_server_new(conf, err, sizeof err);
		if (rows[i].err) {
			CHECK(srv == NULL);
			CHECK_STR(err, with_dir(rows[i].err, want, sizeof want));
		} else {
			if (!srv)
				fprintf(stderr, "  row %zu: %s\n", i, err);
			CHECK(srv != NULL);
		}
		auth_server_free(srv);
		conf_free(conf);
	}
}

/* One Cyrus per process: a second server is refused while the first lives, fine after. */
static void test_server_once(void)
{
	struct config *conf;
	struct auth_server *first = server_from(SASLDB_CONF, &conf), *second;
	char err[512];

	CHECK(first != NULL);
	second = auth_server_new(conf, err, sizeof err);
	CHECK(second == NULL);
	CHECK_STR(err, "t:3: Cyrus SASL is already started (one auth_server per process)");
	auth_server_free(first);
	second = auth_server_new(conf, err, sizeof err);
	CHECK(second != NULL);
	auth_server_free(second);
	auth_server_free(NULL);
	conf_free(conf);
}

static void test_session_mechanisms(void)
{
	static const struct { const char *local, *remote; unsigned ssf; } rows[] = {
		{ "127.0.0.1;2525", "127.0.0.1;40000", 0 },
		{ "127.0.0.1;2525", "10.1.2.3;40000", 256 },
		{ "::1;2525", "::1;40000", 128 },
		{ "::ffff:127.0.0.1;2525", "::ffff:127.0.0.1;40000", 256 },
		{ "0.0.0.0;0", "fe80::1;40000", 0 },
		{ NULL, NULL, 0 },
		/* What Cyrus cannot parse is left out: no mechanism on offer needs it. */
		{ "[::1];2525", "garbage;1", 256 },
		{ "127.0.0.1", "1.2.3.4:25", 256 },
		{ "fe80::1%lo;25", "127.0.0.1;99999999", 256 },
	};
	struct config *conf;
	struct auth_server *srv = server_from(SASLDB_CONF, &conf);

	CHECK(srv != NULL);
	for (size_t i = 0; srv && i < NROWS(rows); i++) {
		struct auth_session *as = auth_session_new(srv, rows[i].local, rows[i].remote,
		    rows[i].ssf);
		CHECK(as != NULL);
		CHECK_STR(auth_session_mechanisms(as), MECHS);
		CHECK(auth_session_user(as) == NULL);
		auth_session_free(as);
	}
	CHECK(auth_session_new(NULL, NULL, NULL, 0) == NULL);
	auth_server_free(srv);
	conf_free(conf);
}

/* ---- exchanges against the sasldb ---- */

static const struct exchange sasldb_rows[] = {
	{ "plain_initial", "PLAIN", "bob@relay.test", { { "raw:^bob^" PW, AUTH_OK, NULL } } },
	{ "plain_initial_with_realm", "PLAIN", "bob@relay.test",
	  { { "raw:^bob@relay.test^" PW, AUTH_OK, NULL } } },
	{ "plain_authzid_is_login", "PLAIN", "bob@relay.test",
	  { { "raw:bob^bob^" PW, AUTH_OK, NULL } } },
	{ "plain_mechanism_lower_case", "plain", "bob@relay.test",
	  { { "raw:^bob^" PW, AUTH_OK, NULL } } },
	{ "plain_without_initial", "PLAIN", "bob@relay.test",
	  { { NULL, AUTH_CONTINUE, "" }, { "raw:^bob^" PW, AUTH_OK, NULL } } },
	{ "plain_empty_initial", "PLAIN", NULL, { { "=", AUTH_MALFORMED, NULL } } },
	{ "plain_no_password", "PLAIN", NULL, { { "raw:^bob", AUTH_MALFORMED, NULL } } },
	{ "login", "LOGIN", "bob@relay.test",
	  { { NULL, AUTH_CONTINUE, "Username:" }, { "raw:bob", AUTH_CONTINUE, "Password:" },
	    { "raw:" PW, AUTH_OK, NULL } } },
	{ "login_with_realm", "LOGIN", "bob@relay.test",
	  { { NULL, AUTH_CONTINUE, "Username:" },
	    { "raw:bob@relay.test", AUTH_CONTINUE, "Password:" }, { "raw:" PW, AUTH_OK, NULL } } },
	{ "login_user_as_initial", "LOGIN", "bob@relay.test",
	  { { "raw:bob", AUTH_CONTINUE, "Password:" }, { "raw:" PW, AUTH_OK, NULL } } },
	{ "cram_md5", "CRAM-MD5", "bob@relay.test",
	  { { NULL, AUTH_CONTINUE, NULL }, { "cram:bob " PW, AUTH_OK, NULL } } },
	{ "plain_wrong_password", "PLAIN", NULL, { { "raw:^bob^wrong", AUTH_FAILED, NULL } } },
	{ "plain_unknown_user", "PLAIN", NULL, { { "raw:^alice^" PW, AUTH_FAILED, NULL } } },
	{ "plain_other_realm", "PLAIN", NULL,
	  { { "raw:^bob@other.test^" PW, AUTH_FAILED, NULL } } },
	{ "plain_authzid_other_user", "PLAIN", NULL,
	  { { "raw:alice^bob^" PW, AUTH_FAILED, NULL } } },
	{ "login_wrong_password", "LOGIN", NULL,
	  { { NULL, AUTH_CONTINUE, "Username:" }, { "raw:bob", AUTH_CONTINUE, "Password:" },
	    { "raw:wrong", AUTH_FAILED, NULL } } },
	{ "login_unknown_user", "LOGIN", NULL,
	  { { NULL, AUTH_CONTINUE, "Username:" }, { "raw:alice", AUTH_CONTINUE, "Password:" },
	    { "raw:" PW, AUTH_FAILED, NULL } } },
	{ "cram_md5_wrong_password", "CRAM-MD5", NULL,
	  { { NULL, AUTH_CONTINUE, NULL }, { "cram:bob wrong", AUTH_FAILED, NULL } } },
	{ "cram_md5_unknown_user", "CRAM-MD5", NULL,
	  { { NULL, AUTH_CONTINUE, NULL }, { "cram:alice " PW, AUTH_FAILED, NULL } } },
	{ "plain_cancelled", "PLAIN", NULL,
	  { { NULL, AUTH_CONTINUE, "" }, { "*", AUTH_CANCELLED, NULL } } },
	{ "login_cancelled_at_password", "LOGIN", NULL,
	  { { NULL, AUTH_CONTINUE, "Username:" }, { "raw:bob", AUTH_CONTINUE, "Password:" },
	    { "*", AUTH_CANCELLED, NULL } } },
	{ "initial_not_base64", "PLAIN", NULL, { { "!!!!", AUTH_MALFORMED, NULL } } },
	{ "initial_without_padding", "PLAIN", NULL, { { "AGJvYg", AUTH_MALFORMED, NULL } } },
	{ "initial_star", "PLAIN", NULL, { { "*", AUTH_MALFORMED, NULL } } },
	{ "response_not_base64", "LOGIN", NULL,
	  { { NULL, AUTH_CONTINUE, "Username:" }, { "not base64!", AUTH_MALFORMED, NULL } } },
	{ "initial_too_long", "PLAIN", NULL, { { "long:", AUTH_MALFORMED, NULL } } },
	{ "response_too_long", "LOGIN", NULL,
	  { { NULL, AUTH_CONTINUE, "Username:" }, { "long:", AUTH_MALFORMED, NULL } } },
	{ "unknown_mechanism", "FOO", NULL, { { NULL, AUTH_NOMECH, NULL } } },
	{ "installed_not_configured", "DIGEST-MD5", NULL, { { NULL, AUTH_NOMECH, NULL } } },
	{ "anonymous", "ANONYMOUS", NULL, { { "raw:me", AUTH_NOMECH, NULL } } },
	{ "external", "EXTERNAL", NULL, { { "=", AUTH_NOMECH, NULL } } },
	{ "mechanism_with_crlf", "PLAIN\r\n", NULL, { { NULL, AUTH_NOMECH, NULL } } },
	{ "mechanism_too_long", "PLAINPLAINPLAINPLAINPLAIN", NULL,
	  { { NULL, AUTH_NOMECH, NULL } } },
	{ "mechanism_empty", "", NULL, { { NULL, AUTH_NOMECH, NULL } } },
};

static void test_sasldb_exchanges(void)
{
	struct config *conf;
	struct auth_server *srv = server_from(SASLDB_CONF, &conf);

	CHECK(srv != NULL);
	for (size_t i = 0; srv && i < NROWS(sasldb_rows); i++)
		if (run_exchange(srv, &sasldb_rows[i], NULL) < 0)
			CHECK(!sasldb_rows[i].name);
	auth_server_free(srv);
	conf_free(conf);
}

/*
 * User names Cyrus SASL 2.1.28 cannot take without leaking memory (found by
 * tests/fuzz/fuzz_sasl): LOGIN with an empty user name or one starting with
 * a blank loses the copy of the password, a user name too long for "@realm"
 * to be added (LOGIN's or PLAIN's authentication identity) its
 * canonicalization buffer.  Refused before Cyrus sees them; LeakSanitizer
 * at exit says whether it did.
 */
#define A10 "aaaaaaaaaa"
#define A80 A10 A10 A10 A10 A10 A10 A10 A10

static const struct exchange leak_rows[] = {
	{ "login_empty_user", "LOGIN", NULL,
	  { { NULL, AUTH_CONTINUE, "Username:" }, { "raw:", AUTH_FAILED, NULL } } },
	{ "login_empty_initial_then_empty_user", "LOGIN", NULL,
	  { { "=", AUTH_CONTINUE, "Username:" }, { "raw:", AUTH_FAILED, NULL } } },
	{ "login_user_starting_with_blank", "LOGIN", NULL,
	  { { NULL, AUTH_CONTINUE, "Username:" }, { "raw:\nb\r", AUTH_FAILED, NULL } } },
	{ "login_user_starting_with_space", "LOGIN", NULL, { { "raw: b", AUTH_FAILED, NULL } } },
	{ "plain_authcid_starting_with_space", "PLAIN", NULL,
	  { { "raw:^ bob^" PW, AUTH_FAILED, NULL } } },
	{ "login_long_user", "LOGIN", NULL,
	  { { NULL, AUTH_CONTINUE, "Username:" }, { "longname:", AUTH_FAILED, NULL } } },
	{ "login_long_user_as_initial", "LOGIN", NULL, { { "longname:", AUTH_FAILED, NULL } } },
	{ "plain_long_authcid", "PLAIN", NULL, { { "longplain:", AUTH_FAILED, NULL } } },
	{ "plain_long_authcid_in_step", "PLAIN", NULL,
	  { { NULL, AUTH_CONTINUE, "" }, { "longplain:", AUTH_FAILED, NULL } } },
	/*
	 * sasldb's "user: NAME@relay.test property: cmusaslsecretCRAM-MD5 not
	 * found" fills Cyrus' first error buffer exactly: its NUL went one past,
	 * and the detail was read past the buffer (ASan stops the test then).
	 */
	{ "cram_md5_unknown_user_filling_the_error_buffer", "CRAM-MD5", NULL,
	  { { NULL, AUTH_CONTINUE, NULL }, { "cram:" A80 "a x", AUTH_FAILED, NULL } } },
	{ "plain_unknown_user_filling_the_error_buffer", "PLAIN", NULL,
	  { { "raw:^" A80 "aaaa^x", AUTH_FAILED, NULL } } },
	/* A password may be empty or long: only the name is held to this. */
	{ "login_empty_password", "LOGIN", NULL,
	  { { NULL, AUTH_CONTINUE, "Username:" }, { "raw:bob", AUTH_CONTINUE, "Password:" },
	    { "raw:", AUTH_FAILED, NULL } } },
};

static void test_names_cyrus_leaks_on(void)
{
	struct config *conf;
	struct auth_server *srv = server_from(SASLDB_CONF, &conf);

	CHECK(srv != NULL);
	for (size_t i = 0; srv && i < NROWS(leak_rows); i++)
		if (run_exchange(srv, &leak_rows[i], NULL) < 0)
			CHECK(!leak_rows[i].name);
	auth_server_free(srv);
	conf_free(conf);
}

/* A failure, then a success, on one session: nothing from the first sticks. */
static void test_session_reused(void)
{
	struct config *conf;
	struct auth_server *srv = server_from(SASLDB_CONF, &conf);
	struct auth_session *as = srv ? auth_session_new(srv, NULL, NULL, 256) : NULL;
	char bad[64], good[64];
	const char *challenge = "unset";

	CHECK(as != NULL);
	if (!as) {
		auth_server_free(srv);
		conf_free(conf);
		return;
	}
	CHECK(auth_session_step(as, "Ym9i", &challenge) == AUTH_MALFORMED);
	CHECK(challenge == NULL);
	encode_raw("^bob^wrong", bad, sizeof bad);
	encode_raw("^bob^" PW, good, sizeof good);
	CHECK(auth_session_start(as, "PLAIN", bad, &challenge) == AUTH_FAILED);
	CHECK(auth_session_user(as) == NULL);
	CHECK(strstr(auth_session_detail(as), "authentication failure") != NULL);
	CHECK(auth_session_start(as, "LOGIN", NULL, &challenge) == AUTH_CONTINUE);
	CHECK(auth_session_start(as, "PLAIN", good, &challenge) == AUTH_OK);
	CHECK_STR(auth_session_user(as), "bob@relay.test");
	CHECK_STR(auth_session_detail(as), "");
	CHECK(auth_session_step(as, "Ym9i", &challenge) == AUTH_MALFORMED);
	CHECK(auth_session_start(as, "PLAIN", bad, &challenge) == AUTH_FAILED);
	CHECK(auth_session_user(as) == NULL);
	auth_session_free(as);
	auth_server_free(srv);
	conf_free(conf);
}

/* ---- a broken backend is a temporary failure ---- */

static const struct exchange good_plain = { "sasldb_gone_plain", "PLAIN", NULL,
	{ { "raw:^bob^" PW, AUTH_TEMPFAIL, NULL } } };
static const struct exchange gone_unknown = { "sasldb_gone_unknown_user", "PLAIN", NULL,
	{ { "raw:^alice^" PW, AUTH_TEMPFAIL, NULL } } };
static const struct exchange gone_login = { "sasldb_gone_login", "LOGIN", NULL,
	{ { NULL, AUTH_CONTINUE, "Username:" }, { "raw:bob", AUTH_CONTINUE, "Password:" },
	  { "raw:" PW, AUTH_TEMPFAIL, NULL } } };
static const struct exchange gone_cram = { "sasldb_gone_cram_md5", "CRAM-MD5", NULL,
	{ { NULL, AUTH_CONTINUE, NULL }, { "cram:bob " PW, AUTH_TEMPFAIL, NULL } } };

/* The sasldb deleted (or moved away) while relayd runs: Cyrus says "user not found". */
static void test_sasldb_deleted(void)
{
	struct config *conf;
	struct auth_server *srv = server_from(SASLDB_CONF, &conf);
	char away[160];

	CHECK(srv != NULL);
	if (!srv) {
		conf_free(conf);
		return;
	}
	snprintf(away, sizeof away, "%s.away", sasldb);
	CHECK(rename(sasldb, away) == 0);
	CHECK(run_exchange(srv, &good_plain, "No such file or directory") == 0);
	CHECK(run_exchange(srv, &gone_unknown, "No such file or directory") == 0);
	CHECK(run_exchange(srv, &gone_login, "No such file or directory") == 0);
	CHECK(run_exchange(srv, &gone_cram, "No such file or directory") == 0);
	CHECK(rename(away, sasldb) == 0);
	CHECK(run_exchange(srv, &sasldb_rows[0], NULL) == 0);
	auth_server_free(srv);
	conf_free(conf);
}

/* Unreadable by relayd's user: only testable when not root (root reads anything). */
static void test_sasldb_unreadable(void)
{
	struct config *conf;
	struct auth_server *srv;

	if (geteuid() == 0) {
		fprintf(stderr, "  (running as root: chmod 000 does not stop root; skipped)\n");
		return;
	}
	srv = server_from(SASLDB_CONF, &conf);
	CHECK(srv != NULL);
	if (srv) {
		CHECK(chmod(sasldb, 0) == 0);
		CHECK(run_exchange(srv, &good_plain, NULL) == 0);
		CHECK(run_exchange(srv, &gone_unknown, NULL) == 0);
		CHECK(chmod(sasldb, 0640) == 0);
		CHECK(run_exchange(srv, &sasldb_rows[0], NULL) == 0);
	}
	auth_server_free(srv);
	conf_free(conf);
}

/* ---- saslauthd: down, and a stand-in that answers like the real one ---- */

enum fake_mode { FAKE_YES, FAKE_NO, FAKE_HANG_UP };

struct fake_saslauthd {
	int fd;				/* listening on DIR/authd/mux */
	enum fake_mode mode;
	int served;			/* a request came and was answered */
	char fields[4][256];		/* login, password, service, realm */
	pthread_t thread;
};

static int read_full(int fd, void *buf, size_t n)
{
	for (size_t got = 0; got < n; ) {
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

/* saslauthd's protocol: four counted strings in, one counted "OK …" or "NO …" out. */
static void *fake_serve(void *arg)
{
	struct fake_saslauthd *f = arg;
	struct pollfd p = { .fd = f->fd, .events = POLLIN };
	int c;

	if (poll(&p, 1, 5000) != 1 || (c = accept(f->fd, NULL, NULL)) < 0)
		return NULL;
	for (int i = 0; i < 4; i++) {
		uint16_t len;
		if (read_full(c, &len, 2) < 0)
			goto done;
		len = ntohs(len);
		char buf[1024];
		if (len >= sizeof buf || read_full(c, buf, len) < 0)
			goto done;
		snprintf(f->fields[i], sizeof f->fields[i], "%.*s", (int)len, buf);
	}
	if (f->mode != FAKE_HANG_UP) {
		const char *answer = f->mode == FAKE_YES ? "OK" : "NO authentication failed";
		uint16_t len = htons((uint16_t)strlen(answer));
		if (write(c, &len, 2) != 2 || write(c, answer, strlen(answer)) < 0)
			goto done;
	}
	f->served = 1;
done:
	close(c);
	return NULL;
}

static int fake_listen(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sun.sun_path, sizeof sun.sun_path, "%s/authd/mux", dir);
	unlink(sun.sun_path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 || listen(fd, 4) < 0) {
		fprintf(stderr, "  fake saslauthd: %s\n", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static void fake_stop(int fd)
{
	char path[128];
	close(fd);
	snprintf(path, sizeof path, "%s/authd/mux", dir);
	unlink(path);
}

/* One exchange while the stand-in serves one request in mode; 0 when as wanted. */
static int run_with_fake(struct auth_server *srv, int fd, enum fake_mode mode,
    const struct exchange *x, int want_served)
{
	struct fake_saslauthd f = { .fd = fd, .mode = mode };
	int r;

	if (pthread_create(&f.thread, NULL, fake_serve, &f) != 0)
		return -1;
	r = run_exchange(srv, x, NULL);
	if (!want_served) {
		/* Nobody should have called: poke the listener so the thread ends. */
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		int c = socket(AF_UNIX, SOCK_STREAM, 0);
		snprintf(sun.sun_path, sizeof sun.sun_path, "%s/authd/mux", dir);
		if (c >= 0 && connect(c, (struct sockaddr *)&sun, sizeof sun) == 0)
			close(c);
		else if (c >= 0)
			close(c);
	}
	pthread_join(f.thread, NULL);
	if (f.served != want_served) {
		fprintf(stderr, "  %s: saslauthd %s\n", x->name, f.served ? "asked" : "not asked");
		return -1;
	}
	if (f.served && (strcmp(f.fields[0], "bob") != 0 || strcmp(f.fields[2], "smtp") != 0 ||
	    strcmp(f.fields[3], "relay.test") != 0)) {
		fprintf(stderr, "  %s: saslauthd asked \"%s\" \"%s\" \"%s\"\n", x->name,
		    f.fields[0], f.fields[2], f.fields[3]);
		return -1;
	}
	return r;
}

#define SASLAUTHD_CONF "hostname relay.test\nauth_require_tls no\nauth_saslauthd DIR/authd\n"

static const struct exchange authd_plain_yes = { "saslauthd_yes", "PLAIN", "bob@relay.test",
	{ { "raw:^bob^" PW, AUTH_OK, NULL } } };
static const struct exchange authd_plain_realm = { "saslauthd_yes_realm", "PLAIN",
	"bob@relay.test", { { "raw:^bob@relay.test^" PW, AUTH_OK, NULL } } };
static const struct exchange authd_login_yes = { "saslauthd_login_yes", "LOGIN",
	"bob@relay.test", { { NULL, AUTH_CONTINUE, "Username:" },
	{ "raw:bob", AUTH_CONTINUE, "Password:" }, { "raw:" PW, AUTH_OK, NULL } } };
static const struct exchange authd_plain_no = { "saslauthd_no", "PLAIN", NULL,
	{ { "raw:^bob^wrong", AUTH_FAILED, NULL } } };
static const struct exchange authd_hang_up = { "saslauthd_hangs_up", "PLAIN", NULL,
	{ { "raw:^bob^" PW, AUTH_TEMPFAIL, NULL } } };
static const struct exchange authd_authzid = { "saslauthd_authzid_other_user", "PLAIN", NULL,
	{ { "raw:alice^bob^" PW, AUTH_FAILED, NULL } } };
static const struct exchange authd_down = { "saslauthd_down", "PLAIN", NULL,
	{ { "raw:^bob^" PW, AUTH_TEMPFAIL, NULL } } };
static const struct exchange authd_down_login = { "saslauthd_down_login", "LOGIN", NULL,
	{ { NULL, AUTH_CONTINUE, "Username:" }, { "raw:bob", AUTH_CONTINUE, "Password:" },
	  { "raw:" PW, AUTH_TEMPFAIL, NULL } } };

/* No saslauthd behind DIR/mux (not started, or crashed): 454, with Cyrus' reason. */
static void test_saslauthd_down(void)
{
	struct config *conf;
	struct auth_server *srv = server_from(SASLAUTHD_CONF, &conf);

	CHECK(srv != NULL);
	if (srv) {
		CHECK_STR(auth_session_mechanisms(NULL), "");
		CHECK(run_exchange(srv, &authd_down, "cannot connect to saslauthd server") == 0);
		CHECK(run_exchange(srv, &authd_down_login, "cannot connect to saslauthd") == 0);
	}
	auth_server_free(srv);
	conf_free(conf);
}

static void test_saslauthd_answers(void)
{
	struct config *conf;
	struct auth_server *srv = server_from(SASLAUTHD_CONF, &conf);
	int fd = fake_listen();

	CHECK(srv != NULL);
	CHECK(fd >= 0);
	if (srv && fd >= 0) {
		CHECK(run_with_fake(srv, fd, FAKE_YES, &authd_plain_yes, 1) == 0);
		CHECK(run_with_fake(srv, fd, FAKE_YES, &authd_plain_realm, 1) == 0);
		CHECK(run_with_fake(srv, fd, FAKE_YES, &authd_login_yes, 1) == 0);
		CHECK(run_with_fake(srv, fd, FAKE_NO, &authd_plain_no, 1) == 0);
		CHECK(run_with_fake(srv, fd, FAKE_HANG_UP, &authd_hang_up, 1) == 0);
		CHECK(run_with_fake(srv, fd, FAKE_YES, &authd_authzid, 1) == 0);
	}
	if (fd >= 0)
		fake_stop(fd);
	auth_server_free(srv);
	conf_free(conf);
}

/*
 * Both backends: the sasldb answers first; when it says no, saslauthd is
 * asked, and a saslauthd that cannot be asked makes the answer a 454.
 */
static void test_both_backends(void)
{
	static const struct exchange sasldb_yes = { "both_sasldb_yes", "PLAIN",
		"bob@relay.test", { { "raw:^bob^" PW, AUTH_OK, NULL } } };
	static const struct exchange authd_yes = { "both_saslauthd_yes", "PLAIN",
		"bob@relay.test", { { "raw:^bob^other-password", AUTH_OK, NULL } } };
	static const struct exchange both_no = { "both_no", "PLAIN", NULL,
		{ { "raw:^bob^wrong", AUTH_FAILED, NULL } } };
	static const struct exchange down_wrong = { "both_saslauthd_down", "PLAIN", NULL,
		{ { "raw:^bob^wrong", AUTH_TEMPFAIL, NULL } } };
	struct config *conf;
	struct auth_server *srv = server_from(SASLDB_CONF "auth_saslauthd DIR/authd\n", &conf);
	int fd = fake_listen();

	CHECK(srv != NULL);
	CHECK(fd >= 0);
	if (srv && fd >= 0) {
		CHECK(run_with_fake(srv, fd, FAKE_NO, &sasldb_yes, 0) == 0);
		CHECK(run_with_fake(srv, fd, FAKE_YES, &authd_yes, 1) == 0);
		CHECK(run_with_fake(srv, fd, FAKE_NO, &both_no, 1) == 0);
	}
	if (fd >= 0)
		fake_stop(fd);
	if (srv) {
		CHECK(run_exchange(srv, &sasldb_yes, NULL) == 0);
		CHECK(run_exchange(srv, &down_wrong, "cannot connect to saslauthd") == 0);
	}
	auth_server_free(srv);
	conf_free(conf);
}

/* ---- the scratch directory ---- */

static int setup(void)
{
	char cmd[512];

	snprintf(dir, sizeof dir, "/tmp/relayd-sasl.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return -1;
	}
	snprintf(sasldb, sizeof sasldb, "%s/sasldb2", dir);
	snprintf(cmd, sizeof cmd, "printf '%%s\\n' '%s' | saslpasswd2 -p -f %s -u relay.test "
	    "-c bob", PW, sasldb);
	if (run(cmd) != 0 || chmod(sasldb, 0640) < 0)
		return -1;
	snprintf(cmd, sizeof cmd, "cd %s && mkdir authd && cp sasldb2 world-readable && "
	    "chmod 0644 world-readable && cp sasldb2 world-writable && "
	    "chmod 0602 world-writable && echo 'bob:secret' > garbage && chmod 0600 garbage",
	    dir);
	return run(cmd);
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (dir[0])
		run(cmd);
}

int main(void)
{
	if (setup() < 0) {
		printf("FAIL setup (saslpasswd2 from sasl2-bin?)\n");
		teardown();
		return 1;
	}
	TEST_CASE(test_server_config);
	TEST_CASE(test_server_once);
	TEST_CASE(test_session_mechanisms);
	TEST_CASE(test_sasldb_exchanges);
	TEST_CASE(test_names_cyrus_leaks_on);
	TEST_CASE(test_session_reused);
	TEST_CASE(test_sasldb_deleted);
	TEST_CASE(test_sasldb_unreadable);
	TEST_CASE(test_saslauthd_down);
	TEST_CASE(test_saslauthd_answers);
	TEST_CASE(test_both_backends);
	teardown();
	return check_exit();
}
