"""Start agents, run scripted exchanges, collect exactly what a client sees.

Two agents are compared: the reference (qemu-ga 7.2 at /usr/sbin/qemu-ga, override
with QGA_REFERENCE) and ours (QUIESCE_AGENT, default build/src/agent/quiesce-agent).
When both are the same file the suite runs in *self-test mode*: the registry of known
differences is ignored and every case must match exactly (this tests the framework).

A case is a list of *steps*: bytes (one write each), or DRAIN (collect the replies
that arrive until the agent is quiet; they form one *segment*).  After the last step
the runner resynchronises: it writes 0xFF + guest-sync-delimited with a fixed id and
reads up to that delimited reply.  Everything read after the last DRAIN, up to and
including that reply, is the final segment.  So a case's result is a list of segments,
each a list of reply lines, and the resync doubles as (a) a deterministic end marker
(no timing guesses, however slow the agent is) and (b) a probe of the parser state
the case left behind (the 0xFF's error reply shows any half-parsed input).
"""
import os
import select
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "pylib"))
from qga import Conn, wait_for_socket  # noqa: E402

# absolute, because agents are started with their temp dir as working directory
REF_BIN = os.path.abspath(os.environ.get("QGA_REFERENCE", "/usr/sbin/qemu-ga"))
OUR_BIN = os.path.abspath(os.environ.get("QUIESCE_AGENT", str(REPO / "build" / "src" / "agent" / "quiesce-agent")))


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


SELF_TEST = _same_file(REF_BIN, OUR_BIN)

SYNC_ID = 1234567
RESYNC = b'\xff{"execute":"guest-sync-delimited","arguments":{"id":%d}}' % SYNC_ID
QUIET = 0.25          # quiet period for DRAIN
SYNC_TIMEOUT = 10.0   # how long a resync may take (large inputs keep qemu-ga busy ~1.5 s)


class _Drain:
    def __repr__(self):
        return "DRAIN"


DRAIN = _Drain()


class Marker(str):
    """A pseudo-line recording an event instead of a reply (timeout, EOF, partial line)."""


# ---------------------------------------------------------------- binaries and options

_help_cache = {}


def binary_help(binary):
    if binary not in _help_cache:
        r = subprocess.run([binary, "--help"], capture_output=True, timeout=10)
        _help_cache[binary] = r.stdout.decode(errors="replace")
    return _help_cache[binary]


def supports(binary, long_opt):
    return long_opt in binary_help(binary)


_cmd_cache = {}


def command_list(binary):
    """Commands the binary knows, from `-b help` (one per line)."""
    if binary not in _cmd_cache:
        r = subprocess.run([binary, "-b", "help"], capture_output=True, timeout=10)
        _cmd_cache[binary] = [l for l in r.stdout.decode().split("\n") if l]
    return _cmd_cache[binary]


class AgentSpec:
    """How to start one kind of agent.  Strings may contain {dir} (the agent's temp dir).

    args      extra command-line arguments (after -m unix-listen -p SOCK -t DIR,
              unless channel=False, e.g. when the config file sets method/path)
    env       extra environment variables
    files     {name: bytes} written into the temp dir before start
    name      agents with the same name are started once and shared by cases
    config    text of a key file; passed as `-c FILE`, or as QGA_CONF=FILE to a binary
              without --config (qemu-ga 7.2)
    """

    def __init__(self, name="default", args=(), env=None, files=None, config=None, channel=True):
        self.name = name
        self.args = list(args)
        self.env = dict(env or {})
        self.files = dict(files or {})
        self.config = config
        self.channel = channel


def _split_list_opt(args, short, long):
    """Remove every -x VAL / --long=VAL / --long VAL from args; return (rest, [VAL...])."""
    rest, vals = [], []
    i = 0
    while i < len(args):
        a = args[i]
        if a in (short, long):
            vals.append(args[i + 1])
            i += 2
            continue
        if a.startswith(long + "="):
            vals.append(a[len(long) + 1:])
        elif a.startswith(short) and len(a) > len(short) and not a.startswith("--"):
            vals.append(a[len(short):])
        else:
            rest.append(a)
        i += 1
    return rest, vals


def _config_allow(text):
    """Pull `allow-rpcs=` out of a key file text (for binaries without allow-rpcs)."""
    keep, allow = [], []
    for line in text.split("\n"):
        k = line.split("=", 1)[0].strip()
        if k == "allow-rpcs" and "=" in line:
            allow += [x for x in line.split("=", 1)[1].strip().split(",") if x]
        else:
            keep.append(line)
    return "\n".join(keep), allow


def adapt(binary, spec, d):
    """argv and env to start `binary` as `spec` describes, in temp dir d.

    qemu-ga 7.2 has neither -c/--config nor -a/--allow-rpcs.  For such a binary the
    config file goes through QGA_CONF (which 7.2 reads), and an allow list A becomes
    the equivalent block list (all commands - A), added to any block list: the set of
    disabled commands, and so every reply and guest-info, is the same.
    """
    args = [a.replace("{dir}", d) for a in spec.args]
    # hermetic: only the spec sets the variables the agents read
    env = {k: v for k, v in os.environ.items()
           if k not in ("QGA_CONF", "QGA_OS_RELEASE", "QUIESCE_MOUNTINFO", "LISTEN_FDS", "LISTEN_PID")}
    env.update({k: v.replace("{dir}", d) for k, v in spec.env.items()})
    config = spec.config.replace("{dir}", d) if spec.config is not None else None
    if not supports(binary, "--allow-rpcs"):
        args, allow = _split_list_opt(args, "-a", "--allow-rpcs")
        if config is not None:
            config, callow = _config_allow(config)
            allow += callow
        allow = [x for v in allow for x in v.split(",") if x]
        if allow or any(a in ("-a",) or a.startswith("--allow-rpcs") for a in spec.args):
            blocked = [c for c in command_list(binary) if c not in allow]
            args += ["-b", ",".join(blocked)]
    if config is not None:
        path = os.path.join(d, "agent.conf")
        with open(path, "w") as f:
            f.write(config)
        if supports(binary, "--config"):
            args = ["-c", path] + args
        else:
            env["QGA_CONF"] = path
    return args, env


# ---------------------------------------------------------------- agent processes

RUNNING = {}   # pid -> Agent, to check nothing is left behind


class Agent:
    def __init__(self, role, binary, spec=None):
        self.role = role            # "qemu-ga" or "ours"
        self.binary = binary
        self.spec = spec or AgentSpec()
        self.proc = None
        self.killed = False
        self.dir = None
        self.sock = None
        self.exit_status = None

    def start(self, reuse_dir=None):
        self.dir = reuse_dir or tempfile.mkdtemp(prefix="qc-", dir="/tmp")
        self.sock = os.path.join(self.dir, "s")
        for name, data in self.spec.files.items():
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(data.replace(b"{dir}", self.dir.encode()) if isinstance(data, bytes) else data)
        args, env = adapt(self.binary, self.spec, self.dir)
        argv = [self.binary]
        if self.spec.channel:
            argv += ["-m", "unix-listen", "-p", self.sock, "-t", self.dir]
        argv += args
        self.argv = argv
        try:
            with open(os.path.join(self.dir, "stdout"), "wb") as out, \
                    open(os.path.join(self.dir, "stderr"), "wb") as err:
                self.proc = subprocess.Popen(argv, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=err)
        except OSError:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        RUNNING[self.proc.pid] = self
        try:
            wait_for_socket(self.sock, timeout=10, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError("%s did not come up: %s\nstderr: %s" % (self.role, " ".join(argv), self.stderr()))
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        try:
            with open(os.path.join(self.dir, "stderr"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def connect(self, timeout=5.0):
        return Client(self.sock, timeout=timeout)

    def stop(self, settle=0.1):
        """SIGTERM, SIGKILL after 5 s; returns the exit status (negative: killed by signal).

        qemu-ga 7.2 calls g_main_loop_quit() from its SIGTERM handler; when the signal
        lands while the main loop holds its context lock (e.g. just after a client went
        away) it deadlocks on that lock (seen in ~10% of stops right after a disconnect;
        gdb: g_main_loop_quit <signal handler> write() g_main_context_dispatch).  So
        wait `settle` seconds for the agent to go idle first, and if it still needs
        SIGKILL, say so in self.killed rather than blame the exit status."""
        self.killed = False
        if self.proc is None:
            return self.exit_status
        if self.proc.poll() is None:
            if settle:
                time.sleep(settle)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait()
        self.exit_status = self.proc.returncode
        RUNNING.pop(self.proc.pid, None)
        try:
            os.kill(self.proc.pid, 0)
            raise AssertionError("%s (pid %d) still exists after stop" % (self.role, self.proc.pid))
        except ProcessLookupError:
            pass
        self.last_stderr = self.stderr()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.proc = None
        return self.exit_status

    def kill_keep_dir(self):
        """SIGKILL (a crash); the temp dir, with whatever the agent left there, stays."""
        self.proc.kill()
        self.proc.wait()
        RUNNING.pop(self.proc.pid, None)
        self.exit_status = self.proc.returncode
        self.proc = None
        return self.dir

    def restart(self):
        self.stop()
        return self.start()


# ---------------------------------------------------------------- client

class Client(Conn):
    """qga.Conn plus writes that keep reading (so a big write can't deadlock against
    an agent that is busy writing replies) and a check for an unterminated line.

    connect() is retried on EAGAIN: qemu-ga listens with a backlog of 1 and serves one
    client at a time, so a non-blocking connect (Python's, with a timeout) can find the
    backlog full; a blocking client would simply wait there."""

    def __init__(self, path, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(path)
                break
            except BlockingIOError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
            except OSError:
                sock.close()
                raise
        super().__init__(sock=sock, timeout=timeout)

    def send_pumping(self, data, timeout=60.0):
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("write of %d bytes did not finish" % len(data))
            r, w, _ = select.select([self.sock], [self.sock], [], left)
            if r:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise EOFError("agent closed the connection during a write")
                self.buf += chunk
            if w:
                try:
                    n = self.sock.send(view[:1 << 20])
                except BlockingIOError:
                    n = 0
                view = view[n:]

    def lines_until(self, pred, timeout):
        """Reply lines up to and including the first for which pred(line) is true."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.read_line(timeout=max(0.0, left))
            except TimeoutError:
                out.append(Marker("<no sync reply within %.0fs%s>" % (
                    timeout, "; unterminated bytes %r" % self.buf[:200] if self.buf else "")))
                return out, False
            except EOFError:
                out.append(Marker("<EOF>"))
                return out, False
            out.append(line)
            if pred(line):
                return out, True

    def drain_segment(self, quiet=QUIET):
        try:
            lines = self.drain(quiet)
        except EOFError:
            return [Marker("<EOF>")]
        if self.buf:
            lines.append(Marker("<unterminated bytes %r>" % self.buf[:200]))
            self.buf = b""
        return lines


def is_sync_reply(line, sid=SYNC_ID):
    return line.startswith(b"\xff") and b'"return": %d' % sid in line


# ---------------------------------------------------------------- running a case

class Result:
    def __init__(self, segments, agent_died=None, exc=None):
        self.segments = segments
        self.agent_died = agent_died
        self.exc = exc

    def flat(self):
        return [l for s in self.segments for l in s]


def run_steps(agent, steps, gap=0.0, resync=True, sync_timeout=SYNC_TIMEOUT, client=None):
    """Run a case's steps against one agent on a fresh connection; return a Result."""
    segments, cur = [], []
    own = client is None
    c = client or agent.connect()
    try:
        for n, step in enumerate(steps):
            if step is DRAIN:
                segments.append(cur + c.drain_segment())
                cur = []
                continue
            if gap and n:
                time.sleep(gap)
            c.send_pumping(step() if callable(step) else step)
        if resync:
            c.send_pumping(RESYNC)
            lines, ok = c.lines_until(is_sync_reply, sync_timeout)
            cur += lines
            if ok:
                # Anything after the sync reply is a stray extra reply.
                r, _, _ = select.select([c.sock], [], [], 0.005)
                if r or c.buf:
                    cur += c.drain_segment(0.05)
        else:
            cur += c.drain_segment()
        segments.append(cur)
        return Result(segments)
    except (OSError, EOFError, TimeoutError) as e:
        segments.append(cur + [Marker("<%s: %s>" % (type(e).__name__, e))])
        return Result(segments, exc=e)
    finally:
        if own:
            c.close()


def stop_pair(ref, ours, settle=0.1):
    """Stop both (after one settle pause); problems if ours exits unlike qemu-ga."""
    time.sleep(settle)
    rs, os_ = ref.stop(settle=0), ours.stop(settle=0)
    if ref.killed:
        return []   # qemu-ga hung on SIGTERM (see Agent.stop): nothing to compare
    if rs != os_:
        return ["on SIGTERM qemu-ga exited %s, ours %s%s; ours' stderr: %s" % (
            rs, os_, " (needed SIGKILL)" if ours.killed else "", ours.last_stderr[-2000:])]
    return []
