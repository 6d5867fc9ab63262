"""TLS and basic auth of the exporters' HTTP server (aiplatform_exporters.web), against real sockets."""

import base64
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Gauge

from aiplatform_exporters import server, web
from aiplatform_exporters.config import ConfigError

PASSWORD = "s3cret: with colon"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1 and localhost it signed (openssl)."""
    d = tmp_path_factory.mktemp("certs")

    def ossl(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=test CA")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=exporter")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
    return d


def _write(path, text):
    path.write_text(text)
    return str(path)


def _serve(web_config):
    registry = CollectorRegistry()
    Gauge("web_test_value", "A value", registry=registry).set(7)
    httpd = server.serve(registry, "127.0.0.1", 0, title="test-exporter", web=web_config)
    return httpd, httpd.server_port


def _get(url, auth=None, cafile=None, timeout=10):
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_tls_and_basic_auth(certs, tmp_path):
    path = _write(tmp_path / "web.yml", (
        "tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: '%s'\n"
        % (certs / "server.crt", certs / "server.key", HASH)))
    httpd, port = _serve(web.load_web_config(path))
    try:
        url = "https://127.0.0.1:%d/metrics" % port
        ca = str(certs / "ca.crt")
        status, headers, _ = _get(url, cafile=ca)
        assert status == 401
        assert headers["WWW-Authenticate"].startswith('Basic realm="test-exporter"')
        assert _get(url, auth="prometheus:wrong", cafile=ca)[0] == 401
        assert _get(url, auth="nobody:" + PASSWORD, cafile=ca)[0] == 401
        status, _, body = _get(url, auth="prometheus:" + PASSWORD, cafile=ca)
        assert status == 200 and "web_test_value 7.0" in body
        # every path is protected, as in exporter-toolkit
        assert _get("https://127.0.0.1:%d/" % port, cafile=ca)[0] == 401
        # plain HTTP to the TLS port gets no answer
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            _get("http://127.0.0.1:%d/metrics" % port, auth="prometheus:" + PASSWORD, timeout=3)
    finally:
        httpd.shutdown()


def test_a_silent_client_does_not_block_the_others(certs, tmp_path):
    path = _write(tmp_path / "web.yml", "tls_server_config:\n  cert_file: %s\n  key_file: %s\n"
                  % (certs / "server.crt", certs / "server.key"))
    httpd, port = _serve(web.load_web_config(path))
    silent = socket.create_connection(("127.0.0.1", port))
    try:
        start = time.monotonic()
        status, _, body = _get("https://127.0.0.1:%d/metrics" % port, cafile=str(certs / "ca.crt"))
        assert status == 200 and "web_test_value" in body
        assert time.monotonic() - start < 2
    finally:
        silent.close()
        httpd.shutdown()


def test_relative_paths_are_relative_to_the_file(certs, tmp_path):
    (tmp_path / "tls.crt").write_bytes((certs / "server.crt").read_bytes())
    (tmp_path / "tls.key").write_bytes((certs / "server.key").read_bytes())
    config = web.load_web_config(_write(tmp_path / "web.yml", "tls_server_config:\n  cert_file: tls.crt\n"
                                        "  key_file: tls.key\n  min_version: TLS13\n"))
    assert config.scheme == "https"
    assert config.tls.minimum_version == ssl.TLSVersion.TLSv1_3


def test_successful_checks_are_remembered_failures_are_not(monkeypatch):
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: calls.append(1) or real(pw, h))
    auth = web.BasicAuth({"prometheus": HASH.encode()})
    good = "Basic " + base64.b64encode(("prometheus:" + PASSWORD).encode()).decode()
    bad = "Basic " + base64.b64encode(b"prometheus:nope").decode()
    assert auth.check(good) == "prometheus" and auth.check(good) == "prometheus"
    assert len(calls) == 1
    assert auth.check(bad) is None and auth.check(bad) is None
    assert len(calls) == 3
    assert auth.check("Basic !!!") is None and auth.check("Bearer x") is None and auth.check("") is None


@pytest.mark.parametrize("text, message", [
    ("tls_server_config:\n  cert_file: a.crt\n", "needs both cert_file and key_file"),
    ("tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
     "tls_server_config.cert_file: /nonexistent.crt cannot be read"),
    ("tls_server_config:\n  certfile: a.crt\n", "tls_server_config: unknown key certfile"),
    ("basic_auth_users:\n  prometheus: plain-password\n", "basic_auth_users.prometheus: must be a bcrypt hash"),
    ("basic_auth_users: [prometheus]\n", "basic_auth_users: must be a mapping"),
    ("basic_auth_user:\n  prometheus: x\n", "unknown key basic_auth_user"),
    ("http_server_config:\n  http2: false\n", "unknown key http_server_config"),
])
def test_bad_web_configs_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        web.load_web_config(_write(tmp_path / "web.yml", text))


def test_bad_tls_settings(certs, tmp_path):
    base = "tls_server_config:\n  cert_file: %s\n  key_file: %s\n" % (certs / "server.crt", certs / "server.key")
    with pytest.raises(ConfigError, match="min_version: must be one of TLS10"):
        web.load_web_config(_write(tmp_path / "a.yml", base + "  min_version: TLS1.2\n"))
    with pytest.raises(ConfigError, match="client_ca_file: required with client_auth_type RequireAndVerifyClientCert"):
        web.load_web_config(_write(tmp_path / "b.yml", base + "  client_auth_type: RequireAndVerifyClientCert\n"))
    with pytest.raises(ConfigError, match="key_file"):
        web.load_web_config(_write(tmp_path / "c.yml", "tls_server_config:\n  cert_file: %s\n  key_file: %s\n"
                                   % (certs / "server.crt", certs / "ca.key")))


def test_client_certificates(certs, tmp_path):
    path = _write(tmp_path / "web.yml", (
        "tls_server_config:\n  cert_file: %s\n  key_file: %s\n  client_auth_type: RequireAndVerifyClientCert\n"
        "  client_ca_file: %s\n" % (certs / "server.crt", certs / "server.key", certs / "ca.crt")))
    httpd, port = _serve(web.load_web_config(path))
    try:
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            _get("https://127.0.0.1:%d/metrics" % port, cafile=str(certs / "ca.crt"), timeout=3)
    finally:
        httpd.shutdown()


def test_cli_reads_the_web_config_key_and_checks_it(certs, tmp_path, capsys):
    webfile = _write(tmp_path / "web.yml", "basic_auth_users:\n  prometheus: not-a-hash\n")
    config = _write(tmp_path / "exporter.yml", "web_config_file: %s\n" % webfile)
    args = server.build_parser("x", "x", 1).parse_args(["--config", config])
    with pytest.raises(ConfigError, match="web_config_file %s: basic_auth_users.prometheus" % webfile):
        server.read_settings(args, 1)
    good = _write(tmp_path / "good.yml", "basic_auth_users:\n  prometheus: '%s'\n" % HASH)
    args = server.build_parser("x", "x", 1).parse_args(["--config", config, "--web-config-file", good])
    settings = server.read_settings(args, 1)
    assert settings.web.users == {"prometheus": HASH.encode()} and settings.web.scheme == "http"
    args = server.build_parser("x", "x", 1).parse_args(["--config", config, "--web-config-file", "/nonexistent.yml"])
    with pytest.raises(ConfigError, match="web_config_file: /nonexistent.yml"):
        server.read_settings(args, 1)
