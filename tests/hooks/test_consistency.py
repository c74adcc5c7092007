# SPDX-License-Identifier: MIT
"""The hooks matter: a frozen snapshot of MariaDB's datadir taken through the
real path (quiesce-agent -> fsfreeze-hook dispatcher -> 10-mariadb) against
the same snapshot with no hook.

Deterministic case (docs/app-consistency.md §5): FLUSH TABLES, one INSERT
into a MyISAM table, snapshot.  The table's header in the snapshot says
"open,changed" without the hook (a restored server reports it as crashed)
and only "changed" with it (FTWRL flushed and closed it).  The datadir lives
on a loop-mounted ext4 in this process's private mount namespace, frozen by
explicit mountpoint list only; every path thaws.
"""
import os
import shutil
import subprocess
import sys
import tempfile
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
        # the hook setup an admin would have: dispatcher + enabled mariadb hook
        etc = work / "etc-qemu"
        (etc / "fsfreeze-hook.d").mkdir(parents=True)
        shutil.copy(TOP / "hooks" / "fsfreeze-hook", etc / "fsfreeze-hook")
        os.symlink(TOP / "hooks" / "fsfreeze-hook.d" / "10-mariadb",
                   etc / "fsfreeze-hook.d" / "10-mariadb")
        yield work, fs, server, etc
    finally:
        fs.thaw()
        if server:
            server.stop()
        fs.close()
        shutil.rmtree(work, ignore_errors=True)


def snapshot(work, fs, etc, arm, sock):
    """Freeze the datadir's filesystem through the agent (with or without the
    hook), copy its image while frozen, thaw; return the copy's path."""
    env = {"MARIADB_SOCKET": sock, "MARIADB_STATE_DIR": str(work / "hookstate"),
           "FSFREEZE_HOOK_RUNDIR": str(work), "FSFREEZE_HOOK_LOG": str(work / "hook.log")}
    args = ["-F%s" % (etc / "fsfreeze-hook")] if arm == "hook" else ["--fsfreeze-hook="]
    agent = sandbox.Agent(AGENT, work, args, env=env)
    copy = work / ("snap-%s.img" % arm)
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


def myisam_status(image, work, table="t/m.MYI"):
    mnt = work / ("mnt-" + image.stem)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop,ro,noload", str(image), str(mnt)], check=True)
    try:
        out = subprocess.run(["myisamchk", "-dv", str(mnt / "data" / table)], capture_output=True,
                             text=True).stdout
    finally:
        subprocess.run(["umount", str(mnt)])
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
