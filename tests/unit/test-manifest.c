// SPDX-License-Identifier: MIT
/* Unit tests for manifest and chunk: round trips, and every kind of damage
 * is refused with a message saying what. */
#include "chunk.h"
#include "manifest.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static void build(struct manifest *m)
{
	memset(m, 0, sizeof(*m));
	m->id = strdup("20261123T131500.042Z-1a2b3c4d");
	m->name = strdup("web1");
	m->time = strdup("2026-11-23T13:15:00Z");
	m->host = strdup("backup1");
	m->chunk_size = 1 << 20;
	m->ndisks = 1;
	m->disks = calloc(1, sizeof(*m->disks));
	manifest_disk_init(&m->disks[0], "disk0", "/dev/vg/web1", (3u << 20) + 5, m->chunk_size);
	for (int i = 0; i < 4; i++)
		if (i != 1) {
			digest_sha256(&i, sizeof(i), &m->disks[0].chunks[i]);
			m->disks[0].stored[i] = 1;
		}
	m->metadata = json_object_new_object();
	json_object_object_add(m->metadata, "consistency", json_object_new_string("application"));
}

static int parse(struct buf *b, struct manifest *m, struct err *e)
{
	memset(e, 0, sizeof(*e));
	return manifest_parse(b->data, b->len, m, e);
}

int main(void)
{
	struct manifest m, r;
	struct buf b = BUF_INIT;
	struct err e;
	build(&m);
	ok(manifest_serialize(&m, &b, &e) == 0, "serialize");
	ok(parse(&b, &r, &e) == 0, "parse back (%s)", e.msg);
	ok(r.ndisks == 1 && r.disks[0].nchunks == 4 && r.disks[0].size == (3u << 20) + 5, "disk size and chunk count");
	ok(!r.disks[0].stored[1] && r.disks[0].stored[0] && !digest_cmp(&r.disks[0].chunks[2], &m.disks[0].chunks[2]),
	   "digests and zero chunks survive");
	is_str(json_object_get_string(json_object_object_get(r.metadata, "consistency")), "application", "metadata");
	manifest_free(&r);

	/* damage anywhere in the body is caught by the header's checksum */
	char *nl = memchr(b.data, '\n', b.len);
	size_t body = (size_t)(nl + 1 - b.data);
	b.data[body + 40] ^= 1;
	ok(parse(&b, &r, &e) < 0 && strstr(e.msg, "damaged"), "a flipped bit: %s", e.msg);
	b.data[body + 40] ^= 1;
	b.data[3] = 'X';
	ok(parse(&b, &r, &e) < 0 && strstr(e.msg, "header"), "a bad header: %s", e.msg);
	b.data[3] = 'e';
	memcpy(b.data + strlen("quiesce-manifest "), "2", 1);
	ok(parse(&b, &r, &e) < 0 && strstr(e.msg, "version 2"), "a newer version: %s", e.msg);
	memcpy(b.data + strlen("quiesce-manifest "), "1", 1);
	ok(parse(&b, &r, &e) == 0, "restored bytes parse again");
	manifest_free(&r);
	ok(manifest_parse(b.data, body - 1, &r, &e) < 0, "truncated to the header: refused (%s)", e.msg);

	/* a valid checksum over a body with the wrong chunk count */
	m.disks[0].size = 10u << 20; /* needs 10 chunks, lists 4 */
	struct buf b2 = BUF_INIT;
	manifest_serialize(&m, &b2, &e);
	ok(parse(&b2, &r, &e) < 0 && strstr(e.msg, "chunks listed"), "chunk count checked: %s", e.msg);
	buf_free(&b2);
	ok(!manifest_id_valid("../x") && !manifest_id_valid(".hidden") && !manifest_id_valid("") &&
	   manifest_id_valid("20261123T131500.042Z-1a2b3c4d"), "ids are safe file names");
	manifest_free(&m);
	buf_free(&b);

	/* chunks */
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
	return tap_done();
}
