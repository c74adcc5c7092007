# SPDX-License-Identifier: MIT
"""accept4() failures must not spin (issue 10, item 7).

Out of file descriptors (EMFILE), accept4() fails while the connect stays queued,
so the listener stays readable: polling it again at once burns a CPU for as long
as it lasts.  The agent must back off, and serve the waiting client once it has
descriptors again.  A socket from systemd that is not listening at all (a
connection, as Accept=yes passes) would fail accept4() for ever: it must be
refused at start with a clear error.

The CPU bound does not depend on the machine's speed: spinning costs about the
whole window (3 s of CPU in 3 s), backing off almost nothing."""
import os
import resource
import signal
import socket
import subprocess
import time

import msgcost
import qga

WINDOW = 3.0


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_out_of_fds_accept_backs_off_and_recovers(agent_bin, tmp_path):
    sock = str(tmp_path / "emfile.sock")
    proc = subprocess.Popen([str(agent_bin), "-m", "unix-listen", "-p", sock, "-t", str(tmp_path)],
                            stderr=subprocess.PIPE)
    clients = []
    try:
        qga.wait_for_socket(sock, proc=proc)
        with qga.Conn(sock, timeout=10) as c:
            assert c.cmd("guest-ping") == {"return": {}}
            with_client = open_fds(proc.pid)   # serving us: its idle set + our socket
        held = with_client - 1
        deadline = time.monotonic() + 10
        while open_fds(proc.pid) != held:   # until it has closed our socket
            assert time.monotonic() < deadline, "the agent kept the closed client's fd"
            time.sleep(0.01)
        # No descriptor left for accept4(): the (soft) limit is what the agent holds now.
        _, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (held, hard))
        for _ in range(8):   # a flood of clients, all left waiting in the backlog
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock)
            clients.append(s)
        clients[0].sendall(b'{"execute":"guest-ping","id":0}')
        cpu0 = msgcost.cpu_seconds(proc.pid)
        time.sleep(WINDOW)   # the measuring window: nothing to wait for in it
        spent = msgcost.cpu_seconds(proc.pid) - cpu0
        assert spent < 0.5, "%.2f s of CPU in %.0f s while accept4() failed with EMFILE" % (spent, WINDOW)
        assert proc.poll() is None

        # Descriptors free up: the waiting clients are served, in turn.
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (held + 16, hard))
        with qga.Conn(sock=clients[0], timeout=10) as c:
            assert c.read_reply() == {"return": {}, "id": 0}
        with qga.Conn(sock=clients[1], timeout=10) as c:
            assert c.cmd("guest-ping", id=1) == {"return": {}, "id": 1}
        clients = clients[2:]
    finally:
        for s in clients:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "killed"
        err = proc.stderr.read().decode(errors="replace")
    assert rc == 0, err
    assert err.count("cannot accept a client: Too many open files") == 1, err
    assert "accepting clients again" in err, err


def test_activation_with_a_connected_socket_is_a_clear_error(agent_bin):
    """systemd's Accept=yes passes a connection, not a listener."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.sendall(b'{"execute":"guest-ping"}')   # readable at once: accept4() would fail at once
    proc = subprocess.Popen(
        ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -m virtio-serial -p /nonexistent',
         str(agent_bin)],
        pass_fds=(3,), preexec_fn=lambda: os.dup2(ours.fileno(), 3), stderr=subprocess.PIPE)
    ours.close()
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        cpu = msgcost.cpu_seconds(proc.pid)
        proc.kill()
        proc.wait()
        raise AssertionError("the agent kept running on a connected socket (%.1f s of CPU)" % cpu)
    finally:
        peer.close()
    err = proc.stderr.read().decode(errors="replace")
    assert rc == 1, err
    assert "socket passed by systemd is not listening" in err, err
