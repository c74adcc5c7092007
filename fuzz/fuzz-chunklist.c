// SPDX-License-Identifier: MIT
/*
 * fuzz-chunklist: the decoder of version-2 chunk lists (binary runs), on
 * bytes a document's checksum would have let through: the list's SHA-256
 * is made right for the input.  The first 3 bytes give the disk's chunk
 * count, the 4th the size of the pieces the bytes are fed in (the decoder
 * keeps records cut between pieces), the rest is the list.
 */
#include "manifest.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	struct manifest m = {0};
	struct manifest_disk d = {0};
	d.nchunks = (uint64_t)data[0] | (uint64_t)data[1] << 8 | (uint64_t)data[2] << 16;
	size_t piece = data[3] ? data[3] : 1;
	data += 4;
	size -= 4;
	d.list_bytes = size;
	digest_sha256(data, size, &d.list_sha);
	/* the stored count the document would claim: whatever the list has, found
	 * by a first pass; the second pass then must agree with itself */
	m.ndisks = 1;
	m.disks = &d;
	struct err e;
	for (int pass = 0; pass < 2; pass++) {
		struct manifest_lists *l = manifest_lists_new(&m);
		if (!l)
			break;
		int rc = 0;
		for (size_t off = 0; off < size && rc == 0; off += piece)
			rc = manifest_lists_feed(l, data + off, size - off < piece ? size - off : piece, &e);
		if (rc == 0)
			rc = manifest_lists_end(l, &e);
		manifest_lists_free(l);
		uint64_t stored = d.map.stored;
		chunkmap_free(&d.map);
		if (pass == 1 && rc == 0 && stored != d.list_stored)
			abort();
		d.list_stored = stored;
	}
	return 0;
}
