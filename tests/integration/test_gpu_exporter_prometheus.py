"""The NVML GPU exporter (over the fake NVML of its tests: no GPU here) scraped by Debian's real
Prometheus: the metric types Prometheus records are dcgm-exporter's, counters without the _total
suffix included, and rate() over them works as on a dcgm-exporter node.
Run: .venv/bin/python -m pytest -q tests/integration/test_gpu_exporter_prometheus.py
"""
import json
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import local_prometheus
import pytest
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "files/exporters/tests"))
from fake_nvml import FakeNvml, gpu  # noqa: E402

from aiplatform_exporters import catalog, server  # noqa: E402
from aiplatform_exporters.gpu import GpuConfig  # noqa: E402
from aiplatform_exporters.gpu.exporter import GpuExporter  # noqa: E402

def api(url, path, **params):
    with urllib.request.urlopen(url + path + "?" + urllib.parse.urlencode(params), timeout=10) as r:
        return json.loads(r.read())["data"]


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-prom")
    nvml = FakeNvml([gpu(0), gpu(1)])
    exporter = GpuExporter(GpuConfig(hostname="gpu-node-1", xid_events=False, slow_fields_max_age_seconds=0),
                           nvml=nvml)
    registry = CollectorRegistry()
    for c in exporter.collectors():
        registry.register(c)
    httpd = server.serve(registry, "127.0.0.1", 0, exposition=exporter.exposition)
    proc, url, log = local_prometheus.start(tmp, {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "gpu", "static_configs": [
            {"targets": ["127.0.0.1:%d" % httpd.server_port], "labels": {"instance": "gpu-node-1"}}]}]})
    try:
        deadline = time.monotonic() + 60
        while True:
            # the replay counter of GPU 0 grows by 3 per second: wait for enough samples for rate()
            for g in nvml.gpus:
                g["pcie_replay"] += 3
                g["energy_mj"] += 700000
            try:
                if api(url, "/api/v1/query", query="count_over_time(DCGM_FI_DEV_PCIE_REPLAY_COUNTER[1m]) >= 6")["result"]:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (tmp / "prometheus.log").read_text()[-2000:]
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
        httpd.shutdown()
        exporter.stop()


def test_prometheus_records_the_catalog_types(scraped):
    metadata = api(scraped, "/api/v1/metadata")
    gpu_fields = [m for m in catalog.CATALOG.values() if m.name.startswith("DCGM_FI_")]
    seen = 0
    for m in gpu_fields:
        if m.name not in metadata:
            continue  # not published by this fake GPU (MIG, NVLink, ...): the unit tests cover those
        seen += 1
        assert [e["type"] for e in metadata[m.name]] == [m.type], (m.name, metadata[m.name])
    assert seen >= 15, sorted(metadata)
    for name in ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
                 "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS"):
        assert metadata[name][0]["type"] == "counter", (name, metadata.get(name))
        assert name + "_total" not in metadata


def test_rate_over_the_counters(scraped):
    result = api(scraped, "/api/v1/query", query="rate(DCGM_FI_DEV_PCIE_REPLAY_COUNTER[30s])")["result"]
    assert sorted(r["metric"]["gpu"] for r in result) == ["0", "1"], result
    assert all(float(r["value"][1]) > 0 for r in result), result
