"""What the live Alertmanager tests share: render the roles' files into temporary directories, start the
binaries with the ExecStart lines of the rendered units, and ask them over HTTP."""
import base64
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
AM_BINARY = "/usr/bin/prometheus-alertmanager"
PROM_BINARY = "/usr/bin/prometheus"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(tmp, name, variables, tags, secrets=()):
    """Render the roles' files for host mon1 (reached at 127.0.0.1) and copy them to their paths."""
    inventory = {"all": {"hosts": {"mon1": {"ansible_host": "127.0.0.1"}},
                         "children": {"monitoring": {"hosts": {"mon1": {}}}}}}
    (tmp / f"{name}-hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp / f"{name}-vars.yml").write_text(yaml.safe_dump(variables))
    out = tmp / f"{name}-render"
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp / f"{name}-hosts.yml"), str(REPO / "playbooks/render.yml"),
                           "-e", f"render_dir={out}", "-e", f"@{tmp / f'{name}-vars.yml'}", "--tags", tags],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for secret in secrets:
        assert secret not in proc.stdout + proc.stderr
    for path in (out / "mon1").rglob("*"):
        if path.is_file():
            target = Path("/") / path.relative_to(out / "mon1")
            if str(target).startswith(str(tmp)):   # only the temporary directories, never the real /etc
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    return out / "mon1"


def exec_start(unit_text):
    """The argv of a unit's ExecStart (continuation lines joined)."""
    joined = unit_text.replace("\\\n", " ")
    line = next(ln for ln in joined.splitlines() if ln.startswith("ExecStart="))
    return shlex.split(line[len("ExecStart="):])


class Server(object):
    def __init__(self, argv, log):
        self.argv, self.log = argv, log
        self.proc = None

    def start(self):
        self.handle = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.handle, stderr=subprocess.STDOUT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.handle.close()

    def logtail(self):
        return Path(self.log).read_text(errors="replace")[-3000:]


def request(url, auth=None, cafile=None, data=None):
    """(status, body) of a request; connection and TLS failures raise."""
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
    req = urllib.request.Request(url, headers=headers, data=data)
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def wait_until(check, what, server, timeout=60, interval=0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"{server.argv[0]} exited ({server.proc.returncode}) while waiting for {what}:\n{server.logtail()}")
        try:
            ok, last = check()
            if ok:
                return last
        except (OSError, urllib.error.URLError) as err:
            last = repr(err)
        time.sleep(interval)
    pytest.fail(f"{what}: still not true after {timeout}s (last: {last})\n{server.logtail()}")


def start_alertmanager(rendered, tmp, name):
    unit = (rendered / "etc/systemd/system/prometheus-alertmanager.service").read_text()
    argv = exec_start(unit)
    assert argv[0] == AM_BINARY, argv
    server = Server(argv, tmp / f"{name}.log")
    server.start()
    return server, unit
