# SPDX-License-Identifier: MIT
"""prune keeps exactly what its rules say, per snapshot name, newest first;
--dry-run changes nothing; no rule is a usage error; chunks only the removed
snapshots used are gone afterwards and the kept snapshots restore
bit-identical.  keep-daily/weekly/monthly are checked on manifests written
with chosen times (backup --time)."""
import datetime as dt
import os

import pytest

from conftest import (KiB, EXIT_USAGE, assert_same, expect, expect_error, expect_ok,
                      manifest_bytes, wait_next_second, write_image)

CS = 256 * KiB


def test_keep_last_per_name_and_gc(work):
    repo = work.repo(chunk_size=CS)
    imgs = {}
    ids = {"a": [], "b": []}
    shared = os.urandom(CS)

    def snap(name, i):  # a0 < b0 < a1 < b1 < a2 < a3, months apart
        p = work.path("%s%d.raw" % (name, i))
        with open(p, "wb") as f:
            f.write(shared)
            f.write(os.urandom(CS))  # its own chunk
        sid = repo.backup(p, name=name, time="2026-0%d-0%dT12:00:00Z" % (i + 1, 1 + len(imgs)))["id"]
        imgs[sid] = p
        ids[name].append(sid)

    for i in range(4):
        snap("a", i)
        if i < 2:
            snap("b", i)
    assert len(repo.chunk_files()) == 1 + 6
    state = repo.state()

    # dry run: the decision, and nothing changes
    p = expect_ok(repo.run("prune", "--keep-last", "2", "--dry-run", "--json")).json
    assert sorted(p["keep"]) == sorted(ids["a"][2:] + ids["b"])
    assert sorted(p["remove"]) == sorted(ids["a"][:2])
    assert "gc" not in p
    assert repo.state() == state, "prune --dry-run changed the repository"
    expect_ok(repo.run("prune", "--keep-last", "2", "--dry-run"))
    assert repo.state() == state

    removed_chunks = {repo.manifest(s)["disks"][0]["chunks"][1] for s in ids["a"][:2]}
    p = expect_ok(repo.run("prune", "--keep-last", "2", "--json")).json
    assert sorted(p["keep"]) == sorted(ids["a"][2:] + ids["b"])
    assert sorted(p["remove"]) == sorted(ids["a"][:2])
    g = p["gc"]
    assert g["chunks_referenced"] == 5 and g["chunks_deleted"] == 2 and g["trash_emptied"] is True, g
    assert g["bytes_deleted"] >= 2 * CS, g
    assert repo.manifest_ids() == sorted(ids["a"][2:] + ids["b"])
    assert not removed_chunks & (repo.chunk_files() | repo.trash_files())
    repo.assert_clean()
    for sid in repo.manifest_ids():
        out = work.path("out-" + sid)
        repo.restore(sid, out)
        assert_same(imgs[sid], out)

    # --name: only that name's snapshots are considered
    p = expect_ok(repo.run("prune", "--name", "b", "--keep-last", "1", "--json")).json
    assert p["remove"] == [ids["b"][0]]
    assert repo.manifest_ids() == sorted(ids["a"][2:] + ids["b"][1:])
    repo.assert_clean()
    assert expect(repo.verify(), 0).json["ok"] is True


def test_prune_without_a_rule_is_a_usage_error(work):
    repo = work.repo(chunk_size=CS)
    img = work.path("i.raw")
    write_image(img, "RT", CS)
    repo.backup(img)
    state = repo.state()
    for args in ([], ["--dry-run"], ["--name", "x"], ["--json"]):
        expect_error(repo.run("prune", *args), EXIT_USAGE)
        assert repo.state() == state


# -- daily / weekly / monthly on manifests with chosen times -------------------

def T(s):
    return dt.datetime.strptime(s, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)


WEB = ["2025-12-30 08:00:00",   # Tuesday of ISO week 2026-W01
       "2026-01-01 10:00:00",   # Thursday, W01
       "2026-01-04 23:59:59",   # Sunday, W01
       "2026-01-05 00:00:01",   # Monday, W02
       "2026-01-05 12:00:00",
       "2026-01-06 09:00:00",
       "2026-01-06 18:00:00",
       "2026-01-20 07:00:00",
       "2026-02-01 00:00:00",
       "2026-02-28 23:00:00",
       "2026-03-01 01:00:00",
       "2026-03-15 12:00:00"]
DB = ["2026-01-06 10:00:00", "2026-02-02 10:00:00", "2026-03-02 10:00:00"]


def expected_keep(snaps, last=0, daily=0, weekly=0, monthly=0):
    """The documented rules: per name, newest first; keep-last N keeps the N
    newest; keep-daily N the newest of each of the N newest days (UTC) that
    have one; weeks are ISO weeks; a snapshot kept by any rule is kept."""
    keep = set()
    for name in {s[1] for s in snaps}:
        group = sorted((s for s in snaps if s[1] == name), key=lambda s: s[2], reverse=True)
        keep |= {s[0] for s in group[:last]}
        for n, key in ((daily, lambda t: t.date()),
                       (weekly, lambda t: tuple(t.isocalendar())[:2]),
                       (monthly, lambda t: (t.year, t.month))):
            seen = []
            for s in group:
                k = key(s[2])
                if k in seen:
                    continue
                if len(seen) >= n:
                    break
                seen.append(k)
                keep.add(s[0])
    return keep


@pytest.fixture
def dated(work):
    """A repository with one backup named "base" (now) and backups named web
    and db with the times above (backup --time), all of the same image."""
    repo = work.repo(chunk_size=CS)
    img = work.path("i.raw")
    write_image(img, "RTZ", CS)
    base = repo.backup(img, name="base")
    snaps = [(base["id"], "base", T(base["time"].replace("T", " ").rstrip("Z")[:19]))]
    for name, times in (("web", WEB), ("db", DB)):
        for t in times:
            iso = T(t).strftime("%Y-%m-%dT%H:%M:%SZ")
            b = repo.backup(img, name=name, time=iso)
            assert b["time"] == iso and b["id"].startswith(T(t).strftime("%Y%m%dT%H%M%S")), b
            snaps.append((b["id"], name, T(t)))
    listed = repo.snapshots()
    assert [s["id"] for s in listed] == [s[0] for s in sorted(snaps, key=lambda s: s[2])], \
        "snapshots not listed oldest first"
    return repo, snaps, img


RULES = [
    dict(daily=3),
    dict(weekly=3),
    dict(monthly=2),
    dict(daily=2, monthly=3),
    dict(last=2, weekly=2),
    dict(weekly=10),
    dict(last=1),
]


def rule_args(rule):
    out = []
    for k, v in rule.items():
        out += ["--keep-" + k, str(v)]
    return out


@pytest.mark.parametrize("rule", RULES, ids=lambda r: "+".join("%s%d" % kv for kv in r.items()))
def test_calendar_rules_dry_run(dated, rule):
    repo, snaps, _ = dated
    state = repo.state()
    p = expect_ok(repo.run("prune", "--dry-run", "--json", *rule_args(rule))).json
    keep = expected_keep(snaps, **rule)
    assert sorted(p["keep"]) == sorted(keep), "rule %s" % rule
    assert sorted(p["remove"]) == sorted({s[0] for s in snaps} - keep), "rule %s" % rule
    assert repo.state() == state


def test_calendar_rules_prune_for_real(work, dated):
    repo, snaps, img = dated
    rule = dict(daily=2, weekly=3, monthly=3)
    keep = expected_keep(snaps, **rule)
    p = expect_ok(repo.run("prune", "--json", *rule_args(rule))).json
    assert sorted(p["keep"]) == sorted(keep)
    assert repo.manifest_ids() == sorted(keep)
    # --name: only web is pruned further, db stays whole
    web = [s for s in snaps if s[1] == "web" and s[0] in keep]
    p = expect_ok(repo.run("prune", "--json", "--name", "web", "--keep-monthly", "1")).json
    want_web = expected_keep(web, monthly=1)
    assert sorted(p["remove"]) == sorted({s[0] for s in web} - want_web)
    rest = {s[0] for s in snaps if s[1] != "web" and s[0] in keep}
    assert repo.manifest_ids() == sorted(rest | want_web)
    out = work.path("out.raw")
    repo.restore("latest", out, )
    assert_same(img, out)
    repo.assert_clean()
