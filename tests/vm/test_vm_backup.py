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
import time
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
    return boot(vm, agent, tmp_path, HOOK)


def quiesce(g, repo, state, *extra, check=True):
    env = dict(os.environ, QUIESCE_STATE_DIR=str(state))
    return run(QUIESCE, "backup", "--repo", repo, "--qmp", g.dir / "qmp1.sock", "--qga", g.agent_path,
               "--name", "vm1", "--json", *extra, check=check, env=env, timeout=300)


def vm_key(g):
    """The 16 hex digits quiesce names a VM's lock, marker and scratch
    directory after: QEMU has no -uuid here, so its process (pid and start
    time) identifies it."""
    import hashlib
    stat = Path("/proc/%d/stat" % g.proc.pid).read_text()
    start = stat.rsplit(")", 1)[1].split()[19]
    return hashlib.sha256(b"qemu:%d:%s" % (g.proc.pid, start.encode())).hexdigest()[:16]


DEFAULT_SCRATCH = Path("/var/tmp/quiesce")


def assert_nothing_left(g, repo):
    assert g.qmp("query-block-jobs") == []
    nodes = [n["node-name"] for n in g.qmp("query-named-block-nodes")]
    assert not [n for n in nodes if n.startswith("quiesce-")], nodes
    assert g.qmp("query-block-exports") == []
    assert not list((Path(repo) / "tmp").iterdir()), "scratch files in the repository"
    assert not (DEFAULT_SCRATCH / ("vm-" + vm_key(g))).exists(), "scratch left in %s" % DEFAULT_SCRATCH


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
    assert not list(state.glob("frozen-*")), "the thaw marker must be gone after a confirmed thaw"

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


FAILING_HOOK = """#!/bin/sh
[ "$1" = freeze ] && { echo "database refused to lock" >&2; exit 1; }
exit 0
"""


def boot(vm, agent, tmp_path, hook_text, extra_agent_args=(), rc_text=RC_LOCAL, **guest_args):
    """A guest running `agent` with `hook_text` as its fsfreeze hook and
    `rc_text` (None: nothing) as rc.local, booted and answering; the
    agent's one client slot is left free for quiesce."""
    hook = tmp_path / "hook"
    hook.write_text(hook_text)
    files = ["%s:/etc/qemu/fsfreeze-hook:0755" % hook]
    if rc_text is not None:
        rc = tmp_path / "rc.local"
        rc.write_text(rc_text)
        files.append("%s:/etc/rc.local:0755" % rc)
    initrd = vmh.build_initrd(agent.binary, tmp_path / "initrd.gz", extra_files=files)
    args = ["-F"] + (list(extra_agent_args) if agent.name == "quiesce" else [])
    guest_args.setdefault("extra_qmp", 1)
    g = vm(initrd=initrd, agent_args=args, **guest_args)
    g.agent().close()
    return g


def freeze_status(g):
    conn = g.agent()
    try:
        return conn.cmd("guest-fsfreeze-status")["return"]
    finally:
        conn.close()


def env_for(state, **faults):
    return dict(os.environ, QUIESCE_STATE_DIR=str(state), **faults)


def start(g, repo, state, *extra, env=None, qmp="qmp1.sock"):
    """quiesce backup of guest g, running in the background."""
    return subprocess.Popen(
        [QUIESCE, "backup", "--repo", str(repo), "--qmp", str(g.dir / qmp), "--qga", str(g.agent_path),
         "--name", "vm1", "--json", *map(str, extra)],
        env=env or env_for(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(what, pred, p=None, timeout=120):
    """Until pred() is true; fails at once if process p has exited."""
    deadline = time.monotonic() + timeout
    while not pred():
        if p is not None and p.poll() is not None:
            raise AssertionError("quiesce exited before %s: %s %s" % (what, p.returncode, p.communicate()))
        assert time.monotonic() < deadline, "no %s within %d s" % (what, timeout)
        time.sleep(0.005)


class Gate:
    """One QUIESCE_FAULT_HOLD_AT gate: env() for quiesce, wait() until it is
    held there, open() to let it go on."""

    def __init__(self, tmp_path, step, name=None):
        self.step = step
        self.path = tmp_path / ("gate-" + (name or step))
        assert not self.path.exists() and not Path(str(self.path) + ".reached").exists(), \
            "gate %s used twice" % self.path

    def env(self):
        return "%s:%s" % (self.step, self.path)

    def wait(self, p):
        wait_for("step %s" % self.step, Path(str(self.path) + ".reached").exists, p)

    def open(self):
        self.path.touch()


def test_sigkill_inside_the_frozen_window_never_strands_the_guest(vm, agent, tmp_path):
    """quiesce dies (SIGKILL) right after the guest froze: quiesce-agent's
    watchdog thaws it on its own; with qemu-ga, which has none, it stays
    frozen until the next quiesce run finds the marker and thaws first.
    Either way the next run also removes what the dead one left in QEMU, and
    succeeds."""
    g = boot(vm, agent, tmp_path, HOOK, ["--freeze-timeout=3"])
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    gate = Gate(tmp_path, "frozen")
    p = start(g, repo, state, env=env_for(state, QUIESCE_FAULT_HOLD_AT=gate.env()))
    gate.wait(p)
    p.kill()
    p.wait()
    assert list(state.glob("frozen-*")), "the marker is written before the freeze"
    if agent.name == "quiesce":
        # its watchdog (--freeze-timeout=3) fires on its own clock: wait for the thaw it reports
        conn = g.agent()
        wait_for("the watchdog's thaw", lambda: conn.cmd("quiesce-freeze-report")["return"]["auto-thawed"])
        conn.close()
    else:
        assert freeze_status(g) == "frozen", "qemu-ga has no watchdog: still frozen"
    r = quiesce(g, repo, state, "--freeze-timeout", "30")
    assert "leftover" in r.stderr, r.stderr
    if agent.name == "qemu-ga":
        assert "thawed a guest left frozen by an earlier run" in r.stderr, r.stderr
    assert freeze_status(g) == "thawed"
    assert_nothing_left(g, repo)
    assert not list(state.glob("frozen-*"))


def test_quiesce_thaw_command(vm, agent, tmp_path):
    if agent.name != "qemu-ga":
        pytest.skip("the stock agent is the one that needs it")
    g = boot(vm, agent, tmp_path, HOOK)
    conn = g.agent()
    assert conn.cmd("guest-fsfreeze-freeze")["return"] == 1
    conn.close()
    env = dict(os.environ, QUIESCE_STATE_DIR=str(tmp_path / "state"))
    r = run(QUIESCE, "thaw", "--qga", g.agent_path, env=env)
    assert "thawed 1 filesystem" in r.stdout, r.stdout
    assert freeze_status(g) == "thawed"
    r = run(QUIESCE, "thaw", "--qga", g.agent_path, env=env)
    assert "not frozen" in r.stdout


def test_failing_hook(vm, agent, tmp_path):
    """A freeze hook that fails: the agent refuses the freeze; prefer-app
    goes on crash-consistent and says why, require-app exits 9 and writes no
    snapshot; the guest is never left frozen."""
    g = boot(vm, agent, tmp_path, FAILING_HOOK)
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    r = quiesce(g, repo, state)
    meta = json.loads(r.stdout)["metadata"]
    assert meta["consistency"] == "crash" and "could not be frozen" in meta["consistency_reason"], meta
    assert "only crash-consistent" in r.stderr
    r = quiesce(g, repo, state, "--consistency", "require-app", check=False)
    assert r.returncode == 9, (r.returncode, r.stderr)
    assert len(json.loads(run(QUIESCE, "snapshots", "--repo", repo, "--json").stdout)) == 1
    assert freeze_status(g) == "thawed"
    assert_nothing_left(g, repo)


FAILING_THAW_HOOK = """#!/bin/sh
[ "$1" = thaw ] && { echo "the lock holder's connection was lost while frozen" >&2; exit 2; }
exit 0
"""


def test_failed_thaw_hook_is_never_application_consistent(vm, agent, tmp_path):
    """The thaw hook fails — what a hook does when the hold it took was lost
    while frozen (docs/hooks.md): the guest is thawed and the backup stored,
    but never as application-consistent, and the reason says it was the thaw
    hook; require-app refuses it."""
    g = boot(vm, agent, tmp_path, FAILING_THAW_HOOK, rc_text=None)
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    r = quiesce(g, repo, state)
    meta = json.loads(r.stdout)["metadata"]
    # quiesce-agent's report says how many filesystems the failed thaw thawed, so the
    # filesystems' consistency is proven; qemu-ga's error answer carries no count
    assert meta["consistency"] == ("filesystem" if agent.name == "quiesce" else "crash"), meta
    assert "thaw hook failed" in meta["consistency_reason"] or "fsfreeze hook has failed" in meta["consistency_reason"], meta
    assert "may have lost its consistent point" in meta["consistency_reason"], meta
    assert freeze_status(g) == "thawed"
    r = quiesce(g, repo, state, "--consistency", "require-app", check=False)
    assert r.returncode == 9 and "thaw" in r.stderr, (r.returncode, r.stderr)
    assert len(json.loads(run(QUIESCE, "snapshots", "--repo", repo, "--json").stdout)) == 1
    assert freeze_status(g) == "thawed"
    assert_nothing_left(g, repo)


def test_bad_input_leaves_the_guest_untouched(vm, agent, tmp_path):
    if agent.name != "quiesce":
        pytest.skip("agent-independent")
    g = boot(vm, agent, tmp_path, HOOK)
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    r = quiesce(g, repo, state, "--mountpoint", "/no/such/mount", check=False)
    assert r.returncode == 2 and "no filesystem mounted at /no/such/mount" in r.stderr, r.stderr
    env = dict(os.environ, QUIESCE_STATE_DIR=str(state))
    r = run(QUIESCE, "backup", "--repo", repo, "--qmp", tmp_path / "dead.sock", "--qga", g.agent_path,
            "--name", "vm1", env=env, check=False)
    assert r.returncode == 4 and "dead.sock" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = run(QUIESCE, "backup", "--repo", repo, "--qmp", g.dir / "qmp1.sock", env=env, check=False)
    assert r.returncode == 2 and "--name" in r.stderr
    assert json.loads(run(QUIESCE, "snapshots", "--repo", repo, "--json").stdout) == []
    assert freeze_status(g) == "thawed"
    assert_nothing_left(g, repo)
    # and the mountpoint that exists works, freezing only it
    r = quiesce(g, repo, state, "--mountpoint", "/mnt/data")
    assert json.loads(r.stdout)["metadata"]["mountpoints"] == ["/mnt/data"]


def test_qmp_transaction_failure_thaws_and_cleans_up(vm, agent, tmp_path):
    """Another copy-before-write job already on the disk (QEMU 7.2 allows one
    per node) makes our transaction fail inside the frozen window: the guest
    is thawed at once, nothing of ours stays in QEMU, no snapshot."""
    if agent.name != "quiesce":
        pytest.skip("agent-independent")
    g = boot(vm, agent, tmp_path, HOOK)
    other = tmp_path / "other-fleece.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", other, "1G")
    g.qmp("blockdev-add", driver="qcow2", **{"node-name": "other-fleece", "backing": "data0",
                                             "file": {"driver": "file", "filename": str(other)}})
    g.qmp("blockdev-backup", device="data0", target="other-fleece", sync="none",
          **{"job-id": "other-job"})
    try:
        repo, state = tmp_path / "repo", tmp_path / "state"
        run(QUIESCE, "init", "--repo", repo)
        r = quiesce(g, repo, state, check=False)
        assert r.returncode == 1 and "transaction" in r.stderr, (r.returncode, r.stderr)
        assert len(r.stderr.splitlines()) == 1, r.stderr
        assert freeze_status(g) == "thawed"
        assert [j["device"] for j in g.qmp("query-block-jobs")] == ["other-job"], "only theirs is left"
        nodes = [n["node-name"] for n in g.qmp("query-named-block-nodes")]
        assert not [n for n in nodes if n.startswith("quiesce-")], nodes
        assert g.qmp("query-block-exports") == []
        assert json.loads(run(QUIESCE, "snapshots", "--repo", repo, "--json").stdout) == []
        assert not list(state.glob("frozen-*"))
    finally:
        g.qmp("block-job-cancel", device="other-job")
        g.wait_event("BLOCK_JOB_CANCELLED", timeout=30)
        g.qmp("blockdev-del", **{"node-name": "other-fleece"})


BIG_WRITER = """#!/bin/sh
dd if=/dev/urandom of=/mnt/data/big bs=1M count=48 2>/dev/null; sync
"""


def test_repository_full_mid_read(vm, agent, tmp_path):
    """The repository's filesystem fills up while the views are read (the
    guest is long thawed by then): exit 6, one line, no snapshot, QEMU
    cleaned up, and the repository still verifies."""
    if agent.name != "quiesce":
        pytest.skip("agent-independent")
    g = boot(vm, agent, tmp_path, HOOK, rc_text=BIG_WRITER)
    img, mnt = tmp_path / "small.img", tmp_path / "small"
    run("truncate", "-s", "24M", img)
    run("mkfs.ext4", "-q", "-F", img)
    mnt.mkdir()
    run("mount", "-o", "loop", img, mnt)
    try:
        repo, state = mnt / "repo", tmp_path / "state"
        run(QUIESCE, "init", "--repo", repo)
        r = quiesce(g, repo, state, "--scratch-dir", tmp_path, check=False)
        assert r.returncode == 6, (r.returncode, r.stderr)
        assert len(r.stderr.splitlines()) == 1 and "No space left" in r.stderr, r.stderr
        assert json.loads(run(QUIESCE, "snapshots", "--repo", repo, "--json").stdout) == []
        assert freeze_status(g) == "thawed"
        assert g.qmp("query-block-jobs") == [] and g.qmp("query-block-exports") == []
        assert not [p for p in tmp_path.iterdir() if p.name.startswith("vm-")], "scratch left"
        assert run(QUIESCE, "verify", "--repo", repo).returncode == 0
        run(QUIESCE, "gc", "--repo", repo)
    finally:
        run("umount", mnt, check=False)


# Two raw disks the guest writes a counter to, always A first, then B, each
# write synced before the next: at any instant B is A or one behind it.
COUNTER_WRITER = (
    "for d in vdb vdc; do [ $(cat /sys/block/$d/size) = 8192 ] && A=/dev/$d || B=/dev/$d; done; "
    "( n=0; while :; do n=$((n+1)); printf '%-511d\\n' $n > /tmp/blk; "
    "dd if=/tmp/blk of=$A bs=512 count=1 conv=notrunc,fsync 2>/dev/null; "
    "dd if=/tmp/blk of=$B bs=512 count=1 conv=notrunc,fsync 2>/dev/null; done ) >/dev/null 2>&1 &")


def counter(data):
    """The counter in a disk's first sector (0 before the first write)."""
    text = data[:512].strip(b"\0 \n")
    return int(text) if text else 0


def one_point(a, b):
    return b == a or b == a - 1


def test_two_disks_written_continuously_restore_as_one_point_in_time(vm, agent, tmp_path):
    """The guest writes a counter to two raw disks, A then B, without pause
    and without a filesystem to freeze, so nothing but the one transaction
    makes the two views one instant.  Each restored pair shows B equal to A
    or one behind — never B ahead, nor two behind.  The check itself is
    shown to catch a snapshot that is not one instant: two jobs started one
    after the other, with the guest writing in between, fail it."""
    if agent.name != "quiesce":
        pytest.skip("agent-independent")
    raws = {}
    extra = []
    for i, size in ((1, 4), (2, 6)):  # A: 4 MiB, B: 6 MiB
        raws[i] = tmp_path / ("counter%d.raw" % i)
        run("truncate", "-s", "%dM" % size, raws[i])
        extra += ["-blockdev", "driver=file,filename=%s,node-name=cnt%d-file" % (raws[i], i),
                  "-blockdev", "driver=raw,file=cnt%d-file,node-name=cnt%d" % (i, i),
                  "-device", "virtio-blk-pci,drive=cnt%d,id=vcnt%d" % (i, i)]
    g = boot(vm, agent, tmp_path, HOOK, rc_text=vmh.SHELL_RC, shell=True, extra_qemu_args=extra)
    g.shell(COUNTER_WRITER)

    def live(i):
        with open(raws[i], "rb") as f:
            return counter(f.read(512))

    def wait_past(i, n):
        deadline = time.monotonic() + 60
        while live(i) < n:
            assert time.monotonic() < deadline, "the guest's counter stopped at %d" % live(i)
            time.sleep(0.01)

    wait_past(1, 5)
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    last = 0
    for _ in range(3):
        doc = json.loads(quiesce(g, repo, state).stdout)
        assert [d["size"] for d in doc["disks"]] == [1 << 30, 4 << 20, 6 << 20], doc["disks"]
        got = []
        for i in (1, 2):
            out = tmp_path / ("restored%d.raw" % i)
            run(QUIESCE, "restore", "--repo", repo, doc["id"], "--disk", str(i), "--to", out)
            got.append(counter(out.read_bytes()))
            out.unlink()
        a, b = got
        assert a > last and one_point(a, b), (a, b)
        last = a
    assert_nothing_left(g, repo)

    # the check catches two instants: B's view taken after A's, the guest
    # having written A three times more in between
    sock = g.dir / "check-nbd.sock"
    g.qmp("nbd-server-start", addr={"type": "unix", "data": {"path": str(sock)}})
    views = {}
    for i in (1, 2):
        img = tmp_path / ("check-fleece%d.qcow2" % i)
        run("qemu-img", "create", "-q", "-f", "qcow2", img, "%dM" % (4 if i == 1 else 6))
        g.qmp("blockdev-add", driver="qcow2", **{"node-name": "check-fl%d" % i, "backing": "cnt%d" % i,
                                                 "file": {"driver": "file", "filename": str(img)}})
        g.qmp("blockdev-backup", device="cnt%d" % i, target="check-fl%d" % i, sync="none",
              **{"job-id": "check-job%d" % i})
        g.qmp("block-export-add", type="nbd", id="check-exp%d" % i, name="v%d" % i,
              **{"node-name": "check-fl%d" % i})
        views[i] = counter(subprocess.run(["nbdcopy", "nbd+unix:///v%d?socket=%s" % (i, sock), "-"],
                                          stdout=subprocess.PIPE, check=True).stdout)
        if i == 1:
            wait_past(1, views[1] + 3)
    assert not one_point(views[1], views[2]), views
    for i in (1, 2):
        g.qmp("block-export-del", id="check-exp%d" % i)
        g.wait_event("BLOCK_EXPORT_DELETED", match=lambda ev, i=i: ev["data"]["id"] == "check-exp%d" % i)
        g.qmp("block-job-cancel", device="check-job%d" % i, force=True)
        g.wait_event("BLOCK_JOB_CANCELLED", match=lambda ev, i=i: ev["data"]["device"] == "check-job%d" % i)
        g.qmp("blockdev-del", **{"node-name": "check-fl%d" % i})
    g.qmp("nbd-server-stop")


def big_disk(tmp_path, mb=200):
    """A qcow2 base image: ext4 holding `mb` MB of random data, so reading
    the backup takes long enough to interrupt."""
    src = tmp_path / "fill"
    src.mkdir()
    with open(src / "random.bin", "wb") as f:
        f.write(os.urandom(mb << 20))
    raw, qcow = tmp_path / "big.raw", tmp_path / "big.qcow2"
    run("mkfs.ext4", "-q", "-F", "-d", src, raw, "%dM" % (mb + 64))
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow)
    raw.unlink()
    (src / "random.bin").unlink()
    return qcow


def wait_reading(g, p, repo, timeout=60):
    """Until quiesce has stored its first chunk: it is reading the export."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        if any(f.is_file() for f in (Path(repo) / "chunks").rglob("*")):
            return
        time.sleep(0.005)
    raise AssertionError("quiesce never reached its read phase: %s" % (p.communicate(),))


def test_nbd_export_dies_mid_read(vm, agent, tmp_path):
    """The export quiesce reads is removed under it (hard): a clear error,
    exit 4, no snapshot, the rest torn down, the repository consistent."""
    if agent.name != "quiesce":
        pytest.skip("agent-independent")
    g = boot(vm, agent, tmp_path, HOOK, rc_text=None, disk=big_disk(tmp_path))
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    p = start(g, repo, state, "--threads", "1")
    wait_reading(g, p, repo)
    g.qmp("block-export-del", id="quiesce-exp0", mode="hard")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 4 and "cannot read" in err, (p.returncode, err)
    assert len(err.splitlines()) == 1, err
    assert json.loads(run(QUIESCE, "snapshots", "--repo", repo, "--json").stdout) == []
    assert freeze_status(g) == "thawed"
    assert_nothing_left(g, repo)
    assert run(QUIESCE, "verify", "--repo", repo).returncode == 0


def test_sigterm_while_reading_and_while_the_freeze_hook_runs(vm, agent, tmp_path):
    """SIGTERM in the read phase: exit 130, no snapshot, all torn down.
    SIGTERM while the freeze request is out (its hook is running in the
    guest): the guest is thawed before quiesce exits 130."""
    import signal
    if agent.name != "quiesce":
        pytest.skip("agent-independent")
    held = """#!/bin/sh
case "$1" in
freeze) [ -e /run/hold-hook ] && { touch /run/hook-started; while [ ! -e /run/hook-go ]; do sleep 0.05; done; } ;;
esac
exit 0
"""
    g = boot(vm, agent, tmp_path, held, rc_text=vmh.SHELL_RC, shell=True, disk=big_disk(tmp_path))
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)

    p = start(g, repo, state, "--threads", "1")
    wait_reading(g, p, repo)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "interrupted" in err, (p.returncode, err)
    assert json.loads(run(QUIESCE, "snapshots", "--repo", repo, "--json").stdout) == []
    assert_nothing_left(g, repo)

    g.shell("touch /run/hold-hook")
    p = start(g, repo, state)
    g.shell("while [ ! -e /run/hook-started ]; do sleep 0.05; done")  # the guest's own wait
    p.send_signal(signal.SIGTERM)
    g.shell("touch /run/hook-go")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "interrupted" in err, (p.returncode, err)
    assert freeze_status(g) == "thawed"
    assert not list(state.glob("frozen-*"))
    assert json.loads(run(QUIESCE, "snapshots", "--repo", repo, "--json").stdout) == []
    assert_nothing_left(g, repo)


def test_agent_that_never_answers(vm, agent, tmp_path):
    """A guest whose agent is never up (it exits at once, over and over):
    the connection is accepted but nothing answers.  quiesce gives up after
    --agent-timeout and, under prefer-app, backs up crash-consistent."""
    if agent.name != "quiesce":
        pytest.skip("agent-independent")
    g = vm(agent_args=["--no-such-option"], extra_qmp=1)
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    t0 = time.monotonic()
    r = quiesce(g, repo, state, "--agent-timeout", "3")
    took = time.monotonic() - t0
    meta = json.loads(r.stdout)["metadata"]
    assert meta["consistency"] == "crash" and "did not answer" in meta["consistency_reason"], meta
    assert took < 20, "bounded by --agent-timeout, not forever (%.1f s)" % took
    assert_nothing_left(g, repo)


def test_freeze_that_times_out(vm, agent, tmp_path):
    """The freeze hook hangs: quiesce's freeze call times out (the guest may
    or may not be frozen — treat it as frozen), it thaws with resync and
    retries once the agent answers again, and goes on crash-consistent."""
    if agent.name != "quiesce":
        pytest.skip("needs quiesce-agent's --hook-timeout to end the hung hook")
    hung = "#!/bin/sh\n[ \"$1\" = freeze ] && sleep 60\nexit 0\n"
    g = boot(vm, agent, tmp_path, hung, ["--hook-timeout=4"])
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    r = quiesce(g, repo, state, "--freeze-timeout", "2", "--agent-timeout", "3")
    meta = json.loads(r.stdout)["metadata"]
    assert meta["consistency"] == "crash" and "could not be frozen" in meta["consistency_reason"], meta
    assert freeze_status(g) == "thawed"
    assert not list(state.glob("frozen-*"))
    assert_nothing_left(g, repo)


def test_vm_without_disks(vm, agent, tmp_path):
    if agent.name != "quiesce":
        pytest.skip("agent-independent")
    g = vm(disk=None, extra_qmp=1)
    g.agent().close()
    repo, state = tmp_path / "repo", tmp_path / "state"
    run(QUIESCE, "init", "--repo", repo)
    r = quiesce(g, repo, state, check=False)
    assert r.returncode == 4 and "no writable disks" in r.stderr, (r.returncode, r.stderr)
    assert freeze_status(g) == "thawed"
    assert not list(state.glob("frozen-*"))
