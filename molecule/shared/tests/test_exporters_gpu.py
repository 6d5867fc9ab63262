"""GPU nodes: the NVML exporter as the lab deploys it (no GPU in the lab: it reports up 0)."""
import json

from conftest import exporter_http, exporter_web, metric_value

testinfra_hosts = ["ansible://gpu_nodes"]


def test_nvml_exporter_without_gpu_reports_up_0(host, hostvars):
    assert hostvars.get("gpu_exporter_backend") == "nvml", "the lab runs the NVML backend"
    port = hostvars.get("gpu_exporter_port", 9400)
    status, body = exporter_http(host, hostvars, "gpu_exporter", port)
    assert status == 200
    has_gpu = host.run("grep -l 0x10de /sys/bus/pci/devices/*/vendor").rc == 0
    assert metric_value(body, "aiplatform_gpu_exporter_up") == (1.0 if has_gpu else 0.0), body[:500]
    fact = json.loads(host.file("/etc/ansible/facts.d/aiplatform_scrape_gpu.fact").content_string)
    scheme, auth, cafile = exporter_web(hostvars, "gpu_exporter")
    client = dict(([("tls_config", {"ca_file": cafile})] if cafile else [])
                  + ([("basic_auth", {"username": auth.partition(":")[0]})] if auth else []))
    assert fact == {"role": "gpu_exporter", "port": port, "scheme": scheme, "metrics_path": "/metrics",
                    "unit": "aiplatform-gpu-exporter", "info": {"backend": "nvml"}, "client": client}
    assert not host.file("/etc/ansible/facts.d/aiplatform_gpu_exporter.fact").exists
