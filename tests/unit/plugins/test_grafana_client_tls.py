"""module_utils/_grafana.py's real transport over TLS: a local HTTPS server with a throwaway
self-signed certificate (no fake transport). The client builds one TLS context and reuses it for
every request; certificates are still verified against ca_path, and refused without it."""
import datetime
import http.server
import json
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.aiplatform.observability.plugins.module_utils import _grafana as g


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({"path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert_file), str(key_file))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "https://localhost:%d" % server.server_address[1], str(cert_file), seen
    server.shutdown()


def client(url, **kwargs):
    return g.GrafanaClient(url, token="glsa_test", retries=0, sleep=lambda s: None, **kwargs)


def test_verified_with_ca_path_and_one_context_for_every_request(https_server, monkeypatch):
    url, ca, seen = https_server
    made = []
    real = g.make_context
    monkeypatch.setattr(g, "make_context", lambda **kw: made.append(kw) or real(**kw))
    c = client(url, ca_path=ca)
    assert c.request("GET", "/api/folders") == {"path": "/api/folders"}
    assert c.request("GET", "/api/health") == {"path": "/api/health"}
    assert len(made) == 1 and made[0]["cafile"] == ca and made[0]["validate_certs"] is True
    assert seen[-2:] == ["Bearer glsa_test", "Bearer glsa_test"]


def test_unknown_certificate_is_refused_and_names_ca_path(https_server):
    url, _, _ = https_server
    with pytest.raises(g.GrafanaConnectionError) as e:
        client(url).request("GET", "/api/folders")
    assert "ca_path" in str(e.value)


def test_validate_certs_false_accepts_it(https_server):
    url, _, _ = https_server
    assert client(url, validate_certs=False).request("GET", "/api/x") == {"path": "/api/x"}
