/* SPDX-License-Identifier: MIT */
/*
 * gc: garbage collection of unreferenced chunks, safe while backups and
 * restores run, and not stopped by them (docs/repository.md, Prune and
 * garbage collection).
 *
 * Mark (every manifest's digests); sweep (unreferenced chunks older than
 * this gc into trash by rename — in a version-2 repository into a new
 * generation, trash/gen/<N>/); then empty: a fresh mark puts back whatever
 * a manifest written meanwhile references, and deletes the rest of every
 * generation no live session may still need (repo.h, Sessions) — so space
 * comes back even if some backup is always running.  Version 1 keeps its
 * rule: trash is emptied only when no backup holds locks/writers.  A
 * damaged manifest stops gc before it deletes anything: its references are
 * unknown.
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
	size_t referenced, trashed, restored, deleted, kept, tmp_deleted;
	size_t sessions; /* live sessions seen (an older quiesce's backups count as one) */
	uint64_t bytes_deleted;
	bool trash_emptied; /* nothing is left in trash */
};

/* The caller holds the gc lock (repo_lock_gc). */
int gc_run(struct repo *r, struct gc_stats *st, struct err *e);
json_object *gc_stats_json(const struct gc_stats *st);

#endif
