# SPDX-License-Identifier: MIT
"""vmh: boot the VM tier's test guest under QEMU TCG and talk to it.

A Guest is one qemu-system-x86_64 process with the command line of
/work/shared/docs/vm-harness.md section 4 (q35, TCG, -nodefaults,
-no-reboot, kernel + initramfs from guest.sh, the agent's virtio-serial port
on a unix socket chardev, a qcow2 overlay as the data disk, a QMP socket,
-pidfile), in its own short directory under /tmp (unix socket paths must stay
under ~107 bytes).

One deliberate difference from section 4: the harness binds and listens on the
QMP and agent sockets itself and hands QEMU the listening fds
(`-chardev socket,fd=N,server=on,wait=off`).  The sockets therefore accept
connections from the moment QEMU is spawned, so nothing polls for a socket
file to appear; the QMP greeting is the ready signal for QEMU, the answer to
guest-sync-delimited the one for the agent.  The sockets still live at
<dir>/qmp.sock and <dir>/qga.sock for anything that connects by path.

The agent channel is driven with tests/pylib/qga.py (Conn), the same client
the other tiers use; this module only adds QMP, process handling and cleanup.

Cleanup: close() always ends QEMU (QMP quit, then SIGKILL by PID after a
timeout) and removes the directory.  Guests still open at interpreter exit
are closed by an atexit hook, and QEMU gets PR_SET_PDEATHSIG=SIGKILL so that
it dies with the harness even when the harness is SIGKILLed.

Guest(shell=True) adds a second virtio-serial port, SHELL_PORT, on
<dir>/shell.sock, and the harness stays connected to it from launch on.  A
guest that runs SHELL_RC (from its rc.local) executes each line the host
sends there and answers with the output and "@@EXIT <status>": Guest.shell()
runs a command in the guest and returns when it has finished.  That is how
tests make the guest act at an exact moment (write, thaw behind the agent's
back) and know it has, without sleeping.

Limits: stdlib only; one agent client at a time (the chardev serves one
client; a second one connects but hears nothing until the first leaves).
"""
import atexit
import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "pylib"))
import qga  # noqa: E402  (tests/pylib/qga.py)

GUEST_SH = HERE / "guest.sh"
QEMU = "qemu-system-x86_64"
AGENT_PORT = "org.qemu.guest_agent.0"
PORT_ID = "agentport"  # QEMU's id of that port, as in VSERPORT_CHANGE events
SHELL_PORT = "org.quiesce.test.shell"
# For the guest's rc.local: serve SHELL_PORT in the background (see above).
# The harness is connected before the guest boots, so reads block instead of
# returning end-of-file.
SHELL_RC = """#!/bin/sh
( port=
  while [ -z "$port" ]; do
	for p in /sys/class/virtio-ports/*; do
		[ "$(cat "$p/name" 2>/dev/null)" = %s ] && port=/dev/${p##*/}
	done
	[ -n "$port" ] || sleep 0.1
  done
  exec 3<>"$port"
  while read -r line <&3; do
	sh -c "$line" </dev/null >&3 2>&1
	echo "@@EXIT $?" >&3
  done ) &
""" % SHELL_PORT
BOOT_TIMEOUT = 120.0

_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not glibc: go without the safety net
    _prctl = None


def _child_setup():
    # Runs in the forked child before exec: die with the parent.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# ---------------------------------------------------------------------------
# guest.sh wrappers


def guest_paths():
    """Run `guest.sh paths` (which does the cached setup) and return its
    KEY=VALUE lines as a dict: KERNEL, KVER, KROOT, BUSYBOX, QEMU_GA, DATA_BASE."""
    out = subprocess.run([str(GUEST_SH), "paths"], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def build_initrd(agent, out, extra_files=()):
    """Initramfs with `agent` as /sbin/agent; extra_files are SRC:DEST[:MODE]."""
    subprocess.run([str(GUEST_SH), "initrd", str(agent), str(out), *extra_files], check=True)
    return Path(out)


# ---------------------------------------------------------------------------
# QMP


class QMPError(Exception):
    """An {"error": ...} reply; .error holds its class and desc."""

    def __init__(self, cmd, error):
        super().__init__("%s: %s: %s" % (cmd, error.get("class"), error.get("desc")))
        self.error = error


class QMP:
    """Minimal QMP client on a connected socket: commands one at a time,
    events kept in arrival order until someone waits for them."""

    def __init__(self, sock, timeout=30.0):
        self.sock = sock
        self.buf = b""
        self.events = []
        self.greeting = self._read(time.monotonic() + timeout)
        if "QMP" not in self.greeting:
            raise RuntimeError("not a QMP greeting: %r" % self.greeting)
        self.execute("qmp_capabilities")

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no QMP message in time")
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError("QMP connection closed")
                self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, cmd, args=None, timeout=30.0):
        """Run cmd; return its "return" value or raise QMPError."""
        req = {"execute": cmd}
        if args:
            req["arguments"] = args
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline)
            if "event" in msg:
                self.events.append(msg)
            elif "error" in msg:
                raise QMPError(cmd, msg["error"])
            elif "return" in msg:
                return msg["return"]

    def wait_event(self, name, timeout=30.0, match=None):
        """First event called `name` (and satisfying match(event), if given),
        taken out of the queue.  Earlier events stay queued."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for i in range(seen, len(self.events)):
                ev = self.events[i]
                if ev["event"] == name and (match is None or match(ev)):
                    del self.events[i]
                    return ev
            seen = len(self.events)
            msg = self._read(deadline)
            if "event" in msg:
                self.events.append(msg)


def sweep_stale(max_age=600.0):
    """Remove /tmp/qvm-* directories left by harness runs that were killed
    (SIGKILL skips every cleanup; PR_SET_PDEATHSIG still ends their QEMU).
    A directory goes if its QEMU pidfile names a process that is gone, or,
    lacking a pidfile, if it is older than max_age seconds."""
    uid = os.getuid()
    for d in Path("/tmp").glob("qvm-*"):
        try:
            st = os.lstat(d)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
                continue
            try:
                pid = int((d / "qemu.pid").read_text().strip())
                stale = not os.path.exists("/proc/%d" % pid)
            except (FileNotFoundError, ValueError):
                stale = time.time() - st.st_mtime > max_age
        except OSError:
            continue
        if stale:
            shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------
# Guest

_live = weakref.WeakSet()
# Terminal control sequences (SeaBIOS clears the screen) and stray controls.
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])|[\x00-\x08\x0b-\x1f]")


@atexit.register
def _close_all():
    for g in list(_live):
        g.close()


def _listen(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(8)
    return s


class Guest:
    """One test VM.  Typical use:

        with Guest(kernel, initrd, disk=base) as g:
            g.start()
            conn = g.agent()          # qga.Conn, already synced
            conn.cmd("guest-ping")

    kernel, initrd: paths; disk: a qcow2 image used as backing file of this
    guest's own overlay (None: no data disk); agent_args: extra arguments for
    the guest agent (list, passed as agentargs= on the kernel command line;
    no argument may contain a space); append: more kernel parameters;
    extra_qmp: number of additional QMP monitors, at <dir>/qmp1.sock ... (for
    a product under test while the harness keeps qmp.sock).
    """

    def __init__(self, kernel, initrd, disk=None, agent_args=(), append="", memory=512,
                 smp=1, extra_qmp=0, extra_qemu_args=(), keep=None, shell=False):
        self.kernel = str(kernel)
        self.initrd = str(initrd)
        self.base_disk = str(disk) if disk else None
        self.agent_args = list(agent_args)
        self.append = append
        self.memory = memory
        self.smp = smp
        self.extra_qmp = extra_qmp
        self.extra_qemu_args = list(extra_qemu_args)
        self.has_shell = shell
        self._shell = None
        self._shell_buf = b""
        self.keep = os.environ.get("QUIESCE_VM_KEEP") == "1" if keep is None else keep
        self.dir = Path(tempfile.mkdtemp(prefix="qvm-", dir="/tmp"))
        self.qmp_path = self.dir / "qmp.sock"
        self.agent_path = self.dir / "qga.sock"
        self.console_log = self.dir / "console.log"
        self.qemu_log = self.dir / "qemu.log"
        self.pidfile = self.dir / "qemu.pid"
        self.disk = self.dir / "data.qcow2" if self.base_disk else None
        self.proc = None
        self._qmp = None
        self._conns = []
        self._closed = False
        self.launched_at = None
        _live.add(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- launching ---------------------------------------------------------

    def cmdline(self, qmp_fd, agent_fd, shell_fd=None):
        if any(" " in a or '"' in a for a in self.agent_args):
            raise ValueError("agent arguments cannot contain spaces or quotes: %r"
                             % self.agent_args)
        append = "console=ttyS0 quiet"
        if self.agent_args:
            append += ' agentargs="%s"' % " ".join(self.agent_args)
        if self.append:
            append += " " + self.append
        d = self.dir
        cmd = [QEMU, "-machine", "q35", "-accel", "tcg", "-m", str(self.memory),
               "-smp", str(self.smp), "-nographic", "-nodefaults", "-no-reboot",
               "-serial", "file:%s" % self.console_log,
               "-kernel", self.kernel, "-initrd", self.initrd, "-append", append,
               "-device", "virtio-serial-pci,id=vser0",
               "-chardev", "socket,id=qga0,fd=%d,server=on,wait=off" % agent_fd,
               "-device", "virtserialport,chardev=qga0,name=%s,id=%s" % (AGENT_PORT, PORT_ID)]
        if shell_fd is not None:
            cmd += ["-chardev", "socket,id=shell0,fd=%d,server=on,wait=off" % shell_fd,
                    "-device", "virtserialport,chardev=shell0,name=%s" % SHELL_PORT]
        if self.disk:
            cmd += ["-blockdev", "driver=file,filename=%s,node-name=data0-file" % self.disk,
                    "-blockdev", "driver=qcow2,file=data0-file,node-name=data0",
                    "-device", "virtio-blk-pci,drive=data0,id=vblk0"]
        cmd += ["-chardev", "socket,id=mon0,fd=%d,server=on,wait=off" % qmp_fd,
                "-mon", "chardev=mon0,mode=control"]
        for i in range(1, self.extra_qmp + 1):
            cmd += ["-chardev", "socket,id=mon%d,path=%s/qmp%d.sock,server=on,wait=off" % (i, d, i),
                    "-mon", "chardev=mon%d,mode=control" % i]
        cmd += ["-pidfile", str(self.pidfile)] + self.extra_qemu_args
        return cmd

    def launch(self):
        """Spawn QEMU and return at once (the sockets already accept)."""
        assert self.proc is None, "already launched"
        if self.disk:
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                            "-b", self.base_disk, str(self.disk)], check=True)
        qmp_l = _listen(self.qmp_path)
        agent_l = _listen(self.agent_path)
        shell_l = _listen(self.dir / "shell.sock") if self.has_shell else None
        try:
            fds = [qmp_l.fileno(), agent_l.fileno()] + ([shell_l.fileno()] if shell_l else [])
            cmd = self.cmdline(*fds)
            with open(self.qemu_log, "wb") as log:
                self.launched_at = time.monotonic()
                self.proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    pass_fds=fds, preexec_fn=_child_setup)
            if shell_l:
                # connected (into the backlog) before the guest can open its end
                self._shell = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._shell.connect(str(self.dir / "shell.sock"))
        finally:
            # QEMU has its own copies; ours would keep accepting into the
            # backlog after QEMU died and turn "refused" into a hang.
            qmp_l.close()
            agent_l.close()
            if shell_l:
                shell_l.close()
        return self

    def start(self, timeout=30.0):
        """launch() and complete the QMP handshake (QEMU is then up)."""
        self.launch()
        self._connect_qmp(timeout)
        return self

    def _connect_qmp(self, timeout=30.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.qmp_path))
        try:
            self._qmp = QMP(s, timeout)
        except (EOFError, TimeoutError, OSError) as e:
            s.close()
            raise RuntimeError("QEMU did not come up (%s)\n%s" % (e, self.describe())) from e

    # -- QMP ---------------------------------------------------------------

    def qmp(self, cmd, args=None, timeout=30.0, **kwargs):
        """Run a QMP command; arguments as a dict and/or keywords (keywords
        cannot spell names with '-': pass those in args)."""
        if self._qmp is None:
            self._connect_qmp()
        a = dict(args or {}, **kwargs)
        return self._qmp.execute(cmd, a, timeout)

    def wait_event(self, name, timeout=30.0, match=None):
        if self._qmp is None:
            self._connect_qmp()
        return self._qmp.wait_event(name, timeout, match)

    # -- agent -------------------------------------------------------------

    def wait_port_open(self, timeout=BOOT_TIMEOUT):
        """Wait until a guest process (the agent) has opened the agent port,
        from QEMU's VSERPORT_CHANGE event; needs no host on the port.  An
        event that already came is found in the QMP event queue."""
        return self.wait_event("VSERPORT_CHANGE", timeout, lambda ev: (
            ev["data"].get("id") == PORT_ID and ev["data"].get("open")))

    def connect_agent(self, timeout=10.0):
        """A qga.Conn on the agent socket, not synced; closed by close()."""
        conn = qga.Conn(str(self.agent_path), timeout=timeout)
        self._conns.append(conn)
        return conn

    def agent(self, boot_timeout=BOOT_TIMEOUT, timeout=10.0):
        """A qga.Conn that has completed the 0xFF + guest-sync-delimited
        handshake, waiting up to boot_timeout for the guest and its agent.
        Fails early if QEMU exits meanwhile."""
        conn = self.connect_agent(timeout)
        self.sync(conn, boot_timeout)
        return conn

    def sync(self, conn, timeout=BOOT_TIMEOUT):
        """Run conn.sync_delimited until it succeeds or timeout passes,
        checking between rounds that QEMU is still running."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("agent did not answer guest-sync-delimited within %.0f s\n%s"
                                   % (timeout, self.describe()))
            try:
                return conn.sync_delimited(timeout=min(left, 5.0))
            except TimeoutError:
                continue

    # -- test shell (shell=True and SHELL_RC in the guest) --------------------

    def shell(self, command, timeout=60.0, check=True):
        """Run `command` (one line of sh) in the guest; return its output.
        Raises if it exits non-zero (unless check=False: then returns
        (status, output))."""
        assert self._shell is not None, "Guest(shell=True) and SHELL_RC in rc.local"
        assert "\n" not in command
        self._shell.sendall(command.encode() + b"\n")
        deadline = time.monotonic() + timeout
        out = b""
        while True:
            while b"\n" in self._shell_buf:
                line, self._shell_buf = self._shell_buf.split(b"\n", 1)
                if line.startswith(b"@@EXIT "):
                    rc = int(line[7:])
                    text = out.decode(errors="replace")
                    if not check:
                        return rc, text
                    if rc != 0:
                        raise RuntimeError("guest command %r exited %d: %s" % (command, rc, text))
                    return text
                out += line + b"\n"
            self.check_running()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("guest command %r did not finish in %.0f s; output so far %r"
                                   % (command, timeout, out[-500:]))
            r, _, _ = select.select([self._shell], [], [], min(left, 1.0))
            if r:
                data = self._shell.recv(65536)
                if not data:
                    raise EOFError("the guest shell port closed")
                self._shell_buf += data

    # -- process -----------------------------------------------------------

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def check_running(self):
        if self.proc is None:
            raise RuntimeError("guest not launched")
        if self.proc.poll() is not None:
            raise RuntimeError("QEMU exited with %s\n%s" % (self.proc.returncode, self.describe()))

    def wait_exit(self, timeout):
        """Wait for QEMU to exit by itself; its exit status (or TimeoutExpired)."""
        return self.proc.wait(timeout)

    def cpu_seconds(self):
        """User + system CPU time QEMU has used so far (all its threads)."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def console(self):
        try:
            return self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self, lines=40):
        """The tails of the console and QEMU's own output, for failure reports."""
        out = []
        for title, path in (("console", self.console_log), ("qemu", self.qemu_log)):
            try:
                text = path.read_text(errors="replace")
                text = _ESCAPES.sub("", text).splitlines()[-lines:]
            except FileNotFoundError:
                text = ["(none)"]
            out.append("---- %s (%s) ----" % (title, path))
            out += text
        return "\n".join(out)

    def close(self, quit_timeout=5.0):
        """End QEMU (QMP quit, then SIGKILL), remove the directory.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        for c in self._conns:
            c.close()
        self._conns = []
        if self._shell is not None:
            self._shell.close()
            self._shell = None
        try:
            if self.is_running():
                try:
                    if self._qmp is None:
                        self._connect_qmp(timeout=quit_timeout)
                    self._qmp.execute("quit", timeout=quit_timeout)
                except Exception:  # noqa: BLE001  any failure here: go on and kill
                    pass
                try:
                    self.proc.wait(quit_timeout)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        finally:
            if self._qmp is not None:
                self._qmp.close()
                self._qmp = None
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)
            _live.discard(self)
