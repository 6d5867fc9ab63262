"""Alertmanager with the role's web config (basic auth, TLS), against the real binaries.

playbooks/render.yml writes the files the alertmanager and prometheus roles would write; the test puts
them where the roles would (the configuration directories are temporary ones), starts Debian's
prometheus-alertmanager and prometheus with the ExecStart lines of the rendered units, and asks them:

- basic auth: no credentials and a wrong password get 401, the right password 200 (/api/v2/status);
- TLS: https with the CA works, plain http to the same port is refused;
- Prometheus, configured by the role for that Alertmanager (basic_auth with password_file, https and
  tls_config), delivers an alert to it and scrapes it; with a wrong password file it is refused;
- a password change needs no restart, switching TLS on does (why the unit changes with TLS).

Needs /usr/bin/prometheus-alertmanager and /usr/bin/prometheus (Debian packages prometheus-alertmanager,
prometheus). Run: .venv/bin/python -m pytest -q tests/integration/alertmanager
"""
import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest
import yaml

from certs import ca_and_leaf
from live import AM_BINARY, PROM_BINARY, Server, exec_start, free_port, request, start_alertmanager, wait_until
from live import render as _render

USERS = {"prometheus": "alerts-from-prometheus", "ops": "ops password with spaces"}
SEED = "integration-seed"


def render(tmp, name, variables, tags):
    return _render(tmp, name, variables, tags, secrets=USERS.values())


ALWAYS_FIRING = """groups:
  - name: web-auth-test
    rules:
      - alert: WebAuthTestAlwaysFiring
        expr: vector(1)
        labels: {severity: warning}
"""


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    for binary in (AM_BINARY, PROM_BINARY):
        assert os.access(binary, os.X_OK), f"{binary} is required (Debian packages prometheus-alertmanager, prometheus)"
    return tmp_path_factory.mktemp("am-web")


def am_vars(tmp, port, **extra):
    return {"alertmanager_config_dir": str(tmp / "etc/alertmanager"),
            "alertmanager_data_dir": str(tmp / "data/alertmanager"),
            "alertmanager_web_listen_address": f"127.0.0.1:{port}",
            "alertmanager_web_basic_auth_users": USERS,
            "alertmanager_web_basic_auth_salt_seed": SEED,
            "alertmanager_web_basic_auth_cost": 6, **extra}


@pytest.fixture(scope="module")
def plain_am(tmp):
    """Alertmanager with basic auth over plain HTTP."""
    port = free_port()
    (tmp / "data/alertmanager").mkdir(parents=True, exist_ok=True)
    rendered = render(tmp, "plain", am_vars(tmp, port), "alertmanager")
    server, unit = start_alertmanager(rendered, tmp, "plain")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: (request(url + "/-/ready", auth=("ops", USERS["ops"]))[0] == 200, "not ready"), "Alertmanager ready", server)
    yield {"url": url, "server": server, "unit": unit, "web_config": Path(tmp / "etc/alertmanager/web-config.yml")}
    server.stop()


def test_unit_runs_with_the_web_config_and_no_cluster(plain_am, tmp):
    argv = exec_start(plain_am["unit"])
    assert f"--web.config.file={tmp}/etc/alertmanager/web-config.yml" in argv
    assert "--cluster.listen-address=" in argv
    assert "TLS on in" not in plain_am["unit"]


def test_basic_auth_over_http(plain_am):
    url = plain_am["url"] + "/api/v2/status"
    assert request(url)[0] == 401
    assert request(url, auth=("prometheus", "wrong"))[0] == 401
    assert request(url, auth=("nobody", USERS["prometheus"]))[0] == 401
    assert request(url, auth=("ops", USERS["prometheus"]))[0] == 401       # another user's password
    for user, password in USERS.items():
        status, body = request(url, auth=(user, password))
        assert status == 200, body
        assert json.loads(body)["cluster"]["status"] == "disabled"
    # the readiness endpoint the role waits on is protected too
    assert request(plain_am["url"] + "/-/ready")[0] == 401


def test_password_change_needs_no_restart_but_tls_does(plain_am, tmp):
    """Alertmanager reads the users at every request (the role writes the file without a restart),
    but chooses HTTP or HTTPS only when it starts: the unit carries a TLS line so switching restarts it."""
    web_config = plain_am["web_config"]
    original = web_config.read_text()
    url = plain_am["url"] + "/api/v2/status"
    pid = plain_am["server"].proc.pid
    try:
        new = {"ops": bcrypt.hashpw(b"rotated password", bcrypt.gensalt(6)).decode()}
        web_config.write_text(yaml.safe_dump({"basic_auth_users": new}))
        assert request(url, auth=("ops", "rotated password"))[0] == 200
        assert request(url, auth=("ops", USERS["ops"]))[0] == 401

        certs = ca_and_leaf(tmp / "certs-swap")
        web_config.write_text(yaml.safe_dump({"tls_server_config": {"cert_file": str(certs["cert"]), "key_file": str(certs["key"])},
                                              "basic_auth_users": new}))
        # still plain HTTP: TLS needs the restart the unit change triggers
        assert request(url, auth=("ops", "rotated password"))[0] == 200
        with pytest.raises((ssl.SSLError, urllib.error.URLError)):
            request(url.replace("http:", "https:"), auth=("ops", "rotated password"), cafile=certs["ca"])
        assert plain_am["server"].proc.pid == pid and plain_am["server"].proc.poll() is None
    finally:
        web_config.write_text(original)
    assert request(url, auth=("ops", USERS["ops"]))[0] == 200


@pytest.fixture(scope="module")
def tls_stack(tmp):
    """Alertmanager with basic auth and TLS, and Prometheus configured by the role to use it."""
    certs = ca_and_leaf(tmp / "certs")
    am_port, prom_port = free_port(), free_port()
    for d in ("data/alertmanager-tls", "data/prometheus", "etc/prometheus/rules"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    variables = am_vars(tmp, am_port, alertmanager_config_dir=str(tmp / "etc/alertmanager-tls"),
                       alertmanager_data_dir=str(tmp / "data/alertmanager-tls"),
                       alertmanager_web_tls_cert_file=str(certs["cert"]), alertmanager_web_tls_key_file=str(certs["key"]))
    variables.update({
        "prometheus_config_dir": str(tmp / "etc/prometheus"),
        "prometheus_rules_dir": str(tmp / "etc/prometheus/rules"),
        "prometheus_data_dir": str(tmp / "data/prometheus"),
        "prometheus_web_listen_address": f"127.0.0.1:{prom_port}",
        "prometheus_global_scrape_interval": "1s",
        "prometheus_global_scrape_timeout": "1s",
        "prometheus_global_evaluation_interval": "1s",
        "prometheus_alertmanager_basic_auth_user": "prometheus",
        "prometheus_alertmanager_basic_auth_password": USERS["prometheus"],
        "prometheus_alertmanager_tls_config": {"ca_file": str(certs["ca"])},
        "platform_exporters_drift_enabled": False,
        "platform_exporters_learning_enabled": False,
    })
    rendered = render(tmp, "tls", variables, "alertmanager,prometheus")
    assert not (tmp / "etc/prometheus/alertmanager.password").exists()   # render writes no secrets
    # what configure.yml writes from prometheus_alertmanager_basic_auth_password
    password_file = tmp / "etc/prometheus/alertmanager.password"
    password_file.write_text(USERS["prometheus"])
    (tmp / "etc/prometheus/rules/web-auth-test.rules.yml").write_text(ALWAYS_FIRING)

    am, unit = start_alertmanager(rendered, tmp, "tls")
    am_url = f"https://127.0.0.1:{am_port}"
    wait_until(lambda: (request(am_url + "/-/ready", auth=("ops", USERS["ops"]), cafile=certs["ca"])[0] == 200, "not ready"),
               "Alertmanager (TLS) ready", am)
    prom_argv = exec_start((rendered / "etc/systemd/system/prometheus.service").read_text())
    assert prom_argv[0] == PROM_BINARY, prom_argv
    prom = Server(prom_argv, tmp / "prometheus.log")
    prom.start()
    prom_url = f"http://127.0.0.1:{prom_port}"
    try:
        wait_until(lambda: (request(prom_url + "/-/ready")[0] == 200, "not ready"), "Prometheus ready", prom)
        yield {"am_url": am_url, "prom_url": prom_url, "certs": certs, "unit": unit, "rendered": rendered,
               "password_file": password_file, "am": am, "prom": prom}
    finally:
        prom.stop()
        am.stop()


def test_tls_and_basic_auth(tls_stack):
    url = tls_stack["am_url"] + "/api/v2/status"
    ca = tls_stack["certs"]["ca"]
    assert request(url, cafile=ca)[0] == 401
    assert request(url, auth=("prometheus", "wrong"), cafile=ca)[0] == 401
    status, body = request(url, auth=("prometheus", USERS["prometheus"]), cafile=ca)
    assert status == 200, body
    # plain HTTP on the TLS port is refused
    status, body = request(url.replace("https:", "http:"), auth=("prometheus", USERS["prometheus"]))
    assert status == 400 and "HTTPS server" in body, (status, body)
    # and a client that does not trust the CA (the system's CAs only) gets no answer at all
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        request(url, auth=("prometheus", USERS["prometheus"]))
    assert "TLS on in" in tls_stack["unit"]


def _prom_query(stack, query):
    status, body = request(stack["prom_url"] + "/api/v1/query?query=" + urllib.request.quote(query))
    assert status == 200, body
    return json.loads(body)["data"]["result"]


def test_prometheus_delivers_alerts_and_scrapes_with_the_role_settings(tls_stack):
    stack = tls_stack
    ca = stack["certs"]["ca"]

    def discovered():
        status, body = request(stack["prom_url"] + "/api/v1/alertmanagers")
        urls = [a["url"] for a in json.loads(body)["data"]["activeAlertmanagers"]]
        return any(u.startswith(stack["am_url"]) for u in urls), urls

    wait_until(discovered, "Prometheus lists the https Alertmanager", stack["prom"])

    def delivered():
        status, body = request(stack["am_url"] + "/api/v2/alerts", auth=("ops", USERS["ops"]), cafile=ca)
        names = [a["labels"]["alertname"] for a in json.loads(body)] if status == 200 else body
        return "WebAuthTestAlwaysFiring" in names, names

    wait_until(delivered, "the alert reaches Alertmanager through basic auth and TLS", stack["prom"], timeout=90)

    def scraped(value):
        def check():
            result = _prom_query(stack, 'up{job="alertmanager"}')
            return bool(result) and result[0]["value"][1] == value, result
        return check

    wait_until(scraped("1"), "Prometheus scrapes Alertmanager (up == 1)", stack["prom"])
    # the password file is what Prometheus sends: with a wrong one it is refused
    stack["password_file"].write_text("not the password")
    try:
        wait_until(scraped("0"), "a wrong password file makes the scrape fail (up == 0)", stack["prom"])
        status, body = request(stack["prom_url"] + "/api/v1/targets?state=active")
        errors = [t["lastError"] for t in json.loads(body)["data"]["activeTargets"] if t["labels"]["job"] == "alertmanager"]
        assert any("401" in e for e in errors), errors
    finally:
        stack["password_file"].write_text(USERS["prometheus"])
    wait_until(scraped("1"), "the right password again (up == 1)", stack["prom"])


def test_prometheus_config_holds_no_password(tls_stack):
    config_text = (tls_stack["rendered"] / str(tls_stack["password_file"].parent / "prometheus.yml").lstrip("/")).read_text()
    for secret in USERS.values():
        assert secret not in config_text
    config = yaml.safe_load(config_text)
    entry = config["alerting"]["alertmanagers"][0]
    assert entry["scheme"] == "https"
    assert entry["basic_auth"] == {"username": "prometheus", "password_file": str(tls_stack["password_file"])}
