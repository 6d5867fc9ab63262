#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: grafana_folder
short_description: Create, rename, move and delete Grafana folders by uid
version_added: 0.1.0
description:
  - Manages one Grafana folder identified by its O(uid) through the folder HTTP API.
  - Creates the folder, renames it (C(PUT /api/folders/:uid) with the version it read, so a concurrent
    edit is reported instead of overwritten), moves it under another folder (C(POST /api/folders/:uid/move))
    and deletes it.
  - Nested folders (Grafana 11 and later, or Grafana 10 with nested folders enabled) are addressed with
    O(parent_uid); Grafana nests folders at most four levels deep.
author:
  - aiplatform.observability maintainers (@aiplatform)
extends_documentation_fragment:
  - aiplatform.observability.grafana
attributes:
  check_mode:
    support: full
    description: Reads the folder and reports what would change without writing.
  diff_mode:
    support: full
    description: Shows the uid, title and parent before and after.
options:
  uid:
    description:
      - Uid of the folder, 1 to 40 characters of letters, digits, C(-) and C(_).
    type: str
    required: true
  title:
    description:
      - Title of the folder. Required when O(state=present).
    type: str
  parent_uid:
    description:
      - Uid of the parent folder; it must exist.
      - An empty string places the folder at the root.
      - When omitted, a new folder is created at the root and an existing folder stays where it is.
    type: str
  state:
    description:
      - V(present) creates, renames or moves the folder; V(absent) deletes it (a missing folder is no change).
    type: str
    choices: [present, absent]
    default: present
  force_delete_rules:
    description:
      - With O(state=absent), also delete the alert rules stored in the folder. Without it Grafana refuses
        to delete a folder that holds alert rules.
      - Deleting a folder always deletes its dashboards and subfolders.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Folder for the platform dashboards
  aiplatform.observability.grafana_folder:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    uid: aiplatform
    title: AI platform

- name: Nested folder for GPU dashboards
  aiplatform.observability.grafana_folder:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    uid: aiplatform-gpu
    title: GPUs
    parent_uid: aiplatform

- name: Move the folder back to the root
  aiplatform.observability.grafana_folder:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    uid: aiplatform-gpu
    title: GPUs
    parent_uid: ""

- name: Delete a folder with its dashboards (a missing folder is no change)
  aiplatform.observability.grafana_folder:
    url: https://grafana.example.com
    url_username: admin
    url_password: "{{ grafana_admin_password }}"
    org_id: 2
    uid: old-dashboards
    state: absent
'''

RETURN = r'''
uid:
  description: Uid of the folder.
  returned: always
  type: str
  sample: aiplatform-gpu
title:
  description: Title of the folder.
  returned: when O(state=present)
  type: str
  sample: GPUs
parent_uid:
  description: Uid of the parent folder, an empty string for the root.
  returned: when O(state=present)
  type: str
  sample: aiplatform
url:
  description: Path of the folder in the Grafana UI (empty in check mode before creation).
  returned: when O(state=present)
  type: str
  sample: /dashboards/f/aiplatform-gpu/gpus
version:
  description: Version of the folder after the task (none in check mode before creation).
  returned: when O(state=present)
  type: int
  sample: 2
'''

from ansible_collections.aiplatform.observability.plugins.module_utils._grafana import (
    GrafanaModule, check_uid, quote_uid)


def folder_view(folder):
    """The fields this module manages, as shown in the diff."""
    if not folder:
        return None
    return dict(uid=folder['uid'], title=folder.get('title'), parent_uid=folder.get('parentUid') or '')


class GrafanaFolder(GrafanaModule):
    argument_spec = dict(
        uid=dict(type='str', required=True),
        title=dict(type='str'),
        parent_uid=dict(type='str'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        force_delete_rules=dict(type='bool', default=False),
    )
    module_kwargs = dict(required_if=[('state', 'present', ['title'])])

    def process(self):
        p, api = self.params, self.client
        uid = check_uid(p['uid'])
        path = '/api/folders/%s' % quote_uid(uid)
        current = api.get(path)
        before = folder_view(current)
        if p['state'] == 'absent':
            query = {'forceDeleteRules': 'true'} if p['force_delete_rules'] else None
            return self.ensure(before, None, lambda: api.request('DELETE', path, query=query) and None, dict(uid=uid))
        parent = p['parent_uid']
        if parent:
            if check_uid(parent, 'parent_uid') == uid:
                self.fail('parent_uid %r is the folder itself: a folder cannot contain itself' % parent)
            self.require(api.get('/api/folders/%s' % quote_uid(parent)) is not None,
                         'parent_uid %r: no such folder in Grafana. Create the parent folder first '
                         '(aiplatform.observability.grafana_folder) or fix the uid' % parent)
        if parent is None:
            parent = before['parent_uid'] if before else ''
        after = dict(uid=uid, title=p['title'], parent_uid=parent)

        def apply():
            folder = current
            if folder is None:
                body = dict(uid=uid, title=p['title'])
                if parent:
                    body['parentUid'] = parent
                folder = api.request('POST', '/api/folders', body)
            else:
                if before['title'] != after['title']:
                    folder = api.request('PUT', path, dict(title=p['title'], version=current.get('version'),
                                                           overwrite=False))
                if before['parent_uid'] != after['parent_uid']:
                    folder = api.request('POST', path + '/move', dict(parentUid=parent))
            return output(folder)

        def output(folder):
            return dict(uid=uid, title=folder.get('title'), parent_uid=folder.get('parentUid') or '',
                        url=folder.get('url', ''), version=folder.get('version'))

        self.ensure(before, after, apply, output(dict(current or {}, title=p['title'], parentUid=parent)))


def main():
    GrafanaFolder().main()


if __name__ == '__main__':
    main()
