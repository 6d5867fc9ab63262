"""Behaviour shared by every module: retries, basic auth, org header, credentials never shown."""
import pytest


def test_retries_503_then_succeeds(run, proxy, uid):
    folder = uid('retry')
    proxy.fail('GET', r'^/api/folders/%s$' % folder, 503, count=2)
    result = run('grafana_folder', dict(uid=folder, title='Retried'))
    assert result['changed'] is True
    assert [c for c in proxy.log if c[1] == '/api/folders/%s' % folder].count(('GET', '/api/folders/%s' % folder)) == 3, 'two 503 answers, then the real one'
    run('grafana_folder', dict(uid=folder, state='absent'))


def test_gives_up_after_bounded_retries(run, proxy, uid):
    folder = uid('down')
    proxy.fail('GET', r'^/api/folders/%s$' % folder, 503, count=10)
    result = run('grafana_folder', dict(uid=folder, title='Down'), expect_failure=True)
    assert 'HTTP 503' in result['msg'] and 'after 4 attempts' in result['msg']
    assert proxy.inject[0][3] == 6, 'expected 1 try + 3 retries'


def test_basic_auth_and_org_header(run, grafana, proxy, uid):
    if grafana.basic is None:
        pytest.skip('set GRAFANA_USER and GRAFANA_PASSWORD to test basic auth against a real Grafana')
    folder = uid('basic')
    user, password = grafana.basic
    result = run('grafana_folder', dict(uid=folder, title='Basic', url_username=user, url_password=password,
                                        org_id=1), auth=False)
    assert result['changed'] is True
    wrong = run('grafana_folder', dict(uid=folder, title='Basic', url_username=user, url_password='wrong'),
                auth=False, expect_failure=True)
    assert 'HTTP 401' in wrong['msg'] and 'wrong' not in wrong['msg']
    run('grafana_folder', dict(uid=folder, state='absent'))
