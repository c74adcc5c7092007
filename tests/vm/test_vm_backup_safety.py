# SPDX-License-Identifier: MIT
"""What a VM backup must never do, whatever happens around it: leave the
guest frozen, fail a guest write, pause the VM, leave its own parts in QEMU,
or report a snapshot that is not one point in time.

The tests act at exact steps of the run through the CLI's test gates
(QUIESCE_FAULT_HOLD_AT=STEP:GATE: at STEP quiesce creates GATE.reached and
waits for GATE), and in the guest through the harness's test shell
(vmh.SHELL_RC, Guest.shell()), so nothing here sleeps to synchronise.
"""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import vmh
from test_vm_backup import HOOK, QUIESCE, assert_nothing_left, boot, freeze_status, run

pytestmark = pytest.mark.vm


def env_for(state, **faults):
    return dict(os.environ, QUIESCE_STATE_DIR=str(state), **faults)


def start(g, repo, state, *extra, env=None, qmp="qmp1.sock"):
    """quiesce backup of guest g, running in the background."""
    return subprocess.Popen(
        [QUIESCE, "backup", "--repo", str(repo), "--qmp", str(g.dir / qmp), "--qga", str(g.agent_path),
         "--name", "vm1", "--json", *map(str, extra)],
        env=env or env_for(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(what, pred, p=None, timeout=120):
    """Until pred() is true; fails at once if process p has exited."""
    deadline = time.monotonic() + timeout
    while not pred():
        if p is not None and p.poll() is not None:
            raise AssertionError("quiesce exited before %s: %s %s" % (what, p.returncode, p.communicate()))
        assert time.monotonic() < deadline, "no %s within %d s" % (what, timeout)
        time.sleep(0.005)


class Gate:
    """One QUIESCE_FAULT_HOLD_AT gate: env() for quiesce, wait() until it is
    held there, open() to let it go on."""

    def __init__(self, tmp_path, step):
        self.step = step
        self.path = tmp_path / ("gate-" + step)

    def env(self):
        return "%s:%s" % (self.step, self.path)

    def wait(self, p):
        wait_for("step %s" % self.step, Path(str(self.path) + ".reached").exists, p)

    def open(self):
        self.path.touch()


def snapshots(repo):
    return json.loads(run(QUIESCE, "snapshots", "--repo", repo, "--json").stdout)
