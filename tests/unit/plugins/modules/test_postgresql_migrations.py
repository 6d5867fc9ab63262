"""Unit tests of postgresql_migrations: ordering, checksums, planning, errors, argument handling."""
import importlib.util
import io
import json
import os
from contextlib import redirect_stdout

import pytest
from ansible.module_utils.testing import patch_module_args

MODULE_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "plugins", "modules",
                           "postgresql_migrations.py")


def _load():
    spec = importlib.util.spec_from_file_location("postgresql_migrations_unit", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pm = _load()


def m(name, sql="SELECT 1"):
    return {"name": name, "sql": sql}


def run_main(args):
    out = io.StringIO()
    with patch_module_args(args), redirect_stdout(out):
        with pytest.raises(SystemExit):
            pm.main()
    return json.loads(out.getvalue())


def test_checksum_ignores_line_endings_and_outer_white_space():
    assert pm.checksum("SELECT 1;\n") == pm.checksum("SELECT 1;")
    assert pm.checksum("A;\r\nB;\r\n") == pm.checksum("A;\nB;")
    assert pm.checksum("SELECT 1;") != pm.checksum("SELECT 2;")
    assert len(pm.checksum("x")) == 64


def test_order_is_numeric_not_list_order():
    ordered = pm.order_migrations([m("0010_j.sql"), m("0002_b.sql"), m("0001_a.sql")])
    assert [name for _n, name, _s in ordered] == ["0001_a.sql", "0002_b.sql", "0010_j.sql"]
    # Numbers compare as numbers: 9 before 10 even without zero padding.
    ordered = pm.order_migrations([m("10_x.sql"), m("9_y.sql")])
    assert [name for _n, name, _s in ordered] == ["9_y.sql", "10_x.sql"]


@pytest.mark.parametrize("bad", ["initial.sql", "0001-initial.sql", "_0001.sql", "0001_", "0001_a b.sql"])
def test_names_need_a_number_and_an_underscore(bad):
    with pytest.raises(pm.MigrationError, match="must start with its number"):
        pm.order_migrations([m(bad)])


def test_duplicate_numbers_are_refused():
    with pytest.raises(pm.MigrationError, match="same number 1"):
        pm.order_migrations([m("0001_a.sql"), m("1_b.sql")])


def test_plan_splits_applied_pending_unknown():
    ordered = pm.order_migrations([m("0001_a.sql", "A"), m("0002_b.sql", "B"), m("0003_c.sql", "C")])
    recorded = {"0001_a.sql": pm.checksum("A"), "0000_gone.sql": "x"}
    already, pending, unknown = pm.plan(ordered, recorded)
    assert already == ["0001_a.sql"]
    assert [name for _n, name, _s in pending] == ["0002_b.sql", "0003_c.sql"]
    assert unknown == ["0000_gone.sql"]


def test_plan_refuses_changed_checksums_naming_them():
    ordered = pm.order_migrations([m("0001_a.sql", "A2"), m("0002_b.sql", "B")])
    with pytest.raises(pm.MigrationError, match=r"checksum mismatch\): 0001_a.sql"):
        pm.plan(ordered, {"0001_a.sql": pm.checksum("A"), "0002_b.sql": pm.checksum("B")})


def test_plan_refuses_a_pending_migration_below_an_applied_one():
    ordered = pm.order_migrations([m("0001_a.sql", "A"), m("0003_c.sql", "C")])
    with pytest.raises(pm.MigrationError, match="0001_a.sql is pending"):
        pm.plan(ordered, {"0003_c.sql": pm.checksum("C")})
    # Also when the higher one is only recorded (its file removed).
    with pytest.raises(pm.MigrationError, match="0001_a.sql is pending"):
        pm.plan(pm.order_migrations([m("0001_a.sql")]), {"0005_gone.sql": "x"})


def test_plan_with_nothing_recorded_is_all_pending():
    ordered = pm.order_migrations([m("0001_a.sql"), m("0002_b.sql")])
    assert pm.plan(ordered, {}) == ([], ordered, [])


class _Diag:
    severity = "ERROR"
    message_primary = 'relation "x" does not exist'
    message_detail = None
    message_hint = "Create it first."
    statement_position = "15"


class _PgError(Exception):
    diag = _Diag()
    pgcode = "42P01"


def test_pg_error_text_has_message_hint_position_and_sqlstate():
    text = pm.pg_error_text(_PgError("raw"))
    assert text == 'ERROR: relation "x" does not exist HINT: Create it first. at character 15 (SQLSTATE 42P01)'


def test_pg_error_text_falls_back_to_the_exception_text():
    assert pm.pg_error_text(ValueError("  boom \n")) == "boom"


def test_missing_psycopg2_fails_with_the_library_name(monkeypatch):
    monkeypatch.setattr(pm, "psycopg2", None)
    result = run_main({"db": "d", "migrations": []})
    assert result["failed"] is True
    assert "psycopg2" in result["msg"]


def test_bad_migrations_table_identifier_is_refused_before_connecting(monkeypatch):
    def no_connect(_params):
        raise AssertionError("must not connect")

    monkeypatch.setattr(pm, "connect", no_connect)
    result = run_main({"db": "d", "table": "Bad-Name", "migrations": []})
    assert result["failed"] is True and "table='Bad-Name'" in result["msg"]


def test_bad_names_fail_before_connecting(monkeypatch):
    monkeypatch.setattr(pm, "connect", lambda _params: (_ for _ in ()).throw(AssertionError("connected")))
    result = run_main({"db": "d", "migrations": [m("initial.sql")]})
    assert result["failed"] is True and "initial.sql" in result["msg"]


def test_password_is_declared_no_log():
    assert "no_log=True" in open(MODULE_PATH).read().split("login_password=dict(")[1].split(")")[0]


def test_documentation_matches_argument_spec():
    import yaml

    doc = yaml.safe_load(pm.DOCUMENTATION)
    yaml.safe_load(pm.EXAMPLES)
    yaml.safe_load(pm.RETURN)
    source = open(MODULE_PATH).read()
    spec_part = source.split("argument_spec=dict(")[1].split("supports_check_mode")[0]
    for option in doc["options"]:
        assert "%s=dict(" % option in spec_part, option
    assert doc["attributes"]["check_mode"]["support"] == "full"
