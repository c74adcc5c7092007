/* SPDX-License-Identifier: MIT */
/*
 * options: quiesce-agent's configuration, from qemu-ga's command-line flags
 * and its key-file config (/etc/qemu/qemu-ga.conf, group [general]), with
 * the same names and meanings so an existing setup carries over.  The file
 * is read first; flags override it; the RPC lists from both are joined.
 */
#ifndef QUIESCE_OPTIONS_H
#define QUIESCE_OPTIONS_H

#include "err.h"
#include "strlist.h"

#include <stdbool.h>
#include <stdio.h>

struct agent_options {
	char *method;
	char *path;
	char *logfile; /* NULL: stderr; "syslog": syslog */
	char *pidfile;
	char *statedir;
	char *fsfreeze_hook; /* NULL: no hook */
	int hook_timeout_s;  /* 0: default */
	int freeze_timeout_s; /* auto-thaw watchdog; 0: default; -1: off */
	bool daemonize;
	bool verbose;
	bool retry_path;
	bool dump_conf;
	struct strlist block_rpcs;
	struct strlist allow_rpcs;
	bool list_rpcs; /* -b help */
};

enum options_result {
	OPTIONS_RUN,  /* go on */
	OPTIONS_EXIT, /* done (help, version, -b help): exit 0 */
};

/* Returns OPTIONS_RUN/OPTIONS_EXIT, or a negative errno with e set. */
int options_parse(struct agent_options *o, int argc, char **argv, struct err *e);
/* Apply a config file's text (exposed for tests and the fuzzer). */
int options_load_text(struct agent_options *o, const char *text, size_t len, const char *name,
		      struct err *e);
void options_dump(const struct agent_options *o, FILE *f);
void options_free(struct agent_options *o);

#endif
