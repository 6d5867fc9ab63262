"""The roles' own configure tasks for the web config and the Alertmanager password, run for real on this
machine (role_configure.yml, temporary directories, no service touched):

- Alertmanager's web-config.yml is root:<group> 0640, checked by promtool before it replaces the live
  file (a key that does not match the certificate is refused and the live file stays as it was),
  unchanged on a second run;
- without promtool the role still checks that the certificate and key exist and says it skipped the check;
- Prometheus' alertmanager.password is root:prometheus 0640 and prometheus.yml only names it; it goes
  away when the credentials are unset.

Needs /usr/bin/promtool and /usr/bin/amtool (Debian packages prometheus, prometheus-alertmanager) and
the group `prometheus` (created by those packages). Run: .venv/bin/python -m pytest -q tests/integration/alertmanager
"""
import grp
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
import yaml

from certs import self_signed

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(__file__).with_name("role_configure.yml")
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
USERS = {"prometheus": "role-task-secret", "ops": "another role secret"}
SKIPPED = "without `promtool check web-config`"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    for tool in ("/usr/bin/promtool", "/usr/bin/amtool"):
        assert os.access(tool, os.X_OK), f"{tool} is required (Debian packages prometheus, prometheus-alertmanager)"
    gid = grp.getgrnam("prometheus").gr_gid   # KeyError: install the Debian package prometheus
    tmp = tmp_path_factory.mktemp("am-role")
    cert, key = self_signed(tmp / "tls", "am")
    _other_cert, other_key = self_signed(tmp / "tls", "other")
    for d in ("etc/alertmanager/templates", "etc/prometheus/rules"):
        (tmp / d).mkdir(parents=True)
    return {"tmp": tmp, "gid": gid, "cert": cert, "key": key, "other_key": other_key}


def run(env, roles, host_vars=None, args=(), **extra):
    tmp = env["tmp"]
    inventory = {"monitoring": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, **(host_vars or {})}}}}
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory))
    variables = {"test_roles": roles, "test_render_dir": str(tmp / "render"),
                 "alertmanager_config_dir": str(tmp / "etc/alertmanager"),
                 "prometheus_config_dir": str(tmp / "etc/prometheus"),
                 "prometheus_rules_dir": str(tmp / "etc/prometheus/rules"),
                 **extra}
    (tmp / "vars.json").write_text(json.dumps(variables))
    env_vars = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp / "hosts.yml"), str(PLAYBOOK), "-e", f"@{tmp / 'vars.json'}", *args],
                          cwd=REPO, env=env_vars, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    for secret in USERS.values():
        assert secret not in output
    return proc.returncode, output


def am_web(env, **extra):
    return {"alertmanager_web_basic_auth_users": USERS, "alertmanager_web_basic_auth_cost": 5,
            "alertmanager_web_tls_cert_file": str(env["cert"]), "alertmanager_web_tls_key_file": str(env["key"]), **extra}


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_web_config_written_checked_and_stable(env):
    # verbose and with --diff: neither the passwords (run() checks) nor the hashes are shown
    rc, out = run(env, ["alertmanager"], args=("-vvv", "--diff"), **am_web(env))
    assert rc == 0, out[-4000:]
    assert "$2b$05$" not in out
    assert SKIPPED not in out                      # /usr/bin/promtool was found and used
    web = env["tmp"] / "etc/alertmanager/web-config.yml"
    st = web.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 0, env["gid"])
    config = yaml.safe_load(web.read_text())
    assert config["tls_server_config"]["cert_file"] == str(env["cert"])
    for user, password in USERS.items():
        assert bcrypt.checkpw(password.encode(), config["basic_auth_users"][user].encode())
    before = sha(web)

    rc, out = run(env, ["alertmanager"], **am_web(env))
    assert rc == 0, out[-4000:]
    assert "changed=0" in out, out[-2000:]
    assert sha(web) == before


def test_promtool_refuses_a_key_that_does_not_match_and_the_live_file_stays(env):
    web = env["tmp"] / "etc/alertmanager/web-config.yml"
    rc, out = run(env, ["alertmanager"], **am_web(env))
    assert rc == 0, out[-4000:]
    before = sha(web)
    rc, out = run(env, ["alertmanager"], **am_web(env, alertmanager_web_tls_key_file=str(env["other_key"]),
                                                    alertmanager_web_basic_auth_users={"ops": "changed too"}))
    assert rc != 0
    assert "failed to validate" in out and "private key does not match public key" in out, out[-3000:]
    assert sha(web) == before


def test_a_named_promtool_must_exist(env):
    rc, out = run(env, ["alertmanager"], **am_web(env, alertmanager_web_config_promtool="/nonexistent/promtool"))
    assert rc != 0
    assert "alertmanager_web_config_promtool=/nonexistent/promtool: no such file on localhost" in out, out[-3000:]


def test_without_promtool_the_certificate_and_key_must_still_exist(env):
    no_promtool = {"__alertmanager_promtool_candidates": ["/nonexistent/promtool"]}
    rc, out = run(env, ["alertmanager"], **am_web(env, **no_promtool))
    assert rc == 0, out[-4000:]
    assert SKIPPED in out
    rc, out = run(env, ["alertmanager"], **am_web(env, alertmanager_web_tls_cert_file=str(env["tmp"] / "missing.crt"),
                                                    **no_promtool))
    assert rc != 0
    assert "alertmanager_web_tls_cert_file / alertmanager_web_tls_key_file: missing on localhost" in out, out[-3000:]
    assert str(env["tmp"] / "missing.crt") in out


def test_prometheus_password_file(env):
    client = {"prometheus_alertmanager_basic_auth_user": "prometheus",
              "prometheus_alertmanager_basic_auth_password": USERS["prometheus"]}
    host_vars = {"alertmanager_web_basic_auth_users": USERS}
    rc, out = run(env, ["prometheus"], host_vars=host_vars, **client)
    assert rc == 0, out[-4000:]
    secret = env["tmp"] / "etc/prometheus/alertmanager.password"
    st = secret.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o640, 0, env["gid"])
    assert secret.read_text() == USERS["prometheus"]
    text = (env["tmp"] / "etc/prometheus/prometheus.yml").read_text()   # written after promtool check config
    assert USERS["prometheus"] not in text
    config = yaml.safe_load(text)
    assert config["alerting"]["alertmanagers"][0]["basic_auth"] == {"username": "prometheus", "password_file": str(secret)}

    rc, out = run(env, ["prometheus"], host_vars=host_vars, **client)
    assert rc == 0 and "changed=0" in out, out[-3000:]

    # the preflight in front of it: Alertmanager with users, Prometheus without credentials
    rc, out = run(env, ["prometheus"], host_vars=host_vars)
    assert rc != 0 and "prometheus_alertmanager_basic_auth_user" in out, out[-3000:]
    assert secret.exists()

    rc, out = run(env, ["prometheus"])
    assert rc == 0, out[-4000:]
    assert not secret.exists()
    assert "basic_auth" not in (env["tmp"] / "etc/prometheus/prometheus.yml").read_text()
