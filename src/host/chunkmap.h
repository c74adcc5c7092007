/* SPDX-License-Identifier: MIT */
/*
 * chunkmap: which chunks of one disk are stored, and under which digest —
 * in memory that grows with the chunks stored, not with the disk.
 *
 * A 1 TiB disk at 64 KiB chunks has 16 Mi chunks; an array of digests for
 * all of them is 512 MiB before a single byte is read, and most disks are
 * mostly zero.  So the map is cut into pages of 4096 chunks, allocated on
 * the first stored chunk; a page holds a bitmap, the running counts that
 * give a chunk's rank among the stored ones, and the digests of the stored
 * chunks only, in disk order.  An absent page is 4096 zero chunks; a full
 * page costs 32 bytes per chunk plus 640 bytes.  Lookups and "the next
 * stored (or zero) chunk from here" skip whole zero pages at once, which is
 * what lets restore and the manifest writer walk a 1 TiB disk in
 * milliseconds.
 *
 * chunkmap_set may be called from several threads (the backup's workers);
 * everything else is for one thread, or for many once the map is built.
 * No I/O (unit-tested and fuzzed through the manifest reader).
 */
#ifndef QUIESCE_CHUNKMAP_H
#define QUIESCE_CHUNKMAP_H

#include "digest.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHUNKMAP_PAGE_SHIFT 12
#define CHUNKMAP_PAGE (1u << CHUNKMAP_PAGE_SHIFT)

struct chunkmap_page;

struct chunkmap {
	uint64_t nchunks;
	uint64_t stored;
	size_t npages;
	struct chunkmap_page **pages;
	pthread_mutex_t mu;
	bool init;
};

/* Room for `nchunks` chunks, all zero.  0 or -ENOMEM. */
int chunkmap_init(struct chunkmap *m, uint64_t nchunks);
void chunkmap_free(struct chunkmap *m);

/* Chunk i is stored under d (replacing what it was).  Thread-safe.
 * 0, -EINVAL if i is out of range, -ENOMEM. */
int chunkmap_set(struct chunkmap *m, uint64_t i, const struct digest *d);
/* Whether chunk i is stored, and its digest if so (out may be NULL). */
bool chunkmap_get(const struct chunkmap *m, uint64_t i, struct digest *out);
/* The first stored chunk at or after `from`, or nchunks; its digest in
 * *out (may be NULL). */
uint64_t chunkmap_next_stored(const struct chunkmap *m, uint64_t from, struct digest *out);
/* The first zero chunk at or after `from`, or nchunks. */
uint64_t chunkmap_next_zero(const struct chunkmap *m, uint64_t from);
/* The digests of chunks [i, i + n), all stored and within one page, as one
 * array in disk order (what the manifest writer copies out); NULL if they
 * are not. */
const struct digest *chunkmap_run(const struct chunkmap *m, uint64_t i, uint64_t n);

#endif
