# SPDX-License-Identifier: MIT
"""Garbage collection and its locks, as docs/repository.md describes them:
one prune/gc at a time (exit 7), trash kept while an older quiesce's backup
holds locks/writers, trashed chunks still readable and moved back when
referenced, tmp/ leftovers removed, and backups running alongside gc and
prune stay whole (held at exact steps: test_concurrent_gc.py)."""
import fcntl
import os
import shutil
import subprocess
import time

from conftest import (KiB, MiB, EXIT_LOCKED, QUIESCE, assert_same, expect, expect_error,
                      expect_ok, write_image)

CS = 256 * KiB


def hold(path, how):
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, how | fcntl.LOCK_NB)
    return fd


def test_gc_lock_gives_exit_7(work):
    repo = work.repo(chunk_size=CS)
    img = work.path("i.raw")
    write_image(img, "RT", CS)
    repo.backup(img)
    state = repo.state()
    fd = hold(repo.path / "locks" / "gc", fcntl.LOCK_EX)
    try:
        t0 = time.monotonic()
        expect_error(repo.run("gc"), EXIT_LOCKED)
        expect_error(repo.run("prune", "--keep-last", "1"), EXIT_LOCKED)
        assert time.monotonic() - t0 < 10, "gc/prune waited for the lock"
        assert repo.state() == state
        # backups do not care about the gc lock
        img2 = work.path("j.raw")
        write_image(img2, "TR", CS)
        sid = repo.backup(img2)["id"]
    finally:
        os.close(fd)
    out = work.path("o")
    repo.restore(sid, out)
    assert_same(img2, out)
    expect_ok(repo.run("gc"))


def test_trash_kept_while_a_backup_holds_writers(work):
    repo = work.repo(chunk_size=CS)
    keep_img, drop_img = work.path("k.raw"), work.path("d.raw")
    write_image(keep_img, "RT", CS)
    write_image(drop_img, "RRR", CS)
    keep = repo.backup(keep_img)["id"]
    drop = repo.backup(drop_img)["id"]
    dropped = set(repo.manifest(drop)["disks"][0]["chunks"])
    os.unlink(repo.path / "snapshots" / drop)  # as prune does
    (repo.path / "tmp" / "leftover").write_bytes(b"x" * 100)

    fd = hold(repo.path / "locks" / "writers", fcntl.LOCK_SH)  # a backup is running
    try:
        g = repo.gc()
        assert g["chunks_trashed"] == 3 and g["trash_emptied"] is False, g
        assert g["chunks_deleted"] == 0, g
        assert repo.trash_files() == dropped
        assert not dropped & repo.chunk_files()
        assert (repo.path / "tmp" / "leftover").exists(), "gc emptied tmp/ while a backup ran"
    finally:
        os.close(fd)
    g = repo.gc()
    assert g["trash_emptied"] is True and g["chunks_deleted"] == 3, g
    assert g["tmp_deleted"] == 1, g
    repo.assert_clean()
    out = work.path("o")
    repo.restore(keep, out)
    assert_same(keep_img, out)


def test_trashed_chunk_still_readable_and_moved_back(work):
    repo = work.repo(chunk_size=CS)
    img = work.path("i.raw")
    write_image(img, "RTR", CS)
    sid = repo.backup(img)["id"]
    d = repo.manifest(sid)["disks"][0]["chunks"][1]
    t = repo.trash_path(d, gen=1)  # where a sweep of generation 1 puts it
    t.parent.mkdir(parents=True)
    os.rename(repo.chunk_path(d), t)
    out = work.path("o")
    repo.restore(sid, out)
    assert_same(img, out)
    assert expect(repo.verify(), 0).json["ok"] is True
    g = repo.gc()
    assert g["chunks_restored"] == 1 and g["chunks_deleted"] == 0, g
    assert repo.chunk_path(d).exists()
    repo.assert_clean()


def test_gc_and_prune_while_backups_run(work):
    """Free-running: two backups of a large image while prune (removing an
    older snapshot whose chunks they share) and gc run over and over; every
    snapshot then restores bit for bit and verifies."""
    cs = MiB
    repo = work.repo(chunk_size=cs)
    img = work.path("big.raw")
    write_image(img, "R" * 160 + "T" * 32, cs)
    old_id = repo.backup(img, name="old", time="2026-01-01T00:00:00Z")["id"]
    newer = work.path("newer.raw")
    write_image(newer, "RRRR", cs)
    newer_id = repo.backup(newer, name="old")["id"]
    procs = [work.popen([str(QUIESCE), "backup", "--repo", str(repo.path), "--image", str(img),
                         "--name", "vm%d" % i, "--json"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    runs = {"prune": 0, "gc": 0}
    while any(p.poll() is None for p in procs):
        cmd = "prune" if runs["prune"] <= runs["gc"] else "gc"
        args = ["--name", "old", "--keep-last", "1"] if cmd == "prune" else []
        r = repo.run(cmd, "--json", *args)
        assert r.rc in (0, EXIT_LOCKED), r
        runs[cmd] += r.rc == 0
    for p in procs:
        out, err = p.communicate()
        assert p.returncode == 0, err
    assert runs["prune"] >= 1, runs  # how many more fit in depends on the machine
    assert old_id not in repo.manifest_ids()
    ids = [i for i in repo.manifest_ids() if i != newer_id]
    assert len(ids) == 2
    repo.assert_consistent()
    for sid in ids:
        out = work.path("o-" + sid)
        repo.restore(sid, out)
        assert_same(img, out)
    assert expect(repo.verify(), 0).json["ok"] is True
    repo.gc()
    repo.assert_clean()
    for sid in ids + [newer_id]:
        out = work.path("p-" + sid)
        repo.restore(sid, out)
        assert_same(newer if sid == newer_id else img, out)
