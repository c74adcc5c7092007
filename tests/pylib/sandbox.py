"""Test sandboxes for real filesystem freezes.

Read DEVELOPERS.md's safety section: freezing a filesystem the machine
itself uses hangs it for good.  Everything here exists so that tests only
ever freeze loop-mounted filesystems they created:

- enter_private_mount_ns(): the test process gets its own mount namespace,
  so its loop mounts vanish with it and nobody else sees them;
- LoopFs: a loop-mounted ext4/xfs image; its cleanup thaws it first (on
  every path), then unmounts (mount -o loop sets autoclear, so the loop
  device detaches itself);
- Agent: quiesce-agent (or qemu-ga) on a unix socket, stopped by PID.
"""
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qga  # noqa: E402

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18


def enter_private_mount_ns():
    """Move this process into a new mount namespace with private propagation
    (a nested one if it already has its own: harmless)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")


def run(*cmd, check=True, **kw):
    return subprocess.run([str(c) for c in cmd], check=check, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kw)


class LoopFs:
    """A filesystem image loop-mounted at `mountpoint` (created here)."""

    SIZES = {"ext4": "64M", "xfs": "320M", "ext2": "16M"}

    def __init__(self, workdir, name, kind="ext4", size=None):
        self.kind = kind
        self.image = Path(workdir) / (name + ".img")
        self.mountpoint = Path(workdir) / name
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        run("truncate", "-s", size or self.SIZES.get(kind, "64M"), self.image)
        mkfs = {"ext4": ["mkfs.ext4", "-q", "-F"], "ext2": ["mkfs.ext2", "-q", "-F"],
                "xfs": ["mkfs.xfs", "-q", "-f"]}[kind]
        run(*mkfs, self.image)
        run("mount", "-o", "loop", self.image, self.mountpoint)
        self.mounted = True

    @property
    def path(self):
        return str(self.mountpoint)

    def is_frozen(self):
        """Whether the kernel has this filesystem frozen (FIFREEZE answers
        EBUSY on a frozen one; on success we undo our own freeze at once)."""
        r = run("fsfreeze", "-f", self.mountpoint, check=False)
        if r.returncode == 0:
            run("fsfreeze", "-u", self.mountpoint, check=False)
            return False
        return "busy" in r.stderr.lower()

    def thaw(self):
        # FITHAW until it fails undoes nested freezes
        for _ in range(8):
            if run("fsfreeze", "-u", self.mountpoint, check=False).returncode != 0:
                break

    def close(self):
        if self.mounted:
            self.thaw()
            run("umount", self.mountpoint, check=False)
            self.mounted = False
        try:
            self.image.unlink()
        except FileNotFoundError:
            pass


class Agent:
    """An agent process on a unix socket in its own directory."""

    def __init__(self, binary, workdir, args=(), env=None, wait=True):
        self.dir = Path(tempfile.mkdtemp(prefix="ag-", dir=workdir))
        self.sock = self.dir / "sock"
        self.log = self.dir / "agent.log"
        self.args = list(args)
        cmd = [str(binary), "-m", "unix-listen", "-p", str(self.sock), "-t", str(self.dir),
               "-v", *self.args]
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=self.logf,
                                     env=dict(os.environ, **(env or {})))
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=10.0):
        qga.wait_for_socket(str(self.sock), timeout=timeout, proc=self.proc)

    @property
    def statedir(self):
        return self.dir

    def conn(self, timeout=30.0):
        return qga.Conn(str(self.sock), timeout=timeout)

    def log_text(self):
        return self.log.read_text(errors="replace")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=30):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        return self.proc.returncode


class Writer:
    """A process appending a line to `path` every 20 ms, recording timestamps,
    to see writes block while frozen and resume after the thaw."""

    SCRIPT = r"""
import os, sys, time
p = sys.argv[1]
while True:
    t = time.time()
    with open(p, "a") as f:
        f.write("%f\n" % t)
        f.flush()
        os.fsync(f.fileno())
    time.sleep(0.02)
"""

    def __init__(self, path):
        self.path = Path(path)
        self.proc = subprocess.Popen([sys.executable, "-c", self.SCRIPT, str(self.path)])

    def count(self):
        try:
            return len(self.path.read_text().splitlines())
        except FileNotFoundError:
            return 0

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def install_hooks(workdir, *app_hooks):
    """The hook setup an admin would have: the dispatcher (hooks/fsfreeze-hook)
    in <workdir>/etc-qemu and the named application hooks from
    hooks/fsfreeze-hook.d enabled beside it.  Returns the etc-qemu path."""
    top = Path(__file__).resolve().parents[2]
    etc = Path(workdir) / "etc-qemu"
    (etc / "fsfreeze-hook.d").mkdir(parents=True)
    shutil.copy(top / "hooks" / "fsfreeze-hook", etc / "fsfreeze-hook")
    for name in app_hooks:
        os.symlink(top / "hooks" / "fsfreeze-hook.d" / name, etc / "fsfreeze-hook.d" / name)
    return etc
