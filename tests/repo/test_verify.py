# SPDX-License-Identifier: MIT
"""verify re-reads and re-hashes every referenced chunk, names each missing
or damaged one and the snapshots it breaks (exit 5), changes nothing; restore
of a broken snapshot fails with exit 5 and leaves neither PATH nor
PATH.partial."""
import os
import random
import shutil

import pytest

from conftest import (KiB, EXIT_DAMAGED, assert_same, expect, read_chunk, write_image)

CS = 256 * KiB


def flip(path, offset, mask=0x01):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


@pytest.fixture
def three(work):
    """S0 (clean, its own chunks), S1 = A, S2 = B sharing A's first four chunks."""
    repo = work.repo(chunk_size=CS)
    a, b, c = work.path("a.raw"), work.path("b.raw"), work.path("c.raw")
    write_image(c, "RT", CS)
    write_image(a, "RRTTRR", CS)
    shutil.copyfile(a, b)
    with open(b, "r+b") as f:
        f.seek(4 * CS)
        f.write(os.urandom(2 * CS))
    s0 = repo.backup(c, name="c")["id"]
    s1 = repo.backup(a, name="a")["id"]
    s2 = repo.backup(b, name="b")["id"]
    return repo, (s0, s1, s2), (a, b, c)


def by_digest(entries):
    return {e["digest"]: sorted(e["snapshots"]) for e in entries}


def test_clean_repository_verifies(three):
    repo, (s0, s1, s2), _ = three
    r = expect(repo.verify(), 0)
    assert r.err == ""
    v = r.json
    assert v["ok"] is True and v["snapshots"] == 3
    assert v["chunks_checked"] == 10  # 2 + 6 + 2 distinct data chunks
    assert v["missing"] == [] and v["damaged"] == [] and v["broken_snapshots"] == []
    r = expect(repo.run("verify"), 0)
    assert r.err == ""


def test_verify_names_every_damaged_and_missing_chunk(work, three):
    repo, (s0, s1, s2), (a, b, c) = three
    ca = repo.manifest(s1)["disks"][0]["chunks"]
    cb = repo.manifest(s2)["disks"][0]["chunks"]
    assert ca[:4] == cb[:4] and not set(ca[4:]) & set(cb[4:])
    # random chunks are stored as is, text compressed
    assert read_chunk(repo.chunk_path(ca[0]), CS)[0] == 0
    assert read_chunk(repo.chunk_path(ca[2]), CS)[0] == 1

    p = repo.chunk_path
    flip(p(ca[0]), 16 + 1000)                                   # payload, stored chunk
    flip(p(ca[2]), 16 + (os.path.getsize(p(ca[2])) - 16) // 2)  # payload, zstd chunk
    with open(p(ca[3]), "r+b") as f:                            # truncated by one byte
        f.truncate(os.path.getsize(p(ca[3])) - 1)
    flip(p(ca[4]), 9)                                           # raw length field
    flip(p(ca[5]), 0)                                           # magic
    os.unlink(p(cb[4]))                                         # missing
    state = repo.state()

    r = expect(repo.verify(), EXIT_DAMAGED)
    v = r.json
    assert v["ok"] is False
    assert by_digest(v["missing"]) == {cb[4]: [s2]}
    assert by_digest(v["damaged"]) == {
        ca[0]: sorted([s1, s2]), ca[2]: sorted([s1, s2]), ca[3]: sorted([s1, s2]),
        ca[4]: [s1], ca[5]: [s1]}
    assert all(isinstance(e["error"], str) and e["error"] for e in v["damaged"])
    assert sorted(v["broken_snapshots"]) == sorted([s1, s2])
    assert repo.state() == state, "verify changed the repository"

    # text: every digest and every broken snapshot named, exit 5
    r = expect(repo.run("verify"), EXIT_DAMAGED)
    text = r.out + r.err
    for d in (ca[0], ca[2], ca[3], ca[4], ca[5], cb[4]):
        assert d in text, "verify does not name %s:\n%s" % (d, text)
    assert s1 in text and s2 in text and s0 not in text

    # one snapshot at a time
    v = expect(repo.verify(s1), EXIT_DAMAGED).json
    assert set(by_digest(v["damaged"])) == {ca[0], ca[2], ca[3], ca[4], ca[5]}
    assert v["missing"] == [] and v["broken_snapshots"] == [s1]
    v = expect(repo.verify(s2), EXIT_DAMAGED).json
    assert set(by_digest(v["damaged"])) == {ca[0], ca[2], ca[3]}
    assert set(by_digest(v["missing"])) == {cb[4]} and v["broken_snapshots"] == [s2]
    v = expect(repo.verify(s0), 0).json
    assert v["ok"] is True and v["snapshots"] == 1 and v["broken_snapshots"] == []

    # restores of broken snapshots fail and leave nothing behind
    for sid, fmt in ((s1, "raw"), (s2, "raw"), (s1, "qcow2")):
        out = work.path("out-%s.%s" % (sid, fmt))
        r = expect(repo.run("restore", sid, "--to", out, "--format", fmt), EXIT_DAMAGED)
        assert not out.exists(), "restore of a damaged snapshot left %s" % out
        assert not os.path.exists(str(out) + ".partial")
    out = work.path("good")
    repo.restore(s0, out)
    assert_same(c, out)
    assert repo.state() == state, "a failed restore changed the repository"


def test_verify_finds_every_random_bit_flip(work):
    repo = work.repo(chunk_size=CS)
    img = work.path("img")
    write_image(img, "RT" * 8, CS)
    sid = repo.backup(img)["id"]
    chunks = repo.manifest(sid)["disks"][0]["chunks"]
    rnd = random.Random()
    flipped = {}
    for i, d in enumerate(chunks):
        path = repo.chunk_path(d)
        n = os.path.getsize(path)
        codec = read_chunk(path, CS)[0]
        if i % 4 == 3:
            off = rnd.choice([0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15])  # header (not reserved)
        elif codec == 0:
            off = rnd.randrange(16, n)
        else:  # well inside the zstd frame
            off = rnd.randrange(16 + (n - 16) // 4, 16 + 3 * (n - 16) // 4)
        mask = 1 << rnd.randrange(8)
        flip(path, off, mask)
        flipped[d] = (off, mask)
    v = expect(repo.verify(), EXIT_DAMAGED).json
    found = set(by_digest(v["damaged"]))
    assert found == set(flipped), "undetected flips: %s" % {
        d: flipped[d] for d in set(flipped) - found}
    assert v["missing"] == [] and v["broken_snapshots"] == [sid]
