// SPDX-License-Identifier: MIT
/* thawmark: the per-VM lock and "may be frozen" marker (see thawmark.h). */
#include "thawmark.h"

#include "digest.h"
#include "xerr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
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

static int make_state_dir(struct err *e)
{
	const char *dir = state_dir();
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return xerr_sys(e, QX_FAIL, errno, "cannot create the state directory %s", dir);
	return 0;
}

void vmkey_set(struct vmkey *k, const char *text)
{
	struct digest d;
	char hex[DIGEST_HEX_LEN + 1];
	snprintf(k->text, sizeof(k->text), "%s", text);
	digest_sha256(k->text, strlen(k->text), &d);
	digest_to_hex(&d, hex);
	snprintf(k->hex, sizeof(k->hex), "%.16s", hex);
}

int thawmark_init(struct thawmark *m, const struct vmkey *k, struct err *e)
{
	int rc = make_state_dir(e);
	if (rc == 0)
		snprintf(m->path, sizeof(m->path), "%.4000s/frozen-%s", state_dir(), k->hex);
	return rc;
}

int thawmark_write(const struct thawmark *m, const struct vmkey *k, const char *qmp, const char *qga,
		   const char *vm, struct err *e)
{
	char tmp[PATH_MAX + 8], real[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s.tmp", m->path);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(k->text));
	json_object_object_add(o, "qga", json_object_new_string(realpath(qga, real) ? real : qga));
	if (qmp)
		json_object_object_add(o, "qmp", json_object_new_string(qmp));
	json_object_object_add(o, "vm", json_object_new_string(vm ? vm : ""));
	json_object_object_add(o, "pid", json_object_new_int64(getpid()));
	json_object_object_add(o, "since", json_object_new_int64(time(NULL)));
	size_t n;
	const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	bool ok = fd >= 0 && write(fd, text, n) == (ssize_t)n && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
	int err = errno;
	if (fd >= 0 && close(fd) < 0 && ok) {
		ok = false;
		err = errno;
	}
	if (ok && rename(tmp, m->path) < 0) {
		ok = false;
		err = errno;
	}
	json_object_put(o);
	if (!ok) {
		if (fd >= 0)
			unlink(tmp);
		return xerr_sys(e, QX_FAIL, err, "cannot write the thaw marker %s (not freezing without it)", m->path);
	}
	int dfd = open(state_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd); /* the marker must survive a host crash inside the window */
		close(dfd);
	}
	return 0;
}

char *thawmark_read(const struct thawmark *m)
{
	FILE *f = fopen(m->path, "re");
	if (!f)
		return NULL;
	char buf[PATH_MAX * 2 + 512];
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

int thawmark_find_by_agent(const char *qga, struct vmkey *k, struct err *e)
{
	char want[PATH_MAX];
	if (!realpath(qga, want))
		snprintf(want, sizeof(want), "%s", qga);
	DIR *d = opendir(state_dir());
	if (!d)
		return errno == ENOENT ? 0 : xerr_sys(e, QX_FAIL, errno, "cannot read the state directory %s", state_dir());
	int found = 0;
	struct dirent *de;
	while (!found && (de = readdir(d))) {
		if (strncmp(de->d_name, "frozen-", 7) != 0 || strchr(de->d_name, '.'))
			continue;
		struct thawmark m;
		snprintf(m.path, sizeof(m.path), "%.3800s/%.200s", state_dir(), de->d_name);
		char *text = thawmark_read(&m);
		json_object *o = text ? json_tokener_parse(text) : NULL;
		const char *q = json_object_get_string(json_object_object_get(o, "qga"));
		const char *id = json_object_get_string(json_object_object_get(o, "id"));
		if (q && id && !strcmp(q, want)) {
			vmkey_set(k, id);
			found = 1;
		}
		json_object_put(o);
		free(text);
	}
	closedir(d);
	return found;
}

int vmlock_take(const struct vmkey *k, const char *what, struct err *e)
{
	char path[PATH_MAX + 64];
	int rc = make_state_dir(e);
	if (rc < 0)
		return rc;
	snprintf(path, sizeof(path), "%.4000s/vm-%s.lock", state_dir(), k->hex);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return xerr_sys(e, QX_FAIL, errno, "cannot open %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		close(fd);
		return xerr(e, QX_LOCKED, "another quiesce run (pid %s) is backing up or thawing %s", pid[0] ? pid : "?",
			    what);
	}
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		/* the pid is only for the message; the lock is what counts */
	}
	return fd;
}
