/* SPDX-License-Identifier: MIT */
/*
 * jwrite: serialise json-c values the way QEMU's JSON writer does, so our
 * replies look like qemu-ga's on the wire: ": " after keys, ", " between
 * members, doubles as %.17g, and strings in pure ASCII with every control
 * and non-ASCII character escaped as \uXXXX (upper-case hex, surrogate
 * pairs above the BMP).  Invalid UTF-8 in a string becomes \uFFFD.
 */
#ifndef QUIESCE_JWRITE_H
#define QUIESCE_JWRITE_H

#include "buf.h"

#include <stddef.h>

struct json_object;

/* Append the text of o (NULL writes null).  0 or -ENOMEM. */
int jwrite(struct buf *b, struct json_object *o);

/* The keys of object o in qemu-ga's QDict iteration order, which decides
 * which of several bad members qemu-ga reports.  Returns a malloc'ed array
 * of n pointers into o (the caller frees the array), or NULL. */
const char **jwrite_qdict_keys(struct json_object *o, size_t *n);

/* Append s[0..len) as a quoted JSON string. */
int jwrite_string(struct buf *b, const char *s, size_t len);

#endif
