// SPDX-License-Identifier: MIT
/*
 * quiesce: the host CLI.  A table of subcommands, each a <name>_main() in
 * its own file; this file owns what they share: option defaults, signals,
 * the one-line error report and the exit code (docs/repository.md).
 */
#include "backup.h"
#include "cli.h"
#include "fault.h"
#include "repo.h"
#include "xerr.h"

#include "build-config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

volatile sig_atomic_t cli_interrupted;

static void on_signal(int sig)
{
	(void)sig;
	cli_interrupted = 1;
}

int cli_usage(struct cli *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err.msg, sizeof(c->err.msg), fmt, ap);
	va_end(ap);
	c->err.code = QX_USAGE;
	return -QX_USAGE;
}

static int common_option(struct cli *c, int opt, const char *arg)
{
	switch (opt) {
	case OPT_REPO:
		c->repo = arg;
		return 1;
	case OPT_JSON:
		c->json = true;
		return 1;
	case OPT_THREADS: {
		char *end;
		long n = strtol(arg, &end, 10);
		if (*end || n < 1 || n > 256)
			return cli_usage(c, "--threads wants 1 to 256, not '%s'", arg);
		c->threads = (int)n;
		return 1;
	}
	default:
		return 0;
	}
}

int cli_next_option(struct cli *c, int argc, char **argv, const struct option *opts, struct vm_backup_opts *vm,
		    const char *usage)
{
	opterr = 0; /* our one-line errors, not getopt's */
	int opt = getopt_long(argc, argv, ":h", opts, NULL);
	if (opt == -1)
		return CLI_OPTS_END;
	int rc;
	if (opt == 'h') {
		puts(usage);
		c->stop = 0;
		return CLI_OPTS_STOP;
	}
	if (opt == '?' || opt == ':') {
		cli_usage(c, "%s '%s'\n%s", opt == ':' ? "missing value for" : "unknown option", argv[optind - 1], usage);
		c->stop = QX_USAGE;
		return CLI_OPTS_STOP;
	}
	if ((rc = common_option(c, opt, optarg)) == 0 && vm)
		rc = vm_backup_option(c, vm, opt, optarg);
	if (rc < 0) {
		c->stop = QX_USAGE;
		return CLI_OPTS_STOP;
	}
	return rc ? cli_next_option(c, argc, argv, opts, vm, usage) : opt;
}

int cli_open_repo(struct cli *c, struct repo **r)
{
	*r = NULL;
	if (!c->repo)
		return cli_usage(c, "no repository: give --repo DIR or set QUIESCE_REPO");
	return repo_open(c->repo, r, &c->err);
}

void cli_print_json(json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static const struct {
	const char *name;
	int (*main)(int, char **, struct cli *);
	const char *what;
} commands[] = {
	{"init", cmd_init_main, "create a repository"},
	{"backup", cmd_backup_main, "back up a running VM (--qmp/--qga), or disk images, block devices, NBD exports"},
	{"snapshots", cmd_snapshots_main, "list snapshots"},
	{"restore", cmd_restore_main, "restore one disk of a snapshot (raw or qcow2)"},
	{"verify", cmd_verify_main, "re-read and re-hash every chunk the snapshots use"},
	{"prune", cmd_prune_main, "remove snapshots by retention rules, then collect garbage"},
	{"gc", cmd_gc_main, "collect garbage: chunks no snapshot uses, leftovers of crashes"},
	{"upgrade", cmd_upgrade_main, "make a version-1 repository version 2 (older quiesce then refuse it)"},
	{"thaw", cmd_thaw_main, "thaw a guest that a dead backup run left frozen"},
};

static void help(FILE *f)
{
	fprintf(f, "usage: quiesce COMMAND [OPTIONS]   (quiesce COMMAND --help for its options)\n\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].what);
	fprintf(f, "\nCommon options: --repo DIR (or $QUIESCE_REPO), --json, --threads N.\n"
		   "Exit codes: 0 ok, 1 failure, 2 usage, 3 not a repository or unknown format version,\n"
		   "4 source or target unusable, 5 damaged or missing data, 6 no space, 7 locked,\n"
		   "8 no such snapshot, 9 application consistency required but not reached, 130 interrupted.  See quiesce(1) and docs/repository.md.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		help(stderr);
		return QX_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		help(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("quiesce %s\n", QUIESCE_VERSION);
		return 0;
	}
	struct cli c = {.repo = getenv("QUIESCE_REPO")};
	if (c.repo && !*c.repo)
		c.repo = NULL;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	c.threads = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu;
	/* No SA_RESTART: waits return EINTR.  SIGHUP (the SSH session that ran
	 * us dropped) and SIGQUIT must not kill us either: inside a VM backup's
	 * frozen window that would leave the guest frozen.  All four stop the
	 * run cleanly, thawing first, and exit 130. */
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	fault_init();
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) != 0)
			continue;
		int rc = commands[i].main(argc - 1, argv + 1, &c);
		if (rc != 0 && c.err.msg[0])
			fprintf(stderr, "quiesce %s: %s\n", argv[1], c.err.msg);
		if (rc != 0 && cli_interrupted)
			rc = QX_INTR;
		return rc;
	}
	fprintf(stderr, "quiesce: unknown command '%s'\n", argv[1]);
	help(stderr);
	return QX_USAGE;
}
