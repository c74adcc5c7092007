// SPDX-License-Identifier: MIT
/* repo: the repository directory (see repo.h and docs/repository.md). */
#include "repo.h"

#include "chunk.h"
#include "cleanup.h"
#include "fault.h"
#include "fdio.h"
#include "xerr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const SUBDIRS[] = {"chunks", "trash", "tmp", "snapshots", "locks"}; /* + version 2: trash/gen, sessions */

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static ssize_t pread_full(int fd, void *buf, size_t n, off_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t k = pread(fd, (char *)buf + got, n - got, off + (off_t)got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		got += (size_t)k;
	}
	return (ssize_t)got;
}

static int fsync_at(int dirfd, const char *name)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		return -errno;
	return 0;
}

/* A name in tmp/ no other process, here or on another host, can be using. */
static void tmp_name(struct repo *r, char *out, size_t n)
{
	snprintf(out, n, "%s.%lu", r->proc_id, atomic_fetch_add(&r->tmp_seq, 1));
}

/* "<host>-<boot id, 8 hex>-<pid>-<8 random hex>": the host and the boot
 * tell hosts on one shared filesystem apart, the pid processes on one
 * boot, and the random part PID namespaces (containers), where pids and
 * even host names repeat. */
static void make_proc_id(char *out, size_t n)
{
	char host[HOST_NAME_MAX + 1] = "";
	if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
		strcpy(host, "host");
	host[40] = '\0';
	for (char *c = host; *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '-'))
			*c = '_'; /* a file name, and "." separates the sequence number */
	char boot[9] = "00000000";
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char b[64];
		ssize_t k = read(fd, b, sizeof(b));
		close(fd);
		if (k >= 8)
			memcpy(boot, b, 8);
		for (int i = 0; i < 8; i++)
			if (!((boot[i] >= '0' && boot[i] <= '9') || (boot[i] >= 'a' && boot[i] <= 'f')))
				boot[i] = '0';
	}
	uint32_t rnd;
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		rnd = (uint32_t)ts.tv_nsec ^ (uint32_t)getpid() * 2654435761u;
	}
	snprintf(out, n, "%s-%s-%ld-%08x", host, boot, (long)getpid(), rnd);
}

int repo_write_atomic(struct repo *r, int dirfd, const char *name, const void *data, size_t len,
		      bool sync_dir, struct err *e)
{
	char tmp[128];
	tmp_name(r, tmp, sizeof(tmp));
	int fd = openat(r->tmp_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (fd < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot create a file in %s/tmp", r->path);
	int rc = write_all(fd, data, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && renameat(r->tmp_fd, tmp, dirfd, name) < 0)
		rc = -errno;
	if (rc < 0) {
		unlinkat(r->tmp_fd, tmp, 0);
		return xerr_sys(e, QX_FAIL, -rc, "cannot write %s into %s", name, r->path);
	}
	fault_point();
	if (sync_dir && fsync(dirfd) < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot sync %s", r->path);
	return 0;
}

/* ---- config ---- */

static int read_config(struct repo *r, struct err *e)
{
	struct buf b = BUF_INIT;
	struct err fe = {0};
	int fd = openat(r->root_fd, "config", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return xerr(e, QX_REPO, "%s is not a quiesce repository (no config)", r->path);
	close(fd);
	char path[4096];
	snprintf(path, sizeof(path), "%s/config", r->path);
	if (fdio_read_file(path, 65536, &b, &fe) < 0) {
		buf_free(&b);
		return xerr(e, QX_REPO, "%s is not a quiesce repository: %s", r->path, fe.msg);
	}
	json_object *root = json_tokener_parse(b.data ? b.data : "");
	buf_free(&b);
	json_object *v;
	int rc = 0;
	if (!root || !json_object_object_get_ex(root, "format", &v) ||
	    strcmp(json_object_get_string(v) ?: "", "quiesce-repository") != 0) {
		rc = xerr(e, QX_REPO, "%s is not a quiesce repository (config is not ours)", r->path);
	} else if (!json_object_object_get_ex(root, "version", &v) || !json_object_is_type(v, json_type_int)) {
		rc = xerr(e, QX_REPO, "%s: config has no format version", r->path);
	} else if (json_object_get_int64(v) < REPO_VERSION_MIN || json_object_get_int64(v) > REPO_VERSION) {
		rc = xerr(e, QX_REPO, "%s: repository format version %lld is %s this quiesce supports (%d to %d); not touching it",
			  r->path, (long long)json_object_get_int64(v),
			  json_object_get_int64(v) > REPO_VERSION ? "newer than" : "not one", REPO_VERSION_MIN, REPO_VERSION);
	} else {
		int version = (int)json_object_get_int64(v);
		int64_t cs = json_object_object_get_ex(root, "chunk_size", &v) ? json_object_get_int64(v) : 0;
		const char *enc = json_object_object_get_ex(root, "encryption", &v) ? json_object_get_string(v) : NULL;
		const char *id = json_object_object_get_ex(root, "id", &v) ? json_object_get_string(v) : NULL;
		if (cs < CHUNK_MIN_SIZE || cs > CHUNK_MAX_SIZE || (cs & (cs - 1)))
			rc = xerr(e, QX_REPO, "%s: config has an invalid chunk_size", r->path);
		else if (!enc || strcmp(enc, "none") != 0)
			rc = xerr(e, QX_REPO, "%s: encryption '%s' is not supported by this quiesce", r->path,
				  enc ?: "?");
		else if (!id || strlen(id) != 32)
			rc = xerr(e, QX_REPO, "%s: config has an invalid id", r->path);
		else {
			r->version = version;
			r->chunk_size = (uint32_t)cs;
			memcpy(r->id, id, 33);
		}
	}
	json_object_put(root);
	return rc;
}

static void rfc3339_now(char out[32])
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void repo_new_id(char id[64], char when[32])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	repo_id_for_time(ts.tv_sec, (int)(ts.tv_nsec / 1000000), id, when);
}

void repo_id_for_time(time_t t, int ms, char id[64], char when[32])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	uint32_t rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)getpid() * 2654435761u ^ (uint32_t)ms;
	char s[20];
	strftime(s, sizeof(s), "%Y%m%dT%H%M%S", &tm);
	/* milliseconds in the id: ids sort by time even within a second */
	snprintf(id, 64, "%s.%03dZ-%08x", s, ms, rnd);
	strftime(when, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- open / init ---- */

void repo_close(struct repo *r)
{
	if (!r)
		return;
	if (r->session_fd >= 0)
		unlinkat(r->sessions_fd, r->proc_id, 0); /* still ours: we hold its lock */
	int *fds[] = {&r->root_fd,  &r->chunks_fd,   &r->trash_fd,   &r->tmp_fd,     &r->snaps_fd, &r->locks_fd,
		      &r->gens_fd,  &r->sessions_fd, &r->session_fd, &r->writers_fd, &r->gc_fd};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (*fds[i] >= 0)
			close(*fds[i]);
	free(r->path);
	free(r);
}

/* What version 2 adds to the layout: trash generations, sessions. */
static int open_v2(struct repo *r)
{
	r->gens_fd = openat(r->root_fd, "trash/gen", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	r->sessions_fd = openat(r->root_fd, "sessions", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return r->gens_fd < 0 || r->sessions_fd < 0 ? -errno : 0;
}

int repo_open(const char *path, struct repo **out, struct err *e)
{
	struct repo *r = calloc(1, sizeof(*r));
	if (!r)
		return xerr(e, QX_FAIL, "out of memory");
	r->root_fd = r->chunks_fd = r->trash_fd = r->tmp_fd = r->snaps_fd = r->locks_fd = r->writers_fd = r->gc_fd = -1;
	r->gens_fd = r->sessions_fd = r->session_fd = -1;
	r->path = strdup(path);
	make_proc_id(r->proc_id, sizeof(r->proc_id));
	r->root_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;
	if (!r->path) {
		rc = xerr(e, QX_FAIL, "out of memory");
	} else if (r->root_fd < 0) {
		rc = xerr_sys(e, QX_REPO, errno, "%s is not a quiesce repository", path);
	} else if ((rc = read_config(r, e)) == 0) {
		r->chunks_fd = openat(r->root_fd, "chunks", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		r->trash_fd = openat(r->root_fd, "trash", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		r->tmp_fd = openat(r->root_fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		r->snaps_fd = openat(r->root_fd, "snapshots", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		r->locks_fd = openat(r->root_fd, "locks", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		r->writers_fd = openat(r->root_fd, "locks/writers", O_RDWR | O_CLOEXEC);
		r->gc_fd = openat(r->root_fd, "locks/gc", O_RDWR | O_CLOEXEC);
		if (r->chunks_fd < 0 || r->trash_fd < 0 || r->tmp_fd < 0 || r->snaps_fd < 0 || r->locks_fd < 0 ||
		    r->writers_fd < 0 || r->gc_fd < 0 || (r->version >= 2 && open_v2(r) < 0))
			rc = xerr_sys(e, QX_REPO, errno, "%s: repository layout is incomplete", path);
	}
	if (rc < 0) {
		repo_close(r);
		return rc;
	}
	*out = r;
	return 0;
}

static int make_fanout(int dirfd, const char *name)
{
	if (mkdirat(dirfd, name, 0755) < 0)
		return -errno;
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (int i = 0; i < 256; i++) {
		char sub[3];
		snprintf(sub, sizeof(sub), "%02x", i);
		if (mkdirat(fd, sub, 0755) < 0)
			return -errno;
	}
	return fsync(fd) < 0 ? -errno : 0;
}

static int mkdir_parents(const char *path)
{
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			int rc = -errno;
			free(p);
			return rc;
		}
		*s = '/';
	}
	free(p);
	return 0;
}

int repo_init(const char *path, uint32_t chunk_size, int version, struct repo **out, struct err *e)
{
	if (version < REPO_VERSION_MIN || version > REPO_VERSION)
		return xerr(e, QX_USAGE, "repository format version %d: this quiesce makes versions %d to %d", version,
			    REPO_VERSION_MIN, REPO_VERSION);
	if (chunk_size < CHUNK_MIN_SIZE || chunk_size > CHUNK_MAX_SIZE || (chunk_size & (chunk_size - 1)))
		return xerr(e, QX_USAGE, "chunk size must be a power of two from 64 KiB to 64 MiB");
	mkdir_parents(path);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return xerr_sys(e, QX_FAIL, errno, "cannot create %s", path);
	_cleanup_close_ int root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot open %s", path);
	{
		_cleanup_closedir_ DIR *d = fdopendir(dup(root));
		struct dirent *de;
		while (d && (de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				return xerr(e, QX_FAIL, "%s is not empty; a repository is created in a new or empty directory",
					    path);
	}
	int rc = 0;
	for (size_t i = 0; i < sizeof(SUBDIRS) / sizeof(SUBDIRS[0]) && rc == 0; i++) {
		/* version 2 sweeps into trash/gen/<N>/, made as needed */
		if (!strcmp(SUBDIRS[i], "chunks") || (!strcmp(SUBDIRS[i], "trash") && version == 1))
			rc = make_fanout(root, SUBDIRS[i]);
		else if (mkdirat(root, SUBDIRS[i], 0755) < 0)
			rc = -errno;
	}
	if (rc == 0 && version >= 2 && (mkdirat(root, "trash/gen", 0755) < 0 || mkdirat(root, "sessions", 0755) < 0))
		rc = -errno;
	for (const char *const *l = (const char *const[]){"locks/writers", "locks/gc", NULL}; *l && rc == 0; l++) {
		int fd = openat(root, *l, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			rc = -errno;
		else
			close(fd);
	}
	if (rc < 0)
		return xerr_sys(e, QX_FAIL, -rc, "cannot create the repository layout in %s", path);
	/* config last: a half-made directory is not a repository */
	uint8_t raw[16];
	if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
		return xerr_sys(e, QX_FAIL, errno, "getrandom");
	char id[33], when[32];
	for (int i = 0; i < 16; i++)
		snprintf(id + 2 * i, 3, "%02x", raw[i]);
	rfc3339_now(when);
	char cfg[512];
	int n = snprintf(cfg, sizeof(cfg),
			 "{\"format\": \"quiesce-repository\", \"version\": %d, \"id\": \"%s\",\n"
			 " \"created\": \"%s\", \"chunk_size\": %u,\n"
			 " \"hash\": \"sha256\", \"compression\": \"zstd\", \"encryption\": \"none\"}\n",
			 version, id, when, chunk_size);
	char tmp[128], proc[96];
	make_proc_id(proc, sizeof(proc));
	snprintf(tmp, sizeof(tmp), "tmp/%s.config", proc);
	int fd = openat(root, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || write_all(fd, cfg, (size_t)n) < 0 || fsync(fd) < 0 || close(fd) < 0 ||
	    renameat(root, tmp, root, "config") < 0 || fsync(root) < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot write %s/config", path);
	return repo_open(path, out, e);
}

/* ---- sessions and locks ---- */

static int read_small(int dirfd, const char *name, char *out, size_t n)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t k = pread_full(fd, out, n - 1, 0);
	if (k < 0)
		return (int)k;
	out[k] = '\0';
	return (int)k;
}

/* The newest sweep's generation (0 before any). */
static int read_generation(struct repo *r, uint64_t *gen, struct err *e)
{
	char b[32];
	*gen = 0;
	int n = read_small(r->locks_fd, "generation", b, sizeof(b));
	if (n == -ENOENT)
		return 0;
	char *end;
	errno = 0;
	unsigned long long v = n > 0 ? strtoull(b, &end, 10) : 0;
	if (n <= 0 || errno || (*end && *end != '\n'))
		return xerr(e, QX_DAMAGED, "%s/locks/generation is damaged (remove it only with no backup running)", r->path);
	*gen = v;
	return 0;
}

int repo_generation_next(struct repo *r, uint64_t *gen, struct err *e)
{
	int rc = read_generation(r, gen, e);
	if (rc < 0)
		return rc;
	char b[32];
	int n = snprintf(b, sizeof(b), "%llu\n", (unsigned long long)++*gen);
	return repo_write_atomic(r, r->locks_fd, "generation", b, (size_t)n, true, e);
}

int repo_session_begin(struct repo *r, enum repo_session kind, struct err *e)
{
	if (r->version < 2) {
		while (flock(r->writers_fd, LOCK_SH) < 0)
			if (errno != EINTR)
				return xerr_sys(e, QX_FAIL, errno, "cannot lock %s", r->path);
		return 0;
	}
	if (r->session_fd >= 0)
		return 0;
	uint64_t gen = 0;
	int rc = kind == REPO_WRITER ? read_generation(r, &gen, e) : 0;
	if (rc < 0)
		return rc;
	/* made under a dot name and locked before it gets its real one, so
	 * gc never sees a session file whose owner does not hold it */
	char tmp[128], host[256] = "", when[32], body[512];
	snprintf(tmp, sizeof(tmp), ".%s", r->proc_id);
	gethostname(host, sizeof(host) - 1);
	rfc3339_now(when);
	int n = snprintf(body, sizeof(body), "{\"pin\": %llu, \"kind\": \"%s\", \"pid\": %ld, \"started\": \"%s\"}\n",
			 (unsigned long long)gen, kind == REPO_WRITER ? "writer" : "reader", (long)getpid(), when);
	int fd = openat(r->sessions_fd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot create a session in %s/sessions", r->path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0 || (rc = write_all(fd, body, (size_t)n)) < 0 ||
	    renameat(r->sessions_fd, tmp, r->sessions_fd, r->proc_id) < 0) {
		int err = rc < 0 ? -rc : errno;
		unlinkat(r->sessions_fd, tmp, 0);
		close(fd);
		return xerr_sys(e, QX_FAIL, err, "cannot create a session in %s/sessions", r->path);
	}
	r->session_fd = fd;
	return 0;
}

int repo_lock_writers_shared(struct repo *r, struct err *e)
{
	return repo_session_begin(r, REPO_WRITER, e);
}

void repo_sessions_free(struct repo_sessions *s)
{
	for (size_t i = 0; i < s->live; i++)
		free(s->ids[i]);
	free(s->ids);
	memset(s, 0, sizeof(*s));
}

bool repo_sessions_has(const struct repo_sessions *s, const char *id)
{
	for (size_t i = 0; i < s->live; i++)
		if (!strcmp(s->ids[i], id))
			return true;
	return false;
}

/* The pin a live session's file states; 0 (pins everything) if it says
 * nothing readable. */
static uint64_t session_pin(int fd)
{
	char b[512];
	ssize_t n = pread_full(fd, b, sizeof(b) - 1, 0);
	if (n <= 0)
		return 0;
	b[n] = '\0';
	json_object *o = json_tokener_parse(b), *v;
	uint64_t pin = 0;
	if (o && json_object_object_get_ex(o, "pin", &v) && json_object_is_type(v, json_type_int) &&
	    json_object_get_int64(v) >= 0)
		pin = (uint64_t)json_object_get_int64(v);
	json_object_put(o);
	return pin;
}

int repo_sessions_scan(struct repo *r, struct repo_sessions *s, struct err *e)
{
	memset(s, 0, sizeof(*s));
	s->min_pin = UINT64_MAX;
	if (r->version < 2)
		return 0;
	int dfd = openat(r->sessions_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_closedir_ DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return xerr_sys(e, QX_FAIL, errno, "cannot list %s/sessions", r->path);
	}
	size_t cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		_cleanup_close_ int fd = openat(r->sessions_fd, de->d_name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue; /* ended meanwhile */
		if (de->d_name[0] == '.') {
			/* being made: its owner has not looked at a chunk yet.  Left
			 * by a crash in that instant if unlocked and old (between its
			 * creation and its lock, it is unlocked and new) */
			struct stat st;
			if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st) == 0 && st.st_mtime < time(NULL) - 600)
				unlinkat(r->sessions_fd, de->d_name, 0);
			continue;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			/* its process is gone (a crash): the file is all that is left */
			unlinkat(r->sessions_fd, de->d_name, 0);
			continue;
		}
		uint64_t pin = errno == EWOULDBLOCK ? session_pin(fd) : 0;
		if (s->live == cap) {
			cap = cap ? 2 * cap : 16;
			char **ni = realloc(s->ids, cap * sizeof(*ni));
			if (!ni) {
				repo_sessions_free(s);
				return xerr(e, QX_FAIL, "out of memory");
			}
			s->ids = ni;
		}
		if (!(s->ids[s->live] = strdup(de->d_name))) {
			repo_sessions_free(s);
			return xerr(e, QX_FAIL, "out of memory");
		}
		s->live++;
		if (pin < s->min_pin)
			s->min_pin = pin;
	}
	return 0;
}

int repo_try_lock_writers_exclusive(struct repo *r, struct err *e)
{
	if (flock(r->writers_fd, LOCK_EX | LOCK_NB) == 0)
		return 1;
	if (errno == EWOULDBLOCK)
		return 0;
	return xerr_sys(e, QX_FAIL, errno, "cannot lock %s", r->path);
}

void repo_unlock_writers(struct repo *r)
{
	flock(r->writers_fd, LOCK_UN);
}

int repo_lock_gc(struct repo *r, struct err *e)
{
	if (flock(r->gc_fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	if (errno == EWOULDBLOCK)
		return xerr(e, QX_LOCKED, "%s: another prune or gc is running", r->path);
	return xerr_sys(e, QX_FAIL, errno, "cannot lock %s", r->path);
}

/* ---- chunks ---- */

static void chunk_rel(const struct digest *d, char out[DIGEST_HEX_LEN + 4])
{
	char hex[DIGEST_HEX_LEN + 1];
	digest_to_hex(d, hex);
	snprintf(out, DIGEST_HEX_LEN + 4, "%.2s/%s", hex, hex);
}

int repo_chunk_exists(struct repo *r, const struct digest *d)
{
	char rel[DIGEST_HEX_LEN + 4];
	struct stat st;
	chunk_rel(d, rel);
	return fstatat(r->chunks_fd, rel, &st, 0) == 0;
}

/* Where gc may have set a chunk aside: trash/xx/<d> (a version-1 gc's, or
 * generation 0 after an upgrade), then trash/gen/<N>/xx/<d> for each
 * generation there is now (a few; listed on each call: a miss in chunks/
 * is rare, and a stale list would only cost a rewrite). */
static int each_trash_place(struct repo *r, const char *rel, int (*fn)(struct repo *, int, const char *, void *),
			    void *ctx)
{
	int rc = fn(r, r->trash_fd, rel, ctx);
	if (rc != -ENOENT || r->gens_fd < 0)
		return rc;
	int fd = openat(r->gens_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_closedir_ DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return -ENOENT;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		char path[DIGEST_HEX_LEN + 32];
		snprintf(path, sizeof(path), "%.20s/%s", de->d_name, rel);
		if ((rc = fn(r, r->gens_fd, path, ctx)) != -ENOENT)
			return rc;
	}
	return -ENOENT;
}

static int take_back_at(struct repo *r, int dirfd, const char *path, void *ctx)
{
	const char *rel = ctx;
	return renameat(dirfd, path, r->chunks_fd, rel) == 0 ? 0 : -errno;
}

/* Move a trashed chunk back into chunks/: 0, or -ENOENT if it is in no trash. */
static int trash_take_back(struct repo *r, const char *rel)
{
	return each_trash_place(r, rel, take_back_at, (void *)rel);
}

static int open_at(struct repo *r, int dirfd, const char *path, void *ctx)
{
	(void)r;
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	*(int *)ctx = fd;
	return 0;
}

static int trash_open(struct repo *r, const char *rel)
{
	int fd = -1, rc = each_trash_place(r, rel, open_at, &fd);
	return rc < 0 ? rc : fd;
}

static void mark_dirty(struct repo *r, uint8_t dir)
{
	atomic_fetch_or(&r->dirty_dirs[dir >> 6], (uint64_t)1 << (dir & 63));
}

int repo_chunk_stage(struct repo *r, const struct digest *d, const void *file, size_t len, struct staged_chunk *out,
		     struct err *e)
{
	char rel[DIGEST_HEX_LEN + 4];
	chunk_rel(d, rel);
	struct stat st;
	out->fd = -1;
	if (fstatat(r->chunks_fd, rel, &st, 0) == 0)
		return 0;
	if (trash_take_back(r, rel) == 0) {
		mark_dirty(r, d->b[0]);
		fault_point();
		return 0;
	}
	tmp_name(r, out->tmp, sizeof(out->tmp));
	out->d = *d;
	out->fd = openat(r->tmp_fd, out->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (out->fd < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot create a file in %s/tmp", r->path);
	int rc = write_all(out->fd, file, len);
	if (rc < 0) {
		repo_chunk_discard(r, out);
		return xerr_sys(e, QX_FAIL, -rc, "cannot write chunk %s into %s", rel + 3, r->path);
	}
	sync_file_range(out->fd, 0, 0, SYNC_FILE_RANGE_WRITE); /* start writeback now; commit waits */
	return 1;
}

int repo_chunk_commit(struct repo *r, struct staged_chunk *s, struct err *e)
{
	char rel[DIGEST_HEX_LEN + 4];
	chunk_rel(&s->d, rel);
	int rc = fsync(s->fd) < 0 ? -errno : 0;
	if (close(s->fd) < 0 && rc == 0)
		rc = -errno;
	s->fd = -1;
	if (rc == 0 && renameat(r->tmp_fd, s->tmp, r->chunks_fd, rel) < 0)
		rc = -errno;
	if (rc < 0) {
		unlinkat(r->tmp_fd, s->tmp, 0);
		return xerr_sys(e, QX_FAIL, -rc, "cannot write chunk %s into %s", rel + 3, r->path);
	}
	mark_dirty(r, s->d.b[0]);
	fault_point();
	return 0;
}

void repo_chunk_discard(struct repo *r, struct staged_chunk *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	unlinkat(r->tmp_fd, s->tmp, 0);
}

int repo_sync_chunks(struct repo *r, struct err *e)
{
	for (int w = 0; w < 4; w++) {
		uint64_t bits = atomic_exchange(&r->dirty_dirs[w], 0);
		for (int b = 0; b < 64; b++) {
			if (!(bits & ((uint64_t)1 << b)))
				continue;
			char sub[3];
			snprintf(sub, sizeof(sub), "%02x", w * 64 + b);
			int rc = fsync_at(r->chunks_fd, sub);
			if (rc < 0)
				return xerr_sys(e, QX_FAIL, -rc, "cannot sync %s/chunks/%s", r->path, sub);
		}
	}
	return 0;
}

static int read_fd(int fd, struct buf *out, size_t max)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((size_t)st.st_size > max)
		return -EFBIG;
	out->len = 0;
	if (buf_reserve(out, (size_t)st.st_size + 1) < 0)
		return -ENOMEM;
	for (;;) {
		ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		out->len += (size_t)n;
		if (out->len > max)
			return -EFBIG;
		if (out->cap - out->len - 1 == 0 && buf_reserve(out, 4096) < 0)
			return -ENOMEM;
	}
}

int repo_chunk_get(struct repo *r, const struct digest *d, struct buf *out, struct err *e)
{
	char rel[DIGEST_HEX_LEN + 4];
	chunk_rel(d, rel);
	/* chunks/, then trash/, then chunks/ again: a concurrent gc may be
	 * moving it either way, and each move is an atomic rename */
	int fd = openat(r->chunks_fd, rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && (fd = trash_open(r, rel)) < 0)
		errno = -fd;
	if (fd < 0 && errno == ENOENT)
		fd = openat(r->chunks_fd, rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return xerr(e, QX_DAMAGED, "chunk %s is missing", rel + 3);
	if (fd < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot open chunk %s", rel + 3);
	int rc = read_fd(fd, out, chunk_file_bound(r->chunk_size));
	close(fd);
	if (rc == -EFBIG)
		return xerr(e, QX_DAMAGED, "chunk %s is damaged: larger than any chunk can be", rel + 3);
	if (rc < 0)
		return xerr_sys(e, QX_FAIL, -rc, "cannot read chunk %s", rel + 3);
	return 0;
}

/* ---- snapshots ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void repo_free_ids(char **ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

int repo_snapshot_ids(struct repo *r, char ***ids, size_t *n, struct err *e)
{
	*ids = NULL;
	*n = 0;
	int fd = openat(r->snaps_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_closedir_ DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return xerr_sys(e, QX_FAIL, errno, "cannot list %s/snapshots", r->path);
	}
	size_t cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!manifest_id_valid(de->d_name))
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 64;
			char **nids = realloc(*ids, cap * sizeof(char *));
			if (!nids)
				goto oom;
			*ids = nids;
		}
		if (!((*ids)[*n] = strdup(de->d_name)))
			goto oom;
		(*n)++;
	}
	if (*n)
		qsort(*ids, *n, sizeof(char *), cmp_str);
	return 0;
oom:
	repo_free_ids(*ids, *n);
	*ids = NULL;
	*n = 0;
	return xerr(e, QX_FAIL, "out of memory");
}

/* A parse error: damaged, unless it was memory (then gc and verify must
 * not take the snapshot for broken, only stop). */
static int parse_failed(const char *id, const struct err *pe, struct err *e)
{
	if (pe->code == -ENOMEM)
		return xerr(e, QX_FAIL, "snapshot %s: out of memory reading its manifest", id);
	return xerr(e, QX_DAMAGED, "snapshot %s: manifest damaged: %s", id, pe->msg);
}

/* Version 2: the chunk lists after the document, streamed through the
 * decoder in 1 MiB reads — a manifest is never held whole. */
static int load_lists(int fd, off_t off, const char *id, struct manifest *m, struct err *e)
{
	struct manifest_lists *l = manifest_lists_new(m);
	char *buf = malloc(1 << 20);
	struct err pe = {0};
	int rc = 0;
	if (!l || !buf) {
		rc = xerr(e, QX_FAIL, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t n = pread_full(fd, buf, 1 << 20, off);
		if (n < 0) {
			rc = xerr_sys(e, QX_FAIL, (int)-n, "cannot read snapshot %s", id);
			goto out;
		}
		if (n == 0)
			break;
		if (manifest_lists_feed(l, buf, (size_t)n, &pe) < 0) {
			rc = parse_failed(id, &pe, e);
			goto out;
		}
		off += n;
	}
	if (manifest_lists_end(l, &pe) < 0)
		rc = parse_failed(id, &pe, e);
out:
	free(buf);
	manifest_lists_free(l);
	return rc;
}

static int load(struct repo *r, const char *id, struct manifest *m, bool summary, struct err *e)
{
	memset(m, 0, sizeof(*m));
	if (!manifest_id_valid(id))
		return xerr(e, QX_NOSNAP, "no snapshot %s", id);
	_cleanup_close_ int fd = openat(r->snaps_fd, id, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return xerr(e, QX_NOSNAP, "no snapshot %s", id);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot open snapshot %s", id);
	char head[MANIFEST_HEADER_MAX];
	ssize_t hn = pread_full(fd, head, sizeof(head), 0);
	if (hn < 0)
		return xerr_sys(e, QX_FAIL, (int)-hn, "cannot read snapshot %s", id);
	struct manifest_header h;
	struct err pe = {0};
	if (manifest_parse_header(head, (size_t)hn, &h, &pe) < 0)
		return parse_failed(id, &pe, e);
	uint64_t size = (uint64_t)st.st_size;
	struct buf b = BUF_INIT;
	int rc;
	if (h.version == 1) {
		if (size > MANIFEST_V1_MAX_BYTES)
			return xerr(e, QX_DAMAGED, "snapshot %s: manifest damaged: too large", id);
		rc = read_fd(fd, &b, MANIFEST_V1_MAX_BYTES);
		if (rc < 0) {
			buf_free(&b);
			return rc == -EFBIG ? xerr(e, QX_DAMAGED, "snapshot %s: manifest damaged: too large", id)
					    : xerr_sys(e, QX_FAIL, -rc, "cannot read snapshot %s", id);
		}
		rc = manifest_parse(b.data ? b.data : "", b.len, m, &pe);
		buf_free(&b);
		if (rc < 0)
			return parse_failed(id, &pe, e);
	} else {
		if (h.header_len + h.doc_len > size)
			return xerr(e, QX_DAMAGED, "snapshot %s: manifest damaged: truncated", id);
		if (buf_reserve(&b, (size_t)h.doc_len) < 0)
			return xerr(e, QX_FAIL, "out of memory");
		ssize_t n = pread_full(fd, b.data, (size_t)h.doc_len, (off_t)h.header_len);
		if (n < 0) {
			buf_free(&b);
			return xerr_sys(e, QX_FAIL, (int)-n, "cannot read snapshot %s", id);
		}
		rc = manifest_parse_doc(&h, b.data, (size_t)n, m, &pe);
		buf_free(&b);
		if (rc < 0)
			return parse_failed(id, &pe, e);
		uint64_t want = h.header_len + h.doc_len + manifest_lists_len(m);
		if (want != size) {
			manifest_free(m);
			return xerr(e, QX_DAMAGED, "snapshot %s: manifest damaged: %llu bytes, its document says %llu", id,
				    (unsigned long long)size, (unsigned long long)want);
		}
		if (!summary && (rc = load_lists(fd, (off_t)(h.header_len + h.doc_len), id, m, e)) < 0) {
			manifest_free(m);
			return rc;
		}
	}
	if (strcmp(m->id, id) != 0 || m->chunk_size != r->chunk_size) {
		manifest_free(m);
		return xerr(e, QX_DAMAGED, "snapshot %s: manifest damaged: it is not this snapshot's or not this repository's",
			    id);
	}
	return 0;
}

int repo_manifest_load(struct repo *r, const char *id, struct manifest *m, struct err *e)
{
	return load(r, id, m, false, e);
}

int repo_manifest_load_summary(struct repo *r, const char *id, struct manifest *m, struct err *e)
{
	return load(r, id, m, true, e);
}

static int fd_sink(void *ctx, const void *p, size_t n)
{
	return write_all(*(int *)ctx, p, n);
}

int repo_manifest_store(struct repo *r, const struct manifest *m, struct err *e)
{
	char tmp[128];
	tmp_name(r, tmp, sizeof(tmp));
	int fd = openat(r->tmp_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (fd < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot create a file in %s/tmp", r->path);
	struct err we = {0};
	int rc = manifest_write(m, r->version, fd_sink, &fd, &we);
	if (rc == 0 && fsync(fd) < 0)
		rc = err_set(&we, -errno, "cannot write the manifest: %s", strerror(errno));
	if (close(fd) < 0 && rc == 0)
		rc = err_set(&we, -errno, "cannot write the manifest: %s", strerror(errno));
	if (rc == 0 && renameat(r->tmp_fd, tmp, r->snaps_fd, m->id) < 0)
		rc = err_set(&we, -errno, "cannot rename the manifest into place: %s", strerror(errno));
	if (rc < 0) {
		unlinkat(r->tmp_fd, tmp, 0);
		if (rc == -ENOSPC || rc == -EDQUOT)
			return xerr(e, QX_NOSPC, "snapshot %s not saved: %s", m->id, we.msg);
		return xerr(e, QX_FAIL, "snapshot %s not saved: %s", m->id, we.msg);
	}
	fault_point();
	if (fsync(r->snaps_fd) < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot sync %s/snapshots", r->path);
	return 0;
}

int repo_upgrade(struct repo *r, struct err *e)
{
	if (r->version >= 2)
		return 0;
	int rc = repo_lock_gc(r, e);
	if (rc < 0)
		return rc;
	if ((rc = repo_try_lock_writers_exclusive(r, e)) <= 0)
		return rc < 0 ? rc : xerr(e, QX_LOCKED, "%s: a backup or restore is running; upgrade when none is", r->path);
	/* what version 2 adds, then the config as it is but for its version */
	if ((mkdirat(r->root_fd, "trash/gen", 0755) < 0 && errno != EEXIST) ||
	    (mkdirat(r->root_fd, "sessions", 0755) < 0 && errno != EEXIST) || fsync(r->trash_fd) < 0 ||
	    fsync(r->root_fd) < 0) {
		rc = xerr_sys(e, QX_FAIL, errno, "cannot create the version-2 layout in %s", r->path);
		repo_unlock_writers(r);
		return rc;
	}
	char path[4096];
	struct buf b = BUF_INIT;
	struct err fe = {0};
	snprintf(path, sizeof(path), "%s/config", r->path);
	json_object *cfg = NULL;
	if (fdio_read_file(path, 65536, &b, &fe) < 0 || !(cfg = json_tokener_parse(b.data ? b.data : ""))) {
		rc = xerr(e, QX_REPO, "%s: cannot read its config", r->path);
	} else if (json_object_object_add(cfg, "version", json_object_new_int(2)) < 0) {
		rc = xerr(e, QX_FAIL, "out of memory");
	} else {
		size_t n;
		const char *text = json_object_to_json_string_length(cfg, JSON_C_TO_STRING_SPACED, &n);
		struct buf t = BUF_INIT;
		if (!text || buf_append(&t, text, n) < 0 || buf_putc(&t, '\n') < 0)
			rc = xerr(e, QX_FAIL, "out of memory");
		else
			rc = repo_write_atomic(r, r->root_fd, "config", t.data, t.len, true, e);
		buf_free(&t);
		if (rc == 0) {
			r->version = 2;
			if (open_v2(r) < 0)
				rc = xerr_sys(e, QX_FAIL, errno, "%s: cannot open the version-2 layout", r->path);
		}
	}
	json_object_put(cfg);
	buf_free(&b);
	repo_unlock_writers(r);
	return rc;
}

int repo_snapshot_remove(struct repo *r, const char *id, struct err *e)
{
	if (unlinkat(r->snaps_fd, id, 0) < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot remove snapshot %s", id);
	fault_point();
	if (fsync(r->snaps_fd) < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot sync %s/snapshots", r->path);
	return 0;
}

/* 1 if snapshot `id` is named `name` (or no name is asked), 0 if not, -1 if
 * its manifest cannot be read (then its name is unknown). */
static int named(struct repo *r, const char *id, const char *name, struct err *le)
{
	if (!name)
		return 1;
	struct manifest m;
	if (repo_manifest_load_summary(r, id, &m, le) < 0)
		return -1;
	int yes = !strcmp(m.name, name);
	manifest_free(&m);
	return yes;
}

int repo_resolve(struct repo *r, const char *spec, const char *name, char **id, struct err *e)
{
	char **ids;
	size_t n;
	int rc = repo_snapshot_ids(r, &ids, &n, e);
	if (rc < 0)
		return rc;
	const char *found = NULL;
	struct err le = {0};
	if (!strcmp(spec, "latest")) {
		for (size_t i = n; i-- > 0 && !found;) {
			int k = named(r, ids[i], name, &le);
			if (k > 0)
				found = ids[i];
			else if (k < 0) /* it may have been the newest of that name: say so */
				fprintf(stderr, "quiesce: warning: %s; latest --name %s passes over it\n", le.msg, name);
		}
	} else {
		size_t len = strlen(spec), matches = 0;
		for (size_t i = 0; i < n; i++) {
			bool exact = !strcmp(ids[i], spec);
			if (!exact && !(len && !strncmp(ids[i], spec, len)))
				continue;
			int k = named(r, ids[i], name, &le);
			if (k < 0) {
				repo_free_ids(ids, n);
				return xerr(e, le.code, "%s", le.msg);
			}
			if (!k)
				continue;
			found = ids[i];
			if (exact) {
				matches = 1;
				break;
			}
			matches++;
		}
		if (matches > 1) {
			repo_free_ids(ids, n);
			return xerr(e, QX_USAGE, "snapshot '%s' is ambiguous: %zu snapshots start with it", spec, matches);
		}
	}
	if (!found) {
		repo_free_ids(ids, n);
		return xerr(e, QX_NOSNAP, "no snapshot '%s'%s%s in %s", spec, name ? " named " : "", name ?: "", r->path);
	}
	*id = strdup(found);
	repo_free_ids(ids, n);
	return *id ? 0 : xerr(e, QX_FAIL, "out of memory");
}
