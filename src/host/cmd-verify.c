// SPDX-License-Identifier: MIT
/*
 * cmd-verify: `quiesce verify` — re-read and re-hash every chunk the chosen
 * snapshots reference, and say which chunks are missing or damaged and
 * which snapshots that breaks.
 *
 * Each distinct chunk is checked once however many snapshots share it, by
 * worker threads taking indexes from a shared counter; the set of distinct
 * chunks is all verify keeps (32 bytes each), and which snapshots a bad
 * chunk breaks is found in a second pass over the manifests, only when one
 * is bad.  A manifest that cannot be read breaks its snapshot too.  Exit 5
 * if anything is wrong.
 */
#include "chunk.h"
#include "cli.h"
#include "progress.h"
#include "repo.h"
#include "xerr.h"

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CHUNK_OK, CHUNK_MISSING, CHUNK_DAMAGED };

struct verify {
	struct repo *repo;
	struct digest *u; /* the distinct digests the snapshots use, sorted */
	size_t nu;
	uint8_t *status;
	char **why;
	atomic_size_t next;
	struct progress *prog;
};

static int cmp_digest(const void *a, const void *b)
{
	return digest_cmp(a, b);
}

/* Sort and drop duplicates: snapshots of one disk share most chunks, so the
 * set is kept distinct as it grows — memory per distinct chunk, not per
 * reference. */
static void compact(struct digest *d, size_t *n)
{
	if (*n < 2)
		return;
	qsort(d, *n, sizeof(*d), cmp_digest);
	size_t w = 1;
	for (size_t i = 1; i < *n; i++)
		if (digest_cmp(&d[i], &d[w - 1]) != 0)
			d[w++] = d[i];
	*n = w;
}

/* A bad chunk and a snapshot it breaks (found in a second pass, only when
 * something is bad). */
struct hit {
	size_t chunk; /* index into v->u */
	uint32_t snap;
};

static int cmp_hit(const void *a, const void *b)
{
	const struct hit *x = a, *y = b;
	if (x->chunk != y->chunk)
		return x->chunk < y->chunk ? -1 : 1;
	return (x->snap > y->snap) - (x->snap < y->snap);
}

static void *vworker(void *arg)
{
	struct verify *v = arg;
	struct chunk_codec *codec = chunk_codec_new();
	uint8_t *raw = malloc(v->repo->chunk_size);
	struct buf file = BUF_INIT;
	for (;;) {
		size_t i = atomic_fetch_add(&v->next, 1);
		if (i >= v->nu || cli_interrupted)
			break;
		const struct digest *d = &v->u[i];
		struct err e = {0};
		if (!codec || !raw) {
			v->status[i] = CHUNK_DAMAGED;
			v->why[i] = strdup("out of memory while checking");
		} else if (repo_chunk_get(v->repo, d, &file, &e) < 0) {
			v->status[i] = e.code == QX_DAMAGED && strstr(e.msg, "missing") ? CHUNK_MISSING : CHUNK_DAMAGED;
			v->why[i] = strdup(e.msg);
		} else if (chunk_decode(codec, file.data, file.len, raw, v->repo->chunk_size, d, &e) < 0) {
			v->status[i] = CHUNK_DAMAGED;
			v->why[i] = strdup(e.msg);
		}
		progress_add(v->prog, 1);
	}
	buf_free(&file);
	free(raw);
	chunk_codec_free(codec);
	return NULL;
}

static const char *usage = "usage: quiesce verify --repo DIR [SNAPSHOT] [--name NAME] [--json] [--threads N]\n"
			    "       (no SNAPSHOT: every snapshot, or every one named NAME)";

/* The snapshots of `name` (and those whose manifest cannot be read: they
 * may be its, and verify is where damage must show). */
static void filter_named(struct repo *r, char **ids, size_t *n, const char *name)
{
	size_t w = 0;
	for (size_t i = 0; i < *n; i++) {
		struct manifest m;
		struct err le = {0};
		bool keep = true;
		if (repo_manifest_load_summary(r, ids[i], &m, &le) == 0) {
			keep = !strcmp(m.name, name);
			manifest_free(&m);
		}
		if (keep)
			ids[w++] = ids[i];
		else
			free(ids[i]);
	}
	*n = w;
}

int cmd_verify_main(int argc, char **argv, struct cli *c)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS, {"name", required_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'}, {0}};
	const char *name = NULL;
	int opt, rc;
	while ((opt = cli_next_option(c, argc, argv, opts, NULL, usage)) >= 0) {
		if (opt != 'n')
			return -cli_usage(c, "%s", usage);
		name = optarg;
	}
	if (opt == CLI_OPTS_STOP)
		return c->stop;
	if (argc - optind > 1)
		return -cli_usage(c, "%s", usage);

	struct repo *r = NULL;
	char **ids = NULL;
	size_t nids = 0;
	struct verify v = {0};
	uint8_t *manifest_bad = NULL;
	char **manifest_why = NULL;
	size_t cap = 0;
	struct progress prog;
	/* a reader session: gc deletes nothing while we check, so a chunk a
	 * concurrent prune set aside is not reported missing */
	if ((rc = cli_open_repo(c, &r)) < 0 || (rc = repo_session_begin(r, REPO_READER, &c->err)) < 0)
		goto out;
	if (optind < argc) {
		char *one;
		if ((rc = repo_resolve(r, argv[optind], name, &one, &c->err)) < 0)
			goto out;
		ids = calloc(1, sizeof(char *));
		if (!ids) {
			free(one);
			rc = xerr(&c->err, QX_FAIL, "out of memory");
			goto out;
		}
		ids[0] = one;
		nids = 1;
	} else if ((rc = repo_snapshot_ids(r, &ids, &nids, &c->err)) < 0) {
		goto out;
	} else if (name) {
		filter_named(r, ids, &nids, name);
	}
	v.repo = r;
	manifest_bad = calloc(nids + 1, 1);
	manifest_why = calloc(nids + 1, sizeof(char *));
	if (!manifest_bad || !manifest_why) {
		rc = xerr(&c->err, QX_FAIL, "out of memory");
		goto out;
	}
	size_t compacted = 0;
	for (size_t s = 0; s < nids; s++) {
		struct manifest m;
		struct err e = {0};
		if (repo_manifest_load(r, ids[s], &m, &e) < 0) {
			manifest_bad[s] = 1;
			manifest_why[s] = strdup(e.msg);
			continue;
		}
		for (size_t k = 0; k < m.ndisks; k++) {
			struct digest dg;
			for (uint64_t i = 0; (i = chunkmap_next_stored(&m.disks[k].map, i, &dg)) < m.disks[k].nchunks; i++) {
				if (v.nu == cap) {
					cap = cap ? cap * 2 : 4096;
					struct digest *nd = realloc(v.u, cap * sizeof(*nd));
					if (!nd) {
						manifest_free(&m);
						rc = xerr(&c->err, QX_FAIL, "out of memory");
						goto out;
					}
					v.u = nd;
				}
				v.u[v.nu++] = dg;
			}
		}
		manifest_free(&m);
		if (v.nu > 2 * compacted + 4096) {
			compact(v.u, &v.nu);
			compacted = v.nu;
		}
	}
	compact(v.u, &v.nu);
	v.status = calloc(v.nu + 1, 1);
	v.why = calloc(v.nu + 1, sizeof(char *));
	if (!v.status || !v.why) {
		rc = xerr(&c->err, QX_FAIL, "out of memory");
		goto out;
	}
	v.prog = &prog;
	progress_start(&prog, "verify (chunks)", v.nu, !c->json);
	pthread_t th[256];
	int nt = c->threads < 256 ? c->threads : 256, started = 0;
	for (; started < nt; started++)
		if (pthread_create(&th[started], NULL, vworker, &v) != 0)
			break;
	while (started && atomic_load(&v.next) < v.nu && !cli_interrupted) {
		progress_draw(&prog);
		nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
	}
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	progress_end(&prog);
	if (cli_interrupted) {
		rc = xerr(&c->err, QX_INTR, "interrupted");
		goto out;
	}

	/* which snapshots each bad chunk breaks: a second pass over the
	 * manifests, only if a chunk is bad */
	size_t nbad = 0, nhits = 0, hcap = 0;
	struct hit *hits = NULL;
	for (size_t u = 0; u < v.nu; u++)
		nbad += v.status[u] != CHUNK_OK;
	for (size_t s = 0; nbad && s < nids; s++) {
		struct manifest m;
		struct err e = {0};
		if (manifest_bad[s] || repo_manifest_load(r, ids[s], &m, &e) < 0)
			continue;
		for (size_t k = 0; k < m.ndisks; k++) {
			struct digest dg;
			for (uint64_t i = 0; (i = chunkmap_next_stored(&m.disks[k].map, i, &dg)) < m.disks[k].nchunks; i++) {
				const struct digest *f = bsearch(&dg, v.u, v.nu, sizeof(*v.u), cmp_digest);
				size_t at = f ? (size_t)(f - v.u) : 0;
				if (!f || v.status[at] == CHUNK_OK)
					continue;
				if (nhits == hcap) {
					hcap = hcap ? 2 * hcap : 256;
					struct hit *nh = realloc(hits, hcap * sizeof(*nh));
					if (!nh) {
						manifest_free(&m);
						free(hits);
						rc = xerr(&c->err, QX_FAIL, "out of memory");
						goto out;
					}
					hits = nh;
				}
				hits[nhits++] = (struct hit){at, (uint32_t)s};
			}
		}
		manifest_free(&m);
	}
	if (nhits)
		qsort(hits, nhits, sizeof(*hits), cmp_hit);
	uint8_t *broken = calloc(nids + 1, 1);
	size_t nmissing = 0, ndamaged = 0, nbroken = 0;
	json_object *jm = json_object_new_array(), *jd = json_object_new_array(), *jb = json_object_new_array();
	for (size_t u = 0, h = 0; u < v.nu; u++) {
		if (v.status[u] == CHUNK_OK)
			continue;
		char hex[DIGEST_HEX_LEN + 1];
		digest_to_hex(&v.u[u], hex);
		json_object *snaps = json_object_new_array(), *o = json_object_new_object();
		struct buf names = BUF_INIT;
		while (h < nhits && hits[h].chunk < u)
			h++;
		for (; h < nhits && hits[h].chunk == u; h++) {
			uint32_t s = hits[h].snap;
			if (h > 0 && hits[h - 1].chunk == u && hits[h - 1].snap == s)
				continue;
			if (broken)
				broken[s] = 1;
			json_object_array_add(snaps, json_object_new_string(ids[s]));
			buf_printf(&names, "%s%s", names.len ? ", " : "", ids[s]);
		}
		json_object_object_add(o, "digest", json_object_new_string(hex));
		if (v.status[u] == CHUNK_DAMAGED)
			json_object_object_add(o, "error", json_object_new_string(v.why[u] ? v.why[u] : "damaged"));
		json_object_object_add(o, "snapshots", snaps);
		json_object_array_add(v.status[u] == CHUNK_MISSING ? jm : jd, o);
		if (v.status[u] == CHUNK_MISSING)
			nmissing++;
		else
			ndamaged++;
		if (!c->json)
			printf("%s chunk %s%s%s; breaks %s\n", v.status[u] == CHUNK_MISSING ? "missing" : "damaged", hex,
			       v.status[u] == CHUNK_DAMAGED ? ": " : "",
			       v.status[u] == CHUNK_DAMAGED && v.why[u] ? v.why[u] : "", names.data ? names.data : "");
		buf_free(&names);
	}
	free(hits);
	for (size_t s = 0; s < nids; s++) {
		if (manifest_bad[s] && !c->json)
			printf("damaged manifest: %s\n", manifest_why[s] ? manifest_why[s] : ids[s]);
		if (manifest_bad[s] || (broken && broken[s])) {
			json_object_array_add(jb, json_object_new_string(ids[s]));
			nbroken++;
		}
	}
	bool ok = nbroken == 0;
	if (c->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "ok", json_object_new_boolean(ok));
		json_object_object_add(o, "snapshots", json_object_new_int64((int64_t)nids));
		json_object_object_add(o, "chunks_checked", json_object_new_int64((int64_t)v.nu));
		json_object_object_add(o, "missing", jm);
		json_object_object_add(o, "damaged", jd);
		json_object_object_add(o, "broken_snapshots", jb);
		cli_print_json(o);
	} else {
		json_object_put(jm);
		json_object_put(jd);
		json_object_put(jb);
		if (ok)
			printf("%zu snapshot%s, %zu chunks: all present and intact\n", nids, nids == 1 ? "" : "s", v.nu);
		else
			printf("%zu of %zu snapshots broken: %zu chunks missing, %zu damaged\n", nbroken, nids, nmissing,
			       ndamaged);
	}
	free(broken);
	rc = ok ? 0 : xerr(&c->err, QX_DAMAGED, "verify found %zu broken snapshot%s", nbroken, nbroken == 1 ? "" : "s");
out:
	for (size_t i = 0; v.why && i < v.nu; i++)
		free(v.why[i]);
	for (size_t i = 0; manifest_why && i < nids; i++)
		free(manifest_why[i]);
	free(manifest_why);
	free(manifest_bad);
	free(v.why);
	free(v.status);
	free(v.u);
	repo_free_ids(ids, nids);
	repo_close(r);
	return rc < 0 ? -rc : 0;
}
