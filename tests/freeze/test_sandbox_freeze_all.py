# SPDX-License-Identifier: MIT
"""The plain "freeze everything" (guest-fsfreeze-freeze, no list) on this
machine, safely: the agent runs in a mount+pid namespace whose root is a
fresh tmpfs holding only the test filesystems (bind mounts of loop-mounted
ext4 and xfs), proc and devtmpfs.  Before the freeze is sent, the test reads
the agent's own /proc/PID/mountinfo and refuses to go on unless every block
device it can see is one of the test filesystems.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sandbox
import qga

pytestmark = pytest.mark.freeze

TOP = Path(__file__).resolve().parents[2]
STATIC = Path(os.environ.get("QUIESCE_AGENT_STATIC",
                             TOP / "build-static" / "src" / "agent" / "quiesce-agent"))
BUSYBOX = Path("/bin/busybox")

# Runs under `unshare -m -p -f`: build the root, pivot into it, drop the old
# root, start the agent (not as PID 1: init gets no default-handled signals).
SETUP = r"""
set -e
R=$1 A=$2 B=$3 AGENT=$4 BUSYBOX=$5 HOOK=$6
mount -t tmpfs -o mode=0755 sandbox "$R"
mkdir -p "$R/mnt/a" "$R/mnt/b" "$R/proc" "$R/dev" "$R/run" "$R/bin" "$R/sbin" "$R/old"
mount --bind "$A" "$R/mnt/a"
mount --bind "$B" "$R/mnt/b"
cp "$AGENT" "$R/sbin/agent"
cp "$BUSYBOX" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
ln -s busybox "$R/bin/date"
cp "$HOOK" "$R/hook"
mount -t devtmpfs dev "$R/dev"
cd "$R"
pivot_root . old
/bin/busybox mount -t proc proc /proc
/bin/busybox umount -l /old
/sbin/agent -m unix-listen -p /run/sock -t /run -F/hook -v -l /run/agent.log &
echo $! > /run/agent.pid
wait
"""

HOOK = '#!/bin/sh\necho "$1" >> /run/hook-calls\n'


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def block_devices(pid):
    """major:minor of every block-device mount the process can see."""
    devs = set()
    with open("/proc/%d/mountinfo" % pid) as f:
        for line in f:
            majmin = line.split()[2]
            if not majmin.startswith("0:"):
                devs.add(majmin)
    return devs


def dev_of(path):
    st = os.stat(path)
    return "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))


@pytest.mark.skipif(not STATIC.is_file(), reason="static quiesce-agent not built")
@pytest.mark.skipif(not BUSYBOX.is_file(), reason="busybox-static is not installed")
def test_freeze_everything_inside_a_pivot_root_sandbox(sb):
    a, b = sb.fs("a", "ext4"), sb.fs("b", "xfs")
    w = sb.writer(a)
    root = sb.dir / "root"
    root.mkdir()
    hook = sb.dir / "sandbox-hook"
    hook.write_text(HOOK)
    hook.chmod(0o755)
    outer = subprocess.Popen(
        ["unshare", "-m", "-p", "-f", "--propagation", "private", "sh", "-c", SETUP, "setup",
         str(root), a.path, b.path, str(STATIC), str(BUSYBOX), str(hook)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    agent_pid = None
    try:
        # unshare -> sh (pid 1 inside) -> agent
        deadline = time.monotonic() + 10
        while agent_pid is None and time.monotonic() < deadline:
            for child in children(outer.pid):
                kids = children(child)
                if kids and os.path.exists("/proc/%d/root/run/sock" % kids[0]):
                    agent_pid = kids[0]
            time.sleep(0.02)
        assert agent_pid, "sandboxed agent did not start: %s" % (
            outer.stdout.read() if outer.poll() is not None else "")

        # The safety check: nothing but the test filesystems is visible.
        seen = block_devices(agent_pid)
        assert seen == {dev_of(a.path), dev_of(b.path)}, \
            "refusing to freeze: the agent sees block devices %s" % sorted(seen)

        sock = "/proc/%d/root/run/sock" % agent_pid
        qga.wait_for_socket(sock)
        assert wait_count(w, 3)
        with qga.Conn(sock, timeout=20) as c:
            # An empty list names nothing (before issue 10 it froze everything);
            # no list at all means everything, as in qemu-ga.
            assert c.cmd("guest-fsfreeze-freeze-list", {"mountpoints": []}) == {"return": 0}
            assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
            assert not a.is_frozen() and not b.is_frozen()
            assert c.cmd("guest-fsfreeze-freeze-list") == {"return": 2}
            assert a.is_frozen() and b.is_frozen()
            assert c.cmd("guest-fsfreeze-thaw") == {"return": 2}
            assert c.cmd("guest-fsfreeze-freeze") == {"return": 2}
            assert a.is_frozen() and b.is_frozen()
            n = w.count()
            time.sleep(0.3)
            assert w.count() <= n + 1
            assert c.cmd("guest-fsfreeze-thaw") == {"return": 2}
            # fstrim touches every mount the agent sees: only safe in here
            paths = c.cmd("guest-fstrim")["return"]["paths"]
            assert [p["path"] for p in paths] == ["/mnt/b", "/mnt/a"]  # reverse mount order
            for p in paths:
                assert "error" not in p and p["trimmed"] >= 0 and "minimum" in p, p
        assert wait_count(w, n + 3)
        calls = Path("/proc/%d/root/run/hook-calls" % agent_pid).read_text().split()
        assert calls == ["freeze", "thaw", "freeze", "thaw"]
    finally:
        a.thaw()
        b.thaw()
        if agent_pid:
            os.kill(agent_pid, signal.SIGTERM)
        try:
            outer.wait(timeout=20)
        except subprocess.TimeoutExpired:
            outer.kill()
            outer.wait()
    assert outer.returncode == 0, outer.stdout.read()


def wait_count(w, n, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if w.count() >= n:
            return True
        time.sleep(0.02)
    return False
