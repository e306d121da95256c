#!/usr/bin/env bash
# Builds and runs the whole test suite twice: Release, then AddressSanitizer + UBSan.
# Fixtures come from ../shared/fixtures (or $AUTOGLM_FIXTURES); with CI=true a missing fixture fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export AUTOGLM_FIXTURES="${AUTOGLM_FIXTURES:-$(pwd)/../shared/fixtures}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
for flavour in release asan; do
  scripts/build.sh "$flavour"
  dir=build; [ "$flavour" = asan ] && dir=build-asan
  echo "== ctest ($flavour) =="
  ctest --test-dir "$dir" --output-on-failure -j "$(nproc)" --timeout 300
done
echo "test.sh: all tests passed (release and asan)"
