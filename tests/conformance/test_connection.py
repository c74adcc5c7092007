"""Connection handling on unix-listen, and the agent's lifecycle.  Each test starts its
own pair, because parser state survives client connections in qemu-ga.

A scenario is a function(agent) -> harness.Result; it runs against both agents and the
results are compared (or checked against the registry) like table cases.
"""
import os
import select
import socket
import subprocess
import time

import pytest

from cases import FreshPair, check_results, register_ids, _EXEC
from harness import AgentSpec, Marker, RESYNC, Result, is_sync_reply, Agent, REF_BIN, OUR_BIN, Client, Conn

PING_A = b'{"execute":"guest-ping","id":"a"}'
PING_B = b'{"execute":"guest-ping","id":"b"}'


def resync(c):
    c.send_pumping(RESYNC)
    return c.lines_until(is_sync_reply, 10)[0]


def one_client_at_a_time(agent):
    """B connects while A is connected: B gets nothing until A leaves, then is served."""
    a = agent.connect()
    b = agent.connect()
    b.send_pumping(PING_B)
    seg_b_waiting = b.drain_segment(0.3)
    a.send_pumping(PING_A)
    seg_a = a.drain_segment()
    a.close()
    seg_b_served = b.drain_segment(0.3)
    seg_b_sync = resync(b)
    b.close()
    return Result([seg_b_waiting, seg_a, seg_b_served, seg_b_sync])


def inherits_partial_json(agent):
    """A sends `{"a":[}` and leaves; B's first request."""
    a = agent.connect()
    a.send_pumping(b'{"a":[}')
    a.close()
    b = agent.connect()
    b.send_pumping(PING_B)
    seg1 = b.drain_segment(0.4)
    seg2 = resync(b)
    b.close()
    return Result([seg1, seg2])


def split_across_clients(agent):
    """A sends the first half of a request and leaves; B sends the second half."""
    a = agent.connect()
    a.send_pumping(b'{"execute":"guest-pi')
    a.close()
    b = agent.connect()
    b.send_pumping(b'ng","id":"b"}')
    seg1 = b.drain_segment(0.4)
    seg2 = resync(b)
    b.close()
    return Result([seg1, seg2])


def half_request_then_documented_resync(agent):
    """A leaves mid-request; B follows the documented procedure (0xFF + guest-sync-delimited)
    first: no difference is visible, whatever the parser kept."""
    a = agent.connect()
    a.send_pumping(b'{"execute":"guest-ping","id":')
    a.close()
    b = agent.connect()
    seg1 = resync(b)
    b.send_pumping(PING_B)
    seg2 = b.drain_segment()
    b.close()
    return Result([seg1, seg2])


def close_with_unread_reply(agent):
    """A sends a request and closes once the reply has arrived, without reading it (for a
    unix socket the agent's next read then fails with ECONNRESET).  qemu-ga 7.2 takes
    that as a channel error and exits with status 0 ("error reading channel", only with
    -v); then B cannot connect at all."""
    a = agent.connect()
    a.send_pumping(PING_A)
    select.select([a.sock], [], [], 5)     # the reply is waiting, unread
    time.sleep(0.05)
    a.close()
    time.sleep(0.3)
    try:
        b = agent.connect(timeout=1)
    except OSError as e:
        return Result([[Marker("<B: connect failed: %s>" % type(e).__name__)]])
    b.send_pumping(PING_B)
    seg = b.drain_segment()
    b.close()
    return Result([seg])


def close_after_reading_all(agent):
    """A sends requests with large replies, reads every reply, then closes; B is served."""
    a = agent.connect()
    a.send_pumping(b'{"execute":"guest-info"}' * 20)
    seg = [a.read_line() for _ in range(20)]
    a.close()
    b = agent.connect()
    b.send_pumping(PING_B)
    seg2 = b.drain_segment()
    seg2 += resync(b)
    b.close()
    # (the guest-info replies themselves are compared in test_commands.py)
    return Result([[Marker("<%d complete replies read>" % len(seg))], seg2])


def many_sequential_clients(agent):
    seg = []
    for i in range(20):
        c = agent.connect()
        c.send_pumping(b'{"execute":"guest-ping","id":%d}' % i)
        seg += c.drain_segment(0.1) if i % 5 == 0 else [c.read_line()]
        c.close()
    return Result([seg])


def half_close_after_request(agent):
    """The client shuts down its sending side after a request: is it still answered, and
    does the agent close the connection?"""
    c = agent.connect()
    c.send_pumping(PING_A)
    c.sock.shutdown(socket.SHUT_WR)
    seg = c.drain_segment(0.5)
    c.close()
    d = agent.connect()
    seg2 = resync(d)
    d.close()
    return Result([seg, seg2])


def half_close_mid_request(agent):
    c = agent.connect()
    c.send_pumping(b'{"execute":"guest-ping"')
    c.sock.shutdown(socket.SHUT_WR)
    seg = c.drain_segment(0.5)
    c.close()
    d = agent.connect()
    d.send_pumping(b"}")
    seg2 = d.drain_segment(0.3)
    seg2 += resync(d)
    d.close()
    return Result([seg, seg2])


def connect_without_sending(agent):
    """Clients that connect and leave without a byte do not disturb the next one."""
    for _ in range(5):
        agent.connect().close()
    c = agent.connect()
    c.send_pumping(PING_A)
    seg = c.drain_segment()
    c.close()
    return Result([seg])


def listen_backlog(agent):
    """While one client is served, how many more connects does the kernel accept?
    (qemu-ga: listen backlog 1, so two wait and the third non-blocking connect gets
    EAGAIN).  Then the waiting ones are served in order."""
    a = agent.connect()
    a.send_pumping(PING_A)
    seg = a.drain_segment()
    waiting = []
    for i in range(4):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(agent.sock)
            waiting.append(s)
            seg.append(Marker("<connect %d: ok>" % i))
        except BlockingIOError:
            s.close()
            seg.append(Marker("<connect %d: EAGAIN>" % i))
    a.close()
    for i, s in enumerate(waiting):
        s.setblocking(True)
        s.settimeout(5)
        c = Client.__new__(Client)
        Conn.__init__(c, sock=s, timeout=5)
        c.send_pumping(b'{"execute":"guest-ping","id":%d}' % i)
        seg += c.drain_segment(0.1) if i == len(waiting) - 1 else [c.read_line()]
        c.close()
    return Result([seg])


SCENARIOS = {
    "conn-listen-backlog": listen_backlog,
    "conn-one-client-at-a-time": one_client_at_a_time,
    "conn-new-client-inherits-partial-json": inherits_partial_json,
    "conn-request-split-across-clients": split_across_clients,
    "conn-half-request-then-documented-resync": half_request_then_documented_resync,
    "conn-close-with-unread-reply": close_with_unread_reply,
    "conn-close-after-reading-all": close_after_reading_all,
    "conn-many-sequential-clients": many_sequential_clients,
    "conn-half-close-after-request": half_close_after_request,
    "conn-half-close-mid-request": half_close_mid_request,
    "conn-connect-without-sending": connect_without_sending,
}
register_ids(*SCENARIOS)


@pytest.mark.parametrize("case_id", list(SCENARIOS))
def test_connection(case_id):
    scenario = SCENARIOS[case_id]
    with FreshPair(AgentSpec(case_id)) as (ref, ours):
        fut = _EXEC.submit(_run, scenario, ref)     # the two agents are independent
        o = _run(scenario, ours)
        r = fut.result()
        check_results(case_id, r, o, steps=[scenario.__doc__ or case_id])


def _run(scenario, agent):
    """The scenario's result, plus a last segment saying whether the agent still runs."""
    try:
        res = scenario(agent)
    except (OSError, EOFError, TimeoutError) as e:
        res = Result([[Marker("<%s: %s>" % (type(e).__name__, e))]], exc=e)
    status = agent.proc.poll()
    res.segments.append([Marker("<agent running>" if status is None else "<agent exited with status %s>" % status)])
    return res


# ---------------------------------------------------------------- lifecycle

LIFECYCLE = register_ids("life-sigterm-idle", "life-sigterm-with-client", "life-socket-file-after-exit",
                         "life-stale-socket-file")


def test_sigterm_idle():
    """SIGTERM with no client: exit status must match (checked by FreshPair)."""
    with FreshPair(AgentSpec("life-sigterm-idle")):
        pass


def test_sigterm_with_client():
    """SIGTERM while a client is connected with half a request: exit status and what the
    client then reads (EOF) must match."""
    results = []
    with FreshPair(AgentSpec("life-sigterm-with-client")) as pair:
        for a in pair:
            c = a.connect()
            c.send_pumping(b'{"execute":"guest-ping"}{"execute":"guest-pi')
            first = c.drain_segment()
            status, killed = _terminate(a)
            if killed and a.role == "qemu-ga":
                pytest.skip("qemu-ga hung on SIGTERM (its g_main_loop_quit-in-signal-handler deadlock)")
            results.append(Result([first, c.drain_segment(0.3), [Marker("<exit status %s>" % status)]]))
            c.close()
    check_results("life-sigterm-with-client", results[0], results[1], steps=["ping, half a ping, SIGTERM"])


def _exit_facts(spec_name):
    facts = []
    for role, binary in (("qemu-ga", REF_BIN), ("ours", OUR_BIN)):
        a = Agent(role, binary, AgentSpec(spec_name)).start()
        facts.append(_terminate(a) + (os.path.exists(a.sock),))
        a.stop()
    return facts


def _terminate(a):
    """SIGTERM (after a settle pause, see harness.Agent.stop), keep the temp dir.
    Returns (exit status, whether it needed SIGKILL)."""
    time.sleep(0.1)
    a.proc.terminate()
    try:
        a.proc.wait(5)
        return a.proc.returncode, False
    except subprocess.TimeoutExpired:
        a.proc.kill()
        a.proc.wait()
        return a.proc.returncode, True


def test_socket_file_after_exit():
    """After SIGTERM, is the socket file removed?  (The exit status is compared too.)"""
    ref, ours = _exit_facts("life-socket-file-after-exit")
    if ref[1]:
        pytest.skip("qemu-ga hung on SIGTERM (its g_main_loop_quit-in-signal-handler deadlock)")
    ref, ours = (ref[0], ref[2]), (ours[0], ours[2])
    assert ref == ours, "(exit status, socket file left behind): qemu-ga %s, ours %s" % (ref, ours)


def test_stale_socket_file():
    """An agent killed with SIGKILL leaves its socket file; a new agent starts on that path."""
    results = []
    for role, binary in (("qemu-ga", REF_BIN), ("ours", OUR_BIN)):
        a = Agent(role, binary, AgentSpec("life-stale-socket-file")).start()
        d = a.kill_keep_dir()
        left = os.path.exists(a.sock)
        b = Agent(role, binary, AgentSpec("life-stale-socket-file"))
        try:
            b.start(reuse_dir=d)
            c = b.connect()
            c.send_pumping(PING_A)
            results.append(Result([[Marker("<socket file left by SIGKILL: %s>" % left)], c.drain_segment()]))
            c.close()
        except Exception as e:
            results.append(Result([[Marker("<socket file left by SIGKILL: %s>" % left)],
                                   [Marker("<restart failed: %s>" % e)]]))
        finally:
            b.stop()
    check_results("life-stale-socket-file", results[0], results[1], steps=["SIGKILL, restart on the same path, ping"])
