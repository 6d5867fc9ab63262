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
    O(json_data) is compared as a whole.
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
    description: Shows the fields set in the task before and after; secrets are never shown.
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
      - Compared as a whole when set.
    type: dict
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
  description: The data source as Grafana returns it (secrets only as C(secureJsonFields) flags).
  returned: when O(state=present), the predicted object in check mode
  type: dict
  sample: {"uid": "aiplatform-prometheus", "name": "Prometheus", "type": "prometheus", "version": 2,
           "secureJsonFields": {}, "jsonData": {"timeInterval": "15s"}}
health:
  description: Result of the connection test.
  returned: when O(health_check=true) and the test ran
  type: dict
  sample: {"status": "OK", "message": "Successfully queried the Prometheus API."}
'''

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
        before = subset(comparable(current), wanted) if current else None
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
            body.update(wanted, uid=uid, version=current.get('version'))
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

        predicted = dict(current or {}, **dict(wanted, uid=uid))
        self.ensure(before, wanted, apply, dict(uid=uid, datasource=predicted), changed=changed, finish=finish)

    def refuse_read_only(self, current, changed):
        if current and current.get('readOnly') and changed:
            self.fail('data source %s is read-only (provisioned from a file): Grafana refuses API changes. Change '
                      'its provisioning file instead, or remove it from provisioning' % current.get('uid'))


def main():
    GrafanaDatasource().main()


if __name__ == '__main__':
    main()
