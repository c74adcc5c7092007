// SPDX-License-Identifier: MIT
/* gc: mark, sweep into a trash generation, empty what no session needs (see gc.h). */
#include "gc.h"

#include "cleanup.h"
#include "fault.h"
#include "xerr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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

/* Sort and drop duplicates from `from` on, merged with the sorted, unique
 * s->d[0 .. from): snapshots of one disk share most chunks, so the set is
 * kept unique as it grows instead of holding every reference of every
 * snapshot at once. */
static void refset_compact(struct refset *s)
{
	if (s->n < 2)
		return;
	qsort(s->d, s->n, sizeof(*s->d), cmp_digest);
	size_t w = 1;
	for (size_t i = 1; i < s->n; i++)
		if (digest_cmp(&s->d[i], &s->d[w - 1]) != 0)
			s->d[w++] = s->d[i];
	s->n = w;
}

static int refset_build(struct repo *r, struct refset *s, struct err *e)
{
	char **ids;
	size_t nids, cap = 0, compacted = 0;
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
			rc = xerr(e, le.code == QX_DAMAGED ? QX_DAMAGED : QX_FAIL,
				  "%s; gc deletes nothing while a manifest cannot be read (remove it, or restore it from a copy)",
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
		if (s->n > 2 * compacted + 4096) {
			refset_compact(s);
			compacted = s->n;
		}
	}
	repo_free_ids(ids, nids);
	if (rc < 0) {
		free(s->d);
		s->d = NULL;
		return rc;
	}
	refset_compact(s);
	return 0;
}

/* Call fn(dirfd, name, digest) for every chunk-named file in tree/xx/
 * (fan-out directories that do not exist are skipped: trash generations
 * have only those they were given). */
typedef int (*chunk_fn)(struct repo *r, int dirfd, const char *sub, const char *name, const struct digest *d,
			void *ctx, struct err *e);

static int each_chunk(struct repo *r, int tree_fd, chunk_fn fn, void *ctx, struct err *e)
{
	for (int x = 0; x < 256; x++) {
		char sub[3];
		snprintf(sub, sizeof(sub), "%02x", x);
		int fd = openat(tree_fd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			continue;
		if (fd < 0)
			return xerr_sys(e, QX_FAIL, errno, "cannot open %s/%s", r->path, sub);
		DIR *dir = fdopendir(fd);
		if (!dir) {
			close(fd);
			return xerr_sys(e, QX_FAIL, errno, "cannot list %s/%s", r->path, sub);
		}
		struct dirent *de;
		int rc = 0;
		bool any = false;
		while (rc == 0 && (de = readdir(dir))) {
			struct digest d;
			if (digest_from_hex(de->d_name, strlen(de->d_name), &d)) {
				any = true;
				rc = fn(r, dirfd(dir), sub, de->d_name, &d, ctx, e);
			}
		}
		if (rc == 0 && any && fsync(dirfd(dir)) < 0)
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
	uint64_t gen;		/* 0: into trash/xx/ (version 1) */
	uint64_t touched[4];	/* trash/gen/<gen>/xx/ that got a chunk */
	bool deletable;		/* emptying: this generation may go */
	bool left;		/* emptying: something stayed in it */
};

/* The directory a sweep moves into, made on first use. */
static int sweep_dest(struct repo *r, struct sweep_ctx *c, const char *sub, char *to, size_t n)
{
	if (!c->gen) {
		snprintf(to, n, "%s/", sub);
		return r->trash_fd;
	}
	snprintf(to, n, "%llu/%s/", (unsigned long long)c->gen, sub);
	int x = (int)strtol(sub, NULL, 16);
	if (!(c->touched[x >> 6] >> (x & 63) & 1)) {
		char gdir[32];
		snprintf(gdir, sizeof(gdir), "%llu", (unsigned long long)c->gen);
		if ((mkdirat(r->gens_fd, gdir, 0755) < 0 && errno != EEXIST) ||
		    (mkdirat(r->gens_fd, to, 0755) < 0 && errno != EEXIST))
			return -1;
		c->touched[x >> 6] |= 1ull << (x & 63);
	}
	return r->gens_fd;
}

static int sweep_one(struct repo *r, int dirfd, const char *sub, const char *name, const struct digest *d,
		     void *ctx, struct err *e)
{
	struct sweep_ctx *c = ctx;
	if (refset_has(c->refs, d))
		return 0;
	struct stat st;
	if (fstatat(dirfd, name, &st, 0) < 0)
		return 0; /* gone meanwhile */
	if (st.st_mtim.tv_sec > c->start.tv_sec ||
	    (st.st_mtim.tv_sec == c->start.tv_sec && st.st_mtim.tv_nsec >= c->start.tv_nsec))
		return 0; /* written since this gc began: most likely a running backup's */
	char to[128];
	int tofd = sweep_dest(r, c, sub, to, sizeof(to));
	if (tofd < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot make a trash generation in %s", r->path);
	strncat(to, name, sizeof(to) - strlen(to) - 1);
	if (renameat(dirfd, name, tofd, to) < 0)
		return errno == ENOENT ? 0 : xerr_sys(e, QX_FAIL, errno, "cannot move chunk %s to trash", name);
	fault_point();
	c->st->trashed++;
	return 0;
}

/* The new generation's directories, durable before anything is deleted. */
static int sweep_sync(struct repo *r, const struct sweep_ctx *c, struct err *e)
{
	if (!c->gen)
		return 0;
	bool any = false;
	for (int x = 0; x < 256; x++) {
		if (!(c->touched[x >> 6] >> (x & 63) & 1))
			continue;
		char path[48];
		snprintf(path, sizeof(path), "%llu/%02x", (unsigned long long)c->gen, x);
		_cleanup_close_ int fd = openat(r->gens_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || fsync(fd) < 0)
			return xerr_sys(e, QX_FAIL, errno, "cannot sync %s/trash/gen/%s", r->path, path);
		any = true;
	}
	if (any) {
		char path[32];
		snprintf(path, sizeof(path), "%llu", (unsigned long long)c->gen);
		_cleanup_close_ int fd = openat(r->gens_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || fsync(fd) < 0 || fsync(r->gens_fd) < 0)
			return xerr_sys(e, QX_FAIL, errno, "cannot sync %s/trash/gen", r->path);
	}
	return 0;
}

static int empty_one(struct repo *r, int dirfd, const char *sub, const char *name, const struct digest *d,
		     void *ctx, struct err *e)
{
	struct sweep_ctx *c = ctx;
	char rel[DIGEST_HEX_LEN + 4];
	snprintf(rel, sizeof(rel), "%s/%s", sub, name);
	struct stat st;
	if (refset_has(c->refs, d)) {
		/* a manifest written since the sweep needs it: put it back,
		 * from any generation, needed or not */
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
	if (!c->deletable) {
		c->st->kept++; /* a running session may still read it */
		c->left = true;
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

/* Every generation in trash/gen/, oldest first. */
static int list_gens(struct repo *r, uint64_t **out, size_t *n, struct err *e)
{
	*out = NULL;
	*n = 0;
	if (r->gens_fd < 0)
		return 0;
	int fd = openat(r->gens_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_closedir_ DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return xerr_sys(e, QX_FAIL, errno, "cannot list %s/trash/gen", r->path);
	}
	size_t cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char *end;
		unsigned long long g = strtoull(de->d_name, &end, 10);
		if (de->d_name[0] < '1' || de->d_name[0] > '9' || *end)
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 16;
			uint64_t *ng = realloc(*out, cap * sizeof(*ng));
			if (!ng) {
				free(*out);
				*out = NULL;
				return xerr(e, QX_FAIL, "out of memory");
			}
			*out = ng;
		}
		(*out)[(*n)++] = g;
	}
	for (size_t i = 1; i < *n; i++) /* few: insertion sort */
		for (size_t j = i; j > 0 && (*out)[j - 1] > (*out)[j]; j--) {
			uint64_t t = (*out)[j];
			(*out)[j] = (*out)[j - 1];
			(*out)[j - 1] = t;
		}
	return 0;
}

/* A generation emptied: its directories go too. */
static void remove_gen(struct repo *r, uint64_t gen)
{
	char path[48];
	for (int x = 0; x < 256; x++) {
		snprintf(path, sizeof(path), "%llu/%02x", (unsigned long long)gen, x);
		unlinkat(r->gens_fd, path, AT_REMOVEDIR);
	}
	snprintf(path, sizeof(path), "%llu", (unsigned long long)gen);
	if (unlinkat(r->gens_fd, path, AT_REMOVEDIR) == 0)
		fsync(r->gens_fd);
}

static int empty_trash(struct repo *r, const struct refset *refs, uint64_t pin, struct gc_stats *st, struct err *e)
{
	struct sweep_ctx c = {.refs = refs, .st = st};
	/* trash/xx/: a version-1 gc's, generation 0 */
	c.deletable = pin > 0;
	int rc = each_chunk(r, r->trash_fd, empty_one, &c, e);
	uint64_t *gens;
	size_t n;
	if (rc == 0)
		rc = list_gens(r, &gens, &n, e);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		char name[24];
		snprintf(name, sizeof(name), "%llu", (unsigned long long)gens[i]);
		int fd = openat(r->gens_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		c.deletable = gens[i] < pin;
		c.left = false;
		rc = each_chunk(r, fd, empty_one, &c, e);
		close(fd);
		if (rc == 0 && c.deletable && !c.left)
			remove_gen(r, gens[i]);
	}
	if (rc == 0)
		free(gens);
	return rc;
}

/* Whether tmp/'s entry `name` belongs to a running process: its name starts
 * with the process's id ("<proc_id>.<n>"), or it is a VM backup's scratch
 * directory whose lock file its run holds. */
static bool tmp_owned(struct repo *r, const char *name, const struct repo_sessions *ss, bool *known)
{
	*known = false;
	const char *dot = strrchr(name, '.');
	if (dot && dot > name) {
		char id[128];
		snprintf(id, sizeof(id), "%.*s", (int)(dot - name), name);
		if (!strcmp(id, r->proc_id))
			return true;
		/* our ids have four fields: host-boot-pid-random */
		size_t dashes = 0;
		for (const char *c = id; *c; c++)
			dashes += *c == '-';
		if (dashes >= 3) {
			*known = true;
			return repo_sessions_has(ss, id);
		}
	}
	char lock[300];
	snprintf(lock, sizeof(lock), "%s/lock", name);
	_cleanup_close_ int fd = openat(r->tmp_fd, lock, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		*known = true;
		return flock(fd, LOCK_EX | LOCK_NB) < 0;
	}
	return false;
}

/* tmp/: what no running process owns.  Entries whose owner cannot be told
 * (older quiesce, strays) only when nothing runs at all (`all`). */
static int clear_tmp(struct repo *r, const struct repo_sessions *ss, bool all, struct gc_stats *st, struct err *e)
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
		bool known;
		if (tmp_owned(r, de->d_name, ss, &known) || (!known && !all))
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
	struct sweep_ctx c = {.refs = &refs, .start = start, .st = st};
	if (r->version >= 2 && (rc = repo_generation_next(r, &c.gen, e)) < 0) {
		free(refs.d);
		return rc;
	}
	rc = each_chunk(r, r->chunks_fd, sweep_one, &c, e);
	if (rc == 0)
		rc = sweep_sync(r, &c, e);
	free(refs.d);
	if (rc < 0)
		return rc;
	fault_hold("gc-swept", NULL);

	/* Which generations may go: those older than every live session's pin.
	 * locks/writers held shared means a version-1 session (or an older
	 * quiesce's backup): then none.  Sessions are read before the fresh
	 * mark, so a session that ended before it has its manifest in the mark. */
	int writers = repo_try_lock_writers_exclusive(r, e);
	if (writers < 0)
		return writers;
	struct repo_sessions ss;
	uint64_t pin = 0;
	if ((rc = repo_sessions_scan(r, &ss, e)) < 0)
		goto out;
	pin = writers ? ss.min_pin : 0;
	st->sessions = ss.live + !writers;
	if ((rc = refset_build(r, &refs, e)) < 0)
		goto out;
	rc = empty_trash(r, &refs, pin, st, e);
	free(refs.d);
	/* version 1 cannot tell whose a file in tmp/ is: only with no backup */
	if (rc == 0 && (r->version >= 2 || writers))
		rc = clear_tmp(r, &ss, pin == UINT64_MAX, st, e);
out:
	repo_sessions_free(&ss);
	if (writers)
		repo_unlock_writers(r);
	st->trash_emptied = rc == 0 && st->kept == 0;
	return rc;
}

json_object *gc_stats_json(const struct gc_stats *st)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "chunks_referenced", json_object_new_int64((int64_t)st->referenced));
	json_object_object_add(o, "chunks_trashed", json_object_new_int64((int64_t)st->trashed));
	json_object_object_add(o, "chunks_restored", json_object_new_int64((int64_t)st->restored));
	json_object_object_add(o, "chunks_deleted", json_object_new_int64((int64_t)st->deleted));
	json_object_object_add(o, "chunks_kept", json_object_new_int64((int64_t)st->kept));
	json_object_object_add(o, "bytes_deleted", json_object_new_int64((int64_t)st->bytes_deleted));
	json_object_object_add(o, "tmp_deleted", json_object_new_int64((int64_t)st->tmp_deleted));
	json_object_object_add(o, "sessions", json_object_new_int64((int64_t)st->sessions));
	json_object_object_add(o, "trash_emptied", json_object_new_boolean(st->trash_emptied));
	return o;
}
