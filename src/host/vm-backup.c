// SPDX-License-Identifier: MIT
/*
 * vm-backup: `quiesce backup --qmp ... --qga ...` — an application-
 * consistent backup of a running QEMU VM.
 *
 *   before freezing   everything slow or fallible: the repository lock, a
 *                     leftover freeze from a dead run (thawed first), the
 *                     agent's liveness (resync with a random id), disk
 *                     discovery, scratch images, fleecing nodes, the NBD
 *                     server and exports;
 *   frozen            guest-fsfreeze-freeze, then ONE QMP transaction that
 *                     starts a copy-before-write job (blockdev-backup
 *                     sync=none) from every disk into its fleecing node —
 *                     the point in time for all disks at once — then thaw;
 *   after             read every fleecing export over NBD into the
 *                     repository (only allocated, non-zero extents), and
 *                     tear down jobs, exports, nodes and scratch files.
 *
 * The window is the guest's own freeze and thaw plus one QMP round trip.
 * Every agent and QMP call has a deadline.  A marker is written before the
 * freeze and removed once a thaw is confirmed with guest-fsfreeze-status;
 * every exit path (errors, timeouts, SIGINT/SIGTERM) thaws, and a run that
 * finds a marker thaws before anything else.  The snapshot records the
 * consistency reached and why (docs/vm-backup.md).
 */
#include "backup.h"
#include "fault.h"
#include "gac.h"
#include "jsock.h"
#include "qmpc.h"
#include "thawmark.h"
#include "xerr.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define QMP_TIMEOUT_MS 10000
#define TEARDOWN_TIMEOUT_MS 30000

struct vmdisk {
	char device[128]; /* QEMU's name for it (query-block "device" or "qdev") */
	char node[256];	  /* the node the guest writes through */
	uint64_t size;
	char fleece[32], job[32], export_id[32], export_name[32];
	char scratch[PATH_MAX + 64];
	bool created, added, exported, job_started;
};

struct vmb {
	struct cli *c;
	struct vm_backup_opts *o;
	const char *vm;
	struct qmpc *q;
	struct gac *g;
	struct vmdisk d[MAX_DISKS];
	size_t n;
	char scratch[PATH_MAX - 128], sockdir[64], sock[108]; /* sock: sun_path's size */
	bool scratch_made, nbd_started;
	int scratch_lock; /* flock held on <scratch>/lock for the run: a dead run's dir is unlocked */
	struct vmkey key; /* the VM's identity: its lock and marker */
	struct thawmark mark;
	bool maybe_frozen, has_report;
	bool thaw_gave_up; /* one thaw budget per run, spent: say how to thaw instead */
	/* what happened */
	const char *level;
	char reason[512];
	int fs_frozen, fs_thawed;
	int64_t t_freeze_sent, t_frozen, t_txn_done, t_thawed;
	char id[64], when[32]; /* the snapshot's name and time: the point in time */
	json_object *report; /* quiesce-freeze-report, if the agent has it */
};

int vm_backup_option(struct cli *c, struct vm_backup_opts *o, int opt, const char *arg)
{
	char *end;
	long v;
	switch (opt) {
	case OPT_QMP:
		o->qmp = arg;
		return 1;
	case OPT_QGA:
		o->qga = arg;
		return 1;
	case OPT_SCRATCH:
		o->scratch = arg;
		return 1;
	case OPT_MOUNTPOINT:
		if (o->nmountpoints == sizeof(o->mountpoints) / sizeof(o->mountpoints[0]))
			return cli_usage(c, "too many --mountpoint");
		o->mountpoints[o->nmountpoints++] = arg;
		return 1;
	case OPT_CONSISTENCY:
		o->consistency_set = true;
		if (!strcmp(arg, "prefer-app"))
			o->policy = POLICY_PREFER_APP;
		else if (!strcmp(arg, "require-app"))
			o->policy = POLICY_REQUIRE_APP;
		else if (!strcmp(arg, "crash"))
			o->policy = POLICY_CRASH;
		else
			return cli_usage(c, "--consistency is require-app, prefer-app or crash, not '%s'", arg);
		return 1;
	case OPT_FREEZE_TIMEOUT:
	case OPT_AGENT_TIMEOUT:
		v = strtol(arg, &end, 10);
		if (*end || v < 1 || v > 3600)
			return cli_usage(c, "--%s wants seconds (1-3600), not '%s'",
					 opt == OPT_FREEZE_TIMEOUT ? "freeze-timeout" : "agent-timeout", arg);
		*(opt == OPT_FREEZE_TIMEOUT ? &o->freeze_timeout_ms : &o->agent_timeout_ms) = (int)v * 1000;
		return 1;
	default:
		return 0;
	}
}

static void default_timeouts(struct vm_backup_opts *o)
{
	if (!o->freeze_timeout_ms)
		o->freeze_timeout_ms = 60000; /* hooks included: a database CHECKPOINT can take a while */
	if (!o->agent_timeout_ms)
		o->agent_timeout_ms = 5000;
}

/* How long to keep trying to thaw.  Never less than the freeze was given:
 * after a freeze that timed out, the agent may still be inside the freeze
 * hook (the stock qemu-ga has no hook timeout and answers nothing until the
 * hook is done), and it is the thaw queued behind it that frees the guest. */
static int thaw_budget_ms(const struct vm_backup_opts *o)
{
	return o->freeze_timeout_ms > 3 * o->agent_timeout_ms ? o->freeze_timeout_ms : 3 * o->agent_timeout_ms;
}

/* ---- before freezing ---- */

/* The VM's identity, for its lock and thaw marker: the same whichever
 * monitor or agent socket a run is given.  QEMU's UUID (-uuid; libvirt
 * always sets one) if it has one; else the QEMU process itself, found from
 * a vCPU thread's id (pid and start time, so a reused pid is another VM);
 * else, when neither can be had (no vCPUs, another pid namespace), the
 * monitor socket's real path. */
static int vm_identify(struct qmpc *q, const char *qmp, struct vmkey *k, struct err *e)
{
	json_object *r = NULL;
	char text[PATH_MAX + 64] = "";
	int rc = qmpc_execute(q, "query-uuid", NULL, QMP_TIMEOUT_MS, &r, e);
	if (rc < 0)
		return rc;
	const char *uuid = json_object_get_string(json_object_object_get(r, "UUID"));
	if (uuid && strspn(uuid, "0-") != strlen(uuid))
		snprintf(text, sizeof(text), "uuid:%s", uuid);
	json_object_put(r);
	r = NULL;
	if (!text[0] && qmpc_execute(q, "query-cpus-fast", NULL, QMP_TIMEOUT_MS, &r, e) == 0) {
		json_object *tid = json_object_object_get(json_object_array_get_idx(r, 0), "thread-id");
		char path[64], buf[1024];
		long pid = -1;
		unsigned long long start = 0;
		snprintf(path, sizeof(path), "/proc/%lld/status", (long long)json_object_get_int64(tid));
		FILE *f = tid ? fopen(path, "re") : NULL;
		while (f && fgets(buf, sizeof(buf), f))
			if (sscanf(buf, "Tgid: %ld", &pid) == 1)
				break;
		if (f)
			fclose(f);
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		f = pid > 0 ? fopen(path, "re") : NULL;
		/* field 22, starttime, counted after the ")" that ends the command name */
		if (f && fgets(buf, sizeof(buf), f) && strrchr(buf, ')') &&
		    sscanf(strrchr(buf, ')') + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
			   &start) == 1)
			snprintf(text, sizeof(text), "qemu:%ld:%llu", pid, start);
		if (f)
			fclose(f);
	}
	json_object_put(r);
	memset(e, 0, sizeof(*e));
	if (!text[0]) {
		char real[PATH_MAX];
		snprintf(text, sizeof(text), "qmp:%s", realpath(qmp, real) ? real : qmp);
	}
	vmkey_set(k, text);
	return 0;
}

static bool ours(const char *name, const char *prefix)
{
	return name && !strncmp(name, prefix, strlen(prefix));
}

/* Removing what a run put into QEMU; shared by teardown and leftover cleanup.
 * Each waits for QEMU's event, so the next step (a node in use by an export
 * or a job cannot be deleted) finds it gone.  Failures are reported, not fatal. */
static void warn_qmp(const struct err *e)
{
	fprintf(stderr, "quiesce backup: warning: cleanup in QEMU: %s\n", e->msg);
}

static void qmp_del_export(struct qmpc *q, const char *id)
{
	struct err e = {0};
	json_object *a = json_object_new_object();
	json_object_object_add(a, "id", json_object_new_string(id));
	int rc = qmpc_execute(q, "block-export-del", a, QMP_TIMEOUT_MS, NULL, &e);
	/* one removed by someone else (hard) is listed until it is gone: QEMU
	 * says "already shutting down" (only a GenericError), so just wait */
	if (rc < 0 && strstr(e.msg, "already shutting down")) {
		memset(&e, 0, sizeof(e));
		rc = 0;
	}
	if (rc < 0 || qmpc_wait_event(q, "BLOCK_EXPORT_DELETED", "id", id, TEARDOWN_TIMEOUT_MS, NULL, &e) < 0)
		warn_qmp(&e);
}

static void qmp_cancel_job(struct qmpc *q, const char *id)
{
	struct err e = {0};
	json_object *a = json_object_new_object();
	json_object_object_add(a, "device", json_object_new_string(id));
	json_object_object_add(a, "force", json_object_new_boolean(true));
	if (qmpc_execute(q, "block-job-cancel", a, QMP_TIMEOUT_MS, NULL, &e) < 0 ||
	    qmpc_wait_event(q, "BLOCK_JOB_CANCELLED", "device", id, TEARDOWN_TIMEOUT_MS, NULL, &e) < 0)
		warn_qmp(&e);
}

static int qmp_del_node(struct qmpc *q, const char *node)
{
	struct err e = {0};
	json_object *a = json_object_new_object();
	json_object_object_add(a, "node-name", json_object_new_string(node));
	int rc = qmpc_execute(q, "blockdev-del", a, QMP_TIMEOUT_MS, NULL, &e);
	if (rc < 0)
		warn_qmp(&e);
	return rc;
}

/* Whether QEMU's answer to `query` lists an entry whose `key` is `id`
 * (true when it cannot tell: then the removal is tried and may warn). */
static bool listed(struct qmpc *q, const char *query, const char *key, const char *id)
{
	struct err e = {0};
	json_object *list = NULL;
	if (qmpc_execute(q, query, NULL, QMP_TIMEOUT_MS, &list, &e) < 0)
		return true;
	bool found = false;
	for (size_t i = 0; i < json_object_array_length(list) && !found; i++)
		found = !strcmp(json_object_get_string(json_object_object_get(json_object_array_get_idx(list, i), key)) ?: "",
				id);
	json_object_put(list);
	return found;
}

/* A run killed after it set up fleecing leaves nodes, a job, exports and an
 * NBD server in QEMU, and scratch images on disk: remove what bears our names. */
static void clear_leftovers(struct vmb *v)
{
	struct err e = {0};
	json_object *list = NULL;
	int found = 0;
	if (qmpc_execute(v->q, "query-block-exports", NULL, QMP_TIMEOUT_MS, &list, &e) == 0) {
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			const char *id = json_object_get_string(json_object_object_get(json_object_array_get_idx(list, i), "id"));
			if (!ours(id, "quiesce-exp"))
				continue;
			qmp_del_export(v->q, id);
			found++;
		}
		if (found)
			qmpc_execute(v->q, "nbd-server-stop", NULL, QMP_TIMEOUT_MS, NULL, &e);
	}
	json_object_put(list);
	list = NULL;
	if (qmpc_execute(v->q, "query-block-jobs", NULL, QMP_TIMEOUT_MS, &list, &e) == 0) {
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			const char *id = json_object_get_string(json_object_object_get(json_object_array_get_idx(list, i), "device"));
			if (!ours(id, "quiesce-job"))
				continue;
			qmp_cancel_job(v->q, id);
			found++;
		}
	}
	json_object_put(list);
	list = NULL;
	json_object *flat = json_object_new_object(); /* each node once, without its backing chain */
	json_object_object_add(flat, "flat", json_object_new_boolean(true));
	if (qmpc_execute(v->q, "query-named-block-nodes", flat, QMP_TIMEOUT_MS, &list, &e) == 0) {
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			json_object *n = json_object_array_get_idx(list, i);
			const char *node = json_object_get_string(json_object_object_get(n, "node-name"));
			if (!ours(node, "quiesce-fleece"))
				continue;
			char file[PATH_MAX] = "";
			const char *f = json_object_get_string(json_object_object_get(json_object_object_get(n, "image"), "filename"));
			if (f)
				snprintf(file, sizeof(file), "%s", f);
			if (qmp_del_node(v->q, node) == 0 && ours(strrchr(file, '/') ? strrchr(file, '/') + 1 : "", "quiesce-fleece")) {
				unlink(file);
				*strrchr(file, '/') = '\0';
				rmdir(file); /* the run's scratch directory, once empty */
			}
			found++;
		}
	}
	json_object_put(list);
	if (found)
		fprintf(stderr, "quiesce backup: removed %d leftover%s of an earlier run from QEMU\n", found,
			found == 1 ? "" : "s");
}

static int discover_disks(struct vmb *v)
{
	json_object *blocks = NULL;
	int rc = qmpc_execute(v->q, "query-block", NULL, QMP_TIMEOUT_MS, &blocks, &v->c->err);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < json_object_array_length(blocks); i++) {
		json_object *b = json_object_array_get_idx(blocks, i), *ins, *x;
		if (!json_object_object_get_ex(b, "inserted", &ins))
			continue; /* an empty drive (CD-ROM without a medium) */
		if (json_object_object_get_ex(ins, "ro", &x) && json_object_get_boolean(x))
			continue; /* read-only media hold nothing of the guest's state */
		if (v->n == MAX_DISKS) {
			rc = xerr(&v->c->err, QX_SOURCE, "the VM has more than %d disks", MAX_DISKS);
			break;
		}
		struct vmdisk *d = &v->d[v->n];
		const char *dev = json_object_get_string(json_object_object_get(b, "device"));
		const char *qdev = json_object_get_string(json_object_object_get(b, "qdev"));
		const char *node = json_object_get_string(json_object_object_get(ins, "node-name"));
		json_object *img = json_object_object_get(ins, "image");
		if (!node || !img) {
			rc = xerr(&v->c->err, QX_SOURCE, "query-block: a disk without a node name");
			break;
		}
		snprintf(d->device, sizeof(d->device), "%s", dev && *dev ? dev : qdev ? qdev : node);
		snprintf(d->node, sizeof(d->node), "%s", node);
		d->size = (uint64_t)json_object_get_int64(json_object_object_get(img, "virtual-size"));
		snprintf(d->fleece, sizeof(d->fleece), "quiesce-fleece%zu", v->n);
		snprintf(d->job, sizeof(d->job), "quiesce-job%zu", v->n);
		snprintf(d->export_id, sizeof(d->export_id), "quiesce-exp%zu", v->n);
		snprintf(d->export_name, sizeof(d->export_name), "disk%zu", v->n);
		v->n++;
	}
	json_object_put(blocks);
	if (rc == 0 && v->n == 0)
		rc = xerr(&v->c->err, QX_SOURCE, "the VM at %s has no writable disks to back up", v->o->qmp);
	return rc;
}

static void set_level(struct vmb *v, const char *level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_level(struct vmb *v, const char *level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	v->level = level;
	vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
}

/* No app consistency possible: under prefer-app say so and go on crash-consistent. */
static int degrade(struct vmb *v, const char *why)
{
	if (v->o->policy == POLICY_REQUIRE_APP)
		return xerr(&v->c->err, QX_CONSISTENCY, "%s; --consistency require-app: nothing was backed up", why);
	fprintf(stderr, "quiesce backup: warning: %s; this backup is only crash-consistent\n", why);
	set_level(v, "crash", "%s", why);
	return 0;
}

/* Between the steps before the freeze: a signal stops the run there. */
static int interrupted(struct vmb *v, const char *when)
{
	if (!cli_interrupted)
		return 0;
	return xerr(&v->c->err, QX_INTR, "interrupted %s; nothing was backed up", when);
}

static int check_mountpoints(struct vmb *v)
{
	if (!v->o->nmountpoints)
		return 0;
	json_object *fs = NULL;
	int rc = gac_execute(v->g, "guest-get-fsinfo", NULL, v->o->agent_timeout_ms, &fs, &v->c->err);
	if (rc < 0)
		return rc;
	for (size_t k = 0; k < v->o->nmountpoints && rc == 0; k++) {
		bool found = false;
		for (size_t i = 0; i < json_object_array_length(fs) && !found; i++) {
			const char *mp = json_object_get_string(
				json_object_object_get(json_object_array_get_idx(fs, i), "mountpoint"));
			found = mp && !strcmp(mp, v->o->mountpoints[k]);
		}
		if (!found)
			rc = xerr(&v->c->err, QX_USAGE, "the guest has no filesystem mounted at %s; nothing was done",
				  v->o->mountpoints[k]);
	}
	json_object_put(fs);
	return rc;
}

/* A freeze left behind by a run that died inside its window: thaw it. */
static int thaw_leftover(struct vmb *v)
{
	char *was = thawmark_read(&v->mark);
	if (!was)
		return 0;
	int thawed;
	struct err e = {0};
	if (gac_thaw_confirmed(v->g, thaw_budget_ms(v->o), v->o->agent_timeout_ms, &thawed, &e) < 0) {
		int rc = xerr(&v->c->err, QX_FAIL, "an earlier run left this guest possibly frozen (%s) and it cannot be thawed: %s",
			      was, e.msg);
		free(was);
		return rc;
	}
	fprintf(stderr, "quiesce backup: thawed a guest left frozen by an earlier run (%s): %d filesystem%s\n", was,
		thawed, thawed == 1 ? "" : "s");
	free(was);
	thawmark_remove(&v->mark);
	return 0;
}

static int connect_agent(struct vmb *v)
{
	struct err e = {0};
	if (!v->o->qga)
		return degrade(v, "no guest agent socket given (--qga)");
	if (gac_open(v->o->qga, v->o->agent_timeout_ms, &v->g, &e) < 0) {
		/* A guest whose agent is gone may still be frozen by us: nothing to do but say so. */
		char why[600];
		snprintf(why, sizeof(why), "no guest agent answered at %s (%s)", v->o->qga, e.msg);
		char *was = thawmark_read(&v->mark);
		if (was)
			fprintf(stderr, "quiesce backup: warning: %s may still be frozen from an earlier run (%s)\n", v->vm,
				was);
		free(was);
		return degrade(v, why);
	}
	int rc = thaw_leftover(v);
	if (rc < 0)
		return rc;
	v->has_report = gac_has_command(v->g, "quiesce-freeze-report", v->o->agent_timeout_ms);
	return check_mountpoints(v);
}

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

/* Scratch directories of runs that died (their lock is free): remove them. */
static void sweep_scratch(const char *base, const char *prefix)
{
	DIR *d = opendir(base);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
			continue;
		char dir[PATH_MAX], path[PATH_MAX + 256];
		snprintf(dir, sizeof(dir), "%.3800s/%s", base, de->d_name);
		snprintf(path, sizeof(path), "%s/lock", dir);
		int fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
			close(fd); /* a live run's */
			continue;
		}
		DIR *sub = opendir(dir);
		struct dirent *se;
		while (sub && (se = readdir(sub))) {
			if (!strcmp(se->d_name, ".") || !strcmp(se->d_name, ".."))
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, se->d_name);
			unlink(path);
		}
		if (sub)
			closedir(sub);
		rmdir(dir);
		if (fd >= 0)
			close(fd);
	}
	if (d)
		closedir(d);
}

static int prepare_fleecing(struct vmb *v, struct repo *r)
{
	struct err *e = &v->c->err;
	char base[PATH_MAX];
	snprintf(base, sizeof(base), "%.4000s%s", v->o->scratch ? v->o->scratch : r->path, v->o->scratch ? "" : "/tmp");
	sweep_scratch(base, v->o->scratch ? "quiesce-" : "vm-");
	snprintf(v->scratch, sizeof(v->scratch), "%.3800s/%s", base, v->o->scratch ? "quiesce-XXXXXX" : "vm-XXXXXX");
	if (!mkdtemp(v->scratch))
		return xerr_sys(e, QX_FAIL, errno, "cannot create a scratch directory like %s", v->scratch);
	v->scratch_made = true;
	char lockp[PATH_MAX];
	snprintf(lockp, sizeof(lockp), "%.4000s/lock", v->scratch);
	v->scratch_lock = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (v->scratch_lock < 0 || flock(v->scratch_lock, LOCK_EX) < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot lock %s", lockp);
	char real[PATH_MAX];
	if (realpath(v->scratch, real) && strlen(real) < sizeof(v->scratch))
		memcpy(v->scratch, real, strlen(real) + 1); /* QEMU's working directory is not ours */
	int rc = 0;
	for (size_t i = 0; i < v->n && rc == 0; i++) {
		struct vmdisk *d = &v->d[i];
		char size[32];
		snprintf(d->scratch, sizeof(d->scratch), "%s/%s.qcow2", v->scratch, d->fleece);
		snprintf(size, sizeof(size), "%llu", (unsigned long long)d->size);
		char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", d->scratch, size, NULL};
		if ((rc = run_cmd(argv, e)) < 0)
			break;
		d->created = true;
		json_object *a = json_object_new_object(), *file = json_object_new_object();
		json_object_object_add(file, "driver", json_object_new_string("file"));
		json_object_object_add(file, "filename", json_object_new_string(d->scratch));
		json_object_object_add(a, "driver", json_object_new_string("qcow2"));
		json_object_object_add(a, "node-name", json_object_new_string(d->fleece));
		json_object_object_add(a, "file", file);
		json_object_object_add(a, "backing", json_object_new_string(d->node));
		if ((rc = qmpc_execute(v->q, "blockdev-add", a, QMP_TIMEOUT_MS, NULL, e)) < 0)
			break;
		d->added = true;
	}
	if (rc < 0)
		return rc;
	/* A unix socket path must fit in 108 bytes: in the scratch directory if
	 * it fits, else in a directory of its own under /tmp (empty ones left by
	 * killed runs are removed here; a live run's holds its socket). */
	size_t slen = strlen(v->scratch);
	if (slen + sizeof("/nbd.sock") <= sizeof(v->sock)) {
		memcpy(v->sock, v->scratch, slen);
		memcpy(v->sock + slen, "/nbd.sock", sizeof("/nbd.sock"));
	} else {
		DIR *t = opendir("/tmp");
		struct dirent *de;
		while (t && (de = readdir(t))) {
			char old[300];
			snprintf(old, sizeof(old), "/tmp/%s", de->d_name);
			if (!strncmp(de->d_name, "quiesce-nbd-", 12))
				rmdir(old);
		}
		if (t)
			closedir(t);
		strcpy(v->sockdir, "/tmp/quiesce-nbd-XXXXXX");
		if (!mkdtemp(v->sockdir))
			return xerr_sys(e, QX_FAIL, errno, "cannot create a directory for the NBD socket");
		snprintf(v->sock, sizeof(v->sock), "%s/nbd.sock", v->sockdir);
	}
	json_object *a = json_object_new_object(), *addr = json_object_new_object(), *data = json_object_new_object();
	json_object_object_add(data, "path", json_object_new_string(v->sock));
	json_object_object_add(addr, "type", json_object_new_string("unix"));
	json_object_object_add(addr, "data", data);
	json_object_object_add(a, "addr", addr);
	if ((rc = qmpc_execute(v->q, "nbd-server-start", a, QMP_TIMEOUT_MS, NULL, e)) < 0)
		return rc;
	v->nbd_started = true;
	fault_hold("nbd-started", &cli_interrupted);
	for (size_t i = 0; i < v->n && rc == 0; i++) {
		struct vmdisk *d = &v->d[i];
		a = json_object_new_object();
		json_object_object_add(a, "type", json_object_new_string("nbd"));
		json_object_object_add(a, "id", json_object_new_string(d->export_id));
		json_object_object_add(a, "node-name", json_object_new_string(d->fleece));
		json_object_object_add(a, "name", json_object_new_string(d->export_name));
		json_object_object_add(a, "writable", json_object_new_boolean(false));
		if ((rc = qmpc_execute(v->q, "block-export-add", a, QMP_TIMEOUT_MS, NULL, e)) == 0)
			d->exported = true;
	}
	return rc;
}

/* ---- the frozen window ---- */

static int point_in_time(struct vmb *v)
{
	json_object *actions = json_object_new_array();
	for (size_t i = 0; i < v->n; i++) {
		json_object *act = json_object_new_object(), *data = json_object_new_object();
		json_object_object_add(data, "device", json_object_new_string(v->d[i].node));
		json_object_object_add(data, "target", json_object_new_string(v->d[i].fleece));
		json_object_object_add(data, "sync", json_object_new_string("none"));
		json_object_object_add(data, "job-id", json_object_new_string(v->d[i].job));
		json_object_object_add(act, "type", json_object_new_string("blockdev-backup"));
		json_object_object_add(act, "data", data);
		json_object_array_add(actions, act);
	}
	json_object *a = json_object_new_object();
	json_object_object_add(a, "actions", actions);
	int rc = qmpc_execute(v->q, "transaction", a, QMP_TIMEOUT_MS, NULL, &v->c->err);
	v->t_txn_done = jsock_now_ms();
	if (!v->id[0])
		repo_new_id(v->id, v->when); /* QEMU has just said the views are fixed */
	if (rc == 0)
		for (size_t i = 0; i < v->n; i++)
			v->d[i].job_started = true; /* all or none: a transaction */
	return rc;
}

static int thaw(struct vmb *v, struct err *e)
{
	int thawed;
	int rc = gac_thaw_confirmed(v->g, thaw_budget_ms(v->o), v->o->agent_timeout_ms, &thawed, e);
	v->t_thawed = jsock_now_ms();
	if (rc == 0) {
		v->maybe_frozen = false;
		v->fs_thawed = thawed;
		thawmark_remove(&v->mark);
	} else {
		v->thaw_gave_up = true;
	}
	return rc;
}

static int freeze_and_fix(struct vmb *v)
{
	struct err *e = &v->c->err;
	int rc = thawmark_write(&v->mark, &v->key, v->o->qmp, v->o->qga, v->vm, e);
	if (rc < 0)
		return rc;
	json_object *args = NULL, *ret = NULL;
	const char *cmd = "guest-fsfreeze-freeze";
	if (v->o->nmountpoints) {
		cmd = "guest-fsfreeze-freeze-list";
		json_object *list = json_object_new_array();
		for (size_t i = 0; i < v->o->nmountpoints; i++)
			json_object_array_add(list, json_object_new_string(v->o->mountpoints[i]));
		args = json_object_new_object();
		json_object_object_add(args, "mountpoints", list);
	}
	v->maybe_frozen = true; /* from the moment it is sent: a timeout may still have frozen it */
	v->t_freeze_sent = jsock_now_ms();
	struct err fe = {0};
	rc = gac_execute(v->g, cmd, args, v->o->freeze_timeout_ms, &ret, &fe);
	v->t_frozen = jsock_now_ms();
	if (rc == 0)
		v->fs_frozen = json_object_get_int(ret);
	json_object_put(ret);
	if (rc < 0) {
		/* thaw first (the agent may be partly frozen), then decide */
		struct err te = {0};
		if (thaw(v, &te) < 0)
			return xerr(e, QX_FAIL, "freeze failed (%s) and the guest could not be confirmed thawed: %s", fe.msg,
				    te.msg);
		char why[600];
		snprintf(why, sizeof(why), "the guest could not be frozen: %s", fe.msg);
		if ((rc = degrade(v, why)) < 0)
			return rc;
		return point_in_time(v);
	}
	fault_hold("frozen", &cli_interrupted);
	if (cli_interrupted)
		return xerr(e, QX_INTR, "interrupted while frozen; thawed, nothing was backed up");
	rc = point_in_time(v);
	fault_hold("fixed", &cli_interrupted);
	struct err te = {0};
	int trc = thaw(v, &te); /* at once, whatever the transaction said */
	if (rc < 0)
		return rc;
	if (trc < 0)
		return xerr(e, QX_FAIL, "the guest could not be confirmed thawed: %s", te.msg);
	return 0;
}

/* What the freeze achieved, from the agent's report when it has one. */
static void judge(struct vmb *v)
{
	if (v->level)
		return; /* already degraded, with its reason */
	if (v->has_report) {
		json_object *rep = NULL;
		struct err e = {0};
		if (gac_execute(v->g, "quiesce-freeze-report", NULL, v->o->agent_timeout_ms, &rep, &e) == 0)
			v->report = rep;
	}
	json_object *x;
	if (v->report && json_object_object_get_ex(v->report, "auto-thawed", &x) && json_object_get_boolean(x)) {
		set_level(v, "crash", "the agent's watchdog thawed the guest before the point-in-time view was fixed");
		return;
	}
	/* Our thaw must find frozen every filesystem the freeze froze: one it
	 * does not was thawed by someone else inside the window (the agent's
	 * watchdog or a restart, a guest admin's fsfreeze -u), maybe before the
	 * transaction.  No report is needed for this, so it holds for qemu-ga. */
	if (v->fs_frozen <= 0) {
		set_level(v, "crash", "the agent froze no filesystem");
		return;
	}
	if (v->fs_thawed < 0) {
		set_level(v, "crash", "quiesce's thaw got no answer (only its confirmation did), so whether the guest "
				      "stayed frozen until the point in time is unknown");
		return;
	}
	if (v->fs_thawed < v->fs_frozen) {
		set_level(v, "crash",
			  "the guest was thawed by someone else inside the window: quiesce's thaw found %d of the %d "
			  "filesystem%s it froze still frozen",
			  v->fs_thawed, v->fs_frozen, v->fs_frozen == 1 ? "" : "s");
		return;
	}
	if (v->report) {
		bool hook_ok = false;
		json_object *hooks = json_object_object_get(v->report, "hooks");
		for (size_t i = 0; i < json_object_array_length(hooks); i++) {
			json_object *h = json_object_array_get_idx(hooks, i);
			if (!strcmp(json_object_get_string(json_object_object_get(h, "action")) ?: "", "freeze"))
				hook_ok = json_object_get_int(json_object_object_get(h, "exit-status")) == 0;
		}
		if (hook_ok)
			set_level(v, "application",
				  "the freeze hook brought the applications to a consistent point, then %d filesystem%s froze",
				  v->fs_frozen, v->fs_frozen == 1 ? "" : "s");
		else
			set_level(v, "filesystem", "%d filesystem%s frozen; no fsfreeze hook is configured in the guest",
				  v->fs_frozen, v->fs_frozen == 1 ? "" : "s");
		return;
	}
	set_level(v, "filesystem",
		  "%d filesystem%s frozen; the agent (not quiesce-agent) does not report whether hooks ran", v->fs_frozen,
		  v->fs_frozen == 1 ? "" : "s");
}

/* ---- after ---- */

static void teardown(struct vmb *v)
{
	struct err e = {0};
	for (size_t i = 0; v->q && i < v->n; i++) {
		struct vmdisk *d = &v->d[i];
		/* an export or job may be gone already (removed under us, or the cause of the failure) */
		if (d->exported && listed(v->q, "query-block-exports", "id", d->export_id))
			qmp_del_export(v->q, d->export_id);
		if (d->job_started && listed(v->q, "query-block-jobs", "device", d->job))
			qmp_cancel_job(v->q, d->job);
		if (d->added)
			qmp_del_node(v->q, d->fleece);
		d->exported = d->job_started = d->added = false;
	}
	if (v->q && v->nbd_started)
		qmpc_execute(v->q, "nbd-server-stop", NULL, QMP_TIMEOUT_MS, NULL, &e);
	v->nbd_started = false;
	for (size_t i = 0; i < v->n; i++)
		if (v->d[i].created)
			unlink(v->d[i].scratch);
	if (v->sock[0])
		unlink(v->sock);
	if (v->sockdir[0])
		rmdir(v->sockdir);
	if (v->scratch_made) {
		char lockp[PATH_MAX];
		snprintf(lockp, sizeof(lockp), "%.4000s/lock", v->scratch);
		unlink(lockp);
		rmdir(v->scratch);
	}
	if (v->scratch_lock >= 0)
		close(v->scratch_lock);
	v->scratch_lock = -1;
}

static json_object *window_json(struct vmb *v)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "vm", json_object_new_string(v->vm));
	json_object_object_add(o, "consistency", json_object_new_string(v->level));
	json_object_object_add(o, "consistency_reason", json_object_new_string(v->reason));
	if (v->t_freeze_sent && v->t_thawed) {
		json_object_object_add(o, "frozen_window_ms", json_object_new_int64(v->t_thawed - v->t_freeze_sent));
		json_object_object_add(o, "freeze_ms", json_object_new_int64(v->t_frozen - v->t_freeze_sent));
		json_object_object_add(o, "transaction_ms", json_object_new_int64(v->t_txn_done - v->t_frozen));
		json_object_object_add(o, "thaw_ms", json_object_new_int64(v->t_thawed - v->t_txn_done));
		json_object_object_add(o, "filesystems_frozen", json_object_new_int(v->fs_frozen));
	}
	if (v->o->nmountpoints) {
		json_object *m = json_object_new_array();
		for (size_t i = 0; i < v->o->nmountpoints; i++)
			json_object_array_add(m, json_object_new_string(v->o->mountpoints[i]));
		json_object_object_add(o, "mountpoints", m);
	}
	if (v->report)
		json_object_object_add(o, "agent_report", json_object_get(v->report));
	return o;
}

int vm_backup_run(struct cli *c, struct vm_backup_opts *o, const char *name, const char *id, const char *when,
		  json_object *meta)
{
	if (!name || !*name)
		return cli_usage(c, "a VM backup needs --name (the VM's name, which groups its snapshots)");
	default_timeouts(o);
	struct vmb v = {.c = c, .o = o, .vm = name, .scratch_lock = -1};
	if (id) {
		snprintf(v.id, sizeof(v.id), "%s", id);
		snprintf(v.when, sizeof(v.when), "%s", when);
	}
	struct repo *r = NULL;
	struct backup_disk disks[MAX_DISKS] = {0};
	json_object *doc = NULL;
	int rc;
	int vmlock = -1;
	if ((rc = cli_open_repo(c, &r)) < 0)
		return rc;
	/* who the VM is comes from QEMU; nothing is changed before its lock is held */
	if ((rc = qmpc_connect(o->qmp, QMP_TIMEOUT_MS, &v.q, &c->err)) < 0 || (rc = vm_identify(v.q, o->qmp, &v.key, &c->err)) < 0)
		goto out;
	if ((rc = vmlock = vmlock_take(&v.key, o->qmp, &c->err)) < 0)
		goto out;
	if ((rc = repo_lock_writers_shared(r, &c->err)) < 0)
		goto out;
	if (o->qga && (rc = thawmark_init(&v.mark, &v.key, &c->err)) < 0)
		goto out;
	if ((rc = interrupted(&v, "at the start")) < 0)
		goto out;
	clear_leftovers(&v);
	if ((rc = discover_disks(&v)) < 0 || (rc = interrupted(&v, "before the freeze")) < 0)
		goto out;
	if (o->policy == POLICY_CRASH)
		set_level(&v, "crash", "--consistency crash: the guest agent was not asked");
	else if ((rc = connect_agent(&v)) < 0 || (rc = interrupted(&v, "before the freeze")) < 0)
		goto out;
	if ((rc = prepare_fleecing(&v, r)) < 0 || (rc = interrupted(&v, "before the freeze")) < 0)
		goto out;
	fault_hold("prepared", &cli_interrupted);
	if ((rc = interrupted(&v, "before the freeze")) < 0)
		goto out;
	if (v.g && !v.level)
		rc = freeze_and_fix(&v);
	else
		rc = point_in_time(&v);
	if (rc < 0)
		goto out;
	if (cli_interrupted) {
		rc = xerr(&c->err, QX_INTR, "interrupted; %snothing was backed up", v.fs_frozen > 0 ? "thawed, " : "");
		goto out;
	}
	judge(&v);
	if (o->policy == POLICY_REQUIRE_APP && strcmp(v.level, "crash") == 0) {
		rc = xerr(&c->err, QX_CONSISTENCY, "%s; --consistency require-app: nothing was backed up", v.reason);
		goto out;
	}
	if (strcmp(v.level, "crash") == 0 && o->policy != POLICY_CRASH && v.fs_frozen > 0)
		fprintf(stderr, "quiesce backup: warning: %s; this backup is only crash-consistent\n", v.reason);

	/* read the fixed views */
	fault_hold("reading", &cli_interrupted);
	for (size_t i = 0; i < v.n; i++) {
		char uri[PATH_MAX + 64];
		snprintf(uri, sizeof(uri), "nbd+unix:///%s?socket=%s", v.d[i].export_name, v.sock);
		if ((rc = source_open(uri, &disks[i].src, &c->err)) < 0)
			goto out;
		snprintf(disks[i].name, sizeof(disks[i].name), "%s", v.d[i].device);
		disks[i].label = v.d[i].node;
	}
	json_object *w = window_json(&v);
	json_object_object_foreach(w, k, val) json_object_object_add(meta, k, json_object_get(val));
	json_object_put(w);
	rc = backup_snapshot(c, r, disks, v.n, name, v.id, v.when, meta, &doc);
	if (rc == 0) {
		if (c->json) {
			json_object_object_add(doc, "metadata", json_object_get(meta));
			cli_print_json(json_object_get(doc));
		} else {
			backup_print_summary(doc);
			json_object *x = json_object_object_get(meta, "frozen_window_ms");
			printf("consistency: %s (%s)%s%s%s\n", v.level, v.reason, x ? "; frozen window " : "",
			       x ? json_object_get_string(x) : "", x ? " ms" : "");
		}
	}
out:
	for (size_t i = 0; i < v.n; i++)
		source_close(disks[i].src);
	if (v.maybe_frozen && !v.thaw_gave_up) {
		struct err te = {0};
		thaw(&v, &te);
	}
	if (v.maybe_frozen)
		fprintf(stderr,
			"quiesce backup: WARNING: the guest may still be frozen (no thaw was confirmed within %d s); "
			"the marker %s stays, so the next backup of this VM thaws it first; to thaw it now: "
			"quiesce thaw --qmp %s --qga %s\n",
			thaw_budget_ms(o) / 1000, v.mark.path, o->qmp, o->qga);
	teardown(&v);
	json_object_put(doc);
	json_object_put(v.report);
	gac_close(v.g);
	qmpc_close(v.q);
	repo_close(r);
	if (vmlock >= 0)
		close(vmlock);
	return rc < 0 ? rc : 0;
}

/* `quiesce thaw [--qmp QMP] --qga AGENT`: thaw a guest a dead run left
 * frozen.  With --qmp the VM is identified by QEMU, as a backup does; with
 * --qga alone, by the marker a run left for that agent socket — without one
 * nothing of ours claims the guest and there is no lock to take.  The lock
 * is what keeps a thaw out of a live run's window: that run thaws itself. */
int cmd_thaw_main(int argc, char **argv, struct cli *c)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS, VM_BACKUP_OPTIONS, {"help", no_argument, NULL, 'h'}, {0}};
	const char *usage = "usage: quiesce thaw [--qmp QMP_SOCKET] --qga AGENT_SOCKET [--agent-timeout SECONDS]\n"
			    "                    [--freeze-timeout SECONDS] [--json]";
	struct vm_backup_opts o = {0};
	int opt, rc;
	if ((opt = cli_next_option(c, argc, argv, opts, &o, usage)) != CLI_OPTS_END)
		return opt == CLI_OPTS_STOP ? c->stop : -cli_usage(c, "%s", usage);
	if (optind < argc || !o.qga)
		return -cli_usage(c, "%s", usage);
	default_timeouts(&o);
	int timeout = o.agent_timeout_ms, lock = -1;
	struct vmkey key;
	struct thawmark mark;
	bool have_key = false;
	struct gac *g = NULL;
	json_object *st = NULL;
	if (o.qmp) {
		struct qmpc *q = NULL;
		rc = qmpc_connect(o.qmp, QMP_TIMEOUT_MS, &q, &c->err);
		if (rc == 0)
			rc = vm_identify(q, o.qmp, &key, &c->err);
		qmpc_close(q);
		if (rc < 0)
			goto out;
		have_key = true;
	} else if ((rc = thawmark_find_by_agent(o.qga, &key, &c->err)) < 0) {
		goto out;
	} else {
		have_key = rc == 1;
	}
	if (have_key && (rc = lock = vmlock_take(&key, o.qmp ? o.qmp : o.qga, &c->err)) < 0) {
		if (rc == -QX_LOCKED) {
			size_t n = strlen(c->err.msg);
			snprintf(c->err.msg + n, sizeof(c->err.msg) - n, "; a backup thaws the guest itself when its window ends");
		}
		goto out;
	}
	if (have_key && (rc = thawmark_init(&mark, &key, &c->err)) < 0)
		goto out;
	if ((rc = gac_open(o.qga, timeout, &g, &c->err)) < 0 ||
	    (rc = gac_execute(g, "guest-fsfreeze-status", NULL, timeout, &st, &c->err)) < 0)
		goto out;
	bool was_frozen = !strcmp(json_object_get_string(st) ?: "", "frozen");
	int thawed = 0;
	if (was_frozen && (rc = gac_thaw_confirmed(g, thaw_budget_ms(&o), timeout, &thawed, &c->err)) < 0)
		goto out;
	if (have_key)
		thawmark_remove(&mark);
	if (c->json) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "was_frozen", json_object_new_boolean(was_frozen));
		json_object_object_add(j, "thawed", json_object_new_int(thawed));
		cli_print_json(j);
	} else if (was_frozen) {
		printf("thawed %d filesystem%s\n", thawed, thawed == 1 ? "" : "s");
	} else {
		printf("the guest was not frozen\n");
	}
out:
	json_object_put(st);
	gac_close(g);
	if (lock >= 0)
		close(lock);
	return rc < 0 ? -rc : 0;
}
