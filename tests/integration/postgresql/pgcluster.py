"""A throwaway PostgreSQL cluster for the integration tests.

initdb in a temporary directory with the server binaries of the machine, started on a free port
with its unix socket in the same directory. As root the server runs as `nobody` (PostgreSQL refuses
to run as root). Local (socket) connections are trusted, TCP ones need a SCRAM password, like the
role's pg_hba.conf. Everything is removed on stop().
"""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time


def find_bindir():
    explicit = os.environ.get("PG_BINDIR")
    if explicit:
        return explicit
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    found = shutil.which("initdb") or shutil.which("pg_ctl")
    if found:
        return os.path.dirname(found)
    raise RuntimeError("no PostgreSQL server binaries (initdb); install postgresql-15 or set PG_BINDIR")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    superuser = "postgres"

    def __init__(self):
        self.bindir = find_bindir()
        self.root = tempfile.mkdtemp(prefix="aiplatform-pg-")
        os.chmod(self.root, 0o755)
        self.datadir = os.path.join(self.root, "data")
        self.socket_dir = os.path.join(self.root, "socket")
        self.log = os.path.join(self.root, "server.log")
        self.port = free_port()
        self.run_as = "nobody" if os.geteuid() == 0 else None
        os.mkdir(self.socket_dir)
        if self.run_as:
            shutil.chown(self.root, user=self.run_as)
            shutil.chown(self.socket_dir, user=self.run_as)
        # Other users (the role's become_user) must reach the socket.
        os.chmod(self.socket_dir, 0o755)

    def _as_owner(self, argv, **kwargs):
        if self.run_as:
            argv = ["runuser", "-u", self.run_as, "--"] + argv
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)

    def start(self):
        self._as_owner([os.path.join(self.bindir, "initdb"), "-D", self.datadir, "-U", self.superuser,
                        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                        "--locale=C.UTF-8", "--data-checksums"])
        opts = "-c port=%d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off" % (
            self.port, self.socket_dir)
        self._as_owner([os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-l", self.log,
                        "-o", opts, "-w", "-t", "60", "start"])
        return self

    def stop(self):
        try:
            if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
                self._as_owner([os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-m", "fast",
                                "-w", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def reload(self):
        self._as_owner([os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "reload"])

    def logtail(self, chars=3000):
        try:
            with open(self.log) as handle:
                return handle.read()[-chars:]
        except OSError:
            return ""

    def connect(self, dbname="postgres", user=None, password=None, tcp=False):
        import psycopg2

        kwargs = dict(dbname=dbname, user=user or self.superuser, port=self.port,
                      host="127.0.0.1" if tcp else self.socket_dir, connect_timeout=10)
        if password is not None:
            kwargs["password"] = password
        conn = psycopg2.connect(**kwargs)
        conn.autocommit = True
        return conn

    def query(self, sql, params=None, dbname="postgres", **kwargs):
        conn = self.connect(dbname=dbname, **kwargs)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()


def wait_for(predicate, timeout=10.0, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
