"""grafana_datasource: uid endpoints, type aliases, secrets, read-only, stale versions, health."""
import json

import pytest


def postgres(ds_uid, **extra):
    args = dict(uid=ds_uid, name='records ' + ds_uid, type='postgres', datasource_url='127.0.0.1:1',
                user='grafana_reader', json_data={'database': 'ai_platform', 'sslmode': 'disable'},
                secure_json_data={'password': 'first-secret'})
    args.update(extra)
    return args


def test_create_alias_secrets_and_updates(run, grafana, proxy, uid):
    ds = uid('pg')
    created = run('grafana_datasource', postgres(ds))
    assert created['changed'] is True
    sent = json.loads(proxy.bodies[0][2])
    assert proxy.bodies[0][1] == '/api/datasources' and sent['secureJsonData'] == {'password': 'first-secret'}
    stored = grafana.get('/api/datasources/uid/%s' % ds)[1]
    assert stored['type'] == 'grafana-postgresql-datasource' and stored['secureJsonFields'] == {'password': True}
    assert 'first-secret' not in json.dumps(created)

    # `postgres` and the canonical id are the same type; secrets are not resent
    again = run('grafana_datasource', postgres(ds, secure_json_data={'password': 'other'}))
    assert again['changed'] is False and proxy.bodies == []
    assert 'password' not in json.dumps(again['diff']) and 'other' not in json.dumps(again)

    check = run('grafana_datasource', postgres(ds, json_data={'database': 'ai_platform', 'sslmode': 'require'}),
                check=True)
    assert check['changed'] is True
    assert check['diff']['before']['jsonData']['sslmode'] == 'disable'
    assert check['diff']['after']['jsonData']['sslmode'] == 'require'
    assert grafana.get('/api/datasources/uid/%s' % ds)[1]['jsonData']['sslmode'] == 'disable'

    updated = run('grafana_datasource', postgres(ds, json_data={'database': 'ai_platform', 'sslmode': 'require'}))
    assert updated['changed'] is True
    method, path, body = proxy.bodies[0]
    sent = json.loads(body)
    assert (method, path) == ('PUT', '/api/datasources/uid/%s' % ds)
    assert 'secureJsonData' not in sent and sent['version'] == stored['version']
    after = grafana.get('/api/datasources/uid/%s' % ds)[1]
    assert after['jsonData']['sslmode'] == 'require' and after['secureJsonFields'] == {'password': True}

    # only what the task sets is compared: a task without json_data leaves it alone
    minimal = run('grafana_datasource', dict(uid=ds, name='records ' + ds, type='grafana-postgresql-datasource'))
    assert minimal['changed'] is False

    rotated = run('grafana_datasource', postgres(ds, json_data={'database': 'ai_platform', 'sslmode': 'require'},
                                                 secure_json_data={'password': 'rotated'}, update_secrets=True))
    assert rotated['changed'] is True and json.loads(proxy.bodies[0][2])['secureJsonData'] == {'password': 'rotated'}
    assert 'rotated' not in json.dumps(rotated)

    assert run('grafana_datasource', dict(uid=ds, state='absent'))['changed'] is True
    assert grafana.get('/api/datasources/uid/%s' % ds)[0] == 404
    assert run('grafana_datasource', dict(uid=ds, state='absent'))['changed'] is False


def test_stale_version_and_name_clash(run, grafana, proxy, uid):
    ds, other = uid('stale'), uid('clash')
    run('grafana_datasource', postgres(ds))

    def edit_behind_the_modules_back():
        current = grafana.get('/api/datasources/uid/%s' % ds)[1]
        status, _ = grafana.call('PUT', '/api/datasources/uid/%s' % ds,
                                 dict(current, url='127.0.0.1:2', version=current['version']))
        assert status == 200

    proxy.after('GET', r'^/api/datasources/uid/%s$' % ds, edit_behind_the_modules_back)
    stale = run('grafana_datasource', postgres(ds, datasource_url='127.0.0.1:3'), expect_failure=True)
    assert 'HTTP 409' in stale['msg'] and 'rerun' in stale['msg']
    assert grafana.get('/api/datasources/uid/%s' % ds)[1]['url'] == '127.0.0.1:2'

    clash = run('grafana_datasource', postgres(other, name='records ' + ds), expect_failure=True)
    assert 'HTTP 409' in clash['msg'] and 'name' in clash['msg']
    run('grafana_datasource', dict(uid=ds, state='absent'))


def test_health_check(run, grafana, uid):
    ds = uid('health')
    if grafana.real:  # the testdata plugin always passes Grafana's own test
        good = dict(uid=ds, name='health ' + ds, type='testdata')
    else:  # the stand-in's test is a TCP connection to the url: point it at the stand-in itself
        good = dict(uid=ds, name='health ' + ds, type='prometheus', datasource_url=grafana.url)
    ok = run('grafana_datasource', dict(good, health_check=True))
    assert ok['changed'] is True and ok['health']['status'] == 'OK'
    bad_ds = uid('unhealthy')
    bad = run('grafana_datasource', dict(uid=bad_ds, name='health ' + bad_ds, type='prometheus',
                                         datasource_url='http://127.0.0.1:1', health_check=True), expect_failure=True)
    assert 'health check failed' in bad['msg'] and bad['changed'] is True
    run.many([('grafana_datasource', dict(uid=item, state='absent')) for item in (ds, bad_ds)])


def test_read_only_datasource_is_refused(run, grafana):
    if grafana.real:
        pytest.skip('a file-provisioned data source exists only in the stand-in seed')
    unchanged = run('grafana_datasource', dict(uid='seed-readonly', name='Provisioned Prometheus', type='prometheus'))
    assert unchanged['changed'] is False
    refused = run('grafana_datasource', dict(uid='seed-readonly', name='Renamed', type='prometheus'),
                  expect_failure=True)
    assert 'read-only' in refused['msg'] and 'provisioning file' in refused['msg']
