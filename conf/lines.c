/*
 * lines — reading the line files relayd.conf names (routes_file,
 * hints_file): each line trimmed, blank lines and '#' comments skipped,
 * NUL bytes and overlong lines refused, and messages pointing at FILE:LINE.
 */
#include "conf/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int conf_read_lines(struct conf_parser *p, struct config *conf, const char *file,
    int comments_anywhere, conf_line_fn *fn)
{
	const char *saved_name = p->name;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0, saved_line = p->line;
	FILE *f = fopen(file, "r");

	if (!f) {
		p->line = conf_seen(p, p->keyword);
		conf_error(p, "%s %s: %s", p->keyword, file, strerror(errno));
		return -1;
	}
	const char *keyword = p->keyword;
	p->name = file;		/* messages about a line point into the file */
	p->line = 0;
	while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
		p->line++;
		if (n > CONF_FILE_LINE_MAX || memchr(line, '\0', (size_t)n)) {
			conf_error(p, "%s: line too long, or with a NUL byte", keyword);
			rc = -1;
			break;
		}
		char *s = line + strspn(line, " \t"), *hash = strchr(s, '#');
		if (hash && (comments_anywhere || hash == s))
			*hash = '\0';
		size_t len = strlen(s);
		while (len > 0 && strchr(" \t\r\n", s[len - 1]))
			s[--len] = '\0';
		if (len > 0)
			rc = fn(p, conf, s);
	}
	if (rc == 0 && ferror(f)) {
		conf_error(p, "%s %s: read error", keyword, file);
		rc = -1;
	}
	free(line);
	fclose(f);
	if (rc == 0) {
		p->name = saved_name;
		p->line = saved_line;
	}
	return rc;
}
