// SPDX-License-Identifier: MIT
/*
 * mounts: mountinfo parsing (see mounts.h).
 *
 * A mountinfo line is
 *   ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
 * Fields are separated by single spaces; spaces inside paths are written
 * as \040, so splitting on spaces is exact.  Lines that do not parse are
 * skipped, as qemu-ga does.
 */
#include "mounts.h"

#include "buf.h"
#include "fdio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define MAX_MOUNTINFO (16u << 20)

/* Decode \ooo (first digit 0-3) and \\ in place. */
static void unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) | (s[3] - '0'));
			s += 3;
		} else if (s[0] == '\\' && s[1] == '\\') {
			*o++ = '\\';
			s++;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* Split line into at most max space-separated fields; returns the count. */
static size_t split(char *line, char **f, size_t max)
{
	size_t n = 0;
	char *save = NULL;
	for (char *t = strtok_r(line, " ", &save); t && n < max; t = strtok_r(NULL, " ", &save))
		f[n++] = t;
	return n;
}

static int add(struct mount_list *l, unsigned maj, unsigned min, const char *dir,
	       const char *fstype, const char *source)
{
	struct mount *v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	l->v = v;
	struct mount *m = &v[l->n];
	m->major = maj;
	m->minor = min;
	m->dir = strdup(dir);
	m->fstype = strdup(fstype);
	m->source = strdup(source);
	if (!m->dir || !m->fstype || !m->source) {
		free(m->dir);
		free(m->fstype);
		free(m->source);
		return -ENOMEM;
	}
	l->n++;
	return 0;
}

static int parse_line(char *line, struct mount_list *l)
{
	char *f[64];
	size_t n = split(line, f, 64);
	unsigned maj, min;
	if (n < 7 || sscanf(f[2], "%u:%u", &maj, &min) != 2)
		return 0;
	size_t sep = 6;
	while (sep < n && strcmp(f[sep], "-"))
		sep++;
	if (sep + 2 >= n) /* need "-", FSTYPE and SOURCE */
		return 0;
	char *dir = f[4], *fstype = f[sep + 1], *source = f[sep + 2];
	unescape(dir);
	unescape(source);
	if (maj == 0) {
		struct stat st;
		if (strcmp(fstype, "btrfs") || stat(source, &st) < 0 || !S_ISBLK(st.st_mode))
			return 0;
		maj = major(st.st_rdev);
		min = minor(st.st_rdev);
	}
	return add(l, maj, min, dir, fstype, source);
}

int mounts_parse(const char *text, size_t len, struct mount_list *ret)
{
	struct mount_list l = {0};
	size_t pos = 0;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char *line = strndup(text + pos, n);
		if (!line) {
			mounts_free(&l);
			return -ENOMEM;
		}
		int r = parse_line(line, &l);
		free(line);
		if (r < 0) {
			mounts_free(&l);
			return r;
		}
		pos += n + 1;
	}
	*ret = l;
	return 0;
}

int mounts_read(const char *path, struct mount_list *ret, struct err *e)
{
	struct buf text = BUF_INIT;
	int r = fdio_read_file(path, MAX_MOUNTINFO, &text, e);
	if (r == 0 && (r = mounts_parse(text.data, text.len, ret)) < 0)
		err_set(e, r, "out of memory");
	buf_free(&text);
	return r;
}

int mounts_add(struct mount_list *l, const struct mount *m)
{
	return add(l, m->major, m->minor, m->dir, m->fstype, m->source);
}

void mounts_dedup(struct mount_list *l)
{
	size_t out = 0;
	for (size_t i = 0; i < l->n; i++) {
		bool seen = false;
		for (size_t j = 0; j < out && !seen; j++)
			seen = l->v[j].major == l->v[i].major && l->v[j].minor == l->v[i].minor;
		if (seen) {
			free(l->v[i].dir);
			free(l->v[i].fstype);
			free(l->v[i].source);
		} else {
			l->v[out++] = l->v[i];
		}
	}
	l->n = out;
}

const struct mount *mounts_find(const struct mount_list *l, const char *dir)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].dir, dir))
			return &l->v[i];
	return NULL;
}

void mounts_free(struct mount_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].dir);
		free(l->v[i].fstype);
		free(l->v[i].source);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}
