# SPDX-License-Identifier: MIT
"""The guest agent in a real guest: the protocol behaviour a host depends on,
checked the same way for quiesce-agent and for the reference qemu-ga (the
`agent` fixture runs every test once per agent).

Each test boots its own guest (about 3 s to the first answer under TCG).
"""
import json
import struct
import subprocess
import time

import pytest

pytestmark = pytest.mark.vm

# How much more of a host core QEMU may burn while no host is connected than
# while the guest sits idle with a host connected.  Calibrated under TCG on a
# 2-core build machine (all numbers are QEMU's CPU time / wall time):
#   idle guest, host connected                      ~0.003
#   qemu-ga, host disconnected (it polls at 10 Hz)  ~0.017
#   guest shell loop sleeping 10 ms                 ~0.20
#   guest shell loop sleeping  1 ms                 ~0.62
#   guest busy loop                                 ~1.0
# so 0.25 catches a spinning agent with a wide margin either way.
SPIN_LIMIT = 0.25
# Seconds within which the agent must answer the first request of a host
# that connects after a quiet spell (qemu-ga: 0.02-0.1 s under TCG here).
PROMPT_LIMIT = 0.5


def test_handshake_before_agent_is_up(vm):
    g = vm(start=False)
    g.launch()
    conn = g.connect_agent()
    # The port exists from QEMU's start, but the guest has not even booted:
    # our first 0xFF + guest-sync-delimited requests wait in the channel.
    assert "GUEST-READY" not in g.console()
    g.sync(conn)
    # A delimited sync answers with 0xFF and our own id.  The agent may first
    # reject the 0xFF itself (qemu-ga 7.2 answers it with a GenericError
    # "JSON parse error, stray '\uFFFD'"); a host skips to the 0xFF.
    conn.send_raw(b"\xff" + json.dumps(
        {"execute": "guest-sync-delimited", "arguments": {"id": 4242}}).encode())
    line = conn.read_line()
    while not line.startswith(b"\xff"):
        assert "error" in json.loads(line), line
        line = conn.read_line()
    assert json.loads(line[1:]) == {"return": 4242}
    # The handshake loop left nothing behind: the next exchange pairs up.
    assert conn.cmd("guest-ping") == {"return": {}}
    assert conn.drain() == []


def test_guest_info_lists_sync_delimited(vm):
    conn = vm().agent()
    info = conn.cmd("guest-info")["return"]
    assert isinstance(info["version"], str) and info["version"]
    cmds = {c["name"]: c for c in info["supported_commands"]}
    assert "guest-sync-delimited" in cmds
    assert cmds["guest-sync-delimited"]["enabled"] is True


def test_get_disks_lists_virtio_data_disk(vm):
    g = vm()
    conn = g.agent()
    disks = conn.cmd("guest-get-disks")["return"]
    vda = [d for d in disks if d["name"] == "/dev/vda"]
    assert len(vda) == 1, disks
    addr = vda[0]["address"]
    assert addr["bus-type"] == "virtio"
    # The controller the guest reports is the virtio-blk device QEMU has.
    pci = {(dev["bus"], dev["slot"], dev["function"]): dev.get("qdev_id")
           for bus in g.qmp("query-pci") for dev in bus["devices"]}
    ctl = addr["pci-controller"]
    assert ctl["domain"] == 0
    assert pci.get((ctl["bus"], ctl["slot"], ctl["function"])) == "vblk0", (ctl, pci)


def test_reconnect_after_half_sent_request(vm):
    """Host leaves mid-request and comes back: one resync must be enough,
    and the agent must idle (not spin) while nobody is connected.

    The spin check uses QEMU's own CPU time: under TCG a busy guest vCPU
    costs the host a whole core, an idle one (HLT) almost nothing, and the
    agent is the only thing running in the guest.  We compare a 3 s window
    with the host disconnected against a 2 s window with the host connected
    and quiet (see SPIN_LIMIT)."""
    g = vm()
    conn = g.agent()
    assert conn.cmd("guest-ping") == {"return": {}}

    cpu0, t0 = g.cpu_seconds(), time.monotonic()
    time.sleep(2)
    idle = (g.cpu_seconds() - cpu0) / (time.monotonic() - t0)

    conn.send_raw(b'{"execute":"guest-pi')
    conn.close()
    cpu0, t0 = g.cpu_seconds(), time.monotonic()
    time.sleep(3)
    away = (g.cpu_seconds() - cpu0) / (time.monotonic() - t0)

    conn = g.connect_agent()
    g.sync(conn, timeout=10)
    assert conn.cmd("guest-ping") == {"return": {}}
    assert away - idle < SPIN_LIMIT, (
        "QEMU used %.2f of a core while the host was away, %.3f while idle"
        % (away, idle))


def test_first_request_after_host_connects_is_prompt(vm):
    """The usual host: it connects to an agent that has been running for a
    while with nobody on the port (a backup tool attaching to a long-running
    guest).  Idling while nobody is connected must not make that first
    request slow: qemu-ga answers in 20-100 ms here."""
    g = vm()
    g.wait_port_open()  # the agent has the port open; no host has been near it
    time.sleep(1.5)
    conn = g.connect_agent()
    t0 = time.monotonic()
    conn.send_raw(b"\xff" + json.dumps(
        {"execute": "guest-sync-delimited", "arguments": {"id": 77}}).encode())
    line = conn.read_line()
    while not line.startswith(b"\xff"):
        line = conn.read_line()
    took = time.monotonic() - t0
    assert json.loads(line[1:]) == {"return": 77}
    assert took < PROMPT_LIMIT, "first request on a new connection took %.2f s" % took


def _remaining_lines(conn, quiet=0.2):
    """Reply lines still arriving, up to EOF or `quiet` seconds of silence."""
    lines = []
    try:
        while True:
            lines.append(conn.read_line(timeout=quiet))
    except (EOFError, TimeoutError):
        return lines


def _ext4_needs_recovery(qcow2, workdir):
    """True if the ext4 journal of the image is marked as needing recovery
    (the fs was not unmounted cleanly).  Reads only the superblock."""
    sb = workdir / "sb.raw"
    subprocess.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=4096", "count=1",
                    "if=%s" % qcow2, "of=%s" % sb], check=True)
    data = sb.read_bytes()[1024:]  # the superblock starts at byte 1024
    magic, = struct.unpack_from("<H", data, 0x38)
    assert magic == 0xEF53, "no ext4 superblock on the data disk"
    incompat, = struct.unpack_from("<I", data, 0x60)
    return bool(incompat & 0x4)  # EXT4_FEATURE_INCOMPAT_RECOVER


def test_guest_shutdown_powers_off(vm):
    g = vm()
    conn = g.agent()
    conn.send({"execute": "guest-shutdown"})
    t0 = time.monotonic()
    try:
        rc = g.wait_exit(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("QEMU still running 10 s after guest-shutdown; agent said %r"
                    % _remaining_lines(conn))
    took = time.monotonic() - t0
    assert rc == 0
    ev = g.wait_event("SHUTDOWN", timeout=1)
    assert ev["data"]["reason"] == "guest-shutdown", ev
    # guest-shutdown has no success response: whatever arrived is a failure.
    leftover = _remaining_lines(conn)
    assert leftover == [], "agent answered guest-shutdown: %r" % leftover
    assert took < 5, "guest-shutdown took %.1f s" % took

    check = subprocess.run(["qemu-img", "check", str(g.disk)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    assert check.returncode == 0, check.stdout
    assert not _ext4_needs_recovery(g.disk, g.dir), (
        "data disk not unmounted cleanly: the agent should power off through "
        "/sbin/shutdown (as qemu-ga does), not directly")
