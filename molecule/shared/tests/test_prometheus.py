"""Prometheus and Alertmanager on the monitoring hosts, asked through their own HTTP APIs:
targets generated from the inventory are up, the rule groups are loaded and healthy, the
Alertmanager is discovered, and a day-2 threshold change reloads the rules and the drift exporter's
decision thresholds without a restart while an invalid threshold stops in preflight with the live
rule files untouched."""
import json
import os
import re
import tempfile
import time
import urllib.parse

import pytest
import testinfra
import yaml

from conftest import http, http_json, playbook, unit_http

testinfra_hosts = ["ansible://monitoring"]

PROM = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
RULES_DIR = "/etc/prometheus/rules"
RULE_FILES = ["aiplatform-alerts.rules.yml", "aiplatform-recording.rules.yml"]
RULE_GROUPS = {
    "aiplatform-http-recording", "aiplatform-inference-recording", "aiplatform-mcp-recording",
    "aiplatform-gpu-recording", "aiplatform-gpu-health-alerts",
    "aiplatform-http-alerts", "aiplatform-cache-alerts", "aiplatform-gpu-alerts",
    "aiplatform-drift-alerts", "aiplatform-mcp-alerts", "aiplatform-target-alerts",
}


def _auth(hostvars):
    users = hostvars.get("prometheus_web_basic_auth_users") or {}
    if not users:
        return ""
    user = hostvars.get("prometheus_web_self_scrape_user") or sorted(users)[0]
    return f"{user}:{users[user]}"


def _api(host, hostvars, path):
    data = http_json(host, PROM + path, auth=_auth(hostvars))
    assert data["status"] == "success", data
    return data["data"]


def _poll(check, timeout=180, interval=5):
    """Call check() until it returns (ok, detail) with ok true; fail with the last detail."""
    deadline = time.monotonic() + timeout
    while True:
        ok, detail = check()
        if ok:
            return detail
        if time.monotonic() > deadline:
            pytest.fail(f"still not true after {timeout}s: {detail}")
        time.sleep(interval)


def _metric(host, hostvars, name):
    status, body = http(host, PROM + "/metrics", auth=_auth(hostvars))
    assert status == 200, body[:300]
    match = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", body, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def _rules(host, hostvars):
    return _api(host, hostvars, "/api/v1/rules")["groups"]


def _alert_queries(host, hostvars, alertname):
    return sorted(r["query"] for g in _rules(host, hostvars) for r in g["rules"] if r.get("name") == alertname)


def _rule_checksums(host):
    return {name: host.file(f"{RULES_DIR}/{name}").sha256sum for name in RULE_FILES}


DRIFT_CONFIG = "/etc/aiplatform-exporters/drift.yml"
DRIFT_RELOAD = "aiplatform_drift_exporter_config_last_reload"


def _drift_state(host):
    """The drift exporter's PID, its file's KL threshold and its reload metrics."""
    hostvars = host.ansible.get_variables()
    status, body = unit_http(host, hostvars, "aiplatform-drift-exporter", hostvars.get("platform_exporters_drift_port", 19841))
    assert status == 200, body[:300]
    values = {name: float(v) for name, v in re.findall(rf"^({DRIFT_RELOAD}_\w+) (\S+)$", body, re.M)}
    config = yaml.safe_load(host.file(DRIFT_CONFIG).content_string)
    pid = host.check_output("systemctl show -p MainPID --value aiplatform-drift-exporter")
    return pid, config["drift"]["thresholds"]["kl_divergence"], values


def _playbook(*args):
    """Run playbooks/thresholds.yml on the controller against molecule's inventory."""
    return playbook("thresholds.yml", *args)


def _varfile(content):
    fd, path = tempfile.mkstemp(suffix=".yml", prefix="thresholds-")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(content, fh)
    return path


def test_every_target_is_up(host, hostvars):
    groups = hostvars["groups"]

    def check():
        active = _api(host, hostvars, "/api/v1/targets?state=active")["activeTargets"]
        seen = {(t["labels"]["job"], t["labels"]["instance"]) for t in active}
        expected = {("node", h) for h in groups["all"]}
        expected |= {("prometheus", h) for h in groups["monitoring"]}
        expected |= {("alertmanager", h) for h in groups["monitoring"]}
        missing = expected - seen
        down = [(t["labels"]["job"], t["labels"]["instance"], t["lastError"]) for t in active if t["health"] != "up"]
        return not missing and not down, {"missing": sorted(missing), "down": down}

    _poll(check)
    active = _api(host, hostvars, "/api/v1/targets?state=active")["activeTargets"]
    for target in active:
        # names, not ip:port, so dashboards show hosts
        assert not re.match(r"^[\d.]+:\d+$", target["labels"]["instance"]), target["labels"]
        if target["labels"]["job"] == "gpu":
            assert target["labels"]["instance"] in groups.get("gpu_nodes", []), target["labels"]
    assert active[0]["scrapeInterval"] == "15s"


def test_no_series_from_the_packages_default_configuration(host, hostvars):
    """Debian's package would start Prometheus on its own configuration (localhost:9090 and
    localhost:9100) before the role's: those series would make TargetDown fire for five minutes
    after a fresh install. The role keeps the unit masked while the package installs."""
    query = 'count_over_time(up{instance=~"localhost:.*"}[1d])'
    leftovers = _api(host, hostvars, "/api/v1/query?query=" + urllib.parse.quote(query))
    assert leftovers["result"] == [], leftovers["result"]


def test_targets_are_reached_at_the_address_the_source_gives(host, hostvars):
    """aiplatform_scrape_address_source: inventory keeps the names (this network resolves them);
    default_ipv4 scrapes each host at the IPv4 address of its default route, without name resolution."""
    source = hostvars.get("aiplatform_scrape_address_source", "inventory")
    inventory = getattr(host.backend, "ansible_inventory", None) or os.environ["MOLECULE_INVENTORY_FILE"]
    expected = {}
    for name in hostvars["groups"]["all"]:
        if source == "inventory":
            expected[name] = name
        else:
            facts = testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory).ansible(
                "setup", "gather_subset=!all,!min,network filter=ansible_default_ipv4")
            expected[name] = facts["ansible_facts"]["ansible_default_ipv4"]["address"]
    active = _api(host, hostvars, "/api/v1/targets?state=active")["activeTargets"]
    node_targets = dict((t["labels"]["instance"], t["scrapeUrl"]) for t in active if t["labels"]["job"] == "node")
    assert sorted(node_targets) == sorted(expected), node_targets
    for name, url in node_targets.items():
        assert url.split("://", 1)[1].rsplit(":", 1)[0] == expected[name], (source, name, url)
    print("scrape source %s: %s" % (source, node_targets))


def test_gpu_targets_only_where_the_exporter_is_deployed(host, hostvars):
    groups = hostvars["groups"]
    active = _api(host, hostvars, "/api/v1/targets?state=active")["activeTargets"]
    gpu_instances = {t["labels"]["instance"] for t in active if t["labels"]["job"] == "gpu"}
    for node in groups.get("gpu_nodes", []):
        inventory = getattr(host.backend, "ansible_inventory", None) or os.environ["MOLECULE_INVENTORY_FILE"]
        node_host = testinfra.get_host(f"ansible://{node}", ansible_inventory=inventory)
        fact = node_host.file("/etc/ansible/facts.d/aiplatform_scrape_gpu.fact")
        deployed = fact.exists and json.loads(fact.content_string).get("role") == "gpu_exporter"
        assert (node in gpu_instances) == deployed, (node, deployed, sorted(gpu_instances))


def test_rule_groups_loaded_and_healthy(host, hostvars):
    def check():
        groups = _rules(host, hostvars)
        names = {g["name"] for g in groups}
        unhealthy = [(g["name"], r["name"], r["health"], r.get("lastError")) for g in groups for r in g["rules"]
                     if g["name"] in RULE_GROUPS and r["health"] != "ok"]
        return RULE_GROUPS <= names and not unhealthy, {"missing": sorted(RULE_GROUPS - names), "unhealthy": unhealthy}

    _poll(check)
    for g in _rules(host, hostvars):
        if g["name"] in RULE_GROUPS:
            assert g["file"].startswith(RULES_DIR + "/"), g["file"]


def test_alertmanager_is_discovered_and_safe_by_default(host, hostvars):
    def check():
        data = _api(host, hostvars, "/api/v1/alertmanagers")
        urls = [a["url"] for a in data["activeAlertmanagers"]]
        return any(":9093/api/v2/alerts" in u for u in urls), urls

    _poll(check, timeout=120)
    status = http_json(host, ALERTMANAGER + "/api/v2/status")
    config = yaml.safe_load(status["config"]["original"])
    if not hostvars.get("alertmanager_receivers"):
        assert config["route"]["receiver"] == "null"
        assert config["receivers"] == [{"name": "null"}]
    assert any(r.get("source_matchers") == ['severity="critical"'] for r in config["inhibit_rules"])


@pytest.mark.day2
def test_threshold_change_reloads_rules_without_restart(host, hostvars):
    start = _metric(host, hostvars, "process_start_time_seconds")
    before = _rule_checksums(host)
    drift_pid, drift_kl, drift_reload = _drift_state(host)
    assert drift_kl == 0.2, "the drift exporter does not take drift_kl_divergence.alert.critical"
    changed = _varfile({"aiplatform_thresholds": {"drift_kl_divergence": {"alert": {"critical": 0.37}}}})
    try:
        # --check --diff shows the change and changes nothing
        rc, out = _playbook("-e", f"@{changed}", "--check", "--diff")
        assert rc == 0, out[-3000:]
        assert re.search(r"^-.*drift_kl_divergence\) > 0\.2 and", out, re.M), out[-3000:]
        assert re.search(r"^\+.*drift_kl_divergence\) > 0\.37 and", out, re.M), out[-3000:]
        assert _rule_checksums(host) == before

        rc, out = _playbook("-e", f"@{changed}")
        assert rc == 0, out[-3000:]
        _poll(lambda: (any("> 0.37" in q for q in _alert_queries(host, hostvars, "ModelDriftKL")),
                       _alert_queries(host, hostvars, "ModelDriftKL")), timeout=90, interval=3)
        assert _metric(host, hostvars, "prometheus_config_last_reload_successful") == 1
        assert _metric(host, hostvars, "process_start_time_seconds") == start, "Prometheus was restarted"
        assert _rule_checksums(host)["aiplatform-recording.rules.yml"] == before["aiplatform-recording.rules.yml"]
        # the same leaf reaches the drift exporter's own decision: reloaded (SIGHUP), same process
        def reloaded():
            state = _drift_state(host)
            stamp = DRIFT_RELOAD + "_success_timestamp_seconds"
            return state[2][stamp] > drift_reload[stamp], state

        pid, kl, reload = _poll(reloaded, timeout=30, interval=2)
        assert kl == 0.37
        assert reload[DRIFT_RELOAD + "_successful"] == 1
        assert pid == drift_pid, "the drift exporter was restarted, not reloaded"
    finally:
        rc, out = _playbook()
        os.unlink(changed)
    assert rc == 0, out[-3000:]
    _poll(lambda: (any("> 0.2 and" in q for q in _alert_queries(host, hostvars, "ModelDriftKL")),
                   _alert_queries(host, hostvars, "ModelDriftKL")), timeout=90, interval=3)
    assert _rule_checksums(host) == before
    assert _metric(host, hostvars, "process_start_time_seconds") == start
    assert _drift_state(host)[:2] == (drift_pid, 0.2)


@pytest.mark.day2
def test_invalid_threshold_fails_in_preflight_and_changes_nothing(host, hostvars):
    start = _metric(host, hostvars, "process_start_time_seconds")
    before = _rule_checksums(host)
    bad = _varfile({"aiplatform_thresholds": {"drift_psi": {"alert": {"warning": "high"}}}})
    try:
        rc, out = _playbook("-e", f"@{bad}")
    finally:
        os.unlink(bad)
    assert rc != 0, out[-3000:]
    assert "aiplatform_thresholds.drift_psi.alert.warning: must be a number" in out, out[-3000:]
    assert _rule_checksums(host) == before
    assert _metric(host, hostvars, "process_start_time_seconds") == start


def test_services_enabled_and_running(host):
    assert host.service("prometheus").is_enabled
    assert host.service("prometheus").is_running
    am = "prometheus-alertmanager" if host.file("/etc/systemd/system/prometheus-alertmanager.service").exists else "alertmanager"
    assert host.service(am).is_enabled
    assert host.service(am).is_running
    # config and rules are readable by the service group only
    assert host.file("/etc/prometheus/prometheus.yml").mode == 0o640
    assert host.file(f"{RULES_DIR}/aiplatform-alerts.rules.yml").mode == 0o640
