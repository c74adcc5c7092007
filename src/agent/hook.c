// SPDX-License-Identifier: MIT
/*
 * hook: fsfreeze hook execution with a timeout (see hook.h).
 *
 * Waiting uses a pidfd (Linux 5.3+), polled together with the output pipe,
 * so we wake the moment the hook exits; on older kernels we fall back to
 * polling waitpid(WNOHANG) every millisecond.
 */
#include "hook.h"

#include "cleanup.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
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

int hook_check(const char *path, struct err *e)
{
	struct stat st;
	if (stat(path, &st) < 0 || access(path, X_OK) < 0)
		return err_sys(e, -errno, "can't access fsfreeze hook '%s'", path);
	if (!S_ISREG(st.st_mode))
		return err_set(e, -EINVAL, "fsfreeze hook '%s' is not a regular file", path);
	if (st.st_uid != 0 && st.st_uid != geteuid())
		return err_set(e, -EPERM,
			       "fsfreeze hook '%s' is owned by uid %u, not root; refusing to run it",
			       path, (unsigned)st.st_uid);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return err_set(e, -EPERM,
			       "fsfreeze hook '%s' is writable by group or others; refusing to run it",
			       path);
	return 0;
}

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

/* Start `path action` in its own session with stdin from /dev/null and
 * stdout+stderr into `out`.  posix_spawn (vfork semantics) is measurably
 * cheaper than fork+exec, and the hook's cost is most of a freeze's. */
static int spawn(const char *path, const char *action, int out, pid_t *pid)
{
	extern char **environ;
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
	char *const argv[] = {(char *)path, (char *)action, NULL};
	int r = posix_spawn(pid, path, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	return -r;
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

int hook_run(struct hook_pipe *p, const char *path, const char *action, int timeout_ms,
	     struct hook_result *res, struct err *e)
{
	*res = (struct hook_result){.output = BUF_INIT};
	int r = pipe_open(p, e);
	if (r < 0)
		return r;
	double start = now();
	pid_t pid;
	r = spawn(path, action, p->wr, &pid);
	if (r < 0)
		return err_sys(e, r, "failed to execute fsfreeze hook '%s'", path);
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
