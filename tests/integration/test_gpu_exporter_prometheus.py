"""The NVML GPU exporter (over the fake NVML of its tests: no GPU here) scraped by Debian's real
Prometheus: the metric types Prometheus records are dcgm-exporter's, counters without the _total
suffix included, and rate() over them works as on a dcgm-exporter node. Against copies of NVIDIA's
released default-counters.csv and official dashboard (files/exporters/tests/data): every default
counter with its type, help text (units included) and label set, and every query of the dashboard.
Run: .venv/bin/python -m pytest -q tests/integration/test_gpu_exporter_prometheus.py
"""
import json
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import local_prometheus
import pytest
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "files/exporters/tests/data"
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
    nvml = FakeNvml([gpu(0, nvlink_tx_kib_per_second=2000000), gpu(1, nvlink_tx_kib_per_second=2000000)])
    exporter = GpuExporter(GpuConfig(hostname="gpu-node-1", xid_events=False, slow_fields_max_age_seconds=0,
                                     sample_interval_seconds=0.5), nvml=nvml)
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
                if (api(url, "/api/v1/query", query="count_over_time(DCGM_FI_DEV_PCIE_REPLAY_COUNTER[1m]) >= 6")["result"]
                        and len(api(url, "/api/v1/query", query="DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL > 0")["result"]) == 2):
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


def nvidia_default_counters():
    """{field: (type, help)} of NVIDIA's released default-counters.csv (test data)."""
    out = {}
    for line in (DATA / "dcgm-exporter-default-counters.csv").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, kind, help_text = [p.strip() for p in line.split(",", 2)]
            out[name] = (kind, help_text)
    return out


# what dcgm-exporter (<= 4.8) writes on a GPU without MIG, and what the scrape adds
SERIES_LABELS = {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION",
                 "job", "instance"}


def test_every_default_counter_with_nvidias_type_help_and_labels(scraped):
    counters = nvidia_default_counters()
    assert len(counters) == 26, sorted(counters)
    metadata = api(scraped, "/api/v1/metadata")
    for name, (kind, help_text) in counters.items():
        if kind == "label":
            series = api(scraped, "/api/v1/series", **{"match[]": "DCGM_FI_DEV_GPU_TEMP"})
            assert {s[name] for s in series} == {"580.105.08"}, (name, series)
            continue
        assert [(m["type"], m["help"]) for m in metadata.get(name, [])] == [(kind, help_text)], name
        series = api(scraped, "/api/v1/series", **{"match[]": name})
        assert sorted(s["gpu"] for s in series) == ["0", "1"], (name, series)
        expected = SERIES_LABELS | ({"err_code", "err_msg"} if name == "DCGM_FI_DEV_XID_ERRORS" else set())
        for s in series:
            assert set(s) - {"__name__"} == expected, (name, s)
            assert s["Hostname"] == "gpu-node-1" and s["device"] == "nvidia" + s["gpu"], s


def test_sampled_fields_in_dcgm_exporters_units(scraped):
    def value(query):
        result = api(scraped, "/api/v1/query", query=query)["result"]
        assert len(result) == 2, (query, result)
        return sorted(float(r["value"][1]) for r in result)

    assert value("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE") == [0.42, 0.42]  # GPM percent 42 -> ratio
    assert value("DCGM_FI_PROF_PCIE_TX_BYTES") == [120000 * 1024] * 2  # NVML KB/s -> bytes/s
    # 2,000,000 KiB a second of NVLink data: 2048 MB/s, dcgm-exporter's unit for this "counter"
    assert all(abs(v - 2048) < 20 for v in value("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL")), \
        value("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL")
    xid = api(scraped, "/api/v1/query", query="DCGM_FI_DEV_XID_ERRORS")["result"]
    assert {(r["metric"]["err_code"], r["metric"]["err_msg"]) for r in xid} == {("0", "No Error")}


def _grafana_regex(values):
    """What Grafana puts in place of a multi-value variable set to All in a Prometheus regex matcher."""
    return "(" + "|".join(re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", v) for v in values) + ")"


def test_every_query_of_nvidias_dashboard_answers(scraped):
    dashboard = json.loads((DATA / "dcgm-exporter-dashboard.json").read_text())
    variables = {}
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", var["query"]).groups()
        values = api(scraped, "/api/v1/label/%s/values" % label, **{"match[]": metric})
        assert values, var["query"]
        variables[var["name"]] = _grafana_regex(values)
    assert sorted(variables) == ["gpu", "instance"]

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    queries = [(p["title"], t["expr"]) for p in panels(dashboard["panels"]) for t in p.get("targets", [])]
    assert len(queries) == 8
    for title, expr in queries:
        for name, regex in variables.items():
            expr = expr.replace("$" + name, regex)
        result = api(scraped, "/api/v1/query", query=expr)["result"]
        assert result, (title, expr)
        assert all(float(r["value"][1]) == float(r["value"][1]) for r in result), (title, result)  # no NaN
