# SPDX-License-Identifier: MIT
"""Crash safety.  QUIESCE_FAULT_KILL_AFTER=N kills quiesce just after its
N-th durable step; N walks over every step of a backup and of a prune.
After each crash every snapshot visible before is intact and restores
bit-identical, verify passes, no visible snapshot references a missing chunk,
and gc then removes every leftover.  Plus a real kill -9 from outside at a
random moment, and SIGTERM (exit 130, nothing partial visible)."""
import os
import random
import shutil
import signal
import subprocess
import time

import pytest

from conftest import (KiB, MiB, EXIT_INTR, QUIESCE, assert_same, expect, expect_ok,
                      wait_next_second, write_image)

CS = 256 * KiB
MAX_STEPS = 400


def fresh_copy(template, repo):
    if repo.path.exists():
        shutil.rmtree(repo.path)
    subprocess.run(["cp", "-a", str(template), str(repo.path)], check=True)


def check_intact(work, repo, expected):
    """`expected`: {snapshot id: image it must restore to}."""
    ids = repo.manifest_ids()
    for sid, img in expected.items():
        assert sid in ids, "snapshot %s vanished" % sid
        out = work.path("chk.raw")
        if out.exists():
            out.unlink()
        repo.restore(sid, out)
        assert_same(img, out)
        out.unlink()
    repo.assert_consistent()
    v = expect(repo.verify(), 0).json
    assert v["ok"] is True, v


def test_kill_after_every_step_of_a_backup(work):
    a, b = work.path("a.raw"), work.path("b.raw")
    write_image(a, "RRTRZZRT", CS)
    shutil.copyfile(a, b)
    with open(b, "r+b") as f:  # b: a's first four chunks, then 8 new ones, a hole, 1 more
        f.seek(4 * CS)
        for i in range(8):
            f.write(os.urandom(CS // 2) + bytes(CS // 2) if i % 2 else os.urandom(CS))
        f.truncate(14 * CS)
        f.seek(13 * CS)
        f.write(os.urandom(1000))
    new_chunks = 9

    template = work.repo(chunk_size=CS, name="template")
    s0 = template.backup(a, name="vm")["id"]
    repo = work.repo(name="repo", init=False)

    completed_at = None
    for n in range(1, MAX_STEPS):
        fresh_copy(template.path, repo)
        r = repo.backup_raw(b, name="vm", env={"QUIESCE_FAULT_KILL_AFTER": n})
        if r.rc == 0:
            completed_at = n
            break
        assert r.rc == -signal.SIGKILL, "step %d: %r" % (n, r)
        new = [s for s in repo.manifest_ids() if s != s0]
        expected = {s0: a}
        if n <= new_chunks:
            assert new == [], "step %d: snapshot visible before all chunks were stored" % n
        else:
            assert len(new) == 1, "step %d: the manifest rename happened, no snapshot" % n
            expected[new[0]] = b
        check_intact(work, repo, expected)
        g = repo.gc()
        assert g["trash_emptied"] is True, g
        repo.assert_clean()
        check_intact(work, repo, expected)
    assert completed_at is not None, "the backup was killed at every N up to %d" % MAX_STEPS
    # 9 chunk renames and a manifest rename, each a durable step
    assert completed_at == new_chunks + 2, completed_at
    ids = repo.manifest_ids()
    assert len(ids) == 2
    check_intact(work, repo, {s0: a, [s for s in ids if s != s0][0]: b})


def test_kill_after_every_step_of_a_prune(work):
    template = work.repo(chunk_size=CS, name="template")
    shared = os.urandom(CS) + b"shared text line\n" * (CS // 17) + bytes(CS - CS // 17 * 17)
    imgs, ids = [], []
    for i in range(4):
        p = work.path("v%d.raw" % i)
        with open(p, "wb") as f:
            f.write(shared)
            f.write(os.urandom(2 * CS))  # 2 chunks of its own
        imgs.append(p)
        ids.append(template.backup(p, name="vm", time="2026-05-0%dT10:00:00Z" % (i + 1))["id"])
    assert len(template.chunk_files()) == 2 + 4 * 2
    keep = ids[-1]
    repo = work.repo(name="repo", init=False)

    completed_at = None
    for n in range(1, MAX_STEPS):
        fresh_copy(template.path, repo)
        r = repo.run("prune", "--keep-last", "1", "--json",
                     env={"QUIESCE_FAULT_KILL_AFTER": n})
        if r.rc == 0:
            completed_at = n
            p = r.json
            assert p["keep"] == [keep] and sorted(p["remove"]) == sorted(ids[:3])
            break
        assert r.rc == -signal.SIGKILL, "step %d: %r" % (n, r)
        visible = repo.manifest_ids()
        assert keep in visible and set(visible) <= set(ids)
        assert len(visible) == 4 - min(n, 3), "step %d: %s" % (n, visible)
        # every snapshot still visible is whole and restores
        check_intact(work, repo, {s: imgs[ids.index(s)] for s in visible})
        # finishing the job: prune again, then everything is as after a clean prune
        expect_ok(repo.run("prune", "--keep-last", "1"))
        assert repo.manifest_ids() == [keep]
        repo.assert_clean()
        check_intact(work, repo, {keep: imgs[3]})
    assert completed_at is not None
    # 3 manifest unlinks, the sweep's trash generation (locks/generation),
    # 6 moves to trash, 6 deletions
    assert completed_at == 3 + 1 + 6 + 6 + 1, completed_at
    assert repo.manifest_ids() == [keep]
    repo.assert_clean()


def count_chunks(repo):
    n = 0
    d = repo.path / "chunks"
    for fan in os.scandir(d):
        n += sum(1 for _ in os.scandir(fan.path))
    return n


def test_external_kill9_during_a_large_backup(work):
    cs = MiB
    repo = work.repo(chunk_size=cs)
    small = work.path("small.raw")
    write_image(small, "RTZR", cs)
    s0 = repo.backup(small)["id"]
    big = work.path("big.raw")
    write_image(big, "R" * 200 + "T" * 40 + "Z" * 16, cs)
    base = count_chunks(repo)
    target = base + random.randint(1, 180)
    p = work.popen([str(QUIESCE), "backup", "--repo", str(repo.path), "--image", str(big)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.monotonic() + 120
    while p.poll() is None and count_chunks(repo) < target and time.monotonic() < end:
        time.sleep(0.001)
    p.kill()
    p.wait()
    assert p.returncode == -signal.SIGKILL, \
        "the backup ended (%s) before %d chunks were stored" % (p.returncode, target - base)
    assert repo.manifest_ids() == [s0]
    check_intact(work, repo, {s0: small})
    repo.gc()
    repo.assert_clean()
    check_intact(work, repo, {s0: small})
    # and a complete backup afterwards is whole
    s1 = repo.backup(big)["id"]
    check_intact(work, repo, {s0: small, s1: big})


def test_sigterm_backup_exits_130_nothing_visible(work):
    cs = MiB
    repo = work.repo(chunk_size=cs)
    small = work.path("small.raw")
    write_image(small, "RT", cs)
    s0 = repo.backup(small)["id"]
    big = work.path("big.raw")
    write_image(big, "R" * 256, cs)
    p = work.popen([str(QUIESCE), "backup", "--repo", str(repo.path), "--image", str(big)],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    end = time.monotonic() + 60
    while p.poll() is None and count_chunks(repo) < 2 + 20 and time.monotonic() < end:
        time.sleep(0.001)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == EXIT_INTR, (p.returncode, err)
    assert len(err.decode().strip().splitlines()) == 1, err
    assert repo.manifest_ids() == [s0]
    check_intact(work, repo, {s0: small})
    repo.gc()
    repo.assert_clean()


def test_sigterm_restore_exits_130_leaves_no_path(work):
    cs = MiB
    repo = work.repo(chunk_size=cs)
    big = work.path("big.raw")
    write_image(big, "R" * 384, cs)
    sid = repo.backup(big)["id"]
    out = work.path("restored.raw")
    partial = work.path("restored.raw.partial")
    p = work.popen([str(QUIESCE), "restore", "--repo", str(repo.path), sid, "--to", str(out),
                    "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    end = time.monotonic() + 60
    while p.poll() is None and not partial.exists() and time.monotonic() < end:
        time.sleep(0.0005)
    time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == EXIT_INTR, (p.returncode, err)
    assert len(err.decode().strip().splitlines()) == 1, err
    assert not out.exists(), "an interrupted restore left PATH"
    assert not partial.exists(), "an interrupted restore left PATH.partial visible"
    # and kill -9: still no PATH
    p = work.popen([str(QUIESCE), "restore", "--repo", str(repo.path), sid, "--to", str(out),
                    "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 60
    while p.poll() is None and not partial.exists() and time.monotonic() < end:
        time.sleep(0.0005)
    time.sleep(0.02)
    p.kill()
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not out.exists()
    # a later restore (with PATH.partial possibly left over) still works
    repo.restore(sid, out)
    assert_same(big, out)
