# SPDX-License-Identifier: MIT
"""Freeze everything inside a real guest, fix a point-in-time view of its
data disk over QMP, thaw: the view must be a clean filesystem.

The guest runs a writer (rc.local) and an fsfreeze hook that leaves a
marker on the data disk just before the freeze and another just after the
thaw, so the copy must hold the first and not the second.  A second,
unfrozen snapshot taken under the same write load is the contrast: it has
ext4's needs_recovery set, which shows the check can fail.
"""
import subprocess

import pytest

import vmh

pytestmark = pytest.mark.vm

HOOK = """#!/bin/sh
case "$1" in
freeze) echo "before freeze" > /mnt/data/before-freeze; sync ;;
thaw) echo "after thaw" > /mnt/data/after-thaw; sync ;;
esac
"""
RC_LOCAL = """#!/bin/sh
( n=0; while :; do echo "tick $n" >> /mnt/data/ticks.log; sync; n=$((n+1)); sleep 0.05; done ) &
"""


def run(*cmd, check=True):
    return subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=check)


def to_raw(image, out):
    run("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", image, out)
    return out


def needs_recovery(raw):
    features = run("dumpe2fs", "-h", raw).stdout
    line = next(l for l in features.splitlines() if l.startswith("Filesystem features"))
    return "needs_recovery" in line


def has_file(raw, name):
    return "File not found" not in run("debugfs", "-R", "stat /" + name, raw).stdout


def test_frozen_snapshot_is_consistent(vm, agent, tmp_path):
    hook, rc = tmp_path / "hook", tmp_path / "rc.local"
    hook.write_text(HOOK)
    rc.write_text(RC_LOCAL)
    initrd = vmh.build_initrd(agent.binary, tmp_path / "initrd.gz", extra_files=[
        "%s:/etc/qemu/fsfreeze-hook:0755" % hook, "%s:/etc/rc.local:0755" % rc])
    g = vm(initrd=initrd, agent_args=["-F"])
    conn = g.agent()

    assert conn.cmd("guest-fsfreeze-freeze") == {"return": 1}  # only /mnt/data is a block fs
    assert conn.cmd("guest-fsfreeze-status") == {"return": "frozen"}
    g.qmp("blockdev-snapshot-sync", **{"node-name": "data0", "format": "qcow2",
                                       "snapshot-file": str(g.dir / "ov1.qcow2"),
                                       "snapshot-node-name": "ov1"})
    assert conn.cmd("guest-fsfreeze-thaw") == {"return": 1}
    # the frozen point in time is now the read-only image under ov1
    frozen = to_raw(g.disk, tmp_path / "frozen.raw")

    # contrast: the same kind of snapshot, unfrozen, a moment later
    conn.cmd("guest-ping")
    g.qmp("blockdev-snapshot-sync", **{"node-name": "ov1", "format": "qcow2",
                                       "snapshot-file": str(g.dir / "ov2.qcow2"),
                                       "snapshot-node-name": "ov2"})
    unfrozen = to_raw(g.dir / "ov1.qcow2", tmp_path / "unfrozen.raw")

    assert run("e2fsck", "-fn", frozen, check=False).returncode == 0
    assert not needs_recovery(frozen), "a frozen snapshot must have a clean journal"
    assert has_file(frozen, "before-freeze"), "the freeze hook's marker is missing"
    assert not has_file(frozen, "after-thaw"), "a file written after the thaw is in the snapshot"
    assert has_file(frozen, "ticks.log")
    assert needs_recovery(unfrozen), "the unfrozen contrast should need journal recovery"
    assert has_file(unfrozen, "after-thaw")
    if agent.name == "quiesce":
        report = conn.cmd("quiesce-freeze-report")["return"]
        assert [(h["action"], h["exit-status"]) for h in report["hooks"]] == [
            ("freeze", 0), ("thaw", 0)]
        assert report["auto-thawed"] is False
