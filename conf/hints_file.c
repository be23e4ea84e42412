/*
 * hints_file — a site's own hints, before relayd's built-in ones:
 *
 *     # CODE | WORDS IN THE REPLY | HINT
 *     5.7.1 | our-relay.example   | ask the mail team to add relayd's IP to the relay list
 *     *     | quota exceeded      | the upstream's plan is used up: see the billing page
 *
 * CODE is an enhanced status code or its start (any class: 5.7.1 also
 * matches 4.7.1); WORDS are found in the reply without regard to case; `*`
 * matches anything.  Blank lines and '#' comments are allowed.
 */
#include "conf/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *trimmed(char *s)
{
	size_t len;
	while (*s == ' ' || *s == '\t')
		s++;
	len = strlen(s);
	while (len > 0 && strchr(" \t\r\n", s[len - 1]))
		s[--len] = '\0';
	return s;
}

static int hints_line(struct conf_parser *p, struct config *conf, char *line)
{
	char *bar1 = strchr(line, '|'), *bar2 = bar1 ? strchr(bar1 + 1, '|') : NULL;
	struct conf_hint *grown, *h;

	if (!bar2) {
		conf_error(p, "hints_file: \"%s\" is not CODE | WORDS | HINT", line);
		return -1;
	}
	*bar1 = *bar2 = '\0';
	char *code = trimmed(line), *words = trimmed(bar1 + 1), *hint = trimmed(bar2 + 1);
	int any_code = strcmp(code, "*") == 0, any_words = strcmp(words, "*") == 0;
	if (!hint[0] || (any_code && any_words) || (!any_code && (code[0] < '2' ||
	    code[0] > '5' || (code[1] && code[1] != '.') || strspn(code, "0123456789.") !=
	    strlen(code)))) {
		conf_error(p, "hints_file: a hint needs a code (5.7.1, 5.7) or words, and words "
		    "of its own");
		return -1;
	}
	if (!(grown = reallocarray(conf->hints, conf->nhints + 1, sizeof *grown))) {
		conf_error(p, "out of memory");
		return -1;
	}
	conf->hints = grown;
	h = &conf->hints[conf->nhints];
	memset(h, 0, sizeof *h);
	if ((!any_code && !(h->code = strdup(code))) || (!any_words && !(h->words =
	    strdup(words))) || !(h->hint = strdup(hint))) {
		free(h->code);
		free(h->words);
		conf_error(p, "out of memory");
		return -1;
	}
	conf->nhints++;
	return 0;
}

int conf_read_hints_file(struct conf_parser *p, struct config *conf)
{
	if (!conf->hints_file)
		return 0;
	p->keyword = "hints_file";
	return conf_read_lines(p, conf, conf->hints_file, 0, hints_line);	/* '#' in a hint */
}

void conf_free_hints(struct config *conf)
{
	for (size_t i = 0; i < conf->nhints; i++) {
		free(conf->hints[i].code);
		free(conf->hints[i].words);
		free(conf->hints[i].hint);
	}
	free(conf->hints);
	free(conf->hints_file);
}
