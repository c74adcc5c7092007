// SPDX-License-Identifier: MIT
/*
 * freeze: the freeze/thaw state machine (see freeze.h for the contract).
 *
 * States: thawed, or frozen.  Orthogonal to that, thaw_hook_owed says a
 * freeze hook ran and its thaw hook has not; every path out of a freeze
 * settles that debt exactly once (settle_hook()).
 *
 * Order of a freeze:
 *   1. validate the freeze list (before anything has an effect; an empty
 *      list ends here: 0);
 *   2. open and check the hook file (the one that runs);
 *   3. write the marker (owes the thaw hook if there is a hook);
 *   4. run the freeze hook (failure: thaw hook, remove marker, error);
 *   5. hold the log, FIFREEZE in reverse mount order, keeping the fds;
 *   6. error: thaw what we froze, release log, thaw hook, error (if that
 *      thaw fails too: stay frozen, the watchdog retries);
 *      nothing frozen: release log, thaw hook, 0;
 *      else arm the watchdog and report the count.
 * A thaw: FITHAW on the kept fds, then on whatever else the mount table
 * lists; then the marker, the log and the thaw hook.  If a kept fs stays
 * frozen, so do we, and the watchdog retries within a second.
 */
#include "freeze.h"

#include "cleanup.h"
#include "hook.h"
#include "log.h"
#include "mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MARKER "qga.state.isfrozen"

static int ioctl_freeze(int fd)
{
	return ioctl(fd, FIFREEZE, 0) < 0 ? -errno : 0;
}

static int ioctl_thaw(int fd)
{
	return ioctl(fd, FITHAW, 0) < 0 ? -errno : 0;
}

const struct freeze_ops freeze_ops_ioctl = {ioctl_freeze, ioctl_thaw};

static int64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void freezer_init(struct freezer *f)
{
	*f = (struct freezer){
		.hook_timeout_ms = FREEZE_DEFAULT_HOOK_TIMEOUT_MS,
		.watchdog_ms = FREEZE_DEFAULT_WATCHDOG_MS,
		.statedir = "/var/run",
		.mountinfo = "/proc/self/mountinfo",
		.ops = &freeze_ops_ioctl,
		.timerfd = -1,
		.pipe = {-1, -1},
		.report = {.last_thaw = -1},
	};
}

/* ---- marker ---------------------------------------------------------- */

static void marker_path(const struct freezer *f, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", f->statedir, MARKER);
}

/* A fresh file, never through what is there already: a symlink (or a hard
 * link) planted at the marker's name must not make us write elsewhere. */
static int marker_write(struct freezer *f, struct err *e)
{
	char path[4096];
	marker_path(f, path, sizeof(path));
	(void)unlink(path);
	_cleanup_close_ int fd =
		open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_sys(e, -errno, "failed to create state file '%s'", path);
	const char *text = f->thaw_hook_owed ? "quiesce-agent\nthaw-hook-owed\n" : "quiesce-agent\n";
	if (write(fd, text, strlen(text)) < 0)
		return err_sys(e, -errno, "failed to write state file '%s'", path);
	return 0;
}

static void marker_remove(struct freezer *f)
{
	char path[4096];
	marker_path(f, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		log_error("cannot remove %s: %s", path, strerror(errno));
}

/* ---- watchdog -------------------------------------------------------- */

static void watchdog_set(struct freezer *f, int ms)
{
	if (f->timerfd < 0)
		return;
	struct itimerspec its = {.it_value = {ms / 1000, (long)(ms % 1000) * 1000000}};
	(void)timerfd_settime(f->timerfd, 0, &its, NULL);
}

int freezer_timer_fd(const struct freezer *f)
{
	return f->timerfd;
}

/* ---- hooks ------------------------------------------------------------ */

static void record_hook(struct freezer *f, const char *action, const struct hook_result *res,
			int64_t started)
{
	struct freeze_report *r = &f->report;
	if (r->nhooks == FREEZE_MAX_HOOK_RUNS)
		return;
	struct freeze_hook_run *h = &r->hooks[r->nhooks++];
	h->action = action;
	h->started_ns = started;
	h->seconds = res ? res->seconds : 0;
	h->timed_out = res && res->timed_out;
	h->exit_status = res && !res->timed_out && WIFEXITED(res->status) ? WEXITSTATUS(res->status)
									 : -1;
}

int freezer_output_fd(const struct freezer *f)
{
	return hook_pipe_fd(&f->pipe);
}

void freezer_output_ready(struct freezer *f)
{
	char buf[16384], prefix[64];
	snprintf(prefix, sizeof(prefix), "fsfreeze hook %s output (background)",
		 f->last_action ? f->last_action : "");
	for (int i = 0; i < 4; i++) { /* 64 KiB per wake-up, like a hook run */
		ssize_t n = hook_pipe_read(&f->pipe, buf, sizeof(buf));
		if (n <= 0)
			return;
		size_t room = f->late_bytes < HOOK_OUTPUT_MAX ? HOOK_OUTPUT_MAX - f->late_bytes : 0;
		size_t keep = (size_t)n < room ? (size_t)n : room;
		if (keep)
			log_text(LOG_LVL_INFO, prefix, buf, keep);
		if (keep < (size_t)n && room)
			log_warn("%s beyond %u bytes is dropped", prefix, HOOK_OUTPUT_MAX);
		f->late_bytes += (size_t)n;
	}
}

/* Run the hook; 0 if it succeeded, else -EIO with qemu-ga's text in e. */
static int run_hook(struct freezer *f, const struct hook_file *hf, const char *action,
		    struct err *e)
{
	struct hook_result res;
	freezer_output_ready(f); /* what came late from the previous run is its own */
	f->last_action = action;
	f->late_bytes = 0;
	int64_t started = realtime_ns();
	int r = hook_run(&f->pipe, hf, action, f->hook_timeout_ms, &res, e);
	if (r < 0) {
		record_hook(f, action, NULL, started);
		return r;
	}
	record_hook(f, action, &res, started);
	char why[128];
	const char *fail = hook_failure(&res, why, sizeof(why));
	if (res.output.len) {
		char prefix[64];
		snprintf(prefix, sizeof(prefix), "fsfreeze hook %s output", action);
		log_text(LOG_LVL_INFO, prefix, res.output.data, res.output.len);
		if (res.truncated)
			log_warn("fsfreeze hook %s: output beyond %u bytes was dropped", action,
				 HOOK_OUTPUT_MAX);
	}
	if (fail)
		log_error("fsfreeze hook %s: %s (%.3f s)", action, fail, res.seconds);
	else
		log_info("fsfreeze hook %s succeeded (%.3f s)", action, res.seconds);
	buf_free(&res.output);
	return fail ? err_set(e, -EIO, "%s", fail) : 0;
}

/* Pay the thaw hook if a freeze hook ran.  Returns its result. */
static int settle_hook(struct freezer *f, struct err *e)
{
	if (!f->thaw_hook_owed)
		return 0;
	f->thaw_hook_owed = false;
	if (!f->hook) { /* owed by an earlier instance that had one */
		log_warn("a thaw hook is owed, but no fsfreeze hook is configured");
		return 0;
	}
	struct hook_file hf;
	int r = hook_open(f->hook, &hf, e);
	if (r == 0)
		r = run_hook(f, &hf, "thaw", e);
	else
		record_hook(f, "thaw", NULL, realtime_ns());
	hook_close(&hf);
	return r;
}

/* ---- kernel freeze/thaw ------------------------------------------------ */
/*
 * The thaw must work when nothing else does: a frozen guest piles up
 * memory pressure and processes, and the host may never come back.  So
 * the fds FIFREEZE was issued on are kept ("held") until FITHAW succeeds
 * on them, and thawing what we froze needs no mount table, no memory and
 * no new fd.  An agent restarted frozen has no such fds: it opens every
 * mount point when it starts (freezer_start), for the same reason.  The
 * mount table is read at thaw time only to thaw filesystems someone else
 * froze (qemu-ga's thaw thaws everything); if that fails, what we hold is
 * thawed anyway.  A thaw that leaves a held filesystem frozen keeps the
 * agent frozen and re-arms the watchdog to try again.
 */

#define RETRY_THAW_MS 1000

/* FITHAW until it fails, undoing nested freezes.  1: thawed; 0: it was not
 * frozen, or cannot be (done either way); -errno: FITHAW failed, try again. */
static int thaw_fd(struct freezer *f, int fd)
{
	int r = f->ops->thaw(fd);
	if (r == -EINVAL || r == -EOPNOTSUPP || r == -ENOTTY)
		return 0;
	if (r < 0)
		return r;
	for (int i = 1; i < 64 && f->ops->thaw(fd) == 0; i++)
		;
	return 1;
}

static void held_free(struct freezer *f)
{
	for (size_t i = 0; i < f->nheld; i++) {
		if (f->held[i].fd >= 0)
			(void)close(f->held[i].fd);
		free(f->held[i].dir);
	}
	free(f->held);
	f->held = NULL;
	f->nheld = 0;
}

/* Thaw every held filesystem, in mount order; close what is done (its
 * device stays listed, for thaw_others).  Returns the number thawed, or
 * the first error (e names the mount point; those that failed stay open). */
static int thaw_held(struct freezer *f, struct err *e)
{
	int n = 0, err = 0;
	for (size_t i = 0; i < f->nheld; i++) {
		struct freeze_target *t = &f->held[i];
		if (t->fd < 0)
			continue;
		int r = thaw_fd(f, t->fd);
		if (r < 0) {
			if (!err)
				err = err_sys(e, r, "failed to thaw %s", t->dir);
			continue;
		}
		n += r;
		(void)close(t->fd);
		t->fd = -1;
	}
	return err ? err : n;
}

static bool is_held(const struct freezer *f, dev_t dev)
{
	for (size_t i = 0; i < f->nheld; i++)
		if (f->held[i].dev == dev)
			return true;
	return false;
}

/* Thaw whatever else the mount table lists (another tool's freeze), not
 * what thaw_held just did (a second FITHAW there could undo someone's
 * freeze made since, and count one filesystem twice); any FITHAW error
 * means "not thawed".  Allocates; the count or -errno. */
static int thaw_others(struct freezer *f, struct err *e)
{
	struct mount_list l;
	int r = mounts_read(f->mountinfo, &l, e);
	if (r < 0)
		return r;
	mounts_dedup(&l);
	int n = 0;
	for (size_t i = 0; i < l.n; i++) {
		_cleanup_close_ int fd = open(l.v[i].dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0 || is_held(f, st.st_dev))
			continue;
		n += thaw_fd(f, fd) > 0;
	}
	mounts_free(&l);
	return n;
}

/* An agent restarted frozen: hold every mount point now, while it can. */
static void hold_all(struct freezer *f)
{
	struct err e = {0};
	struct mount_list l;
	if (mounts_read(f->mountinfo, &l, &e) < 0) {
		log_error("%s; the thaw will read the mount table again", e.msg);
		return;
	}
	mounts_dedup(&l);
	f->held = calloc(l.n ? l.n : 1, sizeof(*f->held));
	for (size_t i = 0; f->held && i < l.n; i++) {
		struct freeze_target *t = &f->held[f->nheld];
		t->fd = open(l.v[i].dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
		struct stat st;
		if (t->fd >= 0 && fstat(t->fd, &st) < 0) {
			(void)close(t->fd);
			t->fd = -1;
		}
		if (t->fd < 0)
			continue;
		t->dev = st.st_dev;
		t->dir = take_ptr(l.v[i].dir);
		f->nheld++;
	}
	if (!f->held || f->nheld < l.n)
		log_error("could not open every mount point (%zu of %zu); the thaw will read the mount "
			  "table again", f->nheld, l.n);
	f->hold_complete = f->held && f->nheld == l.n;
	mounts_free(&l);
}

/* Which mounts to freeze: all (deduplicated by device), or the listed
 * mount points, each of which must be one. */
static int select_targets(struct freezer *f, const struct strlist *want, struct mount_list *out,
			  struct err *e)
{
	struct mount_list all;
	int r = mounts_read(f->mountinfo, &all, e);
	if (r < 0)
		return r;
	if (!want) {
		mounts_dedup(&all);
		*out = all;
		return 0;
	}
	struct mount_list sel = {0};
	for (size_t i = 0; i < want->n && r == 0; i++) {
		const struct mount *m = mounts_find(&all, want->v[i]);
		if (!m) {
			r = err_set(e, -EINVAL, "'%s' is not the mount point of a freezable filesystem",
				    want->v[i]);
			break;
		}
		if (mounts_add(&sel, m) < 0)
			r = err_set(e, -ENOMEM, "out of memory");
	}
	mounts_free(&all);
	if (r < 0) {
		mounts_free(&sel);
		return r;
	}
	mounts_dedup(&sel);
	*out = sel;
	return 0;
}

/* FIFREEZE in reverse order, holding the fd of each filesystem frozen (in
 * mount order).  On a hard error thaw what this call froze.  Returns the
 * count or the error. */
static int freeze_mounts(struct freezer *f, const struct mount_list *l, struct err *e)
{
	f->held = calloc(l->n ? l->n : 1, sizeof(*f->held));
	if (!f->held)
		return err_set(e, -ENOMEM, "out of memory");
	f->nheld = l->n;
	for (size_t i = 0; i < l->n; i++)
		f->held[i].fd = -1;
	for (size_t i = 0; i < l->n; i++)
		if (!(f->held[i].dir = strdup(l->v[i].dir))) {
			held_free(f);
			return err_set(e, -ENOMEM, "out of memory");
		}
	int n = 0;
	for (size_t i = l->n; i-- > 0;) {
		const char *dir = l->v[i].dir;
		int fd = open(dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
		struct stat st;
		int r = fd < 0 || fstat(fd, &st) < 0 ? -errno : f->ops->freeze(fd);
		if (r == 0) {
			f->held[i].fd = fd;
			f->held[i].dev = st.st_dev;
			n++;
			continue;
		}
		if (fd >= 0)
			(void)close(fd);
		if (fd >= 0 && (r == -EOPNOTSUPP || r == -EBUSY))
			continue; /* cannot be frozen / already frozen: skipped, as qemu-ga */
		struct err ignored;
		if (thaw_held(f, &ignored) >= 0)
			held_free(f); /* else keep what could not be thawed */
		return err_sys(e, r, fd < 0 ? "failed to open %s" : "failed to freeze %s", dir);
	}
	if (n == 0)
		held_free(f);
	f->hold_complete = n > 0;
	return n;
}

int freezer_freeze(struct freezer *f, const struct strlist *mountpoints, struct err *e)
{
	/* An empty list names nothing: freeze nothing, run no hook.  (qemu-ga
	 * 7.2 answers 0 too, after running the freeze hook.)  Never "all". */
	if (mountpoints && mountpoints->n == 0) {
		log_info("guest-fsfreeze-freeze-list with an empty list: nothing to freeze");
		return 0;
	}
	struct mount_list targets;
	int r = select_targets(f, mountpoints, &targets, e);
	if (r < 0)
		return r;
	/* opened and checked once: the freeze hook that runs is this file */
	struct hook_file hf = {.fd = -1};
	if (f->hook && (r = hook_open(f->hook, &hf, e)) < 0) {
		mounts_free(&targets);
		return r;
	}
	f->report = (struct freeze_report){.last_thaw = -1};
	f->thaw_hook_owed = f->hook != NULL;
	if ((r = marker_write(f, e)) < 0) {
		f->thaw_hook_owed = false;
		hook_close(&hf);
		mounts_free(&targets);
		return r;
	}
	log_info("guest-fsfreeze called");
	r = f->hook ? run_hook(f, &hf, "freeze", e) : 0;
	hook_close(&hf);
	if (r < 0) {
		struct err ignored;
		settle_hook(f, &ignored);
		marker_remove(f);
		mounts_free(&targets);
		return r;
	}

	/* From here until the thaw nothing may touch guest filesystems. */
	log_hold();
	f->frozen = true;
	r = freeze_mounts(f, &targets, e);
	mounts_free(&targets);
	if (r < 0 && f->held) {
		/* undoing the failed freeze failed too: stay frozen (marker, thaw
		 * hook owed) and let the watchdog retry the thaw */
		f->hold_complete = true;
		if (f->watchdog_ms > 0)
			watchdog_set(f, f->watchdog_ms < RETRY_THAW_MS ? f->watchdog_ms : RETRY_THAW_MS);
		return r;
	}
	if (r > 0) {
		f->report.frozen_ns = realtime_ns();
		f->report.filesystems = r;
		if (f->watchdog_ms > 0)
			watchdog_set(f, f->watchdog_ms);
		return r;
	}
	f->frozen = false;
	log_release();
	struct err ignored;
	settle_hook(f, &ignored);
	marker_remove(f);
	if (r == 0)
		log_info("no filesystem was frozen");
	return r;
}

/* The thaw failed and we are still frozen: try again soon, by ourselves. */
static int thaw_failed(struct freezer *f, struct err *e, const struct err *why)
{
	if (f->watchdog_ms > 0)
		watchdog_set(f, f->watchdog_ms < RETRY_THAW_MS ? f->watchdog_ms : RETRY_THAW_MS);
	return err_set(e, why->code, "%s", why->msg);
}

int freezer_thaw(struct freezer *f, struct err *e)
{
	struct err me = {0};
	/* what we hold first: no allocation, no new fd */
	int n = thaw_held(f, &me);
	if (n < 0)
		return thaw_failed(f, e, &me);
	bool all_held = f->hold_complete;
	int m = thaw_others(f, &me);
	held_free(f); /* all thawed: nothing left to hold */
	if (m < 0 && f->frozen && !all_held)
		return thaw_failed(f, e, &me); /* recovered, and nothing known to thaw */
	if (m < 0 && f->frozen)
		log_warn("%s; thawed only the filesystems frozen here", me.msg);
	else if (m > 0)
		n += m;
	bool was_frozen = f->frozen;
	f->frozen = false;
	f->hold_complete = false;
	watchdog_set(f, 0);
	if (was_frozen) {
		f->report.thawed_ns = realtime_ns();
		log_release();
	}
	marker_remove(f);
	log_info("guest-fsthaw called: %d filesystem(s) thawed", n);
	f->report.last_thaw = n;
	int r = settle_hook(f, e);
	if (r < 0)
		return r;
	if (m < 0 && !was_frozen)
		return err_set(e, m, "%s", me.msg); /* as qemu-ga: no mount table, no thaw */
	return n;
}

void freezer_watchdog_fired(struct freezer *f)
{
	uint64_t ticks;
	if (f->timerfd >= 0)
		(void)read(f->timerfd, &ticks, sizeof(ticks));
	if (!f->frozen)
		return;
	struct err e = {0};
	int n = freezer_thaw(f, &e);
	if (f->frozen) {
		log_error("the watchdog could not thaw: %s; trying again in %d ms", e.msg,
			  f->watchdog_ms < RETRY_THAW_MS ? f->watchdog_ms : RETRY_THAW_MS);
		return;
	}
	f->report.auto_thawed = true;
	log_warn("no thaw arrived within %d s of the freeze: the watchdog thawed %d filesystem(s)%s%s",
		 f->watchdog_ms / 1000, n < 0 ? 0 : n, n < 0 ? ": " : "", n < 0 ? e.msg : "");
}

void freezer_shutdown(struct freezer *f)
{
	if (!f->frozen && !f->thaw_hook_owed)
		return;
	struct err e = {0};
	int n = freezer_thaw(f, &e);
	if (n < 0)
		log_error("thaw at exit: %s", e.msg);
	else
		log_info("thawed %d filesystem(s) before exiting", n);
}

int freezer_start(struct freezer *f, struct err *e)
{
	f->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (f->timerfd < 0)
		return err_sys(e, -errno, "cannot create the watchdog timer");
	char path[4096];
	marker_path(f, path, sizeof(path));
	/* O_NOFOLLOW: a symlink there is not ours; it is not read through
	 * (ELOOP: "cannot tell", so frozen, and the thaw removes the link) */
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	_cleanup_fclose_ FILE *m = fd >= 0 ? fdopen(fd, "r") : NULL;
	int err = errno;
	if (fd >= 0 && !m)
		(void)close(fd);
	if (!m && err == ENOENT)
		return 0;
	/* Frozen: from here on nothing may write to a guest filesystem, not
	 * even a log line (main holds the log from its start; so do we). */
	log_hold();
	if (!m) {
		/* cannot tell: assume frozen, the safe side */
		log_error("unable to access state file at path %s: %s", path, strerror(err));
	} else {
		char line[64];
		while (fgets(line, sizeof(line), m))
			if (!strcmp(line, "thaw-hook-owed\n"))
				f->thaw_hook_owed = true;
	}
	log_warn("previous instance appears to have exited with frozen filesystems; only "
		 "freeze-safe commands are enabled until guest-fsfreeze-thaw (or the watchdog, in %d s)",
		 f->watchdog_ms / 1000);
	f->frozen = true;
	f->report.recovered = true;
	hold_all(f);
	if (f->watchdog_ms > 0)
		watchdog_set(f, f->watchdog_ms);
	return 0;
}

void freezer_done(struct freezer *f)
{
	if (f->timerfd >= 0)
		close(f->timerfd);
	f->timerfd = -1;
	held_free(f);
	hook_pipe_close(&f->pipe);
}

struct json_object *freezer_report_json(const struct freezer *f)
{
	const struct freeze_report *r = &f->report;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "status", json_object_new_string(f->frozen ? "frozen" : "thawed"));
	json_object_object_add(o, "watchdog-ms", json_object_new_int(f->watchdog_ms));
	json_object_object_add(o, "hook-timeout-ms", json_object_new_int(f->hook_timeout_ms));
	json_object_object_add(o, "hook", f->hook ? json_object_new_string(f->hook) : NULL);
	if (r->frozen_ns)
		json_object_object_add(o, "frozen-at-ns", json_object_new_int64(r->frozen_ns));
	if (r->thawed_ns)
		json_object_object_add(o, "thawed-at-ns", json_object_new_int64(r->thawed_ns));
	json_object_object_add(o, "filesystems", json_object_new_int(r->filesystems));
	if (r->last_thaw >= 0)
		json_object_object_add(o, "last-thaw-filesystems", json_object_new_int(r->last_thaw));
	json_object_object_add(o, "auto-thawed", json_object_new_boolean(r->auto_thawed));
	json_object_object_add(o, "recovered", json_object_new_boolean(r->recovered));
	struct json_object *hooks = json_object_new_array();
	for (int i = 0; i < r->nhooks; i++) {
		const struct freeze_hook_run *h = &r->hooks[i];
		struct json_object *x = json_object_new_object();
		json_object_object_add(x, "action", json_object_new_string(h->action));
		json_object_object_add(x, "started-at-ns", json_object_new_int64(h->started_ns));
		json_object_object_add(x, "seconds", json_object_new_double(h->seconds));
		json_object_object_add(x, "exit-status", json_object_new_int(h->exit_status));
		json_object_object_add(x, "timed-out", json_object_new_boolean(h->timed_out));
		json_object_array_add(hooks, x);
	}
	json_object_object_add(o, "hooks", hooks);
	return o;
}
