// SPDX-License-Identifier: MIT
/* digest: SHA-256 via libcrypto, hex both ways (see digest.h). */
#include "digest.h"

#include <openssl/evp.h>

int digest_sha256(const void *data, size_t len, struct digest *out)
{
	unsigned int n = 0;
	if (EVP_Digest(data, len, out->b, &n, EVP_sha256(), NULL) != 1 || n != DIGEST_LEN)
		return -1;
	return 0;
}

struct digest_ctx *digest_ctx_new(void)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(c);
		c = NULL;
	}
	return (struct digest_ctx *)c;
}

void digest_ctx_update(struct digest_ctx *c, const void *data, size_t len)
{
	EVP_DigestUpdate((EVP_MD_CTX *)c, data, len); /* SHA-256 updates do not fail */
}

int digest_ctx_final(struct digest_ctx *c, struct digest *out)
{
	unsigned int n = 0;
	return EVP_DigestFinal_ex((EVP_MD_CTX *)c, out->b, &n) == 1 && n == DIGEST_LEN ? 0 : -1;
}

void digest_ctx_free(struct digest_ctx *c)
{
	EVP_MD_CTX_free((EVP_MD_CTX *)c);
}

void digest_to_hex(const struct digest *d, char out[DIGEST_HEX_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < DIGEST_LEN; i++) {
		out[2 * i] = hex[d->b[i] >> 4];
		out[2 * i + 1] = hex[d->b[i] & 15];
	}
	out[DIGEST_HEX_LEN] = '\0';
}

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* upper case is not a name we write, so not one we accept */
}

bool digest_from_hex(const char *hex, size_t len, struct digest *out)
{
	if (len != DIGEST_HEX_LEN)
		return false;
	for (int i = 0; i < DIGEST_LEN; i++) {
		int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out->b[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}
