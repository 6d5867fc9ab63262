#!/usr/bin/env python3
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A stateful stand-in for the parts of Grafana's HTTP API that the collection's modules use.

For tests only (unit/integration tests and molecule scenarios); never installed by a role.
Every behaviour follows shared/notes/grafana-http-api.md ("the contract"); the comment on each
handler names the contract section it implements. Anything not on the contract page is out of scope,
with one marked exception: the service accounts, their tokens and what a token may do (the section
"service accounts" below and the token branch of Handler.authenticate) are not on the contract page.
They follow Grafana's public HTTP API documentation instead, and each comment there says "Grafana
docs:" and names the page:
  [SA]    https://grafana.com/docs/grafana/latest/developers/http_api/serviceaccount/
          (request and response shapes; the status codes and error ids (400 serviceaccounts.ErrAlreadyExists,
          400 serviceaccounts.ErrTokenAlreadyExists, 404 serviceaccounts.ErrNotFound, ...) are the ones
          Grafana's pkg/services/serviceaccounts/models.go declares)
  [AUTH]  https://grafana.com/docs/grafana/latest/developers/http_api/authentication/
          (Bearer service account tokens; a token of a deleted, disabled or expired account or a deleted
          token is refused with 401, as Grafana's authn api-key client does: api-key.invalid,
          identity.disabled, api-key.expired, api-key.organization-mismatch; what a token writes is
          recorded under its account's login, in an annotation's "login" and a dashboard version's
          "createdBy", where the admin user and --token-file tokens record the admin user)
  [ROLES] https://grafana.com/docs/grafana/latest/administration/roles-and-permissions/#organization-roles
          (a coarse model of the basic roles for service account tokens: None may do nothing, Viewer may
          read, Editor may also write folders, dashboards, alert rules and annotations, Admin may also
          write data sources and manage service accounts; 403 otherwise)
State lives in memory and is lost on exit. Python 3 standard library only (PyYAML for --provisioning-dir).

    python3 standin.py --listen 0.0.0.0:3000 --admin-user admin --admin-password-file FILE \
        [--token-file FILE] [--seed-file FILE] [--provisioning-dir DIR]

--token-file: service account tokens, one per line (must start with glsa_; '#' starts a comment).
These stand for tokens of an Admin service account valid in every organization. Tokens created
through POST /api/serviceaccounts/:id/tokens belong to their account's organization and role.
--provisioning-dir: Grafana's paths.provisioning. The data source files (datasources/*.yaml) and the
dashboard provider files (dashboards/*.yaml, type file) there are read at start and on
POST /api/admin/provisioning/<kind>/reload (this needs PyYAML; nothing else does).
--seed-file: JSON {"folders": [...], "dashboards": [...], "datasources": [...]} loaded into org 1 at
start, to stand for objects provisioned from files (dashboards with "provisioned": true,
datasources with "readOnly": true).
"""

import argparse
import base64
import copy
import datetime
import glob
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

VERSION = '12.1.0'
UID_RE = re.compile(r'^[a-zA-Z0-9_-]{1,40}$')
MAX_FOLDER_DEPTH = 4
# Contract "Data sources": the returned type is the canonical plugin id.
CANONICAL_TYPES = {
    'postgres': 'grafana-postgresql-datasource',
}
DURATION_RE = re.compile(r'^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$')


class APIError(Exception):
    def __init__(self, code, body=None):
        super().__init__(code)
        self.code = code
        self.body = body


def now_ms():
    return int(time.time() * 1000)


def iso_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def slugify(title):
    return re.sub(r'[^a-z0-9]+', '-', (title or '').lower()).strip('-')


def parse_duration(value):
    """Seconds of a Prometheus-style duration ("5m", "1h30m", "90s"); None when invalid."""
    match = DURATION_RE.match(str(value or ''))
    if not value or not match:
        return None
    d, h, m, s = (int(x or 0) for x in match.groups())
    return ((d * 24 + h) * 60 + m) * 60 + s


def format_duration(seconds):
    out = ''
    for unit, size in (('h', 3600), ('m', 60), ('s', 1)):
        if seconds >= size:
            out += '%d%s' % (seconds // size, unit)
            seconds %= size
    return out or '0s'


class Org:
    """All objects of one organization (contract "General": org per request)."""

    def __init__(self, org_id):
        self.org_id = org_id
        self.folders = {}       # uid -> folder record
        self.dashboards = {}    # uid -> {"dashboard", "folderUid", "provisioned", "versions", ...}
        self.datasources = {}   # uid -> datasource record (with "_secure" values)
        self.rules = {}         # uid -> rule
        self.groups = {}        # (folderUid, title) -> interval seconds
        self.annotations = []
        self.service_accounts = {}  # id -> service account record (Grafana docs [SA])
        self.sa_tokens = {}         # token id -> {"id", "name", "saId", "created", "expires", "hash", ...}


class State:
    def __init__(self):
        self.lock = threading.RLock()
        self.orgs = {}
        self.next_id = 1
        self.token_hashes = {}  # sha256 of a service account token -> (org id, token id)

    def org(self, org_id):
        if org_id not in self.orgs:
            self.orgs[org_id] = Org(org_id)
        return self.orgs[org_id]

    def new_id(self):
        self.next_id += 1
        return self.next_id


STATE = State()
CONFIG = {'admin_user': 'admin', 'admin_password': None, 'tokens': set(), 'provisioning_dir': None}


def new_uid():
    return 'a%013x' % (time.time_ns() & 0xFFFFFFFFFFFFF) + '%04d' % STATE.new_id()


# ---------------------------------------------------------------- folders (contract "Folders")

def folder_parents(org, uid):
    """Ancestors of folder `uid`, root first."""
    chain = []
    parent = org.folders[uid].get('parentUid')
    while parent:
        chain.insert(0, org.folders[parent])
        parent = org.folders[parent].get('parentUid')
    return chain


def folder_json(org, uid):
    f = org.folders[uid]
    out = {k: v for k, v in f.items() if not k.startswith('_')}
    out['url'] = '/dashboards/f/%s/%s' % (uid, slugify(f['title']))
    out['parents'] = [{'uid': p['uid'], 'title': p['title'], 'id': p['id'],
                       'url': '/dashboards/f/%s/%s' % (p['uid'], slugify(p['title']))}
                      for p in folder_parents(org, uid)]
    if not out.get('parentUid'):
        out.pop('parentUid', None)
    return out


def subtree_height(org, uid):
    children = [f['uid'] for f in org.folders.values() if f.get('parentUid') == uid]
    return 1 + max([subtree_height(org, c) for c in children] or [0])


def descendants(org, uid):
    out = []
    for f in list(org.folders.values()):
        if f.get('parentUid') == uid:
            out.append(f['uid'])
            out.extend(descendants(org, f['uid']))
    return out


def check_depth(org, parent_uid, height=1):
    # Contract "Folders": 400 for nesting deeper than 4 (messageId folder.maximum-depth-reached).
    depth = (len(folder_parents(org, parent_uid)) + 1) if parent_uid else 0
    if depth + height > MAX_FOLDER_DEPTH:
        raise APIError(400, {'message': 'Maximum nested folder depth reached',
                             'messageId': 'folder.maximum-depth-reached', 'status': 'bad-request'})


def folder_not_found():
    # Contract "Folders": 404 {"status":"not-found","message":"folder not found"}.
    return APIError(404, {'status': 'not-found', 'message': 'folder not found'})


def list_folders(org, q):
    # Contract "Folders": GET /api/folders lists immediate children of parentUid; paginated.
    parent = q.get('parentUid', [''])[0]
    if parent and parent not in org.folders:
        raise folder_not_found()
    limit = int(q.get('limit', ['1000'])[0] or 1000)
    page = max(int(q.get('page', ['1'])[0] or 1), 1)
    items = sorted((f for f in org.folders.values() if (f.get('parentUid') or '') == parent),
                   key=lambda f: f['title'].lower())
    items = items[(page - 1) * limit:page * limit]
    return [dict({'id': f['id'], 'uid': f['uid'], 'title': f['title']},
                 **({'parentUid': f['parentUid']} if f.get('parentUid') else {})) for f in items]


def get_folder(org, uid):
    # Contract "Folders": GET /api/folders/:uid -> 200 or 404.
    if uid not in org.folders:
        raise folder_not_found()
    return folder_json(org, uid)


def create_folder(org, body):
    # Contract "Folders": POST /api/folders -> 200; 409 same uid; 400 empty title, bad uid, depth.
    title = (body.get('title') or '').strip()
    if not title:
        raise APIError(400, {'message': 'folder title cannot be empty', 'status': 'bad-request'})
    uid = body.get('uid') or new_uid()
    if not UID_RE.match(uid):
        raise APIError(400, {'message': 'uid contains illegal characters', 'status': 'bad-request'})
    if uid in org.folders or uid in org.dashboards:
        raise APIError(409, {'message': 'a folder with the same uid already exists', 'status': 'uid-exists'})
    parent = body.get('parentUid') or ''
    if parent and parent not in org.folders:
        raise folder_not_found()
    check_depth(org, parent)
    stamp = iso_now()
    org.folders[uid] = {'id': STATE.new_id(), 'uid': uid, 'title': title, 'parentUid': parent,
                        'version': 1, 'created': stamp, 'updated': stamp, 'hasAcl': False,
                        'canSave': True, 'canEdit': True, 'canAdmin': True, 'canDelete': True}
    return folder_json(org, uid)


def update_folder(org, uid, body):
    # Contract "Folders": PUT /api/folders/:uid {"title","version","overwrite"} -> 200; 412 version-mismatch.
    f = org.folders.get(uid)
    if f is None:
        raise folder_not_found()
    if not body.get('overwrite') and body.get('version') != f['version']:
        raise APIError(412, {'status': 'version-mismatch',
                             'message': 'The folder has been changed by someone else'})
    title = (body.get('title') or '').strip()
    if not title:
        raise APIError(400, {'message': 'folder title cannot be empty', 'status': 'bad-request'})
    f['title'] = title
    f['version'] += 1
    f['updated'] = iso_now()
    return folder_json(org, uid)


def move_folder(org, uid, body):
    # Contract "Folders": POST /api/folders/:uid/move {"parentUid"} -> 200 (same depth limit).
    f = org.folders.get(uid)
    if f is None:
        raise folder_not_found()
    parent = body.get('parentUid') or ''
    if parent and parent not in org.folders:
        raise folder_not_found()
    if parent == uid or parent in descendants(org, uid):
        raise APIError(400, {'message': 'cannot move a folder into itself or one of its subfolders',
                             'status': 'bad-request'})
    check_depth(org, parent, subtree_height(org, uid))
    f['parentUid'] = parent
    f['version'] += 1
    f['updated'] = iso_now()
    return folder_json(org, uid)


def delete_folder(org, uid, q):
    # Contract "Folders": DELETE deletes dashboards and subfolders; 400 with alert rules unless forceDeleteRules.
    f = org.folders.get(uid)
    if f is None:
        raise folder_not_found()
    tree = [uid] + descendants(org, uid)
    rules = [r for r in org.rules.values() if r['folderUID'] in tree]
    if rules and q.get('forceDeleteRules', ['false'])[0].lower() != 'true':
        raise APIError(400, {'message': 'folder cannot be deleted: folder contains alert rules',
                             'status': 'bad-request'})
    for r in rules:
        del org.rules[r['uid']]
    for key in [k for k in org.groups if k[0] in tree]:
        del org.groups[key]
    for d in [d for d in org.dashboards.values() if d['folderUid'] in tree]:
        del org.dashboards[d['dashboard']['uid']]
    for u in tree:
        del org.folders[u]
    return {'message': 'Folder deleted', 'title': f['title'], 'id': f['id']}


# ---------------------------------------------------------------- dashboards (contract "Dashboards")

def dashboard_not_found():
    # Contract "Dashboards": 404 {"message":"Dashboard not found","status":"not-found"}.
    return APIError(404, {'message': 'Dashboard not found', 'status': 'not-found'})


def dashboard_url(dash):
    return '/d/%s/%s' % (dash['uid'], slugify(dash.get('title')))


def get_dashboard(org, uid):
    # Contract "Dashboards": GET /api/dashboards/uid/:uid -> {"dashboard", "meta"}.
    rec = org.dashboards.get(uid)
    if rec is None:
        raise dashboard_not_found()
    dash = copy.deepcopy(rec['dashboard'])
    folder = org.folders.get(rec['folderUid'])
    meta = {'type': 'db', 'version': dash['version'], 'folderUid': rec['folderUid'],
            'folderId': folder['id'] if folder else 0,
            'folderTitle': folder['title'] if folder else 'Dashboards',
            'folderUrl': folder_json(org, folder['uid'])['url'] if folder else '',
            'provisioned': rec['provisioned'], 'provisionedExternalId': rec.get('externalId', ''),
            'url': dashboard_url(dash), 'slug': slugify(dash.get('title')), 'created': rec['created'],
            'updated': rec['updated'], 'canSave': True, 'canEdit': True, 'canAdmin': True,
            'canStar': True, 'canDelete': True}
    return {'dashboard': dash, 'meta': meta}


def save_dashboard(org, body, provisioned=False, login='admin'):
    # Contract "Dashboards": POST /api/dashboards/db with optimistic locking on dashboard.version.
    # createdBy of the version: the caller's login (a service account's for its tokens, Grafana docs [SA]).
    dash = copy.deepcopy(body.get('dashboard') or {})
    if not isinstance(dash, dict) or not (dash.get('title') or '').strip():
        raise APIError(400, {'message': 'Dashboard title cannot be empty', 'status': 'empty-name'})
    uid = dash.get('uid') or new_uid()
    if len(uid) > 40:
        raise APIError(400, {'message': 'uid too long, max 40 characters', 'status': 'bad-request'})
    if not UID_RE.match(uid):
        raise APIError(400, {'message': 'uid contains illegal characters', 'status': 'bad-request'})
    # "Omitting folderUid on an update MOVES the dashboard to the root". The deprecated folderId is
    # still resolved to its folder when folderUid is empty (Grafana's dashboard service does so).
    folder_uid = body.get('folderUid') or ''
    if not folder_uid and body.get('folderId'):
        folder_uid = next((f['uid'] for f in org.folders.values() if f['id'] == body['folderId']), None)
    if folder_uid is None or (folder_uid and folder_uid not in org.folders):
        raise APIError(400, {'message': 'folder not found', 'status': 'not-found'})
    overwrite = bool(body.get('overwrite'))
    existing = org.dashboards.get(uid)
    if existing is not None:
        if existing['provisioned'] and not provisioned and not existing.get('allowUiUpdates'):
            raise APIError(400, {'message': 'Cannot save provisioned dashboard', 'status': 'bad-request'})
        # "400 same uid exists (when creating with an id mismatch)".
        if dash.get('id') and dash['id'] != existing['dashboard']['id']:
            raise APIError(400, {'message': 'A dashboard with the same uid already exists',
                                 'status': 'uid-exists'})
        # "412 version-mismatch ... if dashboard.version differs from the stored version and overwrite is false".
        if dash.get('version') != existing['dashboard']['version'] and not overwrite:
            raise APIError(412, {'status': 'version-mismatch',
                                 'message': 'The dashboard has been changed by someone else'})
    elif dash.get('id'):
        raise dashboard_not_found()
    # "412 name-exists: same title in the same folder".
    for other in org.dashboards.values():
        if (other['dashboard']['uid'] != uid and other['folderUid'] == folder_uid
                and other['dashboard']['title'].lower() == dash['title'].lower()):
            if overwrite:
                del org.dashboards[other['dashboard']['uid']]
                break
            raise APIError(412, {'status': 'name-exists',
                                 'message': 'A dashboard with the same name in the folder already exists'})
    stamp = iso_now()
    if existing is None:
        dash['id'] = STATE.new_id()
        dash['version'] = 1
        existing = {'created': stamp, 'versions': [], 'provisioned': provisioned}
        org.dashboards[uid] = existing
    else:
        dash['id'] = existing['dashboard']['id']
        dash['version'] = existing['dashboard']['version'] + 1
    dash['uid'] = uid
    existing.update(dashboard=dash, folderUid=folder_uid, updated=stamp)
    existing['versions'].append({'id': STATE.new_id(), 'dashboardId': dash['id'], 'uid': uid,
                                 'version': dash['version'], 'created': stamp, 'createdBy': login,
                                 'message': body.get('message') or ''})
    return {'id': dash['id'], 'uid': uid, 'url': dashboard_url(dash), 'status': 'success',
            'version': dash['version'], 'slug': slugify(dash['title']), 'folderUid': folder_uid}


def delete_dashboard(org, uid):
    # Contract "Dashboards": DELETE -> 200 {"title","message","id"}; 404; 400 provisioned.
    rec = org.dashboards.get(uid)
    if rec is None:
        raise dashboard_not_found()
    if rec['provisioned']:
        raise APIError(400, {'message': 'Dashboard cannot be deleted because it was provisioned',
                             'status': 'bad-request'})
    del org.dashboards[uid]
    title = rec['dashboard']['title']
    return {'title': title, 'message': 'Dashboard %s deleted' % title, 'id': rec['dashboard']['id']}


def dashboard_versions(org, uid):
    # Contract "Dashboards" (useful): GET /api/dashboards/uid/:uid/versions.
    rec = org.dashboards.get(uid)
    if rec is None:
        raise dashboard_not_found()
    return list(reversed(rec['versions']))


def search(org, q):
    # Contract "Dashboards" (useful): GET /api/search?type=dash-db&query=&folderUIDs=.
    kind = q.get('type', [''])[0]
    text = q.get('query', [''])[0].lower()
    folders = set(q.get('folderUIDs', []))
    out = []
    if kind in ('', 'dash-folder'):
        for f in org.folders.values():
            if text in f['title'].lower() and (not folders or (f.get('parentUid') or '') in folders):
                out.append({'id': f['id'], 'uid': f['uid'], 'title': f['title'], 'type': 'dash-folder',
                            'url': folder_json(org, f['uid'])['url'], 'tags': []})
    if kind in ('', 'dash-db'):
        for rec in org.dashboards.values():
            d = rec['dashboard']
            if text in d['title'].lower() and (not folders or rec['folderUid'] in folders):
                folder = org.folders.get(rec['folderUid'])
                out.append({'id': d['id'], 'uid': d['uid'], 'title': d['title'], 'type': 'dash-db',
                            'url': dashboard_url(d), 'tags': d.get('tags') or [],
                            'folderUid': rec['folderUid'], 'folderTitle': folder['title'] if folder else ''})
    return sorted(out, key=lambda x: x['title'].lower())


# ---------------------------------------------------------------- data sources (contract "Data sources")

DS_FIELDS = ('name', 'type', 'access', 'url', 'user', 'database', 'basicAuth', 'basicAuthUser',
             'withCredentials', 'isDefault', 'jsonData')


def ds_not_found():
    # Contract "Data sources": 404 {"message":"Data source not found"}.
    return APIError(404, {'message': 'Data source not found'})


def ds_json(ds):
    # Contract "Data sources": secrets never returned, only secureJsonFields flags.
    out = {k: copy.deepcopy(v) for k, v in ds.items() if not k.startswith('_')}
    out['secureJsonFields'] = {k: True for k in ds['_secure']}
    return out


def find_ds(org, uid=None, name=None):
    for ds in org.datasources.values():
        if (uid is not None and ds['uid'] == uid) or (name is not None and ds['name'] == name):
            return ds
    return None


def create_datasource(org, body, read_only=False):
    # Contract "Data sources": POST /api/datasources -> 200; 409 same name or uid.
    name = (body.get('name') or '').strip()
    if not name or not body.get('type'):
        raise APIError(400, {'message': 'Required fields name and type are missing'})
    uid = body.get('uid') or new_uid()
    if not UID_RE.match(uid):
        raise APIError(400, {'message': 'Failed to add datasource: invalid uid'})
    if find_ds(org, name=name) or find_ds(org, uid=uid):
        raise APIError(409, {'message': 'data source with the same name or uid already exists'})
    ds = {'id': STATE.new_id(), 'uid': uid, 'orgId': org.org_id, 'name': name,
          'type': CANONICAL_TYPES.get(body['type'], body['type']),
          'access': body.get('access') or 'proxy', 'url': body.get('url') or '', 'user': body.get('user') or '',
          'database': body.get('database') or '', 'basicAuth': bool(body.get('basicAuth')),
          'basicAuthUser': body.get('basicAuthUser') or '', 'withCredentials': bool(body.get('withCredentials')),
          'isDefault': bool(body.get('isDefault')), 'jsonData': copy.deepcopy(body.get('jsonData') or {}),
          'version': 1, 'readOnly': read_only,
          '_secure': {k: v for k, v in (body.get('secureJsonData') or {}).items() if v is not None}}
    org.datasources[uid] = ds
    return {'message': 'Datasource added', 'id': ds['id'], 'name': name, 'datasource': ds_json(ds)}


def update_datasource(org, uid, body):
    # Contract "Data sources": PUT /api/datasources/uid/:uid, whole object plus version.
    ds = org.datasources.get(uid)
    if ds is None:
        raise ds_not_found()
    if ds['readOnly']:
        raise APIError(403, {'message': 'Cannot update read-only data source'})
    name = (body.get('name') or '').strip()
    if not name or not body.get('type'):
        raise APIError(400, {'message': 'Required fields name and type are missing'})
    clash = find_ds(org, name=name)
    if clash is not None and clash['uid'] != uid:
        raise APIError(409, {'message': 'Data source with the same name already exists'})
    version = body.get('version') or 0
    if version and version < ds['version']:
        # "409 name clash or stale version".
        raise APIError(409, {'message': 'Datasource has already been updated by someone else. '
                                        'Please reload and try again'})
    for key in DS_FIELDS:
        default = {} if key == 'jsonData' else (False if key in ('basicAuth', 'withCredentials', 'isDefault') else '')
        ds[key] = copy.deepcopy(body.get(key)) if body.get(key) is not None else default
    ds['name'] = name
    ds['type'] = CANONICAL_TYPES.get(ds['type'], ds['type'])
    ds['access'] = ds['access'] or 'proxy'
    # "Omitted secureJsonData keys keep their stored values."
    for key, value in (body.get('secureJsonData') or {}).items():
        if value is None:
            ds['_secure'].pop(key, None)
        else:
            ds['_secure'][key] = value
    ds['version'] = (version or ds['version']) + 1
    return {'message': 'Datasource updated', 'id': ds['id'], 'name': name, 'datasource': ds_json(ds)}


def delete_datasource(org, uid):
    # Contract "Data sources": DELETE /api/datasources/uid/:uid -> 200.
    ds = org.datasources.get(uid)
    if ds is None:
        raise ds_not_found()
    if ds['readOnly']:
        raise APIError(403, {'message': 'Cannot delete read-only data source'})
    del org.datasources[uid]
    return {'message': 'Data source deleted', 'id': ds['id']}


def datasource_health(org, uid):
    # Contract "Data sources": GET .../health -> 200 {"status":"OK"} or 400 when the test fails.
    # The stand-in has no plugins: its test is a TCP connection to the host and port of the url.
    ds = org.datasources.get(uid)
    if ds is None:
        raise ds_not_found()
    target = ds['url'] if '://' in ds['url'] else '//' + ds['url']
    parts = urlsplit(target)
    default_port = {'https': 443, 'http': 80}.get(parts.scheme, 5432)
    try:
        with socket.create_connection((parts.hostname or 'localhost', parts.port or default_port), timeout=3):
            pass
    except (OSError, ValueError) as e:
        raise APIError(400, {'status': 'ERROR', 'message': 'connection to %s failed: %s' % (ds['url'], e)})
    return {'status': 'OK', 'message': 'Data source is working'}


# ---------------------------------------------------------------- alert rules (contract "Alert rules")

RULE_REQUIRED = ('folderUID', 'ruleGroup', 'title', 'condition', 'data', 'noDataState', 'execErrState', 'for')
RULE_OPTIONAL = ('labels', 'annotations', 'isPaused')


def validation(message):
    # Contract "General": alerting validation errors are {"message": "..."}.
    return APIError(400, {'message': message})


def validate_rule(org, rule):
    # Contract "Alert rules": required fields and enums; 400 on validation errors.
    missing = [k for k in RULE_REQUIRED if rule.get(k) in (None, '', [])]
    if missing:
        raise validation('invalid alert rule: missing %s' % ', '.join(missing))
    if rule['folderUID'] not in org.folders:
        raise validation('invalid alert rule: folder %s does not exist' % rule['folderUID'])
    if rule['noDataState'] not in ('Alerting', 'NoData', 'OK'):
        raise validation('invalid alert rule: noDataState must be one of Alerting, NoData, OK')
    if rule['execErrState'] not in ('OK', 'Alerting', 'Error'):
        raise validation('invalid alert rule: execErrState must be one of OK, Alerting, Error')
    if parse_duration(rule['for']) is None:
        raise validation('invalid alert rule: for %r is not a duration' % rule['for'])
    refs = []
    for query in rule['data']:
        if not isinstance(query, dict) or not query.get('refId') or not query.get('datasourceUid') \
                or not isinstance(query.get('relativeTimeRange'), dict) or not isinstance(query.get('model'), dict):
            raise validation('invalid alert rule: each data item needs refId, datasourceUid, '
                             'relativeTimeRange and model')
        refs.append(query['refId'])
    if rule['condition'] not in refs:
        raise validation('invalid alert rule: condition %s is not the refId of a query' % rule['condition'])


def rule_json(rule):
    return copy.deepcopy(rule)


def store_rule(org, body, provenance, uid=None, existing=None):
    rule = {k: copy.deepcopy(body.get(k)) for k in RULE_REQUIRED + RULE_OPTIONAL}
    rule['orgID'] = org.org_id
    rule['uid'] = uid or body.get('uid') or new_uid()
    validate_rule(org, rule)
    if not UID_RE.match(rule['uid']):
        raise validation('invalid alert rule: uid contains illegal characters')
    # "400 validation (also duplicate uid or title in the group)".
    for other in org.rules.values():
        if (other['uid'] != rule['uid'] and other['folderUID'] == rule['folderUID']
                and other['ruleGroup'] == rule['ruleGroup'] and other['title'] == rule['title']):
            raise validation('invalid alert rule: a rule with title %r already exists in the group' % rule['title'])
    rule['for'] = format_duration(parse_duration(rule['for']))
    rule['labels'] = rule['labels'] or {}
    rule['annotations'] = rule['annotations'] or {}
    rule['isPaused'] = bool(rule['isPaused'])
    rule['id'] = existing['id'] if existing else STATE.new_id()
    rule['updated'] = iso_now()
    rule['provenance'] = provenance
    org.rules[rule['uid']] = rule
    # "Group interval belongs to the group ... Default 60 s".
    org.groups.setdefault((rule['folderUID'], rule['ruleGroup']), 60)
    return rule


def check_provenance(stored, provenance):
    # Contract "Alert rules": changing an object from provisioned to editable is refused (403).
    if stored and not provenance:
        raise APIError(403, {'message': "cannot change provenance from '%s' to '': send the "
                                        "X-Disable-Provenance header consistently" % stored})


def prune_groups(org):
    used = set((r['folderUID'], r['ruleGroup']) for r in org.rules.values())
    for key in [k for k in org.groups if k not in used]:
        del org.groups[key]


def get_group(org, folder_uid, group):
    # Contract "Alert rules": GET /api/v1/provisioning/folder/:folderUid/rule-groups/:group.
    if (folder_uid, group) not in org.groups:
        raise APIError(404, {'message': 'rule group not found'})
    rules = sorted((r for r in org.rules.values() if r['folderUID'] == folder_uid and r['ruleGroup'] == group),
                   key=lambda r: r['id'])
    return {'title': group, 'folderUid': folder_uid, 'interval': org.groups[(folder_uid, group)],
            'rules': [rule_json(r) for r in rules]}


def put_group(org, folder_uid, group, body, provenance):
    # Contract "Alert rules": the PUT replaces the whole group; interval a multiple of 10 s.
    if folder_uid not in org.folders:
        raise validation('invalid rule group: folder %s does not exist' % folder_uid)
    interval = body.get('interval')
    if not isinstance(interval, int) or isinstance(interval, bool) or interval <= 0 or interval % 10:
        raise validation('invalid rule group: interval must be a positive multiple of 10 seconds')
    current = [r for r in org.rules.values() if r['folderUID'] == folder_uid and r['ruleGroup'] == group]
    for r in current:
        check_provenance(r['provenance'], provenance)
    wanted = []
    for rule in body.get('rules') or []:
        rule = dict(rule, folderUID=folder_uid, ruleGroup=group)
        existing = org.rules.get(rule.get('uid') or '')
        if existing is not None:
            check_provenance(existing['provenance'], provenance)
        wanted.append((rule, existing))
    snapshot = (copy.deepcopy(org.rules), dict(org.groups))
    try:
        keep = set()
        for rule, existing in wanted:
            keep.add(store_rule(org, rule, provenance, existing=existing)['uid'])
        for r in current:
            if r['uid'] not in keep:
                del org.rules[r['uid']]
        org.groups[(folder_uid, group)] = interval
        prune_groups(org)
    except APIError:
        org.rules, org.groups = snapshot
        raise
    return get_group(org, folder_uid, group)


# ---------------------------------------------------------------- annotations (contract "Annotations")

def create_annotation(org, body, login='admin'):
    # Contract "Annotations": POST /api/annotations -> 200 {"message":"Annotation added","id"}.
    text = body.get('text')
    if not text:
        raise APIError(400, {'message': 'Failed to save annotation: text is required'})
    stamp = body.get('time') or now_ms()
    ann = {'id': STATE.new_id(), 'alertId': 0, 'dashboardId': 0, 'dashboardUID': body.get('dashboardUID') or '',
           'panelId': body.get('panelId') or 0, 'time': stamp, 'timeEnd': body.get('timeEnd') or stamp,
           'text': text, 'tags': list(body.get('tags') or []), 'created': now_ms(), 'updated': now_ms(),
           'login': login, 'email': '', 'avatarUrl': '', 'data': {}}
    if ann['dashboardUID'] and ann['dashboardUID'] in org.dashboards:
        ann['dashboardId'] = org.dashboards[ann['dashboardUID']]['dashboard']['id']
    org.annotations.append(ann)
    return {'message': 'Annotation added', 'id': ann['id']}


def find_annotations(org, q):
    # Contract "Annotations": GET /api/annotations?from=&to=&dashboardUID=&tags=&limit= (tags ANDed).
    start = int(q['from'][0]) if q.get('from') else None
    end = int(q['to'][0]) if q.get('to') else None
    dash = q.get('dashboardUID', [None])[0]
    tags = set(q.get('tags', []))
    limit = int(q.get('limit', ['100'])[0])
    out = []
    for ann in org.annotations:
        if start is not None and ann['timeEnd'] < start:
            continue
        if end is not None and ann['time'] > end:
            continue
        if dash is not None and ann['dashboardUID'] != dash:
            continue
        if not tags.issubset(ann['tags']):
            continue
        out.append(copy.deepcopy(ann))
    return sorted(out, key=lambda a: (-a['time'], -a['id']))[:limit]


# ---------------------------------------------------------------- service accounts (Grafana docs [SA])
# Not on the contract page: every behaviour in this section follows Grafana's HTTP API docs
# ("Service account API", [SA] in the module docstring) and the error ids Grafana declares.

SA_ROLES = ('None', 'Viewer', 'Editor', 'Admin')


def sa_error(status, message_id, message):
    # Grafana docs [SA]: errutil errors answer {"message", "messageId", "statusCode"}.
    return APIError(status, {'message': message, 'messageId': message_id, 'statusCode': status})


def sa_id_of(raw):
    # Grafana docs [SA]: a non-numeric id -> 400 "Service Account ID is invalid".
    try:
        return int(raw)
    except ValueError:
        raise APIError(400, {'message': 'Service Account ID is invalid'})


def sa_get(org, raw_id):
    sa = org.service_accounts.get(sa_id_of(raw_id))
    if sa is None:
        raise sa_error(404, 'serviceaccounts.ErrNotFound', 'service account not found')
    return sa


def sa_login(org, name):
    return 'sa-%d-%s' % (org.org_id, slugify(name))


def sa_tokens(org, sa):
    return [t for t in org.sa_tokens.values() if t['saId'] == sa['id']]


def sa_json(org, sa, search=False):
    # Grafana docs [SA]: the search answer has "tokens" (a count); GET/POST/PATCH answer the profile.
    out = {'id': sa['id'], 'uid': sa['uid'], 'name': sa['name'], 'login': sa['login'], 'orgId': org.org_id,
           'isDisabled': sa['isDisabled'], 'role': sa['role'], 'avatarUrl': '/avatar/%s' % sa['uid'],
           'tokens': len(sa_tokens(org, sa))}
    if not search:
        out.update(createdAt=sa['createdAt'], updatedAt=sa['updatedAt'], teams=[])
    return out


def sa_check_role(role, caller_role):
    # Grafana docs [SA]: 400 for an unknown role; 403 for a role above the caller's own.
    if role not in SA_ROLES:
        raise sa_error(400, 'serviceaccounts.ErrInvalidRoleSpecified', 'invalid role specified')
    if SA_ROLES.index(role) > SA_ROLES.index(caller_role):
        raise sa_error(403, 'serviceaccounts.ErrRoleForbidden', "can not assign a role higher than user's role")


def sa_name_taken(org, name, except_id=None):
    login = sa_login(org, name)
    return any(sa['id'] != except_id and (sa['login'] == login or sa['name'].lower() == name.lower())
               for sa in org.service_accounts.values())


def search_service_accounts(org, q):
    # Grafana docs [SA]: GET /api/serviceaccounts/search?perpage=&page=&query= -> 200
    # {"totalCount", "serviceAccounts", "page", "perPage"}; query matches part of the name or login.
    text = q.get('query', [''])[0].lower()
    per_page = int(q.get('perpage', ['1000'])[0] or 1000)
    per_page = per_page if per_page > 0 else 1000
    page = max(int(q.get('page', ['1'])[0] or 1), 1)
    found = sorted((sa for sa in org.service_accounts.values()
                    if text in sa['name'].lower() or text in sa['login'].lower()), key=lambda sa: sa['name'].lower())
    return {'totalCount': len(found), 'page': page, 'perPage': per_page,
            'serviceAccounts': [sa_json(org, sa, search=True) for sa in found[(page - 1) * per_page:page * per_page]]}


def create_service_account(org, body, caller_role):
    # Grafana docs [SA]: POST /api/serviceaccounts {"name", "role", "isDisabled"} -> 201 profile;
    # 400 serviceaccounts.ErrAlreadyExists for a name (or the login derived from it) in use.
    name = body.get('name')
    if not isinstance(name, str) or not name.strip():
        raise APIError(400, {'message': 'bad request data'})
    name = name.strip()
    role = body.get('role') or 'Viewer'
    sa_check_role(role, caller_role)
    if sa_name_taken(org, name):
        raise sa_error(400, 'serviceaccounts.ErrAlreadyExists', 'service account already exists')
    stamp = iso_now()
    sa = {'id': STATE.new_id(), 'uid': new_uid(), 'name': name, 'login': sa_login(org, name), 'role': role,
          'isDisabled': bool(body.get('isDisabled')), 'createdAt': stamp, 'updatedAt': stamp}
    org.service_accounts[sa['id']] = sa
    return sa_json(org, sa)


def update_service_account(org, raw_id, body, caller_role):
    # Grafana docs [SA]: PATCH /api/serviceaccounts/:id {"name"?, "role"?, "isDisabled"?} -> 200
    # {"message": "Service account updated", "id", "name", "serviceaccount": profile}.
    sa = sa_get(org, raw_id)
    if body.get('role') is not None:
        sa_check_role(body['role'], caller_role)
    if body.get('name') is not None:
        name = str(body['name']).strip()
        if not name:
            raise APIError(400, {'message': 'bad request data'})
        if sa_name_taken(org, name, except_id=sa['id']):
            raise sa_error(400, 'serviceaccounts.ErrAlreadyExists', 'service account already exists')
        sa.update(name=name, login=sa_login(org, name))
    if body.get('role') is not None:
        sa['role'] = body['role']
    if body.get('isDisabled') is not None:
        sa['isDisabled'] = bool(body['isDisabled'])
    sa['updatedAt'] = iso_now()
    return {'message': 'Service account updated', 'id': sa['id'], 'name': sa['name'],
            'serviceaccount': sa_json(org, sa)}


def delete_service_account(org, raw_id):
    # Grafana docs [SA]: DELETE /api/serviceaccounts/:id -> 200 {"message": "Service account deleted"};
    # its tokens go with it.
    sa = sa_get(org, raw_id)
    for token in sa_tokens(org, sa):
        drop_token(org, token)
    del org.service_accounts[sa['id']]
    return {'message': 'Service account deleted'}


def token_json(token):
    # Grafana docs [SA]: GET .../tokens -> [{"id", "name", "created", "lastUsedAt", "expiration",
    # "secondsUntilExpiration", "hasExpired", "isRevoked"}]; the key is never shown again.
    now = time.time()
    expires = token['expires']
    fmt = '%Y-%m-%dT%H:%M:%SZ'
    return {'id': token['id'], 'name': token['name'], 'created': token['created'],
            'lastUsedAt': token['lastUsedAt'], 'isRevoked': False,
            'expiration': time.strftime(fmt, time.gmtime(expires)) if expires else None,
            'secondsUntilExpiration': max(expires - now, 0) if expires else 0,
            'hasExpired': bool(expires and expires <= now)}


def list_tokens(org, raw_id):
    sa = sa_get(org, raw_id)
    return [token_json(t) for t in sorted(sa_tokens(org, sa), key=lambda t: t['id'])]


def new_key():
    # Grafana's service account tokens: glsa_<32 letters and digits>_<8 hex digits of a checksum>.
    alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
    secret = ''.join(secrets.choice(alphabet) for _ in range(32))
    return 'glsa_%s_%08x' % (secret, int(hashlib.sha256(secret.encode()).hexdigest()[:8], 16))


def hash_key(key):
    return hashlib.sha256(key.encode()).hexdigest()


def create_token(org, raw_id, body):
    # Grafana docs [SA]: POST /api/serviceaccounts/:id/tokens {"name", "secondsToLive"} -> 200
    # {"id", "name", "key"} (the only time the key is shown); secondsToLive 0 or absent: never expires.
    # Token names are unique in the organization: 400 serviceaccounts.ErrTokenAlreadyExists.
    sa = sa_get(org, raw_id)
    name = body.get('name')
    if not isinstance(name, str) or not name.strip():
        raise APIError(400, {'message': 'bad request data'})
    ttl = body.get('secondsToLive') or 0
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
        raise sa_error(400, 'serviceaccounts.ErrInvalidInput', 'invalid SecondsToLive value')
    if any(t['name'] == name for t in org.sa_tokens.values()):
        raise sa_error(400, 'serviceaccounts.ErrTokenAlreadyExists',
                       'service account token with given name already exists in the organization')
    key = new_key()
    token = {'id': STATE.new_id(), 'name': name, 'saId': sa['id'], 'created': iso_now(), 'lastUsedAt': None,
             'expires': (time.time() + ttl) if ttl else None, 'hash': hash_key(key)}
    org.sa_tokens[token['id']] = token
    STATE.token_hashes[token['hash']] = (org.org_id, token['id'])
    return {'id': token['id'], 'name': name, 'key': key}


def drop_token(org, token):
    del org.sa_tokens[token['id']]
    STATE.token_hashes.pop(token['hash'], None)


def delete_token(org, raw_id, raw_token_id):
    # Grafana docs [SA]: DELETE /api/serviceaccounts/:id/tokens/:tokenId -> 200
    # {"message": "Service account token deleted"}; 404 serviceaccounts.ErrTokenNotFound.
    sa = sa_get(org, raw_id)
    try:
        token_id = int(raw_token_id)
    except ValueError:
        raise sa_error(400, 'serviceaccounts.ErrInvalidTokenId', 'invalid service account token id specified')
    token = org.sa_tokens.get(token_id)
    if token is None or token['saId'] != sa['id']:
        raise sa_error(404, 'serviceaccounts.ErrTokenNotFound', 'service account token not found')
    drop_token(org, token)
    return {'message': 'Service account token deleted'}


def token_caller(key):
    """The service account a token authenticates (Grafana docs [AUTH]): (org id, account) or 401."""
    found = STATE.token_hashes.get(hash_key(key))
    if found is None:
        raise APIError(401, {'message': 'Invalid API key', 'messageId': 'api-key.invalid', 'statusCode': 401})
    org = STATE.org(found[0])
    token = org.sa_tokens[found[1]]
    if token['expires'] and token['expires'] <= time.time():
        raise APIError(401, {'message': 'Expired API key', 'messageId': 'api-key.expired', 'statusCode': 401})
    sa = org.service_accounts[token['saId']]
    if sa['isDisabled']:
        raise APIError(401, {'message': 'Unauthorized', 'messageId': 'identity.disabled', 'statusCode': 401})
    token['lastUsedAt'] = iso_now()
    return org.org_id, sa


def role_needed(method, path):
    """The least basic role a request needs (Grafana docs [ROLES], coarse)."""
    if path.startswith('/api/serviceaccounts'):
        return 'Admin'
    if method in ('GET', 'HEAD'):
        return 'Viewer'
    if path.startswith('/api/datasources'):
        return 'Admin'
    return 'Editor'


# ---------------------------------------------------------------- HTTP plumbing

ROUTES = []


def route(method, pattern, admin=False, body=None):
    """body: {field: JSON type} of the request body. Grafana decodes bodies with Go's encoding/json
    (pkg/web/binding.go: json.NewDecoder(...).Decode, no DisallowUnknownFields): an unknown field is
    ignored, a field of the wrong type is 400 "bad request data"; so does the stand-in."""
    def wrap(func):
        ROUTES.append((method, re.compile('^' + pattern + '$'), func, admin, body or {}))
        return func
    return wrap


# The JSON types of the request fields, as Go's decoder sees them (null is the zero value: accepted).
_JSON_TYPES = {'string': str, 'bool': bool, 'object': dict, 'array': list, 'integer': int}


def check_body(body, fields):
    if not fields:
        return
    if not isinstance(body, dict):
        raise APIError(400, {'message': 'bad request data'})
    for name, kind in fields.items():
        value = body.get(name)
        if value is None:
            continue
        wanted = _JSON_TYPES[kind]
        # Go decodes only an integer literal into an int field (1000.0 is refused), and never true/false
        ok = isinstance(value, wanted) and not (isinstance(value, bool) and kind == 'integer')
        if not ok:
            raise APIError(400, {'message': 'bad request data',
                                 'error': 'json: cannot unmarshal %s into field %s of type %s'
                                          % (type(value).__name__, name, kind)})


DATASOURCE_FIELDS = {'uid': 'string', 'name': 'string', 'type': 'string', 'access': 'string', 'url': 'string',
                     'user': 'string', 'database': 'string', 'basicAuth': 'bool', 'basicAuthUser': 'string',
                     'withCredentials': 'bool', 'isDefault': 'bool', 'jsonData': 'object',
                     'secureJsonData': 'object'}
RULE_FIELDS = {'uid': 'string', 'folderUID': 'string', 'ruleGroup': 'string', 'title': 'string',
               'condition': 'string', 'data': 'array', 'noDataState': 'string', 'execErrState': 'string',
               'for': 'string', 'annotations': 'object', 'labels': 'object', 'isPaused': 'bool',
               'orgID': 'integer'}


@route('GET', '/api/folders')
def _(h, org, q, body):
    return 200, list_folders(org, q)


@route('POST', '/api/folders', body={'uid': 'string', 'title': 'string', 'parentUid': 'string', 'description': 'string'})
def _(h, org, q, body):
    return 200, create_folder(org, body)


@route('GET', '/api/folders/(?P<uid>[^/]+)')
def _(h, org, q, body, uid):
    return 200, get_folder(org, uid)


@route('PUT', '/api/folders/(?P<uid>[^/]+)', body={'title': 'string', 'version': 'integer', 'overwrite': 'bool', 'description': 'string'})
def _(h, org, q, body, uid):
    return 200, update_folder(org, uid, body)


@route('POST', '/api/folders/(?P<uid>[^/]+)/move', body={'parentUid': 'string'})
def _(h, org, q, body, uid):
    return 200, move_folder(org, uid, body)


@route('DELETE', '/api/folders/(?P<uid>[^/]+)')
def _(h, org, q, body, uid):
    return 200, delete_folder(org, uid, q)


@route('GET', '/api/dashboards/uid/(?P<uid>[^/]+)')
def _(h, org, q, body, uid):
    return 200, get_dashboard(org, uid)


@route('GET', '/api/dashboards/uid/(?P<uid>[^/]+)/versions')
def _(h, org, q, body, uid):
    return 200, dashboard_versions(org, uid)


@route('POST', '/api/dashboards/db', body={'dashboard': 'object', 'folderUid': 'string', 'folderId': 'integer', 'message': 'string', 'overwrite': 'bool'})
def _(h, org, q, body):
    return 200, save_dashboard(org, body, login=h.caller_login)


@route('DELETE', '/api/dashboards/uid/(?P<uid>[^/]+)')
def _(h, org, q, body, uid):
    return 200, delete_dashboard(org, uid)


@route('GET', '/api/search')
def _(h, org, q, body):
    return 200, search(org, q)


@route('GET', '/api/datasources/uid/(?P<uid>[^/]+)')
def _(h, org, q, body, uid):
    ds = org.datasources.get(uid)
    if ds is None:
        raise ds_not_found()
    return 200, ds_json(ds)


@route('GET', '/api/datasources/name/(?P<name>[^/]+)')
def _(h, org, q, body, name):
    ds = find_ds(org, name=name)
    if ds is None:
        raise ds_not_found()
    return 200, ds_json(ds)


@route('POST', '/api/datasources', body=DATASOURCE_FIELDS)
def _(h, org, q, body):
    return 200, create_datasource(org, body)


@route('PUT', '/api/datasources/uid/(?P<uid>[^/]+)', body=dict(DATASOURCE_FIELDS, version='integer'))
def _(h, org, q, body, uid):
    return 200, update_datasource(org, uid, body)


@route('DELETE', '/api/datasources/uid/(?P<uid>[^/]+)')
def _(h, org, q, body, uid):
    return 200, delete_datasource(org, uid)


@route('GET', '/api/datasources/uid/(?P<uid>[^/]+)/health')
def _(h, org, q, body, uid):
    return 200, datasource_health(org, uid)


@route('GET', '/api/v1/provisioning/alert-rules')
def _(h, org, q, body):
    return 200, [rule_json(r) for r in sorted(org.rules.values(), key=lambda r: r['id'])]


@route('GET', '/api/v1/provisioning/alert-rules/(?P<uid>[^/]+)')
def _(h, org, q, body, uid):
    # Contract "General"/"Alert rules": 404 from alert-rule GET has an EMPTY body.
    if uid not in org.rules:
        return 404, None
    return 200, rule_json(org.rules[uid])


@route('POST', '/api/v1/provisioning/alert-rules', body=RULE_FIELDS)
def _(h, org, q, body):
    # Contract "Alert rules": POST -> 201; duplicate uid -> 400.
    if body.get('uid') and body['uid'] in org.rules:
        raise validation('invalid alert rule: a rule with uid %s already exists' % body['uid'])
    return 201, rule_json(store_rule(org, body, h.provenance()))


@route('PUT', '/api/v1/provisioning/alert-rules/(?P<uid>[^/]+)', body=RULE_FIELDS)
def _(h, org, q, body, uid):
    # Contract "Alert rules": PUT -> 200; consistent provenance.
    existing = org.rules.get(uid)
    if existing is None:
        return 404, None
    provenance = h.provenance()
    check_provenance(existing['provenance'], provenance)
    rule = rule_json(store_rule(org, body, provenance, uid=uid, existing=existing))
    prune_groups(org)
    return 200, rule


@route('DELETE', '/api/v1/provisioning/alert-rules/(?P<uid>[^/]+)')
def _(h, org, q, body, uid):
    # Contract "Alert rules": DELETE -> 204.
    existing = org.rules.get(uid)
    if existing is not None:
        check_provenance(existing['provenance'], h.provenance())
        del org.rules[uid]
        prune_groups(org)
    return 204, None


@route('GET', '/api/v1/provisioning/folder/(?P<folder>[^/]+)/rule-groups/(?P<group>[^/]+)')
def _(h, org, q, body, folder, group):
    return 200, get_group(org, folder, group)


@route('PUT', '/api/v1/provisioning/folder/(?P<folder>[^/]+)/rule-groups/(?P<group>[^/]+)', body={'title': 'string', 'folderUid': 'string', 'interval': 'integer', 'rules': 'array'})
def _(h, org, q, body, folder, group):
    return 200, put_group(org, folder, group, body, h.provenance())


@route('POST', '/api/annotations', body={'time': 'integer', 'timeEnd': 'integer', 'text': 'string', 'tags': 'array', 'dashboardUID': 'string', 'panelId': 'integer'})
def _(h, org, q, body):
    return 200, create_annotation(org, body, login=h.caller_login)


@route('GET', '/api/annotations')
def _(h, org, q, body):
    return 200, find_annotations(org, q)


@route('GET', '/api/serviceaccounts/search')
def _(h, org, q, body):
    return 200, search_service_accounts(org, q)


@route('POST', '/api/serviceaccounts', body={'name': 'string', 'role': 'string', 'isDisabled': 'bool'})
def _(h, org, q, body):
    return 201, create_service_account(org, body, h.caller_role)


@route('GET', '/api/serviceaccounts/(?P<sa_id>[^/]+)')
def _(h, org, q, body, sa_id):
    return 200, sa_json(org, sa_get(org, sa_id))


@route('PATCH', '/api/serviceaccounts/(?P<sa_id>[^/]+)', body={'name': 'string', 'role': 'string', 'isDisabled': 'bool'})
def _(h, org, q, body, sa_id):
    return 200, update_service_account(org, sa_id, body, h.caller_role)


@route('DELETE', '/api/serviceaccounts/(?P<sa_id>[^/]+)')
def _(h, org, q, body, sa_id):
    return 200, delete_service_account(org, sa_id)


@route('GET', '/api/serviceaccounts/(?P<sa_id>[^/]+)/tokens')
def _(h, org, q, body, sa_id):
    return 200, list_tokens(org, sa_id)


@route('POST', '/api/serviceaccounts/(?P<sa_id>[^/]+)/tokens', body={'name': 'string', 'secondsToLive': 'integer'})
def _(h, org, q, body, sa_id):
    return 200, create_token(org, sa_id, body)


@route('DELETE', '/api/serviceaccounts/(?P<sa_id>[^/]+)/tokens/(?P<token_id>[^/]+)')
def _(h, org, q, body, sa_id, token_id):
    return 200, delete_token(org, sa_id, token_id)


@route('GET', '/api/frontend/settings')
def _(h, org, q, body):
    # Not on the contract page: Grafana's boot data for its frontend (pkg/api/frontendsettings.go), of
    # which only the part tools read is kept: buildInfo (the version community.grafana reads) and the
    # data sources by name with their uid and type.
    sources = {ds['name']: {'id': ds['id'], 'uid': ds['uid'], 'type': ds['type'], 'name': ds['name'],
                            'isDefault': ds['isDefault'], 'meta': {'id': ds['type']}}
               for ds in org.datasources.values()}
    default = next((ds['name'] for ds in org.datasources.values() if ds['isDefault']), '')
    return 200, {'buildInfo': {'version': VERSION, 'commit': 'standin', 'edition': 'Open Source',
                               'env': 'production'},
                 'datasources': sources, 'defaultDatasource': default, 'appSubUrl': '', 'appUrl': ''}


@route('POST', '/api/admin/provisioning/(?P<kind>datasources|dashboards|alerting)/reload', admin=True)
def _(h, org, q, body, kind):
    # Contract "Provisioning files and reloads". With --provisioning-dir the stand-in reads the data
    # source and dashboard provider files there, as Grafana reads <paths.provisioning>; alerting files
    # are not read.
    if CONFIG['provisioning_dir'] and kind in PROVISIONERS:
        try:
            PROVISIONERS[kind](CONFIG['provisioning_dir'])
        except (OSError, ValueError, KeyError, TypeError, APIError) as e:
            # Grafana answers 500 and logs the failing file
            raise APIError(500, {'message': 'Failed to reload %s config: %s' % (kind, e)})
    return 200, {'message': '%s config reloaded' % kind.capitalize()}


# --- Provisioning files ---------------------------------------------------------------------------
# Grafana's provisioning (docs: administration/provisioning): <dir>/datasources/*.yaml and
# <dir>/dashboards/*.yaml, read at start and on POST /api/admin/provisioning/<kind>/reload.
_ENV_RE = re.compile(r'\$\$|\$\{(\w+)\}|\$(\w+)')


def expand_env(value):
    """Grafana expands $VAR and ${VAR} in provisioning files from its environment; $$ is a literal $."""
    if isinstance(value, str):
        return _ENV_RE.sub(lambda m: '$' if m.group(0) == '$$' else os.environ.get(m.group(1) or m.group(2), ''),
                           value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


def provisioning_files(directory):
    import yaml  # only with --provisioning-dir: the stand-in itself needs nothing outside the standard library
    for path in sorted(glob.glob(os.path.join(directory, '*.yaml')) + glob.glob(os.path.join(directory, '*.yml'))):
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
        if not isinstance(doc, dict):
            raise ValueError('%s: not a mapping' % path)
        yield path, expand_env(doc)


def provision_datasources(root):
    """Upsert each file's data sources by name in their org (read-only unless editable: true) and delete
    those listed under deleteDatasources."""
    with STATE.lock:
        for path, doc in provisioning_files(os.path.join(root, 'datasources')):
            for item in doc.get('deleteDatasources') or []:
                org = STATE.org(int(item.get('orgId') or 1))
                ds = find_ds(org, name=item.get('name'))
                if ds is not None:
                    del org.datasources[ds['uid']]
            for item in doc.get('datasources') or []:
                org = STATE.org(int(item.get('orgId') or 1))
                ds = find_ds(org, name=item.get('name')) or (find_ds(org, uid=item['uid']) if item.get('uid') else None)
                if ds is None:
                    create_datasource(org, item, read_only=not item.get('editable'))
                    continue
                ds['readOnly'] = False
                update_datasource(org, ds['uid'], dict(item, version=0))
                ds['readOnly'] = not item.get('editable')


def provision_dashboards(root):
    """Each file provider: its folder (created when missing), each *.json under options.path saved as
    provisioned (over a dashboard of the same uid saved through the API, as Grafana does) when its content
    changed, and, unless disableDeletion, the dashboards it provisioned whose file is gone deleted."""
    with STATE.lock:
        for path, doc in provisioning_files(os.path.join(root, 'dashboards')):
            for provider in doc.get('providers') or []:
                if (provider.get('type') or 'file') != 'file':
                    continue
                org = STATE.org(int(provider.get('orgId') or 1))
                name = provider.get('name') or path
                base = (provider.get('options') or {}).get('path')
                if not base:
                    raise ValueError('%s: provider %s has no options.path' % (path, name))
                folder_uid = provider.get('folderUid') or ''
                if folder_uid and folder_uid not in org.folders:
                    create_folder(org, {'uid': folder_uid, 'title': provider.get('folder') or folder_uid})
                elif not folder_uid and provider.get('folder'):
                    found = [f['uid'] for f in org.folders.values() if f['title'] == provider['folder']]
                    folder_uid = found[0] if found else create_folder(org, {'title': provider['folder']})['uid']
                seen = set()
                for file in sorted(glob.glob(os.path.join(base, '**', '*.json'), recursive=True)):
                    with open(file, 'rb') as f:
                        raw = f.read()
                    dash = json.loads(raw)
                    uid = dash.get('uid') or new_uid()
                    seen.add(uid)
                    checksum = hashlib.sha256(raw).hexdigest()
                    rec = org.dashboards.get(uid)
                    if rec is not None and rec.get('provider') == name and rec.get('checksum') == checksum:
                        continue
                    if rec is not None:
                        rec['provisioned'] = True   # taken over: saved below with overwrite
                    dash = dict(dash, uid=uid, id=None)
                    save_dashboard(org, {'dashboard': dash, 'folderUid': folder_uid, 'overwrite': True},
                                   provisioned=True)
                    org.dashboards[uid].update(provider=name, checksum=checksum, provisioned=True,
                                               allowUiUpdates=bool(provider.get('allowUiUpdates')),
                                               externalId=os.path.relpath(file, base))
                if not provider.get('disableDeletion'):
                    for uid in [u for u, r in org.dashboards.items() if r.get('provider') == name and u not in seen]:
                        del org.dashboards[uid]


PROVISIONERS = {'datasources': provision_datasources, 'dashboards': provision_dashboards}


class Handler(BaseHTTPRequestHandler):
    server_version = 'grafana-standin/%s' % VERSION
    protocol_version = 'HTTP/1.1'

    def log_message(self, fmt, *args):  # never logs headers (credentials)
        if not self.server.quiet:
            sys.stderr.write('%s %s\n' % (self.log_date_time_string(), fmt % args))

    def provenance(self):
        # Contract "Alert rules": X-Disable-Provenance (presence, any value) keeps objects editable.
        return '' if self.headers.get('X-Disable-Provenance') is not None else 'api'

    def send(self, code, payload):
        data = b'' if payload is None else json.dumps(payload).encode()
        self.send_response(code)
        if payload is not None:
            self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if data and self.command != 'HEAD':
            self.wfile.write(data)

    def authenticate(self):
        """Return (kind, role, org id or None) of the caller; raise 401 otherwise.

        Contract "General": Auth (basic auth, or Bearer glsa_ tokens). The admin user and --token-file
        tokens act as Admin in every organization; a token created through the API authenticates its
        service account, in its organization, with its role (Grafana docs [AUTH]).
        """
        header = self.headers.get('Authorization') or ''
        self.caller_login = CONFIG['admin_user']
        if header.startswith('Bearer '):
            token = header[7:].strip()
            if token.startswith('glsa_') and any(hmac.compare_digest(token, t) for t in CONFIG['tokens']):
                return 'token', 'Admin', None
            if token.startswith('glsa_'):
                with STATE.lock:
                    org_id, sa = token_caller(token)
                self.caller_login = sa['login']
                return 'service-account', sa['role'], org_id
            raise APIError(401, {'message': 'Invalid API key', 'messageId': 'auth.invalid-api-key'})
        if header.startswith('Basic '):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(':')
            except (ValueError, UnicodeDecodeError):
                user, password = '', ''
            if user == CONFIG['admin_user'] and CONFIG['admin_password'] is not None \
                    and hmac.compare_digest(password, CONFIG['admin_password']):
                return 'basic', 'Admin', None
            raise APIError(401, {'message': 'Invalid username or password', 'messageId': 'password-auth.failed'})
        raise APIError(401, {'message': 'Unauthorized', 'messageId': 'auth.unauthorized'})

    def handle_any(self):
        parts = urlsplit(self.path)
        path = parts.path.rstrip('/') or '/'
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(length) if length else b''
        try:
            if path == '/api/health' and self.command == 'GET':
                # Contract "Health": no auth, 200 {"database":"ok","version","commit"}.
                return self.send(200, {'database': 'ok', 'version': VERSION, 'commit': 'standin'})
            for method, pattern, func, admin, fields in ROUTES:
                match = pattern.match(path)
                if match and method == self.command:
                    break
            else:
                methods = [r[0] for r in ROUTES if r[1].match(path)]
                self.authenticate()
                if methods:
                    raise APIError(405, {'message': 'Method not allowed'})
                raise APIError(404, {'message': 'Not found'})
            kind, self.caller_role, token_org = self.authenticate()
            if admin and kind != 'basic':
                # Contract "General": admin endpoints accept basic auth only.
                raise APIError(403, {'message': 'Permission denied'})
            try:
                body = json.loads(raw.decode() or 'null') if raw else {}
            except ValueError:
                raise APIError(400, {'message': 'bad request data'})
            if body is None:
                body = {}
            check_body(body, fields)
            # Contract "General": X-Grafana-Org-Id selects the org per request, without side effects.
            try:
                org_id = int(self.headers.get('X-Grafana-Org-Id') or token_org or 1)
            except ValueError:
                raise APIError(400, {'message': 'invalid X-Grafana-Org-Id header'})
            if token_org is not None and org_id != token_org:
                # Grafana docs [AUTH]: a service account token belongs to one organization.
                raise APIError(401, {'message': 'API key does not belong to the requested organization',
                                     'messageId': 'api-key.organization-mismatch', 'statusCode': 401})
            needed = role_needed(self.command, path)
            if SA_ROLES.index(self.caller_role) < SA_ROLES.index(needed):
                # Grafana docs [ROLES]: the caller's basic role is below what the request needs.
                raise APIError(403, {'title': 'Access denied', 'message': "You'll need additional permissions to "
                                     'perform this action. Permissions needed: the %s role' % needed})
            args = {k: unquote(v) for k, v in match.groupdict().items()}
            with STATE.lock:
                code, payload = func(self, STATE.org(org_id), query, body, **args)
            self.send(code, payload)
        except APIError as e:
            self.send(e.code, e.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any


def load_seed(path):
    """Objects that stand for file-provisioned ones (org 1)."""
    with open(path) as f:
        seed = json.load(f)
    org = STATE.org(1)
    for folder in seed.get('folders', []):
        create_folder(org, folder)
    for ds in seed.get('datasources', []):
        create_datasource(org, ds, read_only=bool(ds.get('readOnly')))
    for dash in seed.get('dashboards', []):
        save_dashboard(org, dash, provisioned=bool(dash.get('provisioned')))
        if dash.get('provisioned'):
            org.dashboards[dash['dashboard']['uid']]['externalId'] = dash.get('externalId', 'seed.json')


def read_secret(path):
    with open(path) as f:
        return f.read().strip()


def read_tokens(path):
    tokens = set()
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if not line.startswith('glsa_'):
                raise SystemExit('%s: tokens must start with glsa_ (service account tokens)' % path)
            tokens.add(line)
    return tokens


def make_server(listen, quiet=False):
    host, _, port = listen.rpartition(':')
    server = ThreadingHTTPServer((host.strip('[]') or '0.0.0.0', int(port)), Handler)
    server.daemon_threads = True
    server.quiet = quiet
    return server


def main(argv=None):
    parser = argparse.ArgumentParser(description='Grafana HTTP API stand-in (tests only)')
    parser.add_argument('--listen', default='127.0.0.1:3000', help='HOST:PORT (port 0 picks a free one)')
    parser.add_argument('--admin-user', default='admin')
    parser.add_argument('--admin-password-file', required=True, help='file holding the admin password')
    parser.add_argument('--token-file', help='service account tokens (glsa_...), one per line')
    parser.add_argument('--seed-file', help='JSON objects standing for file-provisioned ones')
    parser.add_argument('--provisioning-dir', help="Grafana's paths.provisioning: datasources/ and dashboards/ "
                        'files read at start and on reload (needs PyYAML)')
    parser.add_argument('--quiet', action='store_true', help='do not log requests')
    args = parser.parse_args(argv)
    CONFIG['admin_user'] = args.admin_user
    CONFIG['admin_password'] = read_secret(args.admin_password_file)
    if not CONFIG['admin_password']:
        raise SystemExit('%s is empty: the admin password is required' % args.admin_password_file)
    if args.token_file:
        CONFIG['tokens'] = read_tokens(args.token_file)
    if args.seed_file:
        load_seed(args.seed_file)
    if args.provisioning_dir:
        CONFIG['provisioning_dir'] = args.provisioning_dir
        for provision in PROVISIONERS.values():
            provision(args.provisioning_dir)
    server = make_server(args.listen, args.quiet)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print('grafana stand-in listening on %s:%d' % server.server_address[:2], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
