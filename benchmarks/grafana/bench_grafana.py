#!/usr/bin/env python3
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Grafana modules: this collection vs community.grafana and grafana.grafana, through ansible-playbook.

Each implementation delivers the same objects (benchmarks/grafana/vars.yml: one folder, the three
dashboards rendered by playbooks/render.yml, the two datasources of the grafana role) to a fresh
Grafana API stand-in (tests/grafana_standin/standin.py), on localhost with connection local:

  timing     per repetition and implementation, a fresh stand-in: the first delivery, then the same
             playbook again on the unchanged state (a day-2 run). Wall time of ansible-playbook and
             the time of each task (ansible.posix.profile_tasks). Best of --repeat after --warmup;
             the implementations take turns inside each repetition.
  observe    once per implementation: the first delivery against the bare stand-in; check mode +
             diff on an empty Grafana; check mode + diff after one dashboard panel title and one
             datasource field changed (nothing may be written); a second run without overwrite.

Every call goes through a small forwarding proxy owned by this script, which counts the requests. It
also answers GET /api/frontend/settings (every Grafana serves it; the stand-in does not, because the
contract page does not list it) with the stand-in's /api/health version, because
community.grafana.grafana_dashboard reads the Grafana version there before anything else. The bare
stand-in run records what happens without it. Nothing else is added or changed.

Run from the repository root (one invocation at a time; it starts one ansible-playbook at a time):

  .venv/bin/python -m venv .cache/bench-grafana-venv
  .cache/bench-grafana-venv/bin/pip install requests==2.34.2     # grafana.grafana's modules import it
  .venv/bin/python benchmarks/grafana/bench_grafana.py --repeat 10 --warmup 1 --json .cache/bench-grafana.json

The module interpreter (--python, default .cache/bench-grafana-venv/bin/python) runs every
implementation's modules, so they all run under the same Python.
"""

import argparse
import copy
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STANDIN = REPO / 'tests' / 'grafana_standin' / 'standin.py'
BIN = Path(sys.executable).parent
PLAYBOOK = BIN / 'ansible-playbook'
GALAXY = BIN / 'ansible-galaxy'
DEFAULT_PYTHON = REPO / '.cache' / 'bench-grafana-venv' / 'bin' / 'python'

IMPLS = {
    'ours': {'collection': 'aiplatform.observability', 'playbook': 'deliver_ours.yml'},
    'community': {'collection': 'community.grafana', 'playbook': 'deliver_community.yml'},
    'grafana': {'collection': 'grafana.grafana', 'playbook': 'deliver_grafana.yml'},
}
TASKS = ('Folder', 'Dashboards', 'Datasources')
ITEMS = {'Folder': 1, 'Dashboards': 3, 'Datasources': 2}
FOLDER_UID = 'aiplatform'
DASHBOARD_UIDS = ('platform-overview', 'learning-engine', 'mcp-activity')
DATASOURCES = (('aiplatform-prometheus', 'Prometheus'), ('aiplatform-postgres', 'ai_platform'))
EDITED_SUFFIX = ' (edited)'


# ------------------------------------------------------------------ the stand-in and the proxy

class StandIn(object):
    """A fresh stand-in process on a free port, with one service account token."""

    def __init__(self, workdir, token):
        self.dir = Path(tempfile.mkdtemp(prefix='standin-', dir=workdir))
        (self.dir / 'password').write_text('bench-admin-' + uuid.uuid4().hex[:8] + '\n')
        (self.dir / 'tokens').write_text(token + '\n')
        self.token = token
        self.proc = subprocess.Popen(
            [sys.executable, str(STANDIN), '--listen', '127.0.0.1:0', '--admin-password-file',
             str(self.dir / 'password'), '--token-file', str(self.dir / 'tokens'), '--quiet'],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r'listening on [\d.]+:(\d+)', line)
        if not match:
            self.stop()
            raise SystemExit('the stand-in did not start: %r' % line)
        self.url = 'http://127.0.0.1:%s' % match.group(1)

    def call(self, path):
        req = urllib.request.Request(self.url + path, headers={'Authorization': 'Bearer ' + self.token})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b'null')
        except urllib.error.HTTPError as e:
            return e.code, None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Proxy(object):
    """Forwards every request to the stand-in and records (method, path, status, answered_here)."""

    def __init__(self, target, settings_shim):
        self.target = target.rstrip('/')
        self.log = []
        proxy = self
        version = None
        if settings_shim:
            with urllib.request.urlopen(self.target + '/api/health', timeout=10) as resp:
                version = json.loads(resp.read())['version']

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def forward(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length else None
                path = urlsplit(self.path).path
                if version and self.command == 'GET' and path == '/api/frontend/settings':
                    proxy.log.append((self.command, self.path, 200, True))
                    return self.answer(200, json.dumps({'buildInfo': {'version': version}}).encode())
                req = urllib.request.Request(proxy.target + self.path, data=body, method=self.command)
                for key in ('Authorization', 'Content-Type', 'Accept', 'X-Grafana-Org-Id', 'User-Agent'):
                    if self.headers.get(key) is not None:
                        req.add_header(key, self.headers[key])
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        status, raw = resp.status, resp.read()
                except urllib.error.HTTPError as e:
                    status, raw = e.code, e.read()
                proxy.log.append((self.command, self.path, status, False))
                self.answer(status, raw)

            def answer(self, status, raw):
                self.send_response(status)
                if raw:
                    self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = forward

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self):
        log, self.log = self.log, []
        return log

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def snapshot(standin):
    """What is in the stand-in: folder, dashboards (folder, version, history length, title of the first
    panel), datasources (version, jsonData, secret flags), and every dashboard found by search."""
    state = {'folder': None, 'dashboards': {}, 'datasources': {}, 'search': []}
    status, folder = standin.call('/api/folders/%s' % FOLDER_UID)
    if status == 200:
        state['folder'] = {'title': folder.get('title'), 'version': folder.get('version')}
    for uid in DASHBOARD_UIDS:
        status, dash = standin.call('/api/dashboards/uid/%s' % uid)
        if status != 200:
            continue
        _, versions = standin.call('/api/dashboards/uid/%s/versions' % uid)
        panels = dash['dashboard'].get('panels') or [{}]
        state['dashboards'][uid] = {'folderUid': dash['meta'].get('folderUid'), 'version': dash['meta'].get('version'),
                                    'history': len(versions or []), 'first_panel_title': panels[0].get('title')}
    for uid, name in DATASOURCES:
        status, ds = standin.call('/api/datasources/uid/%s' % uid)
        if status != 200:
            status, ds = standin.call('/api/datasources/name/%s' % name)
        if status == 200:
            state['datasources'][uid] = {'uid': ds.get('uid'), 'version': ds.get('version'), 'type': ds.get('type'),
                                         'isDefault': ds.get('isDefault'), 'jsonData': ds.get('jsonData'),
                                         'secureJsonFields': sorted(ds.get('secureJsonFields') or {})}
    _, found = standin.call('/api/search?type=dash-db')
    state['search'] = sorted((d['uid'], d.get('folderUid', '')) for d in (found or []))
    return state


# ------------------------------------------------------------------ ansible-playbook runs

def diff_paths(before, after, path='', out=None, limit=8):
    """Dotted paths where two JSON values differ (at most `limit`)."""
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            sub = '%s.%s' % (path, key) if path else str(key)
            if key not in before:
                out.append(sub + ' (only after)')
            elif key not in after:
                out.append(sub + ' (only before)')
            else:
                diff_paths(before[key], after[key], sub, out, limit)
            if len(out) >= limit:
                break
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after)):
            diff_paths(b, a, '%s[%d]' % (path, i), out, limit)
    elif before != after:
        out.append(path or '(whole value)')
    return out


def describe_diff(diff):
    if diff is None:
        return None
    if isinstance(diff, list):
        return [describe_diff(d) for d in diff]
    if isinstance(diff, dict) and ('before' in diff or 'after' in diff):
        before, after = diff.get('before'), diff.get('after')
        return {'paths': diff_paths(before, after), 'bytes': len(json.dumps(diff, default=str))}
    return {'raw_keys': sorted(diff) if isinstance(diff, dict) else type(diff).__name__}


def item_summary(result):
    # A result hidden by no_log keeps `changed` but not `failed`; Ansible adds `exception` to failures only.
    out = {'changed': bool(result.get('changed')), 'failed': bool(result.get('failed') or 'exception' in result),
           'skipped': bool(result.get('skipped'))}
    if result.get('censored'):
        out['censored'] = True
    for key in ('msg', 'message'):
        if result.get(key):
            out['msg'] = str(result[key])[:400]
            break
    if result.get('exception'):
        out['exception'] = str(result['exception']).strip().splitlines()[-1][:300]
    if result.get('module_stderr'):
        out['module_stderr'] = str(result['module_stderr']).strip().splitlines()[-1][:300]
    if result.get('warnings'):
        out['warnings'] = [str(w)[:300] for w in result['warnings']]
    if 'diff' in result:
        out['diff'] = describe_diff(result['diff'])
    return out


def parse_output(stdout):
    """The ansible.posix.json document and the profile_tasks recap (task name -> seconds)."""
    start = stdout.find('\n{')
    start = 0 if stdout.startswith('{') else start + 1
    doc, end = json.JSONDecoder().raw_decode(stdout[start:])
    recap = {}
    for line in stdout[start + end:].splitlines():
        match = re.match(r'^(.+?) -+ (\d+\.\d+)s$', line.strip())
        if match:
            recap[match.group(1)] = float(match.group(2))
    return doc, recap


def iso_seconds(stamp):
    return time.mktime(time.strptime(stamp[:19], '%Y-%m-%dT%H:%M:%S')) + float('0' + stamp[19:].rstrip('Z'))


class Runner(object):
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.token = 'glsa_' + uuid.uuid4().hex
        self.password = 'bench-' + uuid.uuid4().hex
        self.log_dir = Path(args.log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK='ansible.posix.json',
                        ANSIBLE_CALLBACKS_ENABLED='ansible.posix.profile_tasks', PROFILE_TASKS_SORT_ORDER='none',
                        PROFILE_TASKS_TASK_OUTPUT_LIMIT='all', ANSIBLE_NOCOLOR='1', ANSIBLE_LOCALHOST_WARNING='0',
                        ANSIBLE_INVENTORY_UNPARSED_WARNING='0', GRAFANA_BENCH_TOKEN=self.token,
                        GRAFANA_BENCH_DS_PASSWORD=self.password)

    def standin(self):
        return StandIn(self.workdir, self.token)

    def run(self, impl, proxy, dashboard_dir, name, check=False, diff=False, extra=None):
        extra_vars = {'bench_grafana_url': proxy.url, 'bench_dashboard_dir': str(dashboard_dir),
                      'bench_python': self.args.python}
        extra_vars.update(extra or {})
        vars_file = Path(self.workdir) / 'extra-vars.json'
        vars_file.write_text(json.dumps(extra_vars))
        cmd = [str(PLAYBOOK), '-i', 'localhost,', '-e', '@%s' % vars_file, str(HERE / IMPLS[impl]['playbook'])]
        cmd += ['--check'] * check + ['--diff'] * diff
        proxy.take()
        # CPU time of ansible-playbook and every process it waited for (workers, modules): on a shared
        # machine it moves much less with other load than the wall time does.
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=str(REPO), env=self.env, capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        requests = proxy.take()
        (self.log_dir / ('%s-%s.stdout' % (impl, name))).write_text(proc.stdout)
        (self.log_dir / ('%s-%s.stderr' % (impl, name))).write_text(proc.stderr)
        out = {'wall_s': round(wall, 3), 'cpu_s': round(cpu, 3), 'rc': proc.returncode,
               'token_in_output': self.token in proc.stdout + proc.stderr,
               'password_in_output': self.password in proc.stdout + proc.stderr,
               'requests': len(requests), 'writes': sum(1 for r in requests if r[0] not in ('GET', 'HEAD')),
               'settings_answered_by_proxy': sum(1 for r in requests if r[3]),
               'calls': Counter('%s %s %d' % (m, re.sub(r'\?.*', '?...', p), s) for m, p, s, _ in requests),
               'tasks': {}}
        try:
            doc, recap = parse_output(proc.stdout)
        except ValueError:
            out['error'] = 'no JSON result: %s' % (proc.stderr.strip()[-800:] or proc.stdout[-800:])
            return out
        for task in doc['plays'][0]['tasks']:
            tname = task['task']['name']
            host = task['hosts'].get('localhost', {})
            items = [item_summary(r) for r in host.get('results', [])] or [item_summary(host)]
            duration = task['task'].get('duration', {})
            json_s = None
            if duration.get('start') and duration.get('end'):
                json_s = round(iso_seconds(duration['end']) - iso_seconds(duration['start']), 3)
            out['tasks'][tname] = {'seconds': recap.get(tname, json_s), 'json_seconds': json_s,
                                   'changed': sum(i['changed'] for i in items), 'failed': sum(i['failed'] for i in items),
                                   'skipped': sum(i['skipped'] for i in items), 'items': items}
        return out


# ------------------------------------------------------------------ scenarios

def timing(runner, impls, dashboards):
    reps = []
    for rep in range(runner.args.warmup + runner.args.repeat):
        order = impls[rep % len(impls):] + impls[:rep % len(impls)]
        row = {}
        for impl in order:
            with runner.standin() as standin, Proxy(standin.url, settings_shim=True) as proxy:
                first = runner.run(impl, proxy, dashboards, 'rep%d-first' % rep)
                after_first = snapshot(standin)
                second = runner.run(impl, proxy, dashboards, 'rep%d-second' % rep)
                after_second = snapshot(standin)
            row[impl] = {'first': first, 'second': second, 'after_first': after_first, 'after_second': after_second}
            print('rep %d %-9s first %.2fs second %.2fs' % (rep, impl, first['wall_s'], second['wall_s']),
                  file=sys.stderr, flush=True)
        reps.append({'warmup': rep < runner.args.warmup, 'order': order, 'runs': row})
    return reps


def observe(runner, impl, dashboards, edited):
    obs = {}
    with runner.standin() as standin, Proxy(standin.url, settings_shim=False) as proxy:
        obs['bare_standin_first'] = runner.run(impl, proxy, dashboards, 'bare-first')
        obs['bare_standin_state'] = snapshot(standin)
    with runner.standin() as standin, Proxy(standin.url, settings_shim=True) as proxy:
        obs['check_empty'] = runner.run(impl, proxy, dashboards, 'check-empty', check=True, diff=True,
                                        extra={'bench_no_log': False})
        obs['check_empty_state'] = snapshot(standin)
    with runner.standin() as standin, Proxy(standin.url, settings_shim=True) as proxy:
        runner.run(impl, proxy, dashboards, 'converge')
        before = snapshot(standin)
        obs['check_changed'] = runner.run(impl, proxy, edited, 'check-changed', check=True, diff=True,
                                          extra={'bench_prometheus_time_interval': '30s', 'bench_no_log': False})
        after = snapshot(standin)
        obs['check_changed_wrote_nothing'] = before == after
        obs['check_changed_state_before'] = before
        obs['check_changed_state_after'] = after
        obs['apply_changed'] = runner.run(impl, proxy, edited, 'apply-changed', diff=True,
                                          extra={'bench_prometheus_time_interval': '30s', 'bench_no_log': False})
        obs['apply_changed_state'] = snapshot(standin)
    if impl != 'ours':
        with runner.standin() as standin, Proxy(standin.url, settings_shim=True) as proxy:
            runner.run(impl, proxy, dashboards, 'no-overwrite-first', extra={'bench_overwrite': False})
            obs['no_overwrite_second'] = runner.run(impl, proxy, dashboards, 'no-overwrite-second',
                                                    extra={'bench_overwrite': False})
    return obs


# ------------------------------------------------------------------ machine, inputs, report

def machine():
    cpu, logical = '', 0
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name') and not cpu:
                cpu = line.split(':', 1)[1].strip()
            if line.startswith('processor'):
                logical += 1
    import ansible.release
    listing = subprocess.run([str(GALAXY), 'collection', 'list', '--format', 'json'], cwd=str(REPO),
                             capture_output=True, text=True).stdout
    versions = {}
    try:
        for path_entries in json.loads(listing).values():
            for name, info in path_entries.items():
                versions.setdefault(name, info.get('version'))
    except ValueError:
        pass
    return {
        'cpu': cpu, 'logical_cpus': logical, 'cpus_usable': len(os.sched_getaffinity(0)),
        'kernel': platform.release(), 'os': Path('/etc/os-release').read_text().split('PRETTY_NAME="')[1].split('"')[0]
        if Path('/etc/os-release').exists() else platform.platform(),
        'controller_python': platform.python_version(), 'ansible_core': ansible.release.__version__,
        'collections': {k: versions.get(k) for k in ('aiplatform.observability', 'community.grafana', 'grafana.grafana',
                                                     'ansible.posix')},
    }


def interpreter_info(python):
    code = ('import platform, json\ntry:\n import requests; r = requests.__version__\nexcept ImportError:\n r = None\n'
            'print(json.dumps({"python": platform.python_version(), "requests": r}))')
    proc = subprocess.run([python, '-c', code], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else {'error': proc.stderr.strip()}


def render_dashboards(workdir):
    render = Path(workdir) / 'render'
    env = dict(os.environ, ANSIBLE_NOCOLOR='1')
    proc = subprocess.run([str(PLAYBOOK), '-i', 'inventories/lab', 'playbooks/render.yml', '-e', 'render_dir=%s' % render,
                           '--tags', 'grafana'], cwd=str(REPO), env=env, capture_output=True, text=True)
    source = render / '_grafana_api' / 'dashboards'
    if proc.returncode != 0 or not all((source / (u + '.json')).exists() for u in DASHBOARD_UIDS):
        raise SystemExit('playbooks/render.yml failed:\n%s\n%s' % (proc.stdout[-2000:], proc.stderr[-2000:]))
    edited = Path(workdir) / 'edited'
    edited.mkdir()
    for uid in DASHBOARD_UIDS:
        model = json.loads((source / (uid + '.json')).read_text())
        if uid == DASHBOARD_UIDS[0]:
            model = copy.deepcopy(model)
            model['panels'][0]['title'] += EDITED_SUFFIX
        (edited / (uid + '.json')).write_text(json.dumps(model, indent=2, sort_keys=True) + '\n')
    return source, edited


def best(values):
    values = [v for v in values if v is not None]
    return min(values) if values else None


def summarize(reps, impls):
    timed = [r for r in reps if not r['warmup']]
    table = {}
    for impl in impls:
        runs = [r['runs'][impl] for r in timed]
        row = {}
        for phase in ('first', 'second'):
            row[phase + '_wall'] = best(r[phase]['wall_s'] for r in runs)
            row[phase + '_cpu'] = best(r[phase]['cpu_s'] for r in runs)
            row[phase + '_wall_median'] = sorted(r[phase]['wall_s'] for r in runs)[len(runs) // 2]
            row[phase + '_modules'] = best(sum(r[phase]['tasks'].get(t, {}).get('seconds') or 0 for t in TASKS)
                                           for r in runs)
            for t in TASKS:
                row['%s_%s' % (phase, t)] = best(r[phase]['tasks'].get(t, {}).get('seconds') for r in runs)
            last = runs[-1][phase]
            row[phase + '_requests'] = last['requests']
            row[phase + '_writes'] = last['writes']
            row[phase + '_changed'] = {t: '%d/%d' % (last['tasks'].get(t, {}).get('changed', 0), ITEMS[t]) for t in TASKS}
            row[phase + '_failed'] = {t: last['tasks'].get(t, {}).get('failed', 0) for t in TASKS}
            row[phase + '_failed_any_rep'] = sum(sum(r[phase]['tasks'].get(t, {}).get('failed', 0) for t in TASKS)
                                                 for r in runs)
        first, second = runs[-1]['after_first'], runs[-1]['after_second']
        row['second_bumped'] = {
            'dashboards': sum(1 for u in second['dashboards']
                              if second['dashboards'][u]['version'] != first['dashboards'].get(u, {}).get('version')),
            'datasources': sum(1 for u in second['datasources']
                               if second['datasources'][u]['version'] != first['datasources'].get(u, {}).get('version')),
            'folder': int((second['folder'] or {}).get('version') != (first['folder'] or {}).get('version')),
        }
        row['dashboards_in_folder'] = sum(1 for u in second['dashboards']
                                          if second['dashboards'][u]['folderUid'] == FOLDER_UID)
        table[impl] = row
    ours = table.get('ours')
    if ours:
        for impl, row in table.items():
            # Each repetition runs every implementation back to back: the median of the per-repetition
            # ratios is less sensitive to load that comes and goes than a ratio of two minima.
            row['paired_ratio_median'] = {
                '%s_%s' % (phase, metric): round(sorted(
                    r['runs'][impl][phase][metric + '_s'] / r['runs']['ours'][phase][metric + '_s']
                    for r in timed)[len(timed) // 2], 2)
                for phase in ('first', 'second') for metric in ('wall', 'cpu')}
            row['ratio'] = {k: (round(row[k] / ours[k], 2) if row.get(k) and ours.get(k) else None)
                            for k in ('first_wall', 'second_wall', 'first_cpu', 'second_cpu', 'first_modules',
                                      'second_modules')}
    return table


def fmt(value, digits=2):
    return '-' if value is None else ('%.*f' % (digits, value))


def markdown(result):
    lines = []
    impls = result['impls']
    table = result['summary']
    lines.append('| | %s |' % ' | '.join(IMPLS[i]['collection'] for i in impls))
    lines.append('|---|%s' % ('---|' * len(impls)))

    def row(label, fn):
        lines.append('| %s | %s |' % (label, ' | '.join(fn(table[i]) for i in impls)))
    row('first delivery, ansible-playbook wall (s)', lambda r: fmt(r['first_wall']))
    row('  ratio theirs / ours', lambda r: fmt(r.get('ratio', {}).get('first_wall')))
    row('first delivery, CPU time of ansible-playbook + modules (s)', lambda r: fmt(r['first_cpu']))
    row('  ratio theirs / ours', lambda r: fmt(r.get('ratio', {}).get('first_cpu')))
    row('first delivery, module tasks (s)', lambda r: fmt(r['first_modules']))
    row('  ratio theirs / ours', lambda r: fmt(r.get('ratio', {}).get('first_modules')))
    row('second run, ansible-playbook wall (s)', lambda r: fmt(r['second_wall']))
    row('  ratio theirs / ours', lambda r: fmt(r.get('ratio', {}).get('second_wall')))
    row('second run, CPU time of ansible-playbook + modules (s)', lambda r: fmt(r['second_cpu']))
    row('  ratio theirs / ours', lambda r: fmt(r.get('ratio', {}).get('second_cpu')))
    row('second run, module tasks (s)', lambda r: fmt(r['second_modules']))
    row('  ratio theirs / ours', lambda r: fmt(r.get('ratio', {}).get('second_modules')))
    for phase in ('first', 'second'):
        for t in TASKS:
            row('%s: %s per call (s)' % (phase, t.lower()),
                lambda r, p=phase, t=t: fmt(r['%s_%s' % (p, t)] / ITEMS[t] if r['%s_%s' % (p, t)] else None))
    row('median of per-repetition ratios, wall first / second',
        lambda r: '%s / %s' % (fmt(r['paired_ratio_median']['first_wall']), fmt(r['paired_ratio_median']['second_wall'])))
    row('median of per-repetition ratios, CPU first / second',
        lambda r: '%s / %s' % (fmt(r['paired_ratio_median']['first_cpu']), fmt(r['paired_ratio_median']['second_cpu'])))
    row('median wall first / second (s)', lambda r: '%s / %s' % (fmt(r['first_wall_median']),
                                                                 fmt(r['second_wall_median'])))
    row('HTTP requests first / second', lambda r: '%d / %d' % (r['first_requests'], r['second_requests']))
    row('writes in the second run', lambda r: str(r['second_writes']))
    row('second run reports changed (folder, dashboards, datasources)',
        lambda r: ', '.join(r['second_changed'][t] for t in TASKS))
    row('second run failed items (folder, dashboards, datasources)',
        lambda r: ', '.join(str(r['second_failed'][t]) for t in TASKS))
    row('versions bumped by the second run (dashboards, datasources)',
        lambda r: '%d/3, %d/2' % (r['second_bumped']['dashboards'], r['second_bumped']['datasources']))
    row('dashboards in folder `aiplatform` after delivery', lambda r: '%d/3' % r['dashboards_in_folder'])
    return '\n'.join(lines)


def observations_text(result):
    """One line per implementation, scenario and task: changed/failed/skipped items, diffs, writes."""
    lines = []
    for impl, obs in result.get('observations', {}).items():
        for scenario, run in sorted(obs.items()):
            if not isinstance(run, dict) or 'tasks' not in run:
                if not isinstance(run, dict):
                    lines.append('%s %s: %s' % (impl, scenario, run))
                continue
            lines.append('%s %s: rc %d, %d requests, %d writes, token in output %s, password in output %s%s'
                         % (impl, scenario, run['rc'], run['requests'], run['writes'], run['token_in_output'],
                            run['password_in_output'], (', ' + run['error']) if run.get('error') else ''))
            for name in TASKS:
                task = run['tasks'].get(name)
                if task is None:
                    continue
                notes = sorted(set(i.get('msg', '')[:160] for i in task['items'] if i.get('msg')))
                diffs = [i['diff'] for i in task['items'] if i.get('diff')]
                lines.append('    %-11s changed %d, failed %d, skipped %d of %d%s%s' % (
                    name, task['changed'], task['failed'], task['skipped'], len(task['items']),
                    ('; diff ' + json.dumps(diffs)) if diffs else '', ('; ' + ' | '.join(notes)) if notes else ''))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeat', type=int, default=5, help='timed repetitions (best of)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed repetitions first')
    parser.add_argument('--impl', default='ours,community,grafana', help='comma-separated: ours, community, grafana')
    parser.add_argument('--python', default=str(DEFAULT_PYTHON if DEFAULT_PYTHON.exists() else sys.executable),
                        help='interpreter that runs every module (needs requests for grafana.grafana)')
    parser.add_argument('--no-observe', action='store_true', help='timing only')
    parser.add_argument('--json', help='write every figure and observation here')
    parser.add_argument('--log-dir', default=str(REPO / '.cache' / 'bench-grafana-logs'),
                        help="each run's stdout/stderr (ansible.posix.json + profile_tasks)")
    args = parser.parse_args(argv)
    impls = [i.strip() for i in args.impl.split(',') if i.strip()]
    unknown = [i for i in impls if i not in IMPLS]
    if unknown:
        parser.error('unknown --impl %s (choose from %s)' % (', '.join(unknown), ', '.join(IMPLS)))
    workdir = tempfile.mkdtemp(prefix='bench-grafana-')
    # SIGTERM unwinds like Ctrl-C, so the stand-in processes and the work directory are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = {'machine': machine(), 'module_interpreter': dict(interpreter_info(args.python), path=args.python),
                  'command': ' '.join([Path(sys.executable).name] + sys.argv), 'impls': impls,
                  'repeat': args.repeat, 'warmup': args.warmup,
                  'load_before': os.getloadavg()}
        print(json.dumps(result['machine']), file=sys.stderr)
        dashboards, edited = render_dashboards(workdir)
        with StandIn(workdir, 'glsa_' + uuid.uuid4().hex) as standin:
            result['standin_health'] = standin.call('/api/health')[1]
        runner = Runner(args, workdir)
        reps = timing(runner, impls, dashboards)
        result['reps'] = reps
        result['summary'] = summarize(reps, impls)
        if not args.no_observe:
            result['observations'] = {}
            for impl in impls:
                print('observing %s' % impl, file=sys.stderr, flush=True)
                result['observations'][impl] = observe(runner, impl, dashboards, edited)
        result['load_after'] = os.getloadavg()
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True, default=str) + '\n')
        print(markdown(result))
        if result.get('observations'):
            print()
            print(observations_text(result))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
