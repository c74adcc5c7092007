# SPDX-License-Identifier: MIT
"""hooks/fsfreeze-hook.d/10-mariadb against a real MariaDB server (started by
hand, stopped by PID), run under dash as Debian runs hooks."""
import os
import shutil
import sys
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
HOOK = TOP / "hooks" / "fsfreeze-hook.d" / "10-mariadb"
sys.path.insert(0, str(TOP / "tests" / "pylib"))
from dbservers import MARIADBD, Server  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(MARIADBD) or os.geteuid() != 0,
                                reason="needs mariadb-server and root")


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def hook(server, tmp_path):
    state = tmp_path / "state"
    env = dict(os.environ, MARIADB_SOCKET=server.sock, MARIADB_STATE_DIR=str(state),
               MARIADB_HOOK_CONF=str(tmp_path / "none.conf"))

    def run(action, timeout=30, **extra):
        return subprocess.run(["dash", str(HOOK), action], env=dict(env, **extra), timeout=timeout,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
    run.state = state
    yield run
    run("thaw")  # never leave a lock behind
    assert not state.exists()


def holders():
    return subprocess.run(["pgrep", "-f", "10-mariadb __hold"], capture_output=True).stdout


def insert_takes(server, lock_wait=None):
    q = ("SET SESSION lock_wait_timeout=%d; " % lock_wait if lock_wait else "") + \
        "INSERT INTO t.inno VALUES (1)"
    t0 = time.monotonic()
    try:
        server.sql(q)
        ok = True
    except RuntimeError:
        ok = False
    return ok, time.monotonic() - t0


def test_freeze_holds_the_lock_until_thaw_and_leaves_nothing(server, hook):
    t0 = time.monotonic()
    r = hook("freeze")  # capture_output: must not hang on the holder
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 5
    assert "MDL_BACKUP_FTWRL2" in server.locks(), "FTWRL must be fully held when freeze returns"
    ok, _ = insert_takes(server, lock_wait=1)
    assert not ok, "writes must block while the lock is held"
    r = hook("thaw")
    assert r.returncode == 0 and "lock released" in r.stderr, r.stderr
    assert "MDL_BACKUP_FTWRL2" not in server.locks()
    ok, took = insert_takes(server)
    assert ok and took < 2
    assert not hook.state.exists() and holders() == b""


def test_a_long_write_fails_the_freeze_fast_without_stalling_the_database(server, hook):
    update = threading.Thread(target=lambda: server.sql(
        "UPDATE t.my SET i=i+1 WHERE SLEEP(1)=0", timeout=60))
    update.start()
    try:
        # the UPDATE holds its table lock once it is inside SLEEP(): wait for that
        deadline = time.monotonic() + 30
        while "User sleep" not in server.sql("SELECT STATE FROM information_schema.PROCESSLIST "
                                             "WHERE INFO LIKE 'UPDATE t.my%'"):
            assert time.monotonic() < deadline and update.is_alive(), "the UPDATE never started"
            time.sleep(0.02)
        t0 = time.monotonic()
        r = hook("freeze", MARIADB_LOCK_WAIT="1")
        took = time.monotonic() - t0
        assert r.returncode == 1 and "cannot lock" in r.stderr, r.stderr
        assert took < 5, "freeze took %.1f s with a 1 s lock wait" % took
        # the FTWRL that waited was killed: other tables are not stalled
        ok, took = insert_takes(server)
        assert ok and took < 2, "the database stalled for %.1f s after a failed freeze" % took
        assert not hook.state.exists() and holders() == b""
    finally:
        update.join()


def test_stale_state_from_a_crashed_run_is_harmless(server, hook):
    hook.state.mkdir()
    os.mkfifo(hook.state / "release")
    (hook.state / "holder.pid").write_text("999999\n")
    r = hook("freeze")
    assert r.returncode == 0 and "cleaning up" in r.stderr, r.stderr
    assert "MDL_BACKUP_FTWRL2" in server.locks()
    assert hook("thaw").returncode == 0


def test_a_second_freeze_without_thaw_releases_the_first_lock(server, hook):
    assert hook("freeze").returncode == 0
    assert hook("freeze").returncode == 0
    assert server.locks().count("MDL_BACKUP_FTWRL2") == 1
    assert hook("thaw").returncode == 0
    assert "MDL_BACKUP_FTWRL2" not in server.locks() and holders() == b""


def test_watchdog_releases_the_lock_and_thaw_reports_it(server, hook):
    assert hook("freeze", MARIADB_MAX_HOLD="2").returncode == 0
    deadline = time.monotonic() + 10
    while "MDL_BACKUP_FTWRL2" in server.locks():
        assert time.monotonic() < deadline, "the watchdog did not release the lock"
        time.sleep(0.1)
    r = hook("thaw", MARIADB_MAX_HOLD="2")
    assert r.returncode == 2 and "released by the watchdog" in r.stderr, r.stderr
    assert not hook.state.exists() and holders() == b""


def test_unreachable_server_fails_the_freeze_or_skips_loudly(server, hook):
    r = hook("freeze", MARIADB_SOCKET="/nonexistent/sock")
    assert r.returncode == 1 and "server unreachable" in r.stderr, r.stderr
    r = hook("freeze", MARIADB_SOCKET="/nonexistent/sock", MARIADB_UNREACHABLE="skip")
    assert r.returncode == 0 and "NOT quiesced" in r.stderr, r.stderr
    assert hook("thaw").returncode == 0


def test_thaw_without_freeze_is_success(hook):
    r = hook("thaw")
    assert r.returncode == 0 and r.stderr == ""


def test_credentials_from_an_option_file(server, hook, tmp_path):
    server.sql("CREATE USER IF NOT EXISTS 'bk'@'localhost' IDENTIFIED BY 's3cret';"
               "GRANT RELOAD, PROCESS, CONNECTION ADMIN ON *.* TO 'bk'@'localhost'")
    cnf = tmp_path / "client.cnf"
    cnf.write_text("[client]\nuser=bk\npassword=s3cret\n")
    cnf.chmod(0o600)
    r = hook("freeze", MARIADB_DEFAULTS_FILE=str(cnf))
    assert r.returncode == 0, r.stderr
    user = server.sql("SELECT USER FROM information_schema.PROCESSLIST WHERE INFO IS NULL "
                      "AND USER='bk'")
    assert "bk" in user, "the lock must be held by the option file's user"
    assert hook("thaw", MARIADB_DEFAULTS_FILE=str(cnf)).returncode == 0


def test_settings_file_writable_by_others_is_ignored(server, hook, tmp_path):
    conf = tmp_path / "mariadb.conf"
    conf.write_text("MARIADB_SOCKET=/nonexistent/sock\n")
    conf.chmod(0o666)
    r = hook("freeze", MARIADB_HOOK_CONF=str(conf), MARIADB_SOCKET="")
    assert "writable by group or others" in r.stderr
