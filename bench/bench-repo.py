#!/usr/bin/python3
"""bench-repo: the quiesce repository against restic and borg, in the same run.

One mixed disk image (default 1 GiB: ~40 % zero, ~30 % incompressible random,
~30 % text-like log lines compressing ~3.4x with zstd -1), generated
deterministically from a seed, is backed up by each tool into a fresh local
repository: (1) first backup, (2) second, unchanged backup, (3) restore to a
file, whose SHA-256 is compared with the image's.  Wall time, CPU time and
peak RSS of every child process are measured (os.wait4), throughput is
image size / wall time (MB = 10^6 bytes, GB = 10^9 bytes).

Then quiesce alone, against the targets of issue 5:
  * new data per core: first backup of a no-zero image (size/4, 256 MiB at
    the default size; half random, half text) with --threads 1;
  * zero data: first backup of an all-zero file of --size bytes, zeros
    written (allocated, so found from contents, not from SEEK_HOLE); a
    fully sparse file of the same size is shown for information;
  * duplicate data: the second unchanged backup of the mixed image (every
    chunk is zero or already stored);
  * restore: the restore of the mixed image;
  * scale (issue 10, for information): a sparse 1 TiB file with 8 MiB of
    data backed up and restored at 64 KiB chunks (16 Mi chunks): seconds,
    peak RSS and manifest size, which must not grow with the disk.
Targets: first backup >= 3x restic, new data >= 300 MB/s per core,
zero and duplicate >= 2 GB/s, restore >= 1 GB/s.  They are reported as met /
not met; they do not change the exit status.

Fairness choices (also printed with the results):
  * Page cache: warm for everyone.  The image is read once (hashed) before
    any timing; `sync` runs between phases, outside the timings, so one
    phase's write-back is not charged to the next.  Each tool's own fsyncs
    are inside its timing.
  * restic backs up the file by path (the same source quiesce reads); the
    second backup uses --force so it re-reads the file instead of trusting
    mtime/size/inode (a block device or NBD export offers no such shortcut,
    and quiesce has none).  Repository format v2 (restic 0.14's default),
    --compression auto (the default).  restic 0.14 restores non-sparse.
  * borg: `init -e none`, `create --chunker-params fixed,4194304 --sparse`
    (fixed 4 MiB chunks like quiesce, and hole detection, as the borg docs
    recommend for disk images; borg's default would be buzhash,19,23,21,4095),
    default compression (lz4); the second backup uses --files-cache disabled
    for the same reason as restic's --force; `extract --sparse`.
    borg 1.2 is single-threaded.
  * Zero regions of the mixed image alternate between holes (never written)
    and written zeros, so both detection paths are exercised.
  * Repository size is disk usage (allocated blocks) of the repository
    directory; restic's and borg's client caches are kept outside it and not
    counted.

usage: bench/bench-repo.py [--quiesce PATH] [--size SIZE] [--workdir DIR]
                           [--quick] [--json] [--repeat N] [--seed N] [--keep]
                           [--only quiesce,restic,borg]
  QUIESCE (env) or --quiesce: the quiesce binary
  (default build/src/host/quiesce next to this script's tree).
  --quick: 64 MiB sizes, for a smoke test (well under 30 s).
  --repeat N: every measurement N times, tools interleaved, medians shown.
  --keep: keep the temp dir (logs of every child are in it).
Exit status: 0 if every tool that ran succeeded and restored bit-identical
data, 1 otherwise; missing restic/borg/quiesce are skipped with a note.
"""
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30
CHUNK = 4 * MiB
TOP = Path(__file__).resolve().parent.parent


def log(msg):
    print("bench-repo: " + msg, file=sys.stderr, flush=True)


def parse_size(s):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*", s)
    if not m:
        raise argparse.ArgumentTypeError("bad size %r (e.g. 1GiB, 64M, 1048576)" % s)
    n = float(m.group(1))
    unit = m.group(2).upper()
    if unit:
        n *= 1 << (10 * " KMGT".index(unit))
    n = int(n)
    if n < MiB:
        raise argparse.ArgumentTypeError("size must be at least 1 MiB")
    return n


# ---------------------------------------------------------------- image data

WORDS = ("GET POST PUT DELETE /api/v1/items /api/v1/users /static/app.js /login /health "
         "session started closed user admin backup worker queue timeout retry connection "
         "accepted refused kernel sshd nginx postgres systemd cron disk write read flush "
         "commit checkpoint vacuum request completed failed ok status latency bytes").split()
LEVELS = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
PROCS = ["nginx", "sshd", "postgres", "systemd", "cron", "app-worker", "kernel"]
HOSTS = ["web1", "web2", "db1", "cache1"]


class Generator:
    """Deterministic data from a seed: random bytes from SHAKE-256, text from
    a pool of 2^18 distinct log lines (~29 MB, far beyond any compressor's
    window here) sampled at random, so no two chunks are equal."""

    pools = {}

    def __init__(self, seed, pool_seed=None):
        self.seed = seed
        self.pool_seed = seed if pool_seed is None else pool_seed
        self.rng = random.Random(seed)
        self.pool = Generator.pools.get(self.pool_seed)
        self.nrand = 0

    def _make_pool(self):
        r = random.Random(self.pool_seed ^ 0x5EED)
        ch, ri, rb = r.choice, r.randrange, r.getrandbits
        pool = []
        for i in range(1 << 18):
            ts = i * 0.0137
            pool.append(("2026-11-%02d %02d:%02d:%06.3f %s %s[%d]: %s %s req=%08x dur=%dms "
                         "10.%d.%d.%d\n" % (
                             1 + int(ts // 86400) % 28, int(ts // 3600) % 24, int(ts // 60) % 60,
                             ts % 60, ch(HOSTS), ch(PROCS), 1000 + ri(5000), ch(LEVELS),
                             " ".join(ch(WORDS) for _ in range(ri(3, 12))), rb(32), ri(2000),
                             ri(256), ri(256), ri(256))).encode())
        self.pool = Generator.pools[self.pool_seed] = pool

    def random(self, n):
        self.nrand += 1
        return hashlib.shake_256(b"quiesce-bench %d %d" % (self.seed, self.nrand)).digest(n)

    def text(self, n):
        if self.pool is None:
            self._make_pool()
        out = b"".join(self.rng.choices(self.pool, k=n // 100 + 64))
        while len(out) < n:
            out += b"".join(self.rng.choices(self.pool, k=64))
        return out[:n]


def plan_regions(rng, size, shares):
    """Regions of 1..16 MiB (whole MiB), kinds picked at random in proportion
    to what each kind still has to fill, so the totals match `shares`."""
    left = {k: int(size * s) for k, s in shares.items()}
    last = list(shares)[-1]
    left[last] = size - sum(v for k, v in left.items() if k != last)
    regions = []
    while sum(left.values()) > 0:
        kinds = [k for k in left if left[k] > 0]
        k = rng.choices(kinds, weights=[left[x] for x in kinds])[0]
        n = min(left[k], rng.randint(1, 16) * MiB)
        left[k] -= n
        if regions and regions[-1][0] == k:
            regions[-1][1] += n
        else:
            regions.append([k, n])
    return regions


def write_image(path, size, shares, seed, pool_seed=None, holes_too=True):
    """Write the image; return {kind: bytes} and its SHA-256.  Zero regions
    alternate between holes and written zeros (unless holes_too=False)."""
    gen = Generator(seed, pool_seed)
    regions = plan_regions(gen.rng, size, shares)
    h = hashlib.sha256()
    counts = {}
    nzero = 0
    zeros = bytes(4 * MiB)
    with open(path, "wb") as f:
        for kind, n in regions:
            if kind == "zero":
                hole = holes_too and nzero % 2 == 0
                nzero += 1
                kind = "zero-hole" if hole else "zero-written"
                if hole:
                    f.seek(n, os.SEEK_CUR)
                    for off in range(0, n, len(zeros)):
                        h.update(zeros[:min(len(zeros), n - off)])
                else:
                    for off in range(0, n, len(zeros)):
                        b = zeros[:min(len(zeros), n - off)]
                        f.write(b)
                        h.update(b)
            else:
                for off in range(0, n, 16 * MiB):
                    m = min(16 * MiB, n - off)
                    b = gen.random(m) if kind == "random" else gen.text(m)
                    f.write(b)
                    h.update(b)
            counts[kind] = counts.get(kind, 0) + n
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())
    return counts, h.hexdigest(), len(regions)


def write_zero_file(path, size, sparse):
    with open(path, "wb") as f:
        if not sparse:
            z = bytes(16 * MiB)
            for off in range(0, size, len(z)):
                f.write(z[:min(len(z), size - off)])
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(16 * MiB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def disk_usage(path):
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            total += st.st_blocks * 512
    return total


def sync():
    os.sync()


def disk_write_rate(base, nbytes):
    """MB/s of writing nbytes of random data to a new file in base and
    fsyncing it: the ceiling for anything that makes its writes durable."""
    path = os.path.join(base, "ddtest")
    buf = hashlib.shake_256(b"ddtest").digest(4 * MiB)
    sync()
    t0 = time.perf_counter()
    with open(path, "wb", buffering=0) as f:
        for off in range(0, nbytes, len(buf)):
            f.write(buf[:min(len(buf), nbytes - off)])
        os.fsync(f.fileno())
    dt = time.perf_counter() - t0
    os.unlink(path)
    sync()
    return mbps(nbytes, dt)


# ---------------------------------------------------------------- running

class ToolError(Exception):
    pass


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def _poll_hwm(pid, box, stop):
    """Fallback peak RSS: sample VmHWM of the child's own mm until it exits."""
    path = "/proc/%d/status" % pid
    while not stop.wait(0.005):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        box[0] = max(box[0], int(line.split()[1]))
        except (OSError, ValueError):
            pass


def run(argv, env, cwd, logdir, label, stdin=None):
    """Run one child; return wall and CPU seconds, peak RSS (KiB) and stdout.

    A direct child's ru_maxrss includes the RSS of this (large) Python process
    at fork time: exec keeps the old mm's high-water mark in the process's
    maxrss.  So peak RSS comes from GNU time (-f %M: ru_maxrss of a child
    forked from a small process) when it is installed, else from sampling
    VmHWM in /proc every 5 ms.  CPU time (user+sys) comes from wait4."""
    out_path = os.path.join(logdir, label + ".out")
    err_path = os.path.join(logdir, label + ".err")
    rss_path = os.path.join(logdir, label + ".rss")
    full = ([GNU_TIME, "-f", "%M", "-o", rss_path] if GNU_TIME else []) + list(argv)
    box = [0]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
        try:
            t0 = time.perf_counter()
            p = subprocess.Popen(full, env=env, cwd=cwd, stdin=fin, stdout=out, stderr=err)
            if not GNU_TIME:
                stop = threading.Event()
                th = threading.Thread(target=_poll_hwm, args=(p.pid, box, stop), daemon=True)
                th.start()
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
            if not GNU_TIME:
                stop.set()
                th.join()
        finally:
            if stdin:
                fin.close()
    stdout = Path(out_path).read_text(errors="replace")
    stderr = Path(err_path).read_text(errors="replace")
    if GNU_TIME:
        try:
            box[0] = int(Path(rss_path).read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            box[0] = 0
    if p.returncode != 0:
        raise ToolError("%s: exit %d: %s\n  stderr: %s" % (
            label, p.returncode, " ".join(map(str, argv)), stderr.strip()[-2000:]))
    return {"seconds": wall, "cpu_seconds": ru.ru_utime + ru.ru_stime,
            "maxrss_kib": box[0], "stdout": stdout, "stderr": stderr}


def find_file(top, name):
    for dirpath, _, filenames in os.walk(top):
        if name in filenames:
            return os.path.join(dirpath, name)
    return None


class Tool:
    name = "?"

    def __init__(self, work, env, logdir):
        self.work = work
        self.env = env
        self.logdir = logdir
        self.notes = []

    def run(self, argv, phase, cwd=None):
        r = run(argv, self.env, cwd or self.work, self.logdir, "%s-%s" % (self.name, phase))
        return r


class Quiesce(Tool):
    name = "quiesce"

    def __init__(self, binary, *a):
        super().__init__(*a)
        self.bin = binary

    def version(self):
        try:
            r = subprocess.run([self.bin, "--version"], capture_output=True, text=True, timeout=20)
            return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else "?"
        except Exception as e:  # noqa: BLE001
            return "? (%s)" % e

    def _json(self, r, what):
        try:
            return json.loads(r["stdout"])
        except ValueError:
            self.notes.append("quiesce %s --json did not print one JSON document: %r"
                              % (what, r["stdout"][:200]))
            return None

    def init(self, repo, tag="init", chunk_size=None):
        extra = ["--chunk-size", str(chunk_size)] if chunk_size else []
        r = self.run([self.bin, "init", "--repo", repo, "--json", *extra], tag)
        doc = self._json(r, "init")
        if doc is not None:
            for k in ("repo", "id", "version", "chunk_size"):
                if k not in doc:
                    self.notes.append("quiesce init --json lacks %r: %s" % (k, r["stdout"][:200]))
        return r

    def backup(self, repo, image, phase, threads=None):
        argv = [self.bin, "backup", "--repo", repo, "--image", image, "--name", "bench", "--json"]
        if threads:
            argv += ["--threads", str(threads)]
        r = self.run(argv, phase)
        doc = self._json(r, "backup")
        if doc is not None:
            r["stats"] = doc.get("stats")
            if "stats" not in doc or "disks" not in doc:
                self.notes.append("quiesce backup --json lacks stats/disks: %s" % r["stdout"][:300])
        return r

    def restore(self, repo, out, phase):
        target = os.path.join(out, "disk.img")
        r = self.run([self.bin, "restore", "--repo", repo, "latest", "--to", target, "--json"],
                     phase)
        doc = self._json(r, "restore")
        if doc is not None and doc.get("to") not in (target, None):
            self.notes.append("quiesce restore --json says to=%r, expected %r"
                              % (doc.get("to"), target))
        r["path"] = target
        return r


class Restic(Tool):
    name = "restic"

    def version(self):
        return subprocess.run(["restic", "version"], capture_output=True, text=True,
                              env=self.env).stdout.strip()

    def init(self, repo, tag="init"):
        return self.run(["restic", "-r", repo, "init"], tag)

    def backup(self, repo, image, phase, threads=None):
        argv = ["restic", "-r", repo, "backup", image]
        if phase != "backup1":
            argv.insert(4, "--force")
        return self.run(argv, phase)

    def restore(self, repo, out, phase):
        r = self.run(["restic", "-r", repo, "restore", "latest", "--target", out], phase)
        r["path"] = find_file(out, "disk.img")
        return r


class Borg(Tool):
    name = "borg"

    def version(self):
        return subprocess.run(["borg", "--version"], capture_output=True, text=True,
                              env=self.env).stdout.strip()

    def init(self, repo, tag="init"):
        return self.run(["borg", "init", "-e", "none", repo], tag)

    def backup(self, repo, image, phase, threads=None):
        argv = ["borg", "create", "--chunker-params", "fixed,4194304", "--sparse",
                "%s::%s" % (repo, phase), os.path.basename(image)]
        if phase != "backup1":
            argv[2:2] = ["--files-cache", "disabled"]
        self.last = phase
        return self.run(argv, phase, cwd=os.path.dirname(image))

    def restore(self, repo, out, phase):
        r = self.run(["borg", "extract", "--sparse", "%s::%s" % (repo, self.last)], phase,
                     cwd=out)
        r["path"] = find_file(out, "disk.img")
        return r


# ---------------------------------------------------------------- benchmark

def mbps(size, seconds):
    return size / seconds / 1e6 if seconds > 0 else float("inf")


def measure(r, nbytes, **extra):
    m = {k: r[k] for k in ("seconds", "cpu_seconds", "maxrss_kib")}
    m.update(bytes=nbytes, mb_s=mbps(nbytes, r["seconds"]), **extra)
    if r.get("stats"):
        m["stats"] = r["stats"]
    return m


def fsync_file(path):
    """fsync a restored file; return the seconds it took."""
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def bench_tool(tool, base, image, size, digest):
    """One round: init, backup1, backup2, restore, hash check -> {phase: m}."""
    res = {}
    repo = os.path.join(base, "repo-" + tool.name)
    out = os.path.join(base, "restore-" + tool.name)
    os.makedirs(out)
    try:
        tool.init(repo)
        for phase in ("backup1", "backup2"):
            sync()
            log("%s %s" % (tool.name, phase))
            res[phase] = measure(tool.backup(repo, image, phase), size)
        sync()
        res["repo_bytes"] = disk_usage(repo)
        log("%s restore" % tool.name)
        r = tool.restore(repo, out, "restore")
        path = r.get("path")
        if not path or not os.path.exists(path):
            res["error"] = "restored file not found under %s" % out
            return res
        # every tool's restore is timed until the file is on disk: quiesce
        # fsyncs its target itself, restic and borg do not
        fs = fsync_file(path)
        res["restore"] = measure(r, size, process_seconds=r["seconds"], fsync_seconds=fs)
        res["restore"]["seconds"] += fs
        res["restore"]["mb_s"] = mbps(size, res["restore"]["seconds"])
        res["restore"]["identical"] = sha256_file(path) == digest
        res["restore"]["restored_disk_bytes"] = os.stat(path).st_blocks * 512
        if not res["restore"]["identical"]:
            res["error"] = "restored file differs from the image (SHA-256)"
    except ToolError as e:
        res["error"] = str(e)
        log("FAILED: " + str(e))
    finally:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(repo, ignore_errors=True)
        sync()
    return res


def bench_quiesce_targets(q, base, sizes, seed):
    """One round of quiesce alone: new data with --threads 1, duplicates, zero files."""
    res = {}
    nd = os.path.join(base, "newdata.img")
    try:
        if not os.path.exists(nd):
            log("generating %s no-zero image" % fmt_size(sizes["newdata"]))
            write_image(nd, sizes["newdata"], {"random": 0.5, "text": 0.5}, seed + 1, seed)
        sha256_file(nd)  # warm
        repo = os.path.join(base, "repo-q-newdata")
        q.init(repo, "init-newdata")
        sync()
        log("quiesce new data, --threads 1")
        r = q.backup(repo, nd, "newdata-t1", threads=1)
        res["newdata_threads1"] = measure(r, sizes["newdata"],
                                          mb_per_cpu_s=mbps(sizes["newdata"], r["cpu_seconds"]))
        sync()
        log("quiesce duplicate (no-zero image again, default threads)")
        res["dup_nozero"] = measure(q.backup(repo, nd, "newdata-dup"), sizes["newdata"])
        shutil.rmtree(repo, ignore_errors=True)

        for sparse in (False, True):
            key = "zero_hole" if sparse else "zero_written"
            z = os.path.join(base, "zero.img")
            write_zero_file(z, sizes["zero"], sparse)
            sha256_file(z)  # warm
            repo = os.path.join(base, "repo-q-" + key)
            q.init(repo, "init-" + key)
            sync()
            log("quiesce %s" % key)
            res[key] = measure(q.backup(repo, z, key), sizes["zero"])
            res[key]["repo_bytes"] = disk_usage(repo)
            os.unlink(z)
            shutil.rmtree(repo, ignore_errors=True)

        # a 1 TiB disk at 64 KiB chunks (16 Mi chunks) with 8 MiB of data: what
        # the manifest and the chunk map cost is what this measures (issue 10)
        big = os.path.join(base, "sparse-1t.img")
        with open(big, "wb") as f:
            f.truncate(1 << 40)
            for off, n in ((0, 4 << 20), (1 << 39, 2 << 20), ((1 << 40) - (4 << 20), 2 << 20)):
                f.seek(off)
                f.write(os.urandom(n))
        repo = os.path.join(base, "repo-q-sparse-1t")
        q.init(repo, "init-sparse-1t", chunk_size=64 << 10)
        log("quiesce sparse 1 TiB at 64 KiB chunks")
        b = q.backup(repo, big, "sparse-1t")
        out = os.path.join(base, "restore-sparse-1t")
        os.makedirs(out, exist_ok=True)
        rr = q.restore(repo, out, "restore-sparse-1t")
        snaps = os.path.join(repo, "snapshots")
        res["sparse_1t"] = {"seconds": b["seconds"], "maxrss_kib": max(b["maxrss_kib"], rr["maxrss_kib"]),
                            "backup_seconds": b["seconds"], "backup_maxrss_kib": b["maxrss_kib"],
                            "restore_seconds": rr["seconds"], "restore_maxrss_kib": rr["maxrss_kib"],
                            "manifest_bytes": sum(os.path.getsize(os.path.join(snaps, f))
                                                  for f in os.listdir(snaps))}
        os.unlink(big)
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(repo, ignore_errors=True)
    except ToolError as e:
        res["error"] = str(e)
        log("FAILED: " + str(e))
    return res


def median_rounds(rounds):
    """Merge rounds of {key: measurement}: per key the round with the median
    wall time, plus every round's seconds; the first error wins."""
    out = {}
    for rnd in rounds:
        for k, v in rnd.items():
            if k == "error":
                out.setdefault("error", v)
            elif k == "repo_bytes":
                out[k] = v
            else:
                out.setdefault(k, []).append(v)
    for k, v in list(out.items()):
        if isinstance(v, list):
            runs = sorted(v, key=lambda m: m["seconds"])
            m = dict(runs[(len(runs) - 1) // 2])
            m["runs_seconds"] = [x["seconds"] for x in v]
            m["maxrss_kib"] = max(x["maxrss_kib"] for x in v)
            if "identical" in m:
                m["identical"] = all(x["identical"] for x in v)
            out[k] = m
    return out


def targets(results):
    t = []
    q = results.get("quiesce", {})
    rs = results.get("restic", {})
    x = results.get("quiesce_extra", {})

    def add(name, value, goal, unit):
        t.append({"target": name, "value": value, "goal": goal, "unit": unit,
                  "met": None if value is None else value >= goal})

    ok = lambda d, k: k in d and "error" not in d  # noqa: E731
    add("first backup vs restic", q["backup1"]["mb_s"] / rs["backup1"]["mb_s"]
        if ok(q, "backup1") and ok(rs, "backup1") else None, 3.0, "x")
    add("new data per core (--threads 1)", x["newdata_threads1"]["mb_s"]
        if "newdata_threads1" in x else None, 300.0, "MB/s")
    if "newdata_threads1" in x:
        t[-1]["per_cpu_second"] = x["newdata_threads1"]["mb_per_cpu_s"]
    add("zero data (all-zero file, written)", x["zero_written"]["mb_s"] / 1000
        if "zero_written" in x else None, 2.0, "GB/s")
    add("duplicate data (2nd unchanged backup)", q["backup2"]["mb_s"] / 1000
        if ok(q, "backup2") else None, 2.0, "GB/s")
    add("restore", q["restore"]["mb_s"] / 1000 if ok(q, "restore") else None, 1.0, "GB/s")
    return t


def report(doc):
    p = print
    im = doc["image"]
    p("bench-repo: %s mixed image (%s), seed %d, workdir %s" % (
        fmt_size(im["size"]), ", ".join("%s %.1f %%" % (k, 100 * v / im["size"])
                                        for k, v in sorted(im["composition"].items())),
        doc["seed"], doc["workdir"]))
    p("  %d regions of 1-16 MiB; text compresses %s with zstd -1 (4 MiB sample); "
      "%d CPUs; page cache warm; MB = 10^6 B; %s" % (
          im["regions"], "%.2fx" % im["text_zstd1_ratio"] if im.get("text_zstd1_ratio")
          else "(zstd CLI not found)", doc["cpus"],
          "median of %d runs" % doc["repeat"] if doc["repeat"] > 1 else "one run"))
    p("  workdir file system: write + fsync of %s new data: %.0f MB/s (best of 3; context for "
      "durable writes, noisy on virtual disks)" % (
          fmt_size(doc["disk_write_fsync_bytes"]), doc["disk_write_fsync_mb_s"]))
    for name, v in doc["versions"].items():
        p("  %-8s %s" % (name, v))
    p("")
    p("%-8s %-9s %9s %10s %10s %10s  %s" % ("tool", "phase", "seconds", "MB/s", "CPU s",
                                           "peak RSS", "notes"))
    tools = [t for t in ("quiesce", "restic", "borg") if t in doc["results"]]
    for t in tools:
        r = doc["results"][t]
        for phase in ("backup1", "backup2", "restore"):
            if phase not in r:
                continue
            x = r[phase]
            note = ""
            if phase == "restore":
                note = "%s, fsync %.2f s" % ("identical" if x.get("identical") else "MISMATCH",
                                            x.get("fsync_seconds", 0))
            elif x.get("stats"):
                s = x["stats"]
                note = "new %s reused %s stored %s" % (
                    s.get("chunks_new"), s.get("chunks_reused"),
                    fmt_size(s["bytes_stored"]) if isinstance(s.get("bytes_stored"), int) else "?")
            if len(x.get("runs_seconds", [])) > 1:
                note = "[%.2f-%.2f s] %s" % (min(x["runs_seconds"]), max(x["runs_seconds"]), note)
            p("%-8s %-9s %9.2f %10.1f %10.2f %7.0f MiB  %s" % (
                t, phase, x["seconds"], x["mb_s"], x["cpu_seconds"], x["maxrss_kib"] / 1024, note))
        if "error" in r:
            p("%-8s ERROR: %s" % (t, r["error"]))
    for s in doc["skipped"]:
        p("%-8s skipped: %s" % (s["tool"], s["why"]))
    p("")
    p("repository size on disk after two backups:")
    for t in tools:
        if "repo_bytes" in doc["results"][t]:
            b = doc["results"][t]["repo_bytes"]
            p("  %-8s %10s  (%.1f %% of the image, %.1f %% of its non-zero bytes)" % (
                t, fmt_size(b), 100 * b / im["size"], 100 * b / max(1, im["nonzero"])))
    if doc["ratios"]:
        p("")
        p("ratios (quiesce / peer; throughput: higher is better for quiesce; RSS, repo: lower):")
        p("  %-8s %9s %9s %9s %12s %12s %10s" % ("peer", "backup1", "backup2", "restore",
                                               "peak RSS", "repo size", "CPU b1"))
        for peer, r in doc["ratios"].items():
            p("  %-8s %8.2fx %8.2fx %8.2fx %11.2fx %11.2fx %9.2fx" % (
                peer, r["backup1"], r["backup2"], r["restore"], r["peak_rss"], r["repo_size"],
                r["cpu_backup1"]))
    x = doc["results"].get("quiesce_extra")
    if x:
        p("")
        p("quiesce alone:")
        if "newdata_threads1" in x:
            n = x["newdata_threads1"]
            p("  new data, %s no-zero image, --threads 1: %.2f s, %.1f MB/s "
              "(%.1f MB per CPU-second), peak RSS %.0f MiB" % (
                  fmt_size(n["bytes"]), n["seconds"], n["mb_s"], n["mb_per_cpu_s"],
                  n["maxrss_kib"] / 1024))
        if "dup_nozero" in x:
            n = x["dup_nozero"]
            p("  same image again (all duplicate), default threads: %.2f s, %.2f GB/s" % (
                n["seconds"], n["mb_s"] / 1000))
        for key, what in (("zero_written", "written zeros"), ("zero_hole", "one hole (sparse)")):
            if key in x:
                n = x[key]
                p("  all-zero %s, %s: %.2f s, %.2f GB/s, peak RSS %.0f MiB, repo %s" % (
                    fmt_size(n["bytes"]), what, n["seconds"], n["mb_s"] / 1000,
                    n["maxrss_kib"] / 1024, fmt_size(n["repo_bytes"])))
        if "sparse_1t" in x:
            n = x["sparse_1t"]
            p("  1 TiB sparse disk, 8 MiB of data, 64 KiB chunks (16 Mi chunks): backup %.2f s, "
              "peak RSS %.0f MiB; restore %.2f s, peak RSS %.0f MiB; manifest %s" % (
                  n["backup_seconds"], n["backup_maxrss_kib"] / 1024, n["restore_seconds"],
                  n["restore_maxrss_kib"] / 1024, fmt_size(n["manifest_bytes"])))
        if "error" in x:
            p("  ERROR: %s" % x["error"])
    if doc["targets"]:
        p("")
        p("targets (issue 5):")
        for t in doc["targets"]:
            if t["value"] is None:
                p("  %-40s %10s   goal >= %g %s  -- not measured" % (t["target"], "-", t["goal"],
                                                                   t["unit"]))
            else:
                p("  %-40s %8s %-4s goal >= %g %-4s %s" % (
                    t["target"], ("%.1f" if t["unit"] == "MB/s" else "%.3f") % t["value"],
                    t["unit"], t["goal"], t["unit"],
                    "met" if t["met"] else "NOT MET"))
                if "per_cpu_second" in t:
                    p("  %-40s (%.1f MB per CPU-second of the process)" % (
                        "", t["per_cpu_second"]))
    p("")
    p("method:")
    for n in doc["method"]:
        p("  - " + n)
    if doc["notes"]:
        p("")
        p("notes:")
        for n in doc["notes"]:
            p("  - " + n)


def fmt_size(n):
    for unit, f in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= f:
            return "%.2f %s" % (n / f, unit) if n % f else "%d %s" % (n // f, unit)
    return "%d B" % n


METHOD = [
    "page cache warm for all tools: the image is read (hashed) once before timing; "
    "`sync` between phases outside the timings; each tool's own fsyncs are timed",
    "wall time and CPU time (user+sys) per child from os.wait4; peak RSS from GNU time "
    "(%M, when installed) else VmHWM sampled every 5 ms",
    "zero regions of the mixed image alternate: holes (never written) and written zeros",
    "restic: backs up the file by path; 2nd backup with --force (re-reads, like quiesce "
    "must for block devices/NBD); repo v2, --compression auto; restore is not sparse",
    "borg: init -e none; create --chunker-params fixed,4194304 --sparse (default would "
    "be buzhash,19,23,21,4095), default compression lz4; 2nd backup --files-cache disabled; "
    "extract --sparse; single-threaded",
    "quiesce: default chunk size and --threads (online CPUs) unless stated",
    "repository size = allocated blocks of the repository directory (client caches "
    "of restic/borg are elsewhere and not counted)",
    "every restore is checked: SHA-256 of the restored file == SHA-256 of the image",
    "restore time = the tool's run + an fsync of the restored file (the 'fsync' figure; "
    "quiesce fsyncs its target itself, so its own is ~0; restic and borg do not)",
    "with --repeat N: tools interleaved round by round; each figure is the median run "
    "[min-max s]; peak RSS is the maximum over the runs",
]


def text_ratio(seed):
    """zstd -1 ratio of a 4 MiB text sample, if the zstd CLI is there."""
    if not shutil.which("zstd"):
        return None
    sample = Generator(seed).text(4 * MiB)
    r = subprocess.run(["zstd", "-1", "-c", "-q"], input=sample, capture_output=True)
    return len(sample) / len(r.stdout) if r.returncode == 0 and r.stdout else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quiesce", default=os.environ.get("QUIESCE"),
                    help="quiesce binary (env QUIESCE; default build/src/host/quiesce)")
    ap.add_argument("--size", type=parse_size, default=None,
                    help="mixed image size (default 1GiB; 64MiB with --quick)")
    ap.add_argument("--workdir", default="/tmp", help="where the temp dir goes (default /tmp)")
    ap.add_argument("--quick", action="store_true", help="small sizes, a smoke test for CI")
    ap.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run every measurement N times (tools interleaved), report the "
                    "median (default 1)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (debugging)")
    ap.add_argument("--only", default="quiesce,restic,borg",
                    help="comma-separated tools to run (default all)")
    a = ap.parse_args()
    if a.repeat < 1:
        ap.error("--repeat must be at least 1")

    size = a.size or (64 * MiB if a.quick else GiB)
    sizes = {"mixed": size, "newdata": max(4 * MiB, min(256 * MiB, size // 4)), "zero": size}
    qbin = a.quiesce or str(TOP / "build" / "src" / "host" / "quiesce")
    only = set(a.only.split(","))

    base = tempfile.mkdtemp(prefix="bench-repo-", dir=a.workdir)
    logdir = os.path.join(base, "logs")
    os.makedirs(logdir)
    env = dict(os.environ)
    env.update({
        "RESTIC_PASSWORD": "bench-repo",
        "RESTIC_CACHE_DIR": os.path.join(base, "restic-cache"),
        "RESTIC_PROGRESS_FPS": "0.016",
        "BORG_BASE_DIR": os.path.join(base, "borg-base"),
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        "BORG_CHECK_I_KNOW_WHAT_I_AM_DOING": "NO",
        "BORG_DELETE_I_KNOW_WHAT_I_AM_DOING": "NO",
    })
    env.pop("QUIESCE_REPO", None)
    env.pop("QUIESCE_FAULT_KILL_AFTER", None)
    env.pop("RESTIC_REPOSITORY", None)
    env.pop("BORG_REPO", None)

    doc = {"seed": a.seed, "repeat": a.repeat, "workdir": base, "cpus": os.cpu_count(), "quick": a.quick,
           "sizes": sizes, "versions": {}, "results": {}, "skipped": [], "ratios": {},
           "targets": [], "method": METHOD, "notes": []}
    failed = False
    try:
        tools = []
        if "quiesce" in only:
            if os.access(qbin, os.X_OK):
                tools.append(Quiesce(qbin, base, env, logdir))
            else:
                doc["skipped"].append({"tool": "quiesce", "why": "%s not found" % qbin})
        for name, cls in (("restic", Restic), ("borg", Borg)):
            if name not in only:
                continue
            if shutil.which(name):
                tools.append(cls(base, env, logdir))
            else:
                doc["skipped"].append({"tool": name, "why": "not installed"})
        for t in tools:
            doc["versions"][t.name] = t.version()

        image = os.path.join(base, "disk.img")
        log("generating %s mixed image" % fmt_size(size))
        t0 = time.perf_counter()
        comp, digest, nregions = write_image(
            image, size, {"zero": 0.4, "random": 0.3, "text": 0.3}, a.seed)
        log("generated in %.1f s; warming the page cache" % (time.perf_counter() - t0))
        assert sha256_file(image) == digest
        doc["image"] = {"size": size, "composition": comp, "sha256": digest,
                        "regions": nregions,
                        "nonzero": comp.get("random", 0) + comp.get("text", 0),
                        "allocated": os.stat(image).st_blocks * 512,
                        "text_zstd1_ratio": text_ratio(a.seed)}
        # context only: best of three, and a virtual disk's write cache can
        # make it much higher than what a long durable write sustains
        doc["disk_write_fsync_bytes"] = max(16 * MiB, min(256 * MiB, size // 4))
        doc["disk_write_fsync_mb_s"] = max(
            disk_write_rate(base, doc["disk_write_fsync_bytes"]) for _ in range(3))

        rounds = {t.name: [] for t in tools}
        for i in range(a.repeat):
            if a.repeat > 1:
                log("round %d of %d" % (i + 1, a.repeat))
            for t in tools:  # interleaved, so slow spells of the disk hit everyone
                rounds[t.name].append(bench_tool(t, base, image, size, digest))
        for t in tools:
            doc["results"][t.name] = median_rounds(rounds[t.name])
        os.unlink(image)

        q = next((t for t in tools if t.name == "quiesce"), None)
        if q is not None:
            doc["results"]["quiesce_extra"] = median_rounds(
                [bench_quiesce_targets(q, base, sizes, a.seed) for _ in range(a.repeat)])
        for t in tools:
            doc["notes"] += list(dict.fromkeys(t.notes))

        qr = doc["results"].get("quiesce", {})
        if all(k in qr for k in ("backup1", "backup2", "restore")):
            for peer in ("restic", "borg"):
                pr = doc["results"].get(peer, {})
                if not all(k in pr for k in ("backup1", "backup2", "restore")):
                    continue
                doc["ratios"][peer] = {
                    "backup1": qr["backup1"]["mb_s"] / pr["backup1"]["mb_s"],
                    "backup2": qr["backup2"]["mb_s"] / pr["backup2"]["mb_s"],
                    "restore": qr["restore"]["mb_s"] / pr["restore"]["mb_s"],
                    "peak_rss": max(qr[p]["maxrss_kib"] for p in ("backup1", "backup2", "restore"))
                    / max(pr[p]["maxrss_kib"] for p in ("backup1", "backup2", "restore")),
                    "repo_size": qr["repo_bytes"] / pr["repo_bytes"],
                    "cpu_backup1": qr["backup1"]["cpu_seconds"] / pr["backup1"]["cpu_seconds"],
                }
        if q is not None:
            doc["targets"] = targets(doc["results"])
        if a.quick or size < 256 * MiB:
            doc["notes"].append("small sizes (--quick / --size < 256 MiB): start-up costs "
                                "dominate; these figures say nothing about the targets")
        failed = any("error" in r for r in doc["results"].values())
    finally:
        if a.keep:
            log("kept %s" % base)
        else:
            shutil.rmtree(base, ignore_errors=True)

    if a.json:
        json.dump(doc, sys.stdout, indent=1)
        print()
    else:
        report(doc)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
