# SPDX-License-Identifier: MIT
"""Fixtures for real-FIFREEZE tests of quiesce-agent.

Safety (DEVELOPERS.md): these tests freeze only loop-mounted filesystems they
create, in this process's private mount namespace, and always by explicit
mountpoint list.  Teardown thaws every test filesystem first, on every path,
then stops writers and agents, then unmounts.
"""
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "pylib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox  # noqa: E402

AGENT = Path(os.environ.get("QUIESCE_AGENT", TOP / "build" / "src" / "agent" / "quiesce-agent"))


def pytest_configure(config):
    config.addinivalue_line("markers", "freeze: freezes loop-mounted test filesystems")


@pytest.fixture(scope="session", autouse=True)
def private_mounts():
    if os.geteuid() != 0:
        pytest.skip("freezing filesystems needs root")
    if not AGENT.is_file():
        pytest.skip("quiesce-agent not built: %s" % AGENT)
    sandbox.enter_private_mount_ns()


class Sandbox:
    def __init__(self, workdir):
        self.dir = Path(workdir)
        self.filesystems = []
        self.agents = []
        self.writers = []
        self.calls = self.dir / "hook-calls.log"

    def fs(self, name="fs", kind="ext4"):
        f = sandbox.LoopFs(self.dir, name, kind)
        self.filesystems.append(f)
        return f

    def agent(self, *args, binary=AGENT, env=None, wait=True):
        # Hermetic: without -F, ask for no hook (quiesce-agent would otherwise
        # use /etc/qemu/fsfreeze-hook if this machine has one).
        if not any(a.startswith("-F") for a in args):
            args = ("--fsfreeze-hook=",) + args
        # Registered before it is waited for: one that hangs is still stopped
        # in close() (after the thaw that releases it).
        a = sandbox.Agent(binary, self.dir, args, env=env, wait=False)
        self.agents.append(a)
        if wait:  # for its socket (not when its channel is something else)
            a.wait_ready()
        return a

    def writer(self, fs, name="ticks"):
        w = sandbox.Writer(Path(fs.path) / name)
        self.writers.append(w)
        return w

    def hook(self, body, name="hook.sh", mode=0o755):
        """A hook script that records each call ("<action> <time>") in
        self.calls, then runs `body` (sh, with $1 = freeze|thaw)."""
        path = self.dir / name
        path.write_text("#!/bin/sh\necho \"$1 $(date +%%s.%%N) $$\" >> %s\n%s\n" % (self.calls, body))
        os.chmod(path, mode)
        return path

    def hook_calls(self):
        """The actions the hook was called with, in order."""
        try:
            return [l.split()[0] for l in self.calls.read_text().splitlines() if l.strip()]
        except FileNotFoundError:
            return []

    def close(self):
        for f in self.filesystems:  # first, whatever happened: nothing stays frozen
            f.thaw()
        for w in self.writers:
            w.stop()
        bad = []
        for a in self.agents:
            rc = a.stop()
            # 0 after SIGTERM; -9 only where a test killed it on purpose.  Anything
            # else is a crash or a sanitizer report at exit.
            if rc not in (0, -9):
                bad.append("agent exited with %s; log:\n%s" % (rc, a.log_text()[-3000:]))
        for f in self.filesystems:
            f.close()
        assert not bad, "\n".join(bad)


@pytest.fixture
def sb():
    workdir = tempfile.mkdtemp(prefix="qfz-", dir="/tmp")
    s = Sandbox(workdir)
    try:
        yield s
    finally:
        s.close()
        shutil.rmtree(workdir, ignore_errors=True)
