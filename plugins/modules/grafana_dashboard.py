#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: grafana_dashboard
short_description: Save and delete Grafana dashboards by uid, with optimistic locking
version_added: 0.1.0
description:
  - Manages one Grafana dashboard identified by its uid through C(/api/dashboards).
  - Compares the dashboard JSON without the keys Grafana changes on every save (C(id), C(version),
    C(iteration)) and the folder; saves only when one of them differs.
  - Saves with the version it read and C(overwrite=false), so a dashboard changed by someone else between
    the read and the write is reported (HTTP 412 version-mismatch) and never overwritten.
  - Always sends C(folderUid) (Grafana moves a dashboard to the root when it is omitted) and never the
    deprecated C(folderId).
  - Refuses dashboards provisioned from files, because Grafana does not let the API change them.
  - Never silently replaces an edit made in Grafana. Each save records a content mark in the version's
    message (C([aiplatform.observability sha256:<16 hex>]), after O(commit_message)). Before saving over an
    existing dashboard the module reads its latest version; when that version carries no mark of the content
    Grafana now holds (the dashboard was edited in the UI, restored to an older version, or saved by another
    tool), the task fails without writing, naming who saved it and when, unless O(overwrite_edits=true).
author:
  - aiplatform.observability maintainers (@aiplatform)
extends_documentation_fragment:
  - aiplatform.observability.grafana
attributes:
  check_mode:
    support: full
    description: Reads the dashboard and reports what would change without writing.
  diff_mode:
    support: full
    description: Shows the normalized dashboard JSON and the folder uid before and after.
options:
  uid:
    description:
      - Uid of the dashboard, 1 to 40 characters of letters, digits, C(-) and C(_).
      - Defaults to the C(uid) key of the dashboard JSON; when both are set they must be equal.
      - A uid is required, from one or the other.
    type: str
  dashboard:
    description:
      - The dashboard model as a dict, for example C(lookup('ansible.builtin.template', 'gpu.json.j2') | from_json).
      - Must have a C(title). C(id) and C(version) are ignored.
      - Mutually exclusive with O(path). One of them is required when O(state=present).
    type: dict
  path:
    description:
      - Path of a JSON file on the managed node holding the dashboard model (or an export with the model under
        a C(dashboard) key).
    type: path
  folder_uid:
    description:
      - Uid of the folder that holds the dashboard; it must exist.
      - An empty string (the default) is the root folder (C(Dashboards), formerly C(General)).
    type: str
    default: ''
  commit_message:
    description:
      - Message recorded in the dashboard's version history (the API's C(message); the option cannot be called
        C(message), a name Ansible reserves).
    type: str
    default: Saved by aiplatform.observability.grafana_dashboard
  overwrite_edits:
    description:
      - Save even when the dashboard's latest version in Grafana is not one this module saved (an edit in the
        UI, a restored version, another tool). The replaced version stays in Grafana's version history.
      - Also needed once for a dashboard that exists already but was never saved by this module.
    type: bool
    default: false
  state:
    description:
      - V(present) saves the dashboard when it differs; V(absent) deletes it (a missing dashboard is no change).
    type: str
    choices: [present, absent]
    default: present
'''

EXAMPLES = r'''
- name: GPU dashboard from a template
  aiplatform.observability.grafana_dashboard:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    dashboard: "{{ lookup('ansible.builtin.template', 'gpu-overview.json.j2') | from_json }}"
    folder_uid: aiplatform
    commit_message: "GPU overview, release {{ release }}"

- name: Dashboard from a JSON file on the managed node
  aiplatform.observability.grafana_dashboard:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    path: /opt/dashboards/drift.json
    uid: aiplatform-drift
    folder_uid: aiplatform

- name: Remove an old dashboard
  aiplatform.observability.grafana_dashboard:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    uid: old-overview
    state: absent
'''

RETURN = r'''
uid:
  description: Uid of the dashboard.
  returned: always
  type: str
  sample: aiplatform-gpu
url:
  description: Path of the dashboard in the Grafana UI (empty in check mode before creation).
  returned: when O(state=present)
  type: str
  sample: /d/aiplatform-gpu/gpu-overview
version:
  description: Version of the dashboard after the task (the version read when nothing was saved).
  returned: when O(state=present)
  type: int
  sample: 4
folder_uid:
  description: Uid of the dashboard's folder, an empty string for the root.
  returned: when O(state=present)
  type: str
  sample: aiplatform
'''

import hashlib
import json
import re

from ansible.module_utils.common.text.converters import to_text
from ansible_collections.aiplatform.observability.plugins.module_utils._grafana import (
    GrafanaModule, check_uid, normalize_dashboard, quote_uid)


# The content mark each save leaves in the version message, and how it is read back.
MARK = '[aiplatform.observability sha256:%s]'
MARK_RE = re.compile(r'\[aiplatform\.observability sha256:([0-9a-f]{16})\]')


def content_hash(dashboard):
    """16 hex digits of the SHA-256 of the normalized dashboard (what the module compares)."""
    canonical = json.dumps(normalize_dashboard(dashboard), sort_keys=True, separators=(',', ':'))
    return hashlib.sha256(canonical.encode('utf-8')).hexdigest()[:16]


def version_list(answer):
    """The entries of GET /api/dashboards/uid/:uid/versions: a list (Grafana 10, 11) or
    {"versions": [...], "continueToken"} (Grafana 12)."""
    if isinstance(answer, dict):
        answer = answer.get('versions')
    return [v for v in answer or [] if isinstance(v, dict)]


def load_dashboard(params, fail):
    """The dashboard model from `dashboard` or `path`, as a dict."""
    dashboard = params['dashboard']
    if params['path']:
        try:
            with open(params['path'], 'rb') as f:
                dashboard = json.loads(to_text(f.read()))
        except (IOError, OSError, ValueError) as e:
            fail('path %s: cannot read the dashboard JSON: %s' % (params['path'], to_text(e)))
        if isinstance(dashboard, dict) and 'title' not in dashboard and isinstance(dashboard.get('dashboard'), dict):
            dashboard = dashboard['dashboard']
    if not isinstance(dashboard, dict) or not dashboard.get('title'):
        fail('the dashboard must be a JSON object with a non-empty "title"')
    return dashboard


class GrafanaDashboard(GrafanaModule):
    argument_spec = dict(
        uid=dict(type='str'),
        dashboard=dict(type='dict'),
        path=dict(type='path'),
        folder_uid=dict(type='str', default=''),
        commit_message=dict(type='str', default='Saved by aiplatform.observability.grafana_dashboard'),
        overwrite_edits=dict(type='bool', default=False),
        state=dict(type='str', default='present', choices=['present', 'absent']),
    )
    module_kwargs = dict(mutually_exclusive=[('dashboard', 'path')],
                         required_if=[('state', 'present', ['dashboard', 'path'], True),
                                      ('state', 'absent', ['uid'])])

    def process(self):
        p, api = self.params, self.client
        model = load_dashboard(p, self.fail) if p['state'] == 'present' else {}
        uid = p['uid'] or model.get('uid')
        if not uid:
            self.fail('the dashboard has no uid: set the `uid` option or a "uid" key in the dashboard JSON '
                      '(dashboards are managed by uid, never by title)')
        if model.get('uid') and model['uid'] != uid:
            self.fail('uid %r differs from the dashboard JSON\'s uid %r: use one uid' % (uid, model['uid']))
        path = '/api/dashboards/uid/%s' % quote_uid(check_uid(uid))
        current = api.get(path)
        meta = (current or {}).get('meta', {})
        if meta.get('provisioned'):
            self.fail('dashboard %s is provisioned from a file (%s): Grafana refuses to change it through the API. '
                      'Change the provisioning file, or remove it from provisioning first'
                      % (uid, meta.get('provisionedExternalId') or 'provisioning'))
        before = dict(folder_uid=meta.get('folderUid') or '',
                      dashboard=normalize_dashboard(current['dashboard'])) if current else None
        if p['state'] == 'absent':
            return self.ensure(before, None, lambda: api.request('DELETE', path) and None, dict(uid=uid))
        folder_uid = p['folder_uid'] or ''
        if folder_uid:
            self.require(api.get('/api/folders/%s' % quote_uid(check_uid(folder_uid, 'folder_uid'))) is not None,
                         'folder_uid %r: no such folder in Grafana. Create it first '
                         '(aiplatform.observability.grafana_folder) or fix the uid' % folder_uid)
        wanted = dict(normalize_dashboard(model), uid=uid)
        after = dict(folder_uid=folder_uid, dashboard=wanted)
        if current and before != after:
            self.guard_edits(uid, current['dashboard'])

        def apply():
            message = ('%s %s' % (p['commit_message'], MARK % content_hash(wanted))).strip()
            body = dict(dashboard=dict(wanted), folderUid=folder_uid, message=message, overwrite=False)
            if current:  # optimistic locking: the version read above
                body['dashboard'].update(id=current['dashboard'].get('id'), version=meta.get('version'))
            saved = api.request('POST', '/api/dashboards/db', body)
            return dict(url=saved.get('url'), version=saved.get('version'))

        self.ensure(before, after, apply,
                    dict(uid=uid, url=meta.get('url', ''), version=meta.get('version'), folder_uid=folder_uid))

    def guard_edits(self, uid, live):
        """Fail (or, with overwrite_edits, warn) when the dashboard Grafana holds is not the content of the
        module's last save: its latest version must carry the mark of exactly that content."""
        versions = version_list(self.client.get('/api/dashboards/uid/%s/versions?limit=50' % quote_uid(uid)))
        latest = max(versions, key=lambda v: v.get('version') or 0) if versions else None
        mark = MARK_RE.search((latest or {}).get('message') or '')
        if mark and mark.group(1) == content_hash(live):
            return
        if latest is None:
            who = 'Grafana lists no version of it'
        else:
            who = 'its version %s was saved by %s at %s%s' % (
                latest.get('version'), latest.get('createdBy') or 'an unknown user', latest.get('created') or '?',
                (' with the message %r' % latest['message']) if latest.get('message') else ' without a message')
        ours = [v for v in versions if MARK_RE.search(v.get('message') or '')]
        reason = ('it was changed after this module saved it (version %s)' % max(v.get('version') or 0 for v in ours)
                  if ours else 'no version of the last 50 was saved by this module')
        text = ('dashboard %s: %s, and %s (edited in Grafana, restored to an older version, or saved by another tool)'
                % (uid, who, reason))
        if self.params['overwrite_edits']:
            self.module.warn(text + '; overwrite_edits is set: replacing it (it stays in the version history).')
            return
        self.fail(text + '. Nothing was saved: saving would replace that edit. Keep it by copying it into the '
                  'dashboard source (Dashboard settings > JSON Model), or replace it with overwrite_edits: true '
                  '(the grafana role: grafana_dashboards_overwrite_edits); the edit stays in the version history.')


def main():
    GrafanaDashboard().main()


if __name__ == '__main__':
    main()
