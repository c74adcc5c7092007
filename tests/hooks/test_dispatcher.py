# SPDX-License-Identifier: MIT
"""hooks/fsfreeze-hook, the dispatcher: run under dash (Debian's /bin/sh) and
busybox sh, on a hook directory of small recording scripts."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
DISPATCHER = TOP / "hooks" / "fsfreeze-hook"
SHELLS = [s for s in (["dash"], ["busybox", "sh"]) if subprocess.run(
    ["sh", "-c", "command -v %s" % s[0]], stdout=subprocess.DEVNULL).returncode == 0]


class HookDir:
    def __init__(self, tmp, shell):
        self.dir = tmp / "fsfreeze-hook.d"
        self.dir.mkdir()
        self.calls = tmp / "calls"
        self.log = tmp / "hook.log"
        self.run_dir = tmp / "run"
        self.run_dir.mkdir()
        self.shell = shell

    def script(self, name, body="exit 0", mode=0o755):
        p = self.dir / name
        p.write_text('#!/bin/sh\necho "%s $1" >> %s\n%s\n' % (name, self.calls, body))
        p.chmod(mode)
        return p

    def run(self, action, timeout=30, limit=None, **kw):
        env = dict(os.environ, FSFREEZE_HOOK_D=str(self.dir), FSFREEZE_HOOK_LOG=str(self.log),
                   FSFREEZE_HOOK_RUNDIR=str(self.run_dir))
        if limit is not None:
            env["FSFREEZE_HOOK_TIMEOUT"] = str(limit)
        return subprocess.run(self.shell + [str(DISPATCHER), action], env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)

    def called(self):
        try:
            return [tuple(l.split()) for l in self.calls.read_text().splitlines()]
        except FileNotFoundError:
            return []

    def log_text(self):
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture(params=SHELLS, ids=lambda s: s[0])
def hd(request, tmp_path):
    return HookDir(tmp_path, request.param)


def test_dash_parses_it():
    assert subprocess.run(["dash", "-n", str(DISPATCHER)]).returncode == 0


def test_freeze_in_lexical_order_thaw_in_reverse(hd):
    for n in ("20-c", "02-a", "10-b", "10-B"):
        hd.script(n)
    assert hd.run("freeze").returncode == 0
    assert hd.run("thaw").returncode == 0
    order = ["02-a", "10-B", "10-b", "20-c"]  # bytewise: uppercase first
    assert hd.called() == [(n, "freeze") for n in order] + [(n, "thaw") for n in reversed(order)]


def test_backups_leftovers_and_non_executables_are_skipped(hd):
    hd.script("10-db")
    for n in ("10-db~", "10-db.bak", "10-db.dpkg-old", "10-db.dpkg-dist", "10-db.rpmnew", ".hidden",
              "10-db.sample", "10-db.ucf-dist"):
        hd.script(n)
    hd.script("50-not-executable", mode=0o644)
    (hd.dir / "60-a-directory").mkdir()
    assert hd.run("freeze").returncode == 0
    assert hd.called() == [("10-db", "freeze")]


def test_failure_on_freeze_thaws_the_earlier_ones_and_fails(hd):
    hd.script("10-a")
    hd.script("15-b")
    hd.script("20-fails", 'if [ "$1" = freeze ]; then echo "no lock for you"; exit 3; fi')
    hd.script("30-never")
    r = hd.run("freeze")
    assert r.returncode == 1
    assert hd.called() == [("10-a", "freeze"), ("15-b", "freeze"), ("20-fails", "freeze"),
                           ("15-b", "thaw"), ("10-a", "thaw")]
    log = hd.log_text()
    assert "20-fails freeze: failed with status 3" in log
    assert "20-fails: no lock for you" in log, "a script's output belongs in the log"
    assert "freeze failed at 20-fails; 2 earlier hook(s) thawed again" in r.stderr


def test_time_limit_kills_a_hanging_script(hd):
    hd.script("10-a")
    hd.script("20-hangs", '[ "$1" = freeze ] && sleep 30')
    t0 = time.monotonic()
    r = hd.run("freeze", limit=1)
    took = time.monotonic() - t0
    assert r.returncode == 1 and took < 8, (r.returncode, took)
    assert hd.called() == [("10-a", "freeze"), ("20-hangs", "freeze"), ("10-a", "thaw")]
    assert "20-hangs freeze: killed after the 1 s time limit" in hd.log_text()


def test_thaw_runs_every_script_and_reports_a_failure(hd):
    hd.script("10-a", '[ "$1" = thaw ] && exit 5; exit 0')
    hd.script("20-b")
    r = hd.run("thaw")
    assert r.returncode == 1
    assert hd.called() == [("20-b", "thaw"), ("10-a", "thaw")]
    assert "10-a thaw: failed with status 5" in hd.log_text()


def test_background_child_does_not_hold_the_dispatchers_output(hd):
    # the shape of a lock-holding hook: a child that lives on, holding stdout
    # (it records its pid, so the test stops it by PID, never by name)
    pidfile = hd.dir.parent / "holder.pid"
    hd.script("10-holder", '[ "$1" = freeze ] && { sleep 300 & echo $! > %s; }\nexit 0' % pidfile)
    try:
        t0 = time.monotonic()
        r = hd.run("freeze", timeout=20)  # capture_output: like an agent reading to EOF
        assert r.returncode == 0 and time.monotonic() - t0 < 5
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_no_hook_directory_is_success(hd, tmp_path):
    hd.dir.rmdir()
    assert hd.run("freeze").returncode == 0
    assert hd.run("thaw").returncode == 0


def test_bad_action_is_refused(hd):
    r = hd.run("bogus")
    assert r.returncode == 2 and "usage" in r.stderr
    assert hd.called() == []


def test_result_lines_are_logged_with_durations(hd):
    hd.script("10-a", 'echo "flushed 3 tables"')
    assert hd.run("freeze").returncode == 0
    log = hd.log_text()
    assert "10-a: flushed 3 tables" in log
    line = next(l for l in log.splitlines() if "10-a freeze: ok" in l)
    assert line.rstrip().endswith(" s)"), line
    assert os.listdir(hd.run_dir) == [], "temporary output files were left behind"
