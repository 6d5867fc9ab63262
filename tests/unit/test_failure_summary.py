"""tests/failure_summary.py: what `make molecule` prints last when a scenario fails.

The log lines below have molecule's colours and frame, as `molecule test` writes them.
"""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "failure_summary.py"


def framed(text):
    return "".join("  \x1b[2m\x1b[31m\u2502\x1b[0m \x1b[0;31m%s\x1b[0m\n" % line for line in text.splitlines())


IGNORED = """TASK [aiplatform.observability.node_exporter : Restart node_exporter]
fatal: [gpu-node-1]: FAILED! =>
    changed: false
    msg: 'Could not find the requested service prometheus-node-exporter: host'
...ignoring
ok: [gpu-node-2]
"""
FAILED_TASK = """TASK [aiplatform.observability.postgresql : Apply the migrations]
  *******
fatal: [monitoring-1]: FAILED! =>
    changed: false
    msg: migration 0007 failed
PLAY RECAP
"""
FAILED_TEST = """test_grafana.py::test_api_healthy[ansible://monitoring-1] PASSED
test_grafana.py::test_dashboards_in_the_folder[ansible://monitoring-1] FAILED
=================================== FAILURES ===================================
    def test_dashboards_in_the_folder(host, hostvars):
>       assert len(panels) == count, uid
E       AssertionError: learning-engine
E       assert 15 == 16
=========================== short test summary info ============================
FAILED test_grafana.py::test_dashboards_in_the_folder[ansible://monitoring-1] - AssertionError: learning-engine
==================== 1 failed, 45 passed in 512.31s ====================
"""


def summarise(tmp_path, text):
    log = tmp_path / "molecule.log"
    log.write_text(text)
    result = subprocess.run([sys.executable, str(SCRIPT), str(log)], capture_output=True, text=True, check=True)
    return result.stdout


def test_a_failed_test_is_named_last_with_its_assertion(tmp_path):
    out = summarise(tmp_path, framed(IGNORED) + framed(FAILED_TEST) + "INFO destroy: Executed: Successful\n")
    lines = out.strip().splitlines()
    assert lines[-1] == ("FAILED test_grafana.py::test_dashboards_in_the_folder[ansible://monitoring-1] - "
                         "AssertionError: learning-engine")
    assert "E       assert 15 == 16" in lines
    assert "\x1b" not in out and "\u2502" not in out
    # a task whose failure was ignored is not reported
    assert "node-exporter" not in out


def test_a_failed_task_is_named_with_its_host_and_message(tmp_path):
    out = summarise(tmp_path, framed(IGNORED) + framed(FAILED_TASK))
    assert "TASK [aiplatform.observability.postgresql : Apply the migrations]" in out
    assert "fatal: [monitoring-1]: FAILED! =>" in out
    assert "msg: migration 0007 failed" in out
    assert "gpu-node-1" not in out


def test_a_log_without_failures_says_so(tmp_path):
    out = summarise(tmp_path, framed(IGNORED))
    assert "no failed task or test found" in out


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" tests="2">
<testcase classname="test_grafana" name="test_api_healthy[ansible://monitoring-1]" time="0.4"/>
<testcase classname="test_exporters_monitoring"
          name="test_database_exporters_are_connected[ansible://monitoring-1]" time="90.1">
<failure message="AssertionError: {'pg_up': 0.0}&#10;assert False">host = ...
&gt;       assert ok, values()
E       AssertionError: {'pg_up': 0.0}
E       assert False</failure></testcase>
</testsuite></testsuites>
"""


def test_failed_tests_are_read_from_the_junit_xml_where_molecule_wrapped_the_log(tmp_path):
    wrapped = FAILED_TEST.replace("FAILED test_grafana.py::test_dashboards_in_the_folder[ansible://monitoring-1]",
                                  "FAILED test_grafana.py::test_dashboards_in_the_folder[ansi\n  ble://monitoring-1]")
    (tmp_path / "verify.xml").write_text(JUNIT)
    log = tmp_path / "molecule.log"
    log.write_text(framed(wrapped))
    out = subprocess.run([sys.executable, str(SCRIPT), str(log), str(tmp_path / "verify.xml")],
                         capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[-1] == ("FAILED test_exporters_monitoring::test_database_exporters_are_connected"
                         "[ansible://monitoring-1] - AssertionError: {'pg_up': 0.0}")
    assert "E       AssertionError: {'pg_up': 0.0}" in lines
    assert "test_api_healthy" not in out


def stage_log(name, text):
    return ("INFO     default \u279c %s: Executing\n" % name) + framed(text) + \
        ("INFO     default \u279c %s: Executed: Successful\n" % name)


def check_stage(tmp_path, text):
    log = tmp_path / "molecule.log"
    log.write_text(text)
    return subprocess.run([sys.executable, str(SCRIPT), "--check-stage", str(log)], capture_output=True, text=True)


def test_check_stage_fails_on_an_ignored_error(tmp_path):
    result = check_stage(tmp_path, stage_log("check", IGNORED))
    assert result.returncode == 1
    assert "TASK [aiplatform.observability.node_exporter : Restart node_exporter]" in result.stdout
    assert "the check stage ignored 1 failed task result(s)" in result.stdout


def test_check_stage_passes_when_only_other_stages_ignored_errors(tmp_path):
    clean_check = "TASK [aiplatform.observability.node_exporter : Restart node_exporter]\nskipping: [gpu-node-1]\n"
    result = check_stage(tmp_path, stage_log("check", clean_check) + stage_log("converge", IGNORED))
    assert result.returncode == 0, result.stdout
    assert "ignored 0 failed task result(s)" in result.stdout


def test_check_stage_missing_from_the_log_fails(tmp_path):
    assert check_stage(tmp_path, stage_log("converge", "")).returncode == 1


def test_a_crash_is_named_by_its_exception(tmp_path):
    crash = """Traceback (most recent call last):
  File "/usr/lib/python3.11/shlex.py", line 329, in quote
    if _find_unsafe(s) is None:
TypeError: expected string or bytes-like object, got 'int'
"""
    out = summarise(tmp_path, "ERROR    default \u279c verify: Executed: Failed\n" + framed(crash))
    assert out.strip().splitlines()[-1] == "TypeError: expected string or bytes-like object, got 'int'"
    assert "no failed task or test found" not in out
