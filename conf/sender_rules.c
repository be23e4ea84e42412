/*
 * sender_rules — the syntax of the sender rules that auth/sender.c applies
 * at MAIL FROM:
 *
 *     deny_sender spam@example.com @bad.example     refused, whoever sends
 *     deny_sender_file /var/qmail/control/badmailfrom
 *     sender_login alice alice@example.com @example.org
 *     sender_login_file /etc/relayd/sender_login     lines "alice: a@example.com @example.org"
 *     sender_login_strict yes                        a login without an entry may send as nobody
 *
 * An entry is an address or @domain (the domain in A-labels, as `route`
 * takes it), kept in lower case with where it was written.  At the end of
 * relayd.conf the files are read, one user's entries merged, and every list
 * sorted, so that auth/ finds an entry by binary search however long the
 * lists are.
 */
#include "conf/internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SENDER_ENTRIES_MAX (1 << 20)	/* per list: a file longer than this is a mistake */
#define SENDER_USER_MAX	   255

/* user@example.com or @example.com, plain ASCII. */
static int valid_address(const char *s)
{
	const char *at = strrchr(s, '@');

	if (!at || strcmp(at + 1, "*") == 0 || at[1] == '.')
		return 0;
	if (at == s)
		return conf_valid_route_pattern(at + 1, 0);
	return conf_valid_route_pattern(s, 1);
}

/* A SASL login name: no blanks or control characters, no ':' (the file's separator). */
static int valid_user(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > SENDER_USER_MAX)
		return 0;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c <= ' ' || *c == 0x7f || *c == ':')
			return 0;
	return 1;
}

/* Room for one more element in an array whose capacity is n rounded up to a power of two. */
static int grow(struct conf_parser *p, void **array, size_t n, size_t size)
{
	if (n >= SENDER_ENTRIES_MAX) {
		conf_error(p, "%s: more than %d entries", p->keyword, SENDER_ENTRIES_MAX);
		return -1;
	}
	if (n > 0 && (n & (n - 1)) != 0)
		return 0;
	void *grown = reallocarray(*array, n ? 2 * n : 1, size);
	if (!grown) {
		conf_error(p, "out of memory");
		return -1;
	}
	*array = grown;
	return 0;
}

static int add_rule(struct conf_parser *p, struct conf_sender_rule **list, size_t *n,
    const char *address, const char *file)
{
	if (!valid_address(address)) {
		conf_error(p, "%s: \"%s\" is not an address or @domain (user@example.com, "
		    "@example.com; IDNs in A-labels)", p->keyword, address);
		return -1;
	}
	if (grow(p, (void **)list, *n, sizeof **list) < 0)
		return -1;
	struct conf_sender_rule *r = &(*list)[*n];
	if (!(r->address = strdup(address))) {
		conf_error(p, "out of memory");
		return -1;
	}
	for (char *c = r->address; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	r->file = file;
	r->line = p->line;
	(*n)++;
	return 0;
}

/* deny_sender ADDRESS|@DOMAIN… */
int conf_add_deny_sender(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	struct config *conf = base;

	(void)offset;
	for (int i = 0; i < argc; i++)
		if (add_rule(p, &conf->deny_sender, &conf->ndeny_sender, argv[i], NULL) < 0)
			return -1;
	return 0;
}

/* One user's entry with its addresses; entries for the same user are merged at the end. */
static int add_login(struct conf_parser *p, struct config *conf, const char *user,
    char **addresses, int naddresses, const char *file)
{
	if (!valid_user(user)) {
		conf_error(p, "%s: bad user name \"%s\" (no blanks, no ':')", p->keyword, user);
		return -1;
	}
	if (grow(p, (void **)&conf->sender_login, conf->nsender_login,
	    sizeof *conf->sender_login) < 0)
		return -1;
	struct conf_sender_login *l = &conf->sender_login[conf->nsender_login];
	memset(l, 0, sizeof *l);
	if (!(l->user = strdup(user))) {
		conf_error(p, "out of memory");
		return -1;
	}
	l->file = file;
	l->line = p->line;
	conf->nsender_login++;
	for (int i = 0; i < naddresses; i++)
		if (add_rule(p, &l->senders, &l->nsenders, addresses[i], file) < 0)
			return -1;
	return 0;
}

/* sender_login USER ADDRESS|@DOMAIN… */
int conf_add_sender_login(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv)
{
	(void)offset;
	return add_login(p, base, argv[0], argv + 1, argc - 1, NULL);
}

/* A deny_sender_file line: qmail's badmailfrom holds one address or @domain per line. */
static int deny_file_line(struct conf_parser *p, struct config *conf, char *line)
{
	return add_rule(p, &conf->deny_sender, &conf->ndeny_sender, line,
	    conf->deny_sender_file);
}

/* A sender_login_file line: "user: address @domain …". */
static int login_file_line(struct conf_parser *p, struct config *conf, char *line)
{
	char *colon = strchr(line, ':'), *words[CONF_FILE_LINE_MAX / 2], *save = NULL;
	int n = 0;

	if (!colon) {
		conf_error(p, "sender_login_file: \"%s\" is not user: address @domain …", line);
		return -1;
	}
	*colon = '\0';
	size_t len = strlen(line);
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		line[--len] = '\0';
	for (char *w = strtok_r(colon + 1, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		if (n == (int)(sizeof words / sizeof words[0])) {	/* cannot happen in a line */
			conf_error(p, "sender_login_file: too many addresses on one line");
			return -1;
		}
		words[n++] = w;
	}
	if (n == 0) {
		conf_error(p, "sender_login_file: %s: no address after the ':'", line);
		return -1;
	}
	return add_login(p, conf, line, words, n, conf->sender_login_file);
}

/* Which of two equal entries was written first: relayd.conf's before a file's, then by line. */
static int written_order(const char *file_a, int line_a, const char *file_b, int line_b)
{
	int c = (file_a != NULL) - (file_b != NULL);
	return c ? c : (line_a > line_b) - (line_a < line_b);
}

static int rule_order(const void *a, const void *b)
{
	const struct conf_sender_rule *x = a, *y = b;
	int c = strcmp(x->address, y->address);
	return c ? c : written_order(x->file, x->line, y->file, y->line);
}

static int login_order(const void *a, const void *b)
{
	const struct conf_sender_login *x = a, *y = b;
	int c = strcasecmp(x->user, y->user);
	return c ? c : written_order(x->file, x->line, y->file, y->line);
}

/* Sort a list and drop the later copies of an entry. */
static void sort_rules(struct conf_sender_rule *list, size_t *n)
{
	size_t kept = 0;

	if (*n == 0)
		return;
	qsort(list, *n, sizeof *list, rule_order);
	for (size_t i = 1; i < *n; i++) {
		if (strcmp(list[i].address, list[kept].address) == 0)
			free(list[i].address);
		else
			list[++kept] = list[i];
	}
	*n = kept + 1;
}

/*
 * One entry per user, holding every address given for it.  Entries merged
 * away are left empty (user NULL) until the last step, so that conf_free()
 * frees the right things whenever memory runs out.
 */
static int merge_logins(struct conf_parser *p, struct config *conf)
{
	struct conf_sender_login *l = conf->sender_login;
	size_t n = conf->nsender_login, kept = 0;

	if (n == 0)
		return 0;
	qsort(l, n, sizeof *l, login_order);
	for (size_t i = 0, j; i < n; i = j) {
		size_t total = l[i].nsenders;
		for (j = i + 1; j < n && strcasecmp(l[j].user, l[i].user) == 0; j++)
			total += l[j].nsenders;
		if (j > i + 1) {
			struct conf_sender_rule *all = reallocarray(l[i].senders, total, sizeof *all);
			if (!all) {
				conf_error(p, "out of memory");
				return -1;
			}
			l[i].senders = all;
			for (size_t k = i + 1; k < j; k++) {
				memcpy(all + l[i].nsenders, l[k].senders, l[k].nsenders * sizeof *all);
				l[i].nsenders += l[k].nsenders;
				free(l[k].senders);
				free(l[k].user);
				memset(&l[k], 0, sizeof l[k]);
			}
		}
		sort_rules(l[i].senders, &l[i].nsenders);
	}
	for (size_t i = 0; i < n; i++)
		if (l[i].user)
			l[kept++] = l[i];
	conf->nsender_login = kept;
	return 0;
}

/* The line of the first sender_login keyword given, for messages about all of them. */
static int first_login_line(struct conf_parser *p)
{
	static const char *const keywords[] = {
		"sender_login", "sender_login_file", "sender_login_strict",
	};
	int line = 0;

	for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++) {
		int at = conf_seen(p, keywords[i]);
		if (at && (!line || at < line))
			line = at;
	}
	return line;
}

/* At the end of relayd.conf: read the files, merge and sort, check what needs what. */
int conf_finish_sender_rules(struct conf_parser *p, struct config *conf)
{
	if (conf->deny_sender_file) {
		p->keyword = "deny_sender_file";
		/* '#' only at the start of a line, as qmail reads it: it is atext (RFC 5322). */
		if (conf_read_lines(p, conf, conf->deny_sender_file, 0, deny_file_line) < 0)
			return -1;
	}
	if (conf->sender_login_file) {
		p->keyword = "sender_login_file";
		if (conf_read_lines(p, conf, conf->sender_login_file, 1, login_file_line) < 0)
			return -1;
	}
	sort_rules(conf->deny_sender, &conf->ndeny_sender);
	if (merge_logins(p, conf) < 0)
		return -1;
	if ((conf->nsender_login > 0 || conf->sender_login_strict) &&
	    !conf->auth_sasldb.path && !conf->auth_saslauthd.path) {
		p->line = first_login_line(p);
		conf_error(p, "sender_login rules need an AUTH backend (auth_sasldb, "
		    "auth_saslauthd): without one nobody logs in");
		return -1;
	}
	if (conf->sender_login_strict && conf->nsender_login == 0) {
		p->line = conf_seen(p, "sender_login_strict");
		conf_error(p, "sender_login_strict yes without any sender_login entry would "
		    "refuse every logged-in client");
		return -1;
	}
	return 0;
}

void conf_free_sender_rules(struct config *conf)
{
	for (size_t i = 0; i < conf->ndeny_sender; i++)
		free(conf->deny_sender[i].address);
	free(conf->deny_sender);
	for (size_t i = 0; i < conf->nsender_login; i++) {
		struct conf_sender_login *l = &conf->sender_login[i];
		for (size_t j = 0; j < l->nsenders; j++)
			free(l->senders[j].address);
		free(l->senders);
		free(l->user);
	}
	free(conf->sender_login);
	free(conf->deny_sender_file);
	free(conf->sender_login_file);
}
