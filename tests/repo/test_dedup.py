# SPDX-License-Identifier: MIT
"""Deduplication: a second backup stores only the chunks that changed, an
unchanged one stores nothing, identical data under another name or path is
stored once, and each snapshot restores its own version."""
import os
import shutil

from conftest import MiB, KiB, assert_same, write_image


def chunk_bytes(repo):
    total = 0
    for d in repo.chunk_files():
        total += os.path.getsize(repo.chunk_path(d))
    return total


def test_second_backup_stores_only_changed_chunks(work):
    cs = MiB
    img = work.path("disk.raw")
    write_image(img, "R" * 40 + "T" * 8 + "Z" * 16, cs)
    v1 = work.path("v1.raw")
    shutil.copyfile(img, v1)
    repo = work.repo(chunk_size=cs)

    b1 = repo.backup(img, name="vm")
    s = b1["stats"]
    assert s["chunks_new"] == 48 and s["chunks_reused"] == 0, s
    assert s["bytes_zero"] == 16 * MiB, s
    assert len(repo.chunk_files()) == 48
    size1 = chunk_bytes(repo)

    # change a few MB: one chunk rewritten, a few bytes in another, a line of
    # a text chunk, and a zero chunk that gets data
    with open(img, "r+b") as f:
        f.seek(3 * cs)
        f.write(os.urandom(cs))
        f.seek(10 * cs + 5000)
        f.write(os.urandom(100))
        f.seek(44 * cs + 123)
        f.write(b"CHANGED LINE\n")
        f.seek(50 * cs + 4096)
        f.write(os.urandom(4096))
    v2 = work.path("v2.raw")
    shutil.copyfile(img, v2)
    before = repo.chunk_files()
    b2 = repo.backup(img, name="vm")
    s = b2["stats"]
    assert s["chunks_new"] == 4, s
    assert s["chunks_reused"] == 45, s  # 49 data chunks now, 4 of them new
    after = repo.chunk_files()
    assert len(after) == 52 and before <= after
    m2 = repo.manifest(b2["id"])
    c2 = m2["disks"][0]["chunks"]
    assert after - before == {c2[3], c2[10], c2[44], c2[50]}
    growth = chunk_bytes(repo) - size1
    assert 0 < growth <= 4 * (cs + 16), growth
    assert 0 < s["bytes_stored"] <= 4 * (cs + 16), s

    # unchanged: nothing new at all
    state = {k: v for k, v in repo.state().items() if k.startswith("chunks")}
    b3 = repo.backup(img, name="vm")
    s = b3["stats"]
    assert s["chunks_new"] == 0 and s["chunks_reused"] == 49, s
    assert s["bytes_stored"] == 0, s
    assert {k: v for k, v in repo.state().items() if k.startswith("chunks")} == state, \
        "an unchanged backup changed chunks/"
    assert repo.tmp_files() == []

    # the same bytes under another path and name: still nothing new
    copy = work.path("copy.raw")
    shutil.copyfile(img, copy)
    b4 = repo.backup(copy, name="other")
    assert b4["stats"]["chunks_new"] == 0
    assert len(repo.chunk_files()) == 52

    for sid, want in ((b1["id"], v1), (b2["id"], v2), (b3["id"], v2), (b4["id"], v2)):
        out = work.path("out-" + sid)
        repo.restore(sid, out)
        assert_same(want, out)
    assert {x["id"] for x in repo.snapshots()} == {b1["id"], b2["id"], b3["id"], b4["id"]}


def test_duplicate_chunks_within_one_image_stored_once(work):
    cs = 256 * KiB
    img = work.path("dup.raw")
    block = os.urandom(cs)
    with open(img, "wb") as f:
        for _ in range(10):
            f.write(block)
        f.write(os.urandom(cs))
    repo = work.repo(chunk_size=cs)
    b = repo.backup(img)
    chunks = repo.manifest(b["id"])["disks"][0]["chunks"]
    assert len(set(chunks)) == 2 and len(chunks) == 11
    assert len(repo.chunk_files()) == 2
    out = work.path("out")
    repo.restore(b["id"], out)
    assert_same(img, out)
