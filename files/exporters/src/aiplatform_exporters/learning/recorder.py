"""Record training runs and LoRA versions into PostgreSQL (as the schema owner role).

    from aiplatform_exporters.learning import LearningRecorder

    rec = LearningRecorder.connect("host=db.example dbname=ai_platform user=ai_user")  # password: PGPASSWORD,
    run = rec.start_training_run("llm-main", trigger="drift")                             # ~/.pgpass, ...
    rec.record_lora_version("llm-main-v7", "llm-main", metrics_summary={"accuracy": 0.91})
    rec.finish_training_run(run, "succeeded", training_loss=0.41, validation_loss=0.47, samples=50000,
                            lora_version_id="llm-main-v7")
    rec.activate_lora_version("llm-main-v7")   # the previous active version is deactivated atomically
"""

import json
import re

import psycopg

_RUN_FIELDS = ("training_loss", "validation_loss", "ewc_lambda", "samples", "fisher_matrix_size_bytes",
               "replay_buffer_size", "replay_buffer_capacity", "lora_version_id")
TRIGGERS = ("drift", "manual", "schedule")
STATUSES = ("running", "succeeded", "failed", "cancelled")


class LearningRecorder(object):
    def __init__(self, connection, schema="platform"):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", schema):
            raise ValueError("schema must be a plain SQL identifier, got %r" % (schema,))
        self.conn = connection
        self.schema = schema

    @classmethod
    def connect(cls, conninfo="", schema="platform", **kwargs):
        return cls(psycopg.connect(conninfo, autocommit=True, **kwargs), schema=schema)

    def close(self):
        self.conn.close()

    def _t(self, name):
        return "%s.%s" % (self.schema, name)

    def _tx(self):
        return self.conn.transaction()

    # ------------------------------------------------------------------ training runs
    def start_training_run(self, model, trigger, started_at=None):
        if trigger not in TRIGGERS:
            raise ValueError("trigger must be one of %s, got %r" % (", ".join(TRIGGERS), trigger))
        with self._tx(), self.conn.cursor() as cur:
            cur.execute("INSERT INTO %s (model, trigger, started_at) VALUES (%%s, %%s, coalesce(%%s, now())) "
                        "RETURNING id" % self._t("training_runs"), (model, trigger, started_at))
            return cur.fetchone()[0]

    def finish_training_run(self, run_id, status, finished_at=None, **fields):
        if status not in STATUSES or status == "running":
            raise ValueError("status must be one of succeeded, failed, cancelled, got %r" % (status,))
        unknown = set(fields) - set(_RUN_FIELDS)
        if unknown:
            raise ValueError("unknown training run field(s): %s" % ", ".join(sorted(unknown)))
        names = sorted(fields)
        sets = "".join(", %s = %%s" % n for n in names)
        with self._tx(), self.conn.cursor() as cur:
            cur.execute("UPDATE %s SET status = %%s, finished_at = coalesce(%%s, now())%s WHERE id = %%s "
                        "AND status = 'running' RETURNING id" % (self._t("training_runs"), sets),
                        [status, finished_at] + [fields[n] for n in names] + [run_id])
            if cur.fetchone() is None:
                raise LookupError("training run %r does not exist or is not running" % (run_id,))

    def record_training_run(self, model, trigger, status, started_at, finished_at=None, **fields):
        """Insert a complete run in one statement (for runs recorded after the fact)."""
        if trigger not in TRIGGERS:
            raise ValueError("trigger must be one of %s, got %r" % (", ".join(TRIGGERS), trigger))
        if status not in STATUSES:
            raise ValueError("status must be one of %s, got %r" % (", ".join(STATUSES), status))
        unknown = set(fields) - set(_RUN_FIELDS)
        if unknown:
            raise ValueError("unknown training run field(s): %s" % ", ".join(sorted(unknown)))
        names = sorted(fields)
        cols = ", ".join(["model", "trigger", "status", "started_at", "finished_at"] + names)
        marks = ", ".join(["%s"] * (5 + len(names)))
        with self._tx(), self.conn.cursor() as cur:
            cur.execute("INSERT INTO %s (%s) VALUES (%s) RETURNING id" % (self._t("training_runs"), cols, marks),
                        [model, trigger, status, started_at, finished_at] + [fields[n] for n in names])
            return cur.fetchone()[0]

    # ------------------------------------------------------------------ LoRA versions
    def record_lora_version(self, version_id, base_model, metrics_summary=None, activate=False, created_at=None):
        with self._tx(), self.conn.cursor() as cur:
            cur.execute("INSERT INTO %s (version_id, base_model, metrics_summary, created_at) "
                        "VALUES (%%s, %%s, %%s::jsonb, coalesce(%%s, now()))" % self._t("lora_versions"),
                        (version_id, base_model, json.dumps(metrics_summary or {}), created_at))
            if activate:
                self._activate(cur, version_id)

    def activate_lora_version(self, version_id):
        """Make ``version_id`` the active version of its base model; the previous one is
        deactivated in the same transaction (the database allows one active per model)."""
        with self._tx(), self.conn.cursor() as cur:
            self._activate(cur, version_id)

    def _activate(self, cur, version_id):
        cur.execute("SELECT base_model FROM %s WHERE version_id = %%s FOR UPDATE" % self._t("lora_versions"),
                    (version_id,))
        row = cur.fetchone()
        if row is None:
            raise LookupError("LoRA version %r does not exist" % (version_id,))
        base_model = row[0]
        # serialise activations of one base model (two concurrent activations would otherwise both
        # pass the deactivate step and one would hit the unique index)
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("aiplatform-lora:" + base_model,))
        cur.execute("UPDATE %s SET is_active = false WHERE base_model = %%s AND is_active AND version_id <> %%s"
                    % self._t("lora_versions"), (base_model, version_id))
        cur.execute("UPDATE %s SET is_active = true, deployed_at = now() WHERE version_id = %%s"
                    % self._t("lora_versions"), (version_id,))

    # ------------------------------------------------------------------ fine-tuning requests
    def request_finetuning(self, model, reason="manual", drift_report_id=None):
        if reason not in ("drift", "manual"):
            raise ValueError("reason must be drift or manual, got %r" % (reason,))
        with self._tx(), self.conn.cursor() as cur:
            cur.execute("INSERT INTO %s (model, reason, drift_report_id) VALUES (%%s, %%s, %%s) RETURNING id"
                        % self._t("finetuning_requests"), (model, reason, drift_report_id))
            return cur.fetchone()[0]
