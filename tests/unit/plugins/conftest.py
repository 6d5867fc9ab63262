"""Unit tests of the collection's Grafana plugins. The collection imports as
ansible_collections.aiplatform.observability through .collections/ (a link to the checkout)."""
import base64
import json
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / '.collections'))
sys.path.insert(0, str(REPO / 'tests' / 'grafana_standin'))

from ansible.module_utils import _internal as module_utils_internal  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402

import standin  # noqa: E402

TOKEN = 'glsa_unit_test_token'


@pytest.fixture(scope='session')
def token():
    return TOKEN


@pytest.fixture(scope='session')
def standin_url():
    """The stand-in, in this process, on a free port (fresh state per session)."""
    standin.CONFIG.update(admin_user='admin', admin_password='unit-admin', tokens={TOKEN})
    server = standin.make_server('127.0.0.1:0', quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield 'http://127.0.0.1:%d' % server.server_address[1]
    server.shutdown()


@pytest.fixture
def standin_request(standin_url):
    """Call the stand-in directly, never through a module: (status, decoded JSON body, or b'' when empty).
    Authenticates with `basic` ("user:password") if given, else with `token` if given."""

    def call(method, path, body=None, token=None, basic=None, headers=None):
        req = urllib.request.Request(standin_url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        if basic:
            req.add_header('Authorization', 'Basic ' + base64.b64encode(basic.encode()).decode())
        elif token:
            req.add_header('Authorization', 'Bearer ' + token)
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else raw
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else raw

    return call


@pytest.fixture
def run_module(capsys, monkeypatch):
    """Run a module's main() in this process; return (result dict, failed).

    As on a host: module_utils must not think it runs in the controller. Importing controller code in
    the same session (the filter plugins' tests do: ansible.errors) switches module_utils to the
    controller's ways, where warn() prints through Display instead of returning the warning."""
    monkeypatch.setattr(module_utils_internal, 'is_controller', False)

    def runner(module, args, check=False, diff=True):
        params = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
        with patch_module_args(params):
            with pytest.raises(SystemExit) as exit_info:
                module.main()
        result = json.loads(capsys.readouterr().out)
        assert bool(result.get('failed')) == (exit_info.value.code != 0)
        return result

    return runner
