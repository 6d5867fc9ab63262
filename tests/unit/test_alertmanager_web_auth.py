"""Basic auth and TLS for Alertmanager, and Prometheus as its client, without hosts:

- the filter plugin web_basic_auth_hashes (shared by roles prometheus and alertmanager): stable hashes,
  the same as the collection's earlier releases wrote, clear errors;
- playbooks/render.yml with the alertmanager web variables: the web config passes
  `promtool check web-config`, prometheus.yml passes `promtool check config` and reaches Alertmanager
  with basic_auth (password_file, never the password) over https;
- preflight: every inconsistent combination fails before anything is written, naming the variables,
  and without printing a password.

Run: .venv/bin/python -m pytest -q tests/unit/test_alertmanager_web_auth.py
"""
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
USERS = {"prometheus": "am-client-secret", "ops": "ops secret with spaces"}
SEED = "unit-seed"
INVENTORY = {
    "all": {
        "vars": {"ansible_connection": "ssh", "ansible_ssh_common_args": "-o ConnectTimeout=2"},
        "hosts": {"mon1": {"ansible_host": "192.0.2.10"}, "mon2": {"ansible_host": "192.0.2.20"}},
        "children": {"monitoring": {"hosts": {"mon1": {}, "mon2": {}}}},
    }
}


FILTER_PATH = REPO / "plugins/filter/web_basic_auth_hashes.py"
# The filter is called in a child process: importing controller-side ansible (ansible.errors) into this
# process would change how AnsibleModule reports warnings to the in-process module tests of tests/unit/plugins.
_CALL = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("web_basic_auth_hashes", sys.argv[1])
plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plugin)
request = json.load(sys.stdin)
try:
    print(json.dumps({"hashes": plugin.web_basic_auth_hashes(request["users"], **request["kwargs"])}))
except Exception as exc:
    from ansible.errors import AnsibleFilterError
    print(json.dumps({"error": type(exc).__name__, "filter_error": isinstance(exc, AnsibleFilterError), "message": str(exc)}))
"""


class FilterError(Exception):
    pass


def web_basic_auth_hashes(users, **kwargs):
    proc = subprocess.run([sys.executable, "-c", _CALL, str(FILTER_PATH)], input=json.dumps({"users": users, "kwargs": kwargs}),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    if "error" in answer:
        assert answer["filter_error"], answer
        raise FilterError(answer["message"])
    return answer["hashes"]


def tool(name):
    path = shutil.which(name)
    assert path, f"{name} is required (Debian package prometheus)"
    return path


def render(tmp_path, variables, tags="alertmanager,prometheus", host_vars=None, name="render"):
    inventory = yaml.safe_load(yaml.safe_dump(INVENTORY))
    for host, hv in (host_vars or {}).items():
        inventory["all"]["hosts"][host].update(hv)
    (tmp_path / f"{name}-hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / f"{name}-vars.yml").write_text(yaml.safe_dump(variables))
    out = tmp_path / name
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / f"{name}-hosts.yml"), str(REPO / "playbooks/render.yml"),
                           "-e", f"render_dir={out}", "-e", f"@{tmp_path / f'{name}-vars.yml'}", "--tags", tags],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    return proc, out


def make_cert(directory):
    """A self-signed certificate and key, so that promtool can load the pair named in the web config
    (the helper of tests/integration/alertmanager, which the live tests use too)."""
    spec = importlib.util.spec_from_file_location("certs", REPO / "tests/integration/alertmanager/certs.py")
    certs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(certs)
    return certs.self_signed(directory, "am")


# --- the filter ---------------------------------------------------------------------------------

def test_hashes_are_those_of_the_earlier_releases():
    """The filter replaced roles/prometheus/files/bcrypt_hash.py: the same input must keep the same
    hashes (else every upgrade would rewrite web configs). Vectors written by that script."""
    assert web_basic_auth_hashes({"admin": "correct horse battery staple", "bob": "s3cret"}, cost=4) == {
        "admin": "$2b$04$Uq/PXNeMHDlJ9yEzfOyV9en7CBup0Twm6vJNU9Xx1q8hW3mZKKhT2",
        "bob": "$2b$04$553tfsHGFC.ljTtcUI/NO.i3phltv1Bw6v2kTD1pOGO.VOW4E5rEW",
    }
    assert web_basic_auth_hashes({"admin": "correct horse battery staple"}, seed="site-seed", cost="5") == {
        "admin": "$2b$05$.iUj6olxv06JHnLsRe5sgON2aRzwJNWJFUDvkkxxTLTAli/fT/sWW"}


def test_hashes_are_stable_verifiable_and_depend_on_every_input():
    first = web_basic_auth_hashes(USERS, seed=SEED, cost=4)
    assert first == web_basic_auth_hashes(dict(reversed(list(USERS.items()))), seed=SEED, cost=4)
    for user, password in USERS.items():
        assert first[user].startswith("$2b$04$")
        assert bcrypt.checkpw(password.encode(), first[user].encode())
        assert not bcrypt.checkpw(b"wrong", first[user].encode())
    assert web_basic_auth_hashes(USERS, seed="other", cost=4)["ops"] != first["ops"]
    assert web_basic_auth_hashes({"ops": "new password"}, seed=SEED, cost=4)["ops"] != first["ops"]
    assert web_basic_auth_hashes(USERS, seed=SEED, cost=5)["ops"].startswith("$2b$05$")
    # the user name is part of the salt: two users with one password get two hashes
    same = web_basic_auth_hashes({"a": "pw", "b": "pw"}, cost=4)
    assert same["a"][7:29] != same["b"][7:29]


@pytest.mark.parametrize("users, kwargs, message", [
    ({"ops": ""}, {}, "user ops has no password"),
    ({"ops": None}, {}, "user ops has no password"),
    ({"": "pw"}, {}, "user names must be non-empty strings"),
    (["ops"], {}, "must be a mapping"),
    ({"ops": "pw"}, {"cost": 3}, "cost must be an integer from 4 to 31"),
    ({"ops": "pw"}, {"cost": 32}, "cost must be an integer from 4 to 31"),
    ({"ops": "pw"}, {"cost": "high"}, "cost must be an integer from 4 to 31"),
])
def test_filter_errors(users, kwargs, message):
    with pytest.raises(FilterError, match=message):
        web_basic_auth_hashes(users, **kwargs)


# --- render with basic auth and TLS ----------------------------------------------------------------

@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("am-auth")
    cert, key = make_cert(tmp / "tls")
    variables = {
        "alertmanager_web_basic_auth_users": USERS,
        "alertmanager_web_basic_auth_salt_seed": SEED,
        "alertmanager_web_basic_auth_cost": 5,
        "alertmanager_web_tls_cert_file": str(cert),
        "alertmanager_web_tls_key_file": str(key),
        "prometheus_alertmanager_basic_auth_user": "prometheus",
        "prometheus_alertmanager_basic_auth_password": USERS["prometheus"],
        "prometheus_alertmanager_tls_config": {"ca_file": str(cert), "server_name": "localhost"},
        "prometheus_alertmanager_extra_targets": ["alerts.example.com:9093"],
    }
    proc, out = render(tmp, variables)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc, out, cert, key


def test_web_config_passes_promtool_and_holds_verifiable_hashes(secured):
    proc, out, cert, key = secured
    for host in ("mon1", "mon2"):
        path = out / host / "etc/alertmanager/web-config.yml"
        check = subprocess.run([tool("promtool"), "check", "web-config", str(path)], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
        text = path.read_text()
        assert text.startswith("#") and "Ansible managed" in text
        config = yaml.safe_load(text)
        assert config["tls_server_config"] == {"cert_file": str(cert), "key_file": str(key), "min_version": "TLS12"}
        assert config["basic_auth_users"] == web_basic_auth_hashes(USERS, seed=SEED, cost=5)
        for user, password in USERS.items():
            assert bcrypt.checkpw(password.encode(), config["basic_auth_users"][user].encode())
            assert password not in text


def test_no_password_in_any_rendered_file_or_in_the_output(secured):
    proc, out, _cert, _key = secured
    for password in USERS.values():
        assert password not in proc.stdout + proc.stderr
        for path in out.rglob("*"):
            if path.is_file():
                assert password not in path.read_text(errors="replace"), path


def test_unit_runs_with_the_web_config(secured):
    _proc, out, _cert, _key = secured
    unit = (out / "mon1/etc/systemd/system/prometheus-alertmanager.service").read_text()
    assert "  --web.config.file=/etc/alertmanager/web-config.yml \\\n" in unit
    # Alertmanager picks HTTP or HTTPS at start only: the TLS state is part of the unit, so switching it restarts
    assert "# TLS on in /etc/alertmanager/web-config.yml" in unit


def test_prometheus_reaches_alertmanager_with_password_file_and_https(secured):
    _proc, out, cert, _key = secured
    path = out / "mon1/etc/prometheus/prometheus.yml"
    check = subprocess.run([tool("promtool"), "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(path.read_text())
    client = {"scheme": "https", "tls_config": {"ca_file": str(cert), "server_name": "localhost"},
              "basic_auth": {"username": "prometheus", "password_file": "/etc/prometheus/alertmanager.password"}}
    assert config["alerting"]["alertmanagers"] == [
        {**client, "static_configs": [{"targets": ["192.0.2.10:9093", "192.0.2.20:9093", "alerts.example.com:9093"]}]}]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "alertmanager")
    assert job == {"job_name": "alertmanager", **client, "static_configs": [
        {"targets": ["192.0.2.10:9093"], "labels": {"instance": "mon1"}},
        {"targets": ["192.0.2.20:9093"], "labels": {"instance": "mon2"}}]}
    # Prometheus' own job is untouched by the Alertmanager client settings
    prom = next(j for j in config["scrape_configs"] if j["job_name"] == "prometheus")
    assert "basic_auth" not in prom and "scheme" not in prom


def test_client_settings_alone_work_for_an_unmanaged_alertmanager(tmp_path):
    """No managed Alertmanager; an external one behind https with basic auth."""
    proc, out = render(tmp_path, {
        "prometheus_alertmanager_extra_targets": ["alerts.example.com:443"],
        "prometheus_alertmanager_scheme": "https",
        "prometheus_alertmanager_basic_auth_user": "prom",
        "prometheus_alertmanager_basic_auth_password": "external-secret",
    }, tags="prometheus", host_vars={"mon1": {"alertmanager_enabled": False}, "mon2": {"alertmanager_enabled": False}})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    text = (out / "mon1/etc/prometheus/prometheus.yml").read_text()
    assert "external-secret" not in text
    config = yaml.safe_load(text)
    assert config["alerting"]["alertmanagers"] == [{
        "scheme": "https", "basic_auth": {"username": "prom", "password_file": "/etc/prometheus/alertmanager.password"},
        "static_configs": [{"targets": ["alerts.example.com:443"]}]}]
    assert "alertmanager" not in {j["job_name"] for j in config["scrape_configs"]}
    check = subprocess.run([tool("promtool"), "check", "config", str(out / "mon1/etc/prometheus/prometheus.yml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


# --- preflight --------------------------------------------------------------------------------------

@pytest.mark.parametrize("variables, host_vars, tags, expected", [
    pytest.param({"alertmanager_web_basic_auth_users": USERS}, None, "prometheus",
                 ["Alertmanager on mon1 requires basic auth (alertmanager_web_basic_auth_users is set)",
                  "set prometheus_alertmanager_basic_auth_user", "prometheus_alertmanager_basic_auth_password"],
                 id="auth-without-client-credentials"),
    pytest.param({"alertmanager_web_basic_auth_users": USERS, "prometheus_alertmanager_basic_auth_user": "prometheus",
                  "prometheus_alertmanager_basic_auth_password": "not-the-password"}, None, "prometheus",
                 ["prometheus_alertmanager_basic_auth_password is not the password of user 'prometheus'"
                  " in alertmanager_web_basic_auth_users of mon1"],
                 id="wrong-client-password"),
    pytest.param({"alertmanager_web_basic_auth_users": USERS, "prometheus_alertmanager_basic_auth_user": "grafana",
                  "prometheus_alertmanager_basic_auth_password": USERS["prometheus"]}, None, "prometheus",
                 ["prometheus_alertmanager_basic_auth_user 'grafana' is not a user of the Alertmanager on mon1",
                  "alertmanager_web_basic_auth_users has ops, prometheus"],
                 id="unknown-client-user"),
    pytest.param({"prometheus_alertmanager_basic_auth_user": "prometheus"}, None, "prometheus",
                 ["prometheus_alertmanager_basic_auth_user and prometheus_alertmanager_basic_auth_password (both or neither"],
                 id="client-user-without-password"),
    pytest.param({}, {"mon1": {"alertmanager_web_tls_cert_file": "/etc/a.crt", "alertmanager_web_tls_key_file": "/etc/a.key"}},
                 "prometheus",
                 ["alertmanager_web_tls_cert_file is set on mon1 and not on mon2", "give them all TLS or none"],
                 id="tls-on-some-alertmanagers"),
    pytest.param({"alertmanager_web_tls_cert_file": "/etc/a.crt", "alertmanager_web_tls_key_file": "/etc/a.key",
                  "prometheus_alertmanager_scheme": "http"}, None, "prometheus",
                 ["prometheus_alertmanager_scheme is 'http'", "leave prometheus_alertmanager_scheme empty or https"],
                 id="tls-but-scheme-http"),
    pytest.param({"alertmanager_web_tls_cert_file": "/etc/a.crt"}, None, "alertmanager",
                 ["alertmanager_web_tls_cert_file and alertmanager_web_tls_key_file (both or neither)"],
                 id="cert-without-key"),
    pytest.param({"alertmanager_web_basic_auth_users": {"ops": "", "prometheus": USERS["prometheus"]}}, None, "alertmanager",
                 ["alertmanager_web_basic_auth_users.ops: each user needs a name without ':' and a non-empty password"],
                 id="empty-password"),
    pytest.param({"alertmanager_web_basic_auth_users": USERS, "alertmanager_web_basic_auth_cost": 40}, None, "alertmanager",
                 ["alertmanager_web_basic_auth_cost (bcrypt cost 4 to 31, got '40')"],
                 id="cost-out-of-range"),
])
def test_preflight_rejects(tmp_path, variables, host_vars, tags, expected):
    proc, out = render(tmp_path, variables, tags=tags, host_vars=host_vars)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    for text in expected:
        assert text in output, output[-3000:]
    for password in list(USERS.values()) + ["not-the-password"]:
        assert password not in output
    # the check runs before the role writes anything
    role = "prometheus" if tags == "prometheus" else "alertmanager"
    assert not list(out.rglob(f"etc/{role}/*"))
