// SPDX-License-Identifier: MIT
/* fault: SIGKILL after the N-th durable step, for tests (see fault.h). */
#include "fault.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
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
