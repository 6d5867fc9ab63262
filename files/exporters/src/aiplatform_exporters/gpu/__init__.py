"""GPU metrics over NVML with dcgm-exporter's names (needs prometheus-client and nvidia-ml-py only)."""

from aiplatform_exporters.gpu.collector import FIELDS, GpuConfig, NvmlCollector  # noqa: F401

__all__ = ["FIELDS", "GpuConfig", "NvmlCollector"]
