/* SPDX-License-Identifier: MIT */
/*
 * mounts: the mount table from /proc/self/mountinfo, as qemu-ga reads it.
 *
 * Kept: mounts of block devices (major != 0), plus btrfs, whose mountinfo
 * shows an anonymous major 0 device: for it the source is stat()ed for
 * the real one.  Pseudo filesystems (proc, sysfs, tmpfs, cgroup, overlay,
 * NFS, FUSE...) are major 0 and are skipped.  Octal escapes (\040) in
 * paths are decoded.  Order is mountinfo order.
 */
#ifndef QUIESCE_MOUNTS_H
#define QUIESCE_MOUNTS_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>

struct mount {
	unsigned major, minor;
	char *dir;    /* decoded mount point */
	char *fstype;
	char *source; /* decoded mount source */
};

struct mount_list {
	struct mount *v;
	size_t n;
};

/* Parse mountinfo text (no I/O but the btrfs stat()).  0 or -ENOMEM. */
int mounts_parse(const char *text, size_t len, struct mount_list *ret);
/* Read and parse a mountinfo file (normally /proc/self/mountinfo). */
int mounts_read(const char *path, struct mount_list *ret, struct err *e);
/* Append a copy of m.  0 or -ENOMEM. */
int mounts_add(struct mount_list *l, const struct mount *m);
/* Keep only the first mount of each device (bind mounts, btrfs subvolumes):
 * freezing is per filesystem, and a second FIFREEZE of one is an error. */
void mounts_dedup(struct mount_list *l);
/* The mount whose directory is exactly `dir`, or NULL. */
const struct mount *mounts_find(const struct mount_list *l, const char *dir);
void mounts_free(struct mount_list *l);

#endif
