"""grafana_folder against Grafana (or the stand-in): create, idempotence, check mode, diff, rename, move,
concurrent edit, bad input."""


def test_create_rerun_check_diff_rename(run, grafana, proxy, uid):
    folder = uid('folder')
    first = run('grafana_folder', dict(uid=folder, title='Platform'))
    assert first['changed'] is True
    assert first['diff'] == {'before': {}, 'after': {'uid': folder, 'title': 'Platform', 'parent_uid': ''}}
    assert first['version'] >= 1 and first['url']
    status, stored = grafana.get('/api/folders/%s' % folder)
    assert status == 200 and stored['title'] == 'Platform'

    again = run('grafana_folder', dict(uid=folder, title='Platform'))
    assert again['changed'] is False
    assert not [call for call in proxy.log if call[0] != 'GET'], 'an unchanged folder must not be written'

    check = run('grafana_folder', dict(uid=folder, title='AI platform'), check=True)
    assert check['changed'] is True
    assert check['diff']['before']['title'] == 'Platform' and check['diff']['after']['title'] == 'AI platform'
    assert grafana.get('/api/folders/%s' % folder)[1]['title'] == 'Platform', 'check mode wrote'

    renamed = run('grafana_folder', dict(uid=folder, title='AI platform'))
    assert renamed['changed'] is True and renamed['version'] > first['version']
    assert grafana.get('/api/folders/%s' % folder)[1]['title'] == 'AI platform'

    gone = run('grafana_folder', dict(uid=folder, state='absent'))
    assert gone['changed'] is True and grafana.get('/api/folders/%s' % folder)[0] == 404
    assert run('grafana_folder', dict(uid=folder, state='absent'))['changed'] is False


def test_nested_move_and_depth(run, grafana, uid):
    top, mid, leaf = uid('top'), uid('mid'), uid('leaf')
    created = run.many([('grafana_folder', dict(uid=top, title='Top')),
                        ('grafana_folder', dict(uid=mid, title='Mid', parent_uid=top)),
                        ('grafana_folder', dict(uid=leaf, title='Leaf', parent_uid=mid))])[-1]
    assert created['parent_uid'] == mid
    status, stored = grafana.get('/api/folders/%s' % leaf)
    assert [p['uid'] for p in stored['parents']] == [top, mid]

    moved = run('grafana_folder', dict(uid=leaf, title='Leaf', parent_uid=top))
    assert moved['changed'] is True and moved['diff']['before']['parent_uid'] == mid
    assert grafana.get('/api/folders/%s' % leaf)[1]['parentUid'] == top
    to_root = run('grafana_folder', dict(uid=leaf, title='Leaf', parent_uid=''))
    assert to_root['changed'] is True and not grafana.get('/api/folders/%s' % leaf)[1].get('parentUid')

    # folders nest at most 4 levels deep: Top/Mid/L3/L4 is the limit
    l3, l4, l5 = uid('l3'), uid('l4'), uid('l5')
    too_deep = run.many([('grafana_folder', dict(uid=l3, title='L3', parent_uid=mid)),
                         ('grafana_folder', dict(uid=l4, title='L4', parent_uid=l3)),
                         ('grafana_folder', dict(uid=l5, title='L5', parent_uid=l4), {'expect_failure': True})])[-1]
    assert 'HTTP 400' in too_deep['msg'] and 'at most 4 levels' in too_deep['msg']
    assert grafana.get('/api/folders/%s' % l5)[0] == 404
    run('grafana_folder', dict(uid=top, state='absent'))
    assert grafana.get('/api/folders/%s' % l4)[0] == 404, 'deleting a folder deletes its subfolders'


def test_concurrent_rename_is_reported(run, grafana, proxy, uid):
    folder = uid('race')
    run('grafana_folder', dict(uid=folder, title='Before'))

    def edit_behind_the_modules_back():
        current = grafana.get('/api/folders/%s' % folder)[1]
        status, _ = grafana.call('PUT', '/api/folders/%s' % folder,
                                 dict(title='Someone else', version=current['version']))
        assert status == 200

    proxy.after('GET', r'^/api/folders/%s$' % folder, edit_behind_the_modules_back)
    result = run('grafana_folder', dict(uid=folder, title='Mine'), expect_failure=True)
    assert 'HTTP 412' in result['msg'] and 'changed by someone else' in result['msg']
    assert result['changed'] is False
    assert grafana.get('/api/folders/%s' % folder)[1]['title'] == 'Someone else', 'the other edit was overwritten'


def test_bad_input(run, grafana, uid):
    missing_parent = run('grafana_folder', dict(uid=uid('orphan'), title='Orphan', parent_uid=uid('nowhere')),
                         expect_failure=True)
    assert 'parent_uid' in missing_parent['msg'] and 'no such folder' in missing_parent['msg']
    wrong_token = run('grafana_folder', dict(uid=uid('x'), title='X', token='glsa_wrong'), expect_failure=True)
    assert 'HTTP 401' in wrong_token['msg'] and '`token`' in wrong_token['msg']
