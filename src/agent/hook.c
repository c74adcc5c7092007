// SPDX-License-Identifier: MIT
/*
 * hook: the fsfreeze hook, opened and checked once, then run with a
 * timeout (see hook.h).  Three parts: the walk that opens and checks it,
 * the spawn that runs what was checked, and the wait.
 *
 * Waiting uses a pidfd (Linux 5.3+), polled together with the output pipe,
 * so we wake the moment the hook exits; on older kernels we fall back to
 * polling waitpid(WNOHANG) every millisecond.  The pipe is read in slices
 * of at most DRAIN_BUDGET bytes between looks at the clock.
 */
#include "hook.h"

#include "cleanup.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define KILL_GRACE_MS 2000
#define DRAIN_BUDGET (64u * 1024)

/* ---- opening and checking ------------------------------------------- */
/*
 * The path is walked from "/" one component at a time with O_PATH |
 * O_NOFOLLOW, symlinks expanded by hand, so that every directory that
 * leads to the hook is seen and checked, also those a symlink leads
 * through.  A directory must be owned by root (or us) and not writable by
 * group or others, unless it is sticky (/tmp) and the entry we take in it
 * is owned by root (or us): then nobody else can rename or replace it.
 * The file must be a regular executable owned by root (or us) and not
 * writable by group or others.  So nobody but root can change what the
 * path names between the check and the exec.
 */

#define MAX_SYMLINKS 40

static bool trusted_uid(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

static int check_dir(const char *hook, const char *dir, const struct stat *st, struct err *e)
{
	if (!trusted_uid(st->st_uid))
		return err_set(e, -EPERM,
			       "fsfreeze hook '%s': directory '%s' is owned by uid %u, not root; "
			       "refusing to run it",
			       hook, dir, (unsigned)st->st_uid);
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX))
		return err_set(e, -EPERM,
			       "fsfreeze hook '%s': directory '%s' is writable by group or others; "
			       "refusing to run it",
			       hook, dir);
	return 0;
}

/* Whether we may execute a file of this mode and owner (access(X_OK) on
 * the fd we hold, without a second lookup by path). */
static bool executable(const struct stat *st)
{
	if (geteuid() == 0)
		return st->st_mode & (S_IXUSR | S_IXGRP | S_IXOTH);
	if (st->st_uid == geteuid())
		return st->st_mode & S_IXUSR;
	if (st->st_gid == getegid())
		return st->st_mode & S_IXGRP;
	return st->st_mode & S_IXOTH;
}

static int check_file(const char *hook, const struct stat *st, struct err *e)
{
	if (!executable(st))
		return err_sys(e, -EACCES, "can't access fsfreeze hook '%s'", hook);
	if (!S_ISREG(st->st_mode))
		return err_set(e, -EINVAL, "fsfreeze hook '%s' is not a regular file", hook);
	if (!trusted_uid(st->st_uid))
		return err_set(e, -EPERM,
			       "fsfreeze hook '%s' is owned by uid %u, not root; refusing to run it",
			       hook, (unsigned)st->st_uid);
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return err_set(e, -EPERM,
			       "fsfreeze hook '%s' is writable by group or others; refusing to run it",
			       hook);
	return 0;
}

/* Take the first component off *rest (a string in todo); NULL when none. */
static char *next_component(char **rest)
{
	while (**rest == '/')
		(*rest)++;
	if (!**rest)
		return NULL;
	char *c = *rest, *slash = strchr(c, '/');
	if (slash) {
		*slash = '\0';
		*rest = slash + 1;
	} else {
		*rest = c + strlen(c);
	}
	return c;
}

/* Make todo = head + "/" + rest (rest may be empty). */
static int splice_path(char *todo, size_t cap, const char *head, const char *rest)
{
	char tmp[2 * PATH_MAX];
	int n = snprintf(tmp, sizeof(tmp), "%s%s%s", head, *rest ? "/" : "", rest);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	memcpy(todo, tmp, (size_t)n + 1);
	return 0;
}

/* Replace *dirfd by the root directory, checked. */
static int at_root(int *dirfd, char *at, struct stat *dst, const char *hook, struct err *e)
{
	int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, dst) < 0) {
		int r = -errno;
		if (fd >= 0)
			close(fd);
		return err_sys(e, r, "can't access fsfreeze hook '%s'", hook);
	}
	if (*dirfd >= 0)
		close(*dirfd);
	*dirfd = fd;
	strcpy(at, "/");
	return check_dir(hook, "/", dst, e);
}

/* The walk (see the banner).  On success *ret holds the file's O_PATH fd. */
static int walk(const char *hook, int *ret, struct stat *st, struct err *e)
{
	char todo[2 * PATH_MAX], at[PATH_MAX];
	struct stat dst;
	int dirfd = -1, links = 0, r;
	if (hook[0] == '/') {
		r = splice_path(todo, sizeof(todo), hook, "");
	} else {
		char cwd[PATH_MAX];
		r = getcwd(cwd, sizeof(cwd)) ? splice_path(todo, sizeof(todo), cwd, hook) : -errno;
	}
	if (r < 0)
		return err_sys(e, r, "can't access fsfreeze hook '%s'", hook);
	if ((r = at_root(&dirfd, at, &dst, hook, e)) < 0)
		goto out;
	char *rest = todo, *c;
	while ((c = next_component(&rest))) {
		bool last = !*rest || !rest[strspn(rest, "/")];
		bool trailing_slash = last && *rest;
		if (!strcmp(c, "."))
			continue;
		int fd = openat(dirfd, c, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || fstat(fd, st) < 0) {
			r = err_sys(e, -errno, "can't access fsfreeze hook '%s'", hook);
			if (fd >= 0)
				close(fd);
			goto out;
		}
		/* in a sticky dir others may write to, the entry itself must be ours */
		if (strcmp(c, "..") && (dst.st_mode & (S_IWGRP | S_IWOTH)) && !trusted_uid(st->st_uid)) {
			r = err_set(e, -EPERM,
				    "fsfreeze hook '%s': '%s' in directory '%s' (writable by others) is "
				    "owned by uid %u; refusing to run it",
				    hook, c, at, (unsigned)st->st_uid);
			close(fd);
			goto out;
		}
		if (S_ISLNK(st->st_mode)) {
			char target[PATH_MAX];
			ssize_t n = readlinkat(fd, "", target, sizeof(target) - 1);
			close(fd);
			if (n < 0 || ++links > MAX_SYMLINKS) {
				r = err_sys(e, n < 0 ? -errno : -ELOOP, "can't access fsfreeze hook '%s'",
					    hook);
				goto out;
			}
			target[n] = '\0';
			char left[2 * PATH_MAX];
			snprintf(left, sizeof(left), "%s%s", rest, trailing_slash ? "/" : "");
			if ((r = splice_path(todo, sizeof(todo), target, left)) < 0) {
				r = err_sys(e, r, "can't access fsfreeze hook '%s'", hook);
				goto out;
			}
			rest = todo;
			if (target[0] == '/' && (r = at_root(&dirfd, at, &dst, hook, e)) < 0)
				goto out;
			continue;
		}
		if (S_ISDIR(st->st_mode) && !last) {
			if (!strcmp(c, "..")) {
				char *slash = strrchr(at, '/');
				slash[slash == at] = '\0';
			} else {
				size_t len = strlen(at);
				snprintf(at + len, sizeof(at) - len, "%s%s", len > 1 ? "/" : "", c);
			}
			close(dirfd);
			dirfd = fd;
			dst = *st;
			if ((r = check_dir(hook, at, &dst, e)) < 0)
				goto out;
			continue;
		}
		if (!last || (trailing_slash && !S_ISDIR(st->st_mode))) {
			close(fd);
			r = err_sys(e, -ENOTDIR, "can't access fsfreeze hook '%s'", hook);
			goto out;
		}
		if ((r = check_file(hook, st, e)) < 0) {
			close(fd);
			goto out;
		}
		*ret = fd;
		r = 0;
		goto out;
	}
	/* the path named a directory ("/", or ended in "..") */
	r = err_set(e, -EINVAL, "fsfreeze hook '%s' is not a regular file", hook);
out:
	if (dirfd >= 0)
		close(dirfd);
	return r;
}

/* Whether the file starts with "#!": read through /proc (our O_PATH fd
 * cannot be read).  Unknown counts as a script: run by path. */
static bool is_script(int fd)
{
	char proc[64], head[2];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	_cleanup_close_ int rfd = open(proc, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	return rfd < 0 || pread(rfd, head, 2, 0) != 2 || (head[0] == '#' && head[1] == '!');
}

int hook_open(const char *path, struct hook_file *ret, struct err *e)
{
	*ret = (struct hook_file){.fd = -1, .path = path};
	struct stat st;
	int r = walk(path, &ret->fd, &st, e);
	if (r < 0)
		return r;
	ret->dev = st.st_dev;
	ret->ino = st.st_ino;
	ret->script = is_script(ret->fd);
	return 0;
}

void hook_close(struct hook_file *h)
{
	if (h->fd >= 0)
		(void)close(h->fd);
	h->fd = -1;
}

int hook_check(const char *path, struct err *e)
{
	struct hook_file h;
	int r = hook_open(path, &h, e);
	hook_close(&h);
	return r;
}

/* ---- running ----------------------------------------------------------- */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Read what the pipe holds, but at most DRAIN_BUDGET bytes: a hook that
 * writes faster than we read would otherwise keep us here for good, and
 * its timeout would never be looked at.  Beyond HOOK_OUTPUT_MAX the output
 * is read and dropped, so a chatty hook never blocks on a full pipe. */
static void drain(int fd, struct hook_result *res)
{
	char buf[4096];
	ssize_t n;
	for (size_t got = 0; got < DRAIN_BUDGET && (n = read(fd, buf, sizeof(buf))) > 0;
	     got += (size_t)n) {
		size_t room = HOOK_OUTPUT_MAX - res->output.len;
		size_t take = (size_t)n < room ? (size_t)n : room;
		if (take && buf_append(&res->output, buf, take) < 0)
			take = 0;
		if (take < (size_t)n)
			res->truncated = true;
	}
}

/* What to execute.  A binary: the checked file itself, through our fd
 * (/proc/self/fd/N; argv[0] stays the configured path).  A script: its
 * path, because the kernel hands the interpreter the name it was executed
 * by, as $0, and hooks find their fsfreeze-hook.d next to $0 (QEMU's
 * stock hook and ours do: executed through an fd, $0 would be /dev/fd/N).
 * For a script the walk's checks are what keep the path from changing
 * under us; that it still names the file checked is verified last. */
static int exec_path(const struct hook_file *h, char *buf, size_t len, struct err *e)
{
	if (!h->script) {
		snprintf(buf, len, "/proc/self/fd/%d", h->fd);
		if (access(buf, F_OK) == 0)
			return 0;
	}
	struct stat st;
	if (stat(h->path, &st) < 0)
		return err_sys(e, -errno, "can't access fsfreeze hook '%s'", h->path);
	if (st.st_dev != h->dev || st.st_ino != h->ino)
		return err_set(e, -ESTALE,
			       "fsfreeze hook '%s' was replaced after it was checked; refusing to run it",
			       h->path);
	snprintf(buf, len, "%s", h->path);
	return 0;
}

/* Start the hook in its own session with stdin from /dev/null and
 * stdout+stderr into `out`.  posix_spawn (vfork semantics) is measurably
 * cheaper than fork+exec, and the hook's cost is most of a freeze's. */
static int spawn(const struct hook_file *h, const char *action, int out, pid_t *pid,
		 struct err *e)
{
	extern char **environ;
	char exe[PATH_MAX];
	int r = exec_path(h, exe, sizeof(exe), e);
	if (r < 0)
		return r;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dflt;
	sigemptyset(&none);
	sigemptyset(&dflt);
	/* the agent blocks these for its signalfd and ignores SIGPIPE */
	int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGIO, SIGPIPE, SIGCHLD};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&dflt, sigs[i]);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, out, STDERR_FILENO);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
						POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dflt);
	char *const argv[] = {(char *)h->path, (char *)action, NULL};
	r = posix_spawn(pid, exe, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	return r ? err_sys(e, -r, "failed to execute fsfreeze hook '%s'", h->path) : 0;
}

/* Wait for pid with the pipe drained; returns 1 if it exited (status set),
 * 0 on timeout. */
static int wait_exit(pid_t pid, int pidfd, int out, double deadline, struct hook_result *res)
{
	for (;;) {
		if (waitpid(pid, &res->status, WNOHANG) == pid)
			return 1;
		double left = deadline - now();
		if (left <= 0)
			return 0;
		struct pollfd p[2] = {{out, POLLIN, 0}, {pidfd, POLLIN, 0}};
		int ms = pidfd >= 0 ? (int)(left * 1000) + 1 : 1;
		if (poll(p, pidfd >= 0 ? 2 : 1, ms) < 0 && errno != EINTR)
			return 0;
		if (p[0].revents & POLLIN)
			drain(out, res);
		if (p[0].revents & (POLLHUP | POLLERR))
			out = -1; /* everyone closed it: stop watching */
	}
}

void hook_pipe_init(struct hook_pipe *p)
{
	p->rd = p->wr = -1;
}

void hook_pipe_close(struct hook_pipe *p)
{
	if (p->rd >= 0)
		(void)close(p->rd);
	if (p->wr >= 0)
		(void)close(p->wr);
	hook_pipe_init(p);
}

int hook_pipe_fd(const struct hook_pipe *p)
{
	return p->rd;
}

ssize_t hook_pipe_read(struct hook_pipe *p, char *buf, size_t cap)
{
	if (p->rd < 0)
		return 0;
	ssize_t n = read(p->rd, buf, cap);
	return n < 0 ? (errno == EAGAIN || errno == EINTR ? 0 : -errno) : n;
}

/* Create the pipe on first use.  Only the read end is non-blocking: the
 * hook's writes must block on a full pipe, never fail with EAGAIN. */
static int pipe_open(struct hook_pipe *p, struct err *e)
{
	if (p->rd >= 0)
		return 0;
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return err_sys(e, -errno, "cannot create pipe FDs");
	(void)fcntl(fds[0], F_SETFL, O_NONBLOCK);
	p->rd = fds[0];
	p->wr = fds[1];
	return 0;
}

int hook_run(struct hook_pipe *p, const struct hook_file *h, const char *action, int timeout_ms,
	     struct hook_result *res, struct err *e)
{
	*res = (struct hook_result){.output = BUF_INIT};
	int r = pipe_open(p, e);
	if (r < 0)
		return r;
	double start = now();
	pid_t pid;
	if ((r = spawn(h, action, p->wr, &pid, e)) < 0)
		return r;
	_cleanup_close_ int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (!wait_exit(pid, pidfd, p->rd, start + timeout_ms / 1000.0, res)) {
		res->timed_out = true;
		(void)kill(-pid, SIGKILL); /* the whole process group */
		if (!wait_exit(pid, pidfd, -1, now() + KILL_GRACE_MS / 1000.0, res))
			log_error("fsfreeze hook (pid %d) survived SIGKILL", (int)pid);
	}
	drain(p->rd, res);
	res->seconds = now() - start;
	return 0;
}

const char *hook_failure(const struct hook_result *res, char *buf, size_t len)
{
	if (res->timed_out)
		snprintf(buf, len, "fsfreeze hook has timed out after %.0f seconds and was killed",
			 res->seconds);
	else if (!WIFEXITED(res->status))
		snprintf(buf, len, "fsfreeze hook has terminated abnormally");
	else if (WEXITSTATUS(res->status) != 0)
		snprintf(buf, len, "fsfreeze hook has failed with status %d", WEXITSTATUS(res->status));
	else
		return NULL;
	return buf;
}
