"""The rules of Grafana's dashboard-linter (grafana/dashboard-linter, lint/rule_*.go) that apply to
these dashboards, and the layout checks Grafana's own editor enforces, on every rendered dashboard:
default thresholds and a day-2 override. docs/dashboards.md ("Lint rules") says rule by rule which
apply and why the others do not.

`lint()` returns every finding; the dashboards must have none, and a deliberately broken copy of a
rendered dashboard must give each rule's finding (so a rule that checks nothing would fail here).
Run: .venv/bin/pytest -q tests/unit/test_dashboard_lint.py
"""
import copy
import re
import subprocess

import pytest
import yaml
from test_dashboard_schema import grafana_units
from test_dashboards import PG_UID, PROM_UID

# Grafana's unit ids, from the units schema Grafana publishes (tests/fixtures/grafana_schema): an id
# outside it is a typo (Grafana shows the raw number).
GRAFANA_UNITS = grafana_units()
# The panel types dashboard-linter checks for units and for title and description.
UNIT_PANELS = {"stat", "singlestat", "graph", "table", "timeseries", "gauge"}
# The datasources the grafana role provisions (fixed uids, see docs/dashboards.md): uid -> type.
PROVISIONED = {PROM_UID: "prometheus", PG_UID: "grafana-postgresql-datasource"}
# Deliberate exceptions, each with the reason (dashboard-linter's own docs allow both):
# - a fixed window where the panel says "last hour": increase(...[1h]) is the count of the last hour,
#   which $__rate_interval (a few scrape intervals) would not give;
FIXED_WINDOW_PANELS = {("mcp-activity", 2), ("mcp-activity", 12), ("mcp-activity", 13)}
# - stat panels that show a lifetime total of a counter (how many training samples, runs, LoRA versions,
#   fine-tuning triggers, drift detections there have been): the value itself, not its rate, is asked.
COUNTER_TOTAL_PANELS = {("learning-engine", 9), ("learning-engine", 10), ("learning-engine", 12),
                        ("learning-engine", 13), ("learning-engine", 14)}
_RATE = re.compile(r"\b(rate|irate|increase)\(")
_COUNTER = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*_total)\b(?!\s*\()")


def _panels(d):
    for p in d["panels"]:
        yield p
        yield from p.get("panels", [])  # collapsed rows hold their panels


def _ranges(expr):
    """The range of each rate/irate/increase call in expr ([...] of its first matrix selector)."""
    for m in _RATE.finditer(expr):
        depth, i = 1, m.end()
        while i < len(expr) and depth:
            depth += {"(": 1, ")": -1}.get(expr[i], 0)
            if expr[i] == "[" and depth == 1:
                yield expr[i + 1:expr.index("]", i)]
                break
            i += 1


def _unaggregated_counters(expr):
    """*_total selectors that are not the matrix of a rate/irate/increase call."""
    out = []
    for m in _COUNTER.finditer(expr):
        if m.group(1).startswith("$") or re.search(r"[{,]\s*$", expr[:m.start()]):
            continue  # a label name, not a metric
        before = expr[:m.start()]
        after = expr[m.end():]
        ranged = re.match(r"\s*(\{[^}]*\})?\s*\[", after)
        if not (ranged and re.search(r"\b(rate|irate|increase)\(\s*$", before)):
            out.append(m.group(1))
    return out


def lint(uid, d):
    """[(rule, where, message)] for one dashboard."""
    found = []

    def add(rule, p, msg):
        found.append((rule, "%s panel %s %r" % (uid, p.get("id"), p.get("title")) if p else uid, msg))

    ids, boxes = {}, []
    for p in _panels(d):
        kind = p.get("type")
        # layout (Grafana's editor): unique ids, inside the 24-column grid, no two panels overlapping
        if p.get("id") in ids:
            add("unique-panel-id", p, "id also used by %r" % ids[p["id"]])
        ids[p.get("id")] = p.get("title")
        g = p.get("gridPos", {})
        if not (g.get("w", 0) >= 1 and g.get("h", 0) >= 1 and g.get("x", -1) >= 0 and g.get("y", -1) >= 0
                and g["x"] + g["w"] <= 24):
            add("grid-pos", p, "gridPos %s is not inside the 24-column grid" % g)
        else:
            for other, og in boxes:
                if g["x"] < og["x"] + og["w"] and og["x"] < g["x"] + g["w"] and \
                        g["y"] < og["y"] + og["h"] and og["y"] < g["y"] + g["h"]:
                    add("grid-pos", p, "overlaps %r" % other)
            boxes.append((p.get("title"), g))
        if kind == "row":
            if not p.get("title"):
                add("panel-title-description", p, "a row needs a title")
            continue
        # panel-title-description-rule
        if kind in UNIT_PANELS and not (p.get("title") and p.get("description")):
            add("panel-title-description", p, "every panel needs a title and a description")
        # panel-units-rule (skipped, as dashboard-linter does, with value mappings or non-numeric stat fields)
        defaults = p.get("fieldConfig", {}).get("defaults", {})
        fields = p.get("options", {}).get("reduceOptions", {}).get("fields", "")
        if kind in UNIT_PANELS and not defaults.get("mappings") and fields in ("", None, "/^.*$/"):
            if defaults.get("unit") not in GRAFANA_UNITS:
                add("panel-units", p, "unit %r is not one of Grafana's unit ids" % defaults.get("unit"))
        # panel-no-targets-rule
        if kind != "text" and not p.get("targets"):
            add("panel-no-targets", p, "a panel without a query")
        # what panel-datasource-rule protects, for provisioned datasources: every reference resolves
        refs = [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]
        for ref in refs:
            if not ref or PROVISIONED.get(ref.get("uid")) != ref.get("type"):
                add("datasource-provisioned", p, "datasource %r is not one the grafana role provisions" % (ref,))
        for t in p.get("targets", []):
            expr = t.get("expr")
            if expr is None:
                continue
            # target-rate-interval-rule
            for rng in _ranges(expr):
                if rng != "$__rate_interval" and (uid, p.get("id")) not in FIXED_WINDOW_PANELS:
                    add("target-rate-interval", p, "range [%s] instead of [$__rate_interval] in %s" % (rng, expr))
            # target-counter-agg-rule
            if (uid, p.get("id")) not in COUNTER_TOTAL_PANELS:
                for name in _unaggregated_counters(expr):
                    add("target-counter-agg", p, "counter %s is not in rate, irate or increase" % name)
    for v in d.get("templating", {}).get("list", []):
        # template-on-time-change-reload-rule
        if v.get("type") == "query" and v.get("refresh") != 2:
            add("template-on-time-change-reload", None,
                "variable %s: refresh %r, not 2 (on time range change)" % (v["name"], v.get("refresh")))
    return found


def template_selectors(d):
    """The series selector of each label_values() query variable (template-label-promql-rule)."""
    out = []
    for v in d.get("templating", {}).get("list", []):
        query = v.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query or "")
        if v.get("type") == "query":
            assert m, (v["name"], query)
            out.append((v["name"], m.group(1)))
    return out


@pytest.fixture(scope="module")
def dashboards(rendered_dashboards):
    return rendered_dashboards


@pytest.mark.parametrize("variant", ["default", "day-2"])
def test_no_lint_findings(dashboards, variant):
    found = [f for uid, d in dashboards[variant].items() for f in lint(uid, d)]
    assert found == [], "\n".join("%s: %s: %s" % f for f in found)
    assert len(dashboards[variant]) == 3


def test_template_variable_queries_are_promql(dashboards, tmp_path):
    rules = []
    for uid, d in dashboards["default"].items():
        for name, selector in template_selectors(d):
            expr = re.sub(r"\$\{?\w+\}?", ".*", selector)
            rules.append({"record": "check:%s:%s" % (uid.replace("-", "_"), name), "expr": expr})
    assert len(rules) == 6
    f = tmp_path / "vars.rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "variables", "rules": rules}]}))
    proc = subprocess.run(["promtool", "check", "rules", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_broken_dashboard_gives_each_rules_finding(dashboards):
    d = copy.deepcopy(dashboards["default"]["platform-overview"])
    by_id = {p["id"]: p for p in d["panels"]}
    by_id[1]["description"] = ""                                     # panel-title-description
    by_id[2]["fieldConfig"]["defaults"]["unit"] = "seconds"          # panel-units: not a Grafana id
    by_id[3]["targets"] = []                                         # panel-no-targets
    by_id[4]["datasource"] = {"type": "prometheus", "uid": "other"}  # datasource-provisioned
    by_id[5]["targets"][0]["expr"] = "sum by (type) (rate(inference_tokens_total[5m]))"  # target-rate-interval
    by_id[7]["targets"][0]["expr"] = "sum(inference_requests_total)"  # target-counter-agg
    by_id[8]["id"] = 9                                                # unique-panel-id
    by_id[10]["gridPos"]["x"] = 20                                    # grid-pos: past column 24, overlaps
    d["templating"]["list"][0]["refresh"] = 1                         # template-on-time-change-reload
    rules = {f[0] for f in lint("platform-overview", d)}
    assert rules == {"panel-title-description", "panel-units", "panel-no-targets", "datasource-provisioned",
                     "target-rate-interval", "target-counter-agg", "unique-panel-id", "grid-pos",
                     "template-on-time-change-reload"}, lint("platform-overview", d)


def test_the_exceptions_are_still_there(dashboards):
    """An exception for a panel that no longer needs it is removed, not kept as a blind spot."""
    default = dashboards["default"]
    for uid, pid in FIXED_WINDOW_PANELS:
        p = next(p for p in _panels(default[uid]) if p["id"] == pid)
        assert "last hour" in p["title"] and any("[1h]" in t["expr"] for t in p["targets"]), p["title"]
    for uid, pid in COUNTER_TOTAL_PANELS:
        p = next(p for p in _panels(default[uid]) if p["id"] == pid)
        assert p["type"] == "stat" and any(_unaggregated_counters(t["expr"]) for t in p["targets"]), p["title"]
