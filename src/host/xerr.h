/* SPDX-License-Identifier: MIT */
/*
 * xerr: errors that know their exit code (docs/repository.md, Exit codes).
 *
 * The host CLI promises a distinct exit code per kind of failure, decided
 * where the failure is understood — deep in a write path, ENOSPC is "no
 * space", not "I/O error".  So a struct err's code is, here, the exit code
 * (positive), and the message is the one line the user sees.
 */
#ifndef QUIESCE_XERR_H
#define QUIESCE_XERR_H

#include "err.h"

enum {
	QX_OK = 0,
	QX_FAIL = 1,
	QX_USAGE = 2,
	QX_REPO = 3,
	QX_SOURCE = 4,
	QX_DAMAGED = 5,
	QX_NOSPC = 6,
	QX_LOCKED = 7,
	QX_NOSNAP = 8,
	QX_CONSISTENCY = 9, /* --consistency require-app could not be met */
	QX_INTR = 130,
};

/* Returns -exit, for `return xerr(...)` from functions that return <0 on error. */
int xerr(struct err *e, int exit, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same, with strerror(errnum) appended; ENOSPC/EDQUOT become QX_NOSPC. */
int xerr_sys(struct err *e, int exit, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
