/* SPDX-License-Identifier: MIT */
/*
 * target: where a restore writes a disk — a sparse raw file, a block device,
 * or a new qcow2 image (written through qemu-nbd with libnbd, so the qcow2
 * format is QEMU's own code, not ours) — behind one small ops table.
 *
 * Files are written as PATH.partial and renamed to PATH only by
 * target_commit(), so an interrupted or failed restore leaves no PATH;
 * target_abort() removes the partial file.  pwrite() is called from several
 * threads, each with its own worker index (the qcow2 target gives each a
 * connection of its own).
 */
#ifndef QUIESCE_TARGET_H
#define QUIESCE_TARGET_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum target_format { TARGET_RAW, TARGET_QCOW2 };

struct target;

int target_open(const char *path, enum target_format fmt, uint64_t size, bool force, int workers,
		struct target **out, struct err *e);
int target_pwrite(struct target *t, int worker, const void *buf, size_t len, uint64_t off, struct err *e);
/* A range that must read as zeros (a no-op on fresh files and images). */
int target_zero(struct target *t, int worker, uint64_t off, uint64_t len, struct err *e);
int target_commit(struct target *t, struct err *e);
void target_abort(struct target *t);

#endif
