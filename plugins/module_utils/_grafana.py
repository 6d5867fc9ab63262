# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Private Grafana HTTP API client shared by the grafana_* modules.

One request function (GrafanaClient.request), one error type (GrafanaAPIError) and one base class
(GrafanaModule) that runs changed/check mode/diff once, so each module only reads the current object,
builds the wanted one and says how to write it. The API facts come from
shared/notes/grafana-http-api.md. This file is private to the collection: its interface may change.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import json
import re
import socket
import ssl
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import quote, urlencode
from ansible.module_utils.urls import open_url

try:  # one TLS context per client instead of one per request (loading the CA store costs ~50 ms)
    from ansible.module_utils.urls import Request, make_context
except ImportError:  # pragma: no cover - older ansible-core: open_url builds one per request
    Request = make_context = None

try:  # http.client on Python 3
    from http.client import HTTPException
except ImportError:  # pragma: no cover
    from httplib import HTTPException  # type: ignore[no-redef]


def grafana_argument_spec():
    """Connection options documented in doc_fragments/grafana.py."""
    return dict(
        url=dict(type='str', required=True, aliases=['grafana_url']),
        token=dict(type='str', no_log=True),
        url_username=dict(type='str', aliases=['grafana_user']),
        url_password=dict(type='str', no_log=True, aliases=['grafana_password']),
        org_id=dict(type='int'),
        validate_certs=dict(type='bool', default=True),
        ca_path=dict(type='path'),
        client_cert=dict(type='path'),
        client_key=dict(type='path'),
        timeout=dict(type='int', default=30),
    )


GRAFANA_MODULE_KWARGS = dict(
    supports_check_mode=True,
    mutually_exclusive=[('token', 'url_username')],
    required_one_of=[('token', 'url_username')],
    required_together=[('url_username', 'url_password')],
)

UID_RE = re.compile(r'^[a-zA-Z0-9_-]{1,40}$')
RETRY_ALWAYS = (429, 502, 503, 504)
IDEMPOTENT_METHODS = ('GET', 'HEAD', 'PUT', 'DELETE')


class GrafanaError(Exception):
    """An error the module reports as its failure message."""

    def __init__(self, message, **details):
        super(GrafanaError, self).__init__(message)
        self.details = details


class GrafanaAPIError(GrafanaError):
    """Grafana answered an HTTP error: the message says what happened and what to do."""

    def __init__(self, status, method, path, body=None, attempts=1):
        self.status = status
        self.method = method
        self.path = path
        self.body = body
        self.grafana_message, self.grafana_status, self.message_id = parse_error_body(body)
        message = explain_error(status, method, path, self.grafana_message, self.grafana_status,
                                self.message_id, attempts)
        super(GrafanaAPIError, self).__init__(
            message, status=status, response=body if isinstance(body, dict) else to_text(body or ''))


class GrafanaConnectionError(GrafanaError):
    """The request never got an HTTP answer."""


class GrafanaCheckModeWriteError(GrafanaError):
    """A write was attempted while the module runs in check mode (a bug, never Grafana's fault)."""


def parse_error_body(body):
    """Return (message, status, messageId) from Grafana's error body (JSON, text or empty)."""
    if isinstance(body, dict):
        return (to_text(body.get('message') or body.get('error') or ''),
                to_text(body.get('status') or ''), to_text(body.get('messageId') or ''))
    if isinstance(body, (list, type(None))):
        return '', '', ''
    return to_text(body).strip()[:500], '', ''


def explain_error(status, method, path, message, grafana_status='', message_id='', attempts=1):
    """Turn one Grafana error answer into a message that says what to do."""
    where = '%s %s' % (method, path)
    said = ': %s' % message if message else ' (empty body)'
    lowered = (message or '').lower()
    if status == 401:
        hint = ('Grafana rejected the credentials. Check `token` (a service account token, glsa_...) '
                'or `url_username`/`url_password`, and that the token was not revoked or expired')
    elif status == 403 and ('provision' in lowered or 'read-only' in lowered or 'readonly' in lowered):
        hint = ('the object is provisioned from files or its provenance forbids this change. Change it in '
                'its provisioning file, or keep `disable_provenance` the same on every write')
    elif status == 403:
        hint = ('the credentials lack permission for this call. Give the service account the needed '
                'role (Editor or Admin) in this organization (`org_id`)')
    elif status == 404:
        hint = ('not found. Check the uid and `org_id`; create parents (folders, dashboards) first')
    elif status == 409:
        hint = ('conflict: another object already has this name or uid, or the object changed since it was '
                'read. Use a unique name/uid, or rerun the task to compare against the current state')
    elif status == 412 and grafana_status == 'name-exists':
        hint = ('another dashboard in the same folder has this title. Rename one of them or use its uid')
    elif status == 412:
        hint = ('the object was changed by someone else since it was read (version-mismatch). Nothing was '
                'overwritten: review the concurrent change in Grafana, then rerun the task')
    elif status == 400 and message_id == 'folder.maximum-depth-reached':
        hint = 'folders nest at most 4 levels deep. Choose a parent higher in the tree'
    elif status == 400 and 'provisioned' in lowered:
        hint = ('the object is provisioned from files and read-only through the API. Change its provisioning '
                'file instead, or remove it from provisioning')
    elif status in (400, 422):
        hint = 'Grafana refused the request as invalid. Fix the value it names'
    elif status == 429 or status >= 500:
        hint = ('Grafana is overloaded or failing (gave up after %d attempts). Check the Grafana server and its '
                'database, then rerun' % attempts)
    else:
        hint = 'unexpected answer from Grafana'
    return 'HTTP %s from %s%s -- %s.' % (status, where, said, hint)


class GrafanaClient(object):
    """One request function for every module, with bounded retries."""

    def __init__(self, url, token=None, url_username=None, url_password=None, org_id=None,
                 validate_certs=True, ca_path=None, client_cert=None, client_key=None, timeout=30,
                 retries=3, backoff=1.0, max_delay=30.0, transport=None, sleep=time.sleep, check_mode=False):
        self.base = url.rstrip('/')
        self.token = token
        self.url_username = url_username
        self.url_password = url_password
        self.org_id = org_id
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.client_cert = client_cert
        self.client_key = client_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_delay = max_delay
        self.transport = transport or self._open_url
        self.sleep = sleep
        self.check_mode = check_mode
        self.calls = []
        self.writes = []
        self._ssl_context = None

    @classmethod
    def from_params(cls, params, check_mode=False, **kwargs):
        keys = ('url', 'token', 'url_username', 'url_password', 'org_id', 'validate_certs', 'ca_path',
                'client_cert', 'client_key', 'timeout')
        options = dict((k, params.get(k)) for k in keys)
        options.update(kwargs)
        return cls(check_mode=check_mode, **options)

    def _open_url(self, method, url, headers, data, timeout):
        """Default transport: returns (status, headers, body bytes); raises on connection errors."""
        auth = dict(url_username=self.url_username, url_password=self.url_password,
                    force_basic_auth=bool(self.url_username), follow_redirects='safe')
        try:
            if Request is None:
                resp = open_url(url, data=data, headers=headers, method=method, timeout=timeout,
                                validate_certs=self.validate_certs, ca_path=self.ca_path,
                                client_cert=self.client_cert, client_key=self.client_key, **auth)
            else:
                if self._ssl_context is None:
                    self._ssl_context = make_context(cafile=self.ca_path, validate_certs=self.validate_certs,
                                                     client_cert=self.client_cert, client_key=self.client_key)
                resp = Request().open(method, url, data=data, headers=headers, timeout=timeout,
                                      context=self._ssl_context, **auth)
            return resp.getcode(), dict(resp.headers.items()), resp.read()
        except HTTPError as e:
            body = e.read() if e.fp is not None else b''
            return e.code, dict(e.headers.items()) if e.headers else {}, body

    def headers(self, extra=None):
        result = {'Accept': 'application/json', 'Content-Type': 'application/json'}
        if self.token:
            result['Authorization'] = 'Bearer %s' % self.token
        if self.org_id is not None:
            result['X-Grafana-Org-Id'] = str(self.org_id)
        result.update(extra or {})
        return result

    def _delay(self, attempt, headers):
        retry_after = (headers or {}).get('Retry-After') or (headers or {}).get('retry-after')
        if retry_after and str(retry_after).isdigit():
            return min(float(retry_after), self.max_delay)
        return min(self.backoff * (2 ** attempt), self.max_delay)

    def request(self, method, path, body=None, query=None, headers=None, missing_ok=False):
        """Send one API call; return the decoded JSON body (None when empty, or on 404 if missing_ok).

        Retries connection errors, 429 and 502/503/504 for every method, other 5xx only for
        idempotent methods, at most `retries` times with exponential backoff.
        """
        method = method.upper()
        if self.check_mode and method not in ('GET', 'HEAD'):
            raise GrafanaCheckModeWriteError('internal error: %s %s attempted in check mode' % (method, path))
        url = self.base + path
        if query:
            url += '?' + urlencode([(k, v) for k, v in query if v is not None] if isinstance(query, list)
                                   else [(k, v) for k, v in sorted(query.items()) if v is not None], doseq=True)
        data = json.dumps(body).encode('utf-8') if body is not None else None
        all_headers = self.headers(headers)
        attempt = 0
        while True:
            self.calls.append((method, path))
            try:
                status, resp_headers, raw = self.transport(method, url, all_headers, data, self.timeout)
            except (URLError, HTTPException, socket.error, socket.timeout, ValueError) as e:
                reason = getattr(e, 'reason', e)
                if isinstance(reason, ssl.SSLError) or isinstance(e, ValueError) or getattr(e, 'filename', None):
                    raise GrafanaConnectionError(
                        'Cannot talk to Grafana at %s: %s. Check `url`, `validate_certs`, `ca_path` and '
                        '`client_cert`/`client_key`.' % (self.base, to_text(reason)))
                if attempt < self.retries:
                    self.sleep(self._delay(attempt, None))
                    attempt += 1
                    continue
                raise GrafanaConnectionError(
                    'Cannot reach Grafana at %s after %d attempts: %s. Check `url` and that Grafana is running.'
                    % (self.base, attempt + 1, to_text(reason)))
            retryable = status in RETRY_ALWAYS or (status >= 500 and method in IDEMPOTENT_METHODS)
            if retryable and attempt < self.retries:
                self.sleep(self._delay(attempt, resp_headers))
                attempt += 1
                continue
            decoded = decode_body(raw)
            if status == 404 and missing_ok:
                return None
            if status >= 400:
                raise GrafanaAPIError(status, method, path, decoded, attempts=attempt + 1)
            if method not in ('GET', 'HEAD'):
                self.writes.append((method, path))
            return decoded

    def get(self, path, query=None, missing_ok=True):
        return self.request('GET', path, query=query, missing_ok=missing_ok)


def decode_body(raw):
    if raw is None:
        return None
    text = to_text(raw, errors='surrogate_or_strict').strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def quote_uid(uid):
    return quote(to_text(uid), safe='')


def check_uid(uid, what='uid'):
    """Grafana uids: at most 40 characters of [a-zA-Z0-9-_] (contract: Dashboards)."""
    if uid is None or not UID_RE.match(to_text(uid)):
        raise GrafanaError('%s %r is not a valid Grafana uid: use 1 to 40 characters of letters, digits, '
                           '"-" and "_"' % (what, uid))
    return uid


DASHBOARD_VOLATILE_KEYS = ('id', 'version', 'iteration')


def normalize_dashboard(dashboard):
    """Dashboard JSON without the keys Grafana changes on every save (id, version, iteration)."""
    result = copy.deepcopy(dashboard) if dashboard else {}
    for key in DASHBOARD_VOLATILE_KEYS:
        result.pop(key, None)
    return result


def subset(current, wanted):
    """The part of `current` that has the keys of `wanted` (compare only what the user set)."""
    current = current or {}
    return dict((k, current.get(k)) for k in wanted)


def strip_none(data):
    return dict((k, v) for k, v in data.items() if v is not None)


def diff_keys(before, after):
    """Sorted top-level keys whose values differ (for messages and tests)."""
    before = before or {}
    after = after or {}
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


class GrafanaModule(object):
    """Base of every grafana_* module: argument spec, client, error handling, changed/check/diff.

    Subclasses set `argument_spec` (and optionally `module_kwargs`) and implement `process()`, which reads
    the current object, builds the wanted one and calls `self.ensure(...)` once.
    """

    argument_spec = {}
    module_kwargs = {}

    def __init__(self, client=None):
        spec = grafana_argument_spec()
        spec.update(self.argument_spec)
        kwargs = dict(GRAFANA_MODULE_KWARGS)
        for key, value in self.module_kwargs.items():
            kwargs[key] = list(kwargs.get(key, [])) + list(value) if isinstance(value, list) else value
        self.module = AnsibleModule(argument_spec=spec, **kwargs)
        self.params = self.module.params
        self.check_mode = self.module.check_mode
        self.client = client or GrafanaClient.from_params(self.params, check_mode=self.check_mode)

    def process(self):
        raise NotImplementedError

    def main(self):
        try:
            self.process()
        except GrafanaError as e:
            self.module.fail_json(msg=to_text(e), changed=bool(self.client.writes), **e.details)

    def fail(self, msg, **details):
        raise GrafanaError(msg, **details)

    def require(self, exists, msg):
        """Fail when an object this one depends on (folder, parent, dashboard) is missing.

        In check mode an earlier task of the same run may only have reported its creation, so a missing
        dependency is a warning there, not a failure.
        """
        if exists:
            return
        if self.check_mode:
            self.module.warn(msg + ' (check mode: assuming an earlier task creates it)')
        else:
            self.fail(msg)

    def ensure(self, before, after, apply, result=None, changed=None, finish=None):
        """Report and, outside check mode, apply one change; then exit the module.

        before/after: comparable views of the object (None when it does not exist);
        apply(): performs the writes and returns a dict merged into the result;
        result: the values returned when nothing is written (unchanged or check mode);
        changed: overrides `before != after` (for changes that cannot be compared, such as secrets);
        finish(output, changed): runs last, may add to the output or raise GrafanaError.
        """
        if changed is None:
            changed = before != after
        output = dict(result or {})
        output['changed'] = bool(changed)
        if self.module._diff:
            output['diff'] = dict(before=before if before is not None else {},
                                  after=after if after is not None else {})
        try:
            if changed and not self.check_mode and apply is not None:
                output.update(apply() or {})
            if finish is not None:
                finish(output, bool(changed))
        except GrafanaError as e:
            # writes done before the error are reported as a change
            self.module.fail_json(msg=to_text(e), changed=bool(self.client.writes), **e.details)
        self.module.exit_json(**output)
