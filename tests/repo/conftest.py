# SPDX-License-Identifier: MIT
"""Helpers for the `quiesce` repository CLI tests (docs/repository.md).

Everything here works in a fresh directory under /tmp that is removed at the
end of each test; loop mounts (in this process's private mount namespace),
qemu-nbd servers and child processes are stopped on every path.  Nothing in
these tests ever freezes a filesystem.
"""
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
QUIESCE = Path(os.environ.get("QUIESCE", TOP / "build" / "src" / "host" / "quiesce"))

MiB = 1 << 20
KiB = 1 << 10

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_REPO, EXIT_SOURCE, EXIT_DAMAGED, EXIT_NOSPC, \
    EXIT_LOCKED, EXIT_NOSNAP = 0, 1, 2, 3, 4, 5, 6, 7, 8
EXIT_INTR = 130

ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}$")
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def pytest_configure(config):
    config.addinivalue_line("markers", "mounts: loop-mounts test filesystems (root)")


# ---------------------------------------------------------------------------
# running the CLI

class Result:
    def __init__(self, cmd, rc, out, err, seconds):
        self.cmd, self.rc, self.out, self.err, self.seconds = cmd, rc, out, err, seconds

    @property
    def json(self):
        try:
            return json.loads(self.out)
        except ValueError as e:
            raise AssertionError("stdout of %s is not one JSON document (%s): %r"
                                 % (self.describe_cmd(), e, self.out[:2000]))

    def describe_cmd(self):
        return " ".join(str(c) for c in self.cmd)

    def __repr__(self):
        return "<%s -> rc=%s\nstdout: %s\nstderr: %s>" % (
            self.describe_cmd(), self.rc, self.out[-3000:], self.err[-3000:])


def q(*args, env=None, timeout=600, cwd=None):
    """Run quiesce with stdin/stdout/stderr not on a terminal."""
    cmd = [str(QUIESCE)] + [str(a) for a in args]
    e = dict(os.environ)
    e.pop("QUIESCE_REPO", None)
    e.pop("QUIESCE_FAULT_KILL_AFTER", None)
    if env:
        e.update({k: str(v) for k, v in env.items()})
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=e, timeout=timeout, cwd=cwd)
    return Result(cmd, p.returncode, p.stdout.decode(errors="replace"),
                  p.stderr.decode(errors="replace"), time.monotonic() - t0)


def expect(r, rc):
    assert r.rc == rc, "expected exit %s: %r" % (rc, r)
    return r


def expect_ok(r):
    """Exit 0 and, without a terminal, nothing at all on stderr."""
    expect(r, 0)
    assert r.err == "", "stderr not empty on success without a TTY: %r" % r
    return r


def expect_error(r, rc):
    """Exit `rc` and exactly one non-empty error line on stderr."""
    expect(r, rc)
    lines = r.err.strip("\n").split("\n")
    assert r.err.strip() and len(lines) == 1, \
        "expected exactly one error line on stderr: %r" % r
    return lines[0]


# ---------------------------------------------------------------------------
# the repository, read directly through its documented format

def decode_runs(blob, nchunks):
    """A version-2 chunk list (docs/repository.md): runs of 8-byte little-endian
    headers, bit 63 set for zero chunks, else followed by that many digests."""
    out, i = [], 0
    while i < len(blob):
        assert len(blob) - i >= 8, "run header cut"
        h = int.from_bytes(blob[i:i + 8], "little")
        i += 8
        n = h & ((1 << 63) - 1)
        assert n >= 1
        if h >> 63:
            out.extend([None] * n)
        else:
            assert len(blob) - i >= 32 * n, "digests cut"
            out.extend(blob[i + 32 * k:i + 32 * k + 32].hex() for k in range(n))
            i += 32 * n
    assert len(out) == nchunks, (len(out), nchunks)
    return out


def parse_manifest(data):
    """(header fields, document) of a manifest's bytes, either version; asserts
    the header and checksums.  A version-2 document's chunk lists are decoded
    into the same list of digests-or-None that version 1 holds inline (the
    list's description stays in disk["chunk_list"])."""
    nl = data.index(b"\n")
    header = data[:nl].decode()
    parts = header.split(" ")
    assert parts[0] == "quiesce-manifest" and parts[1] in ("1", "2"), header
    assert DIGEST_RE.match(parts[2]), header
    if parts[1] == "1":
        assert len(parts) == 3, header
        body = data[nl + 1:]
        assert hashlib.sha256(body).hexdigest() == parts[2], "manifest checksum mismatch"
        return parts, json.loads(body)
    assert len(parts) == 4 and parts[3].isdigit(), header
    n = int(parts[3])
    doc = data[nl + 1:nl + 1 + n]
    assert len(doc) == n and doc.endswith(b"\n"), "document cut"
    assert hashlib.sha256(doc).hexdigest() == parts[2], "manifest checksum mismatch"
    m = json.loads(doc)
    rest = data[nl + 1 + n:]
    cs = m["chunk_size"]
    for d in m["disks"]:
        lst = d["chunks"]
        assert lst["format"] == "runs", lst
        blob, rest = rest[:lst["bytes"]], rest[lst["bytes"]:]
        assert len(blob) == lst["bytes"] and hashlib.sha256(blob).hexdigest() == lst["sha256"]
        d["chunk_list"] = lst
        d["chunks"] = decode_runs(blob, nchunks(d["size"], cs))
        assert sum(c is not None for c in d["chunks"]) == lst["stored"]
    assert rest == b"", "bytes after the chunk lists"
    return parts, m


def manifest_bytes(doc):
    """A version-1 manifest (which every quiesce reads) of `doc`."""
    doc = json.loads(json.dumps(doc))
    for d in doc["disks"]:
        d.pop("chunk_list", None)
    body = (json.dumps(doc) + "\n").encode()
    return b"quiesce-manifest 1 " + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def manifest_v2_bytes(doc, lists):
    """A version-2 manifest of `doc` whose disks' chunk lists are the raw
    bytes in `lists` (one per disk), described in the document as written."""
    doc = json.loads(json.dumps(doc))
    for d, blob in zip(doc["disks"], lists):
        d.pop("chunk_list", None)
        stored, i = 0, 0
        while i + 8 <= len(blob):
            h = int.from_bytes(blob[i:i + 8], "little")
            i += 8
            if not h >> 63:
                stored += h
                i += 32 * h
        d["chunks"] = {"format": "runs", "bytes": len(blob), "stored": stored,
                       "sha256": hashlib.sha256(blob).hexdigest()}
    body = (json.dumps(doc) + "\n").encode()
    return (b"quiesce-manifest 2 " + hashlib.sha256(body).hexdigest().encode() +
            b" %d\n" % len(body) + body + b"".join(lists))


class Repo:
    def __init__(self, path):
        self.path = Path(path)

    def __str__(self):
        return str(self.path)

    # commands ---------------------------------------------------------------
    def run(self, cmd, *args, env=None, timeout=600):
        return q(cmd, "--repo", self.path, *args, env=env, timeout=timeout)

    def init(self, chunk_size=None):
        args = ["--chunk-size", chunk_size] if chunk_size else []
        return expect_ok(q("init", "--repo", self.path, "--json", *args)).json

    def backup(self, *images, name=None, meta=(), env=None, extra=(), time=None):
        args = ["--time", time] if time else []
        for i in images:
            args += ["--image", i]
        if name is not None:
            args += ["--name", name]
        for m in meta:
            args += ["--meta", m]
        return expect_ok(self.run("backup", "--json", *args, *extra, env=env)).json

    def backup_raw(self, *images, name=None, env=None, json_=True, extra=()):
        args = []
        for i in images:
            args += ["--image", i]
        if name is not None:
            args += ["--name", name]
        if json_:
            args.append("--json")
        return self.run("backup", *args, *extra, env=env)

    def snapshots(self, *args):
        return expect_ok(self.run("snapshots", "--json", *args)).json

    def restore(self, snap, to, *args):
        return expect_ok(self.run("restore", snap, "--to", to, "--json", *args)).json

    def verify(self, *args):
        return self.run("verify", "--json", *args)

    def gc(self):
        return expect_ok(self.run("gc", "--json")).json

    # on-disk state ----------------------------------------------------------
    @property
    def config(self):
        return json.loads((self.path / "config").read_text())

    @property
    def chunk_size(self):
        return self.config["chunk_size"]

    def _files(self, sub):
        d = self.path / sub
        out = set()
        if not d.is_dir():
            return out
        for fan in d.iterdir():
            if fan.is_dir() and len(fan.name) == 2:
                for f in fan.iterdir():
                    out.add(f.name)
        return out

    def chunk_files(self):
        return self._files("chunks")

    def trash_files(self):
        """Chunks in trash: trash/xx/ (version 1) and every generation's
        trash/gen/<N>/xx/ (version 2)."""
        out = self._files("trash")
        gens = self.path / "trash" / "gen"
        if gens.is_dir():
            for g in gens.iterdir():
                out |= self._files(os.path.join("trash", "gen", g.name))
        return out

    def trash_path(self, digest, gen=1):
        """Where generation `gen` of a version-2 gc puts a chunk."""
        return self.path / "trash" / "gen" / str(gen) / digest[:2] / digest

    def chunk_path(self, digest):
        return self.path / "chunks" / digest[:2] / digest

    def tmp_files(self):
        d = self.path / "tmp"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def manifest_ids(self):
        return sorted(p.name for p in (self.path / "snapshots").iterdir())

    def manifest(self, sid):
        return parse_manifest((self.path / "snapshots" / sid).read_bytes())[1]

    def manifests(self):
        return {sid: self.manifest(sid) for sid in self.manifest_ids()}

    def referenced(self, manifests=None):
        refs = set()
        for m in (manifests or self.manifests()).values():
            for d in m["disks"]:
                refs.update(c for c in d["chunks"] if c is not None)
        return refs

    def state(self):
        """Every path in the repository with its size, content hash and mtime
        (directories: None), to check that a command changed nothing."""
        out = {}
        for root, dirs, files in os.walk(self.path):
            for d in dirs:
                out[os.path.relpath(os.path.join(root, d), self.path)] = None
            for f in files:
                p = os.path.join(root, f)
                st = os.lstat(p)
                with open(p, "rb") as fh:
                    h = hashlib.sha256(fh.read()).hexdigest()
                out[os.path.relpath(p, self.path)] = (st.st_size, h, st.st_mtime_ns)
        return out

    def assert_consistent(self):
        """No visible snapshot references a missing chunk (chunks/ or trash/)."""
        have = self.chunk_files() | self.trash_files()
        for sid, m in self.manifests().items():
            for d in m["disks"]:
                for c in d["chunks"]:
                    assert c is None or c in have, "snapshot %s references missing chunk %s" % (sid, c)

    def assert_clean(self):
        """After a completed gc with no backup running: chunks/ holds exactly
        the referenced chunks, trash/ and tmp/ are empty."""
        refs = self.referenced()
        chunks = self.chunk_files()
        assert chunks == refs, "after gc: unreferenced %s, missing %s" % (
            sorted(chunks - refs)[:5], sorted(refs - chunks)[:5])
        assert self.trash_files() == set(), "trash not emptied"
        assert self.tmp_files() == [], "tmp/ not emptied: %s" % self.tmp_files()


def read_chunk(path, chunk_size):
    """Decode a chunk file per the format; returns (codec, raw bytes)."""
    data = Path(path).read_bytes()
    assert len(data) >= 16
    assert data[0:4] == b"QCK1", data[:16]
    codec, flags = data[4], data[5]
    assert data[6:8] == b"\0\0" and flags == 0
    raw_len = int.from_bytes(data[8:12], "little")
    pay_len = int.from_bytes(data[12:16], "little")
    assert len(data) == 16 + pay_len
    assert 1 <= raw_len <= chunk_size
    payload = data[16:]
    if codec == 0:
        raw = payload
    else:
        assert codec == 1, codec
        raw = subprocess.run(["zstd", "-d", "-c", "-q"], input=payload, stdout=subprocess.PIPE,
                             check=True).stdout
        assert pay_len < raw_len, "stored compressed although not smaller"
    assert len(raw) == raw_len
    return codec, raw


# ---------------------------------------------------------------------------
# images

WORDS = ("the quick brown fox jumps over lazy dog backup chunk repository snapshot "
         "manifest restore verify prune keep daily weekly monthly zstd sha256 qemu "
         "nbd disk image sparse hole extent block status kernel filesystem").split()


def text_bytes(n, seed):
    r = random.Random(seed)
    out = bytearray()
    line = 0
    while len(out) < n:
        line += 1
        out += ("%d:%d %s\n" % (seed, line, " ".join(r.choice(WORDS) for _ in range(12)))).encode()
    return bytes(out[:n])


def write_image(path, spec, cs, tail=0, seed=None):
    """Write a raw image chunk by chunk: spec has one letter per chunk of
    `cs` bytes, then `tail` more bytes of the kind of spec's last letter.
      R random   T text   Z hole (never written)   z written zeros
    Returns the image's bytes' sha256 and, per chunk, whether it is zero."""
    seed = random.randrange(1 << 30) if seed is None else seed
    n = len(spec)
    size = n * cs + tail
    zero = []
    with open(path, "wb") as f:
        f.truncate(size)
        for i, k in enumerate(spec):
            ln = cs
            if k == "R":
                f.seek(i * cs)
                f.write(os.urandom(ln))
            elif k == "T":
                f.seek(i * cs)
                f.write(text_bytes(ln, seed * 1000 + i))
            elif k == "z":
                f.seek(i * cs)
                f.write(b"\0" * ln)
            zero.append(k in "Zz")
        if tail:
            k = spec[-1]
            f.seek(n * cs)
            if k == "R":
                f.write(os.urandom(tail))
            elif k == "T":
                f.write(text_bytes(tail, seed * 1000 + n))
            elif k == "z":
                f.write(b"\0" * tail)
            zero.append(k in "Zz")
    return zero


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def assert_same(a, b):
    r = subprocess.run(["cmp", str(a), str(b)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, "cmp %s %s: %s" % (a, b, r.stdout.decode(errors="replace"))


def allocated(path):
    return os.stat(path).st_blocks * 512


def is_hole(path, off, ln):
    """True if [off, off+ln) of the file holds no data extent."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after off
            return True
        return d >= off + ln
    finally:
        os.close(fd)


def nchunks(size, cs):
    return math.ceil(size / cs)


# ---------------------------------------------------------------------------
# sandboxes: loop mounts, qemu-nbd, cleanup on every path

_in_private_ns = False


def private_mount_ns():
    global _in_private_ns
    if _in_private_ns:
        return
    if os.geteuid() != 0:
        pytest.skip("loop mounts need root")
    sys.path.insert(0, str(TOP / "tests" / "pylib"))
    import sandbox  # noqa: E402
    sandbox.enter_private_mount_ns()
    _in_private_ns = True


def sh(*cmd, check=True, **kw):
    return subprocess.run([str(c) for c in cmd], check=check, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kw)


class LoopMount:
    """An ext4 image loop-mounted at a fresh mountpoint (never frozen).
    mount -o loop sets autoclear: the loop device goes with the umount."""

    def __init__(self, workdir, name, size, mkfs=("mkfs.ext4", "-q", "-F")):
        private_mount_ns()
        self.image = Path(workdir) / (name + ".img")
        self.mountpoint = Path(workdir) / name
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        sh("truncate", "-s", size, self.image)
        sh(*mkfs, self.image)
        sh("mount", "-o", "loop", self.image, self.mountpoint)
        self.mounted = True

    @property
    def path(self):
        return self.mountpoint

    def umount(self):
        if self.mounted:
            sh("sync", check=False)
            for _ in range(50):
                if sh("umount", self.mountpoint, check=False).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                sh("umount", "-l", self.mountpoint, check=False)
            self.mounted = False

    def close(self):
        self.umount()


class NbdServer:
    """qemu-nbd serving `image` read-only on a unix socket (export name "")."""

    def __init__(self, workdir, image, fmt="qcow2"):
        self.sock = Path(tempfile.mkdtemp(prefix="nbd-", dir=workdir)) / "s"
        self.log = open(self.sock.parent / "log", "wb")
        self.proc = subprocess.Popen(
            ["qemu-nbd", "--socket=%s" % self.sock, "-f", fmt, "-r", "-t", "--shared=16",
             str(image)], stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        end = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("qemu-nbd exited: %s" % (self.sock.parent / "log").read_text())
            if self.sock.exists():
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(str(self.sock))
                    s.close()
                    break
                except OSError:
                    pass
            if time.monotonic() > end:
                raise RuntimeError("qemu-nbd did not come up")
            time.sleep(0.02)

    @property
    def uri(self):
        return "nbd+unix:///?socket=%s" % self.sock

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Work:
    """A test's scratch directory and everything to undo when it ends."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="qrepo-", dir="/tmp"))
        self._undo = []
        self._n = 0

    def path(self, name):
        return self.dir / name

    def repo(self, chunk_size=None, name=None, init=True):
        self._n += 1
        r = Repo(self.dir / (name or "repo%d" % self._n))
        if init:
            r.init(chunk_size)
        return r

    def loop(self, name, size):
        m = LoopMount(self.dir, name, size)
        self._undo.append(m.close)
        return m

    def nbd(self, image, fmt="qcow2"):
        s = NbdServer(self.dir, image, fmt)
        self._undo.append(s.close)
        return s

    def popen(self, *args, **kw):
        p = subprocess.Popen(*args, **kw)

        def stop():
            if p.poll() is None:
                p.kill()
                p.wait()
        self._undo.append(stop)
        return p

    def defer(self, fn):
        self._undo.append(fn)

    def close(self):
        errors = []
        for fn in reversed(self._undo):
            try:
                fn()
            except Exception as e:  # keep undoing
                errors.append(e)
        shutil.rmtree(self.dir, ignore_errors=True)
        if errors:
            raise errors[0]


@pytest.fixture
def work():
    if not QUIESCE.is_file():
        pytest.skip("quiesce not built: %s" % QUIESCE)
    w = Work()
    try:
        yield w
    finally:
        w.close()


def wait_next_second():
    """Sleep until the UTC second changes, so that the next snapshot's id and
    time differ from the previous one's (ids have one-second resolution)."""
    t = time.time()
    time.sleep(math.floor(t) + 1.02 - t)
