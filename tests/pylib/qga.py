"""A small QEMU Guest Agent client for tests: raw bytes in, reply lines out.

Both agents (ours and the real qemu-ga) are driven through this, so it does
nothing clever: it sends bytes, and it splits what comes back into replies
(each reply is one JSON object followed by '\n', optionally preceded by a
single 0xFF delimiter byte, as guest-sync-delimited produces).
"""
import json
import os
import random
import select
import socket
import time


class Conn:
    def __init__(self, path=None, sock=None, timeout=5.0):
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    sock.connect(path)
                    break
                except BlockingIOError:  # listen backlog full: the agent is busy
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        self.sock = sock
        self.timeout = timeout
        self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def send(self, obj):
        self.send_raw(json.dumps(obj).encode())

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            return False
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("agent closed the connection")
        self.buf += data
        return True

    def read_line(self, timeout=None):
        """Next reply line as raw bytes (including a leading 0xFF, without the '\n')."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\n" not in self.buf:
            if not self._fill(deadline):
                raise TimeoutError("no complete reply within timeout; have %r" % self.buf[:200])
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def read_reply(self, timeout=None):
        line = self.read_line(timeout)
        return json.loads(line.lstrip(b"\xff"))

    def drain(self, quiet=0.3):
        """All reply lines that arrive until the agent is quiet for `quiet` seconds."""
        lines = []
        while True:
            try:
                lines.append(self.read_line(timeout=quiet))
            except TimeoutError:
                return lines

    def cmd(self, name, args=None, id=None, timeout=None):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        if id is not None:
            req["id"] = id
        self.send(req)
        return self.read_reply(timeout)

    def sync_delimited(self, timeout=10.0, retry=0.2):
        """The documented resync: 0xFF, guest-sync-delimited with a random id,
        skip to the delimiter, accept only our id.  Retries while the agent is not up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sid = random.randrange(1, 2**31)
            self.send_raw(b"\xff" + json.dumps(
                {"execute": "guest-sync-delimited", "arguments": {"id": sid}}).encode())
            end = min(deadline, time.monotonic() + retry)
            while time.monotonic() < end:
                try:
                    line = self.read_line(timeout=max(0.01, end - time.monotonic()))
                except TimeoutError:
                    break
                if line.startswith(b"\xff"):
                    try:
                        if json.loads(line[1:]).get("return") == sid:
                            self.buf = b""
                            return sid
                    except ValueError:
                        pass
        raise TimeoutError("guest-sync-delimited handshake did not complete")


def wait_for_socket(path, timeout=10.0, proc=None):
    """Wait until a unix socket at `path` accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("agent exited with %s before listening" % proc.returncode)
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                s.close()
                return
            except OSError:
                s.close()
        time.sleep(0.01)
    raise TimeoutError("socket %s never came up" % path)


# poll, ppoll, epoll_wait, epoll_pwait, epoll_pwait2, select, pselect6 (x86_64)
_WAIT_SYSCALLS = {7, 271, 232, 281, 441, 23, 270}


def wait_until_waiting(pid, path=None, timeout=10.0):
    """Wait until process `pid` is blocked in its event loop's wait (a poll-
    family syscall) — with `path` among its open files when given.  The
    event a test wants after starting an agent: everything it does before
    waiting (opening and flushing a serial port, say) is done."""
    deadline = time.monotonic() + timeout
    want = os.path.realpath(path) if path else None
    while True:
        try:
            with open("/proc/%d/syscall" % pid) as f:
                nr = f.read().split()[0]
            fds = os.listdir("/proc/%d/fd" % pid) if want else []
            has = not want or any(_readlink("/proc/%d/fd/%s" % (pid, fd)) == want for fd in fds)
            if nr.isdigit() and int(nr) in _WAIT_SYSCALLS and has:
                return
        except FileNotFoundError:
            raise RuntimeError("process %d is gone" % pid)
        if time.monotonic() > deadline:
            raise TimeoutError("process %d never waited%s" % (pid, " with %s open" % path if path else ""))
        time.sleep(0.005)


def _readlink(p):
    try:
        return os.readlink(p)
    except OSError:
        return None
