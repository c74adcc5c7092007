/* SPDX-License-Identifier: MIT */
/*
 * progress: one line on a terminal — bytes done of total, rate, ETA —
 * redrawn at most four times a second, erased at the end.  Silent when
 * stderr is not a terminal (scripts, logs, --json) so output stays clean.
 * Workers add bytes from any thread; one thread draws.
 */
#ifndef QUIESCE_PROGRESS_H
#define QUIESCE_PROGRESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct progress {
	bool on;
	const char *what;
	uint64_t total;
	_Atomic uint64_t done;
	double start, last;
};

void progress_start(struct progress *p, const char *what, uint64_t total, bool allowed);
static inline void progress_add(struct progress *p, uint64_t n)
{
	atomic_fetch_add_explicit(&p->done, n, memory_order_relaxed);
}
void progress_draw(struct progress *p);
void progress_end(struct progress *p);
double progress_now(void);

#endif
