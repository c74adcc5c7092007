/* SPDX-License-Identifier: MIT */
/*
 * gc: garbage collection of unreferenced chunks, safe while backups run
 * (docs/repository.md, Prune and garbage collection).
 *
 * Mark (every manifest's digests), sweep (unreferenced chunks older than
 * this gc into trash/, by rename), and — only if no backup is running at
 * that instant — empty trash after a fresh mark, putting back anything a
 * manifest written meanwhile references.  A damaged manifest stops gc
 * before it deletes anything: its references are unknown.
 */
#ifndef QUIESCE_GC_H
#define QUIESCE_GC_H

#include "err.h"
#include "repo.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gc_stats {
	size_t referenced, trashed, restored, deleted, tmp_deleted;
	uint64_t bytes_deleted;
	bool trash_emptied;
};

/* The caller holds the gc lock (repo_lock_gc). */
int gc_run(struct repo *r, struct gc_stats *st, struct err *e);
json_object *gc_stats_json(const struct gc_stats *st);

#endif
