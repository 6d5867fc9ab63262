"""aiplatform-demo-workload: a small inference service that loads itself, for labs and demos.

A WSGI app wrapped in aiplatform_exporters.instrumentation.WSGIMiddleware serves
/v1/completions, /v1/embeddings and /v1/tools; a generator thread calls those
endpoints over HTTP on loopback at a steady rate, so every metric is produced by
the real instrumentation path: request latency around the dashboard thresholds
with a slow phase each cycle, some 5xx, prompt and completion tokens, time to
first token and inter-token latency, KV-cache usage following the load, cache
hits and misses, queue depth and batch size, and calls to several MCP servers
with their own latencies and errors. /metrics serves prometheus_client's
default registry.

`metrics_format` picks the names the inference server publishes:

* `platform` (default): the platform's own instrumentation (PlatformMetrics): http_*,
  inference_* (time to first token, inter-token latency and KV-cache usage included),
  cache_* and mcp_*.
* `vllm`: the inference-server metrics as vLLM V1 (0.11) publishes them, INSTEAD of the
  platform's inference_* and cache_* names: vllm:num_requests_running/_waiting,
  vllm:kv_cache_usage_perc, vllm:prompt_tokens_total, vllm:generation_tokens_total,
  vllm:request_success_total{finished_reason}, vllm:prefix_cache_queries_total/_hits_total
  (in tokens), vllm:num_preemptions_total and the histograms vllm:time_to_first_token_seconds,
  vllm:inter_token_latency_seconds and vllm:e2e_request_latency_seconds, with vLLM's help texts
  and buckets, every series labelled model_name=<model> and engine="0". HTTP requests keep
  http_requests_total and http_request_duration_seconds as vLLM's server publishes them
  (prometheus-fastapi-instrumentator: status grouped as 2xx, 4xx, 5xx); tool calls keep mcp_*
  (they belong to the platform's gateway). None of the platform's inference_*/cache_* names is
  exposed, so dashboards can be proven to work from vLLM's names alone.

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
from collections import namedtuple
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import yaml
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

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
    "metrics_format": "platform",
}
METRICS_FORMATS = ("platform", "vllm")
SIMULATED_MODEL = "Simulated GPU (demo workload)"
# Completions stop at MAX_TOKENS (finished_reason "length", else "stop"); the prefix cache holds
# whole blocks of BLOCK_TOKENS tokens (vLLM's default block size).
MAX_TOKENS = 256
BLOCK_TOKENS = 16
# Gaps between generated tokens reported per completion, and their median outside the slow phase.
INTER_TOKEN_SAMPLES = 8
INTER_TOKEN_SECONDS = 0.028


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
    if cfg["metrics_format"] not in METRICS_FORMATS:
        raise ConfigError("metrics_format: must be one of %s, got %r"
                          % (", ".join(METRICS_FORMATS), cfg["metrics_format"]))
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


# One finished completion, as the workload hands it to a publisher.
Completion = namedtuple("Completion", "model prompt_tokens cached_tokens completion_tokens finished_reason "
                                      "time_to_first_token_seconds inter_token_seconds duration_seconds")


class Workload(object):
    """The service's behaviour: what one request costs and how it may fail.

    What happens is told to ``publisher`` (PlatformPublisher or VllmPublisher), which decides
    the names it is published under.
    """

    def __init__(self, cfg, publisher, rng=None):
        self.cfg = cfg
        self.publisher = publisher
        self.rng = rng or random.Random()
        self._waiting = dict((m, 0) for m in cfg["models"])
        self._running = dict((m, 0) for m in cfg["models"])
        self._lock = threading.Lock()
        self.started = time.time()
        for model in cfg["models"]:
            self._scheduled(model)

    def slow_phase(self, now=None):
        sp = self.cfg["slow_phase"]
        if not sp["period_seconds"] or not sp["duration_seconds"]:
            return False
        return ((now or time.time()) - self.started) % sp["period_seconds"] < sp["duration_seconds"]

    def _stretch(self):
        return self.cfg["slow_phase"]["latency_factor"] if self.slow_phase() else 1.0

    def _latency(self, median):
        # log-normal around the median; the slow phase stretches it past the p99 thresholds
        return min(8.0, median * self._stretch() * math.exp(self.rng.gauss(0.0, 0.45)))

    def _fails(self):
        ratio = self.cfg["slow_phase"]["error_ratio"] if self.slow_phase() else self.cfg["error_ratio"]
        return self.rng.random() < ratio

    def _scheduled(self, model, waiting=0, running=0):
        """Moves requests of ``model`` between waiting and running; KV-cache usage follows the load."""
        with self._lock:
            self._waiting[model] = max(0, self._waiting[model] + waiting)
            self._running[model] = max(0, self._running[model] + running)
            load = (self._waiting[model] + self._running[model]) / float(self.cfg["concurrency"])
            self.publisher.scheduler(model, self._waiting[model], self._running[model], min(0.99, 0.3 + 0.6 * load))

    def _mcp(self, server=None):
        servers = self.cfg["mcp_servers"]
        name = server or self.rng.choice(sorted(servers))
        spec = servers[name]
        op = self.rng.choice(spec["operations"])
        try:
            with self.publisher.mcp_call(name, op):
                time.sleep(self._latency(spec.get("latency_seconds", 0.1)) / 2)
                if self.rng.random() < spec.get("error_ratio", 0.0) * (2 if self.slow_phase() else 1):
                    raise RuntimeError("%s.%s failed" % (name, op))
        except RuntimeError:
            return False
        return True

    def _inter_token_gaps(self, completion_tokens):
        # around 20-40 ms, stretched by the slow phase like the rest (its P95 then passes 0.05 s)
        stretch = self._stretch()
        return [min(5.0, INTER_TOKEN_SECONDS * stretch * math.exp(self.rng.gauss(0.0, 0.25)))
                for _ in range(min(INTER_TOKEN_SAMPLES, completion_tokens - 1))]

    def completion(self, model):
        """One completion: queue, batch, cache, tools, tokens. Returns (status, body)."""
        self._scheduled(model, waiting=+1)
        state = {"waiting": 1, "running": 0}
        started = time.perf_counter()
        try:
            kv_hit = self.rng.random() < self.cfg["cache_hit_ratio"]
            self.publisher.admitted(model, batch_size=self.rng.choice((1, 2, 4, 4, 8, 8, 16, 32)), kv_hit=kv_hit,
                                    prompt_hit=self.rng.random() < 0.5)
            if self.rng.random() < 0.35:
                self._mcp()
            latency = self._latency(0.25 if kv_hit else 0.45)
            queued = latency * self.rng.uniform(0.02, 0.12)  # waiting for a place in the running batch
            time.sleep(queued)
            self._scheduled(model, waiting=-1, running=+1)
            state.update(waiting=0, running=1)
            time.sleep(latency - queued)
            duration = time.perf_counter() - started
            if self._fails():
                self.publisher.failed(model, duration_seconds=duration)
                return 503, {"error": "model overloaded"}
            prompt = max(1, int(self.rng.lognormvariate(6.0, 0.7)))
            wanted = max(1, int(self.rng.lognormvariate(4.8, 0.6)))
            completion = min(wanted, MAX_TOKENS)
            self.publisher.finished(Completion(
                model=model, prompt_tokens=prompt,
                # a hit finds the prompt's whole blocks cached; the last token is always computed
                cached_tokens=(prompt - 1) // BLOCK_TOKENS * BLOCK_TOKENS if kv_hit else 0,
                completion_tokens=completion, finished_reason="length" if wanted >= MAX_TOKENS else "stop",
                # queueing and prefill: 20-40 % of the request, stretched by the slow phase with it
                time_to_first_token_seconds=duration * self.rng.uniform(0.2, 0.4),
                inter_token_seconds=self._inter_token_gaps(completion), duration_seconds=duration))
            return 200, {"model": model, "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
        finally:
            self._scheduled(model, waiting=-state["waiting"], running=-state["running"])

    def embedding(self, model):
        time.sleep(self._latency(0.04))
        if self._fails():
            return 500, {"error": "internal error"}
        self.publisher.embedded(model, prompt_tokens=int(self.rng.lognormvariate(5.0, 0.5)), duration_seconds=0.04)
        return 200, {"model": model, "dimensions": 1024}

    def tool(self, server):
        ok = self._mcp(server)
        return (200, {"server": server}) if ok else (502, {"error": "tool call failed"})


class PlatformPublisher(object):
    """metrics_format platform: the platform's own instrumentation (PlatformMetrics) on ``registry``."""

    def __init__(self, registry=REGISTRY):
        self.metrics = PlatformMetrics(registry)
        self.http = self.metrics  # what WSGIMiddleware records the HTTP requests on

    def mcp_call(self, server, operation):
        return self.metrics.mcp_call(server, operation)

    def scheduler(self, model, waiting, running, kv_cache_usage):
        self.metrics.set_queue_depth(model, waiting + running)  # requests in the model server
        self.metrics.set_kv_cache_usage(model, kv_cache_usage)

    def admitted(self, model, batch_size, kv_hit, prompt_hit):
        self.metrics.observe_batch(model, batch_size)
        (self.metrics.cache_hit if kv_hit else self.metrics.cache_miss)("kv")
        (self.metrics.cache_hit if prompt_hit else self.metrics.cache_miss)("prompt")

    def finished(self, c):
        self.metrics.inference(c.model, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                               duration_seconds=c.duration_seconds,
                               time_to_first_token_seconds=c.time_to_first_token_seconds,
                               inter_token_latencies=c.inter_token_seconds)

    def failed(self, model, duration_seconds):
        self.metrics.inference(model, duration_seconds=duration_seconds, status="error")

    def embedded(self, model, prompt_tokens, duration_seconds):
        self.metrics.inference(model, prompt_tokens=prompt_tokens, duration_seconds=duration_seconds)


# vLLM V1's bucket lists (vllm/v1/metrics/loggers.py, 0.11).
VLLM_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                     20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
VLLM_INTER_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                            20.0, 40.0, 80.0)
VLLM_E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                    480.0, 960.0, 1920.0, 7680.0)
VLLM_FINISH_REASONS = ("stop", "length", "abort")
# The HTTP and tool-call families published in vllm mode, from the platform's instrumentation.
VLLM_MODE_PLATFORM_FAMILIES = ("http_requests_total", "http_request_duration_seconds", "mcp_requests_total",
                               "mcp_operation_duration_seconds")


class _Families(object):
    """A collector exposing only the named families of another registry."""

    def __init__(self, registry, names):
        self._registry = registry
        self._names = frozenset(names)

    def collect(self):
        for family in self._registry.collect():
            if (family.name + "_total" if family.type == "counter" else family.name) in self._names:
                yield family


class _StatusClassHTTP(object):
    """HTTP recording with the status grouped as prometheus-fastapi-instrumentator does: 2xx, 4xx, 5xx."""

    def __init__(self, metrics):
        self._metrics = metrics
        self.http_in_progress = metrics.http_in_progress  # kept, not exposed (the instrumentator has none)

    def observe_http(self, method, handler, status, duration_seconds):
        self._metrics.observe_http(method, handler, "%dxx" % (int(status) // 100), duration_seconds)


class VllmPublisher(object):
    """metrics_format vllm: the inference server's metrics as vLLM V1 (0.11) publishes them on ``registry``.

    Every series is labelled model_name=<model> and engine=<engine>, created for every model at
    start like vLLM does. The platform's instrumentation lives on a registry of its own, of which
    only the HTTP and MCP families are exposed, so no inference_*/cache_* name is published.
    """

    def __init__(self, models, registry=REGISTRY, engine="0"):
        self._platform = PlatformMetrics(CollectorRegistry())
        registry.register(_Families(self._platform.registry, VLLM_MODE_PLATFORM_FAMILIES))
        self.http = _StatusClassHTTP(self._platform)
        self.engine = engine
        labels = ["model_name", "engine"]

        def gauge(name, help_text):
            return Gauge(name, help_text, labels, registry=registry)

        def counter(name, help_text, extra=()):
            return Counter(name, help_text, labels + list(extra), registry=registry)

        def histogram(name, help_text, buckets):
            return Histogram(name, help_text, labels, registry=registry, buckets=buckets)

        self.running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
        self.waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.kv_cache_usage = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        self.prefix_cache_queries = counter("vllm:prefix_cache_queries",
                                            "Prefix cache queries, in terms of number of queried tokens.")
        self.prefix_cache_hits = counter("vllm:prefix_cache_hits",
                                         "Prefix cache hits, in terms of number of cached tokens.")
        self.preemptions = counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.")
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.")
        self.request_success = counter("vllm:request_success", "Count of successfully processed requests.",
                                       extra=("finished_reason",))
        self.ttft = histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              VLLM_TTFT_BUCKETS)
        self.inter_token = histogram("vllm:inter_token_latency_seconds",
                                     "Histogram of inter-token latency in seconds.", VLLM_INTER_TOKEN_BUCKETS)
        self.e2e = histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                             VLLM_E2E_BUCKETS)
        for model in models:
            for family in (self.running, self.waiting, self.kv_cache_usage, self.prefix_cache_queries,
                           self.prefix_cache_hits, self.preemptions, self.prompt_tokens, self.generation_tokens,
                           self.ttft, self.inter_token, self.e2e):
                family.labels(model, engine)
            for reason in VLLM_FINISH_REASONS:
                self.request_success.labels(model, engine, reason)

    def mcp_call(self, server, operation):
        return self._platform.mcp_call(server, operation)

    def scheduler(self, model, waiting, running, kv_cache_usage):
        self.waiting.labels(model, self.engine).set(waiting)
        self.running.labels(model, self.engine).set(running)
        self.kv_cache_usage.labels(model, self.engine).set(kv_cache_usage)

    def admitted(self, model, batch_size, kv_hit, prompt_hit):
        pass  # vLLM counts its prefix cache in tokens, when the request is done (finished)

    def finished(self, c):
        engine = self.engine
        self.prompt_tokens.labels(c.model, engine).inc(c.prompt_tokens)
        self.generation_tokens.labels(c.model, engine).inc(c.completion_tokens)
        self.prefix_cache_queries.labels(c.model, engine).inc(c.prompt_tokens)
        self.prefix_cache_hits.labels(c.model, engine).inc(c.cached_tokens)
        self.request_success.labels(c.model, engine, c.finished_reason).inc()
        self.ttft.labels(c.model, engine).observe(c.time_to_first_token_seconds)
        gaps = self.inter_token.labels(c.model, engine)
        for gap in c.inter_token_seconds:
            gaps.observe(gap)
        self.e2e.labels(c.model, engine).observe(c.duration_seconds)

    def failed(self, model, duration_seconds):
        pass  # refused before it ran: only the HTTP 5xx tells

    def embedded(self, model, prompt_tokens, duration_seconds):
        self.prompt_tokens.labels(model, self.engine).inc(prompt_tokens)
        self.request_success.labels(model, self.engine, "stop").inc()
        self.e2e.labels(model, self.engine).observe(duration_seconds)


def make_publisher(cfg, registry=REGISTRY):
    """The publisher of cfg's metrics_format."""
    if cfg["metrics_format"] == "vllm":
        return VllmPublisher(cfg["models"], registry)
    return PlatformPublisher(registry)


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

    return WSGIMiddleware(app, metrics=workload.publisher.http, skip_paths=("/metrics", "/health"))


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
    workload = Workload(cfg, make_publisher(cfg))
    if cfg["simulated_gpus"]:
        import socket

        REGISTRY.register(SimulatedGPUCollector(cfg["simulated_gpus"], socket.gethostname()))
        log.info("serving %d SIMULATED GPUs in dcgm-exporter's format", cfg["simulated_gpus"])
    httpd = make_server(addr.strip("[]") or "0.0.0.0", int(port), make_app(workload), _Server,
                        handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    generator = Generator(cfg, "http://127.0.0.1:%d" % httpd.server_port)
    generator.start()
    log.info("serving on %s:%d, %.1f requests/s, %s metrics", addr, httpd.server_port, cfg["requests_per_second"],
             cfg["metrics_format"])
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
