-- 0002: index the referencing side of every foreign key.
-- Without them a lookup from a LoRA version to its training runs, from a baseline to its reports or
-- from a report to the fine-tuning requests it caused scans the whole child table, and so does the
-- foreign key check when a parent row is updated or deleted.
CREATE INDEX IF NOT EXISTS training_runs_lora_version_id
    ON platform.training_runs (lora_version_id) WHERE lora_version_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS drift_reports_baseline_id
    ON platform.drift_reports (baseline_id) WHERE baseline_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS finetuning_requests_drift_report_id
    ON platform.finetuning_requests (drift_report_id) WHERE drift_report_id IS NOT NULL;
