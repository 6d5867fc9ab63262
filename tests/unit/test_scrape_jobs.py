"""Job names are defined once, by the role that owns the service (docs/scrape-targets.md): the
preflight knows all of them before any host is changed, and the alert rules and dashboards name no job
that no role defines.

The hosts of the inventory are unreachable addresses (TEST-NET-1): a run that got past the preflight
would report them UNREACHABLE. Run: .venv/bin/pytest tests/unit -q -k scrape_jobs
"""
import json
import re

import pytest
import yaml
from test_render import render
from test_thresholds_validation import REPO, run_playbook

# The job names the roles define, read from the roles themselves, not retyped here.
ROLE_JOBS = sorted(
    [value for path in sorted(REPO.glob("roles/*/vars/main.yml"))
     for key, value in (yaml.safe_load(path.read_text()) or {}).items() if key.endswith("_scrape_job")]
    + [e["job"] for e in yaml.safe_load((REPO / "roles/platform_exporters/vars/main.yml").read_text())
       ["__platform_exporters_managed"]])


def test_the_roles_define_the_jobs_once():
    assert len(ROLE_JOBS) == len(set(ROLE_JOBS)), ROLE_JOBS
    assert set(ROLE_JOBS) >= {"node", "gpu", "drift_exporter", "learning_exporter", "postgres_exporter",
                              "demo_workload", "alertmanager"}, ROLE_JOBS


@pytest.mark.parametrize("job", ["postgres_exporter", "gpu", "prometheus"])
def test_a_platform_service_reusing_a_job_name_fails_in_preflight(tmp_path, job):
    # postgres_exporter is off by default: its name is reserved all the same (enabling it later must not clash)
    services = {"prometheus_platform_services": [{"name": job, "targets": ["gpu1:8000"]}]}
    proc, out = run_playbook(tmp_path, REPO / "playbooks" / "site.yml", services)
    assert proc.returncode != 0, out
    assert "prometheus_platform_services[0]: each entry needs a unique `name`" in out, out
    listed = re.search(r"not one of ([a-z_, ]+)\)", out)
    assert listed and sorted(listed.group(1).split(", ")) == sorted(ROLE_JOBS + ["prometheus"]), out
    assert "UNREACHABLE" not in out and "Gathering Facts" not in out, out


def _job_matchers(text):
    """Literal job values that PromQL matchers in a rendered file select (job="x", job=~"a|b")."""
    text = text.replace('\\"', '"')
    out = set()
    for op, value in re.findall(r'\bjob\s*(=~|=|!=|!~)\s*"([^"]*)"', text):
        if "{{" in value or "$" in value:  # a template of the alert's own label, or a dashboard variable
            continue
        out.update(value.split("|") if op.endswith("~") else [value])
    return out


def test_rules_and_dashboards_name_only_jobs_that_a_role_defines(tmp_path):
    proc, out = render(tmp_path, {"demo_workload_enabled": True, "platform_exporters_postgres_exporter_enabled": True})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = yaml.safe_load((out / "mon1/etc/prometheus/prometheus.yml").read_text())
    scraped = {job["job_name"] for job in config["scrape_configs"]}
    # every job Prometheus scrapes is Prometheus' own or registered by a role, on the host that serves it
    registered = {}
    for fact in out.glob("*/etc/ansible/facts.d/aiplatform_scrape_*.fact"):
        registered.setdefault(fact.name[len("aiplatform_scrape_"):-len(".fact")], set()).add(fact.parts[-5])
    assert scraped == set(registered) | {"prometheus"}, (scraped, registered)
    assert set(registered) == set(ROLE_JOBS), registered
    for job in config["scrape_configs"]:
        if job["job_name"] in registered:
            assert {g["labels"]["instance"] for g in job["static_configs"]} == registered[job["job_name"]], job
    # and the rules and dashboards select only such jobs
    files = sorted(out.glob("mon1/etc/prometheus/rules/*.yml")) + sorted(out.glob("_grafana_api/dashboards/*.json"))
    assert len(files) >= 5, files
    named = dict((f.name, _job_matchers(f.read_text())) for f in files)
    unknown = dict((name, sorted(jobs - scraped)) for name, jobs in named.items() if jobs - scraped)
    assert not unknown, unknown


def test_the_job_matcher_scan_sees_a_job_no_role_defines():
    rule = json.dumps({"expr": 'up{job="gpu_exporter"} == 0 or up{job=~"node|vllm"}', "x": 'job="{{ $labels.job }}"'})
    assert _job_matchers(rule) == {"gpu_exporter", "node", "vllm"}


def test_inference_servers_job_from_a_group_and_a_list(tmp_path):
    extra = {"prometheus_inference_servers_group": "gpu_nodes", "prometheus_inference_servers_port": 8001,
             "prometheus_inference_server_targets": [{"address": "192.0.2.60:8000", "instance": "vllm-ext"},
                                                     "192.0.2.61:8000"]}
    proc, out = render(tmp_path, extra, "--tags", "prometheus")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = yaml.safe_load((out / "mon1/etc/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["inference_servers"]
    assert {g["labels"]["instance"]: g["targets"] for g in job["static_configs"]} == {
        "gpu1": ["192.0.2.11:8001"], "gpu2": ["192.0.2.12:8001"],   # the group's hosts at their scrape address
        "vllm-ext": ["192.0.2.60:8000"], "192.0.2.61": ["192.0.2.61:8000"]}
    assert (job["scheme"], job["metrics_path"]) == ("http", "/metrics")
    # vLLM's colon, written as "_" by prometheus_client when Prometheus asks for OpenMetrics, put back
    assert job["metric_relabel_configs"] == [{"source_labels": ["__name__"], "regex": "vllm_(.+)",
                                              "target_label": "__name__", "replacement": "vllm:$1"}]


def test_no_inference_servers_no_job(tmp_path):
    proc, out = render(tmp_path, {}, "--tags", "prometheus")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = yaml.safe_load((out / "mon1/etc/prometheus/prometheus.yml").read_text())
    assert "inference_servers" not in {job["job_name"] for job in config["scrape_configs"]}


@pytest.mark.parametrize("extra, message", [
    ({"prometheus_inference_servers_job": "gpu", "prometheus_inference_server_targets": ["192.0.2.60:8000"]},
     "prometheus_inference_servers_job must be a job name that no other job uses"),
    ({"prometheus_inference_servers_port": 70000}, "prometheus_inference_servers_port a port 1-65535"),
    ({"prometheus_inference_server_targets": [["192.0.2.60:8000"]]},
     "prometheus_inference_server_targets a list of \"host:port\" or {address, instance}"),
])
def test_a_bad_inference_servers_setting_fails_in_preflight(tmp_path, extra, message):
    proc, out = run_playbook(tmp_path, REPO / "playbooks" / "site.yml", extra)
    assert proc.returncode != 0, out
    assert message in out, out
    assert "UNREACHABLE" not in out and "Gathering Facts" not in out, out


def test_a_platform_service_keeps_its_client_settings(tmp_path):
    # each setting the variable documents reaches prometheus.yml (a Jinja `set` inside a loop once dropped them all)
    settings = {"scrape_interval": "30s", "scrape_timeout": "10s", "honor_labels": True,
                "tls_config": {"ca_file": "/etc/prometheus/api-ca.pem"},
                "metric_relabel_configs": [{"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"}]}
    extra = {"prometheus_platform_services": [dict({"name": "api", "targets": ["192.0.2.70:8080"]}, **settings)]}
    proc, out = render(tmp_path, extra, "--tags", "prometheus")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = yaml.safe_load((out / "mon1/etc/prometheus/prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "api")
    assert {k: job.get(k) for k in settings} == settings, job
    assert job["static_configs"] == [{"targets": ["192.0.2.70:8080"], "labels": {"instance": "192.0.2.70"}}]
