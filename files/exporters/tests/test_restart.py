"""PostgreSQL goes away and comes back: the exporters say so and recover without a restart."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiplatform_exporters.config import Reader
from aiplatform_exporters.drift.exporter import DriftConfig, DriftExporter
from aiplatform_exporters.learning.exporter import LearningConfig, LearningExporter
from aiplatform_exporters.server import serve
from helpers import registry_with

pytestmark = pytest.mark.integration


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_postgresql_restart_exporters_recover_by_themselves(clean_pg, owner_conn, exporter_env):
    owner_conn.execute("INSERT INTO platform.finetuning_requests (model, reason) VALUES ('llm', 'manual')")
    owner_conn.execute("INSERT INTO platform.lora_versions (version_id, base_model) VALUES ('v1', 'llm')")
    owner_conn.close()
    drift = DriftExporter(DriftConfig(Reader({
        "database": clean_pg.database_section(), "drift": {"cache_seconds": 0},
        "models": [{"name": "llm", "features": [{"name": "x"}]}]})), environ=exporter_env)
    learning = LearningExporter(LearningConfig(Reader({
        "database": clean_pg.database_section(), "learning": {"cache_seconds": 0}})), environ=exporter_env)
    servers = [serve(registry_with(drift.collector), "127.0.0.1", 0),
               serve(registry_with(learning.collector), "127.0.0.1", 0)]
    ports = [s.server_port for s in servers]
    trig = ("finetuning_triggers_total", (("model", "llm"), ("reason", "manual")))
    # the configured model's own reason is served at 0 while the database answers, and not at all when not
    zero = ("finetuning_triggers_total", (("model", "llm"), ("reason", "drift")))
    lora = ("lora_versions_total", (("model", "llm"),))
    try:
        d, l = scrape(ports[0]), scrape(ports[1])
        assert d[("aiplatform_drift_exporter_up", ())] == 1 and d[trig] == 1 and d[zero] == 0
        assert l[("aiplatform_learning_exporter_up", ())] == 1 and l[lora] == 1

        clean_pg.stop()
        d, l = scrape(ports[0]), scrape(ports[1])  # still answering, HTTP 200
        assert d[("aiplatform_drift_exporter_up", ())] == 0 and trig not in d and zero not in d
        assert l[("aiplatform_learning_exporter_up", ())] == 0 and lora not in l
        assert d[("aiplatform_drift_exporter_source_errors_total", (("operation", "collect"),))] >= 1
        # the scheduler's failures are counted too, and do not kill it
        drift.scorer.run_due()
        assert scrape(ports[0])[("aiplatform_drift_exporter_source_errors_total", (("operation", "score"),))] >= 1

        clean_pg.start()
        d, l = scrape(ports[0]), scrape(ports[1])
        assert d[("aiplatform_drift_exporter_up", ())] == 1 and d[trig] == 1
        assert l[("aiplatform_learning_exporter_up", ())] == 1 and l[lora] == 1
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
        drift.stop()
        learning.stop()
        if not clean_pg.is_running():
            clean_pg.start()
