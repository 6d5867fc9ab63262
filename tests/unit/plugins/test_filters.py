"""The filters scrape_address and alertmanager_receivers: every rule, and every error message."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.aiplatform.observability.plugins.filter.alertmanager_receivers import alertmanager_receivers
from ansible_collections.aiplatform.observability.plugins.filter.scrape_address import scrape_address

FACTS = {"default_ipv4": {"address": "10.89.0.7"}, "default_ipv6": {"address": "fd00::7"}}


# ------------------------------------------------------------------ scrape_address
@pytest.mark.parametrize("hostvars, expected", [
    ({"inventory_hostname": "gpu1"}, "gpu1"),
    ({"inventory_hostname": "gpu1", "ansible_host": "192.0.2.11"}, "192.0.2.11"),
    ({"inventory_hostname": "gpu1", "ansible_host": "192.0.2.11", "aiplatform_scrape_address": "gpu1.mgmt"}, "gpu1.mgmt"),
    ({"inventory_hostname": "gpu1", "aiplatform_scrape_address": "  "}, "gpu1"),
    ({"inventory_hostname": "gpu1", "aiplatform_scrape_address_source": "inventory", "ansible_facts": FACTS}, "gpu1"),
    ({"inventory_hostname": "gpu1", "aiplatform_scrape_address_source": "default_ipv4", "ansible_facts": FACTS,
      "ansible_host": "192.0.2.11"}, "10.89.0.7"),
    ({"inventory_hostname": "gpu1", "aiplatform_scrape_address_source": "default_ipv6", "ansible_facts": FACTS},
     "fd00::7"),
    ({"inventory_hostname": "gpu1", "aiplatform_scrape_address_source": "default_ipv4", "ansible_facts": FACTS,
      "aiplatform_scrape_address": "10.0.0.1"}, "10.0.0.1"),
])
def test_scrape_address_precedence(hostvars, expected):
    assert scrape_address(hostvars) == expected


def test_fact_sources_without_facts_fail_naming_the_host():
    with pytest.raises(AnsibleFilterError, match="default_ipv4 for gpu2: its facts hold no ipv4 address"):
        scrape_address({"inventory_hostname": "gpu2", "aiplatform_scrape_address_source": "default_ipv4"})
    with pytest.raises(AnsibleFilterError, match="gpu2"):
        scrape_address({"inventory_hostname": "gpu2", "aiplatform_scrape_address_source": "default_ipv6",
                        "ansible_facts": {"default_ipv6": {}}})


def test_render_mode_uses_the_name_for_fact_sources():
    assert scrape_address({"inventory_hostname": "gpu2", "aiplatform_scrape_address_source": "default_ipv4"},
                          render=True) == "gpu2"


@pytest.mark.parametrize("hostvars, message", [
    ({"inventory_hostname": "h", "aiplatform_scrape_address_source": "dns"}, "must be one of inventory, default_ipv4"),
    ({"inventory_hostname": "h", "aiplatform_scrape_address": 42}, "must be a string"),
])
def test_scrape_address_bad_input(hostvars, message):
    with pytest.raises(AnsibleFilterError, match=message):
        scrape_address(hostvars)


# ------------------------------------------------------------------ alertmanager_receivers
def test_typed_receivers_get_templates_and_send_resolved():
    out = alertmanager_receivers([
        {"name": "hook", "webhook": {"url": "https://hooks.example.com/a", "bearer_token": "t0k"}},
        {"name": "chat", "slack": [{"api_url": "https://hooks.slack.com/x", "channel": "#a"},
                                   {"api_url": "https://hooks.slack.com/y", "send_resolved": False}]},
        {"name": "pager", "pagerduty": {"routing_key": "rk"}},
        {"name": "mail", "email": {"to": "ops@example.com", "headers": {"X-Team": "ml"}}},
    ], global_config={"smtp_smarthost": "smtp.example.com:587", "smtp_from": "am@example.com"})
    hook, chat, pager, mail = out["receivers"]
    assert hook == {"name": "hook", "webhook_configs": [{
        "url": "https://hooks.example.com/a", "send_resolved": True,
        "http_config": {"authorization": {"type": "Bearer", "credentials": "t0k"}}}]}
    assert [c["send_resolved"] for c in chat["slack_configs"]] == [True, False]
    assert chat["slack_configs"][0]["title"] == '{{ template "aiplatform.title" . }}'
    assert chat["slack_configs"][0]["text"] == '{{ template "aiplatform.text" . }}'
    assert pager["pagerduty_configs"][0]["routing_key"] == "rk"
    assert "CommonLabels.severity" in pager["pagerduty_configs"][0]["severity"]
    assert mail["email_configs"][0]["headers"] == {"Subject": '{{ template "aiplatform.email.subject" . }}',
                                                   "X-Team": "ml"}
    assert out["routes"] == []


def test_match_makes_routes_in_order():
    out = alertmanager_receivers([
        {"name": "a", "webhook": {"url": "http://a/"}, "match": {"severity": "critical", "team": ["ml", "data"]},
         "continue": True},
        {"name": "b", "webhook_configs": [{"url": "http://b/"}], "match": {"severity": ['wa"rn']}},
    ])
    assert out["routes"] == [
        {"receiver": "a", "matchers": ['severity="critical"', 'team=~"ml|data"'], "continue": True},
        {"receiver": "b", "matchers": ['severity="wa\\"rn"']},
    ]
    assert out["receivers"][1] == {"name": "b", "webhook_configs": [{"url": "http://b/"}]}  # raw, as given


@pytest.mark.parametrize("entries, message", [
    ("x", "must be a list"),
    ([{"webhook": {"url": "http://a/"}}], r"alertmanager_receivers\[0\].name: must be a non-empty string"),
    ([{"name": "null"}], "built-in receiver"),
    ([{"name": "a"}, {"name": "a"}], "used twice"),
    ([{"name": "a", "webhok": {}}], r"unknown key\(s\) webhok"),
    ([{"name": "a", "webhook": {}}], r"alertmanager_receivers\[0\] \(a\).webhook: needs url"),
    ([{"name": "a", "webhook": {"url": "ftp://x"}}], "must start with http"),
    ([{"name": "a", "webhook": {"url": "http://x", "token": "x"}}], r"unknown key\(s\) token"),
    ([{"name": "a", "webhook": []}], "non-empty list of mappings"),
    ([{"name": "a", "slack": {"channel": "#x"}}], "needs api_url"),
    ([{"name": "a", "email": {"to": "x@example.com"}}], "needs smarthost"),
    ([{"name": "a", "pagerduty": {}}], "needs routing_key or service_key"),
    ([{"name": "a", "pagerduty": {"routing_key": "a", "service_key": "b"}}], "not both"),
    ([{"name": "a", "webhook": {"url": "http://x", "send_resolved": "yes"}}], "must be true or false"),
    ([{"name": "a", "match": {"1bad": "x"}}], "is not a label name"),
    ([{"name": "a", "match": {"team": []}}], "non-empty list of label values"),
    ([{"name": "a", "match": {}}], "must be a mapping label"),
    ([{"name": "a", "continue": True}], "add match"),
    ([{"name": "a", "webhook_configs": {"url": "x"}}], "must be a list of mappings"),
])
def test_receiver_errors_name_the_entry_and_the_rule(entries, message):
    with pytest.raises(AnsibleFilterError, match=message):
        alertmanager_receivers(entries)


def test_errors_never_echo_secrets():
    with pytest.raises(AnsibleFilterError) as err:
        alertmanager_receivers([{"name": "a", "webhook": {"url": "http://x", "bearer_token": "", "x": "s3cret"}}])
    assert "s3cret" not in str(err.value)


# ------------------------------------------------------------------ threshold_slice
def test_threshold_slice_gives_the_drift_exporter_its_two_leaves():
    from ansible_collections.aiplatform.observability.plugins.filter.threshold_slice import threshold_slice
    effective = {"drift_psi": {"alert": {"warning": 0.21}, "dashboard": {"red": 0.3}},
                 "drift_kl_divergence": {"alert": {"critical": 0.27}}}
    assert threshold_slice(effective, "drift_exporter") == {"psi": 0.21, "kl": 0.27}


@pytest.mark.parametrize("effective, consumer, message", [
    ({}, "grafana", "unknown consumer 'grafana'"),
    ({"drift_psi": {"alert": {"warning": 0.2}}}, "drift_exporter", "has no drift_kl_divergence.alert.critical, which sets kl"),
    ({"drift_psi": {"alert": {"warning": "x"}}, "drift_kl_divergence": {"alert": {"critical": 0.2}}}, "drift_exporter",
     "drift_psi.alert.warning must be a number"),
    ("text", "drift_exporter", "must be the mapping aiplatform_thresholds_effective"),
])
def test_threshold_slice_bad_input(effective, consumer, message):
    from ansible_collections.aiplatform.observability.plugins.filter.threshold_slice import threshold_slice
    with pytest.raises(AnsibleFilterError, match=message):
        threshold_slice(effective, consumer)


# ------------------------------------------------------------------ threshold_errors
def _table():
    import yaml
    from pathlib import Path
    table = yaml.safe_load((Path(__file__).resolve().parents[3] / "roles/common/vars/main.yml").read_text())
    return (table["__common_thresholds_defaults"], table["__common_thresholds_schema"],
            table["__common_thresholds_severity_order"])


def _errors(overrides, window=500):
    from ansible_collections.aiplatform.observability.plugins.filter.threshold_errors import threshold_errors
    defaults, schema, order = _table()
    merged = {k: dict(v) for k, v in defaults.items()}
    for signal, sections in overrides.items():
        if isinstance(sections, dict) and isinstance(merged.get(signal), dict):
            for section, levels in sections.items():
                base = merged[signal].get(section)
                merged[signal][section] = {**base, **levels} if isinstance(base, dict) and isinstance(levels, dict) else levels
        else:
            merged[signal] = sections
    return threshold_errors(merged, schema, order, window)


def test_the_default_table_is_valid():
    assert _errors({}) == []


@pytest.mark.parametrize("overrides, window, expected", [
    ({"drift_psi": {"alert": {"warning": "0.3"}}}, 500,
     ['aiplatform_thresholds.drift_psi.alert.warning: must be a number, got "0.3" (str); with -e key=value every '
      'value is a string, pass -e @file.yml or JSON instead']),
    ({"gpu_temperature_celsius": {"alert": {"critical": True}}}, 500,
     ["aiplatform_thresholds.gpu_temperature_celsius.alert.critical: must be a number, got true (bool)"]),
    ({"http_error_ratio": {"alert": {"warning": 0.08}}}, 500,
     ["aiplatform_thresholds.http_error_ratio.alert.critical: must be greater than "
      "aiplatform_thresholds.http_error_ratio.alert.warning (0.05 <= 0.08); higher values are worse for "
      "http_error_ratio, so levels must ascend in the order warning < critical"]),
    ({"cache_hit_ratio": {"dashboard": {"red": 0.9}}}, 500,
     ["aiplatform_thresholds.cache_hit_ratio.dashboard.red: must be lower than "
      "aiplatform_thresholds.cache_hit_ratio.dashboard.green (0.9 >= 0.85); lower values are worse for "
      "cache_hit_ratio, so levels must descend in the order green > red"]),
    ({"http_error_ratio": {"dashboard": {"red": 5}}}, 500,
     ["aiplatform_thresholds.http_error_ratio.dashboard.red: 5 is out of range, must lie between 0 and 1 "
      "(a ratio, 5 % is 0.05)"]),
    ({"drift_psi": {"alert": {"warning": -1}}}, 500,
     ["aiplatform_thresholds.drift_psi.alert.warning: -1 is out of range, must lie between 0 and inf"]),
    ({"drift_kl": {"alert": {"critical": 0.3}}}, 500,
     # every signal of the schema, sorted (read from the table, so a new signal needs no edit here)
     ["aiplatform_thresholds.drift_kl: unknown signal (known signals: %s)" % ", ".join(sorted(_table()[1]))]),
    ({"drift_psi": "high"}, 500,
     ["aiplatform_thresholds.drift_psi: must be a mapping of sections (alert, dashboard), got high"]),
    ({"drift_psi": {"alerts": {"warning": 1}}}, 500,
     ["aiplatform_thresholds.drift_psi.alerts: unknown section for this signal (allowed: alert, dashboard)"]),
    ({"drift_psi": {"dashboard": [1, 2]}}, 500,
     ["aiplatform_thresholds.drift_psi.dashboard: must be a mapping of levels (yellow, orange, red) to numbers, "
      "got [1, 2]"]),
    ({"gpu_utilization_percent": {"dashboard": {"purple": 3}}}, 500,
     ["aiplatform_thresholds.gpu_utilization_percent.dashboard.purple: unknown level (allowed in dashboard: "
      "yellow, orange, red)"]),
    ({}, 0, ["aiplatform_drift_min_window_samples: must be a positive integer (a sample count), got 0"]),
    ({}, "500", ['aiplatform_drift_min_window_samples: must be a positive integer (a sample count), got "500"']),
    ({}, True, ["aiplatform_drift_min_window_samples: must be a positive integer (a sample count), got true"]),
])
def test_threshold_errors_name_the_path_and_the_rule(overrides, window, expected):
    assert _errors(overrides, window) == expected


def test_all_errors_at_once_in_path_order():
    errors = _errors({"mcp_latency_seconds": {"dashboard": {"yellow": 2, "red": 2}}, "drift_psi": {"alert": {"warning": "x"}}},
                     window=-1)
    assert [e.split(":")[0] for e in errors] == [
        "aiplatform_thresholds.drift_psi.alert.warning", "aiplatform_thresholds.mcp_latency_seconds.dashboard.red",
        "aiplatform_drift_min_window_samples"]


def test_a_wrapped_string_is_named_str():
    from ansible_collections.aiplatform.observability.plugins.filter.threshold_errors import _type_name

    class Tagged(str):
        pass
    assert _type_name(Tagged("x")) == "str"
