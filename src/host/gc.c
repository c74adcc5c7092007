// SPDX-License-Identifier: MIT
/* gc: mark, sweep into trash, empty trash when no backup runs (see gc.h). */
#include "gc.h"

#include "fault.h"
#include "xerr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct refset {
	struct digest *d;
	size_t n;
};

static int cmp_digest(const void *a, const void *b)
{
	return digest_cmp(a, b);
}

static bool refset_has(const struct refset *s, const struct digest *d)
{
	return s->n && bsearch(d, s->d, s->n, sizeof(*d), cmp_digest) != NULL;
}

static int refset_build(struct repo *r, struct refset *s, struct err *e)
{
	char **ids;
	size_t nids, cap = 0;
	s->d = NULL;
	s->n = 0;
	int rc = repo_snapshot_ids(r, &ids, &nids, e);
	if (rc < 0)
		return rc;
	for (size_t k = 0; k < nids && rc == 0; k++) {
		struct manifest m;
		struct err le = {0};
		if (repo_manifest_load(r, ids[k], &m, &le) < 0) {
			if (le.code == QX_NOSNAP)
				continue; /* removed since we listed it */
			rc = xerr(e, QX_DAMAGED, "%s; gc deletes nothing while a manifest cannot be read (remove it, or restore it from a copy)",
				  le.msg);
			break;
		}
		for (size_t di = 0; di < m.ndisks && rc == 0; di++) {
			struct digest dg;
			const struct chunkmap *map = &m.disks[di].map;
			for (uint64_t i = 0; (i = chunkmap_next_stored(map, i, &dg)) < map->nchunks; i++) {
				if (s->n == cap) {
					cap = cap ? cap * 2 : 4096;
					struct digest *nd = realloc(s->d, cap * sizeof(*nd));
					if (!nd) {
						rc = xerr(e, QX_FAIL, "out of memory");
						break;
					}
					s->d = nd;
				}
				s->d[s->n++] = dg;
			}
		}
		manifest_free(&m);
	}
	repo_free_ids(ids, nids);
	if (rc < 0) {
		free(s->d);
		s->d = NULL;
		return rc;
	}
	if (s->n) {
		qsort(s->d, s->n, sizeof(*s->d), cmp_digest);
		size_t w = 1;
		for (size_t i = 1; i < s->n; i++)
			if (digest_cmp(&s->d[i], &s->d[w - 1]) != 0)
				s->d[w++] = s->d[i];
		s->n = w;
	}
	return 0;
}

/* Call fn(dirfd, name, digest) for every chunk-named file in tree/xx/. */
typedef int (*chunk_fn)(struct repo *r, int tree_fd, int dirfd, const char *sub, const char *name,
			const struct digest *d, void *ctx, struct err *e);

static int each_chunk(struct repo *r, int tree_fd, chunk_fn fn, void *ctx, struct err *e)
{
	for (int x = 0; x < 256; x++) {
		char sub[3];
		snprintf(sub, sizeof(sub), "%02x", x);
		int fd = openat(tree_fd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return xerr_sys(e, QX_FAIL, errno, "cannot open %s/%s", r->path, sub);
		DIR *dir = fdopendir(fd);
		if (!dir) {
			close(fd);
			return xerr_sys(e, QX_FAIL, errno, "cannot list %s/%s", r->path, sub);
		}
		struct dirent *de;
		int rc = 0;
		while (rc == 0 && (de = readdir(dir))) {
			struct digest d;
			if (digest_from_hex(de->d_name, strlen(de->d_name), &d))
				rc = fn(r, tree_fd, dirfd(dir), sub, de->d_name, &d, ctx, e);
		}
		if (rc == 0 && fsync(dirfd(dir)) < 0)
			rc = xerr_sys(e, QX_FAIL, errno, "cannot sync %s/%s", r->path, sub);
		closedir(dir);
		if (rc < 0)
			return rc;
	}
	return 0;
}

struct sweep_ctx {
	const struct refset *refs;
	struct timespec start;
	struct gc_stats *st;
};

static int sweep_one(struct repo *r, int tree_fd, int dirfd, const char *sub, const char *name,
		     const struct digest *d, void *ctx, struct err *e)
{
	(void)tree_fd;
	struct sweep_ctx *c = ctx;
	if (refset_has(c->refs, d))
		return 0;
	struct stat st;
	if (fstatat(dirfd, name, &st, 0) < 0)
		return 0; /* gone meanwhile */
	if (st.st_mtim.tv_sec > c->start.tv_sec ||
	    (st.st_mtim.tv_sec == c->start.tv_sec && st.st_mtim.tv_nsec >= c->start.tv_nsec))
		return 0; /* written since this gc began: most likely a running backup's */
	char to[DIGEST_HEX_LEN + 4];
	snprintf(to, sizeof(to), "%s/%s", sub, name);
	if (renameat(dirfd, name, r->trash_fd, to) < 0)
		return errno == ENOENT ? 0 : xerr_sys(e, QX_FAIL, errno, "cannot move chunk %s to trash", name);
	fault_point();
	c->st->trashed++;
	return 0;
}

static int empty_one(struct repo *r, int tree_fd, int dirfd, const char *sub, const char *name,
		     const struct digest *d, void *ctx, struct err *e)
{
	(void)tree_fd;
	struct sweep_ctx *c = ctx;
	char rel[DIGEST_HEX_LEN + 4];
	snprintf(rel, sizeof(rel), "%s/%s", sub, name);
	struct stat st;
	if (refset_has(c->refs, d)) {
		/* a manifest written since the sweep needs it: put it back */
		if (fstatat(r->chunks_fd, rel, &st, 0) == 0) {
			unlinkat(dirfd, name, 0);
		} else {
			if (renameat(dirfd, name, r->chunks_fd, rel) < 0)
				return xerr_sys(e, QX_FAIL, errno, "cannot move chunk %s back from trash", name);
			char dir[3] = {sub[0], sub[1], 0};
			int fd = openat(r->chunks_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd >= 0) {
				fsync(fd);
				close(fd);
			}
			c->st->restored++;
		}
		fault_point();
		return 0;
	}
	uint64_t size = fstatat(dirfd, name, &st, 0) == 0 ? (uint64_t)st.st_size : 0;
	if (unlinkat(dirfd, name, 0) < 0)
		return errno == ENOENT ? 0 : xerr_sys(e, QX_FAIL, errno, "cannot delete chunk %s", name);
	fault_point();
	c->st->deleted++;
	c->st->bytes_deleted += size;
	return 0;
}

static int clear_tmp(struct repo *r, struct gc_stats *st, struct err *e)
{
	int fd = openat(r->tmp_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	if (!dir) {
		if (fd >= 0)
			close(fd);
		return xerr_sys(e, QX_FAIL, errno, "cannot list %s/tmp", r->path);
	}
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		int rc = unlinkat(r->tmp_fd, de->d_name, 0);
		if (rc < 0 && errno == EISDIR) { /* a dead VM backup's scratch directory */
			int dfd = openat(r->tmp_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			DIR *sub = dfd >= 0 ? fdopendir(dfd) : NULL;
			struct dirent *se;
			while (sub && (se = readdir(sub)))
				if (strcmp(se->d_name, ".") && strcmp(se->d_name, ".."))
					unlinkat(dfd, se->d_name, 0);
			if (sub)
				closedir(sub);
			else if (dfd >= 0)
				close(dfd);
			rc = unlinkat(r->tmp_fd, de->d_name, AT_REMOVEDIR);
		}
		if (rc == 0) {
			st->tmp_deleted++;
			fault_point();
		}
	}
	closedir(dir);
	return 0;
}

int gc_run(struct repo *r, struct gc_stats *st, struct err *e)
{
	memset(st, 0, sizeof(*st));
	struct timespec start;
	clock_gettime(CLOCK_REALTIME, &start);
	struct refset refs;
	int rc = refset_build(r, &refs, e);
	if (rc < 0)
		return rc;
	st->referenced = refs.n;
	struct sweep_ctx c = {&refs, start, st};
	rc = each_chunk(r, r->chunks_fd, sweep_one, &c, e);
	free(refs.d);
	if (rc < 0)
		return rc;
	int got = repo_try_lock_writers_exclusive(r, e);
	if (got <= 0)
		return got; /* a backup is running: trash waits for the next gc */
	rc = refset_build(r, &refs, e);
	if (rc == 0) {
		c.refs = &refs;
		rc = each_chunk(r, r->trash_fd, empty_one, &c, e);
		if (rc == 0)
			rc = clear_tmp(r, st, e);
		free(refs.d);
	}
	repo_unlock_writers(r);
	st->trash_emptied = rc == 0;
	return rc;
}

json_object *gc_stats_json(const struct gc_stats *st)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "chunks_referenced", json_object_new_int64((int64_t)st->referenced));
	json_object_object_add(o, "chunks_trashed", json_object_new_int64((int64_t)st->trashed));
	json_object_object_add(o, "chunks_restored", json_object_new_int64((int64_t)st->restored));
	json_object_object_add(o, "chunks_deleted", json_object_new_int64((int64_t)st->deleted));
	json_object_object_add(o, "bytes_deleted", json_object_new_int64((int64_t)st->bytes_deleted));
	json_object_object_add(o, "tmp_deleted", json_object_new_int64((int64_t)st->tmp_deleted));
	json_object_object_add(o, "trash_emptied", json_object_new_boolean(st->trash_emptied));
	return o;
}
