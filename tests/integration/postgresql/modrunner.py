"""Run the collection's postgresql_migrations module in-process, as Ansible would, and return its result."""
import importlib.util
import io
import json
import os
from contextlib import redirect_stdout

from ansible.module_utils.testing import patch_module_args

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
MODULE_PATH = os.path.join(REPO, "plugins", "modules", "postgresql_migrations.py")
MIGRATIONS_DIR = os.path.join(REPO, "roles", "postgresql", "files", "migrations")


def load_module():
    spec = importlib.util.spec_from_file_location("postgresql_migrations", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULE = load_module()


def run(args, check=False, diff=False):
    """Return (failed, result) of one module run."""
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    out = io.StringIO()
    with patch_module_args(args), redirect_stdout(out):
        try:
            MODULE.main()
        except SystemExit:
            pass
    result = json.loads(out.getvalue())
    return bool(result.get("failed")), result


def role_migrations():
    """The role's migration files as the role passes them (name = file name, sql = contents)."""
    items = []
    for name in sorted(os.listdir(MIGRATIONS_DIR)):
        if name.endswith(".sql"):
            with open(os.path.join(MIGRATIONS_DIR, name)) as handle:
                items.append({"name": name, "sql": handle.read().rstrip("\n")})
    return items


def run_process(args, tmp_path):
    """Run the module as its own process (as Ansible does on a target); return (failed, result)."""
    import subprocess
    import sys
    import uuid

    args_file = tmp_path / ("args-%s.json" % uuid.uuid4().hex)
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, MODULE_PATH, str(args_file)], capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout)
    return bool(result.get("failed")), result
