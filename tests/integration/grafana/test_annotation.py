"""grafana_annotation: epoch ms UTC, dashboard uid, tags, no duplicates."""


def test_annotation_once(run, grafana, uid):
    dash = uid('annotated')
    run('grafana_dashboard', dict(dashboard={'uid': dash, 'title': 'Annotated ' + dash}))
    args = dict(dashboard_uid=dash, text='model v2 rolled out', time='2025-05-01T14:00:00+02:00',
                tags=['deploy', dash])
    check = run('grafana_annotation', args, check=True)
    assert check['changed'] is True and check['time'] == 1746100800000
    assert check['diff']['after']['dashboardUID'] == dash and check['diff']['before'] == {}

    def stored():
        status, items = grafana.get('/api/annotations?from=1746100800000&to=1746100800000&dashboardUID=%s'
                                    '&tags=deploy&tags=%s' % (dash, dash))
        assert status == 200
        return [a for a in items if a['text'] == 'model v2 rolled out']

    assert stored() == [], 'check mode posted'
    posted = run('grafana_annotation', args)
    assert posted['changed'] is True and posted['id']
    # same event, time given in epoch milliseconds this time
    again = run('grafana_annotation', dict(args, time=1746100800000))
    assert again['changed'] is False and again['id'] == posted['id']
    assert len(stored()) == 1
    other = run('grafana_annotation', dict(args, text='model v3 rolled out'))
    assert other['changed'] is True and other['id'] != posted['id']


def test_bad_input(run, uid):
    dash = uid('nodash')
    unknown = run('grafana_annotation', dict(dashboard_uid=dash, text='x', time=1746100800000), expect_failure=True)
    assert unknown['changed'] is False
    assert "dashboard_uid '%s': no such dashboard" % dash in unknown['msg']
