"""A fake ``pynvml`` module for CPU tests: the same functions, constants and error model.

It is injected at the pynvml boundary (``NvmlCollector(nvml=FakeNvml(...))``), so
everything above it is the real code. Each GPU is a dict of readings; listing a
function name in ``unsupported`` makes it raise NVMLError(NOT_SUPPORTED) for that GPU.
"""

import collections
import threading
import types

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
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
    NVML_DEVICE_MIG_ENABLE = 1
    nvmlEventTypeXidCriticalError = 8
    nvmlMemory_v2 = object()

    def __init__(self, gpus=(), driver=True, driver_version="580.105.08"):
        types.ModuleType.__init__(self, "pynvml")
        self.gpus = list(gpus)
        self.driver = driver
        self.driver_version = driver_version
        self.initialised = False
        self.calls = collections.Counter()
        self.events = collections.deque()
        self.lost = set()
        self._event_cv = threading.Condition()

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
        out = []
        for _ in ids:
            ok = "memory_temp" not in h.gpu["unsupported"]
            out.append(types.SimpleNamespace(nvmlReturn=0 if ok else NVML_ERROR_NOT_SUPPORTED, valueType=1,
                                             value=types.SimpleNamespace(uiVal=h.gpu["mem_temp"])))
        return out

    def nvmlDeviceGetPowerUsage(self, h):
        self._check(h, "nvmlDeviceGetPowerUsage")
        return h.gpu["power_mw"]

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self._check(h, "nvmlDeviceGetTotalEnergyConsumption")
        return h.gpu["energy_mj"]

    def nvmlDeviceGetPcieReplayCounter(self, h):
        self._check(h, "nvmlDeviceGetPcieReplayCounter")
        return h.gpu["pcie_replay"]

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
