"""grafana_datasource: uid endpoints, type aliases, secrets, read-only, stale versions, health, and jsonData
merged (keys saved in the UI survive) or replaced."""
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


def prometheus(ds_uid, **extra):
    args = dict(uid=ds_uid, name='prometheus ' + ds_uid, type='prometheus', datasource_url='http://127.0.0.1:9090',
                json_data={'timeInterval': '15s', 'httpHeaderName1': 'X-Scope-OrgID',
                           'sigV4': {'region': 'eu-west-1', 'profile': 'platform'}})
    args.update(extra)
    return args


def edit_in_the_ui(grafana, ds_uid, **json_data):
    """Save the data source directly (as the Grafana UI does): whole object, the version read, extra keys."""
    path = '/api/datasources/uid/%s' % ds_uid
    current = grafana.get(path)[1]
    status, answer = grafana.call('PUT', path, dict(current, jsonData=dict(current['jsonData'], **json_data),
                                                    version=current['version']))
    assert status == 200, answer
    stored = grafana.get(path)[1]
    for key, value in json_data.items():
        assert stored['jsonData'][key] == value, 'the direct save did not store %s' % key
    return stored


def test_merge_keeps_keys_added_in_the_ui(run, grafana, proxy, uid):
    ds = uid('merge')
    path = '/api/datasources/uid/%s' % ds
    assert run('grafana_datasource', prometheus(ds))['changed'] is True
    edited = edit_in_the_ui(grafana, ds, httpMethod='POST', manageAlerts=False)

    again = run('grafana_datasource', prometheus(ds))
    assert again['changed'] is False, again['diff']
    assert [m for m, _ in proxy.log if m != 'GET'] == [] and proxy.bodies == []
    assert grafana.get(path)[1] == edited

    # a changed task key is written over the stored jsonData: the UI's keys survive
    changed = run('grafana_datasource', prometheus(ds, json_data={'timeInterval': '30s'}))
    assert changed['changed'] is True
    assert changed['diff']['before']['jsonData'] == {'timeInterval': '15s'}
    assert changed['diff']['after']['jsonData'] == {'timeInterval': '30s'}
    method, put_path, body = proxy.bodies[0]
    assert (method, put_path) == ('PUT', path) and json.loads(body)['version'] == edited['version']
    stored = grafana.get(path)[1]
    assert stored['jsonData'] == dict(edited['jsonData'], timeInterval='30s')
    assert stored['jsonData']['httpMethod'] == 'POST' and stored['jsonData']['manageAlerts'] is False
    run('grafana_datasource', dict(uid=ds, state='absent'))


def test_replace_removes_keys_added_in_the_ui(run, grafana, proxy, uid):
    ds = uid('replace')
    path = '/api/datasources/uid/%s' % ds
    args = prometheus(ds, json_data_mode='replace')
    run('grafana_datasource', args)
    edit_in_the_ui(grafana, ds, httpMethod='POST')

    replaced = run('grafana_datasource', args)
    assert replaced['changed'] is True
    assert replaced['diff']['before']['jsonData']['httpMethod'] == 'POST'
    assert replaced['diff']['after']['jsonData'] == args['json_data']
    assert json.loads(proxy.bodies[0][2])['jsonData'] == args['json_data']
    assert grafana.get(path)[1]['jsonData'] == args['json_data']
    assert run('grafana_datasource', args)['changed'] is False
    run('grafana_datasource', dict(uid=ds, state='absent'))


def test_nested_jsondata_is_merged_key_by_key(run, grafana, uid):
    ds = uid('nested')
    path = '/api/datasources/uid/%s' % ds
    run('grafana_datasource', prometheus(ds))
    edit_in_the_ui(grafana, ds, sigV4={'region': 'eu-west-1', 'profile': 'platform', 'assumeRoleArn': 'arn:ui'})

    same = run('grafana_datasource', prometheus(ds, json_data={'sigV4': {'region': 'eu-west-1'}}))
    assert same['changed'] is False, same['diff']
    moved = run('grafana_datasource', prometheus(ds, json_data={'sigV4': {'region': 'us-east-2'}}))
    assert moved['changed'] is True
    assert moved['diff']['before']['jsonData'] == {'sigV4': {'region': 'eu-west-1'}}
    assert moved['diff']['after']['jsonData'] == {'sigV4': {'region': 'us-east-2'}}
    assert grafana.get(path)[1]['jsonData'] == {
        'timeInterval': '15s', 'httpHeaderName1': 'X-Scope-OrgID',
        'sigV4': {'region': 'us-east-2', 'profile': 'platform', 'assumeRoleArn': 'arn:ui'}}

    # a key set to null is removed, its siblings stay
    dropped = run('grafana_datasource', prometheus(ds, json_data={'sigV4': {'assumeRoleArn': None}}))
    assert dropped['changed'] is True
    assert grafana.get(path)[1]['jsonData']['sigV4'] == {'region': 'us-east-2', 'profile': 'platform'}
    run('grafana_datasource', dict(uid=ds, state='absent'))


def test_check_mode_diff_shows_only_the_task_keys(run, grafana, proxy, uid):
    ds = uid('checkdiff')
    path = '/api/datasources/uid/%s' % ds
    run('grafana_datasource', prometheus(ds, basic_auth=True, basic_auth_user='reader',
                                         secure_json_data={'basicAuthPassword': 'never-shown-pw'}))
    edited = edit_in_the_ui(grafana, ds, httpMethod='POST', customQueryParameters='max_source_resolution=5m')

    check = run('grafana_datasource', prometheus(ds, json_data={'timeInterval': '1m', 'sigV4': {'region': 'x'}},
                                                 secure_json_data={'basicAuthPassword': 'never-shown-pw'},
                                                 update_secrets=True), check=True)
    assert check['changed'] is True
    assert check['diff']['before']['jsonData'] == {'timeInterval': '15s', 'sigV4': {'region': 'eu-west-1'}}
    assert check['diff']['after']['jsonData'] == {'timeInterval': '1m', 'sigV4': {'region': 'x'}}
    assert 'never-shown-pw' not in json.dumps(check) and 'secureJsonData' not in json.dumps(check['diff'])
    assert proxy.bodies == [] and grafana.get(path)[1] == edited

    replace = run('grafana_datasource', prometheus(ds, json_data_mode='replace'), check=True)
    assert replace['changed'] is True
    assert set(replace['diff']['before']['jsonData']) == set(edited['jsonData'])
    assert replace['diff']['after']['jsonData'] == prometheus(ds)['json_data']
    assert proxy.bodies == [] and grafana.get(path)[1] == edited
    run('grafana_datasource', dict(uid=ds, state='absent'))


def test_merge_never_overwrites_a_concurrent_ui_edit(run, grafana, proxy, uid):
    """Merge is read, merge, write: a key saved in the UI between the read and the write is not lost."""
    ds = uid('race')
    path = '/api/datasources/uid/%s' % ds
    run('grafana_datasource', prometheus(ds))
    proxy.after('GET', r'^%s$' % path, lambda: edit_in_the_ui(grafana, ds, httpMethod='POST'))
    stale = run('grafana_datasource', prometheus(ds, json_data={'timeInterval': '30s'}), expect_failure=True)
    assert 'HTTP 409' in stale['msg'] and 'rerun' in stale['msg']
    assert grafana.get(path)[1]['jsonData'] == dict(prometheus(ds)['json_data'], httpMethod='POST')

    rerun = run('grafana_datasource', prometheus(ds, json_data={'timeInterval': '30s'}))
    assert rerun['changed'] is True
    assert grafana.get(path)[1]['jsonData'] == dict(prometheus(ds)['json_data'], httpMethod='POST', timeInterval='30s')
    run('grafana_datasource', dict(uid=ds, state='absent'))
