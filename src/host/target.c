// SPDX-License-Identifier: MIT
/* target: raw file, block device and qcow2 restore targets (see target.h). */
#include "target.h"

#include "xerr.h"

#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <linux/fs.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct target {
	enum target_format fmt;
	char *path, *partial;
	bool blockdev;
	uint32_t sector; /* block device: its logical sector size, what BLKZEROOUT aligns to */
	bool created; /* partial is ours to remove */
	int fd;			/* raw */
	pid_t nbd_pid;		/* qcow2: qemu-nbd */
	char sockdir[64];
	int nh;
	struct nbd_handle **h;
};

static int fail_open(struct target *t, int rc)
{
	target_abort(t);
	return rc;
}

static int run_wait(char *const argv[], struct err *e)
{
	pid_t pid;
	int st;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return xerr_sys(e, QX_FAIL, rc, "cannot run %s (is qemu-utils installed?)", argv[0]);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return xerr_sys(e, QX_FAIL, errno, "waitpid");
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return xerr(e, QX_FAIL, "%s failed", argv[0]);
	return 0;
}

static int open_qcow2(struct target *t, uint64_t size, int workers, struct err *e)
{
	char sz[32];
	snprintf(sz, sizeof(sz), "%llu", (unsigned long long)size);
	char *create[] = {"qemu-img", "create", "-q", "-f", "qcow2", t->partial, sz, NULL};
	/* create it ourselves first: a bad path gets our one-line error, not qemu-img's */
	int fd = open(t->partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return xerr_sys(e, QX_SOURCE, errno, "cannot create %s", t->partial);
	close(fd);
	t->created = true;
	int rc = run_wait(create, e);
	if (rc < 0)
		return rc;
	strcpy(t->sockdir, "/tmp/quiesce-restore-XXXXXX");
	if (!mkdtemp(t->sockdir))
		return xerr_sys(e, QX_FAIL, errno, "mkdtemp");
	char sock[128], shared[16], uri[192];
	snprintf(sock, sizeof(sock), "%s/nbd.sock", t->sockdir);
	snprintf(shared, sizeof(shared), "%d", workers);
	char *serve[] = {"qemu-nbd", "-f", "qcow2", "--socket", sock, "--shared", shared,
			 "--cache=writeback", "--discard=unmap", t->partial, NULL};
	rc = posix_spawnp(&t->nbd_pid, serve[0], NULL, NULL, serve, environ);
	if (rc != 0) {
		t->nbd_pid = 0;
		return xerr_sys(e, QX_FAIL, rc, "cannot run qemu-nbd (is qemu-utils installed?)");
	}
	/* wait for its socket, at most 10 s */
	struct stat st;
	for (int i = 0; i < 1000 && stat(sock, &st) < 0; i++) {
		if (waitpid(t->nbd_pid, NULL, WNOHANG) == t->nbd_pid) {
			t->nbd_pid = 0;
			return xerr(e, QX_FAIL, "qemu-nbd exited before serving %s", t->partial);
		}
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	}
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);
	t->h = calloc((size_t)workers, sizeof(*t->h));
	if (!t->h)
		return xerr(e, QX_FAIL, "out of memory");
	for (; t->nh < workers; t->nh++) {
		/* the socket file exists before qemu-nbd listens on it: a refused
		 * first connection is retried while qemu-nbd is alive, at most 10 s */
		struct nbd_handle *h = NULL;
		for (int tries = 0;; tries++) {
			if (!(h = nbd_create()))
				return xerr(e, QX_FAIL, "out of memory");
			if (nbd_connect_uri(h, uri) == 0)
				break;
			bool refused = nbd_get_errno() == ECONNREFUSED || nbd_get_errno() == ENOENT;
			rc = xerr(e, QX_FAIL, "cannot connect to qemu-nbd for %s: %s", t->partial, nbd_get_error());
			nbd_close(h);
			if (waitpid(t->nbd_pid, NULL, WNOHANG) == t->nbd_pid) {
				t->nbd_pid = 0; /* reaped: never signalled again */
				return rc;
			}
			if (!refused || tries == 1000)
				return rc;
			nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
		}
		t->h[t->nh] = h;
	}
	return 0;
}

int target_open(const char *path, enum target_format fmt, uint64_t size, bool force, int workers,
		struct target **out, struct err *e)
{
	struct target *t = calloc(1, sizeof(*t));
	if (!t)
		return xerr(e, QX_FAIL, "out of memory");
	t->fd = -1;
	t->fmt = fmt;
	t->path = strdup(path);
	if (!t->path || asprintf(&t->partial, "%s.partial", path) < 0) {
		t->partial = NULL;
		return fail_open(t, xerr(e, QX_FAIL, "out of memory"));
	}
	struct stat st;
	if (stat(path, &st) == 0 && S_ISBLK(st.st_mode)) {
		if (fmt != TARGET_RAW)
			return fail_open(t, xerr(e, QX_USAGE, "a block device takes raw data, not --format qcow2"));
		t->blockdev = true;
		t->fd = open(path, O_WRONLY | O_CLOEXEC);
		uint64_t bsize = 0;
		int ssz = 0;
		if (t->fd < 0 || ioctl(t->fd, BLKGETSIZE64, &bsize) < 0 || ioctl(t->fd, BLKSSZGET, &ssz) < 0)
			return fail_open(t, xerr_sys(e, QX_SOURCE, errno, "cannot open %s", path));
		t->sector = ssz >= 512 && !(ssz & (ssz - 1)) ? (uint32_t)ssz : 4096;
		if (bsize < size)
			return fail_open(t, xerr(e, QX_SOURCE, "%s holds %llu bytes; the disk needs %llu", path,
						 (unsigned long long)bsize, (unsigned long long)size));
		*out = t;
		return 0;
	}
	if (stat(path, &st) == 0 && !force)
		return fail_open(t, xerr(e, QX_USAGE, "%s exists; use --force to replace it", path));
	unlink(t->partial); /* a leftover of an interrupted restore */
	int rc;
	if (fmt == TARGET_QCOW2) {
		rc = open_qcow2(t, size, workers, e);
	} else {
		t->fd = open(t->partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		t->created = t->fd >= 0;
		if (t->fd < 0)
			rc = xerr_sys(e, QX_SOURCE, errno, "cannot create %s", t->partial);
		else if (ftruncate(t->fd, (off_t)size) < 0) /* all holes: zero chunks need no write */
			rc = xerr_sys(e, QX_SOURCE, errno, "cannot size %s", t->partial);
		else
			rc = 0;
	}
	if (rc < 0)
		return fail_open(t, rc);
	*out = t;
	return 0;
}

int target_pwrite(struct target *t, int worker, const void *buf, size_t len, uint64_t off, struct err *e)
{
	if (t->fmt == TARGET_QCOW2) {
		if (nbd_pwrite(t->h[worker], buf, len, off, 0) < 0)
			return xerr(e, nbd_get_errno() == ENOSPC ? QX_NOSPC : QX_FAIL, "cannot write %s: %s", t->partial,
				    nbd_get_error());
		return 0;
	}
	const char *p = buf;
	while (len) {
		ssize_t n = pwrite(t->fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return xerr_sys(e, QX_FAIL, errno, "cannot write %s", t->blockdev ? t->path : t->partial);
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Zeros written as data: the ends of a range BLKZEROOUT cannot take. */
static int write_zeros(struct target *t, int worker, uint64_t off, uint64_t len, struct err *e)
{
	static const char zeros[4096];
	while (len) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		int rc = target_pwrite(t, worker, zeros, n, off, e);
		if (rc < 0)
			return rc;
		off += n;
		len -= n;
	}
	return 0;
}

int target_zero(struct target *t, int worker, uint64_t off, uint64_t len, struct err *e)
{
	if (!t->blockdev)
		return 0; /* fresh sparse file or fresh qcow2: reads as zero already */
	/* BLKZEROOUT takes only whole logical sectors (EINVAL otherwise): a disk
	 * whose size is not a multiple of the device's sector size ends in a
	 * partial one, so the unaligned head and tail are written as zeros */
	uint64_t a = (off + t->sector - 1) / t->sector * t->sector, b = (off + len) / t->sector * t->sector;
	if (b <= a)
		return write_zeros(t, worker, off, len, e);
	int rc = write_zeros(t, worker, off, a - off, e);
	uint64_t range[2] = {a, b - a};
	if (rc == 0 && ioctl(t->fd, BLKZEROOUT, range) < 0)
		rc = xerr_sys(e, QX_FAIL, errno, "cannot zero %s at %llu (%llu bytes)", t->path, (unsigned long long)a,
			      (unsigned long long)(b - a));
	if (rc == 0)
		rc = write_zeros(t, worker, b, off + len - b, e);
	return rc;
}

static void stop_nbd(struct target *t)
{
	for (int i = 0; i < t->nh; i++) {
		nbd_shutdown(t->h[i], 0);
		nbd_close(t->h[i]);
	}
	t->nh = 0;
	free(t->h);
	t->h = NULL;
	if (t->nbd_pid > 0) {
		/* qemu-nbd leaves on its own when its last client goes; make sure */
		for (int i = 0; i < 500 && waitpid(t->nbd_pid, NULL, WNOHANG) == 0; i++) {
			if (i == 200)
				kill(t->nbd_pid, SIGTERM);
			nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
		}
		kill(t->nbd_pid, SIGKILL);
		waitpid(t->nbd_pid, NULL, 0);
		t->nbd_pid = 0;
	}
	if (t->sockdir[0]) {
		char sock[128];
		snprintf(sock, sizeof(sock), "%s/nbd.sock", t->sockdir);
		unlink(sock);
		rmdir(t->sockdir);
		t->sockdir[0] = '\0';
	}
}

static void target_free(struct target *t)
{
	if (t->fd >= 0)
		close(t->fd);
	free(t->path);
	free(t->partial);
	free(t);
}

/* The rename is durable only once the directory holding PATH is: without
 * this a crash just after a restore "succeeded" could leave no PATH, or the
 * old file it replaced. */
static int sync_parent(struct target *t, struct err *e)
{
	char *dir = strdup(t->path);
	if (!dir)
		return xerr(e, QX_FAIL, "out of memory");
	char *slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
	if (fd < 0 || fsync(fd) < 0)
		rc = xerr_sys(e, QX_FAIL, errno, "cannot sync %s after renaming %s into it", dir, t->path);
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}

int target_commit(struct target *t, struct err *e)
{
	int rc = 0;
	if (t->fmt == TARGET_QCOW2) {
		for (int i = 0; i < t->nh && rc == 0; i++)
			if (nbd_flush(t->h[i], 0) < 0)
				rc = xerr(e, QX_FAIL, "cannot flush %s: %s", t->partial, nbd_get_error());
		stop_nbd(t);
	} else if (fsync(t->fd) < 0) {
		rc = xerr_sys(e, QX_FAIL, errno, "cannot sync %s", t->blockdev ? t->path : t->partial);
	}
	if (rc == 0 && !t->blockdev && rename(t->partial, t->path) < 0)
		rc = xerr_sys(e, QX_FAIL, errno, "cannot rename %s to %s", t->partial, t->path);
	if (rc == 0 && !t->blockdev)
		rc = sync_parent(t, e);
	if (rc < 0) {
		target_abort(t);
		return rc;
	}
	target_free(t);
	return 0;
}

void target_abort(struct target *t)
{
	if (!t)
		return;
	stop_nbd(t);
	if (t->created)
		unlink(t->partial);
	target_free(t);
}
