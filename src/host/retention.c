// SPDX-License-Identifier: MIT
/* retention: keep-last/daily/weekly/monthly (see retention.h). */
#include "retention.h"

enum period { LAST, DAY, WEEK, MONTH };

static long bucket(time_t t, enum period p, size_t i)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	switch (p) {
	case DAY:
		return (long)(tm.tm_year + 1900) * 1000 + tm.tm_yday;
	case WEEK: {
		char buf[16];
		strftime(buf, sizeof(buf), "%G%V", &tm); /* ISO 8601 week-based year and week */
		long v = 0;
		for (const char *c = buf; *c; c++)
			v = v * 10 + (*c - '0');
		return v;
	}
	case MONTH:
		return (long)(tm.tm_year + 1900) * 100 + tm.tm_mon;
	case LAST:
	default:
		return (long)i; /* every snapshot its own bucket */
	}
}

void retention_apply(const time_t *t, size_t n, const struct keep_rules *k, bool *keep)
{
	const long counts[] = {k->last, k->daily, k->weekly, k->monthly};
	for (size_t i = 0; i < n; i++)
		keep[i] = false;
	for (int p = LAST; p <= MONTH; p++) {
		long left = counts[p];
		bool have = false;
		long last = 0;
		for (size_t i = 0; i < n && left > 0; i++) {
			long b = bucket(t[i], (enum period)p, i);
			if (have && b == last)
				continue;
			keep[i] = true; /* the newest in a new bucket */
			have = true;
			last = b;
			left--;
		}
	}
}
