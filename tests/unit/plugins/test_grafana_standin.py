"""The stand-in follows shared/notes/grafana-http-api.md: status codes, bodies, versions, provenance."""
import pytest


@pytest.fixture
def api(standin_request, token):
    default_token = token

    def call(method, path, body=None, token=default_token, basic=None, headers=None):
        return standin_request(method, path, body, token=token, basic=basic, headers=headers)
    return call


def test_health_and_auth(api):
    assert api('GET', '/api/health', token=None) == (200, {'database': 'ok', 'version': '12.1.0', 'commit': 'standin'})
    assert api('GET', '/api/folders', token=None)[0] == 401
    assert api('GET', '/api/folders', token='glsa_other')[0] == 401
    assert api('GET', '/api/folders', basic='admin:unit-admin')[0] == 200
    assert api('GET', '/api/folders', basic='admin:wrong')[0] == 401
    # admin endpoints accept basic auth only
    assert api('POST', '/api/admin/provisioning/datasources/reload')[0] == 403
    assert api('POST', '/api/admin/provisioning/datasources/reload', basic='admin:unit-admin')[0] == 200


def test_dashboard_versions_and_locking(api):
    status, saved = api('POST', '/api/dashboards/db', {'dashboard': {'uid': 'sd', 'title': 'S'}, 'folderUid': ''})
    assert status == 200 and saved['version'] == 1 and saved['url'] == '/d/sd/s' and saved['status'] == 'success'
    stale = api('POST', '/api/dashboards/db', {'dashboard': {'uid': 'sd', 'title': 'S', 'version': 0}})
    assert stale == (412, {'status': 'version-mismatch', 'message': 'The dashboard has been changed by someone else'})
    status, saved = api('POST', '/api/dashboards/db', {'dashboard': {'uid': 'sd', 'title': 'S2', 'version': 1}})
    assert status == 200 and saved['version'] == 2
    assert api('POST', '/api/dashboards/db', {'dashboard': {'uid': 'other', 'title': 'S2'}})[1]['status'] == 'name-exists'
    assert api('POST', '/api/dashboards/db', {'dashboard': {'uid': 'x', 'title': 'X'}, 'folderUid': 'nope'})[0] == 400
    assert api('GET', '/api/dashboards/uid/missing') == (404, {'message': 'Dashboard not found', 'status': 'not-found'})
    assert api('DELETE', '/api/dashboards/uid/sd')[1]['title'] == 'S2'


def test_folder_depth_and_move(api):
    parent = ''
    for level in range(1, 5):
        body = {'uid': 'lvl%d' % level, 'title': 'L%d' % level}
        if parent:
            body['parentUid'] = parent
        assert api('POST', '/api/folders', body)[0] == 200
        parent = body['uid']
    status, body = api('POST', '/api/folders', {'uid': 'lvl5', 'title': 'L5', 'parentUid': 'lvl4'})
    assert status == 400 and body['messageId'] == 'folder.maximum-depth-reached'
    assert api('POST', '/api/folders', {'uid': 'lvl1', 'title': 'again'})[0] == 409
    assert api('PUT', '/api/folders/lvl2', {'title': 'x', 'version': 99})[0] == 412
    assert api('POST', '/api/folders/lvl1/move', {'parentUid': 'lvl3'})[0] == 400
    assert api('POST', '/api/folders/lvl3/move', {'parentUid': ''})[1].get('parentUid') is None
    assert [f['uid'] for f in api('GET', '/api/folders?parentUid=lvl1')[1]] == ['lvl2']
    assert api('DELETE', '/api/folders/lvl1')[0] == 200 and api('GET', '/api/folders/lvl2')[0] == 404


def test_datasources(api):
    status, body = api('POST', '/api/datasources', {'uid': 'sds', 'name': 'pg', 'type': 'postgres',
                                                    'secureJsonData': {'password': 'p'}})
    ds = body['datasource']
    assert status == 200 and ds['type'] == 'grafana-postgresql-datasource' and ds['secureJsonFields'] == {'password': True}
    assert 'secureJsonData' not in ds  # secrets are never returned
    assert api('POST', '/api/datasources', {'uid': 'sds2', 'name': 'pg', 'type': 'postgres'})[0] == 409
    assert api('PUT', '/api/datasources/uid/sds', dict(ds, version=0, url='x'))[0] == 200  # no version: no check
    assert api('PUT', '/api/datasources/uid/sds', dict(ds, version=1))[0] == 409           # stale
    status, body = api('GET', '/api/datasources/uid/sds')
    assert body['secureJsonFields'] == {'password': True} and body['version'] == 2
    assert api('GET', '/api/datasources/name/pg')[1]['uid'] == 'sds'
    assert api('GET', '/api/datasources/uid/sds/health')[0] == 400
    assert api('DELETE', '/api/datasources/uid/sds')[0] == 200
    assert api('GET', '/api/datasources/uid/sds') == (404, {'message': 'Data source not found'})


def test_alert_rules_codes_and_provenance(api):
    api('POST', '/api/folders', {'uid': 'arf', 'title': 'Rules'})
    rule = {'uid': 'ar1', 'orgID': 1, 'folderUID': 'arf', 'ruleGroup': 'g', 'title': 'R', 'condition': 'A',
            'data': [{'refId': 'A', 'datasourceUid': '__expr__', 'relativeTimeRange': {'from': 0, 'to': 0},
                      'model': {}}], 'noDataState': 'OK', 'execErrState': 'Error', 'for': '60s'}
    assert api('GET', '/api/v1/provisioning/alert-rules/ar1') == (404, b'')
    status, created = api('POST', '/api/v1/provisioning/alert-rules', rule)
    assert status == 201 and created['provenance'] == 'api' and created['for'] == '1m'
    assert api('POST', '/api/v1/provisioning/alert-rules', rule)[0] == 400  # duplicate uid
    refused = api('PUT', '/api/v1/provisioning/alert-rules/ar1', rule, headers={'X-Disable-Provenance': 'x'})
    assert refused[0] == 403
    assert api('GET', '/api/v1/provisioning/folder/arf/rule-groups/g')[1]['interval'] == 60
    bad = api('PUT', '/api/v1/provisioning/folder/arf/rule-groups/g', {'interval': 45, 'rules': [rule]})
    assert bad[0] == 400 and 'multiple of 10' in bad[1]['message']
    group = api('PUT', '/api/v1/provisioning/folder/arf/rule-groups/g', {'interval': 30, 'rules': [rule]})[1]
    assert group['interval'] == 30 and [r['uid'] for r in group['rules']] == ['ar1']
    assert api('DELETE', '/api/v1/provisioning/alert-rules/ar1') == (204, b'')
    assert api('POST', '/api/v1/provisioning/alert-rules', dict(rule, noDataState='Maybe'))[0] == 400


def test_annotations(api):
    assert api('POST', '/api/annotations', {'text': 'a', 'time': 1000, 'tags': ['x', 'y']})[1]['message'] == \
        'Annotation added'
    api('POST', '/api/annotations', {'text': 'b', 'time': 2000, 'tags': ['x']})
    assert [a['text'] for a in api('GET', '/api/annotations?tags=x&tags=y')[1]] == ['a']
    assert [a['text'] for a in api('GET', '/api/annotations?from=1500&to=2500&tags=x')[1]] == ['b']

