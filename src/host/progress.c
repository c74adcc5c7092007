// SPDX-License-Identifier: MIT
/* progress: a terminal progress line (see progress.h). */
#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double progress_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void progress_start(struct progress *p, const char *what, uint64_t total, bool allowed)
{
	p->on = allowed && isatty(STDERR_FILENO);
	p->what = what;
	p->total = total;
	atomic_store(&p->done, 0);
	p->start = p->last = progress_now();
}

static void human(char *out, size_t n, double v)
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	int i = 0;
	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	snprintf(out, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

void progress_draw(struct progress *p)
{
	if (!p->on)
		return;
	double now = progress_now();
	if (now - p->last < 0.25)
		return;
	p->last = now;
	uint64_t done = atomic_load(&p->done);
	double secs = now - p->start, rate = secs > 0 ? (double)done / secs : 0;
	char d[32], t[32], r[32], eta[32] = "--:--";
	human(d, sizeof(d), (double)done);
	human(t, sizeof(t), (double)p->total);
	human(r, sizeof(r), rate);
	if (rate > 0 && p->total > done) {
		long left = (long)((double)(p->total - done) / rate);
		snprintf(eta, sizeof(eta), "%ld:%02ld:%02ld", left / 3600, left / 60 % 60, left % 60);
	}
	fprintf(stderr, "\r\033[K%s: %s / %s (%.0f%%)  %s/s  ETA %s", p->what, d, t,
		p->total ? 100.0 * (double)done / (double)p->total : 100.0, r, eta);
	fflush(stderr);
}

void progress_end(struct progress *p)
{
	if (p->on) {
		fprintf(stderr, "\r\033[K");
		fflush(stderr);
	}
}
