/* SPDX-License-Identifier: MIT */
/*
 * manifest: a snapshot's manifest, both ways (docs/repository.md, Manifests).
 *
 * Version 2 (what version-2 repositories hold): a header line with the
 * SHA-256 and length of a JSON document — id, name, time, disks, stats,
 * metadata — and, after it, each disk's chunk list as binary runs: "n zero
 * chunks", "n stored chunks" followed by their n raw digests.  The document
 * names each list's length, stored count and SHA-256, so a listing reads
 * the document alone, a restore streams the lists, and a 1 TiB disk at
 * 64 KiB chunks costs 40 bytes per stored chunk in the file and none per
 * zero chunk — where version 1's JSON array of hex strings needed 66 bytes
 * per stored chunk, 5 per zero one, and json-c objects for all of them.
 *
 * Version 1 (version-1 repositories): one header line with the SHA-256 of a
 * JSON document that lists every chunk inline ("hex" or null).  Read as
 * before, written only into version-1 repositories, and never larger than
 * its reader accepts (MANIFEST_V1_MAX_BYTES).
 *
 * Either way damage is found before a field is trusted, and a chunk is a
 * zero chunk only because the bytes say so: every json-c allocation is
 * checked when writing, and when reading, the document must hold exactly
 * as many nulls as json-c's tree (a json-c that drops a string it could not
 * allocate leaves a NULL that reads like JSON null).
 *
 * No I/O: bytes in, bytes out through a sink (fuzz/fuzz-manifest.c,
 * fuzz/fuzz-chunklist.c).
 */
#ifndef QUIESCE_MANIFEST_H
#define QUIESCE_MANIFEST_H

#include "buf.h"
#include "chunkmap.h"
#include "digest.h"
#include "err.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MANIFEST_VERSION 2
#define MANIFEST_V1_MAX_BYTES (1u << 30)  /* a whole version-1 manifest */
#define MANIFEST_MAX_DOC (16u << 20)	  /* a version-2 manifest's JSON document */
#define MANIFEST_MAX_CHUNKS (1ull << 32)  /* per disk, both versions */
#define MANIFEST_MAX_DISKS 64
#define MANIFEST_HEADER_MAX 256

struct manifest_disk {
	char *name;
	char *source;
	uint64_t size;
	uint64_t nchunks; /* ceil(size / chunk_size) */
	struct chunkmap map;
	/* version 2: the chunk list as the document describes it */
	uint64_t list_bytes, list_stored;
	struct digest list_sha;
};

struct manifest {
	int version; /* as read */
	char *id;
	char *name;
	char *time; /* RFC 3339, UTC */
	char *host;
	uint32_t chunk_size;
	size_t ndisks;
	struct manifest_disk *disks;
	json_object *stats;    /* owned; an object */
	json_object *metadata; /* owned; an object */
	/* only the document was read: the disks' chunk maps are not there
	 * (any use of them aborts rather than reading as zero chunks) */
	bool summary;
};

/* Snapshot ids are file names: [0-9A-Za-z.-], 1..64 characters, not
 * starting with a dot. */
bool manifest_id_valid(const char *id);

/* A disk with all chunks zero; -E2BIG if it needs more than
 * MANIFEST_MAX_CHUNKS chunks, -ENOMEM. */
int manifest_disk_init(struct manifest_disk *d, const char *name, const char *source, uint64_t size,
		       uint32_t chunk_size);

/* ---- reading ---- */

/* A whole manifest of either version in memory. */
int manifest_parse(const char *data, size_t len, struct manifest *m, struct err *e);

/* The same in steps, for a reader that streams the chunk lists:
 * header (the first line, at most MANIFEST_HEADER_MAX bytes of `data`) ->
 * document (version 1: everything after the header; version 2: doc_len
 * bytes) -> for version 2, the lists fed in pieces of any size. */
struct manifest_header {
	int version;
	size_t header_len;  /* the header line with its newline */
	uint64_t doc_len;   /* version 2 */
	struct digest sum;  /* SHA-256 of the document */
};
int manifest_parse_header(const char *data, size_t len, struct manifest_header *h, struct err *e);
int manifest_parse_doc(const struct manifest_header *h, const char *doc, size_t len, struct manifest *m,
		       struct err *e);
/* Version 2: the bytes of all lists together (sum of list_bytes). */
uint64_t manifest_lists_len(const struct manifest *m);
struct manifest_lists;
struct manifest_lists *manifest_lists_new(struct manifest *m);
int manifest_lists_feed(struct manifest_lists *l, const void *p, size_t n, struct err *e);
int manifest_lists_end(struct manifest_lists *l, struct err *e);
void manifest_lists_free(struct manifest_lists *l);

/* ---- writing ---- */

/* Where written bytes go: 0, or a negative errno that stops the writer. */
typedef int (*manifest_sink)(void *ctx, const void *p, size_t n);
/* Write `m` as `version` (1 or 2).  -E2BIG (with a message) past the limits
 * the reader applies, -ENOMEM, or the sink's error. */
int manifest_write(const struct manifest *m, int version, manifest_sink sink, void *ctx, struct err *e);
int manifest_serialize(const struct manifest *m, int version, struct buf *out, struct err *e);

void manifest_free(struct manifest *m);

#endif
