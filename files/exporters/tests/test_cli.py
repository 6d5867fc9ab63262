"""The console scripts as processes: config file, listen address, secrets, exit codes."""

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from aiplatform_exporters.config import ConfigError, DatabaseSettings, Reader, parse_listen
from conftest import EXPORTER_PASSWORD, free_port, wait_for
from helpers import ago, insert_numeric

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


def values(port):
    """{(name, ((label, value), ...)): value} of one scrape."""
    out = {}
    for fam in text_string_to_metric_families(scrape(port)):
        for sample in fam.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


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
    cfg = write_config(tmp_path, {"gpu": {"hostname_label": "hostname", "rename": {"DCGM_FI_DEV_GPU_TEMP": "t"}}})
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


RELOAD_OK = ("aiplatform_drift_exporter_config_last_reload_successful", ())
RELOAD_AT = ("aiplatform_drift_exporter_config_last_reload_success_timestamp_seconds", ())
DETECTED = ("drift_detected_total", (("feature", "x"), ("model", "llm")))
COMPUTED = ("drift_last_computed_timestamp_seconds", (("feature", "x"), ("model", "llm")))


def drift_config(pg, kl_threshold):
    # psi never decides here: only the KL threshold separates drifted from not drifted
    return {"database": pg.database_section(), "log_level": "info",
            "drift": {"interval_seconds": 1, "cache_seconds": 0, "reference": {"min_samples": 100},
                      "thresholds": {"psi": 10.0, "kl_divergence": kl_threshold}},
            "models": [{"name": "llm", "features": [{"name": "x"}]}]}


def wait_for_value(port, key, predicate, timeout=15.0):
    seen = []

    def check():
        seen[:] = [values(port).get(key)]
        return seen[0] is not None and predicate(seen[0])

    assert wait_for(check, timeout=timeout, interval=0.2), (key, seen)
    return seen[0]


@pytest.mark.integration
def test_drift_exporter_sighup_reloads_thresholds_and_keeps_them_on_an_invalid_file(clean_pg, owner_conn,
                                                                                    tmp_path):
    r = np.random.default_rng(3)
    insert_numeric(owner_conn, "llm", "x", r.normal(0, 1, 3000), ago(owner_conn, days=3), step_seconds=1.0)
    # a shift of 0.4 sd: KL about 0.08, between the two thresholds below
    insert_numeric(owner_conn, "llm", "x", r.normal(0.4, 1, 2000), ago(owner_conn, minutes=30), step_seconds=0.5)
    cfg = write_config(tmp_path, drift_config(clean_pg, 0.2))
    port = free_port()
    env = dict(os.environ, AIPLATFORM_DB_PASSWORD=EXPORTER_PASSWORD)
    proc = subprocess.Popen([script("aiplatform-drift-exporter"), "--config", cfg, "--listen", "127.0.0.1:%d" % port],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        first = values(port)
        assert first[RELOAD_OK] == 1
        started_at = first[RELOAD_AT]
        assert abs(started_at - time.time()) < 60
        # scored twice under kl_divergence 0.2: not drifted
        computed = wait_for_value(port, COMPUTED, lambda v: v > 0)
        wait_for_value(port, COMPUTED, lambda v: v > computed)
        assert values(port)[DETECTED] == 0

        write_config(tmp_path, drift_config(clean_pg, 0.01))
        proc.send_signal(signal.SIGHUP)
        wait_for_value(port, RELOAD_AT, lambda v: v > started_at, timeout=5)
        after = values(port)
        assert after[RELOAD_OK] == 1
        reloaded_at = after[RELOAD_AT]
        # the same process now scores with 0.01: the same data is drifted
        detected = wait_for_value(port, DETECTED, lambda v: v >= 1)

        invalid = drift_config(clean_pg, 0.5)
        invalid["models"][0]["features"][0]["bins"] = 1
        write_config(tmp_path, invalid)
        proc.send_signal(signal.SIGHUP)
        wait_for_value(port, RELOAD_OK, lambda v: v == 0, timeout=5)
        assert proc.poll() is None
        failed = values(port)
        assert failed[RELOAD_AT] == reloaded_at
        assert failed[("aiplatform_drift_exporter_up", ())] == 1
        # still on the previous settings (0.01, not 0.5 nor the defaults): every new window is drifted
        wait_for_value(port, DETECTED, lambda v: v > detected)
        assert proc.poll() is None
    finally:
        code, out, err = stop(proc)
    assert code == 0, err
    assert "INFO aiplatform_exporters.server: reload: %s: psi/kl thresholds 10/0.2 -> 10/0.01" % cfg in err, err
    assert ("ERROR aiplatform_exporters.server: reload: %s: models[0].features[0].bins: must be >= 2, got 1; "
            "keeping the previous configuration" % cfg) in err, err
    assert "drifted=True" in err and "drifted=False" in err


class _ReloadableApp(object):
    metrics_prefix = "aiplatform_drift_exporter"

    def __init__(self):
        self.readers = []

    def reload(self, reader):
        reader.get("models", list)
        reader.finish()
        self.readers.append(reader)
        return ["models changed"]


def test_reload_of_an_unreadable_file_keeps_the_previous_settings(tmp_path, caplog):
    from aiplatform_exporters import server

    cfg = write_config(tmp_path, {"listen": "127.0.0.1:0", "log_level": "info", "models": []})
    args = server.build_parser("x", "x", 19841).parse_args(["--config", cfg])
    current = server.read_settings(args, 19841)
    metrics = server.ReloadMetrics("aiplatform_drift_exporter", now=100.0)
    app = _ReloadableApp()
    reloader = server.Reloader(app, args, 19841, current, metrics)
    os.unlink(cfg)
    with caplog.at_level("INFO", logger="aiplatform_exporters.server"):
        assert reloader.reload() is False
    assert "reload: %s: --config: cannot read %s" % (cfg, cfg) in caplog.text
    assert caplog.records[-1].levelname == "ERROR" and app.readers == []
    assert (metrics.successful, metrics.success_time) == (False, 100.0)
    write_config(tmp_path, {"listen": "127.0.0.1:1", "log_level": "warning", "models": []})
    caplog.clear()
    root_level = logging.getLogger().level
    try:
        with caplog.at_level("INFO", logger="aiplatform_exporters.server"):
            assert reloader.reload() is True
        assert logging.getLogger().level == logging.WARNING
    finally:
        logging.getLogger().setLevel(root_level)
    assert metrics.successful and metrics.success_time > 100.0 and len(app.readers) == 1
    assert "reload: %s: models changed; log_level info -> warning" % cfg in caplog.text
    assert "listen 127.0.0.1:0 -> 127.0.0.1:1 needs a restart" in caplog.text
