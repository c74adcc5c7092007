// SPDX-License-Identifier: MIT
/* fuzz-config: the qemu-ga.conf reader (keyfile + option handling). */
#include "options.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agent_options o = {0};
	struct err e;
	(void)options_load_text(&o, (const char *)data, size, "fuzz", &e);
	options_free(&o);
	return 0;
}
