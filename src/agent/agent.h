/* SPDX-License-Identifier: MIT */
/*
 * agent: the state every command handler may see.  Handlers get a
 * `struct agent *` (never a global), so tests can build one directly.
 */
#ifndef QUIESCE_AGENT_H
#define QUIESCE_AGENT_H

#include "freeze.h"
#include "strlist.h"

#include <stdbool.h>

struct agent {
	struct strlist blocked; /* --block-rpcs */
	struct strlist allowed; /* --allow-rpcs; empty = all */
	struct freezer freezer; /* freeze state, hook, watchdog */
	bool delimit_next;      /* guest-sync-delimited: prefix the next reply with 0xFF */
	const char *os_release; /* path override for guest-get-osinfo (QGA_OS_RELEASE) */
	const char *shutdown_path; /* /sbin/shutdown, replaceable by tests */
};

static inline bool agent_is_frozen(const struct agent *a)
{
	return a->freezer.frozen;
}

#endif
