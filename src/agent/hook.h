/* SPDX-License-Identifier: MIT */
/*
 * hook: run the fsfreeze hook ("HOOK freeze" / "HOOK thaw") safely.
 *
 * The hook runs in its own session and process group with stdin from
 * /dev/null and stdout+stderr into a pipe that we read while we wait.  We
 * wait for the hook process itself, not for end-of-file on the pipe, so a
 * background child that keeps the pipe open (a database lock holder, say)
 * cannot hang the agent.  On timeout the whole process group is killed.
 *
 * The pipe outlives each run (struct hook_pipe): such a background child
 * may write after the hook returned, and must find a reader there, not
 * SIGPIPE.  The agent keeps both ends open, so the pipe never reports
 * end-of-file and costs two fds for the agent's lifetime; the main loop
 * polls the read end and logs what arrives between hooks.  Output that
 * arrives while a later hook runs is counted as that hook's.
 */
#ifndef QUIESCE_HOOK_H
#define QUIESCE_HOOK_H

#include "buf.h"
#include "err.h"

#include <stdbool.h>
#include <sys/types.h>

#define HOOK_OUTPUT_MAX (64u * 1024)

struct hook_result {
	int status;          /* waitpid() status, valid unless timed_out */
	bool timed_out;      /* killed after the timeout */
	double seconds;      /* how long it ran */
	struct buf output;   /* stdout+stderr, at most HOOK_OUTPUT_MAX bytes */
	bool truncated;      /* more output was discarded */
};

/* A hook opened once and checked: what hook_run() runs. */
struct hook_file {
	int fd;           /* O_PATH fd of the checked file; -1: none */
	const char *path; /* as configured (borrowed): argv[0], $0 of a script */
	dev_t dev;
	ino_t ino;
	bool script;      /* starts with "#!": run by path, see hook.c */
};

/* Open the hook and check that it may be run: a regular executable file,
 * owned by root or by us, not writable by group or others, and every
 * directory on the way to it (through symlinks too) owned by root or us
 * and not writable by group or others (sticky ones aside).  Errors name
 * the problem, in qemu-ga's words where it has them. */
int hook_open(const char *path, struct hook_file *ret, struct err *e);
void hook_close(struct hook_file *h);
/* hook_open() + hook_close(): only the check. */
int hook_check(const char *path, struct err *e);

/* The pipe every hook writes into; created by the first hook_run(). */
struct hook_pipe {
	int rd, wr; /* -1: not yet */
};

void hook_pipe_init(struct hook_pipe *p);
void hook_pipe_close(struct hook_pipe *p);
/* The read end, to poll for output between hooks; -1 before the first hook. */
int hook_pipe_fd(const struct hook_pipe *p);
/* Non-blocking read of what arrived: bytes read (0: nothing), or -errno. */
ssize_t hook_pipe_read(struct hook_pipe *p, char *buf, size_t cap);

/* Run `hook action` with its output into p, waiting at most timeout_ms.
 * What runs is the file hook_open() checked: a binary through its fd; a
 * script by its path, refused if that no longer names the checked file.
 * Returns 0 when the hook ran (look at res for how it ended), or a negative
 * errno if it could not be started.  res->output must be freed with
 * buf_free(). */
int hook_run(struct hook_pipe *p, const struct hook_file *h, const char *action, int timeout_ms,
	     struct hook_result *res, struct err *e);

/* One line describing how the hook ended: qemu-ga 7.2's error text on
 * failure ("fsfreeze hook has failed with status N"), NULL on success. */
const char *hook_failure(const struct hook_result *res, char *buf, size_t len);

#endif
