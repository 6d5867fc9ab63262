"""What every exporter shares: the HTTP server, its own metrics, the CLI frame."""

import argparse
import gzip
import logging
import signal
import sys
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from aiplatform_exporters import __version__, catalog
from aiplatform_exporters.config import ConfigError, Reader, load_yaml, parse_listen
from aiplatform_exporters.web import WebConfig, load_web_config, protect

log = logging.getLogger(__name__)


def gauge(name, value=None, labels=None, extra_labels=()):
    """A GaugeMetricFamily whose HELP and labels come from the catalog."""
    label_names = list(labels) if labels is not None else catalog.labels_of(name)
    fam = GaugeMetricFamily(name, catalog.help_of(name), labels=label_names + list(extra_labels))
    if value is not None:
        fam.add_metric([], value)
    return fam


def counter(name, value=None, labels=None):
    label_names = list(labels) if labels is not None else catalog.labels_of(name)
    fam = CounterMetricFamily(catalog.family_name(name), catalog.help_of(name), labels=label_names)
    if value is not None:
        fam.add_metric([], value)
    return fam


class SelfMetrics(object):
    """The exporter's own activity: up, last collection's duration, source errors, bad rows."""

    def __init__(self, prefix):
        self.prefix = prefix
        self._lock = threading.Lock()
        self.errors = {}
        self.bad_rows = {}

    def error(self, operation):
        with self._lock:
            self.errors[operation] = self.errors.get(operation, 0) + 1

    def bad_row(self, table):
        with self._lock:
            self.bad_rows[table] = self.bad_rows.get(table, 0) + 1

    def families(self, up, duration, operations=("collect",), with_bad_rows=True):
        yield gauge(self.prefix + "_up", 1 if up else 0)
        yield gauge(self.prefix + "_scrape_duration_seconds", duration)
        errs = counter(self.prefix + "_source_errors_total")
        with self._lock:
            errors = dict(self.errors)
            bad_rows = dict(self.bad_rows)
        for op in sorted(set(operations) | set(errors)):
            errs.add_metric([op], errors.get(op, 0))
        yield errs
        if with_bad_rows:
            bad = counter(self.prefix + "_bad_rows_total")
            for table in sorted(bad_rows):
                bad.add_metric([table], bad_rows[table])
            yield bad


class ReloadMetrics(object):
    """Whether the last configuration reload worked, and when the file last loaded (Prometheus' names)."""

    def __init__(self, prefix, now=None):
        self.prefix = prefix
        self._lock = threading.Lock()
        self.successful = True
        self.success_time = time.time() if now is None else now

    def succeeded(self, now=None):
        with self._lock:
            self.successful = True
            self.success_time = time.time() if now is None else now

    def failed(self):
        with self._lock:
            self.successful = False

    def collect(self):
        with self._lock:
            successful, success_time = self.successful, self.success_time
        yield gauge(self.prefix + "_config_last_reload_successful", 1 if successful else 0)
        yield gauge(self.prefix + "_config_last_reload_success_timestamp_seconds", success_time)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a burst of concurrent scrapes would overflow it
    # and the kernel would drop SYNs (clients then wait a 1 s retransmit)
    request_queue_size = 128
    # TLS (web config): each connection's handshake runs in its own request thread, so a slow or
    # silent client never holds up the accept loop.
    ssl_context = None
    handshake_timeout = 10.0

    def finish_request(self, request, client_address):
        if self.ssl_context is None:
            return super().finish_request(request, client_address)
        import ssl

        request.settimeout(self.handshake_timeout)
        try:
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("%s: TLS handshake failed: %s", client_address[0], exc)
            return None
        try:
            conn.settimeout(None)
            return super().finish_request(conn, client_address)
        finally:
            conn.close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        log.debug("%s %s", self.address_string(), format % args)


def _ipv6(addr):
    return ":" in addr


# The text format dcgm-exporter serves (what the GPU exporter's exposition writes).
TEXT_FORMAT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"


def _exposition_app(registry, exposition):
    """/metrics from ``exposition(registry)`` (bytes of the text format 0.0.4), gzip when asked."""
    def app(environ, start_response):
        body = exposition(registry)
        headers = [("Content-Type", TEXT_FORMAT_0_0_4)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers + [("Content-Length", str(len(body)))])
        return [body]

    return app


def make_app(registry, title, exposition=None):
    metrics_app = make_wsgi_app(registry) if exposition is None else _exposition_app(registry, exposition)
    page = ("<html><head><title>%s</title></head><body><h1>%s</h1><p><a href=\"/metrics\">Metrics</a></p>"
            "</body></html>" % (title, title)).encode()

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path in ("/health", "/-/healthy"):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"OK\n"]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [page]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found\n"]

    return app


def serve(registry, addr, port, title="exporter", exposition=None, web=None):
    """Start serving ``registry`` on addr:port in a daemon thread; returns the server.
    ``exposition(registry)``, when given, writes the /metrics body instead of prometheus-client.
    ``web`` (a WebConfig, see aiplatform_exporters.web) adds TLS and basic auth."""
    web = web or WebConfig()
    server_class = _ThreadingWSGIServer
    if _ipv6(addr):
        import socket

        class _V6(_ThreadingWSGIServer):
            address_family = socket.AF_INET6

        server_class = _V6
    app = protect(make_app(registry, title, exposition), web.users, realm=title)
    httpd = make_server(addr, port, app, server_class, handler_class=_QuietHandler)
    httpd.ssl_context = web.tls
    thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    thread.start()
    return httpd


def build_parser(prog, description, default_port):
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file")
    parser.add_argument("--listen", metavar="ADDR:PORT",
                        help="address to serve /metrics on (default: config 'listen' or 0.0.0.0:%d)" % default_port)
    parser.add_argument("--web-config-file", metavar="FILE",
                        help="TLS and basic auth, in the exporter-toolkit format of node_exporter's "
                             "--web.config.file (default: config 'web_config_file'; none: plain HTTP)")
    parser.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"),
                        help="log level (default: config 'log_level' or info)")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the configuration file and exit (0 when valid)")
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return parser


LEVELS = ("debug", "info", "warning", "error")


class FrameSettings(object):
    """The frame's part of a config file: its Reader (for the exporter's sections), listen, log level."""

    def __init__(self, reader, listen, addr, port, level, web=None):
        self.reader = reader
        self.listen = listen
        self.addr = addr
        self.port = port
        self.level = level
        self.web = web or WebConfig()


def read_settings(args, default_port, require_config=True):
    """Load ``args.config`` and read the frame's keys; ConfigError names the key or the file."""
    if args.config is None and require_config:
        raise ConfigError("--config: is required")
    data = load_yaml(args.config) if args.config else {}
    reader = Reader(data)
    config_listen = reader.get("listen", str, "0.0.0.0:%d" % default_port)
    parse_listen(config_listen, "listen")
    addr, port = parse_listen(args.listen, "--listen") if args.listen else parse_listen(config_listen, "listen")
    config_level = reader.get("log_level", str, "info", choices=LEVELS)
    config_web = reader.get("web_config_file", str, "")
    web_file = args.web_config_file if args.web_config_file is not None else config_web
    try:
        web = load_web_config(web_file)
    except OSError as exc:
        raise ConfigError("web_config_file: %s: %s" % (web_file, exc.strerror or exc))
    except ConfigError as exc:
        raise ConfigError("web_config_file %s: %s" % (web_file, exc))
    return FrameSettings(reader, args.listen or config_listen, addr, port, args.log_level or config_level, web)


class _Signals(object):
    """What the signal handlers ask for; the main loop does it, outside the handlers."""

    def __init__(self):
        self.wake = threading.Event()
        self.stop_signal = None
        self.reload_requested = False

    def on_stop(self, signum, frame):
        self.stop_signal = signum
        self.wake.set()

    def on_reload(self, signum, frame):
        self.reload_requested = True
        self.wake.set()

    def wait(self, timeout):
        self.wake.wait(timeout)
        self.wake.clear()

    def take_reload(self):
        requested, self.reload_requested = self.reload_requested, False
        return requested


class Reloader(object):
    """SIGHUP: re-read the file the process started with; apply it, or keep everything on an invalid file."""

    def __init__(self, app, args, default_port, current, metrics):
        self.app = app
        self.args = args
        self.default_port = default_port
        self.current = current
        self.metrics = metrics

    def reload(self):
        path = self.args.config
        try:
            new = read_settings(self.args, self.default_port)
            changes = list(self.app.reload(new.reader))
        except ConfigError as exc:
            self._failed("reload: %s: %s; keeping the previous configuration", path, exc)
            return False
        except Exception as exc:  # noqa: BLE001 - a reload must never stop the exporter
            self._failed("reload: %s: %s: %s; keeping the previous configuration", path, type(exc).__name__, exc)
            return False
        changes += self._frame_changes(new)
        self.metrics.succeeded()
        log.info("reload: %s: %s", path, "; ".join(changes) if changes else "no changes")
        return True

    def _failed(self, message, *args):
        log.error(message, *args)
        self.metrics.failed()

    def _frame_changes(self, new):
        changes = []
        if new.level != self.current.level:
            logging.getLogger().setLevel(new.level.upper())
            changes.append("log_level %s -> %s" % (self.current.level, new.level))
            self.current.level = new.level
        if new.listen != self.current.listen:
            log.warning("reload: listen %s -> %s needs a restart; still listening on %s", self.current.listen,
                        new.listen, self.current.listen)
        if (new.web.path, new.web.digest) != (self.current.web.path, self.current.web.digest):
            log.warning("reload: the web configuration changed; TLS and basic auth change at the next restart")
        return changes


def run(prog, description, default_port, build, argv=None, require_config=True):
    """The CLI frame of every exporter.

    ``build(reader)`` reads its sections from the config Reader and returns an
    object with ``collectors()`` (to register) and optionally ``start()`` /
    ``stop()`` and ``exposition(registry)`` (the /metrics body, see serve). An object that also has ``reload(reader)`` and
    ``metrics_prefix`` re-reads the file on SIGHUP: ``reload`` checks the whole
    reader (``reader.finish()`` included) before it changes anything, raises
    ConfigError when the file is invalid, and returns the changes as short
    strings. Returns the process exit code.
    """
    parser = build_parser(prog, description, default_port)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = read_settings(args, default_port, require_config)
        app = build(settings.reader)
        settings.reader.finish()
    except ConfigError as exc:
        sys.stderr.write("%s: configuration error: %s\n" % (prog, exc))
        return 2
    logging.getLogger().setLevel(settings.level.upper())
    if args.check_config:
        sys.stdout.write("%s: configuration OK\n" % prog)
        return 0
    registry = CollectorRegistry()
    from prometheus_client.process_collector import ProcessCollector
    from prometheus_client.platform_collector import PlatformCollector

    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    for collector in app.collectors():
        registry.register(collector)
    signals = _Signals()
    reloader = None
    if hasattr(app, "reload") and args.config:
        reload_metrics = ReloadMetrics(app.metrics_prefix)
        registry.register(reload_metrics)
        reloader = Reloader(app, args, default_port, settings, reload_metrics)
        signal.signal(signal.SIGHUP, signals.on_reload)
    signal.signal(signal.SIGTERM, signals.on_stop)
    signal.signal(signal.SIGINT, signals.on_stop)
    try:
        httpd = serve(registry, settings.addr, settings.port, title=prog, exposition=getattr(app, "exposition", None),
                      web=settings.web)
    except OSError as exc:
        sys.stderr.write("%s: cannot listen on %s:%d: %s\n" % (prog, settings.addr, settings.port,
                                                                 exc.strerror or exc))
        return 1
    log.info("%s %s listening on %s:%d (%s%s)", prog, __version__, settings.addr, httpd.server_port,
             settings.web.scheme, ", basic auth" if settings.web.users else "")
    if hasattr(app, "start"):
        app.start()
    try:
        _main_loop(signals, reloader)
    finally:
        if hasattr(app, "stop"):
            app.stop()
        httpd.shutdown()
    return 0


def _main_loop(signals, reloader):
    while True:
        signals.wait(1.0)
        if signals.stop_signal is not None:
            log.info("signal %d: stopping", signals.stop_signal)
            return
        if signals.take_reload() and reloader is not None:
            reloader.reload()


class Timer(object):
    def __enter__(self):
        self.start = time.monotonic()
        self.elapsed = 0.0
        return self

    def __exit__(self, *exc):
        self.elapsed = time.monotonic() - self.start
        return False


class CachedRead(object):
    """Reads a source at most once per `max_age` seconds, however many scrapes arrive.

    `get()` returns (data, up, duration): `read()`'s result, whether it succeeded, and how long
    it took. An exception of `errors` is logged, counted as a "collect" error on `self_metrics`
    and reported as up False; the next read after `max_age` tries the source again.
    """

    def __init__(self, read, max_age, self_metrics, log, errors):
        self._read = read
        self._max_age = max_age
        self._self_metrics = self_metrics
        self._log = log
        self._errors = errors
        self._lock = threading.Lock()
        self._cache = None
        self._cache_time = -1e18

    def get(self):
        with self._lock:
            now = time.monotonic()
            if self._cache is None or now - self._cache_time >= self._max_age:
                with Timer() as timer:
                    try:
                        data, up = self._read(), True
                    except self._errors as exc:
                        self._log.warning("collect: %s", exc)
                        self._self_metrics.error("collect")
                        data, up = None, False
                self._cache = (data, up, timer.elapsed)
                self._cache_time = now
            return self._cache
