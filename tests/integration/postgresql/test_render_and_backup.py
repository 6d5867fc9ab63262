"""The role's rendered files checked by PostgreSQL itself, the restart rule of configure.yml, and the backup
script with the documented restore procedure, against a throwaway cluster."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from modrunner import REPO, role_migrations, run

ROLE = os.path.join(REPO, "roles", "postgresql")


def render(tmp_path, cluster, **extra):
    out = tmp_path / "render"
    extra_vars = {"render_dir": str(out), "__postgresql_socket_dir": cluster.socket_dir,
                  "postgresql_port": cluster.port, "__postgresql_bin_dir": cluster.bindir,
                  "postgresql_backup_dir": str(tmp_path / "backups"), "postgresql_backup_keep": 2,
                  "ansible_python_interpreter": sys.executable}
    extra_vars.update(extra)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                           os.path.join(os.path.dirname(__file__), "render.yml"), "-e", json.dumps(extra_vars)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return out / "localhost"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, cluster):
    tmp = tmp_path_factory.mktemp("r")
    os.chmod(tmp, 0o755)
    settings = {"max_connections": 50, "shared_buffers": "64MB", "work_mem": "8MB", "log_connections": True,
                "jit": False, "application_name": "it's quoted"}
    hba_extra = [{"type": "hostssl", "database": "ai_platform", "user": "grafana_reader",
                  "address": "10.1.2.0/24", "method": "scram-sha-256", "options": "clientcert=verify-ca"}]
    return tmp, render(tmp, cluster, postgresql_settings=settings, postgresql_hba_extra_entries=hba_extra,
                       postgresql_ssl_enabled=True)


def postgres_check(cluster, config_text, tmp):
    conf = os.path.join(cluster.root, "check-%d.conf" % abs(hash(config_text)))  # readable by the server user
    with open(conf, "w") as handle:
        handle.write("data_directory = '%s'\nhba_file = '%s/pg_hba.conf'\nident_file = '%s/pg_ident.conf'\n%s"
                     % (cluster.datadir, cluster.datadir, cluster.datadir, config_text))
    os.chmod(conf, 0o644)
    argv = [os.path.join(cluster.bindir, "postgres"), "-c", "config_file=" + conf, "-C", "data_directory"]
    if cluster.run_as:
        argv = ["runuser", "-u", cluster.run_as, "--"] + argv
    return subprocess.run(argv, capture_output=True, text=True)


def test_rendered_settings_pass_postgres_check(cluster, rendered):
    tmp, out = rendered
    conf = out / "etc/postgresql/15/main/conf.d/50-aiplatform.conf"
    text = conf.read_text()
    assert text.startswith("#") and "Ansible managed" in text
    assert "application_name = 'it''s quoted'" in text and "jit = off" in text and "max_connections = 50" in text
    assert "password_encryption = 'scram-sha-256'" in text and "ssl = on" in text
    ok = postgres_check(cluster, text, str(tmp))
    assert ok.returncode == 0, ok.stderr
    # The same check refuses a bad value, as configure.yml relies on.
    bad = postgres_check(cluster, text + "shared_buffers = 'lots'\n", str(tmp))
    assert bad.returncode != 0 and 'invalid value for parameter "shared_buffers"' in bad.stderr


def test_rendered_pg_hba_is_read_without_errors(cluster, rendered):
    _tmp, out = rendered
    rendered_hba = (out / "etc/postgresql/15/main/pg_hba.conf").read_text()
    live = os.path.join(cluster.datadir, "pg_hba.conf")
    original = open(live).read()
    conn = cluster.connect()  # authenticated by the rules in memory; pg_hba_file_rules reads the file on disk
    try:
        with open(live, "w") as handle:
            handle.write(rendered_hba)
        with conn.cursor() as cur:
            cur.execute("SELECT type, database, user_name, address, auth_method, options, error "
                        "FROM pg_hba_file_rules ORDER BY line_number")
            rules = cur.fetchall()
    finally:
        with open(live, "w") as handle:
            handle.write(original)
        conn.close()
    # The throwaway cluster runs without TLS; the role's check lets exactly this error pass when
    # postgresql_ssl_enabled is true (TLS comes with the reload that follows).
    ssl_off = "hostssl record cannot match because SSL is disabled"
    assert [r[6] for r in rules] == [ssl_off if r[0] == "hostssl" else None for r in rules], rules
    assert ssl_off in _configure_task_query("Check pg_hba.conf")
    assert rules[0][:5] == ("local", ["all"], ["postgres"], None, "peer")
    tcp = [r for r in rules if r[0] != "local"]
    assert tcp and all(r[4] == "scram-sha-256" for r in tcp)
    assert ("hostssl", ["ai_platform"], ["grafana_reader"], "10.1.2.0", "scram-sha-256",
            ["clientcert=verify-ca"]) in [tuple(r[:6]) for r in rules]


def _configure_task_query(name_start):
    tasks = yaml.safe_load(open(os.path.join(ROLE, "tasks", "configure.yml")))
    tasks = tasks + [t for task in tasks for t in task.get("block", [])]
    for task in tasks:
        if task.get("name", "").startswith(name_start):
            return task["community.postgresql.postgresql_query"]["query"]
    raise AssertionError("no task %r in configure.yml" % name_start)


def test_restart_rule_finds_only_postmaster_settings(cluster, tmp_path):
    query = _configure_task_query("Schedule a restart")
    conf_d = os.path.join(cluster.datadir, "conf.d")
    main = os.path.join(cluster.datadir, "postgresql.conf")
    original = open(main).read()
    try:
        os.makedirs(conf_d, exist_ok=True)
        shutil.chown(conf_d, user=cluster.run_as or os.getuid())
        with open(main, "a") as handle:
            handle.write("\ninclude_dir = 'conf.d'\n")
        drop_in = os.path.join(conf_d, "50-aiplatform.conf")
        with open(drop_in, "w") as handle:
            handle.write("work_mem = '16MB'\nlog_min_duration_statement = '2s'\n")
        assert cluster.query(query) == []  # reload-only changes: no restart
        with open(drop_in, "a") as handle:
            handle.write("shared_buffers = '96MB'\nmax_connections = 90\n")
        assert sorted(row[0] for row in cluster.query(query)) == ["max_connections", "shared_buffers"]
    finally:
        with open(main, "w") as handle:
            handle.write(original)
        shutil.rmtree(conf_d, ignore_errors=True)


def test_backup_script_keeps_n_and_documented_restore_brings_a_table_back(cluster, rendered, tmp_path):
    tmp, out = rendered
    db = "ai_platform"
    if not cluster.query("SELECT 1 FROM pg_database WHERE datname = %s", (db,)):
        cluster.query("CREATE DATABASE ai_platform")
    if not cluster.query("SELECT to_regclass('platform.prediction_samples')", dbname=db)[0][0]:
        failed, result = run(dict(db=db, login_user="postgres", login_unix_socket=cluster.socket_dir,
                                  port=cluster.port, migrations=role_migrations()))
        assert not failed, result
    cluster.query("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'restore_reader') THEN "
                  "CREATE ROLE restore_reader; END IF; END $$; "
                  "GRANT USAGE ON SCHEMA platform TO restore_reader; "
                  "GRANT SELECT ON platform.prediction_samples TO restore_reader", dbname=db)
    cluster.query("INSERT INTO platform.prediction_samples (model, feature, value_num) "
                  "SELECT 'restore-test', 'f', g FROM generate_series(1, 40) g", dbname=db)

    script = out / "usr/local/sbin/aiplatform-postgresql-backup"
    backups = tmp / "backups"
    backups.mkdir(exist_ok=True)
    archives = []
    for _ in range(3):
        # The unit runs it as the postgres OS user; here PGUSER stands in for that.
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, PGUSER="postgres"))
        assert proc.returncode == 0, proc.stderr
        archives.append(proc.stdout.split("backup written: ")[1].split()[0])
        subprocess.run(["sleep", "1.1"])
    kept = sorted(os.listdir(backups))
    assert kept == sorted(os.path.basename(a) for a in archives[1:]), kept  # keep = 2, the oldest pruned
    assert oct(os.stat(archives[-1]).st_mode & 0o777) == "0o600"

    cluster.query("DROP TABLE platform.prediction_samples", dbname=db)
    # docs/postgresql.md, "Restore one table": list its entries, restore just those.
    listing = subprocess.run([os.path.join(cluster.bindir, "pg_restore"), "--list", archives[-1]],
                             capture_output=True, text=True, check=True).stdout
    entries = "\n".join(line for line in listing.splitlines()
                        if " platform prediction_samples" in line or " platform TABLE prediction_samples" in line)
    assert "TABLE DATA" in entries and "INDEX" in entries and "ACL" in entries, listing
    use_list = tmp_path / "restore.list"
    use_list.write_text(entries + "\n")
    proc = subprocess.run([os.path.join(cluster.bindir, "pg_restore"), "-h", cluster.socket_dir, "-p",
                           str(cluster.port), "-U", "postgres", "-d", db, "--exit-on-error",
                           "--use-list=%s" % use_list, archives[-1]], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert cluster.query("SELECT count(*) FROM platform.prediction_samples WHERE model = 'restore-test'",
                         dbname=db) == [(40,)]
    assert cluster.query("SELECT has_table_privilege('restore_reader', 'platform.prediction_samples', 'SELECT'), "
                         "to_regclass('platform.prediction_samples_window') IS NOT NULL", dbname=db) == [(True, True)]
    # The identity continues after the restored rows.
    cluster.query("INSERT INTO platform.prediction_samples (model, feature, value_num) VALUES ('after', 'f', 1)",
                  dbname=db)
