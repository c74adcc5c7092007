# SPDX-License-Identifier: MIT
"""80-mariadb on replicated servers, all real and on loopback only: a binlog +
GTID primary with a replica (TCP on 127.0.0.1 for the replication link), and
a one-node Galera cluster (galera-4, gcomm:// bootstraps it; its group port
on 127.0.0.1).  A freeze must add nothing to what is replicated: no GTID in
the binary log, no write set in the cluster."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
HOOK = TOP / "hooks" / "fsfreeze-hook.d" / "80-mariadb"
sys.path.insert(0, str(TOP / "tests" / "pylib"))
from dbservers import GALERA, MARIADBD, Server, free_port  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(MARIADBD) or os.geteuid() != 0,
                                reason="needs mariadb-server and root")


def hook(server, state, action, **extra):
    env = dict(os.environ, MARIADB_SOCKET=server.sock, MARIADB_STATE_DIR=str(state),
               MARIADB_HOOK_CONF="/nonexistent", **extra)
    return subprocess.run(["dash", str(HOOK), action], env=env, timeout=60,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)


def status(server, *names):
    rows = server.sql("SHOW GLOBAL STATUS WHERE Variable_name IN (%s)"
                      % ", ".join("'%s'" % n for n in names))
    return dict(r.split("\t", 1) for r in rows.splitlines())


@pytest.fixture(scope="module")
def replication():
    port = free_port()
    net = ["skip-networking=0", "bind-address=127.0.0.1", "port=%d" % port]
    primary = replica = None
    try:
        primary = Server(settings=net + ["log-bin=mysql-bin", "server-id=1", "binlog-format=ROW",
                                         "gtid-strict-mode=1"])
        primary.sql("CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'r';"
                    "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'")
        replica = Server(schema=False, settings=[
            "server-id=2", "log-bin=mysql-bin", "log-slave-updates", "binlog-format=ROW",
            "gtid-strict-mode=1", "relay-log=relay-bin", "relay-log-recovery=1", "read-only=1"])
        replica.sql("INSTALL SONAME 'metadata_lock_info'")  # not replicated
        replica.sql("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='repl', "
                    "MASTER_PASSWORD='r', MASTER_USE_GTID=slave_pos; START SLAVE" % port)
        yield primary, replica
    finally:
        for s in (replica, primary):
            if s:
                s.stop()


def slave_status(replica):
    r = subprocess.run(["mariadb", "-S", replica.sock, "-B", "-e", "SHOW SLAVE STATUS"],
                       capture_output=True, text=True, check=True)
    names, values = r.stdout.splitlines()[:2]
    return dict(zip(names.split("\t"), values.split("\t")))


def caught_up(primary, replica):
    pos = primary.sql("SELECT @@gtid_binlog_pos").strip()
    r = replica.sql("SELECT MASTER_GTID_WAIT('%s', 30)" % pos).strip()
    assert r == "0", "the replica did not catch up with %s: %s" % (pos, slave_status(replica))
    return pos


def test_a_freeze_adds_no_gtid_on_a_primary_or_its_replica(replication, tmp_path):
    primary, replica = replication
    primary.sql("INSERT INTO t.inno VALUES (1), (2)")
    before = caught_up(primary, replica)
    replica_before = replica.sql("SELECT @@gtid_binlog_pos").strip()
    assert before and replica_before == before
    for server, name in ((primary, "primary"), (replica, "replica")):
        r = hook(server, tmp_path / name, "freeze")
        try:
            assert r.returncode == 0, r.stderr
            assert "MDL_BACKUP_FTWRL2" in server.locks()
        finally:
            r = hook(server, tmp_path / name, "thaw")
        assert r.returncode == 0, r.stderr
    assert primary.sql("SELECT @@gtid_binlog_pos").strip() == before, \
        "a freeze wrote a transaction to the primary's binary log"
    assert replica.sql("SELECT @@gtid_binlog_pos").strip() == replica_before, \
        "a freeze wrote an errant transaction to the replica's binary log"
    # replication goes on, with no error, from where it was
    primary.sql("INSERT INTO t.inno VALUES (3)")
    caught_up(primary, replica)
    st = slave_status(replica)
    assert st["Slave_SQL_Running"] == "Yes" and st["Last_SQL_Errno"] == "0", st


def test_a_replica_frozen_while_its_primary_writes_catches_up_after_thaw(replication, tmp_path):
    """FTWRL on a replica blocks its SQL thread's commits, not the primary:
    the freeze holds, the replica falls behind, and after the thaw it
    applies what it missed."""
    primary, replica = replication
    caught_up(primary, replica)
    assert hook(replica, tmp_path / "r", "freeze").returncode == 0
    try:
        primary.sql("INSERT INTO t.inno VALUES (10), (11)")
        time.sleep(0.3)  # give the SQL thread the chance it must not get
        assert replica.sql("SELECT COUNT(*) FROM t.inno WHERE i >= 10").strip() == "0"
    finally:
        r = hook(replica, tmp_path / "r", "thaw")
    assert r.returncode == 0, r.stderr
    caught_up(primary, replica)
    assert replica.sql("SELECT COUNT(*) FROM t.inno WHERE i >= 10").strip() == "2"


@pytest.fixture(scope="module")
def galera():
    if not os.path.exists(GALERA):
        pytest.skip("needs galera-4")
    gport, iport = free_port(), free_port()
    g = Server(settings=[
        "wsrep_on=ON", "wsrep_provider=%s" % GALERA, "wsrep_cluster_address=gcomm://",
        "wsrep_node_address=127.0.0.1", "binlog_format=ROW", "innodb_autoinc_lock_mode=2",
        "wsrep_provider_options=gmcast.listen_addr=tcp://127.0.0.1:%d;ist.recv_addr=127.0.0.1:%d"
        % (gport, iport)])
    yield g
    g.stop()


def test_one_node_galera_is_desynced_while_held_and_resynced_after(galera, tmp_path):
    """FTWRL on a Galera node desyncs it (Donor/Desynced: it sends no flow
    control, so the rest of a cluster is not stalled by a frozen node) and
    UNLOCK resyncs it.  The freeze must replicate nothing: a plain FLUSH
    ENGINE LOGS is a cluster-wide event (wsrep_last_committed moves)."""
    g = galera
    assert status(g, "wsrep_local_state_comment")["wsrep_local_state_comment"] == "Synced"
    seqno = status(g, "wsrep_last_committed")["wsrep_last_committed"]
    r = hook(g, tmp_path / "s", "freeze")
    assert r.returncode == 0 and "Galera node (Synced)" in r.stderr, r.stderr
    try:
        assert "MDL_BACKUP_FTWRL2" in g.locks()
        assert status(g, "wsrep_local_state_comment")["wsrep_local_state_comment"] == "Donor/Desynced"
    finally:
        r = hook(g, tmp_path / "s", "thaw")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 10
    while status(g, "wsrep_local_state_comment")["wsrep_local_state_comment"] != "Synced":
        assert time.monotonic() < deadline, "the node did not resync after the thaw"
        time.sleep(0.05)
    assert status(g, "wsrep_last_committed")["wsrep_last_committed"] == seqno, \
        "the freeze replicated an event to the cluster"
    g.sql("INSERT INTO t.inno VALUES (1)")  # the node takes writes again
