# SPDX-License-Identifier: MIT
"""hooks/fsfreeze-hook.d/20-postgresql against real PostgreSQL clusters
(initdb'd and started by hand, stopped by PID; sockets only), run under dash
(and once under busybox sh): primaries, a streaming standby, a cluster in
recovery that rejects connections, one shutting down, a stale socket, a
hung server, a cluster with its socket in /tmp."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
HOOK = TOP / "hooks" / "fsfreeze-hook.d" / "20-postgresql"
sys.path.insert(0, str(TOP / "tests" / "pylib"))
from dbservers import PGBIN, PgCluster as Cluster, as_postgres, pg_standby  # noqa: E402

pytestmark = pytest.mark.skipif(PGBIN is None or os.geteuid() != 0,
                                reason="needs postgresql server binaries and root")


@pytest.fixture(scope="module")
def base():
    b = tempfile.mkdtemp(prefix="qpg-", dir="/tmp")
    os.chmod(b, 0o755)
    yield Path(b)
    shutil.rmtree(b, ignore_errors=True)


@pytest.fixture(scope="module")
def clusters(base):
    cs = []
    try:
        cs = [Cluster(base, 25432), Cluster(base, 25433)]
        yield cs
    finally:
        for c in cs:
            c.stop()


def run(action, dirs=None, timeout=60, shell=("dash",), **extra):
    env = dict(os.environ, PG_HOOK_CONF="/nonexistent", **extra)
    if dirs is not None:
        env["PG_SOCKET_DIRS"] = " ".join(str(d) for d in dirs)
    return subprocess.run([*shell, str(HOOK), action], env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)


@pytest.mark.parametrize("shell", [("dash",), ("busybox", "sh")], ids=["dash", "busybox"])
def test_freeze_checkpoints_every_cluster(clusters, shell):
    before = [c.checkpoints() for c in clusters]
    r = run("freeze", [c.run for c in clusters], shell=shell)
    assert r.returncode == 0, r.stderr
    assert [c.checkpoints() for c in clusters] == [b + 1 for b in before]
    assert r.stderr.count("CHECKPOINT done") == 2
    assert run("thaw", [c.run for c in clusters], shell=shell).returncode == 0


def test_no_running_cluster_is_nothing_to_do(tmp_path):
    r = run("freeze", [tmp_path])
    assert r.returncode == 0 and "no running cluster" in r.stderr


def test_a_stale_socket_is_a_warning_not_a_failed_backup(tmp_path):
    stale = tmp_path / ".s.PGSQL.25499"  # a socket file left by a crashed server
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    r = run("freeze", [tmp_path])
    assert r.returncode == 0 and "WARNING" in r.stderr and "port 25499" in r.stderr, r.stderr
    (tmp_path / ".s.PGSQL.25499.lock").write_text("999999\n/nonexistent\n")  # its lock file too
    r = run("freeze", [tmp_path])
    assert r.returncode == 0 and "stale socket" in r.stderr, r.stderr


def test_quick_answers_leave_no_stray_output(tmp_path):
    """Many clusters that answer at once (stale sockets: pg_isready returns
    immediately) race each bound's watchdog: its end must be silent, and
    each cluster's result line intact."""
    for port in range(25480, 25488):
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(tmp_path / (".s.PGSQL.%d" % port)))
        s.close()
    for _ in range(3):
        r = run("freeze", [tmp_path])
        assert r.returncode == 0, r.stderr
        lines = r.stderr.splitlines()
        assert len(lines) == 8 and all(l.startswith("20-postgresql: WARNING: cluster on ") for l in lines), lines


def test_a_hung_server_is_a_warning_within_the_bound(clusters):
    c = clusters[0]
    os.kill(c.pid, signal.SIGSTOP)  # accepts connections into its backlog, answers nothing
    try:
        t0 = time.monotonic()
        r = run("freeze", [c.run], PG_TIMEOUT="2")
        took = time.monotonic() - t0
    finally:
        os.kill(c.pid, signal.SIGCONT)
    assert r.returncode == 0 and took < 8, (r.returncode, took, r.stderr)
    assert "WARNING" in r.stderr and "does not answer" in r.stderr, r.stderr


def test_a_slow_checkpoint_is_a_warning_within_the_bound(clusters):
    """The server answers but its checkpointer does not get on (stopped here,
    as if stuck on a slow disk): the CHECKPOINT is given up after PG_TIMEOUT,
    it goes on in the server, and the backup goes on."""
    c = clusters[0]
    cp = int(c.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"))
    os.kill(cp, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = run("freeze", [c.run], PG_TIMEOUT="2")
        took = time.monotonic() - t0
    finally:
        os.kill(cp, signal.SIGCONT)
    assert r.returncode == 0 and took < 6, (took, r.stderr)
    assert "CHECKPOINT did not finish within 2 s" in r.stderr, r.stderr


def test_a_hook_stopped_by_the_dispatcher_leaves_no_files(clusters, tmp_path):
    """The dispatcher TERMs a hook at its limit: its scratch directory goes
    with it (and the CHECKPOINT's own bound ends the psql it started)."""
    c = clusters[0]
    cp = int(c.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"))
    env = dict(os.environ, PG_HOOK_CONF="/nonexistent", PG_SOCKET_DIRS=str(c.run), TMPDIR=str(tmp_path),
               PG_TIMEOUT="3")
    os.kill(cp, signal.SIGSTOP)
    try:
        p = subprocess.Popen(["dash", str(HOOK), "freeze"], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while c.sql("SELECT count(*) FROM pg_stat_activity WHERE query = 'CHECKPOINT'") != "1":
            assert time.monotonic() < deadline and p.poll() is None, "the CHECKPOINT never started"
            time.sleep(0.02)
        assert list(tmp_path.glob("20-postgresql.*")), "the hook made no scratch directory"
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
    finally:
        os.kill(cp, signal.SIGCONT)
    assert list(tmp_path.glob("20-postgresql.*")) == []


def test_the_dispatchers_time_left_bounds_all_clusters_at_once(clusters):
    """One hung cluster and one healthy one, 4 s left in the dispatcher's
    budget: the healthy one is checkpointed, the hook answers in time, by
    itself, with its reason (PG_TIMEOUT's default of 30 s would be killed)."""
    hung, ok = clusters
    before = ok.checkpoints()
    os.kill(hung.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = run("freeze", [hung.run, ok.run], timeout=20, FSFREEZE_HOOK_TIME_LEFT="4")
        took = time.monotonic() - t0
    finally:
        os.kill(hung.pid, signal.SIGCONT)
    assert r.returncode == 0 and took < 4, (took, r.stderr)
    assert ok.checkpoints() == before + 1 and "does not answer" in r.stderr, r.stderr


def test_an_error_from_a_cluster_that_answered_fails_the_freeze(clusters):
    c = clusters[0]
    r = run("freeze", [c.run], PG_USER="no_such_role")
    assert r.returncode == 1 and "no_such_role" in r.stderr, r.stderr
    r = run("freeze", [c.run], PG_USER="no_such_role", PG_ON_ERROR="warn")
    assert r.returncode == 0 and "NOT checkpointed" in r.stderr, r.stderr
    r = run("freeze", [c.run], PG_USER="no_such_role", PG_UNREACHABLE="skip")  # the old name
    assert r.returncode == 0 and "NOT checkpointed" in r.stderr, r.stderr


@pytest.fixture(scope="module")
def multi(base):
    """A cluster with two socket directories, one of them /tmp (upstream's
    default).  The last test here shuts it down."""
    d = base / "sock-a"
    d.mkdir()
    shutil.chown(d, "postgres", "postgres")
    c = Cluster(base, 25436, sockdirs=[d, "/tmp"])
    c.sockdirs = [d, Path("/tmp")]
    yield c
    c.stop()


def test_a_cluster_with_two_socket_directories_is_checkpointed_once(multi):
    before = multi.checkpoints()
    r = run("freeze", multi.sockdirs)
    assert r.returncode == 0, r.stderr
    assert multi.checkpoints() == before + 1, "one cluster, %d CHECKPOINTs" % (multi.checkpoints() - before)


def test_a_cluster_with_its_socket_in_tmp_is_found_by_default(multi):
    """Upstream's default socket directory is /tmp (Debian's is
    /var/run/postgresql): with no PG_SOCKET_DIRS both are searched."""
    before = multi.checkpoints()
    r = run("freeze")
    assert r.returncode == 0, r.stderr
    assert multi.checkpoints() == before + 1, r.stderr
    assert "/tmp port 25436: CHECKPOINT done" in r.stderr, r.stderr


def test_a_standby_gets_a_restartpoint_and_one_in_recovery_is_a_warning(clusters, base):
    """A hot standby (pg_basebackup -R): CHECKPOINT makes a restartpoint.
    The same standby with hot_standby=off is in recovery and rejects every
    connection: a warning, and the backup goes on."""
    primary = clusters[1]
    standby = pg_standby(primary, base, 25438)
    try:
        assert standby.sql("SELECT pg_is_in_recovery()") == "t"
        r = run("freeze", [standby.run])
        assert r.returncode == 0 and "restartpoint done, a standby" in r.stderr, r.stderr
    finally:
        standby.stop("fast")
    cold = Cluster(base, 25439, datadir=standby.data, init=False, settings=["hot_standby=off"])
    try:
        r = run("freeze", [cold.run, primary.run])
        assert r.returncode == 0, r.stderr
        assert "port 25439 rejects connections" in r.stderr and "WARNING" in r.stderr, r.stderr
        assert "port 25433: CHECKPOINT done" in r.stderr, "the other clusters are still checkpointed"
    finally:
        cold.stop()


def test_a_cluster_shutting_down_is_a_warning(multi):
    c = multi
    session = subprocess.Popen(["runuser", "-u", "postgres", "--", "psql", "-X", "-h", str(c.run),
                                "-p", "25436", "-c", "SELECT pg_sleep(60)"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while c.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'") != "1":
            assert time.monotonic() < deadline, "the session did not start"
            time.sleep(0.05)
        as_postgres(Path(PGBIN) / "pg_ctl", "-D", c.data, "-m", "smart", "-W", "stop")
        deadline = time.monotonic() + 10
        while subprocess.run(["pg_isready", "-q", "-h", str(c.run), "-p", "25436"]).returncode != 1:
            assert time.monotonic() < deadline, "the cluster did not start shutting down"
            time.sleep(0.05)
        r = run("freeze", [c.run])
        assert r.returncode == 0 and "rejects connections" in r.stderr, r.stderr
    finally:
        session.kill()
        session.wait()
