# SPDX-License-Identifier: MIT
"""Names in tmp/ cannot collide between processes that share a repository:
not across hosts on one NFS export, not across PID namespaces (containers),
where pids and host names repeat (docs/repository.md, Writing).

A second host or container is simulated exactly where it matters: a backup
in a fresh PID namespace is pid 1, and tmp/ already holds the files another
pid-1 process elsewhere would be writing under a pid-and-counter name."""
import os
import shutil
import subprocess

import pytest

from conftest import KiB, QUIESCE, assert_same, expect, expect_ok, write_image

CS = 64 * KiB

needs_unshare = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                   reason="PID namespaces need root and unshare(1)")


def in_new_pid_ns(*argv):
    return ["unshare", "--pid", "--fork", "--", str(QUIESCE), *map(str, argv)]


@needs_unshare
def test_backup_as_pid_1_beside_another_hosts_pid_1_files(work):
    repo = work.repo(chunk_size=CS)
    img = work.path("i.raw")
    write_image(img, "RTRTRTRT", CS)
    # what another host's (or container's) pid 1 has in flight under the
    # names a pid-and-counter scheme would give ours
    planted = ["w-1-%d" % i for i in range(64)]
    for name in planted:
        (repo.path / "tmp" / name).write_bytes(b"another host's chunk in flight\n")
    r = subprocess.run(in_new_pid_ns("backup", "--repo", repo.path, "--image", img, "--json"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "a backup as pid 1 collided with another pid 1's files: %s" % r.stderr
    for name in planted:  # untouched
        assert (repo.path / "tmp" / name).read_bytes() == b"another host's chunk in flight\n"
    out = work.path("o.raw")
    repo.restore("latest", out)
    assert_same(img, out)
    assert expect(repo.verify(), 0).json["ok"] is True
