"""The collection's exporters as deployed: GPU exporter on gpu_nodes, drift/learning exporters,
postgres_exporter and the demo workload on the monitoring host.

Asks the services themselves: their /metrics, systemd's own security score, PostgreSQL going away
and coming back, and Prometheus' view of its targets.
"""
import json
import re
import time

import pytest

from conftest import http, http_json, in_group

testinfra_hosts = ["ansible://monitoring", "ansible://gpu_nodes"]

MONITORING_UNITS = {
    # unit: (enabled variable, its default, port variable, its default)
    "aiplatform-drift-exporter": ("platform_exporters_drift_enabled", True, "platform_exporters_drift_port", 19841),
    "aiplatform-learning-exporter": ("platform_exporters_learning_enabled", True,
                                     "platform_exporters_learning_port", 19842),
    "prometheus-postgres-exporter": ("platform_exporters_postgres_exporter_enabled", False,
                                     "platform_exporters_postgres_exporter_port", 9187),
    "aiplatform-demo-workload": ("demo_workload_enabled", False, "demo_workload_port", 19844),
}
JOBS = {"aiplatform-drift-exporter": "drift_exporter", "aiplatform-learning-exporter": "learning_exporter",
        "prometheus-postgres-exporter": "postgres_exporter", "aiplatform-demo-workload": "demo_workload"}


def _enabled_units(hostvars):
    return dict((unit, hostvars.get(port_var, port_default))
                for unit, (var, default, port_var, port_default) in MONITORING_UNITS.items()
                if bool(hostvars.get(var, default)))


def _units(host, hostvars):
    if in_group(host, "monitoring"):
        units = _enabled_units(hostvars)
        if hostvars.get("demo_workload_enabled", False) and hostvars.get("demo_workload_feeder_enabled", True):
            units["aiplatform-demo-feeder"] = None
        return units
    if in_group(host, "gpu_nodes"):
        backend = hostvars.get("gpu_exporter_backend", "dcgm")
        unit = "aiplatform-gpu-exporter" if backend == "nvml" else "dcgm-exporter"
        return {unit: hostvars.get("gpu_exporter_port", 9400)}
    return {}


def _value(body, name):
    m = re.search(r"^%s(?:\{[^}]*\})? ([0-9.eE+-]+|NaN)$" % re.escape(name), body, re.M)
    return float(m.group(1)) if m else None


def _poll(fn, timeout, interval=2.0):
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def test_units_active_and_metrics_answer(host, hostvars):
    units = _units(host, hostvars)
    assert units, "no exporter unit expected on %s" % host.backend.hostname
    for unit, port in units.items():
        svc = host.service(unit)
        assert svc.is_enabled and svc.is_running, unit
        if port is None:
            continue
        status, body = http(host, "http://127.0.0.1:%s/metrics" % port)
        assert status == 200, (unit, status, body[:300])
        assert "# TYPE" in body, unit


def test_units_are_hardened(host, hostvars):
    for unit in _units(host, hostvars):
        out = host.check_output("systemd-analyze security %s --no-pager", unit + ".service")
        score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out).group(1))
        print("%s %s: systemd-analyze exposure %.1f" % (host.backend.hostname, unit, score))
        assert score <= 3.0, out[-600:]


def test_database_password_stays_out_of_units_configs_and_processes(host, hostvars):
    if not in_group(host, "monitoring"):
        pytest.skip("the database password is used on the monitoring host only")
    secrets = [s for s in (hostvars.get("postgresql_exporter_password"), hostvars.get("postgresql_owner_password"))
               if s]
    assert secrets, "the lab inventory defines the database passwords"
    processes = host.check_output("ps -eo args")
    files = host.check_output("cat /etc/systemd/system/aiplatform-*.service /etc/aiplatform-exporters/*.yml")
    for secret in secrets:
        assert secret not in processes and secret not in files
    cred_dir = host.file("/etc/aiplatform-exporters/credentials")
    assert cred_dir.user == "root" and cred_dir.mode == 0o700
    password_file = host.file("/etc/aiplatform-exporters/credentials/exporter-db-password")
    assert password_file.mode == 0o600 and password_file.user == "root"


def test_nvml_exporter_without_gpu_reports_up_0(host, hostvars):
    if not in_group(host, "gpu_nodes"):
        pytest.skip("GPU nodes only")
    assert hostvars.get("gpu_exporter_backend") == "nvml", "the lab runs the NVML backend"
    port = hostvars.get("gpu_exporter_port", 9400)
    status, body = http(host, "http://127.0.0.1:%s/metrics" % port)
    assert status == 200
    has_gpu = host.run("grep -l 0x10de /sys/bus/pci/devices/*/vendor").rc == 0
    assert _value(body, "aiplatform_gpu_exporter_up") == (1.0 if has_gpu else 0.0), body[:500]
    fact = json.loads(host.file("/etc/ansible/facts.d/aiplatform_gpu_exporter.fact").content_string)
    assert fact == {"deployed": True, "port": port, "backend": "nvml"}


@pytest.mark.day2
def test_drift_and_learning_exporters_follow_postgresql(host, hostvars):
    """PostgreSQL stops: both report _up 0 and keep serving; it starts: both recover, same process."""
    if not in_group(host, "monitoring"):
        pytest.skip("monitoring host only")
    if hostvars.get("groups", {}).get("database"):
        pytest.skip("the database runs on another host in this inventory")
    exporters = dict((u, p) for u, p in _enabled_units(hostvars).items()
                     if u in ("aiplatform-drift-exporter", "aiplatform-learning-exporter"))
    assert exporters

    def up_values():
        values = {}
        for unit, port in exporters.items():
            status, body = http(host, "http://127.0.0.1:%s/metrics" % port)
            assert status == 200, "%s stopped answering: %s" % (unit, body[:300])
            values[unit] = _value(body, unit.replace("aiplatform-", "aiplatform_").replace("-", "_") + "_up")
        return values

    pids = dict((u, host.check_output("systemctl show -p MainPID --value %s", u)) for u in exporters)
    assert _poll(lambda: all(v == 1.0 for v in up_values().values()), 60), up_values()
    host.check_output("systemctl stop postgresql")
    try:
        down = _poll(lambda: all(v == 0.0 for v in up_values().values()), 60)
        print("with PostgreSQL stopped: %s" % up_values())
        assert down, up_values()
    finally:
        host.check_output("systemctl start postgresql")
    assert _poll(lambda: all(v == 1.0 for v in up_values().values()), 90), up_values()
    print("after PostgreSQL started again: %s" % up_values())
    for unit, pid in pids.items():
        assert host.check_output("systemctl show -p MainPID --value %s", unit) == pid, "%s was restarted" % unit


def test_prometheus_scrapes_the_exporters(host, hostvars):
    if not in_group(host, "monitoring"):
        pytest.skip("monitoring host only")
    jobs = set(JOBS[u] for u in _enabled_units(hostvars))
    groups = hostvars.get("groups", {})
    if groups.get("gpu_nodes"):
        jobs.add("gpu")

    def health():
        targets = http_json(host, "http://127.0.0.1:9090/api/v1/targets")["data"]["activeTargets"]
        seen = {}
        for t in targets:
            if t["labels"]["job"] in jobs:
                seen.setdefault(t["labels"]["job"], []).append((t["labels"]["instance"], t["health"], t["lastError"]))
        return seen

    ok = _poll(lambda: set(health()) == jobs and all(h == "up" for ts in health().values() for _, h, _ in ts), 120, 5)
    print("Prometheus targets: %s" % health())
    assert ok, health()
    gpu = dict((i, h) for i, h, _ in health().get("gpu", []))
    assert sorted(gpu) == sorted(groups.get("gpu_nodes", [])), gpu
