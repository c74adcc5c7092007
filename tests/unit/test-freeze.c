// SPDX-License-Identifier: MIT
/*
 * Unit tests for freeze: the state machine with the kernel calls replaced.
 *
 * Nothing here freezes a real filesystem.  The "mounts" are plain
 * directories under a temp dir, listed in a fake mountinfo file; the fake
 * FIFREEZE/FITHAW keep a frozen flag per directory inode.  That makes the
 * cases that must never happen on a real machine safe to run here (an
 * empty freeze list that would freeze "everything"), and the ones that are
 * hard to provoke for real (mountinfo unreadable, EMFILE, FITHAW failing).
 */
#include "agent.h"
#include "commands.h"
#include "freeze.h"
#include "jstream.h"
#include "rpc.h"
#include "tap.h"
#include "rpc-exchange.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define NMOUNTS 3

static char dir[] = "/tmp/test-freeze-XXXXXX";
static char mountinfo[300], statedir[300], mnt[NMOUNTS][300];

/* ---- fake kernel ------------------------------------------------------ */

static ino_t ino[NMOUNTS];
static bool frozen[NMOUNTS];
static int fail_thaw = -1;  /* index whose FITHAW fails with EIO */
static int fail_freeze = -1; /* index whose FIFREEZE fails with EIO */
static int freeze_calls, thaw_calls;

static int which(int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -1;
	for (int i = 0; i < NMOUNTS; i++)
		if (st.st_ino == ino[i])
			return i;
	return -1;
}

static int fake_freeze(int fd)
{
	freeze_calls++;
	int i = which(fd);
	if (i < 0)
		return -EOPNOTSUPP; /* never touch anything but the test dirs */
	if (frozen[i])
		return -EBUSY;
	if (i == fail_freeze)
		return -EIO;
	frozen[i] = true;
	return 0;
}

static int fake_thaw(int fd)
{
	thaw_calls++;
	int i = which(fd);
	if (i < 0)
		return -EINVAL;
	if (i == fail_thaw)
		return -EIO;
	if (!frozen[i])
		return -EINVAL;
	frozen[i] = false;
	return 0;
}

static const struct freeze_ops fake_ops = {fake_freeze, fake_thaw};

static int nfrozen(void)
{
	int n = 0;
	for (int i = 0; i < NMOUNTS; i++)
		n += frozen[i];
	return n;
}

/* ---- fixtures ---------------------------------------------------------- */

static void setup(void)
{
	if (!mkdtemp(dir))
		exit(1);
	snprintf(mountinfo, sizeof(mountinfo), "%s/mountinfo", dir);
	snprintf(statedir, sizeof(statedir), "%s/state", dir);
	mkdir(statedir, 0700);
	FILE *f = fopen(mountinfo, "w");
	for (int i = 0; i < NMOUNTS; i++) {
		snprintf(mnt[i], sizeof(mnt[i]), "%s/m%d", dir, i);
		mkdir(mnt[i], 0755);
		struct stat st;
		stat(mnt[i], &st);
		ino[i] = st.st_ino;
		fprintf(f, "%d 1 7:%d / %s rw,relatime shared:1 - ext4 /dev/loop%d rw\n", 30 + i, i,
			mnt[i], i);
	}
	fclose(f);
}

static void new_freezer(struct freezer *f)
{
	freezer_init(f);
	f->ops = &fake_ops;
	f->mountinfo = mountinfo;
	f->statedir = statedir;
	f->hook = NULL;
}

static bool marker_exists(void)
{
	char p[400];
	snprintf(p, sizeof(p), "%s/qga.state.isfrozen", statedir);
	return access(p, F_OK) == 0;
}


/* ---- cases ------------------------------------------------------------- */

/* Issue 10 item 2: {"mountpoints": []} froze every filesystem. */
static void test_empty_list_freezes_nothing(void)
{
	struct freezer f;
	struct err e = {0};
	new_freezer(&f);
	freezer_start(&f, &e);
	struct strlist empty = {0};
	freeze_calls = 0;
	ok(freezer_freeze(&f, &empty, &e) == 0, "an empty list freezes 0 filesystems");
	ok(nfrozen() == 0 && freeze_calls == 0 && !f.frozen && !marker_exists(),
	   "nothing was frozen (%d FIFREEZE calls), no marker", freeze_calls);
	ok(freezer_freeze(&f, NULL, &e) == NMOUNTS && nfrozen() == NMOUNTS,
	   "no list at all still means every filesystem");
	ok(freezer_thaw(&f, &e) == NMOUNTS && nfrozen() == 0, "and thaw thaws them");
	freezer_done(&f);

	/* the same through the commands, as a host sends them */
	struct agent a = {0};
	new_freezer(&a.freezer);
	freezer_start(&a.freezer, &e);
	check(&a, "{\"execute\":\"guest-fsfreeze-freeze-list\",\"arguments\":{\"mountpoints\":[]}}",
	      "{\"return\": 0}\n");
	ok(nfrozen() == 0 && !agent_is_frozen(&a), "freeze-list [] left everything thawed");
	check(&a, "{\"execute\":\"guest-fsfreeze-freeze-list\"}", "{\"return\": 3}\n");
	check(&a, "{\"execute\":\"guest-fsfreeze-thaw\"}", "{\"return\": 3}\n");
	check(&a, "{\"execute\":\"guest-fsfreeze-freeze\"}", "{\"return\": 3}\n");
	check(&a, "{\"execute\":\"guest-fsfreeze-thaw\"}", "{\"return\": 3}\n");
	ok(nfrozen() == 0, "all thawed");
	freezer_done(&a.freezer);
}

static bool armed(const struct freezer *f)
{
	struct itimerspec its;
	timerfd_gettime(freezer_timer_fd(f), &its);
	return its.it_value.tv_sec || its.it_value.tv_nsec;
}

/* Wait for the watchdog to fire, as the main loop's poll would. */
static bool fires(const struct freezer *f, int ms)
{
	struct pollfd p = {freezer_timer_fd(f), POLLIN, 0};
	return poll(&p, 1, ms) == 1;
}

static void write_marker(void)
{
	char p[400];
	snprintf(p, sizeof(p), "%s/qga.state.isfrozen", statedir);
	FILE *m = fopen(p, "w");
	fputs("quiesce-agent\n", m);
	fclose(m);
}

/* Issue 10 item 4: the thaw re-read mountinfo and gave up when it could
 * not (ENOMEM/EMFILE build up in a frozen guest), never to try again. */
static void test_thaw_without_mount_table(void)
{
	struct freezer f;
	struct err e = {0};
	struct strlist two = {0};
	strlist_add(&two, mnt[0]);
	strlist_add(&two, mnt[2]);

	new_freezer(&f);
	freezer_start(&f, &e);
	ok(freezer_freeze(&f, &two, &e) == 2 && frozen[0] && frozen[2], "froze two");
	f.mountinfo = "/nonexistent/mountinfo";
	int n = freezer_thaw(&f, &e);
	ok(n == 2 && nfrozen() == 0 && !f.frozen && !marker_exists(),
	   "mountinfo unreadable: the thaw still thaws what it froze (%d: %s)", n, n < 0 ? e.msg : "");
	freezer_done(&f);

	new_freezer(&f);
	freezer_start(&f, &e);
	ok(freezer_freeze(&f, NULL, &e) == NMOUNTS, "froze all");
	struct rlimit saved, none;
	getrlimit(RLIMIT_NOFILE, &saved);
	int lowest = dup(0);
	close(lowest);
	none = saved;
	none.rlim_cur = (rlim_t)lowest; /* no new fd can be opened */
	setrlimit(RLIMIT_NOFILE, &none);
	ok(open("/dev/null", O_RDONLY) < 0 && errno == EMFILE, "EMFILE for every open now");
	n = freezer_thaw(&f, &e);
	setrlimit(RLIMIT_NOFILE, &saved);
	ok(n == NMOUNTS && nfrozen() == 0 && !f.frozen,
	   "EMFILE: the thaw still thaws everything it froze (%d: %s)", n, n < 0 ? e.msg : "");
	freezer_done(&f);

	/* FITHAW itself failing: stay frozen, say so, and try again soon */
	new_freezer(&f);
	freezer_start(&f, &e);
	ok(freezer_freeze(&f, &two, &e) == 2, "froze two again");
	fail_thaw = 2;
	n = freezer_thaw(&f, &e);
	ok(n < 0 && strstr(e.msg, "failed to thaw") && strstr(e.msg, mnt[2]) && f.frozen &&
		   frozen[2] && !frozen[0] && marker_exists(),
	   "a failing FITHAW keeps us frozen, the others are thawed: %s", e.msg);
	ok(armed(&f) && fires(&f, 3000), "and re-arms the watchdog within a second");
	fail_thaw = -1;
	freezer_watchdog_fired(&f);
	ok(!f.frozen && nfrozen() == 0 && !marker_exists(), "the retry thaws the rest");
	freezer_done(&f);
	strlist_free(&two);

	/* a failed freeze whose undo fails: stay frozen, keep trying */
	new_freezer(&f);
	freezer_start(&f, &e);
	fail_freeze = 0; /* the last one (reverse order) fails... */
	fail_thaw = 1;   /* ...and one already frozen will not thaw */
	n = freezer_freeze(&f, NULL, &e);
	ok(n == -EIO && strstr(e.msg, "failed to freeze") && f.frozen && frozen[1] && !frozen[2] &&
		   marker_exists(),
	   "a failed freeze that cannot be undone stays frozen: %s", e.msg);
	ok(armed(&f) && fires(&f, 3000), "and the watchdog retries within a second");
	fail_freeze = fail_thaw = -1;
	freezer_watchdog_fired(&f);
	ok(!f.frozen && nfrozen() == 0 && !marker_exists(), "then thaws it");
	freezer_done(&f);
}

/* Restarted frozen (marker left behind): no fds from a freeze, so the
 * mount points are opened at start; a thaw that still fails retries. */
static void test_recovered_thaw(void)
{
	struct freezer f;
	struct err e = {0};
	for (int i = 0; i < NMOUNTS; i++)
		frozen[i] = true; /* frozen by an earlier instance */
	write_marker();
	new_freezer(&f);
	ok(freezer_start(&f, &e) == 0 && f.frozen, "restarted frozen");
	f.mountinfo = "/nonexistent/mountinfo"; /* unreadable by the time of the thaw */
	int n = freezer_thaw(&f, &e);
	ok(n == NMOUNTS && nfrozen() == 0 && !f.frozen,
	   "what was opened at start is thawed without the mount table (%d: %s)", n,
	   n < 0 ? e.msg : "");
	freezer_done(&f);

	for (int i = 0; i < NMOUNTS; i++)
		frozen[i] = true;
	write_marker();
	new_freezer(&f);
	f.mountinfo = "/nonexistent/mountinfo"; /* unreadable from the start */
	f.watchdog_ms = 50;
	ok(freezer_start(&f, &e) == 0 && f.frozen, "restarted frozen, mount table unreadable");
	ok(fires(&f, 3000), "the watchdog fires");
	freezer_watchdog_fired(&f);
	ok(f.frozen && nfrozen() == NMOUNTS && marker_exists(), "cannot thaw yet: still frozen");
	ok(armed(&f), "and the watchdog is re-armed");
	f.mountinfo = mountinfo;
	ok(fires(&f, 3000), "it fires again");
	freezer_watchdog_fired(&f);
	ok(!f.frozen && nfrozen() == 0 && !marker_exists() && f.report.auto_thawed,
	   "and thaws once the mount table can be read");
	freezer_done(&f);
}

static bool file_is(const char *path, const char *want)
{
	char got[64] = "";
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(got, 1, sizeof(got) - 1, f);
	got[n] = '\0';
	fclose(f);
	return !strcmp(got, want);
}

/* Issue 10 item 8: the marker was written with O_TRUNC through whatever
 * was at its name, and read through it at start. */
static void test_marker_symlink_is_not_followed(void)
{
	struct freezer f;
	struct err e = {0};
	char victim[400], mpath[400];
	struct stat st;
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	snprintf(mpath, sizeof(mpath), "%s/qga.state.isfrozen", statedir);
	FILE *v = fopen(victim, "w");
	fputs("precious\n", v);
	fclose(v);

	new_freezer(&f);
	freezer_start(&f, &e);
	symlink(victim, mpath);
	struct strlist one = {0};
	strlist_add(&one, mnt[1]);
	ok(freezer_freeze(&f, &one, &e) == 1, "froze with a symlink planted at the marker's name");
	ok(file_is(victim, "precious\n"), "the file it points to is untouched");
	ok(lstat(mpath, &st) == 0 && S_ISREG(st.st_mode), "the marker is a regular file of its own");
	ok(freezer_thaw(&f, &e) == 1 && lstat(mpath, &st) < 0 && file_is(victim, "precious\n"),
	   "thawed, marker gone, the other file still there");
	freezer_done(&f);
	strlist_free(&one);

	v = fopen(victim, "w");
	fputs("thaw-hook-owed\n", v);
	fclose(v);
	symlink(victim, mpath);
	new_freezer(&f);
	ok(freezer_start(&f, &e) == 0 && f.frozen, "a symlinked marker at start: cannot tell, so frozen");
	ok(!f.thaw_hook_owed, "but what it points to is not read (no thaw hook owed from it)");
	ok(freezer_thaw(&f, &e) == 0 && lstat(mpath, &st) < 0 && file_is(victim, "thaw-hook-owed\n"),
	   "the thaw removes the link, not its target");
	freezer_done(&f);
}

int main(void)
{
	setup();
	test_empty_list_freezes_nothing();
	test_thaw_without_mount_table();
	test_recovered_thaw();
	test_marker_symlink_is_not_followed();

	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)system(cmd);
	return tap_done();
}
