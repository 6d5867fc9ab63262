"""The three dashboards, rendered by the grafana role exactly as it delivers them (tasks/render.yml).

Rendered with the collection's default thresholds and with one changed leaf; checks the structure
the issue fixes (uids, panel counts, refresh, time range), that every colour step comes from the
thresholds, the datasource uids, links, template variables and annotations, that every PromQL
expression parses (promtool) and names only cataloged metrics or recording rules, and that a
changed leaf changes exactly the dashboards that draw it.
"""
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "files" / "exporters" / "src"))
from aiplatform_exporters import catalog  # noqa: E402

EXPECTED = {
    "platform-overview": {"panels": 15, "refresh": "30s", "from": "now-1h"},
    "learning-engine": {"panels": 16, "refresh": "1m", "from": "now-24h"},
    "mcp-activity": {"panels": 15, "refresh": "30s", "from": "now-1h"},
}
_COMMON_VARS = yaml.safe_load((ROOT / "roles/common/vars/main.yml").read_text())
DEFAULTS = next(v for k, v in _COMMON_VARS.items() if k.endswith("thresholds_defaults"))
SIGNALS = yaml.safe_load((ROOT / "roles/grafana/vars/main.yml").read_text())["__grafana_dashboard_signals"]
PROM_UID, PG_UID = "test-prom-uid", "test-pg-uid"
CHANGED_LEAF = {"drift_psi": {"dashboard": {"orange": 0.22}}}


def render(tmp, thresholds, extra_vars=None):
    (tmp / "inv.yml").write_text(textwrap.dedent("""\
        all:
          children:
            monitoring:
              hosts:
                mon1: {ansible_connection: local}
    """))
    (tmp / "play.yml").write_text(textwrap.dedent("""\
        - name: Thresholds
          hosts: all
          gather_facts: false
          roles:
            - role: aiplatform.observability.common
        - name: Render
          hosts: monitoring
          gather_facts: false
          tasks:
            - name: Render grafana
              ansible.builtin.include_role:
                name: aiplatform.observability.grafana
                tasks_from: render
    """))
    extra = {
        "render_dir": str(tmp / "out"), "aiplatform_thresholds": thresholds, "grafana_admin_password": "x",
        "postgresql_grafana_reader_password": "y", "grafana_datasource_prometheus_uid": PROM_UID,
        "grafana_datasource_postgres_uid": PG_UID,
    }
    extra.update(extra_vars or {})
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp / "inv.yml"), str(tmp / "play.yml"),
                           "-e", json.dumps(extra)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    out = tmp / "out" / "_grafana_api" / "dashboards"
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


@pytest.fixture(scope="module")
def default(rendered_dashboards):
    return rendered_dashboards["default"]


@pytest.fixture(scope="module")
def changed(rendered_dashboards):
    return rendered_dashboards["day-2"]


def panels(d):
    return [p for p in d["panels"] if p["type"] != "row"]


def targets(d):
    for p in panels(d):
        for t in p["targets"]:
            yield p, t


def walk_steps(obj):
    """Every threshold step list in a JSON object."""
    if isinstance(obj, dict):
        if obj.get("mode") == "absolute" and isinstance(obj.get("steps"), list):
            yield obj["steps"]
        for v in obj.values():
            yield from walk_steps(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from walk_steps(v)


def test_three_dashboards_with_fixed_uids(default):
    assert sorted(default) == sorted(EXPECTED)
    for uid, d in default.items():
        assert d["uid"] == uid
        assert "id" not in d and "version" not in d


@pytest.mark.parametrize("uid", sorted(EXPECTED))
def test_counts_refresh_and_time(default, uid):
    d = default[uid]
    assert len(panels(d)) == EXPECTED[uid]["panels"]
    assert d["refresh"] == EXPECTED[uid]["refresh"]
    assert d["time"] == {"from": EXPECTED[uid]["from"], "to": "now"}
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels(d):
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]


@pytest.mark.parametrize("uid", sorted(EXPECTED))
def test_every_step_value_comes_from_the_thresholds(default, uid):
    d = default[uid]
    used = set()
    for p in panels(d):
        for steps in walk_steps(p):
            assert steps[0]["value"] is None
            values = [s["value"] for s in steps[1:]]
            assert values == sorted(values), (p["title"], steps)
            if not values:
                continue
            # the steps of one signal's section, exactly
            matches = [(sig, sec) for sig in DEFAULTS for sec in DEFAULTS[sig]
                       if sorted(DEFAULTS[sig][sec].values()) == values]
            assert matches, f"{uid}/{p['title']}: steps {steps} are not a thresholds section"
            used.update(sig for sig, _ in matches)
            for s in steps[1:]:
                sig, sec = matches[0]
                levels = DEFAULTS[sig][sec]
                if "green" in levels:  # lower is worse: red below `red`, yellow between, green from `green`
                    assert (s["color"], s["value"]) in {("yellow", levels["red"]), ("green", levels["green"])}
                else:
                    name = {"orange": ("orange", "warning"), "red": ("red", "critical"), "yellow": ("yellow",)}[s["color"]]
                    assert any(levels.get(n) == s["value"] for n in name), (p["title"], s)
    assert set(SIGNALS[uid]) <= used, f"{uid} does not draw {set(SIGNALS[uid]) - used}"


def test_threshold_panels_named_by_the_issue(default):
    by_title = {p["title"]: p for p in panels(default["platform-overview"])}
    steps = by_title["GPU utilization"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["color"], s["value"]) for s in steps] == [("green", None), ("yellow", 70), ("orange", 85), ("red", 95)]
    steps = by_title["Cache hit ratio"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["color"], s["value"]) for s in steps] == [("red", None), ("yellow", 0.5), ("green", 0.85)]


def test_datasource_uids_from_variables(default):
    for uid, d in default.items():
        for p, t in targets(d):
            assert t["datasource"]["uid"] in (PROM_UID, PG_UID), (uid, p["title"])
            assert p["datasource"]["uid"] in (PROM_UID, PG_UID)
            if "expr" in t:
                assert t["datasource"] == {"type": "prometheus", "uid": PROM_UID}
            else:
                assert t["datasource"]["uid"] == PG_UID and t["rawSql"]
        for v in d["templating"]["list"]:
            assert v["datasource"]["uid"] == PROM_UID


def test_links_between_the_three(default):
    for uid, d in default.items():
        urls = sorted(link["url"] for link in d["links"])
        assert urls == sorted("/d/" + other for other in EXPECTED if other != uid)
        assert all(link["keepTime"] for link in d["links"])


def test_template_variables_all_allowed_and_used(default):
    expected = {"platform-overview": {"instance", "gpu", "model"}, "learning-engine": {"model"},
                "mcp-activity": {"server", "operation"}}
    for uid, d in default.items():
        names = {v["name"] for v in d["templating"]["list"]}
        assert names == expected[uid]
        for v in d["templating"]["list"]:
            assert v["includeAll"] and v["multi"] and v["allValue"] == ".*"
            assert v["query"]["query"].startswith("label_values(")
        text = json.dumps([t for _, t in targets(d)])
        for name in names:
            assert "$" + name in text or "${" + name in text, f"{uid}: ${name} is not used by any panel"


def test_lora_table_and_postgres_annotations(default):
    le = {p["title"]: p for p in panels(default["learning-engine"])}
    table = le["LoRA version history"]
    assert table["type"] == "table"
    raw = table["targets"][0]["rawSql"]
    for col in ("version_id", "created_at", "is_active", "deployed_at", "metrics_summary"):
        assert col in raw
    assert "platform.lora_versions" in raw
    active = [o for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "is_active"]
    assert active and any(p["id"] == "custom.cellOptions" for p in active[0]["properties"])
    for uid in ("platform-overview", "learning-engine"):
        names = {a["name"]: a for a in default[uid]["annotations"]["list"]}
        assert "platform.training_runs" in names["Training runs"]["target"]["rawSql"]
        assert "$__timeFilter(deployed_at)" in names["LoRA deployments"]["target"]["rawSql"]
    for d in default.values():
        deploy = [a for a in d["annotations"]["list"] if a["name"] == "Deployments"][0]
        assert deploy["target"]["tags"] == ["aiplatform", "deploy"]


def test_seed_panels_present(default):
    titles = {p["title"] for p in panels(default["platform-overview"])}
    assert {"GPU memory used", "GPU temperature", "Inference queue depth", "Batch size"} <= titles
    exprs = " ".join(t.get("expr", "") for _, t in targets(default["platform-overview"]))
    for metric in ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_TEMP", "inference_queue_depth", "inference_batch_size",
                   "inference_time_to_first_token_seconds", "inference_kv_cache_usage"):
        assert metric in exprs
    kinds = {p["type"] for d in default.values() for p in panels(d)}
    assert kinds == {"timeseries", "gauge", "stat", "table", "piechart"}
    assert any(p["fieldConfig"]["defaults"]["custom"].get("drawStyle") == "bars"
               for d in default.values() for p in panels(d) if p["type"] == "timeseries")


def _recording_rule_names():
    text = (ROOT / "roles/prometheus/templates/rules/aiplatform-recording.rules.yml.j2").read_text()
    names = {n.strip() for n in re.findall(r"record:\s*(.+)$", text, re.M)}
    expanded = set()
    series = ("request_duration", "time_to_first_token", "inter_token_latency")  # the template's loops
    for n in names:
        for name in ({re.sub(r"\{\{\s*series\s*\}\}", v, n) for v in series} if "series" in n else {n}):
            if "{{" in name:
                expanded |= {re.sub(r"\{\{\s*q\s*\}\}", str(q), name) for q in (50, 95, 99)}
            else:
                expanded.add(name)
    return expanded


def test_only_cataloged_metrics_or_recording_rules(default):
    recorded = _recording_rule_names()
    unknown = set()
    for d in default.values():
        for p, t in targets(d):
            if "expr" in t:
                unknown |= {n for n in catalog.metric_names_in_promql(t["expr"]) if not catalog.is_known(n, recorded)}
    assert not unknown


def test_recording_rules_used_where_they_exist(default):
    exprs = [t["expr"] for d in default.values() for _, t in targets(d) if "expr" in t]
    assert not any("http_request_duration_seconds_bucket" in e for e in exprs), "use the job:... recording rules"
    assert any("server_operation:mcp_requests:rate5m" in e for e in exprs)
    assert any("job:http_request_duration_seconds:p99_rate5m" in e for e in exprs)


def test_promql_parses(default, tmp_path):
    """Every expression, with the variables as the truth check sets them, is valid PromQL (promtool)."""
    rules = []
    for uid, d in default.items():
        for p, t in targets(d):
            if "expr" not in t:
                continue
            expr = t["expr"].replace("$__rate_interval", "1m")
            expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
            rules.append({"record": f"check:{uid.replace('-', '_')}:p{p['id']}_{t['refId']}", "expr": expr})
    f = tmp_path / "dash.rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run(["promtool", "check", "rules", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_changed_leaf_changes_exactly_the_dashboards_that_draw_it(default, changed):
    for uid in EXPECTED:
        if uid in [u for u, sigs in SIGNALS.items() if "drift_psi" in sigs]:
            assert default[uid] != changed[uid]
            steps = [s for st in walk_steps(changed[uid]) for s in st if s["color"] == "orange"]
            assert {"color": "orange", "value": 0.22} in steps
        else:
            assert default[uid] == changed[uid], f"{uid} changed although it does not draw drift_psi"
