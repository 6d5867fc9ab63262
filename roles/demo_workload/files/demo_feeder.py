"""aiplatform-demo-feeder: writes a learning engine's records into PostgreSQL, for labs and demos.

As the schema owner role (like the platform and the learning engine do), every
`tick_seconds`:

* prediction samples for every configured model/feature, whose distribution
  drifts along a cycle (`drift.period_seconds`): numeric features shift their
  mean and widen, categorical ones move weight to other categories, and the
  predictions get worse while the drift lasts, so PSI, KL and accuracy cross
  the dashboards' thresholds and come back;
* on first start, a stable history of `backfill_seconds` (so the drift
  exporter has a reference window at once);
* training runs (scheduled every `training.interval_seconds`, and one per
  pending fine-tuning request the drift exporter raised), each producing a
  LoRA version that becomes the active one of its base model.

The password comes from $CREDENTIALS_DIRECTORY/db_password (systemd LoadCredential=).

    python demo_feeder.py --config /etc/aiplatform-exporters/demo-feeder.yml
"""

import argparse
import datetime
import logging
import math
import os
import random
import signal
import sys
import threading
import time

import psycopg
import yaml

from aiplatform_exporters.learning.recorder import LearningRecorder

log = logging.getLogger("aiplatform-demo-feeder")
UTC = datetime.timezone.utc


class ConfigError(Exception):
    pass


def load_config(path):
    with open(path) as fh:
        cfg = yaml.safe_load(fh) or {}
    db = cfg.get("database") or {}
    for key in ("host", "port", "dbname", "user"):
        if key not in db:
            raise ConfigError("database.%s: is required" % key)
    models = cfg.get("models") or []
    if not models:
        raise ConfigError("models: needs at least one model with features")
    for i, m in enumerate(models):
        if not m.get("name") or not m.get("features"):
            raise ConfigError("models[%d]: needs name and features" % i)
        for j, f in enumerate(m["features"]):
            if f.get("kind", "numeric") not in ("numeric", "categorical") or not f.get("name"):
                raise ConfigError("models[%d].features[%d]: needs name and kind numeric or categorical" % (i, j))
    cfg.setdefault("schema", "platform")
    cfg.setdefault("tick_seconds", 10)
    cfg.setdefault("samples_per_tick", 40)
    cfg.setdefault("backfill_seconds", 90000)
    cfg.setdefault("backfill_samples", 3000)
    cfg.setdefault("drift", {})
    cfg["drift"].setdefault("period_seconds", 1800)
    cfg["drift"].setdefault("max_shift", 1.5)
    cfg.setdefault("training", {})
    cfg["training"].setdefault("interval_seconds", 600)
    cfg["training"].setdefault("duration_seconds", 120)
    return cfg


def drift_level(now, period):
    """0 .. 1 .. 0 over one period: stable for the first third, then up and down."""
    phase = (now % period) / period
    if phase < 1.0 / 3:
        return 0.0
    return math.sin((phase - 1.0 / 3) * 1.5 * math.pi)


class FeatureModel(object):
    """The generating distribution of one feature, given the drift level."""

    CATEGORIES = ("billing", "search", "code", "legal", "support", "other")

    def __init__(self, name, kind, seed):
        rng = random.Random(seed)
        self.name = name
        self.kind = kind
        self.mean = rng.uniform(50, 500)
        self.sd = self.mean * rng.uniform(0.1, 0.3)
        base = [rng.uniform(1, 5) for _ in self.CATEGORIES]
        self.p0 = [b / sum(base) for b in base]
        self.p1 = list(reversed(self.p0))

    def sample(self, rng, level, max_shift):
        if self.kind == "numeric":
            return rng.gauss(self.mean + level * max_shift * self.sd, self.sd * (1 + 0.3 * level)), None
        weights = [(1 - level) * a + level * b for a, b in zip(self.p0, self.p1)]
        return None, rng.choices(self.CATEGORIES, weights)[0]


class Feeder(object):
    def __init__(self, cfg, conn, rng=None):
        self.cfg = cfg
        self.conn = conn
        self.schema = cfg["schema"]
        self.rng = rng or random.Random()
        self.recorder = LearningRecorder(conn, schema=self.schema)
        self.features = []
        for m in cfg["models"]:
            for f in m["features"]:
                seed = "%s/%s" % (m["name"], f["name"])
                self.features.append((m["name"], FeatureModel(f["name"], f.get("kind", "numeric"), seed)))
        self.running = {}  # model -> (run id, finish time, trigger, request id)
        first = min(120.0, float(cfg["training"]["interval_seconds"]))
        self.next_training = dict((m["name"], time.time() + self.rng.uniform(0.25, 1.0) * first) for m in cfg["models"])

    def t(self, name):
        return "%s.%s" % (self.schema, name)

    def _rows(self, model, feature, level, at, n):
        rows = []
        for _ in range(n):
            num, cat = feature.sample(self.rng, level, self.cfg["drift"]["max_shift"])
            label = self.rng.choice(("positive", "negative"))
            correct = self.rng.random() < 0.92 - 0.3 * level
            prediction = label if correct else ("negative" if label == "positive" else "positive")
            rows.append((model, feature.name, at, num, cat, prediction, label))
        return rows

    def _copy(self, rows):
        with self.conn.cursor() as cur:
            with cur.copy("COPY %s (model, feature, observed_at, value_num, value_cat, prediction, label) FROM STDIN"
                          % self.t("prediction_samples")) as copy:
                for row in rows:
                    copy.write_row(row)

    def backfill(self):
        """A stable history for features that have no samples yet (the drift exporter's reference)."""
        now = datetime.datetime.now(UTC)
        span = float(self.cfg["backfill_seconds"])
        n = int(self.cfg["backfill_samples"])
        for model, feature in self.features:
            with self.conn.cursor() as cur:
                cur.execute("SELECT EXISTS (SELECT 1 FROM %s WHERE model = %%s AND feature = %%s)"
                            % self.t("prediction_samples"), (model, feature.name))
                if cur.fetchone()[0]:
                    continue
            rows = []
            for i in range(n):
                at = now - datetime.timedelta(seconds=span * (1 - float(i) / n))
                rows += self._rows(model, feature, 0.0, at, 1)
            self._copy(rows)
            log.info("%s/%s: backfilled %d stable samples over %ds", model, feature.name, n, span)

    def samples(self, now):
        level = drift_level(now, self.cfg["drift"]["period_seconds"])
        at = datetime.datetime.fromtimestamp(now, UTC)
        rows = []
        for model, feature in self.features:
            rows += self._rows(model, feature, level, at, int(self.cfg["samples_per_tick"]))
        self._copy(rows)
        return level

    def _start_run(self, model, trigger, request_id=None):
        run_id = self.recorder.start_training_run(model, trigger)
        duration = self.cfg["training"]["duration_seconds"] * self.rng.uniform(0.7, 1.3)
        self.running[model] = (run_id, time.time() + duration, trigger, request_id)
        log.info("%s: training run %d started (%s)", model, run_id, trigger)

    def _finish_run(self, model):
        run_id, _, trigger, request_id = self.running.pop(model)
        if self.rng.random() < 0.1:
            self.recorder.finish_training_run(run_id, "failed", training_loss=self.rng.uniform(1.5, 3.0))
            status = "rejected"
            log.info("%s: training run %d failed", model, run_id)
        else:
            version = "%s-lora-%d" % (model, run_id)
            accuracy = round(self.rng.uniform(0.78, 0.95), 4)
            self.recorder.record_lora_version(version, model, metrics_summary={"accuracy": accuracy,
                                                                              "trigger": trigger})
            loss = self.rng.uniform(0.25, 0.6)
            self.recorder.finish_training_run(
                run_id, "succeeded", training_loss=loss, validation_loss=loss * self.rng.uniform(1.02, 1.2),
                ewc_lambda=0.4, samples=self.rng.randint(20000, 80000),
                fisher_matrix_size_bytes=self.rng.randint(200, 400) * 2 ** 20,
                replay_buffer_size=self.rng.randint(5000, 10000), replay_buffer_capacity=10000,
                lora_version_id=version)
            self.recorder.activate_lora_version(version)
            status = "done"
            log.info("%s: training run %d succeeded, %s active (accuracy %.3f)", model, run_id, version, accuracy)
        if request_id is not None:
            with self.conn.cursor() as cur:
                cur.execute("UPDATE %s SET status = %%s WHERE id = %%s" % self.t("finetuning_requests"),
                            (status, request_id))

    def training(self, now):
        for model in list(self.running):
            if self.running[model][1] <= now:
                self._finish_run(model)
        with self.conn.cursor() as cur:
            cur.execute("SELECT id, model FROM %s WHERE status = 'pending' ORDER BY requested_at"
                        % self.t("finetuning_requests"))
            pending = cur.fetchall()
        for request_id, model in pending:
            if model in self.running:
                continue
            with self.conn.cursor() as cur:
                cur.execute("UPDATE %s SET status = 'running' WHERE id = %%s AND status = 'pending'"
                            % self.t("finetuning_requests"), (request_id,))
            self._start_run(model, "drift", request_id)
        for model, due in self.next_training.items():
            if due <= now and model not in self.running:
                self._start_run(model, "schedule")
                self.next_training[model] = now + self.cfg["training"]["interval_seconds"]

    def recover(self):
        """Runs left 'running' by an earlier process are marked failed (they cannot finish now)."""
        with self.conn.cursor() as cur:
            cur.execute("UPDATE %s SET status = 'failed', finished_at = now() WHERE status = 'running'"
                        % self.t("training_runs"))
            cur.execute("UPDATE %s SET status = 'pending' WHERE status = 'running'" % self.t("finetuning_requests"))


def connect(cfg):
    db = cfg["database"]
    password = None
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and os.path.exists(os.path.join(cred_dir, "db_password")):
        with open(os.path.join(cred_dir, "db_password")) as fh:
            password = fh.read().rstrip("\r\n")
    kwargs = dict(host=db["host"], port=int(db["port"]), dbname=db["dbname"], user=db["user"],
                  sslmode=db.get("sslmode", "prefer"), connect_timeout=5, application_name="aiplatform-demo-feeder")
    if password:
        kwargs["password"] = password
    return psycopg.connect(autocommit=True, **kwargs)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="aiplatform-demo-feeder", description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="FILE", required=True)
    parser.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config)
    except (OSError, yaml.YAMLError, ConfigError) as exc:
        sys.stderr.write("aiplatform-demo-feeder: configuration error: %s\n" % exc)
        return 2
    if args.check_config:
        sys.stdout.write("aiplatform-demo-feeder: configuration OK\n")
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    feeder = None
    while not stop.is_set():
        try:
            if feeder is None:
                feeder = Feeder(cfg, connect(cfg))
                feeder.recover()
                feeder.backfill()
            now = time.time()
            level = feeder.samples(now)
            feeder.training(now)
            log.debug("drift level %.2f", level)
        except psycopg.Error as exc:
            # PostgreSQL restarted or unreachable: reconnect on the next tick, keep the process
            log.warning("database: %s", str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
            if feeder is not None:
                try:
                    feeder.conn.close()
                except psycopg.Error:
                    pass
                feeder = None
        stop.wait(cfg["tick_seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
