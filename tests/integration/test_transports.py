# SPDX-License-Identifier: MIT
"""quiesce-agent on every transport: unix-listen (the other tiers), a socket
passed by systemd-style socket activation, isa-serial on a pseudo-terminal,
vsock-listen over the kernel's loopback transport, --retry-path for a
channel that appears late, -d with a pidfile; and memory returning to idle
after a hostile message."""
import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import time
import tty

import pytest

import qga


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def test_systemd_socket_activation(agent_bin, tmp_path):
    path = str(tmp_path / "act.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(4)
    # LISTEN_PID must be the agent's own pid: let the shell exec into it.
    proc = subprocess.Popen(
        ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -m virtio-serial -p /nonexistent',
         str(agent_bin)],
        # preexec_fn runs before subprocess closes fds: keep 3 open
        pass_fds=(3,), preexec_fn=lambda: os.dup2(lsock.fileno(), 3),
        stderr=subprocess.PIPE)
    try:
        # -m/-p are ignored: the passed socket is used, as qemu-ga does
        with qga.Conn(path, timeout=10) as c:
            assert c.cmd("guest-ping", id=1) == {"return": {}, "id": 1}
    finally:
        assert stop(proc) == 0, proc.stderr.read()
        lsock.close()


def test_socket_activation_with_two_sockets_is_refused(agent_bin, tmp_path):
    socks = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
    for i, s in enumerate(socks):
        s.bind(str(tmp_path / ("s%d" % i)))
        s.listen(1)

    def setup():
        os.dup2(socks[0].fileno(), 3)
        os.dup2(socks[1].fileno(), 4)
    r = subprocess.run(["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=2 exec "$0"', str(agent_bin)],
                       preexec_fn=setup, pass_fds=(3, 4), stderr=subprocess.PIPE, timeout=10)
    assert r.returncode == 1
    assert b"only supports listening on one socket" in r.stderr
    for s in socks:
        s.close()


def test_isa_serial_on_a_pty(agent_bin, tmp_path):
    master, slave = os.openpty()
    tty.setraw(master)
    name = os.ttyname(slave)
    proc = subprocess.Popen([str(agent_bin), "-m", "isa-serial", "-p", name, "-t", str(tmp_path)],
                            stderr=subprocess.PIPE)
    try:
        # the agent flushes pending input when it opens the port: write once it waits
        qga.wait_until_waiting(proc.pid, name)
        os.write(master, b'\xff{"execute":"guest-sync-delimited","arguments":{"id":99}}')
        buf = b""
        deadline = time.monotonic() + 10
        while b"\xff" not in buf or not buf.endswith(b"\n"):
            r, _, _ = select.select([master], [], [], max(0.01, deadline - time.monotonic()))
            assert r, "no answer on the serial line: %r" % buf
            buf += os.read(master, 4096)
        assert buf.split(b"\xff", 1)[1] == b'{"return": 99}\n', buf
        assert b"\r" not in buf, "the tty must be raw (no CR/LF translation)"
    finally:
        assert stop(proc) == 0, proc.stderr.read()
        os.close(master)
        os.close(slave)


def vsock_loopback_works():
    try:
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        s.bind((socket.VMADDR_CID_ANY, 0))  # needs a vsock transport
        s.close()
        return True
    except (AttributeError, OSError):
        return False


@pytest.mark.skipif(not vsock_loopback_works(), reason="no vsock transport in this kernel")
def test_vsock_listen_on_loopback(agent_bin, tmp_path):
    port = 20000 + os.getpid() % 10000
    proc = subprocess.Popen([str(agent_bin), "-m", "vsock-listen", "-p", "%d:%d" % (1, port),
                             "-t", str(tmp_path)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
            try:
                s.connect((1, port))  # VMADDR_CID_LOCAL
                break
            except OSError:
                s.close()
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip("vsock loopback not usable: %s" % proc.stderr.read()[-300:])
                time.sleep(0.05)
        with qga.Conn(sock=s, timeout=10) as c:
            assert c.cmd("guest-ping") == {"return": {}}
    finally:
        stop(proc)


def test_retry_path_opens_a_channel_that_appears_later(agent_bin, tmp_path):
    link = tmp_path / "late-port"
    master, slave = os.openpty()
    tty.setraw(master)
    proc = subprocess.Popen([str(agent_bin), "-m", "isa-serial", "-p", str(link), "-r",
                             "-t", str(tmp_path)], stderr=subprocess.PIPE)
    try:
        qga.wait_until_waiting(proc.pid)  # failed to open the port, and waits to retry
        assert proc.poll() is None, "without the port, -r must keep the agent waiting"
        os.symlink(os.ttyname(slave), link)
        deadline = time.monotonic() + 15  # it retries every 5 s
        buf = b""
        while b'"id": 5' not in buf:
            os.write(master, b'{"execute":"guest-ping","id":5}')
            r, _, _ = select.select([master], [], [], 1.0)
            if r:
                buf += os.read(master, 4096)
            assert time.monotonic() < deadline, "the agent never opened the late channel"
    finally:
        assert stop(proc) == 0, proc.stderr.read()
        os.close(master)
        os.close(slave)


def test_missing_channel_without_retry_is_a_clear_error(agent_bin, tmp_path):
    r = subprocess.run([str(agent_bin), "-m", "virtio-serial", "-p", str(tmp_path / "nope"),
                        "-t", str(tmp_path)], stderr=subprocess.PIPE, timeout=10)
    assert r.returncode == 1
    assert b"cannot open channel" in r.stderr and b"No such file or directory" in r.stderr


def test_daemonize_writes_and_removes_the_pidfile(agent_bin, tmp_path):
    pidfile, sock = tmp_path / "agent.pid", str(tmp_path / "d.sock")
    r = subprocess.run([str(agent_bin), "-d", "-f", str(pidfile), "-m", "unix-listen", "-p", sock,
                        "-t", str(tmp_path), "-l", str(tmp_path / "log")], timeout=10)
    assert r.returncode == 0
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "no pidfile"
        time.sleep(0.02)
    pid = int(pidfile.read_text())
    try:
        qga.wait_for_socket(sock)
        with qga.Conn(sock) as c:
            assert c.cmd("guest-ping") == {"return": {}}
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pidfile.exists():
        assert time.monotonic() < deadline, "pidfile left behind after SIGTERM"
        time.sleep(0.02)


@pytest.mark.skipif("ASAN_OPTIONS" in os.environ,
                    reason="ASan's allocator quarantines freed memory: RSS says nothing there")
def test_memory_returns_to_idle_after_a_hostile_message(agent_bin, tmp_path):
    """qemu-ga keeps ~200 MB after a message at its limits; we must not."""
    sock = str(tmp_path / "m.sock")
    proc = subprocess.Popen([str(agent_bin), "-m", "unix-listen", "-p", sock, "-t", str(tmp_path)])
    try:
        qga.wait_for_socket(sock, proc=proc)
        with qga.Conn(sock, timeout=60) as c:
            assert c.cmd("guest-ping") == {"return": {}}
            idle = rss_kib(proc.pid)
            n = 1040000  # ~63 MB, ~2M tokens: just inside the limits
            body = b",".join([b'"' + b"a" * 58 + b'"'] * n)
            c.send_raw(b'{"execute":"guest-ping","arguments":{"x":[' + body + b"]}}")
            assert c.read_reply(timeout=60)["error"]["desc"] == "Parameter 'x' is unexpected"
            assert c.cmd("guest-ping") == {"return": {}}
            after = rss_kib(proc.pid)
        assert after < idle + 4096, "RSS %d KiB after the hostile message, %d KiB idle" % (after, idle)
    finally:
        assert stop(proc) == 0
