"""Drift against a real PostgreSQL: binning in the database, baselines, reports, the exporter."""

import datetime

import numpy as np
import pytest

from aiplatform_exporters.config import ConfigError, Reader
from aiplatform_exporters.db import Database
from aiplatform_exporters.drift import Baseline, store
from aiplatform_exporters.drift.exporter import DriftConfig, DriftExporter
from conftest import EXPORTER_PASSWORD
from helpers import ago, insert_categorical, insert_numeric, registry_with

pytestmark = pytest.mark.integration


def exporter_db(pg):
    cfg = DriftConfig(Reader({"database": pg.database_section(), "models": [
        {"name": "m", "features": [{"name": "x"}]}]}))
    return Database(cfg.database, environ={"AIPLATFORM_DB_PASSWORD": EXPORTER_PASSWORD})


def config(pg, **drift):
    features = drift.pop("features", [{"name": "x", "kind": "numeric"}])
    data = {"database": pg.database_section(), "drift": dict({"cache_seconds": 0}, **drift),
            "models": [{"name": "llm", "features": features}]}
    return DriftConfig(Reader(data))


def test_database_binning_equals_numpy(owner_conn, clean_pg):
    r = np.random.default_rng(11)
    ref = np.round(r.normal(0, 1, 4000), 3)  # rounding makes values equal to edges likely
    t0 = ago(owner_conn, days=2)
    insert_numeric(owner_conn, "m", "x", ref, t0)
    db = exporter_db(clean_pg)
    end = t0 + datetime.timedelta(hours=1)
    fitted = store.fit_baseline(db, "m", "x", "numeric", t0, end, bins=10)
    local = Baseline.fit(ref, bins=10)
    np.testing.assert_allclose(fitted.edges, local.edges, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fitted.reference_shares, local.reference_shares, atol=1e-15)
    # a window with values exactly on the edges, far outside, NaN and infinities
    cur = np.concatenate([fitted.edges, [-1e6, 1e6], r.normal(0.5, 1, 3000)])
    t1 = ago(owner_conn, minutes=10)
    insert_numeric(owner_conn, "m", "x", np.concatenate([cur, [np.nan, np.inf, -np.inf]]), t1)
    counts = store.window_counts(db, fitted, "m", "x", t1, t1 + datetime.timedelta(hours=1))
    assert counts.tolist() == fitted.counts(cur).tolist()
    assert counts.sum() == cur.size


def test_categorical_baseline_and_window(owner_conn, clean_pg):
    t0 = ago(owner_conn, days=2)
    insert_categorical(owner_conn, "m", "intent", ["chat"] * 60 + ["code"] * 30 + ["search"] * 10, t0)
    t1 = ago(owner_conn, minutes=5)
    insert_categorical(owner_conn, "m", "intent", ["chat"] * 20 + ["code"] * 30 + ["new"] * 50, t1)
    db = exporter_db(clean_pg)
    b = store.fit_baseline(db, "m", "intent", "categorical", t0, t0 + datetime.timedelta(hours=1))
    assert b.categories == ["chat", "code", "search"]
    np.testing.assert_allclose(b.reference_shares, [0.6, 0.3, 0.1, 0.0])
    bid = store.save_baseline(db, "m", "intent", b)
    again = store.latest_baseline(db, "m", "intent")
    assert again.id == bid and again.categories == b.categories
    counts = store.window_counts(db, again, "m", "intent", t1, t1 + datetime.timedelta(hours=1))
    assert counts.tolist() == [20, 30, 0, 50]


def test_bad_baseline_row_is_logged_and_skipped(owner_conn, clean_pg):
    t0 = ago(owner_conn, days=1)
    good = owner_conn.execute(
        "INSERT INTO platform.drift_baselines (model, feature, kind, bin_edges, reference_shares, reference_samples,"
        " window_start, window_end, created_at) VALUES ('m', 'x', 'numeric', '{0}', '{0.5,0.5}', 10, %s, %s, %s) "
        "RETURNING id", (t0, t0, t0)).fetchone()[0]
    owner_conn.execute(  # newer, but three shares for two bins
        "INSERT INTO platform.drift_baselines (model, feature, kind, bin_edges, reference_shares, reference_samples,"
        " window_start, window_end) VALUES ('m', 'x', 'numeric', '{0}', '{0.2,0.3,0.5}', 10, %s, %s)", (t0, t0))
    seen = []
    b = store.latest_baseline(exporter_db(clean_pg), "m", "x", on_bad_row=seen.append)
    assert b.id == good and seen == ["drift_baselines"]


def _seed_drift(conn, shift, n_ref=3000, n_cur=2000, labels=None):
    r = np.random.default_rng(5)
    ref_start = ago(conn, days=3)
    insert_numeric(conn, "llm", "x", r.normal(0, 1, n_ref), ref_start, step_seconds=1.0)
    cur = r.normal(shift, 1, n_cur)
    predictions = labels[0] if labels else None
    truth = labels[1] if labels else None
    insert_numeric(conn, "llm", "x", cur, ago(conn, minutes=30), step_seconds=0.5, predictions=predictions,
                   labels=truth)
    return ref_start


def test_exporter_scores_writes_reports_and_serves_them(owner_conn, clean_pg, exporter_env):
    n_cur = 2000
    predictions = ["a"] * n_cur
    truth = ["a"] * 1500 + ["b"] * 300 + [None] * 200  # 1500 correct of 1800 labelled
    _seed_drift(owner_conn, 1.0, n_cur=n_cur, labels=(predictions, truth))
    cfg = config(clean_pg, reference={"first_seconds": 86400, "min_samples": 100})
    exp = DriftExporter(cfg, environ=exporter_env)
    job = cfg.jobs[0]
    report_id = exp.scorer.score(job)
    assert report_id is not None
    row = owner_conn.execute("SELECT sample_count, psi, kl_divergence, accuracy, drifted, baseline_id "
                             "FROM platform.drift_reports WHERE id = %s", (report_id,)).fetchone()
    assert row[0] == n_cur and row[1] > 0.5 and row[2] > 0.2 and row[4] is True
    assert row[3] == pytest.approx(1500 / 1800)
    baseline = owner_conn.execute("SELECT reference_samples, cardinality(bin_edges) FROM platform.drift_baselines "
                                  "WHERE id = %s", (row[5],)).fetchone()
    assert baseline == (3000, 9)  # the first day of data: the 3000 reference samples, 10 bins
    # the scores equal the library's on the same data
    ref_vals = [r[0] for r in owner_conn.execute(
        "SELECT value_num FROM platform.prediction_samples WHERE observed_at < now() - interval '1 day'")]
    cur_vals = [r[0] for r in owner_conn.execute(
        "SELECT value_num FROM platform.prediction_samples WHERE observed_at > now() - interval '1 hour'")]
    lib = Baseline.fit(np.array(ref_vals)).score(np.array(cur_vals))
    assert row[1] == pytest.approx(lib.psi, rel=1e-9) and row[2] == pytest.approx(lib.kl_divergence, rel=1e-9)

    reg = registry_with(exp.collector)
    labels = {"model": "llm", "feature": "x"}
    assert reg.get_sample_value("aiplatform_drift_exporter_up") == 1
    assert reg.get_sample_value("drift_psi", labels) == pytest.approx(row[1])
    assert reg.get_sample_value("drift_kl_divergence", labels) == pytest.approx(row[2])
    assert reg.get_sample_value("drift_window_samples", labels) == n_cur
    assert reg.get_sample_value("drift_current_accuracy", labels) == pytest.approx(1500 / 1800)
    assert reg.get_sample_value("drift_detected_total", labels) == 1
    # no fine-tuning request: off by default; the model's series is there, at 0
    assert reg.get_sample_value("finetuning_triggers_total", {"model": "llm", "reason": "drift"}) == 0
    assert owner_conn.execute("SELECT count(*) FROM platform.finetuning_requests").fetchone()[0] == 0
    # a second run reuses the stored baseline
    exp.scorer.score(job)
    assert owner_conn.execute("SELECT count(*) FROM platform.drift_baselines").fetchone()[0] == 1
    assert reg.get_sample_value("drift_detected_total", labels) == 2

    # counters come from the database: a fresh exporter (a restart) starts where the old one was
    exp2 = DriftExporter(config(clean_pg), environ=exporter_env)
    reg2 = registry_with(exp2.collector)
    assert reg2.get_sample_value("drift_detected_total", labels) == 2
    assert reg2.get_sample_value("drift_psi", labels) == pytest.approx(row[1], rel=0.2)
    exp.stop()
    exp2.stop()


def test_small_window_is_scored_but_not_drifted(owner_conn, clean_pg, exporter_env):
    _seed_drift(owner_conn, 2.0, n_cur=100)
    cfg = config(clean_pg, min_window_samples=800, reference={"min_samples": 100})
    exp = DriftExporter(cfg, environ=exporter_env)
    rid = exp.scorer.score(cfg.jobs[0])
    psi_v, drifted, n = owner_conn.execute("SELECT psi, drifted, sample_count FROM platform.drift_reports "
                                           "WHERE id = %s", (rid,)).fetchone()
    assert n == 100 and psi_v > 1.0 and drifted is False
    reg = registry_with(exp.collector)
    assert reg.get_sample_value("drift_window_samples", {"model": "llm", "feature": "x"}) == 100
    assert reg.get_sample_value("drift_detected_total", {"model": "llm", "feature": "x"}) == 0
    exp.stop()


def test_finetuning_request_with_cooldown(owner_conn, clean_pg, exporter_env):
    _seed_drift(owner_conn, 1.5)
    cfg = config(clean_pg, finetuning={"enabled": True, "cooldown_seconds": 3600}, reference={"min_samples": 100})
    exp = DriftExporter(cfg, environ=exporter_env)
    first = exp.scorer.score(cfg.jobs[0])
    exp.scorer.score(cfg.jobs[0])
    rows = owner_conn.execute("SELECT model, reason, drift_report_id, status FROM platform.finetuning_requests"
                              ).fetchall()
    assert rows == [("llm", "drift", first, "pending")]  # the second drifted window is inside the cooldown
    reg = registry_with(exp.collector)
    assert reg.get_sample_value("finetuning_triggers_total", {"model": "llm", "reason": "drift"}) == 1
    assert reg.get_sample_value("drift_detected_total", {"model": "llm", "feature": "x"}) == 2
    exp.stop()


def test_no_baseline_until_the_reference_window_is_complete(owner_conn, clean_pg, exporter_env):
    insert_numeric(owner_conn, "llm", "x", np.arange(5000.0), ago(owner_conn, minutes=10))
    cfg = config(clean_pg)  # default reference: the first day of data, not over yet
    exp = DriftExporter(cfg, environ=exporter_env)
    assert exp.scorer.score(cfg.jobs[0]) is None
    reg = registry_with(exp.collector)
    assert reg.get_sample_value("aiplatform_drift_exporter_up") == 1
    assert reg.get_sample_value("drift_psi", {"model": "llm", "feature": "x"}) is None
    exp.stop()


def test_fixed_reference_window_and_categorical_feature(owner_conn, clean_pg, exporter_env):
    t0 = ago(owner_conn, days=5)
    insert_categorical(owner_conn, "llm", "intent", ["a", "b", "c", "d"] * 500, t0, step_seconds=1)
    insert_categorical(owner_conn, "llm", "intent", ["a"] * 1800 + ["z"] * 200, ago(owner_conn, minutes=20))
    start = t0.isoformat()
    end = (t0 + datetime.timedelta(days=1)).isoformat()
    cfg = config(clean_pg, features=[{"name": "intent", "kind": "categorical",
                                      "reference": {"start": start, "end": end, "min_samples": 100}}])
    exp = DriftExporter(cfg, environ=exporter_env)
    exp.scorer.run_due()
    reg = registry_with(exp.collector)
    labels = {"model": "llm", "feature": "intent"}
    assert reg.get_sample_value("drift_window_samples", labels) == 2000
    assert reg.get_sample_value("drift_psi", labels) > 1.0
    assert reg.get_sample_value("drift_current_accuracy", labels) is None  # no labels in this window
    assert reg.get_sample_value("aiplatform_drift_exporter_scoring_duration_seconds", labels) > 0
    exp.stop()


def test_bad_config_names_the_key(clean_pg):
    base = {"database": clean_pg.database_section(), "models": [{"name": "m", "features": [{"name": "x"}]}]}
    cases = [
        ({"drift": {"min_window_samples": "many"}}, "drift.min_window_samples: must be an integer"),
        ({"drift": {"thresholds": {"psi": -1}}}, "drift.thresholds.psi: must be >= 0"),
        ({"drift": {"windw_seconds": 5}}, "drift.windw_seconds: unknown key"),
        ({"models": [{"name": "m", "features": [{"name": "x", "kind": "text"}]}]},
         "models[0].features[0].kind: must be one of numeric, categorical"),
        ({"models": []}, "models: needs at least one model"),
        ({"database": {"password": "x"}}, "database.password: passwords are not read from the config file"),
        ({"drift": {"reference": {"start": "2025-01-01T00:00:00"}}}, "drift.reference: start and end go together"),
        ({"drift": {"reference": {"start": "2025-01-01T00:00:00", "end": "2025-01-02T00:00:00"}}},
         "drift.reference.start: needs a time zone"),
    ]
    for override, message in cases:
        data = dict(base, **override)
        with pytest.raises(ConfigError) as err:
            DriftConfig(Reader(data))
        assert message in str(err.value), (override, str(err.value))


def test_every_family_the_drift_exporter_emits_is_catalogued(owner_conn, clean_pg, exporter_env):
    from aiplatform_exporters import catalog, server

    _seed_drift(owner_conn, 0.5)
    cfg = config(clean_pg, finetuning={"enabled": True}, reference={"min_samples": 100})
    exp = DriftExporter(cfg, environ=exporter_env)
    exp.scorer.score(cfg.jobs[0])
    reg = registry_with(exp.collector, server.ReloadMetrics(exp.metrics_prefix))
    seen = set()
    for fam in reg.collect():
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        entry = catalog.spec(name)
        assert entry.type == fam.type, name
        for s in fam.samples:
            assert catalog.is_known(s.name), s.name
            assert set(s.labels) == set(entry.labels), (s.name, s.labels)
            seen.add(name)
    assert {"drift_psi", "drift_kl_divergence", "drift_window_samples", "drift_detected_total",
            "finetuning_triggers_total", "aiplatform_drift_exporter_up",
            "aiplatform_drift_exporter_config_last_reload_successful",
            "aiplatform_drift_exporter_config_last_reload_success_timestamp_seconds"} <= seen
    exp.stop()


def _sessions(conn):
    return sorted(r[0] for r in conn.execute(
        "SELECT application_name FROM pg_stat_activity WHERE usename = 'aiplatform_exporter'"))


def test_reload_applies_thresholds_features_and_database_settings(owner_conn, clean_pg, exporter_env):
    _seed_drift(owner_conn, 0.4)
    data = {"database": clean_pg.database_section(),
            "drift": {"cache_seconds": 0, "reference": {"min_samples": 100}, "thresholds": {"kl_divergence": 0.2}},
            "models": [{"name": "llm", "features": [{"name": "x"}, {"name": "y"}]}]}
    exp = DriftExporter(DriftConfig(Reader(data)), environ=exporter_env)
    reg = registry_with(exp.collector)
    exp.scorer.run_due(now=1000.0)
    labels = {"model": "llm", "feature": "x"}
    assert reg.get_sample_value("drift_detected_total", labels) == 0
    assert _sessions(owner_conn) == ["aiplatform-drift-exporter", "aiplatform-drift-exporter"]

    new = dict(data, database=dict(clean_pg.database_section(), application_name="drift-reloaded"),
               drift=dict(data["drift"], thresholds={"kl_divergence": 0.01}),
               models=[{"name": "llm", "features": [{"name": "x"}, {"name": "z", "interval_seconds": 5}]}])
    changes = exp.reload(Reader(new))
    assert changes == ["psi/kl thresholds 0.2/0.2 -> 0.2/0.01", "features added: llm/z", "features removed: llm/y",
                       "database.application_name aiplatform-drift-exporter -> drift-reloaded"]
    # x keeps its schedule (next run 300 s after the last), z is new and due now
    assert exp.scorer.due(exp.config.jobs[0]) == 1300.0 and exp.scorer.due(exp.config.jobs[1]) == 0.0
    assert reg.get_sample_value("drift_detected_total", {"model": "llm", "feature": "y"}) is None
    exp.scorer.run_due(now=1300.0)
    assert reg.get_sample_value("drift_detected_total", labels) == 1
    # both idle connections were closed by the reload, the new ones carry the new settings
    assert _sessions(owner_conn) == ["drift-reloaded", "drift-reloaded"]
    exp.stop()


def test_reload_of_an_invalid_config_changes_nothing(clean_pg, exporter_env):
    data = {"database": clean_pg.database_section(), "models": [{"name": "llm", "features": [{"name": "x"}]}]}
    exp = DriftExporter(DriftConfig(Reader(data)), environ=exporter_env)
    before = exp.config
    for bad in (dict(data, drift={"thresholds": {"kl_divergence": -1}}), dict(data, extra_key=1),
                dict(data, database={"port": "x"})):
        with pytest.raises(ConfigError):
            exp.reload(Reader(bad))
        assert exp.config is before and exp.collector.config is before and exp.scorer.config is before
    assert exp.reload(Reader(data)) == []
    exp.stop()
