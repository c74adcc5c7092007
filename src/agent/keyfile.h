/* SPDX-License-Identifier: MIT */
/*
 * keyfile: the subset of GLib's key-file format that qemu-ga.conf uses:
 * "[group]" lines, "key=value" lines, '#' comments and blank lines.  Keys
 * and values are trimmed of surrounding blanks; \s \n \t \r \\ in values are
 * unescaped as GLib does.  Parsing does no I/O (fuzzable).
 */
#ifndef QUIESCE_KEYFILE_H
#define QUIESCE_KEYFILE_H

#include "err.h"

#include <stddef.h>

/* Called for each key in each group; a negative return stops parsing and
 * is returned by keyfile_parse. */
typedef int (*keyfile_fn)(void *opaque, const char *group, const char *key, const char *value,
			  unsigned line, struct err *e);

int keyfile_parse(const char *text, size_t len, keyfile_fn fn, void *opaque, struct err *e);

#endif
