# SPDX-License-Identifier: MIT
"""A full disk: the repository (a 32 MiB loop-mounted ext4) fills up in the
middle of a backup, or a restore target does.  Exit 6 with one error line,
no snapshot or PATH appears, what was stored before is untouched, and gc
gives the space back."""
import os

import pytest

from conftest import (MiB, EXIT_NOSPC, Repo, assert_same, expect, expect_error, write_image)

pytestmark = pytest.mark.mounts


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_backup_fills_the_repository(work):
    fs = work.loop("repofs", "32M")
    repo = Repo(fs.path / "repo")
    repo.init(MiB)
    small = work.path("small.raw")
    write_image(small, "RTZR", MiB)
    s0 = repo.backup(small, name="vm")["id"]
    free0 = free_bytes(fs.path)

    big = work.path("big.raw")
    write_image(big, "R" * 100, MiB)
    r = repo.backup_raw(big, name="vm", json_=False)
    line = expect_error(r, EXIT_NOSPC)
    assert "space" in line.lower(), line
    assert repo.manifest_ids() == [s0], "a snapshot appeared after ENOSPC"
    repo.assert_consistent()
    assert expect(repo.verify(), 0).json["ok"] is True
    out = work.path("s0.raw")
    repo.restore(s0, out)
    assert_same(small, out)

    g = repo.gc()
    assert g["trash_emptied"] is True
    repo.assert_clean()
    assert free_bytes(fs.path) >= free0 - 256 * 1024, "gc did not give the space back"
    # the repository still takes backups that fit
    mid = work.path("mid.raw")
    write_image(mid, "RR", MiB)
    s1 = repo.backup(mid, name="vm")["id"]
    out1 = work.path("s1.raw")
    repo.restore(s1, out1)
    assert_same(mid, out1)
    assert expect(repo.verify(), 0).json["ok"] is True


def test_restore_fills_the_target(work):
    repo = work.repo(chunk_size=MiB)
    img = work.path("img.raw")
    write_image(img, "R" * 48, MiB)
    sid = repo.backup(img)["id"]
    fs = work.loop("target", "32M")
    for fmt in ("raw", "qcow2"):
        out = fs.path / ("out." + fmt)
        r = repo.run("restore", sid, "--to", out, "--format", fmt)
        expect_error(r, EXIT_NOSPC)
        assert not out.exists(), "a failed restore left PATH"
        assert not os.path.exists(str(out) + ".partial"), "a failed restore left PATH.partial"
