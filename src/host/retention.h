/* SPDX-License-Identifier: MIT */
/*
 * retention: which snapshots prune keeps (restic/PBS rules).
 *
 * Pure: given one group's snapshot times, newest first, mark the kept ones.
 * --keep-last N keeps the N newest; --keep-daily N the newest of each of the
 * N newest days that have a snapshot (UTC), likewise ISO weeks and months.
 * A snapshot kept by any rule is kept.
 */
#ifndef QUIESCE_RETENTION_H
#define QUIESCE_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct keep_rules {
	long last, daily, weekly, monthly;
};

static inline bool keep_rules_any(const struct keep_rules *k)
{
	return k->last > 0 || k->daily > 0 || k->weekly > 0 || k->monthly > 0;
}

void retention_apply(const time_t *newest_first, size_t n, const struct keep_rules *k, bool *keep);

#endif
