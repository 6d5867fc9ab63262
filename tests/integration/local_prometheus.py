"""Debian's real Prometheus, started for a test on a free loopback port (shared by the integration tests)."""
import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

PROMETHEUS = "/usr/bin/prometheus"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tmp, config):
    """Write config to tmp/prometheus.yml and start Prometheus; returns (process, url, log file).
    The caller terminates the process and closes the log (tmp/prometheus.log)."""
    assert os.access(PROMETHEUS, os.X_OK), f"{PROMETHEUS} is required (Debian package prometheus)"
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp / "prometheus.log", "wb")
    proc = subprocess.Popen([PROMETHEUS, "--config.file=%s" % (tmp / "prometheus.yml"),
                             "--storage.tsdb.path=%s" % (tmp / "data"), "--web.listen-address=127.0.0.1:%d" % port],
                            stdout=log, stderr=subprocess.STDOUT)
    return proc, "http://127.0.0.1:%d" % port, log


class StaticExporter(object):
    """A /metrics endpoint on loopback that serves a fixed exposition (text format 0.0.4).
    The port is chosen once, so stop() then start() brings the same target back."""

    def __init__(self, body):
        self.body = body.encode() if isinstance(body, str) else body
        self.server = None
        self.port = free_port()

    def start(self):
        body = self.body

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
