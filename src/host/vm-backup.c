// SPDX-License-Identifier: MIT
/*
 * vm-backup: `quiesce backup --qmp ... --qga ...` — an application-
 * consistent backup of a running QEMU VM.  This file is the flow and the
 * guest agent's part; fleece.c is QEMU's part.
 *
 *   before freezing   everything slow or fallible: the VM's identity and
 *                     lock, the repository lock, what a dead run left in
 *                     QEMU, a freeze a dead run left (thawed first), the
 *                     agent's liveness (resync with a random id), disk
 *                     discovery, scratch images, fleecing nodes, the NBD
 *                     server and exports, and room for the worst case;
 *   frozen            guest-fsfreeze-freeze, then ONE QMP transaction that
 *                     starts a copy-before-write job per disk — the point in
 *                     time for all disks at once — then thaw;
 *   after             read every view over NBD into the repository while a
 *                     watcher keeps the views honest and the guest unharmed,
 *                     check the jobs lasted, commit, and tear down by name.
 *
 * The window is the guest's own freeze and thaw plus one QMP round trip.
 * Every agent and QMP call has a deadline.  A marker is written before the
 * freeze and removed once a thaw is confirmed with guest-fsfreeze-status;
 * every exit path (errors, timeouts, signals) thaws, and a run that finds
 * a marker thaws before anything else.  The snapshot records the
 * consistency reached and why (docs/vm-backup.md).
 */
#include "backup.h"
#include "fault.h"
#include "fleece.h"
#include "gac.h"
#include "jsock.h"
#include "qmpc.h"
#include "thawmark.h"
#include "xerr.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QMP_TIMEOUT_MS 10000
/* Scratch off the repository by default: the repository filling up must
 * cost a backup, never the guest's writes (docs/vm-backup.md). */
#define DEFAULT_SCRATCH "/var/tmp/quiesce"

_Static_assert(FLEECE_MAX_DISKS == MAX_DISKS, "one limit on disks");

struct vmb {
	struct cli *c;
	struct vm_backup_opts *o;
	const char *vm;
	struct qmpc *q;
	struct gac *g;
	struct fleece f;
	struct vmkey key; /* the VM's identity: its lock and marker */
	struct thawmark mark;
	bool maybe_frozen, has_report;
	bool thaw_gave_up; /* one thaw budget per run, spent: say how to thaw instead */
	/* what happened */
	const char *level;
	char reason[512];
	int fs_frozen, fs_thawed;
	char thaw_failed[256]; /* the thaw's error answer: the guest thawed, its thaw hook failed */
	bool hook_failed;      /* a hook said the application's consistent point did not hold */
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
	struct gac_thaw t;
	struct err e = {0};
	if (gac_thaw_confirmed(v->g, thaw_budget_ms(v->o), v->o->agent_timeout_ms, &t, &e) < 0) {
		int rc = xerr(&v->c->err, QX_FAIL, "an earlier run left this guest possibly frozen (%s) and it cannot be thawed: %s",
			      was, e.msg);
		free(was);
		return rc;
	}
	if (t.thawed < 0)
		fprintf(stderr, "quiesce backup: thawed a guest left frozen by an earlier run (%s)\n", was);
	else
		fprintf(stderr, "quiesce backup: thawed a guest left frozen by an earlier run (%s): %d filesystem%s\n",
			was, t.thawed, t.thawed == 1 ? "" : "s");
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

/* ---- the frozen window ---- */

/* The transaction; from its answer on, the views are fixed and watched. */
static int point_in_time(struct vmb *v)
{
	int rc = fleece_fix(&v->f, &v->c->err);
	v->t_txn_done = jsock_now_ms();
	if (!v->id[0])
		repo_new_id(v->id, v->when); /* QEMU has just said the views are fixed */
	return rc < 0 ? rc : fleece_watch_start(&v->f, &v->c->err);
}

static int thaw(struct vmb *v, struct err *e)
{
	struct gac_thaw t;
	int rc = gac_thaw_confirmed(v->g, thaw_budget_ms(v->o), v->o->agent_timeout_ms, &t, e);
	v->t_thawed = jsock_now_ms();
	if (rc == 0) {
		v->maybe_frozen = false;
		v->fs_thawed = t.thawed;
		memcpy(v->thaw_failed, t.failed, sizeof(v->thaw_failed));
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
	/* A thaw that answered with the thaw hook's error carries no count;
	 * quiesce-agent's report has it (its latest thaw is ours: we read it
	 * right after).  A thaw that was lost and sent again counts 0 there. */
	if (v->fs_thawed < 0 && v->report &&
	    json_object_object_get_ex(v->report, "last-thaw-filesystems", &x))
		v->fs_thawed = json_object_get_int(x);
	/* A thaw hook that failed says an application may have lost its hold
	 * while the guest was frozen (a killed lock holder, a server restart):
	 * the image is not what the freeze hook promised (docs/hooks.md). */
	char hook_failure[300] = "";
	json_object *hooks = v->report ? json_object_object_get(v->report, "hooks") : NULL;
	for (size_t i = 0; json_object_is_type(hooks, json_type_array) && i < json_object_array_length(hooks); i++) {
		json_object *h = json_object_array_get_idx(hooks, i);
		if (strcmp(json_object_get_string(json_object_object_get(h, "action")) ?: "", "thaw") != 0)
			continue;
		if (json_object_get_boolean(json_object_object_get(h, "timed-out")))
			snprintf(hook_failure, sizeof(hook_failure), "the thaw hook timed out");
		else if (json_object_get_int(json_object_object_get(h, "exit-status")) != 0)
			snprintf(hook_failure, sizeof(hook_failure), "the thaw hook failed (exit status %d)",
				 json_object_get_int(json_object_object_get(h, "exit-status")));
	}
	if (!hook_failure[0] && v->thaw_failed[0])
		snprintf(hook_failure, sizeof(hook_failure), "the thaw answered: %s", v->thaw_failed);
	v->hook_failed = hook_failure[0] != '\0';
	if (v->fs_thawed < 0) {
		if (hook_failure[0])
			set_level(v, "crash",
				  "%s, so how many filesystems it thawed is unknown, and with it whether the guest stayed "
				  "frozen until the point in time; and an application may have lost its consistent point "
				  "while frozen (the hook's log in the guest says why)",
				  hook_failure);
		else
			set_level(v, "crash", "quiesce's thaw got no answer (only its confirmation did), so whether the "
					      "guest stayed frozen until the point in time is unknown");
		return;
	}
	if (v->fs_thawed < v->fs_frozen) {
		set_level(v, "crash",
			  "the guest was thawed by someone else inside the window: quiesce's thaw found %d of the %d "
			  "filesystem%s it froze still frozen",
			  v->fs_thawed, v->fs_frozen, v->fs_frozen == 1 ? "" : "s");
		return;
	}
	if (hook_failure[0]) {
		/* the filesystems stayed frozen to the point in time: what holds is
		 * their consistency, not the application's */
		set_level(v, "filesystem",
			  "%d filesystem%s frozen, but %s: an application may have lost its consistent point while the "
			  "guest was frozen (the hook's log in the guest says why)",
			  v->fs_frozen, v->fs_frozen == 1 ? "" : "s", hook_failure);
		return;
	}
	if (v->report) {
		bool hook_ok = false;
		for (size_t i = 0; json_object_is_type(hooks, json_type_array) && i < json_object_array_length(hooks); i++) {
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

/* The pipeline asks between chunks, and once more just before it stores
 * the manifest, whether the views it reads are still the point in time. */
static int guard_check(void *ctx, bool final, struct err *e)
{
	struct vmb *v = ctx;
	return final ? fleece_finish(&v->f, e) : fleece_check(&v->f, e);
}

int vm_backup_run(struct cli *c, struct vm_backup_opts *o, const char *name, const char *id, const char *when,
		  json_object *meta)
{
	if (!name || !*name)
		return cli_usage(c, "a VM backup needs --name (the VM's name, which groups its snapshots)");
	default_timeouts(o);
	struct vmb v = {.c = c, .o = o, .vm = name};
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
	if ((rc = qmpc_connect(o->qmp, QMP_TIMEOUT_MS, &v.q, &c->err)) < 0 ||
	    (rc = vm_identify(v.q, o->qmp, &v.key, &c->err)) < 0)
		goto out;
	if ((rc = vmlock = vmlock_take(&v.key, o->qmp, &c->err)) < 0)
		goto out;
	if ((rc = repo_lock_writers_shared(r, &c->err)) < 0)
		goto out;
	if (o->qga && (rc = thawmark_init(&v.mark, &v.key, &c->err)) < 0)
		goto out;
	if ((rc = fleece_init(&v.f, v.q, o->qmp, o->scratch ? o->scratch : DEFAULT_SCRATCH, !o->scratch, &v.key,
			      &c->err)) < 0 ||
	    (rc = interrupted(&v, "at the start")) < 0)
		goto out;
	if ((rc = fleece_clear_leftovers(&v.f, &c->err)) < 0)
		goto out;
	if ((rc = fleece_discover(&v.f, &c->err)) < 0 || (rc = interrupted(&v, "before the freeze")) < 0)
		goto out;
	if (o->policy == POLICY_CRASH)
		set_level(&v, "crash", "--consistency crash: the guest agent was not asked");
	else if ((rc = connect_agent(&v)) < 0 || (rc = interrupted(&v, "before the freeze")) < 0)
		goto out;
	if ((rc = fleece_prepare(&v.f, &c->err)) < 0 || (rc = interrupted(&v, "before the freeze")) < 0 ||
	    (rc = fleece_check_room(&v.f, &c->err)) < 0)
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
	if (o->policy == POLICY_REQUIRE_APP && (strcmp(v.level, "crash") == 0 || v.hook_failed)) {
		rc = xerr(&c->err, QX_CONSISTENCY, "%s; --consistency require-app: nothing was backed up", v.reason);
		goto out;
	}
	if (strcmp(v.level, "crash") == 0 && o->policy != POLICY_CRASH && v.fs_frozen > 0)
		fprintf(stderr, "quiesce backup: warning: %s; this backup is only crash-consistent\n", v.reason);

	/* read the fixed views */
	fault_hold("reading", &cli_interrupted);
	for (size_t i = 0; i < v.f.n; i++) {
		char uri[PATH_MAX + 64];
		fleece_uri(&v.f, i, uri, sizeof(uri));
		if ((rc = source_open(uri, &disks[i].src, &c->err)) < 0)
			goto out;
		snprintf(disks[i].name, sizeof(disks[i].name), "%s", v.f.d[i].device);
		disks[i].label = v.f.d[i].node;
	}
	json_object *w = window_json(&v);
	json_object_object_foreach(w, k, val) json_object_object_add(meta, k, json_object_get(val));
	json_object_put(w);
	struct backup_guard guard = {guard_check, &v};
	rc = backup_snapshot(c, r, disks, v.f.n, name, v.id, v.when, meta, &guard, &doc);
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
	/* our NBD clients close first: the exports are then deleted in hard
	 * mode, which drops only clients that are not ours */
	for (size_t i = 0; i < v.f.n; i++)
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
	fleece_teardown(&v.f);
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
	struct gac_thaw t = {.thawed = 0};
	if (was_frozen && (rc = gac_thaw_confirmed(g, thaw_budget_ms(&o), timeout, &t, &c->err)) < 0)
		goto out;
	if (have_key)
		thawmark_remove(&mark);
	if (t.failed[0])
		fprintf(stderr, "quiesce thaw: warning: the guest is thawed, but %s\n", t.failed);
	if (c->json) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "was_frozen", json_object_new_boolean(was_frozen));
		json_object_object_add(j, "thawed", t.thawed < 0 ? NULL : json_object_new_int(t.thawed));
		cli_print_json(j);
	} else if (was_frozen && t.thawed < 0) {
		printf("thawed (the agent did not say how many filesystems)\n");
	} else if (was_frozen) {
		printf("thawed %d filesystem%s\n", t.thawed, t.thawed == 1 ? "" : "s");
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
