// SPDX-License-Identifier: MIT
/*
 * cmd-prune: `quiesce prune` (retention, then gc) and `quiesce gc`.
 *
 * Rules apply per snapshot name.  Snapshots are removed one manifest unlink
 * at a time, so a crash leaves each one wholly there or wholly gone; then
 * gc reclaims their chunks without stopping backups (gc.h).  A snapshot
 * whose manifest cannot be read is never removed by a rule, and stops gc
 * from deleting anything until it is dealt with.
 */
#include "cli.h"
#include "gc.h"
#include "repo.h"
#include "retention.h"
#include "xerr.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct snapinfo {
	char *id, *name;
	time_t t;
	bool readable, keep;
};

static int cmp_group_newest(const void *a, const void *b)
{
	const struct snapinfo *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	if (x->t != y->t)
		return x->t < y->t ? 1 : -1;
	return -strcmp(x->id, y->id);
}

static void print_gc(const struct gc_stats *st)
{
	printf("gc: %zu chunks referenced, %zu deleted (%.1f MiB), %zu set aside, %zu restored, %zu temporary files removed",
	       st->referenced, st->deleted, (double)st->bytes_deleted / 1048576, st->trashed, st->restored,
	       st->tmp_deleted);
	if (st->kept)
		printf("; %zu kept in trash while %zu running backup%s or restore%s may need them", st->kept,
		       st->sessions, st->sessions == 1 ? "" : "s", st->sessions == 1 ? "" : "s");
	printf("\n");
}

static const char *prune_usage =
	"usage: quiesce prune --repo DIR [--name NAME] [--keep-last N] [--keep-daily N] [--keep-weekly N]\n"
	"                     [--keep-monthly N] [--dry-run] [--json]";

int cmd_prune_main(int argc, char **argv, struct cli *c)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{"name", required_argument, NULL, 'n'},
		{"keep-last", required_argument, NULL, 'l'},
		{"keep-daily", required_argument, NULL, 'd'},
		{"keep-weekly", required_argument, NULL, 'w'},
		{"keep-monthly", required_argument, NULL, 'm'},
		{"dry-run", no_argument, NULL, 'N'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct keep_rules k = {0};
	const char *only = NULL;
	bool dry = false;
	int opt, rc;
	while ((opt = cli_next_option(c, argc, argv, opts, NULL, prune_usage)) >= 0) {
		long *slot = opt == 'l' ? &k.last : opt == 'd' ? &k.daily : opt == 'w' ? &k.weekly
			     : opt == 'm' ? &k.monthly : NULL;
		if (slot) {
			char *end;
			*slot = strtol(optarg, &end, 10);
			if (*end || *slot < 0)
				return -cli_usage(c, "--%s wants a count, not '%s'",
						  opt == 'l' ? "keep-last" : opt == 'd' ? "keep-daily"
						  : opt == 'w' ? "keep-weekly" : "keep-monthly", optarg);
			continue;
		}
		switch (opt) {
		case 'n':
			only = optarg;
			break;
		case 'N':
			dry = true;
			break;
		default:
			return -cli_usage(c, "%s", prune_usage);
		}
	}
	if (opt == CLI_OPTS_STOP)
		return c->stop;
	if (optind < argc)
		return -cli_usage(c, "unexpected argument '%s'\n%s", argv[optind], prune_usage);
	if (!keep_rules_any(&k))
		return -cli_usage(c, "prune needs at least one --keep-* rule (it will not remove everything)");

	struct repo *r = NULL;
	char **ids = NULL;
	size_t n = 0;
	struct snapinfo *s = NULL;
	if ((rc = cli_open_repo(c, &r)) < 0)
		goto out;
	if (!dry && (rc = repo_lock_gc(r, &c->err)) < 0)
		goto out;
	if ((rc = repo_snapshot_ids(r, &ids, &n, &c->err)) < 0)
		goto out;
	s = calloc(n + 1, sizeof(*s));
	if (!s) {
		rc = xerr(&c->err, QX_FAIL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct manifest m;
		struct err le = {0};
		s[i].id = ids[i];
		s[i].keep = true;
		if (repo_manifest_load_summary(r, ids[i], &m, &le) < 0) {
			s[i].name = strdup("");
			fprintf(stderr, "quiesce: warning: %s; keeping it\n", le.msg);
			continue;
		}
		struct tm tm = {0};
		strptime(m.time, "%Y-%m-%dT%H:%M:%SZ", &tm);
		s[i].t = timegm(&tm);
		s[i].name = strdup(m.name);
		s[i].readable = true;
		manifest_free(&m);
	}
	qsort(s, n, sizeof(*s), cmp_group_newest);
	for (size_t g = 0; g < n;) {
		size_t e = g;
		while (e < n && !strcmp(s[e].name, s[g].name))
			e++;
		if (!only || !strcmp(only, s[g].name)) {
			size_t cnt = 0;
			time_t *t = calloc(e - g + 1, sizeof(*t));
			bool *keep = calloc(e - g + 1, sizeof(*keep));
			size_t *map = calloc(e - g + 1, sizeof(*map));
			if (!t || !keep || !map) {
				free(t), free(keep), free(map);
				rc = xerr(&c->err, QX_FAIL, "out of memory");
				goto out;
			}
			for (size_t i = g; i < e; i++)
				if (s[i].readable) {
					map[cnt] = i;
					t[cnt++] = s[i].t;
				}
			retention_apply(t, cnt, &k, keep);
			for (size_t i = 0; i < cnt; i++)
				s[map[i]].keep = keep[i];
			free(t), free(keep), free(map);
		}
		g = e;
	}
	json_object *jk = json_object_new_array(), *jr = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		json_object_array_add(s[i].keep ? jk : jr, json_object_new_string(s[i].id));
		if (!c->json)
			printf("%s %s%s%s\n", s[i].keep ? "keep  " : "remove", s[i].id, s[i].name[0] ? "  " : "", s[i].name);
	}
	for (size_t i = 0; i < n && !dry; i++) {
		if (s[i].keep)
			continue;
		if ((rc = repo_snapshot_remove(r, s[i].id, &c->err)) < 0) {
			json_object_put(jk);
			json_object_put(jr);
			goto out;
		}
	}
	struct gc_stats st = {0};
	if (!dry && (rc = gc_run(r, &st, &c->err)) < 0) {
		json_object_put(jk);
		json_object_put(jr);
		goto out;
	}
	if (c->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "keep", jk);
		json_object_object_add(o, "remove", jr);
		if (!dry)
			json_object_object_add(o, "gc", gc_stats_json(&st));
		cli_print_json(o);
	} else {
		json_object_put(jk);
		json_object_put(jr);
		if (!dry)
			print_gc(&st);
	}
	rc = 0;
out:
	for (size_t i = 0; s && i < n; i++)
		free(s[i].name);
	free(s);
	repo_free_ids(ids, n);
	repo_close(r);
	return rc < 0 ? -rc : 0;
}

int cmd_gc_main(int argc, char **argv, struct cli *c)
{
	static const struct option opts[] = {CLI_COMMON_OPTIONS, {"help", no_argument, NULL, 'h'}, {0}};
	const char *usage = "usage: quiesce gc --repo DIR [--json]";
	int opt, rc;
	if ((opt = cli_next_option(c, argc, argv, opts, NULL, usage)) != CLI_OPTS_END)
		return opt == CLI_OPTS_STOP ? c->stop : -cli_usage(c, "%s", usage);
	if (optind < argc)
		return -cli_usage(c, "%s", usage);
	struct repo *r = NULL;
	struct gc_stats st;
	if ((rc = cli_open_repo(c, &r)) == 0 && (rc = repo_lock_gc(r, &c->err)) == 0 &&
	    (rc = gc_run(r, &st, &c->err)) == 0) {
		if (c->json)
			cli_print_json(gc_stats_json(&st));
		else
			print_gc(&st);
	}
	repo_close(r);
	return rc < 0 ? -rc : 0;
}
