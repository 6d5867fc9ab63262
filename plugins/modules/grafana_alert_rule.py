#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: grafana_alert_rule
short_description: Manage Grafana-managed alert rules by uid through the provisioning API
version_added: 0.1.0
description:
  - Manages one Grafana alert rule identified by its O(uid) through C(/api/v1/provisioning/alert-rules).
  - Compares the rule's fields (pending period as a duration, queries by the keys set in the task) and writes
    only when they differ.
  - The evaluation interval belongs to the rule group. With O(group_interval), the module reads the whole
    group and writes it back with every rule and the new interval (read-modify-write).
  - Sends C(X-Disable-Provenance) on every write when O(disable_provenance=true), so the rule stays editable in
    the UI; otherwise the rule is marked provisioned. Grafana refuses to make a provisioned rule editable again;
    the module reports that before writing.
author:
  - aiplatform.observability maintainers (@aiplatform)
extends_documentation_fragment:
  - aiplatform.observability.grafana
attributes:
  check_mode:
    support: full
    description: Reads the rule and its group and reports what would change without writing.
  diff_mode:
    support: full
    description: Shows the rule's fields, its provenance and the group interval before and after.
options:
  uid:
    description:
      - Uid of the rule, 1 to 40 characters of letters, digits, C(-) and C(_).
    type: str
    required: true
  title:
    description:
      - Title of the rule, unique within its group. Required when O(state=present).
    type: str
  folder_uid:
    description:
      - Uid of the folder that holds the rule group; it must exist. Required when O(state=present).
    type: str
  rule_group:
    description:
      - Name of the rule group (evaluated together, at the group's interval). Required when O(state=present).
    type: str
  condition:
    description:
      - C(refId) of the query or expression in O(data) whose result fires the alert. Required when O(state=present).
    type: str
  data:
    description:
      - Queries and expressions, each with C(refId), C(datasourceUid) (C(__expr__) for server-side expressions),
        C(relativeTimeRange) (seconds before now, keys C(from) and C(to)) and C(model).
      - Required when O(state=present).
    type: list
    elements: dict
  no_data_state:
    description:
      - State when the query returns no data.
    type: str
    choices: [Alerting, NoData, OK]
    default: NoData
  exec_err_state:
    description:
      - State when the evaluation fails.
    type: str
    choices: [OK, Alerting, Error]
    default: Error
  pending_period:
    description:
      - How long the condition must hold before the alert fires, as a duration such as V(5m) or V(1h30m)
        (the rule's C(for)).
    type: str
    default: 5m
    aliases: [for]
  labels:
    description:
      - Labels of the alert, used by notification policies.
    type: dict
  annotations:
    description:
      - Annotations of the alert, such as C(summary), C(description), C(runbook_url), C(__dashboardUid__).
    type: dict
  is_paused:
    description:
      - Pause the rule's evaluation.
    type: bool
    default: false
  group_interval:
    description:
      - Evaluation interval of the whole rule group, in seconds; a positive multiple of 10. Grafana uses 60 for
        a new group.
      - When omitted the group's interval is left as it is.
    type: int
  disable_provenance:
    description:
      - Send C(X-Disable-Provenance) so the rule stays editable in the Grafana UI.
      - Use the same value on every task for the same rule; Grafana refuses to turn a provisioned rule into an
        editable one.
    type: bool
    default: false
  state:
    description:
      - V(present) creates or updates the rule; V(absent) deletes it (a missing rule is no change).
    type: str
    choices: [present, absent]
    default: present
'''

EXAMPLES = r'''
- name: Alert when a GPU runs hot for five minutes
  aiplatform.observability.grafana_alert_rule:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    uid: gpu-temperature-high
    title: GPU temperature high
    folder_uid: aiplatform
    rule_group: gpu
    group_interval: 30
    condition: C
    data:
      - refId: A
        datasourceUid: aiplatform-prometheus
        relativeTimeRange: {from: 600, to: 0}
        model: {refId: A, expr: "max by (instance, gpu) (DCGM_FI_DEV_GPU_TEMP)", instant: true}
      - refId: C
        datasourceUid: __expr__
        relativeTimeRange: {from: 0, to: 0}
        model: {refId: C, type: threshold, expression: A,
                conditions: [{evaluator: {type: gt, params: [85]}}]}
    pending_period: 5m
    labels:
      severity: warning
    annotations:
      summary: "GPU {{ '{{' }} $labels.gpu {{ '}}' }} on {{ '{{' }} $labels.instance {{ '}}' }} is above 85 C"

- name: Remove a rule
  aiplatform.observability.grafana_alert_rule:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    uid: old-rule
    state: absent
'''

RETURN = r'''
uid:
  description: Uid of the rule.
  returned: always
  type: str
  sample: gpu-temperature-high
rule:
  description: The rule as Grafana returns it (the predicted rule in check mode).
  returned: when O(state=present)
  type: dict
  sample: {"uid": "gpu-temperature-high", "title": "GPU temperature high", "ruleGroup": "gpu", "for": "5m",
           "provenance": "api"}
group_interval:
  description: Evaluation interval of the rule's group in seconds.
  returned: when O(state=present) and known
  type: int
  sample: 30
'''

import re

from ansible_collections.aiplatform.observability.plugins.module_utils._grafana import (
    GrafanaModule, check_uid, quote_uid, subset)

DURATION_PART = re.compile(r'(\d+)(ms|s|m|h|d|w|y)')
UNITS = dict(ms=0.001, s=1, m=60, h=3600, d=86400, w=604800, y=31536000)


def duration_seconds(value):
    """Seconds of a Prometheus-style duration ('5m', '1h30m', '90s'); None when it is not one."""
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    parts = DURATION_PART.findall(text)
    if not parts or ''.join(n + u for n, u in parts) != text:
        return None
    return sum(int(n) * UNITS[u] for n, u in parts)


def rule_view(rule, data_keys=None):
    """The fields this module manages, normalized for comparison and diff."""
    data = rule.get('data') or []
    if data_keys is not None:  # compare each query by the keys set in the task
        data = [subset(item, keys) for item, keys in zip(data, data_keys)] + data[len(data_keys):]
    return dict(title=rule.get('title'), folderUID=rule.get('folderUID'), ruleGroup=rule.get('ruleGroup'),
                condition=rule.get('condition'), data=data, noDataState=rule.get('noDataState'),
                execErrState=rule.get('execErrState'), pending_seconds=duration_seconds(rule.get('for') or '0s'),
                labels=rule.get('labels') or {}, annotations=rule.get('annotations') or {},
                isPaused=bool(rule.get('isPaused')), provenance=rule.get('provenance') or '')


class GrafanaAlertRule(GrafanaModule):
    argument_spec = dict(
        uid=dict(type='str', required=True),
        title=dict(type='str'),
        folder_uid=dict(type='str'),
        rule_group=dict(type='str'),
        condition=dict(type='str'),
        data=dict(type='list', elements='dict'),
        no_data_state=dict(type='str', default='NoData', choices=['Alerting', 'NoData', 'OK']),
        exec_err_state=dict(type='str', default='Error', choices=['OK', 'Alerting', 'Error']),
        pending_period=dict(type='str', default='5m', aliases=['for']),
        labels=dict(type='dict'),
        annotations=dict(type='dict'),
        is_paused=dict(type='bool', default=False),
        group_interval=dict(type='int'),
        disable_provenance=dict(type='bool', default=False),
        state=dict(type='str', default='present', choices=['present', 'absent']),
    )
    module_kwargs = dict(required_if=[('state', 'present', ['title', 'folder_uid', 'rule_group', 'condition', 'data'])])

    def process(self):
        p, api = self.params, self.client
        uid = check_uid(p['uid'])
        headers = {'X-Disable-Provenance': 'true'} if p['disable_provenance'] else None
        path = '/api/v1/provisioning/alert-rules/%s' % quote_uid(uid)
        current = api.get(path)  # 404 with an empty body when missing
        if p['state'] == 'absent':
            before = rule_view(current) if current else None
            if current:
                self.check_provenance(current)
            return self.ensure(before, None, lambda: api.request('DELETE', path, headers=headers), dict(uid=uid))
        self.validate(p)
        group_path = '/api/v1/provisioning/folder/%s/rule-groups/%s' % (quote_uid(p['folder_uid']),
                                                                        quote_uid(p['rule_group']))
        group = api.get(group_path)
        body = dict(uid=uid, orgID=p['org_id'] or (current or {}).get('orgID') or 1, folderUID=p['folder_uid'],
                    ruleGroup=p['rule_group'], title=p['title'], condition=p['condition'], data=p['data'],
                    noDataState=p['no_data_state'], execErrState=p['exec_err_state'], labels=p['labels'] or {},
                    annotations=p['annotations'] or {}, isPaused=p['is_paused'], provenance='' if headers else 'api',
                    **{'for': p['pending_period']})
        data_keys = [list(item) for item in p['data']]
        before = dict(rule_view(current, data_keys), group_interval=group and group.get('interval')) if current else None
        old_interval = group.get('interval') if group else 60
        interval = p['group_interval'] or old_interval
        after = dict(rule_view(body), group_interval=interval)
        rule_changed = before is None or dict(before, group_interval=None) != dict(after, group_interval=None)
        if current and rule_changed:
            self.check_provenance(current)
        changed = rule_changed or interval != old_interval
        del body['provenance']

        def apply():
            rule = current
            if current is None:
                rule = api.request('POST', '/api/v1/provisioning/alert-rules', body, headers=headers)
            elif rule_changed:
                rule = api.request('PUT', path, body, headers=headers)
            if interval != old_interval:
                fresh = api.get(group_path, missing_ok=False)  # read-modify-write of the whole group
                fresh.update(interval=interval)
                fresh = api.request('PUT', group_path, fresh, headers=headers)
                rule = next((r for r in fresh.get('rules', []) if r.get('uid') == uid), rule)
            return dict(rule=rule, group_interval=interval)

        self.ensure(before, after, apply, dict(uid=uid, rule=dict(current or {}, **body), group_interval=interval),
                    changed=changed)

    def validate(self, p):
        check_uid(p['folder_uid'], 'folder_uid')
        if duration_seconds(p['pending_period']) is None:
            self.fail('pending_period %r is not a duration such as 5m, 90s or 1h30m' % p['pending_period'])
        if p['group_interval'] is not None and (p['group_interval'] <= 0 or p['group_interval'] % 10):
            self.fail('group_interval %r: use a positive multiple of 10 seconds' % p['group_interval'])
        refs = [item.get('refId') for item in p['data']]
        if not refs or None in refs or any(not item.get('datasourceUid') for item in p['data']):
            self.fail('data: every query needs a refId and a datasourceUid ("__expr__" for expressions)')
        if p['condition'] not in refs:
            self.fail('condition %r is not the refId of an item in data (%s)' % (p['condition'], ', '.join(refs)))
        self.require(self.client.get('/api/folders/%s' % quote_uid(p['folder_uid'])) is not None,
                     'folder_uid %r: no such folder in Grafana. Create it first (aiplatform.observability.'
                     'grafana_folder) or fix the uid' % p['folder_uid'])

    def check_provenance(self, current):
        """Grafana refuses (403) to change a provisioned rule into an editable one, or a file-provisioned rule."""
        stored = current.get('provenance') or ''
        if stored == 'file' or (stored and self.params['disable_provenance']):
            self.fail('alert rule %s has provenance %r: Grafana refuses this change with disable_provenance=%s '
                      '(HTTP 403). Keep disable_provenance: false for this rule (send the header consistently), '
                      'or change its provisioning file' % (current.get('uid'), stored, self.params['disable_provenance']))


def main():
    GrafanaAlertRule().main()


if __name__ == '__main__':
    main()
