# SPDX-License-Identifier: MIT
"""What one hostile message costs an agent: its peak memory and CPU time, read
from /proc (VmHWM; utime+stime), and the inputs that used to be expensive.

Shared by tests/integration/test_message_cost.py (which asserts bounds that do
not depend on the machine's speed) and bench/bench-message-cost.py (which
prints figures for quiesce-agent and qemu-ga measured in the same run).
"""
import os
import select
import socket
import time

MiB = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid):
    """VmHWM: the largest resident set the process has had so far."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM for pid %d" % pid)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def cpu_seconds(pid):
    """utime + stime of the process so far (its own threads, not children)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# ---------------------------------------------------------------- inputs

def stray_token(n):
    """An unterminated string of n bytes 0x80, ended by a newline: the lexer calls
    it a stray token, and qemu-ga quotes all of it back (each byte as \\uFFFD)."""
    return b'"' + b"\x80" * n + b"\n"


def colliding_keys(n):
    """n distinct keys with the same g_str_hash (djb2): strings over the blocks
    "aB" and "b!", which hash alike (97*33+66 == 98*33+33)."""
    bits = max(1, (n - 1).bit_length())
    for i in range(n):
        yield b"".join(b"b!" if i >> j & 1 else b"aB" for j in range(bits))


def colliding_arguments(n, command=b"guest-ping"):
    """A request whose arguments are n colliding keys (all unexpected)."""
    members = b",".join(b'"%s":0' % k for k in colliding_keys(n))
    return b'{"execute":"' + command + b'","arguments":{' + members + b"}}"


# ---------------------------------------------------------------- driving an agent

def send_reading(sock, data, until_lines, timeout):
    """Send data while reading replies (a host that reads); return the reply bytes
    once `until_lines` newlines arrived.  Only a count is kept of what was read
    past the last 4 KiB, so a 400 MB reply costs this process nothing."""
    sock.setblocking(False)
    view = memoryview(data)
    lines, tail, total = 0, b"", 0
    deadline = time.monotonic() + timeout
    try:
        while lines < until_lines:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("%d of %d replies after %.0f s" % (lines, until_lines, timeout))
            r, w, _ = select.select([sock], [sock] if view else [], [], left)
            if r:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise EOFError("agent closed the connection")
                total += len(chunk)
                lines += chunk.count(b"\n")
                tail = (tail + chunk)[-4096:]
            if w and view:
                try:
                    view = view[sock.send(view[:1 << 20]):]
                except BlockingIOError:
                    pass
    finally:
        sock.setblocking(True)
    return total, tail


def connect(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except (FileNotFoundError, ConnectionRefusedError, BlockingIOError):
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def send_until_stalled(sock, request, stall=1.0, limit=256 * MiB):
    """A host that never reads: write `request` over and over until the agent has
    stopped taking input for `stall` seconds (or `limit` bytes were written).
    Returns the bytes written."""
    sock.setblocking(False)
    sent, buf = 0, request * max(1, (1 << 16) // len(request))
    view = memoryview(buf)
    last = time.monotonic()
    while sent < limit:
        _, w, _ = select.select([], [sock], [], stall)
        if not w:
            if time.monotonic() - last >= stall:
                break
            continue
        try:
            n = sock.send(view)
        except BlockingIOError:
            continue
        sent += n
        last = time.monotonic()
        view = view[n:] or memoryview(buf)
    sock.setblocking(True)
    return sent
