# SPDX-License-Identifier: MIT
"""Round trips of realistic images through the repository: an ext4 image,
a sparse raw file, a qcow2 image served by qemu-nbd, and several disks in one
snapshot.  Restores are compared byte for byte (cmp), ext4 is checked with
e2fsck, qcow2 restores with qemu-img compare, and zero chunks must come back
as holes (raw) or unallocated clusters (qcow2)."""
import hashlib
import json
import os
import subprocess

import pytest

from conftest import (MiB, KiB, Repo, assert_same, allocated, expect, expect_ok, is_hole,
                      nchunks, read_chunk, sh, text_bytes, write_image, ID_RE, TIME_RE)


def source_chunks(path, cs):
    """Per chunk of a raw image: None if all zero, else (sha256, bytes)."""
    out = []
    with open(path, "rb") as f:
        while True:
            b = f.read(cs)
            if not b:
                break
            out.append(None if b.count(0) == len(b) else (hashlib.sha256(b).hexdigest(), b))
    return out


def check_manifest_against_source(repo, sid, disk_index, path):
    """The manifest's chunk list is exactly: null for every all-zero chunk of
    the source, else the SHA-256 of its bytes, stored in a well-formed chunk
    file that decodes to those bytes."""
    cs = repo.chunk_size
    m = repo.manifest(sid)
    d = m["disks"][disk_index]
    size = os.path.getsize(path)
    assert d["size"] == size
    assert len(d["chunks"]) == nchunks(size, cs)
    src = source_chunks(path, cs)
    for i, (want, got) in enumerate(zip(src, d["chunks"])):
        if want is None:
            assert got is None, "chunk %d is zero in the source but %s in the manifest" % (i, got)
        else:
            assert got == want[0], "chunk %d: manifest %s, sha256 of source %s" % (i, got, want[0])
            codec, raw = read_chunk(repo.chunk_path(got), cs)
            assert raw == want[1]
    return m


def check_sparse_restore(path, disk, cs):
    """Zero chunks are holes; nothing beyond the data chunks is allocated."""
    data = sum(1 for c in disk["chunks"] if c is not None)
    for i, c in enumerate(disk["chunks"]):
        if c is None:
            ln = min(cs, disk["size"] - i * cs)
            assert is_hole(path, i * cs, ln), "zero chunk %d of %s is not a hole" % (i, path)
    assert allocated(path) <= data * cs + 64 * KiB, \
        "restored file allocates %d bytes for %d data chunks" % (allocated(path), data)


def make_ext4_image(work, name="ext4", size="128M"):
    m = work.loop(name, size)
    root = m.path
    with open(root / "random.bin", "wb") as f:
        f.write(os.urandom(24 * MiB))
    (root / "docs").mkdir()
    for i in range(40):
        (root / "docs" / ("page%02d.txt" % i)).write_bytes(text_bytes(200 * KiB + i * 777, i))
    with open(root / "zeros.bin", "wb") as f:
        f.write(b"\0" * (8 * MiB))
    with open(root / "sparse.bin", "wb") as f:
        f.truncate(64 * MiB)
        f.seek(32 * MiB)
        f.write(b"middle" * 1000)
    os.symlink("docs/page00.txt", root / "link")
    m.umount()
    return m.image


@pytest.mark.mounts
def test_ext4_image_round_trip_raw_and_qcow2(work):
    img = make_ext4_image(work)
    size = os.path.getsize(img)
    repo = work.repo(chunk_size=MiB)
    b = repo.backup(img, name="ext4")
    sid = b["id"]
    assert ID_RE.match(sid) and TIME_RE.match(b["time"]), b
    m = check_manifest_against_source(repo, sid, 0, img)
    assert m["disks"][0]["source"] == str(img)
    nulls = sum(1 for c in m["disks"][0]["chunks"] if c is None)
    assert nulls > 0, "an ext4 image with free space has zero chunks"

    out = work.path("restored.raw")
    r = repo.restore(sid, out)
    assert r["bytes"] == size and r["format"] == "raw" and r["disk"] == 0
    assert_same(img, out)
    fsck = sh("e2fsck", "-fn", out, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    check_sparse_restore(out, m["disks"][0], repo.chunk_size)

    # the same through qcow2
    q2 = work.path("restored.qcow2")
    r = repo.restore(sid[:12], q2, "--format", "qcow2")
    assert r["format"] == "qcow2" and r["bytes"] == size
    info = json.loads(sh("qemu-img", "info", "--output=json", q2).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == size
    cmpr = sh("qemu-img", "compare", "-f", "raw", "-F", "qcow2", img, q2, check=False)
    assert cmpr.returncode == 0, cmpr.stdout + cmpr.stderr


def test_sparse_raw_file_round_trip(work):
    cs = 256 * KiB
    img = work.path("sparse.raw")
    # 200 chunks + a partial one: holes, random, text, written zeros
    spec = ("Z" * 30 + "R" + "Z" * 50 + "T" + "z" * 4 + "Z" * 60 + "RT" + "Z" * 51 + "R")
    write_image(img, spec, cs, tail=12345)
    size = os.path.getsize(img)
    assert size == len(spec) * cs + 12345
    repo = work.repo(chunk_size=cs)
    b = repo.backup(img)
    m = check_manifest_against_source(repo, b["id"], 0, img)
    disk = m["disks"][0]
    data = sum(1 for c in disk["chunks"] if c is not None)
    assert data == 6  # R, T, R, T, R and the partial tail chunk
    assert b["stats"]["chunks_new"] == 6
    assert b["disks"][0]["chunks_zero"] == len(disk["chunks"]) - 6
    assert len(repo.chunk_files()) == 6
    # the last, partial chunk holds exactly its bytes
    _, raw = read_chunk(repo.chunk_path(disk["chunks"][-1]), cs)
    assert len(raw) == 12345

    out = work.path("out.raw")
    repo.restore("latest", out)
    assert_same(img, out)
    assert os.path.getsize(out) == size
    check_sparse_restore(out, disk, cs)
    assert allocated(out) < size // 20


def test_qcow2_over_qemu_nbd_round_trip(work):
    cs = MiB
    raw = work.path("src.raw")
    spec = "RRTTZZZZzzRTZZZZ" * 6  # 96 MiB, half of it zero
    zero = write_image(raw, spec, cs)
    q2 = work.path("src.qcow2")
    sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, q2)
    srv = work.nbd(q2)
    repo = work.repo(chunk_size=cs)
    b = repo.backup(srv.uri, name="nbd")
    assert b["disks"][0]["source"] == srv.uri
    assert b["disks"][0]["size"] == len(spec) * cs
    m = check_manifest_against_source(repo, b["id"], 0, raw)
    assert [c is None for c in m["disks"][0]["chunks"]] == zero
    assert b["disks"][0]["chunks_zero"] == sum(zero)

    out = work.path("out.raw")
    repo.restore(b["id"], out)
    assert_same(raw, out)
    check_sparse_restore(out, m["disks"][0], cs)

    outq = work.path("out.qcow2")
    repo.restore(b["id"], outq, "--format", "qcow2")
    cmpr = sh("qemu-img", "compare", q2, outq, check=False)
    assert cmpr.returncode == 0, cmpr.stdout + cmpr.stderr
    # zero chunks are left unallocated in the qcow2
    mp = json.loads(sh("qemu-img", "map", "--output=json", "-f", "qcow2", outq).stdout)
    for ext in mp:
        if not ext.get("data"):
            continue
        for i in range(ext["start"] // cs, (ext["start"] + ext["length"] - 1) // cs + 1):
            assert not zero[i], "zero chunk %d allocated in the restored qcow2: %s" % (i, ext)
    info = json.loads(sh("qemu-img", "info", "--output=json", outq).stdout)
    assert info["actual-size"] < 0.75 * info["virtual-size"]


def test_several_images_one_snapshot_disk_n(work):
    cs = 256 * KiB
    a, b_, c = work.path("a.raw"), work.path("b.raw"), work.path("c.raw")
    write_image(a, "RTZR", cs, tail=100)
    write_image(b_, "ZZZTTZ" * 5, cs)
    write_image(c, "RRRRRRRR", cs)
    q2 = work.path("c.qcow2")
    sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", c, q2)
    srv = work.nbd(q2)
    repo = work.repo(chunk_size=cs)
    bk = repo.backup(a, b_, srv.uri, name="multi")
    assert [d["source"] for d in bk["disks"]] == [str(a), str(b_), srv.uri]
    assert [d["size"] for d in bk["disks"]] == [os.path.getsize(p) for p in (a, b_, c)]
    m = repo.manifest(bk["id"])
    assert len(m["disks"]) == 3
    names = [d["name"] for d in m["disks"]]
    assert len(set(names)) == 3
    for i, src in enumerate((a, b_, c)):
        check_manifest_against_source(repo, bk["id"], i, src)
        out = work.path("out%d" % i)
        r = repo.restore(bk["id"], out, "--disk", i)
        assert r["disk"] == i and r["bytes"] == os.path.getsize(src)
        assert_same(src, out)
    # there is no fourth disk: an error, and nothing is created
    out = work.path("out3")
    r = repo.run("restore", bk["id"], "--to", out, "--disk", "3")
    assert r.rc != 0, r
    assert not out.exists() and not os.path.exists(str(out) + ".partial")
    # snapshots lists the three disks in order
    snaps = repo.snapshots()
    assert [d["source"] for d in snaps[0]["disks"]] == [str(a), str(b_), srv.uri]
