# SPDX-License-Identifier: MIT
"""The hooks matter: a frozen snapshot of MariaDB's datadir taken through the
real path (quiesce-agent -> fsfreeze-hook dispatcher -> 80-mariadb) against
the same snapshot with no hook.

Deterministic case (docs/app-consistency.md §5): FLUSH TABLES, one INSERT
into a MyISAM table, snapshot.  The table's header in the snapshot says
"open,changed" without the hook (a restored server reports it as crashed)
and only "changed" with it (FTWRL flushed and closed it).  The datadir lives
on a loop-mounted ext4 in this process's private mount namespace, frozen by
explicit mountpoint list only; every path thaws.
"""
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "pylib"))
import sandbox  # noqa: E402
from dbservers import MARIADBD, Server  # noqa: E402

AGENT = Path(os.environ.get("QUIESCE_AGENT", TOP / "build" / "src" / "agent" / "quiesce-agent"))

pytestmark = pytest.mark.skipif(not os.path.exists(MARIADBD) or os.geteuid() != 0
                                or not AGENT.is_file(), reason="needs mariadb-server, root, agent")


@pytest.fixture(scope="module")
def db():
    sandbox.enter_private_mount_ns()
    work = Path(tempfile.mkdtemp(prefix="qcons-", dir="/tmp"))
    os.chmod(work, 0o755)
    fs = sandbox.LoopFs(work, "db", "ext4", size="512M")
    server = None
    try:
        server = Server(datadir=Path(fs.path) / "data")
        server.sql("CREATE TABLE t.m (id INT PRIMARY KEY, v VARCHAR(64), KEY (v)) ENGINE=MyISAM;"
                   "INSERT INTO t.m VALUES (1,'a'),(2,'b'),(3,'c')")
        etc = sandbox.install_hooks(work, "80-mariadb")
        yield work, fs, server, etc
    finally:
        fs.thaw()
        if server:
            server.stop()
        fs.close()
        shutil.rmtree(work, ignore_errors=True)


def snapshot(work, fs, etc, arm, sock, name=None):
    """Freeze the datadir's filesystem through the agent (with or without the
    hook), copy its image while frozen, thaw; return the copy's path."""
    env = {"MARIADB_SOCKET": sock, "MARIADB_STATE_DIR": str(work / "hookstate"),
           "FSFREEZE_HOOK_RUNDIR": str(work), "FSFREEZE_HOOK_LOG": str(work / "hook.log")}
    args = ["-F%s" % (etc / "fsfreeze-hook")] if arm == "hook" else ["--fsfreeze-hook="]
    agent = sandbox.Agent(AGENT, work, args, env=env)
    copy = work / ("snap-%s.img" % (name or arm))
    try:
        with agent.conn() as c:
            r = c.cmd("guest-fsfreeze-freeze-list", {"mountpoints": [fs.path]})
            assert r == {"return": 1}, (r, agent.log_text(), (work / "hook.log").read_text() if (work / "hook.log").exists() else "")
            try:
                subprocess.run(["cp", "--sparse=always", str(fs.image), str(copy)], check=True)
            finally:
                assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
    finally:
        fs.thaw()
        assert agent.stop() == 0
    return copy


@contextlib.contextmanager
def mounted(image, work, ro=True):
    """The snapshot image mounted (it is a frozen, hence clean, ext4)."""
    mnt = work / ("mnt-" + image.stem)
    mnt.mkdir(exist_ok=True)
    subprocess.run(["mount", "-o", "loop,ro,noload" if ro else "loop", str(image), str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)])
        mnt.rmdir()


def myisam_status(image, work, table="t/m.MYI"):
    with mounted(image, work) as mnt:
        out = subprocess.run(["myisamchk", "-dv", str(mnt / "data" / table)], capture_output=True,
                             text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("Status:"))
    return line.split(":", 1)[1].strip()


@pytest.mark.parametrize("arm", ["no-hook", "hook"])
def test_deterministic_myisam_case(db, arm):
    work, fs, server, etc = db
    server.sql("FLUSH TABLES")
    server.sql("INSERT INTO t.m VALUES (%d, 'x')" % (100 + len(arm)))
    copy = snapshot(work, fs, etc, arm, server.sock)  # the agent passes env on to the hooks
    status = myisam_status(copy, work)
    copy.unlink()
    if arm == "no-hook":
        assert "open" in status, "without the hook the table must be left open: %r" % status
    else:
        assert "open" not in status and "changed" in status, \
            "with the hook the table must be closed cleanly: %r" % status


class Writers:
    """Clients that keep writing (MyISAM, Aria non-transactional, InnoDB), each
    a mariadb client fed statements through its stdin, through every snapshot."""

    def __init__(self, server, n=3):
        import random
        import threading
        self.stop_flag = False
        self.threads = []
        for i in range(n):
            p = subprocess.Popen(["mariadb", "-S", server.sock, "t"], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t = threading.Thread(target=self.run, args=(p, random.Random(i), i), daemon=True)
            self.threads.append((t, p))
            t.start()

    def run(self, p, rnd, i):
        n = 0
        try:
            while not self.stop_flag:
                k = rnd.randrange(1, 5000)
                n += 1
                stmt = [
                    "INSERT INTO myi VALUES (NULL, %d, REPEAT('m', %d));" % (k, rnd.randrange(1, 200)),
                    "UPDATE myi SET v=REPEAT('u', %d) WHERE k=%d;" % (rnd.randrange(1, 200), k),
                    "INSERT INTO ari VALUES (NULL, %d, REPEAT('a', %d));" % (k, rnd.randrange(1, 200)),
                    "DELETE FROM ari WHERE k=%d LIMIT 2;" % k,
                    "START TRANSACTION; UPDATE acct SET bal=bal-1 WHERE id=%d;"
                    " UPDATE acct SET bal=bal+1 WHERE id=%d; COMMIT;" % (k % 100, (k + 1) % 100),
                ][n % 5]
                p.stdin.write(stmt.encode() + b"\n")
                p.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def stop(self):
        self.stop_flag = True
        for t, p in self.threads:
            t.join(timeout=10)
            try:
                p.stdin.close()
            except OSError:
                pass
            p.wait(timeout=30)


def table_defects(image, work):
    """Problems an offline check finds in the snapshot's MyISAM and Aria tables."""
    found = []
    with mounted(image, work) as mnt:
        for tool, table in (("myisamchk", "t/myi.MYI"), ("aria_chk", "t/ari.MAI")):
            path = mnt / "data" / table
            d = subprocess.run([tool, "-dv", str(path)], capture_output=True, text=True).stdout
            status = next((l.split(":", 1)[1].strip() for l in d.splitlines()
                           if l.startswith("Status:")), "?")
            if "open" in status:
                found.append("%s: %s" % (table, status))
            c = subprocess.run([tool, "--check", "--read-only", "--silent", str(path)],
                               capture_output=True, text=True)
            if c.returncode != 0 or "error" in (c.stdout + c.stderr).lower():
                found.append("%s check: %s" % (table, (c.stdout + c.stderr).strip()[:200]))
    return found


ACCOUNTS, BALANCE = 100, 1000


def restored_defects(image, work):
    """Start the snapshot as a server of its own, the way a restore would,
    but with automatic table repair off so damage is reported, not hidden;
    then CHECK every table and the InnoDB transfer invariant."""
    found = []
    with mounted(image, work, ro=False) as mnt:
        v = Server(datadir=mnt / "data", init=False,
                   settings=["myisam_recover_options=OFF", "aria_recover_options=OFF"])
        try:
            for row in v.sql("CHECK TABLE t.myi, t.ari, t.acct EXTENDED").splitlines():
                table, _, kind, text = row.split("\t")
                if kind != "status" or text != "OK":
                    found.append("%s: %s %s" % (table, kind, text))
            n, total = v.sql("SELECT count(*), sum(bal) FROM t.acct").split()
            if (int(n), int(total)) != (ACCOUNTS, ACCOUNTS * BALANCE):
                found.append("t.acct: %s accounts holding %s" % (n, total))
        finally:
            v.stop()
    return found


def test_snapshots_under_write_load(db, capsys):
    """K snapshots per arm, interleaved, while clients keep writing: with the
    hook none has a damaged or open table; without it at least one has."""
    import time
    work, fs, server, etc = db
    server.sql("CREATE TABLE IF NOT EXISTS t.myi (id INT AUTO_INCREMENT PRIMARY KEY, k INT, "
               "v VARCHAR(255), KEY (k), KEY (v)) ENGINE=MyISAM;"
               "CREATE TABLE IF NOT EXISTS t.ari (id INT AUTO_INCREMENT PRIMARY KEY, k INT, "
               "v VARCHAR(255), KEY (k)) ENGINE=Aria TRANSACTIONAL=0 ROW_FORMAT=DYNAMIC;"
               "CREATE TABLE IF NOT EXISTS t.acct (id INT PRIMARY KEY, bal INT) ENGINE=InnoDB;"
               "INSERT IGNORE INTO t.acct SELECT seq, %d FROM t.seq_0_to_%d" % (BALANCE, ACCOUNTS - 1))
    writers = Writers(server)
    results = {"no-hook": [], "hook": []}
    restored = {"no-hook": [], "hook": []}
    held = []
    try:
        for i, arm in enumerate(["no-hook", "hook"] * 3):
            time.sleep(2)  # writes between snapshots: the previous FTWRL cleaned the tables
            t0 = time.monotonic()
            copy = snapshot(work, fs, etc, arm, server.sock, name="%s-%d" % (arm, i))
            held.append((arm, time.monotonic() - t0))
            results[arm].append(table_defects(copy, work))
            restored[arm].append(copy)
    finally:
        writers.stop()
    # full check of each snapshot by a server started on it, once the load is gone
    for arm, copies in restored.items():
        restored[arm] = []
        for copy in copies:
            restored[arm].append(restored_defects(copy, work))
            copy.unlink()
    with capsys.disabled():
        print("\n  offline defects per snapshot: %s" % {a: [len(d) for d in r] for a, r in results.items()})
        print("  restored-server defects per snapshot: %s"
              % {a: [len(d) for d in r] for a, r in restored.items()})
        print("  freeze-to-thaw per snapshot (s): %s" % [("%s %.2f" % h) for h in held])
    assert all(not d for d in results["hook"]), "with the hook: %s" % results["hook"]
    assert all(not d for d in restored["hook"]), "restored, with the hook: %s" % restored["hook"]
    # InnoDB is crash-safe: its invariant holds in every snapshot, hook or not
    assert not any("acct" in d for r in restored["no-hook"] for d in r), restored["no-hook"]
    assert any(d for d in results["no-hook"]), \
        "without the hook no snapshot had a defect: the test proves nothing (%s)" % results


def test_lock_is_held_exactly_while_frozen_through_the_agent(db, capsys):
    """Through agent -> dispatcher -> 80-mariadb: while frozen the server
    shows the global read lock (MDL_BACKUP_FTWRL2) and a write waits for it;
    after thaw the lock is gone and writes go through.  Then the figures:
    what the hook adds to the freeze call, and how long the lock is held
    when the snapshot itself takes no time (freeze call start to thaw reply,
    an upper bound)."""
    import statistics
    work, fs, server, etc = db
    env = {"MARIADB_SOCKET": server.sock, "MARIADB_STATE_DIR": str(work / "hookstate"),
           "FSFREEZE_HOOK_RUNDIR": str(work), "FSFREEZE_HOOK_LOG": str(work / "hook.log")}
    timings = {}
    for arm in ("no-hook", "hook"):
        args = ["-F%s" % (etc / "fsfreeze-hook")] if arm == "hook" else ["--fsfreeze-hook="]
        agent = sandbox.Agent(AGENT, work, args, env=env)
        try:
            with agent.conn() as c:
                if arm == "hook":
                    assert c.cmd("guest-fsfreeze-freeze-list", {"mountpoints": [fs.path]}) == {"return": 1}
                    try:
                        assert "MDL_BACKUP_FTWRL2" in server.locks(), server.locks()
                        with pytest.raises(RuntimeError, match="Lock wait timeout"):
                            server.sql("SET lock_wait_timeout=1; INSERT INTO t.m VALUES (900, 'w')")
                    finally:
                        assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
                    assert "MDL_BACKUP_FTWRL2" not in server.locks()
                    server.sql("SET lock_wait_timeout=5; INSERT INTO t.m VALUES (901, 'w')")
                rounds = []
                for _ in range(7):
                    t0 = time.monotonic()
                    assert c.cmd("guest-fsfreeze-freeze-list", {"mountpoints": [fs.path]}) == {"return": 1}
                    t1 = time.monotonic()
                    assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
                    rounds.append((t1 - t0, time.monotonic() - t0))
                timings[arm] = [statistics.median(x) * 1000 for x in zip(*rounds)]
        finally:
            fs.thaw()
            assert agent.stop() == 0
    assert [p.name for p in (work / "hookstate").glob("*")] == ["lock"], "the hook left state behind"
    with capsys.disabled():
        print("\n  freeze call median: no hook %.1f ms, mariadb hook %.1f ms (hook adds %.1f ms);"
              " freeze start to thaw reply with the hook (lock held at most) %.1f ms"
              % (timings["no-hook"][0], timings["hook"][0],
                 timings["hook"][0] - timings["no-hook"][0], timings["hook"][1]))


def hook_env(work, server):
    return {"MARIADB_SOCKET": server.sock, "MARIADB_STATE_DIR": str(work / "hookstate"),
            "FSFREEZE_HOOK_RUNDIR": str(work), "FSFREEZE_HOOK_LOG": str(work / "hook.log")}


def test_a_lock_lost_while_frozen_fails_the_thaw_and_the_report_shows_it(db):
    """The holder's connection killed while frozen (a DBA's KILL, pt-kill):
    the dispatcher's thaw fails, so guest-fsfreeze-thaw answers with an error
    (filesystems thawed all the same) and quiesce-freeze-report records the
    thaw hook's non-zero exit status, which is what the host must read to
    not call the snapshot application-consistent."""
    work, fs, server, etc = db
    agent = sandbox.Agent(AGENT, work, ["-F%s" % (etc / "fsfreeze-hook")], env=hook_env(work, server))
    try:
        with agent.conn() as c:
            assert c.cmd("guest-fsfreeze-freeze-list", {"mountpoints": [fs.path]}) == {"return": 1}
            try:
                ids = server.sql("SELECT THREAD_ID FROM information_schema.METADATA_LOCK_INFO "
                                 "WHERE LOCK_MODE = 'MDL_BACKUP_FTWRL2'").split()
                server.sql("KILL %s" % ids[0])
            finally:
                r = c.cmd("guest-fsfreeze-thaw")
            assert r.get("error", {}).get("desc") == "fsfreeze hook has failed with status 1", r
            assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
            hooks = c.cmd("quiesce-freeze-report")["return"]["hooks"]
    finally:
        fs.thaw()
        assert agent.stop() == 0
    assert [(h["action"], h["exit-status"]) for h in hooks][-2:] == [("freeze", 0), ("thaw", 1)], hooks
    assert "LOST while frozen" in agent.log_text(), "the reason belongs in the agent's log"
    assert not fs.is_frozen()


class Committer:
    """One client committing numbered rows (autocommit InnoDB inserts), each
    acknowledged by the echo of a SELECT after it: `acked` is the highest
    number the server has confirmed committed."""

    def __init__(self, server, pause=0.005):
        import threading
        self.p = subprocess.Popen(["mariadb", "-S", server.sock, "-N", "--unbuffered", "t"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.acked = 0
        self.stop_flag = False
        self.pause = pause
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        n = self.acked
        try:
            while not self.stop_flag:
                n += 1
                self.p.stdin.write("INSERT INTO c VALUES (%d); SELECT %d;\n" % (n, n))
                self.p.stdin.flush()
                assert int(self.p.stdout.readline()) == n
                self.acked = n
                time.sleep(self.pause)
        except (BrokenPipeError, OSError, ValueError):
            pass

    def stop(self):
        self.stop_flag = True
        self.t.join(timeout=30)
        self.p.stdin.close()
        self.p.wait(timeout=30)


def lsn_flushed(server):
    return int(server.sql("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                          "WHERE VARIABLE_NAME = 'INNODB_LSN_FLUSHED'"))


@pytest.mark.parametrize("trx_commit", [0, 2])
def test_every_commit_acknowledged_before_the_freeze_is_in_the_image(db, trx_commit, capsys):
    """innodb_flush_log_at_trx_commit=0 keeps commits in InnoDB's log buffer
    for up to innodb_flush_log_at_timeout seconds, and FLUSH ENGINE LOGS does
    not write it out on MariaDB.  Under a commit load, right after InnoDB's
    background log flush (so the next one is seconds away), freeze through
    the agent, copy the image, restore it as a server: every row whose commit
    was acknowledged before the freeze call must be there.  (At 2 commits
    are written to the OS at once; the freeze writes them out.)"""
    work, fs, server, etc = db
    server.sql("CREATE TABLE IF NOT EXISTS t.c (n INT PRIMARY KEY) ENGINE=InnoDB; TRUNCATE t.c;"
               "SET GLOBAL innodb_flush_log_at_timeout=3;"
               "SET GLOBAL innodb_flush_log_at_trx_commit=%d" % trx_commit)
    committer = Committer(server)
    agent = sandbox.Agent(AGENT, work, ["-F%s" % (etc / "fsfreeze-hook")], env=hook_env(work, server))
    copy = work / ("snap-trx%d.img" % trx_commit)
    try:
        with agent.conn() as c:
            deadline = time.monotonic() + 30
            while committer.acked < 100:  # a load that has run a while
                assert time.monotonic() < deadline and committer.t.is_alive(), "the committer is stuck"
                time.sleep(0.05)
            before = lsn_flushed(server)
            deadline = time.monotonic() + 10
            while lsn_flushed(server) == before:  # InnoDB's once-per-timeout log write
                assert time.monotonic() < deadline, "InnoDB never flushed its log"
                time.sleep(0.01)
            time.sleep(0.3)  # commits the next background flush is seconds away from
            acked = committer.acked
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
        agent.stop()
        committer.stop()
        server.sql("SET GLOBAL innodb_flush_log_at_trx_commit=1; SET GLOBAL innodb_flush_log_at_timeout=1")
    try:
        with mounted(copy, work, ro=False) as mnt:
            v = Server(datadir=mnt / "data", init=False)
            try:
                n = int(v.sql("SELECT COUNT(*) FROM t.c WHERE n <= %d" % acked))
            finally:
                v.stop()
    finally:
        copy.unlink()
    with capsys.disabled():
        print("\n  trx_commit=%d: %d commits acknowledged before the freeze, %d in the restored image;"
              " freeze call %.2f s" % (trx_commit, acked, n, took))
    assert acked > 50, "the load committed too little to tell"
    assert n == acked, "%d commits acknowledged before the freeze are missing from the image" % (acked - n)
