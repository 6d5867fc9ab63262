"""Unit tests of the collection's Grafana plugins. The collection imports as
ansible_collections.aiplatform.observability through .collections/ (a link to the checkout)."""
import json
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / '.collections'))
sys.path.insert(0, str(REPO / 'tests' / 'grafana_standin'))

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
def run_module(capsys):
    """Run a module's main() in this process; return (result dict, failed)."""

    def runner(module, args, check=False, diff=True):
        params = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
        with patch_module_args(params):
            with pytest.raises(SystemExit) as exit_info:
                module.main()
        result = json.loads(capsys.readouterr().out)
        assert bool(result.get('failed')) == (exit_info.value.code != 0)
        return result

    return runner
