// SPDX-License-Identifier: MIT
/* fleece: point-in-time views of a running VM's disks (see fleece.h). */
#include "fleece.h"

#include "cli.h"
#include "fault.h"
#include "jsock.h"
#include "xerr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define QMP_TIMEOUT_MS 10000
#define EVENT_TIMEOUT_MS 30000
#define WATCH_TICK_MS 20
/* What one copy-before-write copies: block-copy's cluster, the larger of
 * 64 KiB and the fleece image's cluster size (qemu-img's default, 64 KiB). */
#define CBW_GRANULE (64u << 10)

static bool ours(const char *name, const char *prefix)
{
	return name && !strncmp(name, prefix, strlen(prefix));
}

static const char *str_member(json_object *o, const char *key)
{
	return json_object_get_string(json_object_object_get(o, key));
}

/* ---- names and paths ---- */

/* A directory only we can write to (made if missing): QEMU writes where
 * our scratch images point, so nobody else may swap them for symlinks. */
static int private_dir(const char *path, struct err *e)
{
	struct stat st;
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return xerr_sys(e, QX_FAIL, errno, "cannot create %s", path);
	if (lstat(path, &st) < 0)
		return xerr_sys(e, QX_FAIL, errno, "%s", path);
	if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 022))
		return xerr(e, QX_FAIL, "%s is not a directory that only this user can write to: not putting scratch there",
			    path);
	return 0;
}

int fleece_init(struct fleece *f, struct qmpc *q, const char *qmp, const char *scratch_base, bool create_base,
		const struct vmkey *k, struct err *e)
{
	memset(f, 0, sizeof(*f));
	f->q = q;
	f->qmp = qmp;
	char real[PATH_MAX];
	struct stat st;
	int rc;
	/* the default is in /var/tmp, which anybody can write to */
	if (create_base && (rc = private_dir(scratch_base, e)) < 0)
		return rc;
	if (!realpath(scratch_base, real) || stat(real, &st) < 0)
		return xerr_sys(e, QX_USAGE, errno, "scratch directory %s", scratch_base);
	if (!S_ISDIR(st.st_mode))
		return xerr(e, QX_USAGE, "scratch directory %s is not a directory", scratch_base);
	if (strlen(real) + sizeof("/vm-") + sizeof(k->hex) + sizeof("/fleece64.qcow2") >= sizeof(f->dir))
		return xerr(e, QX_USAGE, "scratch directory path too long: %s", scratch_base);
	/* the real path: QEMU's working directory is not ours */
	snprintf(f->dir, sizeof(f->dir), "%s/vm-%s", real, k->hex);
	if (strlen(f->dir) + sizeof("/nbd.sock") <= sizeof(f->sock)) {
		snprintf(f->sock, sizeof(f->sock), "%s/nbd.sock", f->dir);
		return 0;
	}
	/* sun_path holds 108 bytes: else a private directory of ours in /tmp */
	char priv[64];
	snprintf(priv, sizeof(priv), "/tmp/quiesce-%u", (unsigned)getuid());
	if ((rc = private_dir(priv, e)) < 0)
		return rc;
	snprintf(f->sock, sizeof(f->sock), "%s/nbd-%s.sock", priv, k->hex);
	return 0;
}

void fleece_uri(const struct fleece *f, size_t i, char *out, size_t outsz)
{
	snprintf(out, outsz, "nbd+unix:///%s?socket=%s", f->d[i].export_name, f->sock);
}

int fleece_discover(struct fleece *f, struct err *e)
{
	json_object *blocks = NULL;
	int rc = qmpc_execute(f->q, "query-block", NULL, QMP_TIMEOUT_MS, &blocks, e);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < json_object_array_length(blocks); i++) {
		json_object *b = json_object_array_get_idx(blocks, i), *ins, *x;
		if (!json_object_object_get_ex(b, "inserted", &ins))
			continue; /* an empty drive (CD-ROM without a medium) */
		if (json_object_object_get_ex(ins, "ro", &x) && json_object_get_boolean(x))
			continue; /* read-only media hold nothing of the guest's state */
		if (f->n == FLEECE_MAX_DISKS) {
			rc = xerr(e, QX_SOURCE, "the VM has more than %d disks", FLEECE_MAX_DISKS);
			break;
		}
		struct fleece_disk *d = &f->d[f->n];
		const char *dev = str_member(b, "device"), *qdev = str_member(b, "qdev"), *node = str_member(ins, "node-name");
		json_object *img = json_object_object_get(ins, "image");
		if (!node || !img) {
			rc = xerr(e, QX_SOURCE, "query-block: a disk without a node name");
			break;
		}
		snprintf(d->device, sizeof(d->device), "%s", dev && *dev ? dev : qdev ? qdev : node);
		snprintf(d->node, sizeof(d->node), "%s", node);
		d->size = (uint64_t)json_object_get_int64(json_object_object_get(img, "virtual-size"));
		snprintf(d->target, sizeof(d->target), "quiesce-fleece%zu", f->n);
		snprintf(d->job, sizeof(d->job), "quiesce-job%zu", f->n);
		snprintf(d->filter, sizeof(d->filter), "quiesce-cbw%zu", f->n);
		snprintf(d->export_id, sizeof(d->export_id), "quiesce-exp%zu", f->n);
		snprintf(d->export_name, sizeof(d->export_name), "disk%zu", f->n);
		snprintf(d->image, sizeof(d->image), "%s/fleece%zu.qcow2", f->dir, f->n);
		f->n++;
	}
	json_object_put(blocks);
	if (rc == 0 && f->n == 0)
		rc = xerr(e, QX_SOURCE, "the VM at %s has no writable disks to back up", f->qmp);
	return rc;
}

/* ---- removing what is ours, by name ---- */

/* Each removal waits for QEMU's event, so the next step finds it gone (a
 * node in use by an export or a job cannot be deleted). */
static int del_export(struct qmpc *q, const char *id, struct err *e)
{
	json_object *a = json_object_new_object();
	json_object_object_add(a, "id", json_object_new_string(id));
	/* hard: a stray client must not keep the export, and with it the node
	 * and the scratch image, alive; ours is closed by now */
	json_object_object_add(a, "mode", json_object_new_string("hard"));
	int rc = qmpc_execute(q, "block-export-del", a, QMP_TIMEOUT_MS, NULL, e);
	/* one removed by someone else (hard) is listed until it is gone: QEMU
	 * says "already shutting down" (only a GenericError), so just wait */
	if (rc < 0 && strstr(e->msg, "already shutting down")) {
		memset(e, 0, sizeof(*e));
		rc = 0;
	}
	return rc < 0 ? rc : qmpc_wait_event(q, "BLOCK_EXPORT_DELETED", "id", id, EVENT_TIMEOUT_MS, NULL, e);
}

static int cancel_job(struct qmpc *q, const char *id, struct err *e)
{
	json_object *a = json_object_new_object();
	json_object_object_add(a, "device", json_object_new_string(id));
	json_object_object_add(a, "force", json_object_new_boolean(true));
	int rc = qmpc_execute(q, "block-job-cancel", a, QMP_TIMEOUT_MS, NULL, e);
	return rc < 0 ? rc : qmpc_wait_event(q, "BLOCK_JOB_CANCELLED", "device", id, EVENT_TIMEOUT_MS, NULL, e);
}

static int del_node(struct qmpc *q, const char *node, struct err *e)
{
	json_object *a = json_object_new_object();
	json_object_object_add(a, "node-name", json_object_new_string(node));
	return qmpc_execute(q, "blockdev-del", a, QMP_TIMEOUT_MS, NULL, e);
}

/* Something accepts connections at this unix socket path. */
static bool listening(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path))
		return false;
	strcpy(a.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return false;
	bool yes = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EAGAIN;
	close(fd);
	return yes;
}

struct removal {
	int removed, failed;
	struct err first; /* the first failure */
};

static void note(struct removal *rm, int rc, const struct err *e)
{
	if (rc == 0) {
		rm->removed++;
		return;
	}
	if (!rm->failed++)
		rm->first = *e;
}

/* A list from QEMU, each entry's `key` starting with `prefix`: fn on it. */
static void each_ours(struct fleece *f, const char *query, json_object *args, const char *key, const char *prefix,
		      int (*fn)(struct qmpc *, const char *, struct err *), struct removal *rm)
{
	json_object *list = NULL;
	struct err e = {0};
	if (qmpc_execute(f->q, query, args, QMP_TIMEOUT_MS, &list, &e) < 0) {
		note(rm, -1, &e);
		return;
	}
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		const char *id = str_member(json_object_array_get_idx(list, i), key);
		if (!ours(id, prefix))
			continue;
		memset(&e, 0, sizeof(e));
		note(rm, fn(f->q, id, &e), &e);
	}
	json_object_put(list);
}

static json_object *flat_args(void)
{
	json_object *a = json_object_new_object(); /* each node once, without its backing chain */
	json_object_object_add(a, "flat", json_object_new_boolean(true));
	return a;
}

/* The files QEMU's block nodes have open (NULL if it cannot say). */
static json_object *files_in_use(struct fleece *f)
{
	json_object *list = NULL, *files = json_object_new_object();
	struct err e = {0};
	if (qmpc_execute(f->q, "query-named-block-nodes", flat_args(), QMP_TIMEOUT_MS, &list, &e) < 0) {
		json_object_put(files);
		return NULL;
	}
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		const char *file = str_member(json_object_array_get_idx(list, i), "file");
		if (file)
			json_object_object_add(files, file, NULL);
	}
	json_object_put(list);
	return files;
}

/* Exports, then jobs, then nodes (each in use by the one before), then
 * the NBD server if it is the one at our socket, then scratch files no
 * node has open.  `rmdir_too`: the scratch directory goes as well. */
static void remove_ours(struct fleece *f, bool rmdir_too, struct removal *rm)
{
	each_ours(f, "query-block-exports", NULL, "id", "quiesce-exp", del_export, rm);
	each_ours(f, "query-block-jobs", NULL, "device", "quiesce-job", cancel_job, rm);
	each_ours(f, "query-named-block-nodes", flat_args(), "node-name", "quiesce-", del_node, rm);
	if (listening(f->sock)) {
		/* only our runs put a server at this path, and the VM's lock says
		 * no live run of ours is using it */
		struct err e = {0};
		note(rm, qmpc_execute(f->q, "nbd-server-stop", NULL, QMP_TIMEOUT_MS, NULL, &e), &e);
	}
	unlink(f->sock);
	DIR *d = opendir(f->dir);
	if (!d)
		return;
	json_object *busy = files_in_use(f);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%.3800s/%.200s", f->dir, de->d_name);
		/* never unlink an image QEMU still writes to: its space would be
		 * lost until QEMU closes it, and the next run could not see it */
		if (!busy || json_object_object_get_ex(busy, path, NULL)) {
			struct err e = {0};
			xerr(&e, QX_FAIL, "QEMU still has %s open", path);
			note(rm, -1, &e);
			continue;
		}
		unlink(path);
	}
	closedir(d);
	json_object_put(busy);
	if (rmdir_too)
		rmdir(f->dir);
}

int fleece_clear_leftovers(struct fleece *f, struct err *e)
{
	struct removal rm = {0};
	remove_ours(f, false, &rm);
	if (rm.removed)
		fprintf(stderr, "quiesce backup: removed %d leftover%s of an earlier run from QEMU\n", rm.removed,
			rm.removed == 1 ? "" : "s");
	if (rm.failed)
		return xerr(e, QX_FAIL, "an earlier run left parts in QEMU that cannot be removed (%s); nothing was done",
			    rm.first.msg);
	return 0;
}

/* ---- before freezing ---- */

static int run_cmd(char *const argv[], struct err *e)
{
	pid_t pid;
	int st;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc)
		return xerr_sys(e, QX_FAIL, rc, "cannot run %s", argv[0]);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return xerr_sys(e, QX_FAIL, errno, "waitpid");
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : xerr(e, QX_FAIL, "%s failed", argv[0]);
}

int fleece_prepare(struct fleece *f, struct err *e)
{
	json_object *st = NULL;
	if (qmpc_execute(f->q, "query-status", NULL, QMP_TIMEOUT_MS, &st, e) < 0)
		return -QX_FAIL;
	f->vm_was_running = !strcmp(str_member(st, "status") ?: "", "running");
	json_object_put(st);
	int rc = private_dir(f->dir, e);
	for (size_t i = 0; i < f->n && rc == 0; i++) {
		struct fleece_disk *d = &f->d[i];
		char size[32];
		snprintf(size, sizeof(size), "%llu", (unsigned long long)d->size);
		char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", d->image, size, NULL};
		if ((rc = run_cmd(argv, e)) < 0)
			break;
		json_object *a = json_object_new_object(), *file = json_object_new_object();
		json_object_object_add(file, "driver", json_object_new_string("file"));
		json_object_object_add(file, "filename", json_object_new_string(d->image));
		json_object_object_add(a, "driver", json_object_new_string("qcow2"));
		json_object_object_add(a, "node-name", json_object_new_string(d->target));
		json_object_object_add(a, "file", file);
		json_object_object_add(a, "backing", json_object_new_string(d->node));
		rc = qmpc_execute(f->q, "blockdev-add", a, QMP_TIMEOUT_MS, NULL, e);
	}
	if (rc < 0)
		return rc;
	json_object *a = json_object_new_object(), *addr = json_object_new_object(), *data = json_object_new_object();
	json_object_object_add(data, "path", json_object_new_string(f->sock));
	json_object_object_add(addr, "type", json_object_new_string("unix"));
	json_object_object_add(addr, "data", data);
	json_object_object_add(a, "addr", addr);
	if ((rc = qmpc_execute(f->q, "nbd-server-start", a, QMP_TIMEOUT_MS, NULL, e)) < 0)
		return rc;
	fault_hold("nbd-started", &cli_interrupted);
	for (size_t i = 0; i < f->n && rc == 0; i++) {
		struct fleece_disk *d = &f->d[i];
		a = json_object_new_object();
		json_object_object_add(a, "type", json_object_new_string("nbd"));
		json_object_object_add(a, "id", json_object_new_string(d->export_id));
		json_object_object_add(a, "node-name", json_object_new_string(d->target));
		json_object_object_add(a, "name", json_object_new_string(d->export_name));
		json_object_object_add(a, "writable", json_object_new_boolean(false));
		rc = qmpc_execute(f->q, "block-export-add", a, QMP_TIMEOUT_MS, NULL, e);
	}
	return rc;
}

/* ---- how much the fleeces may grow ---- */

struct extents {
	uint64_t next;	      /* where the answers so far end */
	uint64_t counted_end; /* granules below this are counted */
	uint64_t bytes;
};

static int extent_cb(void *user, const char *metacontext, uint64_t offset, uint32_t *entries, size_t nr,
		     int *error)
{
	(void)error;
	struct extents *x = user;
	if (strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
		return 0;
	for (size_t i = 0; i + 1 < nr; i += 2) {
		uint64_t len = entries[i];
		if (!(entries[i + 1] & LIBNBD_STATE_ZERO)) {
			/* a copy-before-write copies whole granules */
			uint64_t a = offset / CBW_GRANULE * CBW_GRANULE;
			uint64_t b = (offset + len + CBW_GRANULE - 1) / CBW_GRANULE * CBW_GRANULE;
			if (a < x->counted_end)
				a = x->counted_end;
			if (b > a) {
				x->bytes += b - a;
				x->counted_end = b;
			}
		}
		offset += len;
	}
	x->next = offset;
	return 0;
}

/* The data (not zero) a copy-before-write could copy from disk i's view:
 * the guest can overwrite each such granule at most once into the fleece;
 * a granule that reads as zero is copied as a zero cluster (no data). */
static int measure(struct fleece *f, size_t i, uint64_t *data, struct err *e)
{
	struct fleece_disk *d = &f->d[i];
	char uri[PATH_MAX + 64];
	fleece_uri(f, i, uri, sizeof(uri));
	struct nbd_handle *h = nbd_create();
	if (!h)
		return xerr(e, QX_FAIL, "out of memory");
	nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION);
	int rc = 0;
	struct extents x = {0};
	if (nbd_connect_uri(h, uri) < 0) {
		rc = xerr(e, QX_SOURCE, "cannot open %s: %s", uri, nbd_get_error());
	} else if (nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) != 1) {
		x.bytes = d->size; /* cannot tell: the whole disk */
	} else {
		while (x.next < d->size && rc == 0) {
			uint64_t off = x.next, left = d->size - off;
			if (nbd_block_status(h, left < (1ull << 31) ? left : (1ull << 31), off,
					     (nbd_extent_callback){.callback = extent_cb, .user_data = &x}, 0) < 0)
				rc = xerr(e, QX_SOURCE, "block status of %s failed: %s", uri, nbd_get_error());
			else if (x.next <= off)
				rc = xerr(e, QX_SOURCE, "block status of %s made no progress at %llu", uri,
					  (unsigned long long)off);
		}
		nbd_shutdown(h, 0);
	}
	nbd_close(h);
	*data = x.bytes;
	return rc;
}

static uint64_t worst_case(const struct fleece_disk *d, uint64_t data)
{
	/* qcow2 metadata: an 8-byte L2 entry per 64 KiB cluster of the disk,
	 * 2-byte refcounts per cluster of the image, header, L1 and rounding */
	return data + d->size / 8192 + data / 32768 + (1u << 20);
}

static uint64_t used(const struct fleece_disk *d)
{
	struct stat st;
	return stat(d->image, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

/* Free room of the scratch filesystem and what the fleeces may still
 * grow; false if the room cannot be read. */
static bool room(struct fleece *f, uint64_t *free_bytes, uint64_t *growth)
{
	struct statvfs sv;
	if (statvfs(f->dir, &sv) < 0)
		return false;
	*free_bytes = (uint64_t)sv.f_bavail * sv.f_frsize; /* QEMU may not be root */
	*growth = 0;
	for (size_t i = 0; i < f->n; i++) {
		uint64_t u = used(&f->d[i]);
		*growth += f->d[i].worst > u ? f->d[i].worst - u : 0;
	}
	return true;
}

static double mib(uint64_t b)
{
	return (double)b / (1 << 20);
}

int fleece_check_room(struct fleece *f, struct err *e)
{
	uint64_t free_bytes, growth;
	for (size_t i = 0; i < f->n; i++) {
		uint64_t data;
		int rc = measure(f, i, &data, e);
		if (rc < 0)
			return rc;
		f->d[i].worst = worst_case(&f->d[i], data);
	}
	if (!room(f, &free_bytes, &growth))
		return xerr_sys(e, QX_FAIL, errno, "cannot read the free room of %s", f->dir);
	if (free_bytes < growth)
		return xerr(e, QX_NOSPC,
			    "the scratch directory %s has %.1f MiB free, but while the disks are read the guest may "
			    "change up to %.1f MiB of data that must be copied there first (the disks' data, plus "
			    "metadata); a full scratch would fail the guest's writes, so nothing was frozen or backed "
			    "up (give --scratch-dir a filesystem with more room)",
			    f->dir, mib(free_bytes), mib(growth));
	return 0;
}

/* ---- the point in time ---- */

int fleece_fix(struct fleece *f, struct err *e)
{
	json_object *actions = json_object_new_array();
	for (size_t i = 0; i < f->n; i++) {
		json_object *act = json_object_new_object(), *data = json_object_new_object();
		json_object_object_add(data, "device", json_object_new_string(f->d[i].node));
		json_object_object_add(data, "target", json_object_new_string(f->d[i].target));
		json_object_object_add(data, "sync", json_object_new_string("none"));
		json_object_object_add(data, "job-id", json_object_new_string(f->d[i].job));
		/* the job's copy-before-write filter, named: a guest write error
		 * reports the node above the disk, which is then this one */
		json_object_object_add(data, "filter-node-name", json_object_new_string(f->d[i].filter));
		json_object_object_add(act, "type", json_object_new_string("blockdev-backup"));
		json_object_object_add(act, "data", data);
		json_object_array_add(actions, act);
	}
	json_object *a = json_object_new_object();
	json_object_object_add(a, "actions", actions);
	return qmpc_execute(f->q, "transaction", a, QMP_TIMEOUT_MS, NULL, e);
}

/* ---- the watch during the read (the watcher thread owns f->q) ---- */

static void resume_if_paused_by_us(struct fleece *f)
{
	json_object *st = NULL;
	struct err e = {0};
	if (!f->vm_was_running || f->resumed || qmpc_execute(f->q, "query-status", NULL, QMP_TIMEOUT_MS, &st, &e) < 0)
		return;
	bool io_error = !strcmp(str_member(st, "status") ?: "", "io-error");
	json_object_put(st);
	if (!io_error)
		return;
	/* With werror=enospc (the default) a failed write pauses the VM and is
	 * retried on resume.  Our jobs are gone, so the retry goes straight to
	 * the disk; if the error was not ours, it pauses the VM again. */
	f->resumed = true;
	if (qmpc_execute(f->q, "cont", NULL, QMP_TIMEOUT_MS, NULL, &e) == 0)
		fprintf(stderr, "quiesce backup: warning: the VM had paused on a write error while the backup ran; "
				"quiesce removed its copy-before-write jobs and resumed it\n");
	else
		fprintf(stderr, "quiesce backup: WARNING: the VM paused on a write error and cannot be resumed: %s\n",
			e.msg);
}

static void cancel_jobs(struct fleece *f)
{
	for (size_t i = 0; i < f->n; i++) {
		struct err e = {0};
		cancel_job(f->q, f->d[i].job, &e); /* one already gone says so: fine */
	}
}

/* The views are lost: say why (once), and take the jobs away at once so
 * that no copy-before-write, and so no guest write, can fail. */
static void lose(struct fleece *f, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void lose(struct fleece *f, int code, const char *fmt, ...)
{
	if (atomic_load(&f->lost))
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->why.msg, sizeof(f->why.msg), fmt, ap);
	va_end(ap);
	f->why.code = code;
	atomic_store(&f->lost, true);
	cancel_jobs(f);
	resume_if_paused_by_us(f);
}

static const struct fleece_disk *disk_of(struct fleece *f, json_object *data)
{
	const char *dev = str_member(data, "device"), *node = str_member(data, "node-name");
	for (size_t i = 0; i < f->n; i++)
		if ((dev && (!strcmp(dev, f->d[i].job) || !strcmp(dev, f->d[i].device))) ||
		    (node && (!strcmp(node, f->d[i].node) || !strcmp(node, f->d[i].filter))))
			return &f->d[i];
	return NULL;
}

static bool paused_on_error(struct fleece *f)
{
	json_object *st = NULL;
	struct err e = {0};
	if (qmpc_execute(f->q, "query-status", NULL, QMP_TIMEOUT_MS, &st, &e) < 0)
		return false;
	bool yes = !strcmp(str_member(st, "status") ?: "", "io-error");
	json_object_put(st);
	return yes;
}

static void on_event(struct fleece *f, json_object *ev)
{
	const char *name = str_member(ev, "event") ?: "";
	json_object *data = json_object_object_get(ev, "data");
	const struct fleece_disk *d = disk_of(f, data);
	if (d && (!strcmp(name, "BLOCK_JOB_CANCELLED") || !strcmp(name, "BLOCK_JOB_COMPLETED") ||
		  !strcmp(name, "BLOCK_JOB_ERROR")))
		lose(f, QX_FAIL,
		     "the copy-before-write job of %s ended (%s) while it was read: its export would show live data, "
		     "not the point in time; no snapshot was written",
		     d->device, name);
	else if (!strcmp(name, "BLOCK_IO_ERROR"))
		/* any disk: with the filter above it, which node QEMU names can
		 * vary, and a failed guest write while our jobs run may be ours */
		lose(f, QX_FAIL, "a guest %s on %s failed (%s) while the disks were read; no snapshot was written",
		     str_member(data, "operation") ?: "write", d ? d->device : str_member(data, "node-name") ?: "a disk",
		     str_member(data, "reason") ?: "I/O error");
	else if (!strcmp(name, "STOP") && paused_on_error(f))
		lose(f, QX_FAIL, "the VM paused on an I/O error while the disks were read; no snapshot was written");
	else if (!strcmp(name, "STOP"))
		resume_if_paused_by_us(f); /* a loss resumes; a pause after it is rechecked (once) */
	else if (!strcmp(name, "SHUTDOWN"))
		lose(f, QX_SOURCE, "the VM shut down while its disks were read; no snapshot was written");
}

static void check_room(struct fleece *f)
{
	uint64_t free_bytes, growth;
	if (room(f, &free_bytes, &growth) && free_bytes < growth)
		lose(f, QX_NOSPC,
		     "the scratch directory %s is filling up (%.1f MiB free, the guest may still change %.1f MiB): "
		     "the backup was stopped before a guest write could fail; no snapshot was written",
		     f->dir, mib(free_bytes), mib(growth));
}

static void *watch(void *arg)
{
	struct fleece *f = arg;
	bool skip_room = fault_skip("room-watch");
	/* the view is fixed now: measure it (the pre-freeze figure could be
	 * short by what the guest wrote in between) */
	for (size_t i = 0; i < f->n; i++) {
		uint64_t data;
		struct err e = {0};
		if (measure(f, i, &data, &e) == 0 && worst_case(&f->d[i], data) > f->d[i].worst)
			f->d[i].worst = worst_case(&f->d[i], data);
	}
	while (!atomic_load(&f->stop)) {
		json_object *ev = NULL;
		struct err e = {0};
		int rc = qmpc_next_event(f->q, WATCH_TICK_MS, &ev, &e);
		if (rc == 0) {
			on_event(f, ev);
			json_object_put(ev);
		} else if (rc < 0) {
			lose(f, QX_FAIL, "the QMP connection failed while the disks were read (%s); no snapshot was written",
			     e.msg);
			break;
		}
		if (!atomic_load(&f->lost) && !skip_room)
			check_room(f);
	}
	return NULL;
}

int fleece_watch_start(struct fleece *f, struct err *e)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay the main thread's */
	int rc = pthread_create(&f->watcher, NULL, watch, f);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc)
		return xerr_sys(e, QX_FAIL, rc, "cannot start the watcher thread");
	f->watching = true;
	return 0;
}

int fleece_check(struct fleece *f, struct err *e)
{
	if (!atomic_load(&f->lost))
		return 0;
	*e = f->why;
	return -f->why.code;
}

static void watch_stop(struct fleece *f)
{
	if (!f->watching)
		return;
	atomic_store(&f->stop, true);
	pthread_join(f->watcher, NULL);
	f->watching = false;
}

int fleece_finish(struct fleece *f, struct err *e)
{
	watch_stop(f);
	if (fleece_check(f, e) < 0)
		return -e->code;
	json_object *jobs = NULL;
	int rc = qmpc_execute(f->q, "query-block-jobs", NULL, QMP_TIMEOUT_MS, &jobs, e);
	for (size_t i = 0; i < f->n && rc == 0; i++) {
		json_object *job = NULL;
		for (size_t k = 0; k < json_object_array_length(jobs) && !job; k++)
			if (!strcmp(str_member(json_object_array_get_idx(jobs, k), "device") ?: "", f->d[i].job))
				job = json_object_array_get_idx(jobs, k);
		const char *status = str_member(job, "status") ?: "gone", *io = str_member(job, "io-status") ?: "ok";
		bool alive = !strcmp(status, "running") || !strcmp(status, "paused") || !strcmp(status, "ready") ||
			     !strcmp(status, "standby");
		if (!alive || strcmp(io, "ok") != 0)
			rc = xerr(e, QX_FAIL,
				  "the copy-before-write job of %s ended before the read did (status %s, I/O status %s): "
				  "its export may have shown live data, not the point in time; no snapshot was written",
				  f->d[i].device, status, io);
	}
	json_object_put(jobs);
	if (rc == 0)
		cancel_jobs(f); /* done: no copy-before-write while the manifest is stored */
	return rc;
}

void fleece_teardown(struct fleece *f)
{
	if (!f->q)
		return;
	watch_stop(f);
	struct removal rm = {0};
	remove_ours(f, true, &rm);
	resume_if_paused_by_us(f);
	if (rm.failed)
		fprintf(stderr, "quiesce backup: warning: cleanup in QEMU: %s%s\n", rm.first.msg,
			rm.failed > 1 ? " (and more)" : "");
}
