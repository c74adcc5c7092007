# SPDX-License-Identifier: MIT
"""Manifests that scale (docs/repository.md, Manifests and Versions): a 1 TiB
disk at 64 KiB chunks — 16 Mi chunks — backs up, verifies, restores and is
collected in bounded memory, with a manifest the size of its data, not of
its disk; limits refused on write exactly where the reader would refuse;
version-1 repositories keep working and can be upgraded.

Peak RSS is a bound that does not depend on machine speed (GNU time's %M,
the child's own high-water mark)."""
import os
import random
import subprocess

import pytest

from conftest import (KiB, MiB, EXIT_DAMAGED, EXIT_FAIL, QUIESCE, assert_same, expect,
                      expect_error, expect_ok, is_hole, manifest_v2_bytes, parse_manifest, q,
                      write_image)

TiB = 1 << 40
GNU_TIME = "/usr/bin/time"


def asan():
    out = subprocess.run(["ldd", str(QUIESCE)], capture_output=True, text=True).stdout
    return "libasan" in out


# 16 Mi chunks: the version-1 design needed ~300 MiB here (and several GiB
# with data in every chunk); the chunk map needs a few pages
RSS_LIMIT = (384 if asan() else 64) * MiB


def run_measured(work, *argv):
    """(CompletedProcess, peak RSS in bytes) of one quiesce command."""
    rss = work.path("rss")
    cmd = [GNU_TIME, "-f", "%M", "-o", str(rss), str(QUIESCE), *map(str, argv)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return p, int(rss.read_text().split()[-1]) * KiB


def test_sparse_1tib_disk_at_64k_chunks(work):
    if not os.path.exists(GNU_TIME):
        pytest.skip("GNU time (/usr/bin/time) measures peak RSS")
    img = work.path("disk.img")
    regions = [(0, 3 * MiB), (TiB // 2 + 100003, 2 * MiB), (TiB - 3 * MiB - 7, 3 * MiB)]
    with open(img, "wb") as f:
        f.truncate(TiB)  # holds no blocks
        for off, n in regions:
            f.seek(off)
            f.write(random.randbytes(n))
    repo = work.repo(chunk_size=64 * KiB)

    p, rss = run_measured(work, "backup", "--repo", repo.path, "--image", img, "--name", "big", "--json")
    assert p.returncode == 0, p.stderr
    assert rss < RSS_LIMIT, "backup of 16 Mi chunks peaked at %d MiB" % (rss >> 20)
    (sid,) = repo.manifest_ids()
    size = (repo.path / "snapshots" / sid).stat().st_size
    # 8 Mi of data: ~140 stored chunks of 40 bytes, a handful of zero runs
    assert size < 64 * KiB, "a 1 TiB disk with 8 MiB of data has a %d KiB manifest" % (size >> 10)
    _, m = parse_manifest((repo.path / "snapshots" / sid).read_bytes())
    chunks = m["disks"][0]["chunks"]
    assert len(chunks) == 1 << 24 and m["disks"][0]["size"] == TiB
    stored = sum(c is not None for c in chunks)
    assert 130 <= stored <= 150, stored

    p, rss = run_measured(work, "verify", "--repo", repo.path, "--json")
    assert p.returncode == 0, p.stderr
    assert rss < RSS_LIMIT, "verify peaked at %d MiB" % (rss >> 20)

    out = work.path("out.img")
    p, rss = run_measured(work, "restore", "--repo", repo.path, "latest", "--name", "big", "--to", out)
    assert p.returncode == 0, p.stderr
    assert rss < RSS_LIMIT, "restore peaked at %d MiB" % (rss >> 20)
    st = os.stat(out)
    assert st.st_size == TiB
    assert st.st_blocks * 512 < 64 * MiB, "the restored disk is not sparse: %d MiB allocated" % (
        st.st_blocks * 512 >> 20)
    with open(img, "rb") as a, open(out, "rb") as b:
        for off, n in regions:
            a.seek(off)
            b.seek(off)
            assert a.read(n) == b.read(n), "data at %d differs" % off
    for off in (64 * MiB, TiB // 4, TiB // 2 + 64 * MiB, TiB - 64 * MiB):
        assert is_hole(out, off, 64 * KiB), "a hole at %d was written" % off

    p, rss = run_measured(work, "gc", "--repo", repo.path, "--json")
    assert p.returncode == 0, p.stderr
    assert rss < RSS_LIMIT, "gc peaked at %d MiB" % (rss >> 20)


def test_disk_larger_than_a_manifest_holds_is_refused_before_reading(work):
    """2^32 chunks per disk is the reader's limit, so it is the writer's: a
    300 TiB disk at 64 KiB chunks is refused at once, with what to do."""
    img = work.path("huge.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "300T"], check=True)
    nbd = work.nbd(img)
    repo = work.repo(chunk_size=64 * KiB)
    state = repo.state()
    line = expect_error(repo.backup_raw(nbd.uri, json_=False), EXIT_FAIL)
    assert "4294967296 chunks" in line and "--chunk-size" in line, line
    assert repo.state() == state

    # and a planted manifest past the limit is refused by the reader
    img2 = work.path("small.raw")
    write_image(img2, "R", 64 * KiB)
    sid = repo.backup(img2)["id"]
    _, doc = parse_manifest((repo.path / "snapshots" / sid).read_bytes())
    n = (1 << 32) + 1
    doc["disks"][0]["size"] = n * 64 * KiB
    doc["disks"][0]["chunks"] = [None] * 0  # one zero run of n, written below
    (repo.path / "snapshots" / sid).write_bytes(
        manifest_v2_bytes(doc, [(1 << 63 | n).to_bytes(8, "little")]))
    line = expect_error(repo.run("restore", sid, "--to", work.path("o")), EXIT_DAMAGED)
    assert sid in line and "4294967296" in line, line


def test_version_1_repository_works_and_upgrades(work):
    """A repository made for older quiesce (--format-version 1) gets
    version-1 manifests, and refuses at once a disk whose version-1 manifest
    could not be read back; after `quiesce upgrade` the same disk backs up,
    and the version-1 snapshots restore as before."""
    path = work.path("v1")
    expect_ok(q("init", "--repo", path, "--chunk-size", "64K", "--format-version", "1"))
    from conftest import Repo
    repo = Repo(path)
    assert repo.config["version"] == 1
    img = work.path("i.raw")
    write_image(img, "RTZR", 64 * KiB, tail=100)
    s1 = repo.backup(img, name="vm")["id"]
    header, _ = parse_manifest((repo.path / "snapshots" / s1).read_bytes())
    assert header[1] == "1", header

    # 14 TiB at 64 KiB: 229 Mi chunks, 1.1 GiB of nulls in a version-1 manifest
    huge = work.path("huge.img")
    with open(huge, "wb") as f:
        f.truncate(14 * TiB)
        f.seek(7 * TiB)
        f.write(b"x" * 100)
    state = repo.state()
    line = expect_error(repo.backup_raw(huge, json_=False), EXIT_FAIL)
    assert "version-1" in line and "upgrade" in line, line
    assert repo.state() == state

    expect_ok(repo.run("prune", "--keep-last", "1"))
    assert expect(repo.verify(), 0).json["ok"] is True

    u = expect_ok(repo.run("upgrade", "--json")).json
    assert u == {"repo": str(path), "from": 1, "version": 2}, u
    assert repo.config["version"] == 2
    assert expect_ok(repo.run("upgrade", "--json")).json["from"] == 2  # again: nothing to do
    s2 = repo.backup(huge, name="huge")["id"]
    raw = (repo.path / "snapshots" / s2).read_bytes()
    assert raw.startswith(b"quiesce-manifest 2 ") and len(raw) < 64 * KiB, len(raw)
    out = work.path("o1.raw")
    repo.restore(s1, out)
    assert_same(img, out)
    assert expect(repo.verify(), 0).json["ok"] is True
    out2 = work.path("o2.raw")
    repo.restore(s2, out2)
    with open(out2, "rb") as f:
        f.seek(7 * TiB)
        assert f.read(100) == b"x" * 100
    assert os.path.getsize(out2) == 14 * TiB and is_hole(out2, 0, 1 << 30)
    g = repo.gc()
    assert g["trash_emptied"] is True
