"""aiplatform-demo-workload: a small inference service that loads itself, for labs and demos.

A WSGI app wrapped in aiplatform_exporters.instrumentation.WSGIMiddleware serves
/v1/completions, /v1/embeddings and /v1/tools; a generator thread calls those
endpoints over HTTP on loopback at a steady rate, so every platform metric is
produced by the real instrumentation path: request latency around the
dashboard thresholds with a slow phase each cycle, some 5xx, prompt and
completion tokens, KV/prompt cache hits and misses, queue depth and batch
size, and calls to several MCP servers with their own latencies and errors.
/metrics serves prometheus_client's default registry.

`simulated_gpus: N` (default 0) adds N SIMULATED GPUs in dcgm-exporter's format (utilization,
framebuffer memory, temperature, power, clocks) whose load follows the request rate, for labs
that have no GPU. Every simulated series carries modelName="Simulated GPU (demo workload)" and
UUID "GPU-simulated-<n>", so it can never be mistaken for a real device.

    python demo_workload.py --config /etc/aiplatform-exporters/demo-workload.yml
"""

import argparse
import json
import logging
import math
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import yaml
from prometheus_client import REGISTRY, make_wsgi_app

from aiplatform_exporters.instrumentation import PlatformMetrics, WSGIMiddleware

log = logging.getLogger("aiplatform-demo-workload")

DEFAULTS = {
    "listen": "0.0.0.0:19844",
    "requests_per_second": 4.0,
    "concurrency": 8,
    "error_ratio": 0.02,
    "slow_phase": {"period_seconds": 900, "duration_seconds": 180, "latency_factor": 3.0, "error_ratio": 0.08},
    "models": ["llm-main", "llm-small"],
    "mcp_servers": {
        "filesystem": {"operations": ["read_file", "list_directory", "write_file"], "latency_seconds": 0.05,
                       "error_ratio": 0.01},
        "search": {"operations": ["query", "fetch"], "latency_seconds": 0.4, "error_ratio": 0.03},
        "database": {"operations": ["select", "describe_table"], "latency_seconds": 0.15, "error_ratio": 0.02},
        "github": {"operations": ["get_issue", "create_comment"], "latency_seconds": 0.9, "error_ratio": 0.06},
    },
    "cache_hit_ratio": 0.8,
    "simulated_gpus": 0,
}
SIMULATED_MODEL = "Simulated GPU (demo workload)"


class ConfigError(Exception):
    pass


def load_config(path):
    cfg = json.loads(json.dumps(DEFAULTS))
    if path:
        try:
            with open(path) as fh:
                data = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError("--config: cannot read %s: %s" % (path, exc))
        if not isinstance(data, dict):
            raise ConfigError("--config: %s must hold a mapping" % path)
        unknown = sorted(set(data) - set(DEFAULTS))
        if unknown:
            raise ConfigError("%s: unknown key (allowed: %s)" % (unknown[0], ", ".join(sorted(DEFAULTS))))
        for key, value in data.items():
            if isinstance(cfg[key], dict) and isinstance(value, dict) and key != "mcp_servers":
                cfg[key].update(value)
            else:
                cfg[key] = value
    _check(cfg)
    return cfg


def _check(cfg):
    def number(key, value, lo, hi):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ConfigError("%s: must be a number in [%s, %s], got %r" % (key, lo, hi, value))

    if not isinstance(cfg["listen"], str) or ":" not in cfg["listen"]:
        raise ConfigError("listen: must be ADDR:PORT, got %r" % (cfg["listen"],))
    number("requests_per_second", cfg["requests_per_second"], 0.1, 200)
    number("concurrency", cfg["concurrency"], 1, 64)
    number("error_ratio", cfg["error_ratio"], 0, 1)
    number("cache_hit_ratio", cfg["cache_hit_ratio"], 0, 1)
    if isinstance(cfg["simulated_gpus"], bool) or not isinstance(cfg["simulated_gpus"], int) \
            or not 0 <= cfg["simulated_gpus"] <= 16:
        raise ConfigError("simulated_gpus: must be an integer in [0, 16], got %r" % (cfg["simulated_gpus"],))
    for key in ("period_seconds", "duration_seconds"):
        number("slow_phase." + key, cfg["slow_phase"][key], 0, 86400)
    number("slow_phase.latency_factor", cfg["slow_phase"]["latency_factor"], 1, 100)
    number("slow_phase.error_ratio", cfg["slow_phase"]["error_ratio"], 0, 1)
    if not cfg["models"] or not all(isinstance(m, str) and m for m in cfg["models"]):
        raise ConfigError("models: must be a non-empty list of model names")
    if not isinstance(cfg["mcp_servers"], dict) or not cfg["mcp_servers"]:
        raise ConfigError("mcp_servers: must map at least one server name to its settings")
    for name, server in cfg["mcp_servers"].items():
        if not isinstance(server, dict) or not server.get("operations"):
            raise ConfigError("mcp_servers.%s.operations: must list at least one operation" % name)
        number("mcp_servers.%s.latency_seconds" % name, server.get("latency_seconds", 0.1), 0, 60)
        number("mcp_servers.%s.error_ratio" % name, server.get("error_ratio", 0.0), 0, 1)


class Workload(object):
    """The service's behaviour: what one request costs and how it may fail."""

    def __init__(self, cfg, metrics, rng=None):
        self.cfg = cfg
        self.metrics = metrics
        self.rng = rng or random.Random()
        self._queue = dict((m, 0) for m in cfg["models"])
        self._lock = threading.Lock()
        self.started = time.time()

    def slow_phase(self, now=None):
        sp = self.cfg["slow_phase"]
        if not sp["period_seconds"] or not sp["duration_seconds"]:
            return False
        return ((now or time.time()) - self.started) % sp["period_seconds"] < sp["duration_seconds"]

    def _latency(self, median):
        # log-normal around the median; the slow phase stretches it past the p99 thresholds
        factor = self.cfg["slow_phase"]["latency_factor"] if self.slow_phase() else 1.0
        return min(8.0, median * factor * math.exp(self.rng.gauss(0.0, 0.45)))

    def _fails(self):
        ratio = self.cfg["slow_phase"]["error_ratio"] if self.slow_phase() else self.cfg["error_ratio"]
        return self.rng.random() < ratio

    def _queued(self, model, delta):
        with self._lock:
            self._queue[model] = max(0, self._queue[model] + delta)
            self.metrics.set_queue_depth(model, self._queue[model])

    def _mcp(self, server=None):
        servers = self.cfg["mcp_servers"]
        name = server or self.rng.choice(sorted(servers))
        spec = servers[name]
        op = self.rng.choice(spec["operations"])
        try:
            with self.metrics.mcp_call(name, op):
                time.sleep(self._latency(spec.get("latency_seconds", 0.1)) / 2)
                if self.rng.random() < spec.get("error_ratio", 0.0) * (2 if self.slow_phase() else 1):
                    raise RuntimeError("%s.%s failed" % (name, op))
        except RuntimeError:
            return False
        return True

    def completion(self, model):
        """One completion: queue, batch, cache, tools, tokens. Returns (status, body)."""
        self._queued(model, +1)
        started = time.perf_counter()
        try:
            self.metrics.observe_batch(model, self.rng.choice((1, 2, 4, 4, 8, 8, 16, 32)))
            hit = self.rng.random() < self.cfg["cache_hit_ratio"]
            (self.metrics.cache_hit if hit else self.metrics.cache_miss)("kv")
            (self.metrics.cache_hit if self.rng.random() < 0.5 else self.metrics.cache_miss)("prompt")
            if self.rng.random() < 0.35:
                self._mcp()
            time.sleep(self._latency(0.25 if hit else 0.45))
            if self._fails():
                self.metrics.inference(model, duration_seconds=time.perf_counter() - started, status="error")
                return 503, {"error": "model overloaded"}
            prompt = int(self.rng.lognormvariate(6.0, 0.7))
            completion = int(self.rng.lognormvariate(4.8, 0.6))
            self.metrics.inference(model, prompt_tokens=prompt, completion_tokens=completion,
                                   duration_seconds=time.perf_counter() - started)
            return 200, {"model": model, "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
        finally:
            self._queued(model, -1)

    def embedding(self, model):
        time.sleep(self._latency(0.04))
        if self._fails():
            return 500, {"error": "internal error"}
        self.metrics.inference(model, prompt_tokens=int(self.rng.lognormvariate(5.0, 0.5)),
                               duration_seconds=0.04)
        return 200, {"model": model, "dimensions": 1024}

    def tool(self, server):
        ok = self._mcp(server)
        return (200, {"server": server}) if ok else (502, {"error": "tool call failed"})


class SimulatedGPUCollector(object):
    """dcgm-exporter-shaped series for `count` simulated GPUs, produced at scrape time.

    Utilization follows the workload's in-flight load and a slow sine; memory, temperature,
    power and clocks follow utilization. Values stay inside what an idle-to-busy H100 shows.
    """

    FIELDS = (
        ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %)."),
        ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB)."),
        ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB)."),
        ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C)."),
        ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W)."),
        ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz)."),
    )
    FB_TOTAL_MIB = 81559

    def __init__(self, count, hostname, clock=time.time):
        self.count = count
        self.hostname = hostname
        self.clock = clock

    def _values(self, index):
        t = self.clock()
        util = 55 + 30 * math.sin(t / 300.0 + index * 1.7) + random.uniform(-5, 5)
        util = max(0.0, min(100.0, util))
        used = int(self.FB_TOTAL_MIB * (0.25 + 0.6 * util / 100.0))
        return {
            "DCGM_FI_DEV_GPU_UTIL": round(util),
            "DCGM_FI_DEV_FB_USED": used,
            "DCGM_FI_DEV_FB_FREE": self.FB_TOTAL_MIB - used,
            "DCGM_FI_DEV_GPU_TEMP": round(34 + 0.4 * util),
            "DCGM_FI_DEV_POWER_USAGE": round(70 + 6.3 * util, 3),
            "DCGM_FI_DEV_SM_CLOCK": 1980 if util > 5 else 345,
        }

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        labels = ["gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname"]
        families = {name: GaugeMetricFamily(name, help_text, labels=labels) for name, help_text in self.FIELDS}
        for index in range(self.count):
            values = self._values(index)
            label_values = [str(index), "GPU-simulated-%d" % index, "00000000:%02X:00.0" % (0x10 + index),
                            "nvidia%d" % index, SIMULATED_MODEL, self.hostname]
            for name, family in families.items():
                family.add_metric(label_values, values[name])
        return list(families.values())


def make_app(workload, registry=REGISTRY):
    metrics_app = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
        model = query.get("model", workload.cfg["models"][0])
        if path == "/health":
            status, body = 200, {"status": "ok"}
        elif path == "/v1/completions" and model in workload.cfg["models"]:
            status, body = workload.completion(model)
        elif path == "/v1/embeddings" and model in workload.cfg["models"]:
            status, body = workload.embedding(model)
        elif path == "/v1/tools" and query.get("server") in workload.cfg["mcp_servers"]:
            status, body = workload.tool(query["server"])
        else:
            status, body = 404, {"error": "not found"}
        reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway",
                  503: "Service Unavailable"}[status]
        payload = json.dumps(body).encode()
        start_response("%d %s" % (status, reason), [("Content-Type", "application/json"),
                                                    ("Content-Length", str(len(payload)))])
        return [payload]

    return WSGIMiddleware(app, metrics=workload.metrics, skip_paths=("/metrics", "/health"))


class Generator(object):
    """Calls the service over loopback at requests_per_second with `concurrency` workers."""

    def __init__(self, cfg, base_url, rng=None):
        self.cfg = cfg
        self.base_url = base_url
        self.rng = rng or random.Random()
        self.stop = threading.Event()
        self.tokens = threading.Semaphore(0)

    def _pick(self):
        r = self.rng.random()
        model = self.rng.choice(self.cfg["models"])
        if r < 0.7:
            return "/v1/completions?model=%s" % model
        if r < 0.85:
            return "/v1/embeddings?model=%s" % model
        if r < 0.98:
            return "/v1/tools?server=%s" % self.rng.choice(sorted(self.cfg["mcp_servers"]))
        return "/v1/unknown"

    def _worker(self):
        while not self.stop.is_set():
            if not self.tokens.acquire(timeout=0.5):
                continue
            try:
                with urllib.request.urlopen(self.base_url + self._pick(), timeout=15) as resp:
                    resp.read()
            except urllib.error.HTTPError as exc:
                exc.read()
            except (OSError, urllib.error.URLError) as exc:
                log.debug("request failed: %s", exc)

    def _pacer(self):
        interval = 1.0 / self.cfg["requests_per_second"]
        while not self.stop.wait(self.rng.expovariate(1.0 / interval)):
            self.tokens.release()

    def start(self):
        for i in range(int(self.cfg["concurrency"])):
            threading.Thread(target=self._worker, name="client-%d" % i, daemon=True).start()
        threading.Thread(target=self._pacer, name="pacer", daemon=True).start()


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog="aiplatform-demo-workload", description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="FILE")
    parser.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        sys.stderr.write("aiplatform-demo-workload: configuration error: %s\n" % exc)
        return 2
    if args.check_config:
        sys.stdout.write("aiplatform-demo-workload: configuration OK\n")
        return 0
    addr, _, port = cfg["listen"].rpartition(":")
    workload = Workload(cfg, PlatformMetrics.default())
    if cfg["simulated_gpus"]:
        import socket

        REGISTRY.register(SimulatedGPUCollector(cfg["simulated_gpus"], socket.gethostname()))
        log.info("serving %d SIMULATED GPUs in dcgm-exporter's format", cfg["simulated_gpus"])
    httpd = make_server(addr.strip("[]") or "0.0.0.0", int(port), make_app(workload), _Server,
                        handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    generator = Generator(cfg, "http://127.0.0.1:%d" % httpd.server_port)
    generator.start()
    log.info("serving on %s:%d, %.1f requests/s", addr, httpd.server_port, cfg["requests_per_second"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    while not stop.wait(1.0):
        pass
    generator.stop.set()
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
