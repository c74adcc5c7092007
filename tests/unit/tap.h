/* SPDX-License-Identifier: MIT */
/*
 * tap.h: the smallest useful TAP producer.  ok() records one test point;
 * tap_done() prints the plan and returns the exit code.  meson reads the
 * output with protocol: 'tap'.
 */
#ifndef QUIESCE_TAP_H
#define QUIESCE_TAP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

__attribute__((format(printf, 2, 3), unused)) static bool ok(bool cond, const char *fmt, ...)
{
	va_list ap;
	printf("%s %d - ", cond ? "ok" : "not ok", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		tap_failed++;
	return cond;
}

/* Compare strings; on mismatch show both. */
__attribute__((unused)) static bool is_str(const char *got, const char *want, const char *name)
{
	bool same = got && want && !strcmp(got, want);
	ok(same, "%s", name);
	if (!same)
		printf("#   got:  %s\n#   want: %s\n", got ? got : "(null)", want ? want : "(null)");
	return same;
}

__attribute__((unused)) static int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
