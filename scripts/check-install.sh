#!/usr/bin/env bash
# Package test: install tokenprune to a temporary prefix, build tests/consumer against it with
# find_package(tokenprune), then build tests/consumer_subdir with add_subdirectory(); run both programs.
# Exits non-zero on any failure. Temporary directories are removed on exit.
#
#   scripts/check-install.sh            (JOBS=2 by default; CMAKE_GENERATOR is honoured if set)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jobs="${JOBS:-2}"
work="$(mktemp -d "${TMPDIR:-/tmp}/tokenprune-install.XXXXXX")"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

prefix="$work/prefix"
step() { printf '\n--- check-install: %s\n' "$*"; }
die() { printf 'check-install: FAILED: %s\n' "$*" >&2; exit 1; }

step "configure + build + install the library to $prefix"
cmake -S "$repo" -B "$work/build" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DTOKENPRUNE_BUILD_TESTS=OFF -DTOKENPRUNE_BUILD_TOOLS=OFF \
  -DTOKENPRUNE_BUILD_EXAMPLES=OFF -DTOKENPRUNE_BUILD_BENCHMARKS=OFF
cmake --build "$work/build" -j "$jobs"
cmake --install "$work/build"

step "inspect the installed package"
cmakedir="$(dirname "$(find "$prefix" -name tokenpruneConfig.cmake -print -quit)")"
[[ -n "$cmakedir" && "$cmakedir" != "." ]] || die "tokenpruneConfig.cmake was not installed"
for f in tokenpruneConfig.cmake tokenpruneConfigVersion.cmake tokenpruneTargets.cmake; do
  [[ -f "$cmakedir/$f" ]] || die "$cmakedir/$f is missing"
done
[[ -f "$prefix/include/tokenprune/core/error.hpp" ]] || die "headers were not installed"
# The installed package must not point back into the source or build tree...
if grep -rlF -e "$repo" -e "$work/build" "$cmakedir"; then die "installed CMake files reference the build"; fi
# ...and the library target must not carry compile options (-march, -fopenmp, -O...).
if grep -q "INTERFACE_COMPILE_OPTIONS" "$cmakedir/tokenpruneTargets.cmake"; then
  die "tokenprune::tokenprune exports compile options"
fi
echo "package files in ${cmakedir#$prefix/}: OK"

step "find_package consumer (tests/consumer)"
cmake -S "$repo/tests/consumer" -B "$work/consumer" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
found_dir="$(sed -n 's/^tokenprune_DIR:PATH=//p' "$work/consumer/CMakeCache.txt")"
[[ "$found_dir" == "$prefix"/* ]] || die "consumer found tokenprune in '$found_dir', not in $prefix"
cmake --build "$work/consumer" -j "$jobs"
"$work/consumer/tokenprune_consumer"

step "find_package(tokenprune 1.0) must be rejected (SameMajorVersion)"
if cmake -S "$repo/tests/consumer" -B "$work/consumer_v1" -DCMAKE_PREFIX_PATH="$prefix" \
     -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DTOKENPRUNE_REQUIRED_VERSION=1.0 >"$work/v1.log" 2>&1; then
  die "find_package(tokenprune 1.0) accepted version 0.x"
fi
echo "rejected: OK"

step "add_subdirectory consumer (tests/consumer_subdir)"
cmake -S "$repo/tests/consumer_subdir" -B "$work/consumer_subdir" \
  -DCMAKE_BUILD_TYPE=Release \
  -DTOKENPRUNE_SOURCE_DIR="$repo"
cmake --build "$work/consumer_subdir" -j "$jobs"
"$work/consumer_subdir/tokenprune_consumer_subdir"

printf '\ncheck-install: OK (install + find_package + add_subdirectory)\n'
