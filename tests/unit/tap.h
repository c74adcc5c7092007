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

/* A test point's description is one line: control characters (the
 * newlines of a reply, say) become spaces, and a huge one (a test's whole
 * hostile input) is cut, or the TAP reader sees lines that are not TAP. */
#define TAP_DESC_MAX 200

__attribute__((format(printf, 2, 3), unused)) static bool ok(bool cond, const char *fmt, ...)
{
	char desc[TAP_DESC_MAX + 4];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(desc, TAP_DESC_MAX + 1, fmt, ap);
	va_end(ap);
	if (n > TAP_DESC_MAX)
		strcpy(desc + TAP_DESC_MAX, "...");
	for (char *p = desc; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	printf("%s %d - %s\n", cond ? "ok" : "not ok", ++tap_n, desc);
	if (!cond)
		tap_failed++;
	return cond;
}

/* Compare strings; on mismatch show both. */
__attribute__((unused)) static bool is_str(const char *got, const char *want, const char *name)
{
	bool same = got && want && !strcmp(got, want);
	ok(same, "%s", name);
	if (!same) /* (a multi-line reply shows its later lines untagged: fine for a failure) */
		printf("#   got:  %.2000s\n#   want: %.2000s\n", got ? got : "(null)", want ? want : "(null)");
	return same;
}

__attribute__((unused)) static int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
