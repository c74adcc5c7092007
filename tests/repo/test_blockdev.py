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


def losetup_sector(path, sector):
    return subprocess.run(["losetup", "-f", "--show", "--sector-size", str(sector), str(path)],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("size,sector", [((4 << 20) + 100, 512), ((4 << 20) + 4608, 4096)],
                         ids=["tail-of-100-bytes-on-512", "tail-of-4608-bytes-on-4096"])
def test_zero_tail_not_a_whole_sector(tmp_path, size, sector):
    """A disk whose size is no multiple of the target's logical sector size
    ends in a zero chunk that is too: BLKZEROOUT takes whole sectors only
    (EINVAL), so its unaligned end is written as zeros — and the device's
    bytes past the disk stay as they were."""
    img, other = tmp_path / "src.img", tmp_path / "dst.img"
    with open(img, "wb") as f:
        f.write(os.urandom(3 << 20))
        f.truncate(size)  # the last chunk (and the 4th MiB) a hole
    old = os.urandom(8 << 20)
    other.write_bytes(old)
    dev = losetup_sector(other, sector)
    try:
        q("init", "--repo", tmp_path / "repo", "--chunk-size", "1M")
        q("backup", "--repo", tmp_path / "repo", "--image", img)
        q("restore", "--repo", tmp_path / "repo", "latest", "--to", dev)
        with open(dev, "rb") as d:
            got = d.read(8 << 20)
    finally:
        subprocess.run(["losetup", "-d", dev])
    assert got[:size] == img.read_bytes(), "restored disk differs"
    assert got[size:] == old[size:], "bytes past the disk's end were touched"


def test_restore_syncs_the_directory_after_its_rename(tmp_path):
    """restore writes PATH.partial, renames it to PATH, and fsyncs PATH's
    directory after the rename: until then the rename may not survive a
    crash (seen with strace: the fsync of an fd opened on the directory)."""
    import shutil
    if not shutil.which("strace"):
        pytest.skip("strace not installed")
    img = tmp_path / "src.img"
    img.write_bytes(os.urandom(1 << 20))
    q("init", "--repo", tmp_path / "repo", "--chunk-size", "1M")
    q("backup", "--repo", tmp_path / "repo", "--image", img)
    outdir = tmp_path / "out"
    outdir.mkdir()
    for fmt in ("raw", "qcow2"):
        to, log = outdir / ("disk." + fmt), tmp_path / ("strace-" + fmt)
        # LeakSanitizer cannot run under ptrace (an ASan build): leaks are
        # checked by every other test
        env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
        r = subprocess.run(["strace", "-f", "-qq", "-o", str(log), "-e",
                            "trace=openat,rename,renameat,renameat2,fsync", QUIESCE, "restore", "--repo",
                            str(tmp_path / "repo"), "latest", "--to", str(to), "--format", fmt],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        lines = log.read_text().splitlines()
        ren = [i for i, l in enumerate(lines) if "rename" in l and '"%s"' % to in l and " = 0" in l]
        assert len(ren) == 1, lines
        dir_fds = set()
        synced = False
        for i, l in enumerate(lines):
            if "openat(" in l and '"%s"' % outdir in l and "O_DIRECTORY" in l and "= " in l:
                dir_fds.add(l.rsplit("= ", 1)[1].split()[0])
            if i > ren[0] and "fsync(" in l:
                fd = l.split("fsync(", 1)[1].split(")", 1)[0]
                synced |= fd in dir_fds
        assert synced, "%s: no fsync of %s after the rename:\n%s" % (fmt, outdir, "\n".join(lines[ren[0]:]))
