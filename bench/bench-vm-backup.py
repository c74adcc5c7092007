#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""bench-vm-backup: the frozen window of `quiesce backup --qmp --qga` on a
running QEMU (TCG) guest, against the floor measured in the same run on the
same guest, and the end-to-end time of a full and an unchanged backup of a
1 GiB guest disk (issue 6, "Benchmark").  Prints figures and ratios; never
pass/fail (exit 0 unless something breaks).

Two guest configurations, one guest each (booted once, used for all rounds):
  "no hook"   quiesce-agent --fsfreeze-hook= (explicitly none; no hook file)
  "dispatcher + 1 hook"
              quiesce-agent -F with hooks/fsfreeze-hook as
              /etc/qemu/fsfreeze-hook and one trivial application hook
              (exit 0) in /etc/qemu/fsfreeze-hook.d/
Per configuration, 1 warm-up round (discarded) then --runs rounds; each round
takes one sample of each of these, in an order rotated round by round:
  Q  `quiesce backup ... --json` into one repository; its metadata gives
     frozen_window_ms (freeze request sent -> thaw confirmed by
     guest-fsfreeze-status), freeze_ms, transaction_ms, thaw_ms;
  A  floor (a), the agent alone, over tests/pylib/qga.py Conn (synced,
     untimed, before): guest-fsfreeze-freeze, guest-fsfreeze-thaw,
     guest-fsfreeze-status, timed from sending the freeze to receiving the
     status reply — the same three calls quiesce makes in its window;
  B  floor (b), QEMU alone, on the harness's own QMP monitor: a fleecing node
     (scratch qcow2 with "backing": "data0") added once per configuration;
     timed: one `transaction` holding one blockdev-backup sync=none into it;
     untimed: block-job-cancel and waiting for BLOCK_JOB_CANCELLED.
floor = median(A) + median(B); ratios = median(Q) / floor and max(Q) / floor
(target of issue 6: median <= 1.2x).  The guest is idle (no writer), the data
disk is the harness's cached 1 GiB base (8 MiB of data), quiesce talks to
QEMU on a second QMP monitor (qmp1.sock), and the agent's one client slot is
handed over between quiesce and the floor's Conn (closed before quiesce
starts; quiesce has exited before the Conn connects again).

End to end: a third guest whose data disk is a 1 GiB ext4 image made on the
host (mkfs.ext4 -d) holding ~600 MB of files (2/3 random, 1/3 text-like),
converted to qcow2; dispatcher + 1 hook.  Timed (wall clock of the quiesce
process, and its own stats.seconds): a full backup into a fresh repository,
then a second, unchanged one.  MB = 10^6 bytes; "read" is what quiesce read
over NBD (allocated, non-zero extents), "disk" is the virtual size.

virsh: the same comparison against libvirt, `virsh snapshot-create-as DOMAIN
NAME --disk-only --quiesce --no-metadata` (vm-harness.md section 8).  It needs
the libvirt packages of bench/packages.txt (`apt-get install -y
--no-install-recommends $(cat bench/packages.txt)`; libvirt-daemon-system
creates the libvirt-qemu user libvirtd insists on, and the -sysv flavour
keeps systemd out); without libvirtd or virsh it is skipped with a note, and
this benchmark installs nothing.  The benchmark starts its own libvirtd by
hand, never through an init system: as root, in a private mount namespace
(unshare -m) where /etc/libvirt, /run/libvirt, /var/lib/libvirt,
/var/log/libvirt and /var/cache/libvirt are bind mounts of scratch
directories (qemu.conf: user root, no security driver, stdio_handler file;
libvirtd.conf: no auth on its unix socket, agent commands logged at debug and
QMP messages at info level to its own log file); it stops it by PID at the end
(an empty /run/libvirt it had to create as mount point is removed again).  Per
configuration one transient domain (virsh create; TCG, q35, 1 vCPU, 512 MiB)
boots the same kernel and initramfs (the static quiesce-agent, with the same
arguments, on the org.qemu.guest_agent.0 channel libvirt drives), with a
qcow2 overlay on a private copy of the same data disk as vda and its serial
console in a file.  1 warm-up round, then --runs snapshots; each timed as the
wall time of the whole virsh process, and each followed (untimed) by
`virsh blockcommit --active --shallow --pivot --wait` and the removal of the
overlay, so that every round snapshots the same two-image chain.  Its window
comes from libvirtd's log: guest-fsfreeze-freeze sent -> guest-fsfreeze-thaw
answered (libvirt's clock, ms), split into freeze, prep (libvirt's
blockdev-add and blockdev-create of the new overlay, done while frozen), the
QMP transaction and thaw; a second, guest-side figure comes from the agent's
console lines ("guest-fsfreeze called" -> "guest-fsthaw called", guest clock).
Ratios q/v = quiesce's window / virsh's, per configuration.  The virsh rounds
run after quiesce's, on other QEMU processes, not interleaved with them.

usage: bench/bench-vm-backup.py [--runs N] [--quick] [--json]
  --runs N   measured rounds per configuration (default 20)
  --quick    3 rounds and a 256 MiB end-to-end disk with ~64 MB of files
             (a smoke test, under a minute)
  --json     print the results as one JSON document instead of the table
Environment: QUIESCE (host CLI, default build/src/host/quiesce),
QUIESCE_AGENT_STATIC (default build-static/src/agent/quiesce-agent).
Packages: tests/vm/packages.txt (QEMU and the guest's tools) and, for the
virsh comparison, bench/packages.txt.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

top = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(top / "tests" / "vm"))
sys.path.insert(0, str(top / "tests" / "pylib"))
import vmh  # noqa: E402

QUIESCE = os.environ.get("QUIESCE", str(top / "build" / "src" / "host" / "quiesce"))
AGENT = os.environ.get("QUIESCE_AGENT_STATIC",
                       str(top / "build-static" / "src" / "agent" / "quiesce-agent"))
DISPATCHER = top / "hooks" / "fsfreeze-hook"
APP_HOOK = "#!/bin/sh\n# trivial application hook\nexit 0\n"
FLOOR_NODE = "bench-fleece0"
FLOOR_JOB = "bench-fl0"


def note(msg):
    print("bench-vm-backup: " + msg, file=sys.stderr, flush=True)


def run(cmd, env=None, timeout=600):
    r = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(map(str, cmd[:3])), r.returncode,
                                                   r.stderr.strip()))
    return r


def med(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------------------
# the three samples


def quiesce_backup(g, repo, state):
    """One `quiesce backup`; (parsed JSON, wall seconds)."""
    env = dict(os.environ, QUIESCE_STATE_DIR=str(state))
    t0 = time.perf_counter()
    r = run([QUIESCE, "backup", "--repo", repo, "--qmp", g.dir / "qmp1.sock", "--qga",
             g.agent_path, "--name", "vm1", "--json"], env=env)
    wall = time.perf_counter() - t0
    doc = json.loads(r.stdout)
    if r.stderr.strip():
        note("quiesce backup said on stderr: " + r.stderr.strip())
    return doc, wall


def agent_floor(g):
    """Floor (a): freeze + thaw + status through a fresh, synced Conn:
    (total, freeze, thaw + status) in ms."""
    conn = g.connect_agent(timeout=30.0)
    try:
        g.sync(conn, timeout=60.0)
        t0 = time.perf_counter()
        r1 = conn.cmd("guest-fsfreeze-freeze", timeout=60.0)
        t1 = time.perf_counter()
        r2 = conn.cmd("guest-fsfreeze-thaw", timeout=60.0)
        r3 = conn.cmd("guest-fsfreeze-status", timeout=60.0)
        t2 = time.perf_counter()
    finally:
        conn.close()
    if r1.get("return", 0) < 1 or r2.get("return", 0) < 1 or r3.get("return") != "thawed":
        raise RuntimeError("agent floor: unexpected replies %r %r %r" % (r1, r2, r3))
    return (t2 - t0) * 1000, (t1 - t0) * 1000, (t2 - t1) * 1000


def floor_node_add(g, work, size):
    img = work / "floor-fleece.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", img, str(size)])
    g.qmp("blockdev-add", {"driver": "qcow2", "node-name": FLOOR_NODE,
                           "file": {"driver": "file", "filename": str(img)}, "backing": "data0"})


def floor_node_del(g):
    g.qmp("blockdev-del", {"node-name": FLOOR_NODE})


def qmp_floor(g):
    """Floor (b): one transaction with one blockdev-backup sync=none (ms);
    the job is then cancelled, untimed."""
    act = {"type": "blockdev-backup", "data": {"device": "data0", "target": FLOOR_NODE,
                                               "sync": "none", "job-id": FLOOR_JOB}}
    t0 = time.perf_counter()
    g.qmp("transaction", {"actions": [act]})
    dt = (time.perf_counter() - t0) * 1000
    g.qmp("block-job-cancel", {"device": FLOOR_JOB})
    g.wait_event("BLOCK_JOB_CANCELLED", timeout=60.0,
                 match=lambda ev: ev["data"].get("device") == FLOOR_JOB)
    g._qmp.events.clear()  # quiesce's own job events arrive here too; nobody waits for them
    return dt


# ---------------------------------------------------------------------------
# guests


def make_initrd(work, name, with_hook):
    extra = []
    if with_hook:
        app = work / ("%s-10-app" % name)
        app.write_text(APP_HOOK)
        extra = ["%s:/etc/qemu/fsfreeze-hook:0755" % DISPATCHER,
                 "%s:/etc/qemu/fsfreeze-hook.d/10-app:0755" % app]
    return vmh.build_initrd(AGENT, work / ("%s-initrd.gz" % name), extra_files=extra)


def boot(paths, initrd, disk, with_hook):
    args = ["-F"] if with_hook else ["--fsfreeze-hook="]
    g = vmh.Guest(paths["KERNEL"], initrd, disk=disk, agent_args=args, extra_qmp=1)
    t0 = time.monotonic()
    g.start()
    g.agent().close()  # booted and answering; hand the agent's one slot over
    return g, time.monotonic() - t0


def disk_size(g):
    for b in g.qmp("query-block"):
        ins = b.get("inserted")
        if ins and ins.get("node-name") == "data0":
            return ins["image"]["virtual-size"]
    raise RuntimeError("no data0 in query-block")


def leftovers(g):
    jobs = g.qmp("query-block-jobs")
    nodes = [n["node-name"] for n in g.qmp("query-named-block-nodes")
             if n["node-name"].startswith(("quiesce-", "bench-"))]
    return jobs, nodes


def measure_config(paths, work, name, with_hook, runs):
    initrd = make_initrd(work, name, with_hook)
    repo, state = work / ("%s-repo" % name), work / ("%s-state" % name)
    run([QUIESCE, "init", "--repo", repo])
    g, boot_s = boot(paths, initrd, paths["DATA_BASE"], with_hook)
    note("%s: guest booted in %.1f s" % (name, boot_s))
    res = {"config": name, "boot_s": boot_s, "window": [], "freeze": [], "transaction": [],
           "thaw": [], "backup_wall_s": [], "floor_agent": [], "floor_agent_freeze": [],
           "floor_agent_thaw": [], "floor_qmp": [],
           "consistency": {}}
    try:
        floor_node_add(g, work, disk_size(g))
        order = ["Q", "A", "B"]
        for i in range(runs + 1):
            samples = {}
            rot = order[i % 3:] + order[:i % 3]
            for what in rot:
                if what == "Q":
                    samples["Q"] = quiesce_backup(g, repo, state)
                elif what == "A":
                    samples["A"] = agent_floor(g)
                else:
                    samples["B"] = qmp_floor(g)
            doc, wall = samples["Q"]
            m = doc["metadata"]
            if i == 0:
                note("%s: warm-up round: window %d ms, agent %.1f ms, qmp %.1f ms (discarded)"
                     % (name, m.get("frozen_window_ms", -1), samples["A"][0], samples["B"]))
                continue
            res["window"].append(m["frozen_window_ms"])
            res["freeze"].append(m["freeze_ms"])
            res["transaction"].append(m["transaction_ms"])
            res["thaw"].append(m["thaw_ms"])
            res["backup_wall_s"].append(wall)
            res["floor_agent"].append(samples["A"][0])
            res["floor_agent_freeze"].append(samples["A"][1])
            res["floor_agent_thaw"].append(samples["A"][2])
            res["floor_qmp"].append(samples["B"])
            c = m["consistency"]
            res["consistency"][c] = res["consistency"].get(c, 0) + 1
        floor_node_del(g)
        jobs, nodes = leftovers(g)
        if jobs or nodes:
            note("%s: LEFT IN QEMU after the rounds: jobs %r nodes %r" % (name, jobs, nodes))
        res["leftovers"] = {"jobs": jobs, "nodes": nodes}
        res["qemu_cpu_s"] = g.cpu_seconds()
    finally:
        g.close()
    note("%s: %d rounds done" % (name, runs))
    return res


# ---------------------------------------------------------------------------
# end to end: a filled disk


def fill_tree(seed, total, rnd_share=2 / 3):
    """~total bytes of files under seed: 16 MiB random files, then 8 MiB
    text-like ones (log lines with counters)."""
    (seed / "rand").mkdir(parents=True)
    (seed / "text").mkdir()
    rnd = int(total * rnd_share)
    n, left = 0, rnd
    while left > 0:
        sz = min(left, 16 << 20)
        with open(seed / "rand" / ("r%04d.bin" % n), "wb") as f:
            for _ in range(0, sz, 1 << 20):
                f.write(os.urandom(min(1 << 20, sz)))
        left -= sz
        n += 1
    n, left, line = 0, total - rnd, 0
    while left > 0:
        sz = min(left, 8 << 20)
        parts, got = [], 0
        while got < sz:
            s = ("2024-05-%02d 12:%02d:%02d.%06d host%d app[%d]: request %d path=/api/v1/item/%d "
                 "status=%d bytes=%d\n" % (1 + line % 28, line % 60, (line * 7) % 60, line % 999983,
                                          line % 13, 1000 + line % 97, line, line * 31 % 100003,
                                          (200, 200, 200, 404, 500)[line % 5], line * 17 % 65536))
            parts.append(s)
            got += len(s)
            line += 1
        with open(seed / "text" / ("t%04d.log" % n), "w") as f:
            f.write("".join(parts)[:sz])
        left -= sz
        n += 1


def make_filled_disk(work, size, fill):
    seed, raw, img = work / "seed", work / "filled.raw", work / "filled.qcow2"
    t0 = time.monotonic()
    fill_tree(seed, fill)
    with open(raw, "wb") as f:
        f.truncate(size)
    run(["mkfs.ext4", "-q", "-F", "-L", "data", "-d", seed, raw])
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, img])
    shutil.rmtree(seed)
    raw.unlink()
    note("made a %d MiB ext4 disk holding %.0f MB of files in %.1f s"
         % (size >> 20, fill / 1e6, time.monotonic() - t0))
    return img


def measure_e2e(paths, work, size, fill):
    img = make_filled_disk(work, size, fill)
    initrd = make_initrd(work, "e2e", True)
    repo, state = work / "e2e-repo", work / "e2e-state"
    run([QUIESCE, "init", "--repo", repo])
    g, boot_s = boot(paths, initrd, img, True)
    note("e2e: guest booted in %.1f s" % boot_s)
    out = {"disk_bytes": size, "files_bytes": fill, "boot_s": boot_s}
    try:
        for label in ("full", "unchanged"):
            doc, wall = quiesce_backup(g, repo, state)
            s, m = doc["stats"], doc["metadata"]
            out[label] = {"wall_s": wall, "seconds": s["seconds"], "bytes_read": s["bytes_read"],
                          "bytes_zero": s["bytes_zero"], "bytes_stored": s["bytes_stored"],
                          "chunks_new": s["chunks_new"], "chunks_reused": s["chunks_reused"],
                          "chunks_zero": s["chunks_zero"], "frozen_window_ms": m["frozen_window_ms"],
                          "consistency": m["consistency"]}
            note("e2e: %s backup in %.2f s" % (label, wall))
        jobs, nodes = leftovers(g)
        out["leftovers"] = {"jobs": jobs, "nodes": nodes}
    finally:
        g.close()
    repo_bytes = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
    out["repo_bytes"] = repo_bytes
    return out


# ---------------------------------------------------------------------------
# virsh: the same guest under libvirt, frozen by `virsh snapshot-create-as
# --disk-only --quiesce` (vm-harness.md section 8)

# libvirtd sees these paths bind-mounted from <work>/lv/<key> in a private
# mount namespace, so nothing of it lands in the host's /etc, /run or /var.
LV_DIRS = (("etc", "/etc/libvirt"), ("run", "/run/libvirt"), ("lib", "/var/lib/libvirt"),
           ("log", "/var/log/libvirt"), ("cache", "/var/cache/libvirt"))
LV_QEMU_CONF = """user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
stdio_handler = "file"
"""
# The agent's commands at debug level, the QMP traffic at info level (one
# line per message sent or received), everything else warnings only.
LV_DAEMON_CONF = """unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_filters = "1:qemu.qemu_agent 2:qemu.qemu_monitor"
log_outputs = "1:file:/var/log/libvirt/libvirtd.log"
"""
LV_DOMAIN = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{kernel}</kernel><initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices><emulator>{emulator}</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
    <channel type='unix'><source mode='bind' path='{agent}'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <console type='file'><source path='{console}'/><target type='serial' port='0'/></console>
    <memballoon model='none'/></devices></domain>
"""


class Libvirtd:
    """A libvirtd of our own: started by hand (not through an init system) as
    root in a private mount namespace whose /etc/libvirt, /run/libvirt,
    /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt are bind mounts
    of directories under `root`; clients reach it on root/run/libvirt-sock.
    stop() destroys the domains it started, ends libvirtd by its PID and kills
    any QEMU it left, by the PIDs in its pidfiles."""

    def __init__(self, root):
        self.root = Path(root)
        self.sock = self.root / "run" / "libvirt-sock"
        self.uri = "qemu:///system?socket=%s" % self.sock
        self.log = self.root / "log" / "libvirtd.log"
        self.proc = None
        self.pid = None
        self.domains = []
        self.made_run_dir = False

    def virsh(self, *args, timeout=120, check=True):
        cmd = ["virsh", "-q", "-c", self.uri] + [str(a) for a in args]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError("virsh %s failed (%d): %s" % (args[0], r.returncode,
                                                             r.stderr.strip()))
        return r

    def start(self, timeout=90.0):
        for key, _ in LV_DIRS:
            (self.root / key).mkdir(parents=True, exist_ok=True)
        (self.root / "etc" / "qemu.conf").write_text(LV_QEMU_CONF)
        (self.root / "etc" / "libvirtd.conf").write_text(LV_DAEMON_CONF)
        script = ["set -e"] + ["mount --bind %s %s" % (self.root / key, target)
                               for key, target in LV_DIRS]
        script.append("exec /usr/sbin/libvirtd --pid-file /run/libvirt/libvirtd.pid")
        (self.root / "start.sh").write_text("\n".join(script) + "\n")
        # A bind mount needs its mount point: on a host where libvirt never
        # ran there is no /run/libvirt; make it, and remove it in stop().
        if not os.path.isdir("/run/libvirt"):
            os.mkdir("/run/libvirt", 0o755)
            self.made_run_dir = True
        with open(self.root / "libvirtd.out", "wb") as out:
            self.proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", str(self.root / "start.sh")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=vmh._child_setup)
        self.pid = self.proc.pid  # unshare and sh exec: this is libvirtd's PID
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("libvirtd exited with %s: %s" % (
                    self.proc.returncode, self.tail(self.root / "libvirtd.out")))
            if (self.sock.exists()
                    and self.virsh("version", timeout=60, check=False).returncode == 0):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError("libvirtd did not answer within %.0f s: %s"
                                   % (timeout, self.tail(self.root / "libvirtd.out")))
            time.sleep(0.2)

    @staticmethod
    def tail(path, n=8):
        try:
            return " | ".join(Path(path).read_text(errors="replace").strip().splitlines()[-n:])
        except FileNotFoundError:
            return "(no output)"

    def qemu_pids(self):
        pids = []
        for f in (self.root / "run" / "qemu").glob("*.pid"):
            try:
                pid = int(f.read_text().strip())
                with open("/proc/%d/cmdline" % pid, "rb") as c:
                    if b"qemu-system" in c.read():
                        pids.append(pid)
            except (OSError, ValueError):
                pass
        return pids

    def stop(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                for d in self.domains:
                    self.virsh("destroy", d, timeout=30, check=False)
            leftover = self.qemu_pids()  # read before libvirtd goes
            if self.proc is not None and self.proc.poll() is None:
                os.kill(self.pid, signal.SIGTERM)
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    note("libvirtd (pid %d) ignored SIGTERM; killing it" % self.pid)
                    os.kill(self.pid, signal.SIGKILL)
                    self.proc.wait()
            for pid in leftover:
                if os.path.exists("/proc/%d" % pid):
                    note("killing QEMU pid %d left by libvirtd" % pid)
                    os.kill(pid, signal.SIGKILL)
        finally:
            self.proc = None
            if self.made_run_dir:
                self.made_run_dir = False
                for _ in range(50):  # the namespace goes with its last process
                    try:
                        os.rmdir("/run/libvirt")
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)


def xml_escape(text):
    return escape(str(text), {"'": "&apos;", '"': "&quot;"})


def lv_time(line):
    # "2026-11-23 14:04:05.347+0000: 7549: debug : ..."
    return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()


def lv_window(text):
    """From libvirtd's log of one snapshot-create-as: (window, freeze,
    prep, transaction, thaw) in ms, or None.  window = guest-fsfreeze-freeze
    sent -> guest-fsfreeze-thaw answered; freeze and thaw: each agent command
    sent -> answered; transaction: the QMP transaction sent -> answered; prep:
    freeze answered -> transaction sent (libvirt's blockdev-add/blockdev-create
    of the overlay, done inside the window)."""
    lines = text.splitlines()
    t = {}
    txn_id = None
    for ln in lines:
        if "Send command '" in ln and '"guest-fsfreeze-freeze"' in ln and "fs" not in t:
            t["fs"] = lv_time(ln)
        elif "Send command '" in ln and '"guest-fsfreeze-thaw"' in ln and "fs" in t:
            t["ts"] = lv_time(ln)
        elif "Receive command reply" in ln:
            if "fs" in t and "fr" not in t:
                t["fr"] = lv_time(ln)
            elif "ts" in t and "tr" not in t:
                t["tr"] = lv_time(ln)
        elif "QEMU_MONITOR_SEND_MSG" in ln and '"execute":"transaction"' in ln and "fr" in t:
            t["xs"] = lv_time(ln)
            m = re.search(r'"id":"(libvirt-\d+)"', ln)
            txn_id = m.group(1) if m else None
        elif ("QEMU_MONITOR_RECV_REPLY" in ln and txn_id and '"id": "%s"' % txn_id in ln
              and "xr" not in t):
            t["xr"] = lv_time(ln)
    if not all(k in t for k in ("fs", "fr", "ts", "tr")):
        return None
    ms = lambda a, b: (t[b] - t[a]) * 1000 if a in t and b in t else float("nan")  # noqa: E731
    return ms("fs", "tr"), ms("fs", "fr"), ms("fr", "xs"), ms("xs", "xr"), ms("ts", "tr")


GUEST_LOG = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}) info: guest-(fsfreeze|fsthaw) called", re.M)


def guest_window(text):
    """quiesce-agent's console lines for one freeze: "guest-fsfreeze called"
    (logged as the freeze starts) -> "guest-fsthaw called" (logged once
    thawed), on the guest's clock, ms; or None."""
    seen = {}
    for stamp, what in GUEST_LOG.findall(text):
        if what not in seen:
            seen[what] = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").timestamp()
    if "fsfreeze" in seen and "fsthaw" in seen:
        return (seen["fsthaw"] - seen["fsfreeze"]) * 1000
    return None


def read_from(path, offset):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def size_of(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def virsh_config(lv, paths, work, base, name, with_hook, runs):
    """One transient domain (virsh create) booting this configuration's
    initramfs with a qcow2 overlay on `base` as vda; 1 warm-up round, then
    `runs` snapshots, each merged back (untimed) so every round starts from
    the same one-image chain."""
    initrd = work / ("%s-initrd.gz" % name)
    if not initrd.exists():
        initrd = make_initrd(work, name, with_hook)
    d = work / ("lv-%s" % name)
    d.mkdir()
    disk, console, agent = d / "data.qcow2", d / "console.log", d / "qga.sock"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, disk])
    agentargs = "-F" if with_hook else "--fsfreeze-hook="
    dom = "qb-%s" % name
    (d / "dom.xml").write_text(LV_DOMAIN.format(
        name=dom, kernel=xml_escape(paths["KERNEL"]), initrd=xml_escape(str(initrd)),
        cmdline=xml_escape('console=ttyS0 quiet agentargs="%s"' % agentargs),
        emulator=xml_escape(shutil.which(vmh.QEMU)), disk=xml_escape(str(disk)),
        agent=xml_escape(str(agent)), console=xml_escape(str(console))))
    res = {"config": name, "window": [], "freeze": [], "prep": [], "transaction": [], "thaw": [],
           "guest_window": [], "cmd_wall_s": [], "commit_wall_s": [], "unparsed": 0}
    t0 = time.monotonic()
    lv.virsh("create", d / "dom.xml")
    lv.domains.append(dom)
    try:
        while True:
            r = lv.virsh("qemu-agent-command", dom, '{"execute":"guest-ping"}', "--timeout", "5",
                         timeout=30, check=False)
            if r.returncode == 0:
                break
            if time.monotonic() - t0 > vmh.BOOT_TIMEOUT:
                raise RuntimeError("%s: agent not answering under libvirt after %.0f s: %s\n%s"
                                   % (name, vmh.BOOT_TIMEOUT, r.stderr.strip(),
                                      Libvirtd.tail(console)))
            time.sleep(0.2)
        res["boot_s"] = time.monotonic() - t0
        note("virsh %s: domain booted in %.1f s (virsh create -> guest-ping answered)"
             % (name, res["boot_s"]))
        for i in range(runs + 1):
            overlay = d / ("snap%02d.qcow2" % i)
            log_at, con_at = size_of(lv.log), size_of(console)
            t1 = time.perf_counter()
            lv.virsh("snapshot-create-as", dom, "b%02d" % i, "--disk-only", "--quiesce",
                     "--no-metadata", "--diskspec", "vda,snapshot=external,file=%s" % overlay)
            wall = time.perf_counter() - t1
            win = lv_window(read_from(lv.log, log_at))
            gw = None
            for _ in range(20):  # the serial file may trail the reply a little
                gw = guest_window(read_from(console, con_at))
                if gw is not None:
                    break
                time.sleep(0.1)
            # Merge the new overlay back into data.qcow2 (--shallow: only into
            # the image right below it, never further down the chain into the
            # shared base), so that every round snapshots the same chain.
            t2 = time.perf_counter()
            lv.virsh("blockcommit", dom, "vda", "--active", "--shallow", "--pivot", "--wait")
            commit = time.perf_counter() - t2
            src = lv.virsh("domblklist", dom).stdout.split()
            if str(disk) not in src:
                raise RuntimeError("%s: vda is not %s after blockcommit: %r" % (name, disk, src))
            overlay.unlink()
            if i == 0:
                note("virsh %s: warm-up round: window %s ms, command %.0f ms (discarded)"
                     % (name, "%.0f" % win[0] if win else "?", wall * 1000))
                continue
            res["cmd_wall_s"].append(wall)
            res["commit_wall_s"].append(commit)
            if win is None:
                res["unparsed"] += 1
            else:
                for k, v in zip(("window", "freeze", "prep", "transaction", "thaw"), win):
                    res[k].append(v)
            if gw is not None:
                res["guest_window"].append(gw)
        res["qemu_cpu_s"] = None
        pids = lv.qemu_pids()
        if pids:
            with open("/proc/%d/stat" % pids[0]) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            res["qemu_cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    finally:
        lv.virsh("destroy", dom, timeout=30, check=False)
        lv.domains.remove(dom)
    note("virsh %s: %d rounds done" % (name, runs))
    return res


def summarize_virsh(r, q):
    """Figures of one virsh configuration; q: quiesce's summary of the same
    configuration (for the ratios)."""
    w, c = r["window"], [x * 1000 for x in r["cmd_wall_s"]]
    vm, vx = med(w), (max(w) if w else float("nan"))
    return {"window_median_ms": vm, "window_max_ms": vx,
            "window_min_ms": min(w) if w else float("nan"),
            "freeze_median_ms": med(r["freeze"]), "prep_median_ms": med(r["prep"]),
            "transaction_median_ms": med(r["transaction"]), "thaw_median_ms": med(r["thaw"]),
            "guest_window_median_ms": med(r["guest_window"]),
            "guest_window_max_ms": max(r["guest_window"]) if r["guest_window"] else float("nan"),
            "cmd_median_ms": med(c), "cmd_max_ms": max(c) if c else float("nan"),
            "commit_median_ms": med([x * 1000 for x in r["commit_wall_s"]]),
            "ratio_quiesce_virsh_median": q["window_median_ms"] / vm if vm else float("nan"),
            "ratio_quiesce_virsh_max": q["window_max_ms"] / vx if vx else float("nan")}


def measure_virsh(paths, work, runs, results):
    """The virsh comparison: {"status": ..., ...}.  "skipped: ..." when
    libvirtd or virsh is missing, "failed: ..." when libvirt would not run
    (the rest of the benchmark stands either way)."""
    missing = [b for b in ("libvirtd", "virsh") if not shutil.which(b)]
    if missing:
        return {"status": "skipped: %s not installed here (libvirt-daemon-system, "
                          "libvirt-clients); this benchmark installs nothing"
                          % " and ".join(missing)}
    version = subprocess.run(["libvirtd", "--version"], stdout=subprocess.PIPE,
                             text=True).stdout.split()[-1]
    out = {"status": "measured", "libvirt": version, "configs": []}
    lv = Libvirtd(work / "lv")
    t0 = time.monotonic()
    try:
        lv.start()
        out["libvirtd_start_s"] = time.monotonic() - t0
        note("libvirtd %s (pid %d) up in %.1f s" % (version, lv.pid, out["libvirtd_start_s"]))
        # A private copy of the harness's data disk below the domains'
        # overlays: whatever libvirt merges, the shared cache stays untouched.
        base = work / "lv-base.qcow2"
        shutil.copyfile(paths["DATA_BASE"], base)
        for q in results:
            hook = q["config"] != "no hook"
            r = virsh_config(lv, paths, work, base, "dispatcher" if hook else "nohook", hook, runs)
            r["config"] = q["config"]
            r["summary"] = summarize_virsh(r, q["summary"])
            out["configs"].append(r)
    except Exception as e:  # noqa: BLE001  report it; keep quiesce's figures
        note("virsh comparison failed: %s" % e)
        out["status"] = "failed: %s" % str(e).splitlines()[0]
    finally:
        lv.stop()
    return out


# ---------------------------------------------------------------------------
# report


def summarize(r):
    fa, fb = med(r["floor_agent"]), med(r["floor_qmp"])
    floor = fa + fb
    w = r["window"]
    p90 = sorted(w)[min(len(w) - 1, int(len(w) * 0.9))] if w else float("nan")
    return {"window_p90_ms": p90,
            "floor_agent_freeze_median_ms": med(r["floor_agent_freeze"]),
            "floor_agent_thaw_median_ms": med(r["floor_agent_thaw"]),
"window_median_ms": med(w), "window_max_ms": max(w) if w else float("nan"),
            "window_min_ms": min(w) if w else float("nan"),
            "freeze_median_ms": med(r["freeze"]), "transaction_median_ms": med(r["transaction"]),
            "thaw_median_ms": med(r["thaw"]), "floor_agent_median_ms": fa,
            "floor_agent_max_ms": max(r["floor_agent"]) if r["floor_agent"] else float("nan"),
            "floor_qmp_median_ms": fb,
            "floor_qmp_max_ms": max(r["floor_qmp"]) if r["floor_qmp"] else float("nan"),
            "floor_ms": floor, "ratio_median": med(w) / floor if floor else float("nan"),
            "ratio_max": max(w) / floor if w and floor else float("nan"),
            "backup_wall_median_s": med(r["backup_wall_s"])}


def print_virsh(virsh, results):
    if virsh["status"] != "measured":
        print("virsh snapshot-create-as --disk-only --quiesce: " + virsh["status"])
        return
    print("virsh snapshot-create-as DOMAIN NAME --disk-only --quiesce --no-metadata: the same "
          "guests under libvirt %s (times in ms)" % virsh["libvirt"])
    hdr = "%-22s %8s %8s %8s %8s %8s %8s | %8s | %8s %8s | %7s %7s" % (
        "configuration", "win med", "win max", "freeze", "prep", "txn", "thaw", "guest",
        "cmd med", "cmd max", "q/v med", "q/v max")
    print(hdr)
    print("-" * len(hdr))
    for r in virsh["configs"]:
        s = r["summary"]
        print("%-22s %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f | %8.0f | %8.0f %8.0f | %6.2fx %6.2fx" % (
            r["config"], s["window_median_ms"], s["window_max_ms"], s["freeze_median_ms"],
            s["prep_median_ms"], s["transaction_median_ms"], s["thaw_median_ms"],
            s["guest_window_median_ms"], s["cmd_median_ms"], s["cmd_max_ms"],
            s["ratio_quiesce_virsh_median"], s["ratio_quiesce_virsh_max"]))
    print("  (win: libvirtd's own log, guest-fsfreeze-freeze sent -> guest-fsfreeze-thaw answered; "
          "freeze/prep/txn/thaw: medians of its parts,\n   prep = libvirt's blockdev-add + "
          "blockdev-create of the overlay between freeze reply and transaction; guest: median "
          "of quiesce-agent's\n   console stamps, freeze started -> thawed; cmd: wall time of "
          "the whole virsh process; q/v: quiesce's window (table above) / virsh's)")
    qs = {q["config"]: q["summary"] for q in results}
    for r in virsh["configs"]:
        s = r["summary"]
        print("  %s: window min %.0f ms; guest-side max %.0f ms; untimed blockcommit back "
              "median %.0f ms; %d round(s) not found in the log;\n    whole `quiesce backup` "
              "median %.2f s (includes reading the disk) vs virsh %.2f s (makes an overlay only); "
              "domain boot "
              "%.1f s" % (r["config"], s["window_min_ms"], s["guest_window_max_ms"],
                          s["commit_median_ms"], r["unparsed"],
                          qs[r["config"]]["backup_wall_median_s"], s["cmd_median_ms"] / 1000,
                          r["boot_s"]))


def print_table(results, e2e, virsh, args, env):
    print("quiesce VM backup: frozen window vs floor, %d rounds per configuration "
          "(QEMU %s, TCG, 1 vCPU; times in ms)" % (args.runs, env["qemu"]))
    hdr = "%-22s %8s %8s %8s %8s %8s | %8s %8s %8s | %7s %7s" % (
        "configuration", "win med", "win max", "freeze", "txn", "thaw",
        "agent", "qmp txn", "floor", "med/fl", "max/fl")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        s = r["summary"]
        print("%-22s %8.0f %8.0f %8.0f %8.0f %8.0f | %8.1f %8.1f %8.1f | %6.2fx %6.2fx" % (
            r["config"], s["window_median_ms"], s["window_max_ms"], s["freeze_median_ms"],
            s["transaction_median_ms"], s["thaw_median_ms"], s["floor_agent_median_ms"],
            s["floor_qmp_median_ms"], s["floor_ms"], s["ratio_median"], s["ratio_max"]))
    print("  (win/freeze/txn/thaw: medians from quiesce's JSON, whole ms; agent = floor (a) "
          "median, qmp txn = floor (b) median; target med/fl <= 1.2x)")
    for r in results:
        s = r["summary"]
        print("  %s: window min %.0f, p90 %.0f ms; floor (a) = freeze %.1f + thaw/status %.1f ms "
              "(medians), max %.1f ms; (b) max %.1f ms;\n    whole `quiesce backup` median %.2f s "
              "wall; consistency %s; guest boot %.1f s; left in QEMU: %s" % (
                  r["config"], s["window_min_ms"], s["window_p90_ms"],
                  s["floor_agent_freeze_median_ms"], s["floor_agent_thaw_median_ms"],
                  s["floor_agent_max_ms"], s["floor_qmp_max_ms"],
                  s["backup_wall_median_s"],
                  ", ".join("%s x%d" % kv for kv in sorted(r["consistency"].items())),
                  r["boot_s"], "nothing" if not (r["leftovers"]["jobs"] or r["leftovers"]["nodes"])
                  else r["leftovers"]))
    if len(results) == 2:
        a, b = results[0]["summary"], results[1]["summary"]
        print("  hook cost: dispatcher + 1 hook adds %.0f ms to the median window (%.0f -> %.0f ms) "
              "and %.0f ms to floor (a)" % (
                  b["window_median_ms"] - a["window_median_ms"], a["window_median_ms"],
                  b["window_median_ms"], b["floor_agent_median_ms"] - a["floor_agent_median_ms"]))
    print()
    print_virsh(virsh, results)
    print()
    if e2e:
        print("end to end: %d MiB guest disk holding %.0f MB of files (dispatcher + 1 hook)" % (
            e2e["disk_bytes"] >> 20, e2e["files_bytes"] / 1e6))
        hdr = "%-10s %8s %8s %9s %9s %9s %9s %10s %8s" % (
            "backup", "wall s", "quiesce s", "read MB", "read MB/s", "disk MB/s", "stored MB",
            "new/reused/zero", "window")
        print(hdr)
        print("-" * len(hdr))
        for label in ("full", "unchanged"):
            x = e2e[label]
            print("%-10s %8.2f %9.2f %9.1f %9.1f %9.1f %9.1f %5d/%d/%d %6d ms" % (
                label, x["wall_s"], x["seconds"], x["bytes_read"] / 1e6,
                x["bytes_read"] / 1e6 / x["wall_s"], e2e["disk_bytes"] / 1e6 / x["wall_s"],
                x["bytes_stored"] / 1e6, x["chunks_new"], x["chunks_reused"], x["chunks_zero"],
                x["frozen_window_ms"]))
        print("  (MB/s over the wall time of the quiesce process: boot-to-exit of the CLI, "
              "including setup, freeze, NBD read, chunking, commit and teardown; repository "
              "%.1f MB on disk; consistency %s / %s; left in QEMU: %s)" % (
                  e2e["repo_bytes"] / 1e6, e2e["full"]["consistency"],
                  e2e["unchanged"]["consistency"],
                  "nothing" if not (e2e["leftovers"]["jobs"] or e2e["leftovers"]["nodes"])
                  else e2e["leftovers"]))
        print()
    print("method:")
    print("  - one guest per configuration (q35, TCG, 1 vCPU, 512 MiB, Debian cloud kernel, "
          "static quiesce-agent), idle, harness data disk (1 GiB virtual, 8 MiB data);")
    print("    'no hook' = --fsfreeze-hook= and no hook file; 'dispatcher + 1 hook' = -F with "
          "hooks/fsfreeze-hook and one `exit 0` script in fsfreeze-hook.d")
    print("  - per round, in rotating order: Q = one `quiesce backup --json` (all into one "
          "repository; the first is full, later ones unchanged);")
    print("    A = floor (a): guest-fsfreeze-freeze + guest-fsfreeze-thaw + guest-fsfreeze-status "
          "over tests/pylib/qga.py Conn, send-freeze to status-reply;")
    print("    B = floor (b): one QMP `transaction` {blockdev-backup sync=none, data0 -> a fleecing "
          "qcow2 backed by data0} on the harness's monitor, send to reply")
    print("    (then block-job-cancel + BLOCK_JOB_CANCELLED, untimed). 1 warm-up round discarded.")
    print("  - floor = median(A) + median(B); ratios are median and max of quiesce's "
          "frozen_window_ms over that floor")
    print("  - quiesce's window runs from sending guest-fsfreeze-freeze to the reply of "
          "guest-fsfreeze-status after the thaw (its own clock, whole ms)")
    if virsh.get("status") == "measured":
        print("  - virsh: libvirtd %s started by this benchmark (%.1f s to answer) as root in a "
              "private mount namespace (its /etc, /run, /var/lib,\n    /var/log, /var/cache "
              "libvirt dirs bind-mounted from the scratch dir; qemu.conf: user root, no security "
              "driver,\n    stdio_handler file), stopped by PID afterwards; per configuration one "
              "transient domain (TCG, q35, 1 vCPU, 512 MiB,\n    same kernel and initramfs with "
              "the static quiesce-agent on org.qemu.guest_agent.0, serial console to a file; vda = "
              "qcow2 overlay on\n    a copy of the same data disk); 1 warm-up + %d snapshots, each "
              "followed (untimed) by blockcommit --active --shallow --pivot and\n    deleting the "
              "overlay, so each round starts from the same two-image chain; run after quiesce's "
              "rounds, not interleaved;\n    libvirtd logs the agent at debug and QMP at info "
              "level (that logging is inside its window)" % (
                  virsh["libvirt"], virsh["libvirtd_start_s"], args.runs))
    print("  - end to end: ext4 image built on the host with mkfs.ext4 -d (2/3 random, 1/3 text "
          "files), qcow2 base of the guest's overlay; full backup into a fresh repository, then "
          "an unchanged one")
    print("  - host: %s, %d cores, no KVM; quiesce %s; agent %s" % (
        env["kernel"], env["cores"], QUIESCE, AGENT))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.runs is None:
        args.runs = 3 if args.quick else 20
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    disk, fill = (256 << 20, 64 * 10**6) if args.quick else (1 << 30, 600 * 10**6)
    for f in (QUIESCE, AGENT):
        if not os.access(f, os.X_OK):
            raise SystemExit("bench-vm-backup: %s is missing (build it first)" % f)
    if not shutil.which(vmh.QEMU):
        raise SystemExit("bench-vm-backup: %s not installed" % vmh.QEMU)
    env = {"qemu": subprocess.run([vmh.QEMU, "--version"], stdout=subprocess.PIPE,
                                  text=True).stdout.split()[3],
           "kernel": os.uname().release, "cores": os.cpu_count()}
    vmh.sweep_stale()
    paths = vmh.guest_paths()
    work = Path(tempfile.mkdtemp(prefix="qbvm-", dir="/var/tmp"))
    t0 = time.monotonic()
    try:
        results = []
        for name, hook in (("no hook", False), ("dispatcher + 1 hook", True)):
            r = measure_config(paths, work, "dispatcher" if hook else "nohook", hook, args.runs)
            r["config"] = name
            r["summary"] = summarize(r)
            results.append(r)
        virsh = measure_virsh(paths, work, args.runs, results)
        e2e = measure_e2e(paths, work, disk, fill)
        if args.json:
            json.dump({"runs": args.runs, "quick": args.quick, "env": env, "configs": results,
                       "end_to_end": e2e, "virsh": virsh,
                       "elapsed_s": time.monotonic() - t0}, sys.stdout, indent=1)
            print()
        else:
            print_table(results, e2e, virsh, args, env)
            print("  - whole benchmark: %.0f s" % (time.monotonic() - t0))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
