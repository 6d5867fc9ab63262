#!/usr/bin/env python3
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Dashboard truth check: does every panel of a Grafana dashboard return data?

For every panel target of the given dashboards, the query is run where Grafana would run it:
PromQL against Prometheus' HTTP API, SQL against PostgreSQL (as the datasource's user, normally
grafana_reader). Template variables are set to "All" (the dashboards' allValue, a match-all regex),
Grafana's interval variables ($__rate_interval, $__interval, $__range, ...) and SQL macros
($__timeFilter(col), $__timeFrom(), ...) are replaced by concrete values for the dashboard's
default time range. The variable queries (label_values) and the SQL annotations are run too.

A table is printed (dashboard, panel, query, series or rows, and which job@instance answered);
the exit status is 1 when a panel target or a variable returns nothing or a query fails, 0 when
everything returned data, 2 on bad usage. Annotation queries only fail on errors (a time range
without events is normal).

Data must come from the real exporters, not only from a stand-in:
* Each PromQL target's answer is traced to the jobs and instances behind it: the query's series
  selectors, and those of the recording rules it reads (Prometheus' /api/v1/rules), are asked
  `count by (job, instance, <simulated label>)`. Series that carry the simulated marker
  (--simulated-label, default modelName="Simulated GPU (demo workload)") are reported apart.
* Every job that answers a panel must be up on all its targets (one row per job, `up == 1`).
* GPU panels (a selector on --gpu-metric-prefix, default DCGM_) must be answered on every
  --gpu-instance by the GPU exporter's job (--gpu-job): by its own series for the panel, or, on a
  node without a readable GPU, by the exporter's status series (--gpu-status-metric, default
  aiplatform_gpu_exporter_up, which the NVML exporter publishes as 0 there). A GPU panel answered
  only by simulated series while a GPU node's exporter is down or missing fails, naming the node.

Runs with the Python standard library. SQL goes through psycopg when it can be imported (the
exporters' venv: /opt/aiplatform-exporters/venv/bin/python), else through `psql`.

Secrets come from the environment, never from the command line:
  PGPASSWORD                      password of --pg-user
  AIPLATFORM_PROMETHEUS_PASSWORD  password of --prometheus-user (Prometheus basic auth)
  GRAFANA_TOKEN or GRAFANA_PASSWORD  to read the dashboards from Grafana (--grafana-url)

Examples:
  aiplatform-check-dashboards --prometheus-url http://127.0.0.1:9090 --pg-host 127.0.0.1 \\
      --grafana-url http://127.0.0.1:3000 --grafana-user admin
  aiplatform-check-dashboards --prometheus-url http://prom:9090 --no-sql render/_grafana_api/dashboards/*.json
"""

import argparse
import base64
import json
import math
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone

ALL_VALUE = '.*'
SECRET_VARIABLES = ('PGPASSWORD', 'AIPLATFORM_PROMETHEUS_PASSWORD', 'GRAFANA_TOKEN', 'GRAFANA_PASSWORD')
PROMETHEUS_TYPES = ('prometheus',)
POSTGRES_TYPES = ('postgres', 'grafana-postgresql-datasource')
DURATION_RE = re.compile(r'(\d+)(ms|s|m|h|d|w|y)')
UNIT_SECONDS = {'ms': 0.001, 's': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800, 'y': 31536000}
# Grafana's interval rounding (kbn.roundInterval): the first bound above the raw interval picks it.
ROUND_STEPS = [(0.015, 0.01), (0.035, 0.02), (0.075, 0.05), (0.15, 0.1), (0.35, 0.2), (0.75, 0.5), (1.5, 1),
               (3.5, 2), (7.5, 5), (12.5, 10), (17.5, 15), (25, 20), (45, 30), (90, 60), (210, 120), (450, 300),
               (750, 600), (1050, 900), (1500, 1200), (2700, 1800), (5400, 3600), (9000, 7200), (16200, 10800),
               (32400, 21600), (86400, 43200), (604800, 86400)]


class CheckError(Exception):
    pass


def parse_duration(text):
    """Seconds of a Prometheus/Grafana duration such as 15s, 1h30m, 24h."""
    text = str(text).strip()
    parts = DURATION_RE.findall(text)
    if not parts or ''.join(n + u for n, u in parts) != text:
        raise CheckError('not a duration: %r' % text)
    return sum(int(n) * UNIT_SECONDS[u] for n, u in parts)


def format_duration(seconds):
    seconds = int(round(seconds))
    for unit, size in (('d', 86400), ('h', 3600), ('m', 60)):
        if seconds >= size and seconds % size == 0:
            return '%d%s' % (seconds // size, unit)
    return '%ds' % max(seconds, 1)


def round_interval(seconds):
    for bound, value in ROUND_STEPS:
        if seconds < bound:
            return value
    return 604800


def relative_time(text, now):
    """Epoch seconds of Grafana's relative time (now, now-1h, now-24h); absolute ISO also accepted."""
    text = str(text).strip()
    if text == 'now':
        return now
    match = re.match(r'^now-(\S+?)(/\w)?$', text)
    if match:
        return now - parse_duration(match.group(1))
    try:
        return datetime.fromisoformat(text.replace('Z', '+00:00')).timestamp()
    except ValueError:
        raise CheckError('unsupported time %r' % text)


class TimeContext(object):
    """The concrete values of Grafana's time variables for one dashboard's default range."""

    def __init__(self, dashboard, now, scrape_interval, max_data_points):
        rng = dashboard.get('time') or {'from': 'now-1h', 'to': 'now'}
        self.start = relative_time(rng.get('from', 'now-1h'), now)
        self.end = relative_time(rng.get('to', 'now'), now)
        if self.end <= self.start:
            raise CheckError('empty time range %r' % (rng,))
        self.range = self.end - self.start
        self.scrape = scrape_interval
        self.max_data_points = max_data_points

    def interval(self, min_interval=None):
        raw = max(round_interval(self.range / self.max_data_points), self.scrape)
        if min_interval:
            raw = max(raw, parse_duration(min_interval))
        return raw

    def rate_interval(self, min_interval=None):
        # Grafana: max($__interval + scrape interval, 4 * scrape interval)
        return max(self.interval(min_interval) + self.scrape, 4 * self.scrape)


# ---------------------------------------------------------------------------- substitution
VARIABLE_RE = re.compile(r'\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)')


def substitute_variables(text, known_builtins):
    """Every template variable set to the match-all value; builtins already replaced stay as they are."""
    def repl(match):
        name = match.group(1) or match.group(2) or match.group(3)
        if name.startswith('__') and name not in known_builtins:
            return match.group(0)
        return ALL_VALUE
    return VARIABLE_RE.sub(repl, text)


def promql(expr, ctx, min_interval=None):
    values = {
        '__rate_interval_ms': str(int(ctx.rate_interval(min_interval) * 1000)),
        '__rate_interval': format_duration(ctx.rate_interval(min_interval)),
        '__interval_ms': str(int(ctx.interval(min_interval) * 1000)),
        '__interval': format_duration(ctx.interval(min_interval)),
        '__range_ms': str(int(ctx.range * 1000)),
        '__range_s': str(int(ctx.range)),
        '__range': format_duration(ctx.range),
    }
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace('${%s}' % name, values[name]).replace('$' + name, values[name])
    leftover = re.search(r'\$__\w+', expr)
    if leftover:
        raise CheckError('unsupported Grafana variable %s' % leftover.group(0))
    return substitute_variables(expr, ())


def _iso(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def sql(raw, ctx):
    """Grafana's PostgreSQL macros replaced by concrete SQL."""
    start, end = "'%s'" % _iso(ctx.start), "'%s'" % _iso(ctx.end)

    def group_seconds(arg):
        return str(int(parse_duration(arg.strip().strip("'\""))))

    rules = [
        (r'\$__timeFilter\(\s*([^)]+?)\s*\)', lambda m: '%s BETWEEN %s AND %s' % (m.group(1), start, end)),
        (r'\$__timeFrom\(\s*\)', lambda m: start),
        (r'\$__timeTo\(\s*\)', lambda m: end),
        (r'\$__timeEpoch\(\s*([^)]+?)\s*\)', lambda m: 'extract(epoch from %s) AS "time"' % m.group(1)),
        (r'\$__time\(\s*([^)]+?)\s*\)', lambda m: '%s AS "time"' % m.group(1)),
        (r'\$__unixEpochFilter\(\s*([^)]+?)\s*\)',
         lambda m: '%s >= %d AND %s <= %d' % (m.group(1), ctx.start, m.group(1), ctx.end)),
        (r'\$__unixEpochFrom\(\s*\)', lambda m: str(int(ctx.start))),
        (r'\$__unixEpochTo\(\s*\)', lambda m: str(int(ctx.end))),
        (r'\$__timeGroupAlias\(\s*([^,)]+?)\s*,\s*([^,)]+?)\s*(?:,[^)]*)?\)',
         lambda m: 'to_timestamp(floor(extract(epoch from %s)/%s)*%s) AS "time"'
         % (m.group(1), group_seconds(m.group(2)), group_seconds(m.group(2)))),
        (r'\$__timeGroup\(\s*([^,)]+?)\s*,\s*([^,)]+?)\s*(?:,[^)]*)?\)',
         lambda m: 'to_timestamp(floor(extract(epoch from %s)/%s)*%s)'
         % (m.group(1), group_seconds(m.group(2)), group_seconds(m.group(2)))),
        (r'\$__from\b', lambda m: str(int(ctx.start * 1000))),
        (r'\$__to\b', lambda m: str(int(ctx.end * 1000))),
        (r'\$__interval_ms\b', lambda m: str(int(ctx.interval() * 1000))),
        (r'\$__interval\b', lambda m: "'%s'" % format_duration(ctx.interval())),
    ]
    for pattern, func in rules:
        raw = re.sub(pattern, func, raw)
    leftover = re.search(r'\$__\w+', raw)
    if leftover:
        raise CheckError('unsupported Grafana SQL macro %s' % leftover.group(0))
    return substitute_variables(raw, ())


# ---------------------------------------------------------------------------- PromQL selectors
PROMQL_TOKEN_RE = re.compile(r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<matchers>\{(?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`|[^{}"'`])*\})
  | (?P<range>\[[^\]]*\])
  | (?P<number>\d[\w.]*|\.\d[\w.]*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<space>\s+)
  | (?P<other>.)
""", re.X)
PROMQL_KEYWORDS = {'and', 'or', 'unless', 'offset', 'bool', 'inf', 'nan', 'atan2', 'start', 'end'}
PROMQL_AGGREGATIONS = {'sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk',
                       'topk', 'quantile', 'limitk', 'limit_ratio'}
PROMQL_LABEL_LISTS = {'by', 'without', 'on', 'ignoring', 'group_left', 'group_right'}


def selectors(expr):
    """The series selectors of a PromQL expression, e.g. ['up{job="gpu"}', 'DCGM_FI_DEV_GPU_UTIL']."""
    tokens = [(m.lastgroup, m.group()) for m in PROMQL_TOKEN_RE.finditer(expr) if m.lastgroup != 'space']
    found, i = [], 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else (None, None)
        if kind == 'ident' and text in PROMQL_LABEL_LISTS and following[1] == '(':
            depth, i = 0, i + 1
            while i < len(tokens):                    # skip the label list: by (job, instance)
                depth += {'(': 1, ')': -1}.get(tokens[i][1], 0)
                i += 1
                if depth == 0:
                    break
            continue
        if kind == 'ident' and (text.lower() in PROMQL_KEYWORDS or text in PROMQL_AGGREGATIONS
                                or text in PROMQL_LABEL_LISTS or following[1] == '('):
            i += 1                                      # an operator, or a function or aggregation name
            continue
        if kind == 'ident':
            found.append(text + (following[1] if following[0] == 'matchers' else ''))
            i += 2 if following[0] == 'matchers' else 1
            continue
        if kind == 'matchers':
            found.append(text)                          # {__name__=~"a|b"}
        i += 1
    return list(dict.fromkeys(found))


def metric_name(selector):
    match = re.match(r'^([A-Za-z_:][A-Za-z0-9_:]*)', selector)
    if match:
        return match.group(1)
    match = re.search(r'__name__\s*=\s*"([^"]*)"', selector)
    return match.group(1) if match else ''


# ---------------------------------------------------------------------------- backends
class HTTP(object):
    def __init__(self, base, user=None, password=None, token=None, ca_file=None, insecure=False, timeout=30):
        self.base = base.rstrip('/')
        self.headers = {'Accept': 'application/json'}
        if token:
            self.headers['Authorization'] = 'Bearer ' + token
        elif user:
            raw = ('%s:%s' % (user, password or '')).encode()
            self.headers['Authorization'] = 'Basic ' + base64.b64encode(raw).decode()
        self.context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        if insecure:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        self.timeout = timeout

    def get(self, path, params=None):
        url = self.base + path + ('?' + urllib.parse.urlencode(params, doseq=True) if params else '')
        request = urllib.request.Request(url, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as r:
                return json.loads(r.read().decode('utf-8'))
        except urllib.error.HTTPError as e:
            body = e.read().decode('utf-8', 'replace')
            try:
                detail = json.loads(body).get('error') or json.loads(body).get('message') or body
            except ValueError:
                detail = body
            raise CheckError('HTTP %d from %s: %s' % (e.code, path, str(detail).strip()[:300]))
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise CheckError('%s%s: %s' % (self.base, path, getattr(e, 'reason', e)))


class Prometheus(object):
    def __init__(self, http):
        self.http = http

    def _data(self, path, params):
        answer = self.http.get(path, params)
        if answer.get('status') != 'success':
            raise CheckError(answer.get('error') or 'query failed')
        return answer['data']

    def count_series(self, expr, ctx, instant=False, min_interval=None):
        """Series with at least one finite value."""
        if instant:
            data = self._data('/api/v1/query', {'query': expr, 'time': '%.3f' % ctx.end})
            if data.get('resultType') == 'scalar':
                return int(_finite(data['result'][1]))
            return sum(1 for s in data['result'] if _finite(s.get('value', [0, 'NaN'])[1]))
        step = ctx.interval(min_interval)
        data = self._data('/api/v1/query_range', {'query': expr, 'start': '%.3f' % ctx.start,
                                                  'end': '%.3f' % ctx.end, 'step': '%g' % step})
        return sum(1 for s in data['result'] if any(_finite(v[1]) for v in s.get('values', [])))

    def count_label_values(self, query, ctx):
        """label_values(label) / label_values(selector, label), as Grafana's variable editor runs them."""
        match = re.match(r'^\s*label_values\(\s*(?:(.*?)\s*,\s*)?(\w+)\s*\)\s*$', query, re.S)
        if not match:
            raise CheckError('unsupported variable query %r' % query)
        params = {'start': '%.3f' % ctx.start, 'end': '%.3f' % ctx.end}
        if match.group(1):
            params['match[]'] = substitute_variables(match.group(1), ())
        return len(self._data('/api/v1/label/%s/values' % match.group(2), params))


class Sources(object):
    """Which (job, instance) answer a PromQL expression, through the recording rules it reads.

    A source is (job, instance, simulated): simulated is true for series that carry the simulated
    marker label value. Recording rules are read once from /api/v1/rules.
    """

    def __init__(self, prom, simulated_label, simulated_value):
        self.prom = prom
        self.simulated_label = simulated_label
        self.simulated_value = simulated_value
        self._rules = None
        self._cache = {}

    def rules(self):
        if self._rules is None:
            self._rules = {}
            for group in self.prom._data('/api/v1/rules', {'type': 'record'}).get('groups', []):
                for rule in group.get('rules', []):
                    if rule.get('type') == 'recording':
                        self._rules.setdefault(rule['name'], []).append(rule['query'])
        return self._rules

    def base_selectors(self, expr, depth=0):
        """Selectors of the raw series behind expr (recorded series replaced by their rules' selectors)."""
        out = []
        for selector in selectors(expr):
            name = metric_name(selector)
            if depth < 8 and name in self.rules():
                for rule_expr in self.rules()[name]:
                    out.extend(self.base_selectors(rule_expr, depth + 1))
            else:
                out.append(selector)
        return list(dict.fromkeys(out))

    def of(self, expr, ctx):
        found = set()
        for selector in self.base_selectors(expr):
            key = (selector, int(ctx.range), int(ctx.end))
            if key not in self._cache:
                query = 'count by (job, instance, %s) (last_over_time(%s[%ds]))' % (
                    self.simulated_label, selector, max(int(ctx.range), 60))
                data = self.prom._data('/api/v1/query', {'query': query, 'time': '%.3f' % ctx.end})
                self._cache[key] = set((m.get('job', ''), m.get('instance', ''),
                                        m.get(self.simulated_label) == self.simulated_value)
                                       for m in (r.get('metric', {}) for r in data.get('result', [])))
            found |= self._cache[key]
        return found


def describe_sources(found):
    real = sorted('%s@%s' % (j or '?', i or '?') for j, i, sim in found if not sim)
    simulated = sorted('%s@%s' % (j or '?', i or '?') for j, i, sim in found if sim)
    text = ', '.join(real) if real else 'no real source'
    if simulated:
        text += '; SIMULATED: ' + ', '.join(simulated)
    return text


class GpuCoverage(object):
    """Is every GPU node answering for itself? Its own series, or its exporter's status series."""

    def __init__(self, prom, job, instances, status_metric, metric_prefix):
        self.prom = prom
        self.job = job
        self.instances = list(instances)
        self.status_metric = status_metric
        self.metric_prefix = metric_prefix
        self._status = {}

    def is_gpu_target(self, expr):
        return any(metric_name(sel).startswith(self.metric_prefix) for sel in selectors(expr))

    def status(self, instance, ctx):
        """None when the node's exporter answers (up 1, status series present), else why not."""
        if instance not in self._status:
            labels = '{job="%s", instance="%s"}' % (self.job, instance)
            up = self.prom._data('/api/v1/query', {'query': 'up' + labels, 'time': '%.3f' % ctx.end})['result']
            if not up:
                self._status[instance] = 'not a target of job %s' % self.job
            elif not any(_finite(r['value'][1]) and float(r['value'][1]) == 1 for r in up):
                self._status[instance] = 'job %s target down' % self.job
            elif not self.prom._data('/api/v1/query', {'query': self.status_metric + labels,
                                                       'time': '%.3f' % ctx.end})['result']:
                self._status[instance] = 'up, but no %s series' % self.status_metric
            else:
                self._status[instance] = None
        return self._status[instance]

    def missing(self, found, ctx):
        """[(instance, why)] of the GPU nodes that do not answer a GPU panel whose sources are `found`."""
        answered = set(i for j, i, sim in found if j == self.job and not sim)
        out = []
        for instance in self.instances:
            if instance in answered:
                continue
            why = self.status(instance, ctx)
            if why:
                out.append((instance, why))
        return out


def _finite(value):
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class Postgres(object):
    """Runs `SELECT count(*) FROM (<query>)` read-only, through psycopg or psql."""

    def __init__(self, host, port, database, user, sslmode, timeout):
        self.params = dict(host=host, port=str(port), dbname=database, user=user, sslmode=sslmode)
        self.timeout = timeout
        try:
            import psycopg  # noqa: F401 (the exporters' venv)
            self.driver = 'psycopg'
        except ImportError:
            if not shutil.which('psql'):
                raise CheckError('SQL panels need psycopg (run with the exporters\' venv python) or psql '
                                 '(package postgresql-client); or pass --no-sql')
            self.driver = 'psql'

    @staticmethod
    def wrap(query):
        return 'SELECT count(*) FROM (\n%s\n) AS dashboard_check' % query.strip().rstrip(';')

    def count_rows(self, query):
        wrapped = self.wrap(query)
        if self.driver == 'psycopg':
            import psycopg
            try:
                with psycopg.connect(password=os.environ.get('PGPASSWORD'), connect_timeout=self.timeout,
                                     options='-c default_transaction_read_only=on -c statement_timeout=%d'
                                     % (self.timeout * 1000), **self.params) as conn:
                    with conn.cursor() as cur:
                        cur.execute(wrapped)
                        return int(cur.fetchone()[0])
            except psycopg.Error as e:
                raise CheckError(str(e).strip().splitlines()[0])
        env = dict(os.environ, PGHOST=self.params['host'], PGPORT=self.params['port'], PGDATABASE=self.params['dbname'],
                   PGUSER=self.params['user'], PGSSLMODE=self.params['sslmode'], PGCONNECT_TIMEOUT=str(self.timeout),
                   PGOPTIONS='-c default_transaction_read_only=on -c statement_timeout=%d' % (self.timeout * 1000))
        proc = subprocess.run(['psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-f', '-'],
                              input=wrapped, env=env, capture_output=True, text=True, timeout=self.timeout + 10)
        if proc.returncode != 0:
            raise CheckError((proc.stderr.strip().splitlines() or ['psql failed'])[0])
        return int(proc.stdout.strip())


# ---------------------------------------------------------------------------- the check
def panels_of(dashboard):
    for panel in dashboard.get('panels', []):
        if panel.get('type') == 'row':
            for inner in panel.get('panels', []):  # collapsed rows keep their panels inside
                yield inner
        else:
            yield panel


def ds_type(target, panel):
    ds = target.get('datasource') or panel.get('datasource') or {}
    return ds.get('type', '') if isinstance(ds, dict) else ''


def check_dashboard(dashboard, prom, pg, now, scrape, max_points, sources=None, gpu=None, jobs=None):
    """Rows of (dashboard, panel, kind, query, result, ok, answered by).

    With `sources` (a Sources), every PromQL answer is traced to its jobs and instances; the jobs
    found are added to the set `jobs`. With `gpu` (a GpuCoverage), GPU panels must be answered on
    every GPU node."""
    uid = dashboard.get('uid', '?')
    ctx = TimeContext(dashboard, now, scrape, max_points)
    rows = []

    def run(panel_title, kind, query, func, unit, must_have_data=True, expr=None):
        answered = ''
        try:
            n = func()
            ok = n > 0 or not must_have_data
            result = '%d %s' % (n, unit) if n > 0 else ('NO DATA' if must_have_data else '0 %s' % unit)
            if ok and expr is not None and sources is not None:
                found = sources.of(expr, ctx)
                answered = describe_sources(found)
                if jobs is not None:
                    jobs.update(j for j, i, sim in found if not sim and j)
                if found and all(sim for j, i, sim in found):
                    ok, result = False, result + ', ONLY SIMULATED'
                if gpu is not None and gpu.is_gpu_target(expr):
                    if found and all(sim for j, i, sim in found) and gpu.instances:
                        ok, result = True, result.replace(', ONLY SIMULATED', ', simulated')
                    missing = gpu.missing(found, ctx)
                    if missing:
                        ok = False
                        result += ', GPU NODE NOT ANSWERING: ' + ', '.join('%s (%s)' % m for m in missing)
        except CheckError as e:
            ok, result = False, 'ERROR: %s' % e
        rows.append((uid, panel_title, kind, query, result, ok, answered))

    for var in (dashboard.get('templating') or {}).get('list', []):
        if var.get('type') != 'query':
            continue
        query = var.get('query')
        query = query.get('query') if isinstance(query, dict) else query
        if prom is None:
            continue
        match = re.match(r'^\s*label_values\(\s*(.*?)\s*,\s*\w+\s*\)\s*$', query or '', re.S)
        expr = substitute_variables(match.group(1), ()) if match else None
        run('$' + var.get('name', '?'), 'variable', query, lambda q=query: prom.count_label_values(q, ctx), 'values',
            expr=expr)

    for ann in (dashboard.get('annotations') or {}).get('list', []):
        target = ann.get('target') or {}
        if ds_type(target, ann) in POSTGRES_TYPES and pg is not None and target.get('rawSql'):
            try:
                query = sql(target['rawSql'], ctx)
            except CheckError as e:
                rows.append((uid, 'annotation: ' + ann.get('name', '?'), 'sql', target['rawSql'], 'ERROR: %s' % e, False,
                             ''))
                continue
            run('annotation: ' + ann.get('name', '?'), 'sql', query, lambda q=query: pg.count_rows(q), 'rows',
                must_have_data=False)

    for panel in panels_of(dashboard):
        title = '%s (#%s)' % (panel.get('title', '?'), panel.get('id', '?'))
        targets = [t for t in panel.get('targets', []) if not t.get('hide')]
        if not targets:
            rows.append((uid, title, '-', '', 'NO TARGETS', False, ''))
        for target in targets:
            kind = ds_type(target, panel)
            try:
                if kind in PROMETHEUS_TYPES:
                    if prom is None:
                        continue
                    expr = promql(target.get('expr', ''), ctx, target.get('interval') or None)
                    instant = bool(target.get('instant')) and not target.get('range', False)
                    run(title, 'promql', expr,
                        lambda e=expr, i=instant, mi=target.get('interval') or None: prom.count_series(e, ctx, i, mi),
                        'series', expr=expr)
                elif kind in POSTGRES_TYPES:
                    if pg is None:
                        continue
                    query = sql(target.get('rawSql', ''), ctx)
                    run(title, 'sql', query, lambda q=query: pg.count_rows(q), 'rows')
                else:
                    rows.append((uid, title, kind or '?', '', 'ERROR: unsupported datasource type %r' % kind, False, ''))
            except CheckError as e:
                rows.append((uid, title, kind, target.get('expr') or target.get('rawSql') or '', 'ERROR: %s' % e, False,
                             ''))
    return rows


def check_jobs(prom, jobs, gpu, now):
    """One row per job the dashboards depend on: every target of it up (up == 1); the GPU job on every
    GPU node."""
    rows = []
    expected = dict((job, set()) for job in jobs)
    if gpu is not None and gpu.instances:
        expected.setdefault(gpu.job, set()).update(gpu.instances)
    for job in sorted(expected):
        query = 'up{job="%s"}' % job
        try:
            result = prom._data('/api/v1/query', {'query': query, 'time': '%.3f' % now})['result']
            values = dict((r['metric'].get('instance', '?'), r['value'][1]) for r in result)
            down = sorted(i for i, v in values.items() if not (_finite(v) and float(v) == 1))
            missing = sorted(expected[job] - set(values))
            problems = ['DOWN: ' + ', '.join(down)] if down else []
            problems += ['MISSING: ' + ', '.join(missing)] if missing else []
            ok = bool(values) and not problems
            text = 'up on %d/%d targets' % (len(values) - len(down), len(values))
            rows.append(('-', 'job %s' % job, 'up', query, text + ('' if ok else ', ' + '; '.join(problems or ['no target'])),
                         ok, ', '.join(sorted(values))))
        except CheckError as e:
            rows.append(('-', 'job %s' % job, 'up', query, 'ERROR: %s' % e, False, ''))
    return rows


def one_line(text, width):
    text = ' '.join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + '...'


def print_table(rows, out, query_width):
    header = ('DASHBOARD', 'PANEL', 'KIND', 'QUERY', 'RESULT', 'ANSWERED BY')
    table = [header] + [(r[0], one_line(r[1], 48), r[2], one_line(r[3], query_width), r[4], r[6]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for i, row in enumerate(table):
        mark = '  ' if i == 0 else ('ok' if rows[i - 1][5] else '!!')
        line = '  '.join(c.ljust(w) for c, w in zip(row[:5], widths)) + '  ' + row[5]
        out.write('%s %s\n' % (mark, line.rstrip()))


def load_file(path):
    with open(path, 'rb') as f:
        data = json.loads(f.read().decode('utf-8'))
    return data['dashboard'] if 'panels' not in data and isinstance(data.get('dashboard'), dict) else data


def main(argv=None):
    parser = argparse.ArgumentParser(prog='aiplatform-check-dashboards', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('files', nargs='*', help='dashboard JSON files (a model, or an export with a "dashboard" key)')
    parser.add_argument('--prometheus-url', default='http://127.0.0.1:9090')
    parser.add_argument('--prometheus-user', help='basic auth user (password: AIPLATFORM_PROMETHEUS_PASSWORD)')
    parser.add_argument('--prometheus-ca-file')
    parser.add_argument('--scrape-interval', default='15s', help="the Prometheus datasource's timeInterval (15s)")
    parser.add_argument('--max-data-points', type=int, default=1000, help='points per series Grafana asks for (panel width)')
    parser.add_argument('--pg-host', default='127.0.0.1')
    parser.add_argument('--pg-port', default='5432')
    parser.add_argument('--pg-database', default='ai_platform')
    parser.add_argument('--pg-user', default='grafana_reader', help='password: PGPASSWORD')
    parser.add_argument('--pg-sslmode', default='prefer')
    parser.add_argument('--no-sql', action='store_true', help='skip the SQL panels')
    parser.add_argument('--grafana-url', help='read the dashboards from Grafana (GRAFANA_TOKEN or GRAFANA_PASSWORD)')
    parser.add_argument('--grafana-user', default='admin')
    parser.add_argument('--grafana-ca-file')
    parser.add_argument('--uid', action='append', dest='uids',
                        help='dashboard uid to read from Grafana (repeatable); default: the collection\'s three')
    parser.add_argument('--simulated-label', default='modelName=Simulated GPU (demo workload)', metavar='NAME=VALUE',
                        help='the label value that marks simulated series (default: the demo workload\'s GPUs)')
    parser.add_argument('--gpu-job', default='gpu', help='job of the GPU exporter (default gpu)')
    parser.add_argument('--gpu-instance', action='append', default=[], metavar='INSTANCE',
                        help='a GPU node that must answer every GPU panel (repeatable)')
    parser.add_argument('--gpu-status-metric', default='aiplatform_gpu_exporter_up',
                        help='series by which a GPU exporter without a readable GPU still answers')
    parser.add_argument('--gpu-metric-prefix', default='DCGM_', help='metric name prefix of the GPU panels')
    parser.add_argument('--insecure', action='store_true', help='do not verify TLS certificates')
    parser.add_argument('--timeout', type=int, default=30)
    parser.add_argument('--json', metavar='FILE', help='also write the results as JSON to FILE')
    parser.add_argument('--query-width', type=int, default=90)
    parser.add_argument('--env-file', metavar='FILE',
                        help='read the secret variables above from FILE (KEY=VALUE lines; keep it mode 0600)')
    args = parser.parse_args(argv)
    if args.env_file:
        try:
            with open(args.env_file) as f:
                for line in f:
                    key, sep, value = line.rstrip('\n').partition('=')
                    if sep and key.strip() in SECRET_VARIABLES:
                        os.environ[key.strip()] = value
        except OSError as e:
            sys.stderr.write('aiplatform-check-dashboards: --env-file: %s\n' % e)
            return 2

    try:
        dashboards = [load_file(p) for p in args.files]
        if args.grafana_url:
            grafana = HTTP(args.grafana_url, user=None if os.environ.get('GRAFANA_TOKEN') else args.grafana_user,
                           password=os.environ.get('GRAFANA_PASSWORD'), token=os.environ.get('GRAFANA_TOKEN'),
                           ca_file=args.grafana_ca_file, insecure=args.insecure, timeout=args.timeout)
            for uid in args.uids or ['platform-overview', 'learning-engine', 'mcp-activity']:
                dashboards.append(grafana.get('/api/dashboards/uid/%s' % urllib.parse.quote(uid, safe=''))['dashboard'])
        if not dashboards:
            parser.error('give dashboard files or --grafana-url')
        prom = Prometheus(HTTP(args.prometheus_url, user=args.prometheus_user,
                               password=os.environ.get('AIPLATFORM_PROMETHEUS_PASSWORD'),
                               ca_file=args.prometheus_ca_file, insecure=args.insecure, timeout=args.timeout))
        pg = None if args.no_sql else Postgres(args.pg_host, args.pg_port, args.pg_database, args.pg_user,
                                               args.pg_sslmode, args.timeout)
        scrape = parse_duration(args.scrape_interval)
        label, sep, value = args.simulated_label.partition('=')
        if not sep or not re.match(r'^[A-Za-z_][A-Za-z0-9_]*$', label):
            raise CheckError('--simulated-label must be NAME=VALUE, got %r' % args.simulated_label)
        sources = Sources(prom, label, value)
        gpu = GpuCoverage(prom, args.gpu_job, args.gpu_instance, args.gpu_status_metric, args.gpu_metric_prefix)
    except (CheckError, OSError, ValueError) as e:
        sys.stderr.write('aiplatform-check-dashboards: %s\n' % e)
        return 2

    now = time.time()
    rows, jobs = [], set()
    for dashboard in dashboards:
        try:
            rows.extend(check_dashboard(dashboard, prom, pg, now, scrape, args.max_data_points, sources, gpu, jobs))
        except CheckError as e:
            rows.append((dashboard.get('uid', '?'), '-', '-', '', 'ERROR: %s' % e, False, ''))
    rows.extend(check_jobs(prom, jobs, gpu, now))
    print_table(rows, sys.stdout, args.query_width)
    failed = [r for r in rows if not r[5]]
    sys.stdout.write('\n%d queries, %d without data or failing, %d dashboards\n' % (len(rows), len(failed), len(dashboards)))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump([dict(zip(('dashboard', 'panel', 'kind', 'query', 'result', 'ok', 'answered_by'), r)) for r in rows],
                      f, indent=2)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
