"""Every metric an alert rule or a dashboard queries is in the metric catalog (or is a recording rule).

Rules and dashboards are rendered exactly as the roles write them (playbooks/render.yml), so a
metric name typed in any template is checked here, including the ones produced by loops.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aiplatform_exporters import catalog

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("render")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"))
    proc = subprocess.run(
        [BIN / "ansible-playbook", "-i", "inventories/lab/hosts.yml", "playbooks/render.yml", "-e", f"render_dir={out}",
         "--tags", "prometheus,grafana"],   # the rules and the dashboards
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _rule_files(rendered):
    files = sorted(rendered.glob("*/etc/prometheus/**/*.yml"))
    return [f for f in files if "groups" in (yaml.safe_load(f.read_text()) or {})]


def _recorded_names(rendered):
    names = set()
    for f in _rule_files(rendered):
        for group in yaml.safe_load(f.read_text())["groups"]:
            names.update(r["record"] for r in group["rules"] if "record" in r)
    return names


def _dashboard_exprs(rendered):
    for f in sorted(rendered.glob("_grafana_api/dashboards/*.json")):
        dash = json.loads(f.read_text())
        for panel in dash.get("panels", []):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield f"{f.stem} / {panel.get('title')}", target["expr"]
        for var in dash.get("templating", {}).get("list", []):
            query = var.get("query")
            if isinstance(query, dict):
                query = query.get("query")
            if var.get("type") == "query" and isinstance(query, str) and "rawSql" not in str(var):
                yield f"{f.stem} / ${var.get('name')}", query


def test_rules_were_rendered(rendered):
    assert _rule_files(rendered), "playbooks/render.yml wrote no Prometheus rule file"


def test_alert_rules_query_only_cataloged_metrics(rendered):
    recorded = _recorded_names(rendered)
    unknown = []
    for f in _rule_files(rendered):
        for group in yaml.safe_load(f.read_text())["groups"]:
            for rule in group["rules"]:
                for name in catalog.metric_names_in_promql(rule["expr"]):
                    if name not in recorded and not catalog.is_known(name):
                        unknown.append(f"{f.name}: {rule.get('alert') or rule.get('record')}: {name}")
    assert not unknown, "metrics missing from the catalog:\n" + "\n".join(unknown)


def test_dashboards_query_only_cataloged_metrics(rendered):
    recorded = _recorded_names(rendered)
    exprs = list(_dashboard_exprs(rendered))
    assert exprs, "no dashboard with PromQL targets was rendered"
    unknown = []
    for where, expr in exprs:
        if expr.startswith(("label_values(", "query_result(")):
            inner = expr[expr.index("(") + 1:expr.rindex(")")]
            expr = inner.rsplit(",", 1)[0] if expr.startswith("label_values(") and "," in inner else inner
        for name in catalog.metric_names_in_promql(expr):
            if name not in recorded and not catalog.is_known(name):
                unknown.append(f"{where}: {name}")
    assert not unknown, "metrics missing from the catalog:\n" + "\n".join(unknown)
