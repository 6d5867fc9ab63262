"""One PostgreSQL connection that reconnects by itself.

Each user (the scrape path, the drift scheduler) owns its own ``Database`` so
a long scoring query never delays a scrape. A failed query closes the
connection; the next call opens a new one, so the exporter recovers when
PostgreSQL comes back without being restarted. ``reconfigure()`` (a reload)
takes new settings: the next query connects with them.
"""

import contextlib
import logging
import threading

import psycopg

log = logging.getLogger(__name__)


class SourceError(Exception):
    """PostgreSQL could not be reached or refused a query."""


class Database(object):
    def __init__(self, settings, environ=None):
        self.settings = settings
        self._environ = environ
        self._conn = None
        self._conn_settings = None  # the settings self._conn was opened with
        self._lock = threading.RLock()

    @property
    def schema(self):
        return self.settings.schema

    def reconfigure(self, settings):
        """Connect with ``settings`` from the next query on; a query running now ends on its connection."""
        self.settings = settings
        if self._lock.acquire(blocking=False):  # idle: let the old connection go now
            try:
                self.close()
            finally:
                self._lock.release()

    def _connect(self):
        settings = self.settings
        if self._conn is not None and not self._conn.closed:
            if self._conn_settings is settings:
                return self._conn
            self.close()
        try:
            self._conn = psycopg.connect(autocommit=True, **settings.connect_kwargs(self._environ))
            self._conn_settings = settings
        except psycopg.Error as exc:
            self._conn = None
            raise SourceError("cannot connect to PostgreSQL at %s:%s/%s as %s: %s" % (
                settings.host, settings.port, settings.dbname, settings.user,
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__))
        return self._conn

    @contextlib.contextmanager
    def cursor(self, transaction=False):
        """A cursor on the shared connection (held under a lock).

        ``transaction=True`` wraps the block in one transaction; otherwise every
        statement commits by itself (autocommit).
        """
        with self._lock:
            conn = self._connect()
            try:
                if transaction:
                    with conn.transaction():
                        with conn.cursor() as cur:
                            yield cur
                else:
                    with conn.cursor() as cur:
                        yield cur
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self.close()
                raise SourceError("PostgreSQL connection lost: %s" % (str(exc).strip() or type(exc).__name__))
            except psycopg.Error as exc:
                # the server answered but refused: keep the connection unless it is unusable
                if conn.closed or conn.broken:
                    self.close()
                raise SourceError("PostgreSQL error: %s" % (str(exc).strip() or type(exc).__name__))

    def close(self):
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # noqa: BLE001 - closing a broken connection may fail any way
                    pass
                self._conn = None

    def table(self, name):
        """Schema-qualified table name (the schema is validated as a plain identifier)."""
        return "%s.%s" % (self.settings.schema, name)
