#!/usr/bin/env python3
"""Write docs/variables.md from every role's meta/argument_specs.yml (the one source of the variables'
types, defaults, choices and descriptions; ansible-core validates them when a role starts).

    python3 tools/gen_variables_doc.py           # rewrite docs/variables.md
    python3 tools/gen_variables_doc.py --check   # exit 1 when docs/variables.md is out of date

tests/unit/test_layout.py runs --check, so a variable added to argument_specs without regenerating the
page fails the unit tests.
"""
import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "variables.md"
# ansible-doc markup -> Markdown
MARKUP = [(re.compile(r"[CVOI]\(([^)]*)\)"), r"`\1`"), (re.compile(r"[BL]\(([^)]*)\)"), r"\1"),
          (re.compile(r"U\(([^)]*)\)"), r"<\1>")]


def text(value):
    parts = value if isinstance(value, list) else [value]
    out = " ".join(" ".join(str(p).split()) for p in parts if p is not None)
    for pattern, repl in MARKUP:
        out = pattern.sub(repl, out)
    return out.replace("|", "\\|")


def cell(value):
    if value is None:
        return ""
    shown = json.dumps(value, sort_keys=True) if not isinstance(value, str) else json.dumps(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return "`%s`" % shown.replace("|", "\\|")


def kind(spec):
    t = spec.get("type", "str")
    if t == "list" and spec.get("elements"):
        t = "list of %s" % spec["elements"]
    return t


def role_section(role):
    data = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    lines = []
    for entry, spec in sorted(data.items(), key=lambda kv: (kv[0] != "main", kv[0])):
        title = "`%s`" % role.name if entry == "main" else "`%s` (tasks_from: %s)" % (role.name, entry)
        lines += ["## %s" % title, ""]
        if spec.get("short_description"):
            lines += [text(spec["short_description"]), ""]
        options = spec.get("options") or {}
        if not options:
            lines += ["No variables.", ""]
            continue
        lines += ["| variable | type | default | choices | description |", "|---|---|---|---|---|"]
        for name in sorted(options):
            opt = options[name] or {}
            desc = text(opt.get("description", ""))
            if opt.get("required"):
                desc = "**Required.** " + desc
            if opt.get("no_log"):
                desc += " (secret: keep it in a vault)"
            choices = ", ".join("`%s`" % c for c in opt.get("choices", []))
            lines.append("| `%s` | %s | %s | %s | %s |" % (name, kind(opt), cell(opt.get("default")), choices, desc))
        lines.append("")
    return lines


def render():
    roles = sorted(p for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())
    lines = ["# Role variables", "",
             "Generated from each role's `meta/argument_specs.yml` by `tools/gen_variables_doc.py`; do not edit",
             "by hand. Defaults that are Jinja expressions are in the role's `defaults/main.yml`, with comments.", ""]
    lines += ["- [`%s`](#%s)" % (r.name, r.name) for r in roles] + [""]
    for role in roles:
        lines += role_section(role)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when docs/variables.md is out of date")
    args = parser.parse_args(argv)
    new = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != new:
            sys.stderr.write("docs/variables.md is out of date: run python3 tools/gen_variables_doc.py\n")
            return 1
        return 0
    OUT.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
