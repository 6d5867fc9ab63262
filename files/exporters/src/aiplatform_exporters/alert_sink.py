"""aiplatform-alert-sink: an Alertmanager webhook receiver that keeps every notification.

Each notification Alertmanager POSTs (webhook payload version 4) is appended to a file as one JSON
line: the payload as received plus ``receivedAt`` (UTC, ISO 8601). The file is the evidence that an
alert reached a receiver: the lab and the collection's tests read it, and on a real site it is an
audit log of what was sent.

    aiplatform-alert-sink --listen 127.0.0.1:19845 --file /var/lib/aiplatform-alert-sink/notifications.jsonl

* ``POST /`` (or any path): a notification. 200 when stored; 400 for a body that is not a webhook
  payload (JSON object with a list ``alerts``); 401 without the bearer token when ``--token-file``
  is set; 413 above ``--max-body-bytes``.
* ``GET /metrics``: the sink's own metrics (notifications and alerts received by status, rejected
  requests); ``GET /health``: 200.
* ``--max-file-bytes``: when the file would grow beyond it, it is renamed to ``<file>.1`` (one
  generation kept) and a new one is started.

The token (Alertmanager's ``http_config.authorization.credentials``) is read from a file, never from
the command line: under systemd, ``LoadCredential=`` and ``--token-file %d/token``.
"""

import argparse
import datetime
import hmac
import json
import logging
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from aiplatform_exporters import __version__
from aiplatform_exporters.config import ConfigError, parse_listen

log = logging.getLogger("aiplatform-alert-sink")
DEFAULT_PORT = 19845


class Store(object):
    """Appends JSON lines to one file, from any thread; rotates once it passes max_bytes."""

    def __init__(self, path, max_bytes=0):
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def append(self, record):
        line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self.max_bytes:
                try:
                    size = os.path.getsize(self.path)
                except OSError:
                    size = 0
                if size and size + len(line) > self.max_bytes:
                    os.replace(self.path, self.path + ".1")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


def validate(payload):
    """The reason a body is not an Alertmanager webhook payload, or None."""
    if not isinstance(payload, dict):
        return "the body must be a JSON object"
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        return "the body must hold a list 'alerts'"
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict) or not isinstance(alert.get("labels", {}), dict):
            return "alerts[%d] must be an object with a mapping 'labels'" % i
    return None


class Sink(object):
    def __init__(self, store, token=None, max_body_bytes=1 << 20, registry=None):
        self.store = store
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.registry = registry if registry is not None else CollectorRegistry()
        self.notifications = Counter("aiplatform_alert_sink_notifications", "Notifications stored, by status.",
                                     ["status"], registry=self.registry)
        self.alerts = Counter("aiplatform_alert_sink_alerts", "Alerts in the stored notifications, by status.",
                              ["status"], registry=self.registry)
        self.rejected = Counter("aiplatform_alert_sink_rejected_requests", "Requests refused, by reason.",
                                ["reason"], registry=self.registry)
        for status in ("firing", "resolved"):
            self.notifications.labels(status)
            self.alerts.labels(status)
        for reason in ("unauthorized", "too_large", "bad_payload"):
            self.rejected.labels(reason)

    def authorized(self, header):
        if not self.token:
            return True
        expected = "Bearer " + self.token
        return hmac.compare_digest((header or "").encode("utf-8"), expected.encode("utf-8"))

    def receive(self, body):
        """Store one notification; returns (HTTP status, message)."""
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            self.rejected.labels("bad_payload").inc()
            return 400, "not JSON: %s" % exc
        problem = validate(payload)
        if problem:
            self.rejected.labels("bad_payload").inc()
            return 400, problem
        received = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        self.store.append(dict(payload, receivedAt=received))
        self.notifications.labels(str(payload.get("status", "firing"))).inc()
        for alert in payload["alerts"]:
            self.alerts.labels(str(alert.get("status", "firing"))).inc()
        return 200, "stored"


def make_handler(sink):
    class Handler(BaseHTTPRequestHandler):
        server_version = "aiplatform-alert-sink/" + __version__

        def _answer(self, status, text, content_type="text/plain; charset=utf-8"):
            body = text if isinstance(text, bytes) else (text + "\n").encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - BaseHTTPRequestHandler's naming
            if self.path.split("?")[0] == "/metrics":
                return self._answer(200, generate_latest(sink.registry), CONTENT_TYPE_LATEST)
            if self.path.split("?")[0] in ("/health", "/-/healthy"):
                return self._answer(200, "OK")
            return self._answer(404, "POST Alertmanager webhook notifications here; GET /metrics")

        def do_POST(self):  # noqa: N802
            if not sink.authorized(self.headers.get("Authorization")):
                sink.rejected.labels("unauthorized").inc()
                self.close_connection = True
                return self._answer(401, "a bearer token is required")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > sink.max_body_bytes:
                sink.rejected.labels("too_large").inc()
                self.close_connection = True
                return self._answer(413, "the body must have a Content-Length of at most %d bytes"
                                    % sink.max_body_bytes)
            status, message = sink.receive(self.rfile.read(length))
            return self._answer(status, message)

        def log_message(self, format, *args):  # noqa: A002 - signature of the base class
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


def serve(sink, addr, port):
    server_class = ThreadingHTTPServer
    if ":" in addr:
        import socket

        class _V6(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        server_class = _V6
    httpd = server_class((addr, port), make_handler(sink))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    return httpd


def read_token(path):
    try:
        with open(path) as fh:
            token = fh.read().strip()
    except OSError as exc:
        raise ConfigError("--token-file: cannot read %s: %s" % (path, exc.strerror or exc))
    if not token:
        raise ConfigError("--token-file: %s is empty" % path)
    return token


def main(argv=None):
    parser = argparse.ArgumentParser(prog="aiplatform-alert-sink", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:%d" % DEFAULT_PORT, metavar="ADDR:PORT")
    parser.add_argument("--file", required=True, help="the JSON lines file notifications are appended to")
    parser.add_argument("--token-file", help="file holding the bearer token requests must carry")
    parser.add_argument("--max-body-bytes", type=int, default=1 << 20)
    parser.add_argument("--max-file-bytes", type=int, default=64 << 20, help="rotate beyond this size (0: never)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        addr, port = parse_listen(args.listen, "--listen")
        token = read_token(args.token_file) if args.token_file else None
        if args.max_body_bytes <= 0 or args.max_file_bytes < 0:
            raise ConfigError("--max-body-bytes must be positive and --max-file-bytes at least 0")
        directory = os.path.dirname(os.path.abspath(args.file))
        if not os.access(directory, os.W_OK):
            raise ConfigError("--file: cannot write in %s" % directory)
    except ConfigError as exc:
        sys.stderr.write("aiplatform-alert-sink: configuration error: %s\n" % exc)
        return 2
    sink = Sink(Store(args.file, args.max_file_bytes), token=token, max_body_bytes=args.max_body_bytes)
    try:
        httpd = serve(sink, addr, port)
    except OSError as exc:
        sys.stderr.write("aiplatform-alert-sink: cannot listen on %s:%d: %s\n" % (addr, port, exc.strerror or exc))
        return 1
    log.info("aiplatform-alert-sink %s listening on %s:%d, storing to %s", __version__, addr, httpd.server_port,
             args.file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
