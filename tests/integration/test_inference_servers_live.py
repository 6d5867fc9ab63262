"""The Platform Overview on a vLLM server, through a real Prometheus and the dashboard truth check.

The demo workload runs in `metrics_format: vllm` (it publishes vLLM 0.11's names and none of the
platform's inference_*/cache_* names, tests/unit/test_exporter_roles.py checks that) and a static
GPU exporter stands for a GPU node. Debian's Prometheus scrapes both every second and evaluates the
collection's recording rules as the prometheus role renders them (playbooks/render.yml); the truth
check the verify_dashboards playbook runs (roles/grafana/files/check_dashboards.py) then asks every
panel of the rendered Platform Overview:

- with the rules and the job as rendered, every panel answers, the inference and LLM serving panels
  from the vLLM target (the job puts back the colon of vLLM's names, which prometheus_client writes as
  "_" when Prometheus asks for OpenMetrics: without it no vllm:* series would exist);
- with the rules' vLLM selectors renamed away (the mapping removed), exactly the panels that only
  the mapping can fill fail, and the $model variable has no value.
Run: .venv/bin/python -m pytest -q tests/integration/test_inference_servers_live.py
"""
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import local_prometheus
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHECK = REPO / "roles" / "grafana" / "files" / "check_dashboards.py"
DEMO = REPO / "roles" / "demo_workload" / "files" / "demo_workload.py"
GPU_BODY = (b'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1",modelName="NVIDIA H100 80GB HBM3"} 61\n'
            b'DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-1",modelName="NVIDIA H100 80GB HBM3"} 40960\n'
            b'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-1",modelName="NVIDIA H100 80GB HBM3"} 58\n'
            b'aiplatform_gpu_exporter_up 1\n')
# Panels only the vLLM mapping can fill on this server (titles as the check names them)
MAPPED = {"Cache hit ratio (#6)", "Token usage by type (#5)", "Inference queue depth (#7)", "Batch size (#8)",
          "Time to first token P50 / P95 (#12)", "Inter-token latency P50 / P95 (#13)",
          "Generated tokens per second (#14)", "KV-cache use (#15)"}


def _render(tmp, demo_port):
    """The recording rules, the Platform Overview and the inference_servers job, as the roles render them
    for an inventory whose inference server is the demo."""
    out = tmp / "render"
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"))
    targets = {"prometheus_inference_server_targets": [{"address": "127.0.0.1:%d" % demo_port, "instance": "vllm-1"}]}
    proc = subprocess.run([BIN / "ansible-playbook", "-i", "inventories/lab/hosts.yml", "playbooks/render.yml",
                           "-e", f"render_dir={out}", "-e", json.dumps(targets), "--tags", "prometheus,grafana"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rules = next(out.glob("*/etc/prometheus/rules/aiplatform-recording.rules.yml"))
    config = yaml.safe_load(next(out.glob("*/etc/prometheus/prometheus.yml")).read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "inference_servers")
    return rules, out / "_grafana_api" / "dashboards" / "platform-overview.json", job


def _query(url, expr):
    with urllib.request.urlopen(url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=5) as r:
        return json.loads(r.read())["data"]["result"]


def _prometheus(tmp, rules, inference_job, gpu_port):
    tmp.mkdir()
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(rules)],
              "scrape_configs": [
                  {"job_name": "gpu", "static_configs": [
                      {"targets": ["127.0.0.1:%d" % gpu_port], "labels": {"instance": "gpu-node-1"}}]},
                  inference_job]}
    return local_prometheus.start(tmp, config)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inference")
    demo_port = local_prometheus.free_port()
    rules, dashboard, inference_job = _render(tmp, demo_port)
    # the mapping removed: the rules as rendered, with every vLLM selector renamed to a name nobody publishes
    broken = tmp / "no-vllm.rules.yml"
    broken.write_text(rules.read_text().replace("vllm:", "not_vllm:"))
    (tmp / "demo.yml").write_text(yaml.safe_dump({
        "listen": "127.0.0.1:%d" % demo_port, "metrics_format": "vllm", "requests_per_second": 25,
        "concurrency": 8, "models": ["llm-main"], "cache_hit_ratio": 0.7,
        "slow_phase": {"period_seconds": 0, "duration_seconds": 0, "latency_factor": 1.0, "error_ratio": 0.05},
        "mcp_servers": {"filesystem": {"operations": ["read_file"], "latency_seconds": 0.01, "error_ratio": 0.1}}}))
    demo_log = open(tmp / "demo.log", "wb")
    demo = subprocess.Popen([sys.executable, str(DEMO), "--config", str(tmp / "demo.yml")],
                            stdout=demo_log, stderr=subprocess.STDOUT)
    gpu = local_prometheus.StaticExporter(GPU_BODY).start()
    started = []
    try:
        for name, rule_file in (("mapped", rules), ("unmapped", broken)):
            started.append((name,) + _prometheus(tmp / name, rule_file, inference_job, gpu.port))
        urls = dict((name, url) for name, _, url, _ in started)
        deadline = time.monotonic() + 90
        ready = ("instance_model_le:inference_time_to_first_token_seconds_bucket:rate5m > 0",
                 "instance_model_le:inference_inter_token_latency_seconds_bucket:rate5m > 0",
                 "instance_model:inference_kv_cache_usage:ratio", "job:inference_prefix_cache_hit:ratio_rate5m",
                 'up{job="gpu"} == 1')
        while True:
            try:
                if all(_query(urls["mapped"], expr) for expr in ready) and _query(urls["unmapped"], 'up{job="gpu"} == 1'):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and demo.poll() is None, (
                (tmp / "demo.log").read_text()[-2000:] + (tmp / "mapped" / "prometheus.log").read_text()[-2000:])
            time.sleep(1)
        time.sleep(3)   # a few more evaluations of every rule
        yield {"urls": urls, "tmp": tmp, "dashboard": dashboard}
    finally:
        for _, proc, _, log in started:
            proc.terminate()
            proc.wait(20)
            log.close()
        demo.terminate()
        demo.wait(20)
        demo_log.close()
        gpu.stop()


def check(stack, name):
    result = stack["tmp"] / ("%s.json" % name)
    proc = subprocess.run([sys.executable, str(CHECK), "--prometheus-url", stack["urls"][name], "--no-sql",
                           "--scrape-interval", "1s", "--gpu-instance", "gpu-node-1", "--json", str(result),
                           str(stack["dashboard"])], capture_output=True, text=True, timeout=180)
    rows = json.loads(result.read_text()) if proc.returncode in (0, 1) else []
    return proc, dict((r["panel"], r) for r in rows)


def test_every_panel_answers_from_the_vllm_server(stack):
    proc, rows = check(stack, "mapped")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert MAPPED <= set(rows), sorted(rows)
    for panel in MAPPED:
        assert rows[panel]["ok"] and rows[panel]["answered_by"] == "inference_servers@vllm-1", rows[panel]
    # the HTTP panels read the series of vLLM's API server too (status "2xx"/"5xx")
    assert rows["HTTP error rate (#4)"]["answered_by"] == "inference_servers@vllm-1", rows["HTTP error rate (#4)"]
    assert rows["$model"]["ok"], rows["$model"]


def test_the_series_keep_vllms_names(stack):
    names = {r["metric"]["__name__"] for r in _query(stack["urls"]["mapped"], 'count by (__name__) ({job="inference_servers"})')}
    assert {"vllm:num_requests_waiting", "vllm:time_to_first_token_seconds_bucket", "vllm:prompt_tokens_total"} <= names
    assert not [n for n in names if n.startswith("vllm_")], sorted(names)


def test_without_the_mapping_exactly_the_mapped_panels_fail(stack):
    proc, rows = check(stack, "unmapped")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failing = {panel for panel, row in rows.items() if not row["ok"]}
    assert failing == MAPPED | {"$model"}, (sorted(failing), proc.stdout)
