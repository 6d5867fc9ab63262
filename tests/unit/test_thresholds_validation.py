"""The preflight (role common) rejects bad thresholds before any host is contacted, naming the
variable path and the rule, and publishes the deep-merged dict to every host.

The inventory's hosts are unreachable addresses (TEST-NET-1): had the preflight let a run through,
fact gathering would report them UNREACHABLE, which the tests look for.
Run: .venv/bin/pytest tests/unit -q -k thresholds
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
INVENTORY = {
    "all": {
        "vars": {"ansible_connection": "ssh", "ansible_ssh_common_args": "-o ConnectTimeout=2"},
        "hosts": {"mon1": {"ansible_host": "192.0.2.10"}, "gpu1": {"ansible_host": "192.0.2.11"}},
        "children": {"monitoring": {"hosts": {"mon1": {}}}, "gpu_nodes": {"hosts": {"gpu1": {}}}},
    }
}
DEFAULTS = yaml.safe_load((REPO / "roles" / "common" / "vars" / "main.yml").read_text())["__common_thresholds_defaults"]


def run_playbook(tmp_path, playbook, extra_vars, *args):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump(INVENTORY))
    varfile = tmp_path / "vars.yml"
    varfile.write_text(yaml.safe_dump(extra_vars))
    cmd = [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(playbook), "-e", f"@{varfile}", *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    return proc, proc.stdout + proc.stderr


BAD = [
    pytest.param({"aiplatform_thresholds": {"drift_psi": {"alert": {"warning": "abc"}}}},
                 ["aiplatform_thresholds.drift_psi.alert.warning: must be a number"], id="string"),
    pytest.param({"aiplatform_thresholds": {"drift_psi": {"alert": {"warning": "0.3"}}}},
                 ["aiplatform_thresholds.drift_psi.alert.warning: must be a number", "-e @file.yml"], id="numeric-string"),
    pytest.param({"aiplatform_thresholds": {"gpu_temperature_celsius": {"alert": {"critical": True}}}},
                 ["aiplatform_thresholds.gpu_temperature_celsius.alert.critical: must be a number"], id="boolean"),
    pytest.param({"aiplatform_thresholds": {"http_error_ratio": {"alert": {"warning": 0.08}}}},
                 ["aiplatform_thresholds.http_error_ratio.alert.critical: must be greater than "
                  "aiplatform_thresholds.http_error_ratio.alert.warning"], id="warning-above-default-critical"),
    pytest.param({"aiplatform_thresholds": {"cache_hit_ratio": {"dashboard": {"red": 0.9}}}},
                 ["aiplatform_thresholds.cache_hit_ratio.dashboard.red: must be lower than "
                  "aiplatform_thresholds.cache_hit_ratio.dashboard.green", "lower values are worse"], id="lower-is-worse-dashboard"),
    pytest.param({"aiplatform_thresholds": {"cache_hit_ratio": {"alert": {"critical": 0.8}}}},
                 ["aiplatform_thresholds.cache_hit_ratio.alert.critical: must be lower than "
                  "aiplatform_thresholds.cache_hit_ratio.alert.warning"], id="lower-is-worse-alert"),
    pytest.param({"aiplatform_thresholds": {"model_accuracy_ratio": {"dashboard": {"red": 0.85, "green": 0.8}}}},
                 ["aiplatform_thresholds.model_accuracy_ratio.dashboard.red: must be lower than"], id="accuracy-steps"),
    pytest.param({"aiplatform_thresholds": {"gpu_utilization_percent": {"dashboard": {"yellow": 90}}}},
                 ["aiplatform_thresholds.gpu_utilization_percent.dashboard.orange: must be greater than "
                  "aiplatform_thresholds.gpu_utilization_percent.dashboard.yellow", "yellow < orange < red"], id="steps-ascending"),
    pytest.param({"aiplatform_thresholds": {"drift_kl": {"alert": {"critical": 0.3}}}},
                 ["aiplatform_thresholds.drift_kl: unknown signal", "drift_kl_divergence"], id="unknown-signal"),
    pytest.param({"aiplatform_thresholds": {"drift_psi": {"dashboard": {"purple": 0.5}}}},
                 ["aiplatform_thresholds.drift_psi.dashboard.purple: unknown level"], id="unknown-level"),
    pytest.param({"aiplatform_thresholds": {"model_accuracy_ratio": {"alert": {"warning": 0.6}}}},
                 ["aiplatform_thresholds.model_accuracy_ratio.alert: unknown section"], id="unknown-section"),
    pytest.param({"aiplatform_thresholds": {"http_error_ratio": {"alert": {"critical": 5}}}},
                 ["aiplatform_thresholds.http_error_ratio.alert.critical: 5 is out of range", "0.05"], id="ratio-as-percent"),
    pytest.param({"aiplatform_thresholds": {"mcp_latency_seconds": 2.0}},
                 ["aiplatform_thresholds.mcp_latency_seconds: must be a mapping"], id="scalar-signal"),
    pytest.param({"aiplatform_drift_min_window_samples": 0},
                 ["aiplatform_drift_min_window_samples: must be a positive integer"], id="min-window-zero"),
    pytest.param({"aiplatform_drift_min_window_samples": 12.5},
                 ["aiplatform_drift_min_window_samples"], id="min-window-float"),
]


@pytest.mark.parametrize("extra_vars, messages", BAD)
def test_bad_thresholds_fail_in_preflight_before_any_host(tmp_path, extra_vars, messages):
    proc, out = run_playbook(tmp_path, REPO / "playbooks" / "thresholds.yml", extra_vars)
    assert proc.returncode != 0, out
    for message in messages:
        assert message in out, f"missing {message!r} in:\n{out}"
    assert "UNREACHABLE" not in out, out
    assert "Gathering Facts" not in out, out


def test_bad_thresholds_fail_with_tags_thresholds_and_in_check_mode(tmp_path):
    bad = {"aiplatform_thresholds": {"drift_psi": {"alert": {"warning": -1}}}}
    proc, out = run_playbook(tmp_path, REPO / "playbooks" / "thresholds.yml", bad, "--tags", "thresholds", "--check")
    assert proc.returncode != 0, out
    assert "aiplatform_thresholds.drift_psi.alert.warning: -1 is out of range" in out, out
    assert "UNREACHABLE" not in out, out


def test_render_also_validates(tmp_path):
    bad = {"aiplatform_thresholds": {"http_latency_p99_seconds": {"alert": {"critical": 1.0}}}}
    proc, out = run_playbook(tmp_path, REPO / "playbooks" / "render.yml", {**bad, "render_dir": str(tmp_path / "r")})
    assert proc.returncode != 0, out
    assert "aiplatform_thresholds.http_latency_p99_seconds.alert.critical: must be greater than" in out, out
    assert not (tmp_path / "r" / "mon1" / "etc" / "prometheus").exists()


def test_effective_thresholds_are_deep_merged_and_reach_every_host_in_later_plays(tmp_path):
    dump = tmp_path / "effective"
    playbook = tmp_path / "probe.yml"
    playbook.write_text(yaml.safe_dump([
        {"name": "preflight", "hosts": "all", "gather_facts": False,
         "roles": [{"role": "aiplatform.observability.common"}]},
        {"name": "later play", "hosts": "all", "gather_facts": False, "tasks": [
            {"name": "dump", "delegate_to": "localhost", "ansible.builtin.copy": {
                "content": "{{ {'t': aiplatform_thresholds_effective, 'w': aiplatform_drift_min_window_samples_effective} | to_json }}",
                "dest": str(dump) + "-{{ inventory_hostname }}.json", "mode": "0644"}}]},
    ]))
    override = {"aiplatform_thresholds": {"drift_kl_divergence": {"alert": {"critical": 0.25}}},
                "aiplatform_drift_min_window_samples": 800}
    proc, out = run_playbook(tmp_path, playbook, override)
    assert proc.returncode == 0, out
    expected = json.loads(json.dumps(DEFAULTS))
    expected["drift_kl_divergence"]["alert"]["critical"] = 0.25
    for host in ("mon1", "gpu1"):
        got = json.loads(Path(f"{dump}-{host}.json").read_text())
        assert got["t"] == expected
        assert got["w"] == 800
        # untouched siblings keep their defaults
        assert got["t"]["drift_kl_divergence"]["dashboard"] == DEFAULTS["drift_kl_divergence"]["dashboard"]
