"""grafana_datasource's jsonData handling: merge (only the task's keys) and replace (the whole jsonData).

The pure helpers are tested alone; the module runs in-process against the in-process stand-in, and every
check reads the stand-in's stored data source back, not only the module's result.
"""
import copy
import json
import urllib.error
import urllib.request

import pytest

from ansible_collections.aiplatform.observability.plugins.modules import grafana_datasource
from ansible_collections.aiplatform.observability.plugins.modules.grafana_datasource import json_view, merge_json


@pytest.fixture
def conn(standin_url, token):
    return dict(url=standin_url, token=token)


@pytest.fixture
def api(standin_url, token):
    """Direct calls to the stand-in, as the Grafana UI makes them (never through the module)."""

    def call(method, path, body=None):
        req = urllib.request.Request(standin_url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header('Authorization', 'Bearer ' + token)
        req.add_header('Content-Type', 'application/json')
        try:
            with urllib.request.urlopen(req) as resp:
                return resp.status, json.loads(resp.read() or b'null')
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b'null')

    call.stored = lambda uid: call('GET', '/api/datasources/uid/' + uid)[1]
    return call


def ui_edit(api, uid, **json_data):
    """Add or change jsonData keys the way the UI saves: the whole object with the version read."""
    current = api.stored(uid)
    status, _ = api('PUT', '/api/datasources/uid/' + uid,
                    dict(current, jsonData=dict(current['jsonData'], **json_data), version=current['version']))
    assert status == 200
    return api.stored(uid)


# ------------------------------------------------------------------ pure helpers

@pytest.mark.parametrize('stored,patch,merged', [
    ({'a': 1, 'ui': 2}, {'a': 1}, {'a': 1, 'ui': 2}),
    ({'a': 1, 'ui': 2}, {'a': 3}, {'a': 3, 'ui': 2}),
    ({'ui': 2}, {'new': 'x'}, {'ui': 2, 'new': 'x'}),
    ({'n': {'x': 1, 'y': 2}, 'ui': 0}, {'n': {'x': 5}}, {'n': {'x': 5, 'y': 2}, 'ui': 0}),
    ({'n': {'x': 1, 'd': {'p': 1, 'q': 2}}}, {'n': {'d': {'q': 3}}}, {'n': {'x': 1, 'd': {'p': 1, 'q': 3}}}),
    ({'l': [1, 2, 3], 'ui': 1}, {'l': [1]}, {'l': [1], 'ui': 1}),          # lists are values, not merged
    ({'n': 'text'}, {'n': {'x': 1}}, {'n': {'x': 1}}),                    # a dict replaces a non-dict
    ({'n': {'x': 1}}, {'n': 'text'}, {'n': 'text'}),
    ({'gone': 1, 'ui': 2}, {'gone': None}, {'ui': 2}),                    # null removes (RFC 7396)
    ({'n': {'gone': 1, 'y': 2}}, {'n': {'gone': None}}, {'n': {'y': 2}}),
    ({'ui': 2}, {'absent': None}, {'ui': 2}),
    ({}, {'n': {}}, {'n': {}}),
    (None, {'a': 1, 'b': None}, {'a': 1}),
])
def test_merge_json(stored, patch, merged):
    stored_copy, patch_copy = copy.deepcopy(stored), copy.deepcopy(patch)
    assert merge_json(stored, patch) == merged
    assert (stored, patch) == (stored_copy, patch_copy), 'the inputs must not be changed'


@pytest.mark.parametrize('stored,patch,view', [
    ({'a': 1, 'ui': 2}, {'a': 3}, {'a': 1}),
    ({'ui': 2}, {'a': 3}, {}),
    ({'n': {'x': 1, 'y': 2}, 'ui': 0}, {'n': {'x': 5}}, {'n': {'x': 1}}),
    ({'n': 'text'}, {'n': {'x': 1}}, {'n': 'text'}),
    ({'l': [1, 2, 3]}, {'l': [1]}, {'l': [1, 2, 3]}),
    ({'gone': 1, 'ui': 2}, {'gone': None}, {'gone': 1}),
])
def test_json_view_holds_only_the_task_keys(stored, patch, view):
    assert json_view(stored, patch) == view


@pytest.mark.parametrize('stored,patch', [
    ({'a': 1, 'ui': 2}, {'a': 1}), ({'a': 1}, {'a': 2}), ({'a': 1}, {'a': 1.0}), ({'a': 1}, {'a': '1'}),
    ({'ui': 1}, {'a': 1}), ({'a': None}, {'a': None}), ({'ui': 1}, {'a': None}), ({'a': 1}, {'a': None}),
    ({'n': {'x': 1, 'y': 2}}, {'n': {'x': 1}}), ({'n': {'x': 1}}, {'n': {'x': 2}}), ({}, {'n': {}}),
    ({'n': {}}, {'n': {}}), ({'n': {}}, {'n': {'x': None}}), ({'n': 1}, {'n': {}}),
    ({'l': [1, 2]}, {'l': [1, 2]}), ({'l': [1, 2]}, {'l': [2, 1]}), ({'l': [{'a': 1}]}, {'l': [{'a': 1, 'b': 2}]}),
])
def test_compared_equal_exactly_when_the_merge_changes_nothing(stored, patch):
    """The module reports no change when json_view == merge_json({}, patch); that must mean the PUT it
    would send leaves the stored jsonData as it is, and the other way round."""
    unchanged = json_view(stored, patch) == merge_json({}, patch)
    assert unchanged == (merge_json(stored, patch) == stored)


# ------------------------------------------------------------------ the module against the stand-in

def prometheus(uid, **extra):
    args = dict(uid=uid, name='prom ' + uid, type='prometheus', datasource_url='http://127.0.0.1:9090',
                json_data={'timeInterval': '15s', 'httpHeaders': {'a': 1, 'b': 2}})
    args.update(extra)
    return args


def test_merge_keeps_keys_added_behind_the_modules_back(run_module, conn, api):
    args = dict(conn, **prometheus('unit-merge'))
    assert run_module(grafana_datasource, args)['changed'] is True
    edited = ui_edit(api, 'unit-merge', httpMethod='POST', httpHeaders={'a': 1, 'b': 2, 'ui': 3})

    again = run_module(grafana_datasource, args)
    assert again['changed'] is False, again['diff']
    assert api.stored('unit-merge') == edited, 'an unchanged run must not write'
    assert again['datasource']['jsonData'] == edited['jsonData']

    nested = run_module(grafana_datasource, dict(args, json_data={'httpHeaders': {'b': 20}, 'timeout': 60}))
    assert nested['changed'] is True
    assert nested['diff']['before']['jsonData'] == {'httpHeaders': {'b': 2}}
    assert nested['diff']['after']['jsonData'] == {'httpHeaders': {'b': 20}, 'timeout': 60}
    stored = api.stored('unit-merge')
    assert stored['jsonData'] == {'timeInterval': '15s', 'httpMethod': 'POST', 'timeout': 60,
                                  'httpHeaders': {'a': 1, 'b': 20, 'ui': 3}}
    assert stored['version'] == edited['version'] + 1
    assert nested['datasource']['jsonData'] == stored['jsonData']

    removed = run_module(grafana_datasource, dict(args, json_data={'httpMethod': None, 'httpHeaders': {'ui': None}}))
    assert removed['changed'] is True
    assert removed['diff']['before']['jsonData'] == {'httpMethod': 'POST', 'httpHeaders': {'ui': 3}}
    assert removed['diff']['after']['jsonData'] == {'httpHeaders': {}}
    assert api.stored('unit-merge')['jsonData'] == {'timeInterval': '15s', 'timeout': 60,
                                                    'httpHeaders': {'a': 1, 'b': 20}}
    assert run_module(grafana_datasource, dict(args, json_data={'httpMethod': None}))['changed'] is False
    run_module(grafana_datasource, dict(conn, uid='unit-merge', state='absent'))


def test_lists_are_compared_and_written_as_values(run_module, conn, api):
    args = dict(conn, **prometheus('unit-list', json_data={'exemplarTraceIdDestinations': [{'name': 'a'}]}))
    run_module(grafana_datasource, args)
    ui_edit(api, 'unit-list', exemplarTraceIdDestinations=[{'name': 'a'}, {'name': 'ui'}], manageAlerts=True)
    result = run_module(grafana_datasource, args)
    assert result['changed'] is True
    assert api.stored('unit-list')['jsonData'] == {'exemplarTraceIdDestinations': [{'name': 'a'}],
                                                   'manageAlerts': True}
    assert run_module(grafana_datasource, args)['changed'] is False
    run_module(grafana_datasource, dict(conn, uid='unit-list', state='absent'))


def test_replace_converges_to_exactly_the_task(run_module, conn, api):
    args = dict(conn, **prometheus('unit-replace', json_data_mode='replace'))
    run_module(grafana_datasource, args)
    edited = ui_edit(api, 'unit-replace', httpMethod='POST')

    check = run_module(grafana_datasource, args, check=True)
    assert check['changed'] is True
    assert check['diff']['before']['jsonData'] == edited['jsonData']
    assert check['diff']['after']['jsonData'] == args['json_data']
    assert api.stored('unit-replace') == edited, 'check mode must not write'

    result = run_module(grafana_datasource, args)
    assert result['changed'] is True
    assert api.stored('unit-replace')['jsonData'] == args['json_data']
    assert run_module(grafana_datasource, args)['changed'] is False

    # without json_data, replace has nothing to compare: the stored jsonData stays
    ui_edit(api, 'unit-replace', httpMethod='GET')
    bare = dict(conn, uid='unit-replace', name='prom unit-replace', type='prometheus', json_data_mode='replace')
    assert run_module(grafana_datasource, bare)['changed'] is False
    assert api.stored('unit-replace')['jsonData']['httpMethod'] == 'GET'
    run_module(grafana_datasource, dict(conn, uid='unit-replace', state='absent'))


def test_check_mode_diff_shows_only_the_task_keys(run_module, conn, api):
    args = dict(conn, **prometheus('unit-check', secure_json_data={'basicAuthPassword': 's3cret-value'}))
    create = run_module(grafana_datasource, args, check=True)
    assert create['changed'] is True and api('GET', '/api/datasources/uid/unit-check')[0] == 404
    assert create['diff']['before'] == {} and create['diff']['after']['jsonData'] == args['json_data']
    assert 's3cret-value' not in json.dumps(create)

    run_module(grafana_datasource, args)
    edited = ui_edit(api, 'unit-check', httpMethod='POST', httpHeaders={'a': 1, 'b': 2, 'ui': 3})
    check = run_module(grafana_datasource, dict(args, json_data={'httpHeaders': {'a': 9}}, update_secrets=True),
                       check=True)
    assert check['changed'] is True
    assert check['diff']['before'] == {'name': 'prom unit-check', 'type': 'prometheus',
                                       'url': 'http://127.0.0.1:9090', 'jsonData': {'httpHeaders': {'a': 1}}}
    assert check['diff']['after'] == dict(check['diff']['before'], jsonData={'httpHeaders': {'a': 9}})
    assert check['datasource']['jsonData'] == {'timeInterval': '15s', 'httpMethod': 'POST',
                                               'httpHeaders': {'a': 9, 'b': 2, 'ui': 3}}
    assert 's3cret-value' not in json.dumps(check) and 'secureJsonData' not in json.dumps(check['diff'])
    assert api.stored('unit-check') == edited, 'check mode must not write'
    run_module(grafana_datasource, dict(conn, uid='unit-check', state='absent'))


def test_create_in_merge_mode_drops_null_keys(run_module, conn, api):
    args = dict(conn, **prometheus('unit-null', json_data={'timeInterval': '15s', 'unset': None}))
    assert run_module(grafana_datasource, args)['changed'] is True
    assert api.stored('unit-null')['jsonData'] == {'timeInterval': '15s'}
    assert run_module(grafana_datasource, args)['changed'] is False
    run_module(grafana_datasource, dict(conn, uid='unit-null', state='absent'))


def test_unknown_json_data_mode_is_refused(run_module, conn, api):
    result = run_module(grafana_datasource, dict(conn, **prometheus('unit-mode', json_data_mode='patch')))
    assert result['failed'] and 'json_data_mode' in result['msg'] and 'merge, replace' in result['msg']
    assert api('GET', '/api/datasources/uid/unit-mode')[0] == 404
