#!/usr/bin/env bash
# The full check that CI runs (.ci/run) and the README's test command:
#   1. scripts/setup.sh                 Debian packages, if missing
#   2. build/release                    Release build of tests, tool, examples, benchmarks; ctest
#   3. build/sanitize                   ASan + UBSan (-O1 -g, asserts on) of tests and tool; ctest
#   4. scripts/test_python.sh           the Python package: pip install into build/pyvenv, pytest tests/python
#   5. scripts/check-install.sh         install + find_package + add_subdirectory consumers
#   6. ThreadSanitizer (concurrent instances), scripts/determinism.sh (-march levels x threads), scripts/fuzz.sh
# Environment: JOBS (default 2), TOKENPRUNE_NATIVE=ON to add -march=native to tests/tools/benchmarks,
#              SKIP_SANITIZE=1 / SKIP_HARDENING=1 to skip step 3 / 6, FUZZ_SECONDS (default 60),
#              CI=true (CI: the shared fixtures and the tool must exist, nothing may skip)
#              (local iteration only; CI runs everything).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
jobs="${JOBS:-2}"
native="${TOKENPRUNE_NATIVE:-OFF}"
started=$SECONDS
summary=()

banner() { printf '\n========== %s ==========\n' "$*"; }
finish_step() { summary+=("$1: OK ($((SECONDS - $2)) s)"); }
on_exit() {
  local rc=$?
  local passed=0
  printf '\n========== summary ==========\n'
  for line in "${summary[@]+"${summary[@]}"}"; do
    printf '  %s\n' "$line"
    [[ "$line" == *": OK ("* ]] && passed=$((passed + 1))
  done
  if ((rc == 0)); then
    printf 'tokenprune test.sh: ALL PASSED in %d s\n' "$((SECONDS - started))"
    printf 'stages: %d passed, 0 failed\n' "$passed"
  else
    printf 'tokenprune test.sh: FAILED (exit %d) after %d s\n' "$rc" "$((SECONDS - started))"
    printf 'stages: %d passed, 1 failed\n' "$passed"
  fi
}
trap on_exit EXIT

if [[ "${CI:-}" == "true" ]]; then
  if [[ -d "$repo/../shared/fixtures/reference" ]]; then
    echo "CI: shared reference fixtures at $(cd "$repo/../shared/fixtures/reference" && pwd)"
  else
    echo "CI: ../shared/fixtures/reference not found next to the repository (the tests decide)"
  fi
fi

banner "setup"
t=$SECONDS
bash "$repo/scripts/setup.sh"
finish_step setup $t

banner "release build (build/release)"
t=$SECONDS
cmake -S . -B build/release \
  -DCMAKE_BUILD_TYPE=Release \
  -DTOKENPRUNE_BUILD_TESTS=ON -DTOKENPRUNE_BUILD_TOOLS=ON \
  -DTOKENPRUNE_BUILD_EXAMPLES=ON -DTOKENPRUNE_BUILD_BENCHMARKS=ON \
  -DTOKENPRUNE_NATIVE="$native"
cmake --build build/release -j "$jobs"
banner "release tests"
ctest --test-dir build/release --output-on-failure -j "$jobs"
finish_step "release build + ctest" $t

if [[ "${SKIP_SANITIZE:-0}" != "1" ]]; then
  banner "sanitizer build: ASan + UBSan (build/sanitize)"
  t=$SECONDS
  # RelWithDebInfo with -O1 -g and without -DNDEBUG: asserts (ours and Eigen's) stay on.
  cmake -S . -B build/sanitize \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
    -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
    -DTOKENPRUNE_BUILD_TESTS=ON -DTOKENPRUNE_BUILD_TOOLS=ON \
    -DTOKENPRUNE_BUILD_EXAMPLES=OFF -DTOKENPRUNE_BUILD_BENCHMARKS=OFF \
    -DTOKENPRUNE_NATIVE="$native"
  cmake --build build/sanitize -j "$jobs"
  banner "sanitizer tests"
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:check_initialization_order=1}" \
  UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
    ctest --test-dir build/sanitize --output-on-failure -j "$jobs"
  finish_step "sanitizer build + ctest" $t
else
  summary+=("sanitizer build + ctest: SKIPPED (SKIP_SANITIZE=1)")
fi

banner "python package (build/pyvenv)"
t=$SECONDS
bash "$repo/scripts/test_python.sh"
finish_step "python package + pytest" $t

banner "package: install + consumers"
t=$SECONDS
JOBS="$jobs" bash "$repo/scripts/check-install.sh"
finish_step "install + consumers" $t

if [[ "${SKIP_HARDENING:-0}" != "1" ]]; then
  banner "threads: ThreadSanitizer on concurrent pruner instances"
  t=$SECONDS
  mkdir -p build/tsan
  # No OpenMP here: libgomp is not instrumented and would report its own synchronization.
  catch_libs=()  # Catch2 3 is a compiled library (Catch2 2.13 is header-only, main in tests/main.cpp)
  if [[ -f /usr/include/catch2/catch_test_macros.hpp || -f /usr/local/include/catch2/catch_test_macros.hpp ]]; then
    catch_libs=(-lCatch2Main -lCatch2)
  fi
  g++ -std=c++20 -O1 -g -fsanitize=thread -Iinclude -Itests -I/usr/include/eigen3 \
    tests/main.cpp tests/test_concurrency.cpp "${catch_libs[@]+"${catch_libs[@]}"}" -o build/tsan/concurrency
  TSAN_OPTIONS="halt_on_error=1" build/tsan/concurrency
  finish_step "ThreadSanitizer" $t

  banner "determinism: instruction-set levels x OpenMP threads"
  t=$SECONDS
  JOBS="$jobs" bash "$repo/scripts/determinism.sh"
  finish_step "determinism matrix" $t

  banner "fuzzing: libFuzzer + ASan + UBSan, ${FUZZ_SECONDS:-60} s per target"
  t=$SECONDS
  FUZZ_SECONDS="${FUZZ_SECONDS:-60}" bash "$repo/scripts/fuzz.sh"
  finish_step "fuzzing" $t
else
  summary+=("hardening (TSan, determinism matrix, fuzzing): SKIPPED (SKIP_HARDENING=1)")
fi
