# SPDX-License-Identifier: MIT
"""`latest` and prefixes filtered by --name (docs/repository.md, Manifests):
restore and verify pick the newest snapshot of one VM, not of the whole
repository; a name with no snapshot, or an id of another name, is exit 8."""
import pytest

from conftest import (KiB, EXIT_NOSNAP, assert_same, expect, expect_error, expect_ok, write_image)

CS = 64 * KiB


@pytest.fixture
def two_vms(work):
    """a1, b1, a2, b2 in that order: the newest of all is b's."""
    repo = work.repo(chunk_size=CS)
    snaps, imgs = {}, {}
    for i, (name, t) in enumerate([("a", "2026-03-01T10:00:00Z"), ("b", "2026-03-02T10:00:00Z"),
                                   ("a", "2026-03-03T10:00:00Z"), ("b", "2026-03-04T10:00:00Z")]):
        img = work.path("%s%d.raw" % (name, i))
        write_image(img, "RT" if name == "a" else "TRR", CS)
        sid = repo.backup(img, name=name, time=t)["id"]
        snaps[(name, i)] = sid
        imgs[sid] = img
    return repo, snaps, imgs


def test_restore_latest_of_a_name(work, two_vms):
    repo, snaps, imgs = two_vms
    out = work.path("a.raw")
    r = repo.restore("latest", out, "--name", "a")
    assert r["id"] == snaps[("a", 2)], r
    assert_same(imgs[snaps[("a", 2)]], out)
    out2 = work.path("any.raw")
    assert repo.restore("latest", out2)["id"] == snaps[("b", 3)]
    # a prefix, within the name
    out3 = work.path("p.raw")
    assert repo.restore(snaps[("a", 0)][:16], out3, "--name", "a")["id"] == snaps[("a", 0)]


def test_verify_latest_and_all_of_a_name(work, two_vms):
    repo, snaps, imgs = two_vms
    v = expect_ok(repo.verify("latest", "--name", "a")).json
    assert v["ok"] and v["snapshots"] == 1, v
    v = expect_ok(repo.verify("--name", "b")).json
    assert v["ok"] and v["snapshots"] == 2, v
    # damage only b's newest chunk: a's verify stays clean, b's names it
    m = repo.manifest(snaps[("b", 3)])
    digest = next(c for c in m["disks"][0]["chunks"] if c and c not in repo.manifest(snaps[("a", 2)])["disks"][0]["chunks"])
    p = repo.chunk_path(digest)
    p.chmod(0o644)
    data = bytearray(p.read_bytes())
    data[-1] ^= 1
    p.write_bytes(bytes(data))
    assert expect_ok(repo.verify("latest", "--name", "a")).json["ok"]
    v = expect(repo.verify("latest", "--name", "b"), 5).json
    assert v["broken_snapshots"] == [snaps[("b", 3)]], v


def test_no_snapshot_of_that_name(work, two_vms):
    repo, snaps, imgs = two_vms
    out = work.path("o.raw")
    line = expect_error(repo.run("restore", "latest", "--name", "nobody", "--to", out), EXIT_NOSNAP)
    assert "nobody" in line, line
    line = expect_error(repo.run("restore", snaps[("b", 1)], "--name", "a", "--to", out), EXIT_NOSNAP)
    assert snaps[("b", 1)] in line and "named a" in line, line
    expect_error(repo.run("verify", "latest", "--name", "nobody"), EXIT_NOSNAP)
    assert not out.exists()
