"""Learning engine: in-process metrics, the recording API and the exporter on a real PostgreSQL."""

import datetime
import subprocess
import sys

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from aiplatform_exporters import catalog
from aiplatform_exporters.config import ConfigError, Reader
from aiplatform_exporters.learning import LearningMetrics, LearningRecorder
from aiplatform_exporters.learning.exporter import LearningConfig, LearningExporter
from conftest import OWNER, OWNER_PASSWORD
from helpers import registry_with


def test_importing_registers_nothing_globally():
    code = ("import prometheus_client, aiplatform_exporters.learning, aiplatform_exporters.instrumentation;"
            "names = set(prometheus_client.REGISTRY._names_to_collectors);"
            "print(sorted(n for n in names if n.startswith(('training', 'lora', 'http_', 'mcp_'))))")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True,
                         universal_newlines=True).stdout.strip()
    assert out == "[]"


def test_learning_metrics_on_a_given_registry():
    reg = CollectorRegistry()
    m = LearningMetrics(reg)
    assert len(LearningMetrics.NAMES) >= 20
    for name in LearningMetrics.NAMES:
        assert catalog.is_known(name)
    m.observe_run("llm", "drift", "succeeded", duration_seconds=812.0, samples=5000, training_loss=0.41,
                  validation_loss=0.47, ewc_lambda=0.4, fisher_matrix_size_bytes=1 << 20, replay_buffer_size=900,
                  replay_buffer_capacity=1000, finished_at=1700000000)
    m.observe_lora_version("llm", "v1", active=True, accuracy=0.9)
    m.observe_lora_version("llm", "v2", active=True, accuracy=0.92)
    m.trigger_finetuning("llm", "drift")
    g = reg.get_sample_value
    assert g("training_loss", {"model": "llm"}) == 0.41
    assert g("training_runs_total", {"model": "llm", "trigger": "drift", "status": "succeeded"}) == 1
    assert g("training_samples_total", {"model": "llm"}) == 5000
    assert g("lora_versions_total", {"model": "llm"}) == 2
    assert g("lora_active_version_info", {"model": "llm", "version_id": "v1"}) is None
    assert g("lora_active_version_info", {"model": "llm", "version_id": "v2"}) == 1
    assert g("model_accuracy", {"model": "llm"}) == 0.92
    assert g("finetuning_triggers_total", {"model": "llm", "reason": "drift"}) == 1
    assert g("last_training_timestamp_seconds", {"model": "llm"}) == 1700000000
    # a second instance on another registry is independent; on the same registry it is refused
    LearningMetrics(CollectorRegistry())
    with pytest.raises(ValueError):
        LearningMetrics(reg)
    with pytest.raises(ValueError):
        LearningMetrics(None)


def _recorder(pg):
    return LearningRecorder(psycopg.connect(pg.conninfo(OWNER, OWNER_PASSWORD), autocommit=True))


@pytest.mark.integration
def test_recorder_activation_is_atomic_and_exclusive(clean_pg):
    rec = _recorder(clean_pg)
    rec.record_lora_version("v1", "llm", {"accuracy": 0.8}, activate=True)
    rec.record_lora_version("v2", "llm", {"accuracy": 0.85})
    rec.record_lora_version("o1", "other", activate=True)
    rec.activate_lora_version("v2")
    rows = rec.conn.execute("SELECT version_id, is_active, deployed_at IS NOT NULL FROM platform.lora_versions "
                            "ORDER BY version_id").fetchall()
    assert rows == [("o1", True, True), ("v1", False, True), ("v2", True, True)]
    with pytest.raises(LookupError):
        rec.activate_lora_version("nope")
    # still exactly one active version per model after the failed call
    assert rec.conn.execute("SELECT count(*) FROM platform.lora_versions WHERE is_active AND base_model = 'llm'"
                            ).fetchone()[0] == 1
    with pytest.raises(ValueError):
        rec.start_training_run("llm", trigger="cron")
    rec.close()


@pytest.mark.integration
def test_learning_exporter_serves_the_same_names_from_postgresql(clean_pg, exporter_env):
    rec = _recorder(clean_pg)
    t = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
    rec.record_training_run("llm", "schedule", "succeeded", t, t + datetime.timedelta(seconds=600), samples=1000,
                            training_loss=0.6, validation_loss=0.7, ewc_lambda=0.2)
    rec.record_training_run("llm", "drift", "failed", t + datetime.timedelta(hours=1),
                            t + datetime.timedelta(hours=1, seconds=30), samples=50)
    rec.record_lora_version("v1", "llm", {"accuracy": 0.88})
    run = rec.start_training_run("llm", "drift", started_at=t + datetime.timedelta(hours=2))
    rec.finish_training_run(run, "succeeded", finished_at=t + datetime.timedelta(hours=2, seconds=900),
                            samples=4000, training_loss=0.4, validation_loss=0.45, ewc_lambda=0.5,
                            fisher_matrix_size_bytes=2048, replay_buffer_size=300, replay_buffer_capacity=1000,
                            lora_version_id="v1")
    rec.activate_lora_version("v1")
    rec.start_training_run("llm", "manual")  # still running
    exp = LearningExporter(LearningConfig(Reader({"database": clean_pg.database_section(),
                                                  "learning": {"cache_seconds": 0}})), environ=exporter_env)
    reg = registry_with(exp.collector)
    g = reg.get_sample_value
    llm = {"model": "llm"}
    assert g("aiplatform_learning_exporter_up") == 1
    assert g("training_loss", llm) == 0.4 and g("validation_loss", llm) == 0.45 and g("ewc_lambda", llm) == 0.5
    assert g("training_duration_seconds", llm) == 900
    assert g("fisher_matrix_size_bytes", llm) == 2048
    assert g("replay_buffer_size", llm) == 300 and g("replay_buffer_capacity", llm) == 1000
    assert g("last_training_timestamp_seconds", llm) == (t + datetime.timedelta(hours=2, seconds=900)).timestamp()
    assert g("training_samples_total", llm) == 5000  # succeeded runs only
    assert g("training_runs_total", {"model": "llm", "trigger": "schedule", "status": "succeeded"}) == 1
    assert g("training_runs_total", {"model": "llm", "trigger": "drift", "status": "failed"}) == 1
    assert g("training_runs_total", {"model": "llm", "trigger": "drift", "status": "succeeded"}) == 1
    assert g("training_in_progress", llm) == 1
    assert g("lora_versions_total", llm) == 1
    assert g("lora_active_version_info", {"model": "llm", "version_id": "v1"}) == 1
    assert g("model_accuracy", llm) == 0.88
    # every family the exporter emits is in the catalog, with the catalog's type
    for fam in reg.collect():
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        assert catalog.spec(name).type == fam.type, name

    # a row that cannot be read is logged, counted and skipped; the rest is served
    rec.record_lora_version("v2", "llm", {"accuracy": "high"}, activate=True)
    assert g("model_accuracy", llm) is None
    assert g("lora_active_version_info", {"model": "llm", "version_id": "v2"}) == 1
    assert g("aiplatform_learning_exporter_bad_rows_total", {"table": "lora_versions"}) >= 1
    assert g("training_loss", llm) == 0.4
    exp.stop()
    rec.close()


def test_learning_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"learning\.models\[1\]: must be a non-empty string"):
        LearningConfig(Reader({"learning": {"models": ["a", 3]}}))
    with pytest.raises(ConfigError, match=r"learning\.cache_seconds: must be a number"):
        LearningConfig(Reader({"learning": {"cache_seconds": "soon"}}))
    with pytest.raises(ConfigError, match=r"database\.port: must be <= 65535"):
        LearningConfig(Reader({"database": {"port": 70000}}))
