"""Verify the postgresql role by asking PostgreSQL itself (testinfra, molecule verify)."""
import os
import subprocess
import time

import pytest

testinfra_hosts = ["ansible://monitoring"]

MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "postgresql", "files", "migrations")
BACKUP_UNIT = "aiplatform-postgresql-backup"


@pytest.fixture
def pg(host):
    v = host.ansible.get_variables()
    return {
        "port": int(v.get("postgresql_port", 5432)),
        "db": v.get("postgresql_database", "ai_platform"),
        "owner": v.get("postgresql_owner_user", "ai_user"),
        "exporter": v.get("postgresql_exporter_user", "aiplatform_exporter"),
        "reader": v.get("postgresql_grafana_reader_user", "grafana_reader"),
        "reader_tables": v.get("postgresql_grafana_reader_tables", ["lora_versions", "training_runs"]),
        "backup_dir": v.get("postgresql_backup_dir", "/var/backups/postgresql"),
        "passwords": {
            v.get("postgresql_owner_user", "ai_user"): v["postgresql_owner_password"],
            v.get("postgresql_exporter_user", "aiplatform_exporter"): v["postgresql_exporter_password"],
            v.get("postgresql_grafana_reader_user", "grafana_reader"): v["postgresql_grafana_reader_password"],
        },
    }


def as_role(host, pg, user, sql):
    """psql over TCP with the role's password (PGPASSWORD in the environment, not an argument)."""
    return host.run("PGPASSWORD=%s psql -h 127.0.0.1 -p %s -U %s -d %s -XAtq -v ON_ERROR_STOP=1 -c %s",
                    pg["passwords"][user], str(pg["port"]), user, pg["db"], sql)


def as_postgres(host, pg, sql, db=None):
    cmd = host.run("runuser -u postgres -- psql -p %s -d %s -XAtq -v ON_ERROR_STOP=1 -c %s",
                   str(pg["port"]), db or pg["db"], sql)
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip()


def test_listens_on_its_port(host, pg):
    assert host.socket("tcp://127.0.0.1:%d" % pg["port"]).is_listening


def test_password_login_over_tcp_for_each_role(host, pg):
    for user in pg["passwords"]:
        cmd = as_role(host, pg, user, "SELECT current_user || ' ' || current_setting('search_path')")
        assert cmd.rc == 0, cmd.stderr
        assert cmd.stdout.strip() == "%s platform" % user
    stored = as_postgres(host, pg, "SELECT string_agg((rolpassword LIKE 'SCRAM-SHA-256$%%')::text, ',') FROM "
                                   "pg_authid WHERE rolname IN ('%s')" % "','".join(pg["passwords"]))
    assert stored == "true,true,true"


def test_grafana_reader_is_denied_insert_and_other_tables(host, pg):
    for table in pg["reader_tables"]:
        cmd = as_role(host, pg, pg["reader"], "SELECT count(*) FROM %s" % table)
        assert cmd.rc == 0, cmd.stderr
    cmd = as_role(host, pg, pg["reader"], "INSERT INTO lora_versions (version_id, base_model) VALUES ('x', 'x')")
    assert cmd.rc != 0 and "permission denied" in cmd.stderr
    for table in ("prediction_samples", "drift_reports", "finetuning_requests", "public.schema_migrations"):
        if table not in pg["reader_tables"]:
            cmd = as_role(host, pg, pg["reader"], "SELECT * FROM %s LIMIT 1" % table)
            assert cmd.rc != 0 and "permission denied" in cmd.stderr, table


def test_exporter_can_insert_drift_reports(host, pg):
    cmd = as_role(host, pg, pg["exporter"],
                  "BEGIN; INSERT INTO drift_reports (model, feature, window_start, window_end, sample_count, psi) "
                  "VALUES ('verify', 'f', now() - interval '1 hour', now(), 1000, 0.05) RETURNING id; ROLLBACK;")
    assert cmd.rc == 0, cmd.stderr
    cmd = as_role(host, pg, pg["exporter"], "UPDATE lora_versions SET is_active = false WHERE false")
    assert cmd.rc != 0 and "permission denied" in cmd.stderr


def test_every_migration_recorded_once(host, pg):
    files = sorted(f for f in os.listdir(MIGRATIONS) if f.endswith(".sql"))
    rows = as_postgres(host, pg, "SELECT name || ':' || count(*) FROM public.schema_migrations GROUP BY name "
                                 "ORDER BY name").splitlines()
    assert rows == ["%s:1" % f for f in files]


def _playbook(extra_args):
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    project = os.environ.get("MOLECULE_PROJECT_DIRECTORY")
    if not inventory or not project:
        pytest.fail("MOLECULE_INVENTORY_FILE and MOLECULE_PROJECT_DIRECTORY must be set (run under molecule verify)")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(project, "ansible.cfg"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    argv = ["ansible-playbook", "-i", inventory, os.path.join(project, "playbooks", "database.yml"), "--tags", "postgresql"]
    proc = subprocess.run(argv + extra_args, cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    return proc


@pytest.mark.day2
def test_pg_hba_change_reloads_without_restart(host, pg):
    started = as_postgres(host, pg, "SELECT pg_postmaster_start_time()")
    loaded = as_postgres(host, pg, "SELECT pg_conf_load_time()")
    entry = '{"postgresql_hba_extra_entries": [{"type": "host", "database": "%s", "user": "%s", ' \
            '"address": "192.0.2.77/32", "method": "scram-sha-256", "comment": "molecule verify"}]}' % (
                pg["db"], pg["reader"])
    try:
        _playbook(["--limit", host.ansible.get_variables()["inventory_hostname"], "-e", entry])
        rules = as_postgres(host, pg, "SELECT string_agg(address, ',') FROM pg_hba_file_rules")
        assert "192.0.2.77" in rules
        assert as_postgres(host, pg, "SELECT pg_conf_load_time()") != loaded
        assert as_postgres(host, pg, "SELECT pg_postmaster_start_time()") == started
    finally:
        _playbook(["--limit", host.ansible.get_variables()["inventory_hostname"]])
    assert "192.0.2.77" not in as_postgres(host, pg, "SELECT coalesce(string_agg(address, ','), '') "
                                                     "FROM pg_hba_file_rules")
    assert as_postgres(host, pg, "SELECT pg_postmaster_start_time()") == started


def test_backup_timer_active(host):
    timer = host.service(BACKUP_UNIT + ".timer")
    assert timer.is_enabled
    assert timer.is_running


@pytest.mark.day2
def test_backup_and_restore_round_trip(host, pg):
    marker = "verify-%d" % int(time.time())
    as_postgres(host, pg, "INSERT INTO platform.prediction_samples (model, feature, value_num) "
                          "SELECT '%s', 'f', g FROM generate_series(1, 25) g" % marker)
    cmd = host.run("systemctl start %s.service", BACKUP_UNIT)
    assert cmd.rc == 0, cmd.stderr + host.run("journalctl -u %s.service -n 30 --no-pager", BACKUP_UNIT).stdout
    archive = host.run("ls -1 %s/%s-*.dump | sort | tail -n 1", pg["backup_dir"], pg["db"]).stdout.strip()
    assert archive, "no archive in %s" % pg["backup_dir"]
    assert host.file(archive).user == "postgres" and host.file(archive).mode == 0o600
    assert host.file(pg["backup_dir"]).mode == 0o700

    as_postgres(host, pg, "DROP TABLE platform.prediction_samples")
    # The documented procedure for one lost table: restore its entries (table, data, indexes, grants) in one
    # transaction. Writers keep running here (the demo feeder copies samples every few seconds): without
    # --single-transaction they insert into the half-restored table through a fresh identity sequence and
    # the primary key then fails on a duplicated id.
    cmd = host.run("runuser -u postgres -- sh -c %s",
                   "pg_restore --list %s | grep -E ' platform (TABLE )?prediction_samples' > /tmp/restore.list && "
                   "pg_restore -p %d -d %s --use-list=/tmp/restore.list --single-transaction %s"
                   % (archive, pg["port"], pg["db"], archive))
    assert cmd.rc == 0, cmd.stderr
    assert as_postgres(host, pg, "SELECT count(*) FROM platform.prediction_samples WHERE model = '%s'"
                       % marker) == "25"
    assert as_postgres(host, pg, "SELECT pg_get_userbyid(relowner) FROM pg_class "
                                 "WHERE oid = 'platform.prediction_samples'::regclass") == pg["owner"]
    assert as_role(host, pg, pg["exporter"], "SELECT count(*) FROM prediction_samples").rc == 0
    as_postgres(host, pg, "DELETE FROM platform.prediction_samples WHERE model = '%s'" % marker)
