/* SPDX-License-Identifier: MIT */
/*
 * source: a disk to back up — a raw image file, a block device, or an NBD
 * export read with libnbd — behind one small ops table.
 *
 * Besides reading, a source answers "is this range known to read as zero?"
 * from its allocation map (SEEK_DATA for files, NBD base:allocation block
 * status), so zero extents are never read, hashed or stored.  A source is
 * used by one thread at a time.
 */
#ifndef QUIESCE_SOURCE_H
#define QUIESCE_SOURCE_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct source;

struct source_ops {
	int (*pread)(struct source *s, void *buf, size_t len, uint64_t off, struct err *e);
	/* *zero = true only if the whole range is known to read as zeros */
	int (*known_zero)(struct source *s, uint64_t off, uint64_t len, bool *zero, struct err *e);
	void (*close)(struct source *s);
};

struct source {
	const struct source_ops *ops;
	char *spec;
	uint64_t size;
	void *priv;
};

/* spec: a path, or an NBD URI (nbd://, nbd+unix://, nbds://...).  QX_SOURCE if
 * it cannot be opened. */
int source_open(const char *spec, struct source **out, struct err *e);
void source_close(struct source *s);

bool source_is_nbd_uri(const char *spec);

#endif
