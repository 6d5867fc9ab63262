"""The dashboard truth check (roles/grafana/files/check_dashboards.py) against a real Prometheus.

Debian's prometheus scrapes three small exporters served by this test every second:
  gpu@gpu-node-1   the NVML exporter on a node without a readable GPU: aiplatform_gpu_exporter_up 0
  gpu@gpu-node-2   a GPU exporter with a real GPU: DCGM_FI_DEV_GPU_UTIL of an "NVIDIA H100"
  demo_workload    the demo: simulated GPUs (modelName="Simulated GPU (demo workload)") and platform traffic
and a recording rule reads the demo's traffic. A dashboard with a GPU panel, a panel on the raw
traffic and one on the recorded series is checked:

- all up: every panel passes, each names the jobs and instances behind it, through the rule too;
- gpu-node-1's exporter stopped: the GPU panel and the `job gpu` row fail and name gpu-node-1;
- a GPU node that is not a target, and a panel answered by simulated series only, fail.
Run: .venv/bin/python -m pytest -q tests/integration/test_truth_check_live.py
"""
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import local_prometheus
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "roles" / "grafana" / "files" / "check_dashboards.py"
SIMULATED = 'modelName="Simulated GPU (demo workload)"'
EXPORTERS = {
    "gpu-node-1": "aiplatform_gpu_exporter_up 0\n",
    "gpu-node-2": 'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1",modelName="NVIDIA H100 80GB HBM3"} 37\n',
    "demo": ('DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-simulated-0",%s} 55\n' % SIMULATED
             + 'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-simulated-0",%s} 1024\n' % SIMULATED
             + 'demo_requests_total{handler="/v1/completions"} 42\n'),
}


def dashboard(panels):
    return {"uid": "truth-test", "title": "truth test", "time": {"from": "now-5m", "to": "now"},
            "templating": {"list": [{"type": "query", "name": "instance", "query": "label_values(up, instance)",
                                     "datasource": {"type": "prometheus", "uid": "p"}}]},
            "panels": [{"id": i + 1, "title": title, "type": "timeseries",
                        "datasource": {"type": "prometheus", "uid": "p"},
                        "targets": [{"expr": expr, "refId": "A"}]} for i, (title, expr) in enumerate(panels)]}


PANELS = [("GPU utilization", 'DCGM_FI_DEV_GPU_UTIL{instance=~"$instance"}'),
          ("Requests", 'sum(demo_requests_total{instance=~"$instance"})'),
          ("Requests (recorded)", "sum(job:demo_requests:sum)")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("truth")
    exporters = dict((name, local_prometheus.StaticExporter(body)) for name, body in EXPORTERS.items())
    for e in exporters.values():
        e.start()
    (tmp / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "demo", "interval": "1s", "rules": [
        {"record": "job:demo_requests:sum", "expr": "sum by (job) (demo_requests_total)"}]}]}))
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(tmp / "rules.yml")],
              "scrape_configs": [
                  {"job_name": "gpu", "static_configs": [
                      {"targets": ["127.0.0.1:%d" % exporters[n].port], "labels": {"instance": n}}
                      for n in ("gpu-node-1", "gpu-node-2")]},
                  {"job_name": "demo_workload", "static_configs": [
                      {"targets": ["127.0.0.1:%d" % exporters["demo"].port], "labels": {"instance": "monitoring-1"}}]}]}
    proc, url, log = local_prometheus.start(tmp, config)
    (tmp / "dashboard.json").write_text(json.dumps(dashboard(PANELS)))
    (tmp / "simulated-only.json").write_text(json.dumps(dashboard([("GPU memory", "DCGM_FI_DEV_FB_USED")])))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                query = url + "/api/v1/query?query=count(up%3D%3D1)%20and%20count(job%3Ademo_requests%3Asum)"
                with urllib.request.urlopen(query, timeout=5) as r:
                    if json.loads(r.read())["data"]["result"]:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (tmp / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
        time.sleep(2)
        yield {"url": url, "tmp": tmp, "exporters": exporters}
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
        for e in exporters.values():
            if e.server:
                e.stop()


def check(stack, *args, dashboard_file="dashboard.json"):
    proc = subprocess.run([sys.executable, str(CHECK), "--prometheus-url", stack["url"], "--no-sql",
                           "--scrape-interval", "1s", "--json", str(stack["tmp"] / "result.json"),
                           str(stack["tmp"] / dashboard_file), *args],
                          capture_output=True, text=True, timeout=120)
    rows = json.loads((stack["tmp"] / "result.json").read_text()) if proc.returncode in (0, 1) else []
    return proc, dict((r["panel"], r) for r in rows)


GPU_NODES = ["--gpu-instance", "gpu-node-1", "--gpu-instance", "gpu-node-2"]


def test_real_sources_pass_and_are_named(stack):
    proc, rows = check(stack, *GPU_NODES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gpu = rows["GPU utilization (#1)"]
    assert gpu["answered_by"] == "gpu@gpu-node-2; SIMULATED: demo_workload@monitoring-1", gpu
    assert rows["Requests (#2)"]["answered_by"] == "demo_workload@monitoring-1"
    # traced through the recording rule to the raw series' job and instance
    assert rows["Requests (recorded) (#3)"]["answered_by"] == "demo_workload@monitoring-1"
    assert rows["job gpu"]["ok"] and rows["job gpu"]["result"] == "up on 2/2 targets"
    assert rows["job demo_workload"]["ok"]
    assert "ANSWERED BY" in proc.stdout


def test_a_gpu_node_not_a_target_fails(stack):
    proc, rows = check(stack, *GPU_NODES, "--gpu-instance", "gpu-node-3")
    assert proc.returncode == 1
    gpu = rows["GPU utilization (#1)"]
    assert not gpu["ok"] and "GPU NODE NOT ANSWERING: gpu-node-3 (not a target of job gpu)" in gpu["result"], gpu
    assert "MISSING: gpu-node-3" in rows["job gpu"]["result"]


def test_a_panel_answered_only_by_simulated_series_fails(stack):
    # nobody but the demo serves GPU memory: simulated only
    proc, rows = check(stack, dashboard_file="simulated-only.json")
    assert proc.returncode == 1
    assert rows["GPU memory (#1)"]["result"] == "1 series, ONLY SIMULATED", rows["GPU memory (#1)"]
    # with the GPU nodes named: gpu-node-1 answers for itself (no readable GPU), gpu-node-2 has a GPU
    # and publishes no GPU memory: the simulated series must not stand in for it
    proc, rows = check(stack, *GPU_NODES, dashboard_file="simulated-only.json")
    assert proc.returncode == 1
    result = rows["GPU memory (#1)"]["result"]
    assert "GPU NODE NOT ANSWERING: gpu-node-2 (up, but no aiplatform_gpu_exporter_up series)" in result, result
    assert "gpu-node-1" not in result


def test_stopped_gpu_exporter_fails_naming_the_node(stack):
    stack["exporters"]["gpu-node-1"].stop()
    try:
        deadline = time.monotonic() + 30
        while True:
            proc, rows = check(stack, *GPU_NODES)
            if proc.returncode == 1 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert proc.returncode == 1, proc.stdout
        gpu = rows["GPU utilization (#1)"]
        assert "GPU NODE NOT ANSWERING: gpu-node-1 (job gpu target down)" in gpu["result"], gpu
        assert rows["job gpu"]["result"] == "up on 1/2 targets, DOWN: gpu-node-1"
        failing = [line for line in proc.stdout.splitlines() if line.startswith("!!")]
        assert len(failing) == 2, failing          # the GPU panel and the job gpu row; the others stay ok
    finally:
        stack["exporters"]["gpu-node-1"].start()
