"""Database servers for tests, started by hand and stopped by PID (no
systemd here): MariaDB (also as a binlog primary, a replica, a one-node
Galera cluster), PostgreSQL (also as a standby).  Unix sockets, or TCP on
127.0.0.1 only where replication needs it."""
import atexit
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
PGBIN = (sorted(glob.glob("/usr/lib/postgresql/*/bin")) or [None])[-1]


GALERA = "/usr/lib/galera/libgalera_smm.so"
_template = None


def _installed_datadir():
    """mariadb-install-db once per process (seconds each time); servers start
    on a copy."""
    global _template
    if _template is None:
        d = Path(tempfile.mkdtemp(prefix="qmdb-template-", dir="/tmp"))
        os.chmod(d, 0o755)
        data = d / "data"
        data.mkdir()
        shutil.chown(data, "mysql", "mysql")
        subprocess.run(["mariadb-install-db", "--no-defaults", "--user=mysql", "--datadir=%s" % data,
                        "--skip-test-db", "--auth-root-authentication-method=socket",
                        "--innodb-log-file-size=16M", "--innodb-buffer-pool-size=64M"],
                       check=True, capture_output=True)
        atexit.register(shutil.rmtree, str(d), True)
        _template = data
    return _template


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A MariaDB server started by hand (no systemd), stopped by PID; datadir
    may be given (e.g. on a loop-mounted test filesystem)."""

    def __init__(self, datadir=None, init=True, settings=(), schema=True):
        """init=False starts a server on an existing datadir (a restored
        snapshot); `settings` are extra [mysqld] lines (later lines win, so
        "skip-networking=0" or "log-bin" override the defaults); schema=False
        leaves out the test tables (a replica gets them from its primary)."""
        self.dir = Path(tempfile.mkdtemp(prefix="qmdb-", dir="/tmp"))
        os.chmod(self.dir, 0o755)  # mysqld runs as user mysql
        for d in ("run", "log"):
            (self.dir / d).mkdir()
        self.data = Path(datadir) if datadir else self.dir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.data, "mysql", "mysql")
        shutil.chown(self.dir / "run", "mysql", "mysql")
        os.chmod(self.dir / "log", 0o1777)
        self.sock = str(self.dir / "run" / "s.sock")
        self.log = self.dir / "log" / "err"
        self.cnf = self.dir / "my.cnf"
        self.cnf.write_text(
            "[mysqld]\ndatadir=%s\nsocket=%s\nskip-networking\npid-file=%s\nlog-error=%s\n"
            "user=mysql\ninnodb_buffer_pool_size=64M\ninnodb_log_file_size=16M\nskip-log-bin\n"
            % (self.data, self.sock, self.dir / "run" / "s.pid", self.log)
            + "".join(s + "\n" for s in settings))
        if init:
            subprocess.run(["cp", "-a", "%s/." % _installed_datadir(), str(self.data)], check=True)
        self.start()
        if init and schema:
            self.sql("INSTALL SONAME 'metadata_lock_info'; CREATE DATABASE t;"
                     "CREATE TABLE t.my (i INT) ENGINE=MyISAM; CREATE TABLE t.inno (i INT) ENGINE=InnoDB;"
                     "INSERT INTO t.my VALUES (1),(2),(3),(4)")

    def start(self):
        t0 = time.monotonic()
        self.proc = subprocess.Popen([MARIADBD, "--defaults-file=%s" % self.cnf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while subprocess.run(["mariadb-admin", "-S", self.sock, "ping"],
                             capture_output=True).returncode != 0:
            assert self.proc.poll() is None and time.monotonic() < deadline, \
                "mariadbd did not start: " + self.log_text()[-2000:]
            time.sleep(0.05)
        self.start_seconds = time.monotonic() - t0

    def crash_restart(self):
        """SIGKILL mariadbd (by PID) and start it again on the same datadir:
        connection ids start over."""
        self.proc.kill()
        self.proc.wait()
        self.start()

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def sql(self, q, timeout=30, **kw):
        r = subprocess.run(["mariadb", "-S", self.sock, "-N", "-B", "-e", q], capture_output=True,
                           text=True, timeout=timeout, **kw)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        return r.stdout

    def locks(self):
        return self.sql("SELECT LOCK_MODE FROM information_schema.METADATA_LOCK_INFO").split()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def as_postgres(*cmd, **kw):
    return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, cmd)],
                          capture_output=True, text=True, **kw)


class PgCluster:
    """A PostgreSQL cluster run by hand as user postgres, socket only (in its
    own run directory, never on a filesystem a test freezes), stopped by PID.
    `datadir` may be given (e.g. on a loop-mounted test filesystem) and, with
    init=False, may already hold a cluster (a restored snapshot)."""

    def __init__(self, base, port, datadir=None, settings=(), init=True, fsync=False, sockdirs=None):
        """sockdirs: socket directories instead of the cluster's own run
        directory (the first one is used to talk to it)."""
        self.dir = Path(base) / ("pg%d" % port)
        self.data = Path(datadir) if datadir else self.dir / "data"
        self.run = self.dir / "run"
        self.log = self.dir / "log"
        self.run.mkdir(parents=True)
        shutil.chown(self.dir, "postgres", "postgres")
        shutil.chown(self.run, "postgres", "postgres")
        self.port = port
        if init:
            self.data.parent.mkdir(parents=True, exist_ok=True)
            shutil.chown(self.data.parent, "postgres", "postgres")
            r = as_postgres(Path(PGBIN) / "initdb", "-D", self.data, "-A", "trust", "--no-sync")
            assert r.returncode == 0, r.stderr
        if sockdirs:
            self.run = Path(sockdirs[0])
        opts = ["-k %s" % ",".join(str(d) for d in sockdirs or [self.run]), "-p %d" % port,
                "-c listen_addresses=''"]
        opts += [] if fsync else ["-c fsync=off"]
        opts += ["-c %s" % s for s in settings]
        t0 = time.monotonic()
        r = as_postgres(Path(PGBIN) / "pg_ctl", "-D", self.data, "-w", "-t", "300", "-l", self.log,
                        "-o", " ".join(opts), "start")
        self.start_seconds = time.monotonic() - t0
        assert r.returncode == 0, r.stderr + self.log_text()
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def sql(self, q, db="postgres"):
        r = as_postgres("psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", self.run,
                        "-p", self.port, "-d", db, "-c", q, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def checkpoints(self):
        return int(self.sql("SELECT checkpoints_req FROM pg_stat_bgwriter"))

    def stop(self, mode="immediate"):
        as_postgres(Path(PGBIN) / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop",
                    timeout=60)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def pg_standby(primary, base, port, settings=()):
    """A streaming standby of `primary` (pg_basebackup -R over its socket),
    started; hot_standby=off in `settings` makes it reject connections."""
    data = Path(base) / ("standby%d" % port)
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    data.chmod(0o700)
    r = as_postgres(Path(PGBIN) / "pg_basebackup", "-D", data, "-R", "-X", "stream", "-c", "fast",
                    "-h", primary.run, "-p", primary.port, timeout=120)
    assert r.returncode == 0, r.stderr
    return PgCluster(base, port, datadir=data, init=False, settings=settings)
