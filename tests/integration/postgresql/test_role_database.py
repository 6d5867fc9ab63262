"""The postgresql role's own database tasks (roles, database, migrations, grants) run by ansible-playbook
against a throwaway cluster, then checked by logging in over TCP as each role."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import psycopg2
import pytest

from modrunner import REPO, role_migrations

PLAYBOOK = os.path.join(os.path.dirname(__file__), "role_database.yml")
PASSWORDS = {
    "postgresql_owner_password": "owner-pw-Δ-1",
    "postgresql_exporter_password": "exporter pw 'quoted' 2",
    "postgresql_grafana_reader_password": "reader%pw$3",
}
TABLES = ["drift_baselines", "drift_reports", "finetuning_requests", "lora_versions", "prediction_samples",
          "training_runs"]
PRIVS = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]
EXPECTED = {
    "aiplatform_exporter": {t: {"SELECT"} | ({"INSERT"} if t in ("drift_reports", "drift_baselines",
                                                                   "finetuning_requests") else set())
                            for t in TABLES},
    "grafana_reader": {t: ({"SELECT"} if t in ("lora_versions", "training_runs") else set()) for t in TABLES},
}


@pytest.fixture(scope="module")
def pythonpath():
    """psycopg2 from .venv, visible to the system python3 that the postgres OS user runs."""
    target = tempfile.mkdtemp(prefix="aiplatform-pylib-")
    os.chmod(target, 0o755)
    site = os.path.dirname(os.path.dirname(psycopg2.__file__))
    for name in os.listdir(site):
        if name.startswith("psycopg2"):
            os.symlink(os.path.join(site, name), os.path.join(target, name))
    yield target
    shutil.rmtree(target, ignore_errors=True)


def playbook(cluster, pythonpath, extra=None, check=False, tags=None):
    extra_vars = dict(PASSWORDS)
    extra_vars.update({
        "__postgresql_socket_dir": cluster.socket_dir,
        "__postgresql_data_dir": cluster.datadir,
        "postgresql_port": cluster.port,
        "test_pythonpath": pythonpath,
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_become_method": "su",
    })
    extra_vars.update(extra or {})
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", PLAYBOOK,
            "-e", json.dumps(extra_vars)]
    if check:
        argv += ["--check", "--diff"]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_PIPELINING="true",
               ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
               ANSIBLE_CALLBACK_RESULT_FORMAT="yaml")
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return proc


def recap(output):
    line = [ln for ln in output.splitlines() if ln.startswith("localhost")][-1]
    return dict(part.split("=") for part in line.split()[2:])


@pytest.fixture(scope="module")
def converged(cluster, pythonpath):
    if os.geteuid() != 0:
        pytest.fail("these tests run the role as root and become the postgres OS user (su)")
    first = playbook(cluster, pythonpath)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    second = playbook(cluster, pythonpath)
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
    return first, second


def login(cluster, user, password, dbname="ai_platform"):
    conn = psycopg2.connect(host="127.0.0.1", port=cluster.port, dbname=dbname, user=user, password=password,
                            connect_timeout=10)
    conn.autocommit = True
    return conn


def test_second_run_changes_nothing(converged):
    first, second = converged
    assert int(recap(first.stdout)["changed"]) > 0
    assert recap(second.stdout)["changed"] == "0", second.stdout[-6000:]


def test_passwords_never_in_output(converged):
    for proc in converged:
        for password in PASSWORDS.values():
            assert password not in proc.stdout and password not in proc.stderr


def test_passwords_stored_as_scram_and_tcp_login_works(cluster, converged):
    rows = cluster.query("SELECT rolname, rolpassword LIKE 'SCRAM-SHA-256$%', rolsuper, rolcreatedb, rolcreaterole, "
                         "rolconnlimit FROM pg_authid WHERE rolname IN ('ai_user', 'aiplatform_exporter', "
                         "'grafana_reader') ORDER BY 1")
    assert rows == [("ai_user", True, False, False, False, -1),
                    ("aiplatform_exporter", True, False, False, False, 20),
                    ("grafana_reader", True, False, False, False, 20)]
    for user, var in (("ai_user", "postgresql_owner_password"), ("aiplatform_exporter", "postgresql_exporter_password"),
                      ("grafana_reader", "postgresql_grafana_reader_password")):
        conn = login(cluster, user, PASSWORDS[var])
        with conn.cursor() as cur:
            cur.execute("SHOW search_path")
            assert cur.fetchone()[0] == "platform"
            cur.execute("SELECT count(*) FROM lora_versions")  # unqualified: search_path
        conn.close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            login(cluster, user, "wrong")


def test_migrations_recorded_once_and_objects_owned_by_owner(cluster, converged):
    names = [m["name"] for m in role_migrations()]
    rows = cluster.query("SELECT name, count(*) FROM public.schema_migrations GROUP BY name ORDER BY name",
                         dbname="ai_platform")
    assert rows == [(name, 1) for name in names]
    owners = cluster.query("SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n "
                           "ON n.oid = c.relnamespace WHERE n.nspname = 'platform' OR c.oid = "
                           "'public.schema_migrations'::regclass", dbname="ai_platform")
    assert owners == [("ai_user",)]
    assert cluster.query("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'ai_platform'") == \
        [("ai_user",)]


def test_table_privileges_are_exactly_the_contract(cluster, converged):
    for role, tables in EXPECTED.items():
        for table in TABLES:
            granted = {p for p in PRIVS if cluster.query(
                "SELECT has_table_privilege(%s, %s, %s)", (role, "platform." + table, p), dbname="ai_platform")[0][0]}
            assert granted == tables[table], (role, table, granted)
        assert cluster.query("SELECT has_table_privilege(%s, 'public.schema_migrations', 'SELECT')", (role,),
                             dbname="ai_platform") == [(False,)]
        assert cluster.query("SELECT has_schema_privilege(%s, 'platform', 'CREATE')", (role,),
                             dbname="ai_platform") == [(False,)]


def test_exporter_writes_drift_history(cluster, converged):
    conn = login(cluster, "aiplatform_exporter", PASSWORDS["postgresql_exporter_password"])
    with conn.cursor() as cur:
        cur.execute("INSERT INTO drift_baselines (model, feature, kind, bin_edges, reference_shares, "
                    "reference_samples, window_start, window_end) VALUES ('m', 'f', 'numeric', '{0,1}', '{1}', 10, "
                    "now() - interval '1 day', now()) RETURNING id")
        baseline = cur.fetchone()[0]
        cur.execute("INSERT INTO drift_reports (model, feature, baseline_id, window_start, window_end, sample_count, "
                    "psi, drifted) VALUES ('m', 'f', %s, now() - interval '1 hour', now(), 900, 0.2, true) "
                    "RETURNING id", (baseline,))
        report = cur.fetchone()[0]
        cur.execute("INSERT INTO finetuning_requests (model, reason, drift_report_id) VALUES ('m', 'drift', %s)",
                    (report,))
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("INSERT INTO lora_versions (version_id, base_model) VALUES ('x', 'm')")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("UPDATE drift_reports SET psi = 0")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("DELETE FROM drift_reports")
    conn.close()


def test_grafana_reader_reads_its_tables_only(cluster, converged):
    conn = login(cluster, "grafana_reader", PASSWORDS["postgresql_grafana_reader_password"])
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM lora_versions")
        cur.execute("SELECT count(*) FROM training_runs")
        for table in ("prediction_samples", "drift_reports", "drift_baselines", "finetuning_requests",
                      "public.schema_migrations"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="permission denied"):
                cur.execute("SELECT * FROM %s" % table)
        with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="permission denied"):
            cur.execute("INSERT INTO lora_versions (version_id, base_model) VALUES ('x', 'm')")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="permission denied"):
            cur.execute("CREATE TABLE platform.mine (i int)")
    conn.close()


def _dashboard_sql():
    """[(dashboard, where, SQL)] of every PostgreSQL query of the rendered dashboards (panels and
    annotations), with the Grafana macros they use expanded as Grafana's PostgreSQL datasource does."""
    sys.path.insert(0, os.path.join(REPO, "tests", "unit"))
    from test_dashboards import render  # the grafana role's render, as it delivers the dashboards

    tmp = tempfile.mkdtemp(prefix="aiplatform-dash-sql-")
    try:
        dashboards = render(__import__("pathlib").Path(tmp), {})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def walk(obj, where):
        if isinstance(obj, dict):
            if "rawSql" in obj:
                yield where, obj["rawSql"]
            for k, v in obj.items():
                yield from walk(v, obj.get("title") or obj.get("name") or where)
        elif isinstance(obj, list):
            for v in obj:
                yield from walk(v, where)

    out = []
    for uid, d in dashboards.items():
        for where, sql in walk(d, uid):
            sql = re.sub(r"\$__timeFilter\((\w+)\)",
                         r"\1 BETWEEN '2026-12-01T00:00:00Z' AND '2026-12-02T00:00:00Z'", sql)
            sql = sql.replace("${model:regex}", "(?:base-model-a|base-model-b)")
            assert not re.search(r"\$(__|\{)", sql), (uid, where, sql)  # a macro this test does not expand yet
            out.append((uid, where, sql))
    return out


def test_every_dashboard_sql_query_runs_as_the_grafana_reader(cluster, converged):
    queries = _dashboard_sql()
    assert len(queries) == 5, queries  # 1 table panel, 2 annotation queries on two dashboards
    conn = login(cluster, "grafana_reader", PASSWORDS["postgresql_grafana_reader_password"])
    conn.autocommit = True
    with conn.cursor() as cur:
        for uid, where, sql in queries:
            try:
                cur.execute("EXPLAIN " + sql)
                cur.execute(sql)
            except psycopg2.Error as err:
                raise AssertionError("%s / %s: %s\n%s" % (uid, where, err, sql)) from err
        # the check can fail: a column the schema does not have
        with pytest.raises(psycopg2.errors.UndefinedColumn):
            cur.execute("EXPLAIN " + next(q for _, _, q in queries if "started_at" in q).replace("started_at", "start_time"))
    conn.close()


def test_other_roles_cannot_connect_to_the_database(cluster, converged):
    cluster.query("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stranger') THEN "
                  "CREATE ROLE stranger LOGIN PASSWORD 'stranger-pw'; END IF; END $$")
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        login(cluster, "stranger", "stranger-pw")


def test_extra_grants_are_revoked_and_list_changes_converge(cluster, pythonpath, converged):
    # Someone granted more by hand; and the reader's list grows by one table.
    cluster.query("GRANT SELECT, UPDATE ON platform.prediction_samples TO grafana_reader; "
                  "GRANT DELETE ON platform.drift_reports TO aiplatform_exporter", dbname="ai_platform")
    proc = playbook(cluster, pythonpath, extra={
        "postgresql_grafana_reader_tables": ["lora_versions", "training_runs", "drift_reports"]})
    assert proc.returncode == 0, proc.stdout[-6000:]
    priv = "SELECT has_table_privilege(%s, %s, %s)"
    assert cluster.query(priv, ("grafana_reader", "platform.prediction_samples", "SELECT"), dbname="ai_platform") \
        == [(False,)]
    assert cluster.query(priv, ("grafana_reader", "platform.drift_reports", "SELECT"), dbname="ai_platform") \
        == [(True,)]
    assert cluster.query(priv, ("aiplatform_exporter", "platform.drift_reports", "DELETE"), dbname="ai_platform") \
        == [(False,)]
    # Back to the defaults: the extra table is revoked again.
    proc = playbook(cluster, pythonpath)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert cluster.query(priv, ("grafana_reader", "platform.drift_reports", "SELECT"), dbname="ai_platform") \
        == [(False,)]


def test_exporter_pg_monitor_membership_converges(cluster, pythonpath, converged):
    member = "SELECT pg_has_role('aiplatform_exporter', 'pg_monitor', 'MEMBER'), " \
             "pg_has_role('grafana_reader', 'pg_monitor', 'MEMBER')"
    assert cluster.query(member) == [(True, False)]
    proc = playbook(cluster, pythonpath, extra={"postgresql_exporter_pg_monitor": False})
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert cluster.query(member) == [(False, False)]
    proc = playbook(cluster, pythonpath)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert cluster.query(member) == [(True, False)]


def test_check_mode_reports_a_pending_migration_without_applying(cluster, pythonpath, converged, tmp_path):
    proc = playbook(cluster, pythonpath, check=True)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert recap(proc.stdout)["changed"] == "0", proc.stdout[-6000:]


@pytest.mark.parametrize("extra, expected", [
    ({"postgresql_exporter_password": ""}, "postgresql_exporter_password is not set"),
    ({"postgresql_hba_extra_entries": [{"type": "host", "database": "all", "user": "all",
                                        "address": "10.0.0.0/8", "method": "trust"}]},
     "postgresql_hba_extra_entries[0]"),
    ({"postgresql_hba_entries": [{"type": "host", "database": "all", "user": "all", "address": "0.0.0.0/0",
                                  "method": "md5"}]}, "postgresql_hba_entries[0]"),
    ({"postgresql_settings": {"port": 6543}}, "postgresql_settings.port is refused"),
    ({"postgresql_grafana_reader_tables": ["lora_versions; DROP"]}, "postgresql_grafana_reader_tables must list"),
])
def test_preflight_refuses_bad_input_naming_the_variable(cluster, pythonpath, extra, expected):
    before = cluster.query("SELECT count(*) FROM pg_roles")
    proc = playbook(cluster, pythonpath, extra=extra)
    assert proc.returncode != 0
    assert expected in proc.stdout, proc.stdout[-4000:]
    if "trust" in json.dumps(extra):
        assert "trust is never allowed" in proc.stdout
    assert cluster.query("SELECT count(*) FROM pg_roles") == before
