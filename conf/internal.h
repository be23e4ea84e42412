/*
 * conf/internal.h — what conf/'s files share and nobody else sees: the parser
 * state, the keyword table row (STYLE.md rule 7), error reporting, and the
 * small value parsers that conf.h does not export.
 */
#ifndef RELAYD_CONF_INTERNAL_H
#define RELAYD_CONF_INTERNAL_H

#include <stddef.h>

#include "conf/conf.h"

#define CONF_LINE_MAX	  4096		/* a line, newline included, must be shorter */
#define CONF_ARGS_MAX	  64		/* words in one statement */
#define CONF_KEYWORDS_MAX 64		/* rows in one section's table */
#define CONF_FILE_MAX	  (1024 * 1024)	/* conf_load refuses bigger files */

struct conf_parser;

/*
 * A keyword's handler: store argv[0..argc-1] into the field at base + offset
 * (base is the struct config, or the open struct conf_upstream).  The grammar
 * has already checked the argument count and duplicates.  Returns 0, or -1
 * after conf_error().
 */
typedef int conf_set_fn(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv);

enum conf_kind {
	CONF_ONCE,			/* a second statement is an error */
	CONF_MANY,			/* statements accumulate (listen, allow) */
	CONF_BLOCK,			/* `keyword ARGS {`: the handler calls conf_enter() */
};

struct conf_keyword {
	const char *name;
	conf_set_fn *set;
	size_t offset;
	int min_args, max_args;
	enum conf_kind kind;
};

/* A keyword table and the check that runs when it ends (at `}`, or at EOF on top). */
struct conf_section {
	const char *name;		/* "upstream"; NULL for the top level */
	const struct conf_keyword *keywords;
	size_t nkeywords;
	int (*close)(struct conf_parser *p, void *base);
};

struct conf_parser {
	const char *name;		/* file name for messages */
	int line;			/* the line being parsed */
	const char *keyword;		/* the statement's keyword, for handlers' messages */
	struct config *conf;
	const struct conf_section *section;
	void *base;			/* what the current section's offsets point into */
	int depth;			/* 0 at the top level, 1 inside a block */
	int block_line;			/* where the open block started */
	int first_line[2][CONF_KEYWORDS_MAX];	/* per depth: where each keyword was seen */
	char *err;
	size_t errlen;
};

extern const struct conf_section conf_top_section;
extern const struct conf_section conf_upstream_section;

/* Write "NAME:LINE: message" into the parser's error buffer. */
void conf_error(struct conf_parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* From a CONF_BLOCK handler: the following lines belong to section, into base. */
void conf_enter(struct conf_parser *p, const struct conf_section *section, void *base);
/* The line where keyword was first given in the current section, or 0. */
int conf_seen(const struct conf_parser *p, const char *keyword);

#define CONF_FIELD(base, offset, type) ((type *)(void *)((char *)(base) + (offset)))

/* keywords.c: value checks and setters the sections share. */
/* Letters, digits and the characters in extra; 1..max bytes. */
int conf_valid_name(const char *s, const char *extra, size_t max);
int conf_store_string(struct conf_parser *p, char **field, const char *value);
/* argv[0..argc) into a new *list (count in *n), each checked by valid, else the error
 * "KEYWORD: \"WORD\" is not WHAT". */
int conf_store_words(struct conf_parser *p, char ***list, size_t *n, int argc, char **argv,
    int (*valid)(const char *), const char *what);
conf_set_fn conf_set_string, conf_set_path, conf_set_count, conf_set_port, conf_set_timeout,
    conf_set_yes_no, conf_set_address;

/* presets.c: a provider's documented settings (see `preset` in relayd.conf(5)). */
struct conf_preset {
	const char *name, *host;
	unsigned port;
	enum conf_tls_mode tls;
	const char *user;		/* a fixed login name, or NULL: the account's */
	int null_sender;		/* 0: refuses MAIL FROM:<> */
	int sender_is_login;		/* MAIL FROM must be the login: envelope_from = user */
	unsigned max_per_day;
	const char *spf_include;	/* what a sender domain's SPF includes for it */
};
const struct conf_preset *conf_find_preset(const char *name);

/* upstream.c: `upstream NAME {` and freeing the blocks. */
int conf_open_upstream(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv);
/* A new upstream named name with the defaults (not yet closed); NULL after error. */
struct conf_upstream *conf_new_upstream(struct conf_parser *p, struct config *conf,
    const char *name);
/* The checks and defaults of `}` for u. */
int conf_finish_upstream(struct conf_parser *p, struct conf_upstream *u);
void conf_free_upstreams(struct config *conf);

/* Allocate an empty config (no defaults yet: the top section's close fills them). */
struct config *conf_new(void);

/* Decimal digits only, 1..UINT_MAX.  0 / -1. */
int conf_parse_count(const char *s, unsigned *out);
/* Decimal digits only, 1..65535.  0 / -1. */
int conf_parse_port(const char *s, unsigned *out);

/* routes.c: the `route` statement, the end-of-file name check, and freeing. */
/* `*`, example.com or .example.com (and, for senders, user@example.com but not `*`). */
int conf_valid_route_pattern(const char *s, int sender);
int conf_add_route(struct conf_parser *p, void *base, size_t offset, int argc, char **argv);
/* A route from pattern to the named upstreams (file: a routes_file, or NULL); -1 after error. */
int conf_new_route(struct conf_parser *p, struct config *conf, int sender, const char *pattern,
    char **names, size_t nnames, const char *file);
int conf_check_routes(struct conf_parser *p, struct config *conf);

/* lines.c: a line file (routes_file, hints_file) for the keyword being closed: fn
 * gets each trimmed, non-blank line without its comment; -1 after conf_error(). */
#define CONF_FILE_LINE_MAX 1024
typedef int conf_line_fn(struct conf_parser *p, struct config *conf, char *line);
int conf_read_lines(struct conf_parser *p, struct config *conf, const char *file,
    int comments_anywhere, conf_line_fn *fn);

/* hints_file.c: the site's hints, read at the end of relayd.conf; and freeing them. */
int conf_read_hints_file(struct conf_parser *p, struct config *conf);
void conf_free_hints(struct config *conf);

/* sender_rules.c: deny_sender and sender_login, their files (read at the end of
 * relayd.conf), the sorting auth/ relies on, and freeing. */
int conf_add_deny_sender(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv);
int conf_add_sender_login(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv);
int conf_finish_sender_rules(struct conf_parser *p, struct config *conf);
void conf_free_sender_rules(struct config *conf);

/* limits.c: limit_user, limit_client, limit_rcpt (N/hour, N/minute) and limit_exempt. */
int conf_set_rate(struct conf_parser *p, void *base, size_t offset, int argc, char **argv);
int conf_add_limit_exempt(struct conf_parser *p, void *base, size_t offset, int argc,
    char **argv);

/* routes_file.c: the qmail smtproutes file, read at the end of relayd.conf. */
int conf_read_routes_file(struct conf_parser *p, struct config *conf);
void conf_free_routes(struct config *conf);

#endif
