// SPDX-License-Identifier: MIT
/*
 * fuzz-manifest: the manifest reader.  A repository can be damaged or
 * planted by anyone who can write to it.  The input is parsed twice: as is
 * (the header and checksum path) and behind a correct header for it, so the
 * fuzzer reaches the JSON body however the checksum would have stopped it.
 */
#include "manifest.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest m;
	struct err e;
	if (manifest_parse((const char *)data, size, &m, &e) == 0)
		manifest_free(&m);
	struct digest d;
	char hex[DIGEST_HEX_LEN + 1];
	digest_sha256(data, size, &d);
	digest_to_hex(&d, hex);
	size_t hl = strlen("quiesce-manifest 1 ") + DIGEST_HEX_LEN + 1;
	char *buf = malloc(hl + size + 1);
	if (!buf)
		return 0;
	snprintf(buf, hl + 1, "quiesce-manifest 1 %s\n", hex);
	memcpy(buf + hl, data, size);
	if (manifest_parse(buf, hl + size, &m, &e) == 0) {
		struct buf out = BUF_INIT;
		manifest_serialize(&m, &out, &e); /* what parses must write back */
		buf_free(&out);
		manifest_free(&m);
	}
	free(buf);
	return 0;
}
