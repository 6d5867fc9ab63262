#!/usr/bin/env python3
"""Check the NVML GPU exporter against nvidia-smi on a real NVIDIA machine.

Needs only python3, nvidia-smi, prometheus-client and nvidia-ml-py: the
package is taken from files/exporters/src next to this script, it does not
have to be installed. Runs in well under 2 minutes:

    python3 files/exporters/gpu_check.py [--out DIR]

Starts the exporter on 127.0.0.1 (an ephemeral port), reads nvidia-smi
--query-gpu before and after scraping it, and compares per GPU: utilization,
memory used/free/total, temperature, power, SM and memory clocks, and the
UUID, PCI bus id, model name and driver version labels. A value passes when
it lies within tolerance of the range the two nvidia-smi readings span.
The sampled fields are checked against what NVML itself says the GPU has (asked
here directly, not through the exporter): the GPM profiling ratios on a GPU with
GPM, PCIe throughput and the NVLink rate where NVML answers them, each in range;
the graphics-engine ratio is compared with nvidia-smi's utilization; the vGPU
licence status is 0 or 1; the double-bit ECC and NVLink CRC error counters are
present (and not negative) exactly where NVML answers them (ECC on, NVLink present);
and DCGM_FI_DEV_XID_ERRORS carries err_code/err_msg.
Prints a table, writes gpu_check.json, gpu_check.txt and the raw scrape to
--out (default $OUT, else ./gpu-check-out), and exits 1 on any mismatch
(2 when the exporter or nvidia-smi cannot run at all).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "src"))

SMI_FIELDS = ("index", "uuid", "pci.bus_id", "name", "driver_version", "utilization.gpu", "utilization.memory",
              "memory.used", "memory.free", "memory.total", "temperature.gpu", "power.draw", "clocks.sm",
              "clocks.mem")

# exporter metric, nvidia-smi field, absolute tolerance, relative tolerance
CHECKS = (
    ("DCGM_FI_DEV_GPU_UTIL", "utilization.gpu", 10.0, 0.0),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "utilization.memory", 10.0, 0.0),
    ("DCGM_FI_DEV_FB_USED", "memory.used", 64.0, 0.01),
    ("DCGM_FI_DEV_FB_FREE", "memory.free", 64.0, 0.01),
    ("DCGM_FI_DEV_GPU_TEMP", "temperature.gpu", 3.0, 0.0),
    ("DCGM_FI_DEV_POWER_USAGE", "power.draw", 15.0, 0.10),
    ("DCGM_FI_DEV_SM_CLOCK", "clocks.sm", 100.0, 0.05),
    ("DCGM_FI_DEV_MEM_CLOCK", "clocks.mem", 100.0, 0.05),
)
# sampled fields: metric, what NVML must answer for the GPU to have it, (low, high)
SAMPLED_CHECKS = (
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gpm", (0.0, 1.0)),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gpm", (0.0, 1.0)),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "gpm", (0.0, 1.0)),
    ("DCGM_FI_PROF_PCIE_TX_BYTES", "pcie", (0.0, 128e9)),
    ("DCGM_FI_PROF_PCIE_RX_BYTES", "pcie", (0.0, 128e9)),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "nvlink", (0.0, 4e6)),
    ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "always", (0.0, 1.0)),
    # the error counters the GPU health alerts use (slow fields, not sampled): where NVML has them
    ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "ecc", (0.0, float("inf"))),
    ("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "nvlink_crc", (0.0, float("inf"))),
)
LABEL_CHECKS = (("UUID", "uuid"), ("pci_bus_id", "pci.bus_id"), ("modelName", "name"),
                ("DCGM_FI_DRIVER_VERSION", "driver_version"))


def _number(text):
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def query_smi():
    out = subprocess.run(["nvidia-smi", "--query-gpu=" + ",".join(SMI_FIELDS), "--format=csv,noheader,nounits"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=30,
                         check=True).stdout
    return parse_smi(out)


def parse_smi(text):
    rows = {}
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(SMI_FIELDS):
            continue
        row = dict(zip(SMI_FIELDS, parts))
        rows[row["index"]] = row
    return rows


def normalise_bus_id(bus_id):
    """nvidia-smi prints 00000000:53:00.0; NVML may print the same with other case or padding."""
    return bus_id.upper().replace("0000:", "00000000:", 1) if bus_id.upper().startswith("0000:") else bus_id.upper()


def parse_scrape(text):
    from prometheus_client.parser import text_string_to_metric_families

    per_gpu = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if "gpu" in s.labels and "GPU_I_ID" not in s.labels:
                entry = per_gpu.setdefault(s.labels["gpu"], {"labels": dict(s.labels), "values": {}})
                # prometheus-client's parser names the sample of counter X_TOTAL "X_TOTAL_total"
                name = s.name[:-len("_total")] if s.name.endswith("_TOTAL_total") else s.name
                entry["values"][name] = s.value
    return per_gpu


def compare(before, after, scraped):
    """[(gpu, check, exporter value, nvidia-smi range, tolerance, status)]; status ok|MISMATCH|skipped."""
    rows = []
    for index in sorted(set(before) | set(scraped), key=lambda x: int(x) if x.isdigit() else x):
        b, a, s = before.get(index), after.get(index, before.get(index)), scraped.get(index)
        if b is None or s is None:
            rows.append((index, "GPU present on both sides", "yes" if s else "no", "yes" if b else "no", "", "MISMATCH"))
            continue
        for label, field in LABEL_CHECKS:
            got = s["labels"].get(label, "")
            want = b[field]
            ok = got == want or (label == "pci_bus_id" and normalise_bus_id(got) == normalise_bus_id(want))
            rows.append((index, label, got, want, "exact", "ok" if ok else "MISMATCH"))
        for metric, field, abs_tol, rel_tol in CHECKS:
            got = s["values"].get(metric)
            lo_hi = [v for v in (_number(b[field]), _number(a[field])) if v is not None]
            if got is None and not lo_hi:
                rows.append((index, metric, "absent", "N/A", "", "skipped"))
                continue
            if got is None or not lo_hi:
                rows.append((index, metric, "absent" if got is None else got, "N/A" if not lo_hi else lo_hi[0], "",
                             "MISMATCH"))
                continue
            lo, hi = min(lo_hi), max(lo_hi)
            tol = max(abs_tol, rel_tol * hi)
            ok = lo - tol <= got <= hi + tol
            want = "%g" % lo if lo == hi else "%g..%g" % (lo, hi)
            rows.append((index, metric, got, want, "+-%g" % tol, "ok" if ok else "MISMATCH"))
    return rows


def nvml_support(nvml):
    """{gpu index: {"gpm", "pcie", "nvlink", "ecc", "nvlink_crc", "always"} that NVML answers}, asked
    directly with pynvml."""
    out = {}
    for i in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        has = {"always"}
        try:
            if nvml.nvmlGpmQueryDeviceSupport(h).isSupportedDevice:
                has.add("gpm")
        except (nvml.NVMLError, AttributeError):
            pass
        try:
            nvml.nvmlDeviceGetPcieThroughput(h, nvml.NVML_PCIE_UTIL_TX_BYTES)
            has.add("pcie")
        except nvml.NVMLError:
            pass
        try:
            ids = [(nvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, 0xFFFFFFFF),
                   (nvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, 0xFFFFFFFF)]
            if all(v.nvmlReturn == 0 for v in nvml.nvmlDeviceGetFieldValues(h, ids)):
                has.add("nvlink")
        except nvml.NVMLError:
            pass
        try:
            nvml.nvmlDeviceGetTotalEccErrors(h, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC)
            has.add("ecc")
        except nvml.NVMLError:
            pass
        try:
            ids = [nvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL]
            if all(v.nvmlReturn == 0 for v in nvml.nvmlDeviceGetFieldValues(h, ids)):
                has.add("nvlink_crc")
        except nvml.NVMLError:
            pass
        out[str(i)] = has
    return out


def compare_sampled(support, smi, scraped, xid_labels):
    """Rows as compare() for the sampled fields, the vGPU licence and the Xid labels."""
    rows = []
    for index in sorted(support, key=int):
        values = scraped.get(index, {}).get("values", {})
        for metric, need, (lo, hi) in SAMPLED_CHECKS:
            got = values.get(metric)
            if need not in support[index]:
                rows.append((index, metric, "absent" if got is None else got, "NVML: not on this GPU", "",
                             "ok" if got is None else "MISMATCH"))
                continue
            ok = got is not None and lo <= got <= hi
            rows.append((index, metric, "absent" if got is None else got, "NVML answers", "%g..%g" % (lo, hi),
                         "ok" if ok else "MISMATCH"))
        gr = values.get("DCGM_FI_PROF_GR_ENGINE_ACTIVE")
        util = [v for v in (_number(r.get(index, {}).get("utilization.gpu", "")) for r in smi) if v is not None]
        if gr is not None and util:
            # both measure the share of time the GPU ran work; they sample different windows
            ok = min(util) - 35 <= gr * 100 <= max(util) + 35
            rows.append((index, "GR_ENGINE_ACTIVE x100 vs utilization.gpu", gr * 100,
                         "%g..%g" % (min(util), max(util)), "+-35", "ok" if ok else "MISMATCH"))
        labels = xid_labels.get(index)
        ok = labels is not None and labels.get("err_code", "").isdigit() and bool(labels.get("err_msg"))
        rows.append((index, "DCGM_FI_DEV_XID_ERRORS err_code/err_msg",
                     "%s/%s" % (labels.get("err_code"), labels.get("err_msg")) if labels else "absent",
                     "present", "", "ok" if ok else "MISMATCH"))
    return rows


def xid_labels(text):
    from prometheus_client.parser import text_string_to_metric_families

    return {s.labels["gpu"]: s.labels for fam in text_string_to_metric_families(text)
            for s in fam.samples if s.name == "DCGM_FI_DEV_XID_ERRORS" and "GPU_I_ID" not in s.labels}


def format_table(rows):
    header = ("gpu", "check", "exporter", "nvidia-smi", "tolerance", "result")
    cells = [header] + [tuple("%g" % c if isinstance(c, float) else str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Compare the NVML GPU exporter with nvidia-smi.")
    parser.add_argument("--out", default=os.environ.get("OUT") or os.path.join(os.getcwd(), "gpu-check-out"))
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    started = time.monotonic()
    from prometheus_client import CollectorRegistry

    from aiplatform_exporters.gpu import GpuConfig, NvmlCollector
    from aiplatform_exporters.gpu.collector import unsuffixed_counter_exposition
    from aiplatform_exporters.server import serve

    collector = NvmlCollector(GpuConfig(xid_events=True, sample_interval_seconds=1.0))
    registry = CollectorRegistry()
    registry.register(collector)
    # the bytes the exporter serves (TYPE lines included), not prometheus-client's default exposition
    httpd = serve(registry, "127.0.0.1", 0, title="gpu_check",
                  exposition=lambda r: unsuffixed_counter_exposition(r, collector.config.unsuffixed_counters))
    url = "http://127.0.0.1:%d/metrics" % httpd.server_port
    try:
        try:
            before = query_smi()
        except (OSError, subprocess.SubprocessError) as exc:
            print("gpu_check: nvidia-smi failed: %s" % exc, file=sys.stderr)
            return 2
        timings = []
        text = ""
        for _ in range(5):  # the first scrape initialises NVML; report the later ones
            t0 = time.monotonic()
            with urllib.request.urlopen(url, timeout=30) as resp:
                text = resp.read().decode()
            timings.append(time.monotonic() - t0)
        time.sleep(3.5)  # the sampler's GPM ratios and NVLink rate need its second round (1 s apart)
        with urllib.request.urlopen(url, timeout=30) as resp:
            text = resp.read().decode()
        after = query_smi()
        import pynvml

        support = nvml_support(pynvml)  # NVML is still initialised by the exporter's collector
    finally:
        httpd.shutdown()
        collector.close()
    with open(os.path.join(args.out, "gpu_check_scrape.txt"), "w") as fh:
        fh.write(text)
    if "aiplatform_gpu_exporter_up 1.0" not in text:
        print("gpu_check: the exporter reports up 0 (see gpu_check_scrape.txt)", file=sys.stderr)
        return 2
    scraped = parse_scrape(text)
    rows = compare(before, after, scraped) + compare_sampled(support, (before, after), scraped, xid_labels(text))
    table = format_table(rows)
    mismatches = [r for r in rows if r[5] == "MISMATCH"]
    summary = ("%d checks, %d mismatches, %d skipped; scrape over HTTP: first %.1f ms, then median %.2f ms; "
               "total %.1f s" % (len(rows), len(mismatches), sum(1 for r in rows if r[5] == "skipped"),
                                 timings[0] * 1000, sorted(timings[1:])[len(timings[1:]) // 2] * 1000,
                                 time.monotonic() - started))
    print(table)
    print(summary)
    with open(os.path.join(args.out, "gpu_check.txt"), "w") as fh:
        fh.write(table + "\n" + summary + "\n")
    with open(os.path.join(args.out, "gpu_check.json"), "w") as fh:
        json.dump({"rows": rows, "mismatches": len(mismatches), "scrape_seconds": timings,
                   "nvidia_smi_before": before, "nvidia_smi_after": after, "host": platform.node(),
                   "python": sys.version.split()[0]}, fh, indent=1, default=str)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
