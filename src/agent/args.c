// SPDX-License-Identifier: MIT
/*
 * args: command argument checking with qemu-ga's (QAPI input visitor's)
 * rules and error texts.
 *
 * Order matters because only the first error is reported: members are
 * visited in schema order (missing, then wrong type, element by element for
 * lists), and only then are leftover members reported as unexpected.
 *
 * Which leftover is named depends on how QEMU's input visitor stores the
 * keys: in a GLib GHashTable, filled in QDict order, iterated by slot.  We
 * rebuild that table's slot order (g_str_hash, index (h * 11) mod a prime,
 * quadratic probing, growth by rehashing) so the same key is named.
 */
#include "rpc.h"

#include "jstream.h"
#include "jwrite.h"
#include "utf8.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

static const char *type_name(enum arg_type t)
{
	switch (t) {
	case ARG_INT: return "integer";
	case ARG_STR: return "string";
	case ARG_BOOL: return "boolean";
	case ARG_STR_LIST: return "array";
	}
	return "value";
}

/* QAPI 'int' takes only numbers that are exact int64 values. */
static bool is_int64(struct json_object *v)
{
	if (!json_object_is_type(v, json_type_int))
		return false;
	return json_object_get_int64(v) != INT64_MAX || json_object_get_uint64(v) == INT64_MAX;
}

static bool type_ok(enum arg_type t, struct json_object *v)
{
	switch (t) {
	case ARG_INT: return is_int64(v);
	case ARG_STR: return json_object_is_type(v, json_type_string);
	case ARG_BOOL: return json_object_is_type(v, json_type_boolean);
	case ARG_STR_LIST: return json_object_is_type(v, json_type_array);
	}
	return false;
}

static bool in_spec(const struct arg_spec *spec, const char *key)
{
	for (; spec && spec->name; spec++)
		if (!strcmp(spec->name, key))
			return true;
	return false;
}

/* GLib's g_str_hash: djb2 over *signed* chars. */
static uint32_t g_str_hash_compat(const char *k)
{
	uint32_t h = 5381;
	for (const signed char *p = (const signed char *)k; *p; p++)
		h = (h << 5) + h + (uint32_t)(int32_t)*p;
	return h < 2 ? 2 : h; /* 0 and 1 mark unused and deleted slots */
}

/* A model of GLib's GHashTable (2.74) as QEMU's visitor uses it: a set of
 * strings filled by g_hash_table_add(), never shrunk.  Only the slot order
 * matters, so only hashes and keys are kept.
 *
 * g_str_hash is unseeded, so a client can send keys that all hash alike
 * ("aB" and "b!" do, and so does every string of such pairs): each insert
 * then probes past all the earlier ones, and 500k keys cost qemu-ga (and
 * this model) minutes.  Real inputs need a few probes per key, so the model
 * gets a budget of probe steps; past it, ghash_order() gives up and the
 * caller names keys in QDict order instead (docs/compat.md). */
struct gtable {
	unsigned shift, mod;
	size_t size, nnodes, noccupied;
	size_t budget;    /* probe steps left */
	uint32_t *hashes; /* 0 unused, >= 2 a key's hash */
	const char **keys;
};

/* Probe steps allowed.  Keys without engineered collisions need fewer than
 * 10 per key, rehashes included (measured: 2..500k random, sequential and
 * short hex keys); the base lets up to about 1800 keys that all collide
 * still come out in GLib's order, and running it out costs milliseconds. */
#define PROBE_BUDGET_BASE (1u << 22)
#define PROBE_BUDGET_PER_KEY 32u

static const unsigned prime_mod[] = {1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093,
				     8191, 16381, 32749, 65521, 131071, 262139, 524287, 1048573,
				     2097143, 4194301, 8388593, 16777213, 33554393, 67108859};

static size_t to_index(const struct gtable *t, uint32_t h)
{
	return (size_t)((h * 11u) % t->mod); /* GLib multiplies by a small prime first */
}

static int gtable_set_shift(struct gtable *t, size_t want)
{
	unsigned shift = 0;
	while (want) {
		want >>= 1;
		shift++;
	}
	if (shift < 3)
		shift = 3;
	if (shift >= sizeof(prime_mod) / sizeof(prime_mod[0]))
		return -1;
	size_t old = t->size, size = (size_t)1 << shift;
	uint32_t *h = realloc(t->hashes, size * sizeof(*h));
	if (h)
		t->hashes = h;
	const char **k = realloc(t->keys, size * sizeof(*k));
	if (k)
		t->keys = k;
	if (!h || !k)
		return -1;
	memset(t->hashes + old, 0, (size - old) * sizeof(*h));
	t->shift = shift;
	t->mod = prime_mod[shift];
	t->size = size;
	return 0;
}

/* One probe step; false when the budget is spent. */
static bool probe(struct gtable *t)
{
	if (!t->budget)
		return false;
	t->budget--;
	return true;
}

/* GLib's in-place rehash: walk the old slots in order; put each entry at
 * its new home, evicting (and then placing) whatever sat there, unless that
 * slot was already assigned in this pass. */
static int gtable_grow(struct gtable *t)
{
	size_t old = t->size;
	if (gtable_set_shift(t, (size_t)(t->nnodes * 1.333)) < 0)
		return -1;
	unsigned char *done = calloc(t->size, 1);
	if (!done)
		return -1;
	size_t mask = t->size - 1;
	int r = 0;
	for (size_t i = 0; i < old && r == 0; i++) {
		uint32_t h = t->hashes[i];
		if (h < 2 || done[i])
			continue;
		t->hashes[i] = 0;
		const char *key = t->keys[i];
		for (;;) {
			size_t idx = to_index(t, h), step = 0;
			while (done[idx] && probe(t))
				idx = (idx + ++step) & mask;
			if (done[idx]) {
				r = -1; /* out of budget */
				break;
			}
			done[idx] = 1;
			uint32_t evicted = t->hashes[idx];
			const char *ekey = t->keys[idx];
			t->hashes[idx] = h;
			t->keys[idx] = key;
			if (evicted < 2)
				break;
			h = evicted;
			key = ekey;
		}
	}
	free(done);
	t->noccupied = t->nnodes;
	return r;
}

static int gtable_add(struct gtable *t, const char *key)
{
	uint32_t h = g_str_hash_compat(key);
	size_t idx = to_index(t, h), mask = t->size - 1;
	for (size_t step = 0; t->hashes[idx]; idx = (idx + ++step) & mask)
		if (!probe(t))
			return -1;
	t->hashes[idx] = h;
	t->keys[idx] = key;
	t->nnodes++;
	t->noccupied++;
	if (t->size <= t->noccupied + t->noccupied / 16)
		return gtable_grow(t);
	return 0;
}

/* The keys (in insertion order) in the slot order of such a table, into out
 * (room for n).  -1 if the probe budget ran out or memory did. */
static int ghash_order(const char **keys, size_t n, const char **out)
{
	struct gtable t = {.budget = PROBE_BUDGET_BASE + PROBE_BUDGET_PER_KEY * n};
	int r = gtable_set_shift(&t, 0);
	for (size_t i = 0; i < n && r == 0; i++)
		r = gtable_add(&t, keys[i]);
	size_t k = 0;
	for (size_t i = 0; r == 0 && i < t.size; i++)
		if (t.hashes[i] >= 2)
			out[k++] = t.keys[i];
	free(t.hashes);
	free(t.keys);
	return r;
}

/* "Parameter 'K' is unexpected", quoting at most JSTREAM_QUOTE_MAX bytes of K. */
static int unexpected(struct err *e, const char *key)
{
	size_t len = strlen(key), n = utf8_prefix((const uint8_t *)key, len, JSTREAM_QUOTE_MAX);
	return err_set(e, -EINVAL, "Parameter '%.*s%s' is unexpected", (int)n, key,
		       n < len ? "..." : "");
}

int args_check(const struct arg_spec *spec, struct json_object *args, struct err *e)
{
	for (const struct arg_spec *s = spec; s && s->name; s++) {
		struct json_object *v;
		if (!json_object_object_get_ex(args, s->name, &v)) {
			if (s->optional)
				continue;
			return err_set(e, -EINVAL, "Parameter '%s' is missing", s->name);
		}
		if (!type_ok(s->type, v))
			return err_set(e, -EINVAL, "Invalid parameter type for '%s', expected: %s",
				       s->name, type_name(s->type));
		if (s->type == ARG_STR_LIST) {
			size_t n = json_object_array_length(v);
			for (size_t i = 0; i < n; i++)
				if (!json_object_is_type(json_object_array_get_idx(v, i),
							 json_type_string))
					return err_set(e, -EINVAL,
						       "Invalid parameter type for '%s[%zu]', expected: string",
						       s->name, i);
		}
	}
	/* Leftovers.  Mostly there are none, or one, and no order is needed;
	 * only with several does it matter which the visitor's hash table
	 * (filled in QDict order) yields first. */
	size_t extra = 0;
	const char *first = NULL;
	json_object_object_foreach(args, key, val)
	{
		(void)val;
		if (!in_spec(spec, key) && !extra++)
			first = key;
	}
	if (extra == 0)
		return 0;
	if (extra == 1)
		return unexpected(e, first);
	size_t n;
	const char **keys = jwrite_qdict_keys(args, &n);
	const char **order = n ? calloc(n, sizeof(*order)) : NULL;
	if (!order || ghash_order(keys, n, order) < 0) {
		free(order);
		order = NULL; /* QDict order, then */
	}
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		const char *k = order ? order[i] : keys[i];
		if (!in_spec(spec, k))
			r = unexpected(e, k);
	}
	free(order);
	free(keys);
	if (r == 0) /* keys lost to an allocation failure: still an error */
		r = unexpected(e, first);
	return r;
}
