"""promtool unit tests of the alert and recording rules, rendered from the role's templates.

The rules are rendered with playbooks/render.yml (`--tags thresholds`: only the threshold-driven
files, no host contacted) against a throw-away inventory, then `promtool test rules` runs the
scenarios in tests/promtool/. Run: .venv/bin/pytest tests/unit -q -k "thresholds or render"
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from site_vars import SITE_VARS

REPO = Path(__file__).resolve().parents[2]
PROMTOOL_TESTS = REPO / "tests" / "promtool"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
RULES_DIR = "etc/prometheus/rules"
INVENTORY = {
    "all": {
        "vars": dict(SITE_VARS),
        "hosts": {"mon1": {"ansible_host": "192.0.2.10"}, "gpu1": {"ansible_host": "192.0.2.11"}},
        "children": {"monitoring": {"hosts": {"mon1": {}}}, "gpu_nodes": {"hosts": {"gpu1": {}}}},
    }
}


def promtool():
    path = shutil.which("promtool")
    assert path, "promtool is required (Debian package prometheus)"
    return path


def render(tmp_path, *extra_args, tags="thresholds"):
    """Render with playbooks/render.yml; returns (completed process, render dir)."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump(INVENTORY))
    out = tmp_path / "render"
    cmd = [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(REPO / "playbooks" / "render.yml"), "-e", f"render_dir={out}"]
    if tags:
        cmd += ["--tags", tags]
    proc = subprocess.run(cmd + list(extra_args), cwd=REPO, capture_output=True, text=True, timeout=300)
    return proc, out


def prepare_rules(rendered, workdir):
    """Copy the rendered rules next to the promtool test files, plus a copy of the alert rules
    without annotations (the firing tests compare labels only; annotations_test.yml checks the
    annotations on the unmodified file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    rules = rendered / "mon1" / RULES_DIR
    for name in ("aiplatform-recording.rules.yml", "aiplatform-alerts.rules.yml"):
        shutil.copy(rules / name, workdir / name)
    alerts = yaml.safe_load((rules / "aiplatform-alerts.rules.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (workdir / "aiplatform-alerts.no-annotations.rules.yml").write_text(yaml.safe_dump(alerts, sort_keys=False))
    for test in PROMTOOL_TESTS.glob("*_test.yml"):
        shutil.copy(test, workdir / test.name)
    return workdir


def promtool_test(workdir, test_file):
    return subprocess.run([promtool(), "test", "rules", test_file], cwd=workdir, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def default_rules(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("defaults")
    proc, out = render(tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return prepare_rules(out, tmp / "promtool")


@pytest.fixture(scope="module")
def override_rules(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("override")
    proc, out = render(tmp, "-e", f"@{PROMTOOL_TESTS / 'override_thresholds.yml'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return prepare_rules(out, tmp / "promtool")


def test_rendered_rules_pass_promtool_check(default_rules):
    proc = subprocess.run(
        [promtool(), "check", "rules", "aiplatform-recording.rules.yml", "aiplatform-alerts.rules.yml"],
        cwd=default_rules, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("test_file", ["alerts_test.yml", "recording_test.yml", "annotations_test.yml",
                                       "inference_servers_test.yml"])
def test_promtool_rules_with_default_thresholds(default_rules, test_file):
    proc = promtool_test(default_rules, test_file)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_rules_with_overridden_thresholds(override_rules):
    proc = promtool_test(override_rules, "override_test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_override_scenario_fails_on_default_rules(default_rules):
    """Control: the override scenario must NOT pass on the default rules, so it really tests
    that the thresholds reach the rules."""
    proc = promtool_test(default_rules, "override_test.yml")
    assert proc.returncode != 0, proc.stdout


def test_default_scenarios_fail_on_overridden_rules(override_rules):
    proc = promtool_test(override_rules, "alerts_test.yml")
    assert proc.returncode != 0, proc.stdout


def test_every_alert_has_the_documented_labels_and_annotations(default_rules):
    alerts = yaml.safe_load((default_rules / "aiplatform-alerts.rules.yml").read_text())
    rules = [r for g in alerts["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert names == {
        "PlatformHighErrorRate", "PlatformHighLatencyP99", "LowCacheHitRate", "GPUHighTemperature",
        "ModelDriftKL", "ModelDriftPSI", "MCPHighErrorRate", "MCPHighLatencyP99", "TargetDown",
        "GPUHighMemoryTemperature", "GPUXidCritical", "GPUXidError", "GPURowRemapFailure", "GPUUncorrectableRemappedRows", "GPUMissing",
        "GPUExporterNotReading", "GPUPowerAtLimit", "GPUPCIeReplays", "GPUClocksSlowedDown",
        "GPUDoubleBitECCErrors", "GPUNVLinkCRCErrors",
        "InferenceSlowTimeToFirstToken", "InferenceKVCacheNearlyFull",
    }
    severities = {(r["alert"], r["labels"]["severity"]) for r in rules}
    assert ("PlatformHighErrorRate", "critical") in severities and ("PlatformHighErrorRate", "warning") in severities
    assert ("ModelDriftKL", "critical") in severities and ("ModelDriftPSI", "warning") in severities
    # an Xid is an event: those alerts fire at once (their expression looks 15 minutes back)
    events = {"GPUXidCritical", "GPUXidError"}
    # alerts whose value is only a flag (0/1) do not print it
    flags = {"TargetDown", "GPURowRemapFailure", "GPUExporterNotReading", "GPUClocksSlowedDown"}
    # held states: power at the limit for an hour, clocks cut for 10 minutes (shorter ones are normal)
    # and a slow first token for 10 minutes, a full KV cache for 15 (short peaks are how batching works)
    # and NVLink CRC errors above the level for 10 minutes
    held = {"GPUPowerAtLimit": "1h", "GPUClocksSlowedDown": "10m", "InferenceSlowTimeToFirstToken": "10m",
            "InferenceKVCacheNearlyFull": "15m", "GPUNVLinkCRCErrors": "10m"}
    for rule in rules:
        assert rule["for"] == ("0m" if rule["alert"] in events else held.get(rule["alert"], "5m")), rule
        assert set(rule["labels"]) == {"severity"}, rule
        assert set(rule["annotations"]) == {"summary", "description", "runbook", "runbook_url"}, rule
        assert "$value" in rule["annotations"]["description"] or rule["alert"] in flags, rule


def test_for_duration_and_runbook_url_are_configurable(tmp_path):
    proc, out = render(
        tmp_path, "-e", '{"prometheus_alert_for": "10m", "prometheus_alert_for_overrides": {"TargetDown": "3m"},'
        ' "prometheus_alert_runbook_base_url": "https://wiki.example.com/runbooks/"}',
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    alerts = yaml.safe_load((out / "mon1" / RULES_DIR / "aiplatform-alerts.rules.yml").read_text())
    rules = {(r["alert"], r["labels"]["severity"]): r for g in alerts["groups"] for r in g["rules"]}
    assert rules[("TargetDown", "warning")]["for"] == "3m"
    assert rules[("ModelDriftKL", "critical")]["for"] == "10m"
    assert rules[("ModelDriftKL", "critical")]["annotations"]["runbook_url"] == "https://wiki.example.com/runbooks/modeldriftkl"
