"""Exporter benchmark: resident memory and scrape latency under 20 concurrent scrapes.

    .venv/bin/python files/exporters/benchmarks/bench_exporter.py [--features 20] [--rounds 25] [--concurrency 20]

Starts a throwaway PostgreSQL (the test suite's fixture code), seeds it with
``--features`` numeric features of one model (reference + current window, 5000
samples each) and their drift reports, runs the drift and learning exporters
as real processes (their console scripts) and fires ``--concurrency`` scrapes
at once, ``--rounds`` times, at each. Reports latency percentiles, the
processes' RSS (VmRSS, VmHWM) before and after, and the time one scoring pass
over all features took (binning in PostgreSQL).
"""

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from conftest import EXPORTER_PASSWORD, PostgresCluster, find_pg_bindir, free_port  # noqa: E402
from helpers import ago, insert_numeric  # noqa: E402


def rss(pid):
    out = {}
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def fetch(port):
    t0 = time.perf_counter()
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=30) as resp:
        body = resp.read()
    return time.perf_counter() - t0, len(body)


def hammer(port, rounds, concurrency):
    latencies = []
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for _ in range(rounds):
            for seconds, _size in pool.map(lambda _: fetch(port), range(concurrency)):
                latencies.append(seconds)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {"scrapes": len(latencies), "p50_ms": pick(0.50) * 1000, "p95_ms": pick(0.95) * 1000,
            "p99_ms": pick(0.99) * 1000, "max_ms": latencies[-1] * 1000}


def wait_up(port, name, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as resp:
                if ("%s_up 1.0" % name).encode() in resp.read():
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("%s did not come up" % name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    pg = PostgresCluster(find_pg_bindir())
    procs = []
    results = {"features": args.features, "rounds": args.rounds, "concurrency": args.concurrency}
    try:
        pg.init()
        pg.start()
        pg.provision()
        rng = np.random.default_rng(3)
        with pg.connect("ai_user", "owner-secret") as conn:
            for i in range(args.features):
                insert_numeric(conn, "llm", "f%02d" % i, rng.normal(0, 1, 5000), ago(conn, days=3), step_seconds=1)
                insert_numeric(conn, "llm", "f%02d" % i, rng.normal(0.2, 1, 5000), ago(conn, minutes=30),
                               step_seconds=0.1)
                conn.execute("INSERT INTO platform.training_runs (model, trigger, status, started_at, finished_at, "
                             "training_loss) VALUES ('llm', 'schedule', 'succeeded', now() - interval '1 hour', "
                             "now(), 0.5)")
        tmp = tempfile.mkdtemp(prefix="aibench-")
        db = pg.database_section()
        bindir = os.path.dirname(sys.executable)
        env = dict(os.environ, AIPLATFORM_DB_PASSWORD=EXPORTER_PASSWORD)
        ports = {}
        for name, script, extra in (
                ("aiplatform_drift_exporter", "aiplatform-drift-exporter",
                 {"drift": {"interval_seconds": 3600, "cache_seconds": 5, "reference": {"min_samples": 100}},
                  "models": [{"name": "llm", "features": [{"name": "f%02d" % i} for i in range(args.features)]}]}),
                ("aiplatform_learning_exporter", "aiplatform-learning-exporter", {})):
            cfg = os.path.join(tmp, script + ".yml")
            with open(cfg, "w") as fh:
                yaml.safe_dump(dict({"database": db}, **extra), fh)
            port = free_port()
            t0 = time.monotonic()
            proc = subprocess.Popen([os.path.join(bindir, script), "--config", cfg, "--listen", "127.0.0.1:%d" % port,
                                     "--log-level", "warning"], env=env)
            procs.append(proc)
            wait_up(port, name)
            ports[name] = (port, proc, t0)
        # the drift exporter scores every feature at start; wait until every report is there
        with pg.connect("ai_user", "owner-secret") as conn:
            t0 = ports["aiplatform_drift_exporter"][2]
            while conn.execute("SELECT count(DISTINCT feature) FROM platform.drift_reports").fetchone()[0] < \
                    args.features:
                time.sleep(0.1)
            results["first_scoring_pass_seconds_incl_start"] = time.monotonic() - t0
        for name, (port, proc, _) in ports.items():
            before = rss(proc.pid)
            stats = hammer(port, args.rounds, args.concurrency)
            after = rss(proc.pid)
            stats.update(rss_before_bytes=before["VmRSS"], rss_after_bytes=after["VmRSS"],
                         rss_peak_bytes=after["VmHWM"], body_bytes=fetch(port)[1])
            results[name] = stats
            print("%-30s %s" % (name, json.dumps(stats)))
        results["machine"] = {"python": sys.version.split()[0], "platform": platform.platform(),
                              "cores": os.cpu_count(), "numpy": np.__version__,
                              "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)")}
        print(json.dumps(results, indent=1))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(results, fh, indent=1)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)
        pg.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
