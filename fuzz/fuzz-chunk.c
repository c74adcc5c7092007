// SPDX-License-Identifier: MIT
/* fuzz-chunk: the chunk-file reader (header checks, zstd into a bounded
 * buffer, digest check) on bytes from a possibly damaged repository. */
#include "chunk.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct chunk_codec *c;
	static uint8_t *raw;
	if (!c) {
		c = chunk_codec_new();
		raw = malloc(CHUNK_MIN_SIZE);
	}
	struct err e;
	struct digest d = {{0}};
	chunk_decode(c, data, size, raw, CHUNK_MIN_SIZE, NULL, &e);
	chunk_decode(c, data, size, raw, CHUNK_MIN_SIZE, &d, &e);
	return 0;
}
