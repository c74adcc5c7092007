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

#include <errno.h>
#include <fcntl.h>
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

static char *exchange(struct agent *a, const char *in)
{
	struct jstream_limits lim = JSTREAM_QEMU_LIMITS;
	struct jstream *js = jstream_new(&lim);
	struct buf out = BUF_INIT;
	struct jstream_event ev;
	size_t n = strlen(in);
	while (jstream_feed(js, &in, &n, &ev))
		rpc_handle(a, &ev, &out);
	jstream_free(js);
	buf_putc(&out, '\0');
	return out.data;
}

static void check(struct agent *a, const char *in, const char *want)
{
	char *got = exchange(a, in);
	is_str(got, want, in);
	free(got);
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

int main(void)
{
	setup();
	test_empty_list_freezes_nothing();

	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)system(cmd);
	return tap_done();
}
