/* SPDX-License-Identifier: MIT */
/*
 * freeze: filesystem freeze and thaw with the fsfreeze hook, and every
 * guarantee that keeps a guest from being stranded frozen.
 *
 * Semantics are qemu-ga's (freeze hook, then FIFREEZE in reverse mount
 * order, EOPNOTSUPP/EBUSY skipped, any other error undoes the freeze; thaw
 * in mount order with FITHAW until it fails), plus:
 * - the thaw hook follows every freeze hook exactly once: after a failed or
 *   timed-out freeze hook, a failed freeze, a freeze of nothing, a thaw, the
 *   watchdog, or agent shutdown; and never when no freeze hook ran;
 * - a watchdog thaws by itself if no thaw comes in time after freezing;
 * - hooks have a timeout; a hook (or a directory on its way) must not be
 *   writable by others, and the file checked is the file that runs;
 * - the thaw needs no memory, mount table or new fd for what we froze, and
 *   a thaw that fails is retried by the watchdog;
 * - freeze-list rejects paths that are not mount points, before any hook;
 * - nothing is written to guest filesystems while frozen (log is held).
 * The marker file (qemu-ga's name, so either agent recognises it) exists
 * from before the freeze hook until after the thaw; an agent restarted
 * while it exists starts frozen and owes the thaw hook.
 */
#ifndef QUIESCE_FREEZE_H
#define QUIESCE_FREEZE_H

#include "err.h"
#include "hook.h"
#include "strlist.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct json_object;

/* The kernel calls, replaceable by tests. */
struct freeze_ops {
	int (*freeze)(int fd); /* 0 or -errno */
	int (*thaw)(int fd);
};
extern const struct freeze_ops freeze_ops_ioctl;

#define FREEZE_MAX_HOOK_RUNS 4

struct freeze_hook_run {
	const char *action; /* "freeze" / "thaw" */
	int64_t started_ns; /* CLOCK_REALTIME */
	double seconds;
	int exit_status;    /* -1 if killed by a signal or timed out */
	bool timed_out;
};

/* What happened to the last freeze, for hosts that ask afterwards. */
struct freeze_report {
	int64_t frozen_ns, thawed_ns; /* CLOCK_REALTIME; 0 = not (yet) */
	int filesystems;
	int last_thaw;                /* filesystems the latest thaw call thawed (any caller);
				       * -1: none yet.  A host that reads it right after its own
				       * thaw learns the count even when the thaw hook failed and
				       * the thaw itself answered with that error */
	bool auto_thawed;             /* the watchdog thawed, not the host */
	bool recovered;               /* frozen by an earlier agent instance */
	struct freeze_hook_run hooks[FREEZE_MAX_HOOK_RUNS];
	int nhooks;
};

/* A filesystem to thaw: the fd FIFREEZE was issued on (or, restarted
 * frozen, opened at start), kept so the thaw needs no mount table. */
struct freeze_target {
	int fd;    /* -1: done */
	dev_t dev; /* st_dev of its root: what the thaw's sweep skips */
	char *dir; /* mount point, for messages */
};

struct freezer {
	/* configuration, set before freezer_start() */
	const char *hook;        /* NULL: no hook */
	int hook_timeout_ms;
	int watchdog_ms;         /* 0: no watchdog */
	const char *statedir;
	const char *mountinfo;   /* normally /proc/self/mountinfo */
	const struct freeze_ops *ops;
	/* state */
	bool frozen;
	bool thaw_hook_owed;
	struct freeze_target *held; /* what to thaw, in mount order */
	size_t nheld;
	bool hold_complete;         /* held covers every filesystem that may be frozen */
	int timerfd;
	struct hook_pipe pipe;      /* hook output; outlives each hook run */
	const char *last_action;    /* of the last hook run, for its late output */
	size_t late_bytes;          /* read from the pipe since that run */
	struct freeze_report report;
};

#define FREEZE_DEFAULT_HOOK_TIMEOUT_MS (60 * 1000)
#define FREEZE_DEFAULT_WATCHDOG_MS (30 * 1000)

/* Defaults for everything; call before setting configuration. */
void freezer_init(struct freezer *f);
/* Look for a marker left by an earlier instance, create the watchdog
 * timer.  A leftover marker means "frozen": the watchdog is armed. */
int freezer_start(struct freezer *f, struct err *e);
void freezer_done(struct freezer *f);

/* Freeze all filesystems (mountpoints NULL) or the listed mount points (an
 * empty list freezes nothing and runs no hook).  Returns the number frozen,
 * or a negative errno with e set. */
int freezer_freeze(struct freezer *f, const struct strlist *mountpoints, struct err *e);
/* Thaw everything; returns the number thawed.  A failed thaw hook is an
 * error (as in qemu-ga) although the filesystems are thawed.  If a
 * filesystem we froze stays frozen, so does the freezer (status "frozen"),
 * and the watchdog is re-armed to try again within a second.  Thawing
 * what this agent froze allocates nothing and opens nothing. */
int freezer_thaw(struct freezer *f, struct err *e);
/* The watchdog timer fd for the event loop, and what to do when it fires. */
int freezer_timer_fd(const struct freezer *f);
void freezer_watchdog_fired(struct freezer *f);
/* The hook output pipe for the event loop (-1: none yet), and what to do
 * when it is readable: log what background children of a hook wrote after
 * it returned (at most 64 KiB per wake-up, HOOK_OUTPUT_MAX per hook run). */
int freezer_output_fd(const struct freezer *f);
void freezer_output_ready(struct freezer *f);
/* Agent exit: thaw if frozen, run an owed thaw hook. */
void freezer_shutdown(struct freezer *f);

/* The report as a JSON object (for the quiesce-freeze-report command). */
struct json_object *freezer_report_json(const struct freezer *f);

#endif
