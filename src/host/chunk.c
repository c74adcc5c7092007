// SPDX-License-Identifier: MIT
/* chunk: encode and decode chunk files (see chunk.h). */
#include "chunk.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* Level 1: compression dominates the backup's per-core cost; level 1 keeps
 * most of the ratio at about twice level 3's speed (docs/backup-anchors §7). */
#define ZSTD_LEVEL 1

struct chunk_codec {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
};

struct chunk_codec *chunk_codec_new(void)
{
	struct chunk_codec *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->cctx = ZSTD_createCCtx();
	c->dctx = ZSTD_createDCtx();
	if (!c->cctx || !c->dctx) {
		chunk_codec_free(c);
		return NULL;
	}
	return c;
}

void chunk_codec_free(struct chunk_codec *c)
{
	if (!c)
		return;
	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	free(c);
}

size_t chunk_file_bound(size_t raw_len)
{
	return CHUNK_HDR_LEN + ZSTD_compressBound(raw_len);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t chunk_encode(struct chunk_codec *c, const void *raw, size_t len, void *out, size_t cap)
{
	if (len == 0 || len > CHUNK_MAX_SIZE || cap < chunk_file_bound(len))
		return 0;
	uint8_t *h = out;
	size_t z = ZSTD_compressCCtx(c->cctx, h + CHUNK_HDR_LEN, cap - CHUNK_HDR_LEN, raw, len, ZSTD_LEVEL);
	uint8_t codec = CHUNK_CODEC_ZSTD;
	if (ZSTD_isError(z) || z >= len) { /* only when that makes it smaller */
		memcpy(h + CHUNK_HDR_LEN, raw, len);
		z = len;
		codec = CHUNK_CODEC_RAW;
	}
	memcpy(h, "QCK1", 4);
	h[4] = codec;
	h[5] = h[6] = h[7] = 0;
	put_le32(h + 8, (uint32_t)len);
	put_le32(h + 12, (uint32_t)z);
	return CHUNK_HDR_LEN + z;
}

long chunk_decode(struct chunk_codec *c, const void *file, size_t flen, void *raw, size_t max_raw,
		  const struct digest *want, struct err *e)
{
	const uint8_t *h = file;
	if (flen < CHUNK_HDR_LEN || memcmp(h, "QCK1", 4) != 0)
		return err_set(e, -1, "not a chunk file (bad header)");
	if (h[4] > CHUNK_CODEC_ZSTD)
		return err_set(e, -1, "unknown codec %u", h[4]);
	if (h[5] || h[6] || h[7])
		return err_set(e, -1, "unknown flags 0x%02x%02x%02x (a newer format?)", h[5], h[6], h[7]);
	uint32_t rlen = get_le32(h + 8), plen = get_le32(h + 12);
	if (rlen == 0 || rlen > max_raw)
		return err_set(e, -1, "raw length %u out of range (chunk size %zu)", rlen, max_raw);
	if ((size_t)plen != flen - CHUNK_HDR_LEN)
		return err_set(e, -1, "payload length %u but the file holds %zu", plen, flen - CHUNK_HDR_LEN);
	if (h[4] == CHUNK_CODEC_RAW) {
		if (plen != rlen)
			return err_set(e, -1, "stored chunk of %u bytes says raw length %u", plen, rlen);
		memcpy(raw, h + CHUNK_HDR_LEN, rlen);
	} else {
		size_t n = ZSTD_decompressDCtx(c->dctx, raw, rlen, h + CHUNK_HDR_LEN, plen);
		if (ZSTD_isError(n))
			return err_set(e, -1, "zstd: %s", ZSTD_getErrorName(n));
		if (n != rlen)
			return err_set(e, -1, "decompressed to %zu bytes, header says %u", n, rlen);
	}
	if (want) {
		struct digest got;
		if (digest_sha256(raw, rlen, &got) < 0)
			return err_set(e, -1, "SHA-256 failed");
		if (digest_cmp(&got, want) != 0)
			return err_set(e, -1, "contents do not match the name (SHA-256 mismatch)");
	}
	return (long)rlen;
}
