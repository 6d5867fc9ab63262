"""The filters exporter_web and exporter_web_file (TLS and basic auth of the collection's exporters) and
the password_file scrape_configs gives a job registered with basic auth."""
import bcrypt
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.aiplatform.observability.plugins.filter.exporter_web import exporter_web
from ansible_collections.aiplatform.observability.plugins.filter.exporter_web_file import exporter_web_file
from ansible_collections.aiplatform.observability.plugins.filter.scrape_configs import scrape_configs
from ansible_collections.aiplatform.observability.plugins.filter.scrape_registrations import scrape_registrations

CONFIG = "/etc/aiplatform-exporters/credentials/web-config.yml"

# ------------------------------------------------------------------ exporter_web
def test_plain_http_by_default():
    web = exporter_web("platform_exporters", config_file=CONFIG)
    assert web["enabled"] is False and web["scheme"] == "http" and web["client"] == {}
    assert web["load_credentials"] == [] and web["flag"] == ""


def test_tls_and_basic_auth():
    web = exporter_web("gpu_exporter", users={"zed": "p2", "prometheus": "p1"}, cert_file="/etc/ssl/e.crt",
                       key_file="/etc/ssl/e.key", scrape_tls_config={"ca_file": "/etc/ssl/ca.crt"}, config_file=CONFIG)
    assert web["scheme"] == "https" and web["tls"] and web["auth"]
    # the first user by name; the registration carries no password
    assert web["client"] == {"tls_config": {"ca_file": "/etc/ssl/ca.crt"}, "basic_auth": {"username": "prometheus"}}
    assert "p1" not in repr(web["client"]) and web["scrape_password"] == "p1"
    assert web["load_credentials"] == ["web_config:" + CONFIG, "web_tls_cert:/etc/ssl/e.crt", "web_tls_key:/etc/ssl/e.key"]
    assert web["flag"] == "--web-config-file=%d/web_config"
    assert exporter_web("gpu_exporter", users={"a": "x", "b": "y"}, scrape_user="b", config_file=CONFIG)["scrape_password"] == "y"


@pytest.mark.parametrize("kwargs, message", [
    ({"cert_file": "/a.crt"}, "platform_exporters_web_tls_cert_file and platform_exporters_web_tls_key_file: give both"),
    ({"cert_file": "a.crt", "key_file": "/a.key"}, "platform_exporters_web_tls_cert_file: must be an absolute path"),
    ({"users": ["prometheus"]}, "platform_exporters_web_basic_auth_users: must be a mapping"),
    ({"users": {"pro:m": "x"}}, "user 'pro:m': must be a non-empty string without ':'"),
    ({"users": {"prometheus": ""}}, "user prometheus has no password"),
    ({"users": {"a": "x"}, "scrape_user": "b"}, "platform_exporters_web_scrape_user: b is not a user"),
    ({"scrape_tls_config": {"ca_file": "/ca"}}, "platform_exporters_web_scrape_tls_config: set only with"),
    ({"scrape_tls_config": "ca", "cert_file": "/a", "key_file": "/b"}, "platform_exporters_web_scrape_tls_config: must be a mapping"),
])
def test_bad_settings_name_the_variable(kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(")):
        exporter_web("platform_exporters", config_file=CONFIG, **kwargs)


def test_a_password_is_never_echoed():
    with pytest.raises(AnsibleFilterError) as err:
        exporter_web("gpu_exporter", users={"prometheus": ["hunter2"]}, config_file=CONFIG)
    assert "hunter2" not in str(err.value)


def test_web_file():
    web = exporter_web("gpu_exporter", users={"prometheus": "p"}, cert_file="/c", key_file="/k", config_file=CONFIG)
    hashed = bcrypt.hashpw(b"p", bcrypt.gensalt(4)).decode()
    assert exporter_web_file(web, {"prometheus": hashed}) == {
        "tls_server_config": {"cert_file": "web_tls_cert", "key_file": "web_tls_key", "min_version": "TLS12"},
        "basic_auth_users": {"prometheus": hashed}}
    with pytest.raises(AnsibleFilterError, match="give the users' hashes"):
        exporter_web_file(web, {})
    with pytest.raises(AnsibleFilterError, match="result of the filter exporter_web"):
        exporter_web_file({"users": {}})


# ------------------------------------------------------------------ the registration and the scrape job
def _hv(entry):
    return {"gpu1": {"inventory_hostname": "gpu1", "ansible_host": "192.0.2.11",
                     "aiplatform_scrape_targets": {"gpu": entry}}}


def test_the_job_gets_a_password_file_on_the_prometheus_host():
    entry = {"role": "gpu_exporter", "port": 9400, "scheme": "https",
             "client": {"tls_config": {"ca_file": "/ca"}, "basic_auth": {"username": "prometheus"}}}
    jobs = scrape_configs(scrape_registrations(["gpu1"], _hv(entry)), password_dir="/etc/prometheus/scrape-passwords/")
    assert jobs[0]["scheme"] == "https" and jobs[0]["tls_config"] == {"ca_file": "/ca"}
    assert jobs[0]["basic_auth"] == {"username": "prometheus",
                                     "password_file": "/etc/prometheus/scrape-passwords/gpu.password"}
    # without password_dir the job is left as registered
    assert scrape_configs(scrape_registrations(["gpu1"], _hv(entry)))[0]["basic_auth"] == {"username": "prometheus"}


@pytest.mark.parametrize("client", [
    {"basic_auth": {"username": "prometheus", "password": "hunter2"}},
    {"authorization": {"credentials": "token"}},
    {"basic_auth": "prometheus:hunter2"},
])
def test_a_registration_holds_no_secret(client):
    with pytest.raises(AnsibleFilterError, match="a registration holds no secret") as err:
        scrape_registrations(["gpu1"], _hv({"role": "gpu_exporter", "port": 9400, "client": client}))
    assert "hunter2" not in str(err.value) and "token" not in str(err.value)
