#!/usr/bin/env python3
"""GPU benchmark for a real NVIDIA machine: exporter scrape vs raw NVML calls vs nvidia-smi.

Needs python3, nvidia-smi, prometheus-client and nvidia-ml-py only (the package
comes from files/exporters/src):

    python3 files/exporters/benchmarks/bench_gpu.py [--iterations 200] [--out DIR]

Measures, median and p99 over ``--iterations``:

* raw_nvml_hot: the NVML calls one scrape makes per GPU, timed back to back in a
  loop without the exporter (the slow energy / PCIe-replay reads excluded, as the
  exporter caches them for slow_fields_max_age_seconds);
* raw_nvml_cold: the same plus the energy and PCIe-replay reads;
* collect_hot: ``NvmlCollector.collect()`` building every family (slow fields cached);
* scrape_http: a full HTTP scrape of the exporter (exposition included);
* exporter RSS while serving, and 20 concurrent HTTP scrapes;
* nvidia_smi: one ``nvidia-smi --query-gpu=<10 fields> --format=csv`` run (fewer iterations);
* raw_sampler_round / sampler_round: the sampler thread's NVML calls for every GPU (PCIe TX and RX
  throughput, a GPM sample and the metrics between two, the NVLink throughput counters) timed raw,
  and ``NvmlCollector.sample_device`` over every GPU. These run in the sampler thread, not in a scrape.

Target: collect_hot within 1.5x of raw_nvml_hot, far below nvidia_smi; sampler_round within 1.5x of
raw_sampler_round.
Writes bench_gpu.json to --out (default $OUT, else the current directory).
"""

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))


def stats(samples):
    s = sorted(samples)
    return {"median_ms": s[len(s) // 2] * 1000, "p99_ms": s[min(len(s) - 1, int(0.99 * len(s)))] * 1000,
            "n": len(s)}


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def timed(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def raw_calls(nvml, handles, cold):
    def run():
        for h in handles:
            for fn, args in ((nvml.nvmlDeviceGetClockInfo, (h, nvml.NVML_CLOCK_SM)),
                             (nvml.nvmlDeviceGetClockInfo, (h, nvml.NVML_CLOCK_MEM)),
                             (nvml.nvmlDeviceGetTemperature, (h, nvml.NVML_TEMPERATURE_GPU)),
                             (nvml.nvmlDeviceGetFieldValues, (h, [nvml.NVML_FI_DEV_MEMORY_TEMP])),
                             (nvml.nvmlDeviceGetPowerUsage, (h,)),
                             (nvml.nvmlDeviceGetUtilizationRates, (h,)),
                             (nvml.nvmlDeviceGetEncoderUtilization, (h,)),
                             (nvml.nvmlDeviceGetDecoderUtilization, (h,)),
                             (nvml.nvmlDeviceGetRemappedRows, (h,)),
                             (nvml.nvmlDeviceGetMigMode, (h,))):
                try:
                    fn(*args)
                except nvml.NVMLError:
                    pass
            try:
                nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2)
            except (nvml.NVMLError, TypeError, AttributeError):
                pass
            if cold:
                for fn in (nvml.nvmlDeviceGetTotalEnergyConsumption, nvml.nvmlDeviceGetPcieReplayCounter,
                           nvml.nvmlDeviceGetGridLicensableFeatures):
                    try:
                        fn(h)
                    except nvml.NVMLError:
                        pass
    return run


def raw_sampler(nvml, handles):
    """The sampler's NVML calls for one round over every GPU, without the exporter."""
    gpm = {}
    for h in handles:
        try:
            if nvml.nvmlGpmQueryDeviceSupport(h).isSupportedDevice:
                gpm[id(h)] = [nvml.nvmlGpmSampleGet(h, nvml.nvmlGpmSampleAlloc()), nvml.nvmlGpmSampleAlloc()]
        except (nvml.NVMLError, AttributeError):
            pass
    links = [(nvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 0xFFFFFFFF),
             (nvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, 0xFFFFFFFF)]

    def run():
        for h in handles:
            for counter in (nvml.NVML_PCIE_UTIL_TX_BYTES, nvml.NVML_PCIE_UTIL_RX_BYTES):
                try:
                    nvml.nvmlDeviceGetPcieThroughput(h, counter)
                except nvml.NVMLError:
                    pass
            samples = gpm.get(id(h))
            if samples:
                nvml.nvmlGpmSampleGet(h, samples[1])
                request = nvml.c_nvmlGpmMetricsGet_t()
                request.version, request.numMetrics = nvml.NVML_GPM_METRICS_GET_VERSION, 3
                request.sample1, request.sample2 = samples
                for i, metric in enumerate((nvml.NVML_GPM_METRIC_GRAPHICS_UTIL, nvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL,
                                            nvml.NVML_GPM_METRIC_DRAM_BW_UTIL)):
                    request.metrics[i].metricId = metric
                nvml.nvmlGpmMetricsGet(request)
                samples.reverse()
            try:
                nvml.nvmlDeviceGetFieldValues(h, links)
            except nvml.NVMLError:
                pass
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--out", default=os.environ.get("OUT") or os.getcwd())
    args = parser.parse_args(argv)
    import pynvml as nvml
    from prometheus_client import CollectorRegistry

    from aiplatform_exporters.gpu import GpuConfig, NvmlCollector
    from aiplatform_exporters.server import serve

    t0 = time.perf_counter()
    nvml.nvmlInit()
    init_s = time.perf_counter() - t0
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    result = {"gpus": len(handles), "nvml_init_ms": init_s * 1000,
              "gpu_name": _text(nvml.nvmlDeviceGetName(handles[0])) if handles else None,
              "driver": _text(nvml.nvmlSystemGetDriverVersion()), "nvidia_ml_py": getattr(nvml, "__version__", "?")}
    result["raw_nvml_hot"] = stats(timed(raw_calls(nvml, handles, cold=False), args.iterations))
    result["raw_nvml_cold"] = stats(timed(raw_calls(nvml, handles, cold=True), max(20, args.iterations // 5)))
    rounds = max(10, args.iterations // 10)  # a round takes about 45 ms a GPU (two 20 ms PCIe windows)
    result["raw_sampler_round"] = stats(timed(raw_sampler(nvml, handles), rounds))
    nvml.nvmlShutdown()

    collector = NvmlCollector(GpuConfig(xid_events=True, sample_interval_seconds=0))
    assert collector.initialise()

    def sampler_round():
        for dev in collector.devices:
            dev.sampled, dev.sampled_at = collector.sample_device(dev), time.monotonic()

    sampler_round()
    result["sampler_round"] = stats(timed(sampler_round, rounds))
    result["sampled_fields"] = sorted(collector.devices[0].sampled) if collector.devices else []
    list(collector.collect())  # first slow reads
    result["collect_hot"] = stats(timed(lambda: list(collector.collect()), args.iterations))
    registry = CollectorRegistry()
    registry.register(collector)
    from prometheus_client.process_collector import ProcessCollector

    ProcessCollector(registry=registry)
    httpd = serve(registry, "127.0.0.1", 0, title="bench_gpu")
    url = "http://127.0.0.1:%d/metrics" % httpd.server_port

    def scrape():
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.read()

    scrape()
    result["scrape_http"] = stats(timed(scrape, args.iterations))
    conc = []
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        for _ in range(10):
            conc.extend(pool.map(lambda _: timed(scrape, 1)[0], range(20)))
    result["scrape_http_20_concurrent"] = stats(conc)
    with open("/proc/self/status") as fh:
        result["rss_bytes"] = [int(l.split()[1]) * 1024 for l in fh if l.startswith("VmRSS")][0]
    httpd.shutdown()
    collector.close()

    smi = ["nvidia-smi", "--query-gpu=utilization.gpu,utilization.memory,memory.used,memory.total,"
           "temperature.gpu,power.draw,clocks.sm,clocks.mem,pcie.link.gen.current,fan.speed",
           "--format=csv"]
    result["nvidia_smi"] = stats(timed(lambda: subprocess.run(smi, stdout=subprocess.DEVNULL,
                                                              stderr=subprocess.DEVNULL, check=False),
                                       max(10, args.iterations // 10)))
    result["collect_over_raw_hot"] = result["collect_hot"]["median_ms"] / result["raw_nvml_hot"]["median_ms"]
    result["sampler_over_raw"] = result["sampler_round"]["median_ms"] / result["raw_sampler_round"]["median_ms"]
    result["machine"] = {"python": sys.version.split()[0], "platform": platform.platform(), "cores": os.cpu_count()}
    print(json.dumps(result, indent=1))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_gpu.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
