"""aiplatform-drift-exporter: scores drift on a schedule, serves it from PostgreSQL.

A scheduler thread scores each configured model/feature every
``interval_seconds``: it loads (or fits once and stores) the feature's
baseline, bins the current window inside PostgreSQL, writes a
``drift_reports`` row and, when enabled, a ``finetuning_requests`` row. The
scrape path reads the latest report per feature and the drift / fine-tuning
counts back from PostgreSQL (cached for ``cache_seconds``), so the values and
counters survive exporter restarts and never go backwards.
"""

import datetime
import logging
import threading
import time

from aiplatform_exporters import server
from aiplatform_exporters.config import ConfigError, DatabaseSettings
from aiplatform_exporters.db import Database, SourceError
from aiplatform_exporters.drift import store
from aiplatform_exporters.drift.core import DEFAULT_BINS, EPSILON, KINDS

log = logging.getLogger(__name__)

PREFIX = "aiplatform_drift_exporter"
DEFAULT_PORT = 19841
RETRY_SECONDS = 30  # a feature whose scoring failed on a database error is retried this soon
DEFAULTS = dict(
    interval_seconds=300,
    window_seconds=3600,
    min_window_samples=500,
    bins=DEFAULT_BINS,
    psi_threshold=0.2,
    kl_threshold=0.2,
    reference_first_seconds=86400,
    reference_min_samples=1000,
)


def _parse_time(value, key):
    if isinstance(value, datetime.datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError("%s: must be an ISO 8601 timestamp, got %r" % (key, value))
    else:
        raise ConfigError("%s: must be an ISO 8601 timestamp, got %r" % (key, value))
    if dt.tzinfo is None:
        raise ConfigError("%s: needs a time zone (for example 2025-01-01T00:00:00Z), got %r" % (key, value))
    return dt


class FeatureJob(object):
    """One model/feature: its settings and its schedule."""

    def __init__(self, model, feature, kind, interval, window, min_samples, bins, psi_threshold, kl_threshold,
                 reference_start, reference_end, reference_first_seconds, reference_min_samples):
        self.model = model
        self.feature = feature
        self.kind = kind
        self.interval = interval
        self.window = window
        self.min_samples = min_samples
        self.bins = bins
        self.psi_threshold = psi_threshold
        self.kl_threshold = kl_threshold
        self.reference_start = reference_start
        self.reference_end = reference_end
        self.reference_first_seconds = reference_first_seconds
        self.reference_min_samples = reference_min_samples

    @property
    def key(self):
        return (self.model, self.feature)


def _thresholds(reader, psi_default, kl_default):
    t = reader.sub("thresholds")
    psi = t.get("psi", float, psi_default, minimum=0.0)
    kl = t.get("kl_divergence", float, kl_default, minimum=0.0)
    t.finish()
    return psi, kl


def _reference(reader, first_default, min_default):
    ref = reader.sub("reference")
    start = ref.get("start", (str, datetime.datetime), None)
    end = ref.get("end", (str, datetime.datetime), None)
    first = ref.get("first_seconds", int, first_default, minimum=1)
    min_samples = ref.get("min_samples", int, min_default, minimum=1)
    if (start is None) != (end is None):
        raise ConfigError("%s: start and end go together" % ref.path)
    if start is not None:
        start = _parse_time(start, ref.key("start"))
        end = _parse_time(end, ref.key("end"))
        if end <= start:
            raise ConfigError("%s: must be after %s" % (ref.key("end"), ref.key("start")))
    ref.finish()
    return start, end, first, min_samples


class DriftConfig(object):
    def __init__(self, reader):
        self.database = DatabaseSettings.from_reader(reader.sub("database"), application_name="aiplatform-drift-exporter")
        d = reader.sub("drift")
        interval = d.get("interval_seconds", int, DEFAULTS["interval_seconds"], minimum=1)
        window = d.get("window_seconds", int, DEFAULTS["window_seconds"], minimum=1)
        min_samples = d.get("min_window_samples", int, DEFAULTS["min_window_samples"], minimum=1)
        bins = d.get("bins", int, DEFAULTS["bins"], minimum=2, maximum=1000)
        self.epsilon = d.get("epsilon", float, EPSILON, minimum=1e-12, maximum=0.01)
        self.cache_seconds = d.get("cache_seconds", float, 5.0, minimum=0.0, maximum=3600.0)
        self.max_categories = d.get("max_categories", int, 1000, minimum=1)
        psi_t, kl_t = _thresholds(d, DEFAULTS["psi_threshold"], DEFAULTS["kl_threshold"])
        ref_defaults = _reference(d, DEFAULTS["reference_first_seconds"], DEFAULTS["reference_min_samples"])
        ft = d.sub("finetuning")
        self.finetuning_enabled = ft.get("enabled", bool, False)
        self.finetuning_cooldown = ft.get("cooldown_seconds", int, 86400, minimum=0)
        ft.finish()
        d.finish()
        self.jobs = []
        seen = set()
        models = reader.items("models", required=True)
        if not models:
            raise ConfigError("models: needs at least one model")
        for m in models:
            name = m.get("name", str)
            features = m.items("features", required=True)
            if not features:
                raise ConfigError("%s: needs at least one feature" % m.key("features"))
            for f in features:
                fname = f.get("name", str)
                if (name, fname) in seen:
                    raise ConfigError("%s: feature %r of model %r is listed twice" % (f.key("name"), fname, name))
                seen.add((name, fname))
                kind = f.get("kind", str, "numeric", choices=KINDS)
                f_psi, f_kl = _thresholds(f, psi_t, kl_t)
                if f.has("reference"):
                    ref = _reference(f, ref_defaults[2], ref_defaults[3])
                else:
                    f._seen.add("reference")
                    ref = ref_defaults
                self.jobs.append(FeatureJob(
                    name, fname, kind,
                    interval=f.get("interval_seconds", int, interval, minimum=1),
                    window=f.get("window_seconds", int, window, minimum=1),
                    min_samples=f.get("min_window_samples", int, min_samples, minimum=1),
                    bins=f.get("bins", int, bins, minimum=2, maximum=1000),
                    psi_threshold=f_psi, kl_threshold=f_kl,
                    reference_start=ref[0], reference_end=ref[1], reference_first_seconds=ref[2],
                    reference_min_samples=ref[3]))
                f.finish()
            m.finish()
        self.models = sorted(set(j.model for j in self.jobs))


class DriftCollector(object):
    """Scrape path: the latest report per feature and the counters, from PostgreSQL."""

    def __init__(self, config, db, self_metrics, durations=None):
        self.db = db
        self.self_metrics = self_metrics
        self.durations = {} if durations is None else durations
        self.apply(config)

    def apply(self, config):
        """Serve ``config``'s features from the next scrape on (a fresh read, whatever the cache held)."""
        source = server.CachedRead(lambda: self._read(config), config.cache_seconds, self.self_metrics, log,
                                   SourceError)
        self.config, self._source = config, source

    def _read(self, config):
        pairs = [j.key for j in config.jobs]
        reports = store.latest_reports(self.db, pairs)
        detected = store.drift_detected_counts(self.db, config.models)
        triggers = store.finetuning_counts(self.db, config.models)
        return reports, detected, triggers

    def collect(self):
        config, source = self.config, self._source
        data, up, duration = source.get()
        for fam in self.self_metrics.families(up, duration, operations=("collect", "score")):
            yield fam
        scoring = server.gauge(PREFIX + "_scoring_duration_seconds")
        for job in config.jobs:
            seconds = self.durations.get(job.key)
            if seconds is not None:
                scoring.add_metric([job.model, job.feature], seconds)
        yield scoring
        if not up:
            return
        reports, detected, triggers = data
        kl = server.gauge("drift_kl_divergence")
        psi = server.gauge("drift_psi")
        samples = server.gauge("drift_window_samples")
        accuracy = server.gauge("drift_current_accuracy")
        computed = server.gauge("drift_last_computed_timestamp_seconds")
        for (model, feature), (n, kl_v, psi_v, acc, at) in sorted(reports.items()):
            labels = [model, feature]
            samples.add_metric(labels, n)
            computed.add_metric(labels, at)
            if kl_v is not None:
                kl.add_metric(labels, kl_v)
            if psi_v is not None:
                psi.add_metric(labels, psi_v)
            if acc is not None:
                accuracy.add_metric(labels, acc)
        detected_fam = server.counter("drift_detected_total")
        for job in config.jobs:
            detected_fam.add_metric([job.model, job.feature], detected.get(job.key, 0))
        trig = server.counter("finetuning_triggers_total")
        # Every configured model has its reason="drift" series (the one reason this exporter writes)
        # from the start, at 0 until a request exists: a model that never drifted shows 0, not "no data".
        counts = dict(((model, store.FINETUNING_REASON), 0) for model in config.models)
        counts.update(triggers)
        for (model, reason), n in sorted(counts.items()):
            trig.add_metric([model, reason], n)
        for fam in (kl, psi, samples, accuracy, computed, detected_fam, trig):
            yield fam


class DriftScorer(object):
    """Scheduled path: baseline (fit once), window binned in PostgreSQL, report row.

    The schedule is kept per (model, feature), apart from the config: a reload that changes a
    feature's interval reschedules it from its last run, and keeps the features it does not touch
    on their schedule.
    """

    def __init__(self, config, db, self_metrics):
        self.config = config
        self.db = db
        self.self_metrics = self_metrics
        self.durations = {}  # (model, feature) -> seconds the last scoring took
        self._last_runs = {}  # (model, feature) -> (monotonic time of the last run, whether it failed on the db)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = None

    def apply(self, config):
        """Score with ``config`` from the next run on; a scoring under way finishes with the old one."""
        keys = set(j.key for j in config.jobs)
        for key in list(self._last_runs):
            if key not in keys:
                self._last_runs.pop(key, None)
                self.durations.pop(key, None)
        self.config = config
        self._wake.set()

    def due(self, job):
        last = self._last_runs.get(job.key)
        if last is None:
            return 0.0
        at, source_failed = last
        return at + (min(job.interval, RETRY_SECONDS) if source_failed else job.interval)

    def baseline_for(self, job, now):
        baseline = store.latest_baseline(self.db, job.model, job.feature, kind=job.kind,
                                         epsilon=self.config.epsilon, on_bad_row=self.self_metrics.bad_row)
        if baseline is not None:
            return baseline
        if job.reference_start is not None:
            start, end = job.reference_start, job.reference_end
            if end > now:
                log.info("%s/%s: reference window ends %s, in the future: no baseline yet", job.model, job.feature,
                         end.isoformat())
                return None
        else:
            first = store.first_sample_time(self.db, job.model, job.feature)
            if first is None:
                log.info("%s/%s: no samples yet: no baseline", job.model, job.feature)
                return None
            start = first
            end = first + datetime.timedelta(seconds=job.reference_first_seconds)
            if end > now:
                log.info("%s/%s: reference window (first %ds of data) still filling", job.model, job.feature,
                         job.reference_first_seconds)
                return None
        try:
            baseline = store.fit_baseline(self.db, job.model, job.feature, job.kind, start, end, bins=job.bins,
                                          max_categories=self.config.max_categories, epsilon=self.config.epsilon)
        except store.NoData as exc:
            log.warning("%s", exc)
            return None
        if baseline.reference_samples < job.reference_min_samples:
            log.warning("%s/%s: the reference window holds %d samples, fewer than reference.min_samples=%d: "
                        "no baseline", job.model, job.feature, baseline.reference_samples,
                        job.reference_min_samples)
            return None
        store.save_baseline(self.db, job.model, job.feature, baseline, start, end)
        log.info("%s/%s: baseline %d fitted on %d samples (%d bins)", job.model, job.feature, baseline.id,
                 baseline.reference_samples, baseline.n_bins)
        return baseline

    def score(self, job):
        """Score one window now; returns the report id, or None when there is no baseline yet."""
        started = time.monotonic()
        now = store.db_now(self.db)
        baseline = self.baseline_for(job, now)
        if baseline is None:
            return None
        start = now - datetime.timedelta(seconds=job.window)
        counts = store.window_counts(self.db, baseline, job.model, job.feature, start, now)
        result = baseline.score_counts(counts)
        labelled, correct = store.window_accuracy(self.db, job.model, job.feature, start, now)
        accuracy = float(correct) / labelled if labelled else None
        drifted = bool(result.samples >= job.min_samples and result.psi is not None and (
            result.psi >= job.psi_threshold or result.kl_divergence >= job.kl_threshold))
        report_id, request_id = store.record_report(
            self.db, job.model, job.feature, baseline.id, start, now, result, accuracy, drifted,
            request_finetuning=drifted and self.config.finetuning_enabled,
            cooldown_seconds=self.config.finetuning_cooldown)
        self.durations[job.key] = time.monotonic() - started
        log.info("%s/%s: samples=%d psi=%s kl=%s accuracy=%s drifted=%s%s", job.model, job.feature, result.samples,
                 _fmt(result.psi), _fmt(result.kl_divergence), _fmt(accuracy), drifted,
                 " finetuning_request=%d" % request_id if request_id else "")
        return report_id

    def run_due(self, now=None):
        now = time.monotonic() if now is None else now
        for job in self.config.jobs:
            if self.due(job) > now:
                continue
            source_failed = False
            try:
                self.score(job)
            except SourceError as exc:
                self.self_metrics.error("score")
                log.warning("%s/%s: scoring failed: %s", job.model, job.feature, exc)
                source_failed = True
            except Exception:  # noqa: BLE001 - one feature must never stop the others
                self.self_metrics.error("score")
                log.exception("%s/%s: scoring failed", job.model, job.feature)
            self._last_runs[job.key] = (now, source_failed)

    def _loop(self):
        while not self._stop.is_set():
            self.run_due()
            due = min(self.due(j) for j in self.config.jobs)
            self._wake.wait(max(0.2, min(5.0, due - time.monotonic())))
            self._wake.clear()

    def start(self):
        self._thread = threading.Thread(target=self._loop, name="drift-scorer", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.db.close()


def _fmt(v):
    return "none" if v is None else "%.6g" % v


# What a reload reports, by name: per feature (FeatureJob attributes) and for the whole exporter.
_JOB_SETTINGS = (
    ("psi/kl thresholds", ("psi_threshold", "kl_threshold")),
    ("kind", ("kind",)),
    ("interval_seconds", ("interval",)),
    ("window_seconds", ("window",)),
    ("min_window_samples", ("min_samples",)),
    ("bins", ("bins",)),
    ("reference", ("reference_start", "reference_end", "reference_first_seconds", "reference_min_samples")),
)
_EXPORTER_SETTINGS = (
    ("epsilon", "epsilon"),
    ("cache_seconds", "cache_seconds"),
    ("max_categories", "max_categories"),
    ("finetuning.enabled", "finetuning_enabled"),
    ("finetuning.cooldown_seconds", "finetuning_cooldown"),
)


def _show(values):
    return "/".join("%g" % v if isinstance(v, float) else str(v) for v in values)


def _job_changes(old_jobs, new_jobs):
    changes = []
    common = [k for k in new_jobs if k in old_jobs]
    for label, attrs in _JOB_SETTINGS:
        diffs = []
        for key in common:
            before = tuple(getattr(old_jobs[key], a) for a in attrs)
            after = tuple(getattr(new_jobs[key], a) for a in attrs)
            if before != after:
                diffs.append((key, "%s -> %s" % (_show(before), _show(after))))
        if diffs and len(diffs) == len(common) and len(set(d for _, d in diffs)) == 1:
            changes.append("%s %s" % (label, diffs[0][1]))
        elif diffs:
            changes.append("%s %s" % (label, ", ".join("%s/%s %s" % (k[0], k[1], d) for k, d in diffs)))
    return changes


def _features(keys):
    return ", ".join("%s/%s" % k for k in keys)


def _database_changes(old, new):
    changes = []
    for name, before in sorted(vars(old).items()):
        after = getattr(new, name)
        if before != after:
            key = name + "_seconds" if name.endswith("_timeout") else name
            changes.append("database.%s %s -> %s" % (key, before, after))
    return changes


def config_changes(old, new):
    """What differs between two DriftConfigs, as short strings for the reload log line."""
    old_jobs = dict((j.key, j) for j in old.jobs)
    new_jobs = dict((j.key, j) for j in new.jobs)
    changes = _job_changes(old_jobs, new_jobs)
    added = [k for k in new_jobs if k not in old_jobs]
    removed = [k for k in old_jobs if k not in new_jobs]
    if added:
        changes.append("features added: " + _features(added))
    if removed:
        changes.append("features removed: " + _features(removed))
    for label, attr in _EXPORTER_SETTINGS:
        if getattr(old, attr) != getattr(new, attr):
            changes.append("%s %s -> %s" % (label, _show([getattr(old, attr)]), _show([getattr(new, attr)])))
    changes += _database_changes(old.database, new.database)
    return changes


class DriftExporter(object):
    metrics_prefix = PREFIX

    def __init__(self, config, environ=None):
        self.config = config
        self.self_metrics = server.SelfMetrics(PREFIX)
        self.scorer = DriftScorer(config, Database(config.database, environ), self.self_metrics)
        self.collector = DriftCollector(config, Database(config.database, environ), self.self_metrics,
                                        durations=self.scorer.durations)

    def collectors(self):
        return [self.collector]

    def reload(self, reader):
        """Check the new file (ConfigError: nothing changed), then apply it; returns what changed."""
        config = DriftConfig(reader)
        reader.finish()
        return self.apply(config)

    def apply(self, config):
        old, self.config = self.config, config
        changes = config_changes(old, config)
        if vars(old.database) != vars(config.database):
            self.scorer.db.reconfigure(config.database)
            self.collector.db.reconfigure(config.database)
        self.scorer.apply(config)
        self.collector.apply(config)
        return changes

    def start(self):
        self.scorer.start()

    def stop(self):
        self.scorer.stop()
        self.collector.db.close()


def build(reader):
    return DriftExporter(DriftConfig(reader))


def main(argv=None):
    return server.run("aiplatform-drift-exporter", "Model drift (PSI, KL) from PostgreSQL for Prometheus.",
                      DEFAULT_PORT, build, argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
