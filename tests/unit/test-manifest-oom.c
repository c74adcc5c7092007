// SPDX-License-Identifier: MIT
/*
 * A json-c allocation failure can never turn a stored chunk into a zero
 * chunk (docs/repository.md, Manifests).
 *
 * Linked with -Wl,--wrap for the json-c calls manifest.c makes, so each can
 * be made to fail:
 *  - writing: every json-c call the writer makes fails in turn; each run
 *    either reports out of memory or writes a manifest that reads back with
 *    every chunk as it was — never a null where a digest was;
 *  - reading: json_tokener_parse_ex returns a tree in which one chunk's
 *    string is NULL, as a json-c that drops a string it could not allocate
 *    leaves it (NULL is also what JSON null parses to); the reader must
 *    fail, not read a zero chunk.
 */
#include "manifest.h"
#include "tap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static long calls, fail_at = -1;

static bool fail_now(void)
{
	return fail_at >= 0 && calls++ == fail_at;
}

json_object *__real_json_object_new_string_len(const char *s, const int len);
json_object *__wrap_json_object_new_string_len(const char *s, const int len);
json_object *__wrap_json_object_new_string_len(const char *s, const int len)
{
	return fail_now() ? NULL : __real_json_object_new_string_len(s, len);
}

json_object *__real_json_object_new_string(const char *s);
json_object *__wrap_json_object_new_string(const char *s);
json_object *__wrap_json_object_new_string(const char *s)
{
	return fail_now() ? NULL : __real_json_object_new_string(s);
}

json_object *__real_json_object_new_object(void);
json_object *__wrap_json_object_new_object(void);
json_object *__wrap_json_object_new_object(void)
{
	return fail_now() ? NULL : __real_json_object_new_object();
}

json_object *__real_json_object_new_int64(int64_t i);
json_object *__wrap_json_object_new_int64(int64_t i);
json_object *__wrap_json_object_new_int64(int64_t i)
{
	return fail_now() ? NULL : __real_json_object_new_int64(i);
}

int __real_json_object_array_add(json_object *a, json_object *v);
int __wrap_json_object_array_add(json_object *a, json_object *v);
int __wrap_json_object_array_add(json_object *a, json_object *v)
{
	return fail_now() ? -1 : __real_json_object_array_add(a, v);
}

int __real_json_object_object_add(json_object *o, const char *k, json_object *v);
int __wrap_json_object_object_add(json_object *o, const char *k, json_object *v);
int __wrap_json_object_object_add(json_object *o, const char *k, json_object *v)
{
	return fail_now() ? -1 : __real_json_object_object_add(o, k, v);
}

/* reading: drop the string of chunk `lose` of disk 0, as a json-c out of
 * memory inside its tokener would */
static long lose = -1;

json_object *__real_json_tokener_parse_ex(json_tokener *tok, const char *str, int len);
json_object *__wrap_json_tokener_parse_ex(json_tokener *tok, const char *str, int len);
json_object *__wrap_json_tokener_parse_ex(json_tokener *tok, const char *str, int len)
{
	json_object *root = __real_json_tokener_parse_ex(tok, str, len);
	json_object *disks, *chunks;
	if (lose >= 0 && json_object_object_get_ex(root, "disks", &disks) &&
	    json_object_object_get_ex(json_object_array_get_idx(disks, 0), "chunks", &chunks) &&
	    json_object_is_type(chunks, json_type_array))
		json_object_array_put_idx(chunks, (size_t)lose, NULL);
	return root;
}

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
	manifest_disk_init(&m->disks[0], "disk0", "/dev/vg/web1", 6u << 20, m->chunk_size);
	for (uint64_t i = 0; i < 6; i++)
		if (i != 2) {
			struct digest d;
			digest_sha256(&i, sizeof(i), &d);
			chunkmap_set(&m->disks[0].map, i, &d);
		}
	m->metadata = json_object_new_object();
	json_object_object_add(m->metadata, "vm", json_object_new_string("web1"));
}

static bool same(const struct manifest_disk *a, const struct manifest_disk *b)
{
	if (a->nchunks != b->nchunks)
		return false;
	for (uint64_t i = 0; i < a->nchunks; i++) {
		struct digest x, y;
		bool sa = chunkmap_get(&a->map, i, &x), sb = chunkmap_get(&b->map, i, &y);
		if (sa != sb || (sa && digest_cmp(&x, &y)))
			return false;
	}
	return true;
}

int main(void)
{
	struct manifest m, r;
	struct buf b = BUF_INIT;
	struct err e;
	build(&m);
	for (int v = 1; v <= 2; v++) {
		long refused = 0, written = 0;
		bool wrong = false;
		for (fail_at = 0;; fail_at++) {
			calls = 0;
			int rc = manifest_serialize(&m, v, &b, &e);
			long made = calls;
			long at = fail_at;
			fail_at = -1;
			if (made <= at)
				break; /* no call left to fail: done */
			if (rc < 0) {
				refused += rc == -ENOMEM;
				wrong |= rc != -ENOMEM;
			} else {
				written++;
				wrong |= manifest_parse(b.data, b.len, &r, &e) < 0 || !same(&m.disks[0], &r.disks[0]);
				manifest_free(&r);
			}
			fail_at = at;
		}
		fail_at = -1;
		ok(!wrong && refused > 10, "v%d: %ld json-c failures on write reported, %ld written right, none wrong", v,
		   refused, written);
	}

	/* reading a version-1 manifest whose chunk 3 json-c lost */
	manifest_serialize(&m, 1, &b, &e);
	ok(manifest_parse(b.data, b.len, &r, &e) == 0 && same(&m.disks[0], &r.disks[0]), "the manifest reads right");
	manifest_free(&r);
	lose = 3;
	int rc = manifest_parse(b.data, b.len, &r, &e);
	ok(rc == -ENOMEM && strstr(e.msg, "out of memory"), "a lost chunk string is an error, not a zero chunk: %s",
	   e.msg);
	if (rc == 0)
		manifest_free(&r);
	lose = -1;
	manifest_free(&m);
	buf_free(&b);
	return tap_done();
}
