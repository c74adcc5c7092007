// SPDX-License-Identifier: MIT
/*
 * osrelease: os-release(5) as qemu-ga reads it (see osrelease.h).
 *
 * Key-file layer (GLib's rules): the text must be valid UTF-8 (up to a NUL,
 * where reading stops); lines are split on \n; leading blanks are skipped;
 * '#' lines and empty lines are comments; "[name]" switches group (only
 * keys of group "os-release" count; the file starts in it); "key = value"
 * has both sides trimmed of ASCII white space (so a CR goes too), the last
 * duplicate wins; any other line makes the whole file unreadable.
 *
 * Value layer (qemu-ga's own): a value in double quotes is copied up to the
 * closing quote, a backslash before $ ' " \ ` being dropped; any other value
 * is cut at its first space or ';'.  Deliberately different: single-quoted
 * values are unquoted (literally, as a shell does) instead of being cut at
 * the first space, and a missing closing quote just ends the value.
 */
#include "osrelease.h"

#include "buf.h"
#include "utf8.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const char *const fields[][2] = {
	{"ID", "id"},
	{"NAME", "name"},
	{"PRETTY_NAME", "pretty-name"},
	{"VERSION", "version"},
	{"VERSION_ID", "version-id"},
	{"VARIANT", "variant"},
	{"VARIANT_ID", "variant-id"},
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* GLib's g_utf8_validate: well-formed UTF-8, no surrogates, <= U+10FFFF
 * (noncharacters allowed, unlike QEMU's JSON rules). */
static bool valid_utf8(const char *s, size_t n)
{
	const uint8_t *p = (const uint8_t *)s;
	for (size_t i = 0; i < n;) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		size_t used;
		int32_t cp = utf8_decode(p + i, n - i, &used);
		if (cp < 0) {
			/* utf8_decode also rejects noncharacters; GLib does not */
			bool nonchar = used >= 3 && used <= 4;
			if (!nonchar)
				return false;
			int32_t v = p[i] & (0xFF >> (used + 1));
			for (size_t k = 1; k < used; k++) {
				if ((p[i + k] & 0xC0) != 0x80)
					return false;
				v = (v << 6) | (p[i + k] & 0x3F);
			}
			bool is_nonchar = (v >= 0xFDD0 && v <= 0xFDEF) || (v & 0xFFFE) == 0xFFFE;
			if (!is_nonchar || v > 0x10FFFF || v < (used == 3 ? 0x800 : 0x10000))
				return false;
		} else if (cp == 0) {
			return false; /* C0 80: overlong for GLib */
		}
		i += used;
	}
	return true;
}

/* qemu-ga's value handling, with the two fixes described above. */
static char *unquote(const char *v)
{
	size_t n = strlen(v);
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	if (v[0] == '\'') {
		const char *end = strchr(v + 1, '\'');
		size_t len = end ? (size_t)(end - v - 1) : n - 1;
		memcpy(out, v + 1, len);
		out[len] = '\0';
		return out;
	}
	if (v[0] != '"') {
		size_t cut = strcspn(v, " ;");
		memcpy(out, v, cut);
		out[cut] = '\0';
		return out;
	}
	for (const char *p = v + 1; *p && *p != '"'; p++) {
		if (*p == '\\' && p[1] && strchr("$'\"\\`", p[1]))
			p++;
		*o++ = *p;
	}
	*o = '\0';
	return out;
}

void osrelease_parse(const char *text, size_t len, struct json_object *out)
{
	const char *nul = memchr(text, '\0', len);
	if (nul)
		len = (size_t)(nul - text);
	if (!valid_utf8(text, len))
		return;
	char *values[NFIELDS] = {0};
	bool in_group = true, bad = false;
	struct buf line = BUF_INIT;
	for (size_t pos = 0; pos <= len && !bad;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		line.len = 0;
		if (buf_append(&line, text + pos, n) < 0)
			break;
		pos += n + 1;
		char *s = line.data;
		while (is_space(*s))
			s++;
		if (*s == '\0' || *s == '#')
			continue;
		if (*s == '[') {
			char *end = strchr(s, ']');
			if (!end) {
				bad = true;
				break;
			}
			*end = '\0';
			in_group = !strcmp(s + 1, "os-release");
			continue;
		}
		char *eq = strchr(s, '=');
		if (!eq || eq == s) {
			bad = true; /* GLib: not a key-value pair, group or comment */
			break;
		}
		char *kend = eq;
		while (kend > s && is_space(kend[-1]))
			kend--;
		*kend = '\0';
		char *v = eq + 1;
		while (is_space(*v))
			v++;
		char *vend = v + strlen(v);
		while (vend > v && is_space(vend[-1]))
			vend--;
		*vend = '\0';
		if (!in_group)
			continue;
		for (size_t i = 0; i < NFIELDS; i++)
			if (!strcmp(s, fields[i][0])) {
				free(values[i]);
				values[i] = strdup(v);
			}
	}
	buf_free(&line);
	for (size_t i = 0; i < NFIELDS; i++) {
		if (values[i] && !bad) {
			char *u = unquote(values[i]);
			if (u)
				json_object_object_add(out, fields[i][1], json_object_new_string(u));
			free(u);
		}
		free(values[i]);
	}
}
