"""The filesystem-freeze family against qemu-ga 7.2, on loop-mounted test filesystems.

SAFETY.  Freezing a filesystem this machine uses (/, or what holds /tmp or the repo)
hangs it for good.  So this module
  - enters a private mount namespace (sandbox.enter_private_mount_ns(), as the freeze
    tier does) before it mounts anything, and checks that pid 1 cannot see its mounts;
  - mounts its own filesystems under a fresh /tmp/qcfz-XXXXXXXX: an ext4 (`{E}`), an
    xfs (`{X}`) and a bind mount of the ext4 (`{B}`);
  - sends guest-fsfreeze-freeze-list only with an explicit list whose strings are those
    mount points (possibly with trailing slashes), directories inside them, or ""; never
    guest-fsfreeze-freeze, never guest-fstrim (guard() checks every request before
    anything is sent).  The empty list is sent too: qemu-ga 7.2 freezes nothing there
    (its loop matches each mount against the list), and quiesce-agent before issue 10
    froze *everything* — so ours runs with QUIESCE_MOUNTINFO naming a copy of the test
    mounts' mountinfo lines, and [] is refused unless the binary knows that variable;
  - runs quiesce-agent with an explicit hook or `--fsfreeze-hook=` (it would otherwise
    use /etc/qemu/fsfreeze-hook), and with `--freeze-timeout=10` as a last safety net;
  - thaws every test filesystem (FITHAW until it fails) after each agent's run, after
    each case and in teardown, before anything is unmounted.

Both agents see the same mounts, so a case runs on qemu-ga to its end and then on ours
(never both at once), each agent ending thawed.  A case's steps are requests (one reply
line each, read with a generous timeout, so no timing guesses), observations that add a
pseudo-line (the state marker file, the hook's calls, whether another tool's freeze is
still in place) and actions of another tool (fsfreeze -f on a test filesystem).  The run
ends with the usual resync (0xFF + guest-sync-delimited) and a pseudo-line naming any
test filesystem the agent left frozen.  Everything then compares like a table case
(cases.check_results: the registry, tolerances, self-test mode), after the work
directory's path is replaced by `{W}`.

Hooks: every agent gets QC_HOOK_LOG=<its temp dir>/hook.log in its environment; the
hook scripts append their argument to that file, so each agent has its own call log.
"""
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile

import pytest

from cases import cmd, params, check_results
from compare import Near
from harness import (REF_BIN, OUR_BIN, RESYNC, SELF_TEST, AgentSpec, Agent, Marker, Result, is_sync_reply,
                     stop_pair, supports, REPO)

sys.path.insert(0, str(REPO / "tests" / "pylib"))
import sandbox  # noqa: E402

REPLY_TIMEOUT = 30.0   # per request; hooks here take milliseconds
FREEZE_TIMEOUT = 10    # ours' auto-thaw watchdog: a last safety net, never reached by a case

# ---------------------------------------------------------------- steps


class Observe:
    """A pseudo-line recording a fact after the preceding replies arrived."""

    def __init__(self, what, arg=None):
        self.what, self.arg = what, arg

    def __repr__(self):
        return "<observe %s%s>" % (self.what, " " + self.arg if self.arg else "")


class Do:
    """Another tool acts on a test filesystem (fsfreeze -f)."""

    def __init__(self, what, arg):
        self.what, self.arg = what, arg

    def __repr__(self):
        return "<%s %s>" % (self.what, self.arg)


MARKER = Observe("state-marker")
HOOKS = Observe("hook-calls")


def still_frozen(fs):
    """Observe whether fs is frozen (by another tool's freeze), and thaw it."""
    return Observe("still-frozen", fs)


def freeze_by_other_tool(fs):
    return Do("fsfreeze -f", fs)


def freeze_list(*paths):
    return cmd("guest-fsfreeze-freeze-list", b'{"mountpoints":[' + b",".join(b'"%s"' % p for p in paths) + b"]}")


STATUS = cmd("guest-fsfreeze-status")
THAW = cmd("guest-fsfreeze-thaw")
PING = cmd("guest-ping")
SYNC = cmd("guest-sync", b'{"id":7}')
INFO = cmd("guest-info")
GET_TIME = cmd("guest-get-time")
FSINFO = cmd("guest-get-fsinfo")
# wrong-typed mode: an argument error even if the agent were not frozen, so never a shutdown
SHUTDOWN_BAD = cmd("guest-shutdown", b'{"mode":1}')


# ---------------------------------------------------------------- cases

class FCase:
    def __init__(self, id, hook, steps, tolerances=(), ref_has=()):
        self.id = id
        self.hook = hook              # key of HOOKS_SPECS: which agent pair runs it
        self.steps = steps
        self.tolerances = tolerances
        self.ref_has = ref_has        # lines qemu-ga must send (the case exercises what it says)

    def param(self):
        return pytest.param(self, id=self.id)


C = FCase
FS_TOL = [Near("return.*.used-bytes", 1 << 30)]   # / is in use meanwhile; the test filesystems are idle
ONE, TWO, ZERO = b'{"return": 1}', b'{"return": 2}', b'{"return": 0}'
FROZEN = b'{"return": "frozen"}'

CASES = [
    # One ext4: state, what is allowed while frozen, the marker, thaw twice.
    C("freeze-one-ext4-frozen-state", "none", [
        STATUS, freeze_list(b"{E}"), STATUS, MARKER,
        PING, SYNC, STATUS,
        GET_TIME, FSINFO, freeze_list(b"{E}"), SHUTDOWN_BAD, cmd("guest-no-such-command"),
        cmd("guest-get-time", id=b'"t"'), cmd("guest-fsfreeze-status", id=b"[1]"),
        THAW, MARKER, STATUS, THAW], ref_has=[ONE, FROZEN]),
    C("freeze-thaw-with-ids", "none", [
        cmd("guest-fsfreeze-freeze-list", b'{"mountpoints":["{X}"]}', id=b'"f"'),
        cmd("guest-fsfreeze-freeze-list", b'{"mountpoints":["{X}"]}', id=b"2"),
        cmd("guest-fsfreeze-status", id=b'{"a":1}'), cmd("guest-fsfreeze-thaw", id=b'"t"')], ref_has=[
        b'{"return": 1, "id": "f"}']),
    C("freeze-frozen-guest-info", "none", [freeze_list(b"{E}"), INFO, THAW], ref_has=[ONE]),
    C("freeze-state-marker", "none", [MARKER, freeze_list(b"{X}"), MARKER, THAW, MARKER], ref_has=[ONE]),
    # Several filesystems.
    C("freeze-two-ext4-xfs", "none", [freeze_list(b"{E}", b"{X}"), STATUS, THAW, STATUS], ref_has=[TWO]),
    C("freeze-two-xfs-ext4", "none", [freeze_list(b"{X}", b"{E}"), THAW], ref_has=[TWO]),
    C("freeze-fs-and-its-bind-mount", "none", [freeze_list(b"{E}", b"{B}"), STATUS, THAW], ref_has=[ONE]),
    C("freeze-bind-mount-alone", "none", [freeze_list(b"{B}"), STATUS, THAW], ref_has=[ONE]),
    C("freeze-same-mount-twice", "none", [freeze_list(b"{E}", b"{E}"), THAW], ref_has=[ONE]),
    # Entries that are not mount points (registered: ours refuses the whole list).
    C("freeze-trailing-slash", "none", [freeze_list(b"{E}/"), STATUS, THAW]),
    C("freeze-trailing-slashes-two", "none", [freeze_list(b"{X}//"), STATUS, THAW]),
    C("freeze-not-a-mount-point", "none", [freeze_list(b"{E}", b"{E}/lost+found"), STATUS, MARKER, THAW],
      ref_has=[ONE]),
    C("freeze-not-a-mount-point-alone", "none", [freeze_list(b"{E}/lost+found"), STATUS, THAW]),
    C("freeze-empty-string", "none", [freeze_list(b""), STATUS, THAW]),
    C("freeze-empty-string-and-mount", "none", [freeze_list(b"{E}", b""), STATUS, THAW], ref_has=[ONE]),
    # An empty list names nothing: 0, thawed (qemu-ga 7.2 matches each mount against it).
    C("freeze-list-empty", "none", [freeze_list(), STATUS, MARKER, THAW, STATUS], ref_has=[ZERO]),
    # Wrong-typed arguments.
    C("freeze-mountpoints-not-a-list", "none",
      [cmd("guest-fsfreeze-freeze-list", b'{"mountpoints":"{E}"}'), STATUS, THAW]),
    C("freeze-mountpoints-element-not-a-string", "none",
      [cmd("guest-fsfreeze-freeze-list", b'{"mountpoints":["{E}",1]}'), STATUS, THAW]),
    C("freeze-mountpoints-element-null", "none",
      [cmd("guest-fsfreeze-freeze-list", b'{"mountpoints":[null]}'), STATUS, THAW]),
    C("freeze-mountpoints-nested-list", "none",
      [cmd("guest-fsfreeze-freeze-list", b'{"mountpoints":[["{E}"]]}'), STATUS, THAW]),
    C("freeze-list-unexpected-argument", "none",
      [cmd("guest-fsfreeze-freeze-list", b'{"mountpoints":["{E}"],"x":1}'), STATUS, THAW]),
    C("thaw-unexpected-argument", "none", [cmd("guest-fsfreeze-thaw", b'{"x":1}'), STATUS]),
    # Another tool froze a test filesystem: FIFREEZE's EBUSY is skipped, thaw thaws it.
    C("freeze-already-frozen-by-another-tool", "none",
      [freeze_by_other_tool("E"), freeze_list(b"{E}"), STATUS, MARKER, still_frozen("E")],
      ref_has=[ZERO, Marker("<{E} was still frozen: yes>")]),
    C("freeze-one-of-two-already-frozen", "none",
      [freeze_by_other_tool("E"), freeze_list(b"{E}", b"{X}"), STATUS, THAW, still_frozen("E")],
      ref_has=[ONE, TWO]),
    C("thaw-thaws-another-tools-freeze", "none", [freeze_by_other_tool("X"), THAW, STATUS, still_frozen("X")],
      ref_has=[ONE]),

    # Hooks.  -F<hook> on both; the hook appends its argument to the agent's own log.
    C("hook-freeze-thaw", "ok", [freeze_list(b"{E}"), HOOKS, MARKER, STATUS, THAW, HOOKS, MARKER, STATUS],
      ref_has=[ONE, Marker("<hook calls: freeze thaw>")]),
    C("hook-freeze-thaw-two", "ok", [freeze_list(b"{X}", b"{E}"), HOOKS, THAW, HOOKS], ref_has=[TWO]),
    C("hook-thaw-when-thawed", "ok", [THAW, HOOKS, STATUS]),
    C("hook-freeze-of-nothing", "ok",
      [freeze_by_other_tool("E"), freeze_list(b"{E}"), HOOKS, STATUS, MARKER, still_frozen("E")],
      ref_has=[ZERO]),
    C("hook-freeze-fails", "fail3", [freeze_list(b"{E}"), HOOKS, STATUS, MARKER],
      ref_has=[b'{"error": {"class": "GenericError", "desc": "fsfreeze hook has failed with status 3"}}']),
    C("hook-freeze-fails-then-thaw", "fail3", [freeze_list(b"{E}"), STATUS, THAW, HOOKS]),
    C("hook-killed-by-signal", "kill", [freeze_list(b"{E}"), HOOKS, STATUS, MARKER],
      ref_has=[b'{"error": {"class": "GenericError", "desc": "fsfreeze hook has terminated abnormally"}}']),
    C("hook-freeze-list-empty", "ok", [freeze_list(), HOOKS, STATUS, MARKER, THAW, HOOKS],
      ref_has=[ZERO, Marker("<hook calls: freeze>")]),
    C("hook-missing", "missing", [freeze_list(b"{E}"), STATUS, MARKER, HOOKS],
      ref_has=[b'{"error": {"class": "GenericError", "desc": '
               b'"can\'t access fsfreeze hook \'{W}/hooks/no-such-hook\': No such file or directory"}}']),
    C("hook-missing-thaw", "missing", [THAW, STATUS]),
    C("hook-not-executable", "noexec", [freeze_list(b"{E}"), STATUS, MARKER, HOOKS],
      ref_has=[b'{"error": {"class": "GenericError", "desc": '
               b'"can\'t access fsfreeze hook \'{W}/hooks/noexec.sh\': Permission denied"}}']),

    # guest-get-fsinfo with the loop mounts (and the bind mount, listed twice as in 7.2).
    C("fsinfo-with-loop-and-bind-mounts", "none", [FSINFO], tolerances=FS_TOL),
]

HOOK_SCRIPTS = {
    "ok.sh": 'echo "$1" >> "$QC_HOOK_LOG"\nexit 0\n',
    "fail3.sh": 'echo "$1" >> "$QC_HOOK_LOG"\n[ "$1" = freeze ] && exit 3\nexit 0\n',
    "kill.sh": 'echo "$1" >> "$QC_HOOK_LOG"\n[ "$1" = freeze ] && kill -9 $$\nexit 0\n',
    "noexec.sh": 'echo "$1" >> "$QC_HOOK_LOG"\nexit 0\n',
}
HOOK_FILE = {"none": None, "ok": "ok.sh", "fail3": "fail3.sh", "kill": "kill.sh",
             "missing": "no-such-hook", "noexec": "noexec.sh"}


# ---------------------------------------------------------------- the sandbox


def _thaw_until_fails(path):
    """FITHAW until it fails; True if the first one succeeded (it was frozen)."""
    thawed = False
    for _ in range(16):
        r = subprocess.run(["fsfreeze", "-u", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            break
        thawed = True
    return thawed


class FreezeEnv:
    """The test filesystems and one agent pair per hook kind."""

    def __init__(self):
        self.wd = None
        self.filesystems = []     # LoopFs
        self.bind = None
        self.pairs = {}

    # -- setup / teardown

    def setup(self):
        before = os.readlink("/proc/thread-self/ns/mnt")
        sandbox.enter_private_mount_ns()
        if os.readlink("/proc/thread-self/ns/mnt") == before:
            raise RuntimeError("still in the original mount namespace")
        self.wd = tempfile.mkdtemp(prefix="qcfz-", dir="/tmp")
        self.filesystems.append(sandbox.LoopFs(self.wd, "e", "ext4"))
        self.filesystems.append(sandbox.LoopFs(self.wd, "x", "xfs"))
        self.bind = os.path.join(self.wd, "b")
        os.mkdir(self.bind)
        subprocess.run(["mount", "--bind", self.path("E"), self.bind], check=True)
        with open("/proc/1/mountinfo") as f:
            if self.wd in f.read():
                raise RuntimeError("test mounts are visible outside the private mount namespace")
        mounts = self.own_mounts()
        assert mounts == {self.path(k) for k in "EXB"}, mounts
        # The only mounts ours may ever freeze (QUIESCE_MOUNTINFO): the test mounts' lines.
        with open("/proc/thread-self/mountinfo") as f:
            lines = [l for l in f if l.split()[4] in mounts]
        assert len(lines) == 3, lines
        self.mountinfo = os.path.join(self.wd, "mountinfo")
        with open(self.mountinfo, "w") as f:
            f.writelines(lines)
        for k in ("E", "X"):
            st_m, st_wd = os.stat(self.path(k)), os.stat(self.wd)
            assert st_m.st_dev != st_wd.st_dev, "%s is not a mount" % self.path(k)
        hooks = os.path.join(self.wd, "hooks")
        os.mkdir(hooks)
        for name, body in HOOK_SCRIPTS.items():
            p = os.path.join(hooks, name)
            with open(p, "w") as f:
                f.write("#!/bin/sh\n" + body)
            os.chmod(p, 0o644 if name == "noexec.sh" else 0o755)

    def path(self, key):
        return {"E": self.filesystems[0].path, "X": self.filesystems[1].path, "B": self.bind,
                "W": self.wd}[key]

    def own_mounts(self):
        out = set()
        with open("/proc/thread-self/mountinfo") as f:
            for line in f:
                mp = line.split()[4]
                if mp == self.wd or mp.startswith(self.wd + "/"):
                    out.add(mp)
        return out

    def thaw_all(self):
        """Thaw every test filesystem; the names of those that were frozen."""
        return [k for k in ("E", "X") if _thaw_until_fails(self.path(k))]

    def close(self):
        problems = []
        if self.wd is None:
            return problems
        self.thaw_all()
        for kind in list(self.pairs):
            problems += ["agents %r: %s" % (kind, p) for p in self.discard(kind, compare=True)]
        self.thaw_all()
        if self.bind and os.path.ismount(self.bind):
            subprocess.run(["umount", self.bind], check=False)
        for fs in self.filesystems:
            fs.close()    # thaws, unmounts (autoclear detaches the loop device), removes the image
        left = self.own_mounts()
        if left:
            problems.append("mounts left behind: %s" % sorted(left))
        loops = subprocess.run(["losetup", "-a"], stdout=subprocess.PIPE, text=True).stdout
        loops = [l for l in loops.splitlines() if self.wd in l]
        if loops:
            problems.append("loop devices left behind: %s" % loops)
        if not left:
            shutil.rmtree(self.wd, ignore_errors=True)
        return problems

    # -- agents

    def spec(self, kind, binary):
        args = []
        hook = HOOK_FILE[kind]
        if hook:
            args.append("-F" + os.path.join(self.wd, "hooks", hook))
        if supports(binary, "--freeze-timeout"):       # quiesce-agent
            if not hook:
                args.append("--fsfreeze-hook=")       # not /etc/qemu/fsfreeze-hook
            args.append("--freeze-timeout=%d" % FREEZE_TIMEOUT)
        return AgentSpec("freeze-" + kind, args=args,
                         env={"QC_HOOK_LOG": "{dir}/hook.log", "QUIESCE_MOUNTINFO": self.mountinfo})

    def pair(self, kind):
        if kind not in self.pairs:
            ref = Agent("qemu-ga", REF_BIN, self.spec(kind, REF_BIN)).start()
            try:
                ours = Agent("ours", OUR_BIN, self.spec(kind, OUR_BIN)).start()
            except Exception:
                ref.stop()
                raise
            self.pairs[kind] = (ref, ours)
        return self.pairs[kind]

    def discard(self, kind, compare=False):
        """Stop a pair (thawed first, so qemu-ga answers SIGTERM); exit-status problems."""
        ref, ours = self.pairs.pop(kind)
        for a in (ref, ours):
            if a.alive():
                try:   # in case a failed case left the agent in its frozen state
                    c = a.connect(timeout=5)
                    try:
                        c.send_pumping(b"\xff" + THAW + RESYNC)
                        c.lines_until(is_sync_reply, 10)
                    finally:
                        c.close()
                except (OSError, EOFError, TimeoutError):
                    pass
        self.thaw_all()
        problems = stop_pair(ref, ours)
        return problems if compare else []

    # -- running a case

    def expand(self, data):
        for k in "EXBW":
            data = data.replace(b"{%s}" % k.encode(), self.path(k).encode())
        return data

    def normalise(self, line):
        w = self.wd.encode()
        if isinstance(line, Marker):
            return Marker(str(line).replace(self.wd, "{W}"))
        return line.replace(w, b"{W}")

    def run(self, agent, steps):
        """One agent's run of a case: a Result with one segment."""
        try:
            os.unlink(os.path.join(agent.dir, "hook.log"))
        except FileNotFoundError:
            pass
        seg = []
        c = agent.connect()
        try:
            for step in steps:
                if isinstance(step, Observe):
                    seg.append(self.observe(agent, step))
                elif isinstance(step, Do):
                    subprocess.run(["fsfreeze", "-f", self.path(step.arg)], check=True)
                else:
                    c.send_pumping(self.expand(step))
                    try:
                        seg.append(c.read_line(timeout=REPLY_TIMEOUT))
                    except TimeoutError:
                        seg.append(Marker("<no reply within %d s>" % REPLY_TIMEOUT))
                        break
            c.send_pumping(RESYNC)
            lines, ok = c.lines_until(is_sync_reply, REPLY_TIMEOUT)
            seg += lines
            if ok:   # anything after the sync reply is a stray extra reply
                r, _, _ = select.select([c.sock], [], [], 0.005)
                if r or c.buf:
                    seg += c.drain_segment(0.05)
        except (OSError, EOFError) as e:
            seg.append(Marker("<%s: %s>" % (type(e).__name__, e)))
        finally:
            c.close()
            left = self.thaw_all()
        seg.append(Marker("<test filesystems left frozen: %s>" % (" ".join(left) or "none")))
        return Result([[self.normalise(l) for l in seg]])

    def observe(self, agent, step):
        if step.what == "state-marker":
            there = os.path.exists(os.path.join(agent.dir, "qga.state.isfrozen"))
            return Marker("<state marker: %s>" % ("present" if there else "absent"))
        if step.what == "hook-calls":
            try:
                with open(os.path.join(agent.dir, "hook.log")) as f:
                    calls = f.read().split()
            except FileNotFoundError:
                calls = []
            return Marker("<hook calls: %s>" % (" ".join(calls) or "none"))
        if step.what == "still-frozen":
            return Marker("<{%s} was still frozen: %s>" % (step.arg, "yes" if _thaw_until_fails(
                self.path(step.arg)) else "no"))
        raise ValueError(step.what)

    def guard(self, steps):
        """Refuse any request that could freeze something other than the test filesystems."""
        roots = [self.path(k) for k in "EXB"]

        def allowed(p):
            if not isinstance(p, str):
                return True    # wrong type: an argument error
            if p == "":
                return True
            return any(p.rstrip("/") == r or p.startswith(r + "/") for r in roots)

        for step in steps:
            if isinstance(step, (Observe, Do)):
                if isinstance(step, Do) and step.arg not in ("E", "X"):
                    raise AssertionError("unsafe step %r" % step)
                continue
            data = self.expand(step)
            req = json.loads(data)
            name = req.get("execute")
            if name in ("guest-fsfreeze-freeze", "guest-fstrim") or b"fstrim" in data:
                raise AssertionError("forbidden request %r" % data)
            if name == "guest-shutdown":
                mode = req.get("arguments", {}).get("mode")
                if isinstance(mode, str) or mode is None:
                    raise AssertionError("guest-shutdown must have a wrong-typed mode: %r" % data)
            if name == "guest-fsfreeze-freeze-list" or b"freeze-list" in data:
                mps = (req.get("arguments") or {}).get("mountpoints")
                if mps == [] and not empty_list_is_safe():
                    raise AssertionError("%s may freeze everything on []: it does not read "
                                         "QUIESCE_MOUNTINFO" % OUR_BIN)
                if mps is None or not (isinstance(mps, list) or isinstance(mps, str)):
                    raise AssertionError("freeze-list needs an explicit list: %r" % data)
                for p in (mps if isinstance(mps, list) else [mps]):
                    for q in (p if isinstance(p, list) else [p]):
                        if not allowed(q):
                            raise AssertionError("freeze-list with a path outside the test mounts: %r" % data)


def empty_list_is_safe():
    """[] is safe with qemu-ga 7.2 (it freezes nothing) and with an agent that confines
    itself to QUIESCE_MOUNTINFO.  A binary that does not know the variable might be an
    old quiesce-agent, which froze every filesystem of this machine on []."""
    if SELF_TEST:
        return True
    with open(OUR_BIN, "rb") as f:
        return b"QUIESCE_MOUNTINFO" in f.read()


@pytest.fixture(scope="module")
def fenv():
    if os.geteuid() != 0:
        pytest.skip("freezing filesystems needs root")
    for tool in ("mkfs.ext4", "mkfs.xfs", "fsfreeze", "losetup"):
        if not shutil.which(tool):
            pytest.skip("%s is not installed" % tool)
    env = FreezeEnv()
    try:
        env.setup()
        yield env
    finally:
        problems = env.close()
        assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", params(CASES))
def test_freeze_family(fenv, case):
    fenv.guard(case.steps)
    ref_agent, our_agent = fenv.pair(case.hook)
    try:
        ref = fenv.run(ref_agent, case.steps)     # qemu-ga to its end, then ours: same mounts
        ours = fenv.run(our_agent, case.steps)
    except BaseException:
        fenv.thaw_all()
        fenv.discard(case.hook)
        raise
    problems = []
    for a in (ref_agent, our_agent):
        if not a.alive():
            problems.append("%s exited during the case; stderr: %s" % (a.role, a.stderr()[-2000:]))
    if problems:
        fenv.discard(case.hook)
    ref_lines = [l for s in ref.segments for l in s]
    for want in case.ref_has:
        want = Marker(want) if isinstance(want, Marker) else want
        if not any(type(l) is type(want) and l == want for l in ref_lines):
            problems.append("qemu-ga did not send %r: the case does not test what it says" % (want,))
    check_results(case.id, ref, ours, tolerances=case.tolerances, steps=case.steps, extra_problems=problems)
    if case.id == "fsinfo-with-loop-and-bind-mounts":
        _check_loop_entries(ref)


def _check_loop_entries(ref):
    """The case is only worth something if qemu-ga lists the test mounts as loop devices."""
    line = next(l for l in ref.segments[0] if isinstance(l, bytes) and b'"return": [' in l)
    fss = {fs["mountpoint"]: fs for fs in json.loads(line)["return"]}
    for mp, kind in (("{W}/e", "ext4"), ("{W}/x", "xfs"), ("{W}/b", "ext4")):
        fs = fss.get(mp)
        assert fs is not None, "qemu-ga does not list %s: %s" % (mp, sorted(fss))
        assert fs["type"] == kind and fs["disk"] == [] and fs["name"].startswith("loop"), fs
    assert fss["{W}/e"]["name"] == fss["{W}/b"]["name"]
