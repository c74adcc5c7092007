# SPDX-License-Identifier: MIT
"""scripts/summarize.py, which decides whether CI is green: a tier that did
not do its job must fail the run even when no single test failed."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUMMARIZE = REPO / "scripts" / "summarize.py"

SKIPS = """# test list
vm   tests.vm.t::*[[]qemu-ga[]]  |  agent-independent
"""


def junit(cases):
    body = "".join(cases)
    return ('<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="%d" failures="0" '
            'errors="0" skipped="0">%s</testsuite></testsuites>' % (len(cases), body))


def case(name, cls="tests.vm.t", skip=None, fail=False):
    inner = ""
    if skip is not None:
        inner = '<skipped type="pytest.skip" message="%s">t.py:1: %s</skipped>' % (skip, skip)
    if fail:
        inner = '<failure message="boom">boom</failure>'
    return '<testcase classname="%s" name="%s" time="0.1">%s</testcase>' % (cls, name, inner)


def summarize(tmp_path, files, skips=SKIPS):
    paths = []
    for name, (text, rc) in files.items():
        p = tmp_path / name
        p.write_text(text)
        if rc is not None:
            (tmp_path / (p.stem + ".rc")).write_text("%d\n" % rc)
        paths.append(str(p))
    (tmp_path / "skips").write_text(skips)
    r = subprocess.run([sys.executable, str(SUMMARIZE), "--skips", str(tmp_path / "skips")] + paths,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return r.returncode, r.stdout


def test_all_passing_and_expected_skips_is_green(tmp_path):
    rc, out = summarize(tmp_path, {"vm.xml": (junit([case("a[quiesce]"),
                                                     case("a[qemu-ga]", skip="agent-independent")]), 0)})
    assert rc == 0, out
    assert out.splitlines()[-1] == "1 passed, 0 failed, 1 skipped"


def test_unexpected_skip_fails(tmp_path):
    rc, out = summarize(tmp_path, {"vm.xml": (junit([case("a[quiesce]", skip="quiesce not built")]), 0)})
    assert rc == 1, out
    assert "unexpected skip of tests.vm.t::a[quiesce]: quiesce not built" in out
    assert out.splitlines()[-1] == "0 passed, 1 failed, 1 skipped"


def test_listed_test_skipped_for_another_reason_fails(tmp_path):
    rc, out = summarize(tmp_path, {"vm.xml": (junit([case("a[qemu-ga]", skip="needs root")]), 0)})
    assert rc == 1 and "unexpected skip" in out, out


def test_skip_expected_in_one_tier_only(tmp_path):
    rc, out = summarize(tmp_path, {"repo.xml": (junit([case("a[qemu-ga]", skip="agent-independent")]), 0)})
    assert rc == 1 and "repo: unexpected skip" in out, out


def test_tier_that_collected_nothing_fails(tmp_path):
    rc, out = summarize(tmp_path, {"vm.xml": (junit([]), 5), "unit.json": ('{"name": "u", "result": "OK"}\n', None)})
    assert rc == 1, out
    assert "vm: collected no tests" in out
    assert out.splitlines()[-1] == "1 passed, 1 failed"


def test_tier_that_exited_nonzero_without_a_failed_test_fails(tmp_path):
    # e.g. an ImportError in one conftest after the others ran: pytest exits 2 or 4
    rc, out = summarize(tmp_path, {"vm.xml": (junit([case("a[quiesce]")]), 2)})
    assert rc == 1 and "pytest exited 2" in out, out


def test_failed_tests_are_not_counted_twice(tmp_path):
    rc, out = summarize(tmp_path, {"vm.xml": (junit([case("a[quiesce]", fail=True), case("b[quiesce]")]), 1)})
    assert rc == 1
    assert out.splitlines()[-1] == "1 passed, 1 failed", out


def test_missing_result_file_fails(tmp_path):
    (tmp_path / "skips").write_text(SKIPS)
    r = subprocess.run([sys.executable, str(SUMMARIZE), "--skips", str(tmp_path / "skips"),
                        str(tmp_path / "freeze.xml")], stdout=subprocess.PIPE, text=True)
    assert r.returncode == 1 and "cannot read" in r.stdout, r.stdout


def test_meson_log_with_no_tests_fails(tmp_path):
    rc, out = summarize(tmp_path, {"unit.json": ("", None)})
    assert rc == 1 and "unit: no test ran" in out, out


def test_the_repository_skip_list_parses():
    r = subprocess.run([sys.executable, str(SUMMARIZE)], stdout=subprocess.PIPE, text=True)
    assert r.stdout.strip() == "0 passed, 0 failed", r.stdout
