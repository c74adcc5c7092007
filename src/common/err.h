/* SPDX-License-Identifier: MIT */
/*
 * A small error record: a negative errno plus a sentence for humans.
 *
 * It never allocates, so it works on the error path under memory pressure
 * and while guest filesystems are frozen.  Functions that can fail return
 * a negative errno and optionally fill a `struct err *` that may be NULL.
 */
#ifndef QUIESCE_ERR_H
#define QUIESCE_ERR_H

struct err {
	int code;      /* negative errno; 0 = no error */
	char msg[512]; /* full sentence with context, no trailing newline */
};

/* Fills e (may be NULL) and returns code, so callers can write
 * "return err_set(e, -EINVAL, ...)".  A message that does not fit is cut. */
int err_set(struct err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Same, appending ": strerror(-code)". */
int err_sys(struct err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static inline void err_clear(struct err *e)
{
	if (e) {
		e->code = 0;
		e->msg[0] = '\0';
	}
}

#endif
