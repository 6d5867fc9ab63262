"""gpu_check.py's comparison logic, fed with the fake NVML's scrape and a canned nvidia-smi answer."""

import importlib.util
import os

from prometheus_client import generate_latest

from aiplatform_exporters.gpu import GpuConfig, NvmlCollector
from fake_nvml import FakeNvml, gpu
from helpers import registry_with

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gpu_check.py")


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def smi_line(g, index, **override):
    mib = 1 << 20
    values = {"index": index, "uuid": g["uuid"], "pci.bus_id": g["pci"], "name": g["name"],
              "driver_version": "580.105.08", "utilization.gpu": g["util_gpu"], "utilization.memory": g["util_mem"],
              "memory.used": g["mem_used"] // mib, "memory.free": g["mem_free"] // mib,
              "memory.total": g["mem_total"] // mib, "temperature.gpu": g["temp"],
              "power.draw": "%.2f" % (g["power_mw"] / 1000.0), "clocks.sm": g["sm_clock"],
              "clocks.mem": g["mem_clock"]}
    values.update(override)
    return ", ".join(str(values[f]) for f in load().SMI_FIELDS)


def test_gpu_check_compare():
    mod = load()
    gpus = [gpu(0), gpu(1)]
    col = NvmlCollector(GpuConfig(hostname="n", xid_events=False), nvml=FakeNvml(gpus))
    scraped = mod.parse_scrape(generate_latest(registry_with(col)).decode())
    good = mod.parse_smi("\n".join(smi_line(g, i) for i, g in enumerate(gpus)))
    rows = mod.compare(good, good, scraped)
    assert rows and all(r[5] == "ok" for r in rows), mod.format_table(rows)
    bad = mod.parse_smi("\n".join([smi_line(gpus[0], 0, **{"temperature.gpu": 60}),
                                   smi_line(gpus[1], 1, **{"clocks.sm": "[N/A]"})]))
    rows = mod.compare(bad, bad, scraped)
    failed = [(r[0], r[1]) for r in rows if r[5] == "MISMATCH"]
    assert failed == [("0", "DCGM_FI_DEV_GPU_TEMP"), ("1", "DCGM_FI_DEV_SM_CLOCK")]
    # a value between the two nvidia-smi readings passes
    hot = mod.parse_smi("\n".join(smi_line(g, i, **{"utilization.gpu": 90}) for i, g in enumerate(gpus)))
    assert all(r[5] == "ok" for r in mod.compare(good, hot, scraped) if r[1] == "DCGM_FI_DEV_GPU_UTIL")


def test_gpu_check_sampled_fields():
    mod = load()
    nvml = FakeNvml([gpu(0), gpu(1, name="NVIDIA A100-SXM4-80GB", gpm=None, nvlink_tx_kib=None, nvlink_rx_kib=None,
                             nvlink_crc_flit_errors=None, ecc_dbe_volatile=None)])
    col = NvmlCollector(GpuConfig(hostname="n", xid_events=False, sample_interval_seconds=0), nvml=nvml)
    assert col.initialise()
    for _ in range(2):  # two sampler rounds: GPM and NVLink need both
        for dev in col.devices:
            dev.sampled, dev.sampled_at = col.sample_device(dev), __import__("time").monotonic()
    text = generate_latest(registry_with(col)).decode()
    support = mod.nvml_support(nvml)
    assert support == {"0": {"always", "gpm", "pcie", "nvlink", "ecc", "nvlink_crc"}, "1": {"always", "pcie"}}
    smi = mod.parse_smi("\n".join(smi_line(g, i, **{"utilization.gpu": 50}) for i, g in enumerate(nvml.gpus)))
    rows = mod.compare_sampled(support, (smi, smi), mod.parse_scrape(text), mod.xid_labels(text))
    assert all(r[5] == "ok" for r in rows), mod.format_table(rows)
    assert ("0", "GR_ENGINE_ACTIVE x100 vs utilization.gpu") in [(r[0], r[1]) for r in rows]
    # a field NVML has but the exporter does not publish, and a ratio far from nvidia-smi's utilization
    scraped = mod.parse_scrape(text)
    del scraped["0"]["values"]["DCGM_FI_PROF_PCIE_RX_BYTES"]
    del scraped["0"]["values"]["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"]
    far = mod.parse_smi("\n".join(smi_line(g, i, **{"utilization.gpu": 95}) for i, g in enumerate(nvml.gpus)))
    rows = mod.compare_sampled(support, (far, far), scraped, {})
    failed = [(r[0], r[1]) for r in rows if r[5] == "MISMATCH"]
    assert failed == [("0", "DCGM_FI_PROF_PCIE_RX_BYTES"), ("0", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"),
                      ("0", "GR_ENGINE_ACTIVE x100 vs utilization.gpu"),
                      ("0", "DCGM_FI_DEV_XID_ERRORS err_code/err_msg"),
                      ("1", "DCGM_FI_DEV_XID_ERRORS err_code/err_msg")], mod.format_table(rows)
    col.close()
