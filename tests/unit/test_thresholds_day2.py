"""A day-2 threshold change is one variable and one tagged run, leaf by leaf.

Every default leaf of the thresholds table is moved to a value of its own (a marker that appears in
no default render), and the site is rendered three times with playbooks/render.yml:
  base    all defaults, every role;
  full    all markers, every role;
  tagged  all markers, `--tags thresholds` only.
Then: every marker reaches a file (no leaf is dead); alert levels reach only the rule files and the
dashboards, plus the drift exporter's file for the leaves the threshold table hands it; dashboard
levels reach only the dashboards; every file that `full` writes differently from `base` carries a marker (nothing changes
without a leaf behind it); and `tagged` writes exactly those files, each identical to `full`, and
nothing else that differs. Run: .venv/bin/pytest tests/unit -q -k day2
"""
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from test_render import render

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("threshold_slice_filter", REPO / "plugins/filter/threshold_slice.py")
_filter = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_filter)
CONSUMERS = _filter.CONSUMERS
DEFAULTS = yaml.safe_load((REPO / "roles/common/vars/main.yml").read_text())["__common_thresholds_defaults"]
RULE_FILES = "mon1/etc/prometheus/rules/"
DASHBOARDS = "_grafana_api/dashboards/"
# The leaves a consumer outside the rules and dashboards reads, and the file it reads them from.
CONSUMER_FILES = {"drift_exporter": "mon1/etc/aiplatform-exporters/drift.yml"}


def leaves():
    for signal, sections in DEFAULTS.items():
        for section, levels in sections.items():
            for level, value in levels.items():
                yield signal, section, level, value


def markers():
    """(signal, section, level) -> a value close to the default that appears nowhere by chance.

    The offsets grow along the table's order and stay far below the smallest gap between two levels
    of one section, so the ordering rules of the validation still hold."""
    out = {}
    for k, (signal, section, level, value) in enumerate(leaves()):
        out[(signal, section, level)] = round(value + (k + 1) * 1e-4 + 7e-6, 6)
    return out


def files(root):
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def allowed_files(signal, section, level):
    # Dashboards may draw an alert level (GPU temperature turns red where its alert fires); the
    # rule files never read a dashboard colour.
    allowed = [DASHBOARDS] if section == "dashboard" else [RULE_FILES, DASHBOARDS]
    for consumer, settings in CONSUMERS.items():
        if (signal, section, level) in settings.values():
            allowed.append(CONSUMER_FILES[consumer])
    return allowed


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("day2")
    nested = {}
    for (signal, section, level), value in markers().items():
        nested.setdefault(signal, {}).setdefault(section, {})[level] = value
    extra = {"aiplatform_thresholds": nested}
    jobs = {"base": ({}, ()), "full": (extra, ()), "tagged": (extra, ("--tags", "thresholds"))}
    for name in jobs:  # one directory each: render() writes its inventory and variables file there
        (tmp / name).mkdir()
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(render, tmp / name, ex, *args, name="out") for name, (ex, args) in jobs.items()}
    out = {}
    for name, future in futures.items():
        proc, root = future.result()
        assert proc.returncode == 0, f"{name} render failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        out[name] = files(root)
    return out


def test_markers_are_unique_and_absent_from_the_default_render(renders):
    text = "\n".join(renders["base"].values())
    values = [str(v) for v in markers().values()]
    assert len(set(values)) == len(values)
    assert not [v for v in values if v in text]


@pytest.mark.parametrize("leaf", list(markers()), ids=lambda leaf: ".".join(leaf))
def test_each_leaf_reaches_its_consumers_and_nothing_else(renders, leaf):
    marker = str(markers()[leaf])
    hits = sorted(path for path, text in renders["full"].items() if marker in text)
    assert hits, f"{'.'.join(leaf)} = {marker} appears in no rendered file"
    allowed = allowed_files(*leaf)
    stray = [path for path in hits if not any(path.startswith(a) for a in allowed)]
    assert not stray, f"{'.'.join(leaf)} reaches {stray}, expected only {allowed}"
    for consumer, settings in CONSUMERS.items():
        if leaf in settings.values():
            assert CONSUMER_FILES[consumer] in hits, f"{'.'.join(leaf)} does not reach {consumer}"


def test_tagged_run_writes_exactly_what_the_thresholds_change(renders):
    base, full, tagged = renders["base"], renders["full"], renders["tagged"]
    changed = sorted(path for path, text in full.items() if base.get(path) != text)
    assert changed, "the markers changed no file"
    values = [str(v) for v in markers().values()]
    unexplained = [path for path in changed if not any(v in full[path] for v in values)]
    assert not unexplained, f"files changed without a threshold leaf in them: {unexplained}"
    missing = [path for path in changed if path not in tagged]
    assert not missing, f"--tags thresholds does not write {missing}"
    different = [path for path in tagged if tagged[path] != full.get(path)]
    assert not different, f"--tags thresholds writes these differently from a full run: {different}"
    assert {RULE_FILES + "aiplatform-alerts.rules.yml", CONSUMER_FILES["drift_exporter"]} <= set(changed)
    assert any(path.startswith(DASHBOARDS) for path in changed)


def test_the_drift_exporter_defaults_are_the_collections():
    """The exporter run without the collection (its own defaults) decides as the collection's table says."""
    from aiplatform_exporters.drift.exporter import DEFAULTS as EXPORTER

    common = yaml.safe_load((REPO / "roles/common/defaults/main.yml").read_text())
    effective = DEFAULTS
    expected = {"psi_threshold": CONSUMERS["drift_exporter"]["psi"], "kl_threshold": CONSUMERS["drift_exporter"]["kl"]}
    for key, (signal, section, level) in expected.items():
        assert EXPORTER[key] == effective[signal][section][level], key
    assert EXPORTER["min_window_samples"] == common["aiplatform_drift_min_window_samples"]
