"""Roles gpu_exporter, platform_exporters and demo_workload, tested without the lab.

* render: every unit and config file the roles write, from a throwaway inventory, checked by the
  programs themselves (--check-config) and scored by `systemd-analyze security --offline` (<= 3.0);
* detection: the GPU probe against a fake /sys, and what each gpu_exporter_no_gpu_action does;
* preflight: bad input stops with a message naming the variable;
* wheelhouse: built for CPython 3.11 and 3.13, cached (second build unchanged), and installable
  with --no-index into a fresh virtualenv;
* the demo service and the exporters run (the latter under prctl(PR_SET_MDWE), the kernel's
  equivalent of MemoryDenyWriteExecute=) and serve their metrics.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLAYBOOK = [str(BIN / "ansible-playbook")]
ENV = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"),
           ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")

INVENTORY = {
    "all": {
        "vars": {"postgresql_exporter_password": "exporter-secret", "postgresql_owner_password": "owner-secret"},
        "children": {
            "monitoring": {"hosts": {"mon1": {
                "platform_exporters_postgres_exporter_enabled": True,
                "demo_workload_enabled": True,
                "platform_exporters_drift_models": [
                    {"name": "llm-main", "features": [{"name": "prompt_length", "kind": "numeric"},
                                                      {"name": "topic", "kind": "categorical"}]}],
            }}},
            "database": {"hosts": {"db1": {}}},
            "gpu_nodes": {"hosts": {
                "gpu-nvml": {"gpu_exporter_backend": "nvml"},
                "gpu-dcgm": {"gpu_exporter_dcgm_profiling": True},
                "gpu-dcgm-embedded": {"gpu_exporter_dcgm_hostengine": False},
                "gpu-off": {"gpu_exporter_enabled": False},
            }},
        },
    }
}

RENDER_PLAYBOOK = """
- hosts: monitoring
  gather_facts: false
  tasks:
    - ansible.builtin.include_role: {name: aiplatform.observability.platform_exporters, tasks_from: render}
    - ansible.builtin.include_role: {name: aiplatform.observability.demo_workload, tasks_from: render}
- hosts: gpu_nodes
  gather_facts: false
  tasks:
    - ansible.builtin.include_role: {name: aiplatform.observability.gpu_exporter, tasks_from: render}
    - ansible.builtin.include_role: {name: aiplatform.observability.gpu_exporter, tasks_from: scrape}
"""


def _run(args, cwd=ROOT, check=True, timeout=600):
    proc = subprocess.run(args, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:]
    return proc


def _playbook(tmp, text, inventory, *extra, check=True):
    (tmp / "pb.yml").write_text(textwrap.dedent(text))
    (tmp / "inv.yml").write_text(yaml.safe_dump(inventory))
    return _run(PLAYBOOK + ["-i", str(tmp / "inv.yml"), str(tmp / "pb.yml")] + list(extra), check=check)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("render")
    _playbook(tmp, RENDER_PLAYBOOK, INVENTORY, "-e", "render_dir=%s" % (tmp / "out"))
    return tmp / "out"


def _score(unit_file):
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit_file)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True).stdout
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert m, out[-2000:]
    return float(m.group(1))


UNITS = [
    ("mon1", "aiplatform-drift-exporter.service"),
    ("mon1", "aiplatform-learning-exporter.service"),
    ("mon1", "aiplatform-demo-workload.service"),
    ("mon1", "aiplatform-demo-feeder.service"),
    ("gpu-nvml", "aiplatform-gpu-exporter.service"),
    ("gpu-dcgm", "dcgm-exporter.service"),
]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("host,unit", UNITS, ids=["%s/%s" % u for u in UNITS])
def test_units_are_hardened(rendered, host, unit):
    path = rendered / host / "etc/systemd/system" / unit
    text = path.read_text()
    for directive in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                      "RestrictAddressFamilies=", "SystemCallFilter=@system-service", "SystemCallErrorNumber=EPERM"):
        assert directive in text, "%s lacks %s" % (unit, directive)
    score = _score(path)
    print("%s %s: systemd-analyze exposure %.1f" % (host, unit, score))
    assert score <= 3.0


def test_postgres_exporter_dropin_is_hardened_and_keeps_the_password_out(rendered):
    dropin = rendered / "mon1/etc/systemd/system/prometheus-postgres-exporter.service.d/10-aiplatform.conf"
    default = (rendered / "mon1/etc/default/prometheus-postgres-exporter").read_text()
    assert "LoadCredential=db_password:/etc/aiplatform-exporters/credentials/postgres-exporter-db-password" \
        in dropin.read_text()
    assert "DATA_SOURCE_PASS_FILE=%d/db_password" in dropin.read_text()
    # Go's lib/pq has no sslmode prefer: the default prefer becomes disable without postgresql_ssl_enabled.
    assert "DATA_SOURCE_URI='db1:5432/ai_platform?sslmode=disable'" in default
    assert "exporter-secret" not in default + dropin.read_text()
    # The Debian package's unit with the drop-in applied, scored as one file.
    merged = rendered / "prometheus-postgres-exporter.service"
    merged.write_text(textwrap.dedent("""\
        [Unit]
        Description=Prometheus exporter for PostgreSQL
        [Service]
        User=prometheus
        EnvironmentFile=/etc/default/prometheus-postgres-exporter
        ExecStart=/usr/bin/prometheus-postgres-exporter $ARGS
        Restart=on-failure
        [Install]
        WantedBy=multi-user.target
        """) + dropin.read_text().split("[Service]", 1)[1].join(["[Service]", ""]))
    score = _score(merged)
    print("prometheus-postgres-exporter (package unit + drop-in): exposure %.1f" % score)
    assert score <= 3.0


def test_secrets_never_in_rendered_files(rendered):
    for path in rendered.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "exporter-secret" not in text and "owner-secret" not in text, path


def test_units_use_credentials_and_the_release_venv(rendered):
    drift = (rendered / "mon1/etc/systemd/system/aiplatform-drift-exporter.service").read_text()
    assert "ExecStart=/opt/aiplatform-exporters/venv/bin/aiplatform-drift-exporter --config " \
           "/etc/aiplatform-exporters/drift.yml" in drift
    assert "LoadCredential=db_password:/etc/aiplatform-exporters/credentials/exporter-db-password" in drift
    assert "MemoryDenyWriteExecute=yes" in drift
    feeder = (rendered / "mon1/etc/systemd/system/aiplatform-demo-feeder.service").read_text()
    assert "LoadCredential=db_password:/etc/aiplatform-exporters/credentials/demo-feeder-db-password" in feeder
    workload = (rendered / "mon1/etc/systemd/system/aiplatform-demo-workload.service").read_text()
    assert "LoadCredential" not in workload


@pytest.mark.parametrize("program,config", [
    ("aiplatform-drift-exporter", "mon1/etc/aiplatform-exporters/drift.yml"),
    ("aiplatform-learning-exporter", "mon1/etc/aiplatform-exporters/learning.yml"),
    ("aiplatform-gpu-exporter", "gpu-nvml/etc/aiplatform-exporters/gpu.yml"),
])
def test_rendered_configs_pass_the_exporters_own_check(rendered, program, config):
    proc = _run([str(BIN / program), "--check-config", "--config", str(rendered / config)], check=False)
    assert proc.returncode == 0, proc.stdout


def test_rendered_configs_follow_the_variables(rendered):
    drift = yaml.safe_load((rendered / "mon1/etc/aiplatform-exporters/drift.yml").read_text())
    assert drift["listen"] == "0.0.0.0:19841"
    assert drift["database"] == {"host": "db1", "port": 5432, "dbname": "ai_platform", "user": "aiplatform_exporter",
                                 "schema": "platform", "sslmode": "prefer",
                                 "application_name": "aiplatform-drift-exporter"}
    assert drift["drift"]["thresholds"] == {"psi": 0.2, "kl_divergence": 0.2}
    assert drift["drift"]["min_window_samples"] == 500
    assert drift["models"][0]["features"][1] == {"name": "topic", "kind": "categorical"}
    learning = yaml.safe_load((rendered / "mon1/etc/aiplatform-exporters/learning.yml").read_text())
    assert learning["listen"] == "0.0.0.0:19842"
    gpu = yaml.safe_load((rendered / "gpu-nvml/etc/aiplatform-exporters/gpu.yml").read_text())
    assert gpu["listen"] == "0.0.0.0:9400" and gpu["gpu"]["hostname_label"] == "Hostname"
    assert "schema" not in gpu["gpu"]
    assert gpu["gpu"]["sample_interval_seconds"] == 5.0 and isinstance(gpu["gpu"]["sample_interval_seconds"], float)


@pytest.mark.parametrize("script,config", [
    ("demo_workload.py", "demo-workload.yml"),
    ("demo_feeder.py", "demo-feeder.yml"),
])
def test_rendered_demo_configs_pass_their_check(rendered, script, config):
    proc = _run([sys.executable, str(ROOT / "roles/demo_workload/files" / script), "--check-config", "--config",
                 str(rendered / "mon1/etc/aiplatform-exporters" / config)], check=False)
    assert proc.returncode == 0, proc.stdout


def test_gpu_registration_is_predicted_from_the_variables(rendered):
    fact = "etc/ansible/facts.d/aiplatform_scrape_gpu.fact"
    common = {"client": {}, "metrics_path": "/metrics", "port": 9400, "role": "gpu_exporter", "scheme": "http"}
    assert json.loads((rendered / "gpu-nvml" / fact).read_text()) == dict(
        common, info={"backend": "nvml"}, unit="aiplatform-gpu-exporter")
    assert json.loads((rendered / "gpu-dcgm" / fact).read_text()) == dict(
        common, info={"backend": "dcgm"}, unit="dcgm-exporter")
    assert not (rendered / "gpu-off" / fact).exists()
    assert not (rendered / "gpu-off/etc/systemd/system").exists() or \
        not list((rendered / "gpu-off/etc/systemd/system").iterdir())


def test_dcgm_exporter_uses_the_host_engine_service_and_the_counters(rendered):
    unit = (rendered / "gpu-dcgm/etc/systemd/system/dcgm-exporter.service").read_text()
    exec_start = [line for line in unit.splitlines() if line.startswith("ExecStart=")][0]
    assert exec_start == ("ExecStart=/usr/bin/dcgm-exporter -f /etc/dcgm-exporter/aiplatform-counters.csv "
                          "-a :9400 -c 30000 -r localhost:5555")
    assert "User=aiplatform-exporter" in unit
    embedded = (rendered / "gpu-dcgm-embedded/etc/systemd/system/dcgm-exporter.service").read_text()
    assert "-r localhost:5555" not in embedded and "User=" not in embedded
    csv = (rendered / "gpu-dcgm/etc/dcgm-exporter/aiplatform-counters.csv").read_text()
    rows = [line.split(", ") for line in csv.splitlines() if line and not line.startswith("#")]
    names = [r[0] for r in rows]
    assert "DCGM_FI_DEV_GPU_UTIL" in names and "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE" in names
    assert all(len(r) == 3 and r[1] in ("gauge", "counter", "label") for r in rows)
    plain = (rendered / "gpu-dcgm-embedded/etc/dcgm-exporter/aiplatform-counters.csv").read_text()
    assert "DCGM_FI_PROF_" not in plain


def _csv_rows(text):
    """(field, type, help) of a dcgm-exporter counters CSV, as dcgm-exporter reads it."""
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            name, kind, help_text = [part.strip() for part in line.split(",", 2)]
            rows.append((name, kind, help_text))
    return rows


NVIDIA_CSV = ROOT / "files/exporters/tests/data/dcgm-exporter-default-counters.csv"


def test_dcgm_counter_list_is_nvidias_default_and_the_catalog(rendered):
    from aiplatform_exporters import catalog

    nvidia = _csv_rows(NVIDIA_CSV.read_text())
    assert len(nvidia) == 26, nvidia
    # the catalog holds dcgm-exporter's default list exactly: names, order, types, help texts
    assert catalog.dcgm_counters(alert_counters=False) == nvidia
    # plus the fields the alerts use, after the non-profiling rows
    extras = [r for r in catalog.dcgm_counters() if r[0] in catalog.DCGM_ALERT_COUNTERS]
    assert [r[0] for r in extras] == ["DCGM_FI_DEV_POWER_MGMT_LIMIT", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
                                      "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"]
    plain = [r for r in nvidia if not r[0].startswith("DCGM_FI_PROF_")]
    profiling = [r for r in nvidia if r[0].startswith("DCGM_FI_PROF_")]
    assert catalog.dcgm_counters() == plain + extras + profiling
    # and the role renders it: with profiling (gpu-dcgm) the whole list, without it all but DCGM_FI_PROF_*
    with_profiling = _csv_rows((rendered / "gpu-dcgm/etc/dcgm-exporter/aiplatform-counters.csv").read_text())
    assert with_profiling == plain + extras + profiling
    without = _csv_rows((rendered / "gpu-dcgm-embedded/etc/dcgm-exporter/aiplatform-counters.csv").read_text())
    assert without == plain + extras


# ---------------------------------------------------------------- detection and preflight (local)

def _fake_sys(root, devices, driver=None):
    for addr, vendor, cls in devices:
        d = root / "bus/pci/devices" / addr
        d.mkdir(parents=True)
        (d / "vendor").write_text(vendor + "\n")
        (d / "class").write_text(cls + "\n")
    (root / "bus/pci/devices").mkdir(parents=True, exist_ok=True)
    if driver:
        (root / "module/nvidia").mkdir(parents=True)
        (root / "module/nvidia/version").write_text(driver + "\n")
    return root


LOCAL = {"all": {"hosts": {"node1": {"ansible_connection": "local",
                                     "ansible_python_interpreter": sys.executable}}}}
DETECT = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.include_role: {name: aiplatform.observability.gpu_exporter, tasks_from: detect}
    - ansible.builtin.debug:
        msg: "RESULT {{ {'gpus': __gpu_exporter_gpus, 'driver': __gpu_exporter_driver,
                         'deploy': __gpu_exporter_deploy | bool} | to_json }}"
"""


def _detect(tmp, sysroot, action):
    proc = _playbook(tmp, DETECT, LOCAL, "-e", "__gpu_exporter_sysfs_root=%s" % sysroot,
                     "-e", "__gpu_exporter_procfs_root=%s" % (tmp / "noproc"), "-e",
                     "gpu_exporter_no_gpu_action=%s" % action, check=False)
    m = re.search(r"RESULT (\{.*\})", proc.stdout)
    return proc, (json.loads(m.group(1).replace('\\"', '"')) if m else None)


def test_detects_nvidia_display_and_3d_controllers_only(tmp_path):
    sysroot = _fake_sys(tmp_path / "sys", [
        ("0000:53:00.0", "0x10de", "0x030200"),  # H100: 3D controller
        ("0000:54:00.0", "0x10de", "0x030000"),  # VGA
        ("0000:55:00.0", "0x10de", "0x068000"),  # NVSwitch bridge: not a GPU
        ("0000:00:02.0", "0x8086", "0x030000"),  # another vendor's GPU
    ], driver="580.105.08")
    proc, result = _detect(tmp_path, sysroot, "fail")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result == {"gpus": ["0000:53:00.0", "0000:54:00.0"], "driver": "580.105.08", "deploy": True}


def test_driver_version_from_proc_when_sys_module_is_absent(tmp_path):
    sysroot = _fake_sys(tmp_path / "sys", [("0000:53:00.0", "0x10de", "0x030200")])
    proc_root = tmp_path / "noproc/driver/nvidia"
    proc_root.mkdir(parents=True)
    (proc_root / "version").write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs-builder@U16)\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    proc, result = _detect(tmp_path, sysroot, "fail")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result["driver"] == "570.86.15"


def test_no_gpu_fails_by_default_naming_the_host_and_the_variable(tmp_path):
    sysroot = _fake_sys(tmp_path / "sys", [("0000:00:02.0", "0x8086", "0x030000")])
    proc, _ = _detect(tmp_path, sysroot, "fail")
    assert proc.returncode != 0
    assert "node1 is in gpu_nodes but has no NVIDIA GPU" in proc.stdout
    assert "gpu_exporter_no_gpu_action" in proc.stdout


@pytest.mark.parametrize("action,deploy", [("skip", False), ("deploy", True)])
def test_no_gpu_skip_or_deploy(tmp_path, action, deploy):
    sysroot = _fake_sys(tmp_path / "sys", [])
    proc, result = _detect(tmp_path, sysroot, action)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert result == {"gpus": [], "driver": "", "deploy": deploy}


PREFLIGHT = """
- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.include_role: {name: aiplatform.observability.ROLE, tasks_from: preflight}
"""


@pytest.mark.parametrize("role,extra,needle", [
    ("platform_exporters", {"postgresql_exporter_password": "x"}, "platform_exporters_drift_models must list"),
    ("platform_exporters", {"platform_exporters_drift_models": [{"name": "m", "features": [{"name": "f"}]}]},
     "platform_exporters_db_password is empty on node1"),
    ("platform_exporters", {"postgresql_exporter_password": "x", "platform_exporters_drift_models":
                            [{"name": "m", "features": [{"name": "f", "kind": "ordinal"}]}]},
     "platform_exporters_drift_models must list"),
    ("platform_exporters", {"postgresql_exporter_password": "x", "platform_exporters_learning_port": 19841,
                            "platform_exporters_drift_models": [{"name": "m", "features": [{"name": "f"}]}]},
     "must be different ports"),
    ("gpu_exporter", {"gpu_exporter_dcgm_version": "1:4.2.3-1", "gpu_exporter_dcgm_exporter_version": "4.1.1-4.0.4-1"},
     "must be paired"),
    ("gpu_exporter", {"gpu_exporter_dcgm_version": "1:4.2.3-1"}, "go together"),
    ("gpu_exporter", {"gpu_exporter_no_gpu_action": "ignore"}, "gpu_exporter_no_gpu_action"),
    ("gpu_exporter", {"gpu_exporter_nvml_schema": "4.9"}, "gpu_exporter_nvml_schema was removed"),
    ("demo_workload", {"demo_workload_enabled": True}, "demo_workload_feeder_models"),
])
def test_preflight_names_the_variable(tmp_path, role, extra, needle):
    inv = {"all": {"hosts": {"node1": dict(LOCAL["all"]["hosts"]["node1"], **extra)}}}
    proc = _playbook(tmp_path, PREFLIGHT.replace("ROLE", role), inv, check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert needle in proc.stdout, proc.stdout[-3000:]


def test_preflight_accepts_paired_dcgm_versions(tmp_path):
    inv = {"all": {"hosts": {"node1": dict(LOCAL["all"]["hosts"]["node1"], gpu_exporter_dcgm_version="1:4.2.3-1",
                                           gpu_exporter_dcgm_exporter_version="4.2.3-4.1.3-1")}}}
    proc = _playbook(tmp_path, PREFLIGHT.replace("ROLE", "gpu_exporter"), inv, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_roles_pass_syntax_check(tmp_path):
    (tmp_path / "pb.yml").write_text(textwrap.dedent("""
        - hosts: gpu_nodes
          roles: [aiplatform.observability.gpu_exporter]
        - hosts: monitoring
          roles: [aiplatform.observability.platform_exporters, aiplatform.observability.demo_workload]
        """))
    (tmp_path / "inv.yml").write_text(yaml.safe_dump(INVENTORY))
    _run(PLAYBOOK + ["--syntax-check", "-i", str(tmp_path / "inv.yml"), str(tmp_path / "pb.yml")])


# ---------------------------------------------------------------- wheelhouse

BUILDER = ROOT / "roles/platform_exporters/files/build_wheelhouse.py"


def test_wheelhouse_for_debian_12_and_13_is_cached_and_installs_offline(tmp_path):
    cache = tmp_path / "cache"
    args = [sys.executable, str(BUILDER), "--source", str(ROOT / "files/exporters"), "--cache", str(cache),
            "--extras", "gpu", "--target", "3.11:x86_64:2.36", "--target", "3.13:x86_64:2.41"]
    first = json.loads(_run(args).stdout)
    assert first["changed"] is True
    for target, py in (("3.11:x86_64:2.36", "cp311"), ("3.13:x86_64:2.41", "cp313")):
        wheels = first["wheelhouses"][target]["wheels"]
        names = [re.split(r"-\d", w, 1)[0].lower().replace("_", "-") for w in wheels]
        for dist in ("aiplatform-exporters", "numpy", "psycopg", "psycopg-binary", "prometheus-client", "pyyaml",
                     "bcrypt", "nvidia-ml-py"):
            assert dist in names, (target, sorted(wheels))
        binary = [w for w in wheels if not w.endswith("-none-any.whl")]
        # built for this Python, or for the stable ABI (abi3) of an older one (bcrypt)
        assert binary and all("-%s-" % py in w or "-abi3-" in w for w in binary), binary
    started = time.monotonic()
    second = json.loads(_run(args).stdout)
    elapsed = time.monotonic() - started
    print("wheelhouse: second build %.2f s, ids %s" % (elapsed, {k: v["id"] for k, v in second["wheelhouses"].items()}))
    assert second["changed"] is False
    assert {k: v["id"] for k, v in second["wheelhouses"].items()} == {k: v["id"] for k, v in first["wheelhouses"].items()}
    assert not (ROOT / "files/exporters/build").exists()
    if sys.version_info[:2] != (3, 11):
        return
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    setdir = first["wheelhouses"]["3.11:x86_64:2.36"]["path"]
    env_args = [str(venv / "bin/python"), "-m", "pip", "install", "--no-index", "--find-links", setdir,
                "--disable-pip-version-check", first["wheelhouses"]["3.11:x86_64:2.36"]["requirement"]]
    proc = subprocess.run(env_args, env=dict(ENV, PIP_CONFIG_FILE=os.devnull), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    _run([str(venv / "bin/python"), "-c", "import numpy, psycopg, pynvml, aiplatform_exporters.drift.exporter"])


# ---------------------------------------------------------------- the programs run

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


MDWE = ("import ctypes, runpy, sys; libc = ctypes.CDLL(None, use_errno=True); "
        "assert libc.prctl(65, 1, 0, 0, 0) == 0, 'PR_SET_MDWE refused'; "
        "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def _mdwe_supported():
    return subprocess.run([sys.executable, "-c", MDWE.split("sys.argv")[0]]).returncode == 0


@pytest.mark.parametrize("program,config", [
    ("aiplatform-drift-exporter", {"database": {"host": "127.0.0.1", "port": 1, "connect_timeout_seconds": 1},
                                   "models": [{"name": "m", "features": [{"name": "f"}]}]}),
    ("aiplatform-learning-exporter", {"database": {"host": "127.0.0.1", "port": 1, "connect_timeout_seconds": 1}}),
    ("aiplatform-gpu-exporter", {}),
])
def test_exporter_runs_without_writable_executable_memory(tmp_path, program, config):
    if not _mdwe_supported():
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    port = _free_port()
    (tmp_path / "c.yml").write_text(yaml.safe_dump(dict(config, listen="127.0.0.1:%d" % port)))
    proc = subprocess.Popen([sys.executable, "-c", MDWE, str(BIN / program), "--config", str(tmp_path / "c.yml")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    try:
        body = _scrape(port)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    prefix = program.replace("aiplatform-", "aiplatform_").replace("-", "_")
    # no database / no GPU here: the exporter reports its source down and keeps serving
    assert re.search(r"^%s_up 0\.0$" % prefix, body, re.M), out[-2000:] + body[:1000]


DEMO_WORKLOAD = ROOT / "roles/demo_workload/files/demo_workload.py"
# Every inference/cache name of the platform's instrumentation: never on /metrics in vllm mode.
PLATFORM_INFERENCE_NAMES = ("inference_requests_total", "inference_tokens_total", "inference_request_duration_seconds",
                            "inference_queue_depth", "inference_batch_size", "inference_time_to_first_token_seconds",
                            "inference_inter_token_latency_seconds", "inference_kv_cache_usage_ratio",
                            "cache_hits_total", "cache_misses_total")


def _demo_config(port, **extra):
    cfg = {"listen": "127.0.0.1:%d" % port, "requests_per_second": 40, "concurrency": 8, "error_ratio": 0.2,
           "slow_phase": {"period_seconds": 0, "duration_seconds": 0, "latency_factor": 1.0, "error_ratio": 0.2},
           "cache_hit_ratio": 0.6, "simulated_gpus": 2,
           "mcp_servers": {"filesystem": {"operations": ["read_file"], "latency_seconds": 0.01, "error_ratio": 0.3},
                           "search": {"operations": ["query"], "latency_seconds": 0.02, "error_ratio": 0.3}}}
    cfg.update(extra)
    return cfg


def _run_demo(tmp_path, cfg, seconds=8):
    """Runs the demo service (under PR_SET_MDWE where the kernel has it); (/metrics after `seconds`, output)."""
    port = int(cfg["listen"].rsplit(":", 1)[1])
    (tmp_path / "c.yml").write_text(yaml.safe_dump(cfg))
    args = [str(DEMO_WORKLOAD), "--config", str(tmp_path / "c.yml")]
    cmd = [sys.executable, "-c", MDWE] + args if _mdwe_supported() else [sys.executable] + args
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    try:
        _scrape(port)
        time.sleep(seconds)
        body = _scrape(port)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    return body, out


def test_demo_workload_generates_every_platform_metric(tmp_path):
    body, out = _run_demo(tmp_path, _demo_config(_free_port()))
    for pattern in (r'^http_request_duration_seconds_bucket\{.*le="1\.5"',
                    r'^http_requests_total\{.*status="200"',
                    r'^http_requests_total\{.*status="5\d\d"',
                    r'^inference_requests_total\{',
                    r'^inference_tokens_total\{.*type="prompt"',
                    r'^inference_tokens_total\{.*type="completion"',
                    r'^cache_hits_total\{', r'^cache_misses_total\{',
                    r'^inference_queue_depth\{', r'^inference_batch_size_bucket\{',
                    # time to first token on the latency buckets, inter-token latency on its own
                    r'^inference_time_to_first_token_seconds_bucket\{(?=[^}]*le="0\.5")(?=[^}]*model="llm-main")',
                    r'^inference_time_to_first_token_seconds_bucket\{(?=[^}]*le="2\.0")(?=[^}]*model="llm-small")',
                    r'^inference_inter_token_latency_seconds_bucket\{(?=[^}]*le="0\.05")(?=[^}]*model="llm-main")',
                    r'^inference_inter_token_latency_seconds_bucket\{(?=[^}]*le="0\.015")(?=[^}]*model="llm-small")',
                    r'^inference_inter_token_latency_seconds_count\{model="llm-main"\} [1-9]',
                    r'^inference_kv_cache_usage_ratio\{model="llm-main"\} 0\.\d+',
                    r'^inference_kv_cache_usage_ratio\{model="llm-small"\} 0\.\d+',
                    r'^mcp_requests_total\{.*status="success"', r'^mcp_requests_total\{.*status="error"',
                    r'^mcp_operation_duration_seconds_bucket\{.*server="search"',
                    # the lab's simulated GPUs, never mistakable for real ones
                    r'^DCGM_FI_DEV_GPU_UTIL\{.*gpu="1".*modelName="Simulated GPU \(demo workload\)"',
                    r'^DCGM_FI_DEV_FB_USED\{.*UUID="GPU-simulated-0"', r'^DCGM_FI_DEV_GPU_TEMP\{'):
        assert re.search(pattern, body, re.M), pattern + "\n" + out[-1500:]
    assert not re.search(r"^vllm:", body, re.M)
    # the gaps between tokens: tens of milliseconds outside the slow phase
    count = float(re.search(r'^inference_inter_token_latency_seconds_count\{model="llm-main"\} (\S+)', body, re.M)[1])
    total = float(re.search(r'^inference_inter_token_latency_seconds_sum\{model="llm-main"\} (\S+)', body, re.M)[1])
    assert 0.015 < total / count < 0.045, (total, count)


def _labels(text):
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


def test_demo_workload_vllm_mode_publishes_vllm_names_only(tmp_path):
    body, out = _run_demo(tmp_path, _demo_config(_free_port(), metrics_format="vllm"))
    series = re.findall(r"^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$", body, re.M)
    by_name = {}
    for name, labels, value in series:
        by_name.setdefault(name, []).append((_labels(labels), float(value)))
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total",
                 "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:num_preemptions_total",
                 "vllm:time_to_first_token_seconds_bucket", "vllm:time_to_first_token_seconds_count",
                 "vllm:inter_token_latency_seconds_bucket", "vllm:inter_token_latency_seconds_count",
                 "vllm:e2e_request_latency_seconds_bucket", "vllm:e2e_request_latency_seconds_count"):
        assert name in by_name, name + "\n" + out[-1500:]
        for labels, _ in by_name[name]:
            assert labels.get("engine") == "0" and labels.get("model_name") in ("llm-main", "llm-small"), (name, labels)
        assert {labels["model_name"] for labels, _ in by_name[name]} == {"llm-main", "llm-small"}, name
    # traffic reached every counter and histogram
    for name in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:prefix_cache_queries_total",
                 "vllm:prefix_cache_hits_total", "vllm:time_to_first_token_seconds_count",
                 "vllm:inter_token_latency_seconds_count", "vllm:e2e_request_latency_seconds_count"):
        assert sum(v for _, v in by_name[name]) > 0, name
    reasons = {labels["finished_reason"]: v for labels, v in by_name["vllm:request_success_total"]
               if labels["model_name"] == "llm-main"}
    assert set(reasons) == {"stop", "length", "abort"} and reasons["stop"] > 0, reasons
    # the prefix cache counts tokens: every prompt token is queried, the cached share hits
    queries = sum(v for _, v in by_name["vllm:prefix_cache_queries_total"])
    hits = sum(v for _, v in by_name["vllm:prefix_cache_hits_total"])
    assert 0 < hits < queries and queries <= sum(v for _, v in by_name["vllm:prompt_tokens_total"])
    assert all(0 <= v <= 1 for _, v in by_name["vllm:kv_cache_usage_perc"])
    # vLLM's own buckets
    les = {labels["le"] for labels, _ in by_name["vllm:time_to_first_token_seconds_bucket"]}
    assert {"0.001", "0.04", "0.25", "2560.0", "+Inf"} <= les and "0.4" not in les, sorted(les)
    les = {labels["le"] for labels, _ in by_name["vllm:inter_token_latency_seconds_bucket"]}
    assert {"0.01", "0.025", "0.075", "80.0"} <= les and "0.015" not in les, sorted(les)
    les = {labels["le"] for labels, _ in by_name["vllm:e2e_request_latency_seconds_bucket"]}
    assert {"0.3", "0.8", "7680.0"} <= les, sorted(les)
    assert "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds." in body
    assert "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage." in body
    # HTTP as vLLM's server publishes it: status grouped by class; tool calls stay
    statuses = {labels["status"] for labels, _ in by_name["http_requests_total"]}
    assert {"2xx", "5xx"} <= statuses and statuses <= {"2xx", "3xx", "4xx", "5xx"}, statuses
    assert "http_request_duration_seconds_bucket" in by_name and "http_requests_in_progress" not in by_name
    assert "mcp_requests_total" in by_name and "mcp_operation_duration_seconds_bucket" in by_name
    assert "DCGM_FI_DEV_GPU_UTIL" in by_name
    # not one of the platform's inference or cache names
    for name in PLATFORM_INFERENCE_NAMES:
        base = name[:-len("_total")] if name.endswith("_total") else name
        assert not re.search(r"^(# (HELP|TYPE) )?%s(_total|_bucket|_sum|_count|_created)?[ {]" % re.escape(base),
                             body, re.M), name
    # every vllm:* family published is catalogued with its labels
    from aiplatform_exporters import catalog

    for name in by_name:
        if name.startswith("vllm:"):
            assert catalog.is_known(name), name
    for name in ("vllm:num_requests_running", "vllm:request_success_total", "vllm:inter_token_latency_seconds"):
        labels = set(by_name[name if name in by_name else name + "_count"][0][0]) - {"le"}
        assert labels == set(catalog.spec(name).labels), name


def test_demo_workload_rejects_an_unknown_metrics_format(tmp_path):
    check = [sys.executable, str(DEMO_WORKLOAD), "--check-config", "--config", str(tmp_path / "c.yml")]
    (tmp_path / "c.yml").write_text(yaml.safe_dump({"metrics_format": "prometheus"}))
    proc = _run(check, check=False)
    assert proc.returncode == 2, proc.stdout
    assert "metrics_format" in proc.stdout and "platform, vllm" in proc.stdout and "prometheus" in proc.stdout
    for good in ("platform", "vllm"):
        (tmp_path / "c.yml").write_text(yaml.safe_dump({"metrics_format": good}))
        proc = _run(check, check=False)
        assert proc.returncode == 0, proc.stdout


def test_demo_workload_preflight_names_metrics_format(tmp_path):
    inv = {"all": {"hosts": {"node1": dict(LOCAL["all"]["hosts"]["node1"], demo_workload_enabled=True,
                                           demo_workload_feeder_enabled=False, demo_workload_metrics_format="tgi")}}}
    proc = _playbook(tmp_path, PREFLIGHT.replace("ROLE", "demo_workload"), inv, check=False)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "demo_workload_metrics_format platform or vllm" in proc.stdout, proc.stdout[-3000:]


def test_rendered_demo_workload_config_has_the_metrics_format(rendered):
    cfg = yaml.safe_load((rendered / "mon1/etc/aiplatform-exporters/demo-workload.yml").read_text())
    assert cfg["metrics_format"] == "platform"
