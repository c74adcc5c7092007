# SPDX-License-Identifier: MIT
"""Fixtures for the integration tier: the agent as a real process on each
transport it supports."""
import os
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests" / "pylib"))

AGENT = Path(os.environ.get("QUIESCE_AGENT", TOP / "build" / "src" / "agent" / "quiesce-agent"))


@pytest.fixture(scope="session")
def agent_bin():
    if not AGENT.is_file():
        pytest.skip("quiesce-agent not built: %s" % AGENT)
    return AGENT
