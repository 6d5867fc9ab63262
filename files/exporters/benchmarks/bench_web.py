"""What TLS and basic auth cost a scrape: the exporters' server plain, with TLS, with TLS and basic auth,
against prometheus_client's own TLS server (start_http_server(certfile=...), which has no basic auth).

    .venv/bin/python files/exporters/benchmarks/bench_web.py [--scrapes 300] [--metrics 500] [--json FILE]

Every scrape opens a new connection (the exporters answer HTTP/1.0 and close, so each TLS scrape
pays a full handshake, as a Prometheus scrape of them does). One registry of --metrics gauges is
served by every variant, in this process, on 127.0.0.1; the client is urllib in the same process.
Basic auth uses cost 12 (the roles' default): the first request of a process pays one bcrypt check,
the next ones a dictionary lookup; the figure for a wrong password (never cached) is reported too.
"""

import argparse
import base64
import json
import os
import platform
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import bcrypt  # noqa: E402
import prometheus_client  # noqa: E402
from prometheus_client import CollectorRegistry, Gauge  # noqa: E402

from aiplatform_exporters import server, web  # noqa: E402

PASSWORD = "scrape-password"


def certs(d):
    def ossl(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
         "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    return os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")


def registry(n):
    reg = CollectorRegistry()
    g = Gauge("bench_value", "A value", ["i"], registry=reg)
    for i in range(n):
        g.labels(str(i)).set(i)
    return reg


def scrape(url, ctx, auth):
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return time.perf_counter() - start, status


def measure(url, ctx, auth, n, expect=200):
    times = []
    for _ in range(n):
        elapsed, status = scrape(url, ctx, auth)
        assert status == expect, (url, status)
        times.append(elapsed * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 3), "p95_ms": round(times[int(len(times) * 0.95) - 1], 3),
            "mean_ms": round(statistics.mean(times), 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--metrics", type=int, default=500)
    parser.add_argument("--json")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-web-")
    cert, key = certs(tmp)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()
    webfile = os.path.join(tmp, "web.yml")
    with open(webfile, "w") as fh:
        fh.write("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prometheus: '%s'\n"
                 % (cert, key, hashed))
    tls_only = os.path.join(tmp, "tls.yml")
    with open(tls_only, "w") as fh:
        fh.write("tls_server_config:\n  cert_file: %s\n  key_file: %s\n" % (cert, key))
    reg = registry(args.metrics)
    ctx = ssl.create_default_context(cafile=cert)
    results = {}

    httpd = server.serve(reg, "127.0.0.1", 0, title="bench")
    results["exporters: plain HTTP"] = measure("http://127.0.0.1:%d/metrics" % httpd.server_port, None, "", args.scrapes)
    httpd.shutdown()

    httpd = server.serve(reg, "127.0.0.1", 0, title="bench", web=web.load_web_config(tls_only))
    results["exporters: TLS"] = measure("https://127.0.0.1:%d/metrics" % httpd.server_port, ctx, "", args.scrapes)
    httpd.shutdown()

    httpd = server.serve(reg, "127.0.0.1", 0, title="bench", web=web.load_web_config(webfile))
    url = "https://127.0.0.1:%d/metrics" % httpd.server_port
    first, status = scrape(url, ctx, "prometheus:" + PASSWORD)
    assert status == 200
    results["exporters: TLS + basic auth, first scrape (one bcrypt check)"] = {"p50_ms": round(first * 1000, 3)}
    results["exporters: TLS + basic auth"] = measure(url, ctx, "prometheus:" + PASSWORD, args.scrapes)
    results["exporters: TLS + basic auth, wrong password (401)"] = measure(url, ctx, "prometheus:nope",
                                                                         max(5, args.scrapes // 30), expect=401)
    httpd.shutdown()

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if "certfile" in prometheus_client.start_http_server.__code__.co_varnames:
        srv, _thread = prometheus_client.start_http_server(port, addr="127.0.0.1", registry=reg, certfile=cert,
                                                           keyfile=key)
        results["prometheus_client start_http_server: TLS (no basic auth)"] = measure(
            "https://127.0.0.1:%d/metrics" % port, ctx, "", args.scrapes)
        srv.shutdown()
    out = {"machine": {"python": platform.python_version(), "prometheus_client": prometheus_client.__version__
                       if hasattr(prometheus_client, "__version__") else "", "cpus": os.cpu_count(),
                       "openssl": ssl.OPENSSL_VERSION},
           "scrapes": args.scrapes, "metrics": args.metrics, "results": results}
    base = results["exporters: TLS"]["p50_ms"]
    for name, r in results.items():
        print("%-62s p50 %8.3f ms  p95 %8s ms  (x%.2f of exporters' TLS)" % (
            name, r["p50_ms"], r.get("p95_ms", "-"), r["p50_ms"] / base))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
