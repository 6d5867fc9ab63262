"""aiplatform-gpu-exporter: dcgm-exporter-compatible GPU metrics from NVML."""

from aiplatform_exporters import server
from aiplatform_exporters.config import ConfigError
from aiplatform_exporters.gpu.collector import (FIELDS, HOSTNAME_LABELS, GpuConfig, NvmlCollector,
                                                unsuffixed_counter_exposition)

DEFAULT_PORT = 19843


def config_from_reader(reader):
    g = reader.sub("gpu")
    # releases up to 0.1 offered "4.9", a form no dcgm-exporter release writes; "4.8" is what it writes
    if g.get("schema", str, "4.8") != "4.8":
        raise ConfigError("%s: only \"4.8\" (what every released dcgm-exporter writes) is left; the \"4.9\" "
                          "form matched no dcgm-exporter release and was removed. Delete the key." % g.key("schema"))
    hostname_label = g.get("hostname_label", str, "Hostname", choices=HOSTNAME_LABELS)
    hostname = g.get("hostname", str, None)
    retry = g.get("retry_seconds", float, 30.0, minimum=1.0, maximum=3600.0)
    slow = g.get("slow_fields_max_age_seconds", float, 10.0, minimum=0.0, maximum=3600.0)
    sample = g.get("sample_interval_seconds", float, 5.0, minimum=0.0, maximum=3600.0)
    if 0 < sample < 0.5:
        raise ConfigError("%s: 0 (no sampled fields) or at least 0.5, got %s" % (g.key("sample_interval_seconds"),
                                                                                  sample))
    xid = g.get("xid_events", bool, True)
    mig = g.get("mig", bool, True)
    exclude = g.get("exclude_fields", list, [])
    for i, field in enumerate(exclude):
        if field not in FIELDS:
            raise ConfigError("%s[%d]: unknown field %r (known: %s)" % (g.key("exclude_fields"), i, field,
                                                                      ", ".join(FIELDS)))
    rename = g.get("rename", dict, {})
    for field, new in rename.items():
        if field not in FIELDS:
            raise ConfigError("%s.%s: unknown field (known: %s)" % (g.key("rename"), field, ", ".join(FIELDS)))
        if not isinstance(new, str) or not new or not all(c.isalnum() or c in "_:" for c in new) or new[0].isdigit():
            raise ConfigError("%s.%s: must be a valid metric name, got %r" % (g.key("rename"), field, new))
    g.finish()
    return GpuConfig(hostname_label=hostname_label, hostname=hostname, retry_seconds=retry,
                     slow_fields_max_age_seconds=slow, xid_events=xid, mig=mig, exclude_fields=exclude,
                     rename=rename, sample_interval_seconds=sample)


class GpuExporter(object):
    def __init__(self, config, nvml=None):
        self.collector = NvmlCollector(config, nvml=nvml)

    def collectors(self):
        return [self.collector]

    def exposition(self, registry):
        return unsuffixed_counter_exposition(registry, self.collector.config.unsuffixed_counters)

    def stop(self):
        self.collector.close()


def build(reader):
    return GpuExporter(config_from_reader(reader))


def main(argv=None):
    return server.run("aiplatform-gpu-exporter", "NVIDIA GPU metrics from NVML with dcgm-exporter's names.",
                      DEFAULT_PORT, build, argv, require_config=False)


if __name__ == "__main__":
    import sys

    sys.exit(main())
