/* SPDX-License-Identifier: MIT */
/*
 * fleece: the QEMU side of a VM backup — the point-in-time views of a
 * running VM's disks, exported read-only over NBD, and everything that
 * keeps them honest and harmless (docs/vm-backup.md).
 *
 * Per disk: a scratch qcow2 (the "fleece") whose backing is the live disk
 * node, and an NBD export of it.  One QMP transaction starts a
 * `blockdev-backup sync=none` job per disk into its fleece: from then on a
 * guest write first copies the old contents into the fleece (copy-before-
 * write), so the export shows every disk as it was at that one instant.
 *
 * QEMU 7.2 makes this dangerous in one way: a copy-before-write that fails
 * (scratch full) fails the *guest's* write — and with werror=enospc the VM
 * pauses.  The filter's on-cbw-error=break-snapshot (7.1+) cannot be had
 * from blockdev-backup, nor set afterwards (the node cannot be reopened),
 * and a filter of our own cannot be inserted above several disks in one
 * transaction.  So the guarantee is kept around the job instead:
 *
 *   before freezing  the worst case — every cluster that holds data at the
 *                    point in time, plus qcow2 metadata — must fit in the
 *                    scratch filesystem, or nothing is frozen;
 *   while reading    a watcher thread (it owns the QMP connection then)
 *                    keeps "free room >= what the fleeces may still grow"
 *                    true; the moment it is not (something else is filling
 *                    the filesystem) it cancels the jobs, so no copy — and
 *                    no guest write — can fail.  It also ends the run on a
 *                    job that ended, a guest write error, the VM going
 *                    away; a VM paused on a write error is resumed once
 *                    our jobs are gone (the write is retried without us);
 *   before commit    the jobs must still be running: without its job an
 *                    export reads live data, not the point in time.
 *
 * Everything put into QEMU is named quiesce-*, and teardown removes what
 * QEMU lists under those names, never what our replies said we added: a
 * reply that came after our deadline must not leave a job behind.  A dead
 * run's leftovers are removed the same way (the VM's lock says no live
 * run of ours has them).  Scratch lives in <scratch-dir>/vm-<VM key>/, the
 * NBD socket in it when the path fits, so a dead run's server is found by
 * connecting to that path.
 */
#ifndef QUIESCE_FLEECE_H
#define QUIESCE_FLEECE_H

#include "err.h"
#include "qmpc.h"
#include "thawmark.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define FLEECE_MAX_DISKS 64

struct fleece_disk {
	char device[128]; /* QEMU's name for it (query-block "device" or "qdev") */
	char node[256];	  /* the node the guest writes through */
	uint64_t size;
	char target[32], job[32], filter[32], export_id[32], export_name[32]; /* quiesce-fleeceN, -jobN, -cbwN... */
	char image[PATH_MAX];					  /* the scratch qcow2 */
	uint64_t worst;	  /* the most the scratch image can grow to (measured) */
};

struct fleece {
	struct qmpc *q;
	const char *qmp; /* for messages */
	struct fleece_disk d[FLEECE_MAX_DISKS];
	size_t n;
	char dir[PATH_MAX - 256]; /* this VM's scratch directory */
	char sock[108];		  /* the NBD server's socket (sun_path's size) */
	bool vm_was_running; /* at the start: a pause later may be ours to undo */
	bool resumed;	     /* once: a VM that pauses again without our jobs is not ours to resume */
	/* the watch during the read */
	pthread_t watcher;
	bool watching;
	atomic_bool stop, lost;
	struct err why; /* set once, before `lost` */
};

/* Names and paths for the VM with identity `k`: scratch in
 * `scratch_base`/vm-<key> (the base is created, 0700, only if
 * `create_base`: the default one; a directory the user named must exist). */
int fleece_init(struct fleece *f, struct qmpc *q, const char *qmp, const char *scratch_base, bool create_base,
		const struct vmkey *k, struct err *e);
/* Every writable disk with a medium, from query-block. */
int fleece_discover(struct fleece *f, struct err *e);
/* Remove what a dead run of ours left in QEMU and in the scratch
 * directory; an error if something of ours cannot be removed. */
int fleece_clear_leftovers(struct fleece *f, struct err *e);
/* Scratch images, fleece nodes, the NBD server and the exports. */
int fleece_prepare(struct fleece *f, struct err *e);
/* Before freezing: the worst case must fit in the scratch filesystem. */
int fleece_check_room(struct fleece *f, struct err *e);
/* The point in time: one transaction, a job per disk. */
int fleece_fix(struct fleece *f, struct err *e);
/* From the transaction to the end of the read (the QMP connection is the
 * watcher's meanwhile).  Also re-measures the worst case on the fixed view. */
int fleece_watch_start(struct fleece *f, struct err *e);
/* <0 (and *e) once the views can no longer be trusted; cheap, any thread. */
int fleece_check(struct fleece *f, struct err *e);
/* After the read: stop watching; 0 only if every job ran to the end (then
 * the jobs are cancelled at once: their work is done). */
int fleece_finish(struct fleece *f, struct err *e);
/* NBD URI of disk i. */
void fleece_uri(const struct fleece *f, size_t i, char *out, size_t outsz);
/* Remove everything named ours from QEMU and the scratch directory. */
void fleece_teardown(struct fleece *f);

#endif
