"""Learning engine: in-process metric definitions, the PostgreSQL recording API, the exporter.

``LearningMetrics`` needs only prometheus-client; ``LearningRecorder`` needs psycopg and is
imported lazily so a training process that only wants metrics does not pay for it.
"""

from aiplatform_exporters.learning.metrics import LearningMetrics  # noqa: F401


def __getattr__(name):  # PEP 562: lazy import of the database parts
    if name == "LearningRecorder":
        from aiplatform_exporters.learning.recorder import LearningRecorder

        return LearningRecorder
    raise AttributeError(name)


__all__ = ["LearningMetrics", "LearningRecorder"]
