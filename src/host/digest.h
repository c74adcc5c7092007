/* SPDX-License-Identifier: MIT */
/*
 * digest: the SHA-256 that names a chunk, and its hex spelling.
 *
 * OpenSSL's EVP one-shot digest (SHA-NI where the CPU has it, ~1.5 GB/s a
 * core here).  Names are lower-case hex, 64 characters.
 */
#ifndef QUIESCE_DIGEST_H
#define QUIESCE_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIGEST_LEN 32
#define DIGEST_HEX_LEN 64

struct digest {
	uint8_t b[DIGEST_LEN];
};

/* 0, or -1 if libcrypto fails (it does not, for SHA-256, short of ENOMEM). */
int digest_sha256(const void *data, size_t len, struct digest *out);
/* Streaming SHA-256, for what is hashed as it is read or written (manifest
 * chunk lists).  new: NULL on ENOMEM; final: 0 or -1; free takes NULL. */
struct digest_ctx;
struct digest_ctx *digest_ctx_new(void);
void digest_ctx_update(struct digest_ctx *c, const void *data, size_t len);
int digest_ctx_final(struct digest_ctx *c, struct digest *out);
void digest_ctx_free(struct digest_ctx *c);
/* `out` gets 64 hex digits and a NUL. */
void digest_to_hex(const struct digest *d, char out[DIGEST_HEX_LEN + 1]);
/* Exactly 64 lower-case hex digits, nothing else. */
bool digest_from_hex(const char *hex, size_t len, struct digest *out);

static inline int digest_cmp(const struct digest *a, const struct digest *b)
{
	for (int i = 0; i < DIGEST_LEN; i++)
		if (a->b[i] != b->b[i])
			return a->b[i] < b->b[i] ? -1 : 1;
	return 0;
}

#endif
