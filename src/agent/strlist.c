// SPDX-License-Identifier: MIT
/* strlist: owned string list (see strlist.h). */
#include "strlist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int strlist_add(struct strlist *l, const char *s)
{
	char *copy = strdup(s);
	char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!copy || !v) {
		free(copy);
		if (v)
			l->v = v;
		return -ENOMEM;
	}
	v[l->n++] = copy;
	l->v = v;
	return 0;
}

int strlist_add_split(struct strlist *l, const char *s, char sep)
{
	while (*s) {
		const char *end = strchr(s, sep);
		size_t n = end ? (size_t)(end - s) : strlen(s);
		if (n) {
			char *item = strndup(s, n);
			if (!item)
				return -ENOMEM;
			int r = strlist_add(l, item);
			free(item);
			if (r < 0)
				return r;
		}
		s += n + (end ? 1 : 0);
	}
	return 0;
}

bool strlist_has(const struct strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i], s))
			return true;
	return false;
}

void strlist_free(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}
