"""Every alert of the collection carries summary, description and a runbook_url whose anchor is a
section of docs/runbooks.md; the default runbook base is the collection's own repository.

The alert rules are rendered by playbooks/render.yml (through test_render's inventory), so the test
sees exactly the rule file a host gets, with every level of every signal switched on.
"""
import sys
from pathlib import Path

import pytest
import yaml
from test_render import render

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from markdown_anchors import github_anchors  # noqa: E402
RUNBOOKS = REPO / "docs" / "runbooks.md"
# Every level of every signal, so that every alert rule the template can write is written.
ALL_LEVELS = {"aiplatform_thresholds": {
    "gpu_temperature_celsius": {"alert": {"warning": 80, "critical": 85}},
    "gpu_memory_temperature_celsius": {"alert": {"warning": 85, "critical": 90}},
    "gpu_power_limit_ratio": {"alert": {"warning": 0.98, "critical": 1.0}},
    "gpu_pcie_replays_per_minute": {"alert": {"warning": 8, "critical": 60}},
    "gpu_nvlink_crc_errors_per_second": {"alert": {"warning": 100, "critical": 1000}},
    "cache_hit_ratio": {"alert": {"warning": 0.7, "critical": 0.5}},
    "drift_kl_divergence": {"alert": {"warning": 0.1, "critical": 0.2}},
    "drift_psi": {"alert": {"warning": 0.2, "critical": 0.3}},
    "mcp_latency_seconds": {"alert": {"warning": 2.0, "critical": 4.0}},
}}


@pytest.fixture(scope="module")
def alert_rules(tmp_path_factory):
    proc, out = render(tmp_path_factory.mktemp("runbooks"), ALL_LEVELS, "--tags", "prometheus")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    rules = yaml.safe_load((out / "mon1/etc/prometheus/rules/aiplatform-alerts.rules.yml").read_text())
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_has_summary_description_and_runbook_url(alert_rules):
    assert len({r["alert"] for r in alert_rules}) >= 9
    for rule in alert_rules:
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert annotations.get(key), (rule["alert"], key)


def test_every_runbook_url_points_at_a_section_that_exists(alert_rules):
    anchors = github_anchors(RUNBOOKS.read_text())
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    missing = []
    for rule in alert_rules:
        url = rule["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base == galaxy["repository"] + "/blob/main/docs/runbooks.md", url
        if anchor not in anchors:
            missing.append((rule["alert"], anchor))
    assert not missing, "alerts without a section in docs/runbooks.md: %s" % missing


def test_anchor_rules():
    assert github_anchors("## TargetDown\n### GPU health: Xid errors\n") == {"targetdown", "gpu-health-xid-errors"}
