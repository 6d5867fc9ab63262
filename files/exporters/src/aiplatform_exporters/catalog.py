"""The metric catalog: every metric this project emits or reads.

One entry per exposed metric family: name (as it appears in PromQL; counters
carry their ``_total`` suffix), type, unit, labels, help text and source. The
exporters take their HELP text and label names from here, ``docs/metrics.md``
is generated from it::

    python -m aiplatform_exporters.catalog --markdown > docs/metrics.md

and the collection's tests check every alert rule and dashboard query against
it with :func:`metric_names_in_promql` and :func:`is_known`.

Sources that are not this package (node_exporter, dcgm-exporter, vLLM, the
OpenTelemetry GenAI conventions, Prometheus' own synthetic series,
prometheus-client's process collector) are listed as documented external sets
so queries on them are accepted too.
"""

import argparse
import re
import sys
from collections import OrderedDict, namedtuple

MetricSpec = namedtuple("MetricSpec", "name type unit labels help source")

# Sources.
DRIFT = "drift-exporter"
LEARNING = "learning-exporter"
LEARNING_ENGINE = "learning-engine"  # in-process, aiplatform_exporters.learning.LearningMetrics
GPU = "gpu-exporter"  # this package's NVML exporter
DCGM = "dcgm-exporter"  # external, same names as GPU
INSTRUMENTATION = "instrumentation"  # aiplatform_exporters.instrumentation, in the platform's services
VLLM = "vllm"  # external: the vLLM inference server's own /metrics
OTEL_GENAI = "otel-genai"  # external: OpenTelemetry GenAI semantic conventions, Prometheus exporter names
NODE = "node_exporter"  # external
PROMETHEUS = "prometheus"  # external: synthetic series and Prometheus/Alertmanager self-metrics
CLIENT = "prometheus-client"  # process_* / python_* of every Python exporter
POSTGRES = "postgres_exporter"  # external, optional

EXTERNAL_SOURCES = frozenset([DCGM, VLLM, OTEL_GENAI, NODE, PROMETHEUS, CLIENT, POSTGRES])

VLLM_LABELS = ("model_name", "engine")
GENAI_LABELS = ("gen_ai_request_model", "gen_ai_operation_name")

GPU_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "GPU_I_PROFILE", "GPU_I_ID",
              "Hostname", "DCGM_FI_DRIVER_VERSION")

_M = MetricSpec
_ENTRIES = [
    # ------------------------------------------------------------------ drift exporter
    _M("drift_kl_divergence", "gauge", "nats", ("model", "feature"),
       "KL(reference || current window) of the feature's distribution, natural log, last scored window.", DRIFT),
    _M("drift_psi", "gauge", "ratio", ("model", "feature"),
       "Population stability index of the feature between the reference and the last scored window.", DRIFT),
    _M("drift_window_samples", "gauge", "samples", ("model", "feature"),
       "Number of samples in the last scored window (a small window's PSI/KL is noise).", DRIFT),
    _M("drift_current_accuracy", "gauge", "ratio", ("model", "feature"),
       "Share of labelled samples in the last scored window whose prediction equals the label.", DRIFT),
    _M("drift_last_computed_timestamp_seconds", "gauge", "seconds", ("model", "feature"),
       "Unix time at which the last drift report of this model and feature was computed.", DRIFT),
    _M("drift_detected_total", "counter", "reports", ("model", "feature"),
       "Drift reports marked drifted, counted from the drift_reports table.", DRIFT),
    _M("finetuning_triggers_total", "counter", "requests", ("model", "reason"),
       "Fine-tuning requests, counted from the finetuning_requests table (the learning engine "
       "increments the same name in-process).", DRIFT + ", " + LEARNING_ENGINE),
    _M("aiplatform_drift_exporter_up", "gauge", "boolean", (),
       "1 when the drift exporter could read PostgreSQL at the last collection, else 0.", DRIFT),
    _M("aiplatform_drift_exporter_scrape_duration_seconds", "gauge", "seconds", (),
       "Time the drift exporter spent reading PostgreSQL for the last collection.", DRIFT),
    _M("aiplatform_drift_exporter_source_errors_total", "counter", "errors", ("operation",),
       "Errors reading or writing PostgreSQL, by operation (collect, score, connect).", DRIFT),
    _M("aiplatform_drift_exporter_bad_rows_total", "counter", "rows", ("table",),
       "Database rows the drift exporter skipped because they could not be interpreted.", DRIFT),
    _M("aiplatform_drift_exporter_scoring_duration_seconds", "gauge", "seconds", ("model", "feature"),
       "Time the last scoring of this model and feature took (binning in PostgreSQL included).", DRIFT),
    _M("aiplatform_drift_exporter_config_last_reload_successful", "gauge", "boolean", (),
       "1 when the last reload of the configuration file (SIGHUP) succeeded, 0 when the file was invalid "
       "and the previous settings stayed in force.", DRIFT),
    _M("aiplatform_drift_exporter_config_last_reload_success_timestamp_seconds", "gauge", "seconds", (),
       "Unix time at which the configuration file was last loaded successfully (at start or on SIGHUP).", DRIFT),
    # ------------------------------------------------------------------ learning engine (in-process) + exporter
    _M("training_loss", "gauge", "loss", ("model",),
       "Training loss of the latest finished training run.", LEARNING + ", " + LEARNING_ENGINE),
    _M("validation_loss", "gauge", "loss", ("model",),
       "Validation loss of the latest finished training run.", LEARNING + ", " + LEARNING_ENGINE),
    _M("ewc_lambda", "gauge", "ratio", ("model",),
       "Elastic weight consolidation regularisation strength of the latest finished run.",
       LEARNING + ", " + LEARNING_ENGINE),
    _M("training_duration_seconds", "gauge", "seconds", ("model",),
       "Wall-clock duration of the latest finished training run.", LEARNING + ", " + LEARNING_ENGINE),
    _M("training_samples_total", "counter", "samples", ("model",),
       "Samples trained on by succeeded training runs.", LEARNING + ", " + LEARNING_ENGINE),
    _M("training_runs_total", "counter", "runs", ("model", "trigger", "status"),
       "Finished training runs by trigger (drift, manual, schedule) and final status.",
       LEARNING + ", " + LEARNING_ENGINE),
    _M("training_in_progress", "gauge", "runs", ("model",),
       "Training runs currently running.", LEARNING + ", " + LEARNING_ENGINE),
    _M("last_training_timestamp_seconds", "gauge", "seconds", ("model",),
       "Unix time at which the latest training run finished.", LEARNING + ", " + LEARNING_ENGINE),
    _M("lora_versions_total", "counter", "versions", ("model",),
       "LoRA adapter versions created for the base model.", LEARNING + ", " + LEARNING_ENGINE),
    _M("lora_active_version_info", "gauge", "info", ("model", "version_id"),
       "1 for the LoRA version currently active on the base model.", LEARNING + ", " + LEARNING_ENGINE),
    _M("fisher_matrix_size_bytes", "gauge", "bytes", ("model",),
       "Size of the Fisher information matrix kept for EWC, latest finished run.",
       LEARNING + ", " + LEARNING_ENGINE),
    _M("replay_buffer_size", "gauge", "samples", ("model",),
       "Samples held in the experience replay buffer, latest finished run.", LEARNING + ", " + LEARNING_ENGINE),
    _M("replay_buffer_capacity", "gauge", "samples", ("model",),
       "Capacity of the experience replay buffer, latest finished run.", LEARNING + ", " + LEARNING_ENGINE),
    _M("model_accuracy", "gauge", "ratio", ("model",),
       "Evaluation accuracy of the active LoRA version (metrics_summary.accuracy).",
       LEARNING + ", " + LEARNING_ENGINE),
    _M("training_epoch", "gauge", "epochs", ("model",), "Current epoch of the running training job.",
       LEARNING_ENGINE),
    _M("training_steps_total", "counter", "steps", ("model",), "Optimiser steps taken.", LEARNING_ENGINE),
    _M("learning_rate", "gauge", "ratio", ("model",), "Current learning rate.", LEARNING_ENGINE),
    _M("gradient_norm", "gauge", "norm", ("model",), "L2 norm of the last gradient.", LEARNING_ENGINE),
    _M("ewc_penalty", "gauge", "loss", ("model",), "EWC penalty term of the last step.", LEARNING_ENGINE),
    _M("lora_rank", "gauge", "rank", ("model",), "Rank of the LoRA adapter being trained.", LEARNING_ENGINE),
    _M("fisher_computation_duration_seconds", "gauge", "seconds", ("model",),
       "Time the last Fisher information computation took.", LEARNING_ENGINE),
    _M("aiplatform_learning_exporter_up", "gauge", "boolean", (),
       "1 when the learning exporter could read PostgreSQL at the last collection, else 0.", LEARNING),
    _M("aiplatform_learning_exporter_scrape_duration_seconds", "gauge", "seconds", (),
       "Time the learning exporter spent reading PostgreSQL for the last collection.", LEARNING),
    _M("aiplatform_learning_exporter_source_errors_total", "counter", "errors", ("operation",),
       "Errors reading PostgreSQL, by operation.", LEARNING),
    _M("aiplatform_learning_exporter_bad_rows_total", "counter", "rows", ("table",),
       "Database rows the learning exporter skipped because they could not be interpreted.", LEARNING),
    # ------------------------------------------------------------------ GPU (dcgm-exporter <= 4.8 names)
    _M("DCGM_FI_DEV_SM_CLOCK", "gauge", "MHz", GPU_LABELS, "SM clock frequency (in MHz).", GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_MEM_CLOCK", "gauge", "MHz", GPU_LABELS, "Memory clock frequency (in MHz).",
       GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "celsius", GPU_LABELS, "Memory temperature (in C).",
       GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_GPU_TEMP", "gauge", "celsius", GPU_LABELS, "GPU temperature (in C).", GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_POWER_USAGE", "gauge", "W", GPU_LABELS, "Power draw (in W).", GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "mJ", GPU_LABELS,
       "Total energy consumption since boot (in mJ).", GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "replays", GPU_LABELS, "Total number of PCIe retries.",
       GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_GPU_UTIL", "gauge", "percent", GPU_LABELS, "GPU utilization (in %).", GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "percent", GPU_LABELS, "Memory utilization (in %).",
       GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_ENC_UTIL", "gauge", "percent", GPU_LABELS, "Encoder utilization (in %).",
       GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_DEC_UTIL", "gauge", "percent", GPU_LABELS, "Decoder utilization (in %).",
       GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_XID_ERRORS", "gauge", "xid", GPU_LABELS + ("err_code", "err_msg"),
       "Value of the last XID error encountered.", GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_FB_FREE", "gauge", "MiB", GPU_LABELS, "Framebuffer memory free (in MiB).",
       GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_FB_USED", "gauge", "MiB", GPU_LABELS, "Framebuffer memory used (in MiB).",
       GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_FB_RESERVED", "gauge", "MiB", GPU_LABELS, "Framebuffer memory reserved (in MiB).",
       GPU + ", " + DCGM),
    # not a dcgm-exporter default counter: an extra of the NVML exporter, absent on dcgm-exporter nodes
    _M("DCGM_FI_DEV_FB_TOTAL", "gauge", "MiB", GPU_LABELS, "Framebuffer memory total (in MiB).", GPU),
    _M("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "rows", GPU_LABELS,
       "Number of remapped rows for uncorrectable errors", GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "rows", GPU_LABELS,
       "Number of remapped rows for correctable errors", GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "boolean", GPU_LABELS,
       "Whether remapping of rows has failed", GPU + ", " + DCGM),
    # declared counter by dcgm-exporter, but a rate (MB/s, data TX + RX over every link)
    _M("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter", "MB/s", GPU_LABELS,
       "Total number of NVLink bandwidth counters for all lanes.", GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "gauge", "status", GPU_LABELS, "vGPU License status",
       GPU + ", " + DCGM),
    # not dcgm-exporter default counters: fields the collection's GPU alerts use, in both backends' lists
    _M("DCGM_FI_DEV_POWER_MGMT_LIMIT", "gauge", "W", GPU_LABELS, "Power management limit (in W).",
       GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "gauge", "bitmask", GPU_LABELS,
       "Current clock event reasons (bitmask of DCGM_CLOCKS_EVENT_REASON_*).", GPU + ", " + DCGM),
    # absent where ECC is off (volatile: since the last driver load) or the GPU has no NVLink
    _M("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "errors", GPU_LABELS,
       "Total number of double-bit volatile ECC errors.", GPU + ", " + DCGM),
    _M("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "counter", "errors", GPU_LABELS,
       "Total number of NVLink flow-control CRC errors.", GPU + ", " + DCGM),
    _M("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "ratio", GPU_LABELS,
       "Ratio of time the graphics engine is active.", GPU + ", " + DCGM),
    _M("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "ratio", GPU_LABELS,
       "Ratio of cycles the tensor (HMMA) pipe is active.", GPU + ", " + DCGM),
    _M("DCGM_FI_PROF_DRAM_ACTIVE", "gauge", "ratio", GPU_LABELS,
       "Ratio of cycles the device memory interface is active sending or receiving data.", GPU + ", " + DCGM),
    _M("DCGM_FI_PROF_PCIE_TX_BYTES", "gauge", "bytes/s", GPU_LABELS,
       "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads - "
       "in bytes per second.", GPU + ", " + DCGM),
    _M("DCGM_FI_PROF_PCIE_RX_BYTES", "gauge", "bytes/s", GPU_LABELS,
       "The rate of data received over the PCIe bus - including both protocol headers and data payloads - "
       "in bytes per second.", GPU + ", " + DCGM),
    _M("aiplatform_gpu_exporter_up", "gauge", "boolean", (),
       "1 when NVML is initialised and answered at the last collection, else 0.", GPU),
    _M("aiplatform_gpu_exporter_scrape_duration_seconds", "gauge", "seconds", (),
       "Time the GPU exporter spent in NVML for the last collection.", GPU),
    _M("aiplatform_gpu_exporter_source_errors_total", "counter", "errors", ("operation",),
       "NVML errors other than NotSupported, by operation (init, device, event, sample).", GPU),
    _M("aiplatform_gpu_exporter_gpus", "gauge", "devices", (), "GPUs NVML reports on this host.", GPU),
    # ------------------------------------------------------------------ platform services (instrumentation)
    _M("http_request_duration_seconds", "histogram", "seconds", ("method", "handler"),
       "Time from the request's arrival to the end of the response.", INSTRUMENTATION),
    _M("http_requests_total", "counter", "requests", ("method", "handler", "status"),
       "HTTP requests served, by method, route template and status code.", INSTRUMENTATION),
    _M("http_requests_in_progress", "gauge", "requests", ("method",),
       "HTTP requests being served right now.", INSTRUMENTATION),
    _M("inference_requests_total", "counter", "requests", ("model", "status"),
       "Inference requests by model and outcome (success, error).", INSTRUMENTATION),
    _M("inference_request_duration_seconds", "histogram", "seconds", ("model",),
       "Time an inference request took end to end.", INSTRUMENTATION),
    _M("inference_tokens_total", "counter", "tokens", ("model", "type"),
       "Tokens processed, type=prompt or type=completion.", INSTRUMENTATION),
    _M("inference_queue_depth", "gauge", "requests", ("model",),
       "Inference requests waiting in the queue.", INSTRUMENTATION),
    _M("inference_batch_size", "histogram", "requests", ("model",),
       "Number of requests in each batch sent to the model.", INSTRUMENTATION),
    _M("inference_time_to_first_token_seconds", "histogram", "seconds", ("model",),
       "Time from receiving an inference request to its first generated token.", INSTRUMENTATION),
    _M("inference_inter_token_latency_seconds", "histogram", "seconds", ("model",),
       "Time between two consecutive generated tokens of one request.", INSTRUMENTATION),
    _M("inference_kv_cache_usage_ratio", "gauge", "ratio", ("model",),
       "Share of the model server's KV-cache in use, 0 to 1.", INSTRUMENTATION),
    _M("cache_hits_total", "counter", "lookups", ("cache",), "Cache lookups that found an entry.",
       INSTRUMENTATION),
    _M("cache_misses_total", "counter", "lookups", ("cache",), "Cache lookups that found no entry.",
       INSTRUMENTATION),
    _M("mcp_requests_total", "counter", "requests", ("server", "operation", "status"),
       "MCP calls by server, operation and outcome (success, error).", INSTRUMENTATION),
    _M("mcp_operation_duration_seconds", "histogram", "seconds", ("server", "operation"),
       "Time an MCP call took.", INSTRUMENTATION),
    # ------------------------------------------------------------------ vLLM (external set, V1 engine names)
    # Counters are declared without _total in vLLM and exposed with it. model_name is the served model
    # name, engine the index of the engine core ("0" unless data parallel).
    _M("vllm:num_requests_running", "gauge", "requests", VLLM_LABELS,
       "Number of requests in model execution batches.", VLLM),
    _M("vllm:num_requests_waiting", "gauge", "requests", VLLM_LABELS,
       "Number of requests waiting to be processed.", VLLM),
    _M("vllm:kv_cache_usage_perc", "gauge", "ratio", VLLM_LABELS,
       "KV-cache usage. 1 means 100 percent usage (a ratio 0 to 1 despite the name; since 0.9, "
       "replacing vllm:gpu_cache_usage_perc).", VLLM),
    _M("vllm:gpu_cache_usage_perc", "gauge", "ratio", VLLM_LABELS,
       "GPU KV-cache usage. 1 means 100 percent usage. Older name of vllm:kv_cache_usage_perc, "
       "deprecated in 0.9.", VLLM),
    _M("vllm:prompt_tokens_total", "counter", "tokens", VLLM_LABELS,
       "Number of prefill tokens processed.", VLLM),
    _M("vllm:generation_tokens_total", "counter", "tokens", VLLM_LABELS,
       "Number of generation tokens processed.", VLLM),
    _M("vllm:request_success_total", "counter", "requests", VLLM_LABELS + ("finished_reason",),
       "Count of successfully processed requests, by finished_reason (stop, length, abort).", VLLM),
    _M("vllm:prefix_cache_queries_total", "counter", "tokens", VLLM_LABELS,
       "Prefix cache queries, in terms of number of queried tokens (since 0.9, replacing "
       "vllm:gpu_prefix_cache_queries_total).", VLLM),
    _M("vllm:prefix_cache_hits_total", "counter", "tokens", VLLM_LABELS,
       "Prefix cache hits, in terms of number of cached tokens (since 0.9, replacing "
       "vllm:gpu_prefix_cache_hits_total).", VLLM),
    _M("vllm:gpu_prefix_cache_queries_total", "counter", "tokens", VLLM_LABELS,
       "GPU prefix cache queries, in terms of number of queried tokens. Older name of "
       "vllm:prefix_cache_queries_total, deprecated in 0.9.", VLLM),
    _M("vllm:gpu_prefix_cache_hits_total", "counter", "tokens", VLLM_LABELS,
       "GPU prefix cache hits, in terms of number of cached tokens. Older name of "
       "vllm:prefix_cache_hits_total, deprecated in 0.9.", VLLM),
    _M("vllm:time_to_first_token_seconds", "histogram", "seconds", VLLM_LABELS,
       "Histogram of time to first token in seconds.", VLLM),
    _M("vllm:inter_token_latency_seconds", "histogram", "seconds", VLLM_LABELS,
       "Histogram of inter-token latency in seconds (newer name of vllm:time_per_output_token_seconds, "
       "since 0.11).", VLLM),
    _M("vllm:time_per_output_token_seconds", "histogram", "seconds", VLLM_LABELS,
       "Histogram of time per output token in seconds: the time between two generated tokens. Older name "
       "of vllm:inter_token_latency_seconds, deprecated in 0.11.", VLLM),
    _M("vllm:e2e_request_latency_seconds", "histogram", "seconds", VLLM_LABELS,
       "Histogram of e2e request latency in seconds.", VLLM),
    _M("vllm:num_preemptions_total", "counter", "preemptions", VLLM_LABELS,
       "Cumulative number of preemption from the engine.", VLLM),
    # ------------------------------------------------------------------ OpenTelemetry GenAI (external set)
    # The semantic conventions' instruments as the OpenTelemetry Prometheus exporter names them: dots
    # become underscores, the unit s adds _seconds, the annotation unit {token} adds nothing.
    _M("gen_ai_client_token_usage", "histogram", "tokens",
       ("gen_ai_request_model", "gen_ai_token_type", "gen_ai_operation_name", "gen_ai_system"),
       "gen_ai.client.token.usage: number of input and output tokens used per request "
       "(gen_ai_token_type=input or output).", OTEL_GENAI),
    _M("gen_ai_server_request_duration_seconds", "histogram", "seconds", GENAI_LABELS + ("error_type",),
       "gen_ai.server.request.duration: generative AI server request duration, such as time-to-last-byte "
       "or last output token (error_type set when the request failed).", OTEL_GENAI),
    _M("gen_ai_server_time_to_first_token_seconds", "histogram", "seconds", GENAI_LABELS,
       "gen_ai.server.time_to_first_token: time to generate the first token for successful responses.",
       OTEL_GENAI),
    _M("gen_ai_server_time_per_output_token_seconds", "histogram", "seconds", GENAI_LABELS,
       "gen_ai.server.time_per_output_token: time per output token generated after the first token for "
       "successful responses.", OTEL_GENAI),
    # ------------------------------------------------------------------ node_exporter (external set)
    _M("node_cpu_seconds_total", "counter", "seconds", ("cpu", "mode"), "Seconds the CPUs spent in each mode.",
       NODE),
    _M("node_load1", "gauge", "load", (), "1m load average.", NODE),
    _M("node_load5", "gauge", "load", (), "5m load average.", NODE),
    _M("node_load15", "gauge", "load", (), "15m load average.", NODE),
    _M("node_memory_MemTotal_bytes", "gauge", "bytes", (), "Memory information field MemTotal_bytes.", NODE),
    _M("node_memory_MemAvailable_bytes", "gauge", "bytes", (), "Memory information field MemAvailable_bytes.",
       NODE),
    _M("node_memory_MemFree_bytes", "gauge", "bytes", (), "Memory information field MemFree_bytes.", NODE),
    _M("node_memory_Buffers_bytes", "gauge", "bytes", (), "Memory information field Buffers_bytes.", NODE),
    _M("node_memory_Cached_bytes", "gauge", "bytes", (), "Memory information field Cached_bytes.", NODE),
    _M("node_memory_SwapTotal_bytes", "gauge", "bytes", (), "Memory information field SwapTotal_bytes.", NODE),
    _M("node_memory_SwapFree_bytes", "gauge", "bytes", (), "Memory information field SwapFree_bytes.", NODE),
    _M("node_filesystem_avail_bytes", "gauge", "bytes", ("device", "fstype", "mountpoint"),
       "Filesystem space available to non-root users in bytes.", NODE),
    _M("node_filesystem_free_bytes", "gauge", "bytes", ("device", "fstype", "mountpoint"),
       "Filesystem free space in bytes.", NODE),
    _M("node_filesystem_size_bytes", "gauge", "bytes", ("device", "fstype", "mountpoint"),
       "Filesystem size in bytes.", NODE),
    _M("node_filesystem_readonly", "gauge", "boolean", ("device", "fstype", "mountpoint"),
       "Filesystem read-only status.", NODE),
    _M("node_disk_read_bytes_total", "counter", "bytes", ("device",), "The total number of bytes read.", NODE),
    _M("node_disk_written_bytes_total", "counter", "bytes", ("device",), "The total number of bytes written.",
       NODE),
    _M("node_disk_io_time_seconds_total", "counter", "seconds", ("device",), "Total seconds spent doing I/Os.",
       NODE),
    _M("node_network_receive_bytes_total", "counter", "bytes", ("device",), "Network device bytes received.",
       NODE),
    _M("node_network_transmit_bytes_total", "counter", "bytes", ("device",), "Network device bytes sent.", NODE),
    _M("node_network_receive_errs_total", "counter", "errors", ("device",), "Network device receive errors.",
       NODE),
    _M("node_network_transmit_errs_total", "counter", "errors", ("device",), "Network device transmit errors.",
       NODE),
    _M("node_boot_time_seconds", "gauge", "seconds", (), "Node boot time, in unixtime.", NODE),
    _M("node_time_seconds", "gauge", "seconds", (), "System time in seconds since epoch.", NODE),
    _M("node_uname_info", "gauge", "info", ("nodename", "release", "machine", "sysname", "version", "domainname"),
       "Labeled system information as provided by the uname system call.", NODE),
    _M("node_hwmon_temp_celsius", "gauge", "celsius", ("chip", "sensor"), "Hardware monitor for temperature.",
       NODE),
    _M("node_systemd_unit_state", "gauge", "boolean", ("name", "state", "type"),
       "Systemd unit state (systemd collector).", NODE),
    _M("node_textfile_scrape_error", "gauge", "boolean", (), "1 if there was an error opening or reading a file.",
       NODE),
    _M("node_exporter_build_info", "gauge", "info", ("version", "revision", "branch", "goversion"),
       "node_exporter build information.", NODE),
    # ------------------------------------------------------------------ Prometheus / Alertmanager (external set)
    _M("up", "gauge", "boolean", ("job", "instance"), "1 if the last scrape of the target succeeded.",
       PROMETHEUS),
    _M("scrape_duration_seconds", "gauge", "seconds", ("job", "instance"), "Duration of the scrape.", PROMETHEUS),
    _M("scrape_samples_scraped", "gauge", "samples", ("job", "instance"), "Samples the target exposed.",
       PROMETHEUS),
    _M("scrape_samples_post_metric_relabeling", "gauge", "samples", ("job", "instance"),
       "Samples remaining after metric relabeling.", PROMETHEUS),
    _M("scrape_series_added", "gauge", "series", ("job", "instance"), "Approximate new series in this scrape.",
       PROMETHEUS),
    _M("ALERTS", "gauge", "boolean", ("alertname", "alertstate"), "Pending and firing alerts.", PROMETHEUS),
    _M("ALERTS_FOR_STATE", "gauge", "seconds", ("alertname",), "Activation time of pending/firing alerts.",
       PROMETHEUS),
    _M("prometheus_config_last_reload_successful", "gauge", "boolean", (),
       "Whether the last configuration reload attempt was successful.", PROMETHEUS),
    _M("prometheus_rule_evaluation_failures_total", "counter", "failures", ("rule_group",),
       "The total number of rule evaluation failures.", PROMETHEUS),
    _M("prometheus_notifications_dropped_total", "counter", "alerts", (),
       "Total number of alerts dropped due to errors when sending to Alertmanager.", PROMETHEUS),
    _M("prometheus_tsdb_head_series", "gauge", "series", (), "Total number of series in the head block.",
       PROMETHEUS),
    _M("prometheus_target_interval_length_seconds", "summary", "seconds", ("interval", "quantile"),
       "Actual intervals between scrapes.", PROMETHEUS),
    _M("alertmanager_config_last_reload_successful", "gauge", "boolean", (),
       "Whether the last configuration reload attempt was successful.", PROMETHEUS),
    _M("alertmanager_notifications_failed_total", "counter", "notifications", ("integration",),
       "The total number of failed notifications.", PROMETHEUS),
    _M("alertmanager_notifications_total", "counter", "notifications", ("integration",),
       "The total number of attempted notifications.", PROMETHEUS),
    # ------------------------------------------------------------------ prometheus-client process collector
    _M("process_resident_memory_bytes", "gauge", "bytes", (), "Resident memory size in bytes.", CLIENT),
    _M("process_virtual_memory_bytes", "gauge", "bytes", (), "Virtual memory size in bytes.", CLIENT),
    _M("process_cpu_seconds_total", "counter", "seconds", (), "Total user and system CPU time spent in seconds.",
       CLIENT),
    _M("process_start_time_seconds", "gauge", "seconds", (),
       "Start time of the process since unix epoch in seconds.", CLIENT),
    _M("process_open_fds", "gauge", "fds", (), "Number of open file descriptors.", CLIENT),
    _M("python_info", "gauge", "info", ("implementation", "major", "minor", "patchlevel", "version"),
       "Python platform information.", CLIENT),
    # ------------------------------------------------------------------ postgres_exporter (external, optional)
    _M("pg_up", "gauge", "boolean", (), "Whether the last scrape of PostgreSQL was able to connect.", POSTGRES),
    _M("pg_stat_database_numbackends", "gauge", "connections", ("datname",),
       "Number of backends currently connected to this database.", POSTGRES),
    _M("pg_settings_max_connections", "gauge", "connections", (), "Server setting max_connections.", POSTGRES),
]

CATALOG = OrderedDict((m.name, m) for m in _ENTRIES)

# dcgm-exporter's default counters (etc/default-counters.csv of every release through 4.8), in its
# order, with the one label field among them. Both GPU backends take their list from here: the
# gpu_exporter role's gpu_exporter_dcgm_counters (+ _profiling_counters) must equal dcgm_counters()
# (tests/unit/test_exporter_roles.py), and files/exporters/tests/data holds NVIDIA's file to compare.
DCGM_DEFAULT_COUNTERS = (
    "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_RESERVED",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "DCGM_FI_DEV_VGPU_LICENSE_STATUS",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE", "DCGM_FI_DRIVER_VERSION",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "DCGM_FI_PROF_DRAM_ACTIVE",
    "DCGM_FI_PROF_PCIE_TX_BYTES", "DCGM_FI_PROF_PCIE_RX_BYTES",
)
# A label, not a series: dcgm-exporter adds it to every series (so does the NVML exporter).
DCGM_LABEL_FIELDS = {"DCGM_FI_DRIVER_VERSION": "Driver Version"}
# Beyond dcgm-exporter's defaults: the fields the collection's alerts query (GPUPowerAtLimit,
# GPUClocksSlowedDown, GPUDoubleBitECCErrors, GPUNVLinkCRCErrors), listed after the defaults'
# non-profiling rows.
DCGM_ALERT_COUNTERS = ("DCGM_FI_DEV_POWER_MGMT_LIMIT", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
                       "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL")


def dcgm_counters(profiling=True, alert_counters=True):
    """[(field, type, help)] for dcgm-exporter's counters CSV: its default list, with the alert counters
    after the non-profiling rows (profiling fields last)."""
    out = []
    names = [n for n in DCGM_DEFAULT_COUNTERS if not n.startswith("DCGM_FI_PROF_")]
    names += list(DCGM_ALERT_COUNTERS) if alert_counters else []
    names += [n for n in DCGM_DEFAULT_COUNTERS if n.startswith("DCGM_FI_PROF_")] if profiling else []
    for name in names:
        if name in DCGM_LABEL_FIELDS:
            out.append((name, "label", DCGM_LABEL_FIELDS[name]))
        else:
            out.append((name, CATALOG[name].type, CATALOG[name].help))
    return out
if len(CATALOG) != len(_ENTRIES):  # pragma: no cover - guards edits of the table above
    raise RuntimeError("duplicate metric name in the catalog")


def spec(name):
    """Return the catalog entry of ``name`` (KeyError naming it when unknown)."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError("metric %r is not in the catalog (aiplatform_exporters.catalog)" % (name,))


def help_of(name):
    return spec(name).help


def labels_of(name):
    return list(spec(name).labels)


def family_name(name):
    """The name prometheus-client wants for a family: counters without ``_total``."""
    entry = spec(name)
    if entry.type == "counter" and name.endswith("_total"):
        return name[: -len("_total")]
    return name


_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "counter": ("_created",),
}


def is_known(name, extra=()):
    """True when ``name`` is a series name of a catalogued metric.

    Histograms are accepted with their ``_bucket``/``_sum``/``_count`` series
    (and ``_created``), summaries with ``_sum``/``_count``. Names in ``extra``
    (for example recording rules the caller defines) are accepted as is.
    """
    if name in CATALOG or name in extra:
        return True
    for base_type, suffixes in _SUFFIXES.items():
        for suffix in suffixes:
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                candidates = (base, base + "_total") if base_type == "counter" else (base,)
                for cand in candidates:
                    entry = CATALOG.get(cand)
                    if entry is not None and entry.type == base_type:
                        return True
    return False


# ---------------------------------------------------------------------------- PromQL name extraction
_FUNCTIONS = frozenset("""
abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max
clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv exp
floor histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
histogram_sum holt_winters double_exponential_smoothing hour idelta increase info irate label_join
label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi
predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort
sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh
time timestamp vector year
""".split())
_AGGREGATIONS = frozenset("""
sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
""".split())
_KEYWORDS = frozenset("""
by without on ignoring group_left group_right offset bool and or unless atan2 start end inf nan
""".split())

_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER_RE = re.compile(r'__name__\s*=\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')')
_BRACES_RE = re.compile(r"\{[^{}]*\}")
_GROUPING_RE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_VARIABLE_RE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_]\w*|\[\[[^\]]*\]\]")
_RANGE_RE = re.compile(r"\[[^\[\]]*\]")
_TOKEN_RE = re.compile(r"(?P<num>(?<![\w:])(?:0x[0-9a-fA-F]+|\d[\w.]*(?:[eE][+-]?\d+)?))"
                       r"|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)")


def metric_names_in_promql(expr):
    """The set of metric names a PromQL expression selects.

    Ignores function and aggregation names, keywords, label names (in
    selectors and in by/without/on/ignoring/group_* lists), durations, numbers,
    strings and Grafana template variables (``$var``, ``${var}``, ``[[var]]``,
    ``$__rate_interval``). ``{__name__="x"}`` selectors count as ``x``.
    """
    names = set()
    for literal in _NAME_MATCHER_RE.findall(expr):
        value = literal[1:-1]
        if re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", value):
            names.add(value)
    text = _VARIABLE_RE.sub(" 0 ", expr)
    text = _STRING_RE.sub(' "" ', text)
    # label matchers, innermost first (selectors do not nest, but be safe)
    previous = None
    while previous != text:
        previous = text
        text = _BRACES_RE.sub(" ", text)
    text = _GROUPING_RE.sub(" ", text)
    text = _RANGE_RE.sub(" ", text)  # [5m], [1h:1m], [$__rate_interval]
    for match in _TOKEN_RE.finditer(text):
        ident = match.group("ident")
        if ident is None:
            continue
        lowered = ident.lower()
        rest = text[match.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation call
        if lowered in _KEYWORDS or ident in _AGGREGATIONS or ident in _FUNCTIONS:
            continue
        names.add(ident)
    return names


# ---------------------------------------------------------------------------- docs
_SOURCE_TITLES = OrderedDict([
    (DRIFT, "Drift exporter (`aiplatform-drift-exporter`, port 19841)"),
    (LEARNING, "Learning-engine exporter (`aiplatform-learning-exporter`, port 19842)"),
    (LEARNING_ENGINE, "Learning engine, in-process (`aiplatform_exporters.learning.LearningMetrics`)"),
    (GPU, "NVML GPU exporter (`aiplatform-gpu-exporter`), dcgm-exporter <= 4.8 names"),
    (DCGM, "dcgm-exporter (external): fields this exporter does not produce"),
    (INSTRUMENTATION, "Platform services (`aiplatform_exporters.instrumentation`)"),
    (VLLM, "vLLM inference server (external): `vllm:*` names, 0.6 to 0.11+"),
    (OTEL_GENAI, "OpenTelemetry GenAI semantic conventions, through the Prometheus exporter (external)"),
    (NODE, "node_exporter (external, documented set)"),
    (PROMETHEUS, "Prometheus and Alertmanager (external)"),
    (CLIENT, "prometheus-client process collector (every Python exporter)"),
    (POSTGRES, "postgres_exporter (external, optional)"),
])


def _primary_source(entry):
    return entry.source.split(",")[0].strip()


def to_markdown():
    lines = [
        "# Metrics",
        "",
        "<!-- Generated from files/exporters/src/aiplatform_exporters/catalog.py by",
        "     `python -m aiplatform_exporters.catalog --markdown > docs/metrics.md`; edit the catalog, not this file. -->",
        "",
        "Every metric this collection emits or reads. Counters are listed with their `_total` name;",
        "histograms also expose `_bucket`, `_sum` and `_count`. A dashboard or alert query that uses a",
        "name missing here fails the collection's tests.",
        "",
    ]
    for source, title in _SOURCE_TITLES.items():
        entries = [e for e in CATALOG.values() if _primary_source(e) == source]
        if not entries:
            continue
        lines += ["## " + title, "", "| name | type | unit | labels | help | also from |", "|---|---|---|---|---|---|"]
        for e in entries:
            others = ", ".join(s.strip() for s in e.source.split(",")[1:])
            labels = ", ".join("`%s`" % label for label in e.labels)
            lines.append("| `%s` | %s | %s | %s | %s | %s |" % (
                e.name, e.type, e.unit, labels, e.help.replace("|", "\\|"), others))
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m aiplatform_exporters.catalog",
                                     description="Print the metric catalog.")
    parser.add_argument("--markdown", action="store_true", help="print docs/metrics.md")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(to_markdown())
    else:
        for e in CATALOG.values():
            sys.stdout.write("%s %s %s\n" % (e.name, e.type, e.source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
