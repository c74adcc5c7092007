/* SPDX-License-Identifier: MIT */
/*
 * chunk: the bytes of a chunk file, both ways (docs/repository.md, Chunks).
 *
 * A 16-byte header (magic QCK1, codec, flags, raw and payload lengths) and
 * the payload: zstd level 1 when that is smaller, else the raw bytes.
 * Pure functions over caller buffers — no I/O, no allocation per chunk — so
 * the backup pipeline can run one codec per thread and the reader can be
 * fuzzed as is.
 */
#ifndef QUIESCE_CHUNK_H
#define QUIESCE_CHUNK_H

#include "digest.h"
#include "err.h"

#include <stddef.h>

#define CHUNK_HDR_LEN 16
#define CHUNK_MIN_SIZE (64u << 10)
#define CHUNK_MAX_SIZE (64u << 20)
#define CHUNK_CODEC_RAW 0
#define CHUNK_CODEC_ZSTD 1

/* Per-thread compression and decompression state. */
struct chunk_codec;

struct chunk_codec *chunk_codec_new(void);
void chunk_codec_free(struct chunk_codec *c);

/* Room a chunk file of `raw_len` raw bytes may need. */
size_t chunk_file_bound(size_t raw_len);

/* Encode `raw` into `out` (at least chunk_file_bound(len) bytes); returns the
 * file length, or 0 on failure (len 0 or over CHUNK_MAX_SIZE). */
size_t chunk_encode(struct chunk_codec *c, const void *raw, size_t len, void *out, size_t cap);

/* Decode a chunk file into `raw` (capacity `max_raw`, the repository's chunk
 * size) and check its SHA-256 against `want` (NULL: do not check).
 * Returns the raw length, or -1 with a message saying what is wrong. */
long chunk_decode(struct chunk_codec *c, const void *file, size_t flen, void *raw, size_t max_raw,
		  const struct digest *want, struct err *e);

#endif
