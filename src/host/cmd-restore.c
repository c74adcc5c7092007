// SPDX-License-Identifier: MIT
/*
 * cmd-restore: `quiesce restore` — one disk of a snapshot to a file, a block
 * device or a qcow2 image.
 *
 * Worker threads (one per core) take chunk indexes from a shared counter,
 * read and decode each chunk, check it against its digest, and write it at
 * its offset; zero chunks are holes (runs of them, one piece of work).  Restore speed is what users wait on
 * when something is down, so it is as parallel as backup (PBS and restic
 * both had to retrofit this; docs/backup-anchors.md, pain point 6).  Any
 * damaged or missing chunk fails the restore and removes the partial file.
 * A reader session (repo.h) keeps gc from deleting the chunks it reads,
 * even those of a snapshot pruned while it runs.
 */
#include "chunk.h"
#include "cli.h"
#include "fault.h"
#include "progress.h"
#include "repo.h"
#include "target.h"
#include "xerr.h"

#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct restore {
	struct repo *repo;
	const struct manifest_disk *disk;
	uint32_t cs;
	struct target *t;
	struct progress *prog;
	pthread_mutex_t mu;
	_Atomic uint64_t next; /* the first chunk no worker has taken; advanced under mu */
	atomic_bool failed;
	atomic_size_t chunks, zero;
	struct err err;
};

struct rworker {
	struct restore *r;
	int idx;
};

static void restore_fail(struct restore *r, const struct err *e)
{
	pthread_mutex_lock(&r->mu);
	if (!atomic_load(&r->failed)) {
		r->err = *e;
		atomic_store(&r->failed, true);
	}
	pthread_mutex_unlock(&r->mu);
}

/* The next piece of work: one stored chunk (*stored, its digest in *d), or
 * a run of zero chunks — at most 256 MiB, so that workers share a long run
 * that a block device must zero.  Found in the chunk map page by page, so a
 * mostly empty 1 TiB disk is a handful of pieces, not 16 Mi. */
static bool take(struct restore *r, uint64_t *i, uint64_t *n, bool *stored, struct digest *d)
{
	uint64_t cap = (256u << 20) / r->cs;
	pthread_mutex_lock(&r->mu);
	uint64_t at = atomic_load(&r->next), total = r->disk->nchunks;
	bool more = at < total;
	if (more) {
		uint64_t s = chunkmap_next_stored(&r->disk->map, at, d);
		*i = at;
		*stored = s == at;
		*n = *stored ? 1 : (s - at < cap ? s - at : cap);
		atomic_store(&r->next, at + *n);
	}
	pthread_mutex_unlock(&r->mu);
	return more;
}

static void *rworker_run(void *arg)
{
	struct rworker *w = arg;
	struct restore *r = w->r;
	struct chunk_codec *codec = chunk_codec_new();
	uint8_t *raw = malloc(r->cs);
	struct buf file = BUF_INIT;
	struct err e = {0};
	if (!codec || !raw) {
		xerr(&e, QX_FAIL, "out of memory");
		restore_fail(r, &e);
	}
	uint64_t i, n;
	bool stored;
	struct digest dg;
	while (!atomic_load(&r->failed) && take(r, &i, &n, &stored, &dg)) {
		if (cli_interrupted) {
			xerr(&e, QX_INTR, "interrupted; the partial restore was removed");
			restore_fail(r, &e);
			break;
		}
		uint64_t off = i * r->cs, end = (i + n) * r->cs;
		if (end > r->disk->size)
			end = r->disk->size;
		size_t len = (size_t)(end - off);
		if (!stored) {
			atomic_fetch_add(&r->zero, n);
			if (target_zero(r->t, w->idx, off, end - off, &e) < 0)
				restore_fail(r, &e);
			progress_add(r->prog, end - off);
			continue;
		}
		char hex[DIGEST_HEX_LEN + 1];
		struct err de = {0};
		long got;
		if (repo_chunk_get(r->repo, &dg, &file, &e) < 0) {
			restore_fail(r, &e);
			break;
		}
		got = chunk_decode(codec, file.data, file.len, raw, r->cs, &dg, &de);
		if (got < 0 || (size_t)got != len) {
			digest_to_hex(&dg, hex);
			xerr(&e, QX_DAMAGED, "chunk %s (at offset %llu) is damaged: %s", hex, (unsigned long long)off,
			     got < 0 ? de.msg : "wrong length for its place");
			restore_fail(r, &e);
			break;
		}
		if (target_pwrite(r->t, w->idx, raw, len, off, &e) < 0) {
			restore_fail(r, &e);
			break;
		}
		atomic_fetch_add(&r->chunks, 1);
		progress_add(r->prog, len);
	}
	buf_free(&file);
	free(raw);
	chunk_codec_free(codec);
	return NULL;
}

static const char *usage =
	"usage: quiesce restore --repo DIR SNAPSHOT --to PATH [--name NAME] [--disk N] [--format raw|qcow2]\n"
	"                       [--force] [--json] [--threads N]   (SNAPSHOT: an id, a prefix, or latest)";

int cmd_restore_main(int argc, char **argv, struct cli *c)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		{"to", required_argument, NULL, 'o'},
		{"disk", required_argument, NULL, 'd'},
		{"format", required_argument, NULL, 'f'},
		{"force", no_argument, NULL, 'F'},
		{"name", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *to = NULL, *name = NULL;
	long disk = 0;
	bool force = false;
	enum target_format fmt = TARGET_RAW;
	int opt, rc;
	while ((opt = cli_next_option(c, argc, argv, opts, NULL, usage)) >= 0) {
		char *end;
		switch (opt) {
		case 'o':
			to = optarg;
			break;
		case 'd':
			disk = strtol(optarg, &end, 10);
			if (*end || disk < 0)
				return -cli_usage(c, "--disk wants a disk number from 0, not '%s'", optarg);
			break;
		case 'f':
			if (!strcmp(optarg, "raw"))
				fmt = TARGET_RAW;
			else if (!strcmp(optarg, "qcow2"))
				fmt = TARGET_QCOW2;
			else
				return -cli_usage(c, "--format is raw or qcow2, not '%s'", optarg);
			break;
		case 'F':
			force = true;
			break;
		case 'n':
			name = optarg;
			break;
		default:
			return -cli_usage(c, "%s", usage);
		}
	}
	if (opt == CLI_OPTS_STOP)
		return c->stop;
	if (optind != argc - 1 || !to)
		return -cli_usage(c, "restore needs one SNAPSHOT and --to PATH\n%s", usage);

	struct repo *r = NULL;
	char *id = NULL;
	struct manifest m = {0};
	struct target *t = NULL;
	struct progress prog;
	struct restore rs = {0};
	pthread_mutex_init(&rs.mu, NULL);
	pthread_t *th = NULL;
	struct rworker *ws = NULL;
	/* the session first: from here on gc deletes nothing this restore may
	 * read, even if prune removes the snapshot meanwhile */
	if ((rc = cli_open_repo(c, &r)) < 0 || (rc = repo_session_begin(r, REPO_READER, &c->err)) < 0 ||
	    (rc = repo_resolve(r, argv[optind], name, &id, &c->err)) < 0 ||
	    (rc = repo_manifest_load(r, id, &m, &c->err)) < 0)
		goto out;
	if ((size_t)disk >= m.ndisks) {
		rc = xerr(&c->err, QX_USAGE, "snapshot %s has %zu disk%s; there is no disk %ld", id, m.ndisks,
			  m.ndisks == 1 ? "" : "s", disk);
		goto out;
	}
	const struct manifest_disk *d = &m.disks[disk];
	int nw = c->threads;
	if ((rc = target_open(to, fmt, d->size, force, nw, &t, &c->err)) < 0)
		goto out;
	rs.repo = r;
	rs.disk = d;
	rs.cs = m.chunk_size;
	rs.t = t;
	rs.prog = &prog;
	th = calloc((size_t)nw, sizeof(*th));
	ws = calloc((size_t)nw, sizeof(*ws));
	if (!th || !ws) {
		rc = xerr(&c->err, QX_FAIL, "out of memory");
		goto out;
	}
	fault_hold("restore-started", &cli_interrupted);
	progress_start(&prog, "restore", d->size, !c->json);
	int started = 0;
	for (; started < nw; started++) {
		ws[started] = (struct rworker){&rs, started};
		if (pthread_create(&th[started], NULL, rworker_run, &ws[started]) != 0)
			break;
	}
	if (!started) {
		rc = xerr(&c->err, QX_FAIL, "cannot start worker threads");
	} else {
		/* draw while they work */
		while (atomic_load(&rs.next) < d->nchunks && !atomic_load(&rs.failed)) {
			progress_draw(&prog);
			nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
		}
		for (int i = 0; i < started; i++)
			pthread_join(th[i], NULL);
	}
	progress_end(&prog);
	if (atomic_load(&rs.failed)) {
		c->err = rs.err;
		rc = -rs.err.code;
	}
	if (rc < 0)
		goto out;
	rc = target_commit(t, &c->err);
	t = NULL;
	if (rc < 0)
		goto out;
	if (c->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "id", json_object_new_string(id));
		json_object_object_add(o, "disk", json_object_new_int64(disk));
		json_object_object_add(o, "to", json_object_new_string(to));
		json_object_object_add(o, "format", json_object_new_string(fmt == TARGET_QCOW2 ? "qcow2" : "raw"));
		json_object_object_add(o, "bytes", json_object_new_int64((int64_t)d->size));
		json_object_object_add(o, "chunks", json_object_new_int64((int64_t)d->nchunks));
		json_object_object_add(o, "chunks_zero", json_object_new_int64((int64_t)atomic_load(&rs.zero)));
		cli_print_json(o);
	} else {
		printf("restored %s disk %ld to %s: %.1f MiB in %.2f s\n", id, disk, to, (double)d->size / 1048576,
		       progress_now() - prog.start);
	}
out:
	if (t)
		target_abort(t);
	free(th);
	free(ws);
	pthread_mutex_destroy(&rs.mu);
	manifest_free(&m);
	free(id);
	repo_close(r);
	return rc < 0 ? -rc : 0;
}
