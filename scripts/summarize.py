#!/usr/bin/env python3
"""Sum test results from meson's testlog.json files and pytest's JUnit XML
files into one closing line: 'N passed, N failed[, N skipped]'."""
import json
import sys
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        if path.endswith(".json"):
            with open(path) as f:
                for line in f:
                    r = json.loads(line).get("result")
                    if r in ("OK", "EXPECTEDFAIL"):
                        passed += 1
                    elif r == "SKIP":
                        skipped += 1
                    else:
                        failed += 1
        else:
            root = ET.parse(path).getroot()
            suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
            for s in suites:
                t, f, e, sk = (int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
                passed += t - f - e - sk
                failed += f + e
                skipped += sk
    except (OSError, ValueError, ET.ParseError) as exc:
        print(f"summarize: cannot read {path}: {exc}", file=sys.stderr)
        failed += 1
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed else 0)
