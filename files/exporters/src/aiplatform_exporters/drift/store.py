"""Drift baselines, windows and reports in PostgreSQL.

Windows are binned inside PostgreSQL: ``width_bucket(value_num, edges)`` with
``GROUP BY`` for numeric features (the same bin as numpy's
``searchsorted(edges, v, side="right")``), ``array_position(categories,
value_cat)`` for categorical ones. Only one row per bin crosses the wire, so
memory does not depend on the window's size. Reference quantiles come from
``percentile_cont`` (numpy's default "linear" method).

Numeric bin edges are stored in ``drift_baselines.bin_edges`` as the interior
edges only (the outer bins are open); categorical baselines store their
categories, and ``reference_shares`` has one more entry than there are
categories: the share of "categories the reference never had" (0 at fit time).
"""

import logging

import numpy as np

from aiplatform_exporters.db import SourceError
from aiplatform_exporters.drift.core import EPSILON, Baseline

log = logging.getLogger(__name__)

# finetuning_requests.reason of the requests this exporter inserts
FINETUNING_REASON = "drift"

FINITE_NUMERIC = ("value_num IS NOT NULL AND value_num <> 'NaN'::float8 "
                  "AND value_num <> 'Infinity'::float8 AND value_num <> '-Infinity'::float8")
WINDOW = "model = %(model)s AND feature = %(feature)s AND observed_at >= %(start)s AND observed_at < %(end)s"


class NoData(Exception):
    """The requested window holds no usable samples."""


def db_now(db):
    with db.cursor() as cur:
        cur.execute("SELECT now()")
        return cur.fetchone()[0]


def first_sample_time(db, model, feature):
    with db.cursor() as cur:
        cur.execute("SELECT min(observed_at) FROM %s WHERE model = %%s AND feature = %%s"
                    % db.table("prediction_samples"), (model, feature))
        return cur.fetchone()[0]


def _params(model, feature, start, end, **extra):
    params = dict(model=model, feature=feature, start=start, end=end)
    params.update(extra)
    return params


def numeric_window_counts(db, edges, model, feature, start, end):
    edges = [float(e) for e in edges]
    counts = np.zeros(len(edges) + 1, dtype=np.int64)
    sql = ("SELECT width_bucket(value_num, %%(edges)s::float8[]) AS bin, count(*) FROM %s "
           "WHERE %s AND %s GROUP BY 1" % (db.table("prediction_samples"), WINDOW, FINITE_NUMERIC))
    with db.cursor() as cur:
        cur.execute(sql, _params(model, feature, start, end, edges=edges))
        for bin_index, n in cur.fetchall():
            counts[int(bin_index)] += int(n)
    return counts


def categorical_window_counts(db, categories, model, feature, start, end):
    counts = np.zeros(len(categories) + 1, dtype=np.int64)
    sql = ("SELECT coalesce(array_position(%%(categories)s::text[], value_cat), 0) AS pos, count(*) FROM %s "
           "WHERE %s AND value_cat IS NOT NULL GROUP BY 1" % (db.table("prediction_samples"), WINDOW))
    with db.cursor() as cur:
        cur.execute(sql, _params(model, feature, start, end, categories=list(categories)))
        for pos, n in cur.fetchall():
            pos = int(pos)
            counts[pos - 1 if pos > 0 else len(categories)] += int(n)
    return counts


def window_counts(db, baseline, model, feature, start, end):
    if baseline.kind == "numeric":
        return numeric_window_counts(db, baseline.edges, model, feature, start, end)
    return categorical_window_counts(db, baseline.categories, model, feature, start, end)


def window_accuracy(db, model, feature, start, end):
    """(labelled samples, correct predictions) in the window."""
    sql = ("SELECT count(*) FILTER (WHERE label IS NOT NULL AND prediction IS NOT NULL), "
           "count(*) FILTER (WHERE label IS NOT NULL AND prediction = label) FROM %s WHERE %s"
           % (db.table("prediction_samples"), WINDOW))
    with db.cursor() as cur:
        cur.execute(sql, _params(model, feature, start, end))
        labelled, correct = cur.fetchone()
    return int(labelled), int(correct)


def fit_baseline(db, model, feature, kind, start, end, bins=10, max_categories=1000, epsilon=EPSILON):
    """Fit a baseline on the reference window inside PostgreSQL (not saved)."""
    if kind == "numeric":
        qs = [float(q) for q in np.linspace(0.0, 1.0, int(bins) + 1)[1:-1]]
        sql = ("SELECT percentile_cont(%%(qs)s::float8[]) WITHIN GROUP (ORDER BY value_num), count(*) FROM %s "
               "WHERE %s AND %s" % (db.table("prediction_samples"), WINDOW, FINITE_NUMERIC))
        with db.cursor() as cur:
            cur.execute(sql, _params(model, feature, start, end, qs=qs))
            quantiles, n = cur.fetchone()
        if not n:
            raise NoData("no numeric samples for %s/%s in the reference window" % (model, feature))
        edges = np.unique(np.asarray(quantiles, dtype=float))
        counts = numeric_window_counts(db, edges, model, feature, start, end)
        baseline = Baseline.from_counts("numeric", counts, edges=edges, epsilon=epsilon,
                                        window_start=start, window_end=end)
    else:
        sql = ("SELECT value_cat, count(*) FROM %s WHERE %s AND value_cat IS NOT NULL "
               "GROUP BY 1 ORDER BY 2 DESC, 1" % (db.table("prediction_samples"), WINDOW))
        categories, counts, other = [], [], 0
        with db.cursor() as cur:
            cur.execute(sql, _params(model, feature, start, end))
            for value, n in cur:
                if len(categories) < max_categories:
                    categories.append(value)
                    counts.append(int(n))
                else:
                    other += int(n)
        if not categories:
            raise NoData("no categorical samples for %s/%s in the reference window" % (model, feature))
        order = sorted(range(len(categories)), key=lambda i: categories[i])
        baseline = Baseline.from_counts("categorical", [counts[i] for i in order] + [other],
                                        categories=[categories[i] for i in order], epsilon=epsilon,
                                        window_start=start, window_end=end)
    return baseline


def save_baseline(db, model, feature, baseline, window_start=None, window_end=None):
    window_start = window_start or baseline.window_start
    window_end = window_end or baseline.window_end
    if window_start is None or window_end is None:
        raise ValueError("a stored baseline needs the window it came from")
    sql = ("INSERT INTO %s (model, feature, kind, bin_edges, categories, reference_shares, reference_samples, "
           "window_start, window_end) VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s) RETURNING id"
           % db.table("drift_baselines"))
    edges = None if baseline.edges is None else [float(e) for e in baseline.edges]
    with db.cursor() as cur:
        cur.execute(sql, (model, feature, baseline.kind, edges, baseline.categories,
                          [float(s) for s in baseline.reference_shares], baseline.reference_samples,
                          window_start, window_end))
        baseline.id = cur.fetchone()[0]
    baseline.window_start, baseline.window_end = window_start, window_end
    return baseline.id


def latest_baseline(db, model, feature, kind=None, epsilon=EPSILON, on_bad_row=None, candidates=5):
    """The newest valid stored baseline for model/feature (of ``kind`` when given), or None.

    A row that does not make a valid baseline (shares of the wrong length, edges
    out of order, ...) is logged, reported through ``on_bad_row`` and skipped.
    """
    sql = ("SELECT id, kind, bin_edges, categories, reference_shares, reference_samples, window_start, window_end "
           "FROM %s WHERE model = %%s AND feature = %%s ORDER BY created_at DESC, id DESC LIMIT %d"
           % (db.table("drift_baselines"), int(candidates)))
    with db.cursor() as cur:
        cur.execute(sql, (model, feature))
        rows = cur.fetchall()
    for row_id, row_kind, edges, categories, shares, samples, start, end in rows:
        if kind is not None and row_kind != kind:
            log.info("baseline %d of %s/%s is %s, the config says %s: not used", row_id, model, feature,
                     row_kind, kind)
            return None
        try:
            return Baseline(row_kind, shares, samples, edges=edges, categories=categories, epsilon=epsilon,
                            baseline_id=row_id, window_start=start, window_end=end)
        except (ValueError, TypeError) as exc:
            log.warning("drift_baselines row %d (%s/%s) skipped: %s", row_id, model, feature, exc)
            if on_bad_row is not None:
                on_bad_row("drift_baselines")
    return None


def insert_report(cur, table, model, feature, baseline_id, start, end, score, accuracy, drifted):
    cur.execute(
        "INSERT INTO %s (model, feature, baseline_id, window_start, window_end, sample_count, kl_divergence, psi, "
        "accuracy, drifted) VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s) RETURNING id" % table,
        (model, feature, baseline_id, start, end, score.samples, score.kl_divergence, score.psi, accuracy, drifted))
    return cur.fetchone()[0]


def record_report(db, model, feature, baseline_id, start, end, score, accuracy, drifted,
                  request_finetuning=False, cooldown_seconds=86400):
    """Insert the report and, when asked and outside the cooldown, a finetuning request.

    One transaction; an advisory lock per model serialises concurrent
    exporters so two of them never both pass the cooldown check.
    Returns (report_id, request_id or None).
    """
    request_id = None
    with db.cursor(transaction=True) as cur:
        report_id = insert_report(cur, db.table("drift_reports"), model, feature, baseline_id, start, end, score,
                                  accuracy, drifted)
        if request_finetuning:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("aiplatform-finetuning:" + model,))
            cur.execute("SELECT count(*) FROM %s WHERE model = %%s AND requested_at > now() - make_interval(secs => %%s)"
                        % db.table("finetuning_requests"), (model, float(cooldown_seconds)))
            if cur.fetchone()[0] == 0:
                cur.execute("INSERT INTO %s (model, reason, drift_report_id) VALUES (%%s, %%s, %%s) RETURNING id"
                            % db.table("finetuning_requests"), (model, FINETUNING_REASON, report_id))
                request_id = cur.fetchone()[0]
    return report_id, request_id


def latest_reports(db, pairs):
    """{(model, feature): (samples, kl, psi, accuracy, computed_at_epoch)} for the given pairs."""
    if not pairs:
        return {}
    models = [p[0] for p in pairs]
    features = [p[1] for p in pairs]
    sql = ("SELECT c.model, c.feature, r.sample_count, r.kl_divergence, r.psi, r.accuracy, "
           "extract(epoch FROM r.computed_at)::float8 FROM unnest(%%s::text[], %%s::text[]) AS c(model, feature) "
           "CROSS JOIN LATERAL (SELECT sample_count, kl_divergence, psi, accuracy, computed_at FROM %s d "
           "WHERE d.model = c.model AND d.feature = c.feature ORDER BY d.computed_at DESC, d.id DESC LIMIT 1) r"
           % db.table("drift_reports"))
    with db.cursor() as cur:
        cur.execute(sql, (models, features))
        return dict(((m, f), rest) for m, f, *rest in cur.fetchall())


def drift_detected_counts(db, models):
    sql = ("SELECT model, feature, count(*) FROM %s WHERE drifted AND model = ANY(%%s) GROUP BY 1, 2"
           % db.table("drift_reports"))
    with db.cursor() as cur:
        cur.execute(sql, (list(models),))
        return dict(((m, f), int(n)) for m, f, n in cur.fetchall())


def finetuning_counts(db, models):
    sql = "SELECT model, reason, count(*) FROM %s WHERE model = ANY(%%s) GROUP BY 1, 2" % db.table(
        "finetuning_requests")
    with db.cursor() as cur:
        cur.execute(sql, (list(models),))
        return dict(((m, r), int(n)) for m, r, n in cur.fetchall())


__all__ = [
    "NoData", "SourceError", "categorical_window_counts", "db_now", "drift_detected_counts", "finetuning_counts",
    "first_sample_time", "fit_baseline", "insert_report", "latest_baseline", "latest_reports",
    "numeric_window_counts", "record_report", "save_baseline", "window_accuracy", "window_counts",
]
