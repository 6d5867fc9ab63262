"""postgresql_migrations against a real, throwaway PostgreSQL cluster."""
import threading

import psycopg2
import pytest

from modrunner import role_migrations, run, run_process


def args(cluster, db, migrations, **extra):
    base = dict(db=db, login_user="postgres", login_unix_socket=cluster.socket_dir, port=cluster.port,
                migrations=migrations)
    base.update(extra)
    return base


@pytest.fixture
def owner(cluster):
    cluster.query("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mig_owner') "
                  "THEN CREATE ROLE mig_owner NOLOGIN; END IF; END $$")
    return "mig_owner"


def recorded(cluster, db, table="public.schema_migrations"):
    return [row[0] for row in cluster.query("SELECT name FROM %s ORDER BY name" % table, dbname=db)]


def test_role_migrations_apply_once_as_owner(cluster, new_db, owner):
    cluster.query('ALTER DATABASE "%s" OWNER TO %s' % (new_db, owner))
    migrations = role_migrations()
    assert [m["name"] for m in migrations][:1] == ["0001_initial_schema.sql"]

    failed, result = run(args(cluster, new_db, migrations, session_role=owner, search_path="platform"))
    assert not failed, result
    assert result["changed"] is True
    assert result["applied"] == [m["name"] for m in migrations]
    assert result["pending"] == []

    # Recorded once each, with checksum and time; every object belongs to the owner role.
    rows = cluster.query("SELECT name, length(checksum), applied_at IS NOT NULL, applied_by "
                         "FROM public.schema_migrations ORDER BY name", dbname=new_db)
    assert rows == [(m["name"], 64, True, owner) for m in migrations]
    owners = cluster.query("SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c "
                           "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'platform'",
                           dbname=new_db)
    assert owners == [(owner,)]
    assert cluster.query("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'platform'",
                         dbname=new_db) == [(owner,)]
    tables = {r[0] for r in cluster.query("SELECT tablename FROM pg_tables WHERE schemaname = 'platform'",
                                          dbname=new_db)}
    assert tables == {"lora_versions", "training_runs", "prediction_samples", "drift_baselines",
                      "drift_reports", "finetuning_requests"}

    # Second run: nothing to do, no change.
    failed, again = run(args(cluster, new_db, migrations, session_role=owner, search_path="platform"))
    assert not failed, again
    assert again["changed"] is False
    assert again["applied"] == []
    assert again["already_applied"] == [m["name"] for m in migrations]
    assert recorded(cluster, new_db) == [m["name"] for m in migrations]


def test_schema_enforces_one_active_lora_per_model(cluster, new_db, owner):
    cluster.query('ALTER DATABASE "%s" OWNER TO %s' % (new_db, owner))
    failed, result = run(args(cluster, new_db, role_migrations(), session_role=owner))
    assert not failed, result
    cluster.query("INSERT INTO platform.lora_versions (version_id, base_model, is_active, deployed_at) "
                  "VALUES ('v1', 'm', true, now()), ('v2', 'm', false, NULL)", dbname=new_db)
    with pytest.raises(psycopg2.errors.UniqueViolation):
        cluster.query("UPDATE platform.lora_versions SET is_active = true, deployed_at = now() "
                      "WHERE version_id = 'v2'", dbname=new_db)


def test_check_mode_lists_pending_and_changes_nothing(cluster, new_db):
    migrations = role_migrations()
    failed, result = run(args(cluster, new_db, migrations), check=True, diff=True)
    assert not failed, result
    assert result["changed"] is True
    assert result["pending"] == [m["name"] for m in migrations]
    assert result["applied"] == []
    for m in migrations:
        assert m["name"] in result["diff"]["after"]
    assert result["diff"]["before"] == ""
    # Nothing was created: neither the migrations table nor the schema.
    assert cluster.query("SELECT to_regclass('public.schema_migrations'), to_regnamespace('platform')",
                         dbname=new_db) == [(None, None)]

    # After applying the first one, check mode lists only the rest.
    failed, result = run(args(cluster, new_db, migrations[:1]))
    assert not failed, result
    failed, result = run(args(cluster, new_db, migrations + [{"name": "0099_x.sql", "sql": "SELECT 1"}]),
                         check=True, diff=True)
    assert not failed, result
    assert result["pending"] == [m["name"] for m in migrations[1:]] + ["0099_x.sql"]
    assert result["diff"]["before"] == "0001_initial_schema.sql\n"
    assert recorded(cluster, new_db) == ["0001_initial_schema.sql"]


def test_failing_migration_rolls_back_and_reports_name_and_error(cluster, new_db):
    good = {"name": "0001_good.sql", "sql": "CREATE TABLE public.good (id int);"}
    bad = {"name": "0002_bad.sql",
           "sql": "CREATE TABLE public.half (id int);\nINSERT INTO public.good VALUES (1);\n"
                  "ALTER TABLE public.good ADD COLUMN x int REFERENCES public.nowhere (id);"}
    later = {"name": "0003_later.sql", "sql": "CREATE TABLE public.later (id int);"}
    failed, result = run(args(cluster, new_db, [later, bad, good]))
    assert failed
    assert result["failed_migration"] == "0002_bad.sql"
    assert "0002_bad.sql" in result["msg"]
    assert 'relation "public.nowhere" does not exist' in result["msg"]
    assert "42P01" in result["msg"]
    assert result["applied"] == ["0001_good.sql"]
    assert result["changed"] is True
    # The failed migration left nothing behind, and the run stopped before the next one.
    assert cluster.query("SELECT to_regclass('public.half'), to_regclass('public.later'), "
                         "(SELECT count(*) FROM public.good)", dbname=new_db) == [(None, None, 0)]
    assert recorded(cluster, new_db) == ["0001_good.sql"]

    fixed = dict(bad, sql="CREATE TABLE public.half (id int);")
    failed, result = run(args(cluster, new_db, [good, fixed, later]))
    assert not failed, result
    assert result["applied"] == ["0002_bad.sql", "0003_later.sql"]


def test_changed_checksum_is_an_error_and_applies_nothing(cluster, new_db):
    first = {"name": "0001_a.sql", "sql": "CREATE TABLE public.a (id int);"}
    failed, result = run(args(cluster, new_db, [first]))
    assert not failed, result
    # Trailing white space and CRLF do not count as a change.
    same = {"name": "0001_a.sql", "sql": "CREATE TABLE public.a (id int);\r\n\n"}
    failed, result = run(args(cluster, new_db, [same]))
    assert not failed and result["changed"] is False, result

    edited = {"name": "0001_a.sql", "sql": "CREATE TABLE public.a (id bigint);"}
    pending = {"name": "0002_b.sql", "sql": "CREATE TABLE public.b (id int);"}
    for check in (True, False):
        failed, result = run(args(cluster, new_db, [edited, pending]), check=check)
        assert failed
        assert "checksum mismatch" in result["msg"] and "0001_a.sql" in result["msg"]
    assert cluster.query("SELECT to_regclass('public.b')", dbname=new_db) == [(None,)]


def test_out_of_order_and_duplicate_numbers_are_refused(cluster, new_db):
    failed, result = run(args(cluster, new_db, [{"name": "0005_e.sql", "sql": "SELECT 1"}]))
    assert not failed, result
    failed, result = run(args(cluster, new_db, [{"name": "0005_e.sql", "sql": "SELECT 1"},
                                                {"name": "0003_c.sql", "sql": "CREATE TABLE public.c (i int)"}]))
    assert failed and "0003_c.sql" in result["msg"] and "higher-numbered" in result["msg"]
    failed, result = run(args(cluster, new_db, [{"name": "0006_a.sql", "sql": "SELECT 1"},
                                                {"name": "006_b.sql", "sql": "SELECT 1"}]))
    assert failed and "same number 6" in result["msg"]
    assert cluster.query("SELECT to_regclass('public.c')", dbname=new_db) == [(None,)]


def test_transaction_control_in_a_migration_is_reported(cluster, new_db):
    failed, result = run(args(cluster, new_db, [{"name": "0001_commit.sql",
                                                  "sql": "CREATE TABLE public.t (i int); COMMIT;"}]))
    assert failed
    assert result["failed_migration"] == "0001_commit.sql"
    assert "ended the transaction" in result["msg"]
    assert recorded(cluster, new_db) == []


def test_percent_signs_and_unknown_recorded_migrations(cluster, new_db):
    sql = "CREATE TABLE public.p (s text); INSERT INTO public.p VALUES ('100%% done'), ('50%');"
    failed, result = run(args(cluster, new_db, [{"name": "0001_p.sql", "sql": sql}]))
    assert not failed, result
    assert cluster.query("SELECT s FROM public.p ORDER BY s", dbname=new_db) == [("100%% done",), ("50%",)]
    failed, result = run(args(cluster, new_db, [{"name": "0002_q.sql", "sql": "SELECT 1"}]))
    assert not failed, result
    assert result["unknown"] == ["0001_p.sql"]
    assert "0001_p.sql" in str(result.get("warnings")), result


def test_concurrent_run_waits_for_the_lock_then_gives_up(cluster, new_db):
    holder = cluster.connect(dbname=new_db)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (7317410923401,))
        failed, result = run(args(cluster, new_db, [{"name": "0001_x.sql", "sql": "CREATE TABLE public.x (i int)"}],
                                  lock_timeout="500ms"))
        assert failed and "migration lock" in result["msg"], result
    finally:
        holder.close()
    assert cluster.query("SELECT to_regclass('public.x')", dbname=new_db) == [(None,)]


def test_lock_timeout_stops_a_migration_blocked_by_a_busy_table(cluster, new_db):
    failed, result = run(args(cluster, new_db, [{"name": "0001_t.sql", "sql": "CREATE TABLE public.busy (i int)"}]))
    assert not failed, result
    blocker = cluster.connect(dbname=new_db)
    blocker.autocommit = False
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE public.busy IN ACCESS SHARE MODE")
        failed, result = run(args(cluster, new_db, [{"name": "0001_t.sql", "sql": "CREATE TABLE public.busy (i int)"},
                                                    {"name": "0002_alter.sql",
                                                     "sql": "ALTER TABLE public.busy ADD COLUMN j int"}],
                                  lock_timeout="300ms"))
        assert failed and result["failed_migration"] == "0002_alter.sql"
        assert "lock timeout" in result["msg"]
    finally:
        blocker.rollback()
        blocker.close()


def test_connection_error_names_the_database(cluster):
    failed, result = run(args(cluster, "no_such_db", [{"name": "0001_x.sql", "sql": "SELECT 1"}]))
    assert failed and "no_such_db" in result["msg"] and "does not exist" in result["msg"]


def test_two_parallel_runs_apply_each_migration_once(cluster, new_db, tmp_path):
    migrations = [{"name": "0001_slow.sql", "sql": "SELECT pg_sleep(0.5); CREATE TABLE public.s (i int);"}]
    results = []

    def worker():
        results.append(run_process(args(cluster, new_db, migrations), tmp_path))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(not failed for failed, _r in results), results
    assert sorted(len(r["applied"]) for _f, r in results) == [0, 1]
    assert recorded(cluster, new_db) == ["0001_slow.sql"]
