"""node_exporter on every host: the service answers, with the flags the role rendered, hardened."""
import re

from conftest import http


def _service(host):
    return "prometheus-node-exporter" if host.system_info.distribution == "debian" else "node_exporter"


def test_metrics_endpoint_serves_build_info(host):
    status, body = http(host, "http://127.0.0.1:9100/metrics")
    assert status == 200
    assert re.search(r"^node_exporter_build_info\{.*\} 1$", body, re.M), body[:300]


def test_systemd_collector_enabled_from_variables(host):
    _, body = http(host, "http://127.0.0.1:9100/metrics")
    # The systemd collector is off by default upstream; the role enables it through variables.
    assert 'node_scrape_collector_success{collector="systemd"} 1' in body


def test_service_enabled_and_running(host):
    svc = host.service(_service(host))
    assert svc.is_enabled
    assert svc.is_running


def test_service_is_hardened(host):
    out = host.check_output("systemd-analyze security %s --no-pager", _service(host) + ".service")
    score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out).group(1))
    print(f"{host.backend.hostname}: systemd-analyze exposure {score}")
    assert score <= 3.0, out[-400:]
