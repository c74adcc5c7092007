// SPDX-License-Identifier: MIT
/* fuzz-mountinfo: the mountinfo parser (paths in it are chosen by whoever
 * mounts things, so they are untrusted bytes). */
#include "mounts.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mount_list l;
	if (mounts_parse((const char *)data, size, &l) == 0) {
		mounts_dedup(&l);
		(void)mounts_find(&l, "/");
		mounts_free(&l);
	}
	return 0;
}
