// SPDX-License-Identifier: MIT
/*
 * cmd-fs: guest-get-fsinfo and guest-fstrim, over the same mount table as
 * the freeze (qemu-ga 7.2 lists bind mounts again here; so do we), in
 * reverse mount order.  Disk addresses come from sysdisk.c.
 */
#include "commands.h"

#include "mounts.h"
#include "sysdisk.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define MOUNTINFO "/proc/self/mountinfo"

static int fs_entry(const struct mount *m, struct json_object **ret, struct err *e)
{
	char syspath[64];
	snprintf(syspath, sizeof(syspath), "/sys/dev/block/%u:%u", m->major, m->minor);
	struct json_object *disks = json_object_new_array();
	char *name = NULL;
	int r = sysdisk_addresses(syspath, disks, &name, e);
	if (r < 0) {
		json_object_put(disks);
		free(name);
		return r;
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(name ? name : ""));
	free(name);
	json_object_object_add(o, "mountpoint", json_object_new_string(m->dir));
	json_object_object_add(o, "type", json_object_new_string(m->fstype));
	struct statvfs st;
	if (statvfs(m->dir, &st) == 0) {
		uint64_t used = (uint64_t)(st.f_blocks - st.f_bfree) * st.f_frsize;
		uint64_t total = ((uint64_t)(st.f_blocks - st.f_bfree) + st.f_bavail) * st.f_frsize;
		json_object_object_add(o, "used-bytes", json_object_new_uint64(used));
		json_object_object_add(o, "total-bytes", json_object_new_uint64(total));
	}
	json_object_object_add(o, "disk", disks);
	*ret = o;
	return 0;
}

static int get_fsinfo(struct agent *a, struct json_object *args, struct json_object **ret,
		      struct err *e)
{
	(void)a, (void)args;
	struct mount_list l;
	int r = mounts_read(MOUNTINFO, &l, e);
	if (r < 0)
		return r;
	struct json_object *list = json_object_new_array();
	for (size_t i = l.n; i-- > 0 && r == 0;) {
		struct json_object *o;
		r = fs_entry(&l.v[i], &o, e);
		if (r == 0)
			json_object_array_add(list, o);
	}
	mounts_free(&l);
	if (r < 0) {
		json_object_put(list);
		return r;
	}
	*ret = list;
	return 0;
}

static struct json_object *trim_one(const char *dir, int64_t minimum)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "path", json_object_new_string(dir));
	char msg[256];
	int fd = open(dir, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(msg, sizeof(msg), "failed to open: %s", strerror(errno));
		json_object_object_add(o, "error", json_object_new_string(msg));
		return o;
	}
	struct fstrim_range range = {.start = 0, .len = UINT64_MAX, .minlen = (uint64_t)minimum};
	if (ioctl(fd, FITRIM, &range) < 0) {
		if (errno == ENOTTY || errno == EOPNOTSUPP)
			snprintf(msg, sizeof(msg), "trim not supported");
		else
			snprintf(msg, sizeof(msg), "failed to trim: %s", strerror(errno));
		json_object_object_add(o, "error", json_object_new_string(msg));
	} else {
		json_object_object_add(o, "trimmed", json_object_new_uint64(range.len));
		json_object_object_add(o, "minimum", json_object_new_uint64(range.minlen));
	}
	close(fd);
	return o;
}

static int fstrim(struct agent *a, struct json_object *args, struct json_object **ret,
		  struct err *e)
{
	(void)a;
	struct json_object *m;
	int64_t minimum = json_object_object_get_ex(args, "minimum", &m) ? json_object_get_int64(m) : 0;
	struct mount_list l;
	int r = mounts_read(MOUNTINFO, &l, e);
	if (r < 0)
		return r;
	struct json_object *paths = json_object_new_array();
	for (size_t i = l.n; i-- > 0;)
		json_object_array_add(paths, trim_one(l.v[i].dir, minimum));
	mounts_free(&l);
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "paths", paths);
	*ret = o;
	return 0;
}

static const struct arg_spec fstrim_args[] = {{"minimum", ARG_INT, true}, {NULL}};

const struct rpc_command cmd_get_fsinfo = {"guest-get-fsinfo", get_fsinfo, NULL, 0};
const struct rpc_command cmd_fstrim = {"guest-fstrim", fstrim, fstrim_args, 0};
