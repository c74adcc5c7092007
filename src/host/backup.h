/* SPDX-License-Identifier: MIT */
/*
 * backup: what `quiesce backup` of images and of a running VM share — the
 * pipeline that turns open sources into one snapshot (cmd-backup.c), and
 * the VM front end that prepares those sources (vm-backup.c).
 */
#ifndef QUIESCE_BACKUP_H
#define QUIESCE_BACKUP_H

#include "cli.h"
#include "repo.h"
#include "source.h"

#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#define MAX_DISKS 64

struct backup_disk {
	char name[64];	    /* disk0, or the VM's device name */
	const char *label;  /* the manifest's "source" */
	struct source *src;
};

/* A source whose contents can stop being what they should (a VM's
 * point-in-time view): check() is asked between chunks and, with `final`,
 * once more just before the manifest is stored; <0 (with *e) stops the
 * backup and no snapshot is written. */
struct backup_guard {
	int (*check)(void *ctx, bool final, struct err *e);
	void *ctx;
};

/* Back up `n` open sources as one snapshot and write its manifest; the
 * caller holds the writers lock.  guard may be NULL.  *doc: the --json
 * document. */
int backup_snapshot(struct cli *c, struct repo *r, const struct backup_disk *disks, size_t n, const char *name,
		    const char *id, const char *when, json_object *meta, const struct backup_guard *guard,
		    json_object **doc);
void backup_print_summary(const json_object *doc);

/* ---- running VMs (vm-backup.c) ---- */

enum consistency_policy { POLICY_PREFER_APP, POLICY_REQUIRE_APP, POLICY_CRASH };

struct vm_backup_opts {
	const char *qmp, *qga, *scratch;
	const char *mountpoints[64];
	size_t nmountpoints;
	enum consistency_policy policy;
	bool consistency_set;
	int freeze_timeout_ms, agent_timeout_ms;
};

enum {
	OPT_QMP = 1100, OPT_QGA, OPT_MOUNTPOINT, OPT_CONSISTENCY, OPT_SCRATCH, OPT_FREEZE_TIMEOUT, OPT_AGENT_TIMEOUT
};
#define VM_BACKUP_OPTIONS \
	{"qmp", required_argument, NULL, OPT_QMP}, {"qga", required_argument, NULL, OPT_QGA}, \
		{"mountpoint", required_argument, NULL, OPT_MOUNTPOINT}, \
		{"consistency", required_argument, NULL, OPT_CONSISTENCY}, \
		{"scratch-dir", required_argument, NULL, OPT_SCRATCH}, \
		{"freeze-timeout", required_argument, NULL, OPT_FREEZE_TIMEOUT}, \
		{"agent-timeout", required_argument, NULL, OPT_AGENT_TIMEOUT}

/* 1 if `opt` was a VM option, 0 if not, <0 on a bad value. */
int vm_backup_option(struct cli *c, struct vm_backup_opts *o, int opt, const char *arg);
/* The whole VM backup; returns 0 or -exit.  id and when (--time) may be
 * NULL: the snapshot is then named after the moment its transaction fixed
 * the point in time. */
int vm_backup_run(struct cli *c, struct vm_backup_opts *o, const char *name, const char *id, const char *when,
		  json_object *meta);

#endif
