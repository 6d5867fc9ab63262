#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: grafana_datasource
short_description: Manage Grafana data sources by uid
version_added: 0.1.0
description:
  - Manages one Grafana data source identified by its O(uid), through the uid endpoints only
    (C(/api/datasources/uid/:uid)); the numeric-id endpoints are disabled in Grafana 13.
  - Compares only the fields set in the task, so values Grafana fills in by itself do not cause changes.
  - With the default O(json_data_mode=merge), only the O(json_data) keys set in the task are compared and
    written, so keys added to C(jsonData) in the Grafana UI, or filled in by Grafana, are kept. With
    O(json_data_mode=replace), O(json_data) becomes the whole C(jsonData).
  - Plugin type aliases are understood, for example V(postgres) and V(grafana-postgresql-datasource).
  - Secrets (O(secure_json_data)) are sent when the data source is created and, afterwards, only with
    O(update_secrets=true). Grafana never returns them, so they are never compared and never shown in a diff.
  - Updates send the version read (a concurrent change is reported as a conflict) and refuse read-only
    (file-provisioned) data sources.
author:
  - aiplatform.observability maintainers (@aiplatform)
extends_documentation_fragment:
  - aiplatform.observability.grafana
attributes:
  check_mode:
    support: full
    description: Reads the data source and reports what would change without writing.
  diff_mode:
    support: full
    description:
      - Shows the fields set in the task before and after. Of C(jsonData) it shows only the compared keys
        (all of it with O(json_data_mode=replace)). Secrets are never shown.
options:
  uid:
    description:
      - Uid of the data source, 1 to 40 characters of letters, digits, C(-) and C(_). Dashboards reference it.
    type: str
    required: true
  name:
    description:
      - Name of the data source, unique in the organization. Required when O(state=present).
    type: str
  type:
    description:
      - Plugin id, for example V(prometheus), V(postgres) (same as V(grafana-postgresql-datasource)), V(loki).
      - Required when O(state=present).
    type: str
  access:
    description:
      - V(proxy) (the server queries the data source) or V(direct) (the browser does). New data sources default
        to V(proxy).
    type: str
    choices: [proxy, direct]
  datasource_url:
    description:
      - URL of the data source, for example C(http://localhost:9090) or C(db.example.com:5432).
    type: str
    aliases: [ds_url]
  user:
    description:
      - Database user name (PostgreSQL, MySQL and similar).
    type: str
  database:
    description:
      - Database name. Newer plugins read it from O(json_data) (C(database)) instead.
    type: str
  basic_auth:
    description:
      - Use HTTP basic authentication towards the data source.
    type: bool
  basic_auth_user:
    description:
      - User for basic authentication towards the data source (its password goes in O(secure_json_data)
        as C(basicAuthPassword)).
    type: str
  is_default:
    description:
      - Make this the organization's default data source.
    type: bool
  json_data:
    description:
      - Plugin settings (C(jsonData)), for example C(timeInterval) for Prometheus or C(sslmode) for PostgreSQL.
      - How it is compared and written is set by O(json_data_mode).
      - When omitted, the stored C(jsonData) is neither compared nor changed.
    type: dict
  json_data_mode:
    description:
      - V(merge) compares only the keys set in O(json_data) (nested dictionaries key by key, lists as whole
        values) and, on update, writes them over the stored C(jsonData). Every other key survives, whether a
        user added it in the Grafana UI or Grafana filled it in. A key set to V(null) is removed (JSON merge
        patch, RFC 7396).
      - V(replace) compares O(json_data) with the whole stored C(jsonData) and writes it as the whole
        C(jsonData). Keys not in the task are removed, so the data source converges exactly to the task.
        Grafana may add keys of its own when the data source is saved in its UI; the next run then
        removes them again and reports a change.
    type: str
    choices: [merge, replace]
    default: merge
  secure_json_data:
    description:
      - Secrets (C(secureJsonData)), for example the keys C(password) or C(basicAuthPassword).
      - Sent on creation; later only with O(update_secrets=true). Never compared nor shown.
    type: dict
  update_secrets:
    description:
      - Send O(secure_json_data) to an existing data source. Grafana cannot tell whether they differ,
        so the task then always reports a change.
    type: bool
    default: false
  health_check:
    description:
      - After the data source is saved (or found unchanged), run Grafana's connection test
        (C(GET /api/datasources/uid/:uid/health)) and fail when it does not pass.
      - Skipped in check mode when the data source would be created or changed.
    type: bool
    default: false
  state:
    description:
      - V(present) creates or updates the data source; V(absent) deletes it (a missing one is no change).
    type: str
    choices: [present, absent]
    default: present
'''

EXAMPLES = r'''
- name: Prometheus, the default data source
  aiplatform.observability.grafana_datasource:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    uid: aiplatform-prometheus
    name: Prometheus
    type: prometheus
    datasource_url: http://localhost:9090
    is_default: true
    json_data:
      timeInterval: 15s
    health_check: true

- name: Set only the query timeout; keys added in the Grafana UI stay, an obsolete key is removed
  aiplatform.observability.grafana_datasource:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    uid: aiplatform-prometheus
    name: Prometheus
    type: prometheus
    json_data:
      timeout: 60
      customQueryParameters: null

- name: Loki with exactly these plugin settings (UI additions are removed on every run)
  aiplatform.observability.grafana_datasource:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    uid: aiplatform-loki
    name: Loki
    type: loki
    datasource_url: http://localhost:3100
    json_data:
      maxLines: 1000
    json_data_mode: replace

- name: Platform records in PostgreSQL, read-only user
  aiplatform.observability.grafana_datasource:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    uid: aiplatform-postgres
    name: ai_platform
    type: postgres
    datasource_url: db.example.com:5432
    user: grafana_reader
    json_data:
      database: ai_platform
      sslmode: verify-full
      postgresVersion: 1500
    secure_json_data:
      password: "{{ grafana_reader_password }}"
    update_secrets: "{{ rotate_grafana_reader_password | default(false) }}"
'''

RETURN = r'''
uid:
  description: Uid of the data source.
  returned: always
  type: str
  sample: aiplatform-prometheus
datasource:
  description:
    - The data source as Grafana returns it (secrets only as C(secureJsonFields) flags).
    - In check mode, and when nothing changed, the stored object with the task's fields applied; its
      C(jsonData) is the stored one with O(json_data) merged over it (or O(json_data) itself with
      O(json_data_mode=replace)).
  returned: when O(state=present)
  type: dict
  sample: {"uid": "aiplatform-prometheus", "name": "Prometheus", "type": "prometheus", "version": 2,
           "secureJsonFields": {}, "jsonData": {"timeInterval": "15s", "httpMethod": "POST"}}
health:
  description: Result of the connection test.
  returned: when O(health_check=true) and the test ran
  type: dict
  sample: {"status": "OK", "message": "Successfully queried the Prometheus API."}
'''

import copy

from ansible_collections.aiplatform.observability.plugins.module_utils._grafana import (
    GrafanaModule, GrafanaAPIError, check_uid, quote_uid, strip_none, subset)

# Plugin ids Grafana renamed; the API answers with the canonical one.
TYPE_ALIASES = {
    'postgres': 'grafana-postgresql-datasource',
    'testdata': 'grafana-testdata-datasource',
}
# Fields of the API object that a PUT (whole object) carries over from what was read.
KEPT_FIELDS = ('name', 'type', 'access', 'url', 'user', 'database', 'basicAuth', 'basicAuthUser',
               'withCredentials', 'isDefault', 'jsonData')


def canonical_type(plugin_type):
    return TYPE_ALIASES.get(plugin_type, plugin_type)


def comparable(datasource):
    return dict(datasource, type=canonical_type(datasource.get('type'))) if datasource else None


def merge_json(stored, patch):
    """`stored` with `patch` merged over it (JSON merge patch, RFC 7396): nested dicts key by key, other
    values (lists included) replaced whole, a None value removes the key. Neither argument is changed."""
    result = copy.deepcopy(stored) if isinstance(stored, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = merge_json(result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def json_view(stored, patch):
    """The part of `stored` that `patch` sets (nested dicts key by key; keys missing in `stored` left out).
    The result equals merge_json({}, patch) exactly when merging `patch` into `stored` changes nothing."""
    stored = stored if isinstance(stored, dict) else {}
    view = {}
    for key, value in patch.items():
        if key not in stored:
            continue
        if isinstance(value, dict) and isinstance(stored[key], dict):
            view[key] = json_view(stored[key], value)
        else:
            view[key] = copy.deepcopy(stored[key])
    return view


class GrafanaDatasource(GrafanaModule):
    argument_spec = dict(
        uid=dict(type='str', required=True),
        name=dict(type='str'),
        type=dict(type='str'),
        access=dict(type='str', choices=['proxy', 'direct']),
        datasource_url=dict(type='str', aliases=['ds_url']),
        user=dict(type='str'),
        database=dict(type='str'),
        basic_auth=dict(type='bool'),
        basic_auth_user=dict(type='str'),
        is_default=dict(type='bool'),
        json_data=dict(type='dict'),
        json_data_mode=dict(type='str', default='merge', choices=['merge', 'replace']),
        secure_json_data=dict(type='dict', no_log=True),
        update_secrets=dict(type='bool', default=False),
        health_check=dict(type='bool', default=False),
        state=dict(type='str', default='present', choices=['present', 'absent']),
    )
    module_kwargs = dict(required_if=[('state', 'present', ['name', 'type'])])

    def process(self):
        p, api = self.params, self.client
        uid = check_uid(p['uid'])
        path = '/api/datasources/uid/%s' % quote_uid(uid)
        current = api.get(path)
        if p['state'] == 'absent':
            before = subset(current, ('uid', 'name', 'type', 'url')) if current else None
            self.refuse_read_only(current, before is not None)
            return self.ensure(before, None, lambda: api.request('DELETE', path) and None, dict(uid=uid))
        wanted = strip_none(dict(
            name=p['name'], type=canonical_type(p['type']), access=p['access'], url=p['datasource_url'],
            user=p['user'], database=p['database'], basicAuth=p['basic_auth'], basicAuthUser=p['basic_auth_user'],
            isDefault=p['is_default'], jsonData=p['json_data']))
        merge = p['json_data_mode'] == 'merge' and p['json_data'] is not None
        stored_json = (current or {}).get('jsonData') or {}
        if merge:  # compare, show and write only the keys the task sets
            wanted['jsonData'] = merge_json({}, p['json_data'])
        before = subset(comparable(current), wanted) if current else None
        if before is not None and merge:
            before['jsonData'] = json_view(stored_json, p['json_data'])
        # the jsonData a write sends: the stored keys survive a merge
        json_data = merge_json(stored_json, p['json_data']) if merge else wanted.get('jsonData', stored_json)
        secrets = p['secure_json_data'] if (current is None or p['update_secrets']) else None
        changed = before != wanted or bool(current and secrets)
        self.refuse_read_only(current, changed)

        def apply():
            if current is None:
                body = dict(wanted, uid=uid, type=p['type'], access=p['access'] or 'proxy')
                if secrets:
                    body['secureJsonData'] = secrets
                return dict(datasource=api.request('POST', '/api/datasources', body).get('datasource'))
            body = dict((k, current[k]) for k in KEPT_FIELDS if k in current)
            body.update(wanted, uid=uid, version=current.get('version'), jsonData=json_data)
            if canonical_type(current.get('type')) == wanted['type']:
                body['type'] = current['type']  # keep the stored plugin id when only the alias differs
            if secrets:
                body['secureJsonData'] = secrets
            return dict(datasource=api.request('PUT', path, body).get('datasource'))

        def finish(output, was_changed):
            if not p['health_check'] or (self.check_mode and was_changed):
                return
            try:
                output['health'] = api.get(path + '/health', missing_ok=False)
            except GrafanaAPIError as e:
                if e.status != 400:
                    raise
                self.fail('data source %s was saved but its health check failed: %s. Check datasource_url, '
                          'credentials and that the service is reachable from the Grafana server'
                          % (uid, e.grafana_message or e.body), health=e.body)

        predicted = dict(current or {}, **dict(wanted, uid=uid, jsonData=json_data))
        self.ensure(before, wanted, apply, dict(uid=uid, datasource=predicted), changed=changed, finish=finish)

    def refuse_read_only(self, current, changed):
        if current and current.get('readOnly') and changed:
            self.fail('data source %s is read-only (provisioned from a file): Grafana refuses API changes. Change '
                      'its provisioning file instead, or remove it from provisioning' % current.get('uid'))


def main():
    GrafanaDatasource().main()


if __name__ == '__main__':
    main()
