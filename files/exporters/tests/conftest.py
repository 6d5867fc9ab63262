"""Test fixtures: a throwaway PostgreSQL cluster the session starts itself.

The cluster lives in a temporary directory, listens on a free port on
127.0.0.1 and on a unix socket in that directory, has the collection's
migrations applied in order (roles/postgresql/files/migrations/*.sql) and the
roles the exporters use:

* ``ai_user``             owns the schema (what the learning engine records with);
* ``aiplatform_exporter`` SELECT on every platform table, INSERT on drift_reports,
                          drift_baselines and finetuning_requests (password login over TCP).

initdb refuses to run as root: when the tests run as root the server runs as
``nobody`` (``runuser -u nobody``) and the directory is handed to that user.
Set AIPLATFORM_TEST_PG_BINDIR to use another PostgreSQL installation.
"""

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
MIGRATIONS = os.path.join(REPO, "roles", "postgresql", "files", "migrations")
OWNER, OWNER_PASSWORD = "ai_user", "owner-secret"
EXPORTER, EXPORTER_PASSWORD = "aiplatform_exporter", "exporter-secret"
DBNAME = "ai_platform"
TABLES = ("finetuning_requests", "drift_reports", "drift_baselines", "prediction_samples", "training_runs",
          "lora_versions")


def _version_key(path):
    return [int(x) for x in re.findall(r"\d+", os.path.basename(os.path.dirname(path)))]


def find_pg_bindir():
    explicit = os.environ.get("AIPLATFORM_TEST_PG_BINDIR")
    if explicit:
        return explicit
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb") + glob.glob("/usr/pgsql-*/bin/initdb"),
                        key=_version_key)
    if not candidates:
        return None
    return os.path.dirname(candidates[-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster(object):
    def __init__(self, bindir):
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.tmp = tempfile.mkdtemp(prefix="aipg-")
        self.data = os.path.join(self.tmp, "data")
        self.logfile = os.path.join(self.tmp, "postgres.log")
        self.port = free_port()
        self.host = "127.0.0.1"
        self.socket_dir = self.tmp
        if self.as_root:
            user = pwd.getpwnam("nobody")
            os.chown(self.tmp, user.pw_uid, user.pw_gid)
            os.chmod(self.tmp, 0o700)

    def _cmd(self, args, check=True, timeout=120):
        argv = [os.path.join(self.bindir, args[0])] + list(args[1:])
        if self.as_root:
            argv = ["runuser", "-u", "nobody", "--"] + argv
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.tmp,
                              timeout=timeout, universal_newlines=True)
        if check and proc.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s\n%s" % (" ".join(argv), proc.returncode, proc.stdout,
                                                             self.log_tail()))
        return proc

    def log_tail(self):
        try:
            with open(self.logfile) as fh:
                return "".join(fh.readlines()[-20:])
        except OSError:
            return ""

    def init(self):
        self._cmd(["initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8",
                   "--locale=C"])
        hba = os.path.join(self.data, "pg_hba.conf")
        with open(hba, "w") as fh:
            fh.write("local all all trust\n"
                     "host all postgres 127.0.0.1/32 trust\n"
                     "host all all 127.0.0.1/32 scram-sha-256\n")

    def start(self):
        self._cmd(["pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "60", "-o",
                   "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=60" % (self.port, self.socket_dir), "start"])

    def stop(self):
        self._cmd(["pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop"], check=False)

    def is_running(self):
        return self._cmd(["pg_ctl", "-D", self.data, "status"], check=False).returncode == 0

    def conninfo(self, user="postgres", password=None, dbname=DBNAME):
        info = "host=%s port=%d dbname=%s user=%s connect_timeout=5" % (self.host, self.port, dbname, user)
        if password:
            info += " password=%s" % password
        return info

    def connect(self, user="postgres", password=None, dbname=DBNAME, autocommit=True):
        return psycopg.connect(self.conninfo(user, password, dbname), autocommit=autocommit)

    def database_section(self, user=EXPORTER):
        """The ``database:`` section of an exporter config pointing at this cluster."""
        return {"host": self.host, "port": self.port, "dbname": DBNAME, "user": user, "sslmode": "disable",
                "connect_timeout_seconds": 2}

    def provision(self):
        with self.connect(dbname="postgres") as conn:
            conn.execute("CREATE ROLE %s LOGIN PASSWORD '%s'" % (OWNER, OWNER_PASSWORD))
            conn.execute("CREATE ROLE %s LOGIN PASSWORD '%s'" % (EXPORTER, EXPORTER_PASSWORD))
            conn.execute("CREATE DATABASE %s OWNER %s" % (DBNAME, OWNER))
        files = sorted(glob.glob(os.path.join(MIGRATIONS, "*.sql")))
        if not files:
            raise RuntimeError("no migrations found in %s" % MIGRATIONS)
        with self.connect(OWNER, OWNER_PASSWORD, autocommit=False) as conn:
            for path in files:  # each migration in its own transaction, as the role applies them
                with open(path) as fh:
                    conn.execute(fh.read())
                conn.commit()
            conn.execute("GRANT USAGE ON SCHEMA platform TO %s" % EXPORTER)
            conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA platform TO %s" % EXPORTER)
            conn.execute("GRANT INSERT ON platform.drift_reports, platform.drift_baselines, "
                         "platform.finetuning_requests TO %s" % EXPORTER)
            conn.commit()

    def truncate(self):
        with self.connect(OWNER, OWNER_PASSWORD) as conn:
            conn.execute("TRUNCATE %s RESTART IDENTITY CASCADE" % ", ".join("platform." + t for t in TABLES))

    def destroy(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pg():
    bindir = find_pg_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries not found (install Debian's postgresql package or set "
                    "AIPLATFORM_TEST_PG_BINDIR)")
    cluster = PostgresCluster(bindir)
    try:
        cluster.init()
        cluster.start()
        cluster.provision()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def clean_pg(pg):
    """The session cluster with empty platform tables (and running, whatever the previous test did)."""
    if not pg.is_running():
        pg.start()
    pg.truncate()
    return pg


@pytest.fixture
def owner_conn(clean_pg):
    conn = clean_pg.connect(OWNER, OWNER_PASSWORD)
    yield conn
    conn.close()


@pytest.fixture
def exporter_env():
    """The environment an exporter gets its database password from."""
    return {"AIPLATFORM_DB_PASSWORD": EXPORTER_PASSWORD}


def wait_for(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
