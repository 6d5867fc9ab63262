"""Configuration files: typed, validated, every error names its key.

A ``Reader`` wraps one mapping of the YAML file and knows its dotted path, so
``reader.get("port", int)`` fails with ``database.port: must be an integer,
got 'abc'``. ``finish()`` rejects keys nobody asked for (typos fail at start
instead of being ignored).
"""

import os
import re

_REQUIRED = object()
PASSWORD_ENV = "AIPLATFORM_DB_PASSWORD"
CREDENTIAL_NAME = "db_password"
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class ConfigError(Exception):
    """A configuration problem; the message starts with the key it concerns."""


def load_yaml(path):
    import yaml  # imported here: the GPU exporter can run without PyYAML when built in code

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError("--config: cannot read %s: %s" % (path, exc.strerror or exc))
    except yaml.YAMLError as exc:
        raise ConfigError("--config: %s is not valid YAML: %s" % (path, exc))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("--config: %s must hold a mapping at the top level" % path)
    return data


def _type_name(types):
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping"}
    if isinstance(types, tuple):
        return " or ".join(names.get(t, t.__name__) for t in types)
    return names.get(types, types.__name__)


class Reader(object):
    def __init__(self, data, path=""):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError("%s: must be a mapping" % (path or "<top level>"))
        self.data = data
        self.path = path
        self._seen = set()

    def key(self, name):
        return "%s.%s" % (self.path, name) if self.path else name

    def has(self, name):
        return name in self.data and self.data[name] is not None

    def get(self, name, types, default=_REQUIRED, choices=None, minimum=None, maximum=None):
        self._seen.add(name)
        key = self.key(name)
        if name not in self.data or self.data[name] is None:
            if default is _REQUIRED:
                raise ConfigError("%s: is required" % key)
            return default
        value = self.data[name]
        wanted = types if isinstance(types, tuple) else (types,)
        if float in wanted and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in wanted:
            raise ConfigError("%s: must be %s, got %r" % (key, _type_name(types), value))
        if not isinstance(value, wanted):
            raise ConfigError("%s: must be %s, got %r" % (key, _type_name(types), value))
        if choices is not None and value not in choices:
            raise ConfigError("%s: must be one of %s, got %r" % (key, ", ".join(map(str, choices)), value))
        if minimum is not None and value < minimum:
            raise ConfigError("%s: must be >= %s, got %r" % (key, minimum, value))
        if maximum is not None and value > maximum:
            raise ConfigError("%s: must be <= %s, got %r" % (key, maximum, value))
        if isinstance(value, str) and str in wanted and not value.strip():
            raise ConfigError("%s: must not be empty" % key)
        return value

    def sub(self, name, required=False):
        self._seen.add(name)
        if not self.has(name):
            if required:
                raise ConfigError("%s: is required" % self.key(name))
            return Reader({}, self.key(name))
        return Reader(self.data[name], self.key(name))

    def items(self, name, required=False):
        """A list of mappings -> list of Readers (path ``name[i]``)."""
        self._seen.add(name)
        value = self.data.get(name)
        if value is None:
            if required:
                raise ConfigError("%s: is required" % self.key(name))
            return []
        if not isinstance(value, list):
            raise ConfigError("%s: must be a list" % self.key(name))
        return [Reader(v, "%s[%d]" % (self.key(name), i)) for i, v in enumerate(value)]

    def finish(self):
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise ConfigError("%s: unknown key (allowed: %s)" % (
                self.key(unknown[0]), ", ".join(sorted(self._seen)) or "none"))


def parse_listen(value, key="--listen"):
    """'ADDR:PORT', ':PORT' or '[v6]:PORT' -> (addr, port)."""
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError("%s: must be ADDR:PORT, got %r" % (key, value))
    addr, _, port = value.rpartition(":")
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
    try:
        port_n = int(port)
    except ValueError:
        raise ConfigError("%s: port must be an integer, got %r" % (key, port))
    if not 0 <= port_n <= 65535:
        raise ConfigError("%s: port must be 0-65535, got %d" % (key, port_n))
    return addr or "0.0.0.0", port_n


class DatabaseSettings(object):
    """Where and how to reach PostgreSQL. The password is never part of the config file."""

    def __init__(self, host, port, dbname, user, password_file, sslmode, connect_timeout, statement_timeout,
                 schema, application_name):
        self.host = host
        self.port = port
        self.dbname = dbname
        self.user = user
        self.password_file = password_file
        self.sslmode = sslmode
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.schema = schema
        self.application_name = application_name

    @classmethod
    def from_reader(cls, reader, default_user="aiplatform_exporter", application_name="aiplatform-exporter"):
        if reader.has("password"):
            raise ConfigError("%s: passwords are not read from the config file; set %s, "
                              "database.password_file or a systemd credential named %s"
                              % (reader.key("password"), PASSWORD_ENV, CREDENTIAL_NAME))
        reader._seen.add("password")
        settings = cls(
            host=reader.get("host", str, "127.0.0.1"),
            port=reader.get("port", int, 5432, minimum=1, maximum=65535),
            dbname=reader.get("dbname", str, "ai_platform"),
            user=reader.get("user", str, default_user),
            password_file=reader.get("password_file", str, None),
            sslmode=reader.get("sslmode", str, "prefer",
                               choices=("disable", "allow", "prefer", "require", "verify-ca", "verify-full")),
            connect_timeout=reader.get("connect_timeout_seconds", int, 5, minimum=1, maximum=300),
            statement_timeout=reader.get("statement_timeout_seconds", int, 60, minimum=1, maximum=3600),
            schema=reader.get("schema", str, "platform"),
            application_name=reader.get("application_name", str, application_name),
        )
        if not _IDENTIFIER_RE.match(settings.schema):
            raise ConfigError("%s: must be a plain SQL identifier, got %r" % (reader.key("schema"), settings.schema))
        if settings.password_file is not None and not os.path.isabs(settings.password_file):
            raise ConfigError("%s: must be an absolute path" % reader.key("password_file"))
        reader.finish()
        return settings

    def resolve_password(self, environ=None):
        """(password or None, where it came from).

        Precedence: the environment variable AIPLATFORM_DB_PASSWORD, then
        database.password_file, then the systemd credential
        $CREDENTIALS_DIRECTORY/db_password; none of them -> no password (peer
        authentication on a unix socket, or ~/.pgpass).
        """
        environ = os.environ if environ is None else environ
        if environ.get(PASSWORD_ENV):
            return environ[PASSWORD_ENV], "environment variable %s" % PASSWORD_ENV
        if self.password_file:
            return _read_secret(self.password_file, "database.password_file"), "database.password_file"
        cred_dir = environ.get("CREDENTIALS_DIRECTORY")
        if cred_dir:
            path = os.path.join(cred_dir, CREDENTIAL_NAME)
            if os.path.exists(path):
                return _read_secret(path, "$CREDENTIALS_DIRECTORY/%s" % CREDENTIAL_NAME), "systemd credential"
        return None, "none"

    def connect_kwargs(self, environ=None):
        password, _ = self.resolve_password(environ)
        kwargs = dict(host=self.host, port=self.port, dbname=self.dbname, user=self.user, sslmode=self.sslmode,
                      connect_timeout=self.connect_timeout, application_name=self.application_name,
                      options="-c statement_timeout=%d" % (self.statement_timeout * 1000))
        if password is not None:
            kwargs["password"] = password
        return kwargs


def _read_secret(path, key):
    try:
        with open(path) as fh:
            value = fh.read().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError("%s: cannot read %s: %s" % (key, path, exc.strerror or exc))
    if not value:
        raise ConfigError("%s: %s is empty" % (key, path))
    return value
