"""The grafana role with grafana_dashboards_delivery: files (grafana_install: false), run for real on
localhost against a stand-in of its own: the dashboards and their provider, and the data sources, are
written as provisioning files; a rerun changes nothing; a threshold change rewrites exactly the
dashboard file that draws it; a dashboard taken out of grafana_dashboards loses its file; a dashboard
that an earlier API delivery saved and someone edited in Grafana stops the switch to files before any
file is written; and the API delivery refuses to run while the provider file exists.

The stand-in is started with --provisioning-dir on the role's provisioning directory and reads the
files as Grafana does on the role's reload: the tests ask it that the dashboards are held as
provisioned in the folder, that the data sources are read-only, that a threshold change reaches the
dashboard Grafana serves, and that a dashboard whose file is removed is gone from Grafana.
"""
import json
import os
import stat

import pytest
import yaml
from test_service_account import RoleRun


@pytest.fixture(scope='module')
def files_role(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip('the role writes root-owned files; run the integration tests as root')
    tmp = tmp_path_factory.mktemp('grafana-files')
    # the stand-in reads the provisioning files the role writes, as Grafana reads <paths.provisioning>
    run = RoleRun(tmp, standin_args=['--provisioning-dir', str(tmp / 'etc-grafana' / 'provisioning')])
    inventory = yaml.safe_load((tmp / 'inventory.yml').read_text())
    inventory['all']['vars'].update({
        'grafana_dashboards_delivery': 'files', 'grafana_group': 'root',
        'grafana_config_dir': str(tmp / 'etc-grafana'), 'grafana_data_dir': str(tmp / 'var-lib-grafana')})
    (tmp / 'inventory.yml').write_text(yaml.safe_dump(inventory))
    run.dashboards = tmp / 'var-lib-grafana' / 'dashboards' / 'aiplatform'
    run.provider = tmp / 'etc-grafana' / 'provisioning' / 'dashboards' / 'aiplatform.yaml'
    run.datasources = tmp / 'etc-grafana' / 'provisioning' / 'datasources' / 'aiplatform.yaml'
    try:
        yield run
    finally:
        run.stop()


def api_save(role, dash, folder_uid, message):
    status, saved = role.api('POST', '/api/dashboards/db', {'dashboard': dash, 'folderUid': folder_uid,
                                                            'message': message, 'overwrite': False})
    assert status == 200, saved
    return saved


def test_an_api_dashboard_edited_in_grafana_stops_the_switch_to_files(files_role):
    role = files_role
    # an earlier API delivery saved learning-engine (with the module's content mark), then someone edited it
    changed, tasks, out = role.play('-e', 'grafana_dashboards_delivery=api')
    assert role.api('GET', '/api/dashboards/uid/learning-engine')[0] == 200
    current = role.api('GET', '/api/dashboards/uid/learning-engine')[1]
    api_save(role, dict(current['dashboard'], description='edited in the UI'), current['meta']['folderUid'],
             'on-call edit')
    _, tasks, out = role.play(expect_failure=True)
    assert 'dashboard learning-engine: its version' in out and 'grafana_dashboards_overwrite_edits' in out
    assert not role.dashboards.exists() or not list(role.dashboards.glob('*.json')), 'a file was written'
    assert not role.provider.exists() and not role.datasources.exists(), 'a provisioning file was written'


def test_files_delivery_writes_the_provisioning_files(files_role):
    role = files_role
    changed, tasks, out = role.play('-e', 'grafana_dashboards_overwrite_edits=true')
    assert 'Write the dashboards' in tasks and 'Write the dashboard provider' in tasks, tasks
    assert 'Save the dashboards that differ' not in tasks, 'the files delivery saved through the API'
    files = sorted(p.name for p in role.dashboards.glob('*.json'))
    assert files == ['learning-engine.json', 'mcp-activity.json', 'platform-overview.json']
    for path in list(role.dashboards.glob('*.json')) + [role.provider, role.datasources]:
        mode = path.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o640 and mode.st_uid == 0, path
    board = json.loads((role.dashboards / 'platform-overview.json').read_text())
    assert board['uid'] == 'platform-overview' and board['panels'] and 'version' not in board
    provider = yaml.safe_load(role.provider.read_text())['providers'][0]
    assert provider['options']['path'] == str(role.dashboards) and provider['folderUid'] == 'aiplatform'
    assert {d['uid'] for d in yaml.safe_load(role.datasources.read_text())['datasources']} == \
        {'aiplatform-prometheus', 'aiplatform-postgres'}
    for uid in ('learning-engine', 'mcp-activity', 'platform-overview'):
        status, held = role.api('GET', '/api/dashboards/uid/' + uid)
        assert status == 200 and held['meta']['provisioned'] and held['meta']['folderUid'] == 'aiplatform', held
        assert held['meta']['provisionedExternalId'] == uid + '.json'
    # the edited API dashboard was taken over by its file
    assert 'edited in the UI' not in json.dumps(role.api('GET', '/api/dashboards/uid/learning-engine')[1])
    for uid in ('aiplatform-prometheus', 'aiplatform-postgres'):
        status, source = role.api('GET', '/api/datasources/uid/' + uid)
        assert status == 200 and source['readOnly'] is True, source
    notes = role.api('GET', '/api/annotations?tags=aiplatform&tags=deploy')[1]
    assert any('(provisioning file)' in n['text'] for n in notes), [n['text'] for n in notes]

    changed, tasks, _ = role.play()
    assert changed == 0, 'second run changed: %s' % tasks


def test_a_threshold_change_rewrites_exactly_its_dashboard_file(files_role):
    role = files_role
    before = {p.name: p.read_text() for p in role.dashboards.glob('*.json')}
    changed, tasks, out = role.play('--tags', 'thresholds', '-e',
                                    json.dumps({'aiplatform_thresholds': {'drift_psi': {'dashboard': {'orange': 0.22}}}}))
    after = {p.name: p.read_text() for p in role.dashboards.glob('*.json')}
    assert [n for n in sorted(after) if after[n] != before[n]] == ['learning-engine.json']
    assert '0.22' in after['learning-engine.json']
    assert '0.22' in json.dumps(role.api('GET', '/api/dashboards/uid/learning-engine')[1]['dashboard'])


def test_a_dashboard_taken_out_loses_its_file(files_role):
    role = files_role
    role.play('-e', json.dumps({'grafana_dashboards': ['platform-overview', 'learning-engine']}))
    assert sorted(p.name for p in role.dashboards.glob('*.json')) == ['learning-engine.json', 'platform-overview.json']
    assert role.api('GET', '/api/dashboards/uid/mcp-activity')[0] == 404
    assert role.api('GET', '/api/dashboards/uid/platform-overview')[0] == 200


def test_the_api_delivery_refuses_while_the_files_are_provisioned(files_role):
    _, tasks, out = files_role.play('-e', 'grafana_dashboards_delivery=api', expect_failure=True)
    assert 'the files' in out and "delivery's dashboard provider) exists" in out, out[-2000:]
    assert 'Save the dashboards that differ' not in tasks
