"""GPU metrics from NVML with dcgm-exporter's names, labels and units.

Needs only prometheus-client and nvidia-ml-py (module ``pynvml``, imported when
the collector first initialises, or injected for tests). NVML is initialised
once; device handles and the static labels are cached. Each NVML call is
guarded on its own: a field a GPU does not support is omitted for that GPU and
the scrape goes on. Without a driver or GPU the collector serves
``aiplatform_gpu_exporter_up 0`` only and retries the initialisation every
``retry_seconds``. XID errors come from an NVML event thread. The fields whose
NVML source is slow or needs two samples (PCIe throughput, 20 ms a call; GPM
profiling ratios; the NVLink throughput counters, turned into a rate) are read
by a sampler thread every ``sample_interval_seconds``, never on the scrape path.

The output is what every released dcgm-exporter (through 4.8) writes: MHz, %,
MiB, mJ, W, the driver label ``DCGM_FI_DRIVER_VERSION`` and the host label
``Hostname``; metric names can be remapped with ``rename`` and the host label
switched (see docs/exporters.md).
"""

import logging
import socket
import threading
import time

from prometheus_client import generate_latest
from prometheus_client.core import Metric

from aiplatform_exporters import catalog
from aiplatform_exporters.gpu import xid
from aiplatform_exporters.server import SelfMetrics, Timer, gauge

log = logging.getLogger(__name__)

PREFIX = "aiplatform_gpu_exporter"
MIB = 1 << 20

# NVML constants (nvml.h); read from the module when present.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_NOT_FOUND = 6
_TIMEOUT = 10
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_UNINITIALIZED = 1
_DRIVER_NOT_LOADED = 9
_OMIT = (_NOT_SUPPORTED, _NO_PERMISSION, _NOT_FOUND, _FUNCTION_NOT_FOUND)
_REINIT = (_GPU_IS_LOST, _UNINITIALIZED, _DRIVER_NOT_LOADED)

FIELDS = (
    "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_RESERVED",
    "DCGM_FI_DEV_FB_TOTAL", "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "DCGM_FI_DEV_VGPU_LICENSE_STATUS",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE", "DCGM_FI_DEV_POWER_MGMT_LIMIT", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "DCGM_FI_PROF_DRAM_ACTIVE",
    "DCGM_FI_PROF_PCIE_TX_BYTES", "DCGM_FI_PROF_PCIE_RX_BYTES",
)
SLOW_FIELDS = ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
               "DCGM_FI_DEV_VGPU_LICENSE_STATUS", "DCGM_FI_DEV_POWER_MGMT_LIMIT",
               "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL")
# GPM metric ids (nvml.h NVML_GPM_METRIC_*) of dcgm-exporter's three profiling ratios, Hopper and newer
GPM_FIELDS = (("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "NVML_GPM_METRIC_GRAPHICS_UTIL", 1),
              ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "NVML_GPM_METRIC_ANY_TENSOR_UTIL", 5),
              ("DCGM_FI_PROF_DRAM_ACTIVE", "NVML_GPM_METRIC_DRAM_BW_UTIL", 10))
PCIE_FIELDS = (("DCGM_FI_PROF_PCIE_TX_BYTES", "NVML_PCIE_UTIL_TX_BYTES", 0),
               ("DCGM_FI_PROF_PCIE_RX_BYTES", "NVML_PCIE_UTIL_RX_BYTES", 1))
NVLINK_FIELD = "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"
# the sampler thread's fields
SAMPLED_FIELDS = tuple(f for f, _, _ in GPM_FIELDS + PCIE_FIELDS) + (NVLINK_FIELD,)
_ALL_LINKS = 0xFFFFFFFF  # scopeId of the NVLink throughput fields: the sum over every link
# Hostname: every released dcgm-exporter; hostname: the rename on NVIDIA's unreleased main
# (NVIDIA/dcgm-exporter#655); none: no host label.
HOSTNAME_LABELS = ("Hostname", "hostname", "none")
DRIVER_LABEL = "DCGM_FI_DRIVER_VERSION"
_MEMORY_FIELDS = ("DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_RESERVED", "DCGM_FI_DEV_FB_TOTAL")


class GpuConfig(object):
    def __init__(self, hostname_label="Hostname", hostname=None, retry_seconds=30.0,
                 slow_fields_max_age_seconds=10.0, xid_events=True, mig=True, exclude_fields=(), rename=None,
                 sample_interval_seconds=5.0):
        if hostname_label not in HOSTNAME_LABELS:
            raise ValueError("hostname_label must be one of %s" % ", ".join(HOSTNAME_LABELS))
        unknown = sorted(set(exclude_fields) - set(FIELDS))
        if unknown:
            raise ValueError("unknown field(s) in exclude_fields: %s" % ", ".join(unknown))
        rename = dict(rename or {})
        unknown = sorted(set(rename) - set(FIELDS))
        if unknown:
            raise ValueError("unknown field(s) in rename: %s" % ", ".join(unknown))
        self.hostname_label = hostname_label
        self.hostname = hostname or socket.gethostname()
        self.retry_seconds = float(retry_seconds)
        self.slow_max_age = float(slow_fields_max_age_seconds)
        if sample_interval_seconds and not 0.5 <= float(sample_interval_seconds) <= 3600:
            raise ValueError("sample_interval_seconds must be 0 (no sampled fields) or 0.5 to 3600")
        self.sample_interval = float(sample_interval_seconds or 0)
        self.xid_events = bool(xid_events)
        self.mig = bool(mig)
        self.exclude = frozenset(exclude_fields)
        self.rename = rename
        # dcgm-exporter declares these `counter` under names without the _total suffix
        # (DCGM_FI_DEV_PCIE_REPLAY_COUNTER, ...): their exposition names, for unsuffixed_counter_exposition
        self.unsuffixed_counters = frozenset(
            rename.get(f, f) for f in FIELDS
            if catalog.spec(f).type == "counter" and not rename.get(f, f).endswith("_total"))


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _Device(object):
    def __init__(self, index, handle, uuid, pci_bus_id, name):
        self.index = index
        self.handle = handle
        self.uuid = uuid
        self.pci_bus_id = pci_bus_id
        self.name = name
        self.slow = {}  # field -> (monotonic time, value or None when unsupported)
        # slow fields this GPU answered NotSupported for (ECC off, no NVLink): not asked again; the
        # scrape's own set, apart from the sampler thread's ``unsupported``
        self.slow_unsupported = set()
        self.last_xid = 0
        # written by the sampler thread only: a whole new dict each round, read by the scrape
        self.sampled = {}
        self.sampled_at = None
        self.unsupported = set()  # sampled fields this GPU answered NotSupported for: not asked again
        self.gpm = None  # [previous sample, spare sample] once GPM is known to work
        self.nvlink = None  # (monotonic time, KiB) of the last NVLink throughput reading


class NvmlCollector(object):
    """prometheus_client collector. ``nvml`` is the pynvml module (injected in tests)."""

    def __init__(self, config=None, nvml=None):
        self.config = config or GpuConfig()
        self._nvml = nvml
        self.self_metrics = SelfMetrics(PREFIX)
        self._lock = threading.Lock()
        self._initialised = False
        self._next_init = 0.0
        self.devices = []
        self.driver_version = ""
        self._event_set = None
        self._xid_thread = None
        self._xid_stop = threading.Event()
        self._sampler = None
        self._sampler_stop = threading.Event()
        self._reinit = False

    # ------------------------------------------------------------------ NVML plumbing
    @property
    def nvml(self):
        if self._nvml is None:
            import pynvml  # nvidia-ml-py; imported lazily so hosts without it still serve up=0

            self._nvml = pynvml
        return self._nvml

    def _const(self, name, default):
        return getattr(self.nvml, name, default)

    def _code(self, exc):
        return getattr(exc, "value", None)

    def _error_class(self):
        return getattr(self.nvml, "NVMLError", ())

    def initialise(self):
        """nvmlInit once, cache handles and static labels, start the XID thread. Returns True on success."""
        try:
            nvml = self.nvml
        except ImportError as exc:
            log.warning("NVML unavailable: %s (install nvidia-ml-py)", exc)
            self.self_metrics.error("init")
            return False
        try:
            nvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
            log.warning("nvmlInit failed: %s; retrying in %.0fs", exc, self.config.retry_seconds)
            self.self_metrics.error("init")
            return False
        try:
            self.driver_version = _text(nvml.nvmlSystemGetDriverVersion())
            devices = []
            for i in range(nvml.nvmlDeviceGetCount()):
                h = nvml.nvmlDeviceGetHandleByIndex(i)
                try:
                    pci = _text(nvml.nvmlDeviceGetPciInfo(h).busId)
                except self._error_class():
                    pci = ""
                devices.append(_Device(i, h, _text(nvml.nvmlDeviceGetUUID(h)), pci, _text(nvml.nvmlDeviceGetName(h))))
        except Exception as exc:  # noqa: BLE001
            log.warning("NVML device enumeration failed: %s", exc)
            self.self_metrics.error("init")
            self._shutdown_nvml()
            return False
        if not devices:
            log.warning("NVML found no GPU; retrying in %.0fs", self.config.retry_seconds)
            self._shutdown_nvml()
            return False
        self.devices = devices
        self._initialised = True
        self._reinit = False
        log.info("NVML initialised: driver %s, %d GPU(s)", self.driver_version, len(devices))
        if self.config.xid_events and devices:
            self._start_xid_thread()
        self._start_sampler()
        return True

    def _shutdown_nvml(self):
        self._stop_xid_thread()
        self._stop_sampler()
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._initialised = False
        self.devices = []

    def close(self):
        with self._lock:
            if self._initialised:
                self._shutdown_nvml()

    # ------------------------------------------------------------------ XID events
    def _start_xid_thread(self):
        nvml = self.nvml
        try:
            event_set = nvml.nvmlEventSetCreate()
        except Exception as exc:  # noqa: BLE001
            log.info("NVML events unavailable (%s): DCGM_FI_DEV_XID_ERRORS stays 0", exc)
            return
        xid_type = self._const("nvmlEventTypeXidCriticalError", 0x8)
        registered = 0
        for dev in self.devices:
            try:
                nvml.nvmlDeviceRegisterEvents(dev.handle, xid_type, event_set)
                registered += 1
            except Exception as exc:  # noqa: BLE001 - NotSupported on some GPUs / MIG
                log.info("GPU %d: XID events not available: %s", dev.index, exc)
        if not registered:
            try:
                nvml.nvmlEventSetFree(event_set)
            except Exception:  # noqa: BLE001
                pass
            return
        self._event_set = event_set
        self._xid_stop.clear()
        self._xid_thread = threading.Thread(target=self._xid_loop, args=(event_set,), name="nvml-xid", daemon=True)
        self._xid_thread.start()

    def _xid_loop(self, event_set):
        nvml = self.nvml
        wait = getattr(nvml, "nvmlEventSetWait_v2", None) or nvml.nvmlEventSetWait
        by_uuid = dict((d.uuid, d) for d in self.devices)
        while not self._xid_stop.is_set():
            try:
                data = wait(event_set, 500)
            except Exception as exc:  # noqa: BLE001
                if self._code(exc) == self._const("NVML_ERROR_TIMEOUT", _TIMEOUT):
                    continue
                if self._xid_stop.is_set():
                    return
                self.self_metrics.error("event")
                log.warning("NVML event wait failed: %s", exc)
                self._xid_stop.wait(1.0)
                continue
            try:
                uuid = _text(nvml.nvmlDeviceGetUUID(data.device))
            except Exception:  # noqa: BLE001
                continue
            dev = by_uuid.get(uuid)
            if dev is not None:
                dev.last_xid = int(data.eventData)
                log.warning("GPU %d (%s): XID %d", dev.index, uuid, dev.last_xid)

    def _stop_xid_thread(self):
        self._xid_stop.set()
        if self._xid_thread is not None:
            self._xid_thread.join(timeout=2.0)
            self._xid_thread = None
        if self._event_set is not None:
            try:
                self.nvml.nvmlEventSetFree(self._event_set)
            except Exception:  # noqa: BLE001
                pass
            self._event_set = None

    # ------------------------------------------------------------------ sampler thread
    def _start_sampler(self):
        wanted = set(SAMPLED_FIELDS) - self.config.exclude
        if self.config.sample_interval <= 0 or not wanted:
            return
        self._sampler_stop.clear()
        self._sampler = threading.Thread(target=self._sampler_loop, name="nvml-sampler", daemon=True)
        self._sampler.start()

    def _stop_sampler(self):
        self._sampler_stop.set()
        if self._sampler is not None:
            self._sampler.join(timeout=5.0)
            self._sampler = None
        for dev in self.devices:
            for sample in dev.gpm or ():
                try:
                    self.nvml.nvmlGpmSampleFree(sample)
                except Exception:  # noqa: BLE001 - NVML already shut down
                    pass
            dev.gpm = None

    def _sampler_loop(self):
        interval = self.config.sample_interval
        while not self._sampler_stop.is_set():
            started = time.monotonic()
            for dev in self.devices:
                if self._sampler_stop.is_set():
                    return
                try:
                    dev.sampled, dev.sampled_at = self.sample_device(dev), time.monotonic()
                except Exception:  # noqa: BLE001 - a bug here must not end the thread
                    self.self_metrics.error("sample")
                    log.exception("GPU %d: sampling failed", dev.index)
            self._sampler_stop.wait(max(0.05, interval - (time.monotonic() - started)))

    def sample_device(self, dev):
        """{field: value} of the sampled fields for one GPU (the sampler thread calls it each interval)."""
        nvml = self.nvml
        ex = self.config.exclude | dev.unsupported
        out = {}
        for field, const, default in PCIE_FIELDS:
            if field not in ex:
                ok, kib, code = self._call_code(nvml.nvmlDeviceGetPcieThroughput, dev.handle,
                                                self._const(const, default), operation="sample")
                if ok:
                    out[field] = kib * 1024  # NVML: KB/s over a 20 ms window; dcgm-exporter: bytes/s
                elif code in _OMIT:
                    dev.unsupported.add(field)
        gpm = [(f, self._const(c, d)) for f, c, d in GPM_FIELDS if f not in ex]
        if gpm:
            out.update(self._sample_gpm(dev, gpm))
        if NVLINK_FIELD not in ex:
            rate = self._sample_nvlink(dev)
            if rate is not None:
                out[NVLINK_FIELD] = rate
        return out

    def _sample_gpm(self, dev, metrics):
        """GPM ratios between the previous sample and a new one (nothing on the first round)."""
        nvml = self.nvml
        if dev.gpm is None:
            ok, support, _ = self._call_code(nvml.nvmlGpmQueryDeviceSupport, dev.handle, operation="sample")
            if not ok or not getattr(support, "isSupportedDevice", 0):
                dev.unsupported.update(f for f, _ in metrics)  # before Hopper, or an NVML without GPM
                return {}
            ok1, first, _ = self._call_code(nvml.nvmlGpmSampleAlloc, operation="sample")
            ok2, spare, _ = self._call_code(nvml.nvmlGpmSampleAlloc, operation="sample")
            if not (ok1 and ok2):
                return {}
            ok, _, _ = self._call_code(nvml.nvmlGpmSampleGet, dev.handle, first, operation="sample")
            dev.gpm = [first if ok else None, spare]
            return {}
        previous, current = dev.gpm
        ok, _, _ = self._call_code(nvml.nvmlGpmSampleGet, dev.handle, current, operation="sample")
        if not ok:
            return {}
        dev.gpm = [current, previous]  # the new sample is the next round's first
        if previous is None:
            return {}
        request = nvml.c_nvmlGpmMetricsGet_t()
        request.version = self._const("NVML_GPM_METRICS_GET_VERSION", 1)
        request.numMetrics = len(metrics)
        request.sample1, request.sample2 = previous, current
        for i, (_, metric_id) in enumerate(metrics):
            request.metrics[i].metricId = metric_id
        ok, result, _ = self._call_code(nvml.nvmlGpmMetricsGet, request, operation="sample")
        if not ok:
            return {}
        out = {}
        for i, (field, _) in enumerate(metrics):
            m = result.metrics[i]
            if m.nvmlReturn == 0:
                out[field] = max(0.0, min(1.0, m.value / 100.0))  # GPM: percent; DCGM: ratio 0..1
        return out

    def _sample_nvlink(self, dev):
        """MB/s over every link (data TX + RX), from NVML's cumulative KiB counters between two rounds."""
        ids = [(self._const("NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX", 138), _ALL_LINKS),
               (self._const("NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX", 139), _ALL_LINKS)]
        ok, values, code = self._call_code(self.nvml.nvmlDeviceGetFieldValues, dev.handle, ids, operation="sample")
        if not ok or any(getattr(v, "nvmlReturn", 0) != 0 for v in values):
            if code in _OMIT or ok:  # the call or its entries NotSupported: no NVLink on this GPU
                dev.unsupported.add(NVLINK_FIELD)
            return None
        kib = sum(self._value_of(v) for v in values)
        now = time.monotonic()
        previous, dev.nvlink = dev.nvlink, (now, kib)
        if previous is None or kib < previous[1] or now <= previous[0]:
            return None  # first round, or the counters were reset (driver reload)
        return (kib - previous[1]) * 1024 / (now - previous[0]) / 1e6

    # ------------------------------------------------------------------ reading
    def _call(self, fn, *args, **kwargs):
        """Run one NVML call; returns (ok, value). Unsupported -> (False, None) silently."""
        ok, value, _ = self._call_code(fn, *args, **kwargs)
        return ok, value

    def _call_code(self, fn, *args, **kwargs):
        """(ok, value, NVML error code or None); errors other than NotSupported and the like are counted
        under ``operation`` (default "device")."""
        operation = kwargs.pop("operation", "device")
        try:
            return True, fn(*args, **kwargs), None
        except self._error_class() as exc:
            code = self._code(exc)
            if code in _REINIT:
                self._reinit = True
            if code not in _OMIT:
                self.self_metrics.error(operation)
                log.debug("NVML call %s failed: %s", getattr(fn, "__name__", fn), exc)
            return False, None, code

    @staticmethod
    def _value_of(fv):
        attr = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal"}.get(
            getattr(fv, "valueType", 0), "dVal")
        return getattr(fv.value, attr)

    def _field_value(self, handle, field_id):
        nvml = self.nvml
        ok, values = self._call(nvml.nvmlDeviceGetFieldValues, handle, [field_id])
        if not ok or not values:
            return None
        fv = values[0]
        if getattr(fv, "nvmlReturn", 0) != 0:
            return None
        return self._value_of(fv)

    def _slow(self, dev, field, fn, *args, once=False):
        """A field read at most every slow_max_age seconds. once=True, for a field a GPU may lack (ECC
        off, no NVLink): NotSupported (or the like) leaves it absent and it is not asked again for this
        GPU; other errors are counted and retried after the cache age."""
        if once and field in dev.slow_unsupported:
            return None
        now = time.monotonic()
        cached = dev.slow.get(field)
        if cached is not None and now - cached[0] < self.config.slow_max_age:
            return cached[1]
        ok, value, code = self._call_code(fn, dev.handle, *args)
        if once and not ok and code in _OMIT:
            dev.slow_unsupported.add(field)
        dev.slow[field] = (now, value if ok else None)
        return value if ok else None

    def _nvlink_crc_flit_errors(self, handle):
        """NVLink flow-control CRC errors over every lane; NotSupported (no NVLink) as an NVML error."""
        field_id = self._const("NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", 38)
        values = self.nvml.nvmlDeviceGetFieldValues(handle, [field_id])
        fv = values[0] if values else None
        code = getattr(fv, "nvmlReturn", _NOT_SUPPORTED) if fv is not None else _NOT_SUPPORTED
        if code != 0:
            raise self._error_class()(code)
        return self._value_of(fv)

    def _memory(self, handle):
        """(free, used, reserved or None, total) in bytes; v2 where the driver has it (used excludes reserved)."""
        nvml = self.nvml
        v2 = getattr(nvml, "nvmlMemory_v2", None)
        if v2 is not None:
            try:
                info = nvml.nvmlDeviceGetMemoryInfo(handle, version=v2)
                return info.free, info.used, getattr(info, "reserved", None), info.total
            except TypeError:
                pass  # an nvidia-ml-py without the version argument
            except self._error_class() as exc:
                if self._code(exc) not in _OMIT:
                    if self._code(exc) in _REINIT:
                        self._reinit = True
                    self.self_metrics.error("device")
                    return None
        ok, info = self._call(nvml.nvmlDeviceGetMemoryInfo, handle)
        if not ok:
            return None
        return info.free, info.used, None, info.total

    def read_device(self, dev):
        """{field: value in dcgm-exporter's units} for one GPU; unsupported fields are absent."""
        nvml = self.nvml
        h = dev.handle
        out = {}
        ex = self.config.exclude
        if "DCGM_FI_DEV_SM_CLOCK" not in ex:
            ok, v = self._call(nvml.nvmlDeviceGetClockInfo, h, self._const("NVML_CLOCK_SM", 1))
            if ok:
                out["DCGM_FI_DEV_SM_CLOCK"] = v
        if "DCGM_FI_DEV_MEM_CLOCK" not in ex:
            ok, v = self._call(nvml.nvmlDeviceGetClockInfo, h, self._const("NVML_CLOCK_MEM", 2))
            if ok:
                out["DCGM_FI_DEV_MEM_CLOCK"] = v
        if "DCGM_FI_DEV_GPU_TEMP" not in ex:
            sensor = self._const("NVML_TEMPERATURE_GPU", 0)
            fn = getattr(nvml, "nvmlDeviceGetTemperature", None)
            if fn is not None:
                ok, v = self._call(fn, h, sensor)
            else:  # NVML 13 bindings may drop the deprecated call
                ok, v = self._call(nvml.nvmlDeviceGetTemperatureV, h, sensor)
                v = getattr(v, "temperature", v)
            if ok:
                out["DCGM_FI_DEV_GPU_TEMP"] = v
        if "DCGM_FI_DEV_MEMORY_TEMP" not in ex:
            v = self._field_value(h, self._const("NVML_FI_DEV_MEMORY_TEMP", 82))
            if v is not None:
                out["DCGM_FI_DEV_MEMORY_TEMP"] = v
        if "DCGM_FI_DEV_POWER_USAGE" not in ex:
            ok, v = self._call(nvml.nvmlDeviceGetPowerUsage, h)
            if ok:
                out["DCGM_FI_DEV_POWER_USAGE"] = v / 1000.0
        for field, fn_name in (("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "nvmlDeviceGetTotalEnergyConsumption"),
                               ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "nvmlDeviceGetPcieReplayCounter")):
            if field not in ex:
                v = self._slow(dev, field, getattr(nvml, fn_name))
                if v is not None:
                    out[field] = v
        if "DCGM_FI_DEV_GPU_UTIL" not in ex or "DCGM_FI_DEV_MEM_COPY_UTIL" not in ex:
            ok, u = self._call(nvml.nvmlDeviceGetUtilizationRates, h)
            if ok:
                if "DCGM_FI_DEV_GPU_UTIL" not in ex:
                    out["DCGM_FI_DEV_GPU_UTIL"] = u.gpu
                if "DCGM_FI_DEV_MEM_COPY_UTIL" not in ex:
                    out["DCGM_FI_DEV_MEM_COPY_UTIL"] = u.memory
        for field, fn_name in (("DCGM_FI_DEV_ENC_UTIL", "nvmlDeviceGetEncoderUtilization"),
                               ("DCGM_FI_DEV_DEC_UTIL", "nvmlDeviceGetDecoderUtilization")):
            if field not in ex:
                ok, v = self._call(getattr(nvml, fn_name), h)
                if ok:
                    out[field] = v[0]
        self._add_memory(out, h)
        if not {"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
                "DCGM_FI_DEV_ROW_REMAP_FAILURE"} <= ex:
            fn = getattr(nvml, "nvmlDeviceGetRemappedRows", None)
            if fn is not None:
                ok, v = self._call(fn, h)
                if ok:
                    corr, unc, _pending, failure = v[0], v[1], v[2], v[3]
                    for field, value in (("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", corr),
                                         ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", unc),
                                         ("DCGM_FI_DEV_ROW_REMAP_FAILURE", 1 if failure else 0)):
                        if field not in ex:
                            out[field] = value
        if "DCGM_FI_DEV_XID_ERRORS" not in ex:
            out["DCGM_FI_DEV_XID_ERRORS"] = dev.last_xid
        if "DCGM_FI_DEV_POWER_MGMT_LIMIT" not in ex:
            v = self._slow(dev, "DCGM_FI_DEV_POWER_MGMT_LIMIT", nvml.nvmlDeviceGetPowerManagementLimit)
            if v is not None:
                out["DCGM_FI_DEV_POWER_MGMT_LIMIT"] = v / 1000.0  # mW -> W
        if "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" not in ex:
            # double-bit (uncorrectable) errors since the last driver load: DCGM's ECC_DBE_VOL_TOTAL
            v = self._slow(dev, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", nvml.nvmlDeviceGetTotalEccErrors,
                           self._const("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1), self._const("NVML_VOLATILE_ECC", 0),
                           once=True)
            if v is not None:
                out["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"] = v
        if "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL" not in ex:
            v = self._slow(dev, "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", self._nvlink_crc_flit_errors,
                           once=True)
            if v is not None:
                out["DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"] = v
        if "DCGM_FI_DEV_CLOCKS_EVENT_REASONS" not in ex:
            # "clocks event reasons" since NVML 12.535, "throttle reasons" before; the same bitmask
            fn = (getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
                  or nvml.nvmlDeviceGetCurrentClocksThrottleReasons)
            ok, v = self._call(fn, h)
            if ok:
                out["DCGM_FI_DEV_CLOCKS_EVENT_REASONS"] = v
        if "DCGM_FI_DEV_VGPU_LICENSE_STATUS" not in ex:
            v = self._slow(dev, "DCGM_FI_DEV_VGPU_LICENSE_STATUS", self._vgpu_license)
            if v is not None:
                out["DCGM_FI_DEV_VGPU_LICENSE_STATUS"] = v
        sampled, at = dev.sampled, dev.sampled_at
        # a value the sampler has not refreshed for three intervals is stale (the thread is stuck): absent
        if at is not None and time.monotonic() - at <= 3 * self.config.sample_interval + 1:
            out.update((f, v) for f, v in sampled.items() if f not in ex)
        return out

    def _vgpu_license(self, handle):
        """1 when a vGPU licence is held, 0 when not or when the GPU has no vGPU licensing (bare metal:
        what dcgm-exporter publishes there); an error other than NotSupported leaves the field absent."""
        fn = getattr(self.nvml, "nvmlDeviceGetGridLicensableFeatures", None)
        if fn is None:
            return 0
        ok, features, code = self._call_code(fn, handle)
        if not ok:
            return 0 if code in _OMIT else None
        if not getattr(features, "isGridLicenseSupported", 0):
            return 0
        count = min(features.licensableFeaturesCount, len(features.gridLicensableFeatures))
        return 1 if any(features.gridLicensableFeatures[i].featureState for i in range(count)) else 0

    def _add_memory(self, out, handle):
        mem = self._memory(handle)
        if mem is None:
            return
        free, used, reserved, total = mem
        for field, value in (("DCGM_FI_DEV_FB_FREE", free), ("DCGM_FI_DEV_FB_USED", used),
                             ("DCGM_FI_DEV_FB_RESERVED", reserved), ("DCGM_FI_DEV_FB_TOTAL", total)):
            if value is not None and field not in self.config.exclude:
                out[field] = ("bytes", value)

    def read_mig(self, dev):
        """[(profile, gpu_instance_id, {memory fields})] for the MIG devices of a MIG-enabled GPU."""
        nvml = self.nvml
        fn = getattr(nvml, "nvmlDeviceGetMigMode", None)
        if fn is None:
            return []
        ok, mode = self._call(fn, dev.handle)
        if not ok or not mode or mode[0] != self._const("NVML_DEVICE_MIG_ENABLE", 1):
            return []
        ok, count = self._call(nvml.nvmlDeviceGetMaxMigDeviceCount, dev.handle)
        if not ok:
            return []
        out = []
        for i in range(count):
            ok, mh = self._call(nvml.nvmlDeviceGetMigDeviceHandleByIndex, dev.handle, i)
            if not ok:
                continue
            ok, gi = self._call(nvml.nvmlDeviceGetGpuInstanceId, mh)
            ok_name, name = self._call(nvml.nvmlDeviceGetName, mh)
            if not ok:
                continue
            name = _text(name) if ok_name else ""
            profile = name.split("MIG ", 1)[1].strip() if "MIG " in name else name
            fields = {}
            self._add_memory(fields, mh)
            out.append((profile, str(gi), fields))
        return out

    # ------------------------------------------------------------------ exposition
    def _labels(self, dev, mig=None):
        labels = {"gpu": str(dev.index), "UUID": dev.uuid, "pci_bus_id": dev.pci_bus_id,
                  "device": "nvidia%d" % dev.index, "modelName": dev.name}
        if mig is not None:
            labels["GPU_I_PROFILE"], labels["GPU_I_ID"] = mig
        if self.config.hostname_label != "none":
            labels[self.config.hostname_label] = self.config.hostname
        labels[DRIVER_LABEL] = self.driver_version
        return labels

    @staticmethod
    def _convert(value):
        if isinstance(value, tuple) and value[0] == "bytes":
            return float(value[1] // MIB)  # dcgm-exporter's whole MiB
        return float(value)

    def _families(self, rows):
        fams = {}
        for field in FIELDS:
            if field in self.config.exclude:
                continue
            entry = catalog.spec(field)
            # dcgm-exporter declares a few of these "counter" without the _total suffix; prometheus-client's
            # text format would name such a counter's TYPE line X_total, so the family is untyped here and
            # unsuffixed_counter_exposition writes its TYPE line as dcgm-exporter does
            fams[field] = Metric(self.config.rename.get(field, field), entry.help,
                                 "unknown" if entry.type == "counter" else entry.type)
        for labels, values in rows:
            for field, value in values.items():
                fam = fams.get(field)
                if fam is None or value is None:
                    continue
                sample_labels = labels
                if field == "DCGM_FI_DEV_XID_ERRORS":
                    # dcgm-exporter (4.0+) labels the last Xid with its code and NVIDIA's description
                    code = int(value)
                    sample_labels = dict(labels, err_code=str(code), err_msg=xid.message(code))
                fam.add_sample(fam.name, sample_labels, self._convert(value))
        return [f for f in fams.values() if f.samples]

    def collect(self):
        with self._lock, Timer() as timer:
            now = time.monotonic()
            if self._initialised and self._reinit and now >= self._next_init:
                log.warning("NVML reported a lost GPU or driver: re-initialising")
                self._shutdown_nvml()
            if not self._initialised and now >= self._next_init:
                if not self.initialise():
                    self._next_init = now + self.config.retry_seconds
            rows = []
            up = self._initialised
            if up:
                for dev in self.devices:
                    rows.append((self._labels(dev), self.read_device(dev)))
                    if self.config.mig:
                        for profile, gi, fields in self.read_mig(dev):
                            rows.append((self._labels(dev, (profile, gi)), fields))
                if self._reinit:
                    self._next_init = now + min(self.config.retry_seconds, 5.0)
            families = self._families(rows) if up else []
        if not up:
            # no driver, no GPU or NVML not initialised yet: the up series and nothing else
            yield gauge(PREFIX + "_up", 0)
            return
        for fam in self.self_metrics.families(up, timer.elapsed, operations=("init", "device", "event", "sample"),
                                              with_bad_rows=False):
            yield fam
        yield gauge(PREFIX + "_gpus", len(self.devices))
        for fam in families:
            yield fam


def unsuffixed_counter_exposition(registry, counters):
    """The text format 0.0.4 that dcgm-exporter serves (never OpenMetrics, whose counters need _total),
    with ``# TYPE <name> counter`` for the families in ``counters``: counters that dcgm-exporter names
    without the _total suffix, which prometheus-client can only write untyped."""
    text = generate_latest(registry)
    for name in counters:
        text = text.replace(b"# TYPE %s untyped\n" % name.encode(), b"# TYPE %s counter\n" % name.encode(), 1)
    return text

