"""Conventions every role keeps, checked on the tree so a slip fails `make test`."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())
# Roles whose public variables are shared across the collection rather than prefixed by role name.
SHARED_PREFIXES = {"common": ("aiplatform_",)}
# Templates rendered into Grafana API requests rather than into files on a host.
API_TEMPLATES = {"grafana/templates/commit_message.j2", "grafana/templates/deploy_annotation.j2"}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_has_argument_specs_covering_defaults(role):
    specs_file = role / "meta" / "argument_specs.yml"
    assert specs_file.is_file(), f"{role.name}: meta/argument_specs.yml is missing"
    specs = yaml.safe_load(specs_file.read_text())["argument_specs"]
    documented = set(specs.get("main", {}).get("options", {}))
    defaults_file = role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) or {} if defaults_file.is_file() else {}
    undocumented = sorted(set(defaults) - documented)
    assert not undocumented, f"{role.name}: defaults not in argument_specs: {undocumented}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_public_variables_are_prefixed(role):
    defaults_file = role / "defaults" / "main.yml"
    if not defaults_file.is_file():
        return
    prefixes = SHARED_PREFIXES.get(role.name, (role.name + "_",))
    defaults = yaml.safe_load(defaults_file.read_text()) or {}
    bad = sorted(k for k in defaults if not k.startswith(prefixes))
    assert not bad, f"{role.name}: defaults without the {prefixes} prefix: {bad}"


@pytest.mark.parametrize(
    "template",
    sorted((ROOT / "roles").glob("*/templates/**/*.j2")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_templates_declare_ansible_managed(template):
    rel = str(template.relative_to(ROOT / "roles"))
    if rel in API_TEMPLATES or "/templates/dashboards/" in f"/{rel}" or template.name.endswith(".json.j2"):
        return  # API payloads (JSON, commit messages), not files a person finds on a host
    head = template.read_text().lstrip().splitlines()[:3]
    assert any("ansible_managed" in line for line in head), f"{template}: no ansible_managed header"


def test_site_playbook_only_imports():
    plays = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    assert plays and all(set(p) <= {"name", "ansible.builtin.import_playbook"} for p in plays)
    root = yaml.safe_load((ROOT / "site.yml").read_text())
    assert root == [{"name": root[0]["name"], "ansible.builtin.import_playbook": "playbooks/site.yml"}]


MOLECULE_CONFIGS = [ROOT / ".config" / "molecule" / "config.yml"] + sorted((ROOT / "molecule").glob("*/molecule.yml"))


@pytest.mark.parametrize("config", MOLECULE_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_molecule_verifier_options_are_strings_or_flags(config):
    """Molecule turns the options into a command line with shlex, which takes strings only: a bare
    number (e.g. `durations: 20`) makes the verify stage crash before any test runs."""
    options = (yaml.safe_load(config.read_text()).get("verifier") or {}).get("options") or {}
    bad = dict((k, v) for k, v in options.items() if not (isinstance(v, str) or v is True or v is False))
    assert not bad, f"{config.relative_to(ROOT)}: quote these verifier options: {bad}"


def test_prometheus_is_deployed_before_alertmanager():
    """Prometheus' package brings promtool, which checks Alertmanager's web config before it is
    written: on a fresh host's first run too, only when Prometheus comes first."""
    play = yaml.safe_load((ROOT / "playbooks" / "monitoring.yml").read_text())[0]
    roles = [r["role"].rsplit(".", 1)[-1] for r in play["roles"]]
    assert roles.index("prometheus") < roles.index("alertmanager"), roles


def _main_tasks(role):
    main = role / "tasks" / "main.yml"
    return yaml.safe_load(main.read_text()) or [] if main.is_file() else []


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_dynamic_includes_apply_their_tags(role):
    """A tag on include_tasks/include_role selects the include only; without `apply` the included
    tasks lack it, and `--tags X` would run an include whose tasks are all skipped."""
    bad = []
    for task in _main_tasks(role):
        for action in ("ansible.builtin.include_tasks", "ansible.builtin.include_role"):
            if action not in task or not task.get("tags"):
                continue
            body = task[action] if isinstance(task[action], dict) else {}
            applied = (body.get("apply") or {}).get("tags") or []
            if set(applied) != set(task["tags"]):
                bad.append(f"{task.get('name')}: tags {task['tags']}, apply.tags {applied}")
    assert not bad, f"{role.name}/tasks/main.yml: {bad}"


def test_tags_doc_lists_every_roles_tags():
    documented = {}
    for line in (ROOT / "docs" / "tags.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and (ROOT / "roles" / cells[0]).is_dir():
            documented[cells[0]] = [t.strip().strip("`") for t in cells[1].split(",")]
    actual = {}
    for role in ROLES:
        tags = []
        for task in _main_tasks(role):
            tags += [t for t in task.get("tags") or [] if t not in tags]
        actual[role.name] = tags
    assert documented == actual, "docs/tags.md differs from roles/*/tasks/main.yml"


def test_no_templated_notify_on_a_loop():
    """ansible-core notifies the handlers of every item of a looped task once any item changed, so
    `notify: "Restart {{ item.unit }}"` restarts services whose files did not change. A task that
    loops only over changed items (changed_when: true) may template its notify."""
    bad = []
    for tasks_file in sorted((ROOT / "roles").glob("*/tasks/*.yml")):
        for task in yaml.safe_load(tasks_file.read_text()) or []:
            looped = any(k == "loop" or k.startswith("with_") for k in task)
            if looped and "{{" in str(task.get("notify", "")) and task.get("changed_when") is not True:
                bad.append(f"{tasks_file.relative_to(ROOT)}: {task.get('name')}")
    assert not bad, bad


def test_variables_doc_is_generated_from_argument_specs():
    """docs/variables.md is tools/gen_variables_doc.py's output over every role's argument_specs."""
    proc = subprocess.run([sys.executable, str(ROOT / "tools/gen_variables_doc.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
