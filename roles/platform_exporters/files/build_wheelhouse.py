#!/usr/bin/env python3
"""Build the exporters' wheelhouse on the controller, once per target Python and platform.

    build_wheelhouse.py --source files/exporters --cache .cache/wheelhouse \
        --extras gpu --target 3.11:x86_64:2.36 --target 3.13:x86_64:2.41

* The package's own wheel is built from a copy of the source tree (the checkout is never written
  to), once per content hash of that tree: an unchanged tree reuses the cached wheel byte for byte.
* Its dependencies are downloaded as binary wheels for each target (`pip download --only-binary
  --python-version X.Y --platform manylinux_2_N_<arch> ...`), once per (dependency list, target).
* Each target gets a directory `<cache>/sets/<id>/` holding exactly the wheels it installs plus
  `manifest.json`; `<id>` hashes every wheel's sha256, so the same inputs give the same directory
  and the copy to the hosts stays unchanged on re-runs.

Prints one JSON object: {"changed": bool, "package": {...}, "wheelhouses": {target: {...}}}.
Runs with the controller's Python (ansible_playbook_python); needs pip and setuptools >= 61 there
(with the wheel package below 70.1), or else
an index reachable for pip's isolated build.
"""

import argparse
import email.parser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".pytest_cache",
                                 ".benchmarks", ".mypy_cache", ".ruff_cache")
TARGET_RE = re.compile(r"^(\d+)\.(\d+):([A-Za-z0-9_]+):(\d+)\.(\d+)$")


class BuildError(Exception):
    pass


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_hash(source):
    """Content hash of the files a wheel is built from (what IGNORED leaves)."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(source):
        ignored = IGNORED(root, dirs + files)
        dirs[:] = sorted(d for d in dirs if d not in ignored and d != "tests")
        for name in sorted(f for f in files if f not in ignored):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, source)
            digest.update(rel.encode() + b"\0")
            digest.update(sha256_file(path).encode() + b"\0")
    return digest.hexdigest()


def run(cmd, what):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if proc.returncode != 0:
        raise BuildError("%s failed (%s):\n%s" % (what, " ".join(cmd), proc.stdout[-4000:]))
    return proc.stdout


def can_build_without_isolation():
    try:
        import setuptools
    except ImportError:
        return False
    try:
        version = tuple(int(x) for x in setuptools.__version__.split(".")[:2])
    except ValueError:
        return False
    if version >= (70, 1):
        return True  # bdist_wheel is part of setuptools from 70.1 on
    if version < (61, 0):
        return False
    try:
        import wheel  # noqa: F401 - older setuptools take bdist_wheel from the wheel package
    except ImportError:
        return False
    return True


def build_package(source, cache):
    """(wheel path, changed): the package wheel for the current content of `source`."""
    key = tree_hash(source)[:16]
    out_dir = os.path.join(cache, "package", key)
    wheels = sorted(f for f in os.listdir(out_dir) if f.endswith(".whl")) if os.path.isdir(out_dir) else []
    if len(wheels) == 1:
        return os.path.join(out_dir, wheels[0]), False
    tmp = tempfile.mkdtemp(prefix="aiplatform-wheel-")
    try:
        src_copy = os.path.join(tmp, "src")
        shutil.copytree(source, src_copy, ignore=IGNORED)
        dist = os.path.join(tmp, "dist")
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", dist, src_copy]
        if can_build_without_isolation():
            cmd.insert(4, "--no-build-isolation")
        run(cmd, "building the package wheel")
        built = [f for f in os.listdir(dist) if f.endswith(".whl")]
        if len(built) != 1:
            raise BuildError("expected one wheel from %s, got %s" % (source, built))
        staging = out_dir + ".tmp"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        shutil.copy2(os.path.join(dist, built[0]), staging)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.rename(staging, out_dir)
        return os.path.join(out_dir, built[0]), True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def wheel_metadata(wheel):
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(zf.read(name).decode("utf-8"))


def platforms(arch, glibc_major, glibc_minor):
    """Every manylinux tag a glibc <major>.<minor> system accepts, newest first.

    pip does not expand `manylinux_2_N` by itself, so all of them are passed."""
    if glibc_major != 2:
        raise BuildError("unsupported glibc %d.%d" % (glibc_major, glibc_minor))
    tags = ["manylinux_2_%d_%s" % (minor, arch) for minor in range(glibc_minor, 16, -1)]
    tags.append("manylinux2014_%s" % arch)
    if arch in ("x86_64", "i686"):
        tags += ["manylinux2010_%s" % arch, "manylinux1_%s" % arch]
    return tags


def download_deps(wheel, extras, target, cache, refresh):
    """(list of dependency wheel paths, changed) for one target."""
    m = TARGET_RE.match(target)
    if not m:
        raise BuildError("--target %r: expected PYMAJOR.PYMINOR:ARCH:GLIBCMAJOR.GLIBCMINOR, e.g. 3.11:x86_64:2.36"
                         % target)
    py_major, py_minor, arch, g_major, g_minor = m.groups()
    meta = wheel_metadata(wheel)
    requires = sorted(meta.get_all("Requires-Dist") or [])
    key_src = json.dumps({"requires": requires, "extras": sorted(extras), "target": target}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    out_dir = os.path.join(cache, "deps", "cp%s%s-%s-glibc%s.%s-%s" % (py_major, py_minor, arch, g_major, g_minor,
                                                                      key))
    done = os.path.join(out_dir, ".complete")
    if refresh:
        shutil.rmtree(out_dir, ignore_errors=True)
    if os.path.exists(done):
        return sorted(os.path.join(out_dir, f) for f in os.listdir(out_dir) if f.endswith(".whl")), False
    staging = out_dir + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    requirement = wheel + ("[%s]" % ",".join(extras) if extras else "")
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-cache-dir",
           "--only-binary=:all:", "--implementation", "cp", "--python-version", "%s.%s" % (py_major, py_minor),
           "--abi", "cp%s%s" % (py_major, py_minor), "--dest", staging]
    for tag in platforms(arch, int(g_major), int(g_minor)):
        cmd += ["--platform", tag]
    cmd.append(requirement)
    run(cmd, "downloading the dependencies for Python %s.%s on %s (glibc %s.%s)"
        % (py_major, py_minor, arch, g_major, g_minor))
    own = os.path.basename(wheel)
    for f in os.listdir(staging):
        if f == own or not f.endswith(".whl"):
            os.remove(os.path.join(staging, f))
    with open(os.path.join(staging, ".complete"), "w") as fh:
        fh.write(key_src + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.rename(staging, out_dir)
    return sorted(os.path.join(out_dir, f) for f in os.listdir(out_dir) if f.endswith(".whl")), True


def assemble(wheel, deps, target, extras, meta, cache):
    """The per-target set `<cache>/sets/<id>/`: hard links (or copies) of its wheels + manifest.json."""
    files = [(os.path.basename(p), p, sha256_file(p)) for p in [wheel] + deps]
    files.sort()
    name, version = meta["Name"], meta["Version"]
    requirement = "%s%s==%s" % (name, "[%s]" % ",".join(extras) if extras else "", version)
    manifest = {
        "package": name,
        "version": version,
        "extras": sorted(extras),
        "target": target,
        "requirement": requirement,
        "wheels": dict((f, h) for f, _, h in files),
    }
    set_id = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:12]
    manifest["id"] = set_id
    out_dir = os.path.join(cache, "sets", set_id)
    changed = False
    if not os.path.exists(os.path.join(out_dir, "manifest.json")):
        staging = out_dir + ".tmp"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        for fname, path, _ in files:
            try:
                os.link(path, os.path.join(staging, fname))
            except OSError:
                shutil.copy2(path, os.path.join(staging, fname))
        with open(os.path.join(staging, "manifest.json"), "w") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=True)
            fh.write("\n")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.rename(staging, out_dir)
        changed = True
    manifest["path"] = out_dir
    return manifest, changed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="the package's source tree (pyproject.toml)")
    parser.add_argument("--cache", required=True, help="cache directory on the controller")
    parser.add_argument("--extras", default="", help="comma-separated extras, e.g. gpu")
    parser.add_argument("--target", action="append", required=True,
                        help="PYMAJOR.PYMINOR:ARCH:GLIBCMAJOR.GLIBCMINOR (repeatable)")
    parser.add_argument("--refresh", action="store_true", help="download the dependencies again")
    args = parser.parse_args(argv)
    extras = sorted(e for e in args.extras.split(",") if e)
    try:
        if not os.path.isfile(os.path.join(args.source, "pyproject.toml")):
            raise BuildError("--source %s: no pyproject.toml there" % args.source)
        os.makedirs(args.cache, exist_ok=True)
        wheel, changed = build_package(os.path.abspath(args.source), os.path.abspath(args.cache))
        meta = wheel_metadata(wheel)
        result = {"package": {"name": meta["Name"], "version": meta["Version"], "wheel": wheel,
                              "sha256": sha256_file(wheel)},
                  "wheelhouses": {}}
        for target in sorted(set(args.target)):
            deps, deps_changed = download_deps(wheel, extras, target, os.path.abspath(args.cache), args.refresh)
            manifest, set_changed = assemble(wheel, deps, target, extras, meta, os.path.abspath(args.cache))
            result["wheelhouses"][target] = manifest
            changed = changed or deps_changed or set_changed
        result["changed"] = changed
    except BuildError as exc:
        sys.stdout.write(json.dumps({"failed": True, "msg": str(exc)}) + "\n")
        return 1
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
