# SPDX-License-Identifier: MIT
"""Fixtures for the VM tier (tests/vm/README.md).

- `vm_assets` (session): runs `guest.sh paths`, which fetches and caches the
  kernel, busybox and qemu-ga and makes the data-disk base image.
- `agent` (session, parametrized "quiesce" / "qemu-ga"): the agent binary and
  an initramfs built for it once per session.  "quiesce" is
  $QUIESCE_AGENT_STATIC or <repo>/build-static/src/agent/quiesce-agent and is
  skipped when that file is missing; "qemu-ga" is Debian's qemu-ga from the
  cached .deb, the reference.
- `vm` (function): a factory making Guests for the current agent; every Guest
  it made is closed (QEMU ended, files removed) when the test ends, pass or
  fail, and a failed test gets the console and QEMU log tails printed.

Every test here is marked `vm`; all of them are skipped when
qemu-system-x86_64 is not installed.
"""
import os
import shutil
from pathlib import Path

import pytest

import vmh

QUIESCE_AGENT = Path(os.environ.get(
    "QUIESCE_AGENT_STATIC", vmh.REPO / "build-static" / "src" / "agent" / "quiesce-agent"))
AGENTS = ["quiesce", "qemu-ga"]


def pytest_configure(config):
    config.addinivalue_line("markers", "vm: boots a QEMU guest (tests/vm); needs qemu-system-x86_64")


def pytest_collection_modifyitems(config, items):
    if shutil.which(vmh.QEMU):
        return
    skip = pytest.mark.skip(reason="%s not installed (see tests/vm/packages.txt)" % vmh.QEMU)
    for item in items:
        if "vm" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def vm_assets():
    vmh.sweep_stale()
    return vmh.guest_paths()


class Agent:
    def __init__(self, name, binary, initrd):
        self.name = name
        self.binary = binary
        self.initrd = initrd

    def __repr__(self):
        return "Agent(%s, %s)" % (self.name, self.binary)


@pytest.fixture(scope="session", params=AGENTS)
def agent(request, vm_assets, tmp_path_factory):
    name = request.param
    if name == "quiesce":
        binary = QUIESCE_AGENT
        if not binary.is_file():
            pytest.skip("quiesce-agent not built: %s is missing (build it, or point "
                        "QUIESCE_AGENT_STATIC at a binary)" % binary)
    else:
        binary = Path(vm_assets["QEMU_GA"])
    initrd = vmh.build_initrd(binary, tmp_path_factory.mktemp("initrd-" + name) / "initrd.gz")
    return Agent(name, binary, initrd)


@pytest.fixture
def vm(request, agent, vm_assets):
    """vm(start=True, **Guest kwargs) -> Guest booting the current agent with
    the data disk.  start=False: not launched yet (call launch() or start()).
    initrd=PATH boots another initramfs (e.g. one with extra files)."""
    guests = []

    def make(start=True, **kwargs):
        kwargs.setdefault("disk", vm_assets["DATA_BASE"])
        initrd = kwargs.pop("initrd", agent.initrd)
        g = vmh.Guest(vm_assets["KERNEL"], initrd, **kwargs)
        guests.append(g)
        if start:
            g.start()
        return g

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for g in guests:
        if failed:
            print(g.describe())
        g.close()
