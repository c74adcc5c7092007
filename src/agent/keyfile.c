// SPDX-License-Identifier: MIT
/*
 * keyfile: minimal GLib key-file reader (see keyfile.h).  Anything that is
 * not a comment, a group header or key=value is an error naming the line,
 * as GLib reports it; a key before any group is an error too.
 */
#include "keyfile.h"

#include "buf.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

static void unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (*s != '\\' || !s[1]) {
			*o++ = *s;
			continue;
		}
		switch (*++s) {
		case 's': *o++ = ' '; break;
		case 'n': *o++ = '\n'; break;
		case 't': *o++ = '\t'; break;
		case 'r': *o++ = '\r'; break;
		case '\\': *o++ = '\\'; break;
		default: *o++ = '\\'; *o++ = *s; break;
		}
	}
	*o = '\0';
}

int keyfile_parse(const char *text, size_t len, keyfile_fn fn, void *opaque, struct err *e)
{
	struct buf line = BUF_INIT, group = BUF_INIT;
	unsigned lineno = 0;
	int r = 0;
	size_t pos = 0;
	while (r == 0 && pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		lineno++;
		line.len = 0;
		if (buf_append(&line, text + pos, n) < 0) {
			r = err_set(e, -ENOMEM, "out of memory");
			break;
		}
		pos += n + 1;
		if (memchr(line.data, '\0', line.len)) {
			r = err_set(e, -EINVAL, "line %u contains a NUL byte", lineno);
			break;
		}
		char *s = trim(line.data);
		if (*s == '\0' || *s == '#')
			continue;
		if (*s == '[') {
			char *end = strchr(s, ']');
			if (!end || end[1] != '\0' || end == s + 1) {
				r = err_set(e, -EINVAL, "line %u: invalid group name '%s'", lineno, s);
				break;
			}
			group.len = 0;
			if (buf_append(&group, s + 1, (size_t)(end - s - 1)) < 0)
				r = err_set(e, -ENOMEM, "out of memory");
			continue;
		}
		char *eq = strchr(s, '=');
		if (!eq) {
			r = err_set(e, -EINVAL, "line %u: '%s' is not a group, key or comment", lineno, s);
			break;
		}
		if (!group.len) {
			r = err_set(e, -EINVAL, "line %u: key file does not start with a group",
				    lineno);
			break;
		}
		*eq = '\0';
		char *key = trim(s), *value = trim(eq + 1);
		if (!*key) {
			r = err_set(e, -EINVAL, "line %u: empty key", lineno);
			break;
		}
		unescape(value);
		r = fn(opaque, group.data, key, value, lineno, e);
	}
	buf_free(&line);
	buf_free(&group);
	return r;
}
