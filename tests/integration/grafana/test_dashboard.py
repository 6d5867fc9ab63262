"""grafana_dashboard: uid-keyed saves with optimistic locking, folder handling, provisioned dashboards."""
import json
import re

import pytest


def board(dash_uid, title='GPU overview', expr='DCGM_FI_DEV_GPU_UTIL'):
    return {'uid': dash_uid, 'title': title, 'schemaVersion': 39, 'tags': ['gpu'],
            'panels': [{'id': 1, 'type': 'timeseries', 'title': 'Utilisation',
                        'targets': [{'refId': 'A', 'expr': expr}]}]}


def test_create_rerun_check_diff_update(run, grafana, proxy, uid):
    folder, dash = uid('dfolder'), uid('dash')
    run('grafana_folder', dict(uid=folder, title='Boards ' + folder))
    created = run('grafana_dashboard', dict(dashboard=board(dash), folder_uid=folder, commit_message='first'))
    assert created['changed'] is True and created['uid'] == dash
    assert created['url'].startswith('/d/%s' % dash) and created['version'] >= 1
    saves = [json.loads(b) for m, p, b in proxy.bodies if p == '/api/dashboards/db']
    assert saves and saves[0]['folderUid'] == folder and saves[0]['overwrite'] is False
    assert 'folderId' not in saves[0] and re.fullmatch(r'first \[aiplatform\.observability sha256:[0-9a-f]{16}\]',
                                                       saves[0]['message']), saves[0]['message']
    stored = grafana.get('/api/dashboards/uid/%s' % dash)[1]
    assert stored['meta']['folderUid'] == folder and stored['dashboard']['panels'][0]['title'] == 'Utilisation'

    # id and version in the input are ignored; the rest compares equal
    again = run('grafana_dashboard', dict(dashboard=dict(board(dash), id=999, version=77), folder_uid=folder))
    assert again['changed'] is False and again['version'] == created['version']
    assert [c for c in proxy.log if c[0] != 'GET'] == []

    check = run('grafana_dashboard', dict(dashboard=board(dash, expr='DCGM_FI_DEV_GPU_TEMP'), folder_uid=folder),
                check=True)
    assert check['changed'] is True
    before, after = check['diff']['before'], check['diff']['after']
    assert before['dashboard']['panels'][0]['targets'][0]['expr'] == 'DCGM_FI_DEV_GPU_UTIL'
    assert after['dashboard']['panels'][0]['targets'][0]['expr'] == 'DCGM_FI_DEV_GPU_TEMP'
    assert 'version' not in before['dashboard'] and 'id' not in before['dashboard']
    assert grafana.get('/api/dashboards/uid/%s' % dash)[1]['meta']['version'] == created['version']

    updated = run('grafana_dashboard', dict(dashboard=board(dash, expr='DCGM_FI_DEV_GPU_TEMP'), folder_uid=folder))
    assert updated['changed'] is True and updated['version'] == created['version'] + 1
    save = [json.loads(b) for m, p, b in proxy.bodies if p == '/api/dashboards/db'][0]
    assert save['dashboard']['version'] == created['version'], 'must save with the version it read'

    # the folder is compared too: omitting folder_uid means the root, and it is a change
    to_root = run('grafana_dashboard', dict(dashboard=board(dash, expr='DCGM_FI_DEV_GPU_TEMP')))
    assert to_root['changed'] is True
    assert to_root['diff']['before']['folder_uid'] == folder and to_root['diff']['after']['folder_uid'] == ''
    assert grafana.get('/api/dashboards/uid/%s' % dash)[1]['meta']['folderUid'] in ('', None)

    gone, again = run.many([('grafana_dashboard', dict(uid=dash, state='absent')),
                            ('grafana_dashboard', dict(uid=dash, state='absent'))])
    assert gone['changed'] is True and again['changed'] is False
    assert grafana.get('/api/dashboards/uid/%s' % dash)[0] == 404


def test_dashboard_from_file(run, grafana, uid, tmp_path):
    dash = uid('file')
    path = tmp_path / 'board.json'
    path.write_text(json.dumps({'dashboard': board(dash, title='From file ' + dash), 'overwrite': True}))
    assert run('grafana_dashboard', dict(path=str(path)))['changed'] is True
    assert run('grafana_dashboard', dict(path=str(path), uid=dash))['changed'] is False
    mismatch = run('grafana_dashboard', dict(path=str(path), uid=dash + 'x'), expect_failure=True)
    assert 'differs' in mismatch['msg']
    run('grafana_dashboard', dict(uid=dash, state='absent'))


def test_concurrent_edit_is_reported(run, grafana, proxy, uid):
    dash = uid('race')
    run('grafana_dashboard', dict(dashboard=board(dash, title='Race ' + dash)))

    def edit_behind_the_modules_back():
        current = grafana.get('/api/dashboards/uid/%s' % dash)[1]
        model = dict(current['dashboard'], description='edited in the UI')
        status, _ = grafana.call('POST', '/api/dashboards/db', dict(dashboard=model, folderUid='', overwrite=False))
        assert status == 200

    # after the module's last read (the version history, read when a save is due) and before its write
    proxy.after('GET', r'^/api/dashboards/uid/%s/versions' % dash, edit_behind_the_modules_back)
    result = run('grafana_dashboard', dict(dashboard=board(dash, title='Race ' + dash, expr='up')),
                 expect_failure=True)
    assert 'HTTP 412' in result['msg'] and 'changed by someone else' in result['msg']
    assert 'rerun' in result['msg'] and result['changed'] is False
    stored = grafana.get('/api/dashboards/uid/%s' % dash)[1]['dashboard']
    assert stored['description'] == 'edited in the UI', 'the concurrent edit was overwritten'
    run('grafana_dashboard', dict(uid=dash, state='absent'))


def edit_in_the_ui(grafana, dash, **changes):
    """Save the dashboard as a person would in Grafana's UI (another save, its own message)."""
    current = grafana.get('/api/dashboards/uid/%s' % dash)[1]
    model = dict(current['dashboard'], **changes)
    status, saved = grafana.call('POST', '/api/dashboards/db', dict(
        dashboard=model, folderUid=current['meta'].get('folderUid') or '', message='tuned the panel',
        overwrite=False))
    assert status == 200, saved
    return saved['version']


def test_an_edit_in_grafana_is_never_silently_replaced(run, grafana, proxy, uid):
    dash = uid('edited')
    run('grafana_dashboard', dict(dashboard=board(dash, title='Edited ' + dash)))
    edited = edit_in_the_ui(grafana, dash, description='kept by the operator')
    proxy.reset()

    # the task's dashboard differs from Grafana's: a save would replace the edit, so it fails, in check
    # mode as well, before any write
    for check in (True, False):
        refused = run('grafana_dashboard', dict(dashboard=board(dash, title='Edited ' + dash, expr='up')),
                      check=check, expect_failure=True)
        assert 'dashboard %s: its version %d was saved by ' % (dash, edited) in refused['msg'], refused['msg']
        assert "with the message 'tuned the panel'" in refused['msg']
        assert 'changed after this module saved it' in refused['msg'] and 'overwrite_edits' in refused['msg']
        assert refused['changed'] is False
    assert [c for c in proxy.log if c[0] != 'GET'] == []
    stored = grafana.get('/api/dashboards/uid/%s' % dash)[1]['dashboard']
    assert stored['description'] == 'kept by the operator' and stored['version'] == edited

    # the same dashboard as Grafana holds: nothing to save, nothing refused
    same = dict(board(dash, title='Edited ' + dash), description='kept by the operator')
    assert run('grafana_dashboard', dict(dashboard=same))['changed'] is False

    # overwrite_edits replaces it (warning), and the next change is a plain update again
    forced = run('grafana_dashboard', dict(dashboard=board(dash, title='Edited ' + dash, expr='up'),
                                           overwrite_edits=True))
    assert forced['changed'] is True and forced['version'] == edited + 1
    assert any('replacing it' in w for w in forced.get('warnings', [])), forced.get('warnings')
    plain = run('grafana_dashboard', dict(dashboard=board(dash, title='Edited ' + dash, expr='up > 0')))
    assert plain['changed'] is True and not plain.get('warnings')
    versions = grafana.get('/api/dashboards/uid/%s/versions' % dash)[1]
    versions = versions['versions'] if isinstance(versions, dict) else versions
    assert any(v.get('message') == 'tuned the panel' for v in versions), 'the edit left the version history'
    run('grafana_dashboard', dict(uid=dash, state='absent'))


def test_a_dashboard_saved_by_another_tool_needs_overwrite_edits_once(run, grafana, uid):
    dash = uid('foreign')
    status, _ = grafana.call('POST', '/api/dashboards/db', dict(
        dashboard=board(dash, title='Foreign ' + dash), folderUid='', message='imported by hand', overwrite=False))
    assert status == 200
    refused = run('grafana_dashboard', dict(dashboard=board(dash, title='Foreign ' + dash, expr='up')),
                  expect_failure=True)
    assert 'no version of the last 50 was saved by this module' in refused['msg'], refused['msg']
    assert run('grafana_dashboard', dict(dashboard=board(dash, title='Foreign ' + dash, expr='up'),
                                         overwrite_edits=True))['changed'] is True
    assert run('grafana_dashboard', dict(dashboard=board(dash, title='Foreign ' + dash, expr='up > 1')))['changed']
    run('grafana_dashboard', dict(uid=dash, state='absent'))


def test_bad_input(run, uid):
    folder = uid('nofolder')
    fail = {'expect_failure': True}
    no_uid, unknown, wrong = run.many([
        ('grafana_dashboard', dict(dashboard={'title': 'No uid'}), fail),
        ('grafana_dashboard', dict(dashboard=board(uid('d')), folder_uid=folder), fail),
        ('grafana_dashboard', dict(dashboard=board(uid('d')), token='glsa_wrong'), fail)])
    assert 'no uid' in no_uid['msg'] and '`uid`' in no_uid['msg']
    assert "folder_uid '%s': no such folder" % folder in unknown['msg']
    assert 'HTTP 401' in wrong['msg'] and '`token`' in wrong['msg']


def test_provisioned_dashboard_is_refused(run, grafana):
    if grafana.real:
        pytest.skip('a file-provisioned dashboard exists only in the stand-in seed')
    result = run('grafana_dashboard', dict(dashboard=board('seed-provisioned', title='Mine')), expect_failure=True)
    assert 'provisioned from a file' in result['msg']
    assert run('grafana_dashboard', dict(uid='seed-provisioned', state='absent'), expect_failure=True)
    assert grafana.get('/api/dashboards/uid/seed-provisioned')[0] == 200
