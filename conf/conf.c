/*
 * conf — the grammar of relayd.conf: lines, words, quotes, comments and
 * `NAME ARGS {` … `}` blocks.  Each statement is looked up in the current
 * section's keyword table (keywords.c), which does the rest; this file only
 * checks what every keyword shares: argument counts, duplicates, nesting.
 */
#include "conf/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void conf_error(struct conf_parser *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->errlen == 0)
		return;
	n = snprintf(p->err, p->errlen, "%s:%d: ", p->name, p->line);
	if (n < 0) {
		p->err[0] = '\0';
		return;
	}
	if ((size_t)n >= p->errlen)	/* truncated, but terminated */
		return;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

void conf_enter(struct conf_parser *p, const struct conf_section *section, void *base)
{
	p->section = section;
	p->base = base;
	p->depth = 1;
	p->block_line = p->line;
	memset(p->first_line[1], 0, sizeof p->first_line[1]);
}

int conf_seen(const struct conf_parser *p, const char *keyword)
{
	for (size_t i = 0; i < p->section->nkeywords; i++)
		if (strcmp(p->section->keywords[i].name, keyword) == 0)
			return p->first_line[p->depth][i];
	return 0;
}

static int conf_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Split line into words in place.  A word is either bare (ends at a blank or
 * `#`) or double-quoted with \" and \\ as its only escapes.  quoted[i] tells
 * whether word i was quoted, so that "{" and "}" can be values.
 * Returns the number of words, or -1 after conf_error().
 */
static int conf_split(struct conf_parser *p, char *line, char **argv, int *quoted)
{
	char *r = line, *w;
	int argc = 0;

	for (;;) {
		while (conf_is_blank(*r))
			r++;
		if (*r == '\0' || *r == '#')
			return argc;
		if (argc == CONF_ARGS_MAX) {
			conf_error(p, "more than %d words in one statement", CONF_ARGS_MAX);
			return -1;
		}
		argv[argc] = w = r;
		quoted[argc] = *r == '"';
		if (*r == '"') {
			for (r++; *r != '"'; ) {
				if (*r == '\0') {
					conf_error(p, "unterminated quoted string");
					return -1;
				}
				if (*r == '\\') {
					r++;
					if (*r != '"' && *r != '\\') {
						conf_error(p, "unknown escape in quoted string "
						    "(only \\\" and \\\\ are known)");
						return -1;
					}
				}
				*w++ = *r++;
			}
			r++;
			if (*r != '\0' && *r != '#' && !conf_is_blank(*r)) {
				conf_error(p, "text right after a closing quote");
				return -1;
			}
		} else {
			for (; *r != '\0' && *r != '#' && !conf_is_blank(*r); r++) {
				if (*r == '"') {
					conf_error(p, "quote inside a word (quote the whole argument)");
					return -1;
				}
			}
			w = r;
		}
		char next = *r;
		*w = '\0';
		argc++;
		if (next == '\0' || next == '#')
			return argc;
		r++;
	}
}

static const struct conf_keyword *conf_lookup(const struct conf_section *s, const char *name)
{
	for (size_t i = 0; i < s->nkeywords; i++)
		if (strcmp(s->keywords[i].name, name) == 0)
			return &s->keywords[i];
	return NULL;
}

static int conf_check_count(struct conf_parser *p, const struct conf_keyword *kw, int nargs)
{
	if (nargs >= kw->min_args && nargs <= kw->max_args)
		return 0;
	if (kw->min_args == kw->max_args)
		conf_error(p, "%s takes %d argument%s, not %d", kw->name, kw->min_args,
		    kw->min_args == 1 ? "" : "s", nargs);
	else if (nargs < kw->min_args)
		conf_error(p, "%s needs at least %d argument%s", kw->name, kw->min_args,
		    kw->min_args == 1 ? "" : "s");
	else
		conf_error(p, "%s takes at most %d arguments, not %d", kw->name, kw->max_args,
		    nargs);
	return -1;
}

static int conf_close_block(struct conf_parser *p)
{
	if (p->section->close && p->section->close(p, p->base) < 0)
		return -1;
	p->section = &conf_top_section;
	p->base = p->conf;
	p->depth = 0;
	p->block_line = 0;
	return 0;
}

/* One line's statement: `}`, `keyword args…`, or `keyword args… {`. */
static int conf_statement(struct conf_parser *p, char *line)
{
	char *argv[CONF_ARGS_MAX];
	int quoted[CONF_ARGS_MAX];
	int argc = conf_split(p, line, argv, quoted);

	if (argc <= 0)
		return argc;
	if (!quoted[0] && strcmp(argv[0], "}") == 0) {
		if (argc > 1) {
			conf_error(p, "} must stand alone on its line");
			return -1;
		}
		if (p->depth == 0) {
			conf_error(p, "} without an open block");
			return -1;
		}
		return conf_close_block(p);
	}
	if (!quoted[0] && strcmp(argv[0], "{") == 0) {
		conf_error(p, "{ must end the line that names the block");
		return -1;
	}
	int opens = argc > 1 && !quoted[argc - 1] && strcmp(argv[argc - 1], "{") == 0;
	if (opens)
		argc--;

	const struct conf_keyword *kw = conf_lookup(p->section, argv[0]);
	if (!kw) {
		if (p->depth == 0)
			conf_error(p, "unknown keyword \"%s\"", argv[0]);
		else
			conf_error(p, "unknown keyword \"%s\" in %s block", argv[0], p->section->name);
		return -1;
	}
	if (kw->kind == CONF_BLOCK && !opens) {
		conf_error(p, "%s needs { at the end of the line", kw->name);
		return -1;
	}
	if (kw->kind != CONF_BLOCK && opens) {
		conf_error(p, "%s does not open a block", kw->name);
		return -1;
	}
	if (conf_check_count(p, kw, argc - 1) < 0)
		return -1;
	int *first = &p->first_line[p->depth][kw - p->section->keywords];
	if (kw->kind == CONF_ONCE && *first) {
		conf_error(p, "%s given twice (first at line %d)", kw->name, *first);
		return -1;
	}
	if (!*first)
		*first = p->line;
	p->keyword = kw->name;
	return kw->set(p, p->base, kw->offset, argc - 1, argv + 1);
}

/* Parse len bytes of text (which may hold NUL bytes: they are an error). */
static struct config *conf_parse_text(const char *name, const char *text, size_t len,
    char *err, size_t errlen)
{
	struct conf_parser p = {
		.name = name, .section = &conf_top_section, .err = err, .errlen = errlen,
	};
	const char *s = text, *end = text + len;
	char line[CONF_LINE_MAX];

	if (errlen > 0)
		err[0] = '\0';
	p.conf = conf_new();
	if (!p.conf || !(p.conf->path = strdup(name))) {
		conf_error(&p, "out of memory");
		conf_free(p.conf);
		return NULL;
	}
	p.base = p.conf;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);

		p.line++;
		if (n >= sizeof line) {
			conf_error(&p, "line longer than %d bytes", CONF_LINE_MAX - 1);
			goto fail;
		}
		memcpy(line, s, n);
		line[n] = '\0';
		if (n > 0 && line[n - 1] == '\r')	/* tolerate CRLF files */
			line[--n] = '\0';
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)line[i];
			if ((c < 0x20 && c != '\t') || c == 0x7f) {
				conf_error(&p, "control character 0x%02x", c);
				goto fail;
			}
		}
		if (conf_statement(&p, line) < 0)
			goto fail;
		s = nl ? nl + 1 : end;
	}
	if (p.depth > 0) {
		p.line = p.block_line;
		conf_error(&p, "%s block has no closing }", p.section->name);
		goto fail;
	}
	if (conf_top_section.close(&p, p.conf) < 0)
		goto fail;
	return p.conf;
fail:
	conf_free(p.conf);
	return NULL;
}

struct config *conf_parse(const char *name, const char *text, char *err, size_t errlen)
{
	return conf_parse_text(name, text, strlen(text), err, errlen);
}

struct config *conf_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *text;
	size_t len;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	text = malloc(CONF_FILE_MAX + 1);
	if (!text) {
		snprintf(err, errlen, "%s: out of memory", path);
		fclose(f);
		return NULL;
	}
	errno = 0;
	len = fread(text, 1, CONF_FILE_MAX + 1, f);
	int read_errno = ferror(f) ? (errno ? errno : EIO) : 0;
	fclose(f);
	if (read_errno || len > CONF_FILE_MAX) {
		if (read_errno)
			snprintf(err, errlen, "%s: %s", path, strerror(read_errno));
		else
			snprintf(err, errlen, "%s: larger than %d bytes", path, CONF_FILE_MAX);
		free(text);
		return NULL;
	}
	struct config *conf = conf_parse_text(path, text, len, err, errlen);
	free(text);
	return conf;
}

void conf_free(struct config *conf)
{
	if (!conf)
		return;
	free(conf->path);
	free(conf->hostname);
	free(conf->queue_dir);
	free(conf->log_file);
	free(conf->listen);
	free(conf->allow);
	free(conf->limit_exempt);
	free(conf->user);
	free(conf->postmaster);
	free(conf->tls_cert.path);
	free(conf->tls_key.path);
	free(conf->auth_sasldb.path);
	free(conf->auth_saslauthd.path);
	free(conf->auth_mechanisms);
	conf_free_upstreams(conf);
	conf_free_routes(conf);
	free(conf->routes_file);
	free(conf->pid_file);
	free(conf->control);
	free(conf->resolver);
	conf_free_hints(conf);
	conf_free_sender_rules(conf);
	for (size_t i = 0; i < conf->ndnsbl; i++)
		free(conf->dnsbl[i]);
	free(conf->dnsbl);
	free(conf);
}
