"""grafana_service_account run in-process against the in-process stand-in: argument rules, check mode,
diff, the token shown once, expired tokens, and Grafana's errors turned into messages that say what to do."""
import time

import pytest
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.aiplatform.observability.plugins.modules import grafana_folder, grafana_service_account

ADMIN = dict(url_username='admin', url_password='unit-admin')


@pytest.fixture
def conn(standin_url):
    return dict(ADMIN, url=standin_url)


@pytest.fixture
def api(standin_request):
    """Direct calls as the admin (never through the module), or with `token`."""

    def call(method, path, body=None, token=None, headers=None):
        return standin_request(method, path, body, token=token, basic=None if token else 'admin:unit-admin',
                               headers=headers)

    def account(name):
        found = [a for a in call('GET', '/api/serviceaccounts/search?query=' + name)[1]['serviceAccounts']
                 if a['name'] == name]
        return found[0] if found else None

    call.account = account
    return call


@pytest.mark.parametrize('args,names', [
    (dict(name='sa', role='viewer'), ['role', 'Viewer']),
    (dict(name='sa', token_state='absent'), ['token_name']),
    (dict(name='sa', token_name='t', token_seconds_to_live=-5), ['token_seconds_to_live']),
    (dict(name='  '), ['name must be a non-empty']),
    (dict(name=' padded'), ['name', 'leading or trailing spaces']),
    (dict(name='sa', token_name=''), ['token_name']),
])
def test_bad_input_names_the_option(run_module, conn, api, args, names):
    result = run_module(grafana_service_account, dict(conn, **args))
    assert result['failed'], result
    for name in names:
        assert name in result['msg'], result['msg']
    assert api.account('sa') is None, 'nothing may be written on bad input'


def test_credentials_are_required(run_module, standin_url):
    result = run_module(grafana_service_account, dict(url=standin_url, name='x'))
    assert result['failed'] and 'token' in result['msg'] and 'url_username' in result['msg']


def test_check_mode_create_diff_and_idempotence(run_module, conn, api):
    args = dict(conn, name='unit-sa', role='Editor', token_name='unit-sa-t1')
    check = run_module(grafana_service_account, args, check=True)
    assert check['changed'] is True and 'token' not in check and 'token_id' not in check
    assert check['diff'] == {'before': {}, 'after': {'name': 'unit-sa', 'role': 'Editor', 'disabled': False,
                                                     'tokens': ['unit-sa-t1']}}
    assert api.account('unit-sa') is None, 'check mode wrote'

    created = run_module(grafana_service_account, dict(args, _ansible_no_log=True))
    assert created['changed'] is True and created['token'].startswith('glsa_')
    sa = api.account('unit-sa')
    assert sa['role'] == 'Editor' and sa['isDisabled'] is False and sa['tokens'] == 1
    assert created['service_account']['id'] == sa['id']
    tokens = api('GET', '/api/serviceaccounts/%d/tokens' % sa['id'])[1]
    assert [(t['id'], t['name']) for t in tokens] == [(created['token_id'], 'unit-sa-t1')]
    assert api('GET', '/api/folders', token=created['token'])[0] == 200, 'the new key authenticates'

    again = run_module(grafana_service_account, args)
    assert again['changed'] is False and 'token' not in again and again['token_id'] == created['token_id']
    assert again['diff']['before'] == again['diff']['after']


@pytest.fixture
def warned(monkeypatch):
    """The warnings modules give in this test (whatever route Ansible gives them in this process)."""
    seen = []
    original = AnsibleModule.warn

    def warn(self, message):
        seen.append(message)
        return original(self, message)

    monkeypatch.setattr(AnsibleModule, 'warn', warn)
    return seen


def test_key_returned_without_no_log_warns(run_module, conn, api, warned):
    result = run_module(grafana_service_account, dict(conn, name='unit-warn', token_name='unit-warn-t'))
    assert result['changed'] is True and result['token'].startswith('glsa_')
    assert any('no_log: true' in w for w in warned), warned
    del warned[:]
    quiet = run_module(grafana_service_account, dict(conn, name='unit-warn-quiet', token_name='unit-warn-quiet-t',
                                                     _ansible_no_log=True))
    assert quiet['token'].startswith('glsa_') and not any('no_log' in w for w in warned), warned


def test_role_disabled_token_absent_and_absent(run_module, conn, api):
    base = dict(conn, name='unit-life', role='Admin', token_name='unit-life-t', _ansible_no_log=True)
    key = run_module(grafana_service_account, base)['token']
    folder = dict(url=conn['url'], token=key, uid='unit-life-folder', title='Life')
    assert run_module(grafana_folder, folder)['changed'] is True

    # omitted options keep what Grafana has
    kept = run_module(grafana_service_account, dict(conn, name='unit-life'))
    assert kept['changed'] is False and kept['service_account']['role'] == 'Admin'

    viewer = run_module(grafana_service_account, dict(conn, name='unit-life', role='Viewer'))
    assert viewer['changed'] is True and viewer['diff']['before']['role'] == 'Admin'
    assert viewer['diff']['after']['role'] == 'Viewer'
    denied = run_module(grafana_folder, dict(folder, title='Renamed'))
    assert denied['failed'] and 'HTTP 403' in denied['msg'], 'a Viewer token may not write'

    disabled = run_module(grafana_service_account, dict(conn, name='unit-life', disabled=True))
    assert disabled['changed'] is True and disabled['diff']['after']['disabled'] is True
    assert api('GET', '/api/folders', token=key)[0] == 401, 'a disabled account\'s token must be refused'
    enabled = run_module(grafana_service_account, dict(conn, name='unit-life', disabled=False, role='Admin'))
    assert enabled['changed'] is True and api('GET', '/api/folders', token=key)[0] == 200

    dropped = run_module(grafana_service_account, dict(conn, name='unit-life', token_name='unit-life-t',
                                                       token_state='absent'))
    assert dropped['changed'] is True and dropped['diff']['after']['tokens'] == []
    assert api('GET', '/api/folders', token=key)[0] == 401, 'a deleted token must be refused'
    assert run_module(grafana_service_account, dict(conn, name='unit-life', token_name='unit-life-t',
                                                     token_state='absent'))['changed'] is False

    again = run_module(grafana_service_account, base)
    assert again['changed'] is True and again['token'] != key, 'a deleted token is created anew'
    gone = run_module(grafana_service_account, dict(conn, name='unit-life', state='absent'))
    assert gone['changed'] is True and api.account('unit-life') is None
    assert api('GET', '/api/folders', token=again['token'])[0] == 401, 'a deleted account\'s token must be refused'
    assert run_module(grafana_service_account, dict(conn, name='unit-life', state='absent'))['changed'] is False


def test_expired_token_is_replaced(run_module, conn, api):
    args = dict(conn, name='unit-ttl', token_name='unit-ttl-t', token_seconds_to_live=1, _ansible_no_log=True)
    first = run_module(grafana_service_account, args)
    sa = api.account('unit-ttl')
    assert api('GET', '/api/serviceaccounts/%d/tokens' % sa['id'])[1][0]['expiration'] is not None
    time.sleep(1.2)
    assert api('GET', '/api/folders', token=first['token'])[0] == 401
    check = run_module(grafana_service_account, args, check=True)
    assert check['changed'] is True and check['diff']['before']['tokens'] == ['unit-ttl-t (expired)']
    assert check['diff']['after']['tokens'] == ['unit-ttl-t']
    second = run_module(grafana_service_account, dict(args, token_seconds_to_live=0))
    assert second['changed'] is True and second['token'] != first['token']
    assert api('GET', '/api/folders', token=second['token'])[0] == 200


def test_grafana_errors_say_what_to_do(run_module, conn, api):
    run_module(grafana_service_account, dict(conn, name='unit-clash', token_name='unit-shared-token',
                                             _ansible_no_log=True))
    same_login = run_module(grafana_service_account, dict(conn, name='Unit-Clash'))
    assert same_login['failed'] and 'HTTP 400' in same_login['msg'] and 'choose another name' in same_login['msg']

    other = run_module(grafana_service_account, dict(conn, name='unit-other', token_name='unit-shared-token'))
    assert other['failed'] and 'token_name' in other['msg'] and 'unique in the organization' in other['msg']
    assert other['changed'] is True, 'the account was created before the token failed'

    viewer = run_module(grafana_service_account, dict(conn, name='unit-viewer', role='Viewer',
                                                      token_name='unit-viewer-t', _ansible_no_log=True))
    denied = run_module(grafana_service_account, dict(url=conn['url'], token=viewer['token'], name='unit-any'))
    assert denied['failed'] and 'HTTP 403' in denied['msg'] and 'organization Admin' in denied['msg']


def test_search_pages_and_exact_names(run_module, conn, api):
    for i in range(3):
        api('POST', '/api/serviceaccounts', {'name': 'unit-page-%d' % i})
    original = grafana_service_account.PER_PAGE
    grafana_service_account.PER_PAGE = 1
    try:
        found = run_module(grafana_service_account, dict(conn, name='unit-page-2'))
        prefix = run_module(grafana_service_account, dict(conn, name='unit-page'), check=True)
    finally:
        grafana_service_account.PER_PAGE = original
    assert found['changed'] is False and found['service_account']['name'] == 'unit-page-2'
    assert prefix['changed'] is True, 'a name that is only a prefix of others is a new account'


def test_views():
    account = {'name': 'a', 'role': 'Admin', 'isDisabled': False, 'id': 3}
    tokens = [{'name': 'z'}, {'name': 'b', 'hasExpired': True}]
    assert grafana_service_account.account_view(account, tokens) == {
        'name': 'a', 'role': 'Admin', 'disabled': False, 'tokens': ['b (expired)', 'z']}
    assert grafana_service_account.account_view(None, []) is None


def test_standin_follows_the_service_account_api(api):
    """The stand-in's service account endpoints: status codes and bodies of Grafana's HTTP API docs."""
    status, sa = api('POST', '/api/serviceaccounts', {'name': 'unit-api', 'role': 'Editor', 'isDisabled': False})
    assert status == 201 and sa['login'] == 'sa-1-unit-api' and sa['role'] == 'Editor' and sa['teams'] == []
    dup = api('POST', '/api/serviceaccounts', {'name': 'unit-api'})
    assert dup == (400, {'message': 'service account already exists', 'messageId': 'serviceaccounts.ErrAlreadyExists',
                         'statusCode': 400})
    assert api('POST', '/api/serviceaccounts', {'name': 'unit-bad-role', 'role': 'Owner'})[1]['messageId'] == \
        'serviceaccounts.ErrInvalidRoleSpecified'
    assert api('GET', '/api/serviceaccounts/999999')[0] == 404
    assert api('GET', '/api/serviceaccounts/abc')[0] == 400
    path = '/api/serviceaccounts/%d' % sa['id']
    status, made = api('POST', path + '/tokens', {'name': 'unit-api-t', 'secondsToLive': 3600})
    assert status == 200 and set(made) == {'id', 'name', 'key'} and made['key'].startswith('glsa_')
    assert api('POST', path + '/tokens', {'name': 'unit-api-t'})[1]['messageId'] == \
        'serviceaccounts.ErrTokenAlreadyExists'
    assert api('POST', path + '/tokens', {'name': 'unit-api-neg', 'secondsToLive': -1})[0] == 400
    listed = api('GET', path + '/tokens')[1]
    assert [t['name'] for t in listed] == ['unit-api-t'] and 'key' not in listed[0]
    assert listed[0]['hasExpired'] is False and listed[0]['expiration'] is not None

    key = made['key']
    assert api('GET', '/api/folders', token=key)[0] == 200
    assert api('POST', '/api/folders', {'uid': 'unit-api-f', 'title': 'F'}, token=key)[0] == 200  # Editor writes
    assert api('POST', '/api/datasources', {'name': 'x', 'type': 'prometheus'}, token=key)[0] == 403
    assert api('GET', '/api/serviceaccounts/search', token=key)[0] == 403
    assert api('POST', '/api/admin/provisioning/datasources/reload', token=key)[0] == 403
    mismatch = api('GET', '/api/folders', token=key, headers={'X-Grafana-Org-Id': '2'})
    assert mismatch[0] == 401 and mismatch[1]['messageId'] == 'api-key.organization-mismatch'

    updated = api('PATCH', path, {'role': 'Admin'})
    assert updated[0] == 200 and updated[1]['message'] == 'Service account updated'
    assert updated[1]['serviceaccount']['role'] == 'Admin'
    assert api('DELETE', path + '/tokens/%d' % made['id']) == (200, {'message': 'Service account token deleted'})
    assert api('DELETE', path + '/tokens/%d' % made['id'])[1]['messageId'] == 'serviceaccounts.ErrTokenNotFound'
    assert api('GET', '/api/folders', token=key)[1]['messageId'] == 'api-key.invalid'
    assert api('DELETE', path) == (200, {'message': 'Service account deleted'})
