# SPDX-License-Identifier: MIT
"""The documented layout, config, manifest and --json documents; quiet
without a terminal, a progress line on one."""
import json
import os
import pty
import re
import select
import socket
import subprocess
import time

import pytest

from conftest import (KiB, MiB, ID_RE, TIME_RE, DIGEST_RE, QUIESCE, Repo, expect, expect_ok,
                      nchunks, parse_manifest, q, wait_next_second, write_image)

CS = 256 * KiB

GC_KEYS = {"chunks_referenced", "chunks_trashed", "chunks_restored", "chunks_deleted",
           "bytes_deleted", "tmp_deleted", "trash_emptied"}
STATS_KEYS = {"bytes_read", "bytes_zero", "chunks_new", "chunks_reused", "bytes_stored", "seconds"}


def has_keys(doc, keys, what):
    missing = set(keys) - set(doc)
    assert not missing, "%s lacks %s: %s" % (what, sorted(missing), doc)


def test_init_layout_and_config(work):
    path = work.path("r")
    r = expect_ok(q("init", "--repo", path, "--json"))
    d = r.json
    has_keys(d, {"repo", "id", "version", "chunk_size"}, "init --json")
    assert os.path.realpath(d["repo"]) == os.path.realpath(path)
    assert re.match(r"^[0-9a-f]{32}$", d["id"]) and d["version"] == 2
    assert d["chunk_size"] == 4194304
    cfg = json.loads((path / "config").read_text())
    assert cfg["format"] == "quiesce-repository" and cfg["version"] == 2
    assert cfg["id"] == d["id"] and TIME_RE.match(cfg["created"])
    assert cfg["chunk_size"] == 4194304 and cfg["hash"] == "sha256"
    assert cfg["compression"] == "zstd" and cfg["encryption"] == "none"
    assert sorted(p.name for p in (path / "chunks").iterdir()) == ["%02x" % i for i in range(256)]
    # version 2: trash generations made as gc needs them; sessions of running commands
    assert [p.name for p in (path / "trash").iterdir()] == ["gen"]
    assert list((path / "trash" / "gen").iterdir()) == [] and list((path / "sessions").iterdir()) == []
    assert (path / "snapshots").is_dir() and (path / "tmp").is_dir()
    assert (path / "locks" / "writers").is_file() and (path / "locks" / "gc").is_file()
    assert list((path / "snapshots").iterdir()) == [] and list((path / "tmp").iterdir()) == []

    # the limits of --chunk-size are accepted; two inits give two ids
    for cs in (64 * KiB, 64 * MiB):
        p = work.path("r%d" % cs)
        d2 = expect_ok(q("init", "--repo", p, "--chunk-size", cs, "--json")).json
        assert d2["chunk_size"] == cs and d2["id"] != d["id"]
    # quiet without --json
    expect_ok(q("init", "--repo", work.path("quiet")))


def test_backup_manifest_and_json_documents(work):
    repo = work.repo(chunk_size=CS)
    img = work.path("img.raw")
    write_image(img, "RTZzR", CS, tail=1000)
    size = os.path.getsize(img)
    b = repo.backup(img, name="web1", meta=["vm=web1", "level=fs-frozen"])
    has_keys(b, {"id", "name", "time", "disks", "stats"}, "backup --json")
    assert ID_RE.match(b["id"]) and TIME_RE.match(b["time"]) and b["name"] == "web1"
    # the id is the UTC start time plus a suffix
    assert b["id"][:15] == b["time"].replace("-", "").replace(":", "")[:15]
    assert len(b["disks"]) == 1
    d = b["disks"][0]
    has_keys(d, {"name", "source", "size", "chunks", "chunks_zero"}, "backup disk")
    assert d["source"] == str(img) and d["size"] == size and d["chunks_zero"] == 2
    has_keys(b["stats"], STATS_KEYS, "backup stats")
    assert b["stats"]["chunks_new"] == 4 and b["stats"]["chunks_reused"] == 0

    raw = (repo.path / "snapshots" / b["id"]).read_bytes()
    header, m = parse_manifest(raw)
    has_keys(m, {"id", "name", "time", "host", "chunk_size", "disks", "stats", "metadata"},
             "manifest")
    assert m["id"] == b["id"] and m["name"] == "web1" and m["time"] == b["time"]
    assert m["host"] == socket.gethostname() and m["chunk_size"] == CS
    assert m["metadata"] == {"vm": "web1", "level": "fs-frozen"}
    md = m["disks"][0]
    assert md["name"] == d["name"] and md["source"] == str(img) and md["size"] == size
    assert len(md["chunks"]) == nchunks(size, CS) == 6
    assert [c is None for c in md["chunks"]] == [False, False, True, True, False, False]
    assert all(DIGEST_RE.match(c) for c in md["chunks"] if c)
    assert m["stats"] == b["stats"]

    b2 = repo.backup(img, name="db", time="2025-06-30T23:59:59Z")  # older, made later
    assert b2["time"] == "2025-06-30T23:59:59Z" and b2["id"].startswith("20250630T235959."), b2
    snaps = repo.snapshots()
    assert [s["id"] for s in snaps] == [b2["id"], b["id"]], "snapshots not oldest first"
    for s in snaps:
        has_keys(s, {"id", "name", "time", "host", "disks", "stats", "metadata"}, "snapshots entry")
        has_keys(s["disks"][0], {"name", "source", "size"}, "snapshots disk")
        has_keys(s["stats"], STATS_KEYS, "snapshots stats")
    assert snaps[1]["metadata"] == {"vm": "web1", "level": "fs-frozen"}
    assert snaps[1]["disks"][0]["size"] == size
    assert [s["id"] for s in repo.snapshots("--name", "db")] == [b2["id"]]
    assert repo.snapshots("--name", "nobody") == []

    out = work.path("out.raw")
    r = repo.restore("latest", out)
    has_keys(r, {"id", "disk", "to", "format", "bytes", "chunks", "chunks_zero"}, "restore --json")
    assert r["id"] == b["id"] and r["disk"] == 0 and r["format"] == "raw"
    assert os.path.realpath(r["to"]) == os.path.realpath(out) and r["bytes"] == size
    assert r["chunks_zero"] == 2 and r["chunks"] in (4, 6)

    v = expect_ok(repo.verify()).json
    has_keys(v, {"ok", "snapshots", "chunks_checked", "missing", "damaged", "broken_snapshots"},
             "verify --json")
    assert v["ok"] is True and v["snapshots"] == 2 and v["chunks_checked"] == 4

    p = expect_ok(repo.run("prune", "--keep-last", "1", "--dry-run", "--json")).json
    has_keys(p, {"keep", "remove"}, "prune --dry-run --json")
    assert "gc" not in p
    p = expect_ok(repo.run("prune", "--keep-last", "1", "--json")).json
    has_keys(p, {"keep", "remove", "gc"}, "prune --json")
    has_keys(p["gc"], GC_KEYS, "prune gc")
    g = repo.gc()
    has_keys(g, GC_KEYS, "gc --json")
    assert g["chunks_referenced"] == 4 and g["chunks_deleted"] == 0 and g["trash_emptied"] is True

    # without --json and without a terminal: nothing on stderr, any command
    for argv in (["backup", "--image", img], ["snapshots"], ["verify"],
                 ["restore", "latest", "--to", work.path("o2")],
                 ["prune", "--keep-last", "5"], ["gc"]):
        expect_ok(repo.run(*argv))


def run_on_tty(argv):
    """Run with stderr (and stdin) on a pseudo-terminal; stdout a pipe."""
    master, slave = pty.openpty()
    p = subprocess.Popen([str(QUIESCE)] + [str(a) for a in argv], stdin=slave, stdout=subprocess.PIPE,
                         stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            r, _, _ = select.select([master], [], [], 60)
            if not r:
                break
            b = os.read(master, 65536)
        except OSError:  # EIO: every slave end closed
            break
        if not b:
            break
        chunks.append(b)
    out = p.stdout.read()
    p.wait(timeout=60)
    os.close(master)
    return p.returncode, out.decode(errors="replace"), b"".join(chunks).decode(errors="replace")


def test_progress_line_on_a_terminal_only(work):
    repo = work.repo(chunk_size=MiB)
    img = work.path("big.raw")
    write_image(img, "R" * 192 + "T" * 64, MiB)
    rc, out, err = run_on_tty(["backup", "--repo", repo.path, "--image", img, "--threads", "1"])
    assert rc == 0, err
    assert re.search(r"\d+(\.\d+)? [KMG]i?B", err), "no progress line on a terminal: %r" % err
    # the same without a terminal: nothing
    r = expect_ok(repo.backup_raw(img))
    json.loads(r.out)
