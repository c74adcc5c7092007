#!/usr/bin/env python3
"""The main job: an application-consistent backup of a running QEMU guest,
end to end, printing each step.

The guest (TCG when there is no KVM) runs quiesce-agent with the real hook
dispatcher (hooks/fsfreeze-hook) and an application hook that records the
moment it was quiesced, while a writer appends to a log on the data disk.
The host CLI freezes the guest, fixes a point-in-time view of its disk in
one QMP transaction, thaws, and streams the view into a repository; then a
second, incremental backup, a verify, a restore, and an offline check of the
restored filesystem.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

top = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(top / "tests" / "vm"))
sys.path.insert(0, str(top / "tests" / "pylib"))
import vmh  # noqa: E402

QUIESCE = str(top / "build" / "src" / "host" / "quiesce")
APP_HOOK = """#!/bin/sh
# a stand-in application: note the consistent point on the data disk
case "$1" in
freeze) date +%s > /mnt/data/app-quiesced-at; sync ;;
thaw) echo thawed > /mnt/data/app-resumed ;;
esac
"""
WRITER = """#!/bin/sh
( n=0; while :; do echo "record $n" >> /mnt/data/app.log; sync; n=$((n+1)); sleep 0.05; done ) &
"""


def say(msg):
    print(msg, flush=True)


def q(*args, env=None):
    r = subprocess.run([QUIESCE, *map(str, args)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit("demo: quiesce %s failed (%d): %s" % (args[0], r.returncode, r.stderr.strip()))
    return r


def debugfs(raw, cmd):
    r = subprocess.run(["debugfs", "-R", cmd, str(raw)], capture_output=True, text=True)
    return r.stdout, r.stderr


def main():
    agent = top / "build-static" / "src" / "agent" / "quiesce-agent"
    work = Path(tempfile.mkdtemp(prefix="quiesce-demo-", dir="/tmp"))
    try:
        paths = vmh.guest_paths()
        (work / "10-app").write_text(APP_HOOK)
        (work / "rc.local").write_text(WRITER)
        initrd = vmh.build_initrd(agent, work / "initrd.gz", extra_files=[
            "%s:/etc/qemu/fsfreeze-hook:0755" % (top / "hooks" / "fsfreeze-hook"),
            "%s:/etc/qemu/fsfreeze-hook.d/10-app:0755" % (work / "10-app"),
            "%s:/etc/rc.local:0755" % (work / "rc.local")])
        with vmh.Guest(paths["KERNEL"], initrd, disk=paths["DATA_BASE"], agent_args=["-F"],
                       extra_qmp=1) as g:
            t0 = time.monotonic()
            g.start()
            g.agent().close()
            say("booted a QEMU guest (TCG) running quiesce-agent with the hook dispatcher and a "
                "writer, in %.1f s" % (time.monotonic() - t0))
            repo, env = work / "repo", dict(os.environ, QUIESCE_STATE_DIR=str(work / "state"))
            q("init", "--repo", repo)
            say("created a repository at %s" % repo)
            backup = [QUIESCE, "backup", "--repo", repo, "--qmp", g.dir / "qmp1.sock",
                      "--qga", g.agent_path, "--name", "demo-vm", "--json"]
            docs = []
            for label in ("first backup", "second backup (incremental)"):
                doc = json.loads(q(*backup[1:], env=env).stdout)
                m, s = doc["metadata"], doc["stats"]
                say("%s: snapshot %s" % (label, doc["id"]))
                say("  consistency: %s — %s" % (m["consistency"], m["consistency_reason"]))
                say("  guest frozen %d ms (freeze %d, QMP transaction %d, thaw %d)" % (
                    m["frozen_window_ms"], m["freeze_ms"], m["transaction_ms"], m["thaw_ms"]))
                say("  %d MiB disk: %d chunks new (%.1f MiB stored), %d reused, %d zero, in %.2f s" % (
                    doc["disks"][0]["size"] >> 20, s["chunks_new"], s["bytes_stored"] / 2**20,
                    s["chunks_reused"], s["chunks_zero"], s["seconds"]))
                docs.append(doc)
                time.sleep(1)
            g.qmp("query-status")
            left = [n["node-name"] for n in g.qmp("query-named-block-nodes")
                    if n["node-name"].startswith("quiesce-")]
            say("QEMU after the backups: %d block jobs, %d exports, %d nodes of ours" % (
                len(g.qmp("query-block-jobs")), len(g.qmp("query-block-exports")), len(left)))
            say("verify: " + q("verify", "--repo", repo).stdout.strip())
            raw = work / "restored.raw"
            say(q("restore", "--repo", repo, docs[0]["id"], "--to", raw).stdout.strip())
            fsck = subprocess.run(["e2fsck", "-fn", str(raw)], capture_output=True, text=True)
            say("restored filesystem: e2fsck -fn exit %d (%s)" % (
                fsck.returncode, "clean" if fsck.returncode == 0 else "NOT CLEAN"))
            features = subprocess.run(["dumpe2fs", "-h", str(raw)], capture_output=True,
                                      text=True).stdout
            say("  journal needs recovery: %s" % ("yes" if "needs_recovery" in features else "no"))
            quiesced, _ = debugfs(raw, "cat /app-quiesced-at")
            _, err = debugfs(raw, "stat /app-resumed")
            log, _ = debugfs(raw, "cat /app.log")
            say("  the application hook's freeze marker is in the backup: %s" %
                ("yes" if quiesced.strip() else "NO"))
            say("  its post-thaw marker is not: %s" % ("yes" if "not found" in err else "NO"))
            say("  the writer's log holds %d whole records" % len(log.splitlines()))
            ok = (fsck.returncode == 0 and "needs_recovery" not in features and quiesced.strip()
                  and "not found" in err and docs[0]["metadata"]["consistency"] == "application")
            say("done in %.1f s: %s" % (time.monotonic() - t0,
                                        "backup is application-consistent and restores cleanly"
                                        if ok else "SOMETHING IS WRONG"))
            return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
