/* SPDX-License-Identifier: MIT */
/*
 * thawmark: what the host keeps per VM in the state directory
 * ($QUIESCE_STATE_DIR, default /var/lib/quiesce), all named after one
 * identity of the VM (struct vmkey):
 *
 *   vm-<key>.lock   one backup (or `quiesce thaw`) of the VM at a time: an
 *                   flock, held for the whole run; the file holds the
 *                   holder's pid for the "locked" message;
 *   frozen-<key>    "this guest may be frozen by us": written (and fsynced)
 *                   before every freeze, removed once a thaw is confirmed.
 *                   If quiesce dies inside the frozen window, the next run
 *                   against the VM — or `quiesce thaw` — finds it and thaws
 *                   first.  That is what protects guests running the stock
 *                   qemu-ga, which has no watchdog of its own.
 *
 * The identity comes from QEMU (vm-backup.c decides what it is); the
 * marker records the agent socket too, so `quiesce thaw --qga` alone finds
 * the VM's marker, and with it its lock.
 */
#ifndef QUIESCE_THAWMARK_H
#define QUIESCE_THAWMARK_H

#include "err.h"

#include <limits.h>
#include <stdbool.h>

struct vmkey {
	char text[PATH_MAX + 64]; /* what identifies the VM, e.g. "uuid:..." */
	char hex[17];		  /* its SHA-256, shortened: the file names' part */
};

void vmkey_set(struct vmkey *k, const char *text);

struct thawmark {
	char path[PATH_MAX];
};

int thawmark_init(struct thawmark *m, const struct vmkey *k, struct err *e);
/* qmp may be NULL; qga is recorded as its realpath. */
int thawmark_write(const struct thawmark *m, const struct vmkey *k, const char *qmp, const char *qga,
		   const char *vm, struct err *e);
/* The marker's text, if it exists (for messages), else NULL. */
char *thawmark_read(const struct thawmark *m);
void thawmark_remove(const struct thawmark *m);
/* The identity recorded by a marker for agent socket `qga`: 1 and *k set
 * if there is one, 0 if none, <0 on error. */
int thawmark_find_by_agent(const char *qga, struct vmkey *k, struct err *e);

/* Take the VM's lock: the fd (keep it open), or -QX_LOCKED (saying which
 * pid holds it) if another run has it.  `what` names the VM in messages. */
int vmlock_take(const struct vmkey *k, const char *what, struct err *e);

#endif
