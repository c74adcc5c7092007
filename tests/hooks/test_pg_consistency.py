# SPDX-License-Identifier: MIT
"""What 20-postgresql buys, measured on a real cluster under pgbench, through
the real path (quiesce-agent -> fsfreeze-hook dispatcher -> 20-postgresql).

A filesystem snapshot of a running cluster is always crash-consistent (WAL);
what the hook's CHECKPOINT changes is how much WAL a restore must replay.
The offline metric (docs/app-consistency.md §3, §5): the WAL position just
before the freeze against "Latest checkpoint's REDO location" in the
snapshot's pg_control.  Without the hook that distance is at least all the
WAL written since the checkpoint the test made before its load; with it,
the few MB written while the CHECKPOINT ran.  Then both snapshots are
restored and started: both must recover, with the same data checks
(pgbench's balance invariant, pg_amcheck), and the restart times are
reported.

checkpoint_timeout=30min and max_wal_size=4GB keep PostgreSQL's own
checkpoints out of the test.  The no-hook arm runs first: a hook's
CHECKPOINT would otherwise shorten the next no-hook snapshot's redo.  The
datadir is on a loop-mounted ext4 in this process's private mount
namespace, frozen by explicit mountpoint list only; every path thaws.
"""
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "pylib"))
import sandbox  # noqa: E402
from dbservers import PGBIN, PgCluster, as_postgres  # noqa: E402

AGENT = Path(os.environ.get("QUIESCE_AGENT", TOP / "build" / "src" / "agent" / "quiesce-agent"))
MB = 1 << 20

pytestmark = pytest.mark.skipif(PGBIN is None or os.geteuid() != 0 or not AGENT.is_file(),
                                reason="needs postgresql server binaries, root, agent")


def lsn(text):
    hi, lo = text.strip().split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


@pytest.fixture(scope="module")
def pg():
    sandbox.enter_private_mount_ns()
    work = Path(tempfile.mkdtemp(prefix="qpgc-", dir="/tmp"))
    os.chmod(work, 0o755)
    fs = sandbox.LoopFs(work, "db", "ext4", size="1G")
    cluster = None
    try:
        cluster = PgCluster(work, 25440, datadir=Path(fs.path) / "pg" / "data", fsync=True,
                            settings=["checkpoint_timeout=30min", "max_wal_size=4GB",
                                      "log_checkpoints=on"])
        r = as_postgres("pgbench", "-i", "-s", "5", "-q", "-h", cluster.run, "-p", cluster.port,
                        "postgres", timeout=300)
        assert r.returncode == 0, r.stderr
        etc = sandbox.install_hooks(work, "20-postgresql")
        yield work, fs, cluster, etc
    finally:
        fs.thaw()
        if cluster:
            cluster.stop()
        fs.close()
        shutil.rmtree(work, ignore_errors=True)


def snapshot(work, fs, cluster, etc, arm):
    """Freeze through the agent (with or without the hook), copy the image
    while frozen, thaw.  Returns (copy, WAL position just before the freeze,
    seconds the freeze call took)."""
    env = {"PG_SOCKET_DIRS": str(cluster.run), "PG_HOOK_CONF": "/nonexistent",
           "FSFREEZE_HOOK_RUNDIR": str(work), "FSFREEZE_HOOK_LOG": str(work / "hook.log")}
    args = ["-F%s" % (etc / "fsfreeze-hook")] if arm == "hook" else ["--fsfreeze-hook="]
    agent = sandbox.Agent(AGENT, work, args, env=env)
    copy = work / ("snap-%s.img" % arm)
    try:
        with agent.conn(timeout=120) as c:
            at = lsn(cluster.sql("SELECT pg_current_wal_lsn()"))
            t0 = time.monotonic()
            r = c.cmd("guest-fsfreeze-freeze-list", {"mountpoints": [fs.path]})
            took = time.monotonic() - t0
            assert r == {"return": 1}, (r, agent.log_text())
            try:
                subprocess.run(["cp", "--sparse=always", str(fs.image), str(copy)], check=True)
            finally:
                assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
    finally:
        fs.thaw()
        assert agent.stop() == 0
    return copy, at, took


@contextlib.contextmanager
def mounted(image, mnt, ro):
    mnt.mkdir(exist_ok=True)
    subprocess.run(["mount", "-o", "loop,ro,noload" if ro else "loop", str(image), str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)])
        mnt.rmdir()


def redo_location(image, work):
    """The snapshot's "Latest checkpoint's REDO location", read offline."""
    with mounted(image, work / "mnt-ro", ro=True) as mnt:
        r = as_postgres(Path(PGBIN) / "pg_controldata", mnt / "pg" / "data")
    assert r.returncode == 0, r.stderr
    m = re.search(r"^Latest checkpoint's REDO location:\s+(\S+)$", r.stdout, re.M)
    return lsn(m.group(1))


def restore_and_check(image, work, port):
    """Start the snapshot as a cluster of its own; returns (start seconds,
    redo replayed in bytes, data checks)."""
    with mounted(image, work / ("mnt-%d" % port), ro=False) as mnt:
        data = mnt / "pg" / "data"
        # the live source postmaster's PID is in there, and on this host it is alive
        (data / "postmaster.pid").unlink()
        c = PgCluster(work, port, datadir=data, init=False, fsync=True)
        try:
            log = c.log_text()
            starts = re.search(r"redo starts at (\S+)", log)
            done = re.search(r"redo done at (\S+)", log)
            replayed = lsn(done.group(1)) - lsn(starts.group(1)) if starts and done else 0
            sums = c.sql("SELECT (SELECT sum(abalance) FROM pgbench_accounts),"
                         " (SELECT sum(tbalance) FROM pgbench_tellers),"
                         " (SELECT sum(bbalance) FROM pgbench_branches),"
                         " (SELECT coalesce(sum(delta), 0) FROM pgbench_history)").split("|")
            amcheck = as_postgres(Path(PGBIN) / "pg_amcheck", "--install-missing",
                                  "--heapallindexed", "-h", c.run, "-p", port, "postgres",
                                  timeout=300)
            checks = {"balances agree": len(set(sums)) == 1,
                      "pg_amcheck clean": amcheck.returncode == 0 and not amcheck.stdout.strip()}
            return c.start_seconds, replayed, checks, (sums, amcheck.stdout[-500:])
        finally:
            c.stop("fast")


def test_checkpoint_hook_bounds_redo_and_both_restores_start(pg, capsys):
    work, fs, cluster, etc = pg
    cluster.sql("CHECKPOINT")
    start = lsn(cluster.sql("SELECT pg_current_wal_lsn()"))
    load = subprocess.Popen(["runuser", "-u", "postgres", "--", "pgbench", "-n", "-c", "2", "-j",
                             "1", "-T", "600", "-h", str(cluster.run), "-p", str(cluster.port),
                             "postgres"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    snaps = {}
    try:
        time.sleep(10)
        snaps["no-hook"] = snapshot(work, fs, cluster, etc, "no-hook")
        time.sleep(3)
        snaps["hook"] = snapshot(work, fs, cluster, etc, "hook")
        assert load.poll() is None, "pgbench stopped during the test"
    finally:
        os.killpg(load.pid, signal.SIGTERM)
        load.wait(timeout=60)
    written = snaps["no-hook"][1] - start
    distance = {arm: at - redo_location(copy, work) for arm, (copy, at, _) in snaps.items()}
    restored = {arm: restore_and_check(copy, work, 25441 + i)
                for i, (arm, (copy, _, _)) in enumerate(snaps.items())}
    with capsys.disabled():
        print("\n  WAL written under pgbench before the no-hook snapshot: %.1f MB" % (written / MB))
        for arm in snaps:
            secs, replayed, checks, _ = restored[arm]
            print("  %-7s freeze call %.3f s, redo distance %.1f MB, restore start %.2f s "
                  "(replayed %.1f MB), checks %s" % (arm, snaps[arm][2], distance[arm] / MB, secs,
                                                     replayed / MB, checks))
    assert written > 16 * MB, "the load wrote too little WAL to tell the arms apart"
    assert distance["no-hook"] >= written, distance
    assert distance["hook"] < 16 * MB, distance
    for arm in snaps:
        assert all(restored[arm][2].values()), (arm, restored[arm])
    assert restored["hook"][2] == restored["no-hook"][2]
    for copy, _, _ in snaps.values():
        copy.unlink()
