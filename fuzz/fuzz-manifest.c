// SPDX-License-Identifier: MIT
/*
 * fuzz-manifest: the manifest reader, both versions.  A repository can be
 * damaged or planted by anyone who can write to it.  The input is parsed
 * three times: as is (the header and checksum path), and behind a correct
 * version-1 and version-2 header for it, so the fuzzer reaches the JSON
 * document however the checksum would have stopped it.  What parses must
 * write back in both versions, and version 2 must read its own output
 * (the binary chunk lists are fuzzed on their own by fuzz-chunklist.c).
 */
#include "manifest.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(struct manifest *m)
{
	struct buf out = BUF_INIT;
	struct err e;
	manifest_serialize(m, 1, &out, &e); /* may be refused as too large: fine */
	if (manifest_serialize(m, 2, &out, &e) == 0) {
		struct manifest again;
		if (manifest_parse(out.data, out.len, &again, &e) < 0 && e.code != -ENOMEM) {
			fprintf(stderr, "a manifest we wrote does not parse: %s\n", e.msg);
			abort();
		}
		manifest_free(&again);
	}
	buf_free(&out);
}

static void wrapped(const uint8_t *data, size_t size, int version)
{
	struct digest d;
	char hex[DIGEST_HEX_LEN + 1], head[MANIFEST_HEADER_MAX];
	digest_sha256(data, size, &d);
	digest_to_hex(&d, hex);
	int hl = version == 1 ? snprintf(head, sizeof(head), "quiesce-manifest 1 %s\n", hex)
			      : snprintf(head, sizeof(head), "quiesce-manifest 2 %s %zu\n", hex, size);
	char *buf = malloc((size_t)hl + size + 1);
	if (!buf)
		return;
	memcpy(buf, head, (size_t)hl);
	memcpy(buf + hl, data, size);
	struct manifest m;
	struct err e;
	if (manifest_parse(buf, (size_t)hl + size, &m, &e) == 0) {
		round_trip(&m);
		manifest_free(&m);
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest m;
	struct err e;
	if (manifest_parse((const char *)data, size, &m, &e) == 0) {
		round_trip(&m);
		manifest_free(&m);
	}
	wrapped(data, size, 1);
	wrapped(data, size, 2);
	return 0;
}
