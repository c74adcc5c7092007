# SPDX-License-Identifier: MIT
"""`quiesce backup --qmp --qga` of a running TCG guest, end to end, with
quiesce-agent and with the stock qemu-ga in the guest.

The guest writes continuously (rc.local) and its fsfreeze hook leaves a
marker on the data disk just before the freeze and another just after the
thaw.  The backup, restored, must be a clean ext4 (e2fsck -fn, no
needs_recovery) holding the first marker and not the second; QEMU must be
left with no job, node, export or NBD server of ours, and the scratch
directory must be gone.  quiesce talks to QEMU on a second QMP monitor
(qmp1.sock); the harness keeps the first.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

import vmh

pytestmark = pytest.mark.vm

QUIESCE = os.environ.get("QUIESCE", str(vmh.REPO / "build" / "src" / "host" / "quiesce"))

HOOK = """#!/bin/sh
case "$1" in
freeze) echo "before freeze" > /mnt/data/before-freeze; sync ;;
thaw) echo "after thaw" > /mnt/data/after-thaw; sync ;;
esac
"""
RC_LOCAL = """#!/bin/sh
( n=0; while :; do echo "tick $n" >> /mnt/data/ticks.log; sync; n=$((n+1)); sleep 0.05; done ) &
"""


def run(*cmd, check=True, **kw):
    return subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, check=check, **kw)


def has_file(raw, name):
    r = run("debugfs", "-R", "stat /" + name, raw)
    return "File not found" not in r.stdout + r.stderr


def needs_recovery(raw):
    out = run("dumpe2fs", "-h", raw).stdout
    return "needs_recovery" in next(l for l in out.splitlines() if l.startswith("Filesystem features"))


@pytest.fixture
def guest(vm, agent, tmp_path):
    hook, rc = tmp_path / "hook", tmp_path / "rc.local"
    hook.write_text(HOOK)
    rc.write_text(RC_LOCAL)
    initrd = vmh.build_initrd(agent.binary, tmp_path / "initrd.gz", extra_files=[
        "%s:/etc/qemu/fsfreeze-hook:0755" % hook, "%s:/etc/rc.local:0755" % rc])
    g = vm(initrd=initrd, agent_args=["-F"], extra_qmp=1)
    g.agent().close()  # booted and answering; the agent's one client slot is quiesce's now
    return g


def quiesce(g, repo, state, *extra, check=True):
    env = dict(os.environ, QUIESCE_STATE_DIR=str(state))
    return run(QUIESCE, "backup", "--repo", repo, "--qmp", g.dir / "qmp1.sock", "--qga", g.agent_path,
               "--name", "vm1", "--json", *extra, check=check, env=env, timeout=300)


def assert_nothing_left(g, repo):
    assert g.qmp("query-block-jobs") == []
    nodes = [n["node-name"] for n in g.qmp("query-named-block-nodes")]
    assert not [n for n in nodes if n.startswith("quiesce-")], nodes
    assert g.qmp("query-block-exports") == []
    assert not list((Path(repo) / "tmp").iterdir()), "scratch files left in the repository"


def test_backup_of_a_writing_guest_is_consistent(guest, agent, tmp_path):
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    r = quiesce(guest, repo, state)
    doc = json.loads(r.stdout)
    meta = doc["metadata"]
    want = "application" if agent.name == "quiesce" else "filesystem"
    assert meta["consistency"] == want, meta
    assert meta["filesystems_frozen"] == 1 and meta["frozen_window_ms"] > 0, meta
    assert r.stderr == "", r.stderr
    assert_nothing_left(guest, repo)
    assert not list(state.iterdir()), "the thaw marker must be gone after a confirmed thaw"

    raw = tmp_path / "restored.raw"
    run(QUIESCE, "restore", "--repo", repo, doc["id"], "--to", raw)
    assert run("e2fsck", "-fn", raw, check=False).returncode == 0
    assert not needs_recovery(raw), "a frozen backup must have a clean journal"
    assert has_file(raw, "before-freeze"), "the freeze hook's marker is missing"
    assert not has_file(raw, "after-thaw"), "a file written after the thaw is in the backup"
    assert has_file(raw, "ticks.log")

    # the guest keeps running and a second backup stores only what changed
    r2 = json.loads(quiesce(guest, repo, state).stdout)
    assert r2["stats"]["chunks_new"] < doc["stats"]["chunks_new"] + doc["stats"]["chunks_reused"], r2
    assert r2["stats"]["chunks_reused"] > 0, r2
    assert run(QUIESCE, "verify", "--repo", repo).returncode == 0


def test_no_agent_prefer_app_backs_up_crash_consistent(guest, agent, tmp_path):
    if agent.name != "quiesce":
        pytest.skip("agent-independent")
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    env = dict(os.environ, QUIESCE_STATE_DIR=str(state))
    r = run(QUIESCE, "backup", "--repo", repo, "--qmp", guest.dir / "qmp1.sock", "--qga",
            tmp_path / "no-such.sock", "--name", "vm1", "--json", "--agent-timeout", "2", env=env,
            check=False, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "only crash-consistent" in r.stderr
    assert json.loads(r.stdout)["metadata"]["consistency"] == "crash"
    r = run(QUIESCE, "backup", "--repo", repo, "--qmp", guest.dir / "qmp1.sock", "--qga",
            tmp_path / "no-such.sock", "--name", "vm1", "--consistency", "require-app",
            "--agent-timeout", "2", env=env, check=False, timeout=300)
    assert r.returncode == 9 and "require-app" in r.stderr, (r.returncode, r.stderr)
    snaps = json.loads(run(QUIESCE, "snapshots", "--repo", repo, "--json").stdout)
    assert len(snaps) == 1, "require-app must not write a snapshot"
    assert_nothing_left(guest, repo)
