# SPDX-License-Identifier: MIT
"""gc and prune beside running backups (docs/repository.md, Prune and garbage
collection): a backup never loses a chunk it references, gc never waits for
it, and space still comes back on a host where some backup is always running.

Each command is held at a named step with QUIESCE_FAULT_HOLD_AT=STEP:GATE
(it creates GATE.reached and waits for GATE), so every interleaving below is
the one named, every time: no sleeps, no SIGSTOP timing.  The worst one for a
backup: it has found its chunks present (dedup against a snapshot) and holds
at "backup-stored", all chunks stored, manifest not yet written, while prune
removes that snapshot and gc sweeps the chunks into trash."""
import fcntl
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import (KiB, MiB, EXIT_LOCKED, QUIESCE, Repo, assert_same, expect, expect_ok, q,
                      sha256_file, write_image)

CS = 256 * KiB


class Held:
    """A quiesce command run until it reaches `step`, then held there."""
    n = 0

    def __init__(self, work, repo, step, *argv):
        Held.n += 1
        self.gate = work.path("gate-%d" % Held.n)
        self.step = step
        env = dict(os.environ, QUIESCE_FAULT_HOLD_AT="%s:%s" % (step, self.gate))
        env.pop("QUIESCE_REPO", None)
        self.p = work.popen([str(QUIESCE), argv[0], "--repo", str(repo.path), *map(str, argv[1:])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        reached = self.gate.parent / (self.gate.name + ".reached")
        deadline = time.monotonic() + 120
        while not reached.exists():  # the event: the command is at its step
            if self.p.poll() is not None:
                raise AssertionError("%s exited (%s) before %s: %s" % (
                    argv, self.p.returncode, step, self.p.stderr.read().decode(errors="replace")))
            assert time.monotonic() < deadline, "%s never reached %s" % (argv, step)
            time.sleep(0.005)

    @property
    def pid(self):
        return self.p.pid

    def release(self):
        self.gate.touch()
        out, err = self.p.communicate(timeout=300)
        assert self.p.returncode == 0, (self.step, self.p.returncode, err.decode(errors="replace"))
        return json.loads(out) if out.strip().startswith(b"{") else out


def image_with(base, path, changed, cs=CS):
    """A copy of image `base` with chunks `changed` rewritten at random."""
    shutil.copyfile(base, path)
    with open(path, "r+b") as f:
        for i in changed:
            f.seek(i * cs)
            f.write(os.urandom(cs))
    return path


def chunks_of(repo, sid):
    return {c for d in repo.manifest(sid)["disks"] for c in d["chunks"] if c}


def verify_all(repo):
    v = expect(repo.verify(), 0).json
    assert v["ok"] is True and v["broken_snapshots"] == [], v
    return v


def test_gc_and_prune_beside_a_held_backup_lose_nothing(work):
    repo = work.repo(chunk_size=CS)
    a = work.path("a.raw")
    write_image(a, "R" * 24, CS)
    a1 = repo.backup(a, name="a", time="2026-01-01T00:00:00Z")["id"]
    b_img = image_with(a, work.path("b.raw"), [0, 1])  # shares 22 chunks with a1
    b = Held(work, repo, "backup-stored", "backup", "--image", b_img, "--name", "b", "--json")

    # prune removes a1 (a newer "a" is kept) while b, which reused a1's
    # chunks, is held; prune's gc sweeps them into trash and must keep them
    a2_img = work.path("a2.raw")
    write_image(a2_img, "TT", CS)
    repo.backup(a2_img, name="a")
    p = expect_ok(repo.run("prune", "--name", "a", "--keep-last", "1", "--json")).json
    assert p["remove"] == [a1], p
    # a1's 24 chunks and b's own 2 (stored before this gc, in no manifest yet)
    g = p["gc"]
    assert g["chunks_trashed"] == 26 and g["chunks_deleted"] == 0 and g["sessions"] == 1, g
    assert not g["trash_emptied"] and g["chunks_kept"] == 26, g
    # gc again and again while b runs: still nothing of it may go
    for _ in range(3):
        g = repo.gc()
        assert g["chunks_deleted"] == 0 and g["chunks_kept"] == 26, g
    sid = b.release()["id"]

    # b's snapshot is whole (all its chunks are in trash), then gc puts back
    # what it uses and deletes the rest of a1
    verify_all(repo)
    out = work.path("out.raw")
    repo.restore(sid, out)
    assert_same(b_img, out)
    g = repo.gc()
    assert g["chunks_restored"] == 24 and g["chunks_deleted"] == 2 and g["trash_emptied"], g
    repo.assert_clean()
    verify_all(repo)
    out.unlink()
    repo.restore(sid, out)
    assert_same(b_img, out)


def test_space_comes_back_while_backups_run_back_to_back(work):
    """Backups hand over to each other (the next starts before the previous
    ends: one always runs) while prune and gc run after each.  The chunks of
    a pruned snapshot are deleted under a running backup two gcs after they
    were set aside — where "only when no backup runs" never deletes them —
    and every snapshot stays whole throughout."""
    repo = work.repo(chunk_size=CS)
    base = work.path("vm.raw")
    write_image(base, "R" * 16, CS)
    imgs = {}        # snapshot -> (image, its SHA-256)
    unique = {}      # pruned snapshot -> the chunks only it had
    deleted = []     # per round: chunks deleted while a backup was held
    prev = None
    for i in range(6):
        img = image_with(base, work.path("vm%d.raw" % i), range(4 * i % 16, 4 * i % 16 + 4))
        nxt = Held(work, repo, "backup-stored", "backup", "--image", img, "--name", "vm", "--json")
        if prev:
            sid = prev[0].release()["id"]
            imgs[sid] = (prev[1], sha256_file(prev[1]))
        prev = (nxt, img)
        refs = {s: chunks_of(repo, s) for s in repo.manifest_ids()}
        p = expect_ok(repo.run("prune", "--name", "vm", "--keep-last", "2", "--json")).json
        for s in p["remove"]:
            imgs.pop(s)
            others = set().union(*(c for k, c in refs.items() if k != s))
            unique[s] = refs[s] - others
        assert p["gc"]["sessions"] == 1, p["gc"]  # the held backup
        deleted.append(p["gc"]["chunks_deleted"])
        verify_all(repo)
        for sid, (path, digest) in imgs.items():
            out = work.path("chk.raw")
            repo.restore(sid, out)
            assert sha256_file(out) == digest
            out.unlink()
    # rounds 3, 4, 5 pruned one snapshot each (4 chunks of its own); round
    # 5's gc deleted round 3's, with the sixth backup held
    assert prev[0].p.poll() is None
    first = min(unique)
    assert len(unique) == 3 and len(unique[first]) == 4, unique
    assert not unique[first] & (repo.chunk_files() | repo.trash_files()), "pruned chunks never deleted"
    assert deleted[5] == 4 and sum(deleted) == 4, deleted
    sid = prev[0].release()["id"]
    imgs[sid] = (prev[1], sha256_file(prev[1]))
    verify_all(repo)
    repo.gc()
    repo.assert_clean()


def test_backup_starting_between_sweep_and_empty(work):
    """gc held after its sweep: a backup that starts then needs a chunk just
    set aside (it takes it back from trash), finishes, and gc's fresh mark
    sees its snapshot before anything is deleted."""
    repo = work.repo(chunk_size=CS)
    a = work.path("a.raw")
    write_image(a, "RRRRRRRR", CS)
    a1 = repo.backup(a, name="a")["id"]
    os.unlink(repo.path / "snapshots" / a1)  # as prune does
    g = Held(work, repo, "gc-swept", "gc", "--json")
    assert len(repo.trash_files()) == 8
    sid = repo.backup(a, name="b")["id"]
    res = g.release()
    assert res["chunks_deleted"] == 0, res
    verify_all(repo)
    out = work.path("o.raw")
    repo.restore(sid, out)
    assert_same(a, out)
    repo.gc()
    repo.assert_clean()


def test_gc_keeps_a_held_backups_staged_files(work):
    """A backup held with a staged chunk in tmp/ (written, not yet renamed):
    the file bears its owner's name — host, boot id, pid, random — and gc
    leaves it, while it removes what a dead process left."""
    repo = work.repo(chunk_size=CS)
    img = work.path("i.raw")
    write_image(img, "RRRR", CS)
    b = Held(work, repo, "backup-staged", "backup", "--image", img, "--json", "--threads", "1")
    staged = os.listdir(repo.path / "tmp")
    assert staged, "no staged chunk in tmp/"
    host = "".join(c if c.isalnum() or c == "-" else "_" for c in socket.gethostname()[:40])
    for name in staged:
        owner = name.rsplit(".", 1)[0]
        h, boot, pid, rnd = owner.rsplit("-", 3)
        assert h == host and len(boot) == 8 and pid == str(b.pid) and len(rnd) == 8, name
    assert os.listdir(repo.path / "sessions") == [owner]
    dead = repo.path / "tmp" / "otherhost-0123abcd-4242-deadbeef.7"
    dead.write_bytes(b"a dead backup's staged chunk")
    g = repo.gc()
    assert g["tmp_deleted"] == 1 and not dead.exists(), g
    # the workers go on staging while the committer is held: more, never fewer
    after = os.listdir(repo.path / "tmp")
    assert set(staged) <= set(after) and all(n.startswith(owner + ".") for n in after), (staged, after)
    sid = b.release()["id"]
    out = work.path("o.raw")
    repo.restore(sid, out)
    assert_same(img, out)
    assert os.listdir(repo.path / "sessions") == []


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_restore_in_progress_is_not_collected_under_it(work, version):
    """A restore held before it reads its first chunk while prune removes its
    snapshot and gc runs again and again: every chunk it needs is still
    there when it goes on (a reader session pins trash; in a version-1
    repository it holds locks/writers), and only afterwards are they
    deleted."""
    path = work.path("r" + version)
    expect_ok(q("init", "--repo", path, "--chunk-size", "256K", "--format-version", version))
    repo = Repo(path)
    img = work.path("i.raw")
    write_image(img, "RRRRTTTT", CS)
    sid = repo.backup(img, name="vm", time="2026-01-01T00:00:00Z")["id"]
    out = work.path("o.raw")
    r = Held(work, repo, "restore-started", "restore", sid, "--to", out, "--threads", "1", "--json")
    newer = work.path("n.raw")
    write_image(newer, "R", CS)
    repo.backup(newer, name="vm")
    p = expect_ok(repo.run("prune", "--name", "vm", "--keep-last", "1", "--json")).json
    assert p["remove"] == [sid], p
    for g in [p["gc"]] + [repo.gc() for _ in range(2)]:
        assert g["chunks_deleted"] == 0 and not g["trash_emptied"], g
    r.release()
    assert_same(img, out)
    g = repo.gc()
    assert g["chunks_deleted"] == 8 and g["trash_emptied"], g
    repo.assert_clean()


def test_a_killed_backup_pins_nothing(work):
    """A session whose process died (its flock went with it) is removed and
    pins nothing: trash is emptied as if it had never run."""
    repo = work.repo(chunk_size=CS)
    a = work.path("a.raw")
    write_image(a, "RRRR", CS)
    a1 = repo.backup(a)["id"]
    b = Held(work, repo, "backup-stored", "backup", "--image", a)
    b.p.kill()
    b.p.wait()
    assert len(os.listdir(repo.path / "sessions")) == 1
    os.unlink(repo.path / "snapshots" / a1)
    g = repo.gc()
    assert g["sessions"] == 0 and g["chunks_deleted"] == 4 and g["trash_emptied"], g
    assert os.listdir(repo.path / "sessions") == []
    repo.assert_clean()


def test_older_quiesce_backup_holding_writers_pins_trash(work):
    """An older quiesce's backup holds locks/writers shared: gc keeps all
    trash (and tmp/) as that quiesce's own gc did."""
    repo = work.repo(chunk_size=CS)
    a = work.path("a.raw")
    write_image(a, "RRR", CS)
    a1 = repo.backup(a)["id"]
    os.unlink(repo.path / "snapshots" / a1)
    (repo.path / "tmp" / "w-123-0").write_bytes(b"an older quiesce's staged chunk")
    with open(repo.path / "locks" / "writers", "r+") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        g = repo.gc()
        assert g["chunks_trashed"] == 3 and g["chunks_deleted"] == 0 and not g["trash_emptied"], g
        assert (repo.path / "tmp" / "w-123-0").exists()
    g = repo.gc()
    assert g["chunks_deleted"] == 3 and g["tmp_deleted"] == 1 and g["trash_emptied"], g
    repo.assert_clean()


def test_a_second_gc_is_refused_not_queued(work):
    repo = work.repo()
    with open(repo.path / "locks" / "gc", "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # as a running gc holds it
        r = repo.run("gc")
    assert r.rc == EXIT_LOCKED and "another prune or gc" in r.err, r
