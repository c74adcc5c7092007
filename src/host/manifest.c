// SPDX-License-Identifier: MIT
/* manifest: parse and write snapshot manifests (see manifest.h). */
#include "manifest.h"

#include "chunk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_PREFIX "quiesce-manifest "
#define RUN_ZERO (1ull << 63) /* a run header: this bit set = zero chunks; the rest = the count */
#define RUN_RECORD 8

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

static int disk_meta(struct manifest_disk *d, const char *name, const char *source, uint64_t size,
		     uint32_t chunk_size)
{
	memset(d, 0, sizeof(*d));
	uint64_t n = size / chunk_size + (size % chunk_size != 0);
	if (n > MANIFEST_MAX_CHUNKS)
		return -E2BIG;
	d->size = size;
	d->nchunks = n;
	d->name = strdup(name);
	d->source = strdup(source);
	return d->name && d->source ? 0 : -ENOMEM;
}

int manifest_disk_init(struct manifest_disk *d, const char *name, const char *source, uint64_t size,
		       uint32_t chunk_size)
{
	int rc = disk_meta(d, name, source, size, chunk_size);
	if (rc == 0 && chunkmap_init(&d->map, d->nchunks) < 0)
		rc = -ENOMEM;
	return rc;
}

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->ndisks; i++) {
		free(m->disks[i].name);
		free(m->disks[i].source);
		chunkmap_free(&m->disks[i].map);
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

/* ---- reading: the JSON document ---- */

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

/* Literal nulls in JSON text (strict: lower case, never inside a string). */
static size_t text_nulls(const char *s, size_t n)
{
	size_t count = 0;
	bool in_str = false;
	for (size_t i = 0; i < n; i++) {
		if (in_str) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				in_str = false;
		} else if (s[i] == '"') {
			in_str = true;
		} else if (s[i] == 'n' && n - i >= 4 && !memcmp(s + i, "null", 4)) {
			count++;
			i += 3;
		}
	}
	return count;
}

/* NULL values in a json-c tree (depth is bounded by the tokener's). */
static size_t tree_nulls(json_object *o)
{
	size_t count = 0;
	if (json_object_is_type(o, json_type_array)) {
		for (size_t i = 0, n = json_object_array_length(o); i < n; i++) {
			json_object *v = json_object_array_get_idx(o, i);
			count += v ? tree_nulls(v) : 1;
		}
	} else if (json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, k, v)
		{
			(void)k;
			count += v ? tree_nulls(v) : 1;
		}
	}
	return count;
}

static int parse_json(const char *doc, size_t len, json_object **out, struct err *e)
{
	*out = NULL;
	if (len > INT32_MAX)
		return err_set(e, -EINVAL, "document too large");
	json_tokener *tok = json_tokener_new();
	if (!tok)
		return err_set(e, -ENOMEM, "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	json_object *root = json_tokener_parse_ex(tok, doc, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	int r = 0;
	if (!root || jerr != json_tokener_success)
		r = err_set(e, -EINVAL, "bad JSON: %s", json_tokener_error_desc(jerr));
	else if (len - used > 1 || (len - used == 1 && doc[used] != '\n'))
		r = err_set(e, -EINVAL, "trailing bytes after the JSON document");
	else if (text_nulls(doc, used) != tree_nulls(root))
		/* json-c could not allocate a value and left NULL, which would
		 * read as null: a stored chunk as a zero chunk */
		r = err_set(e, -ENOMEM, "out of memory while parsing (json-c lost a value)");
	if (r < 0) {
		json_object_put(root);
		return r;
	}
	*out = root;
	return 0;
}

static int parse_disk_v1(json_object *jd, size_t idx, uint32_t chunk_size, struct manifest_disk *d,
			 struct err *e)
{
	const char *name = get_str(jd, "name", e), *source = name ? get_str(jd, "source", e) : NULL;
	uint64_t size;
	if (!name || !source || get_u64(jd, "size", (uint64_t)1 << 62, &size, e) < 0)
		return -EINVAL;
	json_object *arr;
	if (!json_object_object_get_ex(jd, "chunks", &arr) || !json_object_is_type(arr, json_type_array))
		return err_set(e, -EINVAL, "disk %zu: 'chunks' missing or not an array", idx);
	/* checked before allocating: the size must not make us allocate more than the list holds */
	uint64_t need = size / chunk_size + (size % chunk_size != 0);
	if ((uint64_t)json_object_array_length(arr) != need)
		return err_set(e, -EINVAL, "disk %zu: %zu chunks listed, its size needs %llu", idx,
			       json_object_array_length(arr), (unsigned long long)need);
	int rc = manifest_disk_init(d, name, source, size, chunk_size);
	if (rc < 0)
		return rc == -E2BIG ? err_set(e, -EINVAL, "disk %zu: too many chunks", idx)
				    : err_set(e, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < d->nchunks; i++) {
		json_object *c = json_object_array_get_idx(arr, (size_t)i);
		if (!c)
			continue; /* null (parse_json made sure it is one): an all-zero chunk */
		struct digest dg;
		if (!json_object_is_type(c, json_type_string) ||
		    !digest_from_hex(json_object_get_string(c), (size_t)json_object_get_string_len(c), &dg))
			return err_set(e, -EINVAL, "disk %zu: chunk %llu is not a digest", idx, (unsigned long long)i);
		if (chunkmap_set(&d->map, i, &dg) < 0)
			return err_set(e, -ENOMEM, "out of memory");
	}
	return 0;
}

static int parse_disk_v2(json_object *jd, size_t idx, uint32_t chunk_size, struct manifest_disk *d,
			 struct err *e)
{
	const char *name = get_str(jd, "name", e), *source = name ? get_str(jd, "source", e) : NULL;
	uint64_t size;
	if (!name || !source || get_u64(jd, "size", (uint64_t)1 << 62, &size, e) < 0)
		return -EINVAL;
	json_object *l;
	if (!json_object_object_get_ex(jd, "chunks", &l) || !json_object_is_type(l, json_type_object))
		return err_set(e, -EINVAL, "disk %zu: 'chunks' missing or not an object", idx);
	const char *fmt = get_str(l, "format", e), *sum = fmt ? get_str(l, "sha256", e) : NULL;
	if (!fmt || !sum)
		return -EINVAL;
	if (strcmp(fmt, "runs") != 0)
		return err_set(e, -EINVAL, "disk %zu: chunk list format '%.32s' is not one this quiesce reads", idx, fmt);
	if (!digest_from_hex(sum, strlen(sum), &d->list_sha))
		return err_set(e, -EINVAL, "disk %zu: chunk list checksum is not a SHA-256", idx);
	struct digest keep = d->list_sha;
	int rc = disk_meta(d, name, source, size, chunk_size);
	d->list_sha = keep;
	if (rc < 0)
		return rc == -E2BIG ? err_set(e, -EINVAL, "disk %zu: more than %llu chunks", idx, MANIFEST_MAX_CHUNKS)
				    : err_set(e, -ENOMEM, "out of memory");
	/* every chunk its own run is the longest list there can be */
	if (get_u64(l, "bytes", d->nchunks * (RUN_RECORD + DIGEST_LEN), &d->list_bytes, e) < 0 ||
	    get_u64(l, "stored", d->nchunks, &d->list_stored, e) < 0)
		return -EINVAL;
	return 0;
}

static int parse_body(json_object *root, int version, struct manifest *m, struct err *e)
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
	if (n > MANIFEST_MAX_DISKS)
		return err_set(e, -EINVAL, "%zu disks; a snapshot holds at most %d", n, MANIFEST_MAX_DISKS);
	m->disks = calloc(n, sizeof(*m->disks));
	if (!m->disks)
		return err_set(e, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		m->ndisks = i + 1; /* so manifest_free frees a half-built disk */
		json_object *jd = json_object_array_get_idx(disks, i);
		if (!json_object_is_type(jd, json_type_object))
			return err_set(e, -EINVAL, "disk %zu is not an object", i);
		int rc = version == 1 ? parse_disk_v1(jd, i, m->chunk_size, &m->disks[i], e)
				      : parse_disk_v2(jd, i, m->chunk_size, &m->disks[i], e);
		if (rc < 0)
			return rc;
	}
	if (!json_object_object_get_ex(root, "stats", &o) || !json_object_is_type(o, json_type_object))
		return err_set(e, -EINVAL, "'stats' missing or not an object");
	m->stats = json_object_get(o);
	if (!json_object_object_get_ex(root, "metadata", &o) || !json_object_is_type(o, json_type_object))
		return err_set(e, -EINVAL, "'metadata' missing or not an object");
	m->metadata = json_object_get(o);
	m->summary = version == 2; /* until the lists are read */
	return 0;
}

/* ---- reading: header and document ---- */

static const char *parse_decimal(const char *p, const char *end, int maxdigits, uint64_t *out)
{
	uint64_t v = 0;
	const char *s = p;
	while (p < end && *p >= '0' && *p <= '9' && p - s < maxdigits)
		v = v * 10 + (uint64_t)(*p++ - '0');
	*out = v;
	return p == s ? NULL : p;
}

int manifest_parse_header(const char *data, size_t len, struct manifest_header *h, struct err *e)
{
	memset(h, 0, sizeof(*h));
	const char *nl = memchr(data, '\n', len < MANIFEST_HEADER_MAX ? len : MANIFEST_HEADER_MAX);
	size_t plen = strlen(HEADER_PREFIX);
	if (!nl || (size_t)(nl - data) < plen || memcmp(data, HEADER_PREFIX, plen) != 0)
		return err_set(e, -EINVAL, "no manifest header");
	/* parsed by hand: the bytes are not NUL-terminated, and strtoul would
	 * skip a newline and read on past it */
	uint64_t v;
	const char *p = parse_decimal(data + plen, nl, 6, &v);
	if (!p || *p != ' ')
		return err_set(e, -EINVAL, "bad manifest header");
	if (v != 1 && v != 2)
		return err_set(e, -EPROTO, "manifest format version %llu (this quiesce reads 1 and 2)",
			       (unsigned long long)v);
	h->version = (int)v;
	p++;
	const char *hex_end = v == 1 ? nl : (nl - p > DIGEST_HEX_LEN ? p + DIGEST_HEX_LEN : nl);
	if (!digest_from_hex(p, (size_t)(hex_end - p), &h->sum))
		return err_set(e, -EINVAL, "bad manifest checksum field");
	if (v == 2) {
		p = hex_end;
		if (p >= nl || *p != ' ' || !(p = parse_decimal(p + 1, nl, 20, &h->doc_len)) || p != nl)
			return err_set(e, -EINVAL, "bad manifest length field");
		if (h->doc_len > MANIFEST_MAX_DOC)
			return err_set(e, -EINVAL, "document of %llu bytes: larger than a manifest's may be",
				       (unsigned long long)h->doc_len);
	}
	h->header_len = (size_t)(nl + 1 - data);
	return 0;
}

int manifest_parse_doc(const struct manifest_header *h, const char *doc, size_t len, struct manifest *m,
		       struct err *e)
{
	memset(m, 0, sizeof(*m));
	if (h->version == 2 && len != h->doc_len)
		return err_set(e, -EINVAL, "document truncated");
	if (h->version == 1 && len > MANIFEST_V1_MAX_BYTES)
		return err_set(e, -EINVAL, "larger than a version-1 manifest may be");
	struct digest got;
	if (digest_sha256(doc, len, &got) < 0)
		return err_set(e, -ENOMEM, "out of memory");
	if (digest_cmp(&h->sum, &got) != 0)
		return err_set(e, -EBADMSG, "checksum mismatch: the manifest is damaged");
	json_object *root;
	int r = parse_json(doc, len, &root, e);
	if (r == 0) {
		m->version = h->version;
		r = parse_body(root, h->version, m, e);
		json_object_put(root);
	}
	if (r < 0)
		manifest_free(m);
	return r;
}

/* ---- reading: version 2 chunk lists ---- */

uint64_t manifest_lists_len(const struct manifest *m)
{
	uint64_t n = 0;
	for (size_t i = 0; i < m->ndisks; i++)
		n += m->disks[i].list_bytes;
	return n;
}

struct manifest_lists {
	struct manifest *m;
	size_t disk;		 /* the list being read */
	uint64_t pos;		 /* its next chunk */
	uint64_t left;		 /* digests still to come in the current stored run */
	uint64_t seen, stored;	 /* its bytes and stored chunks so far */
	uint8_t part[DIGEST_LEN]; /* a record cut by the end of a piece */
	size_t plen;
	struct digest_ctx *sha;
};

struct manifest_lists *manifest_lists_new(struct manifest *m)
{
	struct manifest_lists *l = calloc(1, sizeof(*l));
	if (!l || !(l->sha = digest_ctx_new())) {
		free(l);
		return NULL;
	}
	l->m = m;
	for (size_t i = 0; i < m->ndisks; i++) {
		if (chunkmap_init(&m->disks[i].map, m->disks[i].nchunks) < 0) {
			manifest_lists_free(l);
			return NULL;
		}
	}
	return l;
}

void manifest_lists_free(struct manifest_lists *l)
{
	if (!l)
		return;
	digest_ctx_free(l->sha);
	free(l);
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int decode(struct manifest_lists *l, const uint8_t *p, size_t n, struct err *e)
{
	struct manifest_disk *d = &l->m->disks[l->disk];
	while (n) {
		size_t want = l->left ? DIGEST_LEN : RUN_RECORD;
		const uint8_t *rec;
		if (l->plen || n < want) {
			size_t take = want - l->plen < n ? want - l->plen : n;
			memcpy(l->part + l->plen, p, take);
			l->plen += take;
			p += take;
			n -= take;
			if (l->plen < want)
				return 0;
			rec = l->part;
			l->plen = 0;
		} else {
			rec = p;
			p += want;
			n -= want;
		}
		if (l->left) {
			struct digest dg;
			memcpy(dg.b, rec, DIGEST_LEN);
			if (chunkmap_set(&d->map, l->pos, &dg) < 0)
				return err_set(e, -ENOMEM, "out of memory");
			l->pos++;
			l->left--;
			l->stored++;
			continue;
		}
		uint64_t h = le64(rec), count = h & ~RUN_ZERO;
		if (!count || count > d->nchunks - l->pos)
			return err_set(e, -EINVAL, "disk %zu: chunk list: a run of %llu at chunk %llu of %llu", l->disk,
				       (unsigned long long)count, (unsigned long long)l->pos,
				       (unsigned long long)d->nchunks);
		if (h & RUN_ZERO)
			l->pos += count;
		else
			l->left = count;
	}
	return 0;
}

static int end_disk(struct manifest_lists *l, struct err *e)
{
	struct manifest_disk *d = &l->m->disks[l->disk];
	struct digest got;
	if (l->plen || l->left || l->pos != d->nchunks)
		return err_set(e, -EINVAL, "disk %zu: chunk list covers %llu of %llu chunks", l->disk,
			       (unsigned long long)l->pos, (unsigned long long)d->nchunks);
	if (l->stored != d->list_stored)
		return err_set(e, -EINVAL, "disk %zu: chunk list has %llu stored chunks, the document says %llu",
			       l->disk, (unsigned long long)l->stored, (unsigned long long)d->list_stored);
	if (digest_ctx_final(l->sha, &got) < 0 || digest_cmp(&got, &d->list_sha) != 0)
		return err_set(e, -EBADMSG, "disk %zu: chunk list checksum mismatch: the manifest is damaged", l->disk);
	digest_ctx_free(l->sha);
	if (!(l->sha = digest_ctx_new()))
		return err_set(e, -ENOMEM, "out of memory");
	l->disk++;
	l->pos = l->left = l->seen = l->stored = 0;
	return 0;
}

int manifest_lists_feed(struct manifest_lists *l, const void *data, size_t n, struct err *e)
{
	const uint8_t *p = data;
	for (;;) {
		while (l->disk < l->m->ndisks && l->seen == l->m->disks[l->disk].list_bytes) {
			int rc = end_disk(l, e);
			if (rc < 0)
				return rc;
		}
		if (!n)
			return 0;
		if (l->disk == l->m->ndisks)
			return err_set(e, -EINVAL, "trailing bytes after the chunk lists");
		uint64_t room = l->m->disks[l->disk].list_bytes - l->seen;
		size_t take = room < n ? (size_t)room : n;
		digest_ctx_update(l->sha, p, take);
		int rc = decode(l, p, take, e);
		if (rc < 0)
			return rc;
		l->seen += take;
		p += take;
		n -= take;
	}
}

int manifest_lists_end(struct manifest_lists *l, struct err *e)
{
	int rc = manifest_lists_feed(l, NULL, 0, e);
	if (rc < 0)
		return rc;
	if (l->disk < l->m->ndisks)
		return err_set(e, -EINVAL, "chunk lists truncated (disk %zu)", l->disk);
	l->m->summary = false;
	return 0;
}

int manifest_parse(const char *data, size_t len, struct manifest *m, struct err *e)
{
	memset(m, 0, sizeof(*m));
	struct manifest_header h;
	int rc = manifest_parse_header(data, len, &h, e);
	if (rc < 0)
		return rc;
	size_t rest = len - h.header_len;
	if (h.version == 1)
		return manifest_parse_doc(&h, data + h.header_len, rest, m, e);
	if (rest < h.doc_len)
		return err_set(e, -EINVAL, "document truncated");
	if ((rc = manifest_parse_doc(&h, data + h.header_len, (size_t)h.doc_len, m, e)) < 0)
		return rc;
	struct manifest_lists *l = manifest_lists_new(m);
	if (!l)
		rc = err_set(e, -ENOMEM, "out of memory");
	else if ((rc = manifest_lists_feed(l, data + h.header_len + h.doc_len, rest - (size_t)h.doc_len, e)) == 0)
		rc = manifest_lists_end(l, e);
	manifest_lists_free(l);
	if (rc < 0)
		manifest_free(m);
	return rc;
}

/* ---- writing ---- */

/* json-c calls that can fail for lack of memory, checked: an unchecked NULL
 * added to an array is written as null — a stored chunk as a zero chunk. */
static int jadd(json_object *o, const char *k, json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_object_add(o, k, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

static int jpush(json_object *a, json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_array_add(a, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

struct out {
	manifest_sink sink; /* NULL: only count and hash */
	void *ctx;
	struct digest_ctx *sha;
	uint64_t bytes;
	size_t n;
	int rc;
	uint8_t buf[1 << 16];
};

static int out_flush(struct out *o)
{
	if (o->rc == 0 && o->sink && o->n)
		o->rc = o->sink(o->ctx, o->buf, o->n);
	o->n = 0;
	return o->rc;
}

static void out_put(struct out *o, const void *p, size_t n)
{
	if (o->sha)
		digest_ctx_update(o->sha, p, n);
	o->bytes += n;
	if (!o->sink || o->rc)
		return;
	const uint8_t *c = p;
	while (n) {
		size_t room = sizeof(o->buf) - o->n, take = room < n ? room : n;
		memcpy(o->buf + o->n, c, take);
		o->n += take;
		c += take;
		n -= take;
		if (o->n == sizeof(o->buf) && out_flush(o) < 0)
			return;
	}
}

static void out_u64(struct out *o, uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	out_put(o, b, 8);
}

/* A disk's chunk list: maximal runs, the digests of a stored run copied
 * out of the map page by page. */
static void emit_runs(const struct manifest_disk *d, struct out *o)
{
	uint64_t n = d->nchunks;
	for (uint64_t i = 0; i < n;) {
		uint64_t s = chunkmap_next_stored(&d->map, i, NULL);
		if (s > i)
			out_u64(o, RUN_ZERO | (s - i));
		if (s >= n)
			break;
		uint64_t z = chunkmap_next_zero(&d->map, s);
		out_u64(o, z - s);
		for (uint64_t k = s; k < z;) {
			uint64_t page_end = ((k >> CHUNKMAP_PAGE_SHIFT) + 1) << CHUNKMAP_PAGE_SHIFT;
			uint64_t seg = (z < page_end ? z : page_end) - k;
			out_put(o, chunkmap_run(&d->map, k, seg), (size_t)seg * DIGEST_LEN);
			k += seg;
		}
		i = z;
	}
}

struct list_info {
	uint64_t bytes, stored;
	char sha[DIGEST_HEX_LEN + 1];
};

static json_object *disk_json(const struct manifest_disk *d, int version, const struct list_info *li)
{
	json_object *o = json_object_new_object(), *chunks = NULL;
	int rc = o ? 0 : -ENOMEM;
	if (rc == 0)
		rc = jadd(o, "name", json_object_new_string(d->name));
	if (rc == 0)
		rc = jadd(o, "source", json_object_new_string(d->source));
	if (rc == 0)
		rc = jadd(o, "size", json_object_new_int64((int64_t)d->size));
	if (rc == 0 && version == 1) {
		rc = (chunks = json_object_new_array_ext((int)d->nchunks)) ? 0 : -ENOMEM;
		for (uint64_t i = 0; i < d->nchunks && rc == 0; i++) {
			struct digest dg;
			char hex[DIGEST_HEX_LEN + 1];
			if (!chunkmap_get(&d->map, i, &dg)) {
				/* the one place a NULL goes in, on purpose: a zero chunk */
				rc = json_object_array_add(chunks, NULL) < 0 ? -ENOMEM : 0;
				continue;
			}
			digest_to_hex(&dg, hex);
			rc = jpush(chunks, json_object_new_string_len(hex, DIGEST_HEX_LEN));
		}
	} else if (rc == 0) {
		rc = (chunks = json_object_new_object()) ? 0 : -ENOMEM;
		if (rc == 0)
			rc = jadd(chunks, "format", json_object_new_string("runs"));
		if (rc == 0)
			rc = jadd(chunks, "bytes", json_object_new_int64((int64_t)li->bytes));
		if (rc == 0)
			rc = jadd(chunks, "stored", json_object_new_int64((int64_t)li->stored));
		if (rc == 0)
			rc = jadd(chunks, "sha256", json_object_new_string(li->sha));
	}
	if (rc == 0) {
		rc = jadd(o, "chunks", chunks);
		chunks = NULL;
	}
	json_object_put(chunks);
	if (rc < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static json_object *doc_json(const struct manifest *m, int version, const struct list_info *li)
{
	json_object *root = json_object_new_object(), *disks = json_object_new_array();
	int rc = root && disks ? 0 : -ENOMEM;
	if (rc == 0)
		rc = jadd(root, "id", json_object_new_string(m->id));
	if (rc == 0)
		rc = jadd(root, "name", json_object_new_string(m->name));
	if (rc == 0)
		rc = jadd(root, "time", json_object_new_string(m->time));
	if (rc == 0)
		rc = jadd(root, "host", json_object_new_string(m->host));
	if (rc == 0)
		rc = jadd(root, "chunk_size", json_object_new_int64(m->chunk_size));
	for (size_t i = 0; i < m->ndisks && rc == 0; i++)
		rc = jpush(disks, disk_json(&m->disks[i], version, li ? &li[i] : NULL));
	if (rc == 0) {
		rc = jadd(root, "disks", disks);
		disks = NULL;
	}
	if (rc == 0)
		rc = jadd(root, "stats", m->stats ? json_object_get(m->stats) : json_object_new_object());
	if (rc == 0)
		rc = jadd(root, "metadata", m->metadata ? json_object_get(m->metadata) : json_object_new_object());
	json_object_put(disks);
	if (rc < 0) {
		json_object_put(root);
		return NULL;
	}
	return root;
}

static void sum_hex(const char *p, size_t n, char hex[DIGEST_HEX_LEN + 1])
{
	struct digest d = {{0}};
	digest_sha256(p, n, &d);
	digest_to_hex(&d, hex);
}

static int write_v1(const struct manifest *m, struct out *o, struct err *e)
{
	/* what json-c will print, before asking it to: "hex" or null, commas */
	uint64_t est = 1024;
	for (size_t i = 0; i < m->ndisks; i++) {
		const struct manifest_disk *d = &m->disks[i];
		est += 2 + d->map.stored * (DIGEST_HEX_LEN + 3) + (d->nchunks - d->map.stored) * 5;
	}
	if (est > MANIFEST_V1_MAX_BYTES)
		return err_set(e, -E2BIG, "its manifest would take %llu MiB, more than the 1024 MiB a version-1 "
			       "repository's manifest may hold (quiesce upgrade makes the repository version 2, "
			       "whose manifests scale)", (unsigned long long)(est >> 20));
	json_object *root = doc_json(m, 1, NULL);
	size_t blen = 0;
	const char *body = root ? json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN, &blen) : NULL;
	int rc = 0;
	char hex[DIGEST_HEX_LEN + 1], head[MANIFEST_HEADER_MAX];
	if (!body) {
		rc = err_set(e, -ENOMEM, "out of memory writing the manifest");
	} else if (blen + 100 > MANIFEST_V1_MAX_BYTES) {
		rc = err_set(e, -E2BIG, "its manifest would take %zu MiB, more than the 1024 MiB a version-1 "
			     "repository's manifest may hold", blen >> 20);
	} else {
		sum_hex(body, blen, hex);
		int hl = snprintf(head, sizeof(head), "%s1 %s\n", HEADER_PREFIX, hex);
		out_put(o, head, (size_t)hl);
		out_put(o, body, blen);
	}
	json_object_put(root);
	return rc;
}

static int write_v2(const struct manifest *m, struct out *o, struct err *e)
{
	struct list_info li[MANIFEST_MAX_DISKS];
	if (m->ndisks > MANIFEST_MAX_DISKS)
		return err_set(e, -E2BIG, "%zu disks; a snapshot holds at most %d", m->ndisks, MANIFEST_MAX_DISKS);
	/* first pass: each list's length and checksum, for the document */
	for (size_t i = 0; i < m->ndisks; i++) {
		struct out *h = calloc(1, sizeof(*h));
		struct digest d;
		if (!h || !(h->sha = digest_ctx_new())) {
			free(h);
			return err_set(e, -ENOMEM, "out of memory writing the manifest");
		}
		emit_runs(&m->disks[i], h);
		int rc = digest_ctx_final(h->sha, &d);
		li[i].bytes = h->bytes;
		li[i].stored = m->disks[i].map.stored;
		digest_to_hex(&d, li[i].sha);
		digest_ctx_free(h->sha);
		free(h);
		if (rc < 0)
			return err_set(e, -ENOMEM, "out of memory writing the manifest");
	}
	json_object *root = doc_json(m, 2, li);
	size_t blen = 0;
	const char *body = root ? json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN, &blen) : NULL;
	int rc = 0;
	if (!body) {
		rc = err_set(e, -ENOMEM, "out of memory writing the manifest");
	} else if (blen + 1 > MANIFEST_MAX_DOC) {
		rc = err_set(e, -E2BIG, "its manifest's document would take %zu KiB, more than the %u KiB a manifest "
			     "may hold (metadata too large?)", (blen + 1) >> 10, MANIFEST_MAX_DOC >> 10);
	} else {
		/* the document's checksum covers its newline too */
		struct digest_ctx *c = digest_ctx_new();
		struct digest d;
		char hex[DIGEST_HEX_LEN + 1], head[MANIFEST_HEADER_MAX];
		if (c) {
			digest_ctx_update(c, body, blen);
			digest_ctx_update(c, "\n", 1);
		}
		rc = c ? digest_ctx_final(c, &d) : -1;
		digest_ctx_free(c);
		if (rc < 0) {
			json_object_put(root);
			return err_set(e, -ENOMEM, "out of memory writing the manifest");
		}
		digest_to_hex(&d, hex);
		int hl = snprintf(head, sizeof(head), "%s2 %s %zu\n", HEADER_PREFIX, hex, blen + 1);
		out_put(o, head, (size_t)hl);
		out_put(o, body, blen);
		out_put(o, "\n", 1);
		for (size_t i = 0; i < m->ndisks; i++)
			emit_runs(&m->disks[i], o);
	}
	json_object_put(root);
	return rc;
}

int manifest_write(const struct manifest *m, int version, manifest_sink sink, void *ctx, struct err *e)
{
	for (size_t i = 0; i < m->ndisks; i++)
		if (!m->disks[i].map.init)
			return err_set(e, -EINVAL, "internal: disk %zu has no chunk map", i);
	struct out *o = calloc(1, sizeof(*o));
	if (!o)
		return err_set(e, -ENOMEM, "out of memory writing the manifest");
	o->sink = sink;
	o->ctx = ctx;
	int rc = version == 1 ? write_v1(m, o, e) : write_v2(m, o, e);
	if (rc == 0 && out_flush(o) < 0)
		rc = err_set(e, o->rc, "cannot write the manifest: %s", strerror(-o->rc));
	else if (rc == 0 && o->rc < 0)
		rc = err_set(e, o->rc, "cannot write the manifest: %s", strerror(-o->rc));
	free(o);
	return rc;
}

static int buf_sink(void *ctx, const void *p, size_t n)
{
	return buf_append(ctx, p, n) < 0 ? -ENOMEM : 0;
}

int manifest_serialize(const struct manifest *m, int version, struct buf *out, struct err *e)
{
	out->len = 0;
	return manifest_write(m, version, buf_sink, out, e);
}
