"""The NVML GPU exporter against a fake NVML at the pynvml boundary."""

import subprocess
import sys
import time

from prometheus_client import generate_latest

from aiplatform_exporters.config import ConfigError, Reader
from aiplatform_exporters.gpu import GpuConfig, NvmlCollector
from aiplatform_exporters.gpu.exporter import config_from_reader
from conftest import wait_for
from fake_nvml import FakeNvml, gpu, mig
from helpers import registry_with

import pytest

MIB = 1 << 20


def labels(g, index, **extra):
    out = {"gpu": str(index), "UUID": g["uuid"], "pci_bus_id": g["pci"], "device": "nvidia%d" % index,
           "modelName": g["name"], "Hostname": "node1", "DCGM_FI_DRIVER_VERSION": "580.105.08"}
    out.update(extra)
    return out


def make(gpus=None, **cfg):
    nvml = FakeNvml(gpus if gpus is not None else [gpu(0), gpu(1)])
    cfg.setdefault("hostname", "node1")
    cfg.setdefault("xid_events", False)
    cfg.setdefault("sample_interval_seconds", 0)  # the sampler thread: in the tests that want it
    collector = NvmlCollector(GpuConfig(**cfg), nvml=nvml)
    return nvml, collector, registry_with(collector)


def test_dcgm_48_names_labels_and_units():
    nvml, col, reg = make()
    g0 = nvml.gpus[0]
    l0 = labels(g0, 0)
    v = reg.get_sample_value
    assert v("aiplatform_gpu_exporter_up") == 1
    assert v("aiplatform_gpu_exporter_gpus") == 2
    assert v("DCGM_FI_DEV_GPU_TEMP", l0) == 31
    assert v("DCGM_FI_DEV_GPU_TEMP", labels(nvml.gpus[1], 1)) == 32
    assert v("DCGM_FI_DEV_MEMORY_TEMP", l0) == 40
    assert v("DCGM_FI_DEV_SM_CLOCK", l0) == 1980 and v("DCGM_FI_DEV_MEM_CLOCK", l0) == 2619
    assert v("DCGM_FI_DEV_POWER_USAGE", l0) == 72.5  # mW -> W
    assert v("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", l0) == 123456789  # mJ
    assert v("DCGM_FI_DEV_GPU_UTIL", l0) == 37 and v("DCGM_FI_DEV_MEM_COPY_UTIL", l0) == 12
    assert v("DCGM_FI_DEV_ENC_UTIL", l0) == 0 and v("DCGM_FI_DEV_DEC_UTIL", l0) == 3
    assert v("DCGM_FI_DEV_FB_USED", l0) == 1234  # v2 "used" excludes reserved, whole MiB
    assert v("DCGM_FI_DEV_FB_RESERVED", l0) == g0["mem_reserved"] // MIB
    assert v("DCGM_FI_DEV_FB_FREE", l0) == g0["mem_free"] // MIB
    assert v("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", l0) == 0
    assert v("DCGM_FI_DEV_XID_ERRORS", dict(l0, err_code="0", err_msg="No Error")) == 0
    assert v("DCGM_FI_DEV_VGPU_LICENSE_STATUS", l0) == 0  # bare metal: no vGPU licensing, as dcgm-exporter
    assert v("DCGM_FI_DEV_POWER_MGMT_LIMIT", l0) == 700.0  # mW -> W
    assert v("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", l0) == 1  # the bitmask as NVML gives it (1: GPU idle)
    assert v("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", l0) == 0
    assert v("DCGM_FI_DEV_ROW_REMAP_FAILURE", l0) == 0
    assert v("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", l0) == 0
    assert v("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", l0) == 0
    text = generate_latest(reg).decode()
    # dcgm-exporter's label set, exactly (the order in the text is prometheus-client's; Prometheus ignores it)
    temp = [s for fam in reg.collect() if fam.name == "DCGM_FI_DEV_GPU_TEMP" for s in fam.samples]
    assert list(temp[0].labels) == ["gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname",
                                    "DCGM_FI_DRIVER_VERSION"]
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{" in text and "CONSUMPTION_total" not in text


def test_init_once_and_handles_cached():
    nvml, col, reg = make()
    for _ in range(5):
        reg.get_sample_value("aiplatform_gpu_exporter_up")
    assert nvml.calls["nvmlInit"] == 1
    assert nvml.calls["nvmlDeviceGetHandleByIndex"] == 2


def test_unsupported_fields_are_omitted_for_that_gpu_only():
    g1 = gpu(1, unsupported={"nvmlDeviceGetTotalEnergyConsumption", "memory_temp", "nvmlDeviceGetRemappedRows",
                             "nvmlDeviceGetEncoderUtilization"})
    nvml, col, reg = make([gpu(0), g1])
    v = reg.get_sample_value
    l0, l1 = labels(nvml.gpus[0], 0), labels(g1, 1)
    for name in ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_ENC_UTIL",
                 "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS"):
        assert v(name, l0) is not None and v(name, l1) is None, name
    assert v("DCGM_FI_DEV_GPU_TEMP", l1) == 32
    # NotSupported is not an error
    assert v("aiplatform_gpu_exporter_source_errors_total", {"operation": "device"}) == 0


def test_no_driver_serves_only_up_zero_and_retries_init():
    nvml = FakeNvml([gpu(0)], driver=False)
    col = NvmlCollector(GpuConfig(hostname="node1", retry_seconds=0.2, xid_events=False), nvml=nvml)
    reg = registry_with(col)
    text = generate_latest(reg).decode()
    samples = [l for l in text.splitlines() if l and not l.startswith("#")]
    assert samples == ["aiplatform_gpu_exporter_up 0.0"]
    reg.get_sample_value("aiplatform_gpu_exporter_up")
    assert nvml.calls["nvmlInit"] == 1  # no retry before retry_seconds
    nvml.driver = True  # the driver is loaded later (or the GPU comes back)
    assert wait_for(lambda: reg.get_sample_value("aiplatform_gpu_exporter_up") == 1, timeout=3)
    assert reg.get_sample_value("DCGM_FI_DEV_GPU_TEMP", labels(nvml.gpus[0], 0)) == 31


def test_no_gpu_at_all_is_up_zero():
    nvml, col, reg = make([])
    assert reg.get_sample_value("aiplatform_gpu_exporter_up") == 0
    assert reg.get_sample_value("aiplatform_gpu_exporter_gpus") is None


def test_missing_pynvml_module_is_up_zero_without_crash():
    code = ("import sys; sys.modules['pynvml'] = None\n"
            "from prometheus_client import CollectorRegistry, generate_latest\n"
            "from aiplatform_exporters.gpu import NvmlCollector\n"
            "r = CollectorRegistry(); r.register(NvmlCollector())\n"
            "print(generate_latest(r).decode())")
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    assert "aiplatform_gpu_exporter_up 0.0" in out


def test_gpu_lost_then_reinitialised():
    nvml, col, reg = make([gpu(0), gpu(1)], retry_seconds=0.1)
    lost = nvml.gpus[1]["uuid"]
    nvml.lost.add(lost)
    v = reg.get_sample_value
    assert v("DCGM_FI_DEV_GPU_TEMP", labels(nvml.gpus[1], 1)) is None
    assert v("DCGM_FI_DEV_GPU_TEMP", labels(nvml.gpus[0], 0)) == 31
    assert v("aiplatform_gpu_exporter_source_errors_total", {"operation": "device"}) > 0
    time.sleep(0.15)
    v("aiplatform_gpu_exporter_up")  # past retry_seconds: NVML is shut down and initialised again
    assert nvml.calls["nvmlInit"] == 2 and nvml.calls["nvmlShutdown"] == 1
    nvml.lost.clear()  # the GPU was reset
    assert wait_for(lambda: v("DCGM_FI_DEV_GPU_TEMP", labels(nvml.gpus[1], 1)) == 32, timeout=3)
    assert nvml.calls["nvmlInit"] >= 2 and nvml.calls["nvmlShutdown"] >= 1


def test_xid_events_from_the_event_thread():
    nvml, col, reg = make(xid_events=True)
    reg.get_sample_value("aiplatform_gpu_exporter_up")
    nvml.push_xid(1, 79)
    l1 = labels(nvml.gpus[1], 1)
    l1_79 = dict(l1, err_code="79", err_msg="GPU has fallen off the bus")
    assert wait_for(lambda: reg.get_sample_value("DCGM_FI_DEV_XID_ERRORS", l1_79) == 79, timeout=3)
    # one series per GPU: the one of the previous code is gone (dcgm-exporter writes the last Xid only)
    xids = [s for fam in reg.collect() if fam.name == "DCGM_FI_DEV_XID_ERRORS" for s in fam.samples]
    assert sorted((s.labels["gpu"], s.labels["err_code"]) for s in xids) == [("0", "0"), ("1", "79")]
    nvml.push_xid(0, 999)  # past the end of NVIDIA's table
    l0 = labels(nvml.gpus[0], 0, err_code="999", err_msg="Unknown Error")
    assert wait_for(lambda: reg.get_sample_value("DCGM_FI_DEV_XID_ERRORS", l0) == 999, timeout=3)
    col.close()


def test_xid_messages_are_nvidias_table():
    from aiplatform_exporters.gpu import xid

    assert len(xid.MESSAGES) == 173  # codes 0..172, as dcgm-exporter 4.5.3-4.8.2
    assert xid.message(13) == "Graphics Engine Exception"
    assert xid.message(48) == "Double Bit ECC Error"
    assert xid.message(172) == "Uncorrectable SRAM Error"
    assert xid.message(173) == xid.message(-1) == "Unknown Error"


def _first_gpu(col):
    assert col.initialise()
    return col.devices[0]


def test_sampled_fields_pcie_gpm_and_nvlink():
    nvml, col, reg = make([gpu(0)])
    dev = _first_gpu(col)
    first = col.sample_device(dev)
    # PCIe: KB/s -> bytes/s at once; GPM and NVLink need a second sample
    assert first == {"DCGM_FI_PROF_PCIE_TX_BYTES": 120000 * 1024, "DCGM_FI_PROF_PCIE_RX_BYTES": 35000 * 1024}
    nvml.gpus[0]["nvlink_tx_kib"] += 3000000
    nvml.gpus[0]["nvlink_rx_kib"] += 1000000
    t0 = time.monotonic()
    time.sleep(0.2)
    second = col.sample_device(dev)
    elapsed = time.monotonic() - t0
    assert second["DCGM_FI_PROF_GR_ENGINE_ACTIVE"] == 0.375  # GPM percent -> ratio
    assert second["DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"] == 0.42
    assert second["DCGM_FI_PROF_DRAM_ACTIVE"] == 0.6325
    mbs = 4000000 * 1024 / 1e6  # MB moved over the rounds' interval
    assert mbs / (elapsed + 0.05) <= second["DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"] <= mbs / 0.2, second
    nvml.gpus[0]["nvlink_tx_kib"] = 0  # driver reloaded: counters back to zero, no negative rate
    assert "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL" not in col.sample_device(dev)
    col.close()
    assert not nvml.samples_alive and nvml.calls["nvmlGpmSampleFree"] == 2


def test_sampled_fields_reach_the_scrape_without_slowing_it():
    # PCIe throughput takes 0.2 s a call here (20 ms on an H100): 0.8 s a scrape if it were on the path
    nvml = FakeNvml([gpu(0), gpu(1)], pcie_seconds=0.2)
    col = NvmlCollector(GpuConfig(hostname="node1", xid_events=False, sample_interval_seconds=0.5), nvml=nvml)
    reg = registry_with(col)
    l1 = labels(nvml.gpus[1], 1)
    try:
        assert wait_for(lambda: reg.get_sample_value("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", l1) == 0.42, timeout=5)
        assert reg.get_sample_value("DCGM_FI_PROF_PCIE_RX_BYTES", l1) == 35000 * 1024
        assert reg.get_sample_value("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", l1) == 0
        t0 = time.monotonic()
        generate_latest(reg)
        assert time.monotonic() - t0 < 0.15
        # a sampler that stops refreshing (stuck in the driver) leaves the fields absent, not frozen
        col._stop_sampler()
        for dev in col.devices:
            dev.sampled_at -= 60
        assert reg.get_sample_value("DCGM_FI_PROF_PCIE_RX_BYTES", l1) is None
        assert reg.get_sample_value("DCGM_FI_DEV_GPU_TEMP", l1) == 32
    finally:
        col.close()


def test_sampled_fields_a_gpu_does_not_have_are_absent_and_not_asked_again():
    old = gpu(0, name="NVIDIA A100-SXM4-80GB", gpm=None, nvlink_tx_kib=None, nvlink_rx_kib=None,
              unsupported={"nvmlDeviceGetPcieThroughput"})
    nvml, col, reg = make([old])
    dev = _first_gpu(col)
    assert col.sample_device(dev) == {} and col.sample_device(dev) == {}
    assert nvml.calls["nvmlDeviceGetPcieThroughput"] == 2  # TX and RX once, then remembered
    assert nvml.calls["nvmlGpmQueryDeviceSupport"] == 1 and nvml.calls["nvmlGpmSampleAlloc"] == 0
    assert nvml.calls["nvmlDeviceGetFieldValues"] == 1
    assert reg.get_sample_value("aiplatform_gpu_exporter_source_errors_total", {"operation": "sample"}) == 0
    # excluded fields are not sampled at all
    nvml2, col2, _ = make([gpu(0)], exclude_fields=["DCGM_FI_PROF_PCIE_TX_BYTES", "DCGM_FI_PROF_PCIE_RX_BYTES"])
    assert "DCGM_FI_PROF_PCIE_TX_BYTES" not in col2.sample_device(_first_gpu(col2))
    assert nvml2.calls["nvmlDeviceGetPcieThroughput"] == 0
    col.close()
    col2.close()


def test_vgpu_license_status():
    nvml, col, reg = make([gpu(0, vgpu_licensed=True), gpu(1, vgpu_licensed=False)])
    assert reg.get_sample_value("DCGM_FI_DEV_VGPU_LICENSE_STATUS", labels(nvml.gpus[0], 0)) == 1
    assert reg.get_sample_value("DCGM_FI_DEV_VGPU_LICENSE_STATUS", labels(nvml.gpus[1], 1)) == 0


def test_mig_memory_per_instance_and_no_utilization():
    g = gpu(0, name="NVIDIA A100-SXM4-80GB", mig_enabled=True,
            migs=[mig(1, "1g.10gb", 512 * MIB, 9856 * MIB), mig(2, "3g.40gb", 1024 * MIB, 40192 * MIB)])
    nvml, col, reg = make([g])
    v = reg.get_sample_value
    base = labels(g, 0)
    assert v("DCGM_FI_DEV_GPU_UTIL", base) is None  # not supported under MIG
    mig_labels = dict(base)
    for key in ("Hostname", "DCGM_FI_DRIVER_VERSION"):
        mig_labels.pop(key)
    l1 = dict(mig_labels, GPU_I_PROFILE="1g.10gb", GPU_I_ID="1", Hostname="node1",
              DCGM_FI_DRIVER_VERSION="580.105.08")
    l2 = dict(mig_labels, GPU_I_PROFILE="3g.40gb", GPU_I_ID="2", Hostname="node1",
              DCGM_FI_DRIVER_VERSION="580.105.08")
    assert v("DCGM_FI_DEV_FB_USED", l1) == 512 and v("DCGM_FI_DEV_FB_FREE", l1) == 9856 - 512
    assert v("DCGM_FI_DEV_FB_USED", l2) == 1024
    used = [s for fam in reg.collect() if fam.name == "DCGM_FI_DEV_FB_USED" for s in fam.samples]
    assert [list(s.labels) for s in used][1] == ["gpu", "UUID", "pci_bus_id", "device", "modelName",
                                                 "GPU_I_PROFILE", "GPU_I_ID", "Hostname", "DCGM_FI_DRIVER_VERSION"]


def test_host_label_switches_and_rename():
    nvml, col, reg = make(hostname_label="hostname")
    g0 = nvml.gpus[0]
    l0 = labels(g0, 0)
    l0.pop("Hostname")
    l0.update(hostname="node1")
    v = reg.get_sample_value
    # the units stay dcgm-exporter's whatever the label: MHz, %, whole MiB, mJ
    assert v("DCGM_FI_DEV_SM_CLOCK", l0) == 1980
    assert v("DCGM_FI_DEV_GPU_UTIL", l0) == 37
    assert v("DCGM_FI_DEV_FB_USED", l0) == 1234
    assert v("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", l0) == 123456789
    nvml2, col2, reg2 = make(hostname_label="none", rename={"DCGM_FI_DEV_GPU_TEMP": "gpu_temp_celsius"})
    l = labels(nvml2.gpus[0], 0)
    l.pop("Hostname")
    assert reg2.get_sample_value("gpu_temp_celsius", l) == 31
    assert reg2.get_sample_value("DCGM_FI_DEV_GPU_TEMP", l) is None


def test_ecc_double_bit_and_nvlink_crc_errors():
    nvml, col, reg = make([gpu(0, ecc_dbe_volatile=2, nvlink_crc_flit_errors=12345)])
    l0 = labels(nvml.gpus[0], 0)
    assert reg.get_sample_value("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", l0) == 2
    assert reg.get_sample_value("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", l0) == 12345
    # counters under dcgm-exporter's unsuffixed names (their TYPE lines: test_gpu_exposition.py)
    new = {"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"}
    assert new <= col.config.unsuffixed_counters
    # both excludable: then not asked at all
    nvml2, col2, reg2 = make([gpu(0)], exclude_fields=["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
                                                        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"])
    l0 = labels(nvml2.gpus[0], 0)
    assert reg2.get_sample_value("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", l0) is None
    assert reg2.get_sample_value("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", l0) is None
    assert reg2.get_sample_value("DCGM_FI_DEV_GPU_TEMP", l0) == 31
    assert nvml2.calls["nvmlDeviceGetTotalEccErrors"] == 0


def test_ecc_off_and_no_nvlink_are_absent_not_zero_and_not_asked_again():
    # gpu 1: ECC mode off and no NVLink (a PCIe card); gpu 0 has both
    g1 = gpu(1, ecc_dbe_volatile=None, nvlink_crc_flit_errors=None)
    nvml, col, reg = make([gpu(0), g1], slow_fields_max_age_seconds=0)
    l0, l1 = labels(nvml.gpus[0], 0), labels(g1, 1)
    for _ in range(3):
        for name in ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"):
            assert reg.get_sample_value(name, l0) == 0, name
            assert reg.get_sample_value(name, l1) is None, name
    dev1 = col.devices[1]
    assert dev1.slow_unsupported == {"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"}
    before = nvml.calls["nvmlDeviceGetTotalEccErrors"]
    col.read_device(dev1)
    assert nvml.calls["nvmlDeviceGetTotalEccErrors"] == before  # remembered, not asked again
    assert reg.get_sample_value("aiplatform_gpu_exporter_source_errors_total", {"operation": "device"}) == 0
    # the whole call NotSupported (an older driver) is absent too
    nvml2, col2, reg2 = make([gpu(0, unsupported={"nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetFieldValues"})])
    l0 = labels(nvml2.gpus[0], 0)
    assert reg2.get_sample_value("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", l0) is None
    assert reg2.get_sample_value("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", l0) is None
    assert reg2.get_sample_value("DCGM_FI_DEV_GPU_TEMP", l0) == 31


def test_slow_fields_are_cached():
    nvml, col, reg = make([gpu(0)], slow_fields_max_age_seconds=60)
    for _ in range(4):
        reg.get_sample_value("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", labels(nvml.gpus[0], 0))
    assert nvml.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1
    assert nvml.calls["nvmlDeviceGetTotalEccErrors"] == 1
    assert nvml.calls["nvmlDeviceGetTemperature"] == 4


def test_gpu_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"gpu\.schema: only \"4\.8\" .* the \"4\.9\" form matched no dcgm-exporter release"):
        config_from_reader(Reader({"gpu": {"schema": "4.9"}}))
    assert config_from_reader(Reader({"gpu": {"schema": "4.8"}})).hostname_label == "Hostname"  # what it writes
    with pytest.raises(ConfigError, match=r"gpu\.exclude_fields\[0\]: unknown field 'DCGM_FI_DEV_FAN'"):
        config_from_reader(Reader({"gpu": {"exclude_fields": ["DCGM_FI_DEV_FAN"]}}))
    with pytest.raises(ConfigError, match=r"gpu\.rename\.DCGM_FI_DEV_GPU_TEMP: must be a valid metric name"):
        config_from_reader(Reader({"gpu": {"rename": {"DCGM_FI_DEV_GPU_TEMP": "bad name"}}}))
    with pytest.raises(ConfigError, match=r"gpu\.sample_interval_seconds: 0 \(no sampled fields\) or at least 0\.5"):
        config_from_reader(Reader({"gpu": {"sample_interval_seconds": 0.1}}))
    assert config_from_reader(Reader({"gpu": {}})).sample_interval == 5.0
    with pytest.raises(ConfigError, match=r"gpu\.hostnme: unknown key"):
        r = Reader({"gpu": {"hostnme": "x"}})
        config_from_reader(r)


def test_every_gpu_family_is_catalogued_with_its_labels():
    from aiplatform_exporters import catalog

    g = gpu(1, name="NVIDIA A100-SXM4-80GB", mig_enabled=True, migs=[mig(1, "1g.10gb", MIB, 10 * MIB)])
    nvml, col, reg = make([gpu(0), g])
    for fam in reg.collect():
        entry = catalog.spec(fam.name + "_total" if fam.type == "counter" else fam.name)
        for s in fam.samples:
            assert catalog.is_known(s.name), s.name
            assert set(s.labels) <= set(entry.labels), (s.name, s.labels)
