"""Checks of the running stack that a real failure makes fail, and alerts delivered end to end.

The lab's Alertmanager routes every alert to the webhook sink on the monitoring host
(aiplatform-alert-sink, /var/lib/aiplatform-alert-sink/notifications.jsonl). Here:

- every alert rule Prometheus runs has summary, description and a runbook_url whose anchor is a
  section of docs/runbooks.md;
- one GPU node's exporter stopped: the health gate (playbooks/health.yml) and the dashboard truth
  check fail and name the node, TargetDown reaches the sink with job, instance and severity; started
  again: a resolved notification arrives and both checks pass;
- a large drift on the lab's canary model (samples written here; the demo feeder never writes for
  it): the critical ModelDriftPSI notification reaches the sink, and the warning of the same model
  and feature is inhibited by Alertmanager (suppressed, never delivered).
"""
import json
import re
import sys
import time

import pytest
import testinfra

from conftest import PROJECT, http_json, playbook, poll, truth_check

testinfra_hosts = ["ansible://monitoring"]

PROM = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
SINK_FILE = "/var/lib/aiplatform-alert-sink/notifications.jsonl"
CANARY = ("alert-canary", "score")
DELIVERY_TIMEOUT_S = 240


def notifications(host):
    """Every notification the sink stored: a list of webhook payloads."""
    content = host.run("cat %s 2>/dev/null", SINK_FILE).stdout
    return [json.loads(line) for line in content.splitlines() if line.strip()]


def delivered(host, since, status, **labels):
    """The alerts of notifications received after `since` (sink line count) with this status and labels."""
    found = []
    for payload in notifications(host)[since:]:
        for alert in payload["alerts"]:
            if alert["status"] == status and all(alert["labels"].get(k) == v for k, v in labels.items()):
                found.append(alert)
    return found


def gpu_node(host, name):
    inventory = getattr(host.backend, "ansible_inventory", None)
    return testinfra.get_host("ansible://%s" % name, ansible_inventory=inventory) if inventory else \
        testinfra.get_host("ansible://%s" % name)


def up_value(host, job, instance):
    result = http_json(host, PROM + '/api/v1/query?query=up%%7Bjob%%3D%%22%s%%22%%2Cinstance%%3D%%22%s%%22%%7D'
                       % (job, instance))["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def canary_drift(host):
    """Write a reference history and a strongly shifted current window for the canary model, once, at the
    start of the module: the drift alerts then build up while the other tests run."""
    model, feature = CANARY
    sql = (
        "INSERT INTO platform.prediction_samples (model, feature, observed_at, value_num) "
        "SELECT '{m}', '{f}', now() - interval '30 hours' + g * interval '1 second', sin(g) FROM generate_series(1, 2000) g; "
        "INSERT INTO platform.prediction_samples (model, feature, observed_at, value_num) "
        "SELECT '{m}', '{f}', now() - interval '60 seconds' + g * interval '20 milliseconds', 50 + sin(g) "
        "FROM generate_series(1, 2500) g;").format(m=model, f=feature)
    cmd = host.run("runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d ai_platform -c %s", sql)
    assert cmd.rc == 0, cmd.stderr
    return time.time()


@pytest.fixture(autouse=True, scope="module")
def _start_the_canary_early(canary_drift):
    return canary_drift


def test_every_alert_rule_has_its_runbook_section(host):
    sys.path.insert(0, str(PROJECT / "tests"))
    from markdown_anchors import github_anchors

    anchors = github_anchors((PROJECT / "docs" / "runbooks.md").read_text())
    rules = [r for g in http_json(host, PROM + "/api/v1/rules?type=alert")["data"]["groups"] for r in g["rules"]]
    assert len(rules) >= 9
    for rule in rules:
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), rule["name"]
        assert annotations.get("runbook_url", "").partition("#")[2] in anchors, (rule["name"], annotations.get("runbook_url"))


@pytest.mark.day2
def test_stopped_gpu_exporter_fails_the_checks_and_reaches_the_receiver(host, hostvars):
    node = sorted(hostvars["groups"]["gpu_nodes"])[0]
    node_host = gpu_node(host, node)
    unit = "aiplatform-gpu-exporter" if hostvars.get("gpu_exporter_backend") == "nvml" else "dcgm-exporter"
    since = len(notifications(host))
    node_host.check_output("systemctl stop %s", unit)
    try:
        assert poll(lambda: up_value(host, "gpu", node) == 0.0, 60, 3), "Prometheus still sees %s up" % node

        rc, out = playbook("health.yml", "-e", "prometheus_health_retries=0")
        assert rc != 0, out[-3000:]
        assert re.search(r"DOWN +job=gpu instance=%s: " % re.escape(node), out), out[-3000:]

        rc, out, err = truth_check(host, hostvars)
        assert rc == 1, out + err
        failing = [line for line in out.splitlines() if line.startswith("!!")]
        print("\n".join(failing))
        assert any("job gpu" in line and "DOWN: %s" % node in line for line in failing), failing
        assert any("GPU NODE NOT ANSWERING: %s (job gpu target down)" % node in line for line in failing), failing

        firing = poll(lambda: delivered(host, since, "firing", alertname="TargetDown", job="gpu", instance=node),
                      DELIVERY_TIMEOUT_S, 5)
        assert firing, "no TargetDown notification for %s in %ds" % (node, DELIVERY_TIMEOUT_S)
        assert firing[0]["labels"]["severity"] == "warning"
        assert firing[0]["annotations"]["runbook_url"].endswith("#targetdown")
    finally:
        node_host.check_output("systemctl start %s", unit)

    resolved = poll(lambda: delivered(host, since, "resolved", alertname="TargetDown", job="gpu", instance=node),
                    DELIVERY_TIMEOUT_S, 5)
    assert resolved, "no resolved TargetDown notification for %s in %ds" % (node, DELIVERY_TIMEOUT_S)
    rc, out = playbook("health.yml")
    assert rc == 0, out[-3000:]
    rc, out, err = truth_check(host, hostvars, deadline_s=120, delay_s=10)
    assert rc == 0, "\n".join(line for line in out.splitlines() if line.startswith("!!")) + err


@pytest.mark.day2
def test_critical_drift_is_delivered_and_mutes_its_warning(host, canary_drift):
    model, feature = CANARY
    labels = dict(alertname="ModelDriftPSI", model=model, feature=feature)
    critical = poll(lambda: delivered(host, 0, "firing", severity="critical", **labels), DELIVERY_TIMEOUT_S, 5)
    assert critical, "no critical ModelDriftPSI notification for %s/%s in %ds" % (model, feature, DELIVERY_TIMEOUT_S)

    # The warning fires too (the score is above both levels) and Alertmanager holds it back.
    def warning_state():
        alerts = http_json(host, ALERTMANAGER + "/api/v2/alerts?filter=alertname%3D%22ModelDriftPSI%22")
        return [a["status"] for a in alerts if a["labels"].get("model") == model and a["labels"].get("severity") == "warning"]

    states = poll(warning_state, 60, 3)
    assert states and states[0]["state"] == "suppressed" and states[0]["inhibitedBy"], states
    assert not delivered(host, 0, "firing", severity="warning", **labels), "the inhibited warning was delivered"
