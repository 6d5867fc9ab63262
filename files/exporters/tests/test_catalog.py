"""The metric catalog, PromQL name extraction and the generated docs/metrics.md."""

import os
import subprocess
import sys

import pytest

from aiplatform_exporters import catalog
from aiplatform_exporters.catalog import is_known, metric_names_in_promql

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


@pytest.mark.parametrize("expr, names", [
    ('histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket{job=~"$job"}'
     '[$__rate_interval])))', {"http_request_duration_seconds_bucket"}),
    ('sum(rate(http_requests_total{status=~"5.."}[5m])) by (job) / sum(rate(http_requests_total[5m])) by (job)',
     {"http_requests_total"}),
    ("sum(cache_hits_total) / (sum(cache_hits_total) + sum(cache_misses_total))",
     {"cache_hits_total", "cache_misses_total"}),
    ('drift_psi > 0.2 and on (model, feature) drift_window_samples >= 500', {"drift_psi", "drift_window_samples"}),
    ("replay_buffer_size / replay_buffer_capacity offset 1h", {"replay_buffer_size", "replay_buffer_capacity"}),
    ('avg_over_time(DCGM_FI_DEV_GPU_UTIL{Hostname=~"${node}", gpu="[[gpu]]"}[1h:5m]) * 1e-2',
     {"DCGM_FI_DEV_GPU_UTIL"}),
    ('label_replace(up{job="node"}, "host", "$1", "instance", "(.*):.*") == bool 0', {"up"}),
    ('{__name__="training_loss", model="m"}', {"training_loss"}),
    ("sum without (instance) (increase(mcp_requests_total[1h])) unless ignoring (status) vector(0)",
     {"mcp_requests_total"}),
    ("topk(5, sum by (server) (rate(mcp_requests_total[5m]))) @ end()", {"mcp_requests_total"}),
    ("job:http_request_duration_seconds:p99 > 1.5", {"job:http_request_duration_seconds:p99"}),
    ("count(count by (gpu) (DCGM_FI_DEV_GPU_TEMP)) - 0x1f + inf", {"DCGM_FI_DEV_GPU_TEMP"}),
    # vLLM's names carry a colon, like recording rules
    ("rate(vllm:prompt_tokens_total[5m])", {"vllm:prompt_tokens_total"}),
    ('histogram_quantile(0.95, sum by (model_name, le) (rate(vllm:time_to_first_token_seconds_bucket'
     '{model_name=~"$model"}[$__rate_interval])))', {"vllm:time_to_first_token_seconds_bucket"}),
    ("sum(rate(vllm:prefix_cache_hits_total[5m])) / sum(rate(vllm:prefix_cache_queries_total[5m]))",
     {"vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"}),
    ('vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_perc unless on (model_name) vllm:kv_cache_usage_perc',
     {"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"}),
    ('sum by (gen_ai_request_model) (rate(gen_ai_client_token_usage_sum{gen_ai_token_type="output"}[5m]))',
     {"gen_ai_client_token_usage_sum"}),
])
def test_metric_names_in_promql(expr, names):
    assert metric_names_in_promql(expr) == names


def test_is_known():
    assert is_known("drift_psi") and is_known("DCGM_FI_DEV_GPU_UTIL") and is_known("node_cpu_seconds_total")
    assert is_known("http_request_duration_seconds_bucket") and is_known("http_request_duration_seconds_count")
    assert is_known("mcp_operation_duration_seconds_sum") and is_known("http_requests_created")
    assert is_known("up") and is_known("process_resident_memory_bytes")
    assert not is_known("drift_psi_bucket")  # not a histogram
    assert not is_known("http_requests") and not is_known("gpu_utilization")
    assert is_known("job:x:p99", extra={"job:x:p99"})


def test_is_known_vllm_and_otel_genai():
    assert is_known("vllm:time_to_first_token_seconds_bucket") and is_known("vllm:prompt_tokens_total")
    assert is_known("gen_ai_client_token_usage_sum") and is_known("gen_ai_server_time_to_first_token_seconds_count")
    assert is_known("vllm:request_success_total") and is_known("vllm:prompt_tokens_created")
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:gpu_cache_usage_perc", "vllm:generation_tokens_total", "vllm:prefix_cache_queries_total",
                 "vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_queries_total",
                 "vllm:gpu_prefix_cache_hits_total", "vllm:num_preemptions_total",
                 "vllm:inter_token_latency_seconds_bucket", "vllm:time_per_output_token_seconds_sum",
                 "vllm:e2e_request_latency_seconds_count", "gen_ai_server_request_duration_seconds_bucket",
                 "gen_ai_server_time_per_output_token_seconds_bucket"):
        assert is_known(name), name
    assert not is_known("vllm:prompt_tokens")  # the counter is exposed with _total
    assert not is_known("vllm:kv_cache_usage_perc_bucket")  # a gauge
    assert not is_known("gen_ai.client.token.usage")  # the exporter's name, not the instrument's
    assert catalog.spec("vllm:request_success_total").labels == ("model_name", "engine", "finished_reason")
    assert set(catalog.spec("gen_ai_client_token_usage").labels) >= {"gen_ai_request_model", "gen_ai_token_type"}
    for source in (catalog.VLLM, catalog.OTEL_GENAI):
        assert source in catalog.EXTERNAL_SOURCES and source in catalog._SOURCE_TITLES
        assert any(e.source == source for e in catalog.CATALOG.values())
    assert catalog.family_name("vllm:prompt_tokens_total") == "vllm:prompt_tokens"


def test_catalog_entries_are_well_formed():
    for e in catalog.CATALOG.values():
        assert e.type in ("gauge", "counter", "histogram", "summary"), e.name
        assert e.help and e.source and e.unit, e.name
        if e.type == "counter" and not e.name.startswith("DCGM_"):
            assert e.name.endswith("_total"), e.name
    for name in ("training_loss", "validation_loss", "ewc_lambda", "training_duration_seconds",
                 "training_samples_total", "training_runs_total", "lora_versions_total", "finetuning_triggers_total",
                 "fisher_matrix_size_bytes", "replay_buffer_size", "replay_buffer_capacity", "model_accuracy",
                 "drift_kl_divergence", "drift_psi", "drift_current_accuracy", "drift_detected_total",
                 "drift_window_samples", "http_request_duration_seconds", "http_requests_total",
                 "inference_tokens_total", "inference_time_to_first_token_seconds",
                 "inference_inter_token_latency_seconds", "inference_kv_cache_usage_ratio", "cache_hits_total",
                 "cache_misses_total", "mcp_requests_total",
                 "mcp_operation_duration_seconds", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED",
                 "DCGM_FI_DEV_GPU_TEMP", "aiplatform_drift_exporter_up", "aiplatform_learning_exporter_up",
                 "aiplatform_gpu_exporter_up"):
        assert name in catalog.CATALOG, name


def test_docs_metrics_md_is_generated_from_the_catalog():
    out = subprocess.run([sys.executable, "-m", "aiplatform_exporters.catalog", "--markdown"],
                         stdout=subprocess.PIPE, check=True, universal_newlines=True).stdout
    path = os.path.join(REPO, "docs", "metrics.md")
    with open(path) as fh:
        assert fh.read() == out, "docs/metrics.md is stale: run python -m aiplatform_exporters.catalog --markdown"
