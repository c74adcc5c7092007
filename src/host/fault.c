// SPDX-License-Identifier: MIT
/* fault: crash and timing injection for tests (see fault.h). */
#include "fault.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_long remaining; /* 0: off */

void fault_init(void)
{
	const char *s = getenv("QUIESCE_FAULT_KILL_AFTER");
	long n = s ? strtol(s, NULL, 10) : 0;
	atomic_store(&remaining, n > 0 ? n : 0);
}

void fault_point(void)
{
	if (atomic_load_explicit(&remaining, memory_order_relaxed) == 0)
		return;
	if (atomic_fetch_sub(&remaining, 1) == 1)
		kill(getpid(), SIGKILL);
}

/* The value after "key:" in a comma-separated list of key:value, copied
 * into out; false if the list does not name key. */
static bool list_lookup(const char *list, const char *key, char *out, size_t outsz)
{
	size_t klen = strlen(key);
	for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len > klen && p[klen] == ':' && !strncmp(p, key, klen)) {
			snprintf(out, outsz, "%.*s", (int)(len - klen - 1), p + klen + 1);
			return true;
		}
		if (len == klen && !strncmp(p, key, klen)) {
			if (outsz)
				out[0] = '\0';
			return true;
		}
	}
	return false;
}

void fault_hold(const char *step, volatile sig_atomic_t *stop)
{
	char gate[4096], reached[4200];
	if (!list_lookup(getenv("QUIESCE_FAULT_HOLD_AT"), step, gate, sizeof(gate)) || !gate[0])
		return;
	snprintf(reached, sizeof(reached), "%s.reached", gate);
	int fd = open(reached, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
	/* polling is fine here: this is the tested program waiting for its test */
	while (access(gate, F_OK) != 0 && !(stop && *stop))
		nanosleep(&(struct timespec){0, 5 * 1000 * 1000}, NULL);
}

bool fault_lose_reply(const char *cmd)
{
	char unused[1];
	return list_lookup(getenv("QUIESCE_FAULT_LOSE_REPLY"), cmd, unused, 0);
}

bool fault_skip(const char *what)
{
	char unused[1];
	return list_lookup(getenv("QUIESCE_FAULT_SKIP"), what, unused, 0);
}
