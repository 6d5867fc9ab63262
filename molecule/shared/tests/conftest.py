"""Shared helpers for the molecule verify tests (testinfra).

Every test module gets the `host` fixture from testinfra, once per inventory host. A module that
concerns one group only declares it, e.g. `testinfra_hosts = ["ansible://monitoring"]`. The helpers
below ask the running services themselves, from inside the host, using the host's python3
(the minimal images have no curl).
"""
import json
import re
import time

import pytest

_HTTP = r"""
import json, sys, urllib.request, urllib.error, base64
url, method, body, auth = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
req = urllib.request.Request(url, method=method, data=body.encode() if body else None)
if body:
    req.add_header("Content-Type", "application/json")
if auth:
    req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode(errors="replace")}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode(errors="replace")}))
except Exception as e:  # connection refused, timeout
    print(json.dumps({"status": 0, "body": repr(e)}))
"""


def http(host, url, method="GET", body="", auth=""):
    """Return (status, text) of an HTTP request made from inside `host`; status 0 = no answer."""
    cmd = host.run("python3 -c %s %s %s %s %s", _HTTP, url, method, body, auth)
    assert cmd.rc == 0, cmd.stderr
    out = json.loads(cmd.stdout)
    return out["status"], out["body"]


def http_json(host, url, **kwargs):
    status, text = http(host, url, **kwargs)
    assert status == 200, f"{url} answered {status}: {text[:500]}"
    return json.loads(text)


def in_group(host, group):
    return group in host.ansible.get_variables().get("group_names", [])


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


def enabled_exporter_units(hostvars):
    return dict((unit, hostvars.get(port_var, port_default))
                for unit, (var, default, port_var, port_default) in MONITORING_UNITS.items()
                if bool(hostvars.get(var, default)))


def metric_value(body, name):
    m = re.search(r"^%s(?:\{[^}]*\})? ([0-9.eE+-]+|NaN)$" % re.escape(name), body, re.M)
    return float(m.group(1)) if m else None


def poll(fn, timeout, interval=2.0):
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


@pytest.fixture
def hostvars(host):
    return host.ansible.get_variables()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "day2: re-runs playbooks or restarts services to prove day-2 behaviour (thresholds, pg_hba "
        "reload, backup/restore, PostgreSQL restart) and waits for data; the Debian 12 scenario runs "
        "them, the Debian 13 scenario deselects them to stay within CI's time",
    )
