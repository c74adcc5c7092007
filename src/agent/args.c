// SPDX-License-Identifier: MIT
/*
 * args: command argument checking with qemu-ga's (QAPI input visitor's)
 * rules and error texts.
 *
 * Order matters because only the first error is reported: members are
 * visited in schema order (missing, then wrong type, element by element for
 * lists), and only then are leftover members reported as unexpected.
 */
#include "rpc.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
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
	json_object_object_foreach(args, key, val)
	{
		(void)val;
		if (!in_spec(spec, key))
			return err_set(e, -EINVAL, "Parameter '%s' is unexpected", key);
	}
	return 0;
}
