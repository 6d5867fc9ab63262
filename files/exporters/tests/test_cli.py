"""The console scripts as processes: config file, listen address, secrets, exit codes."""

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

from aiplatform_exporters.config import ConfigError, DatabaseSettings, Reader, parse_listen
from conftest import EXPORTER_PASSWORD, free_port

BIN = os.path.dirname(sys.executable)


def script(name):
    path = os.path.join(BIN, name)
    assert os.path.exists(path), "%s is not installed (pip install -e files/exporters)" % path
    return path


def write_config(tmp_path, data):
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def scrape(port, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as resp:
                return resp.read().decode()
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err


@pytest.mark.integration
def test_drift_exporter_process_with_systemd_credential(clean_pg, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "db_password").write_text(EXPORTER_PASSWORD + "\n")
    cfg = write_config(tmp_path, {"database": clean_pg.database_section(),
                                  "models": [{"name": "llm", "features": [{"name": "x"}]}]})
    port = free_port()
    env = dict(os.environ, CREDENTIALS_DIRECTORY=str(creds))
    env.pop("AIPLATFORM_DB_PASSWORD", None)
    proc = subprocess.Popen([script("aiplatform-drift-exporter"), "--config", cfg, "--listen", "127.0.0.1:%d" % port],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        text = scrape(port)
        assert "aiplatform_drift_exporter_up 1.0" in text
        assert "process_resident_memory_bytes" in text
        with open("/proc/%d/cmdline" % proc.pid, "rb") as fh:
            assert EXPORTER_PASSWORD.encode() not in fh.read()
    finally:
        code, out, err = stop(proc)
    assert code == 0, err
    assert EXPORTER_PASSWORD not in out + err


@pytest.mark.integration
def test_learning_exporter_process_wrong_password_is_up_zero(clean_pg, tmp_path):
    cfg = write_config(tmp_path, {"database": clean_pg.database_section(), "listen": "127.0.0.1:0"})
    port = free_port()
    env = dict(os.environ, AIPLATFORM_DB_PASSWORD="wrong")
    proc = subprocess.Popen([script("aiplatform-learning-exporter"), "--config", cfg, "--listen",
                             "127.0.0.1:%d" % port], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    try:
        text = scrape(port)
        assert "aiplatform_learning_exporter_up 0.0" in text
    finally:
        code, out, err = stop(proc)
    assert code == 0
    assert "wrong" not in err  # the password is never logged


def test_bad_config_fails_at_start_naming_the_key(tmp_path):
    cfg = write_config(tmp_path, {"models": [{"name": "llm", "features": [{"name": "x", "bins": 1}]}]})
    proc = subprocess.run([script("aiplatform-drift-exporter"), "--config", cfg], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert proc.returncode == 2
    assert "models[0].features[0].bins: must be >= 2" in proc.stderr
    proc = subprocess.run([script("aiplatform-learning-exporter"), "--config", str(tmp_path / "missing.yml")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert proc.returncode == 2 and "--config: cannot read" in proc.stderr
    proc = subprocess.run([script("aiplatform-drift-exporter")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=30)
    assert proc.returncode == 2 and "--config: is required" in proc.stderr
    proc = subprocess.run([script("aiplatform-gpu-exporter"), "--listen", "nowhere"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert proc.returncode == 2 and "--listen: must be ADDR:PORT" in proc.stderr


def test_check_config(tmp_path):
    cfg = write_config(tmp_path, {"gpu": {"schema": "4.9", "hostname_label": "hostname"}})
    proc = subprocess.run([script("aiplatform-gpu-exporter"), "--config", cfg, "--check-config"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert proc.returncode == 0 and "configuration OK" in proc.stdout


def test_gpu_exporter_without_nvml_serves_up_zero_only():
    port = free_port()
    code = ("import sys; sys.modules['pynvml'] = None\n"
            "from aiplatform_exporters.gpu.exporter import main\n"
            "sys.exit(main(['--listen', '127.0.0.1:%d']))" % port)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    try:
        text = scrape(port)
        gpu_lines = [l for l in text.splitlines() if l.startswith(("aiplatform_gpu", "DCGM_"))]
        assert gpu_lines == ["aiplatform_gpu_exporter_up 0.0"]
    finally:
        code, _, err = stop(proc)
    assert code == 0, err


def test_password_precedence(tmp_path):
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "db_password").write_text("from-credential")
    s = DatabaseSettings.from_reader(Reader({"password_file": str(pw_file)}, "database"))
    env = {"AIPLATFORM_DB_PASSWORD": "from-env", "CREDENTIALS_DIRECTORY": str(creds)}
    assert s.resolve_password(env)[0] == "from-env"
    env.pop("AIPLATFORM_DB_PASSWORD")
    assert s.resolve_password(env)[0] == "from-file"
    s2 = DatabaseSettings.from_reader(Reader({}, "database"))
    assert s2.resolve_password(env)[0] == "from-credential"
    assert s2.resolve_password({}) == (None, "none")
    bad = DatabaseSettings.from_reader(Reader({"password_file": str(tmp_path / "nope")}, "database"))
    with pytest.raises(ConfigError, match="database.password_file: cannot read"):
        bad.resolve_password({})
    with pytest.raises(ConfigError, match="database.password_file: must be an absolute path"):
        DatabaseSettings.from_reader(Reader({"password_file": "pw"}, "database"))


def test_parse_listen():
    assert parse_listen("127.0.0.1:19841") == ("127.0.0.1", 19841)
    assert parse_listen(":19842") == ("0.0.0.0", 19842)
    assert parse_listen("[::1]:19843") == ("::1", 19843)
    with pytest.raises(ConfigError, match="port must be 0-65535"):
        parse_listen("0.0.0.0:99999")
