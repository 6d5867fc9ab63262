"""Shared test helpers (import from tests as ``helpers``)."""

import datetime

from prometheus_client import CollectorRegistry


def insert_numeric(conn, model, feature, values, at, step_seconds=0.001, predictions=None, labels=None):
    """Insert numeric samples starting at ``at`` (one every ``step_seconds``)."""
    values = [float(v) for v in values]
    n = len(values)
    conn.execute(
        "INSERT INTO platform.prediction_samples (model, feature, observed_at, value_num, prediction, label) "
        "SELECT %s, %s, %s + (i - 1) * make_interval(secs => %s), v, p, l "
        "FROM unnest(%s::float8[], %s::text[], %s::text[]) WITH ORDINALITY AS u(v, p, l, i)",
        (model, feature, at, step_seconds, values, predictions or [None] * n, labels or [None] * n))


def insert_categorical(conn, model, feature, values, at, step_seconds=0.001):
    conn.execute(
        "INSERT INTO platform.prediction_samples (model, feature, observed_at, value_cat) "
        "SELECT %s, %s, %s + (i - 1) * make_interval(secs => %s), v "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS u(v, i)",
        (model, feature, at, step_seconds, [str(v) for v in values]))


def db_now(conn):
    return conn.execute("SELECT now()").fetchone()[0]


def ago(conn, **kw):
    return db_now(conn) - datetime.timedelta(**kw)


def registry_with(*collectors):
    reg = CollectorRegistry()
    for c in collectors:
        reg.register(c)
    return reg
