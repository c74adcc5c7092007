// SPDX-License-Identifier: MIT
/* hold: QUIESCE_FAULT_HOLD_AT gates for tests (see hold.h). */
#include "hold.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void hold_at(const char *step, volatile sig_atomic_t *stop)
{
	const char *list = getenv("QUIESCE_FAULT_HOLD_AT");
	size_t klen = strlen(step);
	for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len <= klen + 1 || p[klen] != ':' || strncmp(p, step, klen) != 0)
			continue;
		char gate[4096], reached[4200];
		snprintf(gate, sizeof(gate), "%.*s", (int)(len - klen - 1), p + klen + 1);
		snprintf(reached, sizeof(reached), "%s.reached", gate);
		int fd = open(reached, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd >= 0)
			close(fd);
		/* polling is fine here: this is the program under test waiting for its test */
		while (access(gate, F_OK) != 0 && !(stop && *stop))
			nanosleep(&(struct timespec){0, 2 * 1000 * 1000}, NULL);
		return;
	}
}
