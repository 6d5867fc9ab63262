"""GPU nodes: the NVML exporter as the lab deploys it (no GPU in the lab: it reports up 0)."""
import json

from conftest import http, metric_value

testinfra_hosts = ["ansible://gpu_nodes"]


def test_nvml_exporter_without_gpu_reports_up_0(host, hostvars):
    assert hostvars.get("gpu_exporter_backend") == "nvml", "the lab runs the NVML backend"
    port = hostvars.get("gpu_exporter_port", 9400)
    status, body = http(host, "http://127.0.0.1:%s/metrics" % port)
    assert status == 200
    has_gpu = host.run("grep -l 0x10de /sys/bus/pci/devices/*/vendor").rc == 0
    assert metric_value(body, "aiplatform_gpu_exporter_up") == (1.0 if has_gpu else 0.0), body[:500]
    fact = json.loads(host.file("/etc/ansible/facts.d/aiplatform_scrape_gpu.fact").content_string)
    assert fact == {"role": "gpu_exporter", "port": port, "scheme": "http", "metrics_path": "/metrics",
                    "unit": "aiplatform-gpu-exporter", "info": {"backend": "nvml"}, "client": {}}
    assert not host.file("/etc/ansible/facts.d/aiplatform_gpu_exporter.fact").exists
