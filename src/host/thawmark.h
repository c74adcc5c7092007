/* SPDX-License-Identifier: MIT */
/*
 * thawmark: a file on the host saying "this guest may be frozen by us",
 * written (and fsynced) before every freeze and removed once a thaw is
 * confirmed.  If quiesce dies inside the frozen window, the next run
 * against that guest agent — or `quiesce thaw` — finds it and thaws first.
 * That is what protects guests running the stock qemu-ga, which has no
 * watchdog of its own.  Kept in $QUIESCE_STATE_DIR (default
 * /var/lib/quiesce), one per agent socket.
 */
#ifndef QUIESCE_THAWMARK_H
#define QUIESCE_THAWMARK_H

#include "err.h"

#include <limits.h>
#include <stdbool.h>

struct thawmark {
	char path[PATH_MAX];
};

int thawmark_init(struct thawmark *m, const char *qga, struct err *e);
int thawmark_write(const struct thawmark *m, const char *qga, const char *vm, struct err *e);
/* The marker's text, if it exists (for the message), else NULL. */
char *thawmark_read(const struct thawmark *m);
void thawmark_remove(const struct thawmark *m);

/* One backup per VM at a time: an flock on a file in the state directory
 * named after the QMP socket.  Returns the fd (keep it open), or -QX_LOCKED. */
int vmlock_take(const char *qmp, struct err *e);

#endif
