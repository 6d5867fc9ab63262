#!/usr/bin/env bash
# ansible-test sanity for the collection's plugins, without containers.
# ansible-test wants the collection under .../ansible_collections/<namespace>/<name>/ and tests every file
# there, so only what is shipped as code is copied: galaxy.yml, meta/, plugins/ (and tests/sanity/ for
# ignore files). Extra arguments go to ansible-test (e.g. --test validate-modules).
# ansible-test builds one virtual environment per sanity test under ~/.ansible/test/venv from PyPI on the
# first run (a few minutes); later runs reuse them.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$repo/.venv}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

dest="$work/ansible_collections/aiplatform/observability"
mkdir -p "$dest"
cp -a "$repo/galaxy.yml" "$repo/meta" "$repo/plugins" "$dest/"
if [ -d "$repo/tests/sanity" ]; then
    mkdir -p "$dest/tests"
    cp -a "$repo/tests/sanity" "$dest/tests/"
fi
find "$dest" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +

cd "$dest"
# ansible-test lists the files to test from git when the tree is a repository.
git init -q .
git add -A
git -c user.name=sanity -c user.email=sanity@localhost commit -q -m sanity --no-verify

# The python that runs the tests and seeds their virtual environments: the project's venv (Python 3.11).
export PATH="$venv/bin:$PATH"

# ansible-test bootstraps pip in each sanity venv with a get-pip script downloaded from
# ci-files.testing.ansible.com, which this network cannot reach (only PyPI is reachable). It documents
# saving the script by hand at ~/.ansible/test/cache/get_pip_<version>.py; where none is there, put one
# that does the same job with the interpreter's own ensurepip and then installs the pinned packages
# from PyPI. A real get-pip script already saved there is used as is.
ansible_test_dir="$("$venv/bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')"
pip_version="$(sed -n "s/^ *pip='\([0-9.]*\)',.*/\1/p" "$ansible_test_dir/_internal/python_requirements.py" | head -n1)"
get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ -n "$pip_version" ] && [ ! -e "$get_pip" ]; then
    echo "note: ci-files.testing.ansible.com is unreachable: bootstrapping pip $pip_version through ensurepip ($get_pip)"
    mkdir -p "$(dirname "$get_pip")"
    cat > "$get_pip" <<'PY'
"""Stand-in for get-pip.py: ensurepip, then pip install of the requested packages from PyPI."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade'])
sys.exit(subprocess.call([sys.executable, '-m', 'pip', 'install'] + args))
PY
fi
echo "ansible-test sanity in $dest"
"$venv/bin/ansible-test" sanity --python 3.11 --color no "$@"
