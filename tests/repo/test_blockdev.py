# SPDX-License-Identifier: MIT
"""Block devices as backup source and restore target (loop devices): the
size comes from BLKGETSIZE64, every chunk is read (no hole map), and a
restore onto a device that holds other data zeroes the zero chunks
(BLKZEROOUT) instead of leaving the old bytes."""
import os
import subprocess
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
QUIESCE = os.environ.get("QUIESCE", str(TOP / "build" / "src" / "host" / "quiesce"))

pytestmark = pytest.mark.skipif(not os.path.exists(QUIESCE) or os.geteuid() != 0,
                                reason="quiesce not built, or not root (loop devices)")


def q(*args):
    r = subprocess.run([QUIESCE, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def losetup(path):
    return subprocess.run(["losetup", "-f", "--show", str(path)], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_block_device_source_and_target(tmp_path):
    img, other = tmp_path / "src.img", tmp_path / "dst.img"
    with open(img, "wb") as f:
        f.write(os.urandom(5 << 20) + bytes(3 << 20) + b"tail")
        f.truncate(32 << 20)
    with open(other, "wb") as f:
        f.write(os.urandom(32 << 20))  # old contents the restore must replace, zeros included
    devs = []
    try:
        src = losetup(img)
        devs.append(src)
        dst = losetup(other)
        devs.append(dst)
        q("init", "--repo", tmp_path / "repo", "--chunk-size", "1M")
        q("backup", "--repo", tmp_path / "repo", "--image", src, "--name", "blk")
        q("restore", "--repo", tmp_path / "repo", "latest", "--to", dst)
        assert subprocess.run(["cmp", src, dst]).returncode == 0
    finally:
        for d in devs:
            subprocess.run(["losetup", "-d", d])
