"""Receivers built from alertmanager_receivers, delivered by the real Alertmanager.

playbooks/render.yml writes the role's alertmanager.yml (typed receivers: webhook, Slack, PagerDuty,
email) and the collection's notification templates; Debian's prometheus-alertmanager runs it with the
rendered unit's ExecStart. The destinations are local stand-ins that record what arrives: an HTTP
server for the webhook, Slack and PagerDuty (both are HTTP POSTs to a configurable URL) and a minimal
SMTP server. Alerts are posted to Alertmanager's API:

- routing by severity and team: each receiver gets exactly the alerts its `match` selects;
- the templates render: summary, description, runbook link and labels reach Slack, PagerDuty and email;
- the critical alert inhibits the warning of the same alert and instance;
- resolving an alert sends a resolved notification (send_resolved is on);
- the PagerDuty routing key stays out of the playbook's output.

Run: .venv/bin/python -m pytest -q tests/integration/alertmanager -k delivery
"""
import json
import os
import socketserver
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from live import AM_BINARY, free_port, render, request, start_alertmanager, wait_until

ROUTING_KEY = "pd-routing-key-0123456789abcdef"
RUNBOOK = "https://runbooks.example.com/docs/runbooks.md#deliverytest"


class Recorder(object):
    """Every HTTP POST body by path, and every SMTP message."""

    def __init__(self):
        self.lock = threading.Lock()
        self.posts = {}
        self.mails = []

    def add_post(self, path, body):
        with self.lock:
            self.posts.setdefault(path, []).append(json.loads(body))

    def get(self, path):
        with self.lock:
            return list(self.posts.get(path, []))


def http_server(recorder):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            recorder.add_post(self.path, self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def smtp_server(recorder):
    """Just enough SMTP (RFC 5321, no TLS, no auth) for Alertmanager to hand over a message."""
    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line):
            self.wfile.write((line + "\r\n").encode())

        def handle(self):
            self.reply("220 localhost test SMTP")
            message, in_data = [], False
            for raw in self.rfile:
                line = raw.decode(errors="replace").rstrip("\r\n")
                if in_data:
                    if line == ".":
                        with recorder.lock:
                            recorder.mails.append("\n".join(message))
                        message, in_data = [], False
                        self.reply("250 queued")
                    else:
                        message.append(line[1:] if line.startswith("..") else line)
                    continue
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    self.reply("250-localhost")
                    self.reply("250 8BITMIME")
                elif verb == "DATA":
                    in_data = True
                    self.reply("354 end with .")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("250 ok")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    assert os.access(AM_BINARY, os.X_OK), f"{AM_BINARY} is required (Debian package prometheus-alertmanager)"
    tmp = tmp_path_factory.mktemp("am-delivery")
    recorder = Recorder()
    web, smtp = http_server(recorder), smtp_server(recorder)
    hook = "http://127.0.0.1:%d" % web.server_address[1]
    port = free_port()
    (tmp / "data/alertmanager").mkdir(parents=True)
    variables = {
        "alertmanager_config_dir": str(tmp / "etc/alertmanager"),
        "alertmanager_data_dir": str(tmp / "data/alertmanager"),
        "alertmanager_web_listen_address": f"127.0.0.1:{port}",
        "alertmanager_route_group_wait": "1s",
        "alertmanager_route_group_interval": "2s",
        "alertmanager_global": {"smtp_smarthost": "127.0.0.1:%d" % smtp.server_address[1],
                                "smtp_from": "alertmanager@example.com", "smtp_require_tls": False},
        "alertmanager_receivers": [
            {"name": "audit", "webhook": {"url": hook + "/webhook"},
             "match": {"severity": ["warning", "critical"]}, "continue": True},
            {"name": "ml-chat", "slack": {"api_url": hook + "/slack", "channel": "#ml-alerts"},
             "match": {"team": "ml"}, "continue": True},
            {"name": "ml-oncall", "pagerduty": {"routing_key": ROUTING_KEY, "url": hook + "/pagerduty"},
             "match": {"severity": "critical", "team": "ml"}, "continue": True},
            {"name": "ops-mail", "email": {"to": "ops@example.com"}, "match": {"severity": "critical"}},
        ],
    }
    rendered = render(tmp, "delivery", variables, "alertmanager", secrets=[ROUTING_KEY])
    server, _ = start_alertmanager(rendered, tmp, "delivery")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: (request(url + "/-/ready")[0] == 200, "not ready"), "Alertmanager ready", server)
    yield {"url": url, "server": server, "recorder": recorder, "tmp": tmp}
    server.stop()
    web.shutdown()
    smtp.shutdown()


def iso(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def post_alerts(stack, alerts):
    status, body = request(stack["url"] + "/api/v2/alerts", data=json.dumps(alerts).encode())
    assert status == 200, body


def alert(instance, severity, team="ml", ends=None):
    now = datetime.now(timezone.utc)
    out = {"labels": {"alertname": "DeliveryTest", "job": "delivery", "instance": instance, "severity": severity,
                      "team": team},
           "annotations": {"summary": "Delivery test on %s" % instance,
                           "description": "A %s alert posted by the delivery test." % severity,
                           "runbook_url": RUNBOOK},
           "startsAt": iso(now - timedelta(seconds=30))}
    if ends is not None:
        out["endsAt"] = iso(ends)
    return out


def webhook_alerts(stack, status=None):
    return [(a["labels"]["instance"], a["labels"]["severity"], a["status"])
            for n in stack["recorder"].get("/webhook") for a in n["alerts"] if status in (None, a["status"])]


def test_config_uses_the_collection_templates(stack):
    config = stack["tmp"] / "etc/alertmanager/alertmanager.yml"
    body = config.read_text()
    assert '{{ template "aiplatform.title" . }}' in body
    assert "- %s/etc/alertmanager/templates/*" % stack["tmp"] in body
    assert (config.parent / "templates" / "aiplatform.tmpl").is_file()
    assert 'routing_key: %s' % ROUTING_KEY in body   # the secret is in the root-only file, and only there


def test_routing_templates_and_inhibition(stack):
    # The critical fires first; once it has been delivered, the warning of the same alert and instance is
    # muted. (Posted in one request, the warning can be flushed before Alertmanager's inhibitor has taken in
    # the critical: a race of Alertmanager's own, seen on a loaded 2-core machine, not what users meet.)
    post_alerts(stack, [alert("node-a", "critical"), alert("node-b", "warning", team="ops")])
    wait_until(lambda: (("node-a", "critical", "firing") in webhook_alerts(stack), webhook_alerts(stack)),
               "node-a critical delivered", stack["server"], timeout=60)
    post_alerts(stack, [alert("node-a", "critical"), alert("node-a", "warning")])

    def arrived():
        got = webhook_alerts(stack)
        recorder = stack["recorder"]
        return bool(("node-a", "critical", "firing") in got and ("node-b", "warning", "firing") in got
                    and recorder.get("/slack") and recorder.get("/pagerduty") and recorder.mails), got

    wait_until(arrived, "every receiver notified", stack["server"], timeout=60)
    time.sleep(3)  # two more group intervals: a muted warning would have gone out by now
    got = webhook_alerts(stack)
    assert ("node-a", "warning", "firing") not in got, got   # inhibited by the critical of node-a

    slack = stack["recorder"].get("/slack")
    texts = [a["text"] for n in slack for a in n.get("attachments", [])]
    titles = [a["title"] for n in slack for a in n.get("attachments", [])]
    assert all(n["channel"] == "#ml-alerts" for n in slack)
    assert any("Delivery test on node-a" in t and "Runbook: " + RUNBOOK in t and "severity=critical" in t for t in texts), texts
    assert any(t.startswith("[FIRING:1] DeliveryTest (critical): Delivery test on node-a") for t in titles), titles
    assert not any("node-b" in t for t in texts), "node-b has team=ops: not for the ml chat"

    pages = stack["recorder"].get("/pagerduty")
    assert {p["routing_key"] for p in pages} == {ROUTING_KEY}
    assert all(p["payload"]["severity"] == "critical" for p in pages), pages
    assert any("Delivery test on node-a" in p["payload"]["summary"] for p in pages), pages
    assert not any("node-b" in json.dumps(p) for p in pages), "a warning is not paged"

    mails = stack["recorder"].mails
    assert any("Subject: [FIRING:1] DeliveryTest (critical)" in m and RUNBOOK in m for m in mails), mails[:1]
    assert not any("node-b" in m for m in mails), "warnings are not mailed"


def test_resolved_notification(stack):
    post_alerts(stack, [alert("node-c", "warning", ends=datetime.now(timezone.utc) + timedelta(seconds=60))])
    wait_until(lambda: (("node-c", "warning", "firing") in webhook_alerts(stack), webhook_alerts(stack)),
               "node-c firing", stack["server"], timeout=30)
    post_alerts(stack, [alert("node-c", "warning", ends=datetime.now(timezone.utc) - timedelta(seconds=1))])
    wait_until(lambda: (("node-c", "warning", "resolved") in webhook_alerts(stack), webhook_alerts(stack)),
               "node-c resolved", stack["server"], timeout=30)
