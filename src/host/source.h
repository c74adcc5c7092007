/* SPDX-License-Identifier: MIT */
/*
 * source: a disk to back up — a raw image file, a block device, or an NBD
 * export read with libnbd — behind one small ops table.
 *
 * Besides reading, a source answers "how far from here is it known to read
 * as zeros?" from its allocation map (SEEK_DATA for files, NBD base:allocation block
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
	/* *end: how far from `off` the source is known to read as zeros
	 * (off if nothing is known, never past the size) — one answer skips a
	 * whole hole, however many chunks it spans */
	int (*zero_until)(struct source *s, uint64_t off, uint64_t *end, struct err *e);
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
