/* SPDX-License-Identifier: MIT */
/*
 * osrelease: read os-release(5) the way qemu-ga does, for guest-get-osinfo.
 *
 * qemu-ga prepends "[os-release]" and loads the file as a GLib key file,
 * then unquotes each value by hand.  We reproduce both layers so hosts see
 * the same inventory strings, except for two bugs of qemu-ga's unquoting
 * (docs/compat.md, "os-release values").  No I/O: fuzzable.
 */
#ifndef QUIESCE_OSRELEASE_H
#define QUIESCE_OSRELEASE_H

#include <stddef.h>

struct json_object;

/* Add the os-release fields qemu-ga reports (id, name, pretty-name,
 * version, version-id, variant, variant-id) found in text to the object
 * out.  A file GLib would not load adds nothing, as with qemu-ga. */
void osrelease_parse(const char *text, size_t len, struct json_object *out);

#endif
