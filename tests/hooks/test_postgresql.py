# SPDX-License-Identifier: MIT
"""hooks/fsfreeze-hook.d/20-postgresql against real PostgreSQL clusters
(initdb'd and started by hand, stopped by PID), run under dash."""
import os
import shutil
import sys
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
HOOK = TOP / "hooks" / "fsfreeze-hook.d" / "20-postgresql"
sys.path.insert(0, str(TOP / "tests" / "pylib"))
from dbservers import PGBIN, PgCluster as Cluster  # noqa: E402

pytestmark = pytest.mark.skipif(PGBIN is None or os.geteuid() != 0,
                                reason="needs postgresql server binaries and root")


@pytest.fixture(scope="module")
def clusters():
    base = tempfile.mkdtemp(prefix="qpg-", dir="/tmp")
    os.chmod(base, 0o755)
    cs = []
    try:
        cs = [Cluster(base, 25432), Cluster(base, 25433)]
        yield cs
    finally:
        for c in cs:
            c.stop()
        shutil.rmtree(base, ignore_errors=True)


def run(action, dirs, timeout=60, **extra):
    env = dict(os.environ, PG_SOCKET_DIRS=" ".join(str(d) for d in dirs),
               PG_HOOK_CONF="/nonexistent", **extra)
    return subprocess.run(["dash", str(HOOK), action], env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)


def test_freeze_checkpoints_every_cluster(clusters):
    before = [c.checkpoints() for c in clusters]
    r = run("freeze", [c.run for c in clusters])
    assert r.returncode == 0, r.stderr
    assert [c.checkpoints() for c in clusters] == [b + 1 for b in before]
    assert r.stderr.count("CHECKPOINT done") == 2
    assert run("thaw", [c.run for c in clusters]).returncode == 0


def test_no_running_cluster_is_nothing_to_do(tmp_path):
    r = run("freeze", [tmp_path])
    assert r.returncode == 0 and "no running cluster" in r.stderr


def test_dead_cluster_fails_the_freeze_or_skips_loudly(tmp_path):
    stale = tmp_path / ".s.PGSQL.25499"  # a socket file left by a crashed server
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    r = run("freeze", [tmp_path])
    assert r.returncode == 1 and "port 25499" in r.stderr, r.stderr
    r = run("freeze", [tmp_path], PG_UNREACHABLE="skip")
    assert r.returncode == 0 and "NOT checkpointed" in r.stderr, r.stderr


def test_a_hung_server_fails_the_freeze_within_the_bound(clusters):
    c = clusters[0]
    os.kill(c.pid, signal.SIGSTOP)  # accepts connections into its backlog, answers nothing
    try:
        t0 = time.monotonic()
        r = run("freeze", [c.run], PG_TIMEOUT="2")
        took = time.monotonic() - t0
    finally:
        os.kill(c.pid, signal.SIGCONT)
    assert r.returncode == 1 and took < 8, (r.returncode, took, r.stderr)
    assert "no answer within 2 s" in r.stderr, r.stderr
