// SPDX-License-Identifier: MIT
/* xerr: exit-coded errors (see xerr.h). */
#include "xerr.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int xerr(struct err *e, int exit, const char *fmt, ...)
{
	if (e && !e->code) { /* the first, most specific, message wins */
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
		e->code = exit;
	}
	return -exit;
}

int xerr_sys(struct err *e, int exit, int errnum, const char *fmt, ...)
{
	if (errnum == ENOSPC || errnum == EDQUOT)
		exit = QX_NOSPC;
	if (e && !e->code) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < sizeof(e->msg))
			snprintf(e->msg + n, sizeof(e->msg) - (size_t)n, ": %s", strerror(errnum));
		e->code = exit;
	}
	return -exit;
}
