"""The registry of known differences, and the comparison machinery itself (no agents)."""
import os

import pytest

import known_differences
from cases import ALL_IDS
from compare import Between, compare_results, compare_lines
from harness import REPO, Marker, Result
from replyjson import check_line, parse_line, dump

# Import every case table so ALL_IDS is complete even when this file runs alone.
import test_cli, test_commands, test_config, test_connection, test_dispatch, test_framing, test_limits, test_freeze_family  # noqa: F401,E401,E501

COMPAT = REPO / "docs" / "compat.md"


def test_registry_entries_name_existing_cases():
    stale = sorted(set(known_differences.KNOWN) - ALL_IDS)
    assert not stale, "registry entries for cases that do not exist: %s" % stale


def test_registry_headings_exist_in_compat_md():
    if not COMPAT.exists():
        pytest.skip("docs/compat.md not written yet")
    headings = {l[3:].strip() for l in COMPAT.read_text().split("\n") if l.startswith("## ")}
    missing = sorted({k.compat for k in known_differences.KNOWN.values()} - headings)
    assert not missing, "registry names headings that docs/compat.md lacks: %s" % missing


def test_registry_entries_have_reason_and_check():
    for cid, k in known_differences.KNOWN.items():
        assert k.reason and k.compat, cid
        assert k.expect is not None or k.check is not None, cid


def test_registry_entries_record_what_qemu_ga_does():
    """Each entry checks qemu-ga's side too (ref_expect or ref_check), against the real
    qemu-ga in the same run, so it fails once qemu-ga no longer differs as compat.md says."""
    bare = sorted(cid for cid, k in known_differences.KNOWN.items()
                  if k.ref_expect is None and k.ref_check is None)
    assert not bare, "registry entries without ref_expect/ref_check: %s" % bare


def test_reference_side_is_checked():
    """A registered case fails when qemu-ga does not send what is recorded for it, even
    if ours sends what is registered for ours."""
    k = known_differences.Known("r", "h", expect=[b'{"return": 1}'], ref_expect=[b'{"return": 2}'])
    assert not known_differences.problems(k, res(b'{"return": 2}'), res(b'{"return": 1}'))
    probs = known_differences.problems(k, res(b'{"return": 3}'), res(b'{"return": 1}'))
    assert len(probs) == 1 and "qemu-ga no longer does what the registry records" in probs[0], probs
    assert "the registry sent 2, qemu-ga 3" in probs[0], probs
    k = known_differences.Known("r", "h", check=lambda ref, ours, **_: [],
                                ref_check=lambda ref, **_: ["nope"] if ref.flat() else [])
    assert known_differences.problems(k, res(b'{"return": 3}'), res())
    assert not known_differences.problems(k, res(), res())


# ---------------------------------------------------------------- the comparison itself

def res(*lines):
    return Result([list(lines)])


def test_member_order_does_not_matter():
    assert not compare_results(res(b'{"return": {}, "id": 1}'), res(b'{"id": 1, "return": {}}'))


def test_escape_spelling_matters():
    assert compare_results(res(b'{"return": "\\u00E9"}'), res(b'{"return": "\\u00e9"}'))
    assert compare_results(res(b'{"return": "/"}'), res(b'{"return": "\\/"}'))


def test_number_text_matters():
    assert compare_results(res(b'{"id": 0.10000000000000001}'), res(b'{"id": 0.1}'))
    assert compare_results(res(b'{"id": 1}'), res(b'{"id": 1.0}'))


def test_qemu_ga_non_json_numbers_parse():
    for n in (b"inf", b"-inf", b"nan", b"-nan", b"-0", b"1e+20", b"9.9999999999999995e-08"):
        assert not check_line(b'{"return": {}, "id": ' + n + b"}"), n


def test_delimiter_matters():
    assert compare_results(res(b'\xff{"return": 1}'), res(b'{"return": 1}'))


def test_framing_checks():
    assert check_line(b'{"return":{}}')                  # not qemu-ga's separators
    assert check_line(b'{"return": "\xc3\xa9"}')         # raw non-ASCII
    assert check_line(b'{"return": "a\tb"}')             # raw control character
    assert check_line(b'{"return": 1, "return": 2}')     # duplicate member
    assert check_line(b'{"return": "\\u00e9"}')          # lower-case hex
    assert not check_line(b'{"return": "\\\\u00e9"}')    # an escaped backslash, then text
    assert check_line(b'[1]')                            # not an object
    assert not check_line(b'\xff{"return": [1, {"a": null}, []]}')


def test_counts_and_markers():
    assert compare_results(res(b'{"return": {}}'), res(b'{"return": {}}', b'{"return": {}}'))
    assert compare_results(res(Marker("<EOF>")), res(b'{"return": {}}'))
    assert not compare_results(res(Marker("<EOF>")), res(Marker("<EOF>")))


def test_between_tolerance():
    t = [Between("return")]
    ref1, ref2 = res(b'{"return": 100}'), res(b'{"return": 200}')
    assert not compare_results(ref1, res(b'{"return": 150}'), t, ref2)
    assert compare_results(ref1, res(b'{"return": 250}'), t, ref2)
    assert compare_results(ref1, res(b'{"return": 150.0}'), t, ref2)


def test_dump_round_trips_qemu_ga_lines():
    for line in (b'{"return": {"version": "7.2.22", "supported_commands": [{"enabled": true}]}}',
                 b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\"a\\u0001\'"}}'):
        assert dump(parse_line(line)[1]).encode() == line
        assert not compare_lines(line, line)
