/* SPDX-License-Identifier: MIT */
/*
 * cli: what every `quiesce` subcommand shares — the common options, the
 * interrupt flag, and the table of <name>_main() entry points (main.c).
 */
#ifndef QUIESCE_CLI_H
#define QUIESCE_CLI_H

#include "err.h"

#include <json-c/json.h>
#include <signal.h>
#include <stdbool.h>

struct cli {
	const char *repo; /* --repo, or $QUIESCE_REPO */
	bool json;
	int threads; /* worker threads; default online CPUs */
	struct err err;
};

/* Set by SIGINT/SIGTERM; long loops check it and stop cleanly. */
extern volatile sig_atomic_t cli_interrupted;

/* getopt_long codes of the shared options */
enum { OPT_REPO = 1000, OPT_JSON, OPT_THREADS };
#define CLI_COMMON_OPTIONS \
	{"repo", required_argument, NULL, OPT_REPO}, {"json", no_argument, NULL, OPT_JSON}, \
		{"threads", required_argument, NULL, OPT_THREADS}

/* Handle a shared option; 1 if it was one, 0 if not, <0 on a bad value. */
int cli_common_option(struct cli *c, int opt, const char *arg);
/* Open the repository named by --repo (after checking it is set). */
struct repo;
int cli_open_repo(struct cli *c, struct repo **r);
/* Print a --json document to stdout and free it. */
void cli_print_json(json_object *o);
int cli_usage(struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int cmd_init_main(int argc, char **argv, struct cli *c);
int cmd_backup_main(int argc, char **argv, struct cli *c);
int cmd_snapshots_main(int argc, char **argv, struct cli *c);
int cmd_restore_main(int argc, char **argv, struct cli *c);
int cmd_verify_main(int argc, char **argv, struct cli *c);
int cmd_prune_main(int argc, char **argv, struct cli *c);
int cmd_gc_main(int argc, char **argv, struct cli *c);
int cmd_thaw_main(int argc, char **argv, struct cli *c);

#endif
