// SPDX-License-Identifier: MIT
/* manifest: parse and write snapshot manifests (see manifest.h). */
#include "manifest.h"

#include "chunk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_PREFIX "quiesce-manifest "

bool manifest_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > 64 || id[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '.'))
			return false;
	}
	return true;
}

int manifest_disk_init(struct manifest_disk *d, const char *name, const char *source, uint64_t size,
		       uint32_t chunk_size)
{
	memset(d, 0, sizeof(*d));
	d->size = size;
	d->nchunks = (size_t)((size + chunk_size - 1) / chunk_size);
	d->name = strdup(name);
	d->source = strdup(source);
	d->chunks = calloc(d->nchunks ? d->nchunks : 1, sizeof(*d->chunks));
	d->stored = calloc(d->nchunks ? d->nchunks : 1, 1);
	if (!d->name || !d->source || !d->chunks || !d->stored)
		return -ENOMEM;
	return 0;
}

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->ndisks; i++) {
		free(m->disks[i].name);
		free(m->disks[i].source);
		free(m->disks[i].chunks);
		free(m->disks[i].stored);
	}
	free(m->disks);
	free(m->id);
	free(m->name);
	free(m->time);
	free(m->host);
	json_object_put(m->stats);
	json_object_put(m->metadata);
	memset(m, 0, sizeof(*m));
}

/* ---- reading ---- */

static const char *get_str(json_object *o, const char *key, struct err *e)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string)) {
		err_set(e, -EINVAL, "member '%s' missing or not a string", key);
		return NULL;
	}
	return json_object_get_string(v);
}

static int get_u64(json_object *o, const char *key, uint64_t max, uint64_t *out, struct err *e)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return err_set(e, -EINVAL, "member '%s' missing or not an integer", key);
	errno = 0;
	int64_t i = json_object_get_int64(v);
	if (i < 0 || errno || (uint64_t)i > max)
		return err_set(e, -EINVAL, "member '%s' out of range", key);
	*out = (uint64_t)i;
	return 0;
}

static int dup_str(json_object *o, const char *key, char **out, struct err *e)
{
	const char *s = get_str(o, key, e);
	if (!s)
		return -EINVAL;
	*out = strdup(s);
	return *out ? 0 : err_set(e, -ENOMEM, "out of memory");
}

static int parse_disk(json_object *jd, size_t idx, uint32_t chunk_size, struct manifest_disk *d,
		      struct err *e)
{
	if (!json_object_is_type(jd, json_type_object))
		return err_set(e, -EINVAL, "disk %zu is not an object", idx);
	const char *name = get_str(jd, "name", e), *source = name ? get_str(jd, "source", e) : NULL;
	uint64_t size;
	if (!name || !source || get_u64(jd, "size", (uint64_t)1 << 62, &size, e) < 0)
		return -EINVAL;
	json_object *arr;
	if (!json_object_object_get_ex(jd, "chunks", &arr) || !json_object_is_type(arr, json_type_array))
		return err_set(e, -EINVAL, "disk %zu: 'chunks' missing or not an array", idx);
	/* checked before allocating: the size must not make us allocate more than the list holds */
	uint64_t need = (size + chunk_size - 1) / chunk_size;
	if ((uint64_t)json_object_array_length(arr) != need)
		return err_set(e, -EINVAL, "disk %zu: %zu chunks listed, its size needs %llu", idx,
			       json_object_array_length(arr), (unsigned long long)need);
	if (manifest_disk_init(d, name, source, size, chunk_size) < 0)
		return err_set(e, -ENOMEM, "out of memory");
	for (size_t i = 0; i < d->nchunks; i++) {
		json_object *c = json_object_array_get_idx(arr, i);
		if (!c)
			continue; /* null: an all-zero chunk */
		if (!json_object_is_type(c, json_type_string) ||
		    !digest_from_hex(json_object_get_string(c), (size_t)json_object_get_string_len(c),
				     &d->chunks[i]))
			return err_set(e, -EINVAL, "disk %zu: chunk %zu is not a digest", idx, i);
		d->stored[i] = 1;
	}
	return 0;
}

static int parse_body(json_object *root, struct manifest *m, struct err *e)
{
	if (!json_object_is_type(root, json_type_object))
		return err_set(e, -EINVAL, "not a JSON object");
	if (dup_str(root, "id", &m->id, e) < 0 || dup_str(root, "name", &m->name, e) < 0 ||
	    dup_str(root, "time", &m->time, e) < 0 || dup_str(root, "host", &m->host, e) < 0)
		return -EINVAL;
	if (!manifest_id_valid(m->id))
		return err_set(e, -EINVAL, "invalid snapshot id");
	uint64_t cs;
	if (get_u64(root, "chunk_size", CHUNK_MAX_SIZE, &cs, e) < 0)
		return -EINVAL;
	if (cs < CHUNK_MIN_SIZE || (cs & (cs - 1)))
		return err_set(e, -EINVAL, "chunk_size %llu is not a power of two in range",
			       (unsigned long long)cs);
	m->chunk_size = (uint32_t)cs;
	json_object *disks, *o;
	if (!json_object_object_get_ex(root, "disks", &disks) || !json_object_is_type(disks, json_type_array) ||
	    json_object_array_length(disks) == 0)
		return err_set(e, -EINVAL, "'disks' missing, empty or not an array");
	size_t n = json_object_array_length(disks);
	m->disks = calloc(n, sizeof(*m->disks));
	if (!m->disks)
		return err_set(e, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		m->ndisks = i + 1; /* so manifest_free frees a half-built disk */
		if (parse_disk(json_object_array_get_idx(disks, i), i, m->chunk_size, &m->disks[i], e) < 0)
			return -EINVAL;
	}
	if (!json_object_object_get_ex(root, "stats", &o) || !json_object_is_type(o, json_type_object))
		return err_set(e, -EINVAL, "'stats' missing or not an object");
	m->stats = json_object_get(o);
	if (!json_object_object_get_ex(root, "metadata", &o) || !json_object_is_type(o, json_type_object))
		return err_set(e, -EINVAL, "'metadata' missing or not an object");
	m->metadata = json_object_get(o);
	return 0;
}

int manifest_parse(const char *data, size_t len, struct manifest *m, struct err *e)
{
	memset(m, 0, sizeof(*m));
	const char *nl = memchr(data, '\n', len < 256 ? len : 256);
	size_t plen = strlen(HEADER_PREFIX);
	if (!nl || (size_t)(nl - data) < plen || memcmp(data, HEADER_PREFIX, plen) != 0)
		return err_set(e, -EINVAL, "no manifest header");
	/* "<version> <hex>", parsed by hand: the bytes are not NUL-terminated,
	 * and strtoul would skip a newline and read on past it */
	const char *p = data + plen, *end = p;
	unsigned long v = 0;
	while (end < nl && *end >= '0' && *end <= '9' && end - p < 6)
		v = v * 10 + (unsigned long)(*end++ - '0');
	if (end == p || end >= nl || *end != ' ')
		return err_set(e, -EINVAL, "bad manifest header");
	if (v != MANIFEST_VERSION)
		return err_set(e, -EPROTO, "manifest format version %lu (this quiesce reads %d)", v,
			       MANIFEST_VERSION);
	struct digest want, got;
	if (!digest_from_hex(end + 1, (size_t)(nl - end - 1), &want))
		return err_set(e, -EINVAL, "bad manifest checksum field");
	const char *body = nl + 1;
	size_t blen = len - (size_t)(body - data);
	if (digest_sha256(body, blen, &got) < 0 || digest_cmp(&want, &got) != 0)
		return err_set(e, -EBADMSG, "checksum mismatch: the manifest is damaged");
	json_tokener *tok = json_tokener_new();
	if (!tok)
		return err_set(e, -ENOMEM, "out of memory");
	json_object *root = json_tokener_parse_ex(tok, body, (int)(blen > INT32_MAX ? INT32_MAX : blen));
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	int r;
	if (!root || jerr != json_tokener_success)
		r = err_set(e, -EINVAL, "bad JSON: %s", json_tokener_error_desc(jerr));
	else if (blen - used > 1 || (blen - used == 1 && body[used] != '\n'))
		r = err_set(e, -EINVAL, "trailing bytes after the JSON document");
	else
		r = parse_body(root, m, e);
	json_object_put(root);
	if (r < 0)
		manifest_free(m);
	return r;
}

/* ---- writing ---- */

static json_object *disk_json(const struct manifest_disk *d)
{
	json_object *o = json_object_new_object(), *arr = json_object_new_array_ext((int)d->nchunks);
	if (!o || !arr) {
		json_object_put(o);
		json_object_put(arr);
		return NULL;
	}
	json_object_object_add(o, "name", json_object_new_string(d->name));
	json_object_object_add(o, "source", json_object_new_string(d->source));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)d->size));
	for (size_t i = 0; i < d->nchunks; i++) {
		char hex[DIGEST_HEX_LEN + 1];
		if (d->stored[i]) {
			digest_to_hex(&d->chunks[i], hex);
			json_object_array_add(arr, json_object_new_string_len(hex, DIGEST_HEX_LEN));
		} else {
			json_object_array_add(arr, NULL);
		}
	}
	json_object_object_add(o, "chunks", arr);
	return o;
}

int manifest_serialize(const struct manifest *m, struct buf *out, struct err *e)
{
	json_object *root = json_object_new_object(), *disks = json_object_new_array();
	if (!root || !disks) {
		json_object_put(root);
		json_object_put(disks);
		return err_set(e, -ENOMEM, "out of memory");
	}
	json_object_object_add(root, "id", json_object_new_string(m->id));
	json_object_object_add(root, "name", json_object_new_string(m->name));
	json_object_object_add(root, "time", json_object_new_string(m->time));
	json_object_object_add(root, "host", json_object_new_string(m->host));
	json_object_object_add(root, "chunk_size", json_object_new_int64(m->chunk_size));
	for (size_t i = 0; i < m->ndisks; i++)
		json_object_array_add(disks, disk_json(&m->disks[i]));
	json_object_object_add(root, "disks", disks);
	json_object_object_add(root, "stats", m->stats ? json_object_get(m->stats) : json_object_new_object());
	json_object_object_add(root, "metadata", m->metadata ? json_object_get(m->metadata)
							      : json_object_new_object());
	size_t blen;
	const char *body = json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN, &blen);
	struct digest d;
	char hex[DIGEST_HEX_LEN + 1];
	int r = 0;
	if (!body || digest_sha256(body, blen, &d) < 0) {
		r = err_set(e, -ENOMEM, "cannot serialize the manifest");
	} else {
		digest_to_hex(&d, hex);
		out->len = 0;
		if (buf_printf(out, "%s%d %s\n", HEADER_PREFIX, MANIFEST_VERSION, hex) < 0 ||
		    buf_append(out, body, blen) < 0)
			r = err_set(e, -ENOMEM, "out of memory");
	}
	json_object_put(root);
	return r;
}
