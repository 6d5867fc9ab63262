"""playbooks/render.yml: every file the prometheus and alertmanager roles write, per host, without
contacting any host; validated with the real tools (promtool, amtool) and read back.

The hosts of the inventory are unreachable addresses (TEST-NET-1), so a render that tried to
connect would fail. Run: .venv/bin/pytest tests/unit -q -k render
"""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
import yaml
from site_vars import SITE_VARS

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
PASSWORD = "correct horse battery staple"
INVENTORY = {
    "all": {
        "vars": {"ansible_connection": "ssh", "ansible_ssh_common_args": "-o ConnectTimeout=2", **SITE_VARS},
        "hosts": {
            "mon1": {"ansible_host": "192.0.2.10"},
            "gpu1": {"ansible_host": "192.0.2.11", "gpu_exporter_port": 9500},
            "gpu2": {"ansible_host": "192.0.2.12", "gpu_exporter_enabled": False},
            "cpu1": {"ansible_host": "192.0.2.13", "node_exporter_port": 9101},
        },
        "children": {
            "monitoring": {"hosts": {"mon1": {}}},
            "gpu_nodes": {"hosts": {"gpu1": {}, "gpu2": {}}},
        },
    }
}
EXTRA = {
    "prometheus_web_basic_auth_users": {"admin": PASSWORD},
    "prometheus_external_labels": {"cluster": "lab", "site": "eu-1"},
    "prometheus_remote_write": [{"url": "https://mimir.example.com/api/v1/push", "queue_config": {"max_samples_per_send": 2000}}],
    "prometheus_storage_retention_size": "50GB",
    "prometheus_platform_services": [
        {"name": "inference-api", "targets": ["gpu1:8000", "gpu2:8000"], "labels": {"team": "ml"}},
        {"name": "mcp-gateway", "targets": [{"address": "192.0.2.50:9000", "instance": "mcp-gw"}],
         "scheme": "https", "metrics_path": "/internal/metrics"},
    ],
}


def tool(name):
    path = shutil.which(name)
    assert path, f"{name} is required (Debian packages prometheus, prometheus-alertmanager)"
    return path


def render(tmp_path, extra=None, *args, name="render"):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump(INVENTORY))
    varfile = tmp_path / "vars.yml"
    varfile.write_text(yaml.safe_dump(extra or {}))
    out = tmp_path / name
    cmd = [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(REPO / "playbooks" / "render.yml"),
           "-e", f"render_dir={out}", "-e", f"@{varfile}", *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    return proc, out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("render")
    # The complete render (every role, every host); the variants below render only the roles they change.
    proc, out = render(tmp, EXTRA)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def scrape_jobs(rendered):
    config = yaml.safe_load((rendered / "mon1/etc/prometheus/prometheus.yml").read_text())
    return config, {job["job_name"]: job for job in config["scrape_configs"]}


def targets(job):
    return {sc["labels"]["instance"]: sc["targets"] for sc in job["static_configs"]}


def test_render_writes_the_files_of_each_monitoring_host(rendered):
    files = {str(p.relative_to(rendered)) for p in rendered.rglob("*") if p.is_file()}
    # Prometheus' and Alertmanager's files; the other roles' renders are covered by their own tests.
    assert files >= {
        "mon1/etc/alertmanager/alertmanager.yml",
        "mon1/etc/prometheus/prometheus.yml",
        "mon1/etc/prometheus/rules/aiplatform-alerts.rules.yml",
        "mon1/etc/prometheus/rules/aiplatform-recording.rules.yml",
        "mon1/etc/prometheus/web-config.yml",
        "mon1/etc/systemd/system/prometheus-alertmanager.service",
        "mon1/etc/systemd/system/prometheus.service",
    }


def test_prometheus_config_is_valid(rendered):
    proc = subprocess.run([tool("promtool"), "check", "config", str(rendered / "mon1/etc/prometheus/prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alertmanager_config_is_valid_and_sends_nothing_by_default(rendered):
    path = rendered / "mon1/etc/alertmanager/alertmanager.yml"
    proc = subprocess.run([tool("amtool"), "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = yaml.safe_load(path.read_text())
    assert config["route"]["receiver"] == "null"
    assert config["receivers"] == [{"name": "null"}]
    inhibit = config["inhibit_rules"][0]
    assert inhibit["source_matchers"] == ['severity="critical"'] and inhibit["target_matchers"] == ['severity="warning"']
    assert {"alertname", "job", "instance", "server", "model", "feature", "gpu"} <= set(inhibit["equal"])


def test_scrape_jobs_come_from_the_inventory_with_hostnames_as_instance(rendered):
    config, jobs = scrape_jobs(rendered)
    assert config["global"]["scrape_interval"] == "15s"
    assert targets(jobs["node"]) == {
        "mon1": ["192.0.2.10:9100"], "gpu1": ["192.0.2.11:9100"], "gpu2": ["192.0.2.12:9100"], "cpu1": ["192.0.2.13:9101"],
    }
    # gpu2 has no GPU exporter, cpu1 and mon1 are no GPU nodes: never listed as GPU targets
    assert targets(jobs["gpu"]) == {"gpu1": ["192.0.2.11:9500"]}
    assert targets(jobs["drift_exporter"]) == {"mon1": ["192.0.2.10:19841"]}
    assert targets(jobs["learning_exporter"]) == {"mon1": ["192.0.2.10:19842"]}
    assert "postgres_exporter" not in jobs and "demo_workload" not in jobs
    assert targets(jobs["prometheus"]) == {"mon1": ["192.0.2.10:9090"]}
    assert targets(jobs["alertmanager"]) == {"mon1": ["192.0.2.10:9093"]}
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["192.0.2.10:9093"]
    assert config["rule_files"] == ["/etc/prometheus/rules/*.rules.yml"]


def test_platform_services_and_options(rendered):
    config, jobs = scrape_jobs(rendered)
    api = jobs["inference-api"]
    assert [sc["labels"] for sc in api["static_configs"]] == [{"team": "ml", "instance": "gpu1"}, {"team": "ml", "instance": "gpu2"}]
    gw = jobs["mcp-gateway"]
    assert gw["scheme"] == "https" and gw["metrics_path"] == "/internal/metrics"
    assert targets(gw) == {"mcp-gw": ["192.0.2.50:9000"]}
    assert config["global"]["external_labels"] == {"cluster": "lab", "site": "eu-1"}
    assert config["remote_write"][0]["url"] == "https://mimir.example.com/api/v1/push"
    assert jobs["prometheus"]["basic_auth"] == {"username": "admin", "password_file": "/etc/prometheus/self-scrape.password"}
    unit = (rendered / "mon1/etc/systemd/system/prometheus.service").read_text()
    assert "--storage.tsdb.retention.size=50GB" in unit
    assert "--web.config.file=/etc/prometheus/web-config.yml" in unit
    assert "ExecStart=/usr/bin/prometheus " in unit   # Debian: the distribution package


def test_web_config_is_valid_and_its_bcrypt_hash_is_stable(rendered, tmp_path):
    path = rendered / "mon1/etc/prometheus/web-config.yml"
    proc = subprocess.run([tool("promtool"), "check", "web-config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    digest = yaml.safe_load(path.read_text())["basic_auth_users"]["admin"]
    assert bcrypt.checkpw(PASSWORD.encode(), digest.encode())
    assert not bcrypt.checkpw(b"wrong", digest.encode())
    assert PASSWORD not in path.read_text()
    proc, again = render(tmp_path, EXTRA, "--tags", "prometheus", name="again")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    # the same password gives the same hash on every run: no change, no restart
    for f in (rendered / "mon1/etc/prometheus").rglob("*"):
        if f.is_file():
            twin = again / f.relative_to(rendered)
            assert hashlib.sha256(f.read_bytes()).digest() == hashlib.sha256(twin.read_bytes()).digest(), f


def test_alertmanager_without_web_auth_renders_as_before(rendered):
    """The web auth variables unset (the default): the files are those of the releases without them,
    to the letter where it matters (alerting block, alertmanager job, unit flags)."""
    assert not (rendered / "mon1/etc/alertmanager/web-config.yml").exists()
    unit = (rendered / "mon1/etc/systemd/system/prometheus-alertmanager.service").read_text()
    assert "ExecStart=/usr/bin/prometheus-alertmanager \\\n" \
           "  --config.file=/etc/alertmanager/alertmanager.yml \\\n" \
           "  --storage.path=/var/lib/prometheus/alertmanager \\\n" \
           "  --data.retention=120h \\\n" \
           "  --cluster.listen-address= \\\n" \
           "  --web.listen-address=0.0.0.0:9093\n" in unit
    assert "web.config" not in unit and "TLS" not in unit
    text = (rendered / "mon1/etc/prometheus/prometheus.yml").read_text()
    assert "\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets:\n" \
           "            - \"192.0.2.10:9093\"\n\nscrape_configs:\n" in text
    assert "alertmanager.password" not in text
    _config, jobs = scrape_jobs(rendered)
    assert jobs["alertmanager"] == {"job_name": "alertmanager",
                                    "static_configs": [{"targets": ["192.0.2.10:9093"], "labels": {"instance": "mon1"}}]}


def test_archive_install_and_other_os_family(tmp_path):
    proc, out = render(tmp_path, {"aiplatform_render_os_family": "RedHat", "alertmanager_receivers": [
        {"name": "oncall", "webhook_configs": [{"url": "https://hooks.example.com/alert"}]}],
        "alertmanager_routes": [{"receiver": "oncall", "matchers": ['severity="critical"']}]},
        "--tags", "prometheus,alertmanager")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ExecStart=/usr/local/bin/prometheus " in (out / "mon1/etc/systemd/system/prometheus.service").read_text()
    am_unit = out / "mon1/etc/systemd/system/alertmanager.service"
    assert "ExecStart=/usr/local/bin/alertmanager " in am_unit.read_text()
    am = out / "mon1/etc/alertmanager/alertmanager.yml"
    check = subprocess.run([tool("amtool"), "check-config", str(am)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(am.read_text())
    assert config["route"]["routes"] == [{"receiver": "oncall", "matchers": ['severity="critical"']}]


def test_undefined_receiver_is_rejected(tmp_path):
    proc, _ = render(tmp_path, {"alertmanager_route_receiver": "pager"}, "--tags", "alertmanager")
    assert proc.returncode != 0
    assert "receiver 'pager' is not defined" in proc.stdout + proc.stderr


def test_render_needs_render_dir(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump(INVENTORY))
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), str(REPO / "playbooks" / "render.yml")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Set render_dir" in proc.stdout + proc.stderr


def test_render_includes_node_exporter(rendered):
    """The complete render, node_exporter included, on every host."""
    for host in INVENTORY["all"]["hosts"]:
        assert (rendered / host / "etc/systemd/system").is_dir(), f"nothing rendered for {host}"
        assert list((rendered / host).rglob("*node*exporter*")), f"no node_exporter file for {host}"


def test_offline_archive_is_verified_on_the_controller(tmp_path):
    """The archive built by tests/fixtures/build_release_archive.py has the upstream layout, and the
    role's preflight accepts it only when it matches its sha256."""
    build = subprocess.run([sys.executable, str(REPO / "tests/fixtures/build_release_archive.py"), "alertmanager",
                            "--out", str(tmp_path / "dist")], capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    archive, digest = build.stdout.split()
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", archive, "-C", str(unpacked), "--strip-components=1"], check=True)
    version = subprocess.run([str(unpacked / "alertmanager"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "alertmanager" in (version.stdout + version.stderr)
    assert (unpacked / "amtool").is_file()

    offline = {"aiplatform_render_os_family": "RedHat", "alertmanager_version": "0.25.0",
               "alertmanager_archive_local_path": archive}
    proc, out = render(tmp_path, offline, "--tags", "alertmanager")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ExecStart=/usr/local/bin/alertmanager " in (out / "mon1/etc/systemd/system/alertmanager.service").read_text()

    wrong = {**offline, "alertmanager_archive_sha256": "0" * 64}
    proc, _ = render(tmp_path, wrong, "--tags", "alertmanager", name="wrong")
    assert proc.returncode != 0
    assert f"found '{digest}'" in proc.stdout + proc.stderr

    # site.yml runs the role's preflight twice (the collection's preflight play, then the role): the
    # archive is hashed the first time only.
    playbook = tmp_path / "twice.yml"
    playbook.write_text(yaml.safe_dump([
        {"name": "The collection's preflight", "ansible.builtin.import_playbook": str(REPO / "playbooks/preflight.yml")},
        {"name": "The role's own preflight", "hosts": "monitoring", "gather_facts": False, "tasks": [
            {"name": "Alertmanager preflight", "ansible.builtin.include_role": {
                "name": "aiplatform.observability.alertmanager", "tasks_from": "preflight"}}]}]))
    varfile = tmp_path / "offline.yml"
    varfile.write_text(yaml.safe_dump(offline))
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "hosts.yml"), str(playbook), "-e", f"@{varfile}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verify = [block.split("\n", 2)[1].split(":")[0].strip() for block in proc.stdout.split("TASK [")
              if block.startswith("aiplatform.observability.alertmanager : Verify the offline archive")]
    assert verify == ["ok", "skipping"], proc.stdout


@pytest.mark.parametrize("bad, names", [
    ({"grafana_dashboards_delivery": "ftp"}, "grafana_dashboards_delivery"),
    ({"grafana_dashboards_delivery": "files", "grafana_dashboards_provisioning_dir": "dashboards/"},
     "grafana_dashboards_provisioning_dir"),
    ({"grafana_dashboards_delivery": "files", "grafana_dashboards_provisioning_update_interval": 0},
     "grafana_dashboards_provisioning_update_interval"),
])
def test_a_bad_dashboard_delivery_is_refused_by_name(tmp_path, bad, names):
    proc, out = render(tmp_path, bad, "--tags", "grafana")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and names in text, text[-3000:]
    assert not list(out.glob("mon1/etc/grafana/provisioning/dashboards/*")), "a file was rendered"
