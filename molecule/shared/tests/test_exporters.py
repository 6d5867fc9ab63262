"""Exporter units on every host that runs one: the GPU exporter on gpu_nodes; the drift and
learning exporters, postgres_exporter and the demo workload on the monitoring host.

Asks the services themselves (their /metrics) and systemd's own security score. Group-specific
checks are in test_exporters_monitoring.py and test_exporters_gpu.py.
"""
import re

from conftest import enabled_exporter_units, in_group, unit_http

testinfra_hosts = ["ansible://monitoring", "ansible://gpu_nodes"]


def _units(host, hostvars):
    if in_group(host, "monitoring"):
        units = enabled_exporter_units(hostvars)
        if hostvars.get("demo_workload_enabled", False) and hostvars.get("demo_workload_feeder_enabled", True):
            units["aiplatform-demo-feeder"] = None
        return units
    if in_group(host, "gpu_nodes"):
        backend = hostvars.get("gpu_exporter_backend", "dcgm")
        unit = "aiplatform-gpu-exporter" if backend == "nvml" else "dcgm-exporter"
        return {unit: hostvars.get("gpu_exporter_port", 9400)}
    return {}



def test_units_active_and_metrics_answer(host, hostvars):
    units = _units(host, hostvars)
    assert units, "no exporter unit expected on %s" % host.backend.hostname
    for unit, port in units.items():
        svc = host.service(unit)
        assert svc.is_enabled and svc.is_running, unit
        if port is None:
            continue
        status, body = unit_http(host, hostvars, unit, port)
        assert status == 200, (unit, status, body[:300])
        assert "# TYPE" in body, unit


def test_units_are_hardened(host, hostvars):
    for unit in _units(host, hostvars):
        out = host.check_output("systemd-analyze security %s --no-pager", unit + ".service")
        score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out).group(1))
        print("%s %s: systemd-analyze exposure %.1f" % (host.backend.hostname, unit, score))
        assert score <= 3.0, out[-600:]
