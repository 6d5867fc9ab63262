"""benchmarks/run_gpu_machine.sh end to end on a CPU machine.

The only fakes are at the hardware boundary: ``pynvml`` is the fake NVML
(fake_nvml.py, two GPUs) and ``nvidia-smi`` is a script printing what a real one
would for those GPUs. Everything between (gpu_check.py, the console entry
point with both host labels, bench_gpu.py, the results archive) is the real code, so
a change that breaks the script the GPU machine runs fails here first.
"""

import os
import subprocess
import sys
import tarfile
import textwrap

from fake_nvml import gpu

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "benchmarks", "run_gpu_machine.sh")
MIB = 1 << 20


def smi_row(index, g, temp=None):
    return ", ".join(str(v) for v in (
        index, g["uuid"], g["pci"], g["name"], "580.105.08", g["util_gpu"], g["util_mem"], g["mem_used"] // MIB,
        g["mem_free"] // MIB, g["mem_total"] // MIB, g["temp"] if temp is None else temp,
        "%.2f" % (g["power_mw"] / 1000.0), g["sm_clock"], g["mem_clock"]))


def run_script(tmp_path, temp0=None):
    shim = tmp_path / "shim"
    (shim / "bin").mkdir(parents=True)
    (shim / "pynvml.py").write_text(textwrap.dedent("""\
        import sys
        sys.path.insert(0, %r)
        from fake_nvml import FakeNvml, gpu
        sys.modules[__name__] = FakeNvml([gpu(0), gpu(1)])
        """ % HERE))
    rows = "\n".join([smi_row(0, gpu(0), temp0), smi_row(1, gpu(1))])
    smi = shim / "bin" / "nvidia-smi"
    smi.write_text("#!/bin/sh\ncase \"$*\" in\n*--query-gpu=index*) cat <<'EOF'\n%s\nEOF\n;;\n"
                   "*) echo 'nvidia-smi (fake)';;\nesac\n" % rows)
    smi.chmod(0o755)
    env = dict(os.environ, BENCH_GPU_ITERATIONS="20",
               PATH="%s:%s:%s" % (shim / "bin", os.path.dirname(sys.executable), os.environ["PATH"]),
               PYTHONPATH=str(shim))
    out = tmp_path / "out"
    proc = subprocess.run(["bash", SCRIPT, str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=240)
    return proc, out


def test_passes_when_exporter_and_nvidia_smi_agree(tmp_path):
    proc, out = run_script(tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert "overall: PASS" in proc.stdout
    assert "entry default: up 1" in proc.stdout and "label Hostname, counters typed" in proc.stdout
    assert "entry hostname: up 1" in proc.stdout and "label hostname, counters typed" in proc.stdout
    with tarfile.open(str(out / "results.tar.gz")) as tar:
        names = {os.path.normpath(n) for n in tar.getnames()}
    assert {"idle/gpu_check.txt", "idle/gpu_check_scrape.txt", "bench_gpu.json", "scrape-default.txt",
            "scrape-hostname.txt"} <= names
    assert (out / "run.log").read_text().count("overall: PASS") == 1


def test_fails_on_a_mismatch(tmp_path):
    proc, _ = run_script(tmp_path, temp0=90)
    assert proc.returncode == 1, proc.stdout
    assert "FAILED: gpu_check idle" in proc.stdout
    assert "overall: FAIL" in proc.stdout


def test_needs_an_output_directory():
    proc = subprocess.run(["bash", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    assert proc.returncode != 0 and "usage" in proc.stdout
