-- 0001: the platform's records. Applied once, in one transaction, by the postgresql role.
-- Tables live in schema "platform" (owned by the owner role); search_path is set per role.

CREATE SCHEMA IF NOT EXISTS platform;

CREATE TABLE platform.lora_versions (
    version_id      text PRIMARY KEY,
    base_model      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    is_active       boolean     NOT NULL DEFAULT false,
    deployed_at     timestamptz,
    metrics_summary jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT lora_versions_deployed_when_active CHECK (NOT is_active OR deployed_at IS NOT NULL)
);
-- At most one active version per base model.
CREATE UNIQUE INDEX lora_versions_one_active_per_model
    ON platform.lora_versions (base_model) WHERE is_active;
CREATE INDEX lora_versions_created_at ON platform.lora_versions (created_at DESC);

CREATE TABLE platform.training_runs (
    id                       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model                    text        NOT NULL,
    started_at               timestamptz NOT NULL DEFAULT now(),
    finished_at              timestamptz,
    status                   text        NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
    trigger                  text        NOT NULL
        CHECK (trigger IN ('drift', 'manual', 'schedule')),
    training_loss            double precision,
    validation_loss          double precision,
    ewc_lambda               double precision,
    samples                  bigint CHECK (samples >= 0),
    fisher_matrix_size_bytes bigint CHECK (fisher_matrix_size_bytes >= 0),
    replay_buffer_size       bigint CHECK (replay_buffer_size >= 0),
    replay_buffer_capacity   bigint CHECK (replay_buffer_capacity >= 0),
    lora_version_id          text REFERENCES platform.lora_versions (version_id),
    CONSTRAINT training_runs_finish_after_start CHECK (finished_at IS NULL OR finished_at >= started_at)
);
CREATE INDEX training_runs_model_started ON platform.training_runs (model, started_at DESC);

CREATE TABLE platform.prediction_samples (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model        text        NOT NULL,
    feature      text        NOT NULL,
    observed_at  timestamptz NOT NULL DEFAULT now(),
    value_num    double precision,
    value_cat    text,
    prediction   text,
    label        text,
    CONSTRAINT prediction_samples_one_value CHECK ((value_num IS NULL) <> (value_cat IS NULL))
);
CREATE INDEX prediction_samples_window
    ON platform.prediction_samples (model, feature, observed_at);

CREATE TABLE platform.drift_baselines (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model             text        NOT NULL,
    feature           text        NOT NULL,
    kind              text        NOT NULL CHECK (kind IN ('numeric', 'categorical')),
    bin_edges         double precision[],
    categories        text[],
    reference_shares  double precision[] NOT NULL,
    reference_samples bigint      NOT NULL CHECK (reference_samples > 0),
    window_start      timestamptz NOT NULL,
    window_end        timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT drift_baselines_shape CHECK (
        (kind = 'numeric' AND bin_edges IS NOT NULL) OR
        (kind = 'categorical' AND categories IS NOT NULL))
);
CREATE INDEX drift_baselines_latest ON platform.drift_baselines (model, feature, created_at DESC);

CREATE TABLE platform.drift_reports (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model          text        NOT NULL,
    feature        text        NOT NULL,
    baseline_id    bigint REFERENCES platform.drift_baselines (id),
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL,
    sample_count   bigint      NOT NULL CHECK (sample_count >= 0),
    kl_divergence  double precision,
    psi            double precision,
    accuracy       double precision CHECK (accuracy IS NULL OR (accuracy >= 0 AND accuracy <= 1)),
    drifted        boolean     NOT NULL DEFAULT false,
    computed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX drift_reports_model_feature ON platform.drift_reports (model, feature, computed_at DESC);

CREATE TABLE platform.finetuning_requests (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model           text        NOT NULL,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    reason          text        NOT NULL CHECK (reason IN ('drift', 'manual')),
    drift_report_id bigint REFERENCES platform.drift_reports (id),
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'done', 'rejected'))
);
CREATE INDEX finetuning_requests_model ON platform.finetuning_requests (model, requested_at DESC);
