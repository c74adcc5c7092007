# SPDX-License-Identifier: MIT
"""Bad input: each case gets exactly one error line on stderr and its own
documented exit code, and changes nothing in the repository."""
import hashlib
import json
import os

import pytest

from conftest import (KiB, MiB, EXIT_REPO, EXIT_SOURCE, EXIT_DAMAGED, EXIT_NOSNAP, EXIT_USAGE,
                      Repo, assert_same, expect, expect_error, expect_ok, manifest_bytes,
                      parse_manifest, q, write_image)

CS = 256 * KiB


@pytest.fixture
def filled(work):
    repo = work.repo(chunk_size=CS)
    img = work.path("img.raw")
    write_image(img, "RTZR", CS)
    s1 = repo.backup(img, name="vm")["id"]
    img2 = work.path("img2.raw")
    write_image(img2, "TTR", CS)
    s2 = repo.backup(img2, name="vm2")["id"]
    return repo, (s1, s2), (img, img2)


def every_command(repo_path, work, image):
    """(argv, what) for every command that opens a repository."""
    out = work.path("never-created.raw")
    return [
        (["snapshots", "--repo", repo_path], out),
        (["snapshots", "--repo", repo_path, "--json"], out),
        (["backup", "--repo", repo_path, "--image", image], out),
        (["restore", "--repo", repo_path, "latest", "--to", out], out),
        (["verify", "--repo", repo_path], out),
        (["prune", "--repo", repo_path, "--keep-last", "1"], out),
        (["gc", "--repo", repo_path], out),
    ]


def listing(path):
    if not os.path.exists(path):
        return None
    out = {}
    for root, dirs, files in os.walk(path):
        for f in files + dirs:
            p = os.path.join(root, f)
            st = os.lstat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns)
    return out


def test_not_a_repository(work):
    img = work.path("img.raw")
    write_image(img, "R", CS)
    empty = work.path("empty")
    empty.mkdir()
    other = work.path("other")
    other.mkdir()
    (other / "config").write_text('{"something": "else"}\n')
    (other / "notes.txt").write_text("hello\n")
    afile = work.path("afile")
    afile.write_text("x")
    for target in (empty, other, work.path("missing"), afile):
        before = listing(target)
        for argv, out in every_command(target, work, img):
            expect_error(q(*argv), EXIT_REPO)
            assert listing(target) == before, "%s changed %s" % (argv, target)
            assert not out.exists()


def test_newer_format_version(work, filled):
    repo, (s1, s2), (img, img2) = filled
    cfg = repo.config
    cfg["version"] = 3
    (repo.path / "config").write_text(json.dumps(cfg) + "\n")
    state = repo.state()
    for argv, out in every_command(repo.path, work, img):
        expect_error(q(*argv), EXIT_REPO)
        assert repo.state() == state, "%s wrote to a version-3 repository" % argv
        assert not out.exists()
    # a different backup source, through QUIESCE_REPO as well
    expect_error(q("backup", "--image", img2, env={"QUIESCE_REPO": repo.path}), EXIT_REPO)
    assert repo.state() == state


def damage_manifest(repo, sid, how):
    path = repo.path / "snapshots" / sid
    data = path.read_bytes()
    nl = data.index(b"\n")
    if how == "flip-body":
        i = nl + 1 + (len(data) - nl - 1) // 2
        data = data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1:]
    elif how == "flip-checksum":
        i = nl - 5
        data = data[:i] + (b"0" if data[i:i + 1] != b"0" else b"1") + data[i + 1:]
    elif how == "truncated":
        data = data[:nl + 1 + (len(data) - nl - 1) // 2]
    elif how == "header":
        data = b"quiesce-manifest-x" + data[len(b"quiesce-manifest"):]
    elif how == "bad-type":  # checksum right, a field of the wrong type
        doc = parse_manifest(data)[1]
        doc["disks"][0]["size"] = str(doc["disks"][0]["size"])
        data = manifest_bytes(doc)
    elif how == "bad-json":
        body = b'{"id": "' + sid.encode() + b'", "disks": [\n'
        data = b"quiesce-manifest 1 " + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
    path.write_bytes(data)


@pytest.mark.parametrize("how", ["flip-body", "flip-checksum", "truncated", "header",
                                 "bad-type", "bad-json"])
def test_damaged_manifest(work, filled, how):
    repo, (s1, s2), (img, img2) = filled
    damage_manifest(repo, s2, how)
    state = repo.state()
    out = work.path("out.raw")
    problems = []

    def check(argv, names=True, one_line=True):
        r = q(*argv)
        try:
            if one_line:
                line = expect_error(r, EXIT_DAMAGED)
            else:
                expect(r, EXIT_DAMAGED)
                line = r.out + r.err
            if names:
                assert s2 in line, "the damaged manifest is not named: %r" % r
        except AssertionError as e:
            problems.append(str(e))

    R = ["--repo", repo.path]
    check(["snapshots", *R])
    check(["snapshots", "--json", *R], names=False)
    check(["restore", *R, s2, "--to", out])
    assert not out.exists() and not os.path.exists(str(out) + ".partial")
    check(["verify", *R], one_line=False)
    check(["verify", *R, s2], one_line=False)
    r = q("verify", "--json", *R)
    if r.rc != EXIT_DAMAGED or s2 not in r.json["broken_snapshots"]:
        problems.append("verify --json: %r" % r)
    assert repo.state() == state, "reading a damaged manifest changed the repository"
    assert not problems, "\n\n".join(problems)


def test_undamaged_snapshot_still_restores_next_to_a_damaged_manifest(work, filled):
    repo, (s1, s2), (img, img2) = filled
    damage_manifest(repo, s2, "flip-body")
    out = work.path("out.raw")
    repo.restore(s1, out)
    assert_same(img, out)
    assert expect(repo.verify(s1), 0).json["ok"] is True


def test_source_cannot_be_opened(work, filled):
    repo, (s1, s2), (img, img2) = filled
    state = repo.state()
    adir = work.path("adir")
    adir.mkdir()
    for src in (work.path("missing.raw"), adir, "nbd+unix:///?socket=%s" % work.path("no.sock"),
                "nbd+unix:///nosuchexport?socket=%s" % work.path("no.sock")):
        line = expect_error(repo.run("backup", "--image", src), EXIT_SOURCE)
        assert str(src) in line or os.path.basename(str(src)) in line, line
        assert repo.state() == state, "a failed backup changed the repository"
    # a second, bad image: no snapshot, nothing stored before changed
    r = repo.run("backup", "--image", img2, "--image", work.path("missing.raw"))
    expect_error(r, EXIT_SOURCE)
    assert repo.manifest_ids() == sorted([s1, s2])
    after = repo.state()
    assert {k: v for k, v in after.items() if k in state} == state
    repo.gc()
    repo.assert_clean()


def test_restore_target_cannot_be_opened(work, filled):
    repo, (s1, s2), _ = filled
    state = repo.state()
    for fmt in ("raw", "qcow2"):
        to = work.path("nodir") / "x" / "out.img"
        expect_error(repo.run("restore", s1, "--to", to, "--format", fmt), EXIT_SOURCE)
        assert not to.parent.exists()
    assert repo.state() == state


def test_unknown_snapshot(work, filled):
    repo, (s1, s2), _ = filled
    state = repo.state()
    out = work.path("out.raw")
    for snap in ("deadbeef", "19990101T000000Z-00000000", s1 + "x", "latestx"):
        expect_error(repo.run("restore", snap, "--to", out), EXIT_NOSNAP)
        assert not out.exists()
        expect_error(repo.run("verify", snap), EXIT_NOSNAP)
    empty = work.repo(chunk_size=CS)
    expect_error(empty.run("restore", "latest", "--to", out), EXIT_NOSNAP)
    assert not out.exists()
    assert repo.state() == state


@pytest.mark.parametrize("argv", [
    [],
    ["frobnicate"],
    ["snapshots", "--no-such-option"],
    ["backup", "--repo", "{repo}"],                                   # no --image
    ["backup", "--repo", "{repo}", "--image"],                         # missing value
    ["backup", "--repo", "{repo}", "--image", "{img}", "--meta", "novalue"],
    ["restore", "--repo", "{repo}", "latest"],                         # no --to
    ["restore", "--repo", "{repo}", "--to", "{out}"],                  # no snapshot
    ["restore", "--repo", "{repo}", "latest", "--to", "{out}", "--format", "vmdk"],
    ["restore", "--repo", "{repo}", "latest", "--to", "{out}", "--disk", "x"],
    ["prune", "--repo", "{repo}"],
    ["prune", "--repo", "{repo}", "--keep-last", "abc"],
    ["prune", "--repo", "{repo}", "--keep-daily", "-1"],
    ["verify", "--repo", "{repo}", "a", "b"],
    ["snapshots"],                                                      # no --repo, no $QUIESCE_REPO
    ["gc", "--repo", "{repo}", "--threads", "0"],
    ["init", "--repo", "{new}", "--chunk-size", "1000"],
    ["init", "--repo", "{new}", "--chunk-size", "32768"],
    ["init", "--repo", "{new}", "--chunk-size", str(128 * MiB)],
], ids=lambda a: " ".join(a)[:60] or "no-args")
def test_usage_errors(work, filled, argv):
    repo, _, (img, _) = filled
    state = repo.state()
    new, out = work.path("new"), work.path("out.raw")
    argv = [a.format(repo=repo.path, img=img, out=out, new=new) for a in argv]
    r = expect(q(*argv), EXIT_USAGE)
    # an error line (and, as is usual, maybe a usage synopsis after it)
    assert r.err.strip() and r.out == "", r
    assert repo.state() == state
    assert not out.exists()
    assert not new.exists() or not any(new.iterdir())


def test_init_refuses_non_empty_dir_and_existing_repository(work, filled):
    repo, _, _ = filled
    d = work.path("nonempty")
    d.mkdir()
    (d / "keep.txt").write_text("mine\n")
    before = listing(d)
    r = q("init", "--repo", d)
    assert r.rc != 0
    expect_error(r, r.rc)
    assert listing(d) == before
    state = repo.state()
    r = q("init", "--repo", repo.path)
    assert r.rc != 0
    expect_error(r, r.rc)
    assert repo.state() == state


def test_restore_refuses_to_replace_without_force(work, filled):
    repo, (s1, s2), (img, img2) = filled
    out = work.path("exists.raw")
    out.write_bytes(b"precious\n")
    r = repo.run("restore", s1, "--to", out)
    assert r.rc != 0
    expect_error(r, r.rc)
    assert out.read_bytes() == b"precious\n"
    assert not os.path.exists(str(out) + ".partial")
    expect_ok(repo.run("restore", s1, "--to", out, "--force"))
    assert_same(img, out)


def test_quiesce_repo_environment_variable(work, filled):
    repo, (s1, s2), _ = filled
    r = expect_ok(q("snapshots", "--json", env={"QUIESCE_REPO": repo.path}))
    assert sorted(s["id"] for s in r.json) == sorted([s1, s2])
