// SPDX-License-Identifier: MIT
/* cmd-misc: `quiesce init`, `quiesce snapshots` and `quiesce upgrade`, the
 * small ones. */
#include "cli.h"
#include "repo.h"
#include "xerr.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_size(const char *s, uint32_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s)
		return -1;
	if (!strcmp(end, "K") || !strcmp(end, "KiB"))
		v <<= 10;
	else if (!strcmp(end, "M") || !strcmp(end, "MiB"))
		v <<= 20;
	else if (*end)
		return -1;
	if (v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

int cmd_init_main(int argc, char **argv, struct cli *c)
{
	static const struct option opts[] = {CLI_COMMON_OPTIONS,
					      {"chunk-size", required_argument, NULL, 's'},
					      {"format-version", required_argument, NULL, 'V'},
					      {"help", no_argument, NULL, 'h'},
					      {0}};
	const char *usage =
		"usage: quiesce init --repo DIR [--chunk-size BYTES|NK|NM] [--format-version 1|2] [--json]";
	uint32_t cs = REPO_DEFAULT_CHUNK_SIZE;
	int version = REPO_VERSION;
	int opt, rc;
	while ((opt = cli_next_option(c, argc, argv, opts, NULL, usage)) >= 0) {
		if (opt == 'V') {
			/* 1: for older quiesce to share; its manifests do not scale */
			if (strcmp(optarg, "1") && strcmp(optarg, "2"))
				return -cli_usage(c, "--format-version is 1 or 2, not '%s'", optarg);
			version = optarg[0] - '0';
			continue;
		}
		if (opt != 's' || parse_size(optarg, &cs) < 0)
			return -cli_usage(c, opt == 's' ? "bad --chunk-size '%s'" : "%s", opt == 's' ? optarg : usage);
	}
	if (opt == CLI_OPTS_STOP)
		return c->stop;
	if (optind < argc)
		return -cli_usage(c, "%s", usage);
	if (!c->repo)
		return -cli_usage(c, "no repository: give --repo DIR or set QUIESCE_REPO");
	struct repo *r;
	if ((rc = repo_init(c->repo, cs, version, &r, &c->err)) < 0)
		return -rc;
	if (c->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "repo", json_object_new_string(c->repo));
		json_object_object_add(o, "id", json_object_new_string(r->id));
		json_object_object_add(o, "version", json_object_new_int(r->version));
		json_object_object_add(o, "chunk_size", json_object_new_int64(r->chunk_size));
		cli_print_json(o);
	} else {
		printf("created repository %s at %s (chunk size %u KiB)\n", r->id, c->repo, r->chunk_size >> 10);
	}
	repo_close(r);
	return 0;
}

int cmd_snapshots_main(int argc, char **argv, struct cli *c)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS, {"name", required_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'}, {0}};
	const char *usage = "usage: quiesce snapshots --repo DIR [--name NAME] [--json]";
	const char *name = NULL;
	int opt, rc;
	while ((opt = cli_next_option(c, argc, argv, opts, NULL, usage)) >= 0) {
		if (opt != 'n')
			return -cli_usage(c, "%s", usage);
		name = optarg;
	}
	if (opt == CLI_OPTS_STOP)
		return c->stop;
	if (optind < argc)
		return -cli_usage(c, "%s", usage);
	struct repo *r;
	char **ids = NULL;
	size_t n = 0, bad = 0;
	if ((rc = cli_open_repo(c, &r)) < 0)
		return -rc;
	if ((rc = repo_snapshot_ids(r, &ids, &n, &c->err)) < 0) {
		repo_close(r);
		return -rc;
	}
	json_object *arr = json_object_new_array();
	if (!c->json)
		printf("%-30s %-20s %-16s %5s %12s\n", "ID", "TIME", "NAME", "DISKS", "SIZE");
	for (size_t i = 0; i < n; i++) {
		struct manifest m;
		struct err le = {0};
		if (repo_manifest_load_summary(r, ids[i], &m, &le) < 0) {
			fprintf(stderr, "quiesce snapshots: %s\n", le.msg); /* one line each; the rest are listed */
			bad++;
			continue;
		}
		if (name && strcmp(m.name, name) != 0) {
			manifest_free(&m);
			continue;
		}
		uint64_t size = 0;
		json_object *o = json_object_new_object(), *disks = json_object_new_array();
		for (size_t k = 0; k < m.ndisks; k++) {
			json_object *d = json_object_new_object();
			json_object_object_add(d, "name", json_object_new_string(m.disks[k].name));
			json_object_object_add(d, "source", json_object_new_string(m.disks[k].source));
			json_object_object_add(d, "size", json_object_new_int64((int64_t)m.disks[k].size));
			json_object_array_add(disks, d);
			size += m.disks[k].size;
		}
		json_object_object_add(o, "id", json_object_new_string(m.id));
		json_object_object_add(o, "name", json_object_new_string(m.name));
		json_object_object_add(o, "time", json_object_new_string(m.time));
		json_object_object_add(o, "host", json_object_new_string(m.host));
		json_object_object_add(o, "disks", disks);
		json_object_object_add(o, "stats", json_object_get(m.stats));
		json_object_object_add(o, "metadata", json_object_get(m.metadata));
		json_object_array_add(arr, o);
		if (!c->json)
			printf("%-30s %-20s %-16s %5zu %8.1f MiB\n", m.id, m.time, m.name, m.ndisks, (double)size / 1048576);
		manifest_free(&m);
	}
	if (c->json)
		cli_print_json(arr);
	else
		json_object_put(arr);
	repo_free_ids(ids, n);
	repo_close(r);
	if (bad) {
		/* the listing above is complete but for these */
		return QX_DAMAGED;
	}
	return 0;
}

/* `quiesce upgrade`: a version-1 repository to version 2 (docs/repository.md,
 * Versions).  Nothing but the config's version changes: version-1
 * manifests stay as they are and are read as before. */
int cmd_upgrade_main(int argc, char **argv, struct cli *c)
{
	static const struct option opts[] = {CLI_COMMON_OPTIONS, {"help", no_argument, NULL, 'h'}, {0}};
	const char *usage = "usage: quiesce upgrade --repo DIR [--json]";
	int opt, rc;
	if ((opt = cli_next_option(c, argc, argv, opts, NULL, usage)) != CLI_OPTS_END)
		return opt == CLI_OPTS_STOP ? c->stop : -cli_usage(c, "%s", usage);
	if (optind < argc)
		return -cli_usage(c, "%s", usage);
	struct repo *r;
	if ((rc = cli_open_repo(c, &r)) < 0)
		return -rc;
	int was = r->version;
	if ((rc = repo_upgrade(r, &c->err)) == 0) {
		if (c->json) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "repo", json_object_new_string(c->repo));
			json_object_object_add(o, "from", json_object_new_int(was));
			json_object_object_add(o, "version", json_object_new_int(r->version));
			cli_print_json(o);
		} else if (was == r->version) {
			printf("%s is already format version %d\n", c->repo, r->version);
		} else {
			printf("upgraded %s from format version %d to %d\n", c->repo, was, r->version);
		}
	}
	repo_close(r);
	return rc < 0 ? -rc : 0;
}
