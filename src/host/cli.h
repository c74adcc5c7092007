/* SPDX-License-Identifier: MIT */
/*
 * cli: what every `quiesce` subcommand shares — the common options, the
 * interrupt flag, and the table of <name>_main() entry points (main.c).
 */
#ifndef QUIESCE_CLI_H
#define QUIESCE_CLI_H

#include "err.h"

#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdbool.h>

struct cli {
	const char *repo; /* --repo, or $QUIESCE_REPO */
	bool json;
	int threads; /* worker threads; default online CPUs */
	int stop;    /* exit code when cli_next_option says CLI_OPTS_STOP */
	struct err err;
};

/* Set by SIGINT, SIGTERM, SIGHUP and SIGQUIT; long loops check it and stop
 * cleanly, and a run it stopped exits 130 (QX_INTR), never 0. */
extern volatile sig_atomic_t cli_interrupted;

/* getopt_long codes of the shared options */
enum { OPT_REPO = 1000, OPT_JSON, OPT_THREADS };
#define CLI_COMMON_OPTIONS \
	{"repo", required_argument, NULL, OPT_REPO}, {"json", no_argument, NULL, OPT_JSON}, \
		{"threads", required_argument, NULL, OPT_THREADS}

/* The next option of a subcommand (getopt_long over `opts`, long options
 * only, plus -h).  The shared options — and the VM backup ones when `vm` is
 * given — are handled here, and --help prints `usage`.  Returns the code of
 * an option for the subcommand to handle; CLI_OPTS_END after the last; or
 * CLI_OPTS_STOP when the subcommand must return c->stop (0 after --help, 2
 * after a bad option, with c->err saying what). */
enum { CLI_OPTS_END = -1, CLI_OPTS_STOP = -2 };
struct vm_backup_opts;
int cli_next_option(struct cli *c, int argc, char **argv, const struct option *opts, struct vm_backup_opts *vm,
		    const char *usage);
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
int cmd_upgrade_main(int argc, char **argv, struct cli *c);
int cmd_thaw_main(int argc, char **argv, struct cli *c);

#endif
