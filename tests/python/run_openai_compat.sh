#!/usr/bin/env bash
# ctest driver for test_openai_compat.py: BUILD_DIR AUTOGLM_DEPLOY_BINARY MODEL (GGUF file or HF folder)
# [SCRIPT] (another test of this folder run the same way, e.g. test_open_autoglm.py)
# Creates (once) a virtualenv at BUILD_DIR/python-venv with the official `openai` package, then runs
# the test with it. Exit 77 = skipped (no PyPI access outside CI; CI=true fails instead).
set -euo pipefail
if [ $# -ne 3 ] && [ $# -ne 4 ]; then
  echo "usage: $0 BUILD_DIR AUTOGLM_DEPLOY_BINARY MODEL [SCRIPT]" >&2
  exit 2
fi
build_dir=$1 binary=$2 model=$3 script=${4:-test_openai_compat.py}
here=$(cd "$(dirname "$0")" && pwd)
venv="$build_dir/python-venv"

skip_or_fail() {  # a missing prerequisite: fail in CI, skip elsewhere
  if [ "${CI:-}" = "true" ]; then
    echo "FAIL: $1" >&2
    exit 1
  fi
  echo "SKIP: $1"
  exit 77
}

if ! command -v promtool >/dev/null 2>&1; then
  echo "FAIL: promtool not found on PATH; install the Debian package 'prometheus' (scripts/install-deps.sh does)" >&2
  exit 1
fi
if [ ! -e "$model" ]; then
  skip_or_fail "fixture $model is missing (set AUTOGLM_FIXTURES)"
fi

# The server binary may be built with ASan/UBSan; Python itself must not be run under them.
unset LD_PRELOAD

# Concurrent ctest runs in the same build dir (openai_compat, openai_compat_vision): one creates the
# virtualenv and installs, the others wait on the lock beside it.
exec 9>"$build_dir/.python-venv.lock"
flock 9
if [ ! -x "$venv/bin/python" ]; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv"; then
    rm -rf "$venv"
    echo "FAIL: 'python3 -m venv' failed; install the Debian package 'python3-venv' (scripts/install-deps.sh does)" >&2
    exit 1
  fi
fi
if ! "$venv/bin/python" -c "import openai" >/dev/null 2>&1; then
  echo "installing openai into $venv"
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --timeout 30 openai; then
    skip_or_fail "cannot install the 'openai' package from PyPI (no network?)"
  fi
fi
flock -u 9
exec 9>&-

exec "$venv/bin/python" "$here/$script" "$binary" "$model"
