"""Platform instrumentation: names, labels, buckets, ASGI/WSGI middleware, MCP helpers."""

import asyncio
import io
import time
from wsgiref.util import setup_testing_defaults

import pytest
from prometheus_client import CollectorRegistry

from aiplatform_exporters import catalog
from aiplatform_exporters.instrumentation import (INTER_TOKEN_BUCKETS, LATENCY_BUCKETS, ASGIMiddleware,
                                                  PlatformMetrics, WSGIMiddleware, mcp_call, mcp_operation)


@pytest.fixture
def metrics():
    return PlatformMetrics(CollectorRegistry())


def g(m, name, labels=None):
    return m.registry.get_sample_value(name, labels or {})


def test_buckets_resolve_the_thresholds():
    for threshold in (0.5, 1.0, 1.5, 3.0):
        assert threshold in LATENCY_BUCKETS
        i = LATENCY_BUCKETS.index(threshold)
        # neighbours within 25 % on both sides, so P50/P95/P99 near the threshold interpolate closely
        assert LATENCY_BUCKETS[i - 1] >= 0.75 * threshold and LATENCY_BUCKETS[i + 1] <= 1.25 * threshold + 0.25


def test_token_latency_buckets_resolve_the_thresholds():
    # time to first token: the dashboards' 0.5 s and 2 s, on the request latency buckets
    for threshold in (0.5, 2.0):
        i = LATENCY_BUCKETS.index(threshold)
        assert LATENCY_BUCKETS[i - 1] >= 0.75 * threshold and LATENCY_BUCKETS[i + 1] <= 1.25 * threshold + 0.25
    # inter-token latency: dense from 5 ms to 200 ms, around 0.05 s and 0.1 s within 25 %
    assert list(INTER_TOKEN_BUCKETS) == sorted(set(INTER_TOKEN_BUCKETS))
    for threshold in (0.05, 0.1):
        i = INTER_TOKEN_BUCKETS.index(threshold)
        lower, upper = INTER_TOKEN_BUCKETS[i - 1], INTER_TOKEN_BUCKETS[i + 1]
        assert round(lower / threshold, 9) >= 0.75 and round(upper / threshold, 9) <= 1.25
    dense = [b for b in INTER_TOKEN_BUCKETS if 0.005 <= b <= 0.2]
    assert len(dense) >= 12 and all(hi / lo <= 2.0 for lo, hi in zip(dense, dense[1:]))


def test_every_family_is_in_the_catalog(metrics):
    metrics.observe_http("GET", "/x", 200, 0.1)
    metrics.inference("m", 1, 1, 0.2, time_to_first_token_seconds=0.05, inter_token_latencies=[0.02])
    metrics.set_kv_cache_usage("m", 0.5)
    metrics.set_queue_depth("m", 3)
    metrics.observe_batch("m", 8)
    metrics.cache_hit()
    metrics.cache_miss()
    metrics.observe_mcp("s", "o", "success", 0.1)
    for fam in metrics.registry.collect():
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        entry = catalog.spec(name)
        assert entry.type == fam.type
        for s in fam.samples:
            assert catalog.is_known(s.name), s.name
            assert set(s.labels) - {"le"} == set(entry.labels), (s.name, s.labels)


def test_every_instrumentation_entry_is_registered(metrics):
    names = set()
    for fam in metrics.registry.collect():
        names.add(fam.name + "_total" if fam.type == "counter" else fam.name)
    expected = set(e.name for e in catalog.CATALOG.values()
                   if catalog.INSTRUMENTATION in [s.strip() for s in e.source.split(",")])
    assert expected == names


def _asgi_app(status=200, delay=0.0, raise_exc=False):
    async def app(scope, receive, send):
        if delay:
            await asyncio.sleep(delay)
        if raise_exc:
            raise RuntimeError("boom")
        scope["route"] = type("Route", (), {"path": "/items/{item_id}"})()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


def _asgi_call(app, path="/items/42", method="GET"):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "http", "method": method, "path": path}, receive, send))
    return sent


def test_asgi_middleware(metrics):
    _asgi_call(ASGIMiddleware(_asgi_app(200, delay=0.02), metrics=metrics))
    _asgi_call(ASGIMiddleware(_asgi_app(503), metrics=metrics), method="POST")
    with pytest.raises(RuntimeError):
        _asgi_call(ASGIMiddleware(_asgi_app(raise_exc=True), metrics=metrics), path="/crash")
    _asgi_call(ASGIMiddleware(_asgi_app(), metrics=metrics), path="/metrics")  # not recorded
    route = "/items/{item_id}"
    assert g(metrics, "http_requests_total", {"method": "GET", "handler": route, "status": "200"}) == 1
    assert g(metrics, "http_requests_total", {"method": "POST", "handler": route, "status": "503"}) == 1
    assert g(metrics, "http_requests_total", {"method": "GET", "handler": "/crash", "status": "500"}) == 1
    assert g(metrics, "http_request_duration_seconds_count", {"method": "GET", "handler": route}) == 1
    assert g(metrics, "http_request_duration_seconds_sum", {"method": "GET", "handler": route}) >= 0.02
    assert g(metrics, "http_requests_in_progress", {"method": "GET"}) == 0


def test_wsgi_middleware(metrics):
    def app(environ, start_response):
        status = "404 Not Found" if environ["PATH_INFO"] == "/missing" else "200 OK"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"a", b"b"]

    wrapped = WSGIMiddleware(app, metrics=metrics)
    for path in ("/health", "/missing", "/metrics"):
        env = {"PATH_INFO": path}
        setup_testing_defaults(env)
        env["wsgi.input"] = io.BytesIO()
        body = wrapped(env, lambda status, headers, exc_info=None: None)
        assert b"".join(body) == b"ab"
        if hasattr(body, "close"):  # the server closes the iterable when the response is sent
            body.close()
    assert g(metrics, "http_requests_total", {"method": "GET", "handler": "/health", "status": "200"}) == 1
    assert g(metrics, "http_requests_total", {"method": "GET", "handler": "none", "status": "404"}) == 1
    assert g(metrics, "http_requests_total", {"method": "GET", "handler": "/metrics", "status": "200"}) is None


def test_mcp_context_manager_and_decorators(metrics):
    with mcp_call("filesystem", "read_file", metrics=metrics):
        time.sleep(0.01)
    with pytest.raises(ValueError):
        with mcp_call("filesystem", "read_file", metrics=metrics):
            raise ValueError("no such file")

    @mcp_operation("search", metrics=metrics)
    def query(q):
        return q.upper()

    @mcp_operation("search", "embed", metrics=metrics)
    async def embed(q):
        await asyncio.sleep(0)
        raise KeyError(q)

    assert query("x") == "X" and query.__name__ == "query"
    with pytest.raises(KeyError):
        asyncio.run(embed("y"))
    ok = {"server": "filesystem", "operation": "read_file", "status": "success"}
    assert g(metrics, "mcp_requests_total", ok) == 1
    assert g(metrics, "mcp_requests_total", dict(ok, status="error")) == 1
    assert g(metrics, "mcp_operation_duration_seconds_count", {"server": "filesystem", "operation": "read_file"}) == 2
    assert g(metrics, "mcp_operation_duration_seconds_sum",
             {"server": "filesystem", "operation": "read_file"}) >= 0.01
    assert g(metrics, "mcp_requests_total", {"server": "search", "operation": "query", "status": "success"}) == 1
    assert g(metrics, "mcp_requests_total", {"server": "search", "operation": "embed", "status": "error"}) == 1


def test_inference_cache_queue_batch(metrics):
    metrics.inference("llm", prompt_tokens=800, completion_tokens=200, duration_seconds=1.2)
    metrics.inference("llm", prompt_tokens=10, status="error")
    metrics.cache_hit("kv", 3)
    metrics.cache_miss("kv")
    metrics.set_queue_depth("llm", 7)
    metrics.observe_batch("llm", 16)
    assert g(metrics, "inference_requests_total", {"model": "llm", "status": "success"}) == 1
    assert g(metrics, "inference_requests_total", {"model": "llm", "status": "error"}) == 1
    assert g(metrics, "inference_tokens_total", {"model": "llm", "type": "prompt"}) == 810
    assert g(metrics, "inference_tokens_total", {"model": "llm", "type": "completion"}) == 200
    assert g(metrics, "cache_hits_total", {"cache": "kv"}) == 3 and g(metrics, "cache_misses_total", {"cache": "kv"}) == 1
    assert g(metrics, "inference_queue_depth", {"model": "llm"}) == 7
    assert g(metrics, "inference_batch_size_bucket", {"model": "llm", "le": "16.0"}) == 1
    assert g(metrics, "inference_batch_size_bucket", {"model": "llm", "le": "8.0"}) == 0


def test_time_to_first_token_and_inter_token_latency(metrics):
    metrics.inference("llm", prompt_tokens=500, completion_tokens=4, duration_seconds=0.9,
                      time_to_first_token_seconds=0.45, inter_token_latencies=[0.02, 0.03, 0.07])
    metrics.inference("llm", completion_tokens=3, time_to_first_token_seconds=2.2,
                      inter_token_latencies=(gap for gap in (0.12, 0.04)))  # any iterable
    metrics.inference("llm", status="error", duration_seconds=0.1)  # no token: neither histogram
    ttft = {"model": "llm"}
    assert g(metrics, "inference_time_to_first_token_seconds_count", ttft) == 2
    assert g(metrics, "inference_time_to_first_token_seconds_sum", ttft) == pytest.approx(2.65)
    assert g(metrics, "inference_time_to_first_token_seconds_bucket", dict(ttft, le="0.5")) == 1
    assert g(metrics, "inference_time_to_first_token_seconds_bucket", dict(ttft, le="2.0")) == 1
    assert g(metrics, "inference_time_to_first_token_seconds_bucket", dict(ttft, le="2.5")) == 2
    assert g(metrics, "inference_inter_token_latency_seconds_count", ttft) == 5  # every gap observed
    assert g(metrics, "inference_inter_token_latency_seconds_sum", ttft) == pytest.approx(0.28)
    assert g(metrics, "inference_inter_token_latency_seconds_bucket", dict(ttft, le="0.05")) == 3
    assert g(metrics, "inference_inter_token_latency_seconds_bucket", dict(ttft, le="0.1")) == 4
    assert g(metrics, "inference_inter_token_latency_seconds_bucket", dict(ttft, le="+Inf")) == 5
    # the buckets are the families' own: the inter-token one resolves milliseconds
    les = set(s.labels["le"] for fam in metrics.registry.collect() for s in fam.samples
              if s.name == "inference_inter_token_latency_seconds_bucket")
    assert les == set([str(float(b)) for b in INTER_TOKEN_BUCKETS] + ["+Inf"])
    metrics.inference("other", completion_tokens=1, duration_seconds=0.2)
    assert g(metrics, "inference_time_to_first_token_seconds_count", {"model": "other"}) is None
    assert g(metrics, "inference_inter_token_latency_seconds_count", {"model": "other"}) is None


def test_kv_cache_usage(metrics):
    metrics.set_kv_cache_usage("llm", 0.42)
    metrics.set_kv_cache_usage("small", 1)
    metrics.set_kv_cache_usage("idle", 0.0)
    assert g(metrics, "inference_kv_cache_usage_ratio", {"model": "llm"}) == 0.42
    assert g(metrics, "inference_kv_cache_usage_ratio", {"model": "small"}) == 1.0
    assert g(metrics, "inference_kv_cache_usage_ratio", {"model": "idle"}) == 0.0
    for bad in (1.01, -0.1, float("nan"), 42, "0.5", None, True):
        with pytest.raises(ValueError, match="ratio"):
            metrics.set_kv_cache_usage("llm", bad)
    assert g(metrics, "inference_kv_cache_usage_ratio", {"model": "llm"}) == 0.42
