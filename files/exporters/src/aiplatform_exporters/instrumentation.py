"""Instrumentation for the AI platform's own services, with the dashboards' names.

One ``PlatformMetrics`` per process holds every metric the platform
dashboards and alerts query (names, labels and buckets from the catalog)::

    from aiplatform_exporters.instrumentation import ASGIMiddleware, PlatformMetrics, mcp_call, mcp_operation

    app = ASGIMiddleware(app)                        # http_request_duration_seconds, http_requests_total
    with mcp_call("filesystem", "read_file"):        # mcp_requests_total, mcp_operation_duration_seconds
        ...

    @mcp_operation("search", "query")                # the same as a decorator (sync or async functions)
    async def query(...): ...

    m = PlatformMetrics.default()                    # created once, on prometheus_client.REGISTRY
    m.inference(model="llm-main", prompt_tokens=812, completion_tokens=240, duration_seconds=1.3,
                time_to_first_token_seconds=0.42,      # inference_time_to_first_token_seconds
                inter_token_latencies=[0.031, 0.028])  # inference_inter_token_latency_seconds, one per gap
    m.set_kv_cache_usage("llm-main", 0.63)           # inference_kv_cache_usage_ratio, 0 to 1
    m.cache_hit("kv")

Serve them with prometheus_client's ``make_asgi_app()`` / ``make_wsgi_app()`` or
``start_http_server()``. Pass ``PlatformMetrics(registry=...)`` and
``ASGIMiddleware(app, metrics=...)`` to use a registry of your own (tests).

Latency buckets are dense around the thresholds the dashboards and alerts use
(0.5 s, 1 s, 1.5 s, 3 s; 0.5 s and 2 s for the time to first token) so
P50/P95/P99 are resolvable there; the inter-token latency has buckets of its
own, dense between 5 ms and 200 ms (thresholds 0.05 s and 0.1 s).
"""

import asyncio
import contextlib
import functools
import numbers
import threading
import time

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from aiplatform_exporters import catalog

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 1.75,
                   2.0, 2.5, 3.0, 3.5, 5.0, 7.5, 10.0, 30.0)
INTER_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075, 0.1, 0.125,
                       0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SUCCESS, ERROR = "success", "error"


def _make(cls, name, registry, **kw):
    entry = catalog.spec(name)
    return cls(catalog.family_name(name), entry.help, labelnames=entry.labels, registry=registry, **kw)


class PlatformMetrics(object):
    _default = None
    _default_lock = threading.Lock()

    def __init__(self, registry=REGISTRY):
        self.registry = registry
        self.http_request_duration = _make(Histogram, "http_request_duration_seconds", registry,
                                           buckets=LATENCY_BUCKETS)
        self.http_requests = _make(Counter, "http_requests_total", registry)
        self.http_in_progress = _make(Gauge, "http_requests_in_progress", registry)
        self.inference_requests = _make(Counter, "inference_requests_total", registry)
        self.inference_duration = _make(Histogram, "inference_request_duration_seconds", registry,
                                        buckets=LATENCY_BUCKETS)
        self.inference_tokens = _make(Counter, "inference_tokens_total", registry)
        self.inference_queue_depth = _make(Gauge, "inference_queue_depth", registry)
        self.inference_batch_size = _make(Histogram, "inference_batch_size", registry, buckets=BATCH_BUCKETS)
        self.inference_ttft = _make(Histogram, "inference_time_to_first_token_seconds", registry,
                                    buckets=LATENCY_BUCKETS)
        self.inference_inter_token = _make(Histogram, "inference_inter_token_latency_seconds", registry,
                                           buckets=INTER_TOKEN_BUCKETS)
        self.inference_kv_cache_usage = _make(Gauge, "inference_kv_cache_usage_ratio", registry)
        self.cache_hits = _make(Counter, "cache_hits_total", registry)
        self.cache_misses = _make(Counter, "cache_misses_total", registry)
        self.mcp_requests = _make(Counter, "mcp_requests_total", registry)
        self.mcp_duration = _make(Histogram, "mcp_operation_duration_seconds", registry, buckets=LATENCY_BUCKETS)

    @classmethod
    def default(cls):
        """The process-wide instance on prometheus_client.REGISTRY, created on first use."""
        with cls._default_lock:
            if cls._default is None:
                cls._default = cls(REGISTRY)
            return cls._default

    # ------------------------------------------------------------------ HTTP
    def observe_http(self, method, handler, status, duration_seconds):
        self.http_request_duration.labels(method=method, handler=handler).observe(duration_seconds)
        self.http_requests.labels(method=method, handler=handler, status=str(status)).inc()

    # ------------------------------------------------------------------ inference
    def inference(self, model, prompt_tokens=0, completion_tokens=0, duration_seconds=None, status=SUCCESS,
                  time_to_first_token_seconds=None, inter_token_latencies=()):
        """One finished inference request.

        ``time_to_first_token_seconds``: from the request's arrival to its first generated token
        (observed once); ``inter_token_latencies``: the gaps between consecutive generated tokens, in
        seconds, each observed (a streaming server passes every gap, as vLLM does).
        """
        self.inference_requests.labels(model=model, status=status).inc()
        if prompt_tokens:
            self.inference_tokens.labels(model=model, type="prompt").inc(prompt_tokens)
        if completion_tokens:
            self.inference_tokens.labels(model=model, type="completion").inc(completion_tokens)
        if duration_seconds is not None:
            self.inference_duration.labels(model=model).observe(duration_seconds)
        if time_to_first_token_seconds is not None:
            self.inference_ttft.labels(model=model).observe(time_to_first_token_seconds)
        gaps = None
        for gap in inter_token_latencies:
            if gaps is None:
                gaps = self.inference_inter_token.labels(model=model)
            gaps.observe(gap)

    def set_queue_depth(self, model, depth):
        self.inference_queue_depth.labels(model=model).set(depth)

    def observe_batch(self, model, size):
        self.inference_batch_size.labels(model=model).observe(size)

    def set_kv_cache_usage(self, model, ratio):
        """Share of the model server's KV-cache in use, 0 to 1 (ValueError outside)."""
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 <= ratio <= 1.0:
            raise ValueError("ratio: the KV-cache usage must be a number in [0, 1], got %r" % (ratio,))
        self.inference_kv_cache_usage.labels(model=model).set(ratio)

    # ------------------------------------------------------------------ cache
    def cache_hit(self, cache="default", n=1):
        self.cache_hits.labels(cache=cache).inc(n)

    def cache_miss(self, cache="default", n=1):
        self.cache_misses.labels(cache=cache).inc(n)

    # ------------------------------------------------------------------ MCP
    def observe_mcp(self, server, operation, status, duration_seconds):
        self.mcp_requests.labels(server=server, operation=operation, status=status).inc()
        self.mcp_duration.labels(server=server, operation=operation).observe(duration_seconds)

    @contextlib.contextmanager
    def mcp_call(self, server, operation):
        """Times the block; status "error" when it raises (the exception propagates)."""
        start = time.perf_counter()
        status = ERROR
        try:
            yield
            status = SUCCESS
        finally:
            self.observe_mcp(server, operation, status, time.perf_counter() - start)

    def mcp_operation(self, server, operation=None):
        """Decorator for sync and async functions; ``operation`` defaults to the function's name."""

        def decorate(fn):
            op = operation or fn.__name__
            if asyncio.iscoroutinefunction(fn):
                @functools.wraps(fn)
                async def async_wrapper(*args, **kwargs):
                    with self.mcp_call(server, op):
                        return await fn(*args, **kwargs)

                return async_wrapper

            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                with self.mcp_call(server, op):
                    return fn(*args, **kwargs)

            return wrapper

        return decorate


def mcp_call(server, operation, metrics=None):
    """Context manager on the default metrics (or ``metrics``)."""
    return (metrics or PlatformMetrics.default()).mcp_call(server, operation)


def mcp_operation(server, operation=None, metrics=None):
    """Decorator on the default metrics (or ``metrics``), resolved at decoration time."""
    return (metrics or PlatformMetrics.default()).mcp_operation(server, operation)


def _asgi_handler(scope, status):
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    if path:
        return path
    if status == 404:
        return "none"  # unmatched paths must not create one series per URL
    return scope.get("path", "")


class ASGIMiddleware(object):
    """Records every HTTP request of an ASGI app (FastAPI, Starlette, ...).

    ``handler_label(scope, status)`` names the handler; the default uses the
    route template the framework put in ``scope["route"]`` (Starlette/FastAPI),
    else the path, and "none" for 404s without a route. ``skip_paths`` are not
    recorded (the /metrics endpoint by default).
    """

    def __init__(self, app, metrics=None, handler_label=None, skip_paths=("/metrics",)):
        self.app = app
        self.metrics = metrics
        self.handler_label = handler_label or _asgi_handler
        self.skip_paths = frozenset(skip_paths)

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("path") in self.skip_paths:
            await self.app(scope, receive, send)
            return
        metrics = self.metrics or PlatformMetrics.default()
        method = scope.get("method", "GET")
        state = {"status": 500}
        start = time.perf_counter()

        async def send_wrapper(message):
            if message.get("type") == "http.response.start":
                state["status"] = int(message.get("status", 500))
            await send(message)

        in_progress = metrics.http_in_progress.labels(method=method)
        in_progress.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            in_progress.dec()
            status = state["status"]
            metrics.observe_http(method, self.handler_label(scope, status), status, time.perf_counter() - start)


class WSGIMiddleware(object):
    """Records every HTTP request of a WSGI app (Flask, Django, ...).

    The duration runs until the response body has been fully iterated.
    ``handler_label(environ, status)`` names the handler (default: PATH_INFO,
    "none" for 404s); pass one that returns the route template when paths
    carry identifiers.
    """

    def __init__(self, app, metrics=None, handler_label=None, skip_paths=("/metrics",)):
        self.app = app
        self.metrics = metrics
        self.handler_label = handler_label or (
            lambda environ, status: "none" if status == 404 else environ.get("PATH_INFO", "") or "/")
        self.skip_paths = frozenset(skip_paths)

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") in self.skip_paths:
            return self.app(environ, start_response)
        metrics = self.metrics or PlatformMetrics.default()
        method = environ.get("REQUEST_METHOD", "GET")
        state = {"status": 500}
        start = time.perf_counter()

        def start_response_wrapper(status, headers, exc_info=None):
            try:
                state["status"] = int(str(status).split(" ", 1)[0])
            except ValueError:
                state["status"] = 500
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        in_progress = metrics.http_in_progress.labels(method=method)
        in_progress.inc()
        done = [False]

        def finish():
            if not done[0]:
                done[0] = True
                in_progress.dec()
                status = state["status"]
                metrics.observe_http(method, self.handler_label(environ, status), status,
                                     time.perf_counter() - start)

        try:
            body = self.app(environ, start_response_wrapper)
        except BaseException:
            finish()
            raise
        return _ClosingIterable(body, finish)


class _ClosingIterable(object):
    def __init__(self, body, on_close):
        self._body = body
        self._on_close = on_close

    def __iter__(self):
        try:
            for chunk in self._body:
                yield chunk
        except BaseException:
            self._close()
            raise

    def close(self):
        self._close()

    def _close(self):
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()
