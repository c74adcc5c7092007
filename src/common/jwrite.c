// SPDX-License-Identifier: MIT
/*
 * jwrite: QEMU-style JSON text from json-c values (see jwrite.h).
 *
 * json-c's own serialiser would do for a client that parses, but qemu-ga's
 * peers include line-based readers and tools that compare text, so we
 * reproduce its spacing, escaping and even its member order exactly.
 *
 * qemu-ga keeps objects in a QDict: 512 hash buckets walked in order, the
 * newest entry first within a bucket, with the tdb hash of the key.  No
 * client may rely on that order, but reproducing it costs a sort per
 * object and makes our replies byte-identical to qemu-ga's, which lets the
 * conformance suite compare bytes instead of trusting a normaliser.  For
 * ties to come out right, values must be built with members inserted in
 * QAPI schema order (or, for echoed input, in input order, as json-c does).
 *
 * Recursion depth is bounded by the parser's nesting limit for echoed
 * values and by our own code for results.
 */
#include "jwrite.h"

#include "utf8.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int jwrite_string(struct buf *b, const char *s, size_t len)
{
	const uint8_t *p = (const uint8_t *)s;
	int r = buf_reserve(b, len + 2);
	if (r < 0)
		return r;
	buf_putc(b, '"');
	for (size_t i = 0; i < len && r == 0;) {
		size_t used;
		int32_t cp = utf8_decode(p + i, len - i, &used);
		i += used;
		char esc[16];
		switch (cp) {
		case '"': r = buf_puts(b, "\\\""); break;
		case '\\': r = buf_puts(b, "\\\\"); break;
		case '\b': r = buf_puts(b, "\\b"); break;
		case '\f': r = buf_puts(b, "\\f"); break;
		case '\n': r = buf_puts(b, "\\n"); break;
		case '\r': r = buf_puts(b, "\\r"); break;
		case '\t': r = buf_puts(b, "\\t"); break;
		default:
			if (cp < 0) {
				r = buf_puts(b, "\\uFFFD");
			} else if (cp >= 0x20 && cp < 0x7F) {
				r = buf_putc(b, (char)cp);
			} else if (cp > 0xFFFF) {
				unsigned v = (unsigned)cp - 0x10000;
				snprintf(esc, sizeof(esc), "\\u%04X\\u%04X", 0xD800 + (v >> 10),
					 0xDC00 + (v & 0x3FF));
				r = buf_puts(b, esc);
			} else {
				snprintf(esc, sizeof(esc), "\\u%04X", (unsigned)cp);
				r = buf_puts(b, esc);
			}
		}
	}
	return r ? r : buf_putc(b, '"');
}

static int write_int(struct buf *b, struct json_object *o)
{
	int64_t v = json_object_get_int64(o);
	/* json-c saturates uint64 values above INT64_MAX when read as int64 */
	if (v == INT64_MAX)
		return buf_printf(b, "%" PRIu64, json_object_get_uint64(o));
	return buf_printf(b, "%" PRId64, v);
}

/* QDict's bucket for a key (the tdb hash, modulo 512). */
static unsigned qdict_bucket(const char *key)
{
	size_t len = strlen(key);
	uint32_t v = 0x238F13AFu * (uint32_t)len;
	for (size_t i = 0; i < len; i++)
		v += (uint32_t)(uint8_t)key[i] << ((i * 5) % 24);
	return (1103515243u * v + 12345u) % 512u;
}

struct member {
	const char *key;
	struct json_object *val;
	unsigned bucket;
	size_t idx;
};

static int member_cmp(const void *pa, const void *pb)
{
	const struct member *a = pa, *b = pb;
	if (a->bucket != b->bucket)
		return a->bucket < b->bucket ? -1 : 1;
	return a->idx > b->idx ? -1 : 1; /* newest first */
}

/* Members of o in QDict order; NULL on allocation failure or when empty. */
static struct member *qdict_members(struct json_object *o, size_t *n)
{
	*n = (size_t)json_object_object_length(o);
	struct member *m = *n ? calloc(*n, sizeof(*m)) : NULL;
	if (!m)
		return NULL;
	size_t i = 0;
	json_object_object_foreach(o, key, val)
	{
		m[i] = (struct member){key, val, qdict_bucket(key), i};
		i++;
	}
	qsort(m, *n, sizeof(*m), member_cmp);
	return m;
}

const char **jwrite_qdict_keys(struct json_object *o, size_t *n)
{
	struct member *m = qdict_members(o, n);
	const char **keys = m ? calloc(*n, sizeof(*keys)) : NULL;
	for (size_t i = 0; keys && i < *n; i++)
		keys[i] = m[i].key;
	free(m);
	if (!keys)
		*n = 0;
	return keys;
}

static int write_object(struct buf *b, struct json_object *o)
{
	size_t n;
	if (json_object_object_length(o) == 0)
		return buf_puts(b, "{}");
	struct member *m = qdict_members(o, &n);
	if (!m)
		return -ENOMEM;
	int r = 0;
	for (size_t i = 0; i < n && !r; i++) {
		r = buf_puts(b, i ? ", " : "{");
		if (!r)
			r = jwrite_string(b, m[i].key, strlen(m[i].key));
		if (!r)
			r = buf_puts(b, ": ");
		if (!r)
			r = jwrite(b, m[i].val);
	}
	free(m);
	return r ? r : buf_putc(b, '}');
}

int jwrite(struct buf *b, struct json_object *o)
{
	int r = 0;
	switch (json_object_get_type(o)) {
	case json_type_null:
		return buf_puts(b, "null");
	case json_type_boolean:
		return buf_puts(b, json_object_get_boolean(o) ? "true" : "false");
	case json_type_int:
		return write_int(b, o);
	case json_type_double:
		return buf_printf(b, "%.17g", json_object_get_double(o));
	case json_type_string:
		return jwrite_string(b, json_object_get_string(o),
				     (size_t)json_object_get_string_len(o));
	case json_type_object:
		return write_object(b, o);
	case json_type_array: {
		size_t n = json_object_array_length(o);
		if (n == 0)
			return buf_puts(b, "[]");
		for (size_t i = 0; i < n && !r; i++) {
			r = buf_puts(b, i ? ", " : "[");
			if (!r)
				r = jwrite(b, json_object_array_get_idx(o, i));
		}
		return r ? r : buf_putc(b, ']');
	}
	}
	return -EINVAL;
}
