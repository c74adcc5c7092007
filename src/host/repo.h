/* SPDX-License-Identifier: MIT */
/*
 * repo: the repository on disk (docs/repository.md) — layout, config,
 * locks, and the only code that writes into it.
 *
 * Every write goes to tmp/, is fsynced and renamed into place; chunk
 * directories are fsynced in one batch before a manifest is renamed into
 * snapshots/, which is then fsynced: a snapshot is visible only once all it
 * names is durable.  Readers look for a chunk in chunks/ and then in trash/
 * (where gc sets unreferenced chunks aside, in generations), so a
 * concurrent sweep never breaks a snapshot; sessions (below) keep gc from
 * deleting what a running command may still need.  All functions are safe to call from several threads
 * on one struct repo.
 */
#ifndef QUIESCE_REPO_H
#define QUIESCE_REPO_H

#include "buf.h"
#include "digest.h"
#include "err.h"
#include "manifest.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* Format versions this quiesce reads and writes (docs/repository.md,
 * Versions): 1 as older quiesce made them, 2 with scalable manifests. */
#define REPO_VERSION 2
#define REPO_VERSION_MIN 1
#define REPO_DEFAULT_CHUNK_SIZE (4u << 20)

struct repo {
	char *path;
	int root_fd, chunks_fd, trash_fd, tmp_fd, snaps_fd, locks_fd;
	int gens_fd;	       /* trash/gen (version 2) */
	int sessions_fd;       /* sessions/ (version 2) */
	int session_fd;	       /* our session file, flock'ed while we run; -1 */
	int writers_fd, gc_fd; /* lock files */
	uint32_t chunk_size;
	int version; /* of the repository; its manifests are written in the same */
	char id[33];
	/* this process, unique across hosts sharing the repository (NFS) and
	 * across PID namespaces: host, boot id, pid and 32 random bits.  Every
	 * file it creates in tmp/ is named "<proc_id>.<seq>". */
	char proc_id[96];
	atomic_ulong tmp_seq;
	_Atomic uint64_t dirty_dirs[4]; /* chunks/xx/ that got a file since the last sync */
};

/* Create a repository of format `version` in `path` (absent, or an empty
 * directory). */
int repo_init(const char *path, uint32_t chunk_size, int version, struct repo **out, struct err *e);
/* Open one; QX_REPO if it is not one or its version is newer. */
int repo_open(const char *path, struct repo **out, struct err *e);
void repo_close(struct repo *r);
/* Make a version-1 repository version 2 (older quiesce then refuse it, exit
 * 3); QX_LOCKED while a prune, gc or backup runs.  0 also if it already is. */
int repo_upgrade(struct repo *r, struct err *e);

/* Sessions: what keeps gc from deleting a chunk a running command may need
 * (docs/repository.md, Prune and garbage collection).
 *
 * Version 2: gc sweeps unreferenced chunks into numbered trash generations
 * (trash/gen/<N>/), and a session — sessions/<proc_id>, flock'ed for the
 * process's life, so a crashed one is seen as dead — records the oldest
 * generation it may need: a writer the generation current when it started
 * (it may have seen, in chunks/, what that sweep and later ones set aside),
 * a reader 0 (it reads whatever is in trash).  gc deletes a generation only
 * when every live session needs none that old, so a host that backs up back
 * to back still gets its space back, one or two gcs later.
 * Version 1: every session holds locks/writers shared, and gc empties trash
 * only when it can have it exclusively, as version-1 quiesce did.
 * Ended by repo_close (or death). */
enum repo_session { REPO_WRITER, REPO_READER };
int repo_session_begin(struct repo *r, enum repo_session kind, struct err *e);
/* The writer session; what backups (this file's and the VM front end) call. */
int repo_lock_writers_shared(struct repo *r, struct err *e);

/* gc's view of the sessions: stale ones (dead owner) are removed. */
struct repo_sessions {
	size_t live;
	uint64_t min_pin; /* UINT64_MAX if no live session */
	char **ids;	  /* live sessions' names (their files in tmp/ are theirs) */
};
int repo_sessions_scan(struct repo *r, struct repo_sessions *s, struct err *e);
bool repo_sessions_has(const struct repo_sessions *s, const char *id);
void repo_sessions_free(struct repo_sessions *s);
/* The trash generation a sweep starting now fills: the counter in
 * locks/generation plus one, written durably before the sweep moves
 * anything. */
int repo_generation_next(struct repo *r, uint64_t *gen, struct err *e);

/* Locks (flock; released by repo_close or process death).
 * writers: version 1's sessions (above); gc tries it exclusively in both
 * versions, so that an older quiesce's backup is never collected under.
 * gc: exclusive, does not wait: QX_LOCKED if another prune/gc runs. */
/* 1 if had, 0 if a backup holds it. */
int repo_try_lock_writers_exclusive(struct repo *r, struct err *e);
void repo_unlock_writers(struct repo *r);
int repo_lock_gc(struct repo *r, struct err *e);

/* Chunks.  A chunk is written in two steps, so a pipeline need not wait for
 * each fsync: stage writes the encoded chunk under tmp/ and starts its
 * writeback (1 staged; 0 already present — a chunk found only in trash is
 * moved back); commit fsyncs it and renames it into chunks/, so a file in
 * chunks/ is always durable; discard drops a staged file.
 * get: the encoded chunk into `out` (QX_DAMAGED with "missing" if absent). */
int repo_chunk_exists(struct repo *r, const struct digest *d);
int repo_chunk_get(struct repo *r, const struct digest *d, struct buf *out, struct err *e);
struct staged_chunk {
	int fd;
	char tmp[128];
	struct digest d;
};
int repo_chunk_stage(struct repo *r, const struct digest *d, const void *file, size_t len, struct staged_chunk *out,
		     struct err *e);
int repo_chunk_commit(struct repo *r, struct staged_chunk *s, struct err *e);
void repo_chunk_discard(struct repo *r, struct staged_chunk *s);
/* fsync every chunk directory written since the last call. */
int repo_sync_chunks(struct repo *r, struct err *e);

/* Snapshots.  ids: sorted oldest first (ids begin with their UTC time). */
int repo_snapshot_ids(struct repo *r, char ***ids, size_t *n, struct err *e);
void repo_free_ids(char **ids, size_t n);
/* The whole manifest, chunk lists included; or only its document (id, name,
 * time, disks' names and sizes, stats, metadata: m->summary) — what a
 * listing needs, without reading the chunk lists of a version-2 manifest. */
int repo_manifest_load(struct repo *r, const char *id, struct manifest *m, struct err *e);
int repo_manifest_load_summary(struct repo *r, const char *id, struct manifest *m, struct err *e);
int repo_manifest_store(struct repo *r, const struct manifest *m, struct err *e);
int repo_snapshot_remove(struct repo *r, const char *id, struct err *e);
/* "latest", a full id, or a unique prefix -> the id (malloc'd); with `name`,
 * among the snapshots of that name only ("latest": the newest of them). */
int repo_resolve(struct repo *r, const char *spec, const char *name, char **id, struct err *e);
/* A new id for a snapshot starting now, and its RFC 3339 time. */
void repo_new_id(char id[64], char time[32]);
/* The same for a given time (backup --time). */
void repo_id_for_time(time_t t, int ms, char id[64], char when[32]);

/* Write `len` bytes under `name` in directory `dirfd` via tmp/ (fsync, rename). */
int repo_write_atomic(struct repo *r, int dirfd, const char *name, const void *data, size_t len,
		      bool sync_dir, struct err *e);

#endif
