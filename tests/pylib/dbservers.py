"""Database servers for tests, started by hand and stopped by PID (no
systemd here): MariaDB."""
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"


class Server:
    """A MariaDB server started by hand (no systemd), stopped by PID; datadir
    may be given (e.g. on a loop-mounted test filesystem)."""

    def __init__(self, datadir=None):
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
        self.cnf = self.dir / "my.cnf"
        self.cnf.write_text(
            "[mysqld]\ndatadir=%s\nsocket=%s\nskip-networking\npid-file=%s\nlog-error=%s\n"
            "user=mysql\ninnodb_buffer_pool_size=64M\ninnodb_log_file_size=16M\nskip-log-bin\n"
            % (self.data, self.sock, self.dir / "run" / "s.pid", self.dir / "log" / "err"))
        subprocess.run(["mariadb-install-db", "--defaults-file=%s" % self.cnf, "--user=mysql",
                        "--datadir=%s" % self.data], check=True, capture_output=True)
        self.proc = subprocess.Popen([MARIADBD, "--defaults-file=%s" % self.cnf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while subprocess.run(["mariadb-admin", "-S", self.sock, "ping"],
                             capture_output=True).returncode != 0:
            assert self.proc.poll() is None and time.monotonic() < deadline, "mariadbd did not start"
            time.sleep(0.1)
        self.sql("INSTALL SONAME 'metadata_lock_info'; CREATE DATABASE t;"
                 "CREATE TABLE t.my (i INT) ENGINE=MyISAM; CREATE TABLE t.inno (i INT) ENGINE=InnoDB;"
                 "INSERT INTO t.my VALUES (1),(2),(3),(4)")

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
