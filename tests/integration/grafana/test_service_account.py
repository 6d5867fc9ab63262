"""grafana_service_account against Grafana (or the stand-in): create, idempotence, check mode, diff, the token
shown once and usable as a Bearer token, role changes, disabling, absent, bad input; then the grafana role's
own service account, run for real against a stand-in of its own.

Against a real Grafana, GRAFANA_TOKEN must belong to an Admin service account (managing service accounts
needs the organization Admin role).
"""
import base64
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
STANDIN = REPO / 'tests' / 'grafana_standin' / 'standin.py'
PLAYBOOK = Path(sys.executable).with_name('ansible-playbook')
KEY_RE = re.compile(r'glsa_[A-Za-z0-9]{32}_[0-9a-f]{8}')


def account(grafana, name):
    status, found = grafana.get('/api/serviceaccounts/search?query=%s' % urllib.request.quote(name))
    assert status == 200, found
    matches = [a for a in found['serviceAccounts'] if a['name'] == name]
    return matches[0] if matches else None


def tokens(grafana, sa_id):
    status, found = grafana.get('/api/serviceaccounts/%d/tokens' % sa_id)
    assert status == 200, found
    return found


def bearer(grafana, key, path='/api/folders?limit=1'):
    """Status of one call authenticated with `key` (never through the module)."""
    req = urllib.request.Request(grafana.url + path, headers={'Authorization': 'Bearer ' + key})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_create_rerun_check_diff_and_the_key_shown_once(run, grafana, proxy, uid):
    name, token_name = uid('sa'), uid('sa-token')
    args = dict(name=name, role='Editor', token_name=token_name)
    check = run('grafana_service_account', args, check=True)
    assert check['changed'] is True and 'token' not in check
    assert check['diff'] == {'before': {}, 'after': {'name': name, 'role': 'Editor', 'disabled': False,
                                                     'tokens': [token_name]}}
    assert not [c for c in proxy.log if c[0] != 'GET'], 'check mode wrote'
    assert account(grafana, name) is None

    created = run('grafana_service_account', args)
    assert created['changed'] is True and KEY_RE.fullmatch(created['token']), 'a glsa_ key'
    assert 'no_log' in str(created.get('warnings')), 'a key returned without no_log is warned about'
    assert [c[0] for c in proxy.log if c[0] != 'GET'] == ['POST', 'POST'], 'the account, then its token'
    sa = account(grafana, name)
    assert sa['role'] == 'Editor' and sa['isDisabled'] is False and created['service_account']['id'] == sa['id']
    assert [t['name'] for t in tokens(grafana, sa['id'])] == [token_name]
    assert bearer(grafana, created['token']) == 200, 'Grafana accepts the new key'

    again = run('grafana_service_account', args)
    assert again['changed'] is False and 'token' not in again, 'an existing token is never created again'
    assert again['token_id'] == created['token_id'] and again['diff']['before'] == again['diff']['after']
    assert not [c for c in proxy.log if c[0] != 'GET'], 'an unchanged account must not be written'
    assert len(tokens(grafana, sa['id'])) == 1

    run('grafana_service_account', dict(name=name, state='absent'))


def test_role_change_disable_token_absent_and_absent(run, grafana, uid):
    # Straight to Grafana: the tests' proxy forwards no PATCH (the method that updates a service account).
    name, token_name, folder = uid('life'), uid('life-token'), uid('life-folder')
    sa = dict(url=grafana.url, name=name)
    key = run('grafana_service_account', dict(sa, role='Admin', token_name=token_name))['token']
    with_key = dict(url=grafana.url, token=key, uid=folder, title='Life')
    fail = {'expect_failure': True}
    steps = run.many([
        ('grafana_folder', with_key),
        ('grafana_service_account', sa),                                   # omitted options are kept
        ('grafana_service_account', dict(sa, role='Viewer')),
        ('grafana_folder', dict(with_key, title='Renamed'), fail),        # a Viewer may not write
        ('grafana_service_account', dict(sa, disabled=True)),
        ('grafana_folder', with_key, fail),                                # a disabled account's token
        ('grafana_service_account', dict(sa, disabled=False, role='Admin')),
        ('grafana_folder', with_key),
        ('grafana_service_account', dict(sa, token_name=token_name, token_state='absent')),
        ('grafana_service_account', dict(sa, token_name=token_name, token_state='absent')),
        ('grafana_folder', with_key, fail),                                # a deleted token
    ])
    created, kept, viewer, denied, disabled, refused, enabled, works, dropped, dropped_again, deleted = steps
    assert created['changed'] is True
    assert kept['changed'] is False and kept['service_account']['role'] == 'Admin'
    assert viewer['changed'] is True
    assert (viewer['diff']['before']['role'], viewer['diff']['after']['role']) == ('Admin', 'Viewer')
    assert 'HTTP 403' in denied['msg']
    assert disabled['changed'] is True and disabled['diff']['after']['disabled'] is True
    assert 'HTTP 401' in refused['msg'] and '`token`' in refused['msg']
    assert enabled['changed'] is True and works['changed'] is False
    assert dropped['changed'] is True and dropped['diff']['after']['tokens'] == []
    assert dropped_again['changed'] is False
    assert 'HTTP 401' in deleted['msg'] and bearer(grafana, key) == 401

    fresh = run('grafana_service_account', dict(sa, token_name=token_name))
    assert fresh['changed'] is True and fresh['token'] != key and bearer(grafana, fresh['token']) == 200

    gone, gone_again, _ = run.many([('grafana_service_account', dict(sa, state='absent')),
                                    ('grafana_service_account', dict(sa, state='absent')),
                                    ('grafana_folder', dict(uid=folder, state='absent'))])
    assert gone['changed'] is True and gone_again['changed'] is False and account(grafana, name) is None
    assert bearer(grafana, fresh['token']) == 401, 'the token of a deleted account is refused'


def test_registered_key_with_no_log(grafana, proxy, uid, tmp_path):
    """The documented use: no_log + register. The output shows no key; the registered key authenticates the
    modules, and what they write is recorded under the service account's login."""
    name, token_name, dash = uid('nolog'), uid('nolog-token'), uid('nolog-dash')
    conn = {'url': proxy.url, 'token': "{{ lookup('ansible.builtin.env', 'IT_GRAFANA_TOKEN') }}"}
    play = [{'hosts': 'localhost', 'gather_facts': False, 'tasks': [
        {'name': 'service account', 'no_log': True, 'register': 'sa',
         'aiplatform.observability.grafana_service_account': dict(conn, name=name, role='Admin',
                                                                  token_name=token_name)},
        {'name': 'dashboard with the new key', 'aiplatform.observability.grafana_dashboard': {
            'url': proxy.url, 'token': '{{ sa.token }}', 'dashboard': {'uid': dash, 'title': 'No log ' + dash}}},
        {'name': 'annotation with the new key', 'aiplatform.observability.grafana_annotation': {
            'url': proxy.url, 'token': '{{ sa.token }}', 'dashboard_uid': dash, 'text': 'by ' + name,
            'time': 1746100800000}},
    ]}]
    (tmp_path / 'play.yml').write_text(json.dumps(play))
    env = dict(os.environ, IT_GRAFANA_TOKEN=grafana.token, ANSIBLE_NOCOLOR='1', ANSIBLE_LOCALHOST_WARNING='0')
    proc = subprocess.run([str(PLAYBOOK), '-i', 'localhost,', '-c', 'local', '-e',
                           'ansible_python_interpreter=%s' % sys.executable, '-v', str(tmp_path / 'play.yml')],
                          cwd=str(REPO), env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert not KEY_RE.search(out) and grafana.token not in out, 'a key reached the output'
    assert "'no_log: true' was specified" in out
    sa = account(grafana, name)
    status, items = grafana.get('/api/annotations?dashboardUID=%s' % dash)
    assert [a['login'] for a in items if a['text'] == 'by ' + name] == [sa['login']], 'written by the account'
    for path in ('/api/dashboards/uid/%s' % dash, '/api/serviceaccounts/%d' % sa['id']):
        assert grafana.call('DELETE', path)[0] == 200


BAD_INPUT = [
    (dict(role='viewer'), ['role', 'Viewer, Editor, Admin, None']),
    (dict(token_state='absent'), ['token_name']),
    (dict(token_name='t', token_seconds_to_live=-1), ['token_seconds_to_live']),
    (dict(token_name=' t'), ['token_name']),
    (dict(disabled='maybe'), ['disabled']),
]


def test_bad_input_names_the_option(run, grafana, proxy, uid):
    name = uid('bad')
    results = run.many([('grafana_service_account', dict(args, name=name), {'expect_failure': True})
                        for args, _ in BAD_INPUT])
    for result, (args, words) in zip(results, BAD_INPUT):
        for word in words:
            assert word in result['msg'], (args, result['msg'])
        assert not result.get('changed')
    assert not [c for c in proxy.log if c[0] != 'GET'] and account(grafana, name) is None


def test_grafana_refusals_are_explained(run, grafana, uid):
    name, shared, other, viewer_name = uid('clash'), uid('clash-token'), uid('clash-other'), uid('viewer')
    fail = {'expect_failure': True}
    _, same_login, taken, viewer = run.many([
        ('grafana_service_account', dict(name=name, token_name=shared)),
        ('grafana_service_account', dict(name=name.upper()), fail),
        ('grafana_service_account', dict(name=other, token_name=shared), fail),
        ('grafana_service_account', dict(name=viewer_name, role='Viewer', token_name=uid('viewer-token'))),
    ])
    assert 'HTTP 400' in same_login['msg'] and 'choose another name' in same_login['msg']
    assert 'token_name' in taken['msg'] and 'unique in the organization' in taken['msg']
    # one explicit token per ansible run (the runner passes it through one environment variable)
    denied = run('grafana_service_account', dict(name=uid('any'), token=viewer['token']), expect_failure=True)
    wrong = run('grafana_service_account', dict(name=name, token='glsa_wrong'), expect_failure=True)
    assert 'HTTP 403' in denied['msg'] and 'organization Admin' in denied['msg']
    assert 'HTTP 401' in wrong['msg']
    run.many([('grafana_service_account', dict(name=item, state='absent')) for item in (name, other, viewer_name)])


# ---------------------------------------------------------------- the grafana role's own service account

def changed_tasks(out):
    """Names of the tasks that reported a change, in order, from the default callback's output."""
    names, task = [], None
    for line in out.splitlines():
        match = re.match(r'TASK \[(?:[^\]]* : )?([^\]]+)\]', line)
        if match:
            task = match.group(1)
        elif line.startswith('changed:') and task and (not names or names[-1] != task):
            names.append(task)
    return names


ROLE_PLAY = [{'hosts': 'monitoring', 'gather_facts': False,
              'roles': [{'role': 'aiplatform.observability.grafana'}]}]


class RoleRun(object):
    """The grafana role (grafana_install: false) on localhost against a stand-in of its own, which the test can
    restart to stand for a Grafana whose database was reset."""

    def __init__(self, tmp, standin_args=()):
        self.tmp = tmp
        self.standin_args = list(standin_args)
        self.password = 'role-admin-' + uuid.uuid4().hex[:8]
        (tmp / 'password').write_text(self.password + '\n')
        self.port = None
        self.proc = None
        self.start()
        self.token_file = tmp / 'state' / 'provisioner.token'
        inventory = {'all': {
            'hosts': {'mon-it': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}},
            'children': {'monitoring': {'hosts': {'mon-it': {}}}},
            'vars': {'grafana_install': False, 'grafana_url': self.url,
                     'grafana_admin_password': self.password,
                     'grafana_datasource_postgres_password': 'reader-' + uuid.uuid4().hex[:8],
                     'grafana_dashboard_check_path': str(tmp / 'check-dashboards'),
                     'grafana_service_account_token_file': str(self.token_file)}}}
        (tmp / 'inventory.yml').write_text(yaml.safe_dump(inventory))
        (tmp / 'play.yml').write_text(yaml.safe_dump(ROLE_PLAY))

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.port

    def start(self):
        cmd = [sys.executable, str(STANDIN), '--listen', '127.0.0.1:%d' % (self.port or 0),
               '--admin-password-file', str(self.tmp / 'password'), '--quiet'] + self.standin_args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r'listening on [\d.]+:(\d+)', line)
        assert match, 'stand-in did not start: %r' % line
        self.port = int(match.group(1))

    def restart(self):
        self.stop()
        self.start()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def play(self, *extra, expect_failure=False):
        env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='0')
        proc = subprocess.run([str(PLAYBOOK), '-i', str(self.tmp / 'inventory.yml'), str(self.tmp / 'play.yml')]
                              + list(extra), cwd=str(REPO), env=env, capture_output=True, text=True, timeout=600)
        out = proc.stdout + proc.stderr
        assert (proc.returncode != 0) == expect_failure, out[-4000:]
        assert not KEY_RE.search(out) and self.password not in out, 'a secret reached the output'
        if expect_failure:
            return None, changed_tasks(out), out
        recap = re.search(r'mon-it\s*:\s*ok=\d+\s+changed=(\d+)', out)
        assert recap, out[-2000:]
        return int(recap.group(1)), changed_tasks(out), out

    def api(self, method, path, body=None, key=None):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header('Content-Type', 'application/json')
        if key:
            req.add_header('Authorization', 'Bearer ' + key)
        else:
            req.add_header('Authorization', 'Basic ' + base64.b64encode(
                ('admin:%s' % self.password).encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw.strip() else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw.strip() else None

    def account(self):
        found = self.api('GET', '/api/serviceaccounts/search?query=aiplatform-provisioner')[1]['serviceAccounts']
        return found[0] if found else None

    def tokens(self):
        return self.api('GET', '/api/serviceaccounts/%d/tokens' % self.account()['id'])[1]

    def stored(self):
        return self.token_file.read_text().strip()


@pytest.fixture(scope='module')
def role(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip('the role writes its token file as root:root; run the integration tests as root')
    run_ = RoleRun(tmp_path_factory.mktemp('grafana-role'))
    try:
        yield run_
    finally:
        run_.stop()


def test_role_check_mode_on_a_fresh_grafana_writes_nothing(role):
    changed, _, _ = role.play('--check', '--diff')
    assert changed > 0
    assert role.account() is None, 'check mode created the service account'
    assert not role.token_file.exists()


def test_role_creates_the_account_and_authenticates_the_modules_with_its_token(role):
    role.play()
    sa = role.account()
    assert sa['role'] == 'Admin' and sa['isDisabled'] is False and sa['login'] == 'sa-1-aiplatform-provisioner'
    mode = role.token_file.stat()
    assert stat.S_IMODE(mode.st_mode) == 0o600 and mode.st_uid == 0 and mode.st_gid == 0
    assert stat.S_IMODE(role.token_file.parent.stat().st_mode) == 0o700
    key = role.stored()
    assert KEY_RE.fullmatch(key) and role.api('GET', '/api/folders', key=key)[0] == 200
    assert [t['name'] for t in role.tokens()] == ['aiplatform-provisioner-mon-it']
    # what the modules wrote is recorded under the service account, not the admin user
    notes = role.api('GET', '/api/annotations?tags=aiplatform&tags=deploy')[1]
    assert notes and {a['login'] for a in notes} == {sa['login']}
    versions = role.api('GET', '/api/dashboards/uid/platform-overview/versions')[1]
    assert {v['createdBy'] for v in versions} == {sa['login']}

    changed, tasks, _ = role.play()
    assert changed == 0, 'second run changed: %s' % tasks
    assert role.stored() == key


def test_role_stops_before_replacing_a_dashboard_edited_in_grafana(role):
    current = role.api('GET', '/api/dashboards/uid/learning-engine')[1]
    edit = dict(current['dashboard'], description='annotated by the on-call engineer')
    status, saved = role.api('POST', '/api/dashboards/db', {
        'dashboard': edit, 'folderUid': current['meta']['folderUid'], 'message': 'on-call notes', 'overwrite': False})
    assert status == 200, saved
    _, tasks, out = role.play(expect_failure=True)
    assert 'dashboard learning-engine: its version %d was saved by admin' % saved['version'] in out, out[-3000:]
    assert 'grafana_dashboards_overwrite_edits' in out
    assert 'Save the dashboards that differ' not in tasks, 'a dashboard was written before the refusal'
    stored = role.api('GET', '/api/dashboards/uid/learning-engine')[1]['dashboard']
    assert stored['description'] == 'annotated by the on-call engineer'

    changed, tasks, _ = role.play('--tags', 'grafana_dashboards', '-e', 'grafana_dashboards_overwrite_edits=true')
    assert 'Save the dashboards that differ' in tasks
    stored = role.api('GET', '/api/dashboards/uid/learning-engine')[1]['dashboard']
    assert stored['description'] == current['dashboard']['description']
    changed, tasks, _ = role.play('--tags', 'grafana_dashboards')
    assert changed == 0, tasks


def test_role_reenables_a_disabled_account(role):
    key = role.stored()
    status, _ = role.api('PATCH', '/api/serviceaccounts/%d' % role.account()['id'], {'isDisabled': True})
    assert status == 200 and role.api('GET', '/api/folders', key=key)[0] == 401
    changed, tasks, _ = role.play('--tags', 'grafana_configure')
    assert tasks == ['Create or update the service account'] and changed == 1
    assert role.stored() == key and role.api('GET', '/api/folders', key=key)[0] == 200


def test_role_replaces_a_refused_token(role):
    old_key, old_ids = role.stored(), [t['id'] for t in role.tokens()]
    role.token_file.write_text('glsa_%s_%s\n' % ('x' * 32, '0' * 8))  # a key Grafana refuses (401)
    changed, tasks, _ = role.play('--tags', 'grafana_configure')
    assert tasks == ['Delete the token by name', 'Create the token again', 'Write the token file'], tasks
    new_key = role.stored()
    assert new_key != old_key and role.api('GET', '/api/folders', key=old_key)[0] == 401
    current = role.tokens()
    assert [t['name'] for t in current] == ['aiplatform-provisioner-mon-it'] and current[0]['id'] not in old_ids
    assert current[0]['lastUsedAt'], 'the modules authenticated with the new token'
    assert stat.S_IMODE(role.token_file.stat().st_mode) == 0o600


def test_role_recovers_from_a_grafana_reset(role):
    old_key = role.stored()
    role.restart()  # the stand-in keeps its state in memory: a Grafana whose database was reset
    assert role.account() is None and role.api('GET', '/api/folders', key=old_key)[0] == 401
    changed, tasks, _ = role.play('--tags', 'grafana_configure')
    assert tasks[:3] == ['Create or update the service account', 'Create the token unless it exists',
                         'Write the token file'], tasks
    new_key = role.stored()
    assert new_key != old_key and role.api('GET', '/api/folders', key=new_key)[0] == 200
    assert role.api('GET', '/api/datasources/uid/aiplatform-prometheus', key=new_key)[0] == 200
