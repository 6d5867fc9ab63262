"""Integration tests of the grafana_* modules, run for real through `ansible` against Grafana.

Without GRAFANA_URL/GRAFANA_TOKEN the tests start the stand-in (tests/grafana_standin/standin.py) on a free
port; with them they run against that Grafana (see docs/grafana-modules.md). Every module call goes through
a small forwarding proxy owned by the tests: it lets a test change an object behind the module's back
right after the module has read it (a concurrent edit), or answer 503 once (retries). The proxy changes
nothing else, so the same tests hold against a real Grafana.
"""

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
STANDIN = REPO / 'tests' / 'grafana_standin' / 'standin.py'
ANSIBLE = Path(sys.executable).with_name('ansible')
PLAYBOOK = Path(sys.executable).with_name('ansible-playbook')
ADMIN_PASSWORD = 'standin-admin-' + uuid.uuid4().hex[:8]
TOKEN = 'glsa_' + uuid.uuid4().hex
RUN = uuid.uuid4().hex[:6]  # uid prefix: reruns against a real Grafana never collide


class Grafana(object):
    """Direct API access for the tests' own setup and checks (never through the module)."""

    def __init__(self, url, token, real, basic=None):
        self.url = url.rstrip('/')
        self.token = token
        self.real = real
        self.basic = basic  # (user, password) or None

    def call(self, method, path, body=None, headers=None, basic=False):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header('Content-Type', 'application/json')
        if basic:
            req.add_header('Authorization', 'Basic ' + base64.b64encode(('%s:%s' % self.basic).encode()).decode())
        else:
            req.add_header('Authorization', 'Bearer ' + self.token)
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw.strip() else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw) if raw.strip() else None
            except ValueError:
                return e.code, raw.decode()

    def get(self, path):
        return self.call('GET', path)


class Proxy(object):
    """Forwards every request to Grafana; runs one-shot hooks after matching answers."""

    def __init__(self, target):
        self.target = target.rstrip('/')
        self.hooks = []     # [method, regex, callable] run once, after the upstream answer
        self.inject = []    # [method, regex, status, count] answers instead of forwarding
        self.log = []
        self.bodies = []    # (method, path, body text) of every write
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def forward(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length else None
                proxy.log.append((self.command, self.path))
                if body:
                    proxy.bodies.append((self.command, self.path, body.decode()))
                for rule in list(proxy.inject):
                    if rule[0] == self.command and re.search(rule[1], self.path) and rule[3] > 0:
                        rule[3] -= 1
                        return self.answer(rule[2], {'Retry-After': '0'}, b'{"message":"injected by the test proxy"}')
                req = urllib.request.Request(proxy.target + self.path, data=body, method=self.command)
                for key in ('Authorization', 'Content-Type', 'Accept', 'X-Grafana-Org-Id', 'X-Disable-Provenance'):
                    if self.headers.get(key) is not None:
                        req.add_header(key, self.headers[key])
                try:
                    with urllib.request.urlopen(req, timeout=15) as resp:
                        status, raw = resp.status, resp.read()
                except urllib.error.HTTPError as e:
                    status, raw = e.code, e.read()
                for hook in list(proxy.hooks):
                    if hook[0] == self.command and re.search(hook[1], self.path):
                        proxy.hooks.remove(hook)
                        hook[2]()
                self.answer(status, {}, raw)

            def answer(self, status, headers, raw):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if raw:
                    self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = forward

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def after(self, method, pattern, func):
        self.hooks.append([method, pattern, func])

    def fail(self, method, pattern, status, count=1):
        self.inject.append([method, pattern, status, count])

    def reset(self):
        self.hooks, self.inject, self.log, self.bodies = [], [], [], []


def standin_seed():
    """Objects standing for file-provisioned ones (only the stand-in can have them without files)."""
    return {
        'folders': [{'uid': 'seed-folder', 'title': 'Provisioned'}],
        'datasources': [{'uid': 'seed-readonly', 'name': 'Provisioned Prometheus', 'type': 'prometheus',
                         'url': 'http://localhost:9090', 'readOnly': True}],
        'dashboards': [{'dashboard': {'uid': 'seed-provisioned', 'title': 'Provisioned board'},
                        'folderUid': 'seed-folder', 'provisioned': True}],
    }


@pytest.fixture(scope='session')
def grafana(tmp_path_factory):
    url, token = os.environ.get('GRAFANA_URL'), os.environ.get('GRAFANA_TOKEN')
    if url and token:
        basic = None
        if os.environ.get('GRAFANA_USER') and os.environ.get('GRAFANA_PASSWORD'):
            basic = (os.environ['GRAFANA_USER'], os.environ['GRAFANA_PASSWORD'])
        yield Grafana(url, token, real=True, basic=basic)
        return
    tmp = tmp_path_factory.mktemp('standin')
    (tmp / 'password').write_text(ADMIN_PASSWORD + '\n')
    (tmp / 'tokens').write_text('# service account tokens\n%s\n' % TOKEN)
    (tmp / 'seed.json').write_text(json.dumps(standin_seed()))
    proc = subprocess.Popen(
        [sys.executable, str(STANDIN), '--listen', '127.0.0.1:0', '--admin-user', 'admin',
         '--admin-password-file', str(tmp / 'password'), '--token-file', str(tmp / 'tokens'),
         '--seed-file', str(tmp / 'seed.json'), '--quiet'],
        stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r'listening on [\d.]+:(\d+)', line)
    assert match, 'stand-in did not start: %r' % line
    try:
        yield Grafana('http://127.0.0.1:%s' % match.group(1), TOKEN, real=False, basic=('admin', ADMIN_PASSWORD))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope='session')
def session_proxy(grafana):
    proxy = Proxy(grafana.url)
    yield proxy
    proxy.server.shutdown()


@pytest.fixture
def proxy(session_proxy):
    session_proxy.reset()
    yield session_proxy
    session_proxy.reset()


@pytest.fixture
def uid():
    """A fresh uid prefix for one test."""
    counter = iter(range(1000))
    return lambda name: 'it%s-%s-%d' % (RUN, name, next(counter))


@pytest.fixture
def run(grafana, proxy):
    """Run one module through `ansible localhost -m` and return its result dict.

    run.many([...]) runs several steps as the tasks of one playbook (one ansible start-up) and returns
    their results. Credentials travel in the environment, never on the command line.
    """
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK='json', ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
               ANSIBLE_NOCOLOR='1', ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_DEPRECATION_WARNINGS='0',
               IT_GRAFANA_TOKEN=grafana.token)
    base = ['-i', 'localhost,', '-c', 'local', '-e', 'ansible_python_interpreter=%s' % sys.executable]

    def params_of(args, auth):
        params = dict(args)
        params.setdefault('url', proxy.url)
        if auth:
            params.setdefault('token', "{{ lookup('ansible.builtin.env', 'IT_GRAFANA_TOKEN') }}")
        for key in ('token', 'url_password'):
            if key in args:  # explicit (wrong) credentials of a test also stay off the command line
                env['IT_' + key.upper()] = args[key]
                params[key] = "{{ lookup('ansible.builtin.env', 'IT_%s') }}" % key.upper()
        return params

    def execute(cmd):
        del proxy.log[:], proxy.bodies[:]  # the calls of this run only
        proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=300)
        assert grafana.token not in proc.stdout + proc.stderr, 'the token leaked into the output'
        try:
            return [task['hosts']['localhost'] for task in json.loads(proc.stdout)['plays'][0]['tasks']]
        except (ValueError, KeyError, IndexError):
            raise AssertionError('ansible gave no JSON result (rc=%d)\nstdout:\n%s\nstderr:\n%s'
                                 % (proc.returncode, proc.stdout, proc.stderr))

    def verify(result, expect_failure):
        failed = bool(result.get('failed'))
        assert failed == expect_failure, 'unexpected %s: %s' % (
            'failure' if failed else 'success', json.dumps(result, indent=2))
        return result

    def runner(module, args, check=False, diff=True, auth=True, expect_failure=False):
        cmd = [str(ANSIBLE), 'localhost'] + base + ['-m', 'aiplatform.observability.%s' % module,
                                                    '-a', json.dumps(params_of(args, auth))]
        cmd += ['--check'] * check + ['--diff'] * diff
        return verify(execute(cmd)[0], expect_failure)

    def many(steps, tmp=None):
        """steps: (module, args) or (module, args, {'check': .., 'expect_failure': ..})."""
        tasks = []
        for step in steps:
            options = step[2] if len(step) > 2 else {}
            tasks.append({'name': 'step %d' % len(tasks), 'ignore_errors': True, 'diff': True,
                          'check_mode': bool(options.get('check')),
                          'aiplatform.observability.%s' % step[0]: params_of(step[1], options.get('auth', True))})
        handle, name = tempfile.mkstemp(prefix='it-grafana-', suffix='.yml')
        playbook = Path(name)
        with os.fdopen(handle, 'w') as f:
            json.dump([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}], f)
        try:
            results = execute([str(PLAYBOOK)] + base + [str(playbook)])
        finally:
            playbook.unlink()
        return [verify(r, bool((s[2] if len(s) > 2 else {}).get('expect_failure'))) for r, s in zip(results, steps)]

    runner.many = many
    return runner
