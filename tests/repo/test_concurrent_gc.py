# SPDX-License-Identifier: MIT
"""prune/gc beside a running backup (docs/repository.md, Prune and garbage
collection): the backup never loses a chunk it references, gc never waits
for the backup, and trash is emptied only once no backup runs.

The backup is held mid-run with SIGSTOP after it has taken the writers lock
(seen in /proc/locks), so the interleaving is the worst one, every time:
its snapshot's chunks are unreferenced (the only other snapshot using them
was just pruned) and older than the gc, so the sweep moves them to trash
under the backup's feet."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
QUIESCE = os.environ.get("QUIESCE", str(TOP / "build" / "src" / "host" / "quiesce"))

pytestmark = pytest.mark.skipif(not os.path.exists(QUIESCE), reason="quiesce not built")


def q(*args, check=True):
    r = subprocess.run([QUIESCE, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r


def holds_writers_lock(pid, repo):
    ino = os.stat(repo / "locks" / "writers").st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        f = line.split()
        # "1: FLOCK  ADVISORY  READ 1234 fd:01:5678 0 EOF" (blocked waiters have "->")
        if "->" not in f and f[1] == "FLOCK" and f[4] == str(pid) and f[5].endswith(":%d" % ino):
            return True
    return False


@pytest.fixture
def work():
    d = Path(tempfile.mkdtemp(prefix="qgc-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_gc_beside_a_stopped_backup_loses_nothing(work):
    repo, img = work / "repo", work / "disk.img"
    q("init", "--repo", repo, "--chunk-size", "256K")
    with open(img, "wb") as f:  # 96 MiB of distinct chunks
        f.write(os.urandom(96 << 20))
    a = json.loads(q("backup", "--repo", repo, "--image", img, "--name", "a", "--json").stdout)
    time.sleep(0.05)  # the chunks are now older than any gc that starts from here

    b = subprocess.Popen([QUIESCE, "backup", "--repo", str(repo), "--image", str(img), "--name", "b",
                          "--threads", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        deadline = time.monotonic() + 20
        while not holds_writers_lock(b.pid, repo):
            assert b.poll() is None and time.monotonic() < deadline, "backup never took the lock"
            time.sleep(0.002)
        os.kill(b.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        # what prune does to snapshot a: unlink its manifest (prune's rules are tested elsewhere)
        os.unlink(repo / "snapshots" / a["id"])
        g = json.loads(q("gc", "--repo", repo, "--json").stdout)
        took = time.monotonic() - t0
    finally:
        os.kill(b.pid, signal.SIGCONT)
    out, err = b.communicate(timeout=120)
    assert b.returncode == 0, err
    snap = json.loads(out)["id"]
    assert took < 10, "gc waited for the backup (%.1f s)" % took
    assert g["chunks_trashed"] > 0, ("the sweep should have set a's chunks aside", g)
    assert not g["trash_emptied"], ("trash must not be emptied while a backup runs", g)

    # the backup's snapshot is complete and readable, some of it from trash
    assert q("verify", "--repo", repo, snap).returncode == 0
    q("restore", "--repo", repo, snap, "--to", work / "out")
    assert subprocess.run(["cmp", str(img), str(work / "out")]).returncode == 0

    # with no backup running, gc empties trash — putting back what b uses
    g2 = json.loads(q("gc", "--repo", repo, "--json").stdout)
    assert g2["trash_emptied"], g2
    assert not [p for p in (repo / "trash").rglob("*") if p.is_file()], \
        "trash is empty after a gc with no backup running"
    assert q("verify", "--repo", repo).returncode == 0
    (work / "out").unlink()
    q("restore", "--repo", repo, snap, "--to", work / "out")
    assert subprocess.run(["cmp", str(img), str(work / "out")]).returncode == 0


def test_a_second_gc_is_refused_not_queued(work):
    repo = work / "repo"
    q("init", "--repo", repo)
    import fcntl
    with open(repo / "locks" / "gc", "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # as a running gc holds it
        r = q("gc", "--repo", repo, check=False)
    assert r.returncode == 7 and "another prune or gc" in r.stderr, (r.returncode, r.stderr)
