# SPDX-License-Identifier: MIT
"""hooks/fsfreeze-hook, the dispatcher: run under dash (Debian's /bin/sh) and
busybox sh, on a hook directory of small recording scripts."""
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
DISPATCHER = TOP / "hooks" / "fsfreeze-hook"
AGENT = Path(os.environ.get("QUIESCE_AGENT", TOP / "build" / "src" / "agent" / "quiesce-agent"))
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


def test_backups_leftovers_and_disabled_hooks_are_skipped(hd):
    hd.script("10-db")
    for n in ("10-db~", "10-db.bak", "10-db.dpkg-old", "10-db.dpkg-dist", "10-db.rpmnew", ".hidden",
              "10-db.sample", "10-db.ucf-dist", "10-db.disabled"):
        hd.script(n)
    assert hd.run("freeze").returncode == 0
    assert hd.called() == [("10-db", "freeze")]


@pytest.mark.parametrize("kind", ["dangling symlink", "lost x bit", "directory"])
def test_an_entry_that_cannot_run_fails_the_freeze_loudly(hd, kind):
    """A hook that cannot run means a freeze that does not quiesce: the
    freeze fails before any script runs, saying which entry and why; thaw
    still runs the others and fails."""
    hd.script("10-db")
    if kind == "dangling symlink":
        os.symlink(hd.dir / "gone", hd.dir / "50-app")
    elif kind == "lost x bit":
        hd.script("50-app", mode=0o644)
    else:
        (hd.dir / "50-app").mkdir()
    r = hd.run("freeze")
    assert r.returncode == 1, r.stderr
    assert hd.called() == [], "no script may run when one cannot"
    reason = {"dangling symlink": "a dangling symlink", "lost x bit": "not executable",
              "directory": "not a regular file"}[kind]
    assert "50-app: cannot run it: " + reason in r.stderr, r.stderr
    assert "freeze refused" in r.stderr
    r = hd.run("thaw")
    assert r.returncode == 1 and hd.called() == [("10-db", "thaw")], r.stderr


@pytest.mark.parametrize("kind", ["group-writable", "foreign owner", "group-writable directory"])
def test_a_script_anyone_could_change_is_refused(hd, kind):
    """The owner/mode check the agent applies to the dispatcher, applied to
    every script it runs (symlinks followed) and to the directory."""
    p = hd.script("50-app")
    if kind == "group-writable":
        p.chmod(0o775)
    elif kind == "foreign owner":
        os.chown(p, 65534, 65534)
    else:
        hd.dir.chmod(0o775)
    r = hd.run("freeze")
    assert r.returncode == 1 and hd.called() == [], r.stderr
    why = {"group-writable": "50-app: cannot run it: writable by group or others (mode 775)",
           "foreign owner": "50-app: cannot run it: owned by uid 65534, not root",
           "group-writable directory": "refusing to run hooks from"}[kind]
    assert why in r.stderr, r.stderr


def test_symlinked_scripts_are_checked_at_their_target(hd, tmp_path):
    target = tmp_path / "shared-hook"
    target.write_text('#!/bin/sh\necho "shared $1" >> %s\n' % hd.calls)
    target.chmod(0o755)
    os.symlink(target, hd.dir / "50-shared")
    assert hd.run("freeze").returncode == 0 and hd.called() == [("shared", "freeze")]
    target.chmod(0o757)
    r = hd.run("freeze")
    assert r.returncode == 1 and "writable by group or others" in r.stderr, r.stderr


def test_failure_on_freeze_thaws_it_and_the_earlier_ones_and_fails(hd):
    hd.script("10-a")
    hd.script("15-b")
    hd.script("20-fails", 'if [ "$1" = freeze ]; then echo "no lock for you"; exit 3; fi')
    hd.script("30-never")
    r = hd.run("freeze")
    assert r.returncode == 1
    # the failing script is thawed too: its freeze may have half happened
    assert hd.called() == [("10-a", "freeze"), ("15-b", "freeze"), ("20-fails", "freeze"),
                           ("20-fails", "thaw"), ("15-b", "thaw"), ("10-a", "thaw")]
    log = hd.log_text()
    assert "20-fails freeze: failed with status 3" in log
    assert "20-fails: no lock for you" in log, "a script's output belongs in the log"
    assert "fsfreeze-hook: 20-fails: no lock for you" in r.stderr, "and its reason on stderr"
    assert "freeze failed at 20-fails; 3 hook(s) thawed again" in r.stderr


def test_time_limit_kills_a_hanging_script(hd):
    hd.script("10-a")
    hd.script("20-hangs", '[ "$1" = freeze ] && sleep 30')
    t0 = time.monotonic()
    r = hd.run("freeze", limit=3)  # 3 s budget: 2.4 s to freeze, 0.6 s (at least 1 s) to undo
    took = time.monotonic() - t0
    assert r.returncode == 1 and took < 8, (r.returncode, took)
    assert hd.called() == [("10-a", "freeze"), ("20-hangs", "freeze"), ("20-hangs", "thaw"),
                           ("10-a", "thaw")]
    assert "20-hangs freeze: killed at its time limit" in hd.log_text()


def test_one_budget_for_all_scripts_with_room_to_undo(hd):
    """Per-script limits add up past the agent's own hook timeout; one budget
    does not: three scripts of 1.2 s each do not fit in the 3 s a budget of
    4 s leaves for freezing, so the third is stopped when that ends, and the
    undo still fits."""
    for n in ("10-a", "20-b", "30-c"):
        hd.script(n, '[ "$1" = freeze ] && sleep 1.2; exit 0')
    t0 = time.monotonic()
    r = hd.run("freeze", limit=4)
    took = time.monotonic() - t0
    assert r.returncode == 1, r.stderr
    assert took < 4 + 2.5, "the call took %.1f s with a budget of 4 s" % took
    assert hd.called()[-3:] == [("30-c", "thaw"), ("20-b", "thaw"), ("10-a", "thaw")], hd.called()
    assert "30-c freeze: killed at its time limit" in hd.log_text()


def test_scripts_are_told_their_time_limit(hd):
    hd.script("10-a", 'echo "left $FSFREEZE_HOOK_TIME_LEFT" >> %s' % (hd.dir.parent / "left"))
    assert hd.run("freeze", limit=10).returncode == 0
    left = int((hd.dir.parent / "left").read_text().split()[1])
    assert 6 <= left <= 8, "10 s budget less the 2 s undo reserve: %d" % left


def test_a_signal_thaws_what_was_frozen_and_fails(hd):
    """TERM (a service stop, a caller giving up): the running script gets
    TERM, it and the ones before it are thawed, the freeze fails."""
    started = hd.dir.parent / "started"
    hd.script("10-a")
    hd.script("20-hangs", '[ "$1" = freeze ] && { : > %s; exec sleep 30; }; exit 0' % started)
    env = dict(os.environ, FSFREEZE_HOOK_D=str(hd.dir), FSFREEZE_HOOK_LOG=str(hd.log),
               FSFREEZE_HOOK_RUNDIR=str(hd.run_dir))
    p = subprocess.Popen(hd.shell + [str(DISPATCHER), "freeze"], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not started.exists():
            assert time.monotonic() < deadline and p.poll() is None, "the script never started"
            time.sleep(0.01)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 1 and time.monotonic() - t0 < 3, (p.returncode, err)
    assert hd.called() == [("10-a", "freeze"), ("20-hangs", "freeze"), ("20-hangs", "thaw"),
                           ("10-a", "thaw")]
    assert "interrupted by a signal" in err


def test_thaw_runs_every_script_and_reports_a_failure(hd):
    hd.script("10-a", '[ "$1" = thaw ] && exit 5; exit 0')
    hd.script("20-b")
    r = hd.run("thaw")
    assert r.returncode == 1
    assert hd.called() == [("20-b", "thaw"), ("10-a", "thaw")]
    assert "10-a thaw: failed with status 5" in hd.log_text()
    assert "10-a thaw: failed with status 5" in r.stderr, "the agent records stderr"


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


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(os.geteuid() != 0 or not AGENT.is_file(), reason="needs root and the agent")
def test_the_agents_group_kill_reaches_a_running_script(tmp_path):
    """quiesce-agent runs the dispatcher in a session of its own and, at its
    --hook-timeout, SIGKILLs that process group.  A script (and what it
    runs) must be in that group, or it lives on after the freeze failed:
    GNU timeout(1) would have put it in a group of its own.  Freezes only a
    loop mount this test made, by explicit list (it fails before FIFREEZE)."""
    import sys
    sys.path.insert(0, str(TOP / "tests" / "pylib"))
    import sandbox
    sandbox.enter_private_mount_ns()
    hd = HookDir(tmp_path, ["dash"])
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(DISPATCHER, etc / "fsfreeze-hook")
    os.chmod(etc / "fsfreeze-hook", 0o755)  # the agent checks its mode too
    os.symlink(hd.dir, etc / "fsfreeze-hook.d")
    pids = tmp_path / "pids"
    hd.script("50-hangs", '[ "$1" = freeze ] && { sleep 60 & echo "$$ $!" > %s; wait; }; exit 0' % pids)
    fs = sandbox.LoopFs(tmp_path, "fs", "ext2", size="8M")
    agent = None
    try:
        agent = sandbox.Agent(AGENT, tmp_path, ["-F%s" % (etc / "fsfreeze-hook"), "--hook-timeout=2"],
                              env={"FSFREEZE_HOOK_LOG": str(hd.log), "FSFREEZE_HOOK_RUNDIR": str(hd.run_dir)})
        with agent.conn() as c:
            r = c.cmd("guest-fsfreeze-freeze-list", {"mountpoints": [fs.path]})
            assert "timed out" in r["error"]["desc"], r
            assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
        script, sleeper = map(int, pids.read_text().split())
        deadline = time.monotonic() + 5  # SIGKILL is delivered at once; reaping by init may lag
        while alive(script) or alive(sleeper):
            assert time.monotonic() < deadline, \
                "the script (%d) or its child (%d) outlived the agent's kill" % (script, sleeper)
            time.sleep(0.02)
    finally:
        if agent:
            agent.stop()
        for pid in (map(int, pids.read_text().split()) if pids.exists() else ()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        fs.close()


@pytest.mark.parametrize("hook", [DISPATCHER] + sorted((TOP / "hooks" / "fsfreeze-hook.d").iterdir()),
                         ids=lambda p: p.name)
@pytest.mark.parametrize("shell", [["dash"], ["busybox", "sh"]], ids=["dash", "busybox"])
def test_every_hook_parses_as_posix_sh(hook, shell):
    if shell[0] not in [s[0] for s in SHELLS]:
        pytest.skip("needs %s" % shell[0])
    r = subprocess.run(shell + ["-n", str(hook)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_quick_scripts_leave_no_stray_output(hd):
    """Scripts that return at once race their watchdog: its end must be
    silent (no "User defined signal 1" in what the agent logs)."""
    for i in range(8):
        hd.script("%02d-quick" % i)
    for _ in range(5):  # a race: more rounds, more chances to see it
        for action in ("freeze", "thaw"):
            r = hd.run(action)
            assert r.returncode == 0, r.stderr
            lines = r.stderr.splitlines()
            assert len(lines) == 8 and all(l.startswith("fsfreeze-hook: ") and ": ok (" in l
                                           for l in lines), lines
