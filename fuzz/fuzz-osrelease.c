// SPDX-License-Identifier: MIT
/* fuzz-osrelease: the os-release reader (a file any guest admin can edit). */
#include "osrelease.h"

#include <json-c/json.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_object *o = json_object_new_object();
	osrelease_parse((const char *)data, size, o);
	json_object_put(o);
	return 0;
}
