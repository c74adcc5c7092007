/* SPDX-License-Identifier: MIT */
/*
 * strlist: a small owned list of strings (command names from the block and
 * allow lists, config values).  Linear lookup: the lists hold tens.
 */
#ifndef QUIESCE_STRLIST_H
#define QUIESCE_STRLIST_H

#include <stdbool.h>
#include <stddef.h>

struct strlist {
	char **v;
	size_t n;
};

int strlist_add(struct strlist *l, const char *s);
/* Add each non-empty comma-separated item of s. */
int strlist_add_split(struct strlist *l, const char *s, char sep);
bool strlist_has(const struct strlist *l, const char *s);
void strlist_free(struct strlist *l);

#endif
