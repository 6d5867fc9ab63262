"""Each module run in-process against the in-process stand-in: argument rules, pure helpers, diff."""
import datetime

import pytest

from ansible_collections.aiplatform.observability.plugins.modules import (
    grafana_alert_rule, grafana_annotation, grafana_dashboard, grafana_datasource, grafana_folder)
from ansible_collections.aiplatform.observability.plugins.module_utils._grafana import GrafanaError


@pytest.fixture
def conn(standin_url, token):
    return dict(url=standin_url, token=token)


def test_argument_rules(run_module, standin_url, conn):
    no_creds = run_module(grafana_folder, dict(url=standin_url, uid='f', title='F'))
    assert no_creds['failed'] and 'token' in no_creds['msg'] and 'url_username' in no_creds['msg']
    both = run_module(grafana_folder, dict(conn, uid='f', title='F', url_username='admin', url_password='secret-pw'))
    assert both['failed'] and 'mutually exclusive' in both['msg']
    no_title = run_module(grafana_folder, dict(conn, uid='f'))
    assert no_title['failed'] and 'title' in no_title['msg']
    bad_uid = run_module(grafana_folder, dict(conn, uid='has spaces', title='F'))
    assert bad_uid['failed'] and 'not a valid Grafana uid' in bad_uid['msg']
    no_dash = run_module(grafana_dashboard, dict(conn, uid='d'))
    assert no_dash['failed'] and 'dashboard' in no_dash['msg'] and 'path' in no_dash['msg']
    no_title = run_module(grafana_dashboard, dict(conn, dashboard={'uid': 'd'}))
    assert no_title['failed'] and '"title"' in no_title['msg']
    panel = run_module(grafana_annotation, dict(conn, text='x', time=1746100800000, panel_id=2))
    assert panel['failed'] and 'dashboard_uid' in panel['msg']


def test_basic_auth_and_no_log(run_module, standin_url):
    result = run_module(grafana_folder, dict(url=standin_url, url_username='admin', url_password='unit-admin',
                                             uid='basic-auth', title='Basic'))
    assert result['changed'] is True and 'unit-admin' not in str(result)
    wrong = run_module(grafana_folder, dict(url=standin_url, url_username='admin', url_password='nope',
                                            uid='basic-auth', title='Basic'))
    assert wrong['failed'] and 'HTTP 401' in wrong['msg']


def test_org_header_separates_objects(run_module, conn):
    assert run_module(grafana_folder, dict(conn, uid='per-org', title='Org 2', org_id=2))['changed'] is True
    assert run_module(grafana_folder, dict(conn, uid='per-org', title='Org 2', org_id=2))['changed'] is False
    assert run_module(grafana_folder, dict(conn, uid='per-org', title='Org 1'))['changed'] is True


def test_folder_check_mode_and_diff(run_module, conn):
    check = run_module(grafana_folder, dict(conn, uid='unit-folder', title='Unit'), check=True)
    assert check['changed'] is True and check['diff'] == {
        'before': {}, 'after': {'uid': 'unit-folder', 'title': 'Unit', 'parent_uid': ''}}
    assert run_module(grafana_folder, dict(conn, uid='unit-folder', title='Unit'))['changed'] is True
    assert run_module(grafana_folder, dict(conn, uid='unit-folder', title='Unit'))['changed'] is False
    own = run_module(grafana_folder, dict(conn, uid='unit-folder', title='Unit', parent_uid='unit-folder'))
    assert own['failed'] and 'cannot contain itself' in own['msg']


def test_dashboard_path_errors(run_module, conn, tmp_path):
    missing = run_module(grafana_dashboard, dict(conn, path=str(tmp_path / 'nope.json')))
    assert missing['failed'] and 'cannot read the dashboard JSON' in missing['msg']
    broken = tmp_path / 'broken.json'
    broken.write_text('{"title": ')
    assert 'cannot read' in run_module(grafana_dashboard, dict(conn, path=str(broken)))['msg']


def test_datasource_secrets_never_in_diff(run_module, conn):
    args = dict(conn, uid='unit-pg', name='unit pg', type='postgres', datasource_url='db:5432',
                secure_json_data={'password': 'p4ss'})
    created = run_module(grafana_datasource, args)
    assert created['changed'] is True and 'p4ss' not in str(created)
    assert created['datasource']['type'] == 'grafana-postgresql-datasource'
    rotate = run_module(grafana_datasource, dict(args, update_secrets=True), check=True)
    assert rotate['changed'] is True and rotate['diff']['before'] == rotate['diff']['after']
    assert 'p4ss' not in str(rotate)


@pytest.mark.parametrize('given,expected', [
    ('postgres', 'grafana-postgresql-datasource'),
    ('grafana-postgresql-datasource', 'grafana-postgresql-datasource'),
    ('prometheus', 'prometheus'),
])
def test_datasource_type_aliases(given, expected):
    assert grafana_datasource.canonical_type(given) == expected


@pytest.mark.parametrize('value,expected', [
    (1746100800000, 1746100800000),
    ('1746100800000', 1746100800000),
    ('2025-05-01T12:00:00Z', 1746100800000),
    ('2025-05-01T14:00:00+02:00', 1746100800000),
    ('2025-05-01 12:00:00', 1746100800000),  # no offset: UTC
    ('2025-05-01T12:00:00.250Z', 1746100800250),
    (datetime.datetime(2025, 5, 1, 12, tzinfo=datetime.timezone.utc), 1746100800000),
])
def test_annotation_times(value, expected):
    assert grafana_annotation.epoch_ms(value, 'time') == expected


@pytest.mark.parametrize('value,message', [
    (1746100800, 'epoch seconds'), ('yesterday', 'ISO 8601'), (True, 'not a time')])
def test_annotation_bad_times(value, message):
    with pytest.raises(GrafanaError) as e:
        grafana_annotation.epoch_ms(value, 'time')
    assert message in str(e.value)


def test_annotation_view_matches_grafana_defaults():
    stored = {'id': 4, 'text': 't', 'time': 5, 'timeEnd': 5, 'dashboardUID': '', 'panelId': 0, 'tags': ['b', 'a']}
    wanted = {'text': 't', 'time': 5, 'timeEnd': None, 'dashboardUID': None, 'panelId': None, 'tags': ['a', 'b']}
    assert grafana_annotation.annotation_view(stored) == grafana_annotation.annotation_view(wanted)


@pytest.mark.parametrize('text,seconds', [
    ('5m', 300), ('300s', 300), ('1h30m', 5400), ('0s', 0), ('90', 90), ('1d', 86400), ('5 m', None), ('m', None)])
def test_durations(text, seconds):
    assert grafana_alert_rule.duration_seconds(text) == seconds


def test_rule_view_compares_queries_by_the_keys_set():
    stored = {'title': 'T', 'for': '5m', 'provenance': 'api', 'labels': None,
              'data': [{'refId': 'A', 'queryType': '', 'datasourceUid': 'p', 'model': {'expr': 'up'}}]}
    wanted = {'title': 'T', 'for': '300s', 'provenance': 'api', 'labels': {},
              'data': [{'refId': 'A', 'datasourceUid': 'p', 'model': {'expr': 'up'}}]}
    keys = [list(item) for item in wanted['data']]
    assert grafana_alert_rule.rule_view(stored, keys) == grafana_alert_rule.rule_view(wanted)
    assert grafana_alert_rule.rule_view(stored) != grafana_alert_rule.rule_view(wanted)


def test_alert_rule_input_checks(run_module, conn):
    base = dict(conn, uid='r', title='T', folder_uid='nowhere', rule_group='g', condition='Z',
                data=[{'refId': 'A', 'datasourceUid': 'p', 'relativeTimeRange': {'from': 60, 'to': 0}, 'model': {}}])
    assert "condition 'Z' is not the refId" in run_module(grafana_alert_rule, base)['msg']
    assert 'multiple of 10' in run_module(grafana_alert_rule, dict(base, condition='A', group_interval=45))['msg']
    assert 'not a duration' in run_module(grafana_alert_rule, dict(base, condition='A', pending_period='soon'))['msg']
    assert 'datasourceUid' in run_module(grafana_alert_rule, dict(base, condition='A', data=[{'refId': 'A'}]))['msg']
    assert "folder_uid 'nowhere'" in run_module(grafana_alert_rule, dict(base, condition='A'))['msg']


def test_missing_dependency_warns_in_check_mode_fails_otherwise(run_module, conn):
    """On a fresh server the folder task only reports its creation in check mode: the dashboard task
    that follows must not fail there, but must fail for real when the folder is still missing."""
    args = dict(conn, dashboard={'uid': 'needs-folder', 'title': 'Needs folder'}, folder_uid='not-yet')
    check = run_module(grafana_dashboard, args, check=True)
    assert check['changed'] is True and not check.get('failed')
    assert "folder_uid 'not-yet'" in str(check['warnings']), check
    real = run_module(grafana_dashboard, args)
    assert real['failed'] and "folder_uid 'not-yet': no such folder" in real['msg']
