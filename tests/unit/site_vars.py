"""Variables every complete inventory carries (secrets and the drift models), for tests that
render the whole site from a throwaway inventory. Test values only."""

SITE_VARS = {
    "postgresql_owner_password": "test-owner-password",
    "postgresql_exporter_password": "test-exporter-password",
    "postgresql_grafana_reader_password": "test-reader-password",
    "grafana_admin_password": "test-grafana-admin",
    "platform_exporters_drift_models": [
        {"name": "llm-main", "features": [{"name": "prompt_length", "kind": "numeric"}]},
    ],
}
