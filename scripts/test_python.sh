#!/usr/bin/env bash
# Builds the Python package into a virtual environment and runs its pytest suite (tests/python).
#
#   scripts/test_python.sh [pytest arguments...]
#
# 1. Debian packages: pybind11-dev python3-pybind11 libdlpack-dev python3-numpy python3-pytest python3-venv
#    python3-setuptools python3-wheel libeigen3-dev (installed with apt when missing: as root, or through sudo);
#    torch is used by the tests when it is importable (skipped otherwise, except CI=true, where it must be).
# 2. A venv made by Debian's /usr/bin/python3 with --system-site-packages (numpy, pytest, torch from the system),
#    at PY_VENV (default build/pyvenv).
# 3. `pip install --no-build-isolation .` from the repository root (no package index needed); compiler flags:
#    TOKENPRUNE_CXXFLAGS (default none: -O2, no -march).
# 4. pytest on tests/python, run from outside the source tree so that the installed package is what is tested.
#    The shared reference fixtures (../shared/fixtures/reference, or TOKENPRUNE_SHARED_FIXTURES) are run when
#    present; cases of methods that are not registered yet are counted in the summary line, not failed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PY_VENV:-$repo/build/pyvenv}"
python="${PYTHON:-/usr/bin/python3}"
packages=(pybind11-dev python3-pybind11 libdlpack-dev python3-numpy python3-pytest python3-venv
          python3-setuptools python3-wheel libeigen3-dev python3-matplotlib)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "test_python.sh: installing ${missing[*]}"
  if [[ $(id -u) == 0 ]]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [[ ! -x "$venv/bin/python" ]]; then
  echo "test_python.sh: creating $venv"
  "$python" -m venv --system-site-packages "$venv"
fi

# setuptools reuses build/python's objects without tracking header changes: always rebuild from the sources.
rm -rf "$repo/build/python"
echo "test_python.sh: pip install --no-build-isolation $repo"
started=$SECONDS
"$venv/bin/python" -m pip install --no-build-isolation --no-deps --force-reinstall --no-cache-dir \
  --disable-pip-version-check -q "$repo"
echo "test_python.sh: built and installed in $((SECONDS - started)) s"

if [[ "${CI:-}" == "true" ]]; then
  "$venv/bin/python" -c "import torch" || { echo "test_python.sh: CI needs torch (python3-torch)"; exit 1; }
fi

cd "$venv"  # not the repository: import the installed package, not a source tree
"$venv/bin/python" -c "import tokenprune, sys; print('tokenprune', tokenprune.__version__, 'from', tokenprune.__file__)"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -q --rootdir "$repo/tests/python" "$repo/tests/python" "$@"
