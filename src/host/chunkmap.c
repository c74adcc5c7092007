// SPDX-License-Identifier: MIT
/* chunkmap: stored chunks and their digests, paged (see chunkmap.h). */
#include "chunkmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define WORDS (CHUNKMAP_PAGE / 64)

/* A map that was never built (a manifest read as a summary) must never
 * answer "zero chunk": stop instead. */
#define BUILT(m) \
	do { \
		if (!(m)->init) \
			abort(); \
	} while (0)

struct chunkmap_page {
	uint64_t bits[WORDS];
	uint16_t before[WORDS]; /* stored chunks of this page in the words before each word */
	uint32_t n, cap;
	struct digest *d; /* the n stored chunks' digests, in disk order */
};

int chunkmap_init(struct chunkmap *m, uint64_t nchunks)
{
	memset(m, 0, sizeof(*m));
	m->nchunks = nchunks;
	m->npages = (size_t)((nchunks + CHUNKMAP_PAGE - 1) >> CHUNKMAP_PAGE_SHIFT);
	m->pages = calloc(m->npages ? m->npages : 1, sizeof(*m->pages));
	if (!m->pages)
		return -ENOMEM;
	pthread_mutex_init(&m->mu, NULL);
	m->init = true;
	return 0;
}

void chunkmap_free(struct chunkmap *m)
{
	if (!m->init)
		return;
	for (size_t p = 0; p < m->npages; p++) {
		if (m->pages[p])
			free(m->pages[p]->d);
		free(m->pages[p]);
	}
	free(m->pages);
	pthread_mutex_destroy(&m->mu);
	memset(m, 0, sizeof(*m));
}

static inline uint32_t rank(const struct chunkmap_page *pg, uint32_t off)
{
	uint32_t w = off / 64, b = off % 64;
	return pg->before[w] + (uint32_t)__builtin_popcountll(pg->bits[w] & ((1ull << b) - 1));
}

static inline bool has(const struct chunkmap_page *pg, uint32_t off)
{
	return pg->bits[off / 64] >> (off % 64) & 1;
}

int chunkmap_set(struct chunkmap *m, uint64_t i, const struct digest *d)
{
	BUILT(m);
	if (i >= m->nchunks)
		return -EINVAL;
	size_t p = (size_t)(i >> CHUNKMAP_PAGE_SHIFT);
	uint32_t off = (uint32_t)(i & (CHUNKMAP_PAGE - 1));
	int rc = 0;
	pthread_mutex_lock(&m->mu);
	struct chunkmap_page *pg = m->pages[p];
	if (!pg && !(pg = m->pages[p] = calloc(1, sizeof(*pg)))) {
		rc = -ENOMEM;
		goto out;
	}
	uint32_t r = rank(pg, off);
	if (has(pg, off)) {
		pg->d[r] = *d;
		goto out;
	}
	if (pg->n == pg->cap) {
		uint32_t cap = pg->cap ? pg->cap * 2 : 16;
		if (cap > CHUNKMAP_PAGE)
			cap = CHUNKMAP_PAGE;
		struct digest *nd = realloc(pg->d, cap * sizeof(*nd));
		if (!nd) {
			rc = -ENOMEM;
			goto out;
		}
		pg->d = nd;
		pg->cap = cap;
	}
	/* backups and manifests fill pages in disk order: this moves little */
	memmove(&pg->d[r + 1], &pg->d[r], (pg->n - r) * sizeof(*pg->d));
	pg->d[r] = *d;
	pg->n++;
	pg->bits[off / 64] |= 1ull << (off % 64);
	for (uint32_t w = off / 64 + 1; w < WORDS; w++)
		pg->before[w]++;
	m->stored++;
out:
	pthread_mutex_unlock(&m->mu);
	return rc;
}

bool chunkmap_get(const struct chunkmap *m, uint64_t i, struct digest *out)
{
	BUILT(m);
	if (i >= m->nchunks)
		return false;
	const struct chunkmap_page *pg = m->pages[i >> CHUNKMAP_PAGE_SHIFT];
	uint32_t off = (uint32_t)(i & (CHUNKMAP_PAGE - 1));
	if (!pg || !has(pg, off))
		return false;
	if (out)
		*out = pg->d[rank(pg, off)];
	return true;
}

uint64_t chunkmap_next_stored(const struct chunkmap *m, uint64_t from, struct digest *out)
{
	BUILT(m);
	for (size_t p = (size_t)(from >> CHUNKMAP_PAGE_SHIFT); from < m->nchunks && p < m->npages;
	     p++, from = (uint64_t)p << CHUNKMAP_PAGE_SHIFT) {
		const struct chunkmap_page *pg = m->pages[p];
		if (!pg || !pg->n)
			continue;
		uint32_t off = (uint32_t)(from & (CHUNKMAP_PAGE - 1));
		uint64_t word = pg->bits[off / 64] & (~0ull << (off % 64));
		for (uint32_t w = off / 64;;) {
			if (word) {
				uint32_t o = w * 64 + (uint32_t)__builtin_ctzll(word);
				uint64_t i = ((uint64_t)p << CHUNKMAP_PAGE_SHIFT) + o;
				if (i >= m->nchunks)
					return m->nchunks;
				if (out)
					*out = pg->d[rank(pg, o)];
				return i;
			}
			if (++w == WORDS)
				break;
			word = pg->bits[w];
		}
	}
	return m->nchunks;
}

uint64_t chunkmap_next_zero(const struct chunkmap *m, uint64_t from)
{
	BUILT(m);
	for (size_t p = (size_t)(from >> CHUNKMAP_PAGE_SHIFT); from < m->nchunks && p < m->npages;
	     p++, from = (uint64_t)p << CHUNKMAP_PAGE_SHIFT) {
		const struct chunkmap_page *pg = m->pages[p];
		if (!pg)
			return from;
		uint32_t off = (uint32_t)(from & (CHUNKMAP_PAGE - 1));
		uint64_t word = ~pg->bits[off / 64] & (~0ull << (off % 64));
		for (uint32_t w = off / 64;;) {
			if (word) {
				uint64_t i = ((uint64_t)p << CHUNKMAP_PAGE_SHIFT) + w * 64 + (uint32_t)__builtin_ctzll(word);
				return i < m->nchunks ? i : m->nchunks;
			}
			if (++w == WORDS)
				break;
			word = ~pg->bits[w];
		}
	}
	return m->nchunks;
}

const struct digest *chunkmap_run(const struct chunkmap *m, uint64_t i, uint64_t n)
{
	BUILT(m);
	if (!n || i >= m->nchunks || n > m->nchunks - i || (i >> CHUNKMAP_PAGE_SHIFT) != ((i + n - 1) >> CHUNKMAP_PAGE_SHIFT))
		return NULL;
	const struct chunkmap_page *pg = m->pages[i >> CHUNKMAP_PAGE_SHIFT];
	uint32_t a = (uint32_t)(i & (CHUNKMAP_PAGE - 1)), b = a + (uint32_t)n - 1;
	if (!pg || !has(pg, a) || !has(pg, b) || rank(pg, b) - rank(pg, a) != n - 1)
		return NULL;
	return &pg->d[rank(pg, a)];
}
