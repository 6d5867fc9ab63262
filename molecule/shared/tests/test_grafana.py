"""Grafana on the monitoring host (the API stand-in in molecule and the lab; grafana_install: false).

Asks the Grafana API itself for what the role delivered (datasources, folder, the three dashboards,
one deploy annotation), then runs the dashboard truth check on the host, polling until every panel
of the three dashboards returns data (the demo workload needs a few minutes to fill every series).
"""
import json

import pytest

from conftest import CHECK, http, truth_check

testinfra_hosts = ["ansible://monitoring"]

GRAFANA = "http://127.0.0.1:3000"
DASHBOARDS = {"platform-overview": 15, "learning-engine": 16, "mcp-activity": 15}
TRUTH_CHECK_DEADLINE_S = 360
TRUTH_CHECK_DELAY_S = 20


def _auth(hostvars):
    return "%s:%s" % (hostvars.get("grafana_admin_user", "admin"), hostvars["grafana_admin_password"])


def _api(host, hostvars, path):
    status, body = http(host, GRAFANA + path, auth=_auth(hostvars))
    assert status == 200, f"{path} answered {status}: {body[:300]}"
    return json.loads(body)


def test_api_healthy(host):
    status, body = http(host, GRAFANA + "/api/health")
    assert status == 200 and json.loads(body)["database"] == "ok"


def test_datasources_by_fixed_uid(host, hostvars):
    prom = _api(host, hostvars, "/api/datasources/uid/aiplatform-prometheus")
    assert prom["type"] == "prometheus" and prom["isDefault"] is True
    assert prom["jsonData"]["timeInterval"] == "15s"
    pg = _api(host, hostvars, "/api/datasources/uid/aiplatform-postgres")
    assert pg["type"] == "grafana-postgresql-datasource"
    assert pg["user"] == "grafana_reader"
    assert pg["jsonData"]["database"] == "ai_platform"
    ssl = hostvars.get("postgresql_ssl_enabled", False)
    assert pg["jsonData"]["sslmode"] == ("require" if ssl else "disable")
    assert pg["secureJsonFields"].get("password") is True


TOKEN_FILE = "/etc/aiplatform-grafana/provisioner.token"
# Reads the token on the host and sends it as a Bearer token: it never reaches a command line.
_BEARER = r"""
import sys, urllib.request, urllib.error
token = open(sys.argv[1]).read().strip()
req = urllib.request.Request(sys.argv[2], headers={"Authorization": "Bearer " + token})
try:
    print(urllib.request.urlopen(req, timeout=20).status)
except urllib.error.HTTPError as e:
    print(e.code)
"""


def test_modules_use_a_service_account_token_kept_root_only(host, hostvars):
    directory = host.file(TOKEN_FILE.rsplit("/", 1)[0])
    assert directory.is_directory and directory.user == "root" and directory.mode == 0o700
    token_file = host.file(TOKEN_FILE)
    assert token_file.user == "root" and token_file.group == "root" and token_file.mode == 0o600
    assert host.run("grep -Eq '^glsa_[A-Za-z0-9]{32}_[0-9a-f]{8}$' %s", TOKEN_FILE).rc == 0
    assert host.check_output("python3 -c %s %s %s", _BEARER, TOKEN_FILE, GRAFANA + "/api/folders/aiplatform") == "200"
    accounts = _api(host, hostvars, "/api/serviceaccounts/search?query=aiplatform-provisioner")["serviceAccounts"]
    assert [(a["name"], a["role"], a["isDisabled"], a["tokens"]) for a in accounts] == \
        [("aiplatform-provisioner", "Admin", False, 1)]
    tokens = _api(host, hostvars, "/api/serviceaccounts/%d/tokens" % accounts[0]["id"])
    assert [t["name"] for t in tokens] == ["aiplatform-provisioner-%s" % hostvars["inventory_hostname"]]
    assert tokens[0]["lastUsedAt"]
    # What the modules wrote was written with the token, not with the admin password.
    login = accounts[0]["login"]
    annotations = _api(host, hostvars, "/api/annotations?tags=aiplatform&tags=deploy")
    assert annotations and set(a["login"] for a in annotations) == {login}
    versions = _api(host, hostvars, "/api/dashboards/uid/platform-overview/versions")
    versions = versions.get("versions", versions) if isinstance(versions, dict) else versions
    assert versions and set(v["createdBy"] for v in versions) == {login}


def test_dashboards_in_the_folder(host, hostvars):
    folder = _api(host, hostvars, "/api/folders/aiplatform")
    assert folder["title"] == "AI platform"
    for uid, count in DASHBOARDS.items():
        got = _api(host, hostvars, f"/api/dashboards/uid/{uid}")
        panels = [p for p in got["dashboard"]["panels"] if p["type"] != "row"]
        assert len(panels) == count, uid
        assert got["meta"]["folderUid"] == "aiplatform"
        versions = _api(host, hostvars, f"/api/dashboards/uid/{uid}/versions")
        assert versions and versions[-1]["message"].startswith("aiplatform.observability:")


def test_one_deploy_annotation_per_deploy_event(host, hostvars):
    # converge posts one; the idempotence run changes nothing and must not post another
    found = _api(host, hostvars, "/api/annotations?tags=aiplatform&tags=deploy&limit=100")
    assert len(found) == 1, found
    assert found[0]["text"].startswith("aiplatform.observability deployed:")


def test_truth_check_installed(host):
    f = host.file(CHECK)
    assert f.exists and f.mode == 0o755 and f.user == "root"


@pytest.mark.day2
def test_every_panel_returns_data(host, hostvars):
    """The truth check on the host: every panel target of the three dashboards returns data, from the
    real exporters (the GPU panels answered on every GPU node), and every job it depends on is up."""
    rc, out, err = truth_check(host, hostvars, deadline_s=TRUTH_CHECK_DEADLINE_S, delay_s=TRUTH_CHECK_DELAY_S)
    print(out)
    assert rc == 0, "panels without data after %ds:\n%s%s" % (
        TRUTH_CHECK_DEADLINE_S, "\n".join(line for line in out.splitlines() if line.startswith("!!")), err)
    assert "job gpu" in out and "simulated" in out, "the lab's GPU panels come from simulated GPUs, reported as such"
