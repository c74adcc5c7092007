import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import REF_BIN, OUR_BIN, SELF_TEST, RUNNING  # noqa: E402
from cases import Pool  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s against qemu-ga")


def pytest_report_header(config):
    mode = "SELF-TEST (registry ignored, all cases must match exactly)" if SELF_TEST else "registry of known differences active"
    return ["conformance: qemu-ga = %s" % REF_BIN, "conformance: ours    = %s" % OUR_BIN, "conformance: " + mode]


@pytest.fixture(scope="session", autouse=True)
def _binaries_present():
    for b in (REF_BIN, OUR_BIN):
        if not os.access(b, os.X_OK):
            pytest.exit("conformance: %s is not an executable (set QUIESCE_AGENT / QGA_REFERENCE)" % b, 2)


@pytest.fixture(scope="session")
def pool(_nothing_left_running):
    # depends on _nothing_left_running so that it is torn down (agents stopped) first
    p = Pool()
    yield p
    problems = p.close()
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_running():
    yield
    left = {pid: "%s %s" % (a.role, " ".join(a.argv)) for pid, a in RUNNING.items()}
    for a in list(RUNNING.values()):
        a.stop()
    assert not left, "agents left running after the suite: %s" % left
