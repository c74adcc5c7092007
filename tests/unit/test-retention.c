// SPDX-License-Identifier: MIT
/* Unit tests for retention: keep-last/daily/weekly/monthly on known dates. */
#include "retention.h"
#include "tap.h"

#include <string.h>

static time_t at(int y, int mo, int d, int h)
{
	struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h};
	return timegm(&tm);
}

static int kept(const bool *k, size_t n, char *out)
{
	int c = 0;
	for (size_t i = 0; i < n; i++) {
		out[i] = k[i] ? 'K' : '.';
		c += k[i];
	}
	out[n] = 0;
	return c;
}

int main(void)
{
	/* newest first: two a day on 2026-11-23 (Mon) .. 2026-11-16 (Mon), then monthly back */
	time_t t[] = {
		at(2026, 11, 23, 18), at(2026, 11, 23, 6), at(2026, 11, 22, 18), at(2026, 11, 22, 6),
		at(2026, 11, 21, 12), at(2026, 11, 17, 12), at(2026, 11, 16, 12), at(2026, 11, 9, 12),
		at(2026, 10, 31, 12), at(2026, 10, 1, 12), at(2026, 9, 15, 12), at(2025, 12, 31, 23),
	};
	size_t n = sizeof(t) / sizeof(t[0]);
	bool keep[sizeof(t) / sizeof(t[0])];
	char s[32];

	retention_apply(t, n, &(struct keep_rules){.last = 3}, keep);
	kept(keep, n, s);
	is_str(s, "KKK.........", "keep-last 3: the three newest");

	retention_apply(t, n, &(struct keep_rules){.daily = 3}, keep);
	kept(keep, n, s);
	is_str(s, "K.K.K.......", "keep-daily 3: the newest of each of the 3 newest days");

	retention_apply(t, n, &(struct keep_rules){.weekly = 3}, keep);
	kept(keep, n, s);
	/* ISO weeks: 23 Nov is week 48; 22,21,17,16 are week 47; 9 Nov week 46 */
	is_str(s, "K.K....K....", "keep-weekly 3: ISO weeks (Sunday 22 Nov belongs to the week of Monday 16)");

	retention_apply(t, n, &(struct keep_rules){.monthly = 4}, keep);
	kept(keep, n, s);
	is_str(s, "K.......K.KK", "keep-monthly 4: the newest of Nov, Oct, Sep and Dec 2025");

	retention_apply(t, n, &(struct keep_rules){.last = 1, .monthly = 2}, keep);
	kept(keep, n, s);
	is_str(s, "K.......K...", "rules combine: kept by any rule is kept");

	retention_apply(t, n, &(struct keep_rules){.daily = 100}, keep);
	ok(kept(keep, n, s) == 10, "more periods asked than exist: one per day that has a snapshot (%s)", s);

	retention_apply(t, 0, &(struct keep_rules){.last = 2}, keep);
	ok(1, "no snapshots: nothing to do");

	retention_apply(t, n, &(struct keep_rules){0}, keep);
	ok(kept(keep, n, s) == 0 && !keep_rules_any(&(struct keep_rules){0}), "no rule keeps nothing, and says so");
	return tap_done();
}
