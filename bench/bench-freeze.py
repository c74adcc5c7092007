#!/usr/bin/env python3
"""bench-freeze: guest-fsfreeze-freeze-list + guest-fsfreeze-thaw of one
loop-mounted ext4 filesystem, quiesce-agent against qemu-ga in the same run,
with an empty hook and with none.  Prints medians and ratios; never pass/fail.

Needs root.  Runs in its own mount namespace and freezes only the loop
filesystem it creates (by explicit mountpoint list).

usage: bench/bench-freeze.py [OURS] [QEMU_GA] [ROUNDS]
"""
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

top = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(top / "tests" / "pylib"))
import sandbox  # noqa: E402

ours = sys.argv[1] if len(sys.argv) > 1 else str(top / "build" / "src" / "agent" / "quiesce-agent")
peer = sys.argv[2] if len(sys.argv) > 2 else "/usr/sbin/qemu-ga"
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 100


def measure(binary, workdir, fs, hook, ours):
    # quiesce-agent uses /etc/qemu/fsfreeze-hook when it exists: say "none"
    args = ["-F%s" % hook] if hook else (["--fsfreeze-hook="] if ours else [])
    ag = sandbox.Agent(binary, workdir, args)
    times = []
    try:
        with ag.conn() as c:
            for i in range(rounds + 5):
                t0 = time.perf_counter()
                r1 = c.cmd("guest-fsfreeze-freeze-list", {"mountpoints": [fs.path]})
                r2 = c.cmd("guest-fsfreeze-thaw")
                dt = time.perf_counter() - t0
                assert r1 == {"return": 1} and r2 == {"return": 1}, (r1, r2)
                if i >= 5:  # warm-up
                    times.append(dt * 1000)
    finally:
        fs.thaw()
        ag.stop()
    return statistics.median(times), sorted(times)[int(len(times) * 0.9)]


def main():
    sandbox.enter_private_mount_ns()
    workdir = tempfile.mkdtemp(prefix="qbf-", dir="/tmp")
    fs = sandbox.LoopFs(workdir, "fs")
    hook = Path(workdir) / "empty-hook"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    try:
        res = {}
        for name, binary in (("qemu-ga", peer), ("quiesce-agent", ours)):
            for label, h in (("no hook", None), ("empty hook", hook)):
                res[(name, label)] = measure(binary, workdir, fs, h, binary == ours)
        print("%-34s %14s %10s %8s" % ("freeze-list + thaw, 1 ext4 (ms)", "quiesce-agent",
                                       "qemu-ga", "ratio"))
        for label in ("no hook", "empty hook"):
            for i, stat in enumerate(("median", "p90")):
                a, b = res[("quiesce-agent", label)][i], res[("qemu-ga", label)][i]
                print("%-34s %14.2f %10.2f %8.2f" % ("%s, %s" % (label, stat), a, b, a / b))
    finally:
        fs.close()
        os.rmdir(workdir) if not os.listdir(workdir) else None


if __name__ == "__main__":
    main()
