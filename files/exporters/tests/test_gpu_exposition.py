"""/metrics of the GPU exporter as a scraper reads it: dcgm-exporter's counters without the _total
suffix declared `counter` under their exact names, in the text format 0.0.4 whatever the client asks."""

import gzip
import re
import time
import urllib.request

from prometheus_client import CollectorRegistry

from aiplatform_exporters import server
from aiplatform_exporters.gpu import GpuConfig
from aiplatform_exporters.gpu.exporter import GpuExporter
from fake_nvml import FakeNvml, gpu

UNSUFFIXED_COUNTERS = {"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
                       "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
                       "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
                       "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"}


def _serve(**cfg):
    cfg.setdefault("hostname", "node1")
    cfg.setdefault("xid_events", False)
    cfg.setdefault("sample_interval_seconds", 0.5)
    exporter = GpuExporter(GpuConfig(**cfg), nvml=FakeNvml([gpu(0, pcie_replay=7, remapped=(2, 1, False, False),
                                                                ecc_dbe_volatile=3, nvlink_crc_flit_errors=41)]))
    registry = CollectorRegistry()
    for c in exporter.collectors():
        registry.register(c)
    httpd = server.serve(registry, "127.0.0.1", 0, exposition=exporter.exposition)
    return exporter, httpd, "http://127.0.0.1:%d/metrics" % httpd.server_port


def _get(url, **headers):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return r.headers, r.read()


def _sampled_text(url):
    """/metrics once the sampler's second round is in (the GPM ratios and the NVLink rate need two)."""
    deadline = time.monotonic() + 10
    while True:
        text = _get(url)[1].decode()
        if "DCGM_FI_PROF_DRAM_ACTIVE{" in text and "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL{" in text:
            return text
        assert time.monotonic() < deadline, text
        time.sleep(0.1)


def _types(text):
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def test_scraped_type_lines_declare_the_unsuffixed_counters():
    exporter, httpd, url = _serve()
    try:
        text = _sampled_text(url)
        headers, body = _get(url)
        types = _types(text)
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        for name in UNSUFFIXED_COUNTERS:
            assert types[name] == "counter", name
            assert re.search(r"^%s\{[^}]*\} [0-9.e+]+$" % name, text, re.M), name  # samples keep the name
            assert name + "_total" not in text
        assert types["DCGM_FI_DEV_GPU_TEMP"] == "gauge"
        assert "untyped" not in types.values(), types
        assert re.search(r'^DCGM_FI_DEV_PCIE_REPLAY_COUNTER\{.*gpu="0".*\} 7\.0$', text, re.M)
        assert re.search(r'^DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS\{.*\} 2\.0$', text, re.M)
        assert re.search(r'^DCGM_FI_DEV_ECC_DBE_VOL_TOTAL\{.*gpu="0".*\} 3\.0$', text, re.M)
        assert re.search(r'^DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL\{.*gpu="0".*\} 41\.0$', text, re.M)
    finally:
        httpd.shutdown()
        exporter.stop()


def test_openmetrics_asked_text_format_served_and_gzip():
    exporter, httpd, url = _serve()
    try:
        # Prometheus asks for OpenMetrics first; dcgm-exporter answers the text format, so does this exporter
        headers, body = _get(url, Accept="application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
                             **{"Accept-Encoding": "gzip"})
        assert headers["Content-Encoding"] == "gzip"
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = gzip.decompress(body).decode()
        assert _types(text)["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == "counter"
        assert "# EOF" not in text
    finally:
        httpd.shutdown()
        exporter.stop()


def test_renamed_and_excluded_counters():
    exporter, httpd, url = _serve(rename={"DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "gpu_pcie_replays"},
                                  exclude_fields=["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"])
    try:
        text = _get(url)[1].decode()
        types = _types(text)
        assert types["gpu_pcie_replays"] == "counter"
        assert "DCGM_FI_DEV_PCIE_REPLAY_COUNTER" not in types
        assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" not in text
    finally:
        httpd.shutdown()
        exporter.stop()


def test_catalog_counters_without_total_are_dcgm_exporters():
    assert GpuConfig(hostname="n").unsuffixed_counters == UNSUFFIXED_COUNTERS


def test_help_and_type_of_every_published_field_are_nvidias():
    """Against NVIDIA's released default-counters.csv (tests/data): every DCGM field the NVML exporter
    publishes has dcgm-exporter's type and help text; the fields it does not publish yet are listed."""
    import os

    path = os.path.join(os.path.dirname(__file__), "data", "dcgm-exporter-default-counters.csv")
    nvidia = {}
    with open(path) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, kind, help_text = [p.strip() for p in line.split(",", 2)]
                nvidia[name] = (kind, help_text)
    exporter, httpd, url = _serve()
    try:
        text = _sampled_text(url)
    finally:
        httpd.shutdown()
        exporter.stop()
    types = _types(text)
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M))
    published = sorted(n for n in types if n in nvidia)
    for name in published:
        assert (types[name], helps[name]) == nvidia[name], name
    # the driver version is a label of every series, as in dcgm-exporter
    assert re.search(r'^DCGM_FI_DEV_GPU_TEMP\{.*DCGM_FI_DRIVER_VERSION="580.105.08".*\}', text, re.M)
    missing = sorted(set(nvidia) - set(published) - {"DCGM_FI_DRIVER_VERSION"})
    assert missing == [], missing
    assert len(published) == 25  # dcgm-exporter's 25 series fields (its 26 rows less the driver label)
    # the error counters the alerts use, commented out in NVIDIA's defaults: type and help as in its
    # dcp-metrics-included.csv
    for name, help_text in (("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors."),
                            ("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
                             "Total number of NVLink flow-control CRC errors.")):
        assert (types[name], helps[name]) == ("counter", help_text), name
