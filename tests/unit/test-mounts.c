// SPDX-License-Identifier: MIT
/* Unit tests for mounts: mountinfo parsing, decoding, filtering, dedup. */
#include "mounts.h"
#include "tap.h"

static const char text[] =
	"22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
	"26 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
	"30 26 7:0 / /mnt/a\\040b rw master:3 - ext4 /dev/loop0 rw\n"
	"31 26 7:0 /sub /mnt/bind rw - ext4 /dev/loop0 rw\n"
	"32 26 0:45 / /tmp rw - tmpfs tmpfs rw\n"
	"garbage line\n"
	"33 26 8:1 / /mnt/no-separator rw ext4 /dev/sda1\n"
	"34 26 8:2 / /mnt/back\\134slash rw - xfs /dev/sda2 rw";

int main(void)
{
	struct mount_list l;
	ok(mounts_parse(text, sizeof(text) - 1, &l) == 0, "parse");
	ok(l.n == 4, "block-device mounts kept, pseudo and malformed lines skipped (%zu)", l.n);
	if (l.n == 4) {
		is_str(l.v[0].dir, "/", "root");
		ok(l.v[0].major == 254 && l.v[0].minor == 0, "major:minor");
		is_str(l.v[1].dir, "/mnt/a b", "\\040 decodes to a space");
		is_str(l.v[1].fstype, "ext4", "fstype");
		is_str(l.v[1].source, "/dev/loop0", "source");
		is_str(l.v[3].dir, "/mnt/back\\slash", "\\134 decodes to a backslash");
		ok(mounts_find(&l, "/mnt/bind") != NULL, "find exact");
		ok(mounts_find(&l, "/mnt/bind/") == NULL, "find is exact: no trailing-slash match");
	}
	mounts_dedup(&l);
	ok(l.n == 3 && mounts_find(&l, "/mnt/a b") && !mounts_find(&l, "/mnt/bind"),
	   "dedup keeps the first mount of each device");
	mounts_free(&l);

	struct err e;
	ok(mounts_read("/nonexistent/mountinfo", &l, &e) < 0 && strstr(e.msg, "/nonexistent"),
	   "unreadable file: error names it (%s)", e.msg);
	ok(mounts_read("/proc/self/mountinfo", &l, &e) == 0, "the real mountinfo parses");
	mounts_free(&l);
	return tap_done();
}
