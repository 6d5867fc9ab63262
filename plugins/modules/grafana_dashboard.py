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

import json

from ansible.module_utils.common.text.converters import to_text
from ansible_collections.aiplatform.observability.plugins.module_utils._grafana import (
    GrafanaModule, check_uid, normalize_dashboard, quote_uid)


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

        def apply():
            body = dict(dashboard=dict(wanted), folderUid=folder_uid, message=p['commit_message'], overwrite=False)
            if current:  # optimistic locking: the version read above
                body['dashboard'].update(id=current['dashboard'].get('id'), version=meta.get('version'))
            saved = api.request('POST', '/api/dashboards/db', body)
            return dict(url=saved.get('url'), version=saved.get('version'))

        self.ensure(before, after, apply,
                    dict(uid=uid, url=meta.get('url', ''), version=meta.get('version'), folder_uid=folder_uid))


def main():
    GrafanaDashboard().main()


if __name__ == '__main__':
    main()
