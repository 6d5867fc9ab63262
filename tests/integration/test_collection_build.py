"""The collection as users get it: built tarball, installed into a fresh path, site playbook resolvable."""
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(args, **kwargs):
    env = dict(os.environ)
    env.update(kwargs.pop("env", {}))
    proc = subprocess.run(args, cwd=kwargs.pop("cwd", ROOT), env=env, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def _build(tmp_path):
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    _run([BIN / "ansible-galaxy", "collection", "build", "--force", "--output-path", str(tmp_path)])
    tarball = tmp_path / f"{galaxy['namespace']}-{galaxy['name']}-{galaxy['version']}.tar.gz"
    assert tarball.is_file()
    return tarball


def test_tarball_leaves_out_tests_and_dev_files(tmp_path):
    tarball = _build(tmp_path)
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    tops = {n.split("/", 1)[0] for n in names}
    for unwanted in ("tests", "molecule", ".venv", ".collections", "lab", ".git", ".cache", "benchmarks"):
        assert unwanted not in tops, f"{unwanted}/ is in the collection tarball"
    for wanted in ("MANIFEST.json", "FILES.json", "roles", "playbooks", "meta", "README.md"):
        assert wanted in tops, f"{wanted} is missing from the collection tarball"
    assert not [n for n in names if "/tests/" in n and n.startswith("files/exporters/")]


def test_installed_collection_runs_site_playbook_by_name(tmp_path):
    tarball = _build(tmp_path)
    install_dir = tmp_path / "collections"
    _run([BIN / "ansible-galaxy", "collection", "install", "--no-deps", "--force", "-p", str(install_dir), str(tarball)])
    assert (install_dir / "ansible_collections/aiplatform/observability/MANIFEST.json").is_file()
    env = {
        # Only the installed copy (plus the bundled dependencies in site-packages) is visible.
        "ANSIBLE_COLLECTIONS_PATH": str(install_dir),
    }
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\n")
    env["ANSIBLE_CONFIG"] = str(cfg)
    _run(
        [BIN / "ansible-playbook", "-i", str(ROOT / "inventories/example/hosts.yml"),
         "aiplatform.observability.site", "--syntax-check"],
        env=env, cwd=tmp_path,
    )


def test_execution_environment_definition_is_valid(tmp_path):
    _run([BIN / "ansible-builder", "create", "-f", str(ROOT / "execution-environment.yml"),
          "-c", str(tmp_path / "context"), "--output-filename", "Containerfile"])
    assert (tmp_path / "context/Containerfile").is_file()
