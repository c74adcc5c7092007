# SPDX-License-Identifier: MIT
"""What a VM backup must never do, whatever happens around it: leave the
guest frozen, fail a guest write, pause the VM, leave its own parts in QEMU,
or report a snapshot that is not one point in time.

The tests act at exact steps of the run through the CLI's test gates
(QUIESCE_FAULT_HOLD_AT=STEP:GATE: at STEP quiesce creates GATE.reached and
waits for GATE), and in the guest through the harness's test shell
(vmh.SHELL_RC, Guest.shell()), so nothing here sleeps to synchronise.
"""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import vmh
from test_vm_backup import HOOK, QUIESCE, Gate, boot, env_for, freeze_status, run, start

pytestmark = pytest.mark.vm


def snapshots(repo):
    return json.loads(run(QUIESCE, "snapshots", "--repo", repo, "--json").stdout)


def nothing_in_qemu(g):
    """No job, node or export of quiesce's left in QEMU."""
    assert g.qmp("query-block-jobs") == []
    nodes = [n["node-name"] for n in g.qmp("query-named-block-nodes")]
    assert not [n for n in nodes if n.startswith("quiesce-")], nodes
    assert g.qmp("query-block-exports") == []


# (step, signal): before anything is frozen; inside the frozen window, right
# after the freeze reply and right after the transaction; while reading.
SIGNAL_STEPS = [("nbd-started", signal.SIGTERM), ("prepared", signal.SIGINT), ("frozen", signal.SIGTERM),
                ("fixed", signal.SIGHUP), ("frozen", signal.SIGQUIT), ("reading", signal.SIGTERM)]


def test_a_signal_at_any_step_exits_130_and_never_leaves_the_guest_frozen(vm, agent, tmp_path):
    """SIGINT, SIGTERM, SIGHUP (an SSH session dropping) and SIGQUIT, each
    delivered exactly at a step: before the freeze, between the freeze reply
    and the transaction, between the transaction and the thaw, during the
    read.  Every run exits 130 saying it was interrupted, the guest is
    thawed the moment quiesce has exited, no snapshot is written and nothing
    of quiesce's stays in QEMU or in the state directory.  Run with the
    stock qemu-ga, which has no watchdog: quiesce's thaw is all it has."""
    if agent.name != "qemu-ga":
        pytest.skip("the host side is the same for both agents; qemu-ga has no watchdog to hide a miss")
    g = boot(vm, agent, tmp_path, HOOK)
    repo, state, scratch = tmp_path / "repo", tmp_path / "state", tmp_path / "scratch"
    run(QUIESCE, "init", "--repo", repo)
    scratch.mkdir()
    for i, (step, sig) in enumerate(SIGNAL_STEPS):
        gate = Gate(tmp_path, step, name="%s%d" % (step, i))
        p = start(g, repo, state, "--scratch-dir", scratch, env=env_for(state, QUIESCE_FAULT_HOLD_AT=gate.env()))
        gate.wait(p)
        p.send_signal(sig)
        out, err = p.communicate(timeout=120)
        what = "%s at %s" % (signal.Signals(sig).name, step)
        assert p.returncode == 130, (what, p.returncode, err)
        assert "interrupted" in err, (what, err)
        assert freeze_status(g) == "thawed", what
        assert not list(state.glob("frozen-*")), what
        assert snapshots(repo) == [], what
        nothing_in_qemu(g)
        assert list(scratch.iterdir()) == [], (what, "scratch left")


def snapshot_ms(snap_id):
    """Epoch milliseconds of a snapshot id (YYYYMMDDTHHMMSS.mmmZ-xxxxxxxx)."""
    import calendar
    stamp, ms = snap_id.split("Z-")[0].split(".")
    return calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%S")) * 1000 + int(ms)


def test_deep_backing_chain_and_the_snapshot_named_after_its_point_in_time(vm, agent, tmp_path):
    """A disk whose backing chain is 40 images deep (QMP nests each one a
    level deeper, past json-c's default limit of 32) backs up and restores;
    and the snapshot's id and time are the moment the transaction fixed the
    view, not the command's start (held here before the freeze)."""
    if agent.name != "quiesce":
        pytest.skip("agent-independent")
    top = Path(vmh.guest_paths()["DATA_BASE"])
    for i in range(40):
        img = tmp_path / ("chain%02d.qcow2" % i)
        run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", top, img)
        top = img
    g = boot(vm, agent, tmp_path, HOOK, disk=top)
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    gate = Gate(tmp_path, "prepared")
    p = start(g, repo, state, env=env_for(state, QUIESCE_FAULT_HOLD_AT=gate.env()))
    gate.wait(p)
    opened_ms = int(time.time() * 1000)
    gate.open()
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    doc = json.loads(out)
    assert doc["metadata"]["consistency"] == "application", doc["metadata"]
    assert snapshot_ms(doc["id"]) >= opened_ms, (doc["id"], opened_ms)
    assert doc["time"] >= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(opened_ms // 1000)), doc["time"]
    raw = tmp_path / "restored.raw"
    run(QUIESCE, "restore", "--repo", repo, doc["id"], "--to", raw)
    assert run("e2fsck", "-fn", raw, check=False).returncode == 0
    nothing_in_qemu(g)


def test_thaw_keeps_trying_for_as_long_as_the_freeze_was_given(vm, agent, tmp_path):
    """The stock qemu-ga runs its freeze hook with no time limit and answers
    nothing meanwhile.  A hook that outlasts --freeze-timeout (20 s) by 15 s
    more: quiesce's freeze call times out, and the thaw queued behind the
    freeze must still be waiting when the hook ends — quiesce keeps trying
    for at least --freeze-timeout — so the run thaws the guest, confirms it
    and goes on crash-consistent, instead of giving up after a few short
    tries and leaving the guest frozen."""
    if agent.name != "qemu-ga":
        pytest.skip("quiesce-agent ends a hook at its --hook-timeout")
    slow = "#!/bin/sh\n[ \"$1\" = freeze ] && sleep 35\nexit 0\n"
    g = boot(vm, agent, tmp_path, slow, rc_text=None)
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    p = start(g, repo, state, "--freeze-timeout", "20", "--agent-timeout", "1")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, (p.returncode, err)
    meta = json.loads(out)["metadata"]
    assert meta["consistency"] == "crash" and "could not be frozen" in meta["consistency_reason"], meta
    assert "may still be frozen" not in err, err
    assert not list(state.glob("frozen-*")), "the marker goes once the thaw is confirmed"
    assert freeze_status(g) == "thawed"
    nothing_in_qemu(g)


def test_one_identity_per_vm_and_a_thaw_behind_our_back(vm, agent, tmp_path):
    """A run holds the VM (stopped inside its frozen window).  Another run
    through another QMP monitor of the same QEMU is refused (exit 7): the
    lock is the VM's, not the socket's.  `quiesce thaw` is refused too, with
    --qga alone (it finds the VM from the run's marker) and with --qmp.
    Then the guest is thawed behind the agent's back (fsfreeze --unfreeze in the
    guest): the run must not call its snapshot application-consistent."""
    if agent.name != "quiesce":
        pytest.skip("qemu-ga cannot report hooks, so it never claims application consistency")
    g = boot(vm, agent, tmp_path, HOOK, rc_text=vmh.SHELL_RC, shell=True, extra_qmp=2)
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    env = env_for(state)
    gate = Gate(tmp_path, "frozen")
    p = start(g, repo, state, env=env_for(state, QUIESCE_FAULT_HOLD_AT=gate.env()))
    try:
        gate.wait(p)
        other = run(QUIESCE, "backup", "--repo", repo, "--qmp", g.dir / "qmp2.sock", "--name", "vm1",
                    "--consistency", "crash", env=env, check=False, timeout=120)
        assert other.returncode == 7 and "pid %d" % p.pid in other.stderr, (other.returncode, other.stderr)
        for how in (["--qga", g.agent_path], ["--qmp", g.dir / "qmp2.sock", "--qga", g.agent_path]):
            t = run(QUIESCE, "thaw", *how, env=env, check=False, timeout=120)
            assert t.returncode == 7 and "thaws the guest itself" in t.stderr, (how, t.returncode, t.stderr)
        g.shell("fsfreeze --unfreeze /mnt/data")
    finally:
        gate.open()
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    meta = json.loads(out)["metadata"]
    assert meta["consistency"] == "crash" and "thawed by someone else" in meta["consistency_reason"], meta
    assert "only crash-consistent" in err, err
    assert freeze_status(g) == "thawed"
    nothing_in_qemu(g)
    # with the lock free, thaw through either socket just says so
    for how in (["--qga", g.agent_path], ["--qmp", g.dir / "qmp2.sock", "--qga", g.agent_path]):
        t = run(QUIESCE, "thaw", *how, env=env, timeout=120)
        assert t.stdout == "the guest was not frozen\n", t.stdout


def scratch_left(scratch):
    """Files quiesce left under a --scratch-dir (its per-VM directory included)."""
    return [str(p) for p in Path(scratch).rglob("*")]


def test_teardown_removes_what_qemu_lists_not_what_replies_said(vm, agent, tmp_path):
    """Replies that come after quiesce's deadline (QUIESCE_FAULT_LOSE_REPLY:
    QEMU did the command, quiesce never saw the answer) for the transaction,
    the NBD server, a fleecing node and an export: each run fails, the
    guest is thawed, and nothing stays in QEMU — above all no job still
    copying into a scratch file that was unlinked.  A run killed right after
    it started the NBD server (no export yet) leaves a server the next run
    stops.  And an NBD client that is not ours cannot keep an export (and
    its node and scratch image) alive: exports go in hard mode."""
    if agent.name != "quiesce":
        pytest.skip("agent-independent")
    g = boot(vm, agent, tmp_path, HOOK, rc_text=None)
    repo, state, scratch = tmp_path / "repo", tmp_path / "state", tmp_path / "scratch"
    run(QUIESCE, "init", "--repo", repo)
    scratch.mkdir()
    for cmd in ("transaction", "nbd-server-start", "blockdev-add", "block-export-add"):
        p = start(g, repo, state, "--scratch-dir", scratch, env=env_for(state, QUIESCE_FAULT_LOSE_REPLY=cmd))
        out, err = p.communicate(timeout=300)
        assert p.returncode == 1 and "QMP %s: no answer" % cmd in err, (cmd, p.returncode, err)
        assert "warning" not in err, (cmd, err)
        assert freeze_status(g) == "thawed", cmd
        nothing_in_qemu(g)
        assert scratch_left(scratch) == [], cmd
    # killed with the NBD server started and no export added yet
    gate = Gate(tmp_path, "nbd-started")
    p = start(g, repo, state, "--scratch-dir", scratch, env=env_for(state, QUIESCE_FAULT_HOLD_AT=gate.env()))
    gate.wait(p)
    p.kill()
    p.wait()
    gate.open()
    # a stray client reading the export when the run ends
    gate = Gate(tmp_path, "prepared")
    p = start(g, repo, state, "--scratch-dir", scratch, env=env_for(state, QUIESCE_FAULT_HOLD_AT=gate.env()))
    gate.wait(p)
    sock = next(scratch.glob("vm-*/nbd.sock"))
    stray = subprocess.Popen(["qemu-io", "-r", "-f", "raw", "nbd+unix:///disk0?socket=%s" % sock],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        stray.stdin.write("read 0 512\n")
        stray.stdin.flush()
        line = ""
        while "read 512/512 bytes" not in line:
            line = stray.stdout.readline()
            assert line, "qemu-io could not read the export"
        gate.open()
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, (p.returncode, err)
        assert "removed 2 leftovers of an earlier run" in err, err  # its node and NBD server
        assert "warning" not in err, err
        nothing_in_qemu(g)
        assert scratch_left(scratch) == []
    finally:
        stray.stdin.close()
        try:
            stray.wait(30)
        except subprocess.TimeoutExpired:
            stray.kill()
            stray.wait()
    assert len(snapshots(repo)) == 1


def guest_io_errors(g):
    """Kernel messages of failed I/O in the guest."""
    log = g.shell("dmesg")
    return [l for l in log.splitlines() if "I/O error" in l or "EXT4-fs error" in l or "EXT4-fs warning" in l]


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_a_full_scratch_never_fails_a_guest_write_or_pauses_the_vm(vm, agent, tmp_path):
    """QEMU 7.2's copy-before-write fails the guest's own write when the
    scratch is full (with werror=enospc the VM pauses, and nothing resumes
    it).  Scratch here is a small tmpfs; the guest overwrites old data (which
    must be copied there first) at the worst moment, while quiesce reads.
      - too small for the worst case: refused before anything is frozen;
      - the copy-before-write job ends under the read (cancelled by someone
        else): no snapshot, since the export would read live data;
      - the tmpfs fills (something else writes there) during the read:
        quiesce stops the backup before the guest writes more than fits;
      - the same, with the room watch left out (as if it filled between two
        looks): the guest's write pauses the VM; quiesce takes its job away
        and resumes it, and the write completes.
    Each time: a clear error, exit non-zero, no snapshot, the guest's write
    succeeds, no I/O error in the guest, the VM running, nothing left."""
    if agent.name != "quiesce":
        pytest.skip("agent-independent")
    g = boot(vm, agent, tmp_path, HOOK, rc_text=vmh.SHELL_RC, shell=True)
    repo, state, scratch = tmp_path / "repo", tmp_path / "state", tmp_path / "scratch"
    run(QUIESCE, "init", "--repo", repo)
    scratch.mkdir()
    run("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", scratch)
    filler = scratch / "filler"
    overwrite = "dd if=/dev/zero of=/mnt/data/files/rand0.bin bs=1M count=8 conv=notrunc,fsync 2>&1 && sync"

    def unharmed(what):
        assert g.qmp("query-status")["status"] == "running", what
        assert not [e for e in g._qmp.events if e["event"] in ("BLOCK_IO_ERROR", "STOP")], what
        assert guest_io_errors(g) == [], what
        assert freeze_status(g) == "thawed", what
        nothing_in_qemu(g)
        assert scratch_left(scratch) == [], what
        assert snapshots(repo) == [], what

    try:
        # the worst case does not fit
        p = start(g, repo, state, "--scratch-dir", scratch)
        out, err = p.communicate(timeout=300)
        assert p.returncode == 6 and "nothing was frozen" in err, (p.returncode, err)
        assert g.shell("ls /mnt/data/before-freeze", check=False)[0] != 0, "the freeze hook ran"
        unharmed("refused")
        run("mount", "-o", "remount,size=64m", scratch)

        # the job ends under the read
        gate = Gate(tmp_path, "reading")
        p = start(g, repo, state, "--scratch-dir", scratch, env=env_for(state, QUIESCE_FAULT_HOLD_AT=gate.env()))
        gate.wait(p)
        g.qmp("block-job-cancel", device="quiesce-job0", force=True)
        g.wait_event("BLOCK_JOB_CANCELLED", match=lambda ev: ev["data"]["device"] == "quiesce-job0")
        gate.open()
        out, err = p.communicate(timeout=300)
        assert p.returncode == 1 and "vblk0" in err and "ended" in err and "live data" in err, (p.returncode, err)
        unharmed("job cancelled")

        # the scratch fills during the read
        for skip in ("", "room-watch"):
            gate = Gate(tmp_path, "reading", name="fill-" + (skip or "watched"))
            g._qmp.events.clear()  # only this run's events count below
            p = start(g, repo, state, "--scratch-dir", scratch,
                      env=env_for(state, QUIESCE_FAULT_HOLD_AT=gate.env(), QUIESCE_FAULT_SKIP=skip))
            gate.wait(p)
            with open(filler, "wb") as f:
                f.write(bytes(free_bytes(scratch) - (2 << 20)))
            if not skip:
                g.wait_event("BLOCK_JOB_CANCELLED", match=lambda ev: ev["data"]["device"] == "quiesce-job0")
            g.shell(overwrite, timeout=120)  # 8 MiB of old data: more than the 2 MiB left
            if skip:
                # it paused on ENOSPC (werror=enospc) and was resumed: the
                # write was retried without our job, and it completed
                g.wait_event("RESUME")
                seen = [e for e in g._qmp.events if e["event"] in ("BLOCK_IO_ERROR", "STOP")]
                assert seen and all(e["data"]["nospace"] for e in seen if e["event"] == "BLOCK_IO_ERROR"), seen
                g._qmp.events[:] = [e for e in g._qmp.events if e not in seen]
            gate.open()
            out, err = p.communicate(timeout=300)
            assert p.returncode != 0 and "no snapshot was written" in err, (skip, p.returncode, err)
            if skip:
                assert "resumed it" in err, err
            else:
                assert p.returncode == 6 and "filling up" in err and "before a guest write could fail" in err, err
            filler.unlink()
            unharmed("scratch filling, skip=%r" % skip)
    finally:
        run("umount", "-l", scratch, check=False)
