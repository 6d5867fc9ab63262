"""A fake ``pynvml`` module for CPU tests: the same functions, constants and error model.

It is injected at the pynvml boundary (``NvmlCollector(nvml=FakeNvml(...))``), so
everything above it is the real code. Each GPU is a dict of readings; listing a
function name in ``unsupported`` makes it raise NVMLError(NOT_SUPPORTED) for that GPU.
"""

import collections
import threading
import time
import types

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15


class NVMLError(Exception):
    def __init__(self, value):
        Exception.__init__(self, "NVML error %d" % value)
        self.value = value


class Handle(object):
    def __init__(self, gpu, mig=None):
        self.gpu = gpu
        self.mig = mig


def gpu(index, name="NVIDIA H100 80GB HBM3", **overrides):
    g = dict(
        uuid="GPU-%08d-aaaa-bbbb-cccc-000000000000" % index, pci="00000000:%02X:00.0" % (0x53 + index), name=name,
        sm_clock=1980, mem_clock=2619, temp=31 + index, mem_temp=40, power_mw=72500, energy_mj=123456789,
        pcie_replay=0, util_gpu=37, util_mem=12, enc=0, dec=3,
        mem_total=85520809984, mem_reserved=566231040, mem_used=1048576 * 1234 + 77, remapped=(0, 0, False, False),
        mig_enabled=False, migs=[], unsupported=set(),
        # sampled fields: PCIe throughput KB/s, GPM percent by metric id (None: a GPU without GPM, as
        # before Hopper), NVLink data counters in KiB (None: no NVLink), vGPU licence (None: bare metal)
        pcie_tx_kbs=120000, pcie_rx_kbs=35000, gpm={1: 37.5, 5: 42.0, 10: 63.25},
        nvlink_tx_kib=0, nvlink_rx_kib=0, nvlink_tx_kib_per_second=0, vgpu_licensed=None,
        power_limit_mw=700000, clocks_event_reasons=0x1,  # GPU idle
        # volatile double-bit ECC errors (None: ECC off), NVLink flow-control CRC errors (None: no NVLink)
        ecc_dbe_volatile=0, nvlink_crc_flit_errors=0,
    )
    g["mem_free"] = g["mem_total"] - g["mem_reserved"] - g["mem_used"]
    g.update(overrides)
    return g


def mig(gi, profile, used, total, parent_name="NVIDIA A100-SXM4-80GB"):
    return dict(gi=gi, name="%s MIG %s" % (parent_name, profile), used=used, total=total, free=total - used)


class FakeNvml(types.ModuleType):
    NVMLError = NVMLError
    NVML_ERROR_TIMEOUT = NVML_ERROR_TIMEOUT
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    NVML_FI_DEV_MEMORY_TEMP = 82
    NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX = 138
    NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX = 139
    NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL = 38
    NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    NVML_AGGREGATE_ECC = 1
    NVML_PCIE_UTIL_TX_BYTES = 0
    NVML_PCIE_UTIL_RX_BYTES = 1
    NVML_GPM_METRIC_GRAPHICS_UTIL = 1
    NVML_GPM_METRIC_ANY_TENSOR_UTIL = 5
    NVML_GPM_METRIC_DRAM_BW_UTIL = 10
    NVML_GPM_METRICS_GET_VERSION = 1
    NVML_DEVICE_MIG_ENABLE = 1
    nvmlEventTypeXidCriticalError = 8
    nvmlMemory_v2 = object()

    def __init__(self, gpus=(), driver=True, driver_version="580.105.08", pcie_seconds=0.0):
        types.ModuleType.__init__(self, "pynvml")
        self.gpus = list(gpus)
        self.driver = driver
        self.driver_version = driver_version
        self.initialised = False
        self.calls = collections.Counter()
        self.events = collections.deque()
        self.lost = set()
        self._event_cv = threading.Condition()
        self.pcie_seconds = pcie_seconds  # a real nvmlDeviceGetPcieThroughput samples a 20 ms window
        self.samples_alive = set()

    # -- helpers
    def _count(self, name):
        self.calls[name] += 1

    def _check(self, h, fn):
        self._count(fn)
        if not self.initialised:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if h.gpu["uuid"] in self.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if fn in h.gpu["unsupported"] and h.mig is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    def push_xid(self, index, xid):
        with self._event_cv:
            self.events.append((Handle(self.gpus[index]), xid))
            self._event_cv.notify_all()

    # -- init
    def nvmlInit(self):
        self._count("nvmlInit")
        if not self.driver:
            raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED)
        self.initialised = True

    def nvmlShutdown(self):
        self._count("nvmlShutdown")
        self.initialised = False

    def nvmlSystemGetDriverVersion(self):
        return self.driver_version

    def nvmlDeviceGetCount(self):
        self._count("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        self._count("nvmlDeviceGetHandleByIndex")
        return Handle(self.gpus[i])

    def nvmlDeviceGetUUID(self, h):
        return h.gpu["uuid"]

    def nvmlDeviceGetName(self, h):
        return (h.mig["name"] if h.mig else h.gpu["name"]).encode()  # older bindings return bytes

    def nvmlDeviceGetPciInfo(self, h):
        return types.SimpleNamespace(busId=h.gpu["pci"])

    # -- readings
    def nvmlDeviceGetClockInfo(self, h, clock):
        self._check(h, "nvmlDeviceGetClockInfo")
        return h.gpu["sm_clock"] if clock == self.NVML_CLOCK_SM else h.gpu["mem_clock"]

    def nvmlDeviceGetTemperature(self, h, sensor):
        self._check(h, "nvmlDeviceGetTemperature")
        return h.gpu["temp"]

    def nvmlDeviceGetFieldValues(self, h, ids):
        self._check(h, "nvmlDeviceGetFieldValues")
        g = h.gpu
        out = []
        for entry in ids:
            field, scope = entry if isinstance(entry, tuple) else (entry, 0)
            if field == self.NVML_FI_DEV_MEMORY_TEMP:
                ok, vt, value = "memory_temp" not in g["unsupported"], 1, types.SimpleNamespace(uiVal=g["mem_temp"])
            elif field in (self.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, self.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX):
                if scope != 0xFFFFFFFF:
                    raise AssertionError("the exporter asks for the sum over every link (scopeId UINT_MAX)")
                if field == self.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX:
                    kib = g["nvlink_tx_kib"]
                    if kib is not None:  # steady traffic: the counter grows with the clock
                        kib += int(g["nvlink_tx_kib_per_second"] * time.monotonic())
                else:
                    kib = g["nvlink_rx_kib"]
                ok, vt, value = kib is not None, 3, types.SimpleNamespace(ullVal=kib or 0)
            elif field == self.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL:
                crc = g["nvlink_crc_flit_errors"]
                ok, vt, value = crc is not None, 3, types.SimpleNamespace(ullVal=crc or 0)
            else:
                ok, vt, value = False, 1, types.SimpleNamespace(uiVal=0)
            out.append(types.SimpleNamespace(fieldId=field, scopeId=scope, valueType=vt, value=value,
                                             nvmlReturn=0 if ok else NVML_ERROR_NOT_SUPPORTED))
        return out

    def nvmlDeviceGetPcieThroughput(self, h, counter):
        self._check(h, "nvmlDeviceGetPcieThroughput")
        if self.pcie_seconds:
            time.sleep(self.pcie_seconds)
        return h.gpu["pcie_tx_kbs"] if counter == self.NVML_PCIE_UTIL_TX_BYTES else h.gpu["pcie_rx_kbs"]

    def nvmlDeviceGetGridLicensableFeatures(self, h):
        self._check(h, "nvmlDeviceGetGridLicensableFeatures")
        if h.gpu["vgpu_licensed"] is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        feature = types.SimpleNamespace(featureCode=1, featureState=1 if h.gpu["vgpu_licensed"] else 0)
        return types.SimpleNamespace(isGridLicenseSupported=1, licensableFeaturesCount=1,
                                     gridLicensableFeatures=[feature, types.SimpleNamespace(featureState=1)])

    # -- GPM (Hopper and newer): two samples, then the metrics between them
    def nvmlGpmQueryDeviceSupport(self, h):
        self._check(h, "nvmlGpmQueryDeviceSupport")
        return types.SimpleNamespace(version=1, isSupportedDevice=0 if h.gpu["gpm"] is None else 1)

    def nvmlGpmSampleAlloc(self):
        self._count("nvmlGpmSampleAlloc")
        sample = types.SimpleNamespace(taken=None, gpu=None)
        self.samples_alive.add(id(sample))
        return sample

    def nvmlGpmSampleFree(self, sample):
        self._count("nvmlGpmSampleFree")
        self.samples_alive.discard(id(sample))

    def nvmlGpmSampleGet(self, h, sample):
        self._check(h, "nvmlGpmSampleGet")
        sample.taken, sample.gpu = time.monotonic(), h.gpu["uuid"]
        return sample

    class c_nvmlGpmMetricsGet_t(object):
        def __init__(self):
            self.version = self.numMetrics = 0
            self.sample1 = self.sample2 = None
            self.metrics = [types.SimpleNamespace(metricId=0, nvmlReturn=0, value=0.0) for _ in range(98)]

    def nvmlGpmMetricsGet(self, request):
        self._count("nvmlGpmMetricsGet")
        s1, s2 = request.sample1, request.sample2
        if (request.version != 1 or s1 is None or s2 is None or s1 is s2 or s1.taken is None
                or s2.taken is None or s1.taken >= s2.taken or s1.gpu != s2.gpu):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)  # as NVML: two samples of one GPU, in order
        gpm = next(g for g in self.gpus if g["uuid"] == s1.gpu)["gpm"]
        for m in request.metrics[:request.numMetrics]:
            if m.metricId in gpm:
                m.value, m.nvmlReturn = gpm[m.metricId], 0
            else:
                m.value, m.nvmlReturn = 0.0, NVML_ERROR_NOT_SUPPORTED
        return request

    def nvmlDeviceGetPowerUsage(self, h):
        self._check(h, "nvmlDeviceGetPowerUsage")
        return h.gpu["power_mw"]

    def nvmlDeviceGetPowerManagementLimit(self, h):
        self._check(h, "nvmlDeviceGetPowerManagementLimit")
        return h.gpu["power_limit_mw"]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        self._check(h, "nvmlDeviceGetCurrentClocksEventReasons")
        return h.gpu["clocks_event_reasons"]

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self._check(h, "nvmlDeviceGetTotalEnergyConsumption")
        return h.gpu["energy_mj"]

    def nvmlDeviceGetPcieReplayCounter(self, h):
        self._check(h, "nvmlDeviceGetPcieReplayCounter")
        return h.gpu["pcie_replay"]

    def nvmlDeviceGetTotalEccErrors(self, h, error_type, counter_type):
        self._check(h, "nvmlDeviceGetTotalEccErrors")
        if (error_type, counter_type) != (self.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, self.NVML_VOLATILE_ECC):
            raise AssertionError("the exporter asks for the volatile uncorrected (double-bit) count only")
        if h.gpu["ecc_dbe_volatile"] is None:  # ECC mode off
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return h.gpu["ecc_dbe_volatile"]

    def nvmlDeviceGetUtilizationRates(self, h):
        self._check(h, "nvmlDeviceGetUtilizationRates")
        if h.gpu["mig_enabled"]:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return types.SimpleNamespace(gpu=h.gpu["util_gpu"], memory=h.gpu["util_mem"])

    def nvmlDeviceGetEncoderUtilization(self, h):
        self._check(h, "nvmlDeviceGetEncoderUtilization")
        return [h.gpu["enc"], 167000]

    def nvmlDeviceGetDecoderUtilization(self, h):
        self._check(h, "nvmlDeviceGetDecoderUtilization")
        return [h.gpu["dec"], 167000]

    def nvmlDeviceGetMemoryInfo(self, h, version=None):
        self._check(h, "nvmlDeviceGetMemoryInfo")
        if h.mig is not None:
            return types.SimpleNamespace(total=h.mig["total"], used=h.mig["used"], free=h.mig["free"])
        g = h.gpu
        if version is self.nvmlMemory_v2:
            return types.SimpleNamespace(total=g["mem_total"], reserved=g["mem_reserved"], used=g["mem_used"],
                                         free=g["mem_free"])
        return types.SimpleNamespace(total=g["mem_total"], used=g["mem_used"] + g["mem_reserved"],
                                     free=g["mem_free"])

    def nvmlDeviceGetRemappedRows(self, h):
        self._check(h, "nvmlDeviceGetRemappedRows")
        return h.gpu["remapped"]

    # -- MIG
    def nvmlDeviceGetMigMode(self, h):
        self._check(h, "nvmlDeviceGetMigMode")
        return (1, 1) if h.gpu["mig_enabled"] else (0, 0)

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, i):
        if i >= len(h.gpu["migs"]):
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return Handle(h.gpu, mig=h.gpu["migs"][i])

    def nvmlDeviceGetGpuInstanceId(self, h):
        return h.mig["gi"]

    # -- events
    def nvmlEventSetCreate(self):
        return object()

    def nvmlDeviceRegisterEvents(self, h, types_, event_set):
        self._check(h, "nvmlDeviceRegisterEvents")

    def nvmlEventSetWait_v2(self, event_set, timeout_ms):
        with self._event_cv:
            if not self.events:
                self._event_cv.wait(timeout_ms / 1000.0)
            if not self.events:
                raise NVMLError(NVML_ERROR_TIMEOUT)
            handle, xid = self.events.popleft()
        return types.SimpleNamespace(device=handle, eventData=xid, eventType=8)

    def nvmlEventSetFree(self, event_set):
        pass
