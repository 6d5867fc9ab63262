"""The Alertmanager webhook sink: what it stores, what it refuses, its metrics, its CLI."""
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from aiplatform_exporters import alert_sink

PAYLOAD = {
    "version": "4", "status": "firing", "receiver": "lab-sink", "groupKey": "{}:{alertname=\"TargetDown\"}",
    "groupLabels": {"alertname": "TargetDown"}, "commonLabels": {"alertname": "TargetDown", "severity": "warning"},
    "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
    "alerts": [
        {"status": "firing", "labels": {"alertname": "TargetDown", "job": "gpu", "instance": "gpu-node-1",
                                        "severity": "warning"},
         "annotations": {"summary": "Target gpu-node-1 of job gpu is down"}, "startsAt": "2026-12-04T10:00:00Z",
         "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "abc"},
    ],
}


@pytest.fixture
def server(tmp_path):
    sinks = []

    def start(token=None, max_body_bytes=1 << 20, max_file_bytes=0):
        path = str(tmp_path / "notifications.jsonl")
        sink = alert_sink.Sink(alert_sink.Store(path, max_file_bytes), token=token, max_body_bytes=max_body_bytes,
                               registry=CollectorRegistry())
        httpd = alert_sink.serve(sink, "127.0.0.1", 0)
        sinks.append(httpd)
        return sink, "http://127.0.0.1:%d" % httpd.server_port, path

    yield start
    for httpd in sinks:
        httpd.shutdown()


def post(url, body, token=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + "/", data=data, method="POST", headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def lines(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def test_stores_each_notification_as_one_json_line(server):
    sink, url, path = server()
    assert post(url, PAYLOAD)[0] == 200
    resolved = dict(PAYLOAD, status="resolved", alerts=[dict(PAYLOAD["alerts"][0], status="resolved")])
    assert post(url, resolved)[0] == 200
    got = lines(path)
    assert [g["status"] for g in got] == ["firing", "resolved"]
    assert got[0]["alerts"][0]["labels"] == PAYLOAD["alerts"][0]["labels"]
    assert got[0]["receivedAt"].endswith("+00:00")
    assert sink.registry.get_sample_value("aiplatform_alert_sink_notifications_total", {"status": "firing"}) == 1
    assert sink.registry.get_sample_value("aiplatform_alert_sink_alerts_total", {"status": "resolved"}) == 1
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o640 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("body, reason", [
    (b"not json", "not JSON"),
    ({"alerts": "x"}, "list 'alerts'"),
    ([1, 2], "JSON object"),
    ({"alerts": [{"labels": []}]}, "alerts[0]"),
])
def test_refuses_what_is_not_a_webhook_payload(server, body, reason):
    sink, url, path = server()
    status, text = post(url, body)
    assert status == 400 and reason in text
    assert not os.path.exists(path)
    assert sink.registry.get_sample_value("aiplatform_alert_sink_rejected_requests_total",
                                          {"reason": "bad_payload"}) == 1


def test_bearer_token_required_when_configured(server):
    sink, url, path = server(token="s3cret")
    assert post(url, PAYLOAD)[0] == 401
    assert post(url, PAYLOAD, token="wrong")[0] == 401
    assert not os.path.exists(path)
    assert post(url, PAYLOAD, token="s3cret")[0] == 200
    assert len(lines(path)) == 1


def test_oversized_body_refused(server):
    sink, url, path = server(max_body_bytes=100)
    assert post(url, PAYLOAD)[0] == 413
    assert not os.path.exists(path)


def test_rotates_beyond_max_file_bytes(server):
    sink, url, path = server(max_file_bytes=1500)
    for _ in range(3):
        assert post(url, PAYLOAD)[0] == 200
    assert os.path.exists(path + ".1")
    assert len(lines(path)) + len(lines(path + ".1")) == 3


def test_metrics_and_health(server):
    sink, url, path = server()
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'aiplatform_alert_sink_notifications_total{status="firing"} 0.0' in text
    with urllib.request.urlopen(url + "/health", timeout=10) as r:
        assert r.status == 200


def test_cli_serves_and_reads_the_token_from_a_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    out = tmp_path / "n.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "aiplatform_exporters.alert_sink", "--listen", "127.0.0.1:0",
                             "--file", str(out), "--token-file", str(token_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "listening on" in line:
                port = int(line.split("listening on ")[1].split(",")[0].rsplit(":", 1)[1])
        assert port, "the sink did not start"
        assert post("http://127.0.0.1:%d" % port, PAYLOAD, token="from-file")[0] == 200
        assert len(lines(str(out))) == 1
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


def test_cli_configuration_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("")
    for args, message in ((["--listen", "nope"], "--listen"), (["--token-file", str(empty)], "is empty"),
                          (["--file", "/proc/nope/x"], "cannot write")):
        argv = ["--file", str(tmp_path / "n.jsonl")] + args
        proc = subprocess.run([sys.executable, "-m", "aiplatform_exporters.alert_sink"] + argv,
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
