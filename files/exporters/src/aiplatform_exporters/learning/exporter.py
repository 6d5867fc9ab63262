"""aiplatform-learning-exporter: the learning engine's metrics, served from PostgreSQL.

Same names as ``LearningMetrics`` (the in-process definitions), computed from
``training_runs`` and ``lora_versions``: gauges from the latest finished run
per model, counters as counts and sums over all rows, so they never go
backwards when the exporter or the training process restarts.
``finetuning_triggers_total`` is served by the drift exporter (one source per
series, so sums do not double-count).
"""

import json
import logging
import math

from aiplatform_exporters import server
from aiplatform_exporters.config import ConfigError, DatabaseSettings
from aiplatform_exporters.db import Database, SourceError

log = logging.getLogger(__name__)

PREFIX = "aiplatform_learning_exporter"
DEFAULT_PORT = 19842


class LearningConfig(object):
    def __init__(self, reader):
        self.database = DatabaseSettings.from_reader(reader.sub("database"),
                                                     application_name="aiplatform-learning-exporter")
        section = reader.sub("learning")
        self.cache_seconds = section.get("cache_seconds", float, 5.0, minimum=0.0, maximum=3600.0)
        models = section.get("models", list, [])
        for i, m in enumerate(models):
            if not isinstance(m, str) or not m:
                raise ConfigError("%s[%d]: must be a non-empty string, got %r" % (section.key("models"), i, m))
        self.models = list(models)
        section.finish()


def _accuracy(summary):
    """metrics_summary.accuracy as a float in [0, 1], or raise ValueError."""
    if isinstance(summary, str):
        summary = json.loads(summary)
    if not isinstance(summary, dict):
        raise ValueError("metrics_summary is not a JSON object")
    if "accuracy" not in summary or summary["accuracy"] is None:
        return None
    value = summary["accuracy"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("metrics_summary.accuracy is not a number: %r" % (value,))
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError("metrics_summary.accuracy is not within 0..1: %r" % (value,))
    return value


class LearningCollector(object):
    GAUGES = ("training_loss", "validation_loss", "ewc_lambda", "training_duration_seconds",
              "fisher_matrix_size_bytes", "replay_buffer_size", "replay_buffer_capacity",
              "last_training_timestamp_seconds")

    def __init__(self, config, db, self_metrics=None):
        self.config = config
        self.db = db
        self.self_metrics = self_metrics or server.SelfMetrics(PREFIX)
        self._source = server.CachedRead(self._read, self.config.cache_seconds, self.self_metrics, log, SourceError)

    def _where(self, column, params):
        if not self.config.models:
            return ""
        params.append(list(self.config.models))
        return " AND %s = ANY(%%s)" % column

    def _read(self):
        db = self.db
        out = {}
        with db.cursor() as cur:
            params = []
            cur.execute(
                "SELECT DISTINCT ON (model) model, training_loss, validation_loss, ewc_lambda, "
                "extract(epoch FROM finished_at - started_at)::float8, fisher_matrix_size_bytes, replay_buffer_size, "
                "replay_buffer_capacity, extract(epoch FROM finished_at)::float8 FROM %s "
                "WHERE finished_at IS NOT NULL%s ORDER BY model, finished_at DESC, id DESC"
                % (db.table("training_runs"), self._where("model", params)), params)
            out["latest"] = cur.fetchall()
            params = []
            cur.execute(
                "SELECT model, trigger, status, count(*), coalesce(sum(samples) FILTER (WHERE status = 'succeeded'), 0)"
                "::float8 FROM %s WHERE true%s GROUP BY 1, 2, 3"
                % (db.table("training_runs"), self._where("model", params)), params)
            out["runs"] = cur.fetchall()
            params = []
            cur.execute("SELECT base_model, count(*) FROM %s WHERE true%s GROUP BY 1"
                        % (db.table("lora_versions"), self._where("base_model", params)), params)
            out["lora"] = cur.fetchall()
            params = []
            cur.execute("SELECT base_model, version_id, metrics_summary FROM %s WHERE is_active%s"
                        % (db.table("lora_versions"), self._where("base_model", params)), params)
            out["active"] = cur.fetchall()
        return out

    def collect(self):
        data, up, duration = self._source.get()
        for fam in self.self_metrics.families(up, duration):
            yield fam
        if not up:
            return
        fams = dict((name, server.gauge(name)) for name in self.GAUGES)
        for row in data["latest"]:
            model = row[0]
            for name, value in zip(self.GAUGES, row[1:]):
                if value is not None:
                    fams[name].add_metric([model], float(value))
        samples = {}
        runs = server.counter("training_runs_total")
        running = server.gauge("training_in_progress")
        in_progress = {}
        for model, trigger, status, n, n_samples in sorted(data["runs"]):
            samples[model] = samples.get(model, 0.0) + n_samples
            if status == "running":
                in_progress[model] = in_progress.get(model, 0) + n
            else:
                runs.add_metric([model, trigger, status], n)
        for model in sorted(set(samples)):
            running.add_metric([model], in_progress.get(model, 0))
        samples_fam = server.counter("training_samples_total")
        for model in sorted(samples):
            samples_fam.add_metric([model], samples[model])
        lora = server.counter("lora_versions_total")
        for model, n in sorted(data["lora"]):
            lora.add_metric([model], n)
        active = server.gauge("lora_active_version_info")
        accuracy = server.gauge("model_accuracy")
        for model, version_id, summary in sorted(data["active"], key=lambda r: r[0]):
            active.add_metric([model, version_id], 1)
            try:
                value = _accuracy(summary)
            except (ValueError, TypeError) as exc:
                log.warning("lora_versions row %r skipped for model_accuracy: %s", version_id, exc)
                self.self_metrics.bad_row("lora_versions")
                continue
            if value is not None:
                accuracy.add_metric([model], value)
        for fam in list(fams.values()) + [runs, running, samples_fam, lora, active, accuracy]:
            yield fam


class LearningExporter(object):
    def __init__(self, config, environ=None):
        self.config = config
        self.collector = LearningCollector(config, Database(config.database, environ))

    def collectors(self):
        return [self.collector]

    def stop(self):
        self.collector.db.close()


def build(reader):
    return LearningExporter(LearningConfig(reader))


def main(argv=None):
    return server.run("aiplatform-learning-exporter",
                      "Learning-engine metrics (training runs, LoRA versions) from PostgreSQL for Prometheus.",
                      DEFAULT_PORT, build, argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
