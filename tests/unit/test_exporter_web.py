"""TLS and basic auth of the collection's exporters through playbooks/render.yml: the Prometheus jobs, the
units and the web config. The rendered web config is checked by the two readers that matter: promtool's
`check web-config` (exporter-toolkit, as dcgm-exporter reads it) and the exporters package's own loader.
The filters themselves: tests/unit/plugins/test_exporter_web_filters.py."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_render import render

REPO = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------ render
WEB = {
    "platform_exporters_web_basic_auth_users": {"prometheus": "exporter-pass"},
    "platform_exporters_web_basic_auth_cost": 4,
    "platform_exporters_web_tls_cert_file": "/etc/ssl/lab/exporter.crt",
    "platform_exporters_web_tls_key_file": "/etc/ssl/lab/exporter.key",
    "platform_exporters_web_scrape_tls_config": {"ca_file": "/etc/ssl/lab/ca.crt"},
    "gpu_exporter_backend": "nvml",
    "gpu_exporter_listen_host": "10.0.0.5",
    "gpu_exporter_web_basic_auth_users": {"scraper": "gpu-pass"},
    "gpu_exporter_web_basic_auth_cost": 4,
    "prometheus_scrape_basic_auth_passwords": {"drift_exporter": "exporter-pass", "learning_exporter": "exporter-pass",
                                               "gpu": "gpu-pass"},
}


@pytest.fixture(scope="module")
def rendered_web(tmp_path_factory):
    # the three roles concerned (prometheus.yml is built from every role's registration whatever the tags)
    proc, out = render(tmp_path_factory.mktemp("web"), WEB, "--tags", "prometheus,platform_exporters,gpu_exporter")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_prometheus_scrapes_with_the_registered_scheme_and_credentials(rendered_web):
    config = yaml.safe_load((rendered_web / "mon1/etc/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in ("drift_exporter", "learning_exporter"):
        assert jobs[name]["scheme"] == "https" and jobs[name]["tls_config"] == {"ca_file": "/etc/ssl/lab/ca.crt"}
        assert jobs[name]["basic_auth"] == {"username": "prometheus",
                                            "password_file": "/etc/prometheus/scrape-passwords/%s.password" % name}
    # the GPU exporter: basic auth over plain HTTP
    assert "scheme" not in jobs["gpu"] and jobs["gpu"]["basic_auth"]["username"] == "scraper"
    text = (rendered_web / "mon1/etc/prometheus/prometheus.yml").read_text()
    assert "exporter-pass" not in text and "gpu-pass" not in text
    # node_exporter and postgres_exporter are not the collection's Python exporters: unchanged
    assert "basic_auth" not in jobs["node"]


def test_units_read_the_web_config_as_credentials(rendered_web):
    unit = (rendered_web / "mon1/etc/systemd/system/aiplatform-drift-exporter.service").read_text()
    assert "--web-config-file=%d/web_config" in unit
    for line in ("LoadCredential=web_config:/etc/aiplatform-exporters/credentials/web-config.yml",
                 "LoadCredential=web_tls_cert:/etc/ssl/lab/exporter.crt",
                 "LoadCredential=web_tls_key:/etc/ssl/lab/exporter.key"):
        assert line in unit.splitlines(), line
    gpu_unit = (rendered_web / "gpu1/etc/systemd/system/aiplatform-gpu-exporter.service").read_text()
    assert "--web-config-file=%d/web_config" in gpu_unit and "web_tls_key" not in gpu_unit
    gpu_config = yaml.safe_load((rendered_web / "gpu1/etc/aiplatform-exporters/gpu.yml").read_text())
    assert gpu_config["listen"] == "10.0.0.5:9500"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "web_tls_key",
                    "-out", "web_tls_cert", "-days", "2", "-subj", "/CN=exporter"], cwd=d, check=True, capture_output=True)
    return d


def _credentials_dir(rendered_web, certs, tmp_path):
    """The unit's credentials directory: the web config and the certificate and key under their credential names."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    shutil.copy(rendered_web / "mon1/etc/aiplatform-exporters/credentials/web-config.yml", creds / "web_config")
    for name in ("web_tls_cert", "web_tls_key"):
        shutil.copy(certs / name, creds / name)
    return creds


def test_the_web_config_is_valid_for_exporter_toolkit(rendered_web, certs, tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus)"
    creds = _credentials_dir(rendered_web, certs, tmp_path)
    proc = subprocess.run([promtool, "check", "web-config", str(creds / "web_config")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (creds / "web_tls_key").unlink()
    proc = subprocess.run([promtool, "check", "web-config", str(creds / "web_config")], capture_output=True, text=True)
    assert proc.returncode != 0, "promtool resolves the key relative to the web config"


def test_the_web_config_is_valid_for_the_exporters(rendered_web, certs, tmp_path):
    creds = _credentials_dir(rendered_web, certs, tmp_path)
    text = (creds / "web_config").read_text()
    assert "exporter-pass" not in text
    code = ("import sys; from aiplatform_exporters.web import load_web_config; w = load_web_config(sys.argv[1]);"
            "import bcrypt; print(w.scheme, sorted(w.users), bcrypt.checkpw(b'exporter-pass', w.users['prometheus']))")
    proc = subprocess.run([sys.executable, "-c", code, str(creds / "web_config")], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "files/exporters/src")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["https", "['prometheus']", "True"]


def test_prometheus_without_the_password_stops_in_preflight(tmp_path):
    extra = dict(WEB, prometheus_scrape_basic_auth_passwords={"drift_exporter": "exporter-pass"})
    proc, _ = render(tmp_path, extra, "--tags", "prometheus")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "prometheus_scrape_basic_auth_passwords: no password for the job(s) gpu, learning_exporter" in out, out[-3000:]
