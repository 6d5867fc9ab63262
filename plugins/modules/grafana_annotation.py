#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: grafana_annotation
short_description: Record an event as a Grafana annotation, once
version_added: 0.1.0
description:
  - Posts an annotation (a deployment, a model rollout, a maintenance window) to a dashboard, identified by
    its uid, or to the whole organization.
  - Searches first (C(GET /api/annotations)) and does not post a duplicate. An annotation with the same
    text, time, end time, dashboard, panel and tags is the same event, and the task reports no change.
  - Times are epoch milliseconds in UTC, or ISO 8601 date-times converted to them.
author:
  - aiplatform.observability maintainers (@aiplatform)
extends_documentation_fragment:
  - aiplatform.observability.grafana
attributes:
  check_mode:
    support: full
    description: Searches for the event and reports whether it would be posted.
  diff_mode:
    support: full
    description: Shows the annotation that would be posted.
options:
  text:
    description:
      - Text of the annotation.
    type: str
    required: true
  time:
    description:
      - When the event happened or started, as epoch milliseconds (UTC) or an ISO 8601 date-time such as
        V(2025-05-01T12:00:00Z) (without an offset it is read as UTC).
      - Required so that reruns recognise the same event; use a fixed value such as the start of the play
        (for example C({{ ansible_date_time.epoch | int * 1000 }}) gathered once), not the current time of
        each run.
    type: raw
    required: true
  time_end:
    description:
      - End of a region annotation, in the same formats as O(time). Defaults to O(time) (a point in time).
    type: raw
  dashboard_uid:
    description:
      - Uid of the dashboard the annotation belongs to; it must exist. Without it the annotation belongs to
        the organization and shows on every dashboard that displays organization annotations with its tags.
    type: str
  panel_id:
    description:
      - Id of the panel within the dashboard (the panel's C(id) in the dashboard JSON). Needs O(dashboard_uid).
    type: int
  tags:
    description:
      - Tags of the annotation, used by dashboards to filter them.
    type: list
    elements: str
    default: []
'''

EXAMPLES = r'''
- name: Mark the model rollout on the drift dashboard
  aiplatform.observability.grafana_annotation:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    dashboard_uid: aiplatform-drift
    text: "Model {{ model_version }} rolled out"
    time: "{{ rollout_started_at }}"   # e.g. 2025-05-01T12:00:00Z
    tags: [deploy, model]

- name: Organization-wide maintenance window (region)
  aiplatform.observability.grafana_annotation:
    url: https://grafana.example.com
    token: "{{ grafana_service_account_token }}"
    text: GPU node firmware update
    time: 1746100800000
    time_end: 1746104400000
    tags: [maintenance]
'''

RETURN = r'''
id:
  description: Id of the annotation posted or found (none in check mode when it would be posted).
  returned: always
  type: int
  sample: 42
time:
  description: Start of the annotation, epoch milliseconds UTC.
  returned: always
  type: int
  sample: 1746100800000
time_end:
  description: End of the annotation, epoch milliseconds UTC (equal to RV(time) for a point).
  returned: always
  type: int
  sample: 1746104400000
'''

import calendar
import datetime

from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.six import integer_types, string_types
from ansible_collections.aiplatform.observability.plugins.module_utils._grafana import (
    GrafanaModule, GrafanaError, check_uid, quote_uid)

MIN_EPOCH_MS = 10 ** 11  # 1973-03-03 in milliseconds; smaller numbers are almost surely seconds


def epoch_ms(value, option):
    """Epoch milliseconds UTC from an int/float/digit string (milliseconds) or an ISO 8601 date-time."""
    if isinstance(value, bool):
        raise GrafanaError('%s: %r is not a time' % (option, value))
    if isinstance(value, string_types) and value.strip().lstrip('-').isdigit():
        value = int(value.strip())
    if isinstance(value, integer_types + (float,)):
        if value < MIN_EPOCH_MS:
            raise GrafanaError('%s: %r looks like epoch seconds; Grafana wants epoch milliseconds '
                               '(multiply by 1000)' % (option, value))
        return int(value)
    if isinstance(value, datetime.datetime):
        moment = value
    else:
        text = to_text(value).strip()
        if text.endswith(('Z', 'z')):
            text = text[:-1] + '+00:00'
        try:
            moment = datetime.datetime.fromisoformat(text.replace(' ', 'T', 1))
        except (TypeError, ValueError):
            raise GrafanaError('%s: %r is neither epoch milliseconds nor an ISO 8601 date-time such as '
                               '2025-05-01T12:00:00Z' % (option, value))
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return calendar.timegm(moment.timetuple()) * 1000 + moment.microsecond // 1000


def annotation_view(item):
    return dict(text=item.get('text'), time=item.get('time'), timeEnd=item.get('timeEnd') or item.get('time'),
                dashboardUID=item.get('dashboardUID') or '', panelId=item.get('panelId') or 0,
                tags=sorted(item.get('tags') or []))


class GrafanaAnnotation(GrafanaModule):
    argument_spec = dict(
        text=dict(type='str', required=True),
        time=dict(type='raw', required=True),
        time_end=dict(type='raw'),
        dashboard_uid=dict(type='str'),
        panel_id=dict(type='int'),
        tags=dict(type='list', elements='str', default=[]),
    )
    module_kwargs = dict(required_by=dict(panel_id='dashboard_uid'))

    def process(self):
        p, api = self.params, self.client
        start = epoch_ms(p['time'], 'time')
        end = epoch_ms(p['time_end'], 'time_end') if p['time_end'] is not None else start
        if end < start:
            self.fail('time_end (%d) is before time (%d)' % (end, start))
        dashboard = p['dashboard_uid']
        if dashboard:
            self.require(api.get('/api/dashboards/uid/%s' % quote_uid(check_uid(dashboard, 'dashboard_uid'))) is not None,
                         'dashboard_uid %r: no such dashboard in Grafana. Create it first '
                         '(aiplatform.observability.grafana_dashboard) or fix the uid' % dashboard)
        want = annotation_view(dict(text=p['text'], time=start, timeEnd=end, dashboardUID=dashboard,
                                    panelId=p['panel_id'], tags=p['tags']))
        query = [('from', start), ('to', end), ('dashboardUID', dashboard), ('limit', 1000)]
        query += [('tags', tag) for tag in p['tags']]
        found = [a for a in api.get('/api/annotations', query=query, missing_ok=False) or []
                 if annotation_view(a) == want]
        before = want if found else None

        def apply():
            body = dict(text=p['text'], time=start, timeEnd=end, tags=p['tags'])
            if dashboard:
                body['dashboardUID'] = dashboard
            if p['panel_id'] is not None:
                body['panelId'] = p['panel_id']
            return dict(id=api.request('POST', '/api/annotations', body).get('id'))

        self.ensure(before, want, apply, dict(id=found[0].get('id') if found else None, time=start, time_end=end))


def main():
    GrafanaAnnotation().main()


if __name__ == '__main__':
    main()
