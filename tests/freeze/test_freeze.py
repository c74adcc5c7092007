# SPDX-License-Identifier: MIT
"""quiesce-agent freezing real (loop-mounted) filesystems, with hooks, and
every way a freeze can go wrong.  Each test ends with the same questions:
is every filesystem thawed, did the thaw hook run exactly once after a
freeze hook, and do the reply and the log say what happened?
"""
import json
import datetime
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import qga

pytestmark = pytest.mark.freeze

FROZEN_DISABLED = "has been disabled: the agent is in frozen state"
TOP = Path(__file__).resolve().parents[2]
AGENT = Path(os.environ.get("QUIESCE_AGENT", TOP / "build" / "src" / "agent" / "quiesce-agent"))


def freeze_list(c, *paths):
    return c.cmd("guest-fsfreeze-freeze-list", {"mountpoints": [str(p) for p in paths]})


def error_desc(reply):
    assert "error" in reply, reply
    return reply["error"]["desc"]


def wait_for(pred, timeout=10.0, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def marker(agent):
    return Path(agent.statedir) / "qga.state.isfrozen"


def test_freeze_blocks_writes_until_thaw_on_ext4_and_xfs(sb):
    e, x = sb.fs("e", "ext4"), sb.fs("x", "xfs")
    ag = sb.agent()
    w = sb.writer(e)
    assert wait_for(lambda: w.count() >= 5)
    with ag.conn() as c:
        assert freeze_list(c, e.path, x.path) == {"return": 2}
        assert c.cmd("guest-fsfreeze-status") == {"return": "frozen"}
        assert e.is_frozen() and x.is_frozen()
        assert marker(ag).exists()
        n = w.count()
        time.sleep(0.5)
        assert w.count() <= n + 1, "the writer kept writing while frozen"
        assert c.cmd("guest-fsfreeze-thaw") == {"return": 2}
        assert wait_for(lambda: w.count() >= n + 5), "the writer did not resume after thaw"
        assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
    assert not e.is_frozen() and not x.is_frozen()
    assert not marker(ag).exists()


def test_hook_runs_freeze_before_and_thaw_after(sb):
    fs = sb.fs()
    hook = sb.hook('echo "hook says $1"')
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        assert freeze_list(c, fs.path) == {"return": 1}
        assert sb.hook_calls() == ["freeze"]
        assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
    assert sb.hook_calls() == ["freeze", "thaw"]
    log = ag.log_text()
    assert "hook says freeze" in log and "hook says thaw" in log, "hook output not in the log"
    assert not fs.is_frozen()


def test_failing_freeze_hook_fails_freeze_and_still_thaws_hook(sb):
    fs = sb.fs()
    hook = sb.hook('[ "$1" = freeze ] && exit 3; exit 0')
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        assert error_desc(freeze_list(c, fs.path)) == "fsfreeze hook has failed with status 3"
        assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
        assert c.cmd("guest-ping") == {"return": {}}
    assert sb.hook_calls() == ["freeze", "thaw"]
    assert not fs.is_frozen() and not marker(ag).exists()
    assert "fsfreeze hook freeze: fsfreeze hook has failed with status 3" in ag.log_text()


def test_failing_thaw_hook_is_reported_but_filesystems_thaw(sb):
    fs = sb.fs()
    hook = sb.hook('[ "$1" = thaw ] && exit 4; exit 0')
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        assert freeze_list(c, fs.path) == {"return": 1}
        assert error_desc(c.cmd("guest-fsfreeze-thaw")) == "fsfreeze hook has failed with status 4"
        assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
        # the debt is paid: a second thaw runs no hook
        assert c.cmd("guest-fsfreeze-thaw") == {"return": 0}
    assert sb.hook_calls() == ["freeze", "thaw"]
    assert not fs.is_frozen()


def test_hook_killed_by_signal(sb):
    fs = sb.fs()
    hook = sb.hook('[ "$1" = freeze ] && kill -9 $$; exit 0')
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        assert error_desc(freeze_list(c, fs.path)) == "fsfreeze hook has terminated abnormally"
    assert sb.hook_calls() == ["freeze", "thaw"]
    assert not fs.is_frozen()


def test_hanging_hook_is_killed_with_its_process_group(sb):
    fs = sb.fs()
    hook = sb.hook('[ "$1" = freeze ] && { sleep 300.25 & sleep 300.5; }; exit 0')
    ag = sb.agent("-F%s" % hook, "--hook-timeout=2")
    t0 = time.monotonic()
    with ag.conn() as c:
        desc = error_desc(freeze_list(c, fs.path))
        took = time.monotonic() - t0
        assert "timed out" in desc and "killed" in desc, desc
        assert took < 6, "freeze answered after %.1f s with a 2 s hook timeout" % took
        assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
    left = subprocess.run(["pgrep", "-f", "sleep 300.[25]"], stdout=subprocess.PIPE, text=True)
    assert left.stdout == "", "hook processes survived the timeout: %s" % left.stdout
    assert sb.hook_calls() == ["freeze", "thaw"]
    assert not fs.is_frozen()


def test_background_child_holding_stdout_does_not_hang_the_agent(sb):
    fs = sb.fs()
    # The classic mysql-flush.sh shape: a background child that inherits
    # stdout and lives on.  qemu-ga 8+ reads the pipe to EOF and hangs here.
    hook = sb.hook('[ "$1" = freeze ] && sleep 301.5 &\nexit 0')
    ag = sb.agent("-F%s" % hook)
    try:
        with ag.conn() as c:
            t0 = time.monotonic()
            assert freeze_list(c, fs.path) == {"return": 1}
            assert time.monotonic() - t0 < 3
            assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
        assert sb.hook_calls() == ["freeze", "thaw"]
    finally:
        subprocess.run(["pkill", "-f", "sleep 301.5"])
    assert not fs.is_frozen()


@pytest.mark.parametrize("case", ["missing", "not-executable"])
def test_unusable_hook_fails_cleanly(sb, case):
    fs = sb.fs()
    if case == "missing":
        hook = sb.dir / "no-such-hook"
        want = "can't access fsfreeze hook '%s': No such file or directory" % hook
    else:
        hook = sb.hook("exit 0", mode=0o644)
        want = "can't access fsfreeze hook '%s': Permission denied" % hook
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        assert error_desc(freeze_list(c, fs.path)) == want
        assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
    assert sb.hook_calls() == []
    assert not fs.is_frozen() and not marker(ag).exists()


def test_hook_writable_by_others_is_refused(sb):
    fs = sb.fs()
    hook = sb.hook("exit 0", mode=0o757)
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        desc = error_desc(freeze_list(c, fs.path))
        assert "writable by group or others" in desc and str(hook) in desc, desc
    assert sb.hook_calls() == []
    assert not fs.is_frozen()


@pytest.mark.parametrize("bad", ["/tmp/qfz-not-a-mount", "SUBDIR"])
def test_freeze_list_entry_that_is_not_a_mount_point(sb, bad):
    fs = sb.fs()
    if bad == "SUBDIR":
        bad = fs.path + "/lost+found"
    hook = sb.hook("exit 0")
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        desc = error_desc(freeze_list(c, fs.path, bad))
        assert bad in desc and "not the mount point" in desc, desc
    assert sb.hook_calls() == [], "a hook ran for a freeze that was invalid"
    assert not fs.is_frozen()


def test_freeze_while_frozen_is_refused_like_qemu_ga(sb):
    fs = sb.fs()
    hook = sb.hook("exit 0")
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        assert freeze_list(c, fs.path) == {"return": 1}
        r = freeze_list(c, fs.path)
        assert r["error"] == {"class": "CommandNotFound", "desc":
                              "Command guest-fsfreeze-freeze-list " + FROZEN_DISABLED}
        assert c.cmd("guest-get-time")["error"]["class"] == "CommandNotFound"
        assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
    assert sb.hook_calls() == ["freeze", "thaw"]


def test_thaw_while_thawed_runs_no_hook(sb):
    sb.fs()
    hook = sb.hook("exit 0")
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        assert c.cmd("guest-fsfreeze-thaw") == {"return": 0}
    assert sb.hook_calls() == []


def test_client_gone_during_hook_and_while_frozen(sb):
    fs = sb.fs()
    hook = sb.hook('[ "$1" = freeze ] && sleep 1; exit 0')
    ag = sb.agent("-F%s" % hook)
    c = ag.conn()
    c.send({"execute": "guest-fsfreeze-freeze-list", "arguments": {"mountpoints": [fs.path]}})
    c.close()  # the host goes away while the freeze hook runs
    with ag.conn() as c2:  # served once the agent is done with the freeze
        assert c2.cmd("guest-fsfreeze-status") == {"return": "frozen"}
    with ag.conn() as c3:  # and it stays frozen across clients
        assert c3.cmd("guest-fsfreeze-status") == {"return": "frozen"}
        assert fs.is_frozen()
        assert c3.cmd("guest-fsfreeze-thaw") == {"return": 1}
    assert sb.hook_calls() == ["freeze", "thaw"]
    assert not fs.is_frozen()


def test_sigterm_while_frozen_thaws_then_exits(sb):
    fs = sb.fs()
    hook = sb.hook("exit 0")
    ag = sb.agent("-F%s" % hook)
    w = sb.writer(fs)
    assert wait_for(lambda: w.count() >= 3)
    with ag.conn() as c:
        assert freeze_list(c, fs.path) == {"return": 1}
    n = w.count()
    ag.signal(signal.SIGTERM)
    assert ag.wait(timeout=20) == 0
    assert not fs.is_frozen()
    assert wait_for(lambda: w.count() > n + 3)
    assert sb.hook_calls() == ["freeze", "thaw"]
    assert not marker(ag).exists()
    assert "thawed 1 filesystem(s) before exiting" in ag.log_text()


@pytest.mark.parametrize("recovery", ["thaw", "watchdog"])
def test_sigkill_while_frozen_then_restart(sb, recovery):
    fs = sb.fs()
    hook = sb.hook("exit 0")
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        assert freeze_list(c, fs.path) == {"return": 1}
    ag.signal(signal.SIGKILL)
    ag.wait()
    assert fs.is_frozen() and marker(ag).exists()
    args = ["-F%s" % hook, "-t", str(ag.statedir)]
    if recovery == "watchdog":
        args.append("--freeze-timeout=2")
    ag2 = sb.agent(*args)
    with ag2.conn() as c:
        assert c.cmd("guest-fsfreeze-status") == {"return": "frozen"}
        assert "error" in c.cmd("guest-get-time")
        if recovery == "thaw":
            assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
        else:
            assert wait_for(lambda: not fs.is_frozen(), timeout=10)
            assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
    assert not fs.is_frozen() and not marker(ag).exists()
    assert sb.hook_calls() == ["freeze", "thaw"], "the owed thaw hook did not run exactly once"
    assert "previous instance appears to have exited with frozen filesystems" in ag2.log_text()


def test_watchdog_thaws_when_no_thaw_comes(sb):
    fs = sb.fs()
    hook = sb.hook("exit 0")
    ag = sb.agent("-F%s" % hook, "--freeze-timeout=1")
    with ag.conn() as c:
        assert freeze_list(c, fs.path) == {"return": 1}
        assert wait_for(lambda: not fs.is_frozen(), timeout=10)
        assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
        report = c.cmd("quiesce-freeze-report")["return"]
        assert report["auto-thawed"] is True and report["filesystems"] == 1
        # a late thaw from the host finds nothing to do: 0 tells it what happened
        assert c.cmd("guest-fsfreeze-thaw") == {"return": 0}
    assert sb.hook_calls() == ["freeze", "thaw"]
    assert "the watchdog thawed 1 filesystem(s)" in ag.log_text()


def test_freeze_of_nothing_still_runs_thaw_hook(sb):
    fs = sb.fs()
    hook = sb.hook("exit 0")
    ag = sb.agent("-F%s" % hook)
    subprocess.run(["fsfreeze", "-f", fs.path], check=True)  # someone else froze it: EBUSY
    try:
        with ag.conn() as c:
            assert freeze_list(c, fs.path) == {"return": 0}
            assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
        assert sb.hook_calls() == ["freeze", "thaw"]
    finally:
        fs.thaw()


def test_bind_mount_of_one_device_is_frozen_once(sb):
    fs = sb.fs()
    bind = sb.dir / "bind"
    bind.mkdir()
    subprocess.run(["mount", "--bind", fs.path, str(bind)], check=True)
    try:
        ag = sb.agent()
        with ag.conn() as c:
            assert freeze_list(c, fs.path, bind) == {"return": 1}
            assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
    finally:
        fs.thaw()
        subprocess.run(["umount", str(bind)])


def test_nested_loop_filesystem_is_frozen_first(sb):
    """A filesystem whose image lives on another: freezing the outer one
    first would block the inner one's freeze forever.  Reverse mount order
    freezes the inner one first."""
    outer = sb.fs("outer")
    import sandbox
    inner = sandbox.LoopFs(outer.path, "inner")  # image on `outer`, mounted inside it
    sb.filesystems.insert(0, inner)  # thawed and unmounted before outer
    ag = sb.agent()
    with ag.conn(timeout=20) as c:
        assert freeze_list(c, outer.path, inner.path) == {"return": 2}
        assert c.cmd("guest-fsfreeze-thaw") == {"return": 2}
    assert not outer.is_frozen() and not inner.is_frozen()


def test_log_on_the_frozen_filesystem_never_blocks_the_agent(sb):
    fs = sb.fs()
    log = Path(fs.path) / "agent.log"
    ag = sb.agent("-l", str(log))
    with ag.conn(timeout=10) as c:
        assert freeze_list(c, fs.path) == {"return": 1}
        for _ in range(3):  # each would log at debug level
            assert c.cmd("guest-ping") == {"return": {}}
        assert "error" in c.cmd("guest-get-time")
        assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
    text = log.read_text()
    assert "guest-fsfreeze called" in text and "running guest-ping" in text, \
        "messages held during the freeze were not written after the thaw"


def test_held_log_records_keep_the_time_they_were_logged(sb):
    """A record held while frozen is written after the thaw with the time it
    was logged, not the time of the thaw: an admin reading the log must see
    when things happened inside the window."""
    fs = sb.fs()
    log = Path(fs.path) / "agent.log"
    ag = sb.agent("-l", str(log), "-v")
    with ag.conn(timeout=10) as c:
        assert freeze_list(c, fs.path) == {"return": 1}
        assert c.cmd("guest-ping") == {"return": {}}
        time.sleep(1.2)  # the gap to be seen in the stamps, not synchronisation
        assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
    lines = log.read_text().splitlines()
    ping = next(l for l in lines if "running guest-ping" in l)
    thaw = next(l for l in lines if "guest-fsthaw called" in l)
    stamp = lambda l: datetime.datetime.strptime(l.split(" ", 1)[0], "%Y-%m-%dT%H:%M:%S.%f")
    assert (stamp(thaw) - stamp(ping)).total_seconds() >= 1.0, (ping, thaw)


def test_dispatcher_and_application_hooks_through_the_agent(sb):
    """hooks/fsfreeze-hook as the agent's hook, with two application hooks:
    a failure in the second undoes the first, the freeze fails and nothing is
    frozen; then (failing hook removed) a normal freeze/thaw.  Application
    thaws must be idempotent: after a failed freeze the dispatcher undoes what
    it froze, and the agent still owes (and runs) the dispatcher's thaw."""
    import shutil
    fs = sb.fs()
    etc = sb.dir / "etc-qemu"
    (etc / "fsfreeze-hook.d").mkdir(parents=True)
    dispatcher = etc / "fsfreeze-hook"
    shutil.copy(Path(__file__).resolve().parents[2] / "hooks" / "fsfreeze-hook", dispatcher)
    os.chmod(dispatcher, 0o755)
    calls = sb.dir / "app-calls"
    for name, body in (("10-db", "exit 0"), ("20-cache", '[ "$1" = freeze ] && exit 7; exit 0')):
        p = etc / "fsfreeze-hook.d" / name
        p.write_text('#!/bin/sh\necho "%s $1" >> %s\n%s\n' % (name, calls, body))
        os.chmod(p, 0o755)
    env = {"FSFREEZE_HOOK_LOG": str(sb.dir / "dispatcher.log"), "FSFREEZE_HOOK_RUNDIR": str(sb.dir)}
    ag = sb.agent("-F%s" % dispatcher, env=env)
    with ag.conn() as c:
        assert error_desc(freeze_list(c, fs.path)) == "fsfreeze hook has failed with status 1"
        assert not fs.is_frozen()
        # the dispatcher thaws the failing hook too, then the agent's owed thaw runs both again
        assert calls.read_text().split("\n")[:4] == ["10-db freeze", "20-cache freeze", "20-cache thaw",
                                                     "10-db thaw"]
        assert calls.read_text().split("\n")[4:6] == ["20-cache thaw", "10-db thaw"]
        (etc / "fsfreeze-hook.d" / "20-cache").unlink()
        calls.unlink()
        assert freeze_list(c, fs.path) == {"return": 1}
        assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
    assert calls.read_text().split() == ["10-db", "freeze", "10-db", "thaw"]
    assert "20-cache freeze: failed with status 7" in (sb.dir / "dispatcher.log").read_text()
    assert "fsfreeze hook has failed with status 1" in ag.log_text()


class Daemon:
    """quiesce-agent -d, found by its socket path (its pidfile may not exist
    yet); stopped by the sandbox's close() like the other agents."""

    def __init__(self, sb, *args):
        self.dir = Path(sb.dir) / ("d%d" % len(sb.agents))
        self.dir.mkdir()
        self.sock = self.dir / "sock"
        self.log = self.dir / "agent.log"
        self.pid = None
        sb.agents.append(self)
        r = subprocess.run([str(AGENT), "-d", "-m", "unix-listen", "-p", str(self.sock), "-v",
                            "-l", str(self.log), *args], timeout=10)
        assert r.returncode == 0
        assert wait_for(self.find, timeout=10), "no daemon with socket %s" % self.sock

    def find(self):
        for p in Path("/proc").iterdir():
            try:
                if p.name.isdigit() and str(self.sock).encode() in (p / "cmdline").read_bytes():
                    self.pid = int(p.name)
                    return True
            except OSError:
                pass
        return False

    def conn(self, timeout=30.0):
        qga.wait_for_socket(str(self.sock), timeout=10)
        return qga.Conn(str(self.sock), timeout=timeout)

    def log_text(self):
        return self.log.read_text(errors="replace")

    def stop(self):
        if self.pid is None:
            return 0
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return 0
        if wait_for(lambda: not Path("/proc/%d" % self.pid).exists(), timeout=30):
            return 0
        os.kill(self.pid, signal.SIGKILL)
        return -9


@pytest.mark.parametrize("where", ["logfile", "pidfile"])
def test_restart_frozen_with_log_pidfile_and_marker_on_the_frozen_fs(sb, where):
    """Issue 10 item 1: an agent restarted frozen must not write to a guest
    filesystem (log file, pidfile) before it thaws: the write would block it
    for good in D state, the exact case the state marker exists for."""
    fs = sb.fs()
    state = Path(fs.path) / "state"
    state.mkdir()
    log = Path(fs.path) / "agent.log"
    hook = sb.hook("exit 0")
    ag = sb.agent("-F%s" % hook, "-t", str(state), "-l", str(log))
    with ag.conn() as c:
        assert freeze_list(c, fs.path) == {"return": 1}
    ag.signal(signal.SIGKILL)
    ag.wait()
    assert fs.is_frozen() and (state / "qga.state.isfrozen").exists()

    pidfile = Path(fs.path) / "agent.pid"
    if where == "logfile":
        ag2 = sb.agent("-F%s" % hook, "-t", str(state), "-l", str(log))
        log2 = log
    else:
        ag2 = Daemon(sb, "-F%s" % hook, "-t", str(state), "-f", str(pidfile),
                     "--freeze-timeout=2")
        log2 = ag2.log  # not on the frozen filesystem
    with ag2.conn(timeout=10) as c:
        assert c.cmd("guest-fsfreeze-status") == {"return": "frozen"}
        assert "error" in c.cmd("guest-get-time")
        if where == "logfile":
            assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
        else:
            assert wait_for(lambda: not fs.is_frozen(), timeout=10), "the watchdog did not thaw"
            assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
    assert not fs.is_frozen() and not (state / "qga.state.isfrozen").exists()
    assert sb.hook_calls() == ["freeze", "thaw"]
    if where == "logfile":
        assert log2.read_text().count("started (method unix-listen)") == 2  # both instances
    else:
        assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() == str(ag2.pid)), \
            "the pidfile was not written after the thaw"
    assert "previous instance appears to have exited with frozen filesystems" in log2.read_text()


def test_watchdog_thaws_while_the_channel_cannot_be_opened(sb):
    """Issue 10 item 3: with --retry-path and no channel, the agent used to
    sleep in a retry loop that watched only the signalfd, so an agent
    restarted frozen was not thawed by its watchdog until the host came."""
    fs = sb.fs()
    hook = sb.hook("exit 0")
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        assert freeze_list(c, fs.path) == {"return": 1}
    ag.signal(signal.SIGKILL)
    ag.wait()
    assert fs.is_frozen()
    ag2 = sb.agent("-F%s" % hook, "-t", str(ag.statedir), "--freeze-timeout=2", "-r",
                   "-m", "isa-serial", "-p", str(sb.dir / "no-such-port"), wait=False)
    assert wait_for(lambda: not fs.is_frozen(), timeout=15), "not thawed while the channel is missing"
    assert wait_for(lambda: sb.hook_calls() == ["freeze", "thaw"])
    assert not marker(ag).exists()
    assert ag2.proc.poll() is None, "the agent must keep retrying its channel"
    # the watchdog's line is written once its thaw hook has returned
    assert wait_for(lambda: "the watchdog thawed 1 filesystem(s)" in ag2.log_text()), ag2.log_text()
    assert "will retry" in ag2.log_text()


def hook_output(log, action):
    """The freeze hook's output as the log shows it, pieces joined."""
    lines, mark = [], "fsfreeze hook %s output" % action
    for rec in log.splitlines():
        if mark + ": " in rec:
            lines.append(rec.split(mark + ": ", 1)[1])
        elif mark + " (continued): " in rec:
            lines[-1] += rec.split(mark + " (continued): ", 1)[1]
    return lines


def test_hook_that_never_stops_writing_is_killed_at_its_timeout(sb):
    """Issue 10 item 5: the output reader read until EAGAIN, so a hook that
    writes faster than the agent reads held it past its timeout."""
    fs = sb.fs()
    hook = sb.hook('[ "$1" = freeze ] && { yes qfz-loud-7 & cat /dev/zero & exec yes qfz-loud-7; }\n'
                   "exit 0")
    ag = sb.agent("-F%s" % hook, "--hook-timeout=2")
    with ag.conn(timeout=60) as c:
        desc = error_desc(freeze_list(c, fs.path))
        assert "timed out" in desc and "killed" in desc, desc
        assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
    assert wait_for(lambda: subprocess.run(["pgrep", "-f", "yes qfz-loud-[7]"],
                                           stdout=subprocess.PIPE).stdout == b""), \
        "the hook's process group survived its timeout"
    assert sb.hook_calls() == ["freeze", "thaw"]
    assert not fs.is_frozen()
    assert "output beyond 65536 bytes was dropped" in ag.log_text()


def test_long_hook_output_line_reaches_the_log_whole(sb):
    """Issue 10 item 5: every log record was cut at 511 bytes, so a hook's
    output (one record) lost all but its first line's start."""
    fs = sb.fs()
    hook = sb.hook('[ "$1" = freeze ] || exit 0\n'
                   'i=0; while [ $i -lt 200 ]; do printf "%09d," $i; i=$((i+1)); done; echo\n'
                   "echo second line")
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        assert freeze_list(c, fs.path) == {"return": 1}
        assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
    want = "".join("%09d," % i for i in range(200))
    assert len(want) == 2000
    assert hook_output(ag.log_text(), "freeze") == [want, "second line"]


def test_background_child_of_a_hook_can_write_after_the_hook_returned(sb):
    """Issue 10 item 9: the agent closed the hook's output pipe when the hook
    exited, so a background child (a lock holder) that wrote later died of
    SIGPIPE.  Now the pipe outlives the hook and what arrives is logged."""
    fs = sb.fs()
    alive = sb.dir / "alive"
    hook = sb.hook('[ "$1" = freeze ] && { (sleep 1; echo late; echo alive > %s) & }\nexit 0' % alive)
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        assert freeze_list(c, fs.path) == {"return": 1}
        assert wait_for(alive.exists, timeout=10), "the hook's background child died writing"
        assert c.cmd("guest-fsfreeze-thaw") == {"return": 1}
    assert wait_for(lambda: "fsfreeze hook freeze output (background): late" in ag.log_text())
    assert sb.hook_calls() == ["freeze", "thaw"]


def test_hook_in_a_directory_writable_by_others_is_refused(sb):
    """Issue 10 item 8: only the hook file was checked; anyone who can write
    to a directory on its path could put another file there."""
    fs = sb.fs()
    d = sb.dir / "open-dir"
    d.mkdir()
    os.chmod(d, 0o777)
    hook = d / "hook.sh"
    hook.write_text("#!/bin/sh\necho \"$1\" >> %s\n" % sb.calls)
    os.chmod(hook, 0o755)
    ag = sb.agent("-F%s" % hook)
    with ag.conn() as c:
        desc = error_desc(freeze_list(c, fs.path))
        assert "directory '%s' is writable by group or others" % d in desc, desc
        assert c.cmd("guest-fsfreeze-status") == {"return": "thawed"}
    assert sb.hook_calls() == []
    assert not fs.is_frozen() and not marker(ag).exists()
