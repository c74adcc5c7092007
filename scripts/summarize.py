#!/usr/bin/env python3
"""Sum the results of every test tier into one closing line,
'N passed, N failed[, N skipped]', and fail the run when a tier did not do
its job although no single test failed:

  * a tier whose runner exited non-zero without a failed test (pytest
    internal error, interrupted, usage error) or that collected no test at
    all: one failure each;
  * a skip that tests/expected-skips does not list (tier, test id and
    reason must all match): one failure each, printed with its reason;
  * a result file that is missing or unreadable: one failure.

Usage: summarize.py [--skips FILE] RESULT...
  RESULT is meson's testlog.json (one JSON object per line) or pytest's JUnit
  XML; for NAME.xml, NAME.rc (written by scripts/test-all) holds pytest's exit
  status.  The tier's name is the file's basename without extension.
"""
import fnmatch
import json
import os
import sys
import xml.etree.ElementTree as ET

PYTEST_TESTS_FAILED = 1
PYTEST_NO_TESTS = 5


def load_expected(path):
    """[(tier pattern, test id pattern, reason substring)] from FILE."""
    entries = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            head, sep, reason = line.partition("|")
            parts = head.split()
            if not sep or len(parts) != 2 or not reason.strip():
                sys.exit("summarize: %s:%d: want 'TIER TEST-ID | REASON', got %r" % (path, n, line))
            entries.append((parts[0], parts[1], reason.strip()))
    return entries


def expected(entries, tier, test_id, reason):
    return any(fnmatch.fnmatchcase(tier, t) and fnmatch.fnmatchcase(test_id, i) and r in reason
               for t, i, r in entries)


class Tally:
    def __init__(self, entries):
        self.entries = entries
        self.passed = self.failed = self.skipped = 0
        self.problems = []

    def problem(self, text):
        self.failed += 1
        self.problems.append(text)

    def meson(self, tier, path):
        n = 0
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                n += 1
                result = r.get("result")
                if result in ("OK", "EXPECTEDFAIL"):
                    self.passed += 1
                elif result == "SKIP":
                    self.skipped += 1
                    if not expected(self.entries, tier, r.get("name", "?"), "meson skip"):
                        self.problem("%s: %s skipped (not in tests/expected-skips)" % (tier, r.get("name")))
                else:
                    self.failed += 1
        if n == 0:
            self.problem("%s: no test ran" % tier)

    def junit(self, tier, path):
        root = ET.parse(path).getroot()
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        failures = total = 0
        for s in suites:
            for case in s.iter("testcase"):
                total += 1
                test_id = "%s::%s" % (case.get("classname", ""), case.get("name", ""))
                if case.find("failure") is not None or case.find("error") is not None:
                    self.failed += 1
                    failures += 1
                elif case.find("skipped") is not None:
                    self.skipped += 1
                    sk = case.find("skipped")
                    reason = (sk.get("message") or "") + " " + (sk.text or "")
                    if not expected(self.entries, tier, test_id, reason):
                        self.problem("%s: unexpected skip of %s: %s" % (tier, test_id, reason.strip()))
                else:
                    self.passed += 1
        rc_path = path[:-len(".xml")] + ".rc"
        if os.path.exists(rc_path):
            rc = int(open(rc_path).read().strip() or "0")
            if rc == PYTEST_NO_TESTS or total == 0:
                self.problem("%s: collected no tests" % tier)
            elif rc != 0 and not (rc == PYTEST_TESTS_FAILED and failures):
                self.problem("%s: pytest exited %d with no failed test (collection or internal error)"
                             % (tier, rc))
        elif total == 0:
            self.problem("%s: collected no tests" % tier)


def main(argv):
    skips = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "expected-skips")
    if len(argv) > 1 and argv[0] == "--skips":
        skips, argv = argv[1], argv[2:]
    t = Tally(load_expected(skips))
    for path in argv:
        tier = os.path.splitext(os.path.basename(path))[0]
        try:
            if path.endswith(".json"):
                t.meson(tier, path)
            else:
                t.junit(tier, path)
        except (OSError, ValueError, ET.ParseError) as exc:
            t.problem("%s: cannot read %s: %s" % (tier, path, exc))
    for p in t.problems:
        print("summarize: " + p)
    print(f"{t.passed} passed, {t.failed} failed" + (f", {t.skipped} skipped" if t.skipped else ""))
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
