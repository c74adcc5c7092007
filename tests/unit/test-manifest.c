// SPDX-License-Identifier: MIT
/* Unit tests for chunkmap, manifest and chunk: round trips of both manifest
 * versions, streaming in pieces of any size, limits on write that match the
 * reader's, and every kind of damage refused with a message saying what. */
#include "chunk.h"
#include "manifest.h"
#include "tap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static struct digest dig(uint64_t i)
{
	struct digest d;
	digest_sha256(&i, sizeof(i), &d);
	return d;
}

static void build(struct manifest *m, uint64_t size, uint32_t cs)
{
	memset(m, 0, sizeof(*m));
	m->id = strdup("20261123T131500.042Z-1a2b3c4d");
	m->name = strdup("web1");
	m->time = strdup("2026-11-23T13:15:00Z");
	m->host = strdup("backup1");
	m->chunk_size = cs;
	m->ndisks = 1;
	m->disks = calloc(1, sizeof(*m->disks));
	manifest_disk_init(&m->disks[0], "disk0", "/dev/vg/web1", size, m->chunk_size);
	m->metadata = json_object_new_object();
	json_object_object_add(m->metadata, "consistency", json_object_new_string("application"));
	json_object_object_add(m->metadata, "note", NULL); /* a null that is one */
}

static int parse(struct buf *b, struct manifest *m, struct err *e)
{
	memset(e, 0, sizeof(*e));
	return manifest_parse(b->data, b->len, m, e);
}

static bool same_chunks(const struct manifest_disk *a, const struct manifest_disk *b)
{
	if (a->nchunks != b->nchunks || a->map.stored != b->map.stored)
		return false;
	for (uint64_t i = 0; i < a->nchunks; i++) {
		struct digest x, y;
		bool sa = chunkmap_get(&a->map, i, &x), sb = chunkmap_get(&b->map, i, &y);
		if (sa != sb || (sa && digest_cmp(&x, &y)))
			return false;
	}
	return true;
}

static void test_chunkmap(void)
{
	struct chunkmap m;
	uint64_t n = 3 * CHUNKMAP_PAGE + 100;
	ok(chunkmap_init(&m, n) == 0, "a map of %llu chunks", (unsigned long long)n);
	/* set out of order, across pages, and over again */
	uint64_t at[] = {5, 4, CHUNKMAP_PAGE - 1, CHUNKMAP_PAGE, 2 * CHUNKMAP_PAGE + 63, 2 * CHUNKMAP_PAGE + 64, n - 1, 6};
	for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
		struct digest d = dig(at[k] + 1000);
		chunkmap_set(&m, at[k], &d);
	}
	struct digest d6 = dig(6);
	chunkmap_set(&m, 6, &d6);
	ok(m.stored == 8 && chunkmap_set(&m, n, &d6) == -EINVAL, "8 stored, none past the end");
	struct digest got;
	ok(chunkmap_get(&m, 6, &got) && !digest_cmp(&got, &d6), "a replaced digest");
	bool all = true;
	for (size_t k = 0; k < sizeof(at) / sizeof(at[0]) - 1; k++) {
		struct digest want = dig(at[k] + 1000);
		all &= chunkmap_get(&m, at[k], &got) && !digest_cmp(&got, &want);
	}
	ok(all && !chunkmap_get(&m, 3, NULL) && !chunkmap_get(&m, 7, NULL) && !chunkmap_get(&m, n, NULL),
	   "each digest where it was set, zero elsewhere");
	ok(chunkmap_next_stored(&m, 0, NULL) == 4 && chunkmap_next_stored(&m, 7, NULL) == CHUNKMAP_PAGE - 1 &&
	   chunkmap_next_stored(&m, CHUNKMAP_PAGE + 1, NULL) == 2 * CHUNKMAP_PAGE + 63 &&
	   chunkmap_next_stored(&m, 2 * CHUNKMAP_PAGE + 65, &got) == n - 1 && chunkmap_next_stored(&m, n, NULL) == n,
	   "next stored skips zero words and pages");
	ok(chunkmap_next_zero(&m, 4) == 7 && chunkmap_next_zero(&m, CHUNKMAP_PAGE - 1) == CHUNKMAP_PAGE + 1 &&
	   chunkmap_next_zero(&m, 0) == 0 && chunkmap_next_zero(&m, n - 1) == n, "next zero, across a page boundary");
	ok(chunkmap_run(&m, 4, 3) != NULL && chunkmap_run(&m, 4, 4) == NULL &&
	   chunkmap_run(&m, CHUNKMAP_PAGE - 1, 2) == NULL, "runs only of stored chunks within a page");
	chunkmap_free(&m);

	/* 16 Mi chunks (1 TiB at 64 KiB), a few stored: a few pages */
	ok(chunkmap_init(&m, 1ull << 24) == 0, "a 1 TiB disk's map");
	for (uint64_t i = 0; i < 48; i++) {
		struct digest d = dig(i);
		chunkmap_set(&m, (i * 349525) % (1ull << 24), &d);
	}
	size_t pages = 0;
	for (size_t p = 0; p < m.npages; p++)
		pages += m.pages[p] != NULL;
	ok(m.stored == 48 && pages <= 48, "48 stored chunks, %zu pages allocated", pages);
	uint64_t count = 0;
	for (uint64_t i = 0; (i = chunkmap_next_stored(&m, i, NULL)) < m.nchunks; i++)
		count++;
	ok(count == 48, "walking it finds the 48");
	chunkmap_free(&m);
}

static void test_round_trips(void)
{
	struct manifest m, r;
	struct buf b = BUF_INIT;
	struct err e;
	build(&m, (9u << 20) + 5, 1 << 20); /* 10 chunks, the last 5 bytes */
	for (uint64_t i = 0; i < 10; i++)
		if (i != 1 && i != 5 && i != 6) {
			struct digest d = dig(i);
			chunkmap_set(&m.disks[0].map, i, &d);
		}
	for (int v = 1; v <= 2; v++) {
		ok(manifest_serialize(&m, v, &b, &e) == 0, "serialize version %d", v);
		ok(parse(&b, &r, &e) == 0 && r.version == v && !r.summary, "parse back (%s)", e.msg);
		ok(r.ndisks == 1 && r.disks[0].nchunks == 10 && r.disks[0].size == (9u << 20) + 5,
		   "disk size and chunk count");
		ok(same_chunks(&m.disks[0], &r.disks[0]), "digests and zero chunks survive");
		is_str(json_object_get_string(json_object_object_get(r.metadata, "consistency")), "application",
		       "metadata");
		manifest_free(&r);
	}

	/* version 2 fed in pieces of every size gives the same */
	struct manifest_header h;
	manifest_parse_header(b.data, b.len, &h, &e);
	ok(h.version == 2 && h.header_len + h.doc_len < b.len, "header: version 2, %llu bytes of document",
	   (unsigned long long)h.doc_len);
	bool all = true;
	for (size_t step = 1; step <= 41; step += 4) {
		all &= manifest_parse_doc(&h, b.data + h.header_len, (size_t)h.doc_len, &r, &e) == 0 && r.summary;
		struct manifest_lists *l = manifest_lists_new(&r);
		size_t off = h.header_len + (size_t)h.doc_len;
		while (all && off < b.len) {
			size_t k = b.len - off < step ? b.len - off : step;
			all &= manifest_lists_feed(l, b.data + off, k, &e) == 0;
			off += k;
		}
		all &= manifest_lists_end(l, &e) == 0 && !r.summary && same_chunks(&m.disks[0], &r.disks[0]);
		manifest_lists_free(l);
		manifest_free(&r);
	}
	ok(all, "chunk lists fed 1, 5, ... 41 bytes at a time (%s)", e.msg);

	/* a disk of zero bytes, and one all zero: empty and one-run lists */
	struct manifest z;
	build(&z, 0, 1 << 20);
	manifest_serialize(&z, 2, &b, &e);
	ok(parse(&b, &r, &e) == 0 && r.disks[0].nchunks == 0, "a disk of 0 bytes (%s)", e.msg);
	manifest_free(&r);
	manifest_free(&z);
	build(&z, 1ull << 40, 64 << 10);
	int rc = manifest_serialize(&z, 2, &b, &e);
	ok(rc == 0 && b.len < 1024, "an empty 1 TiB disk at 64 KiB: %zu bytes", b.len);
	ok(parse(&b, &r, &e) == 0 && r.disks[0].nchunks == 1ull << 24 && r.disks[0].map.stored == 0,
	   "read back (%s)", e.msg);
	manifest_free(&r);
	manifest_free(&z);
	manifest_free(&m);
	buf_free(&b);
}

static void test_damage(void)
{
	struct manifest m, r;
	struct buf b = BUF_INIT;
	struct err e;
	build(&m, 3u << 20, 1 << 20);
	struct digest d0 = dig(0), d2 = dig(2);
	chunkmap_set(&m.disks[0].map, 0, &d0);
	chunkmap_set(&m.disks[0].map, 2, &d2);

	/* version 1: damage anywhere in the body is caught by the header's checksum */
	manifest_serialize(&m, 1, &b, &e);
	char *nl = memchr(b.data, '\n', b.len);
	size_t body = (size_t)(nl + 1 - b.data);
	b.data[body + 40] ^= 1;
	ok(parse(&b, &r, &e) < 0 && strstr(e.msg, "damaged"), "v1, a flipped bit: %s", e.msg);
	b.data[body + 40] ^= 1;
	b.data[3] = 'X';
	ok(parse(&b, &r, &e) < 0 && strstr(e.msg, "header"), "a bad header: %s", e.msg);
	b.data[3] = 'e';
	memcpy(b.data + strlen("quiesce-manifest "), "3", 1);
	ok(parse(&b, &r, &e) == -EPROTO && strstr(e.msg, "version 3"), "a newer version: %s", e.msg);
	memcpy(b.data + strlen("quiesce-manifest "), "1", 1);
	ok(parse(&b, &r, &e) == 0, "restored bytes parse again");
	manifest_free(&r);
	ok(manifest_parse(b.data, body - 1, &r, &e) < 0, "truncated to the header: refused (%s)", e.msg);

	/* version 2: the document, the lists, their lengths */
	manifest_serialize(&m, 2, &b, &e);
	struct manifest_header h;
	manifest_parse_header(b.data, b.len, &h, &e);
	size_t lists = h.header_len + (size_t)h.doc_len;
	b.data[lists - 10] ^= 1;
	ok(parse(&b, &r, &e) < 0 && strstr(e.msg, "damaged"), "v2, a flipped bit in the document: %s", e.msg);
	b.data[lists - 10] ^= 1;
	b.data[lists + 20] ^= 1;
	ok(parse(&b, &r, &e) == -EBADMSG && strstr(e.msg, "chunk list checksum"), "in a digest of the list: %s", e.msg);
	b.data[lists + 20] ^= 1;
	b.data[lists] ^= 0x80; /* the first run header's count */
	ok(parse(&b, &r, &e) < 0, "in a run header: %s", e.msg);
	b.data[lists] ^= 0x80;
	ok(manifest_parse(b.data, b.len - 1, &r, &e) < 0, "a list cut short: %s", e.msg);
	buf_putc(&b, 0);
	ok(parse(&b, &r, &e) < 0 && strstr(e.msg, "trailing"), "a byte after the lists: %s", e.msg);
	b.len--;
	ok(parse(&b, &r, &e) == 0, "restored bytes parse again");
	manifest_free(&r);

	/* a valid checksum over a document with the wrong chunk count */
	m.disks[0].size = 10u << 20; /* needs 10 chunks, lists 3 */
	for (int v = 1; v <= 2; v++) {
		manifest_serialize(&m, v, &b, &e);
		ok(parse(&b, &r, &e) < 0 && (strstr(e.msg, "chunks listed") || strstr(e.msg, "covers 3 of 10")),
		   "v%d: chunk count checked: %s", v, e.msg);
	}
	ok(!manifest_id_valid("../x") && !manifest_id_valid(".hidden") && !manifest_id_valid("") &&
	   manifest_id_valid("20261123T131500.042Z-1a2b3c4d"), "ids are safe file names");
	manifest_free(&m);
	buf_free(&b);
}

static void test_limits(void)
{
	struct manifest_disk d;
	ok(manifest_disk_init(&d, "d", "s", (MANIFEST_MAX_CHUNKS + 1) * (64 << 10), 64 << 10) == -E2BIG,
	   "a disk needing more than 2^32 chunks is refused before anything is read");
	free(d.name), free(d.source);

	/* version 1: 256 Mi zero chunks would print 1.25 GiB of nulls: refused
	 * on write with the reader's limit, before json-c is asked */
	struct manifest m;
	struct buf b = BUF_INIT;
	struct err e;
	build(&m, 1ull << 44, 64 << 10);
	ok(manifest_serialize(&m, 1, &b, &e) == -E2BIG && strstr(e.msg, "version-1"), "v1 over its limit: %s", e.msg);
	int rc = manifest_serialize(&m, 2, &b, &e);
	ok(rc == 0 && b.len < 1024, "v2 of the same: %zu bytes", b.len);

	/* version 2: metadata past the document's limit */
	char *big = malloc(MANIFEST_MAX_DOC);
	memset(big, 'x', MANIFEST_MAX_DOC - 1);
	big[MANIFEST_MAX_DOC - 1] = '\0';
	json_object_object_add(m.metadata, "big", json_object_new_string(big));
	free(big);
	ok(manifest_serialize(&m, 2, &b, &e) == -E2BIG && strstr(e.msg, "metadata"), "v2 document over its limit: %s",
	   e.msg);
	manifest_free(&m);
	buf_free(&b);
}

static void test_chunk(void)
{
	struct err e;
	struct chunk_codec *c = chunk_codec_new();
	size_t n = 256 << 10;
	char *text = malloc(n), *rnd = malloc(n), *out = malloc(n), *file = malloc(chunk_file_bound(n));
	for (size_t i = 0; i < n; i++) {
		text[i] = "the quick brown fox "[i % 20];
		rnd[i] = (char)(rand() >> 7);
	}
	struct digest dt, dr;
	digest_sha256(text, n, &dt);
	digest_sha256(rnd, n, &dr);
	size_t ft = chunk_encode(c, text, n, file, chunk_file_bound(n));
	ok(ft > 16 && ft < n / 10 && file[4] == CHUNK_CODEC_ZSTD, "text is stored compressed (%zu bytes)", ft);
	ok(chunk_decode(c, file, ft, out, n, &dt, &e) == (long)n && !memcmp(out, text, n), "and decodes to itself");
	ok(chunk_decode(c, file, ft, out, n, &dr, &e) < 0 && strstr(e.msg, "SHA-256"), "wrong name: %s", e.msg);
	ok(chunk_decode(c, file, ft, out, n / 2, &dt, &e) < 0, "raw length over the chunk size: %s", e.msg);
	file[ft / 2] ^= 0x40;
	ok(chunk_decode(c, file, ft, out, n, &dt, &e) < 0, "damaged payload: %s", e.msg);
	ok(chunk_decode(c, file, ft - 1, out, n, &dt, &e) < 0 && strstr(e.msg, "payload length"), "truncated: %s", e.msg);
	size_t fr = chunk_encode(c, rnd, n, file, chunk_file_bound(n));
	ok(fr == n + CHUNK_HDR_LEN && file[4] == CHUNK_CODEC_RAW, "random data is stored as is (%zu bytes)", fr);
	ok(chunk_decode(c, file, fr, out, n, &dr, &e) == (long)n && !memcmp(out, rnd, n), "and decodes to itself");
	file[5] = 1;
	ok(chunk_decode(c, file, fr, out, n, &dr, &e) < 0 && strstr(e.msg, "flags"), "unknown flags (encryption): %s", e.msg);
	ok(chunk_decode(c, "QCK", 3, out, n, NULL, &e) < 0, "too short: %s", e.msg);
	free(text), free(rnd), free(out), free(file);
	chunk_codec_free(c);
}

int main(void)
{
	test_chunkmap();
	test_round_trips();
	test_damage();
	test_limits();
	test_chunk();
	return tap_done();
}
