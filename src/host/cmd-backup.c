// SPDX-License-Identifier: MIT
/*
 * cmd-backup: `quiesce backup` — disks into the repository as one snapshot.
 *
 * A pipeline: this thread walks every disk chunk by chunk, skipping ranges
 * the source's allocation map says are zero and reading the rest into a
 * bounded pool of buffers; worker threads (one per core) drop all-zero
 * chunks, hash the rest, and compress and write only chunks the repository
 * does not have.  The pool bounds memory to (2 x threads + threads) chunks
 * whatever the disk size.  The manifest is written last, after every chunk
 * directory is fsynced, so a snapshot is visible only when complete; the
 * caller holds a writer session throughout, so gc never deletes a chunk
 * this backup found present and did not write (repo.h, Sessions; docs/
 * repository.md, Prune and garbage collection).
 */
#include "backup.h"
#include "chunk.h"
#include "cli.h"
#include "fault.h"
#include "progress.h"
#include "repo.h"
#include "source.h"
#include "xerr.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


struct bjob {
	struct manifest_disk *disk;
	uint64_t idx;
	size_t len;
	uint8_t *buf;
};

struct pipeline {
	pthread_mutex_t mu;
	pthread_cond_t work, freed;
	struct bjob *q;
	size_t qcap, qhead, qn;
	uint8_t **pool; /* the free list */
	size_t nfree;
	uint8_t **bufs; /* every buffer, for freeing whatever the pipeline's state */
	bool done, failed;
	struct err err;
	/* staged chunks waiting for their fsync + rename, in one committer thread */
	struct staged_chunk *cq;
	size_t cqcap, cqhead, cqn;
	bool workers_done;
	bool held; /* the committer's test hold, once */
	pthread_cond_t staged, committed;
	struct repo *repo;
	struct progress *prog;
	const struct backup_guard *guard;
	_Atomic uint64_t chunks_new, chunks_reused, chunks_zero, bytes_stored, bytes_read, bytes_zero;
};

static void pipeline_fail(struct pipeline *p, const struct err *e)
{
	pthread_mutex_lock(&p->mu);
	if (!p->failed) {
		p->err = *e;
		p->failed = true;
	}
	pthread_cond_broadcast(&p->work);
	pthread_cond_broadcast(&p->freed);
	pthread_cond_broadcast(&p->staged);
	pthread_cond_broadcast(&p->committed);
	pthread_mutex_unlock(&p->mu);
}

/* Hand a staged chunk to the committer; waits while its queue is full. */
static int enqueue_commit(struct pipeline *p, struct staged_chunk *s, struct err *e)
{
	pthread_mutex_lock(&p->mu);
	while (p->cqn == p->cqcap && !p->failed)
		pthread_cond_wait(&p->committed, &p->mu);
	if (p->failed) {
		pthread_mutex_unlock(&p->mu);
		repo_chunk_discard(p->repo, s);
		return xerr(e, QX_FAIL, "pipeline stopped");
	}
	p->cq[(p->cqhead + p->cqn) % p->cqcap] = *s;
	p->cqn++;
	pthread_cond_signal(&p->staged);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

static void *committer(void *arg)
{
	struct pipeline *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (!p->cqn && !p->workers_done && !p->failed)
			pthread_cond_wait(&p->staged, &p->mu);
		if (!p->cqn) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		struct staged_chunk s = p->cq[p->cqhead];
		p->cqhead = (p->cqhead + 1) % p->cqcap;
		p->cqn--;
		bool failed = p->failed;
		pthread_cond_signal(&p->committed);
		pthread_mutex_unlock(&p->mu);
		struct err e = {0};
		if (!p->held) {
			p->held = true;
			fault_hold("backup-staged", &cli_interrupted); /* a staged chunk waits in tmp/ */
		}
		if (failed)
			repo_chunk_discard(p->repo, &s); /* drain: no rename after a failure */
		else if (repo_chunk_commit(p->repo, &s, &e) < 0)
			pipeline_fail(p, &e);
	}
}

static bool all_zero(const uint8_t *b, size_t n)
{
	/* the first 16 bytes, then the buffer against itself shifted by 16 */
	for (size_t i = 0; i < n && i < 16; i++)
		if (b[i])
			return false;
	return n <= 16 || memcmp(b, b + 16, n - 16) == 0;
}

static int process(struct pipeline *p, struct chunk_codec *codec, uint8_t *enc, size_t enc_cap, struct bjob *j,
		   struct err *e)
{
	atomic_fetch_add(&p->bytes_read, j->len);
	if (all_zero(j->buf, j->len)) {
		atomic_fetch_add(&p->chunks_zero, 1);
		atomic_fetch_add(&p->bytes_zero, j->len);
		return 0;
	}
	struct digest d;
	if (digest_sha256(j->buf, j->len, &d) < 0)
		return xerr(e, QX_FAIL, "SHA-256 failed");
	if (chunkmap_set(&j->disk->map, j->idx, &d) < 0)
		return xerr(e, QX_FAIL, "out of memory");
	if (repo_chunk_exists(p->repo, &d)) {
		atomic_fetch_add(&p->chunks_reused, 1);
		return 0;
	}
	size_t flen = chunk_encode(codec, j->buf, j->len, enc, enc_cap);
	if (!flen)
		return xerr(e, QX_FAIL, "cannot encode a chunk");
	struct staged_chunk st;
	int rc = repo_chunk_stage(p->repo, &d, enc, flen, &st, e);
	if (rc < 0)
		return rc;
	if (rc == 0) {
		atomic_fetch_add(&p->chunks_reused, 1);
		return 0;
	}
	atomic_fetch_add(&p->chunks_new, 1);
	atomic_fetch_add(&p->bytes_stored, flen);
	return enqueue_commit(p, &st, e);
}

static void *worker(void *arg)
{
	struct pipeline *p = arg;
	size_t cap = chunk_file_bound(p->repo->chunk_size);
	struct chunk_codec *codec = chunk_codec_new();
	uint8_t *enc = malloc(cap);
	if (!codec || !enc) {
		struct err e = {0};
		xerr(&e, QX_FAIL, "out of memory");
		pipeline_fail(p, &e);
	}
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (!p->qn && !p->done && !p->failed)
			pthread_cond_wait(&p->work, &p->mu);
		if (!p->qn || p->failed) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		struct bjob j = p->q[p->qhead];
		p->qhead = (p->qhead + 1) % p->qcap;
		p->qn--;
		pthread_mutex_unlock(&p->mu);

		struct err e = {0};
		if (process(p, codec, enc, cap, &j, &e) < 0)
			pipeline_fail(p, &e);
		progress_add(p->prog, j.len);

		pthread_mutex_lock(&p->mu);
		p->pool[p->nfree++] = j.buf;
		pthread_cond_signal(&p->freed);
		pthread_mutex_unlock(&p->mu);
	}
	chunk_codec_free(codec);
	free(enc);
	return NULL;
}

/* This thread: walk the disks, feed the workers.  A hole the source's
 * allocation map reports is skipped in one step however many chunks it
 * spans (16 Mi chunks of an empty 1 TiB disk are one lseek). */
static void feed(struct pipeline *p, struct source **src, struct manifest *m)
{
	uint32_t cs = m->chunk_size;
	for (size_t di = 0; di < m->ndisks; di++) {
		struct manifest_disk *d = &m->disks[di];
		for (uint64_t i = 0; i < d->nchunks;) {
			struct err e = {0};
			if (cli_interrupted) {
				xerr(&e, QX_INTR, "interrupted; no snapshot was written");
				pipeline_fail(p, &e);
			}
			if (p->guard && p->guard->check(p->guard->ctx, false, &e) < 0)
				pipeline_fail(p, &e);
			uint64_t off = i * cs;
			size_t len = (size_t)(d->size - off < cs ? d->size - off : cs);
			uint64_t zend = off;
			if (src[di]->ops->zero_until(src[di], off, &zend, &e) < 0)
				pipeline_fail(p, &e);
			pthread_mutex_lock(&p->mu);
			bool failed = p->failed;
			pthread_mutex_unlock(&p->mu);
			if (failed)
				return;
			if (zend >= off + len) {
				/* chunks i .. k-1 lie wholly in the hole */
				uint64_t k = zend >= d->size ? d->nchunks : zend / cs;
				uint64_t bytes = (k == d->nchunks ? d->size : k * cs) - off;
				atomic_fetch_add(&p->chunks_zero, k - i);
				atomic_fetch_add(&p->bytes_zero, bytes);
				progress_add(p->prog, bytes);
				i = k;
				continue;
			}
			pthread_mutex_lock(&p->mu);
			while (!p->nfree && !p->failed)
				pthread_cond_wait(&p->freed, &p->mu);
			if (p->failed) {
				pthread_mutex_unlock(&p->mu);
				return;
			}
			uint8_t *buf = p->pool[--p->nfree];
			pthread_mutex_unlock(&p->mu);
			if (src[di]->ops->pread(src[di], buf, len, off, &e) < 0) {
				pipeline_fail(p, &e);
				pthread_mutex_lock(&p->mu);
				p->pool[p->nfree++] = buf;
				pthread_mutex_unlock(&p->mu);
				return;
			}
			pthread_mutex_lock(&p->mu);
			p->q[(p->qhead + p->qn) % p->qcap] = (struct bjob){d, i, len, buf};
			p->qn++;
			pthread_cond_signal(&p->work);
			pthread_mutex_unlock(&p->mu);
			progress_draw(p->prog);
			i++;
		}
	}
}

static int run_pipeline(struct cli *c, struct repo *r, struct source **src, struct manifest *m,
			struct progress *prog, const struct backup_guard *guard, json_object *stats)
{
	int nthreads = c->threads;
	size_t nbuf = (size_t)nthreads * 3;
	struct pipeline p = {.repo = r, .prog = prog, .guard = guard, .qcap = nbuf, .cqcap = 4 * nbuf};
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.work, NULL);
	pthread_cond_init(&p.freed, NULL);
	pthread_cond_init(&p.staged, NULL);
	pthread_cond_init(&p.committed, NULL);
	pthread_t commit_th;
	bool commit_started = false;
	p.cq = calloc(p.cqcap, sizeof(*p.cq));
	p.q = calloc(nbuf, sizeof(*p.q));
	p.pool = calloc(nbuf, sizeof(*p.pool));
	p.bufs = calloc(nbuf, sizeof(*p.bufs));
	pthread_t *th = calloc((size_t)nthreads, sizeof(*th));
	int started = 0, rc = 0;
	if (!p.q || !p.pool || !p.bufs || !p.cq || !th) {
		rc = xerr(&c->err, QX_FAIL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nbuf; i++) {
		if (!(p.bufs[i] = malloc(r->chunk_size))) {
			rc = xerr(&c->err, QX_FAIL, "out of memory for %zu chunk buffers", nbuf);
			goto out;
		}
		p.pool[p.nfree++] = p.bufs[i];
	}
	for (; started < nthreads; started++)
		if (pthread_create(&th[started], NULL, worker, &p) != 0)
			break;
	commit_started = pthread_create(&commit_th, NULL, committer, &p) == 0;
	if (!started || !commit_started) {
		struct err e = {0};
		xerr(&e, QX_FAIL, "cannot start worker threads");
		pipeline_fail(&p, &e); /* whatever did start stops; joined below */
	} else {
		feed(&p, src, m);
	}
	pthread_mutex_lock(&p.mu);
	p.done = true;
	pthread_cond_broadcast(&p.work);
	pthread_mutex_unlock(&p.mu);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_lock(&p.mu);
	p.workers_done = true;
	pthread_cond_broadcast(&p.staged);
	pthread_mutex_unlock(&p.mu);
	if (commit_started)
		pthread_join(commit_th, NULL);
	if (!p.failed && cli_interrupted)
		xerr(&p.err, QX_INTR, "interrupted; no snapshot was written"), p.failed = true;
	if (p.failed) {
		c->err = p.err;
		rc = -p.err.code;
	}
	json_object_object_add(stats, "bytes_read", json_object_new_int64((int64_t)p.bytes_read));
	json_object_object_add(stats, "bytes_zero", json_object_new_int64((int64_t)p.bytes_zero));
	json_object_object_add(stats, "chunks_new", json_object_new_int64((int64_t)p.chunks_new));
	json_object_object_add(stats, "chunks_reused", json_object_new_int64((int64_t)p.chunks_reused));
	json_object_object_add(stats, "chunks_zero", json_object_new_int64((int64_t)p.chunks_zero));
	json_object_object_add(stats, "bytes_stored", json_object_new_int64((int64_t)p.bytes_stored));
out:
	for (size_t i = 0; p.bufs && i < nbuf; i++)
		free(p.bufs[i]);
	free(p.bufs);
	free(p.pool);
	free(p.q);
	free(p.cq);
	pthread_cond_destroy(&p.staged);
	pthread_cond_destroy(&p.committed);
	free(th);
	pthread_mutex_destroy(&p.mu);
	pthread_cond_destroy(&p.work);
	pthread_cond_destroy(&p.freed);
	return rc;
}

int backup_snapshot(struct cli *c, struct repo *r, const struct backup_disk *disks, size_t n, const char *name,
		    const char *id, const char *when, json_object *meta, const struct backup_guard *guard,
		    json_object **doc)
{
	struct manifest m = {0};
	struct progress prog;
	struct source *src[MAX_DISKS];
	json_object *stats = json_object_new_object();
	double t0 = progress_now();
	int rc = 0;
	uint64_t total = 0;
	char host[256] = "";
	if (n == 0 || n > MAX_DISKS)
		return xerr(&c->err, QX_USAGE, "a snapshot holds 1 to %d disks", MAX_DISKS);
	gethostname(host, sizeof(host) - 1);
	m.id = strdup(id);
	m.name = strdup(name ? name : "");
	m.time = strdup(when);
	m.host = strdup(host);
	m.chunk_size = r->chunk_size;
	m.disks = calloc(n, sizeof(*m.disks));
	if (!m.id || !m.name || !m.time || !m.host || !m.disks) {
		rc = xerr(&c->err, QX_FAIL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		src[i] = disks[i].src;
		total += disks[i].src->size;
		m.ndisks = i + 1;
		int di = manifest_disk_init(&m.disks[i], disks[i].name, disks[i].label, disks[i].src->size, r->chunk_size);
		if (di == -E2BIG) {
			/* refused before reading: a manifest must stay readable */
			rc = xerr(&c->err, QX_FAIL, "%s: %llu bytes need more than %llu chunks of %u KiB, the most a "
				  "snapshot's disk may have; use a repository with a larger --chunk-size",
				  disks[i].label, (unsigned long long)disks[i].src->size, MANIFEST_MAX_CHUNKS,
				  r->chunk_size >> 10);
			goto out;
		}
		if (di < 0) {
			rc = xerr(&c->err, QX_FAIL, "out of memory");
			goto out;
		}
	}
	if (r->version == 1) {
		/* a version-1 manifest spells out every chunk, zero ones as null:
		 * refuse now what could never be written, not after the read */
		uint64_t least = 0;
		for (size_t i = 0; i < n; i++)
			least += m.disks[i].nchunks * 5;
		if (least > MANIFEST_V1_MAX_BYTES) {
			rc = xerr(&c->err, QX_FAIL, "%s is a version-1 repository, whose manifests hold at most 1024 MiB: "
				  "this snapshot's would take at least %llu MiB (quiesce upgrade makes it version 2)",
				  r->path, (unsigned long long)(least >> 20));
			goto out;
		}
	}
	progress_start(&prog, "backup", total, !c->json);
	rc = run_pipeline(c, r, src, &m, &prog, guard, stats);
	progress_end(&prog);
	if (rc < 0)
		goto out;
	if ((rc = repo_sync_chunks(r, &c->err)) < 0)
		goto out;
	json_object_object_add(stats, "seconds", json_object_new_double(progress_now() - t0));
	m.stats = json_object_get(stats);
	m.metadata = meta ? json_object_get(meta) : json_object_new_object();
	fault_hold("backup-stored", &cli_interrupted);
	if (cli_interrupted) {
		rc = xerr(&c->err, QX_INTR, "interrupted; no snapshot was written");
		goto out;
	}
	if (guard && (rc = guard->check(guard->ctx, true, &c->err)) < 0)
		goto out;
	if ((rc = repo_manifest_store(r, &m, &c->err)) < 0)
		goto out;

	json_object *o = json_object_new_object(), *jd = json_object_new_array();
	json_object_object_add(o, "id", json_object_new_string(m.id));
	json_object_object_add(o, "name", json_object_new_string(m.name));
	json_object_object_add(o, "time", json_object_new_string(m.time));
	for (size_t i = 0; i < m.ndisks; i++) {
		json_object *d = json_object_new_object();
		uint64_t zero = m.disks[i].nchunks - m.disks[i].map.stored;
		json_object_object_add(d, "name", json_object_new_string(m.disks[i].name));
		json_object_object_add(d, "source", json_object_new_string(m.disks[i].source));
		json_object_object_add(d, "size", json_object_new_int64((int64_t)m.disks[i].size));
		json_object_object_add(d, "chunks", json_object_new_int64((int64_t)m.disks[i].nchunks));
		json_object_object_add(d, "chunks_zero", json_object_new_int64((int64_t)zero));
		json_object_array_add(jd, d);
	}
	json_object_object_add(o, "disks", jd);
	json_object_object_add(o, "stats", json_object_get(stats));
	*doc = o;
out:
	manifest_free(&m);
	json_object_put(stats);
	return rc;
}

void backup_print_summary(const json_object *doc)
{
	json_object *stats = json_object_object_get(doc, "stats"), *disks = json_object_object_get(doc, "disks");
	int64_t total = 0;
	for (size_t i = 0; i < json_object_array_length(disks); i++)
		total += json_object_get_int64(json_object_object_get(json_object_array_get_idx(disks, i), "size"));
#define STAT(k) json_object_get_int64(json_object_object_get(stats, k))
	size_t nd = json_object_array_length(disks);
	printf("snapshot %s saved: %zu disk%s, %.1f MiB; %lld new chunks (%.1f MiB stored), %lld reused, %lld zero; %.2f s\n",
	       json_object_get_string(json_object_object_get(doc, "id")), nd, nd == 1 ? "" : "s",
	       (double)total / 1048576, (long long)STAT("chunks_new"), (double)STAT("bytes_stored") / 1048576,
	       (long long)STAT("chunks_reused"), (long long)STAT("chunks_zero"),
	       json_object_get_double(json_object_object_get(stats, "seconds")));
#undef STAT
}

static int parse_time(const char *s, char id[64], char when[32])
{
	struct tm tm = {0};
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end)
		return -1;
	repo_id_for_time(timegm(&tm), 0, id, when);
	return 0;
}

static const char *usage =
	"usage: quiesce backup --repo DIR --image SOURCE [--image SOURCE ...] [--name NAME]\n"
	"                      [--meta KEY=VALUE ...] [--time YYYY-MM-DDTHH:MM:SSZ] [--json] [--threads N]\n"
	"       quiesce backup --repo DIR --qmp QMP_SOCKET [--qga AGENT_SOCKET] --name VM [--mountpoint M ...]\n"
	"                      [--consistency require-app|prefer-app|crash] [--scratch-dir DIR]\n"
	"                      [--freeze-timeout S] [--agent-timeout S] [--json]   (a running QEMU VM)";

int cmd_backup_main(int argc, char **argv, struct cli *c)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTIONS,
		VM_BACKUP_OPTIONS,
		{"image", required_argument, NULL, 'i'},
		{"name", required_argument, NULL, 'n'},
		{"meta", required_argument, NULL, 'm'},
		{"time", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *images[MAX_DISKS], *name = NULL, *when_arg = NULL;
	size_t nimages = 0;
	struct vm_backup_opts vm = {0};
	json_object *meta = json_object_new_object();
	int opt, rc;
	while ((opt = cli_next_option(c, argc, argv, opts, &vm, usage)) >= 0) {
		switch (opt) {
		case 'i':
			if (nimages == MAX_DISKS) {
				rc = cli_usage(c, "at most %d --image", MAX_DISKS);
				goto out_meta;
			}
			images[nimages++] = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'm': {
			const char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg) {
				rc = cli_usage(c, "--meta wants KEY=VALUE, not '%s'", optarg);
				goto out_meta;
			}
			char key[256];
			snprintf(key, sizeof(key), "%.*s", (int)(eq - optarg), optarg);
			json_object_object_add(meta, key, json_object_new_string(eq + 1));
			break;
		}
		case 't':
			when_arg = optarg;
			break;
		default:
			rc = cli_usage(c, "%s", usage);
			goto out_meta;
		}
	}
	if (opt == CLI_OPTS_STOP) {
		json_object_put(meta);
		return c->stop;
	}
	if (optind < argc) {
		rc = cli_usage(c, "unexpected argument '%s'\n%s", argv[optind], usage);
		goto out_meta;
	}
	char id[64], when[32];
	repo_new_id(id, when);
	if (when_arg && parse_time(when_arg, id, when) < 0) {
		rc = cli_usage(c, "--time wants YYYY-MM-DDTHH:MM:SSZ (UTC), not '%s'", when_arg);
		goto out_meta;
	}
	if (vm.qmp) {
		if (nimages) {
			rc = cli_usage(c, "--image and --qmp do not mix: a VM's disks are found through QMP");
			goto out_meta;
		}
		/* a VM snapshot is named after its point in time, which the VM
		 * backup knows only once its transaction is done */
		rc = vm_backup_run(c, &vm, name, when_arg ? id : NULL, when_arg ? when : NULL, meta);
		goto out_meta;
	}
	if (vm.qga || vm.nmountpoints || vm.consistency_set) {
		rc = cli_usage(c, "--qga, --mountpoint and --consistency need --qmp");
		goto out_meta;
	}
	if (!nimages) {
		rc = cli_usage(c, "backup needs at least one --image (or --qmp for a running VM)\n%s", usage);
		goto out_meta;
	}

	struct repo *r = NULL;
	struct backup_disk disks[MAX_DISKS] = {0};
	json_object *doc = NULL;
	if ((rc = cli_open_repo(c, &r)) < 0)
		goto out;
	for (size_t i = 0; i < nimages; i++) {
		if ((rc = source_open(images[i], &disks[i].src, &c->err)) < 0)
			goto out;
		snprintf(disks[i].name, sizeof(disks[i].name), "disk%zu", i);
		disks[i].label = images[i];
	}
	if ((rc = repo_lock_writers_shared(r, &c->err)) < 0)
		goto out;
	if ((rc = backup_snapshot(c, r, disks, nimages, name, id, when, meta, NULL, &doc)) < 0)
		goto out;
	if (c->json)
		cli_print_json(json_object_get(doc));
	else
		backup_print_summary(doc);
out:
	json_object_put(doc);
	for (size_t i = 0; i < nimages; i++)
		source_close(disks[i].src);
	repo_close(r);
out_meta:
	json_object_put(meta);
	return rc < 0 ? -rc : rc;
}
