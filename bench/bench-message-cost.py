#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench-message-cost: what one hostile message costs quiesce-agent and qemu-ga,
measured in the same run: peak resident memory (VmHWM, in MiB, over the agent's whole life,
each input on a freshly started agent) and CPU seconds (utime+stime) spent on it.

Inputs (issue 10, item 6):
  stray       an unterminated string of 63 MB of 0x80 bytes ended by a newline:
              a "stray" token that qemu-ga quotes back whole (~380 MB of \\uFFFD);
  collide N   a guest-ping with N argument keys that all have the same g_str_hash
              (djb2), which the QAPI visitor's GLib hash table chains quadratically;
  noread      a host that sends guest-info requests and never reads a reply:
              figures for a 3 s window after the agent stopped taking input;
  big         other messages at the limits: a list of 1,040,000 58-byte strings
              (~63 MB, ~2M tokens), a 63 MB string id (echoed back), a 63 MB
              command name.
Prints figures and ratios; never pass/fail.  An agent that has not answered within
the time limit (default 120 s) is reported as "> limit" and killed.

usage: bench/bench-message-cost.py [OURS] [QEMU_GA] [--limit S] [--collide N,N...] [--only NAME]
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

top = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(top / "tests" / "pylib"))
import msgcost  # noqa: E402
from msgcost import MiB  # noqa: E402

PING = b'{"execute":"guest-ping"}'


class Agent:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="qbmc-", dir="/tmp")
        self.sock_path = os.path.join(self.dir, "s")
        self.proc = subprocess.Popen([binary, "-m", "unix-listen", "-p", self.sock_path, "-t", self.dir],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.sock = msgcost.connect(self.sock_path)
        msgcost.send_reading(self.sock, PING, 1, 10)
        self.cpu0 = msgcost.cpu_seconds(self.proc.pid)

    def figures(self):
        return msgcost.peak_rss_kib(self.proc.pid) / 1024, msgcost.cpu_seconds(self.proc.pid) - self.cpu0

    def close(self):
        self.sock.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def answered(binary, data, limit):
    """Peak MB, CPU s and reply bytes for `data` followed by a ping (2 replies)."""
    a = Agent(binary)
    try:
        try:
            got, _ = msgcost.send_reading(a.sock, data + PING, 2, limit)
            done = True
        except (TimeoutError, EOFError, OSError):
            got, done = None, False
        peak, cpu = a.figures()
        return peak, cpu, got, done
    finally:
        a.close()


def noread(binary, window=3.0):
    a = Agent(binary)
    try:
        sent = msgcost.send_until_stalled(a.sock, b'{"execute":"guest-info"}')
        _, cpu_before = a.figures()
        time.sleep(window)
        peak, cpu = a.figures()
        return peak, cpu - cpu_before, sent, True
    finally:
        a.close()


def show(name, res, limit):
    def fmt(r):
        peak, cpu, extra, done = r
        cpu_s = ("%8.2f" % cpu) if done else ("> %5.0f" % limit)
        return "%9.1f %s" % (peak, cpu_s)
    ours, ref = res
    ratio = ""
    if ours[3] and ref[3] and ref[0] and ref[1] > 0.005:
        ratio = "%7.2f %7.2f" % (ours[0] / ref[0], ours[1] / ref[1])
    elif ours[3] and ref[3]:
        ratio = "%7.2f %7s" % (ours[0] / ref[0], "-")
    print("%-22s %s   %s   %s" % (name, fmt(ours), fmt(ref), ratio), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ours", nargs="?", default=str(top / "build" / "src" / "agent" / "quiesce-agent"))
    p.add_argument("peer", nargs="?", default="/usr/sbin/qemu-ga")
    p.add_argument("--limit", type=float, default=120.0, help="seconds an agent may take per input")
    p.add_argument("--collide", default="8000,16000,500000")
    p.add_argument("--only", default=None)
    o = p.parse_args()

    print("%-22s %20s   %20s   %15s" % ("", "quiesce-agent", "qemu-ga", "ours/qemu-ga"))
    print("%-22s %9s %8s   %9s %8s   %7s %7s" % ("input", "peak MiB", "CPU s", "peak MiB", "CPU s", "peak", "CPU"))
    runs = [("stray", "stray 63 MB 0x80", lambda b: answered(b, msgcost.stray_token(63 * 10**6), o.limit))]
    for n in (int(x) for x in o.collide.split(",") if x):
        runs.append(("collide", "collide %dk keys" % (n // 1000),
                     lambda b, n=n: answered(b, msgcost.colliding_arguments(n), o.limit)))
    runs.append(("noread", "never reads (3 s)", noread))
    M = 63 * 10**6
    big = [("2M-token list 63 MB", lambda: b'{"execute":"guest-ping","arguments":{"x":['
            + b",".join([b'"' + b"a" * 58 + b'"'] * 1040000) + b"]}}"),
           ("63 MB id, echoed", lambda: b'{"execute":"guest-ping","id":"' + b"a" * M + b'"}'),
           ("63 MB command name", lambda: b'{"execute":"' + b"a" * M + b'"}')]
    for name, make in big:
        runs.append(("big", name, lambda b, make=make: answered(b, make(), o.limit)))
    for key, name, fn in runs:
        if o.only and o.only != key:
            continue
        show(name, (fn(o.ours), fn(o.peer)), o.limit)


if __name__ == "__main__":
    main()
