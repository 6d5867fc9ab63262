#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: grafana_service_account
short_description: Manage a Grafana service account and one of its tokens
version_added: 0.1.0
description:
  - Manages one Grafana service account of an organization through the service account API
    (C(/api/serviceaccounts)). Creates it, sets its role and whether it is disabled, and deletes it.
  - Optionally ensures one named token of the account (O(token_name)). Grafana shows a token's key once, in the
    answer that creates it, so the module returns the key (RV(token)) only when it creates the token. An existing
    token is never created again, and its key cannot be read back.
  - Service accounts are identified by their O(name), unique in the organization. Grafana gives each account a
    numeric id (and, in recent versions, a generated uid) but lets nobody choose either, so the name is the only
    stable key a task can give. Renaming is therefore not supported; a new name is a new account.
  - Never uses the legacy API key endpoints (C(/api/auth/keys)), which Grafana deprecated and is removing.
  - Needs an organization Admin, for example the admin user through O(url_username) and O(url_password).
    Editors and Viewers cannot manage service accounts.
author:
  - aiplatform.observability maintainers (@aiplatform)
extends_documentation_fragment:
  - aiplatform.observability.grafana
attributes:
  check_mode:
    support: full
    description: Reads the account and its tokens and reports what would change without writing; no token is
      created, so RV(token) is never returned in check mode.
  diff_mode:
    support: full
    description: Shows the name, role, disabled flag and the names of the account's tokens before and after (never
      a key).
options:
  name:
    description:
      - Name of the service account, unique in the organization (Grafana derives the account's login from it).
    type: str
    required: true
  role:
    description:
      - Organization role of the account. V(None) is Grafana's "No basic role" (Grafana 10.2 and later).
      - When omitted, a new account gets V(Viewer) (Grafana's default) and an existing account keeps its role.
      - A user can only give roles up to their own; an Admin can give every role.
    type: str
    choices: [Viewer, Editor, Admin, None]
  disabled:
    description:
      - Disable the account. Grafana then refuses all of its tokens (HTTP 401) until it is enabled again.
      - When omitted, a new account is enabled and an existing account keeps its state.
    type: bool
  state:
    description:
      - V(present) creates or updates the account; V(absent) deletes it with all its tokens (a missing account is
        no change). With V(absent) the token options are ignored.
    type: str
    choices: [present, absent]
    default: present
  token_name:
    description:
      - Name of one token of the account. Grafana requires token names to be unique in the organization, across
        all service accounts.
      - With O(token_state=present), a missing token is created and its key returned as RV(token); an existing
        token is left alone and RV(token) is not returned (Grafana cannot show a key again). An expired token of
        that name is deleted and created again.
      - Other tokens of the account are never touched.
    type: str
  token_state:
    description:
      - V(present) ensures the token O(token_name) exists; V(absent) deletes it (a missing token is no change).
      - To replace a token whose key was lost, run the task once with V(absent), then with V(present).
    type: str
    choices: [present, absent]
    default: present
  token_seconds_to_live:
    description:
      - Lifetime in seconds of a token the module creates; 0 or omitted means it never expires, unless the server
        limits token lifetimes (C([security] api_key_max_seconds_to_live)), in which case Grafana requires a
        value within the limit.
      - Only used when a token is created; changing it does not replace an existing token.
    type: int
notes:
  - B(The key is a secret.) Ansible cannot hide a single return value of a module; it prints a task's whole
    result (with C(-v), and in callbacks such as C(json)). Run every task that may create a token with
    C(no_log=true) and C(register) its result. The registered variable still holds RV(token) for the tasks that
    use it. Without C(no_log), the module warns when it returns a key.
  - Store the key where later runs can read it (for example a root-only file, as the grafana role does), since
    Grafana will not show it again.
'''

EXAMPLES = r'''
- name: Service account for the provisioning tasks, with a token
  aiplatform.observability.grafana_service_account:
    url: https://grafana.example.com
    url_username: admin
    url_password: "{{ grafana_admin_password }}"
    name: aiplatform-provisioner
    role: Admin
    token_name: aiplatform-provisioner-mon1
  register: provisioner
  no_log: true  # the result holds the new key

- name: Keep the key root-only on the monitoring host (only when it was just created)
  ansible.builtin.copy:
    content: "{{ provisioner.token }}"
    dest: /etc/aiplatform-grafana/provisioner.token
    owner: root
    group: root
    mode: "0600"
  when: provisioner.token is defined
  no_log: true

- name: Replace a token whose key was lost (delete it, then create it again)
  aiplatform.observability.grafana_service_account:
    url: https://grafana.example.com
    url_username: admin
    url_password: "{{ grafana_admin_password }}"
    name: aiplatform-provisioner
    token_name: aiplatform-provisioner-mon1
    token_state: absent

- name: Disable an account (Grafana then rejects all of its tokens)
  aiplatform.observability.grafana_service_account:
    url: https://grafana.example.com
    url_username: admin
    url_password: "{{ grafana_admin_password }}"
    name: old-exporter
    disabled: true

- name: Delete an account with all its tokens
  aiplatform.observability.grafana_service_account:
    url: https://grafana.example.com
    url_username: admin
    url_password: "{{ grafana_admin_password }}"
    org_id: 2
    name: old-exporter
    state: absent
'''

RETURN = r'''
service_account:
  description:
    - The account as Grafana returns it (C(id), C(name), C(login), C(orgId), C(role), C(isDisabled), ...).
    - In check mode, the predicted account (without C(id) when it would be created).
  returned: when O(state=present)
  type: dict
  sample: {"id": 2, "name": "aiplatform-provisioner", "login": "sa-1-aiplatform-provisioner", "orgId": 1,
           "role": "Admin", "isDisabled": false}
token_id:
  description: Numeric id of the token O(token_name) after the task.
  returned: when O(token_name) is set, O(token_state=present) and the token exists (not in check mode before its
    creation)
  type: int
  sample: 7
token:
  description:
    - The key of the token the task created (C(glsa_...)), for C(Authorization Bearer) headers and the O(token)
      option of the other grafana_* modules.
    - Returned only by the run that creates the token; Grafana cannot show it again.
    - A secret. Run the task with C(no_log=true) and C(register) (see the notes).
  returned: when the task created a token (never in check mode)
  type: str
  sample: glsa_0123456789abcdef0123456789abcdef_89abcdef
'''

from ansible_collections.aiplatform.observability.plugins.module_utils._grafana import (
    GrafanaAPIError, GrafanaError, GrafanaModule)

PER_PAGE = 100
API = '/api/serviceaccounts'


def token_label(token):
    """How one token appears in the diff: its name, marked when Grafana reports it expired."""
    return token['name'] + (' (expired)' if token.get('hasExpired') else '')


def account_view(account, tokens):
    """The fields this module manages, as shown in the diff (never a key)."""
    if not account:
        return None
    return dict(name=account.get('name'), role=account.get('role'), disabled=bool(account.get('isDisabled')),
                tokens=sorted(token_label(t) for t in tokens))


class GrafanaServiceAccount(GrafanaModule):
    argument_spec = dict(
        name=dict(type='str', required=True),
        role=dict(type='str', choices=['Viewer', 'Editor', 'Admin', 'None']),
        disabled=dict(type='bool'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        token_name=dict(type='str', no_log=False),
        token_state=dict(type='str', default='present', choices=['present', 'absent'], no_log=False),
        token_seconds_to_live=dict(type='int', no_log=False),
    )
    module_kwargs = dict(required_if=[('token_state', 'absent', ['token_name'])])

    def process(self):
        name = self.check_input()
        try:
            self.run(self.params, self.client, name)
        except GrafanaAPIError as e:
            raise self.explain(e, name)

    def check_input(self):
        p = self.params
        name = p['name'].strip()
        if not name:
            self.fail('name must be a non-empty service account name')
        if name != p['name']:
            self.fail('name %r has leading or trailing spaces: Grafana would store it trimmed' % p['name'])
        if p['token_name'] is not None and (not p['token_name'].strip() or p['token_name'] != p['token_name'].strip()):
            self.fail('token_name %r must be a non-empty name without leading or trailing spaces' % p['token_name'])
        if p['token_seconds_to_live'] is not None and p['token_seconds_to_live'] < 0:
            self.fail('token_seconds_to_live must be 0 (never expires) or a positive number of seconds, got %d'
                      % p['token_seconds_to_live'])
        return name

    def find(self, name):
        """The account named `name` (exact match; Grafana's search matches substrings), or None."""
        api, found, page = self.client, [], 1
        while True:
            answer = api.get(API + '/search', query=dict(query=name, perpage=PER_PAGE, page=page),
                             missing_ok=False) or {}
            accounts = answer.get('serviceAccounts') or []
            found.extend(a for a in accounts if a.get('name') == name)
            if len(accounts) < PER_PAGE or page * PER_PAGE >= int(answer.get('totalCount') or 0):
                break
            page += 1
        if len(found) > 1:
            self.fail('%d service accounts are named %r in this organization (ids %s): delete the extra ones in '
                      'Grafana first' % (len(found), name, ', '.join(str(a.get('id')) for a in found)))
        return found[0] if found else None

    def run(self, p, api, name):
        current = self.find(name)
        path = '%s/%d' % (API, current['id']) if current else None
        tokens = (api.get(path + '/tokens', missing_ok=False) or []) if current else []
        before = account_view(current, tokens)
        if p['state'] == 'absent':
            return self.ensure(before, None, lambda: api.request('DELETE', path) and None, dict())

        role = p['role'] or (current.get('role') if current else 'Viewer')
        disabled = p['disabled'] if p['disabled'] is not None else bool(current and current.get('isDisabled'))
        wanted = dict(name=name, role=role, isDisabled=disabled)

        token_name = p['token_name']
        existing = next((t for t in tokens if t.get('name') == token_name), None) if token_name else None
        want_token = bool(token_name) and p['token_state'] == 'present'
        drop = existing is not None and (not want_token or bool(existing.get('hasExpired')))
        create = want_token and (existing is None or drop)
        after_tokens = [t for t in tokens if not (drop and t is existing)]
        if create:
            after_tokens.append(dict(name=token_name))
        after = account_view(dict(current or {}, **wanted), after_tokens)

        def apply():
            try:
                return write()
            except GrafanaAPIError as e:
                raise self.explain(e, name)

        def write():
            account = current
            if account is None:
                account = api.request('POST', API, wanted)
            elif (current.get('role'), bool(current.get('isDisabled'))) != (role, disabled):
                answer = api.request('PATCH', path, dict(role=role, isDisabled=disabled)) or {}
                account = answer.get('serviceaccount') or dict(current, role=role, isDisabled=disabled)
            out = dict(service_account=account)
            token_path = '%s/%d/tokens' % (API, account['id'])
            if drop:
                api.request('DELETE', '%s/%d' % (token_path, existing['id']))
            if create:
                body = dict(name=token_name)
                if p['token_seconds_to_live']:
                    body['secondsToLive'] = p['token_seconds_to_live']
                made = api.request('POST', token_path, body) or {}
                out.update(token_id=made.get('id'), token=made.get('key'))
            elif existing is not None and want_token:
                out['token_id'] = existing.get('id')
            return out

        def finish(output, changed):
            if 'token' in output and not self.module.no_log:
                self.module.warn('the key of the new token %r is in this task\'s result: run the task with '
                                 'no_log: true (and register it) so the key stays out of the output and logs'
                                 % token_name)

        result = dict(service_account=dict(current or {}, **wanted))
        if existing is not None and want_token and not drop:
            result['token_id'] = existing.get('id')
        self.ensure(before, after, apply, result, finish=finish)

    def explain(self, error, name):
        """Grafana's answers that need a service-account-specific hint."""
        if error.status == 403:
            return self.error('%s Managing service accounts needs an organization Admin: use the admin user '
                              '(url_username/url_password) or a token of an Admin service account' % error, error)
        if error.status == 400 and error.message_id == 'serviceaccounts.ErrAlreadyExists':
            return self.error('%s Another service account of this organization has a name Grafana treats as the '
                              'same as %r (same login, for example a different case): choose another name or use '
                              'that account\'s exact name' % (error, name), error)
        if error.status == 400 and error.message_id == 'serviceaccounts.ErrTokenAlreadyExists':
            return self.error('%s Token names are unique in the organization: another service account already has a '
                              'token named %r. Choose another token_name' % (error, self.params['token_name']), error)
        return error

    @staticmethod
    def error(msg, cause):
        return GrafanaError(msg, **cause.details)


def main():
    GrafanaServiceAccount().main()


if __name__ == '__main__':
    main()
