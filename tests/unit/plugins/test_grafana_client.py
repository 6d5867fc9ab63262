"""module_utils/_grafana.py: error mapping, retries (fake transport, zero delay), normalization, diff."""
import json
import socket
import ssl

import pytest

from ansible.module_utils.six.moves.urllib.error import URLError
from ansible_collections.aiplatform.observability.plugins.module_utils import _grafana as g


class FakeTransport(object):
    """Answers from a script: each item is (status, body) or an exception to raise."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests = []

    def __call__(self, method, url, headers, data, timeout):
        self.requests.append(dict(method=method, url=url, headers=headers,
                                  body=json.loads(data) if data else None, timeout=timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        status, body = answer[0], answer[1]
        headers = answer[2] if len(answer) > 2 else {}
        raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b'')
        return status, headers, raw


def client(transport, **kwargs):
    sleeps = []
    options = dict(url='https://grafana.example.com/sub/', token='glsa_x', transport=transport,
                   sleep=sleeps.append, backoff=0)
    options.update(kwargs)
    c = g.GrafanaClient(**options)
    c.sleeps = sleeps
    return c


def test_request_builds_url_headers_and_body():
    t = FakeTransport((200, {'ok': True}))
    c = client(t, org_id=3, timeout=7)
    assert c.request('POST', '/api/x', {'a': 1}, query=[('tags', 'a'), ('tags', 'b'), ('skip', None)]) == {'ok': True}
    req = t.requests[0]
    assert req['url'] == 'https://grafana.example.com/sub/api/x?tags=a&tags=b'
    assert req['headers']['Authorization'] == 'Bearer glsa_x' and req['headers']['X-Grafana-Org-Id'] == '3'
    assert req['body'] == {'a': 1} and req['timeout'] == 7
    assert c.writes == [('POST', '/api/x')]


def test_basic_auth_sends_no_bearer_header():
    t = FakeTransport((200, {}))
    c = client(t, token=None, url_username='admin', url_password='pw')
    c.request('GET', '/api/health')
    assert 'Authorization' not in t.requests[0]['headers']  # open_url adds basic auth itself


def test_missing_ok_and_empty_bodies():
    t = FakeTransport((404, b''), (404, {'message': 'Dashboard not found'}), (204, b''))
    c = client(t)
    assert c.get('/api/v1/provisioning/alert-rules/x') is None  # 404 with an empty body
    with pytest.raises(g.GrafanaAPIError) as e:
        c.request('GET', '/api/dashboards/uid/x')
    assert e.value.status == 404 and 'Dashboard not found' in str(e.value) and 'Check the uid' in str(e.value)
    assert c.request('DELETE', '/api/v1/provisioning/alert-rules/x') is None


@pytest.mark.parametrize('status,body,expected', [
    (401, {'message': 'Invalid API key'}, ['HTTP 401', 'Invalid API key', '`token`']),
    (403, {'message': 'Cannot update read-only data source'}, ['HTTP 403', 'provisioning file']),
    (403, {'message': 'You\'ll need additional permissions'}, ['lack permission', 'Editor or Admin']),
    (409, {'message': 'data source with the same name already exists'}, ['HTTP 409', 'unique name/uid']),
    (412, {'status': 'version-mismatch', 'message': 'The dashboard has been changed by someone else'},
     ['HTTP 412', 'version-mismatch', 'Nothing was overwritten', 'rerun']),
    (412, {'status': 'name-exists', 'message': 'A dashboard with the same name in the folder already exists'},
     ['same folder has this title']),
    (400, {'message': 'Maximum nested folder depth reached', 'messageId': 'folder.maximum-depth-reached'},
     ['at most 4 levels']),
    (400, {'message': 'Cannot save provisioned dashboard'}, ['provisioned from files']),
    (422, {'message': 'bad panel'}, ['invalid', 'bad panel']),
    (400, b'plain text error', ['plain text error']),
])
def test_error_mapping(status, body, expected):
    c = client(FakeTransport((status, body)))
    with pytest.raises(g.GrafanaAPIError) as e:
        c.request('PUT', '/api/thing')
    for text in expected:
        assert text in str(e.value)
    assert e.value.details['status'] == status
    assert c.writes == []


def test_retries_connection_errors_429_and_5xx_then_succeeds():
    t = FakeTransport(URLError(ConnectionRefusedError(111, 'refused')), (429, {}), (503, {}), (200, {'x': 1}))
    c = client(t, backoff=1.0, sleep=None)
    c.sleep = sleeps = []
    c.sleep = sleeps.append
    assert c.request('GET', '/api/x') == {'x': 1}
    assert len(t.requests) == 4 and sleeps == [1.0, 2.0, 4.0]  # exponential backoff


def test_retry_after_header_is_honoured_and_capped():
    t = FakeTransport((429, {}, {'Retry-After': '3'}), (503, {}, {'Retry-After': '999'}), (200, {}))
    c = client(t, backoff=1.0)
    c.request('GET', '/api/x')
    assert c.sleeps == [3.0, 30.0]


def test_gives_up_after_bounded_retries():
    t = FakeTransport(*[(502, {'message': 'bad gateway'})] * 4)
    c = client(t)
    with pytest.raises(g.GrafanaAPIError) as e:
        c.request('GET', '/api/x')
    assert len(t.requests) == 4 and 'after 4 attempts' in str(e.value)

    t = FakeTransport(*[socket.timeout('timed out')] * 4)
    with pytest.raises(g.GrafanaConnectionError) as e:
        client(t).request('GET', '/api/x')
    assert 'after 4 attempts' in str(e.value) and 'Check `url`' in str(e.value)


def test_creations_are_not_retried_on_500_but_on_503():
    t = FakeTransport((500, {'message': 'boom'}))
    with pytest.raises(g.GrafanaAPIError):
        client(t).request('POST', '/api/annotations', {})
    assert len(t.requests) == 1
    t = FakeTransport((503, {}), (200, {'id': 1}))
    assert client(t).request('POST', '/api/annotations', {}) == {'id': 1}
    t = FakeTransport((500, {}), (200, {}))
    client(t).request('PUT', '/api/folders/x', {})
    assert len(t.requests) == 2


def test_tls_errors_are_not_retried():
    t = FakeTransport(URLError(ssl.SSLCertVerificationError('certificate verify failed')))
    with pytest.raises(g.GrafanaConnectionError) as e:
        client(t).request('GET', '/api/x')
    assert len(t.requests) == 1 and 'ca_path' in str(e.value)


def test_check_mode_refuses_writes():
    c = client(FakeTransport((200, {})), check_mode=True)
    assert c.request('GET', '/api/x') == {}
    with pytest.raises(g.GrafanaCheckModeWriteError):
        c.request('POST', '/api/x', {})


def test_normalize_dashboard_drops_volatile_keys_only():
    dash = {'id': 3, 'uid': 'u', 'version': 9, 'iteration': 123, 'title': 'T', 'panels': [{'id': 1}]}
    assert g.normalize_dashboard(dash) == {'uid': 'u', 'title': 'T', 'panels': [{'id': 1}]}
    assert dash['version'] == 9, 'input must not be modified'
    assert g.normalize_dashboard(None) == {}


def test_subset_diff_keys_and_uid_check():
    current = {'name': 'n', 'type': 't', 'jsonData': {'a': 1}, 'version': 4}
    assert g.subset(current, {'name': 'x', 'url': 'y'}) == {'name': 'n', 'url': None}
    assert g.diff_keys({'a': 1, 'b': 2}, {'a': 1, 'b': 3, 'c': 4}) == ['b', 'c']
    assert g.strip_none({'a': None, 'b': 0}) == {'b': 0}
    assert g.check_uid('a-Z_9' * 8) == 'a-Z_9' * 8
    for bad in ('', 'x' * 41, 'has space', 'slash/', None):
        with pytest.raises(g.GrafanaError):
            g.check_uid(bad)
    assert g.quote_uid('a b/c') == 'a%20b%2Fc'
