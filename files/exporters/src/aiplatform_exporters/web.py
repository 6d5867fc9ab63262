"""TLS and basic auth for the exporters' HTTP server, from a web configuration file.

The file has the format of the Prometheus exporter-toolkit (``--web.config.file`` of node_exporter,
Prometheus and Alertmanager), so one file layout and one set of bcrypt hashes serve every exporter
of a host::

    tls_server_config:
      cert_file: server.crt        # relative paths are relative to this file's directory
      key_file: server.key
      min_version: TLS12           # TLS10 .. TLS13 (default TLS12)
      client_auth_type: NoClientCert   # or RequireAndVerifyClientCert, VerifyClientCertIfGiven, ...
      client_ca_file: ca.crt       # required when client certificates are verified
    basic_auth_users:
      prometheus: $2b$12$...       # bcrypt hashes, never passwords

Unknown keys are errors (as in exporter-toolkit), naming the key.
"""

import base64
import hashlib
import hmac
import os
import re
import ssl
import threading

from aiplatform_exporters.config import ConfigError, load_yaml

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# exporter-toolkit's client_auth_type values -> (verify mode, needs client_ca_file)
CLIENT_AUTH = {
    "NoClientCert": (ssl.CERT_NONE, False),
    "RequestClientCert": (ssl.CERT_NONE, False),
    "RequireAnyClientCert": (ssl.CERT_NONE, False),
    "VerifyClientCertIfGiven": (ssl.CERT_OPTIONAL, True),
    "RequireAndVerifyClientCert": (ssl.CERT_REQUIRED, True),
}
TOP_KEYS = ("tls_server_config", "basic_auth_users")
TLS_KEYS = ("cert_file", "key_file", "min_version", "max_version", "client_auth_type", "client_ca_file")


class WebConfig(object):
    """What the server needs: an SSLContext (None: plain HTTP) and the users' bcrypt hashes."""

    def __init__(self, path=None, tls=None, users=None, digest=""):
        self.path = path
        self.tls = tls
        self.users = dict(users or {})
        self.digest = digest

    @property
    def scheme(self):
        return "https" if self.tls is not None else "http"


def _mapping(value, key):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("%s: must be a mapping" % key)
    return value


def _unknown(section, allowed, where):
    extra = sorted(str(k) for k in section if k not in allowed)
    if extra:
        raise ConfigError("%s: unknown key%s %s (allowed: %s)" % (
            where, "s" if len(extra) > 1 else "", ", ".join(extra), ", ".join(allowed)))


def _path(base, value, key):
    if not isinstance(value, str) or not value:
        raise ConfigError("%s: must be a non-empty path" % key)
    path = value if os.path.isabs(value) else os.path.join(base, value)
    if not os.access(path, os.R_OK):
        raise ConfigError("%s: %s cannot be read" % (key, path))
    return path


def _tls_context(tls, base, where):
    _unknown(tls, TLS_KEYS, where)
    if not tls:
        return None
    if "cert_file" not in tls or "key_file" not in tls:
        raise ConfigError("%s: needs both cert_file and key_file" % where)
    cert = _path(base, tls["cert_file"], where + ".cert_file")
    key = _path(base, tls["key_file"], where + ".key_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for name, attr, default in (("min_version", "minimum_version", "TLS12"), ("max_version", "maximum_version", "TLS13")):
        version = tls.get(name, default)
        if version not in TLS_VERSIONS:
            raise ConfigError("%s.%s: must be one of %s, got %r" % (where, name, ", ".join(TLS_VERSIONS), version))
        setattr(ctx, attr, TLS_VERSIONS[version])
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError("%s: cert_file %s and key_file %s: %s" % (where, cert, key, exc))
    auth = tls.get("client_auth_type", "NoClientCert")
    if auth not in CLIENT_AUTH:
        raise ConfigError("%s.client_auth_type: must be one of %s, got %r" % (where, ", ".join(CLIENT_AUTH), auth))
    mode, needs_ca = CLIENT_AUTH[auth]
    if needs_ca:
        if "client_ca_file" not in tls:
            raise ConfigError("%s.client_ca_file: required with client_auth_type %s" % (where, auth))
        ca = _path(base, tls["client_ca_file"], where + ".client_ca_file")
        try:
            ctx.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            raise ConfigError("%s.client_ca_file: %s: %s" % (where, ca, exc))
    ctx.verify_mode = mode
    return ctx


def _users(users, where):
    out = {}
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise ConfigError("%s: user %r: must be a non-empty string without ':'" % (where, user))
        if not isinstance(hashed, str) or not re.match(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$", hashed):
            raise ConfigError("%s.%s: must be a bcrypt hash ($2b$...), never a password" % (where, user))
        out[user] = hashed.encode()
    if out:
        try:
            import bcrypt  # noqa: F401 - checked here so a missing module is a configuration error
        except ImportError:
            raise ConfigError("%s: basic auth needs the Python module bcrypt" % where)
    return out


def load_web_config(path):
    """Read and check ``path``; returns a WebConfig. ConfigError names the key that is wrong."""
    if not path:
        return WebConfig()
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    data = _mapping(load_yaml(path), path)
    _unknown(data, TOP_KEYS, path)
    base = os.path.dirname(os.path.abspath(path))
    tls = _tls_context(_mapping(data.get("tls_server_config"), "tls_server_config"), base, "tls_server_config")
    users = _users(_mapping(data.get("basic_auth_users"), "basic_auth_users"), "basic_auth_users")
    return WebConfig(path, tls, users, digest)


class BasicAuth(object):
    """Checks the Authorization header against bcrypt hashes.

    A bcrypt check costs tens to hundreds of milliseconds by design; Prometheus sends the same
    credentials at every scrape, so a successful check is remembered (as a keyed digest of user and
    password, in memory only) and the next scrapes cost a dictionary lookup. Failures are never
    remembered: each costs a full bcrypt check.
    """

    MAX_CACHE = 1024

    def __init__(self, users):
        import bcrypt

        self.users = dict(users)
        self._key = os.urandom(32)
        # The hash of a random password at the users' cost: an unknown user costs as much as a wrong
        # password, so the time an answer takes does not tell which user names exist.
        cost = max(int(h.split(b"$")[2]) for h in self.users.values())
        self._dummy = bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(cost))
        self._ok = set()
        self._lock = threading.Lock()

    def check(self, header):
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        token = hmac.new(self._key, user.encode() + b"\0" + password.encode(), hashlib.sha256).digest()
        with self._lock:
            if token in self._ok:
                return user
        import bcrypt

        hashed = self.users.get(user)
        ok = bcrypt.checkpw(password.encode(), hashed or self._dummy) and hashed is not None
        if not ok:
            return None
        with self._lock:
            if len(self._ok) >= self.MAX_CACHE:
                self._ok.clear()
            self._ok.add(token)
        return user


def protect(app, users, realm="exporter"):
    """WSGI middleware: 401 with a Basic challenge unless the request carries a valid user."""
    if not users:
        return app
    auth = BasicAuth(users)
    challenge = [("Content-Type", "text/plain; charset=utf-8"),
                 ("WWW-Authenticate", 'Basic realm="%s", charset="UTF-8"' % realm)]

    def guarded(environ, start_response):
        if auth.check(environ.get("HTTP_AUTHORIZATION", "")) is None:
            start_response("401 Unauthorized", challenge)
            return [b"Unauthorized\n"]
        return app(environ, start_response)

    return guarded
