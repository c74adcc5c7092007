// SPDX-License-Identifier: MIT
/*
 * cmd-system: facts about the guest (time, time zone, host name, OS, users,
 * vCPUs) and guest-shutdown.
 *
 * Shapes and quirks follow qemu-ga 7.2: guest-get-time has microsecond
 * resolution (it reads GLib's real-time clock), guest-get-vcpus lists CPUs
 * from the highest number down, and guest-get-users reports each user once
 * with their earliest login.
 */
#include "commands.h"

#include "agent.h"
#include "buf.h"
#include "cleanup.h"
#include "fdio.h"
#include "osrelease.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utmpx.h>

/* ---- guest-get-time ---------------------------------------------------- */

static int get_time(struct agent *a, struct json_object *args, struct json_object **ret,
		    struct err *e)
{
	(void)a, (void)args;
	struct timespec ts;
	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return err_sys(e, -errno, "Failed to get time");
	int64_t us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	*ret = json_object_new_int64(us * 1000);
	return 0;
}

const struct rpc_command cmd_get_time = {"guest-get-time", get_time, NULL, 0};

/* ---- guest-get-timezone ------------------------------------------------ */

static int get_timezone(struct agent *a, struct json_object *args, struct json_object **ret,
			struct err *e)
{
	(void)a, (void)args;
	time_t now = time(NULL);
	struct tm tm;
	tzset();
	if (!localtime_r(&now, &tm))
		return err_set(e, -EINVAL, "Failed to get the local time zone");
	struct json_object *o = json_object_new_object();
	if (tm.tm_zone)
		json_object_object_add(o, "zone", json_object_new_string(tm.tm_zone));
	json_object_object_add(o, "offset", json_object_new_int64(tm.tm_gmtoff));
	*ret = o;
	return 0;
}

const struct rpc_command cmd_get_timezone = {"guest-get-timezone", get_timezone, NULL, 0};

/* ---- guest-get-host-name ----------------------------------------------- */

static int get_host_name(struct agent *a, struct json_object *args, struct json_object **ret,
			 struct err *e)
{
	(void)a, (void)args;
	char name[256 + 1] = "";
	if (gethostname(name, sizeof(name) - 1) < 0)
		return err_sys(e, -errno, "failed to get host name");
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "host-name", json_object_new_string(name));
	*ret = o;
	return 0;
}

const struct rpc_command cmd_get_host_name = {"guest-get-host-name", get_host_name, NULL, 0};

/* ---- guest-get-osinfo -------------------------------------------------- */

static void add_os_release(struct json_object *o, const char *path)
{
	struct buf text = BUF_INIT;
	if (fdio_read_file(path, 1u << 20, &text, NULL) == 0)
		osrelease_parse(text.data, text.len, o);
	buf_free(&text);
}

static int get_osinfo(struct agent *a, struct json_object *args, struct json_object **ret,
		      struct err *e)
{
	(void)args, (void)e;
	struct json_object *o = json_object_new_object();
	struct utsname u;
	if (uname(&u) == 0) {
		json_object_object_add(o, "kernel-release", json_object_new_string(u.release));
		json_object_object_add(o, "kernel-version", json_object_new_string(u.version));
		json_object_object_add(o, "machine", json_object_new_string(u.machine));
	}
	const char *path = a->os_release;
	if (!path)
		path = access("/etc/os-release", F_OK) == 0 ? "/etc/os-release"
							    : "/usr/lib/os-release";
	add_os_release(o, path);
	*ret = o;
	return 0;
}

const struct rpc_command cmd_get_osinfo = {"guest-get-osinfo", get_osinfo, NULL, 0};

/* ---- guest-get-users --------------------------------------------------- */

static int get_users(struct agent *a, struct json_object *args, struct json_object **ret,
		     struct err *e)
{
	(void)a, (void)args, (void)e;
	struct json_object *list = json_object_new_array();
	struct json_object *seen = json_object_new_object(); /* user -> entry */
	setutxent();
	struct utmpx *u;
	while ((u = getutxent())) {
		if (u->ut_type != USER_PROCESS)
			continue;
		char user[sizeof(u->ut_user) + 1];
		memcpy(user, u->ut_user, sizeof(u->ut_user));
		user[sizeof(u->ut_user)] = '\0';
		double t = (double)u->ut_tv.tv_sec + (double)u->ut_tv.tv_usec / 1000000.0;
		struct json_object *entry;
		if (json_object_object_get_ex(seen, user, &entry)) {
			struct json_object *lt;
			json_object_object_get_ex(entry, "login-time", &lt);
			if (t < json_object_get_double(lt))
				json_object_object_add(entry, "login-time", json_object_new_double(t));
			continue;
		}
		entry = json_object_new_object();
		json_object_object_add(entry, "user", json_object_new_string(user));
		json_object_object_add(entry, "login-time", json_object_new_double(t));
		json_object_array_add(list, entry);
		json_object_object_add(seen, user, json_object_get(entry));
	}
	endutxent();
	json_object_put(seen);
	*ret = list;
	return 0;
}

const struct rpc_command cmd_get_users = {"guest-get-users", get_users, NULL, 0};

/* ---- guest-get-vcpus --------------------------------------------------- */

static int get_vcpus(struct agent *a, struct json_object *args, struct json_object **ret,
		     struct err *e)
{
	(void)a, (void)args;
	const char *dir = "/sys/devices/system/cpu";
	_cleanup_closedir_ DIR *d = opendir(dir);
	if (!d)
		return err_sys(e, -errno, "failed to list entries: %s", dir);
	struct json_object *list = json_object_new_array();
	struct dirent *de;
	/* raw readdir order, as qemu-ga reports them */
	while ((de = readdir(d))) {
		long id;
		char tail;
		if (sscanf(de->d_name, "cpu%ld%c", &id, &tail) != 1)
			continue;
		char path[320];
		snprintf(path, sizeof(path), "%s/%s/online", dir, de->d_name);
		bool online = true, can_offline = false;
		_cleanup_fclose_ FILE *f = fopen(path, "re");
		if (f) {
			int c = fgetc(f);
			if (c == EOF) {
				json_object_put(list);
				return err_set(e, -EIO, "pread(\"%s\"): unexpected EOF", path);
			}
			online = c != '0';
			can_offline = true;
		} else if (errno != ENOENT) {
			json_object_put(list);
			return err_sys(e, -errno, "open(\"%s\")", path);
		}
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "online", json_object_new_boolean(online));
		json_object_object_add(o, "can-offline", json_object_new_boolean(can_offline));
		json_object_object_add(o, "logical-id", json_object_new_int64(id));
		json_object_array_add(list, o);
	}
	*ret = list;
	return 0;
}

const struct rpc_command cmd_get_vcpus = {"guest-get-vcpus", get_vcpus, NULL, 0};

/* ---- guest-shutdown ---------------------------------------------------- */

static const struct arg_spec shutdown_args[] = {{"mode", ARG_STR, true}, {NULL}};

static int shutdown_guest(struct agent *a, struct json_object *args, struct json_object **ret,
			  struct err *e)
{
	(void)ret;
	struct json_object *m;
	const char *mode = json_object_object_get_ex(args, "mode", &m) ? json_object_get_string(m)
								     : "powerdown";
	const char *flag;
	if (!strcmp(mode, "powerdown"))
		flag = "-P";
	else if (!strcmp(mode, "halt"))
		flag = "-H";
	else if (!strcmp(mode, "reboot"))
		flag = "-r";
	else /* sic: qemu-ga's text has no closing parenthesis */
		return err_set(e, -EINVAL, "mode is invalid (valid values are: halt|powerdown|reboot");

	const char *prog = a->shutdown_path ? a->shutdown_path : "/sbin/shutdown";
	char *const argv[] = {(char *)"shutdown", (char *)"-h", (char *)flag, (char *)"+0",
			      (char *)"hypervisor initiated shutdown", NULL};
	pid_t pid = fork();
	if (pid < 0)
		return err_sys(e, -errno, "failed to create child process");
	if (pid == 0) {
		/* only async-signal-safe calls from here on; the agent blocks
		 * signals for its signalfd, the child must not inherit that */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		int fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		setsid();
		execv(prog, argv);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return err_sys(e, -errno, "failed to wait for child (pid: %d)", (int)pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return err_set(e, -EIO, "child process has failed to shutdown");
	return 0;
}

const struct rpc_command cmd_shutdown = {"guest-shutdown", shutdown_guest, shutdown_args,
					 RPC_NO_SUCCESS_RESPONSE};
