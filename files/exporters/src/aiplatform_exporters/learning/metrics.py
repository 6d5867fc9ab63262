"""The learning engine's in-process metrics, registered on the registry you pass.

Nothing is registered at import time. A training process does::

    from prometheus_client import REGISTRY, start_http_server
    from aiplatform_exporters.learning import LearningMetrics

    metrics = LearningMetrics(REGISTRY)          # or a CollectorRegistry of its own
    metrics.training_loss.labels(model="llm-main").set(0.42)
    metrics.observe_run(model="llm-main", trigger="drift", status="succeeded", duration_seconds=812.0,
                        samples=50000, training_loss=0.41, validation_loss=0.47, ewc_lambda=0.4)

The names, types and labels are the catalog's (``aiplatform_exporters.catalog``)
and the same the learning exporter serves from PostgreSQL, so dashboards work
whether the training process or the exporter is scraped.
"""

from prometheus_client import Counter, Gauge

from aiplatform_exporters import catalog

# attribute name -> catalog name
_DEFINITIONS = (
    ("training_loss", "training_loss"),
    ("validation_loss", "validation_loss"),
    ("ewc_lambda", "ewc_lambda"),
    ("ewc_penalty", "ewc_penalty"),
    ("training_duration_seconds", "training_duration_seconds"),
    ("training_samples", "training_samples_total"),
    ("training_runs", "training_runs_total"),
    ("training_in_progress", "training_in_progress"),
    ("last_training_timestamp_seconds", "last_training_timestamp_seconds"),
    ("training_epoch", "training_epoch"),
    ("training_steps", "training_steps_total"),
    ("learning_rate", "learning_rate"),
    ("gradient_norm", "gradient_norm"),
    ("lora_versions", "lora_versions_total"),
    ("lora_active_version_info", "lora_active_version_info"),
    ("lora_rank", "lora_rank"),
    ("finetuning_triggers", "finetuning_triggers_total"),
    ("fisher_matrix_size_bytes", "fisher_matrix_size_bytes"),
    ("fisher_computation_duration_seconds", "fisher_computation_duration_seconds"),
    ("replay_buffer_size", "replay_buffer_size"),
    ("replay_buffer_capacity", "replay_buffer_capacity"),
    ("model_accuracy", "model_accuracy"),
)


class LearningMetrics(object):
    """Creates the learning engine's metrics on ``registry`` (required: no hidden global)."""

    NAMES = tuple(name for _, name in _DEFINITIONS)

    def __init__(self, registry):
        if registry is None:
            raise ValueError("LearningMetrics needs a registry (prometheus_client.REGISTRY or a CollectorRegistry)")
        self.registry = registry
        for attr, name in _DEFINITIONS:
            entry = catalog.spec(name)
            cls = Counter if entry.type == "counter" else Gauge
            metric = cls(catalog.family_name(name), entry.help, labelnames=entry.labels, registry=registry)
            setattr(self, attr, metric)
        self._active = {}

    def observe_run(self, model, trigger, status, duration_seconds=None, samples=None, training_loss=None,
                    validation_loss=None, ewc_lambda=None, fisher_matrix_size_bytes=None, replay_buffer_size=None,
                    replay_buffer_capacity=None, finished_at=None):
        """Record a finished training run (the in-process mirror of ``record_training_run``)."""
        self.training_runs.labels(model=model, trigger=trigger, status=status).inc()
        if samples and status == "succeeded":
            self.training_samples.labels(model=model).inc(samples)
        for attr, value in (("training_duration_seconds", duration_seconds), ("training_loss", training_loss),
                            ("validation_loss", validation_loss), ("ewc_lambda", ewc_lambda),
                            ("fisher_matrix_size_bytes", fisher_matrix_size_bytes),
                            ("replay_buffer_size", replay_buffer_size),
                            ("replay_buffer_capacity", replay_buffer_capacity)):
            if value is not None:
                getattr(self, attr).labels(model=model).set(value)
        if finished_at is not None:
            self.last_training_timestamp_seconds.labels(model=model).set(finished_at)
        else:
            self.last_training_timestamp_seconds.labels(model=model).set_to_current_time()

    def observe_lora_version(self, model, version_id, active=False, accuracy=None):
        """Count a new LoRA version; when ``active``, move the info series to it."""
        self.lora_versions.labels(model=model).inc()
        if active:
            previous = self._active.get(model)
            if previous is not None and previous != version_id:
                try:
                    self.lora_active_version_info.remove(model, previous)
                except KeyError:
                    pass
            self.lora_active_version_info.labels(model=model, version_id=version_id).set(1)
            self._active[model] = version_id
            if accuracy is not None:
                self.model_accuracy.labels(model=model).set(accuracy)

    def trigger_finetuning(self, model, reason):
        self.finetuning_triggers.labels(model=model, reason=reason).inc()
