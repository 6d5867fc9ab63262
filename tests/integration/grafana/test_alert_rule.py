"""grafana_alert_rule: provisioning API, group interval by read-modify-write, provenance."""
import json


def rule_args(rule_uid, folder, **extra):
    args = dict(uid=rule_uid, title='GPU hot ' + rule_uid, folder_uid=folder, rule_group='gpu-' + folder,
                condition='C', pending_period='5m', labels={'severity': 'warning'},
                data=[{'refId': 'A', 'datasourceUid': 'prometheus-uid', 'relativeTimeRange': {'from': 600, 'to': 0},
                       'model': {'refId': 'A', 'expr': 'max(DCGM_FI_DEV_GPU_TEMP)', 'instant': True}},
                      {'refId': 'C', 'datasourceUid': '__expr__', 'relativeTimeRange': {'from': 0, 'to': 0},
                       'model': {'refId': 'C', 'type': 'threshold', 'expression': 'A',
                                 'conditions': [{'evaluator': {'type': 'gt', 'params': [85]}}]}}])
    args.update(extra)
    return args


def test_rule_lifecycle_and_group_interval(run, grafana, proxy, uid):
    folder, rule, sibling = uid('rules'), uid('rule'), uid('sibling')
    run('grafana_folder', dict(uid=folder, title='Rules ' + folder))
    created = run('grafana_alert_rule', rule_args(rule, folder, group_interval=30))
    assert created['changed'] is True and created['group_interval'] == 30
    assert ('POST', '/api/v1/provisioning/alert-rules') in proxy.log
    stored = grafana.get('/api/v1/provisioning/alert-rules/%s' % rule)[1]
    assert stored['provenance'] == 'api' and stored['for'] == '5m'
    group_path = '/api/v1/provisioning/folder/%s/rule-groups/gpu-%s' % (folder, folder)
    assert grafana.get(group_path)[1]['interval'] == 30

    # durations compare by value: 300s is 5m
    again = run('grafana_alert_rule', rule_args(rule, folder, group_interval=30, pending_period='300s'))
    assert again['changed'] is False and [c for c in proxy.log if c[0] != 'GET'] == []

    check = run('grafana_alert_rule', rule_args(rule, folder, labels={'severity': 'critical'}), check=True)
    assert check['changed'] is True
    assert check['diff']['before']['labels'] == {'severity': 'warning'}
    assert check['diff']['after']['labels'] == {'severity': 'critical'}
    assert grafana.get('/api/v1/provisioning/alert-rules/%s' % rule)[1]['labels'] == {'severity': 'warning'}

    # a second rule in the group, then a new interval: the whole group is written back with both rules
    run('grafana_alert_rule', rule_args(sibling, folder, title='Sibling ' + sibling))
    interval = run('grafana_alert_rule', rule_args(rule, folder, group_interval=60))
    assert interval['changed'] is True and interval['diff']['before']['group_interval'] == 30
    put = [json.loads(b) for m, p, b in proxy.bodies if m == 'PUT' and p == group_path]
    assert put and put[0]['interval'] == 60 and sorted(r['uid'] for r in put[0]['rules']) == sorted([rule, sibling])
    group = grafana.get(group_path)[1]
    assert group['interval'] == 60 and len(group['rules']) == 2

    gone, again, _ = run.many([('grafana_alert_rule', dict(uid=rule, state='absent')),
                               ('grafana_alert_rule', dict(uid=rule, state='absent')),
                               ('grafana_folder', dict(uid=folder, state='absent', force_delete_rules=True))])
    assert gone['changed'] is True and again['changed'] is False
    assert grafana.get('/api/v1/provisioning/alert-rules/%s' % sibling)[0] == 404


def test_provenance_is_consistent(run, grafana, proxy, uid):
    folder, rule = uid('prov'), uid('prov-rule')
    run('grafana_folder', dict(uid=folder, title='Provenance ' + folder))
    editable = run('grafana_alert_rule', rule_args(rule, folder, disable_provenance=True))
    assert editable['changed'] is True
    assert grafana.get('/api/v1/provisioning/alert-rules/%s' % rule)[1].get('provenance', '') == ''
    assert run('grafana_alert_rule', rule_args(rule, folder, disable_provenance=True))['changed'] is False

    # editable -> provisioned is allowed (and is a change); provisioned -> editable is refused before writing
    locked = run('grafana_alert_rule', rule_args(rule, folder))
    assert locked['changed'] is True and locked['diff']['after']['provenance'] == 'api'
    refused = run('grafana_alert_rule', rule_args(rule, folder, disable_provenance=True, labels={}),
                  expect_failure=True)
    assert "provenance 'api'" in refused['msg'] and 'disable_provenance' in refused['msg']
    assert [c for c in proxy.log if c[0] != 'GET'] == []
    run('grafana_folder', dict(uid=folder, state='absent', force_delete_rules=True))


def test_bad_input(run, uid):
    folder = uid('missing')
    unknown = run('grafana_alert_rule', rule_args(uid('r'), folder), expect_failure=True)
    assert "folder_uid '%s': no such folder" % folder in unknown['msg']
