#!/usr/bin/env python3
"""The main job, for now: boot a tiny QEMU guest running quiesce-agent and
drive it the way a backup host does, printing each step.

Milestone 1 (the agent) shows the protocol and a timed freeze/thaw of the
guest's data disk; later milestones turn this into a full application-
consistent backup, restore and check.
"""
import json
import sys
import time
from pathlib import Path

top = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(top / "tests" / "vm"))
sys.path.insert(0, str(top / "tests" / "pylib"))
import vmh  # noqa: E402


def say(msg):
    print(msg, flush=True)


def ok(reply):
    if "error" in reply:
        raise SystemExit("demo: agent error: %s" % reply["error"])
    return reply["return"]


def main():
    agent = top / "build-static" / "src" / "agent" / "quiesce-agent"
    paths = vmh.guest_paths()
    initrd = vmh.build_initrd(agent, Path("/tmp") / "quiesce-demo-initrd.gz")
    guest = vmh.Guest(paths["KERNEL"], initrd, disk=paths["DATA_BASE"])
    with guest:
        t0 = time.monotonic()
        guest.launch()
        say("booted a QEMU guest (TCG, 1 vCPU) with quiesce-agent on a virtio-serial port")
        conn = guest.connect_agent()
        guest.sync(conn)
        say("  handshake (0xFF + guest-sync-delimited) answered after %.1f s" % (time.monotonic() - t0))
        info = ok(conn.cmd("guest-info"))
        say("  agent version %s, %d commands" % (info["version"], len(info["supported_commands"])))
        os_ = ok(conn.cmd("guest-get-osinfo"))
        say("  guest kernel %s" % os_.get("kernel-release"))
        for d in ok(conn.cmd("guest-get-disks")):
            a = d.get("address", {})
            say("  disk %s: %s, PCI slot %s" % (d["name"], a.get("bus-type"),
                                               a.get("pci-controller", {}).get("slot")))
        for fs in ok(conn.cmd("guest-get-fsinfo")):
            say("  filesystem %s (%s) on %s, %d MiB used" % (
                fs["mountpoint"], fs["type"], fs["name"], fs.get("used-bytes", 0) >> 20))
        t = time.monotonic()
        n = ok(conn.cmd("guest-fsfreeze-freeze"))
        frozen = time.monotonic()
        status = ok(conn.cmd("guest-fsfreeze-status"))
        thawed = ok(conn.cmd("guest-fsfreeze-thaw"))
        say("  froze %d filesystem(s) in %.0f ms (status: %s), thawed %d; window %.0f ms" % (
            n, (frozen - t) * 1000, status, thawed, (time.monotonic() - t) * 1000))
        report = ok(conn.cmd("quiesce-freeze-report"))
        say("  freeze report: %s" % json.dumps({k: report[k] for k in ("filesystems", "auto-thawed")}))
        conn.send({"execute": "guest-shutdown"})
        guest.wait_exit(timeout=30)
        say("guest shut down cleanly by guest-shutdown; total %.1f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    main()
