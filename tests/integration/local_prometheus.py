"""Debian's real Prometheus, started for a test on a free loopback port (shared by the integration tests)."""
import os
import socket
import subprocess

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
