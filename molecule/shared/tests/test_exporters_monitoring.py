"""The monitoring host's exporters: secrets kept out of units and processes, PostgreSQL going away
and coming back, and Prometheus' view of its targets.
"""
import json

import pytest

from conftest import JOBS, enabled_exporter_units, http_json, metric_value, poll, unit_http

testinfra_hosts = ["ansible://monitoring"]


def test_database_password_stays_out_of_units_configs_and_processes(host, hostvars):
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


def test_database_exporters_are_connected(host, hostvars):
    """Each exporter that reads PostgreSQL reaches it with the credential systemd handed over."""
    ups = {"aiplatform-drift-exporter": "aiplatform_drift_exporter_up",
           "aiplatform-learning-exporter": "aiplatform_learning_exporter_up",
           "prometheus-postgres-exporter": "pg_up"}
    units = dict((u, p) for u, p in enabled_exporter_units(hostvars).items() if u in ups)
    assert {"aiplatform-drift-exporter", "aiplatform-learning-exporter"} <= set(units)

    def values():
        return dict((u, metric_value(unit_http(host, hostvars, u, p)[1], ups[u]))
                    for u, p in units.items())

    ok = poll(lambda: all(v == 1.0 for v in values().values()), 90, 3)
    print("database exporters: %s" % values())
    assert ok, values()


@pytest.mark.day2
def test_drift_and_learning_exporters_follow_postgresql(host, hostvars):
    """PostgreSQL stops: both report _up 0 and keep serving; it starts: both recover, same process."""
    assert not hostvars.get("groups", {}).get("database"), "this test stops PostgreSQL on the monitoring host"
    exporters = dict((u, p) for u, p in enabled_exporter_units(hostvars).items()
                     if u in ("aiplatform-drift-exporter", "aiplatform-learning-exporter"))
    assert exporters

    def up_values():
        values = {}
        for unit, port in exporters.items():
            status, body = unit_http(host, hostvars, unit, port)
            assert status == 200, "%s stopped answering: %s" % (unit, body[:300])
            values[unit] = metric_value(body, unit.replace("aiplatform-", "aiplatform_").replace("-", "_") + "_up")
        return values

    pids = dict((u, host.check_output("systemctl show -p MainPID --value %s", u)) for u in exporters)
    assert poll(lambda: all(v == 1.0 for v in up_values().values()), 60), up_values()
    host.check_output("systemctl stop postgresql")
    try:
        down = poll(lambda: all(v == 0.0 for v in up_values().values()), 60)
        print("with PostgreSQL stopped: %s" % up_values())
        assert down, up_values()
    finally:
        host.check_output("systemctl start postgresql")
    assert poll(lambda: all(v == 1.0 for v in up_values().values()), 90), up_values()
    print("after PostgreSQL started again: %s" % up_values())
    for unit, pid in pids.items():
        assert host.check_output("systemctl show -p MainPID --value %s", unit) == pid, "%s was restarted" % unit


def test_prometheus_scrapes_the_exporters(host, hostvars):
    jobs = set(JOBS[u] for u in enabled_exporter_units(hostvars))
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

    ok = poll(lambda: set(health()) == jobs and all(h == "up" for ts in health().values() for _, h, _ in ts), 120, 5)
    print("Prometheus targets: %s" % health())
    assert ok, health()
    gpu = dict((i, h) for i, h, _ in health().get("gpu", []))
    assert sorted(gpu) == sorted(groups.get("gpu_nodes", [])), gpu


def test_each_enabled_exporter_is_registered_on_its_host(host, hostvars):
    # docs/scrape-targets.md: a role registers its job in a local fact that Prometheus' configuration is
    # built from; the registrations must be exactly the enabled exporters, at their ports and units.
    found = {}
    for path in host.check_output("ls /etc/ansible/facts.d").split():
        if path.startswith("aiplatform_scrape_") and path.endswith(".fact"):
            found[path[len("aiplatform_scrape_"):-len(".fact")]] = json.loads(
                host.file("/etc/ansible/facts.d/" + path).content_string)
    expected = dict((JOBS[unit], (unit, port)) for unit, port in enabled_exporter_units(hostvars).items())
    exporters = dict((job, (entry["unit"], entry["port"])) for job, entry in found.items() if job in JOBS.values())
    assert exporters == expected, found
    assert found["node"]["role"] == "node_exporter", found
    for job, entry in found.items():
        assert host.file("/etc/ansible/facts.d/aiplatform_scrape_%s.fact" % job).mode == 0o644
        assert not set(entry.get("client", {})) & {"password", "token"}, (job, entry)
