#!/usr/bin/env bash
# Installs the Debian 12 packages tokenprune needs, only if some are missing (quick no-op otherwise).
# No pip, no downloads: everything comes from the distribution's apt repositories.
set -euo pipefail

packages=(
  g++ cmake make
  libeigen3-dev     # Eigen 3.4: the library's only dependency
  catch2            # tests (Catch2 2.13 on Debian 12; Catch2 3 also works)
  libcli11-dev nlohmann-json3-dev  # command-line tool (and case.json in tests)
  libbenchmark-dev  # benchmarks (Google Benchmark 1.7.1)
  libopenblas-dev   # benchmarks only: the OpenBLAS SYRK floor (BM_SyrkOpenBLAS); the library and tests never use it
  python3-numpy     # the Python package and bench/make_features.py
  pybind11-dev python3-pybind11 libdlpack-dev python3-venv python3-setuptools python3-wheel  # Python package build
  python3-pytest python3-torch python3-torchvision  # Python tests, PyTorch baselines, examples/pytorch_pipeline.py
  python3-matplotlib  # tokenprune.plot
  libstb-dev python3-skimage  # the tool's --picture (stb) and the demo's photograph (skimage's astronaut.png)
  clang libclang-rt-14-dev  # sanitizers and libFuzzer
)

missing=()
for p in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "setup: missing packages (${missing[*]}) and not root, and sudo is not available" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
echo "setup: done"
