"""Shared helpers for the molecule verify tests (testinfra).

Every test module gets the `host` fixture from testinfra, once per inventory host. A module that
concerns one group only declares it, e.g. `testinfra_hosts = ["ansible://monitoring"]`. The helpers
below ask the running services themselves, from inside the host, using the host's python3
(the minimal images have no curl).
"""
import base64
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import testinfra
from testinfra.utils import ansible_runner

# testinfra runs a command on a host of an ansible:// inventory through a native backend only for the
# connections it knows (ssh, docker, lxc, ...); for podman it starts a whole Ansible run per command
# (seconds each). Hosts molecule reaches with podman are asked with `podman exec` instead; the
# ansible:// host keeps its inventory variables (host.ansible.get_variables()).
_get_ansible_host = ansible_runner.get_ansible_host


def _podman_aware_get_ansible_host(config, inventory, host, **kwargs):
    hostvars = inventory.get("_meta", {}).get("hostvars", {}).get(host, {})
    if hostvars.get("ansible_connection") in ("podman", "containers.podman.podman"):
        return testinfra.get_host("podman://%s" % hostvars.get("ansible_host", host))
    return _get_ansible_host(config, inventory, host, **kwargs)


ansible_runner.get_ansible_host = _podman_aware_get_ansible_host

_HTTP = r"""
import json, ssl, sys, urllib.request, urllib.error, base64
url, method, body, auth, cafile = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=cafile or None)
req = urllib.request.Request(url, method=method, data=body.encode() if body else None)
if body:
    req.add_header("Content-Type", "application/json")
if auth:
    req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
try:
    with urllib.request.urlopen(req, timeout=20, context=ctx) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode(errors="replace")}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode(errors="replace")}))
except Exception as e:  # connection refused, timeout
    print(json.dumps({"status": 0, "body": repr(e)}))
"""


def http(host, url, method="GET", body="", auth="", cafile=""):
    """Return (status, text) of an HTTP request made from inside `host`; status 0 = no answer.
    https is verified against `cafile` (default: the system's CA certificates)."""
    cmd = host.run("python3 -c %s %s %s %s %s %s", _HTTP, url, method, body, auth, cafile)
    assert cmd.rc == 0, cmd.stderr
    out = json.loads(cmd.stdout)
    return out["status"], out["body"]


def http_json(host, url, **kwargs):
    status, text = http(host, url, **kwargs)
    assert status == 200, f"{url} answered {status}: {text[:500]}"
    return json.loads(text)


def exporter_web(hostvars, prefix):
    """How the exporters of role `prefix` (platform_exporters, gpu_exporter) are asked: (scheme, auth, cafile)
    from the scenario's web variables (literal values in the scenarios' group_vars)."""
    users = hostvars.get(prefix + "_web_basic_auth_users") or {}
    user = hostvars.get(prefix + "_web_scrape_user") or (sorted(users)[0] if users else "")
    scheme = "https" if hostvars.get(prefix + "_web_tls_cert_file") else "http"
    cafile = (hostvars.get(prefix + "_web_scrape_tls_config") or {}).get("ca_file", "")
    return scheme, ("%s:%s" % (user, users[user]) if users else ""), cafile


def exporter_http(host, hostvars, prefix, port, path="/metrics"):
    """(status, text) of the exporter on 127.0.0.1:port, with the scheme, credentials and CA it is served with."""
    scheme, auth, cafile = exporter_web(hostvars, prefix)
    return http(host, "%s://127.0.0.1:%s%s" % (scheme, port, path), auth=auth, cafile=cafile)


# The role whose web variables an exporter unit is served with (None: plain HTTP, not the collection's).
WEB_PREFIX = {"aiplatform-drift-exporter": "platform_exporters", "aiplatform-learning-exporter": "platform_exporters",
              "aiplatform-gpu-exporter": "gpu_exporter", "dcgm-exporter": "gpu_exporter"}


def unit_http(host, hostvars, unit, port, path="/metrics"):
    """(status, text) of an exporter unit's endpoint, asked the way Prometheus asks it."""
    prefix = WEB_PREFIX.get(unit)
    if prefix is None:
        return http(host, "http://127.0.0.1:%s%s" % (port, path))
    return exporter_http(host, hostvars, prefix, port, path)


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
        "reload, backup/restore, PostgreSQL restart, alert delivery) and waits for data; every "
        "scenario runs them (`-m 'not day2'` skips them for a quick look)",
    )


PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))


def playbook(name, *args, timeout=600):
    """Run playbooks/<name> on the controller against molecule's inventory: (returncode, output)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")  # molecule forces colour; output is matched as text
    binary = PROJECT / ".venv" / "bin" / "ansible-playbook"
    cmd = [str(binary) if binary.exists() else "ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
           str(PROJECT / "playbooks" / name), *args]
    proc = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


CHECK = "/usr/local/bin/aiplatform-check-dashboards"
VENV_PYTHON = "/opt/aiplatform-exporters/venv/bin/python"


def truth_check(host, hostvars, deadline_s=0, delay_s=20):
    """Run the dashboard truth check on the monitoring host, as verify_dashboards.yml does (every GPU
    node must answer the GPU panels); retry until it passes or deadline_s has passed. Returns the
    last run (rc, stdout, stderr)."""
    env = "PGPASSWORD=%s\nGRAFANA_PASSWORD=%s\n" % (hostvars["postgresql_grafana_reader_password"],
                                                     hostvars["grafana_admin_password"])
    env_file = "/root/.aiplatform-check-env"
    host.run("umask 077 && printf %s | base64 -d > %s", base64.b64encode(env.encode()).decode(), env_file)
    python = VENV_PYTHON if host.file(VENV_PYTHON).exists else "python3"
    gpu_args = " ".join("--gpu-instance %s" % h for h in hostvars["groups"].get("gpu_nodes", []))
    deadline = time.monotonic() + deadline_s
    try:
        while True:
            cmd = host.run("%s %s --env-file %s --grafana-url http://127.0.0.1:3000 --grafana-user %s --prometheus-url "
                           "http://127.0.0.1:9090 --pg-host 127.0.0.1 --pg-sslmode %s --gpu-job gpu " + gpu_args,
                           python, CHECK, env_file, hostvars.get("grafana_admin_user", "admin"),
                           "require" if hostvars.get("postgresql_ssl_enabled", False) else "disable")
            if cmd.rc == 0 or time.monotonic() > deadline:
                return cmd.rc, cmd.stdout, cmd.stderr
            time.sleep(delay_s)
    finally:
        host.run("rm -f %s", env_file)
