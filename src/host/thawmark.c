// SPDX-License-Identifier: MIT
/* thawmark: the "may be frozen" marker on the host (see thawmark.h). */
#include "thawmark.h"

#include "digest.h"
#include "xerr.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *state_dir(void)
{
	const char *d = getenv("QUIESCE_STATE_DIR");
	return d && *d ? d : "/var/lib/quiesce";
}

int thawmark_init(struct thawmark *m, const char *qga, struct err *e)
{
	char real[PATH_MAX];
	const char *key = realpath(qga, real) ? real : qga;
	struct digest d;
	char hex[DIGEST_HEX_LEN + 1];
	digest_sha256(key, strlen(key), &d);
	digest_to_hex(&d, hex);
	const char *dir = state_dir();
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return xerr_sys(e, QX_FAIL, errno, "cannot create the state directory %s", dir);
	snprintf(m->path, sizeof(m->path), "%s/frozen-%.16s", dir, hex);
	return 0;
}

int thawmark_write(const struct thawmark *m, const char *qga, const char *vm, struct err *e)
{
	char tmp[PATH_MAX + 8], text[PATH_MAX + 256];
	snprintf(tmp, sizeof(tmp), "%s.tmp", m->path);
	int n = snprintf(text, sizeof(text), "{\"qga\": \"%s\", \"vm\": \"%s\", \"pid\": %ld, \"since\": %lld}\n", qga,
			 vm ? vm : "", (long)getpid(), (long long)time(NULL));
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, (size_t)n) != n || fsync(fd) < 0 || close(fd) < 0 || rename(tmp, m->path) < 0) {
		int err = errno;
		if (fd >= 0)
			unlink(tmp);
		return xerr_sys(e, QX_FAIL, err, "cannot write the thaw marker %s (not freezing without it)", m->path);
	}
	char *slash = strrchr(m->path, '/');
	if (slash) {
		*slash = '\0';
		int dfd = open(m->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		*slash = '/';
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	return 0;
}

char *thawmark_read(const struct thawmark *m)
{
	FILE *f = fopen(m->path, "re");
	if (!f)
		return NULL;
	char buf[PATH_MAX + 256];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if (n && buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	return strdup(buf);
}

void thawmark_remove(const struct thawmark *m)
{
	unlink(m->path);
}

int vmlock_take(const char *qmp, struct err *e)
{
	char real[PATH_MAX], path[PATH_MAX + 64], hex[DIGEST_HEX_LEN + 1];
	const char *key = realpath(qmp, real) ? real : qmp;
	struct digest d;
	digest_sha256(key, strlen(key), &d);
	digest_to_hex(&d, hex);
	const char *dir = state_dir();
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return xerr_sys(e, QX_FAIL, errno, "cannot create the state directory %s", dir);
	snprintf(path, sizeof(path), "%s/vm-%.16s.lock", dir, hex);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot open %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return xerr(e, QX_LOCKED, "another quiesce backup of the VM at %s is running", qmp);
	}
	return fd;
}
