/* SPDX-License-Identifier: MIT */
/*
 * manifest: a snapshot's manifest, both ways (docs/repository.md, Manifests).
 *
 * One header line carrying the format version and the SHA-256 of the JSON
 * that follows, so any damage is found before a single field is trusted;
 * then the snapshot: disks with their ordered chunk digests (null for zero
 * chunks), stats, and free-form metadata for the layer above.  Parsing takes
 * bytes and does no I/O (fuzzed by fuzz/fuzz-manifest.c).
 */
#ifndef QUIESCE_MANIFEST_H
#define QUIESCE_MANIFEST_H

#include "buf.h"
#include "digest.h"
#include "err.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MANIFEST_VERSION 1
#define MANIFEST_MAX_BYTES (1u << 30)

struct manifest_disk {
	char *name;
	char *source;
	uint64_t size;
	size_t nchunks;		/* ceil(size / chunk_size) */
	struct digest *chunks;	/* nchunks entries */
	uint8_t *stored;	/* 1: chunks[i] names a stored chunk; 0: all zero */
};

struct manifest {
	char *id;
	char *name;
	char *time; /* RFC 3339, UTC */
	char *host;
	uint32_t chunk_size;
	size_t ndisks;
	struct manifest_disk *disks;
	json_object *stats;    /* owned; an object */
	json_object *metadata; /* owned; an object */
};

/* Snapshot ids are file names: [0-9A-Za-z.-], 1..64 characters, not
 * starting with a dot. */
bool manifest_id_valid(const char *id);

/* Room for the disks' chunk lists (zeroed, i.e. all-zero chunks). */
int manifest_disk_init(struct manifest_disk *d, const char *name, const char *source, uint64_t size,
		       uint32_t chunk_size);

int manifest_parse(const char *data, size_t len, struct manifest *m, struct err *e);
int manifest_serialize(const struct manifest *m, struct buf *out, struct err *e);
void manifest_free(struct manifest *m);

#endif
