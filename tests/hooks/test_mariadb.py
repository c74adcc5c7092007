# SPDX-License-Identifier: MIT
"""hooks/fsfreeze-hook.d/80-mariadb against a real MariaDB server (started by
hand, stopped by PID), run under dash as Debian runs hooks (and once under
busybox sh).  One server for the module; tests that restart it or change
global settings put them back."""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
HOOK = TOP / "hooks" / "fsfreeze-hook.d" / "80-mariadb"
sys.path.insert(0, str(TOP / "tests" / "pylib"))
from dbservers import MARIADBD, Server  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(MARIADBD) or os.geteuid() != 0,
                                reason="needs mariadb-server and root")


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


def leftovers(state):
    """Files a run left in its state directory (the directory and its lock
    file stay by design)."""
    return sorted(set(os.listdir(state)) - {"lock"}) if state.exists() else []


@pytest.fixture
def hook(server, tmp_path):
    state = tmp_path / "state"
    env = dict(os.environ, MARIADB_SOCKET=server.sock, MARIADB_STATE_DIR=str(state),
               MARIADB_HOOK_CONF=str(tmp_path / "none.conf"))

    def run(action, timeout=30, shell="dash", **extra):
        return subprocess.run([shell, str(HOOK), action] if shell != "busybox" else
                              ["busybox", "sh", str(HOOK), action], env=dict(env, **extra),
                              timeout=timeout, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True)

    def popen(action, **extra):
        return subprocess.Popen(["dash", str(HOOK), action], env=dict(env, **extra),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    run.state = state
    run.env = env
    run.popen = popen
    yield run
    for _ in range(3):  # never leave a lock behind (overlap notes make thaw say 2)
        run("thaw")
    assert "MDL_BACKUP_FTWRL2" not in server.locks()
    assert holders() == b""


def holders():
    return subprocess.run(["pgrep", "-f", "mariadb __hold"], capture_output=True).stdout


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


def ftwrl_holder(server):
    """The thread id holding the global read lock, as a DBA would find it."""
    ids = server.sql("SELECT THREAD_ID FROM information_schema.METADATA_LOCK_INFO "
                     "WHERE LOCK_MODE = 'MDL_BACKUP_FTWRL2'").split()
    assert len(ids) == 1, ids
    return int(ids[0])


def wait_for(cond, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_freeze_holds_the_lock_until_thaw_and_leaves_nothing(server, hook, shell):
    t0 = time.monotonic()
    r = hook("freeze", shell=shell)  # capture_output: must not hang on the holder
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 5
    assert "MDL_BACKUP_FTWRL2" in server.locks(), "FTWRL must be fully held when freeze returns"
    ok, _ = insert_takes(server, lock_wait=1)
    assert not ok, "writes must block while the lock is held"
    r = hook("thaw", shell=shell)
    assert r.returncode == 0 and "lock held from freeze to thaw" in r.stderr, r.stderr
    assert "MDL_BACKUP_FTWRL2" not in server.locks()
    ok, took = insert_takes(server)
    assert ok and took < 2
    assert leftovers(hook.state) == [] and holders() == b""


def test_a_killed_holder_connection_makes_thaw_fail(server, hook):
    """A DBA's (or pt-kill's) KILL of the holder while frozen: the lock is
    gone, so the thaw must not say it held."""
    assert hook("freeze").returncode == 0
    server.sql("KILL %d" % ftwrl_holder(server))
    r = hook("thaw")
    assert r.returncode == 2, r.stderr
    assert "LOST while frozen" in r.stderr and "not application-consistent" in r.stderr, r.stderr
    assert leftovers(hook.state) == [] and holders() == b""


def test_a_server_restart_while_frozen_makes_thaw_fail(server, hook):
    assert hook("freeze").returncode == 0
    server.crash_restart()
    r = hook("thaw")
    assert r.returncode == 2 and "LOST while frozen" in r.stderr, r.stderr
    assert leftovers(hook.state) == [] and holders() == b""


def test_a_long_write_fails_the_freeze_fast_without_stalling_the_database(server, hook):
    update = threading.Thread(target=lambda: server.sql(
        "UPDATE t.my SET i=i+1 WHERE SLEEP(1)=0", timeout=60))
    update.start()
    try:
        # the UPDATE holds its table lock once it is inside SLEEP(): wait for that
        wait_for(lambda: "User sleep" in server.sql(
            "SELECT STATE FROM information_schema.PROCESSLIST WHERE INFO LIKE 'UPDATE t.my%'"),
            "the UPDATE never started")
        t0 = time.monotonic()
        r = hook("freeze", MARIADB_LOCK_WAIT="1", MARIADB_LONG_QUERY="0")
        took = time.monotonic() - t0
        assert r.returncode == 1 and "cannot lock" in r.stderr, r.stderr
        assert took < 5, "freeze took %.1f s with a 1 s lock wait" % took
        # the FTWRL that waited was killed: other tables are not stalled
        ok, took = insert_takes(server)
        assert ok and took < 2, "the database stalled for %.1f s after a failed freeze" % took
        assert leftovers(hook.state) == [] and holders() == b""
    finally:
        update.join()


def test_a_long_select_fails_the_freeze_before_it_can_stall_the_server(server, hook):
    """A query that has already run MARIADB_LONG_QUERY seconds: FTWRL would
    wait for it while every client waits for FTWRL.  The freeze fails at
    once, without sending FTWRL; a concurrent client's queries stay fast."""
    long = threading.Thread(target=lambda: subprocess.run(
        ["mariadb", "-S", server.sock, "-e", "SELECT SLEEP(30) FROM t.my LIMIT 1"],
        capture_output=True, timeout=60))
    long.start()
    try:
        wait_for(lambda: server.sql("SELECT COALESCE(MAX(TIME), 0) FROM information_schema.PROCESSLIST "
                                    "WHERE INFO LIKE 'SELECT SLEEP(30)%'").strip() >= "1",
                 "the SELECT never ran for 1 s")
        p = hook.popen("freeze", MARIADB_LONG_QUERY="1", MARIADB_LOCK_WAIT="6")
        t0 = time.monotonic()
        worst = 0
        while p.poll() is None or time.monotonic() - t0 < 1:  # during the freeze, and after
            ok, took = insert_takes(server)
            assert ok
            worst = max(worst, took)
        took = time.monotonic() - t0
        err = p.stderr.read()
        assert p.returncode == 1 and "a query has run for 1 s or more" in err, err
        # (an FTWRL sent would have made both wait MARIADB_LOCK_WAIT, 6 s)
        assert took < 4, "the freeze took %.1f s to fail" % took
        assert worst < 2, "a concurrent INSERT took %.2f s: the server stalled" % worst
    finally:
        for i in server.sql("SELECT ID FROM information_schema.PROCESSLIST "
                            "WHERE INFO LIKE 'SELECT SLEEP(30)%'").split():
            server.sql("KILL QUERY %s" % i)
        long.join()


def test_a_signal_while_locking_leaves_no_late_lock(server, hook):
    """The dispatcher TERMs a freeze that runs out of time.  Its FTWRL, still
    waiting behind a long write, must die with it: otherwise it is granted
    once the write ends and held for MARIADB_MAX_HOLD with nobody to thaw."""
    update = threading.Thread(target=lambda: server.sql(
        "UPDATE t.my SET i=i+1 WHERE SLEEP(0.5)=0", timeout=60))
    update.start()
    try:
        wait_for(lambda: "User sleep" in server.sql(
            "SELECT STATE FROM information_schema.PROCESSLIST WHERE INFO LIKE 'UPDATE t.my%'"),
            "the UPDATE never started")
        p = hook.popen("freeze", MARIADB_LONG_QUERY="0", MARIADB_LOCK_WAIT="20")
        wait_for(lambda: server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                                    "WHERE INFO LIKE 'FLUSH%TABLES WITH READ LOCK%'").strip() == "1",
                 "the FTWRL never started waiting")
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
        assert p.returncode != 0
    finally:
        update.join()
    time.sleep(0.2)  # a late FTWRL is granted at once when the UPDATE ends
    assert "MDL_BACKUP_FTWRL2" not in server.locks(), "a late FTWRL was granted and is held"
    assert holders() == b""


def test_stale_state_after_a_server_restart_kills_nothing_foreign(server, hook):
    """A run that was never thawed, then mariadbd restarted: connection ids
    start over and pids are reused.  The next freeze cleans up, but kills
    neither the client that now has the recorded connection id nor the
    process that now has the recorded pid."""
    assert hook("freeze").returncode == 0
    out = (hook.state / "holder.out").read_text()
    m = re.search(r"(?m)^ID (\d+)$", out) or re.match(r"(\d+)", out)
    recorded_id = int(m.group(1))
    pid_line = (hook.state / "holder.pid").read_text().split()
    holder_pid = int(pid_line[0])
    server.crash_restart()
    os.killpg(holder_pid, signal.SIGKILL)  # the holder died with the crash, say
    wait_for(lambda: not alive(holder_pid), "the holder did not die")
    foreign_proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    (hook.state / "holder.pid").write_text(" ".join([str(foreign_proc.pid)] + pid_line[1:]) + "\n")
    foreign_conn = None
    try:
        while True:  # clients until one has the recorded id (each takes the next id)
            foreign_conn = subprocess.Popen(
                ["mariadb", "-S", server.sock, "-N", "--unbuffered", "-e",
                 "SELECT CONNECTION_ID(); SELECT SLEEP(300)"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            got = int(foreign_conn.stdout.readline())
            if got >= recorded_id:
                break
            foreign_conn.kill()
            foreign_conn.wait()
        assert got == recorded_id, "could not give a foreign client id %d (got %d)" % (recorded_id, got)
        r = hook("freeze", MARIADB_LONG_QUERY="0")  # (the foreign SLEEP is a long query)
        assert foreign_conn.poll() is None, "the foreign client's connection was killed"
        assert alive(foreign_proc.pid), "a foreign process with a reused pid was killed"
        assert r.returncode == 0 and "never thawed" in r.stderr, r.stderr
        r = hook("thaw")
        assert r.returncode == 2 and "overlapped" in r.stderr, r.stderr
    finally:
        if foreign_conn:
            foreign_conn.kill()
            foreign_conn.wait()
        for i in server.sql("SELECT ID FROM information_schema.PROCESSLIST "
                            "WHERE INFO LIKE 'SELECT SLEEP(300)'").split():
            try:  # the server notices a dead client only seconds later
                server.sql("KILL %s" % i)
            except RuntimeError:
                pass  # gone meanwhile
        foreign_proc.kill()
        foreign_proc.wait()


def test_stale_state_from_a_crashed_run_is_harmless(server, hook):
    hook.state.mkdir(mode=0o700)
    os.mkfifo(hook.state / "release")
    (hook.state / "run").write_text("0123456789abcdef 2024-01-01T00:00:00\n")
    (hook.state / "holder.pid").write_text("999999 12345\n")
    r = hook("freeze")
    assert r.returncode == 0 and "cleaning up" in r.stderr, r.stderr
    assert "MDL_BACKUP_FTWRL2" in server.locks()
    r = hook("thaw")  # which run this thaw belongs to is unknown: say so
    assert r.returncode == 2 and "overlapped" in r.stderr, r.stderr
    assert hook("freeze").returncode == 0  # a clean run clears the note
    assert hook("thaw").returncode == 0


def test_a_second_freeze_without_thaw_takes_over_and_both_thaws_say_so(server, hook):
    assert hook("freeze").returncode == 0
    r = hook("freeze")
    assert r.returncode == 0 and "still holds the lock" in r.stderr, r.stderr
    assert server.locks().count("MDL_BACKUP_FTWRL2") == 1
    for _ in range(2):
        r = hook("thaw")
        assert r.returncode == 2 and "overlapped" in r.stderr, r.stderr
    assert "MDL_BACKUP_FTWRL2" not in server.locks() and holders() == b""


def test_concurrent_freezes_hold_one_lock_and_leave_nothing(server, hook):
    """Two freezes at the same moment (two agents, a manual run): one run at
    a time, exactly one lock, both thaws report the overlap, nothing left."""
    ps = [hook.popen("freeze") for _ in range(2)]
    results = [(p.wait(timeout=30), p.stderr.read()) for p in ps]
    assert [rc for rc, _ in results] == [0, 0], results
    assert server.locks().count("MDL_BACKUP_FTWRL2") == 1, results
    thaws = [hook("thaw") for _ in range(2)]
    assert [t.returncode for t in thaws] == [2, 2], [t.stderr for t in thaws]
    assert "MDL_BACKUP_FTWRL2" not in server.locks() and holders() == b""
    assert leftovers(hook.state) == ["overlap"]
    assert hook("freeze").returncode == 0 and hook("thaw").returncode == 0
    assert leftovers(hook.state) == []


def test_watchdog_releases_the_lock_and_thaw_reports_it(server, hook):
    assert hook("freeze", MARIADB_MAX_HOLD="2").returncode == 0
    wait_for(lambda: "MDL_BACKUP_FTWRL2" not in server.locks(),
             "the watchdog did not release the lock", timeout=10)
    r = hook("thaw", MARIADB_MAX_HOLD="2")
    assert r.returncode == 2 and "released by the watchdog" in r.stderr, r.stderr
    assert leftovers(hook.state) == [] and holders() == b""


def test_unreachable_server_fails_the_freeze_or_skips_loudly(server, hook):
    r = hook("freeze", MARIADB_SOCKET="/nonexistent/sock")
    assert r.returncode == 1 and "server unreachable" in r.stderr, r.stderr
    r = hook("freeze", MARIADB_SOCKET="/nonexistent/sock", MARIADB_UNREACHABLE="skip")
    assert r.returncode == 0 and "NOT quiesced" in r.stderr, r.stderr
    assert hook("thaw").returncode == 0


def test_thaw_without_freeze_is_success(hook):
    r = hook("thaw")
    assert r.returncode == 0 and r.stderr == ""


def test_least_privilege_account_from_an_option_file(server, hook, tmp_path):
    """RELOAD (FTWRL) and PROCESS (to see other sessions' long queries) are
    all it needs; the holder is killed, when it must be, as its own user."""
    server.sql("CREATE USER IF NOT EXISTS 'bk'@'localhost' IDENTIFIED BY 's3cret';"
               "GRANT RELOAD, PROCESS ON *.* TO 'bk'@'localhost'")
    cnf = tmp_path / "client.cnf"
    cnf.write_text("[client]\nuser=bk\npassword=s3cret\n")
    cnf.chmod(0o600)
    r = hook("freeze", MARIADB_DEFAULTS_FILE=str(cnf))
    assert r.returncode == 0 and "WARNING" not in r.stderr, r.stderr
    user = server.sql("SELECT USER FROM information_schema.PROCESSLIST WHERE ID = %d" % ftwrl_holder(server))
    assert user.strip() == "bk", "the lock must be held by the option file's user"
    assert hook("thaw", MARIADB_DEFAULTS_FILE=str(cnf)).returncode == 0
    server.sql("REVOKE PROCESS ON *.* FROM 'bk'@'localhost'")
    r = hook("freeze", MARIADB_DEFAULTS_FILE=str(cnf))
    assert r.returncode == 0 and "without the PROCESS privilege" in r.stderr, r.stderr
    assert hook("thaw", MARIADB_DEFAULTS_FILE=str(cnf)).returncode == 0


def test_settings_file_writable_by_others_is_ignored(server, hook, tmp_path):
    conf = tmp_path / "mariadb.conf"
    conf.write_text("MARIADB_SOCKET=/nonexistent/sock\n")
    conf.chmod(0o666)
    r = hook("freeze", MARIADB_HOOK_CONF=str(conf), MARIADB_SOCKET="")
    assert "writable by group or others" in r.stderr


def test_settings_file_of_another_owner_is_ignored(server, hook, tmp_path):
    conf = tmp_path / "mariadb.conf"
    conf.write_text("MARIADB_LOCK_WAIT=1; CREATE DATABASE injected\n")  # what its owner could write
    conf.chmod(0o644)
    os.chown(conf, 65534, 65534)
    try:
        r = hook("freeze", MARIADB_HOOK_CONF=str(conf))
        assert "injected" not in server.sql("SHOW DATABASES").split(), \
            "SQL from a file of another owner ran on the server"
        assert r.returncode == 0, "a file nobody may trust changed the settings: " + r.stderr
        assert "not owned by root" in r.stderr, r.stderr
    finally:
        hook("thaw")
        server.sql("DROP DATABASE IF EXISTS injected")


def test_credentials_file_anyone_could_change_is_refused(server, hook, tmp_path):
    cnf = tmp_path / "client.cnf"
    cnf.write_text("[client]\nuser=root\n")
    cnf.chmod(0o666)
    r = hook("freeze", MARIADB_DEFAULTS_FILE=str(cnf))
    assert r.returncode == 1 and "refusing the option file" in r.stderr, r.stderr
    assert "MDL_BACKUP_FTWRL2" not in server.locks()


@pytest.mark.parametrize("kind", ["symlink", "open mode", "foreign owner"])
def test_a_state_directory_that_is_not_ours_is_refused(server, hook, tmp_path, kind):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if kind == "symlink":
        os.symlink(elsewhere, hook.state)
    else:
        hook.state.mkdir(mode=0o700)
        if kind == "open mode":
            hook.state.chmod(0o755)
        else:
            os.chown(hook.state, 65534, 65534)
    r = hook("freeze")
    assert r.returncode == 1 and "refusing the state directory" in r.stderr, r.stderr
    assert "MDL_BACKUP_FTWRL2" not in server.locks()
    assert os.listdir(elsewhere) == []


def test_thaw_removes_only_its_own_files(server, hook):
    """Whatever directory the setting names, the hook removes only the files
    it made there: never the directory, never anything else."""
    hook.state.mkdir(mode=0o700)
    (hook.state / "precious").write_text("not the hook's\n")
    assert hook("freeze").returncode == 0
    assert hook("thaw").returncode == 0
    assert (hook.state / "precious").read_text() == "not the hook's\n"
    assert leftovers(hook.state) == ["precious"]


def test_through_the_dispatcher_postgresql_checkpoints_before_mariadb_locks(server, tmp_path):
    """The shipped hooks' order: 20-postgresql (flushes, holds nothing)
    before 80-mariadb (holds the lock until thaw), so a CHECKPOINT never
    runs while MariaDB's writes wait; thaw releases MariaDB first."""
    import sandbox
    from dbservers import PGBIN, PgCluster
    if PGBIN is None:
        pytest.skip("needs postgresql")
    import shutil
    import tempfile
    etc = sandbox.install_hooks(tmp_path, *sorted(os.listdir(HOOK.parent)))
    pgbase = tempfile.mkdtemp(prefix="qpg-", dir="/tmp")
    os.chmod(pgbase, 0o755)  # postgres must reach its datadir
    pg = PgCluster(pgbase, 25450)
    try:
        env = dict(os.environ, MARIADB_SOCKET=server.sock, MARIADB_STATE_DIR=str(tmp_path / "state"),
                   MARIADB_HOOK_CONF="/nonexistent", PG_SOCKET_DIRS=str(pg.run), PG_HOOK_CONF="/nonexistent",
                   FSFREEZE_HOOK_LOG=str(tmp_path / "log"), FSFREEZE_HOOK_RUNDIR=str(tmp_path))
        results = []
        for action in ("freeze", "thaw"):
            r = subprocess.run(["dash", str(etc / "fsfreeze-hook"), action], env=env, timeout=60,
                               stdin=subprocess.DEVNULL, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            results += re.findall(r"^fsfreeze-hook: (\S+) (freeze|thaw): ok", r.stderr, re.M)
        names = [n for n, _ in results]
        assert [n.split("-", 1)[1] for n in names] == ["postgresql", "mariadb", "mariadb", "postgresql"], \
            results
    finally:
        pg.stop()
        shutil.rmtree(pgbase, ignore_errors=True)


def test_a_run_waits_for_another_only_so_long(server, hook):
    """The run lock is waited for within a bound (thaw: 5 s), then the run
    fails saying why, rather than hanging the agent."""
    assert hook("freeze").returncode == 0
    assert hook("thaw").returncode == 0  # the state directory and its lock file exist now
    other = subprocess.Popen(["flock", str(hook.state / "lock"), "sleep", "30"], start_new_session=True)
    try:
        wait_for(lambda: subprocess.run(["flock", "-n", str(hook.state / "lock"), "true"]).returncode != 0,
                 "the other run did not take the lock")
        t0 = time.monotonic()
        r = hook("thaw")
        took = time.monotonic() - t0
    finally:
        os.killpg(other.pid, signal.SIGKILL)  # flock and its sleep, by process group id
        other.wait()
    assert r.returncode == 1 and "did not finish within 5 s" in r.stderr, r.stderr
    assert 4.5 < took < 8, took
